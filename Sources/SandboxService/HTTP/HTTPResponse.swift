/// A response ready to be handed to libmicrohttpd.
public struct HTTPResponse: Sendable {
    public enum Body: Sendable {
        case bytes([UInt8])
        /// `size` bytes of a regular file from `offset`, sent from the descriptor (sendfile); the response owns `fd`.
        case file(fd: Int32, offset: UInt64 = 0, size: UInt64)
        /// Server-Sent Events, written while the response is being sent.
        case stream(EventStream)
    }

    public var status: Int
    public var headers: [(String, String)]
    public var body: Body

    public init(status: Int, headers: [(String, String)] = [], body: Body) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A 200 `text/event-stream` answer that proxies must not buffer.
    public static func eventStream(_ stream: EventStream) -> HTTPResponse {
        HTTPResponse(
            status: 200,
            headers: [
                ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"),
            ],
            body: .stream(stream))
    }

    /// A JSON response.
    public static func json(_ value: JSONValue, status: Int = 200, headers: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(
            status: status, headers: [("Content-Type", "application/json")] + headers, body: .bytes(value.encoded()))
    }
}

/// A request as handlers see it: the body is already received (or streamed to an upload sink).
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path, percent-decoded once, without the query string.
    public var path: String
    /// What the route's pattern captured (`{id}`, `{path...}`), percent-decoded once.
    public var parameters: PathParameters
    /// The header fields; `headers["content-type"]` is the first value of a field, by lower-cased name.
    public var headers: HeaderFields
    /// Query arguments, percent-decoded.
    public var query: [String: String]
    public var body: [UInt8]

    public init(
        method: String, path: String, parameters: PathParameters = PathParameters(), headers: HeaderFields = [:],
        query: [String: String] = [:], body: [UInt8] = []
    ) {
        self.method = method
        self.path = path
        self.parameters = parameters
        self.headers = headers
        self.query = query
        self.body = body
    }
}
