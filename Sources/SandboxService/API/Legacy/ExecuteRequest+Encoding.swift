// How FastAPI (0.138, on Python's `email` and `json` modules) decides that a body is JSON and turns its bytes into
// text. The legacy execute endpoints copy it exactly, so a body the reference refuses is refused here too.
extension ExecuteRequest {
    /// True for `application/json` and `application/<anything>+json`, in any letter case, with any parameters.
    ///
    /// FastAPI reads the type with `email.message.Message.get_content_type()`: the part before the first `;`,
    /// stripped and lower-cased, and `text/plain` unless it has exactly one `/`. An empty or absent type is not JSON.
    static func isJSON(contentType: String?) -> Bool {
        guard let contentType else { return false }
        var type = Array(contentType.utf8.prefix { $0 != UInt8(ascii: ";") })
        while let last = type.last, isPythonSpace(last) { type.removeLast() }
        let start = type.firstIndex { !isPythonSpace($0) } ?? type.endIndex
        let lowered = type[start...].map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 | 0x20 : $0 }
        let parts = lowered.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].elementsEqual("application".utf8) else { return false }
        return parts[1].elementsEqual("json".utf8) || parts[1].suffix(5).elementsEqual("+json".utf8)
    }

    /// The ASCII characters Python's `str.strip()` removes. (Python also strips U+0085 and U+00A0, which it sees as
    /// single bytes of a Latin-1 header; sandboxd reads header values as UTF-8, where those bytes are not
    /// characters, and keeps them.)
    private static func isPythonSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (0x09...0x0D).contains(byte) || (0x1C...0x1F).contains(byte)
    }

    /// `body` as UTF-8 text, decoded the way Python's `json.loads` decodes bytes; nil where Python raises (which
    /// FastAPI answers with a 400).
    ///
    /// The encoding comes from `json.detect_encoding`: a UTF-32, UTF-16 or UTF-8 byte order mark (removed), else the
    /// pattern of zero bytes in the first four, else UTF-8. Python decodes with `surrogatepass`, so an unpaired
    /// surrogate is accepted; a Swift string cannot hold one, so it becomes U+FFFD (as a `\ud800` escape does).
    static func jsonText(_ body: [UInt8]) -> [UInt8]? {
        let bytes = body[...]
        if bytes.starts(with: [0x00, 0x00, 0xFE, 0xFF]) { return utf32(bytes.dropFirst(4), bigEndian: true) }
        if bytes.starts(with: [0xFF, 0xFE, 0x00, 0x00]) { return utf32(bytes.dropFirst(4), bigEndian: false) }
        if bytes.starts(with: [0xFE, 0xFF]) { return utf16(bytes.dropFirst(2), bigEndian: true) }
        if bytes.starts(with: [0xFF, 0xFE]) { return utf16(bytes.dropFirst(2), bigEndian: false) }
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { return utf8(bytes.dropFirst(3)) }
        if bytes.count >= 4 {
            if bytes[0] == 0 { return bytes[1] != 0 ? utf16(bytes, bigEndian: true) : utf32(bytes, bigEndian: true) }
            if bytes[1] == 0 {
                return bytes[2] != 0 || bytes[3] != 0 ? utf16(bytes, bigEndian: false) : utf32(bytes, bigEndian: false)
            }
        } else if bytes.count == 2 {
            if bytes[0] == 0 { return utf16(bytes, bigEndian: true) }
            if bytes[1] == 0 { return utf16(bytes, bigEndian: false) }
        }
        return utf8(bytes)
    }

    /// Python reports a JSON error's position in characters of the decoded text; `JSONParser` in bytes of `text`.
    static func characterOffset(in text: [UInt8], ofByte offset: Int) -> Int {
        text[..<min(offset, text.count)].count { $0 & 0xC0 != 0x80 }
    }

    private static let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]

    /// Python's strict UTF-8 (no overlong forms, nothing past U+10FFFF, no truncated sequence), except that encoded
    /// surrogates pass (as U+FFFD).
    private static func utf8(_ bytes: ArraySlice<UInt8>) -> [UInt8]? {
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let lead = bytes[index]
            guard lead >= 0x80 else {
                text.append(lead)
                index += 1
                continue
            }
            let length: Int
            var second: ClosedRange<UInt8> = 0x80...0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0: (length, second) = (3, 0xA0...0xBF)
            case 0xE1...0xEF: length = 3
            case 0xF0: (length, second) = (4, 0x90...0xBF)
            case 0xF1...0xF3: length = 4
            case 0xF4: (length, second) = (4, 0x80...0x8F)
            default: return nil
            }
            guard bytes.endIndex - index >= length, second.contains(bytes[index + 1]),
                bytes[(index + 2)..<(index + length)].allSatisfy({ (0x80...0xBF).contains($0) })
            else { return nil }
            if lead == 0xED && bytes[index + 1] >= 0xA0 {
                text += replacement
            } else {
                text += bytes[index..<(index + length)]
            }
            index += length
        }
        return text
    }

    private static func utf16(_ bytes: ArraySlice<UInt8>, bigEndian: Bool) -> [UInt8]? {
        guard bytes.count % 2 == 0 else { return nil }
        var units: [UInt16] = []
        units.reserveCapacity(bytes.count / 2)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let (first, second) = (UInt16(bytes[index]), UInt16(bytes[index + 1]))
            units.append(bigEndian ? first << 8 | second : second << 8 | first)
            index += 2
        }
        var text: [UInt8] = []
        text.reserveCapacity(units.count)
        var position = 0
        while position < units.count {
            let unit = units[position]
            position += 1
            if (0xD800..<0xDC00).contains(unit), position < units.count, (0xDC00..<0xE000).contains(units[position]) {
                let low = units[position]
                position += 1
                append(0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00), to: &text)
            } else {
                append(UInt32(unit), to: &text)
            }
        }
        return text
    }

    private static func utf32(_ bytes: ArraySlice<UInt8>, bigEndian: Bool) -> [UInt8]? {
        guard bytes.count % 4 == 0 else { return nil }
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count / 4)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let (b0, b1, b2, b3) = (
                UInt32(bytes[index]), UInt32(bytes[index + 1]), UInt32(bytes[index + 2]), UInt32(bytes[index + 3])
            )
            let value = bigEndian ? b0 << 24 | b1 << 16 | b2 << 8 | b3 : b3 << 24 | b2 << 16 | b1 << 8 | b0
            guard value <= 0x10FFFF else { return nil }
            append(value, to: &text)
            index += 4
        }
        return text
    }

    /// Appends the UTF-8 form of a code point; a surrogate becomes U+FFFD.
    private static func append(_ value: UInt32, to text: inout [UInt8]) {
        guard let scalar = Unicode.Scalar(value) else {
            text += replacement
            return
        }
        UTF8.encode(scalar) { text.append($0) }
    }
}
