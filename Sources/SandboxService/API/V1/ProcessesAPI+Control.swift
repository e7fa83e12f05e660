import Dispatch
import Synchronization

extension ProcessesAPI {
    /// How a `POST /v1/processes/{id}/stdin` body is received: into a sink that writes it to the process once
    /// complete. The process, its stdin and the declared length are checked first, so a refused write reads no body.
    func stdinBody(_ request: HTTPRequest) throws(APIError) -> BodyMode {
        let process = try process(request)
        guard process.snapshot.stdinOpen else { throw Self.controlError(.stdinClosed, process.id) }
        if let length = request.headers["content-length"].flatMap({ Int($0) }), length > maxBodyBytes {
            throw stdinTooLarge()
        }
        let limit = maxBodyBytes
        let tooLarge = stdinTooLarge()
        return .stream(open: { StdinBody(process: process, limit: limit, tooLarge: tooLarge) })
    }

    /// `RESOURCE_EXHAUSTED` is 507 (no space left) by its status; a body too large is a 413.
    private func stdinTooLarge() -> APIError {
        V1Error.answer(.resourceExhausted, "a stdin body may carry at most \(maxBodyBytes) bytes", status: 413)
    }

    /// `POST /v1/processes/{id}/stdin`: the body was handed to the process when it was complete.
    func stdinWritten(_ outcome: UploadOutcome?) -> Reply {
        switch outcome {
        case .stored?: .response(HTTPResponse(status: 204, body: .bytes([])))
        case .failed(let error)?: .failure(error)
        case .missingField?, nil: .failure(V1Error.answer(.internal, "the stdin body was not received"))
        }
    }

    /// `DELETE /v1/processes/{id}/stdin`: EOF once what was written is read (Ctrl-D on a terminal).
    func closeStdin(_ process: ManagedProcess) -> Reply {
        do { try process.closeStdin() } catch { return .failure(Self.controlError(error, process.id)) }
        return .response(HTTPResponse(status: 204, body: .bytes([])))
    }

    /// `POST /v1/processes/{id}/signal` `{"signal": "SIGINT"}`: to the process group.
    func signal(_ process: ManagedProcess, _ request: HTTPRequest) -> Reply {
        let names = ProcessSignal.sendable.map(\.name).joined(separator: ", ")
        guard case .string(let name)? = JSONValue.parse(request.body)?["signal"],
            let number = ProcessSignal.number(named: name)
        else {
            return .failure(Self.invalid("the body must be {\"signal\": NAME} with NAME one of \(names)"))
        }
        do { try process.signal(number) } catch { return .failure(Self.controlError(error, process.id)) }
        return .response(HTTPResponse(status: 204, body: .bytes([])))
    }

    /// `POST /v1/processes/{id}/resize` `{"cols": N, "rows": N}`: the kernel sends SIGWINCH to the foreground group.
    func resize(_ process: ManagedProcess, _ request: HTTPRequest) -> Reply {
        let size: TerminalSize
        do throws(APIError) {
            guard let json = JSONValue.parse(request.body), let parsed = try StartRequest.terminalSize(json, "body")
            else { throw Self.invalid("the body must be {\"cols\": N, \"rows\": N}") }
            size = parsed
        } catch {
            return .failure(error)
        }
        do { try process.resize(to: size) } catch { return .failure(Self.controlError(error, process.id)) }
        return .response(HTTPResponse(status: 204, body: .bytes([])))
    }

    /// `GET /v1/processes/{id}/wait?timeout=S`: the process once it has exited, or as it is after `S` seconds
    /// (default 30, at most 3600) — 200 either way, `status` tells which. No thread waits: the connection is
    /// suspended until the exit or a timer completes the answer.
    func wait(_ process: ManagedProcess, _ request: HTTPRequest) -> Reply {
        var seconds = 30.0
        if let text = request.query["timeout"] {
            guard let value = Self.decimal(text, fraction: true) else {
                return .failure(Self.invalid("timeout \"\(text)\" must be a number of seconds, 0 or more"))
            }
            seconds = min(value, 3600)
        }
        let pending = PendingResponse(holdsShutdown: false)
        let timer = WaitTimer()
        let token = process.whenFinished { snapshot in
            timer.cancel()
            pending.complete(.json(Self.json(snapshot)))
        }
        guard let token else { return .response(.json(Self.json(process.snapshot))) }
        pending.onClientGone {
            process.cancelWait(token)
            timer.cancel()
        }
        timer.schedule(after: seconds) {
            process.cancelWait(token)
            pending.complete(.json(Self.json(process.snapshot)))
        }
        return .pending(pending)
    }

    /// A number written plainly: decimal digits, and with `fraction` a `.` and more digits. No sign, exponent,
    /// hexadecimal, `inf`/`nan` or whitespace, which `Double(_:)` and `UInt64(_:)` would take.
    static func decimal(_ text: String, fraction: Bool) -> Double? {
        let parts = text.utf8.split(separator: UInt8(ascii: "."), maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, parts.count == 1 || (fraction && !parts[1].isEmpty),
            parts.allSatisfy({ $0.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } })
        else { return nil }
        return Double(text)
    }

    /// The one place where control errors become HTTP answers.
    static func controlError(_ error: ManagedProcess.ControlError, _ id: String) -> APIError {
        switch error {
        case .exited: V1Error.answer(.conflict, "process '\(id)' has exited")
        case .stdinClosed:
            V1Error.answer(
                .conflict,
                "process '\(id)' takes no input: it was started without \"stdin\": true, or its stdin was closed")
        case .noTerminal: V1Error.answer(.conflict, "process '\(id)' has no pty")
        case .stdinFull:
            V1Error.answer(
                .resourceExhausted, "process '\(id)' is not reading its stdin: too many bytes are waiting", status: 429)
        }
    }
}

/// The timer of one `wait`: cancelled when the process exits or the client leaves first.
private final class WaitTimer: Sendable {
    private let item = Mutex<(work: DispatchWorkItem?, cancelled: Bool)>((nil, false))

    func schedule(after seconds: Double, _ expire: @escaping @Sendable () -> Void) {
        let work = DispatchWorkItem(block: expire)
        let scheduled = item.withLock { item -> Bool in
            guard !item.cancelled else { return false }
            item.work = work
            return true
        }
        if scheduled { DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: work) }
    }

    func cancel() {
        item.withLock { item in
            item.cancelled = true
            item.work?.cancel()
            item.work = nil
        }
    }
}

/// A stdin body, collected up to a limit and handed to the process in one piece when complete, so a body cut
/// halfway writes nothing and concurrent writers never interleave inside a body.
final class StdinBody: UploadSink {
    private let process: ManagedProcess
    private let limit: Int
    private let tooLarge: APIError
    private var bytes: [UInt8] = []

    init(process: ManagedProcess, limit: Int, tooLarge: APIError) {
        self.process = process
        self.limit = limit
        self.tooLarge = tooLarge
    }

    func write(_ chunk: UnsafeRawBufferPointer) throws(APIError) {
        guard bytes.count + chunk.count <= limit else { throw tooLarge }
        bytes.append(contentsOf: chunk)
    }

    func commit() throws(APIError) {
        do { try process.writeStdin(bytes) } catch { throw ProcessesAPI.controlError(error, process.id) }
        bytes = []
    }

    func abort() { bytes = [] }
}
