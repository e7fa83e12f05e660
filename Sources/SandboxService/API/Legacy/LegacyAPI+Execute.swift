import Synchronization

extension LegacyAPI {
    /// `POST /execute`: runs the command and answers when it has exited and its output is drained.
    func execute(_ request: HTTPRequest) -> Reply {
        let pending = PendingResponse()
        let output = Mutex(ExecuteOutput(limit: maxOutputBytes))
        let launch: Launch
        do {
            launch = try self.launch(request) { timeout in
                { event in
                    switch event {
                    case .stdout(let bytes): output.withLock { $0.append(bytes, toStdout: true) }
                    case .stderr(let bytes): output.withLock { $0.append(bytes, toStdout: false) }
                    case .exit(let termination):
                        var captured = output.withLock { $0.take() }
                        if termination.timedOut { captured.appendLine(Self.timeoutMessage(timeout), toStdout: false) }
                        pending.complete(Self.executeResponse(consume captured, termination))
                    }
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
            var captured = ExecuteOutput(limit: maxOutputBytes)
            captured.append(Array(message.utf8), toStdout: false)
            return .response(Self.executeResponse(captured, Termination(exitCode: exitCode)))
        }
    }

    /// `POST /execute/stream`: the command's output as Server-Sent Events, one line per event, then `done`.
    func executeStream(_ request: HTTPRequest) -> Reply {
        let stream = EventStream(highWater: streamBufferBytes)
        let splitters = Mutex((stdout: LineSplitter(), stderr: LineSplitter()))
        let launch: Launch
        do {
            launch = try self.launch(request) { timeout in
                { event in
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

    /// Validates the body, splits the command line and starts it with the sink `makeSink` builds for the
    /// effective timeout.
    /// - Throws: a 422 `APIError` for an invalid body; 429 when `--max-processes` commands run, 503 (with
    ///   `Retry-After`) when the system has no resources to start it: nothing was started then.
    private func launch(
        _ request: HTTPRequest, makeSink: (Double) -> @Sendable (CommandEvent) -> Void
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
        var spec = CommandSpec(argv: argv, cwd: root.path, environment: environment, timeout: timeout)
        spec.directory = root.descriptor
        do {
            return .started(try runner.start(spec, sink: makeSink(timeout)))
        } catch .tooManyProcesses(let limit) {
            throw .detail(429, "Too many processes: \(limit) are running (--max-processes); retry when one has ended.")
        } catch .resourcesExhausted(let what, let code) {
            throw Self.resourcesExhausted(.resourcesExhausted(what, code))
        } catch {
            return .failed(message: error.message, exitCode: error.exitCode)
        }
    }

    /// 503 with `Retry-After`: the system (or sandboxd's share of it) is out of what a command needs.
    static func resourcesExhausted(_ error: SpawnError) -> APIError {
        .detail(
            503, "Cannot start the command now: \(error.message). Retry later.", headers: [("Retry-After", "1")])
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
