import FoundationEssentials

/// The v1 endpoints about the server itself: `GET /v1/health` (`{"status": "ok", "uptime_seconds": N}`, 503 once
/// shutdown began) and `GET /v1/metadata` (the sandbox's `SANDBOX_*` environment variables), as the Go daemon
/// serves them.
public struct HealthV1API: Sendable {
    public static let defaultMetadataPrefix = "SANDBOX_"

    /// Name fragments that mark a variable as a credential; such variables are never served, whatever their prefix.
    /// The Go daemon's list, which covers TOKEN, SECRET, PASSWORD, CREDENTIAL and KEY and a few more.
    static let sensitiveMarkers = [
        "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CRED", "KEY", "AUTH", "BEARER", "PRIVATE", "CERT",
    ]

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
        router.add("GET", "/v1/health") { _, _ in health() }
        router.add("GET", "/v1/metadata") { _, _ in .response(.json(metadata)) }
    }

    /// `GET /v1/health`: `{"status": "ok", "uptime_seconds": N}`, or 503 once the server is stopping.
    func health() -> Reply {
        guard !sandbox.isStopping else { return .failure(V1Error.answer(.unavailable, "sandboxd is shutting down")) }
        let uptime = (ContinuousClock.now - started).components.seconds
        return .response(.json(["status": "ok", "uptime_seconds": .number(Double(uptime))]))
    }

    /// `{"env": {…}}`: the variables whose name starts with `prefix` (case-sensitive) and contains no sensitive
    /// marker (case-insensitive), sorted by name.
    static func metadata(environment: [String: String], prefix: String) -> JSONValue {
        let prefix = Array((prefix.isEmpty ? defaultMetadataPrefix : prefix).utf8)
        let served = environment.filter { name, _ in name.utf8.starts(with: prefix) && !isSensitive(name) }
            .sorted { Array($0.key.utf8).lexicographicallyPrecedes($1.key.utf8) }
        return ["env": .object(served.map { ($0.key, .string($0.value)) })]
    }

    static func isSensitive(_ name: String) -> Bool {
        let upper = name.uppercased()
        return sensitiveMarkers.contains { upper.contains($0) }
    }
}
