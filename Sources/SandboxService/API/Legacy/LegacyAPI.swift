/// The python-runtime-sandbox contract: `/`, `/execute`, `/execute/stream`, `/upload`, `/download`, `/list`,
/// `/exists`, with the reference's paths, fields, status codes and error shapes.
public struct LegacyAPI: Sendable {
    let root: SandboxRoot
    /// Every file access of the file endpoints.
    let files: FileTree
    let runner: CommandRunner
    /// Cap and default for command timeouts, in seconds.
    let maxTimeout: Double
    /// The environment every command gets, as `KEY=value`.
    let environment: [String]
    /// Bytes of stdout and of stderr `/execute` keeps per command.
    let maxOutputBytes: Int
    /// Bytes of a request body read into memory (the JSON of `/execute`); 413 beyond.
    let maxBodyBytes: Int
    /// Bytes buffered for a slow `/execute/stream` client before the command's output is no longer read.
    let streamBufferBytes: Int

    /// - Parameters:
    ///   - maxBodyBytes: the largest body read into memory (`--max-body-bytes`).
    ///   - streamBufferBytes: output buffered for one `/execute/stream` client before the command is paused
    ///     (`--stream-buffer-bytes`).
    public init(
        root: SandboxRoot, runner: CommandRunner, maxTimeout: Double, environment: [String],
        maxOutputBytes: Int = 16 << 20, maxBodyBytes: Int, streamBufferBytes: Int
    ) {
        self.root = root
        files = FileTree(root: root)
        self.runner = runner
        self.maxTimeout = maxTimeout
        self.environment = environment
        self.maxOutputBytes = maxOutputBytes
        self.maxBodyBytes = maxBodyBytes
        self.streamBufferBytes = streamBufferBytes
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

extension Reply {
    static func failure(_ error: APIError) -> Reply { .response(error.response) }
}
