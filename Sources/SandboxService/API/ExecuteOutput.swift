/// The output `/execute` keeps: at most `limit` bytes of stdout and of stderr (the command keeps running, and its
/// pipes keep being drained, past it; the cut is marked in the text).
///
/// Output is kept already encoded as the JSON answer: each piece is turned into text (bytes that are not UTF-8 become
/// U+FFFD, also across piece boundaries) and escaped as it arrives, and the answer is finished in the stdout buffer.
/// So a command at the cap costs the size of its answer once, not its bytes plus a string plus the answer.
struct ExecuteOutput {
    let limit: Int
    private var stdout = JSONTextBuilder(prefix: Array(#"{"stdout":""#.utf8))
    private var stderr = JSONTextBuilder(prefix: [])
    private(set) var truncated = false

    init(limit: Int) {
        self.limit = limit
    }

    mutating func append(_ bytes: [UInt8], toStdout: Bool) {
        if toStdout {
            stdout.append(bytes, limit: limit)
        } else {
            stderr.append(bytes, limit: limit)
        }
        truncated = stdout.cut || stderr.cut
    }

    /// Appends `line` on a line of its own (after a newline if the text does not end with one), past the cap.
    mutating func appendLine(_ line: String, toStdout: Bool) {
        if toStdout { stdout.appendLine(line) } else { stderr.appendLine(line) }
    }

    /// Takes what was captured, with a marker line where a stream was cut, leaving an empty capture.
    mutating func take() -> ExecuteOutput {
        let marker = "[output truncated: more than \(limit) bytes]"
        if stdout.cut { stdout.appendLine(marker) }
        if stderr.cut { stderr.appendLine(marker) }
        defer { self = ExecuteOutput(limit: limit) }
        return self
    }

    /// The whole answer: `{"stdout":"…","stderr":"…"` followed by `members` and `}`, built in the stdout buffer
    /// (taken out, so it is not shared and grows in place). Leaves the capture empty.
    mutating func json(then members: [(String, JSONValue)]) -> [UInt8] {
        var body = stdout.finish()
        body += Array(#"","stderr":""#.utf8)
        body += stderr.finish()
        body.append(UInt8(ascii: "\""))
        for (key, value) in members {
            body.append(UInt8(ascii: ","))
            body += JSONValue.string(key).encoded()
            body.append(UInt8(ascii: ":"))
            body += value.encoded()
        }
        body.append(UInt8(ascii: "}"))
        return body
    }
}

/// The inside of a JSON string built from raw bytes that arrive in pieces.
struct JSONTextBuilder {
    private var encoded: [UInt8]
    /// The tail of the last piece that may be the start of a UTF-8 sequence completed by the next one.
    private var incomplete: [UInt8] = []
    private var rawCount = 0
    private var lastByte: UInt8?
    private(set) var cut = false

    init(prefix: [UInt8]) {
        encoded = prefix
    }

    /// Appends raw bytes, keeping at most `limit` of them in all.
    mutating func append(_ bytes: [UInt8], limit: Int) {
        guard !cut else { return }
        var bytes = bytes
        if rawCount + bytes.count > limit {
            bytes.removeSubrange(max(0, limit - rawCount)...)
            cut = true
        }
        rawCount += bytes.count
        guard !bytes.isEmpty else { return }
        lastByte = bytes.last
        // Past 1 MiB, reserve for the whole cap at once, at the escaping ratio seen so far: growing by doubling would
        // copy the buffer again and again and could leave twice the answer allocated.
        if encoded.count < 1 << 20 && encoded.count + bytes.count >= 1 << 20 {
            let ratio = Double(encoded.count) / Double(max(1, rawCount - bytes.count))
            encoded.reserveCapacity(Int(Double(limit) * max(1, ratio) * 1.05) + (64 << 10))
        }
        let text = incomplete + bytes
        let split = Self.completePrefixLength(text)
        appendText(text[..<split])
        incomplete = Array(text[split...])
    }

    mutating func appendLine(_ line: String) {
        flushIncomplete()
        if let lastByte, lastByte != 0x0A { JSONValue.appendEscaped([0x0A], to: &encoded) }
        JSONValue.appendEscaped(Array(line.utf8), to: &encoded)
        lastByte = line.utf8.last
    }

    /// Takes the encoded text out; whatever incomplete sequence is left becomes U+FFFD.
    mutating func finish() -> [UInt8] {
        flushIncomplete()
        var taken: [UInt8] = []
        swap(&taken, &encoded)
        return taken
    }

    private mutating func flushIncomplete() {
        guard !incomplete.isEmpty else { return }
        appendText(incomplete[...])
        incomplete = []
    }

    private mutating func appendText(_ bytes: ArraySlice<UInt8>) {
        guard !bytes.isEmpty else { return }
        // Swift's decoding replaces each ill-formed sequence with U+FFFD, as Python's errors="replace" does.
        var text = String(decoding: bytes, as: UTF8.self)
        text.withUTF8 { JSONValue.appendEscaped($0, to: &encoded) }
    }

    /// The length of `bytes` without a trailing UTF-8 sequence that is cut short (at most 3 bytes are held back).
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        var start = bytes.count
        var continuation = 0
        while start > 0, continuation < 3, bytes[start - 1] & 0xC0 == 0x80 {
            start -= 1
            continuation += 1
        }
        guard start > 0 else { return bytes.count }
        let lead = bytes[start - 1]
        let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
        return length > continuation + 1 ? start - 1 : bytes.count
    }
}
