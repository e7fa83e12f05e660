import CMicroHTTPD
import Glibc

extension RequestHead {
    /// The head of the request on `connection`, read from libmicrohttpd once: every header field, repeats included,
    /// the query and whether the target arrived whole.
    ///
    /// libmicrohttpd wrote a NUL over the space that ended the target, and `url` and the target kept by
    /// `keepTarget(_:on:)` both start where the target did, so the target held no NUL of its own exactly when the
    /// version begins right after the kept length.
    init(
        of connection: OpaquePointer, url: UnsafePointer<CChar>, method: UnsafePointer<CChar>,
        version: UnsafePointer<CChar>
    ) {
        var target: UnsafePointer<CChar>?
        var length = 0
        let kept = MHD_lookup_connection_value_n(connection, .POSTDATA_KIND, nil, 0, &target, &length) == .YES
        let fields = FieldCollector()
        let query = QueryCollector()
        withExtendedLifetime((fields, query)) {
            _ = MHD_get_connection_values(
                connection, .HEADER_KIND, HTTPServer.collectField, Unmanaged.passUnretained(fields).toOpaque())
            _ = MHD_get_connection_values(
                connection, .GET_ARGUMENT_KIND, HTTPServer.collectQueryArgument,
                Unmanaged.passUnretained(query).toOpaque())
        }
        self.init(
            method: String(cString: method), path: String(cString: url), query: query.arguments,
            version: String(cString: version), targetIsValid: kept && target == url && url + length + 1 == version,
            fields: fields.fields)
    }

    /// Keeps the request target, before libmicrohttpd cuts it into path and query, if it is valid as far as it can be
    /// seen here (`isValidTarget`). libmicrohttpd hands over C strings, so a NUL byte sent in the target would
    /// silently end it; `init(of:url:method:version:)` finds such a NUL by the length kept here. The target is kept
    /// as the connection's one nameless POSTDATA value, a kind sandboxd has no other use for (it lives in the
    /// request's pool).
    static func keepTarget(_ uri: UnsafePointer<CChar>, on connection: OpaquePointer) {
        let length = strlen(uri)
        if isValidTarget(UnsafeRawBufferPointer(start: uri, count: length)) {
            _ = MHD_set_connection_value_n(connection, .POSTDATA_KIND, nil, 0, uri, length)
        }
    }
}

/// Header fields as `MHD_get_connection_values` hands them over: names and values as sent, in order.
final class FieldCollector {
    private(set) var fields = HeaderFields(reservingBytes: 512, fields: 12)

    func add(key: UnsafePointer<CChar>, value: UnsafePointer<CChar>?) {
        let bytes = { (text: UnsafePointer<CChar>) in UnsafeRawBufferPointer(start: text, count: strlen(text)) }
        fields.append(name: bytes(key), value: value.map(bytes) ?? UnsafeRawBufferPointer(start: nil, count: 0))
    }
}

/// Query arguments as `MHD_get_connection_values` hands them over (still percent-encoded: see
/// `HTTPServer.keepEscaped`), decoded once: bytes that are not UTF-8 become U+FFFD, a malformed escape makes the whole
/// key or value empty, and a repeated key keeps its last value.
final class QueryCollector {
    private(set) var arguments: [String: String] = [:]

    func add(key: UnsafePointer<CChar>, value: UnsafePointer<CChar>?) {
        arguments[Self.decode(key)] = value.map(Self.decode) ?? ""
    }

    private static func decode(_ text: UnsafePointer<CChar>) -> String {
        String(decoding: PercentDecoding.decode(String(cString: text)) ?? [], as: UTF8.self)
    }
}
