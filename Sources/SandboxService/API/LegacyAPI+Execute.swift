import Synchronization

extension LegacyAPI {
    /// `POST /execute`: runs the command and answers when it has exited and its output is drained.
    func execute(_ request: HTTPRequest) -> Reply {
        let spec: CommandSpec
        do {
            spec = try commandSpec(for: request)
        } catch let failure as CommandFailure {
            return .response(.json(Self.executeResult(stdout: [], stderr: Array(failure.message.utf8), exitCode: failure.exitCode)))
        } catch {
            return .failure(error as! APIError)
        }
        let pending = PendingResponse()
        let output = Mutex((stdout: [UInt8](), stderr: [UInt8]()))
        let timeout = spec.timeout ?? maxTimeout
        do {
            let command = try runner.start(spec) { event in
                switch event {
                case .stdout(let bytes): output.withLock { $0.stdout += bytes }
                case .stderr(let bytes): output.withLock { $0.stderr += bytes }
                case .exit(let termination):
                    let (stdout, stderr) = output.withLock { ($0.stdout, $0.stderr) }
                    var message = stderr
                    if termination.timedOut {
                        if !message.isEmpty && message.last != 0x0A { message.append(0x0A) }
                        message += Array(Self.timeoutMessage(timeout).utf8)
                    }
                    pending.complete(
                        .json(Self.executeResult(stdout: stdout, stderr: message, exitCode: termination.exitCode, timedOut: termination.timedOut)))
                }
            }
            pending.onClientGone { command.cancel() }
        } catch {
            return .response(.json(Self.executeResult(stdout: [], stderr: Array(error.message.utf8), exitCode: error.exitCode)))
        }
        return .pending(pending)
    }

    /// `POST /execute/stream`: the command's output as Server-Sent Events, one line per event, then `done`.
    func executeStream(_ request: HTTPRequest) -> Reply {
        let stream = EventStream()
        let response = HTTPResponse(
            status: 200,
            headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")],
            body: .stream(stream))
        let spec: CommandSpec
        do {
            spec = try commandSpec(for: request)
        } catch let failure as CommandFailure {
            stream.send(event: "error", data: failure.message)
            stream.send(event: "done", data: String(decoding: (["exit_code": .number(Double(failure.exitCode))] as JSONValue).encoded(), as: UTF8.self))
            stream.finish()
            return .response(response)
        } catch {
            return .failure(error as! APIError)
        }
        let timeout = spec.timeout ?? maxTimeout
        let splitters = Mutex((stdout: LineSplitter(), stderr: LineSplitter()))
        do {
            let command = try runner.start(spec) { event in
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
                    let done: JSONValue = [
                        "exit_code": .number(Double(termination.exitCode)), "timed_out": .bool(termination.timedOut),
                    ]
                    stream.send(event: "done", data: String(decoding: done.encoded(), as: UTF8.self))
                    stream.finish()
                }
            }
            stream.onClientGone { command.cancel() }
        } catch {
            stream.send(event: "error", data: error.message)
            stream.send(event: "done", data: String(decoding: (["exit_code": .number(Double(error.exitCode))] as JSONValue).encoded(), as: UTF8.self))
            stream.finish()
        }
        return .response(response)
    }

    /// A command that cannot even start; answered as a completed command with this exit code, like the reference.
    struct CommandFailure: Error {
        var message: String
        var exitCode: Int32
    }

    /// Validates the body and builds the spec. Throws `APIError` (422) or `CommandFailure`.
    private func commandSpec(for request: HTTPRequest) throws -> CommandSpec {
        let body = try ExecuteRequest.decode(request.body)
        let argv: [String]
        do {
            argv = try ShellWords.split(body.command)
        } catch {
            throw CommandFailure(message: "Failed to execute command: \(error)", exitCode: 1)
        }
        guard !argv.isEmpty else { throw CommandFailure(message: "Failed to execute command: empty command", exitCode: 1) }
        let timeout = min(body.timeout ?? maxTimeout, maxTimeout)
        return CommandSpec(argv: argv, cwd: root.path, environment: environment, timeout: timeout)
    }

    static func timeoutMessage(_ seconds: Double) -> String {
        let text = seconds == seconds.rounded() && seconds < 1e15 ? String(Int64(seconds)) : String(seconds)
        return "Command timed out after \(text) seconds"
    }

    static func executeResult(stdout: [UInt8], stderr: [UInt8], exitCode: Int32, timedOut: Bool = false) -> JSONValue {
        [
            "stdout": .string(String(decoding: stdout, as: UTF8.self)),
            "stderr": .string(String(decoding: stderr, as: UTF8.self)),
            "exit_code": .number(Double(exitCode)),
            "timed_out": .bool(timedOut),
        ]
    }
}
