import Dispatch
import Glibc
import Synchronization

/// A started command: its pipes feed the sink until both reach EOF and its exit is observed.
/// All event handling happens on the runner's serial queue.
public final class RunningCommand: Sendable {
    private struct State {
        var pid: pid_t = 0
        /// Pipes are being watched; the exit may be reaped before this, and must not end the command early.
        var started = false
        var sources: [Source<DispatchSourceRead>] = []
        var openPipes = 0
        var waitStatus: Int32?
        var timedOut = false
        var finished = false
        var timers: [Source<DispatchSourceTimer>] = []
        var graceScheduled = false
    }

    private let runner: CommandRunner
    private let sink: @Sendable (CommandEvent) -> Void
    private let state = Mutex(State())
    /// Bytes read per pipe event: large enough for throughput, small enough to interleave many commands fairly.
    private static let readSize = 64 * 1024

    init(runner: CommandRunner, sink: @escaping @Sendable (CommandEvent) -> Void) {
        self.runner = runner
        self.sink = sink
    }

    /// The process id of the command, which is also its process group id.
    public var pid: pid_t { state.withLock { $0.pid } }

    /// Sends `signal` to the command's whole process group, while the command has not been reaped.
    public func signal(_ signal: Int32) {
        state.withLock { state in
            if state.pid > 0 && state.waitStatus == nil { _ = kill(-state.pid, signal) }
        }
    }

    /// Kills the process group: used when nobody is left to read the result.
    public func cancel() { signal(SIGKILL) }

    func started(pid: pid_t, stdout: Int32, stderr: Int32, timeout: Double?) {
        let queue = runner.queue
        var sources: [DispatchSourceRead] = []
        for (fd, isStdout) in [(stdout, true), (stderr, false)] {
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler { [self] in self.readAvailable(source: source, fd: fd, isStdout: isStdout) }
            source.setCancelHandler { close(fd) }
            sources.append(source)
        }
        var timer: DispatchSourceTimer?
        if let timeout {
            let t = DispatchSource.makeTimerSource(queue: queue)
            t.schedule(deadline: .now() + timeout, leeway: .milliseconds(5))
            t.setEventHandler { [self] in self.timeoutFired() }
            timer = t
        }
        state.withLock { state in
            state.pid = pid
            state.started = true
            state.sources = sources.map(Source.init)
            state.openPipes = sources.count
            if let timer { state.timers.append(Source(timer)) }
        }
        sources.forEach { $0.resume() }
        timer?.resume()
        // The reaper may already have seen the exit; it could not act on it before the pipes were watched.
        queue.async { [self] in
            scheduleGraceIfNeeded()
            finishIfDone()
        }
    }

    func processExited(status: Int32) {
        runner.queue.async { [self] in
            state.withLock { $0.waitStatus = status }
            scheduleGraceIfNeeded()
            finishIfDone()
        }
    }

    private func timeoutFired() {
        let pid = state.withLock { state -> pid_t in
            guard state.waitStatus == nil, state.pid > 0 else { return 0 }
            state.timedOut = true
            return state.pid
        }
        if pid > 0 { kill(-pid, SIGKILL) }
    }

    private func readAvailable(source: DispatchSourceRead, fd: Int32, isStdout: Bool) {
        var buffer = [UInt8](repeating: 0, count: Self.readSize)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, Self.readSize) }
        if count > 0 {
            buffer.removeSubrange(count...)
            sink(isStdout ? .stdout(buffer) : .stderr(buffer))
        } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
            closePipe(source)
            finishIfDone()
        }
    }

    private func closePipe(_ source: DispatchSourceRead) {
        guard !source.isCancelled else { return }
        source.cancel()
        state.withLock { $0.openPipes -= 1 }
    }

    /// After the main process exits, descendants may keep the pipes open for good; read what is already there
    /// once the grace expires, then stop listening.
    private func scheduleGraceIfNeeded() {
        let shouldSchedule = state.withLock { state -> Bool in
            guard state.started, state.waitStatus != nil, state.openPipes > 0, !state.graceScheduled else {
                return false
            }
            state.graceScheduled = true
            return true
        }
        guard shouldSchedule else { return }
        let timer = DispatchSource.makeTimerSource(queue: runner.queue)
        timer.schedule(deadline: .now() + runner.drainGrace, leeway: .milliseconds(5))
        timer.setEventHandler { [self] in self.drainAndClose() }
        state.withLock { $0.timers.append(Source(timer)) }
        timer.resume()
    }

    private func drainAndClose() {
        let sources = state.withLock { $0.sources.map(\.source) }
        for (index, source) in sources.enumerated() where !source.isCancelled {
            let fd = Int32(source.handle)
            while !source.isCancelled {
                readAvailable(source: source, fd: fd, isStdout: index == 0)
                if !source.isCancelled && !hasPendingInput(fd) { closePipe(source) }
            }
        }
        finishIfDone()
    }

    private func hasPendingInput(_ fd: Int32) -> Bool {
        var available: Int32 = 0
        return ioctl(fd, UInt(FIONREAD), &available) == 0 && available > 0
    }

    private func finishIfDone() {
        let termination = state.withLock { state -> Termination? in
            guard state.started, !state.finished, state.openPipes == 0, let status = state.waitStatus else {
                return nil
            }
            state.finished = true
            state.timers.forEach { $0.source.cancel() }
            state.timers = []
            state.sources = []
            return Termination(waitStatus: status, timedOut: state.timedOut)
        }
        if let termination { sink(.exit(termination)) }
    }
}

/// Dispatch sources are thread-safe (their methods may be called from any thread) but not marked `Sendable`.
struct Source<S>: @unchecked Sendable {
    let source: S
    init(_ source: S) { self.source = source }
}
