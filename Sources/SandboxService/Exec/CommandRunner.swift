import FoundationEssentials
import Glibc
import Synchronization

/// What to run: everything already validated and resolved by the caller (argv split, cwd confined to the root).
public struct CommandSpec: Sendable {
    public var argv: [String]
    /// The working directory's path: what the child changes to when `directory` is nil, for display otherwise.
    public var cwd: String
    /// The working directory, open (as the Files layer resolved it); the child changes into it with `fchdir`, so
    /// nothing is looked up by path again.
    public var directory: Descriptor?
    /// `KEY=value` strings, the whole environment of the child.
    public var environment: [String]
    /// Seconds before the process tree is killed; `nil` runs without a limit.
    public var timeout: Double?
    /// Give the command a pipe on stdin (written with `RunningCommand.writeStdin`) instead of `/dev/null`.
    public var stdin = false
    /// Run the command on a new pseudo-terminal of this size, as its controlling terminal; stdout then carries
    /// everything the terminal shows and stdin is the keyboard.
    public var terminal: TerminalSize?

    public init(argv: [String], cwd: String, environment: [String], timeout: Double?) {
        self.argv = argv
        self.cwd = cwd
        self.environment = environment
        self.timeout = timeout
    }
}

/// A terminal's size in character cells.
public struct TerminalSize: Sendable, Equatable {
    public var columns: UInt16
    public var rows: UInt16

    public init(columns: UInt16, rows: UInt16) {
        self.columns = columns
        self.rows = rows
    }
}

/// How a command ended.
public struct Termination: Sendable, Equatable {
    /// The shell-convention code: the exit status, 128 + N for a signal, 124 for a timeout.
    public var exitCode: Int32
    /// The signal that ended it, if any.
    public var signal: Int32?
    public var timedOut: Bool

    /// A command that never ran, reported with a shell's exit code.
    public init(exitCode: Int32) {
        self.exitCode = exitCode
        signal = nil
        timedOut = false
    }

    init(waitStatus status: Int32, timedOut: Bool) {
        let signal = status & 0x7f
        self.signal = signal == 0 ? nil : signal
        self.timedOut = timedOut
        if timedOut {
            exitCode = 124
        } else if signal == 0 {
            exitCode = (status >> 8) & 0xff
        } else {
            exitCode = 128 + signal
        }
    }
}

/// An event of a running command. Events come one at a time and in order: output on the I/O loop's thread, the exit
/// on that thread or on the reaper's (never before the last output).
public enum CommandEvent: Sendable {
    case stdout([UInt8])
    case stderr([UInt8])
    /// Always the last event; all output the command wrote was delivered before it.
    case exit(Termination)
}

/// Runs commands and reports their output and termination as events. Knows nothing of HTTP.
public final class CommandRunner: Sendable {
    /// One thread for every pipe read, timer and event of every command: handlers never block, so one loop serves
    /// any number of commands, and each command's events come out in order.
    let loop = IOLoop.shared
    /// Seconds output is still collected after the main process exited, for descendants that escaped its process
    /// group and hold the pipes until they are killed (`--drain-timeout`). The default, 0.1, is long enough to
    /// drain what was already written and short enough that such a holder never holds a reply; after it, one
    /// pipe's worth is read and the pipes are closed.
    let drainGrace: Double
    /// Stdin bytes buffered for a command that does not read: beyond this, writes are refused.
    let maxPendingStdin: Int
    private let running = Mutex<(next: UInt64, commands: [UInt64: RunningCommand])>((0, [:]))
    /// Commands (of every kind) that may run at once; nil for no limit.
    public let maxProcesses: Int?

    /// - Parameters:
    ///   - maxProcesses: commands that may run at once; more are refused with `tooManyProcesses` before anything is
    ///     spawned. nil for no limit.
    ///   - drainGrace: seconds output is still read after a command's main process exited.
    ///   - maxPendingStdin: stdin bytes that may wait for one command to read them; more are refused (`full`).
    public init(maxProcesses: Int? = nil, drainGrace: Double = 0.1, maxPendingStdin: Int = 8 << 20) {
        self.maxProcesses = maxProcesses
        self.drainGrace = drainGrace
        self.maxPendingStdin = maxPendingStdin
    }

    private let timeouts = Atomic<Int>(0)
    private let refusals = Atomic<Int>(0)
    private let spawnFailures = Mutex<[String: Int]>([:])

    /// Commands that have not finished.
    public var runningCount: Int { running.withLock { $0.commands.count } }

    /// Commands killed by their timeout since the runner started.
    public var timedOutCount: Int { timeouts.load(ordering: .relaxed) }

    func countTimeout() { timeouts.add(1, ordering: .relaxed) }

    /// Commands refused because `maxProcesses` were running.
    public var refusedCount: Int { refusals.load(ordering: .relaxed) }

    /// Spawns that failed for lack of resources, by the errno's name (`EMFILE`, `ENFILE`, `EAGAIN`, `ENOMEM`, …).
    public var spawnFailureCounts: [String: Int] { spawnFailures.withLock { $0 } }

    /// Starts `spec`; `sink` receives its events in order, ending with exactly one `.exit`.
    /// - Throws: `SpawnError`; then nothing was started and `sink` is never called.
    public func start(_ spec: CommandSpec, sink: @escaping @Sendable (CommandEvent) -> Void) throws(SpawnError)
        -> RunningCommand
    {
        // The command takes its place among the running ones before it is spawned, so the limit holds however many
        // spawns run at once.
        let command = try running.withLock { (state) throws(SpawnError) -> RunningCommand in
            if let maxProcesses, state.commands.count >= maxProcesses {
                refusals.add(1, ordering: .relaxed)
                throw .tooManyProcesses(maxProcesses)
            }
            state.next += 1
            let command = RunningCommand(runner: self, serial: state.next, sink: sink)
            state.commands[state.next] = command
            return command
        }
        do throws(SpawnError) {
            try spawn(command, spec)
        } catch {
            finished(command)
            if case .resourcesExhausted(_, let code) = error {
                spawnFailures.withLock { $0[SpawnError.name(of: code), default: 0] += 1 }
            }
            throw error
        }
        return command
    }

    private func spawn(_ command: RunningCommand, _ spec: CommandSpec) throws(SpawnError) {
        var streams = ChildStreams()
        let pid = try ChildReaper.shared.spawn(
            { () throws(SpawnError) -> pid_t in
                // Pipes are made under the spawn lock, so no concurrent spawn inherits them before FD_CLOEXEC.
                streams = try ChildStreams(stdinPipe: spec.stdin, terminal: spec.terminal)
                do throws(SpawnError) {
                    let pid = try spawnProcess(
                        argv: spec.argv, cwd: spec.cwd, cwdDescriptor: spec.directory?.rawValue ?? -1,
                        environment: spec.environment, streams: streams)
                    streams.closeChildEnds()
                    return pid
                } catch {
                    streams.closeAll()
                    throw error
                }
            },
            child: ChildReaper.Child(
                exited: { command.mainProcessExited() }, reaped: { command.processExited(status: $0) }))
        command.started(pid: pid, streams: streams, timeout: spec.timeout)
    }

    func finished(_ command: RunningCommand) {
        running.withLock { _ = $0.commands.removeValue(forKey: command.serial) }
    }

    /// Ends every command: SIGTERM to each process group, then SIGKILL to the groups still there after `grace` (a
    /// main process's exit kills its group and, in the binary, what escaped it) — and, with `includingAllChildren`,
    /// to every child of this process and its descendants (for the sandboxd binary, whose children are all its
    /// commands'). Blocks the caller (shutdown only) until the commands have ended, at most `grace` + 2 s.
    public func terminateAll(grace: Double, includingAllChildren: Bool = false) {
        running.withLock { Array($0.commands.values) }.forEach { $0.signal(SIGTERM) }
        let deadline = Date().addingTimeInterval(grace)
        while runningCount > 0 && Date() < deadline { usleep(10_000) }
        running.withLock { Array($0.commands.values) }.forEach { $0.cancel() }
        let hardDeadline = Date().addingTimeInterval(2)
        if includingAllChildren {
            // Until nothing is left: a process may fork while its parent is being killed.
            while case let left = ProcessTree.strays(of: getpid(), keeping: []), !left.isEmpty, Date() < hardDeadline {
                for tree in left {
                    ([tree.root] + tree.descendants).forEach { _ = kill($0, SIGKILL) }
                }
                usleep(10_000)
            }
        }
        while runningCount > 0 && Date() < hardDeadline { usleep(10_000) }
    }

    /// Every command's stdin unless it asked for a pipe; opened once and kept for the server's lifetime.
    static let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
}
