import Synchronization

extension LegacyAPI {
    /// `POST /execute`: runs the command and answers when it has exited and its output is drained.
    func execute(_ request: HTTPRequest) -> Reply {
        let pending = PendingResponse()
        let launch: Launch
        do throws(APIError) {
            launch = try self.launch(request) { spec, timeout throws(SandboxError) in
                try sandbox.run(spec, collecting: ExecuteOutput(limit: sandbox.maxOutputBytes)) {
                    (output: consuming ExecuteOutput, termination: Termination) in
                    var captured = output.take()
                    if termination.timedOut { captured.appendLine(Self.timeoutMessage(timeout), toStdout: false) }
                    pending.complete(Self.executeResponse(consume captured, termination))
                }
            }
        } catch {
            return .failure(error)
        }
        switch launch {
        case .started(let command):
            pending.onClientGone { command.cancel() }
            return .pending(pending)
        case .failed(let message, let exitCode):
            var captured = ExecuteOutput(limit: sandbox.maxOutputBytes)
            captured.append(Array(message.utf8), toStdout: false)
            return .response(Self.executeResponse(captured, Termination(exitCode: exitCode)))
        }
    }

    /// `POST /execute/stream`: the command's output as Server-Sent Events, one line per event, then `done`.
    func executeStream(_ request: HTTPRequest) -> Reply {
        let stream = EventStream(highWater: sandbox.streamBufferBytes)
        let splitters = Mutex((stdout: LineSplitter(), stderr: LineSplitter()))
        let launch: Launch
        do throws(APIError) {
            launch = try self.launch(request) { spec, timeout throws(SandboxError) in
                try sandbox.run(spec) { event in
                    switch event {
                    case .stdout(let bytes):
                        let lines = splitters.withLock { $0.stdout.feed(bytes) }
                        for line in lines { stream.send(event: "stdout", data: String(decoding: line, as: UTF8.self)) }
                    case .stderr(let bytes):
                        let lines = splitters.withLock { $0.stderr.feed(bytes) }
                        for line in lines { stream.send(event: "stderr", data: String(decoding: line, as: UTF8.self)) }
                    case .exit(let termination):
                        let (stdout, stderr) = splitters.withLock { ($0.stdout.finish(), $0.stderr.finish()) }
                        if let stdout { stream.send(event: "stdout", data: String(decoding: stdout, as: UTF8.self)) }
                        if let stderr { stream.send(event: "stderr", data: String(decoding: stderr, as: UTF8.self)) }
                        if termination.timedOut { stream.send(event: "error", data: Self.timeoutMessage(timeout)) }
                        Self.sendDone(termination, to: stream)
                    }
                }
            }
        } catch {
            return .failure(error)
        }
        switch launch {
        case .started(let command):
            stream.onClientGone { command.cancel() }
            stream.setFlowControl(pause: command.pauseOutput, resume: command.resumeOutput)
        case .failed(let message, let exitCode):
            stream.send(event: "error", data: message)
            Self.sendDone(Termination(exitCode: exitCode), to: stream)
        }
        return .response(.eventStream(stream))
    }

    /// A started command, or one that could not start: answered like a finished command with a shell's exit
    /// code (1 for a command line that does not parse, 127 for a missing program, 126 for one not executable).
    enum Launch {
        case started(RunningCommand)
        case failed(message: String, exitCode: Int32)
    }

    /// Validates the body, splits the command line as the reference does (its messages for a line that does not
    /// parse) and starts the command in the root with `run`, given the effective timeout.
    /// - Throws: a 422 `APIError` for an invalid body; 429 when `--max-processes` commands run, 503 (with
    ///   `Retry-After`) when the system has no resources to start it: nothing was started then.
    private func launch(
        _ request: HTTPRequest, run: (CommandSpec, Double) throws(SandboxError) -> RunningCommand
    ) throws(APIError) -> Launch {
        let body = try ExecuteRequest.decode(request.body, contentType: request.headers["content-type"])
        let argv: [String]
        do {
            argv = try ShellWords.split(body.command)
        } catch {
            return .failed(message: "Failed to execute command: \(error)", exitCode: 1)
        }
        guard !argv.isEmpty else { return .failed(message: "Failed to execute command: empty command", exitCode: 1) }
        guard !argv.contains(where: { $0.utf8.contains(0) }) else {
            return .failed(message: "Failed to execute command: embedded null byte", exitCode: 1)
        }
        let timeout = min(body.timeout ?? maxTimeout, maxTimeout)
        do {
            return .started(try run(try sandbox.command(argv, cwd: nil, variables: [], timeout: timeout), timeout))
        } catch {
            return try Self.launchFailure(error)
        }
    }

    /// The one place where a command that could not be started becomes this API's answer: an exit code and its
    /// message, as a shell reports them, or an error when the server has no room for it now.
    static func launchFailure(_ error: SandboxError) throws(APIError) -> Launch {
        switch error.cause {
        case .spawn(.tooManyProcesses(let limit))?:
            throw .detail(429, "Too many processes: \(limit) are running (--max-processes); retry when one has ended.")
        case .spawn(.resourcesExhausted(let what, let code))?:
            throw .detail(
                503, "Cannot start the command now: \(SpawnError.resourcesExhausted(what, code).message). Retry later.",
                headers: [("Retry-After", "1")])
        case .spawn(let failure)?:
            return .failed(message: failure.message, exitCode: failure.exitCode)
        default:
            return .failed(message: "Failed to execute command: \(error.message)", exitCode: 1)
        }
    }

    static func sendDone(_ termination: Termination, to stream: EventStream) {
        let done: JSONValue = [
            "exit_code": .number(Double(termination.exitCode)), "timed_out": .bool(termination.timedOut),
        ]
        stream.send(event: "done", data: String(decoding: done.encoded(), as: UTF8.self))
        stream.finish()
    }

    static func timeoutMessage(_ seconds: Double) -> String {
        let text = seconds == seconds.rounded() && seconds < 1e15 ? String(Int64(seconds)) : String(seconds)
        return "Command timed out after \(text) seconds"
    }

    /// The answer of `/execute`: `{"stdout", "stderr", "exit_code", "timed_out"}` (and `"truncated": true` when output
    /// was cut, so an ordinary answer keeps the reference's exact shape).
    static func executeResponse(_ output: consuming ExecuteOutput, _ termination: Termination) -> HTTPResponse {
        var output = output
        var tail: [(String, JSONValue)] = [
            ("exit_code", .number(Double(termination.exitCode))), ("timed_out", .bool(termination.timedOut)),
        ]
        if output.truncated { tail.append(("truncated", .bool(true))) }
        return HTTPResponse(
            status: 200, headers: [("Content-Type", "application/json")], body: .bytes(output.json(then: tail)))
    }
}
