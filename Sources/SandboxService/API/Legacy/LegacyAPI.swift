/// The python-runtime-sandbox contract: `/`, `/execute`, `/execute/stream`, `/upload`, `/download`, `/list`,
/// `/exists`, with the reference's paths, fields, status codes and error shapes, over the core.
public struct LegacyAPI: Sendable {
    let sandbox: Sandbox
    /// Cap and default for command timeouts, in seconds.
    let maxTimeout: Double

    public init(sandbox: Sandbox, maxTimeout: Double) {
        self.sandbox = sandbox
        self.maxTimeout = maxTimeout
    }

    public func register(in router: inout Router) {
        let health = HTTPResponse.json(["status": "ok", "message": "Sandbox Runtime is active."])
        router.add("GET", "/") { _, _ in .response(health) }
        router.add("POST", "/execute") { request, _ in execute(request) }
        router.add("POST", "/execute/stream") { request, _ in executeStream(request) }
        router.add("POST", "/upload", body: .upload(field: "file", open: openUpload)) { _, outcome in
            uploadFinished(outcome)
        }
        router.add("GET", "/download/{path...}") { request, _ in download(request.parameters["path"]) }
        router.add("GET", "/list/{path...}") { request, _ in list(request.parameters["path"]) }
        router.add("GET", "/exists/{path...}") { request, _ in exists(request.parameters["path"]) }
    }
}
