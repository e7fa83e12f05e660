import Glibc
import Synchronization

/// A started command: its pipes feed the sink until both reach EOF and its exit is observed.
/// All event handling happens on the runner's serial queue.
public final class RunningCommand: Sendable {
    private struct State {
        var pid: pid_t = 0
        /// Pipes are being watched; the exit may be reaped before this, and must not end the command early.
        var started = false
        /// The main process has exited (it may not be reaped yet): its group is killed by the reaper, and no signal
        /// of the command's own goes to a group id that may soon name another group.
        var mainExited = false
        var outputs: [Output] = []
        var outputPaused = false
        var waitStatus: Int32?
        var timedOut = false
        var finished = false
        var timers: [UInt64] = []
        var graceScheduled = false
        var stdin = StdinState()
        var terminal: Int32 = -1
    }

    /// A pipe (or terminal) the command writes to, watched until EOF.
    private struct Output {
        var fd: Int32
        var token: UInt64
        var isStdout: Bool
        var open = true
        /// Once the drain grace expired: the bytes still to read before the output is closed (what the pipe held
        /// then). The descriptor is no longer watched.
        var drainLeft: Int?
    }

    /// Bytes written to stdin but not yet accepted by the pipe, and whether EOF was asked for.
    private struct StdinState {
        var fd: Int32 = -1
        var pending: [UInt8] = []
        /// Registered for writability while the pipe is full.
        var token: UInt64 = 0
        var waiting = false
        var closeRequested = false
    }

    public enum StdinError: Error, Sendable {
        /// The command was started without a stdin pipe, or its stdin was already closed.
        case notOpen
        /// More than the runner's `maxPendingStdin` bytes are waiting for the command to read them.
        case full
    }

    private let runner: CommandRunner
    let serial: UInt64
    private let sink: @Sendable (CommandEvent) -> Void
    private let state = Mutex(State())
    /// Bytes read per pipe event: large enough for throughput, small enough to interleave many commands fairly.
    private static let readSize = 64 * 1024
    /// Where every output is read into before its bytes are copied out: reads happen on the I/O loop's thread
    /// only (a fresh zeroed 64 KiB array per read cost more than the read of a short command's output).
    nonisolated(unsafe) private static let readBuffer = UnsafeMutableRawPointer.allocate(
        byteCount: readSize, alignment: 16)

    init(runner: CommandRunner, serial: UInt64, sink: @escaping @Sendable (CommandEvent) -> Void) {
        self.runner = runner
        self.serial = serial
        self.sink = sink
    }

    /// The process id of the command, which is also its process group id.
    public var pid: pid_t { state.withLock { $0.pid } }

    /// Sends `signal` to the command's process group while its main process has not exited. Under the lock that
    /// the reaper's `mainProcessExited` takes before it reaps: the group id cannot name another group meanwhile.
    public func signal(_ signal: Int32) {
        state.withLock { state in
            if state.pid > 0 && !state.mainExited { _ = kill(-state.pid, signal) }
        }
    }

    /// Kills the command's whole tree: SIGKILL to its process group (the main process included); what left the group
    /// is killed once the main process is gone (`ChildReaper`). Used on timeout, when nobody is left to read the
    /// result, on `DELETE` and at shutdown.
    public func cancel() { signal(SIGKILL) }

    /// From the reaper: the main process has exited and is about to be reaped.
    func mainProcessExited() {
        state.withLock { $0.mainExited = true }
    }

    /// Stops reading the command's output (it blocks once the pipe is full) until `resumeOutput()`.
    public func pauseOutput() { setOutputPaused(true) }

    public func resumeOutput() { setOutputPaused(false) }

    private func setOutputPaused(_ paused: Bool) {
        let (tokens, draining) = state.withLock { state -> ([UInt64], [Int32]) in
            guard state.outputPaused != paused, !state.finished else { return ([], []) }
            state.outputPaused = paused
            let open = state.outputs.filter(\.open)
            return (open.filter { $0.drainLeft == nil }.map(\.token), open.filter { $0.drainLeft != nil }.map(\.fd))
        }
        tokens.forEach { runner.loop.setActive($0, !paused) }
        if !paused && !draining.isEmpty {
            runner.loop.async { [self] in
                draining.forEach { drain(fd: $0) }
                finishIfDone()
            }
        }
    }

    /// Queues bytes for the command's stdin; they are written in order as the command reads.
    public func writeStdin(_ bytes: [UInt8]) throws(StdinError) {
        try state.withLock { (state) throws(StdinError) in
            guard state.stdin.fd >= 0, !state.stdin.closeRequested else { throw .notOpen }
            guard state.stdin.pending.count + bytes.count <= runner.maxPendingStdin else { throw .full }
            state.stdin.pending += bytes
        }
        runner.loop.async { [self] in flushStdin() }
    }

    /// Closes stdin once everything queued was written (EOF for the command). On a terminal it sends the EOF
    /// character (Ctrl-D) instead, as a keyboard would.
    public func closeStdin() throws(StdinError) {
        let isTerminal = state.withLock { $0.terminal >= 0 }
        if isTerminal { return try writeStdin([0x04]) }
        try state.withLock { (state) throws(StdinError) in
            guard state.stdin.fd >= 0, !state.stdin.closeRequested else { throw .notOpen }
            state.stdin.closeRequested = true
        }
        runner.loop.async { [self] in flushStdin() }
    }

    /// Changes the terminal's size; false if the command has no terminal.
    public func resize(to size: TerminalSize) -> Bool {
        state.withLock { state in
            guard state.terminal >= 0, !state.finished else { return false }
            PseudoTerminal.resize(state.terminal, to: size)
            return true
        }
    }

    func started(pid: pid_t, streams: ChildStreams, timeout: Double?) {
        let loop = runner.loop
        // Registered under the lock, so a read event (on the loop thread) always finds its output recorded.
        let exitedAlready = state.withLock { state -> Bool in
            state.pid = pid
            state.started = true
            for (fd, isStdout) in [(streams.stdout, true), (streams.stderr, false)] where fd >= 0 {
                let token = loop.register(fd, events: IOLoop.readable) { [self] _ in self.readAvailable(fd: fd) }
                state.outputs.append(Output(fd: fd, token: token, isStdout: isStdout))
            }
            state.stdin.fd = streams.stdin
            state.terminal = streams.terminalPath == nil ? -1 : streams.stdout
            if let timeout { state.timers.append(loop.after(timeout) { [self] in self.timeoutFired() }) }
            return state.waitStatus != nil
        }
        // The reaper may already have seen the exit; it could not act on it before the pipes were watched.
        if exitedAlready {
            scheduleGraceIfNeeded()
            finishIfDone()
        }
    }

    /// On the I/O loop (or the reaper thread). When the output already reached EOF (the usual case for a short
    /// command), the exit is delivered right here; otherwise the loop waits for the output, with the drain grace.
    func processExited(status: Int32) {
        state.withLock { state in
            state.waitStatus = status
            state.mainExited = true
        }
        scheduleGraceIfNeeded()
        finishIfDone()
    }

    private func timeoutFired() {
        let expired = state.withLock { state -> Bool in
            guard state.waitStatus == nil, state.pid > 0 else { return false }
            state.timedOut = true
            return true
        }
        if expired {
            runner.countTimeout()
            cancel()
        }
    }

    /// Writes what stdin has pending without blocking; waits for writability when the pipe is full. Loop thread.
    private func flushStdin() {
        let loop = runner.loop
        state.withLock { state in
            var stdin = state.stdin
            defer { state.stdin = stdin }
            guard stdin.fd >= 0 else { return }
            while !stdin.pending.isEmpty {
                do throws(Errno) {
                    let written = try systemCall {
                        stdin.pending.withUnsafeBytes { write(stdin.fd, $0.baseAddress, $0.count) }
                    }
                    stdin.pending.removeFirst(written)
                } catch EAGAIN {
                    if stdin.token == 0 {
                        stdin.token = loop.register(stdin.fd, events: IOLoop.writable) { [self] _ in self.flushStdin() }
                    } else if !stdin.waiting {
                        loop.setActive(stdin.token, true)
                    }
                    stdin.waiting = true
                    return
                } catch {
                    // The command closed its stdin (EPIPE): nothing more can be delivered.
                    stdin.pending = []
                    stdin.closeRequested = true
                }
            }
            if stdin.waiting {
                stdin.waiting = false
                loop.setActive(stdin.token, false)
            }
            if stdin.closeRequested {
                Self.closeStdin(&stdin, loop: loop)
            }
        }
    }

    private static func closeStdin(_ stdin: inout StdinState, loop: IOLoop) {
        if stdin.token != 0 { loop.unregister(stdin.token) }
        if stdin.fd >= 0 { close(stdin.fd) }
        stdin = StdinState()
    }

    /// Reads one chunk from an output; on EOF (or EIO from a terminal whose last user closed it) stops watching it.
    /// Loop thread.
    private func readAvailable(fd: Int32) {
        // A few reads per event: a short command's last output and its EOF are then seen in one round of the loop;
        // the bound keeps one busy command from starving the others.
        for _ in 0..<4 {
            let count: Int
            do throws(Errno) {
                count = try systemCall { read(fd, Self.readBuffer, Self.readSize) }
            } catch EAGAIN {
                return
            } catch {
                count = 0  // ends the output as EOF does
            }
            guard count > 0 else {
                closeOutput(fd: fd)
                finishIfDone()
                return
            }
            let buffer = [UInt8](UnsafeRawBufferPointer(start: Self.readBuffer, count: count))
            let isStdout = state.withLock { state in state.outputs.first { $0.fd == fd }?.isStdout ?? true }
            sink(isStdout ? .stdout(buffer) : .stderr(buffer))
            if state.withLock({ $0.outputPaused }) { return }
        }
    }

    private func closeOutput(fd: Int32) {
        let token = state.withLock { state -> UInt64? in
            guard let index = state.outputs.firstIndex(where: { $0.fd == fd && $0.open }) else { return nil }
            state.outputs[index].open = false
            return state.outputs[index].token
        }
        guard let token else { return }
        runner.loop.unregister(token)
        close(fd)
    }

    /// After the main process exits, its group is killed at once; what left the group and still holds the pipes is
    /// killed too once it reaches sandboxd (`ChildReaper`), but an embedding host does not do that, and a writer may
    /// have been quick. So when the grace expires, what the pipe holds then is read, and the output is closed.
    private func scheduleGraceIfNeeded() {
        let shouldSchedule = state.withLock { state -> Bool in
            guard state.started, state.waitStatus != nil, state.outputs.contains(where: \.open),
                !state.graceScheduled
            else {
                return false
            }
            state.graceScheduled = true
            return true
        }
        guard shouldSchedule else { return }
        let timer = runner.loop.after(runner.drainGrace) { [self] in self.drainAndClose() }
        state.withLock { $0.timers.append(timer) }
    }

    /// The grace expired: each output still open gets a budget of what its pipe holds now (at most its capacity) and
    /// is no longer watched; it is read up to that budget, as fast as the consumer takes it (a paused output waits
    /// for `resumeOutput`), and then closed, whatever a writer still adds. Loop thread.
    private func drainAndClose() {
        let loop = runner.loop
        let fds = state.withLock { state -> [Int32] in
            for index in state.outputs.indices where state.outputs[index].open && state.outputs[index].drainLeft == nil
            {
                var available: Int32 = 0
                let fd = state.outputs[index].fd
                state.outputs[index].drainLeft = ioctl(fd, UInt(FIONREAD), &available) == 0 ? Int(max(0, available)) : 0
                loop.unregister(state.outputs[index].token)
            }
            return state.outputs.filter { $0.open }.map(\.fd)
        }
        fds.forEach { drain(fd: $0) }
        finishIfDone()
    }

    /// Reads what is left of an output's drain budget, unless output is paused; closes it when the budget is spent
    /// or the pipe reached EOF. At most `pipe capacity / readSize` reads. Loop thread.
    private func drain(fd: Int32) {
        while true {
            let left = state.withLock { state -> Int? in
                guard !state.outputPaused, let output = state.outputs.first(where: { $0.fd == fd && $0.open }) else {
                    return nil
                }
                return output.drainLeft
            }
            guard let left else { return }
            // A failed read (other than EINTR, which is retried) closes the output as EOF does.
            let count = left > 0 ? (try? systemCall { read(fd, Self.readBuffer, min(left, Self.readSize)) }) ?? 0 : 0
            if count > 0 {
                let buffer = [UInt8](UnsafeRawBufferPointer(start: Self.readBuffer, count: count))
                let isStdout = state.withLock { state -> Bool in
                    guard let index = state.outputs.firstIndex(where: { $0.fd == fd && $0.open }) else { return true }
                    state.outputs[index].drainLeft = left - count
                    return state.outputs[index].isStdout
                }
                sink(isStdout ? .stdout(buffer) : .stderr(buffer))
            } else {
                closeOutput(fd: fd)
                return
            }
        }
    }

    private func finishIfDone() {
        let loop = runner.loop
        let termination = state.withLock { state -> Termination? in
            guard state.started, !state.finished, !state.outputs.contains(where: \.open),
                let status = state.waitStatus
            else { return nil }
            state.finished = true
            state.timers.forEach { loop.cancelTimer($0) }
            state.timers = []
            Self.closeStdin(&state.stdin, loop: loop)
            state.terminal = -1
            return Termination(waitStatus: status, timedOut: state.timedOut)
        }
        guard let termination else { return }
        runner.finished(self)
        sink(.exit(termination))
    }
}
