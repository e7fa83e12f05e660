/// The python-runtime-sandbox contract: `/`, `/execute`, `/execute/stream`, `/upload`, `/download`, `/list`,
/// `/exists`, with the reference's paths, fields, status codes and error shapes, over the core.
public struct LegacyAPI: Sendable {
    let sandbox: Sandbox
    /// Cap and default for command timeouts, in seconds.
    let maxTimeout: Double
    /// Bytes of a request body read into memory (the JSON of `/execute`); 413 beyond.
    let maxBodyBytes: Int

    /// - Parameters:
    ///   - maxTimeout: cap and default for command timeouts, in seconds (`--max-timeout`).
    ///   - maxBodyBytes: the largest body read into memory (`--max-body-bytes`).
    public init(sandbox: Sandbox, maxTimeout: Double, maxBodyBytes: Int) {
        self.sandbox = sandbox
        self.maxTimeout = maxTimeout
        self.maxBodyBytes = maxBodyBytes
    }

    public func register(in router: inout Router) {
        let health = HTTPResponse.json(["status": "ok", "message": "Sandbox Runtime is active."])
        let body = BodyMode.buffered(limit: maxBodyBytes)
        router.add(.init("GET", "/", body: body) { _, _ in .response(health) })
        router.add(.init("POST", "/execute", body: body) { request, _ in execute(request) })
        router.add(.init("POST", "/execute/stream", body: body) { request, _ in executeStream(request) })
        router.add(
            .init("POST", "/upload", body: .upload(field: "file", open: openUpload)) { _, outcome in
                uploadFinished(outcome)
            })
        router.add(
            .init("GET", "/download/{path...}", body: body) { request, _ in download(request.parameters["path"]) })
        router.add(.init("GET", "/list/{path...}", body: body) { request, _ in list(request.parameters["path"]) })
        router.add(.init("GET", "/exists/{path...}", body: body) { request, _ in exists(request.parameters["path"]) })
    }
}
