/// What a handler returns: a response now, or one it completes later.
public enum Reply: Sendable {
    case response(HTTPResponse)
    case pending(PendingResponse)

    /// The error's answer, now.
    static func failure(_ error: APIError) -> Reply { .response(error.response) }
}

/// How the bridge receives a route's request body.
public enum BodyMode: Sendable {
    /// The body is read into memory up to `limit` bytes (413 beyond).
    case buffered(limit: Int)
    /// `multipart/form-data`: the part named `field` is streamed into the sink `open` returns for its filename;
    /// other parts are skipped.
    case upload(field: String, open: @Sendable (_ filename: String) throws(APIError) -> any UploadSink)
    /// The raw body is streamed into the sink `open` returns, opened when the request's headers are in.
    case stream(open: @Sendable () throws(APIError) -> any UploadSink)
    /// Chosen per request from its head (method, path, headers, query; the body is not in yet), e.g. raw or multipart
    /// by `Content-Type`. A thrown error is the answer, sent without reading the body.
    case perRequest(@Sendable (HTTPRequest) throws(APIError) -> BodyMode)
}

/// Receives the bytes of one uploaded file.
public protocol UploadSink: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer) throws(APIError)
    /// The upload is complete: make it visible.
    func commit() throws(APIError)
    /// The upload failed or was cut: leave nothing behind. Safe to call after `commit`.
    func abort()
}

/// How an upload went, as the handler sees it.
public enum UploadOutcome: Sendable {
    /// Committed; `filename` is the multipart part's, empty for a raw (`.stream`) body.
    case stored(filename: String)
    case missingField
    case failed(APIError)
}

/// Maps method and path to a handler. Each route has a pattern with captures (`/v1/processes/{id}/stdin`,
/// `/download/{path...}`); its handler receives what they captured. Which methods a path has, and so the 405 and its
/// `Allow`, is computed here from the routes whose pattern matches it.
public struct Router: Sendable {
    public struct Route: Sendable {
        public var method: String
        public var pattern: RoutePattern
        public var body: BodyMode
        public var handler: @Sendable (HTTPRequest, UploadOutcome?) -> Reply

        public init(
            _ method: String, _ pattern: RoutePattern, body: BodyMode = .buffered(limit: 1 << 20),
            handler: @escaping @Sendable (HTTPRequest, UploadOutcome?) -> Reply
        ) {
            self.method = method
            self.pattern = pattern
            self.body = body
            self.handler = handler
        }

        /// The pattern as the OpenAPI document writes it (`/download/{path}`), for metrics labels.
        public var label: String { pattern.template }
    }

    public enum Match {
        case route(Route, parameters: PathParameters)
        case failure(APIError)
    }

    public private(set) var routes: [Route] = []
    /// Bytes of a body a route reads into memory unless it says otherwise (`--max-body-bytes`); 413 beyond.
    public let maxBodyBytes: Int

    public init(maxBodyBytes: Int = 1 << 20) {
        self.maxBodyBytes = maxBodyBytes
    }

    public mutating func add(_ route: Route) { routes.append(route) }

    /// Adds a route whose body is read into memory up to `maxBodyBytes`, unless `body` says how it is received.
    public mutating func add(
        _ method: String, _ pattern: RoutePattern, body: BodyMode? = nil,
        handler: @escaping @Sendable (HTTPRequest, UploadOutcome?) -> Reply
    ) {
        add(Route(method, pattern, body: body ?? .buffered(limit: maxBodyBytes), handler: handler))
    }

    /// The route for `method` and `path`: HEAD is served by GET routes; a path known under other methods gives 405
    /// with `Allow` (the methods in the order their routes were added, HEAD after them where GET is one), an unknown
    /// path 404.
    public func match(method: String, path: String) -> Match {
        let effectiveMethod = method == "HEAD" ? "GET" : method
        var allowed: [String] = []
        for route in routes {
            guard let parameters = route.pattern.match(path) else { continue }
            if route.method == effectiveMethod { return .route(route, parameters: parameters) }
            allowed.append(route.method)
        }
        guard !allowed.isEmpty else { return .failure(.notFound) }
        if allowed.contains("GET") { allowed.append("HEAD") }
        return .failure(.detail(405, "Method Not Allowed", headers: [("Allow", allowed.joined(separator: ", "))]))
    }
}
