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

    public func register(in router: inout Router) {
        let body = BodyMode.buffered(limit: maxBodyBytes)
        router.add(.init("POST", "/v1/processes", body: body) { request, _ in start(request) })
        router.add(.init("GET", "/v1/processes", body: body) { _, _ in list() })
        router.add(
            .init("GET", "/v1/processes/{id}", body: body) { request, _ in
                on(request) { .response(.json(Self.json($0.snapshot))) }
            })
        router.add(.init("DELETE", "/v1/processes/{id}", body: body) { request, _ in on(request, delete) })
        router.add(
            .init("GET", "/v1/processes/{id}/events", body: body) { request, _ in on(request) { events($0, request) } })
        router.add(
            .init("GET", "/v1/processes/{id}/wait", body: body) { request, _ in on(request) { wait($0, request) } })
        router.add(
            .init("POST", "/v1/processes/{id}/stdin", body: .perRequest(stdinBody)) { request, outcome in
                on(request) { _ in stdinWritten(outcome) }
            })
        router.add(.init("DELETE", "/v1/processes/{id}/stdin", body: body) { request, _ in on(request, closeStdin) })
        router.add(
            .init("POST", "/v1/processes/{id}/signal", body: body) { request, _ in on(request) { signal($0, request) } }
        )
        router.add(
            .init("POST", "/v1/processes/{id}/resize", body: body) { request, _ in on(request) { resize($0, request) } }
        )
    }

    /// The process `{id}` names, or 404 `NOT_FOUND`.
    func process(_ request: HTTPRequest) throws(APIError) -> ManagedProcess {
        let id = request.parameters["id"]
        guard let process = table.process(id) else { throw V1Error.answer(.notFound, "process '\(id)' not found") }
        return process
    }

    /// Answers a request on process `{id}` with `handle`, or 404 when there is no such process.
    private func on(_ request: HTTPRequest, _ handle: (ManagedProcess) -> Reply) -> Reply {
        do { return handle(try process(request)) } catch { return .failure(error) }
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
                headers: [("Location", "/v1/processes/" + process.id)]))
    }

    /// The one place where a start that failed becomes an answer; nothing was registered then. The codes are the
    /// Go daemon's for the same failures.
    static func startError(_ error: ProcessTable.StartError) -> APIError {
        switch error {
        case .closed: V1Error.answer(.unavailable, "sandboxd is shutting down")
        case .spawn(.notFound(let program)): V1Error.answer(.notFound, "program '\(program)' not found")
        case .spawn(.notExecutable(let program)):
            V1Error.answer(.permissionDenied, "program '\(program)' is not executable")
        case .spawn(.tooManyProcesses(let limit)):
            V1Error.answer(
                .resourceExhausted,
                "too many processes: \(limit) are running (--max-processes); retry when one has ended", status: 429)
        case .spawn(.resourcesExhausted(let what, let code)):
            V1Error.answer(
                .resourceExhausted,
                "cannot start the process now: \(SpawnError.resourcesExhausted(what, code).message); retry later",
                status: 503, headers: [("Retry-After", "1")])
        case .spawn(.failed(_, E2BIG)):
            V1Error.answer(.invalidArgument, "the command and its environment are too long to start")
        case .spawn(let error): V1Error.answer(.internal, "cannot start the process: \(error.message)")
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
                throw V1Error.answer(.permissionDenied, "\"cwd\" '\(path)' is outside the sandbox root")
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
        HTTPDate.rfc3339(Int64(date.timeIntervalSince1970.rounded(.down)))
    }
}
