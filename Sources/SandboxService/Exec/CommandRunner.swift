import Dispatch
import Foundation
import Glibc
import Synchronization

/// What to run: everything already validated and resolved by the caller (argv split, cwd confined to the root).
public struct CommandSpec: Sendable {
    public var argv: [String]
    public var cwd: String
    /// `KEY=value` strings, the whole environment of the child.
    public var environment: [String]
    /// Seconds before the process group is killed; `nil` runs without a limit.
    public var timeout: Double?

    public init(argv: [String], cwd: String, environment: [String], timeout: Double?) {
        self.argv = argv
        self.cwd = cwd
        self.environment = environment
        self.timeout = timeout
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

/// An event of a running command, delivered in order on the runner's queue.
public enum CommandEvent: Sendable {
    case stdout([UInt8])
    case stderr([UInt8])
    /// Always the last event; all output the command wrote was delivered before it.
    case exit(Termination)
}

/// Runs commands and reports their output and termination as events. Knows nothing of HTTP.
public final class CommandRunner: Sendable {
    /// Serial queue for every pipe read, timer and event of every command: event handlers never block,
    /// so one queue (one thread at a time) serves any number of commands.
    let queue = DispatchQueue(label: "sandboxd.commands")
    /// How long output is still collected after the main process exited, for descendants that hold the pipes.
    /// Long enough to drain what was already written, short enough that a background `sleep &` never holds a reply.
    let drainGrace: DispatchTimeInterval = .milliseconds(100)

    public init() {}

    /// Starts `spec`; `sink` receives its events on the runner's queue, ending with exactly one `.exit`.
    public func start(_ spec: CommandSpec, sink: @escaping @Sendable (CommandEvent) -> Void) throws(SpawnError)
        -> RunningCommand
    {
        let command = RunningCommand(runner: self, sink: sink)
        var readEnds: (stdout: Int32, stderr: Int32) = (-1, -1)
        let pid = try ChildReaper.shared.spawn(
            { () throws(SpawnError) -> pid_t in
                let stdout = try makePipe()
                let stderr: (read: Int32, write: Int32)
                do throws(SpawnError) { stderr = try makePipe() } catch {
                    closePair(stdout)
                    throw error
                }
                defer {
                    close(stdout.write)
                    close(stderr.write)
                }
                do throws(SpawnError) {
                    let descriptors = ChildDescriptors(
                        stdin: Self.devNull, stdout: stdout.write, stderr: stderr.write)
                    let pid = try spawnProcess(
                        argv: spec.argv, cwd: spec.cwd, environment: spec.environment, descriptors: descriptors)
                    readEnds = (stdout.read, stderr.read)
                    return pid
                } catch {
                    close(stdout.read)
                    close(stderr.read)
                    throw error
                }
            },
            onExit: { status in command.processExited(status: status) })
        command.started(pid: pid, stdout: readEnds.stdout, stderr: readEnds.stderr, timeout: spec.timeout)
        return command
    }

    /// Every command's stdin; opened once and kept for the server's lifetime.
    static let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)

    private func makePipe() throws(SpawnError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        // Called under the spawn lock, so no other spawn can inherit the pipe before FD_CLOEXEC is set.
        guard pipe(&fds) == 0 else { throw .failed("pipe", errno) }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        return (fds[0], fds[1])
    }

    private func closePair(_ pair: (read: Int32, write: Int32)) {
        close(pair.read)
        close(pair.write)
    }
}
