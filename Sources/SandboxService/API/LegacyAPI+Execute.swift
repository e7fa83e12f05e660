import Synchronization

extension LegacyAPI {
    /// `POST /execute`: runs the command and answers when it has exited and its output is drained.
    func execute(_ request: HTTPRequest) -> Reply {
        let pending = PendingResponse()
        let output = Mutex(CapturedOutput(limit: maxOutputBytes))
        let launch: Launch
        do {
            launch = try self.launch(request) { timeout in
                { event in
                    switch event {
                    case .stdout(let bytes): output.withLock { $0.append(bytes, toStdout: true) }
                    case .stderr(let bytes): output.withLock { $0.append(bytes, toStdout: false) }
                    case .exit(let termination):
                        var captured = output.withLock { $0.take() }
                        if termination.timedOut {
                            if !captured.stderr.isEmpty && captured.stderr.last != 0x0A { captured.stderr.append(0x0A) }
                            captured.stderr += Array(Self.timeoutMessage(timeout).utf8)
                        }
                        pending.complete(.json(Self.executeResult(consume captured, termination)))
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
            let captured = CapturedOutput(limit: 0, stderr: Array(message.utf8))
            return .response(.json(Self.executeResult(captured, Termination(exitCode: exitCode))))
        }
    }

    /// `POST /execute/stream`: the command's output as Server-Sent Events, one line per event, then `done`.
    func executeStream(_ request: HTTPRequest) -> Reply {
        let stream = EventStream()
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
        return .response(
            HTTPResponse(
                status: 200,
                headers: [
                    ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"),
                ],
                body: .stream(stream)))
    }

    /// A started command, or one that could not start: answered like a finished command with a shell's exit
    /// code (1 for a command line that does not parse, 127 for a missing program, 126 for one not executable).
    enum Launch {
        case started(RunningCommand)
        case failed(message: String, exitCode: Int32)
    }

    /// Validates the body, splits the command line and starts it with the sink `makeSink` builds for the
    /// effective timeout.
    /// - Throws: a 422 `APIError` for an invalid body.
    private func launch(
        _ request: HTTPRequest, makeSink: (Double) -> @Sendable (CommandEvent) -> Void
    ) throws(APIError) -> Launch {
        let body = try ExecuteRequest.decode(request.body)
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
        let spec = CommandSpec(argv: argv, cwd: root.path, environment: environment, timeout: timeout)
        do {
            return .started(try runner.start(spec, sink: makeSink(timeout)))
        } catch {
            return .failed(message: error.message, exitCode: error.exitCode)
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

    /// The answer of `/execute`. Consumes `output`: each stream's bytes are released as soon as they are text, so
    /// a command at the output cap costs its bytes once, not twice over.
    static func executeResult(_ output: consuming CapturedOutput, _ termination: Termination) -> JSONValue {
        let truncated = output.truncated
        let stdout = String(decoding: output.stdout, as: UTF8.self)
        output.stdout = []
        let stderr = String(decoding: output.stderr, as: UTF8.self)
        output.stderr = []
        var members: [(String, JSONValue)] = [
            ("stdout", .string(stdout)),
            ("stderr", .string(stderr)),
            ("exit_code", .number(Double(termination.exitCode))),
            ("timed_out", .bool(termination.timedOut)),
        ]
        // Only when it happened, so an ordinary answer keeps the reference's exact shape.
        if truncated { members.append(("truncated", .bool(true))) }
        return .object(members)
    }
}

/// The output `/execute` keeps, at most `limit` bytes per stream; the command keeps running (and its pipes keep
/// being drained) past it, and the cut is marked in the text.
struct CapturedOutput {
    let limit: Int
    var stdout: [UInt8] = []
    var stderr: [UInt8] = []
    private(set) var truncated = false
    private var stdoutCut = false
    private var stderrCut = false

    init(limit: Int, stderr: [UInt8] = []) {
        self.limit = limit
        self.stderr = stderr
    }

    mutating func append(_ bytes: [UInt8], toStdout: Bool) {
        if toStdout {
            Self.append(bytes, to: &stdout, cut: &stdoutCut, limit: limit)
        } else {
            Self.append(bytes, to: &stderr, cut: &stderrCut, limit: limit)
        }
        truncated = stdoutCut || stderrCut
    }

    /// Takes the captured output, with a marker where a stream was cut.
    mutating func take() -> CapturedOutput {
        let marker = Array("\n[output truncated: more than \(limit) bytes]\n".utf8)
        if stdoutCut { stdout += marker }
        if stderrCut { stderr += marker }
        defer { self = CapturedOutput(limit: limit) }
        return self
    }

    private static func append(_ bytes: [UInt8], to buffer: inout [UInt8], cut: inout Bool, limit: Int) {
        guard !cut else { return }
        // Past 1 MiB, make room for the whole cap (and the marker) at once: growing by doubling would copy
        // the buffer again and again and could leave twice the cap allocated.
        if buffer.count < 1 << 20 && buffer.count + bytes.count >= 1 << 20 { buffer.reserveCapacity(limit + 64) }
        let room = limit - buffer.count
        if bytes.count <= room {
            buffer += bytes
        } else {
            buffer += bytes.prefix(max(0, room))
            cut = true
        }
    }
}
