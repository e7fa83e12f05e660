import FoundationEssentials

/// agent-sandbox's sandboxd v1 REST surface (KEP-539.2) over the core, with the Go daemon's JSON shapes, status codes
/// and `{"code": …, "message": …}` errors (`V1Error`): files (`/v1/files/{path}`), processes as resources
/// (`/v1/processes`, `/v1/processes/{id}` and its endpoints), directory watches (`/v1/watch`), `/v1/health` and
/// `/v1/metadata`. One extension per resource.
public struct V1API: Sendable {
    let sandbox: Sandbox
    /// `/v1/metadata`'s answer, computed once: the environment does not change after start.
    let metadata: JSONValue
    let started = ContinuousClock.now

    /// - Parameters:
    ///   - sandbox: `/v1/health` answers 503 once its shutdown has begun: the server begins it before it stops
    ///     accepting connections, so a probe on an open connection sees 503 for the whole shutdown (the Go daemon's
    ///     `SetReady(false)`).
    ///   - metadataPrefix: only environment variables starting with it are served on `/v1/metadata`; blank means
    ///     `SANDBOX_`.
    ///   - environment: what `/v1/metadata` filters.
    public init(
        sandbox: Sandbox, metadataPrefix: String = Self.defaultMetadataPrefix,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.sandbox = sandbox
        metadata = Self.metadata(environment: environment, prefix: metadataPrefix)
    }

    public func register(in router: inout Router) {
        registerFiles(in: &router)
        registerHealth(in: &router)
        registerProcesses(in: &router)
        registerWatch(in: &router)
    }
}
