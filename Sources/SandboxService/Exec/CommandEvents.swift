import Synchronization

/// A running command's events as an async sequence, for a consumer that awaits each one (a streaming RPC): the
/// runner's sink pushes into a queue, the consumer pulls from it. The queue is bounded in output bytes: past
/// `highWater` the command's output is paused (its pipes are not read, so the command blocks on write), and resumed
/// once the consumer has taken the queue below half of it.
public final class CommandEvents: AsyncSequence, Sendable {
    public typealias Element = CommandEvent

    private struct State {
        var queue: [CommandEvent] = []
        var head = 0
        var bytes = 0
        var paused = false
        var ended = false
        var waiter: CheckedContinuation<CommandEvent?, Never>?
        var command: RunningCommand?
    }

    private let state = Mutex(State())
    private let highWater: Int

    /// - Parameter highWater: output bytes queued before the command is paused.
    public init(highWater: Int) {
        self.highWater = highWater
    }

    /// The sink to start the command with.
    public var sink: @Sendable (CommandEvent) -> Void { { [self] event in push(event) } }

    /// Connects the started command, so the queue can pause and resume its output.
    public func attach(_ command: RunningCommand) {
        let pause = state.withLock { state -> Bool in
            state.command = command
            return state.paused
        }
        if pause { command.pauseOutput() }
    }

    private func push(_ event: CommandEvent) {
        let (waiter, pause) = state.withLock { state -> (CheckedContinuation<CommandEvent?, Never>?, RunningCommand?) in
            if let waiter = state.waiter {
                state.waiter = nil
                if case .exit = event { state.ended = true }
                return (waiter, nil)
            }
            state.queue.append(event)
            state.bytes += event.outputCount
            guard !state.paused, state.bytes > highWater else { return (nil, nil) }
            state.paused = true
            return (nil, state.command)
        }
        waiter?.resume(returning: event)
        pause?.pauseOutput()
    }

    /// The next event, waiting for it if none is queued; nil once the exit was taken. One consumer at a time.
    func next() async -> CommandEvent? {
        await withCheckedContinuation { continuation in
            let (taken, resume) = state.withLock { state -> (CommandEvent??, RunningCommand?) in
                guard state.head < state.queue.count else {
                    if state.ended { return (.some(nil), nil) }
                    state.waiter = continuation
                    return (nil, nil)
                }
                let event = state.queue[state.head]
                state.head += 1
                state.bytes -= event.outputCount
                if state.head == state.queue.count {
                    state.queue.removeAll(keepingCapacity: true)
                    state.head = 0
                }
                if case .exit = event { state.ended = true }
                guard state.paused, state.bytes <= highWater / 2 else { return (event, nil) }
                state.paused = false
                return (event, state.command)
            }
            resume?.resumeOutput()
            if let taken { continuation.resume(returning: taken) }
        }
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let events: CommandEvents

        public mutating func next() async -> CommandEvent? { await events.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(events: self) }
}

extension CommandEvent {
    /// Output bytes the event carries.
    var outputCount: Int {
        switch self {
        case .stdout(let bytes), .stderr(let bytes): bytes.count
        case .exit: 0
        }
    }
}
