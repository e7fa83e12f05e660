import Glibc
import Synchronization

/// Reaps every child of the server: the commands it spawned (their exit status goes to whoever registered them)
/// and, when sandboxd is PID 1 or a subreaper, the orphans the kernel re-parents to it (their status is discarded).
///
/// One thread blocks in `waitpid(-1)`, so no signal handler and no thread per command is needed. Spawning takes no
/// lock (concurrent spawns run in parallel): a child that exits before its handler is registered is kept as
/// "unclaimed" with the time it was reaped, and `spawn` claims it if it was reaped after the spawn began — so no
/// status is lost, and an orphan that happened to have the same pid earlier is never taken for the new child.
final class ChildReaper: Sendable {
    static let shared = ChildReaper()

    private struct State {
        var handlers: [pid_t: @Sendable (Int32) -> Void] = [:]
        var unclaimed: [pid_t: (status: Int32, reapedAt: UInt64)] = [:]
    }

    private let state = Mutex(State())
    /// Signalled on every spawn, so the reaper thread sleeps while sandboxd has no children at all.
    private let childAdded = Semaphore()
    /// Unclaimed statuses older than this belong to orphans, not to a spawn in progress.
    private static let unclaimedLifetime: UInt64 = 10_000_000_000

    private init() {
        startThread(named: "sandboxd-reaper") { [self] in self.reapForever() }
    }

    /// Runs `spawn` (which returns the new child's pid, or throws) and registers `onExit` for that pid. `onExit`
    /// receives the raw wait status, on the reaper thread or (if the child already exited) on this one; it must not
    /// block.
    func spawn<E: Error>(_ spawn: () throws(E) -> pid_t, onExit: @escaping @Sendable (Int32) -> Void) throws(E) -> pid_t
    {
        let began = monotonicNanoseconds()
        let pid = try spawn()
        let early = state.withLock { state -> Int32? in
            if let exited = state.unclaimed.removeValue(forKey: pid), exited.reapedAt >= began { return exited.status }
            state.handlers[pid] = onExit
            return nil
        }
        childAdded.signal()
        if let early { onExit(early) }
        return pid
    }

    private func reapForever() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, 0)
            if pid > 0 {
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
            } else if errno == ECHILD {
                childAdded.wait()
            }
        }
    }
}

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
            _ = setThreadName(pthread_self(), String(box.name.prefix(15)))
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
