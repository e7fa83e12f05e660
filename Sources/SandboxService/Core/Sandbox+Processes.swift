import Dispatch
import Synchronization

/// Background processes: started, kept by id (after their exit too, for a while), followed, controlled, waited for.
extension Sandbox {
    /// Starts `spec` in the background. A process is registered (and its id handed out) only once its command runs.
    /// - Throws: as `run(_:sink:)`; `unavailable` once shutdown has begun.
    public func start(_ spec: CommandSpec) throws(SandboxError) -> ManagedProcess {
        do {
            return try processes.start(spec)
        } catch {
            throw SandboxError(error)
        }
    }

    /// The process with this id, running or still kept after its exit.
    /// - Throws: `notFound`.
    public func process(_ id: String) throws(SandboxError) -> ManagedProcess {
        guard let process = processes.process(id) else { throw SandboxError(.notFound, "process '\(id)' not found") }
        return process
    }

    /// Running and kept processes, in start order.
    public func listProcesses() -> [ManagedProcess] { processes.list() }

    /// Kills the process's tree and forgets it.
    public func remove(_ process: ManagedProcess) {
        processes.remove(process.id)
    }

    /// Checks that `process` takes input now, before a write is received.
    /// - Throws: `conflict` when it was started without stdin, its stdin was closed, or it has exited.
    public func requireStdin(_ process: ManagedProcess) throws(SandboxError) {
        guard process.snapshot.stdinOpen else { throw SandboxError(.stdinClosed, process: process.id) }
    }

    /// Queues `bytes` for the process's stdin, in order after earlier writes.
    /// - Throws: `conflict` as `requireStdin`; `resourceExhausted` when too many bytes wait unread.
    public func writeStdin(_ bytes: [UInt8], to process: ManagedProcess) throws(SandboxError) {
        try control(process) { (process) throws(ManagedProcess.ControlError) in try process.writeStdin(bytes) }
    }

    /// EOF once everything queued is written; on a terminal, the EOF character (stdin stays open, as a keyboard).
    public func closeStdin(of process: ManagedProcess) throws(SandboxError) {
        try control(process) { (process) throws(ManagedProcess.ControlError) in try process.closeStdin() }
    }

    /// Sends `signal` to the process group.
    /// - Throws: `conflict` once the process has exited.
    public func signal(_ process: ManagedProcess, _ signal: Int32) throws(SandboxError) {
        try control(process) { (process) throws(ManagedProcess.ControlError) in try process.signal(signal) }
    }

    /// Gives the process's terminal a new size (the kernel sends SIGWINCH to its foreground group).
    /// - Throws: `conflict` without a terminal or once the process has exited.
    public func resize(_ process: ManagedProcess, to size: TerminalSize) throws(SandboxError) {
        try control(process) { (process) throws(ManagedProcess.ControlError) in try process.resize(to: size) }
    }

    private func control(
        _ process: ManagedProcess, _ action: (ManagedProcess) throws(ManagedProcess.ControlError) -> Void
    ) throws(SandboxError) {
        do { try action(process) } catch { throw SandboxError(error, process: process.id) }
    }

    /// Subscribes to the process's events after `lastSeen` (nil: all that are kept): the replay, then live ones.
    /// `wake` is called (under the process's lock: it must only signal) whenever an event is added; the events are
    /// read with `process.next(after:)` from `start`. `missed` names the events asked for that are no longer kept;
    /// `token` ends the subscription (`process.unsubscribe`), nil once the process has exited.
    /// - Throws: `invalidArgument` when `lastSeen` is newer than any event of the process.
    public func follow(
        _ process: ManagedProcess, after lastSeen: UInt64?, wake: @escaping @Sendable () -> Void
    ) throws(SandboxError) -> (start: UInt64, missed: ClosedRange<UInt64>?, token: UInt64?) {
        do {
            return try process.follow(after: lastSeen, wake: wake)
        } catch {
            throw SandboxError(
                .invalidArgument,
                "event \(lastSeen ?? 0) is not an event of process '\(process.id)' (its newest is \(error.newest))")
        }
    }

    /// Waits for the process's exit for at most `seconds`, without a thread: `done` gets the process when it exits,
    /// or as it is when the time is up, once. Returns what cancels the wait (its client left), or nil when the
    /// process has exited already (`done` is not called then: its snapshot is final).
    public func wait(
        for process: ManagedProcess, seconds: Double, _ done: @escaping @Sendable (ManagedProcess.Snapshot) -> Void
    ) -> (@Sendable () -> Void)? {
        let timer = WaitTimer()
        let token = process.whenFinished { snapshot in
            timer.cancel()
            done(snapshot)
        }
        guard let token else { return nil }
        timer.schedule(after: seconds) {
            process.cancelWait(token)
            done(process.snapshot)
        }
        return {
            process.cancelWait(token)
            timer.cancel()
        }
    }
}

/// The timer of one `wait`: cancelled when the process exits or the client leaves first.
private final class WaitTimer: Sendable {
    private let item = Mutex<(work: DispatchWorkItem?, cancelled: Bool)>((nil, false))

    func schedule(after seconds: Double, _ expire: @escaping @Sendable () -> Void) {
        let work = DispatchWorkItem(block: expire)
        let scheduled = item.withLock { item -> Bool in
            guard !item.cancelled else { return false }
            item.work = work
            return true
        }
        if scheduled { DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: work) }
    }

    func cancel() {
        item.withLock { item in
            item.cancelled = true
            item.work?.cancel()
            item.work = nil
        }
    }
}
