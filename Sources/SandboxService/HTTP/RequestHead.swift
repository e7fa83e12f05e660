/// A request head as libmicrohttpd parsed it, checked against the rules of RFC 9112 that libmicrohttpd 0.9.75 leaves
/// to the application: the message shapes request smuggling relies on (ambiguous framing, a field name that one
/// parser reads and the next ignores, a target cut short) and the Host field.
///
/// libmicrohttpd's own strict mode (`MHD_OPTION_STRICT_FOR_CLIENT`) is not used: in 0.9.75, level 1 refuses an HTTP/1.1
/// request without Host but writes its 400 head twice, and closes a target with a space in it without an answer;
/// whitespace before a field's colon is refused only at level -1, which the manual documents as the most tolerant
/// and which turns the other two checks off. So every check is here, answered in sandboxd's shape.
struct RequestHead {
    var method = "GET"
    /// The path as sent (percent-encoded), without the query.
    var path = "/"
    /// Query arguments, percent-decoded; a repeated key keeps its last value.
    var query: [String: String] = [:]
    /// The HTTP version as sent: `HTTP/1.0`, or `HTTP/1.1` (libmicrohttpd takes 1.2 to 1.9 as 1.1).
    var version: String
    /// False when the request target held a byte that RFC 9112 does not allow in it (see `isValidTarget`).
    var targetIsValid: Bool
    /// Every header field in the order sent, repeats included: name (as sent) and value (without leading whitespace).
    var fields: HeaderFields

    /// What the first Content-Length field (the one libmicrohttpd's own lookup finds) declares.
    enum DeclaredLength: Equatable {
        case none
        case bytes(Int)
        /// Not a plain decimal number of at most 18 digits.
        case invalid
    }

    var declaredLength: DeclaredLength {
        guard let field = fields.first(where: { HeaderFields.isNamed($0.name, Self.contentLength) }) else {
            return .none
        }
        let digits = Self.trimmed(field.value)
        guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ (48...57).contains($0) }) else {
            return .invalid
        }
        return .bytes(digits.reduce(0) { $0 * 10 + Int($1 - 48) })
    }

    /// The answer refusing this head before any of its body is read, or nil if the request may be served. Every
    /// refusal closes the connection: whatever follows the head cannot be told apart from a next request.
    func refusal() -> APIError? {
        guard targetIsValid else { return Self.refuse("Invalid request target") }
        var hosts = 0
        var host: ArraySlice<UInt8>?
        var length: ArraySlice<UInt8>?
        var lengthsDiffer = false
        var codings: [ArraySlice<UInt8>] = []
        for field in fields {
            // Whitespace before the colon ends up in the name (`Transfer-Encoding :`), where no lookup finds it.
            guard !field.name.isEmpty, field.name.allSatisfy({ Self.tokenBytes[Int($0)] }) else {
                return Self.refuse("Invalid header field name")
            }
            guard !field.value.contains(where: Self.isControlInValue) else {
                return Self.refuse("Invalid header field value")
            }
            if HeaderFields.isNamed(field.name, Self.host) {
                hosts += 1
                host = host ?? field.value
            } else if HeaderFields.isNamed(field.name, Self.contentLength) {
                lengthsDiffer = lengthsDiffer || (length.map { $0 != field.value } ?? false)
                length = length ?? field.value
            } else if HeaderFields.isNamed(field.name, Self.transferEncoding) {
                codings.append(field.value)
            }
        }
        guard hosts <= 1 else { return Self.refuse("More than one Host header") }
        guard hosts == 1 || version == "HTTP/1.0" else { return Self.refuse("Missing Host header") }
        if let host, !Self.trimmed(host).allSatisfy({ Self.hostBytes[Int($0)] }) {
            return Self.refuse("Invalid Host header")
        }
        if !codings.isEmpty { return transferEncodingRefusal(codings, withLength: length != nil) }
        if lengthsDiffer { return Self.refuse("Conflicting Content-Length headers") }
        return nil
    }

    /// libmicrohttpd reads a body as chunked only when the first Transfer-Encoding field is exactly `chunked`; for any
    /// other value it waits for the connection to close, and it ignores a Content-Length beside it. sandboxd accepts
    /// `chunked` alone: a single other coding is one it does not implement (501, RFC 9112 §6.1); anything else (a
    /// list, `chunked` not last or twice, Content-Length as well, HTTP/1.0) leaves the length to disagreement (400).
    private func transferEncodingRefusal(_ values: [ArraySlice<UInt8>], withLength: Bool) -> APIError? {
        guard version != "HTTP/1.0" else { return Self.refuse("Transfer-Encoding in an HTTP/1.0 request") }
        guard !withLength else { return Self.refuse("Transfer-Encoding and Content-Length together") }
        if values.count == 1 && HeaderFields.isNamed(values[0], Self.chunked) { return nil }
        let codings = values.flatMap { $0.split(separator: UInt8(ascii: ",")) }.map(Self.trimmed).filter {
            !$0.isEmpty
        }
        if codings.count == 1, let coding = codings.first, coding.allSatisfy({ Self.tokenBytes[Int($0)] }),
            !HeaderFields.isNamed(coding, Self.chunked)
        {
            return Self.refuse(
                "Transfer coding '\(String(decoding: coding, as: UTF8.self))' is not implemented", status: 501)
        }
        return Self.refuse("Transfer-Encoding must be chunked alone")
    }

    private static func refuse(_ message: String, status: Int = 400) -> APIError {
        .detail(status, message, headers: [("Connection", "close")])
    }

    /// A request target may not hold a control byte, a space or DEL (RFC 9112 §3.2; a space would also make the
    /// request line split differently in different parsers). Bytes above 0x7F are let through: clients such as curl
    /// send UTF-8 paths unencoded.
    static func isValidTarget(_ target: UnsafeRawBufferPointer) -> Bool {
        !target.contains { $0 <= 0x20 || $0 == 0x7F }
    }

    private static let host = Array("host".utf8)
    private static let contentLength = Array("content-length".utf8)
    private static let transferEncoding = Array("transfer-encoding".utf8)
    private static let chunked = Array("chunked".utf8)

    /// RFC 9110 §5.6.2 `tchar`, by byte value.
    private static let tokenBytes = byteSet("!#$%&'*+-.^_`|~")
    /// What RFC 9112 §3.2's `uri-host [ ":" port ]` is made of (reg-name, IP literal, percent-encoding, port), by
    /// byte value; the grammar itself is not checked. An empty Host is allowed.
    private static let hostBytes = byteSet("-._~%!$&'()*+,;=:[]")

    private static func byteSet(_ others: String) -> [Bool] {
        (0..<256).map { value in
            let byte = UInt8(value)
            let alphanumeric =
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
            return alphanumeric || others.utf8.contains(byte)
        }
    }

    /// CR, LF and NUL are never allowed in a field value (RFC 9110 §5.5), nor other controls; HTAB is.
    private static func isControlInValue(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != 0x09) || byte == 0x7F
    }

    private static func trimmed(_ value: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let isText = { (byte: UInt8) in byte != 0x20 && byte != 0x09 }
        guard let first = value.firstIndex(where: isText), let last = value.lastIndex(where: isText) else { return [] }
        return value[first...last]
    }
}
