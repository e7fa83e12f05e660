/// What a handler returns: a response now, or one it completes later.
public enum Reply: Sendable {
    case response(HTTPResponse)
    case pending(PendingResponse)
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

extension BodyMode {
    /// Streamed to disk (an upload or a file write), as opposed to buffered in memory.
    var isStreamed: Bool {
        switch self {
        case .upload, .stream: true
        case .buffered, .perRequest: false
        }
    }
}

extension Optional where Wrapped == BodyMode {
    var isStreamed: Bool { self?.isStreamed ?? false }
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

/// Maps method and path to a handler. Paths are matched exactly, or by prefix for `/name/{path}` routes.
public struct Router: Sendable {
    public struct Route: Sendable {
        public enum Pattern: Sendable {
            case exact(String)
            /// Matches the prefix and captures the rest of the path.
            case prefix(String)
        }
        public var method: String
        public var pattern: Pattern
        public var body: BodyMode
        public var handler: @Sendable (HTTPRequest, UploadOutcome?) -> Reply
        /// For a prefix route, which captured rests it serves (all when nil): the route is then neither matched nor
        /// counted in `Allow` for the others.
        public var accepts: (@Sendable (String) -> Bool)?

        public init(
            _ method: String, _ pattern: Pattern, body: BodyMode = .buffered(limit: 1 << 20),
            accepts: (@Sendable (String) -> Bool)? = nil,
            handler: @escaping @Sendable (HTTPRequest, UploadOutcome?) -> Reply
        ) {
            self.method = method
            self.pattern = pattern
            self.body = body
            self.accepts = accepts
            self.handler = handler
        }

        /// The pattern as text (`/download/{path}`), for metrics labels.
        public var label: String {
            switch pattern {
            case .exact(let path): path
            case .prefix(let prefix): prefix + "{path}"
            }
        }

        func capture(_ path: String) -> String? {
            switch pattern {
            case .exact(let exact): return path == exact ? "" : nil
            // By UTF-8 bytes: as Characters, a path whose rest starts with a combining mark (`/exists/\u{301}x`) would
            // fuse it with the prefix's slash and miss.
            case .prefix(let prefix):
                guard path.utf8.starts(with: prefix.utf8) else { return nil }
                let rest = String(decoding: path.utf8.dropFirst(prefix.utf8.count), as: UTF8.self)
                return accepts?(rest) ?? true ? rest : nil
            }
        }
    }

    public enum Match {
        case route(Route, pathParameter: String)
        case failure(APIError)
    }

    public private(set) var routes: [Route] = []

    public init() {}

    public mutating func add(_ route: Route) { routes.append(route) }

    /// The route for `method` and `path`: HEAD is served by GET routes; a path known under other methods gives 405
    /// with `Allow`, an unknown path 404.
    public func match(method: String, path: String) -> Match {
        let effectiveMethod = method == "HEAD" ? "GET" : method
        var allowed: [String] = []
        for route in routes {
            guard let parameter = route.capture(path) else { continue }
            if route.method == effectiveMethod { return .route(route, pathParameter: parameter) }
            allowed.append(route.method)
        }
        guard !allowed.isEmpty else { return .failure(.notFound) }
        if allowed.contains("GET") { allowed.append("HEAD") }
        return .failure(.detail(405, "Method Not Allowed", headers: [("Allow", allowed.joined(separator: ", "))]))
    }
}
