/// A strict JSON parser with Python's `json.loads` semantics, which FastAPI applies to request bodies: no trailing
/// commas, no control characters inside strings, the last of duplicate keys wins, `NaN`/`Infinity` accepted, and a
/// failure reported with Python's message and byte position (FastAPI puts both in its 422).
struct JSONParser {
    struct Failure: Error, Equatable {
        var message: String
        var position: Int
    }

    private let bytes: [UInt8]
    private var index = 0
    /// Nesting limit: deeper documents fail instead of exhausting the stack.
    private static let maxDepth = 512

    /// Parses one document; whitespace around it is allowed, anything else after it is "Extra data".
    static func parse(_ bytes: [UInt8]) throws(Failure) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw Failure(message: "Extra data", position: parser.index) }
        return value
    }

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipWhitespace() {
        while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
    }

    private func fail(_ message: String, at position: Int? = nil) -> Failure {
        Failure(message: message, position: position ?? index)
    }

    private mutating func value(depth: Int) throws(Failure) -> JSONValue {
        guard depth < Self.maxDepth else { throw fail("Maximum nesting depth exceeded") }
        switch current {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t") where matches("true"): return .bool(true)
        case UInt8(ascii: "f") where matches("false"): return .bool(false)
        case UInt8(ascii: "n") where matches("null"): return .null
        case UInt8(ascii: "N") where matches("NaN"): return .number(.nan)
        case UInt8(ascii: "I") where matches("Infinity"): return .number(.infinity)
        case UInt8(ascii: "-") where matches("-Infinity"): return .number(-.infinity)
        case let byte? where byte == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte):
            return try number()
        default: throw fail("Expecting value")
        }
    }

    private mutating func matches(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        let found = literal.withUTF8Buffer { expected in bytes[index..<(index + count)].elementsEqual(expected) }
        if found { index += count }
        return found
    }

    private mutating func object(depth: Int) throws(Failure) -> JSONValue {
        index += 1
        var members: [(String, JSONValue)] = []
        var positions: [String: Int] = [:]
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            index += 1
            return .object([])
        }
        while true {
            guard current == UInt8(ascii: "\"") else {
                throw fail("Expecting property name enclosed in double quotes")
            }
            let key = try string()
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw fail("Expecting ':' delimiter") }
            index += 1
            skipWhitespace()
            let member = try value(depth: depth + 1)
            // Python keeps the last value of a repeated key, in the position of the first.
            if let position = positions[key] {
                members[position].1 = member
            } else {
                positions[key] = members.count
                members.append((key, member))
            }
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","):
                index += 1
                skipWhitespace()
            case UInt8(ascii: "}"):
                index += 1
                return .object(members)
            default: throw fail("Expecting ',' delimiter")
            }
        }
    }

    private mutating func array(depth: Int) throws(Failure) -> JSONValue {
        index += 1
        var values: [JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") {
            index += 1
            return .array([])
        }
        while true {
            values.append(try value(depth: depth + 1))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","):
                index += 1
                skipWhitespace()
            case UInt8(ascii: "]"):
                index += 1
                return .array(values)
            default: throw fail("Expecting ',' delimiter")
            }
        }
    }

    private mutating func number() throws(Failure) -> JSONValue {
        let start = index
        if current == UInt8(ascii: "-") { index += 1 }
        guard let first = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else {
            throw fail("Expecting value", at: start)
        }
        // A leading zero ends the integer part, as in Python ("01" is 0 then extra data).
        if first == UInt8(ascii: "0") { index += 1 } else { skipDigits() }
        if current == UInt8(ascii: "."), index + 1 < bytes.count, Self.isDigit(bytes[index + 1]) {
            index += 1
            skipDigits()
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            var lookahead = index + 1
            if lookahead < bytes.count, bytes[lookahead] == UInt8(ascii: "+") || bytes[lookahead] == UInt8(ascii: "-") {
                lookahead += 1
            }
            if lookahead < bytes.count, Self.isDigit(bytes[lookahead]) {
                index = lookahead
                skipDigits()
            }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        guard let number = Double(text) else { throw fail("Expecting value", at: start) }
        return .number(number)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }

    private mutating func skipDigits() {
        while let byte = current, Self.isDigit(byte) { index += 1 }
    }

    private mutating func string() throws(Failure) -> String {
        let start = index
        index += 1
        var scalars = String.UnicodeScalarView()
        var run = index
        while true {
            guard let byte = current else { throw fail("Unterminated string starting at", at: start) }
            switch byte {
            case UInt8(ascii: "\""):
                scalars.append(contentsOf: String(decoding: bytes[run..<index], as: UTF8.self).unicodeScalars)
                index += 1
                return String(scalars)
            case UInt8(ascii: "\\"):
                scalars.append(contentsOf: String(decoding: bytes[run..<index], as: UTF8.self).unicodeScalars)
                scalars.append(try escape())
                run = index
            case 0..<0x20:
                throw fail("Invalid control character at")
            default:
                index += 1
            }
        }
    }

    /// One escape sequence after `\`; a lone surrogate becomes U+FFFD (Python keeps it, but Swift strings cannot).
    private mutating func escape() throws(Failure) -> Unicode.Scalar {
        let start = index
        index += 1
        guard let byte = current else { throw fail("Unterminated string starting at", at: start) }
        index += 1
        switch byte {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            let high = try hex4(escapeStart: start)
            if (0xD800..<0xDC00).contains(high), matches("\\u") {
                let low = try hex4(escapeStart: index - 2)
                if (0xDC00..<0xE000).contains(low) {
                    return Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)) ?? "\u{FFFD}"
                }
                return Unicode.Scalar(low) ?? "\u{FFFD}"
            }
            return Unicode.Scalar(high) ?? "\u{FFFD}"
        default: throw fail("Invalid \\escape", at: start)
        }
    }

    private mutating func hex4(escapeStart: Int) throws(Failure) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("Invalid \\uXXXX escape", at: escapeStart) }
        var value: UInt32 = 0
        for byte in bytes[index..<(index + 4)] {
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw fail("Invalid \\uXXXX escape", at: escapeStart)
            }
            value = value << 4 | digit
        }
        index += 4
        return value
    }
}
