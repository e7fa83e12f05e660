import FoundationEssentials
import Synchronization

/// The background processes of the server, by id: running ones, and finished ones for a while (at most
/// `retention` after their exit and only the `retainedCount` newest), so a client can still read their exit and
/// output. Knows nothing of HTTP.
///
/// Lock order: the table's lock, then a process's. A process reports its exit to the table without holding its own,
/// and no command is started under the table's lock.
public final class ProcessTable: Sendable {
    public struct Limits: Sendable {
        /// Output bytes each process keeps for replay.
        public var outputBytes = 1 << 20
        /// How long a finished process is kept.
        public var retention: Duration = .seconds(600)
        /// How many finished processes are kept at most (the newest).
        public var retainedCount = 100

        public init() {}
    }

    public enum StartError: Error, Equatable, Sendable {
        /// The server is shutting down.
        case closed
        /// The command could not be started: the program is missing or not executable, too many processes run, or
        /// resources ran out.
        case spawn(SpawnError)
    }

    private struct State {
        var processes: [String: ManagedProcess] = [:]
        /// Finished processes still kept, oldest exit first.
        var finished: [(id: String, at: ContinuousClock.Instant)] = []
        var serial: UInt64 = 0
        /// Ids handed to processes being started, not yet in `processes`.
        var starting: Set<String> = []
        var closed = false
    }

    let runner: CommandRunner
    public let limits: Limits
    private let state = Mutex(State())
    private let clock: @Sendable () -> ContinuousClock.Instant

    public init(
        runner: CommandRunner = CommandRunner(), limits: Limits = Limits(),
        clock: @escaping @Sendable () -> ContinuousClock.Instant = { .now }
    ) {
        self.runner = runner
        self.limits = limits
        self.clock = clock
    }

    /// Starts `spec` in the background. A process is registered (and its id handed out) only once its command runs:
    /// a program that cannot be started is an error, never a process.
    public func start(_ spec: CommandSpec) throws(StartError) -> ManagedProcess {
        let process = try state.withLock { (state) throws(StartError) -> ManagedProcess in
            guard !state.closed else { throw .closed }
            prune(&state)
            state.serial += 1
            var id = Self.makeID()
            while state.processes[id] != nil || state.starting.contains(id) { id = Self.makeID() }
            state.starting.insert(id)
            return ManagedProcess(
                id: id, serial: state.serial, spec: spec, outputLimit: limits.outputBytes,
                onFinish: { [weak self] in self?.finished($0) })
        }
        // Spawned without the table's lock: the process's exit, which takes that lock, may be reported at once.
        let command: RunningCommand
        do throws(SpawnError) {
            command = try runner.start(spec, sink: process.receive)
        } catch {
            _ = state.withLock { $0.starting.remove(process.id) }
            throw .spawn(error)
        }
        process.attach(command)
        let closed = state.withLock { state -> Bool in
            state.starting.remove(process.id)
            state.processes[process.id] = process
            // It may have finished already, before it was registered (then `finished` did not record it).
            if !process.isRunning && !state.finished.contains(where: { $0.id == process.id }) {
                state.finished.append((process.id, clock()))
            }
            return state.closed
        }
        // Shutdown began during the spawn, and may have ended the runner's commands just before this one.
        if closed { command.cancel() }
        return process
    }

    /// The process with this id, if it is running or still kept.
    public func process(_ id: String) -> ManagedProcess? {
        state.withLock { state in
            prune(&state)
            return state.processes[id]
        }
    }

    /// Running and kept processes, in start order.
    public func list() -> [ManagedProcess] {
        state.withLock { state in
            prune(&state)
            return state.processes.values.sorted { $0.serial < $1.serial }
        }
    }

    /// Forgets the process and kills its tree; nil if there is no such process.
    @discardableResult
    public func remove(_ id: String) -> ManagedProcess? {
        let process = state.withLock { state in
            state.finished.removeAll { $0.id == id }
            return state.processes.removeValue(forKey: id)
        }
        process?.kill()
        return process
    }

    /// Processes that have not exited, for metrics.
    public var runningCount: Int {
        state.withLock { $0.processes.count - $0.finished.count }
    }

    /// Refuses new processes and ends every running one: SIGTERM to each tree, SIGKILL to what is left after
    /// `grace` seconds. Blocks the caller (shutdown only) until they have ended, at most `grace` + 2 s.
    public func terminateAll(grace: Double = 2) {
        close()
        runner.terminateAll(grace: grace)
    }

    /// Refuses new processes from now on (`StartError.closed`); running ones go on.
    public func close() {
        state.withLock { $0.closed = true }
    }

    private func finished(_ process: ManagedProcess) {
        state.withLock { state in
            guard state.processes[process.id] === process, !state.finished.contains(where: { $0.id == process.id })
            else { return }
            state.finished.append((process.id, clock()))
            prune(&state)
        }
    }

    /// Forgets finished processes past their retention, and the oldest beyond the count.
    private func prune(_ state: inout State) {
        let expired = clock() - limits.retention
        var drop = state.finished.prefix { $0.at < expired }.count
        drop = max(drop, state.finished.count - limits.retainedCount)
        guard drop > 0 else { return }
        for entry in state.finished.prefix(drop) { state.processes.removeValue(forKey: entry.id) }
        state.finished.removeFirst(drop)
    }

    /// Eight characters of `[0-9a-z]`: short to type, random so an id from before a restart names nothing.
    static func makeID() -> String {
        let digits = String(UInt64.random(in: 0..<2_821_109_907_456), radix: 36)  // 36^8
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}
