import FoundationEssentials

/// The endpoints about the server itself: `GET /v1/health` (`{"status": "ok", "uptime_seconds": N}`, 503 once
/// shutdown began) and `GET /v1/metadata` (the sandbox's `SANDBOX_*` environment variables).
extension V1API {
    public static let defaultMetadataPrefix = "SANDBOX_"

    /// Name fragments that mark a variable as a credential; such variables are never served, whatever their prefix.
    /// The Go daemon's list, which covers TOKEN, SECRET, PASSWORD, CREDENTIAL and KEY and a few more.
    static let sensitiveMarkers = [
        "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CRED", "KEY", "AUTH", "BEARER", "PRIVATE", "CERT",
    ]

    func registerHealth(in router: inout Router) {
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
