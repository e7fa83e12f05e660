import CSandboxd
import Glibc
import Synchronization

/// Reaps every child of the server: the commands it spawned (their exit status goes to whoever registered them)
/// and, when sandboxd is PID 1 or a subreaper, the orphans the kernel re-parents to it (their status is discarded).
///
/// When SIGCHLD is blocked (the sandboxd binary blocks it before it starts any thread:
/// `deliverChildExitsToTheIOLoop`), exits arrive on a signalfd watched by the shared I/O loop, which reaps there: a
/// command's output, exit and answer are then handled on one thread. Otherwise (a process that embeds the service
/// with SIGCHLD unblocked somewhere) one thread blocks in `waitid`.
///
/// Every descendant of a command dies with it. A child that has exited is first looked at without reaping it
/// (`WNOWAIT`): its zombie still holds its pid and process group id, so killing its group then can never hit a
/// process that reused the id. A command's main process leads its own group, and that group is killed (SIGKILL) when
/// the main process exits, before it is reaped; what left the group reaches sandboxd as its ancestors die (the main
/// process is a subreaper while it lives, sandboxd afterwards), and `sweep` kills it.
///
/// Spawning takes no exclusive lock (concurrent spawns run in parallel): a child that exits before its handler is
/// registered is kept as "unclaimed" with the time it was reaped, and `spawn` claims it if it was reaped after the
/// spawn began — so no status is lost, and an orphan that happened to have the same pid earlier is never taken for
/// the new child.
final class ChildReaper: Sendable {
    static let shared = ChildReaper(loop: IOLoop.shared)

    /// A command's main process, as the reaper sees it.
    struct Child: Sendable {
        /// The process has exited and is about to be reaped (its group is killed right after this returns). Must
        /// not block.
        var exited: @Sendable () -> Void
        /// The process was reaped: its raw wait status. Must not block.
        var reaped: @Sendable (Int32) -> Void
    }

    private struct State {
        var children: [pid_t: Child] = [:]
        var unclaimed: [pid_t: (status: Int32, reapedAt: UInt64)] = [:]
        /// Spawns between their fork and the registration of the child.
        var spawning = 0
        var sweep = SweepState()
    }

    /// The sweep's schedule: requests are coalesced into one scan, at most one per `sweepInterval` (longer when
    /// scans are slow).
    private struct SweepState {
        var enabled = false
        var scheduled = false
        var last: UInt64 = 0
        /// How long the last scan took, in nanoseconds.
        var cost: UInt64 = 0
        /// Processes the sweeps killed (a metric).
        var killed = 0
    }

    private let state = Mutex(State())
    private let loop: IOLoop
    /// Spawns hold it shared from their fork until their child is registered; a sweep holds it exclusively while it
    /// checks and kills what it found, so it never takes a new command's main process for a stray.
    private let spawnLock = ReadWriteLock()
    /// Signalled on every spawn when there is a reaper thread, which sleeps while sandboxd has no children at all.
    private let childAdded = Semaphore()
    private let onLoop: Bool
    /// `/proc/sys/kernel/ns_last_pid`, open for the life of the process (-1 if it could not be opened: then every
    /// reap is followed by a sweep).
    private let lastPidFile: Int32
    /// Unclaimed statuses older than this belong to orphans, not to a spawn in progress.
    private static let unclaimedLifetime: UInt64 = 10_000_000_000
    /// The least time between two sweeps: a burst of ended commands costs one scan of /proc per interval, and a
    /// stray lives at most this long (plus one scan) after its command ended. A scan reads every process's stat
    /// (20–50 µs each here, most of it the kernel's: 2–5 ms for 100 processes, 20–30 ms for 600), so the interval is
    /// also at least ten scans long: sweeping never takes more than a tenth of the I/O loop.
    static let sweepInterval: UInt64 = 50_000_000

    private init(loop: IOLoop) {
        self.loop = loop
        lastPidFile = open("/proc/sys/kernel/ns_last_pid", O_RDONLY | O_CLOEXEC)
        var childSignal = Self.childSignal
        let signals: Int32? =
            if childSignalBlocked.load(ordering: .acquiring) {
                try? systemCall { signalfd(-1, &childSignal, Int32(SFD_NONBLOCK | SFD_CLOEXEC)) }
            } else {
                nil
            }
        onLoop = signals != nil
        guard let signals else {
            startThread(named: "sandboxd-reaper") { [self] in self.reapForever() }
            return
        }
        _ = loop.register(signals, events: IOLoop.readable) { [self] _ in
            Self.drainSignals(signals)
            reapAvailable()
        }
        // Insurance against a SIGCHLD taken by a thread that does not block it: a status is never left waiting
        // for more than a second.
        @Sendable func reapPeriodically() {
            reapAvailable()
            loop.after(1, reapPeriodically)
        }
        loop.after(1, reapPeriodically)
    }

    /// Declares that every child of this process is a command's or a command's leftover (true of the sandboxd
    /// binary, not of a host that embeds the service and may have children of its own): from now on, whatever is
    /// re-parented to this process is killed (`sweep`).
    func killStrays() {
        state.withLock { $0.sweep.enabled = true }
    }

    /// Runs `spawn` (which returns the new child's pid, or throws) and registers `child` for that pid. Its callbacks
    /// run on the I/O loop or reaper thread or (if the child already exited) on this one.
    func spawn<E: Error>(_ spawn: () throws(E) -> pid_t, child: Child) throws(E) -> pid_t {
        let began = monotonicNanoseconds()
        spawnLock.lockShared()
        state.withLock { $0.spawning += 1 }
        let pid: pid_t
        do {
            pid = try spawn()
        } catch {
            state.withLock { $0.spawning -= 1 }
            spawnLock.unlock()
            throw error
        }
        let early = state.withLock { state -> Int32? in
            state.spawning -= 1
            if let exited = state.unclaimed.removeValue(forKey: pid), exited.reapedAt >= began { return exited.status }
            state.children[pid] = child
            return nil
        }
        spawnLock.unlock()
        if !onLoop { childAdded.signal() }
        if let early { child.reaped(early) }
        return pid
    }

    /// Processes the sweeps have killed: descendants that outlived their command.
    var straysKilled: Int { state.withLock { $0.sweep.killed } }

    /// Kills the group of a child that has exited (unreaped), then reaps it and hands its status on. Returns
    /// whether it was reaped, and whether a sweep must follow: unless the child was a command's main process that
    /// never forked, something of its may have been re-parented to this process.
    private func reap(_ pid: pid_t) -> (reaped: Bool, sweep: Bool) {
        let (child, killsUnknown) = state.withLock { ($0.children[pid], $0.sweep.enabled || $0.spawning > 0) }
        var sweep = true
        if let child {
            // No pid was allocated in this pid namespace since this one (which its zombie still holds, so it cannot
            // have been given out again): the command created no process, and nothing of it can outlive it.
            sweep = lastAllocatedPid() != pid
            // Marked first, so the command sends no signal of its own to the group once it is reaped.
            child.exited()
            _ = kill(-pid, SIGKILL)
        } else if killsUnknown && getpgid(pid) == pid {
            // A group leader nobody registered: a stray of an ended command, or a command that exited before its
            // spawn could register it (its group must die with it all the same).
            _ = kill(-pid, SIGKILL)
        }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return (false, sweep) }
        deliver(pid: pid, status: status)
        return (true, sweep)
    }

    /// The pid namespace's last allocated pid (`/proc/sys/kernel/ns_last_pid`, read afresh at offset 0), or nil
    /// when it cannot be read.
    private func lastAllocatedPid() -> pid_t? {
        guard lastPidFile >= 0 else { return nil }
        var text = (0 as UInt64, 0 as UInt64)
        let count = withUnsafeMutableBytes(of: &text) { pread(lastPidFile, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        return withUnsafeBytes(of: &text) { bytes in
            var value: pid_t = 0
            for byte in bytes.prefix(count) {
                guard (48...57).contains(byte) else { return byte == 0x0A ? value : nil }
                value = value * 10 + pid_t(byte - 48)
            }
            return nil
        }
    }

    /// Hands a reaped status to its command, or keeps it as unclaimed.
    private func deliver(pid: pid_t, status: Int32) {
        let child = state.withLock { state -> Child? in
            if let child = state.children.removeValue(forKey: pid) { return child }
            let now = monotonicNanoseconds()
            state.unclaimed[pid] = (status, now)
            if state.unclaimed.count > 256 {
                state.unclaimed = state.unclaimed.filter { now - $0.value.reapedAt < Self.unclaimedLifetime }
            }
            return nil
        }
        child?.reaped(status)
    }

    /// On the I/O loop: reaps every child that has exited.
    private func reapAvailable() {
        var sweep = false
        while true {
            let pid = (try? Self.exitedChild(blocking: false)) ?? -1
            guard pid > 0 else { break }
            let outcome = reap(pid)
            // A pid that cannot be reaped (a failed spawn's own `waitpid` took it) is not offered again.
            guard outcome.reaped else { break }
            sweep = sweep || outcome.sweep
        }
        if sweep { requestSweep() }
    }

    /// `waitid(P_ALL, …, WEXITED | WNOWAIT)`: the pid of a child that has exited, left unreaped (its zombie keeps the
    /// pid and process group id from being reused), or 0 if none has (only without `blocking`).
    private static func exitedChild(blocking: Bool) throws(Errno) -> pid_t {
        var info = siginfo_t()
        try systemCall { waitid(P_ALL, 0, &info, WEXITED | WNOWAIT | (blocking ? 0 : WNOHANG)) }
        return info._sifields._sigchld.si_pid
    }

    /// A signal set holding SIGCHLD alone.
    fileprivate static let childSignal: sigset_t = {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGCHLD)
        return set
    }()

    /// Reads every pending notification from the SIGCHLD signalfd; what they say is not needed (`waitid` tells).
    private static func drainSignals(_ fd: Int32) {
        let size = 16 * MemoryLayout<signalfd_siginfo>.size
        withUnsafeTemporaryAllocation(byteCount: size, alignment: 8) { buffer in
            while (try? systemCall { read(fd, buffer.baseAddress, size) }) == size {}  // a short read emptied it
        }
    }

    private func reapForever() {
        while true {
            do throws(Errno) {
                let pid = try Self.exitedChild(blocking: true)
                if pid > 0, case (true, true) = reap(pid) { requestSweep() }
            } catch ECHILD {
                childAdded.wait()
            } catch {
                // Anything else (EINTR is retried already): waited for again.
            }
        }
    }

    // MARK: Strays

    /// Asks for a sweep soon: after a command ended or any child was reaped (its children are sandboxd's now).
    /// Requests are coalesced, and sweeps are at least `sweepInterval` apart.
    private func requestSweep() {
        let delay = state.withLock { state -> Double? in
            guard state.sweep.enabled, !state.sweep.scheduled else { return nil }
            state.sweep.scheduled = true
            let due = state.sweep.last &+ max(Self.sweepInterval, 10 * state.sweep.cost)
            let now = monotonicNanoseconds()
            return due > now ? Double(due - now) / 1e9 : 0
        }
        guard let delay else { return }
        if delay == 0 { loop.async { [self] in sweep() } } else { loop.after(delay) { [self] in sweep() } }
    }

    /// On the I/O loop: kills (SIGKILL) every child of this process that is not a registered command's main process,
    /// and their descendants. While anything was found, another sweep follows (what was forked meanwhile).
    private func sweep() {
        let began = monotonicNanoseconds()
        // The scan takes milliseconds and runs without the spawn lock, so spawns never wait for it. What it finds is
        // checked again under the lock: a main process whose spawn was under way during the scan is registered by
        // then (no spawn is in progress while the lock is held), and is kept with its descendants.
        let found = ProcessTree.strays(of: getpid(), keeping: state.withLock { Set($0.children.keys) })
        var killed = 0
        if !found.isEmpty {
            guard spawnLock.tryLockExclusive() else {
                loop.after(0.005) { [self] in sweep() }
                return
            }
            let keep = state.withLock { Set($0.children.keys) }
            for tree in found where !keep.contains(tree.root) {
                for pid in [tree.root] + tree.descendants { _ = kill(pid, SIGKILL) }
                killed += 1 + tree.descendants.count
            }
            spawnLock.unlock()
        }
        state.withLock { state in
            state.sweep.scheduled = false
            state.sweep.last = monotonicNanoseconds()
            state.sweep.cost = state.sweep.last - began
            state.sweep.killed += killed
        }
        if killed > 0 { requestSweep() }
    }
}

/// Blocks SIGCHLD in the calling thread, and so in every thread it starts afterwards, so that child exits reach the
/// shared I/O loop through a signalfd instead of a reaper thread of their own. Call first thing in `main`, before
/// any thread exists. Commands start with an empty signal mask whatever the server blocks.
public func deliverChildExitsToTheIOLoop() {
    var childSignal = ChildReaper.childSignal
    pthread_sigmask(SIG_BLOCK, &childSignal, nil)
    childSignalBlocked.store(true, ordering: .releasing)
}

/// Set by `deliverChildExitsToTheIOLoop`: only then is SIGCHLD known to be blocked in every thread (a signalfd
/// misses a signal that a thread without the block takes).
private let childSignalBlocked = Atomic<Bool>(false)
