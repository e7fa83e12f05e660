import FoundationEssentials
import Synchronization

extension ProcessesAPI {
    /// `GET /v1/processes/{id}/events[?encoding=base64]`: the kept output, then live output, then `exit`, as
    /// Server-Sent Events. `Last-Event-ID` (or `?last_event_id=`, for clients that cannot set headers) resumes
    /// after that event.
    func events(_ process: ManagedProcess, _ request: HTTPRequest) -> Reply {
        let encoding: EventSubscriber.Encoding
        switch request.query["encoding"] {
        case nil, "", "text"?, "utf-8"?: encoding = .text
        case "base64"?: encoding = .base64
        case let other?: return .failure(Self.invalid("encoding \"\(other)\" must be text or base64"))
        }
        var lastSeen: UInt64?
        let text = (request.headers["last-event-id"] ?? request.query["last_event_id"] ?? "")
            .trimmingWhitespace()
        if !text.isEmpty {
            guard let id = UInt64(text) else {
                return .failure(Self.invalid("Last-Event-ID \"\(text)\" must be an event id of this process"))
            }
            lastSeen = id
        }
        let stream = EventStream(holdsShutdown: false)
        let subscriber = EventSubscriber(stream: stream, encoding: encoding, maxBacklog: maxBacklog)
        // The stream's flow control tells when the client falls behind; the process is never paused for it.
        stream.setFlowControl(pause: subscriber.fellBehind, resume: subscriber.caughtUp)
        let token: UInt64?
        do throws(ManagedProcess.UnknownEventID) {
            token = try process.subscribe(after: lastSeen, subscriber.deliver)
        } catch {
            return .failure(
                Self.invalid(
                    "Last-Event-ID \(lastSeen ?? 0) is not an event of process '\(process.id)' "
                        + "(its newest is \(error.newest))"))
        }
        if let token {
            stream.onClientGone { process.unsubscribe(token) }
        } else {
            stream.finish()
        }
        return .response(.eventStream(stream))
    }
}

/// One client of a process's events: writes them as SSE frames into its stream, and cuts the client off (with an
/// `error` event) once it is `maxBacklog` bytes behind, so a client that stops reading costs bounded memory.
final class EventSubscriber: Sendable {
    enum Encoding: Sendable {
        /// `data:` is a JSON string of the chunk's text (invalid UTF-8 as U+FFFD).
        case text
        /// `data:` is a JSON string of the base64 of the chunk's bytes.
        case base64
    }

    private struct Backlog {
        /// The stream holds more than its high-water mark.
        var behind = false
        /// Bytes written since then.
        var written = 0
    }

    private let stream: EventStream
    private let encoding: Encoding
    private let maxBacklog: Int
    private let backlog = Mutex(Backlog())

    init(stream: EventStream, encoding: Encoding, maxBacklog: Int) {
        self.stream = stream
        self.encoding = encoding
        self.maxBacklog = maxBacklog
    }

    func fellBehind() {
        backlog.withLock { $0 = Backlog(behind: true, written: 0) }
    }

    func caughtUp() {
        backlog.withLock { $0 = Backlog() }
    }

    /// The process's subscriber: false ends the subscription (after the exit, or once the client was cut off).
    func deliver(_ event: ManagedProcess.Event, isReplay: Bool) -> Bool {
        switch event {
        case .missed(let range):
            stream.write(Self.comment(missed: range))
            return true
        case .output(let output):
            // A piece of a character held back for the next event, or its flush in base64: nothing to show.
            guard let frame = Self.frame(output, encoding: encoding) else { return true }
            stream.write(frame)
            // The replay is bounded by the process's buffer; only live output counts against the client.
            guard !isReplay, isTooFarBehind(after: frame.count) else { return true }
            let error: JSONValue = [
                "code": "RESOURCE_EXHAUSTED",
                "message": .string(
                    "the client fell more than \(maxBacklog) bytes behind the output; reconnect with Last-Event-ID"),
            ]
            stream.write(Self.frame(event: "error", id: nil, data: error.encoded()))
            stream.finish()
            return false
        case .exit(let id, let termination):
            stream.write(Self.frame(event: "exit", id: id, data: Self.exitData(termination).encoded()))
            stream.finish()
            return false
        }
    }

    private func isTooFarBehind(after written: Int) -> Bool {
        backlog.withLock { backlog in
            guard backlog.behind else { return false }
            backlog.written += written
            return backlog.written > maxBacklog
        }
    }

    /// `event: stdout`, `id: N`, `data: "<chunk>"`; nil when the chunk is empty in this encoding.
    static func frame(_ output: OutputLog.Event, encoding: Encoding) -> [UInt8]? {
        let text =
            switch encoding {
            case .text: output.text
            case .base64: Data(output.bytes).base64EncodedString()
            }
        guard !text.isEmpty else { return nil }
        return frame(event: output.channel.rawValue, id: output.id, data: JSONValue.string(text).encoded())
    }

    /// One SSE event; `data` is one line (JSON escapes line breaks).
    static func frame(event: String, id: UInt64?, data: [UInt8]) -> [UInt8] {
        var frame = Array("event: \(event)\n".utf8)
        if let id { frame += Array("id: \(id)\n".utf8) }
        frame += Array("data: ".utf8) + data + [0x0A, 0x0A]
        return frame
    }

    /// `{"exit_code": N, "signal": "SIGINT"|null, "timed_out": bool}`.
    static func exitData(_ termination: Termination) -> JSONValue {
        [
            "exit_code": .number(Double(termination.exitCode)),
            "signal": termination.signal.map { .string(ProcessSignal.name(of: $0)) } ?? .null,
            "timed_out": .bool(termination.timedOut),
        ]
    }

    /// Said once, before the replay, when events the client asked for were dropped from the buffer.
    static func comment(missed range: ClosedRange<UInt64>) -> [UInt8] {
        let events =
            range.lowerBound == range.upperBound
            ? "event \(range.lowerBound) is" : "events \(range.lowerBound)-\(range.upperBound) are"
        return Array(": \(events) no longer buffered; the replay starts after them\n\n".utf8)
    }
}
