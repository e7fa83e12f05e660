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
    /// Bytes buffered for a slow `/execute/stream` client before the command's output is no longer read.
    let streamBufferBytes: Int

    /// - Parameter streamBufferBytes: output buffered for one `/execute/stream` client before the command is paused.
    public init(
        root: SandboxRoot, runner: CommandRunner, maxTimeout: Double, environment: [String],
        maxOutputBytes: Int = 16 << 20, streamBufferBytes: Int
    ) {
        self.root = root
        files = FileTree(root: root)
        self.runner = runner
        self.maxTimeout = maxTimeout
        self.environment = environment
        self.maxOutputBytes = maxOutputBytes
        self.streamBufferBytes = streamBufferBytes
    }

    public func register(in router: inout Router) {
        let health = HTTPResponse.json(["status": "ok", "message": "Sandbox Runtime is active."])
        router.add(.init("GET", .exact("/")) { _, _ in .response(health) })
        router.add(.init("POST", .exact("/execute")) { request, _ in execute(request) })
        router.add(.init("POST", .exact("/execute/stream")) { request, _ in executeStream(request) })
        router.add(
            .init("POST", .exact("/upload"), body: .upload(field: "file", open: openUpload)) { _, outcome in
                uploadFinished(outcome)
            })
        router.add(.init("GET", .prefix("/download/")) { request, _ in download(request.pathParameter) })
        router.add(.init("GET", .prefix("/list/")) { request, _ in list(request.pathParameter) })
        router.add(.init("GET", .prefix("/exists/")) { request, _ in exists(request.pathParameter) })
    }
}

extension Reply {
    static func failure(_ error: APIError) -> Reply { .response(error.response) }
}
