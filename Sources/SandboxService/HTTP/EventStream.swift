import Dispatch
import Synchronization

/// What an `EventSource` produced for one read.
enum EventSourceResult: Equatable {
    case bytes(Int)
    /// Nothing now; the source's producer calls the stream's `wake()` when there is.
    case waiting
    case end
}

/// A small frame an event source is sending (a watch event, a process's exit), and how much of it is sent: each fill
/// copies what fits of the rest.
struct PendingBytes {
    private var bytes: [UInt8] = []
    private var sent = 0

    /// All of it is sent (or there is none).
    var isSent: Bool { sent >= bytes.count }

    /// Starts sending `bytes`.
    mutating func start(_ bytes: [UInt8]) {
        self.bytes = bytes
        sent = 0
    }

    /// Copies what fits of the rest into `destination` at `offset`; returns how many bytes it copied.
    mutating func send(into destination: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        let count = Swift.min(bytes.count - sent, destination.count - offset)
        guard count > 0 else { return 0 }
        bytes.withUnsafeBytes { source in
            UnsafeMutableRawBufferPointer(rebasing: destination[offset..<(offset + count)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: source[sent..<(sent + count)]))
        }
        sent += count
        return count
    }
}

/// What an event source's step did, in the fill loop both sources share (`fillFrames`).
enum FrameStep {
    /// Something was started or written: go on.
    case more
    /// The source has ended, or a frame is left incomplete in the destination: stop here.
    case stop
    /// Nothing now; the source's producer wakes the stream when there is.
    case waiting
}

/// The fill loop of an event source, run under its lock: the small frame at `pending` is sent first; whenever it is
/// sent, `next` is asked for more (it may start `pending` again, or write into `destination` itself and advance
/// `written`). Returns the source's answer to libmicrohttpd; `ended` and `midFrame` are read from the state once the
/// loop stops.
func fillFrames<State>(
    _ destination: UnsafeMutableRawBufferPointer, state: inout State, pending: WritableKeyPath<State, PendingBytes>,
    ended: (State) -> Bool, midFrame: (State) -> Bool, next: (inout State, _ written: inout Int) -> FrameStep
) -> (result: EventSourceResult, midFrame: Bool) {
    var written = 0
    loop: while written < destination.count {
        if !state[keyPath: pending].isSent {
            written += state[keyPath: pending].send(into: destination, at: written)
            continue
        }
        switch next(&state, &written) {
        case .more: continue
        case .stop: break loop
        // Waiting is only asked for when nothing is half sent.
        case .waiting: return (written > 0 ? .bytes(written) : .waiting, false)
        }
    }
    let unfinished = midFrame(state)
    if written > 0 { return (.bytes(written), unfinished) }
    return (ended(state) && !unfinished ? .end : .waiting, unfinished)
}

/// The body of an event stream produced on demand, as libmicrohttpd asks for bytes, instead of queued by a producer:
/// any number of clients can then follow one producer without a copy each.
protocol EventSource: AnyObject, Sendable {
    /// Polling thread: writes up to `destination.count` bytes. `midFrame` says whether a frame was left incomplete
    /// (the stream's own queued bytes, such as a keep-alive comment, must wait for its end).
    func fill(_ destination: UnsafeMutableRawBufferPointer) -> (result: EventSourceResult, midFrame: Bool)
}

/// A Server-Sent Events body written by a producer thread and read by libmicrohttpd's content reader.
///
/// With an internal polling thread, a content reader that returns 0 spins, so when nothing is buffered the reader
/// parks the connection (suspends it) and the next write resumes it. The buffer, the finished flag and the parked flag
/// change under one lock, and suspend/resume are called under that same lock: resuming a connection that is not
/// suspended is undefined in libmicrohttpd, so `parked` must be true exactly when the connection is suspended.
public final class EventStream: Sendable {
    /// What the content reader should do.
    enum ReadResult: Equatable {
        case bytes(Int)
        /// Nothing to send yet: the connection was suspended.
        case parked
        case end
        /// The client went away: close the connection without ending the body.
        case abort
    }

    struct State {
        var buffer: [UInt8] = []
        var head = 0
        var finished = false
        /// The client went away; nothing more is sent.
        var aborted = false
        var parked = false
        /// Counts `wake()` calls, so a reader that found its source empty does not park past a wake.
        var generation: UInt64 = 0
        /// The source left a frame incomplete.
        var sourceMidFrame = false
        var sourceEnded = false
        var lastWrite = DispatchTime.now()
        var suspend: (@Sendable () -> Void)?
        var resume: (@Sendable () -> Void)?
        var onClientGone: (@Sendable () -> Void)?
        /// The producer was asked to pause because the client reads slower than it writes.
        var producerPaused = false
        var pauseProducer: (@Sendable () -> Void)?
        var resumeProducer: (@Sendable () -> Void)?

        var pending: Int { buffer.count - head }

        /// Appends bytes and says whether the connection must be resumed.
        mutating func append(_ bytes: some Sequence<UInt8>) -> Bool {
            guard !finished else { return false }
            buffer.append(contentsOf: bytes)
            lastWrite = .now()
            return wake()
        }

        mutating func finish() -> Bool {
            guard !finished else { return false }
            finished = true
            return wake()
        }

        private mutating func wake() -> Bool {
            guard parked else { return false }
            parked = false
            return true
        }

        /// Copies up to `max` bytes out, or parks, or ends.
        mutating func read(into destination: UnsafeMutableRawBufferPointer) -> ReadResult {
            if aborted { return .abort }
            if pending > 0 {
                let count = min(pending, destination.count)
                buffer.withUnsafeBytes { source in
                    destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[head..<(head + count)]))
                }
                head += count
                if head == buffer.count {
                    buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 20)
                    head = 0
                } else if head > 1 << 16 && head * 2 > buffer.count {
                    buffer.removeSubrange(0..<head)
                    head = 0
                }
                return .bytes(count)
            }
            if finished { return .end }
            parked = true
            return .parked
        }
    }

    private let state = Mutex(State())
    /// Produces the body on demand; nil for a stream whose producer queues everything with `write`.
    private let source: (any EventSource)?
    /// Whether a graceful shutdown waits for this stream to end. False for streams that follow something meant to
    /// outlive requests (a background process's events).
    public let holdsShutdown: Bool
    /// Buffered bytes beyond which the producer is paused (`--stream-buffer-bytes`): enough to keep a fast client
    /// busy, small enough that a slow client costs little memory.
    let highWater: Int
    /// Buffered bytes below which a paused producer is resumed: a quarter of `highWater`, so the producer is not
    /// switched on and off for every read, and at least 1 (resumed once all is sent).
    let lowWater: Int

    /// - Parameter highWater: bytes buffered for the client beyond which the producer is paused.
    public init(holdsShutdown: Bool = true, highWater: Int) {
        self.holdsShutdown = holdsShutdown
        self.highWater = highWater
        lowWater = max(1, highWater / 4)
        source = nil
    }

    /// A stream whose body `source` produces as it is read; `write` still queues bytes (comments) between its frames.
    init(holdsShutdown: Bool, highWater: Int, source: any EventSource) {
        self.holdsShutdown = holdsShutdown
        self.highWater = highWater
        lowWater = max(1, highWater / 4)
        self.source = source
    }

    /// The source has something new: resumes the connection if the reader parked. Called for every event of a busy
    /// producer, so it does no more than that (a stream that is not parked is not silent either: its reader is
    /// behind).
    func wake() {
        state.withLock { state in
            state.generation &+= 1
            guard state.parked else { return }
            state.parked = false
            state.lastWrite = .now()
            state.resume?()
        }
    }

    /// Lets the stream pause its producer while the client is slow (backpressure) and resume it once drained.
    public func setFlowControl(pause: @escaping @Sendable () -> Void, resume: @escaping @Sendable () -> Void) {
        let pauseNow = state.withLock { state -> Bool in
            state.pauseProducer = pause
            state.resumeProducer = resume
            guard !state.producerPaused, state.pending > highWater else { return false }
            state.producerPaused = true
            return true
        }
        if pauseNow { pause() }
    }

    /// Queues one event. `data` may hold newlines: each line becomes its own `data:` field, as SSE requires.
    public func send(event: String, data: String) {
        write(Self.frame(event: event, data: data))
    }

    /// Queues a comment line, which clients ignore; used as a keep-alive, so nothing is queued while bytes are still
    /// waiting to be sent (a client that does not read gets no pile of keep-alives).
    public func sendComment(_ text: String) {
        guard state.withLock({ $0.pending == 0 }) else { return }
        write(Array(": \(text)\n\n".utf8))
    }

    /// Ends the stream once everything queued has been sent. Later writes are dropped.
    public func finish() {
        state.withLock { state in
            if state.finish() { state.resume?() }
        }
    }

    public var isFinished: Bool { state.withLock { $0.finished } }

    /// Called once if the client goes away before the stream finished.
    public func onClientGone(_ handler: @escaping @Sendable () -> Void) {
        state.withLock { $0.onClientGone = handler }
    }

    func write(_ bytes: [UInt8]) {
        let pause = state.withLock { state -> (@Sendable () -> Void)? in
            if state.append(bytes) { state.resume?() }
            guard !state.producerPaused, !state.finished, state.pending > highWater else { return nil }
            state.producerPaused = state.pauseProducer != nil
            return state.pauseProducer
        }
        pause?()
    }

    /// Connects the stream to its connection; until then writes are only buffered.
    func attach(suspend: @escaping @Sendable () -> Void, resume: @escaping @Sendable () -> Void) {
        state.withLock {
            $0.suspend = suspend
            $0.resume = resume
        }
    }

    /// The content reader: runs on the connection's polling thread.
    func read(into destination: UnsafeMutableRawBufferPointer) -> ReadResult {
        guard let source else { return readQueued(into: destination) }
        while true {
            // The source is called without the stream's lock: it takes its producer's lock, under which the
            // producer calls `wake()`.
            let generation = state.withLock { state -> UInt64? in
                if state.aborted || state.sourceEnded || (state.pending > 0 && !state.sourceMidFrame) { return nil }
                return state.generation
            }
            guard let generation else { return readQueued(into: destination) }
            let (result, midFrame) = source.fill(destination)
            switch result {
            case .bytes(let count):
                state.withLock {
                    $0.sourceMidFrame = midFrame
                    $0.lastWrite = .now()
                }
                return .bytes(count)
            case .end:
                state.withLock { state in
                    state.sourceEnded = true
                    state.finished = true
                }
            case .waiting:
                let parked = state.withLock { state -> Bool in
                    guard state.generation == generation, !state.aborted, state.pending == 0 else { return false }
                    state.parked = true
                    state.suspend?()
                    return true
                }
                if parked { return .parked }
            }
        }
    }

    private func readQueued(into destination: UnsafeMutableRawBufferPointer) -> ReadResult {
        let (result, resume) = state.withLock { state -> (ReadResult, (@Sendable () -> Void)?) in
            let result = state.read(into: destination)
            if result == .parked { state.suspend?() }
            guard state.producerPaused, state.pending < lowWater else { return (result, nil) }
            state.producerPaused = false
            return (result, state.resumeProducer)
        }
        resume?()
        return result
    }

    /// The client went away while the connection was suspended: stop the producer, drop what is buffered and
    /// resume the connection, whose reader then aborts, so libmicrohttpd closes it at once.
    func clientGone() {
        let handler = state.withLock { state -> (@Sendable () -> Void)? in
            defer { state.onClientGone = nil }
            return state.finished ? nil : state.onClientGone
        }
        handler?()
        state.withLock { state in
            guard !state.aborted else { return }
            state.aborted = true
            state.buffer = []
            state.head = 0
            let wake = state.finish() || state.parked
            state.parked = false
            if wake { state.resume?() }
        }
    }

    /// The response was destroyed: if the stream had not finished, the client went away.
    func responseReleased() {
        let handler = state.withLock { state -> (@Sendable () -> Void)? in
            defer {
                state.finished = true
                state.onClientGone = nil
            }
            return state.finished ? nil : state.onClientGone
        }
        handler?()
    }

    /// Seconds since the last write; the keep-alive timer reads it.
    func idleTime(now: DispatchTime = .now()) -> Double {
        let last = state.withLock { $0.lastWrite }
        return Double(now.uptimeNanoseconds &- last.uptimeNanoseconds) / 1e9
    }

    /// One SSE event: `event:` line, a `data:` line per line of `data`, blank line.
    static func frame(event: String, data: String) -> [UInt8] {
        var text = "event: \(event)\n"
        var lineStart = data.startIndex
        var index = data.startIndex
        while index < data.endIndex {
            let character = data[index]
            if character == "\n" || character == "\r" || character == "\r\n" {
                text += "data: \(data[lineStart..<index])\n"
                lineStart = data.index(after: index)
            }
            index = data.index(after: index)
        }
        text += "data: \(data[lineStart...])\n\n"
        return Array(text.utf8)
    }
}
