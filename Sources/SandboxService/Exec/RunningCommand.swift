import Glibc
import Synchronization

/// A started command: its pipes feed the sink until both reach EOF and its exit is observed.
/// All event handling happens on the runner's serial queue.
public final class RunningCommand: Sendable {
    private struct State {
        var pid: pid_t = 0
        /// Pipes are being watched; the exit may be reaped before this, and must not end the command early.
        var started = false
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
        /// More than `maxPendingStdin` bytes are waiting for the command to read them.
        case full
    }

    private let runner: CommandRunner
    let serial: UInt64
    /// The `SANDBOXD_TREE=…` entry of this command's processes.
    let marker: String
    private let sink: @Sendable (CommandEvent) -> Void
    private let state = Mutex(State())
    /// Bytes read per pipe event: large enough for throughput, small enough to interleave many commands fairly.
    private static let readSize = 64 * 1024
    /// Where every output is read into before its bytes are copied out: reads happen on the I/O loop's thread
    /// only (a fresh zeroed 64 KiB array per read cost more than the read of a short command's output).
    nonisolated(unsafe) private static let readBuffer = UnsafeMutableRawPointer.allocate(
        byteCount: readSize, alignment: 16)
    /// Stdin bytes buffered for a command that does not read: beyond this, writes are refused.
    public static let maxPendingStdin = 8 << 20

    init(runner: CommandRunner, serial: UInt64, marker: String, sink: @escaping @Sendable (CommandEvent) -> Void) {
        self.runner = runner
        self.serial = serial
        self.marker = marker
        self.sink = sink
    }

    /// The process id of the command, which is also its process group id.
    public var pid: pid_t { state.withLock { $0.pid } }

    /// Sends `signal` to the command's process group, while the command has not been reaped.
    public func signal(_ signal: Int32) {
        state.withLock { state in
            if state.pid > 0 && state.waitStatus == nil { _ = kill(-state.pid, signal) }
        }
    }

    /// Kills the command's whole tree (process group, descendants, and processes that carry its marker in a new
    /// session): used on timeout, when nobody is left to read the result, and at shutdown.
    public func cancel() { killTree(signal: SIGKILL) }

    func killTree(signal: Int32) {
        let (pid, reaped) = state.withLock { ($0.pid, $0.waitStatus != nil) }
        guard pid > 0 else { return }
        // Once reaped, the pid (and group id) may already name an unrelated process: go by the marker alone.
        if reaped {
            ProcessTree.kill(markerEntry: marker, signal: signal)
        } else {
            ProcessTree.kill(root: pid, markerEntry: marker, signal: signal)
        }
    }

    /// Stops reading the command's output (it blocks once the pipe is full) until `resumeOutput()`.
    public func pauseOutput() { setOutputPaused(true) }

    public func resumeOutput() { setOutputPaused(false) }

    private func setOutputPaused(_ paused: Bool) {
        let tokens = state.withLock { state -> [UInt64] in
            guard state.outputPaused != paused, !state.finished else { return [] }
            state.outputPaused = paused
            return state.outputs.filter(\.open).map(\.token)
        }
        tokens.forEach { runner.loop.setActive($0, !paused) }
    }

    /// Queues bytes for the command's stdin; they are written in order as the command reads.
    public func writeStdin(_ bytes: [UInt8]) throws(StdinError) {
        try state.withLock { (state) throws(StdinError) in
            guard state.stdin.fd >= 0, !state.stdin.closeRequested else { throw .notOpen }
            guard state.stdin.pending.count + bytes.count <= Self.maxPendingStdin else { throw .full }
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
        state.withLock { $0.waitStatus = status }
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
                let written = stdin.pending.withUnsafeBytes { write(stdin.fd, $0.baseAddress, $0.count) }
                if written > 0 {
                    stdin.pending.removeFirst(written)
                } else if written < 0 && errno == EINTR {
                    continue
                } else if written < 0 && errno == EAGAIN {
                    if stdin.token == 0 {
                        stdin.token = loop.register(stdin.fd, events: IOLoop.writable) { [self] _ in self.flushStdin() }
                    } else if !stdin.waiting {
                        loop.setActive(stdin.token, true)
                    }
                    stdin.waiting = true
                    return
                } else {
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
            let count = read(fd, Self.readBuffer, Self.readSize)
            if count > 0 {
                let buffer = [UInt8](UnsafeRawBufferPointer(start: Self.readBuffer, count: count))
                let isStdout = state.withLock { state in state.outputs.first { $0.fd == fd }?.isStdout ?? true }
                sink(isStdout ? .stdout(buffer) : .stderr(buffer))
                if state.withLock({ $0.outputPaused }) { return }
            } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
                closeOutput(fd: fd)
                finishIfDone()
                return
            } else {
                return
            }
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

    /// After the main process exits, descendants may keep the pipes open for good; read what is already there
    /// once the grace expires, then stop listening.
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

    private func drainAndClose() {
        let fds = state.withLock { $0.outputs.filter(\.open).map(\.fd) }
        for fd in fds {
            while state.withLock({ $0.outputs.contains { $0.fd == fd && $0.open } }) {
                readAvailable(fd: fd)
                if !hasPendingInput(fd) { closeOutput(fd: fd) }
            }
        }
        finishIfDone()
    }

    private func hasPendingInput(_ fd: Int32) -> Bool {
        var available: Int32 = 0
        return ioctl(fd, UInt(FIONREAD), &available) == 0 && available > 0
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
