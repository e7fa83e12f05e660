import FoundationEssentials

/// Processes as resources: `POST`/`GET /v1/processes`, and `/v1/processes/{id}` with its `events`, `wait`,
/// `stdin`, `signal` and `resize` endpoints, over the core's background processes. Errors are the v1 shape,
/// `{"code": …, "message": …}`.
public struct ProcessesAPI: Sendable {
    let sandbox: Sandbox
    /// Bytes a body read into memory may have: the JSON of a start, signal or resize, and one `POST …/stdin`.
    let maxBodyBytes: Int

    /// - Parameter maxBodyBytes: the largest JSON body and stdin write (`--max-body-bytes`); 413 beyond.
    public init(sandbox: Sandbox, maxBodyBytes: Int) {
        self.sandbox = sandbox
        self.maxBodyBytes = maxBodyBytes
    }

    public func register(in router: inout Router) {
        let body = BodyMode.buffered(limit: maxBodyBytes)
        router.add(.init("POST", "/v1/processes", body: body) { request, _ in start(request) })
        router.add(.init("GET", "/v1/processes", body: body) { _, _ in list() })
        router.add(
            onProcess("GET", "/v1/processes/{id}") { process, _, _ in .response(.json(Self.json(process.snapshot))) })
        router.add(onProcess("DELETE", "/v1/processes/{id}") { process, _, _ in delete(process) })
        router.add(
            onProcess("GET", "/v1/processes/{id}/events") { process, request, _ throws(APIError) in
                try events(process, request)
            })
        router.add(
            onProcess("GET", "/v1/processes/{id}/wait") { process, request, _ throws(APIError) in
                try wait(process, request)
            })
        router.add(
            onProcess("POST", "/v1/processes/{id}/stdin", body: .perRequest(stdinBody)) {
                _, _, outcome throws(APIError) in try stdinWritten(outcome)
            })
        router.add(
            onProcess("DELETE", "/v1/processes/{id}/stdin") { process, _, _ throws(APIError) in try closeStdin(process)
            })
        router.add(
            onProcess("POST", "/v1/processes/{id}/signal") { process, request, _ throws(APIError) in
                try signal(process, request)
            })
        router.add(
            onProcess("POST", "/v1/processes/{id}/resize") { process, request, _ throws(APIError) in
                try resize(process, request)
            })
    }

    /// A route on process `{id}`: the process is looked up first, so an unknown id is a 404 `NOT_FOUND` whatever else
    /// is wrong with the request; an error `handle` throws is the answer. The body is read into memory up to
    /// `maxBodyBytes` unless `body` says otherwise.
    private func onProcess(
        _ method: String, _ pattern: RoutePattern, body: BodyMode? = nil,
        _ handle: @escaping @Sendable (ManagedProcess, HTTPRequest, UploadOutcome?) throws(APIError) -> Reply
    ) -> Router.Route {
        Router.Route(method, pattern, body: body ?? .buffered(limit: maxBodyBytes)) { request, outcome in
            do throws(APIError) {
                return try handle(try process(request), request, outcome)
            } catch {
                return .failure(error)
            }
        }
    }

    /// The process `{id}` names, or 404 `NOT_FOUND`.
    func process(_ request: HTTPRequest) throws(APIError) -> ManagedProcess {
        do { return try sandbox.process(request.parameters["id"]) } catch { throw V1Error.answer(error) }
    }

    /// Calls the core, its error the answer.
    func call(_ operation: () throws(SandboxError) -> Void) throws(APIError) {
        do { try operation() } catch { throw V1Error.answer(error) }
    }

    /// `POST /v1/processes`: starts the process in the background; 201 `{"id", "pid"}`. Nothing is registered when it
    /// cannot start.
    func start(_ request: HTTPRequest) -> Reply {
        let process: ManagedProcess
        do throws(APIError) {
            let body = try StartRequest.decode(request.body)
            do throws(SandboxError) {
                var spec = try sandbox.command(
                    body.argv, cwd: body.cwd, variables: body.environment.map { ($0.name, $0.value) },
                    timeout: body.timeout)
                spec.stdin = body.stdin
                spec.terminal = body.terminal
                process = try sandbox.start(spec)
            } catch {
                throw Self.startFailure(error)
            }
        } catch {
            return .failure(error)
        }
        let pid: JSONValue = process.snapshot.pid.map { .number(Double($0)) } ?? .null
        return .response(
            .json(
                ["id": .string(process.id), "pid": pid], status: 201,
                headers: [("Location", "/v1/processes/" + process.id)]))
    }

    /// A start that failed, as answered: as every core error, but a `cwd` that does not exist is a bad field of the
    /// body here (400 `INVALID_ARGUMENT`, as for a `cwd` that is not a directory), where gRPC answers `NOT_FOUND` as
    /// the Go daemon does. The `cwd` is the only path a start names.
    static func startFailure(_ error: SandboxError) -> APIError {
        guard error.code == .notFound, error.path != nil else { return V1Error.answer(error) }
        var error = error
        error.code = .invalidArgument
        return V1Error.answer(error)
    }

    /// `GET /v1/processes`: running and recently finished processes, oldest first.
    func list() -> Reply {
        .response(.json(["processes": .array(sandbox.listProcesses().map { Self.json($0.snapshot) })]))
    }

    /// `DELETE /v1/processes/{id}`: kills the tree and forgets the process.
    func delete(_ process: ManagedProcess) -> Reply {
        sandbox.remove(process)
        return .response(HTTPResponse(status: 204, body: .bytes([])))
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
