import FoundationEssentials
import Glibc

/// Processes as resources: `POST`/`GET /v1/processes`, and `/v1/processes/{id}` with its `events`, `wait`,
/// `stdin`, `signal` and `resize` endpoints. Errors are the v1 shape, `{"code": …, "message": …}`.
public struct ProcessesAPI: Sendable {
    let table: ProcessTable
    let root: SandboxRoot
    /// The environment every process starts from, as `KEY=value`.
    let environment: [String]
    /// Bytes a body read into memory may have: the JSON of a start, signal or resize, and one `POST …/stdin`.
    let maxBodyBytes: Int
    /// Bytes an event stream buffers for its client (its own comments; output is read from the replay log).
    let streamBufferBytes: Int

    /// - Parameters:
    ///   - maxBodyBytes: the largest JSON body and stdin write (`--max-body-bytes`); 413 beyond.
    ///   - streamBufferBytes: what an event stream may buffer for its client (`--stream-buffer-bytes`).
    public init(
        table: ProcessTable, root: SandboxRoot, environment: [String], maxBodyBytes: Int, streamBufferBytes: Int
    ) {
        self.table = table
        self.root = root
        self.environment = environment
        self.maxBodyBytes = maxBodyBytes
        self.streamBufferBytes = streamBufferBytes
    }

    static let prefix = "/v1/processes/"

    public func register(in router: inout Router) {
        let body = BodyMode.buffered(limit: maxBodyBytes)
        router.add(.init("POST", .exact("/v1/processes"), body: body) { request, _ in start(request) })
        router.add(.init("GET", .exact("/v1/processes"), body: body) { _, _ in list() })
        // Each method's route takes only the endpoints that answer it, so an unknown endpoint is a 404 and the
        // router's 405 names exactly the endpoint's methods in `Allow`.
        let serves: @Sendable (String) -> @Sendable (String) -> Bool = { method in
            { Target($0)?.allowedMethods.contains(method) ?? false }
        }
        router.add(
            .init("GET", .prefix(Self.prefix), body: body, accepts: serves("GET")) { request, outcome in
                handle(request, outcome)
            })
        router.add(
            .init("POST", .prefix(Self.prefix), body: .perRequest(postBody), accepts: serves("POST")) {
                request, outcome in handle(request, outcome)
            })
        router.add(
            .init("DELETE", .prefix(Self.prefix), body: body, accepts: serves("DELETE")) { request, outcome in
                handle(request, outcome)
            })
    }

    /// What `/v1/processes/{id}[/action]` names: the part after the prefix, split at its one slash.
    struct Target: Equatable {
        enum Action: String, CaseIterable {
            case events, wait, stdin, signal, resize
        }

        var id: String
        /// nil for the process itself.
        var action: Action?

        /// nil when the path names no endpoint (an empty id, an unknown action, more segments).
        init?(_ pathParameter: String) {
            let parts = pathParameter.split(separator: "/", omittingEmptySubsequences: false)
            guard let id = parts.first, !id.isEmpty, parts.count <= 2 else { return nil }
            self.id = String(id)
            if parts.count == 2 {
                guard let action = Action(rawValue: String(parts[1])) else { return nil }
                self.action = action
            }
        }

        init(id: String, action: Action? = nil) {
            self.id = id
            self.action = action
        }

        /// The methods the endpoint answers (HEAD too, wherever GET is).
        var allowedMethods: [String] {
            switch action {
            case nil: ["GET", "DELETE"]
            case .events?, .wait?: ["GET"]
            case .stdin?: ["POST", "DELETE"]
            case .signal?, .resize?: ["POST"]
            }
        }
    }

    /// The endpoint and process a request names, or the error that answers it: 404 `{"detail"}` for a path that
    /// is no endpoint, 405 with `Allow` for a method the endpoint does not take (as the router answers both), 404
    /// `NOT_FOUND` for an id that names no process.
    func resolve(_ request: HTTPRequest) throws(APIError) -> (Target, ManagedProcess) {
        guard let target = Target(request.pathParameter) else { throw .notFound }
        let method = request.method == "HEAD" ? "GET" : request.method
        let allowed = target.allowedMethods
        guard allowed.contains(method) else {
            let shown = allowed.contains("GET") ? allowed + ["HEAD"] : allowed
            throw .detail(405, "Method Not Allowed", headers: [("Allow", shown.joined(separator: ", "))])
        }
        guard let process = table.process(target.id) else {
            throw FilesV1API.failure(.notFound, "process '\(target.id)' not found")
        }
        return (target, process)
    }

    /// Every `/v1/processes/{id}…` request.
    func handle(_ request: HTTPRequest, _ outcome: UploadOutcome?) -> Reply {
        let target: Target
        let process: ManagedProcess
        do { (target, process) = try resolve(request) } catch { return .failure(error) }
        let method = request.method == "HEAD" ? "GET" : request.method
        switch (target.action, method) {
        case (nil, "GET"): return .response(.json(Self.json(process.snapshot)))
        case (nil, _): return delete(process)
        case (.events?, _): return events(process, request)
        case (.wait?, _): return wait(process, request)
        case (.stdin?, "POST"): return stdinWritten(outcome)
        case (.stdin?, _): return closeStdin(process)
        case (.signal?, _): return signal(process, request)
        case (.resize?, _): return resize(process, request)
        }
    }

    /// `POST /v1/processes`: starts the process in the background; 201 `{"id", "pid"}`.
    func start(_ request: HTTPRequest) -> Reply {
        let body: StartRequest
        let cwd: (descriptor: Descriptor, path: String)
        do {
            body = try StartRequest.decode(request.body)
            cwd = try directory(body.cwd)
        } catch {
            return .failure(error)
        }
        var spec = CommandSpec(
            argv: body.argv, cwd: cwd.path,
            environment: StartRequest.environment(base: environment, applying: body.environment),
            timeout: body.timeout)
        spec.directory = cwd.descriptor
        spec.stdin = body.stdin
        spec.terminal = body.terminal
        let process: ManagedProcess
        do {
            process = try table.start(spec)
        } catch {
            return .failure(Self.startError(error))
        }
        let pid: JSONValue = process.snapshot.pid.map { .number(Double($0)) } ?? .null
        return .response(
            .json(
                ["id": .string(process.id), "pid": pid], status: 201,
                headers: [("Location", Self.prefix + process.id)]))
    }

    /// The one place where a start that failed becomes an answer; nothing was registered then. The codes are the
    /// Go daemon's for the same failures.
    static func startError(_ error: ProcessTable.StartError) -> APIError {
        switch error {
        case .closed: FilesV1API.failure(.unavailable, "sandboxd is shutting down")
        case .spawn(.notFound(let program)): FilesV1API.failure(.notFound, "program '\(program)' not found")
        case .spawn(.notExecutable(let program)):
            FilesV1API.failure(.permissionDenied, "program '\(program)' is not executable")
        case .spawn(.tooManyProcesses(let limit)):
            failure(
                .resourceExhausted, status: 429,
                "too many processes: \(limit) are running (--max-processes); retry when one has ended")
        case .spawn(.resourcesExhausted(let what, let code)):
            failure(
                .resourceExhausted, status: 503,
                "cannot start the process now: \(SpawnError.resourcesExhausted(what, code).message); retry later",
                headers: [("Retry-After", "1")])
        case .spawn(.failed(_, E2BIG)):
            FilesV1API.failure(.invalidArgument, "the command and its environment are too long to start")
        case .spawn(let error): FilesV1API.failure(.internal, "cannot start the process: \(error.message)")
        }
    }

    /// `GET /v1/processes`: running and recently finished processes, oldest first.
    func list() -> Reply {
        .response(.json(["processes": .array(table.list().map { Self.json($0.snapshot) })]))
    }

    /// `DELETE /v1/processes/{id}`: kills the tree and forgets the process.
    func delete(_ process: ManagedProcess) -> Reply {
        table.remove(process.id)
        return .response(HTTPResponse(status: 204, body: .bytes([])))
    }

    /// The working directory: a directory under the root (symlinks resolved), open, so the child enters exactly
    /// the directory that was checked.
    private func directory(_ path: String) throws(APIError) -> (descriptor: Descriptor, path: String) {
        do {
            return try FileTree(root: root).workingDirectory(path)
        } catch {
            switch error.code {
            case .escapesRoot:
                throw FilesV1API.failure(.permissionDenied, "\"cwd\" '\(path)' is outside the sandbox root")
            case .tooManyLinks: throw Self.invalid("\"cwd\" '\(path)': too many levels of symbolic links")
            case .invalidPath: throw Self.invalid("\"cwd\" '\(path)' is not a usable path")
            default: throw Self.invalid("\"cwd\" '\(path)' is not a directory in the sandbox")
            }
        }
    }

    /// A process as JSON.
    static func json(_ snapshot: ManagedProcess.Snapshot) -> JSONValue {
        let termination = snapshot.termination
        return [
            "id": .string(snapshot.id),
            "pid": snapshot.pid.map { .number(Double($0)) } ?? .null,
            "command": .array(snapshot.argv.map { .string($0) }),
            "status": .string(snapshot.status.rawValue),
            "exit_code": termination.map { .number(Double($0.exitCode)) } ?? .null,
            "signal": termination?.signal.map { .string(ProcessSignal.name(of: $0)) } ?? .null,
            "timed_out": .bool(termination?.timedOut ?? false),
            "pty": .bool(snapshot.hasTerminal),
            "stdin": .bool(snapshot.stdinOpen),
            "started_at": .string(timestamp(snapshot.startedAt)),
            "finished_at": snapshot.finishedAt.map { .string(timestamp($0)) } ?? .null,
        ]
    }

    /// RFC 3339 in UTC, in seconds, as the files API prints times.
    private static func timestamp(_ date: Date) -> String {
        FilesV1API.HTTPDate.rfc3339(Int64(date.timeIntervalSince1970.rounded(.down)))
    }
}
