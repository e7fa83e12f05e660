/// Cuts a byte stream into lines for SSE `data:` payloads: a line ends at `\n`, `\r\n` or `\r`; no line ever
/// contains CR or LF; a line longer than `maxLine` bytes is emitted in pieces (cut on a UTF-8 character boundary
/// where possible); a last line without newline is emitted by `finish()`.
struct LineSplitter {
    static let defaultMaxLine = 64 * 1024

    private var partial: [UInt8] = []
    /// The previous chunk ended in CR: a LF at the start of the next chunk belongs to it.
    private var afterCR = false
    let maxLine: Int

    init(maxLine: Int = LineSplitter.defaultMaxLine) {
        self.maxLine = maxLine
    }

    /// Feeds bytes; returns the complete lines (and over-long pieces) they finished.
    mutating func feed(_ bytes: [UInt8]) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        for byte in bytes {
            if afterCR {
                afterCR = false
                if byte == 0x0A { continue }
            }
            switch byte {
            case 0x0A:
                lines.append(partial)
                partial.removeAll(keepingCapacity: true)
            case 0x0D:
                lines.append(partial)
                partial.removeAll(keepingCapacity: true)
                afterCR = true
            default:
                partial.append(byte)
                if partial.count > maxLine { lines.append(takePiece()) }
            }
        }
        return lines
    }

    /// The unterminated last line, if any.
    mutating func finish() -> [UInt8]? {
        defer { partial = [] }
        return partial.isEmpty ? nil : partial
    }

    /// Takes the first `maxLine` bytes, or fewer so a multi-byte UTF-8 character is not split across pieces.
    private mutating func takePiece() -> [UInt8] {
        var cut = maxLine
        var back = 0
        while back < 3, cut - back - 1 > 0, partial[cut - back - 1] & 0xC0 == 0x80 { back += 1 }
        let lead = partial[cut - back - 1]
        let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
        if length > back + 1 { cut -= back + 1 }
        let piece = Array(partial[..<cut])
        partial.removeSubrange(..<cut)
        return piece
    }
}
