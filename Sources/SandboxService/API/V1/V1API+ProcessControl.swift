extension V1API {
    /// How a `POST /v1/processes/{id}/stdin` body is received: into a sink that hands it to the process once
    /// complete, `limit` bytes at most (413 beyond). The process, its stdin and the declared length are checked first,
    /// so a refused write reads no body.
    func stdinBody(limit: Int) -> @Sendable (HTTPRequest) throws(APIError) -> BodyMode {
        // `RESOURCE_EXHAUSTED` is 507 (no space left) by its status; a body too large is a 413.
        let tooLarge = V1Error.answer(
            .resourceExhausted, "a stdin body may carry at most \(limit) bytes", status: 413)
        return { request throws(APIError) in
            let process = try process(request)
            try call { () throws(SandboxError) in try sandbox.requireStdin(process) }
            if let length = request.headers["content-length"].flatMap({ Int($0) }), length > limit { throw tooLarge }
            return .stream(open: {
                StdinBody(limit: limit, tooLarge: tooLarge) { (bytes) throws(APIError) in
                    do throws(SandboxError) {
                        try sandbox.writeStdin(bytes, to: process)
                    } catch {
                        throw V1Error.answer(error)
                    }
                }
            })
        }
    }

    /// `POST /v1/processes/{id}/stdin`: the body was handed to the process when it was complete.
    func written(_ process: ManagedProcess, _ request: HTTPRequest) -> Reply {
        .response(HTTPResponse(status: 204, body: .bytes([])))
    }

    /// `DELETE /v1/processes/{id}/stdin`: EOF once what was written is read (Ctrl-D on a terminal).
    func closeStdin(_ process: ManagedProcess, _ request: HTTPRequest) throws(APIError) -> Reply {
        try call { () throws(SandboxError) in try sandbox.closeStdin(of: process) }
        return .response(HTTPResponse(status: 204, body: .bytes([])))
    }

    /// `POST /v1/processes/{id}/signal` `{"signal": "SIGINT"}`: to the process group.
    func signal(_ process: ManagedProcess, _ request: HTTPRequest) throws(APIError) -> Reply {
        let names = ProcessSignal.sendable.map(\.name).joined(separator: ", ")
        guard case .string(let name)? = JSONValue.parse(request.body)?["signal"],
            let number = ProcessSignal.number(named: name)
        else { throw Self.invalid("the body must be {\"signal\": NAME} with NAME one of \(names)") }
        try call { () throws(SandboxError) in try sandbox.signal(process, number) }
        return .response(HTTPResponse(status: 204, body: .bytes([])))
    }

    /// `POST /v1/processes/{id}/resize` `{"cols": N, "rows": N}`: the kernel sends SIGWINCH to the foreground group.
    func resize(_ process: ManagedProcess, _ request: HTTPRequest) throws(APIError) -> Reply {
        guard let json = JSONValue.parse(request.body), let size = try StartRequest.terminalSize(json, "body") else {
            throw Self.invalid("the body must be {\"cols\": N, \"rows\": N}")
        }
        try call { () throws(SandboxError) in try sandbox.resize(process, to: size) }
        return .response(HTTPResponse(status: 204, body: .bytes([])))
    }

    /// `GET /v1/processes/{id}/wait?timeout=S`: the process once it has exited, or as it is after `S` seconds
    /// (default 30, at most 3600) — 200 either way, `status` tells which. No thread waits: the connection is
    /// suspended until the exit or a timer completes the answer.
    func wait(_ process: ManagedProcess, _ request: HTTPRequest) throws(APIError) -> Reply {
        var seconds = 30.0
        if let text = request.query["timeout"] {
            guard let value = Self.decimal(text, fraction: true) else {
                throw Self.invalid("timeout \"\(text)\" must be a number of seconds, 0 or more")
            }
            seconds = min(value, 3600)
        }
        let pending = PendingResponse(holdsShutdown: false)
        guard
            let cancel = sandbox.wait(for: process, seconds: seconds, { pending.complete(.json(Self.json($0))) })
        else { return .response(.json(Self.json(process.snapshot))) }
        pending.onClientGone(cancel)
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
}

/// A stdin body, collected up to a limit and handed to the process in one piece when complete, so a body cut
/// halfway writes nothing and concurrent writers never interleave inside a body.
final class StdinBody: UploadSink {
    private let limit: Int
    private let tooLarge: APIError
    private let deliver: @Sendable ([UInt8]) throws(APIError) -> Void
    private var bytes: [UInt8] = []

    init(limit: Int, tooLarge: APIError, deliver: @escaping @Sendable ([UInt8]) throws(APIError) -> Void) {
        self.limit = limit
        self.tooLarge = tooLarge
        self.deliver = deliver
    }

    func write(_ chunk: UnsafeRawBufferPointer) throws(APIError) {
        guard bytes.count + chunk.count <= limit else { throw tooLarge }
        bytes.append(contentsOf: chunk)
    }

    func commit() throws(APIError) {
        try deliver(bytes)
        bytes = []
    }

    func abort() { bytes = [] }
}
