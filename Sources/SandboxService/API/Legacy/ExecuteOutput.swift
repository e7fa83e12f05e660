/// The output `/execute` keeps: at most `limit` bytes of stdout and of stderr, and at most `2 × limit` bytes of
/// each once escaped as JSON text (the command keeps running, and its pipes keep being drained, past either; the cut
/// is marked in the text). Ordinary text at the byte cap fits the escaped one (a newline escapes to two bytes);
/// control characters (`\u0000`, six bytes each) and bytes that are not UTF-8 (U+FFFD, three) are cut earlier. So an
/// answer is at most `4 × limit` bytes plus its marker lines and fields.
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
        truncated = stdout.cut != .none || stderr.cut != .none
    }

    /// Appends `line` on a line of its own (after a newline if the text does not end with one), past the cap.
    mutating func appendLine(_ line: String, toStdout: Bool) {
        if toStdout { stdout.appendLine(line) } else { stderr.appendLine(line) }
    }

    /// Takes what was captured, with a marker line where a stream was cut, leaving an empty capture.
    mutating func take() -> ExecuteOutput {
        for builder in [\ExecuteOutput.stdout, \ExecuteOutput.stderr] {
            switch self[keyPath: builder].cut {
            case .none: break
            case .bytes: self[keyPath: builder].appendLine("[output truncated: more than \(limit) bytes]")
            case .escaped:
                self[keyPath: builder].appendLine(
                    "[output truncated: more than \(JSONTextBuilder.escapedFactor * limit) bytes once escaped]")
            }
        }
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

extension ExecuteOutput: CommandOutput {
    mutating func append(_ bytes: [UInt8], from channel: OutputChannel) {
        append(bytes, toStdout: channel == .stdout)
    }
}

/// The inside of a JSON string built from raw bytes that arrive in pieces.
struct JSONTextBuilder {
    /// Why the text was cut.
    enum Cut {
        case none
        /// More raw bytes came than the limit.
        case bytes
        /// The escaped text would have passed `escapedFactor` times the limit.
        case escaped
    }

    /// The escaped text of `limit` raw bytes is kept up to this many times `limit`: text where every byte is a
    /// newline (`\n`, two bytes escaped) just fits.
    static let escapedFactor = 2

    private var encoded: [UInt8]
    /// Bytes of `encoded` before the text.
    private let prefixCount: Int
    /// The tail of the last piece that may be the start of a UTF-8 sequence completed by the next one.
    private var incomplete: [UInt8] = []
    private var rawCount = 0
    private var lastByte: UInt8?
    private var escapedLimit = Int.max
    private(set) var cut = Cut.none

    init(prefix: [UInt8]) {
        encoded = prefix
        prefixCount = prefix.count
    }

    /// Appends raw bytes, keeping at most `limit` of them in all, and at most `escapedFactor × limit` bytes of
    /// escaped text.
    mutating func append(_ bytes: [UInt8], limit: Int) {
        guard cut == .none else { return }
        escapedLimit =
            limit.multipliedReportingOverflow(by: Self.escapedFactor).overflow
            ? Int.max : limit * Self.escapedFactor
        var bytes = bytes
        var cutHere = false
        if rawCount + bytes.count > limit {
            bytes.removeSubrange(max(0, limit - rawCount)...)
            cutHere = true
        }
        rawCount += bytes.count
        if !bytes.isEmpty {
            lastByte = bytes.last
            // Past 1 MiB, reserve for the whole cap at once, at the escaping ratio seen so far: growing by doubling
            // would copy the buffer again and again and could leave twice the answer allocated.
            if encoded.count < 1 << 20 && encoded.count + bytes.count >= 1 << 20 {
                let ratio = Double(encoded.count) / Double(max(1, rawCount - bytes.count))
                let expected = Int(Double(limit) * max(1, ratio) * 1.05)
                encoded.reserveCapacity(min(expected, escapedLimit) + prefixCount + (64 << 10))
            }
            let text = incomplete + bytes
            let split = Self.completePrefixLength(text)
            appendText(text[..<split])
            incomplete = Array(text[split...])
        }
        if cutHere && cut == .none { cut = .bytes }
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
        guard !bytes.isEmpty, cut != .escaped else { return }
        // Swift's decoding replaces each ill-formed sequence with U+FFFD, as Python's errors="replace" does.
        var text = String(decoding: bytes, as: UTF8.self)
        let start = encoded.count
        text.withUTF8 { JSONValue.appendEscaped($0, to: &encoded) }
        let room = escapedLimit - (start - prefixCount)
        guard encoded.count - start > room else { return }
        // Over the escaped cap (by at most one piece's escaping): cut back to the last whole character or escape.
        encoded.removeSubrange((start + Self.wholeUnits(of: encoded[start...], upTo: room))...)
        incomplete = []
        lastByte = 0  // whatever the text ends with now, the marker goes on a line of its own
        cut = .escaped
    }

    /// How many bytes of escaped text, at most `room`, end on a boundary between characters or escape sequences
    /// (`\n`, `\u0000`, a UTF-8 sequence are never split).
    static func wholeUnits(of escaped: ArraySlice<UInt8>, upTo room: Int) -> Int {
        var index = escaped.startIndex
        while index < escaped.endIndex {
            let byte = escaped[index]
            let length: Int
            if byte == UInt8(ascii: "\\") {
                length = index + 1 < escaped.endIndex && escaped[index + 1] == UInt8(ascii: "u") ? 6 : 2
            } else {
                length = byte < 0x80 ? 1 : byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2
            }
            guard index - escaped.startIndex + length <= room else { break }
            index += length
        }
        return index - escaped.startIndex
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
