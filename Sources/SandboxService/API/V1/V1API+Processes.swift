import FoundationEssentials

/// Processes as resources: `POST`/`GET /v1/processes`, and `/v1/processes/{id}` with its `events`, `wait`,
/// `stdin`, `signal` and `resize` endpoints, over the core's background processes.
extension V1API {
    /// Every handler of a process's endpoint takes the process and the request (`Handler`); bodies are read into
    /// memory up to the router's `maxBodyBytes`, and a stdin body is streamed to the process under the same limit.
    func registerProcesses(in router: inout Router) {
        router.add("POST", "/v1/processes") { request, _ in startProcess(request) }
        router.add("GET", "/v1/processes") { _, _ in listProcesses() }
        onProcess(&router, "GET", "/v1/processes/{id}", showProcess)
        onProcess(&router, "DELETE", "/v1/processes/{id}", deleteProcess)
        onProcess(&router, "GET", "/v1/processes/{id}/events", events)
        onProcess(&router, "GET", "/v1/processes/{id}/wait", wait)
        onProcess(
            &router, "POST", "/v1/processes/{id}/stdin", body: .perRequest(stdinBody(limit: router.maxBodyBytes)),
            written)
        onProcess(&router, "DELETE", "/v1/processes/{id}/stdin", closeStdin)
        onProcess(&router, "POST", "/v1/processes/{id}/signal", signal)
        onProcess(&router, "POST", "/v1/processes/{id}/resize", resize)
    }

    typealias Handler = @Sendable (ManagedProcess, HTTPRequest) throws(APIError) -> Reply

    /// Adds a route on process `{id}`. The process is looked up first, so an unknown id is a 404 `NOT_FOUND` whatever
    /// else is wrong with the request; then a streamed body that failed is the answer; then `handle` answers, its
    /// error too.
    private func onProcess(
        _ router: inout Router, _ method: String, _ pattern: RoutePattern, body: BodyMode? = nil,
        _ handle: @escaping Handler
    ) {
        router.add(method, pattern, body: body) { request, outcome in
            do throws(APIError) {
                let process = try process(request)
                if case .failed(let error)? = outcome { throw error }
                return try handle(process, request)
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
    func startProcess(_ request: HTTPRequest) -> Reply {
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
    func listProcesses() -> Reply {
        .response(.json(["processes": .array(sandbox.listProcesses().map { Self.json($0.snapshot) })]))
    }

    /// `GET /v1/processes/{id}`.
    func showProcess(_ process: ManagedProcess, _ request: HTTPRequest) -> Reply {
        .response(.json(Self.json(process.snapshot)))
    }

    /// `DELETE /v1/processes/{id}`: kills the tree and forgets the process.
    func deleteProcess(_ process: ManagedProcess, _ request: HTTPRequest) -> Reply {
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
