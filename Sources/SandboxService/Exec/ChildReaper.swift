import CSandboxd
import Glibc
import Synchronization

/// Reaps every child of the server: the commands it spawned (their exit status goes to whoever registered them)
/// and, when sandboxd is PID 1 or a subreaper, the orphans the kernel re-parents to it (their status is discarded).
///
/// When SIGCHLD is blocked (the sandboxd binary blocks it before it starts any thread:
/// `deliverChildExitsToTheIOLoop`), exits arrive on a signalfd watched by the shared I/O loop, which reaps with
/// `waitpid(-1, WNOHANG)`: a command's output, exit and answer are then handled on one thread. Otherwise (a process
/// that embeds the service with SIGCHLD unblocked somewhere) one thread blocks in `waitpid(-1)`.
///
/// Spawning takes no lock (concurrent spawns run in parallel): a child that exits before its handler is registered
/// is kept as "unclaimed" with the time it was reaped, and `spawn` claims it if it was reaped after the spawn began
/// — so no status is lost, and an orphan that happened to have the same pid earlier is never taken for the new
/// child.
final class ChildReaper: Sendable {
    static let shared = ChildReaper(loop: IOLoop.shared)

    private struct State {
        var handlers: [pid_t: @Sendable (Int32) -> Void] = [:]
        var unclaimed: [pid_t: (status: Int32, reapedAt: UInt64)] = [:]
    }

    private let state = Mutex(State())
    /// Signalled on every spawn when there is a reaper thread, which sleeps while sandboxd has no children at all.
    private let childAdded = Semaphore()
    private let onLoop: Bool
    /// Unclaimed statuses older than this belong to orphans, not to a spawn in progress.
    private static let unclaimedLifetime: UInt64 = 10_000_000_000

    private init(loop: IOLoop) {
        let signals = childSignalBlocked.load(ordering: .acquiring) ? csystem_sigchld_fd() : -1
        onLoop = signals >= 0
        guard onLoop else {
            startThread(named: "sandboxd-reaper") { [self] in self.reapForever() }
            return
        }
        _ = loop.register(signals, events: IOLoop.readable) { [self] _ in
            csystem_drain_signalfd(signals)
            reapAvailable()
        }
        // Insurance against a SIGCHLD taken by a thread that does not block it: a status is never left waiting
        // for more than a second.
        @Sendable func sweep() {
            reapAvailable()
            loop.after(1, sweep)
        }
        loop.after(1, sweep)
    }

    /// Runs `spawn` (which returns the new child's pid, or throws) and registers `onExit` for that pid. `onExit`
    /// receives the raw wait status, on the I/O loop or reaper thread or (if the child already exited) on this one;
    /// it must not block.
    func spawn<E: Error>(_ spawn: () throws(E) -> pid_t, onExit: @escaping @Sendable (Int32) -> Void) throws(E) -> pid_t
    {
        let began = monotonicNanoseconds()
        let pid = try spawn()
        let early = state.withLock { state -> Int32? in
            if let exited = state.unclaimed.removeValue(forKey: pid), exited.reapedAt >= began { return exited.status }
            state.handlers[pid] = onExit
            return nil
        }
        if !onLoop { childAdded.signal() }
        if let early { onExit(early) }
        return pid
    }

    /// Hands a reaped status to its command, or keeps it as unclaimed.
    private func deliver(pid: pid_t, status: Int32) {
        let handler = state.withLock { state -> (@Sendable (Int32) -> Void)? in
            if let handler = state.handlers.removeValue(forKey: pid) { return handler }
            let now = monotonicNanoseconds()
            state.unclaimed[pid] = (status, now)
            if state.unclaimed.count > 256 {
                state.unclaimed = state.unclaimed.filter { now - $0.value.reapedAt < Self.unclaimedLifetime }
            }
            return nil
        }
        handler?(status)
    }

    /// On the I/O loop: reaps every child that has exited.
    private func reapAvailable() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0 else { return }
            deliver(pid: pid, status: status)
        }
    }

    private func reapForever() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, 0)
            if pid > 0 {
                deliver(pid: pid, status: status)
            } else if errno == ECHILD {
                childAdded.wait()
            }
        }
    }
}

/// Blocks SIGCHLD in the calling thread, and so in every thread it starts afterwards, so that child exits reach the
/// shared I/O loop through a signalfd instead of a reaper thread of their own. Call first thing in `main`, before
/// any thread exists. Commands start with an empty signal mask whatever the server blocks.
public func deliverChildExitsToTheIOLoop() {
    csystem_block_sigchld()
    childSignalBlocked.store(true, ordering: .releasing)
}

/// Set by `deliverChildExitsToTheIOLoop`: only then is SIGCHLD known to be blocked in every thread (a signalfd
/// misses a signal that a thread without the block takes).
private let childSignalBlocked = Atomic<Bool>(false)

/// CLOCK_MONOTONIC in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// Starts a detached thread running `body` (`pthread_create`; Foundation's Thread is not needed for this).
func startThread(named name: String, _ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        let name: String
        init(_ body: @escaping @Sendable () -> Void, _ name: String) {
            self.body = body
            self.name = name
        }
    }
    let context = Unmanaged.passRetained(Box(body, name)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(
        &thread, nil,
        { context in
            let box = Unmanaged<Box>.fromOpaque(context!).takeRetainedValue()
            csystem_name_thread(box.name)
            box.body()
            return nil
        }, context)
    precondition(result == 0, "cannot start thread \(name): \(String(cString: strerror(result)))")
    pthread_detach(thread)
}

/// A counting semaphore (POSIX `sem_t`), for a thread that must sleep until woken.
final class Semaphore: @unchecked Sendable {
    // sem_post/sem_wait are async-signal-safe and thread-safe; the sem_t lives at a stable heap address.
    private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init() { sem_init(semaphore, 0, 0) }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    func signal() { sem_post(semaphore) }

    func wait() {
        while sem_wait(semaphore) != 0 && errno == EINTR {}
    }
}
