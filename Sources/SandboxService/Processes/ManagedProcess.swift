import FoundationEssentials
import Glibc
import Synchronization

/// A command started in the background and kept as a resource: its state, its output for replay, the clients
/// subscribed to its events and those waiting for its exit. Knows nothing of HTTP.
///
/// The command's events arrive in order on the runner's I/O thread. Each is recorded and handed to every subscriber
/// under the same lock a new subscriber takes to read the replay and register, so a subscriber sees every event
/// exactly once, in order: what happened before it subscribed in the replay, the rest live.
public final class ManagedProcess: Sendable {
    public enum Status: String, Sendable {
        case running
        case exited
    }

    /// What a subscriber receives.
    enum Event: Sendable {
        /// Events after the subscriber's last seen id that were dropped from the replay buffer; first, if at all.
        case missed(ClosedRange<UInt64>)
        case output(OutputLog.Event)
        /// Always last.
        case exit(id: UInt64, Termination)
    }

    /// Receives one event; `isReplay` says whether it happened before the subscription. Runs under the process's
    /// lock: it must not block or call back into the process. Returning false ends the subscription.
    typealias Subscriber = @Sendable (_ event: Event, _ isReplay: Bool) -> Bool

    /// A process as clients see it at one moment.
    public struct Snapshot: Sendable {
        public var id: String
        /// The main process's pid (nil only before the command was attached, which no client sees).
        public var pid: Int32?
        public var argv: [String]
        public var status: Status
        /// Set once exited.
        public var termination: Termination?
        public var startedAt: Date
        public var finishedAt: Date?
        public var hasTerminal: Bool
        /// Whether writes to stdin are accepted.
        public var stdinOpen: Bool
    }

    /// Why a control request cannot be carried out.
    public enum ControlError: Error, Equatable, Sendable {
        case exited
        /// Started without stdin, or its stdin was closed.
        case stdinClosed
        /// Too many bytes are waiting for the process to read them.
        case stdinFull
        case noTerminal
    }

    /// A last seen id newer than any event of this process: it came from elsewhere.
    public struct UnknownEventID: Error, Equatable, Sendable {
        public var newest: UInt64
    }

    private struct State {
        var log: OutputLog
        var command: RunningCommand?
        var pid: Int32?
        var stdinOpen: Bool
        var exit: (id: UInt64, termination: Termination)?
        var finishedAt: Date?
        var nextToken: UInt64 = 0
        var subscribers: [UInt64: Subscriber] = [:]
        var waiters: [UInt64: @Sendable (Snapshot) -> Void] = [:]
    }

    public let id: String
    public let argv: [String]
    public let startedAt = Date()
    public let hasTerminal: Bool
    /// Start order within the table.
    let serial: UInt64
    private let state: Mutex<State>
    /// Called once, after the exit was delivered.
    private let onFinish: @Sendable (ManagedProcess) -> Void

    init(
        id: String, serial: UInt64, spec: CommandSpec, outputLimit: Int,
        onFinish: @escaping @Sendable (ManagedProcess) -> Void
    ) {
        self.id = id
        self.serial = serial
        argv = spec.argv
        hasTerminal = spec.terminal != nil
        self.onFinish = onFinish
        state = Mutex(State(log: OutputLog(limit: outputLimit), stdinOpen: spec.stdin || spec.terminal != nil))
    }

    /// Connects the started command (its events may already have arrived).
    func attach(_ command: RunningCommand) {
        let pid = command.pid
        state.withLock { state in
            state.command = command
            state.pid = pid
        }
    }

    /// The runner's sink: records the event and hands it to the subscribers.
    func receive(_ event: CommandEvent) {
        switch event {
        case .stdout(let bytes): record(bytes, from: .stdout)
        case .stderr(let bytes): record(bytes, from: .stderr)
        case .exit(let termination): finish(termination)
        }
    }

    private func record(_ bytes: [UInt8], from channel: OutputChannel) {
        state.withLock { state in
            let event = state.log.append(bytes, from: channel)
            Self.publish(.output(event), to: &state.subscribers)
        }
    }

    private func finish(_ termination: Termination) {
        let (waiters, snapshot) = state.withLock { state -> ([@Sendable (Snapshot) -> Void], Snapshot) in
            for event in state.log.flush() { Self.publish(.output(event), to: &state.subscribers) }
            let exitID = state.log.nextID()
            state.exit = (exitID, termination)
            state.finishedAt = Date()
            state.stdinOpen = false
            Self.publish(.exit(id: exitID, termination), to: &state.subscribers)
            state.subscribers = [:]
            let waiters = Array(state.waiters.values)
            state.waiters = [:]
            return (waiters, self.snapshot(of: state))
        }
        waiters.forEach { $0(snapshot) }
        onFinish(self)
    }

    private static func publish(_ event: Event, to subscribers: inout [UInt64: Subscriber]) {
        for (token, subscriber) in subscribers where !subscriber(event, false) {
            subscribers.removeValue(forKey: token)
        }
    }

    public var snapshot: Snapshot { state.withLock { snapshot(of: $0) } }

    public var isRunning: Bool { state.withLock { $0.exit == nil } }

    private func snapshot(of state: State) -> Snapshot {
        Snapshot(
            id: id, pid: state.pid, argv: argv, status: state.exit == nil ? .running : .exited,
            termination: state.exit?.termination, startedAt: startedAt, finishedAt: state.finishedAt,
            hasTerminal: hasTerminal, stdinOpen: state.stdinOpen)
    }

    // MARK: Events

    /// Hands `subscriber` the kept events after `lastSeen` (0 or nil: all kept), then, until the exit, every new
    /// one. Returns a token for `unsubscribe`, or nil when the subscription already ended (the process had exited
    /// and its exit was replayed, or the subscriber returned false).
    func subscribe(after lastSeen: UInt64?, _ subscriber: @escaping Subscriber) throws(UnknownEventID) -> UInt64? {
        try state.withLock { (state) throws(UnknownEventID) -> UInt64? in
            let lastSeen = lastSeen ?? 0
            guard lastSeen <= state.log.lastID else { throw UnknownEventID(newest: state.log.lastID) }
            let replay = state.log.replay(after: lastSeen)
            if let missed = replay.missed, !subscriber(.missed(missed), true) { return nil }
            for event in replay.events where !subscriber(.output(event), true) { return nil }
            if let exit = state.exit {
                if exit.id > lastSeen { _ = subscriber(.exit(id: exit.id, exit.termination), true) }
                return nil
            }
            state.nextToken += 1
            state.subscribers[state.nextToken] = subscriber
            return state.nextToken
        }
    }

    /// What follows event `lastSent` for a client that reads the events by position.
    enum Next: Sendable {
        case output(OutputLog.Event)
        /// The next event is no longer kept: the client fell behind the replay buffer.
        case dropped
        case exit(id: UInt64, Termination)
        /// Nothing more: the client has the exit.
        case end
        /// Nothing yet: the client's `wake` is called when there is.
        case waiting
    }

    /// Bytes of output kept for replay.
    var replayLimit: Int { state.withLock { $0.log.limit } }

    /// Registers a client that reads the events by position (`next(after:)`) instead of being handed copies:
    /// `wake` is called (under the process's lock: it must only signal) whenever an event is added. Returns the
    /// position to start from (the last event the client has, or the last dropped one), the events it asked for
    /// that are no longer kept, and a token for `unsubscribe`; the token is nil once the process has exited (every
    /// event is then already there).
    func follow(after lastSeen: UInt64?, wake: @escaping @Sendable () -> Void) throws(UnknownEventID) -> (
        start: UInt64, missed: ClosedRange<UInt64>?, token: UInt64?
    ) {
        try state.withLock { (state) throws(UnknownEventID) in
            let lastSeen = lastSeen ?? 0
            guard lastSeen <= state.log.lastID else { throw UnknownEventID(newest: state.log.lastID) }
            let dropped = state.log.droppedThrough
            let missed = lastSeen < dropped ? (lastSeen + 1)...dropped : nil
            let start = max(lastSeen, dropped)
            guard state.exit == nil else { return (start, missed, nil) }
            state.nextToken += 1
            state.subscribers[state.nextToken] = { _, _ in
                wake()
                return true
            }
            return (start, missed, state.nextToken)
        }
    }

    /// The event after `lastSent`, for a client registered with `follow`.
    func next(after lastSent: UInt64) -> Next {
        state.withLock { state in
            let id = lastSent + 1
            if let exit = state.exit, id >= exit.id {
                return id == exit.id ? .exit(id: exit.id, exit.termination) : .end
            }
            if id <= state.log.droppedThrough { return .dropped }
            guard id <= state.log.lastID else { return .waiting }
            guard let event = state.log.event(id) else { return .dropped }
            return .output(event)
        }
    }

    public func unsubscribe(_ token: UInt64) {
        _ = state.withLock { $0.subscribers.removeValue(forKey: token) }
    }

    /// Calls `handler` (on the runner's thread) once the process has exited. Returns a token for `cancelWait`, or nil
    /// if it already has (the handler is not called then).
    public func whenFinished(_ handler: @escaping @Sendable (Snapshot) -> Void) -> UInt64? {
        state.withLock { state in
            guard state.exit == nil else { return nil }
            state.nextToken += 1
            state.waiters[state.nextToken] = handler
            return state.nextToken
        }
    }

    public func cancelWait(_ token: UInt64) {
        _ = state.withLock { $0.waiters.removeValue(forKey: token) }
    }

    // MARK: Control

    /// Queues bytes for stdin, in order after earlier writes.
    public func writeStdin(_ bytes: [UInt8]) throws(ControlError) {
        try state.withLock { (state) throws(ControlError) in
            let command = try Self.running(state)
            guard state.stdinOpen else { throw .stdinClosed }
            do throws(RunningCommand.StdinError) {
                try command.writeStdin(bytes)
            } catch .full {
                throw .stdinFull
            } catch {
                throw .stdinClosed
            }
        }
    }

    /// EOF once everything queued is written; on a terminal, the EOF character (stdin stays open, as a keyboard).
    public func closeStdin() throws(ControlError) {
        try state.withLock { (state) throws(ControlError) in
            let command = try Self.running(state)
            guard state.stdinOpen else { throw .stdinClosed }
            do throws(RunningCommand.StdinError) {
                try command.closeStdin()
            } catch .full {
                throw .stdinFull
            } catch {
                throw .stdinClosed
            }
            if !hasTerminal { state.stdinOpen = false }
        }
    }

    /// Sends `signal` to the process group.
    public func signal(_ signal: Int32) throws(ControlError) {
        try state.withLock { (state) throws(ControlError) in try Self.running(state).signal(signal) }
    }

    public func resize(to size: TerminalSize) throws(ControlError) {
        try state.withLock { (state) throws(ControlError) in
            guard hasTerminal else { throw .noTerminal }
            guard try Self.running(state).resize(to: size) else { throw .exited }
        }
    }

    /// Kills the whole tree: the process group at once, and what left it as soon as the main process is gone. After
    /// the exit there is nothing left to kill: the tree died with its main process.
    public func kill() {
        state.withLock { $0.command }?.cancel()
    }

    private static func running(_ state: State) throws(ControlError) -> RunningCommand {
        guard state.exit == nil, let command = state.command else { throw .exited }
        return command
    }
}
