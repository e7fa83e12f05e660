/// A JSON document that keeps object key order and tells booleans from numbers, for strict request validation
/// (FastAPI-style) and for building responses without a `Codable` type per shape.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case (.bool(let a), .bool(let b)): a == b
        case (.number(let a), .number(let b)): a == b
        case (.string(let a), .string(let b)): a == b
        case (.array(let a), .array(let b)): a == b
        case (.object(let a), .object(let b)): a.map(\.0) == b.map(\.0) && a.map(\.1) == b.map(\.1)
        default: false
        }
    }

    /// The value of `key` in an object; nil for other values or a missing key.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.last { $0.0 == key }?.1
    }

    /// Parses `bytes` as Python's `json.loads` would; nil if they are not one JSON document.
    public static func parse(_ bytes: [UInt8]) -> JSONValue? {
        try? JSONParser.parse(bytes)
    }

    /// Compact UTF-8 JSON. The output is sized exactly before it is written, so a large document (a command's
    /// captured output) costs one allocation of its final size.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(encodedSize)
        write(to: &out)
        return out
    }

    private var encodedSize: Int {
        switch self {
        case .null: 4
        case .bool(let value): value ? 4 : 5
        case .number(let value): Self.format(value).utf8.count
        case .string(let value): Self.stringSize(value)
        case .array(let values): 2 + max(0, values.count - 1) + values.reduce(0) { $0 + $1.encodedSize }
        case .object(let members):
            2 + max(0, members.count - 1) + members.reduce(0) { $0 + Self.stringSize($1.0) + 1 + $1.1.encodedSize }
        }
    }

    private static func stringSize(_ string: String) -> Int {
        var size = 2
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x0A, 0x0D, 0x09: size += 2
            case 0..<0x20: size += 6
            default: size += 1
            }
        }
        return size
    }

    private func write(to out: inout [UInt8]) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let value): out += Array((value ? "true" : "false").utf8)
        case .number(let value): out += Array(Self.format(value).utf8)
        case .string(let value): Self.writeString(value, to: &out)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                value.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (index, (key, value)) in members.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Integers print without a fraction, as Python's json does for ints; other values round-trip.
    private static func format(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    private static func writeString(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var utf8 = string.utf8
        if utf8.withContiguousStorageIfAvailable({ appendEscaped($0, to: &out) }) == nil {
            utf8 = String(string).utf8
            appendEscaped(Array(utf8), to: &out)
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Appends UTF-8 text as the inside of a JSON string: quotes, backslashes and control characters escaped, runs
    /// of other bytes copied at once.
    static func appendEscaped(_ text: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        var runStart = 0
        for index in 0..<text.count {
            let byte = text[index]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: text[runStart..<index]))
            runStart = index + 1
            out.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(byte)
            case 0x0A: out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "t"))
            default:
                out.append(UInt8(ascii: "u"))
                out.append(UInt8(ascii: "0"))
                out.append(UInt8(ascii: "0"))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 15)])
            }
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: text[runStart...]))
    }

    static func appendEscaped(_ text: [UInt8], to out: inout [UInt8]) {
        text.withUnsafeBufferPointer { appendEscaped($0, to: &out) }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)
}

extension JSONValue: ExpressibleByDictionaryLiteral, ExpressibleByStringLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(elements) }
    public init(stringLiteral value: String) { self = .string(value) }
}
