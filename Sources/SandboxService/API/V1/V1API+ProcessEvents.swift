import FoundationEssentials
import Synchronization

extension V1API {
    /// `GET /v1/processes/{id}/events[?encoding=base64]`: the kept output, then live output, then `exit`, as
    /// Server-Sent Events. `Last-Event-ID` (or `?last_event_id=`, for clients that cannot set headers) resumes
    /// after that event.
    func events(_ process: ManagedProcess, _ request: HTTPRequest) throws(APIError) -> Reply {
        let encoding: EventSubscriber.Encoding
        switch request.query["encoding"] {
        case nil, "", "text"?, "utf-8"?: encoding = .text
        case "base64"?: encoding = .base64
        case let other?: throw Self.invalid("encoding \"\(other)\" must be text or base64")
        }
        var lastSeen: UInt64?
        let text = (request.headers["last-event-id"] ?? request.query["last_event_id"] ?? "")
            .trimmingWhitespace()
        if !text.isEmpty {
            guard Self.decimal(text, fraction: false) != nil, let id = UInt64(text) else {
                throw Self.invalid("Last-Event-ID \"\(text)\" must be an event id of this process")
            }
            lastSeen = id
        }
        let subscriber = EventSubscriber(process: process, encoding: encoding)
        let stream = EventStream(holdsShutdown: false, highWater: sandbox.streamBufferBytes, source: subscriber)
        let start: (start: UInt64, missed: ClosedRange<UInt64>?, token: UInt64?)
        do {
            // Weak: the process keeps the waker until the client leaves, and the stream lives as long as its response.
            start = try sandbox.follow(process, after: lastSeen) { [weak stream] in stream?.wake() }
        } catch {
            throw V1Error.answer(error)
        }
        subscriber.begin(after: start.start, token: start.token)
        if let missed = start.missed { stream.write(EventSubscriber.comment(missed: missed)) }
        if let token = start.token { stream.onClientGone { process.unsubscribe(token) } }
        return .response(.eventStream(stream))
    }
}

/// One client of a process's events: reads them from the process's replay log by position and encodes them as
/// libmicrohttpd asks for bytes, so nothing is copied or encoded ahead. A client costs the event it is in the middle
/// of, however many clients follow the process, however fast it writes and however far behind the client is. One
/// whose next event was dropped from the log (it fell more than the replay buffer behind) gets an `error` event and
/// its stream ends; it can resume with `Last-Event-ID`.
final class EventSubscriber: EventSource {
    enum Encoding: Sendable {
        /// `data:` is a JSON string of the chunk's text (invalid UTF-8 as U+FFFD).
        case text
        /// `data:` is a JSON string of the base64 of the chunk's bytes.
        case base64
    }

    private struct State {
        /// The id of the last event written (or skipped).
        var lastSent: UInt64 = 0
        var frame: Frame?
        /// A last small frame (the exit, or the error), after which the stream ends.
        var tail = PendingBytes()
        var ending = false
        var token: UInt64?
    }

    private let process: ManagedProcess
    private let encoding: Encoding
    private let state = Mutex(State())

    init(process: ManagedProcess, encoding: Encoding) {
        self.process = process
        self.encoding = encoding
    }

    /// Starts after event `lastSent`; `token` unsubscribes the waker when the stream ends early.
    func begin(after lastSent: UInt64, token: UInt64?) {
        state.withLock { state in
            state.lastSent = lastSent
            state.token = token
        }
    }

    func fill(_ destination: UnsafeMutableRawBufferPointer) -> (result: EventSourceResult, midFrame: Bool) {
        state.withLock { state in
            fillFrames(
                destination, state: &state, pending: \.tail, ended: \.ending,
                midFrame: { $0.frame != nil || !$0.tail.isSent }
            ) { state, written in
                if state.ending { return .stop }
                if var frame = state.frame {
                    written += frame.write(into: UnsafeMutableRawBufferPointer(rebasing: destination[written...]))
                    state.frame = frame.isComplete ? nil : frame
                    return frame.isComplete ? .more : .stop
                }
                switch process.next(after: state.lastSent) {
                case .output(let event):
                    state.lastSent = event.id
                    state.frame = Frame(event, encoding: encoding)
                case .dropped:
                    let error: JSONValue = [
                        "code": "RESOURCE_EXHAUSTED",
                        "message": .string(
                            "the client fell more than the \(process.replayLimit) bytes of output kept for replay "
                                + "behind; reconnect with Last-Event-ID"),
                    ]
                    state.tail.start(Self.frame(event: "error", id: nil, data: error.encoded()))
                    state.ending = true
                    if let token = state.token { process.unsubscribe(token) }
                case .exit(let id, let termination):
                    state.lastSent = id
                    state.tail.start(Self.frame(event: "exit", id: id, data: Self.exitData(termination).encoded()))
                    state.ending = true
                case .end:
                    state.ending = true
                case .waiting:
                    return .waiting
                }
                return .more
            }
        }
    }

    /// One output event being written: `event: stdout`, `id: N`, `data: "<chunk>"`, produced piece by piece.
    private struct Frame {
        private var prefix: [UInt8]
        private var prefixSent = 0
        /// What the data is made of: the chunk's text bytes (the carried-in start of a character included, the
        /// held-back end left out), or for base64 its raw bytes.
        private let source: [UInt8]
        private let end: Int
        private var position = 0
        private let base64: Bool
        private static let suffix: [UInt8] = [UInt8(ascii: "\""), 0x0A, 0x0A]
        private var suffixSent = 0
        /// The rest of a piece that did not fit whole into the last call's buffer; written first.
        private var split: [UInt8] = []

        /// nil when the chunk is empty in this encoding (only the start of a character, held back for the next).
        init?(_ event: OutputLog.Event, encoding: Encoding) {
            base64 = encoding == .base64
            if base64 {
                source = event.bytes
                end = source.count
            } else {
                source = event.carriedIn.isEmpty ? event.bytes : event.carriedIn + event.bytes
                end = source.count - event.heldBack
            }
            guard end > 0 else { return nil }
            prefix = Array("event: \(event.channel.rawValue)\nid: \(event.id)\ndata: \"".utf8)
        }

        var isComplete: Bool { suffixSent == Self.suffix.count && split.isEmpty }

        /// Writes as much of the frame as fits; returns how many bytes (at least one while the frame is not
        /// complete: a character or escape that does not fit is split, its rest kept for the next call).
        mutating func write(into destination: UnsafeMutableRawBufferPointer) -> Int {
            var out = 0
            var room: Int { destination.count - out }
            // Writes one piece (a prefix byte, a character, an escape, a base64 group); false if it did not fit
            // whole, its rest then kept in `split`.
            func emit<Piece: Collection<UInt8>>(_ piece: Piece) -> Bool {
                var index = piece.startIndex
                while index != piece.endIndex, out < destination.count {
                    destination[out] = piece[index]
                    out += 1
                    piece.formIndex(after: &index)
                }
                guard index != piece.endIndex else { return true }
                split = Array(piece[index...])
                return false
            }
            if !split.isEmpty {
                let rest = split
                split = []
                guard emit(rest) else { return out }
            }
            if prefixSent < prefix.count {
                guard emit(prefix[prefixSent...]) else {
                    prefixSent = prefix.count
                    return out
                }
                prefixSent = prefix.count
            }
            while position < end, room > 0 {
                var fitted: Bool
                if base64 {
                    let count = min(3, end - position)
                    let first = source[position]
                    let second = count > 1 ? source[position + 1] : 0
                    let third = count > 2 ? source[position + 2] : 0
                    position += count
                    let digits = (
                        Self.base64Digits[Int(first >> 2)], Self.base64Digits[Int((first & 0x03) << 4 | second >> 4)],
                        count > 1 ? Self.base64Digits[Int((second & 0x0F) << 2 | third >> 6)] : UInt8(ascii: "="),
                        count > 2 ? Self.base64Digits[Int(third & 0x3F)] : UInt8(ascii: "=")
                    )
                    if room >= 4 {
                        destination[out] = digits.0
                        destination[out + 1] = digits.1
                        destination[out + 2] = digits.2
                        destination[out + 3] = digits.3
                        out += 4
                        fitted = true
                    } else {
                        fitted = emit([digits.0, digits.1, digits.2, digits.3])
                    }
                } else if source[position] < 0x80 {
                    let byte = source[position]
                    position += 1
                    let size = Self.escapedSize(byte)
                    if size <= room {
                        // The common case, without building the piece.
                        Self.writeEscaped(byte, size: size, into: destination, at: out)
                        out += size
                        fitted = true
                    } else {
                        var piece = [UInt8](repeating: 0, count: size)
                        piece.withUnsafeMutableBytes { Self.writeEscaped(byte, size: size, into: $0, at: 0) }
                        fitted = emit(piece)
                    }
                } else {
                    // A multi-byte character, or an invalid sequence shown as U+FFFD (its maximal subpart, as
                    // `String(decoding:as:)` replaces it).
                    var iterator = source[position..<end].makeIterator()
                    var parser = Unicode.UTF8.ForwardParser()
                    switch parser.parseScalar(from: &iterator) {
                    case .valid(let encoded):
                        // A valid character is its own bytes.
                        let start = position
                        position += encoded.count
                        fitted = emit(source[start..<position])
                    case .error(let length):
                        position += length
                        fitted = emit(Self.replacement)
                    case .emptyInput:
                        position = end
                        fitted = true
                    }
                }
                if !fitted { return out }
            }
            if position < end { return out }
            if suffixSent < Self.suffix.count {
                guard emit(Self.suffix[suffixSent...]) else {
                    suffixSent = Self.suffix.count
                    return out
                }
                suffixSent = Self.suffix.count
            }
            return out
        }

        /// The size of an ASCII byte in a JSON string as `JSONValue` writes strings: quotes, backslashes, CR, LF
        /// and tab take two bytes, other control characters six (`\u00XX`).
        private static func escapedSize(_ byte: UInt8) -> Int {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x0A, 0x0D, 0x09: 2
            case 0..<0x20: 6
            default: 1
            }
        }

        /// Writes an ASCII byte as `escapedSize(byte)` bytes of a JSON string.
        private static func writeEscaped(
            _ byte: UInt8, size: Int, into destination: UnsafeMutableRawBufferPointer, at offset: Int
        ) {
            switch size {
            case 1: destination[offset] = byte
            case 2:
                destination[offset] = UInt8(ascii: "\\")
                destination[offset + 1] =
                    switch byte {
                    case 0x0A: UInt8(ascii: "n")
                    case 0x0D: UInt8(ascii: "r")
                    case 0x09: UInt8(ascii: "t")
                    default: byte
                    }
            default:
                destination[offset] = UInt8(ascii: "\\")
                destination[offset + 1] = UInt8(ascii: "u")
                destination[offset + 2] = UInt8(ascii: "0")
                destination[offset + 3] = UInt8(ascii: "0")
                destination[offset + 4] = hexDigits[Int(byte >> 4)]
                destination[offset + 5] = hexDigits[Int(byte & 15)]
            }
        }
        private static let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]
        private static let hexDigits = Array("0123456789abcdef".utf8)
        private static let base64Digits = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
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
