import Dispatch
import Foundation
import Glibc
import Synchronization

/// Reaps every child of the server: the commands it spawned (their exit status goes to whoever registered them)
/// and, when sandboxd is PID 1 or a subreaper, the orphans the kernel re-parents to it (their status is discarded).
///
/// One thread blocks in `waitpid(-1)`, so no signal handler and no thread per command is needed. Spawning happens
/// inside `spawn(_:onExit:)` under the registry lock: a child that exits at once cannot be reaped before its
/// handler is registered, so no exit status is ever lost or stolen.
final class ChildReaper: Sendable {
    static let shared = ChildReaper()

    private let handlers = Mutex<[pid_t: @Sendable (Int32) -> Void]>([:])
    /// Signalled on every spawn, so the reaper thread sleeps while sandboxd has no children at all.
    private let childAdded = DispatchSemaphore(value: 0)

    private init() {
        let thread = Thread { [self] in self.reapForever() }
        thread.name = "sandboxd-reaper"
        thread.start()
    }

    /// Runs `spawn` (which returns the new child's pid, or throws) and registers `onExit` for that pid atomically.
    /// `onExit` receives the raw wait status on the reaper thread and must not block.
    func spawn<E: Error>(_ spawn: () throws(E) -> pid_t, onExit: @escaping @Sendable (Int32) -> Void) throws(E) -> pid_t
    {
        let pid = try handlers.withLock { (table) throws(E) -> pid_t in
            let pid = try spawn()
            table[pid] = onExit
            return pid
        }
        childAdded.signal()
        return pid
    }

    private func reapForever() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, 0)
            if pid > 0 {
                let handler = handlers.withLock { $0.removeValue(forKey: pid) }
                handler?(status)
            } else if errno == ECHILD {
                childAdded.wait()
            }
        }
    }
}
