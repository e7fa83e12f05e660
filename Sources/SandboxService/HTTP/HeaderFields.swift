/// A request's header fields in the order sent, repeats included: names as sent and values without leading
/// whitespace, all in one buffer (a head costs two allocations, not two per field).
///
/// Looked up by lower-cased name, a field gives its first value, as `MHD_lookup_connection_value` and Starlette do. A
/// head holds a handful of fields and a request looks up one or two, so a lookup is a short scan rather than a
/// dictionary built for every request.
public struct HeaderFields: Sendable, RandomAccessCollection {
    private struct Span: Sendable {
        let name: Range<Int>
        let value: Range<Int>
    }

    private var bytes: [UInt8] = []
    private var spans: [Span] = []

    public init() {}

    /// Empty, with room for `bytes` bytes of names and values in `count` fields before it grows.
    init(reservingBytes bytes: Int, fields count: Int) {
        self.bytes.reserveCapacity(bytes)
        spans.reserveCapacity(count)
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { spans.count }

    public subscript(position: Int) -> (name: ArraySlice<UInt8>, value: ArraySlice<UInt8>) {
        (bytes[spans[position].name], bytes[spans[position].value])
    }

    /// The first value of the field named `lowercasedName` (any case in the request), as text.
    public subscript(lowercasedName: String) -> String? {
        guard let field = first(where: { Self.isNamed($0.name, lowercasedName.utf8) }) else { return nil }
        return String(decoding: field.value, as: UTF8.self)
    }

    mutating func append(name: some Collection<UInt8>, value: some Collection<UInt8>) {
        let nameStart = bytes.count
        bytes.append(contentsOf: name)
        let valueStart = bytes.count
        bytes.append(contentsOf: value)
        spans.append(Span(name: nameStart..<valueStart, value: valueStart..<bytes.count))
    }

    /// Whether `name` is `lowercasedName` in any case.
    static func isNamed(_ name: some Collection<UInt8>, _ lowercasedName: some Collection<UInt8>) -> Bool {
        name.count == lowercasedName.count
            && zip(name, lowercasedName).allSatisfy {
                (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 | 0x20 == $1 : $0 == $1
            }
    }
}

extension HeaderFields: ExpressibleByDictionaryLiteral {
    /// Fields in the literal's order (tests, and requests made in code).
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    public init(_ fields: some Sequence<(String, String)>) {
        for (name, value) in fields { append(name: name.utf8, value: value.utf8) }
    }
}
