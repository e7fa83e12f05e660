import FoundationEssentials
import CSandboxd
import Glibc
import Synchronization

/// One thread waiting in `epoll` on the pipes of every command (and on the reaper's signal descriptor), with timers
/// and a task queue; every callback runs on that thread, in order.
///
/// sandboxd does not use Dispatch read sources for pipes: on Linux, libdispatch's epoll bookkeeping has a
/// use-after-free when many read sources are cancelled concurrently (swift-corelibs-libdispatch issue 949), which
/// crashed the server in the 200-concurrent-commands test. Registrations here are keyed by a token, never by the fd,
/// so an event for a descriptor that was unregistered (and whose number was reused) is dropped. Registering,
/// pausing and unregistering are `epoll_ctl` calls made by the caller's thread: starting a command does not wake the
/// loop. Only tasks and timers that end sooner than the loop's current wait do.
final class IOLoop: Sendable {
    typealias Handler = @Sendable (_ events: UInt32) -> Void

    /// The loop every command runner and the child reaper share: one thread for all pipes and exits.
    static let shared = IOLoop(name: "sandboxd-io")

    private struct Registration {
        var fd: Int32
        var events: UInt32
        var handler: Handler
        var active: Bool
    }

    private struct Timer {
        var deadline: UInt64
        var task: @Sendable () -> Void
    }

    private struct State {
        var nextToken: UInt64 = 1
        var registrations: [UInt64: Registration] = [:]
        var tasks: [@Sendable () -> Void] = []
        var timers: [UInt64: Timer] = [:]
        var wakePending = false
        /// When the loop's current wait ends by itself (`UInt64.max`: never; 0: it is not waiting).
        var sleepingUntil: UInt64 = 0

        /// Whether the caller must write a wake byte for work due at `deadline` (0: at once): only if the loop is
        /// waiting past it and nobody woke it already. Off its wait (`sleepingUntil` 0) the loop looks at its tasks
        /// and timers again before it waits.
        mutating func claimWake(before deadline: UInt64) -> Bool {
            guard sleepingUntil != 0, deadline < sleepingUntil, !wakePending else { return false }
            wakePending = true
            return true
        }
    }

    private let epoll: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let state = Mutex(State())
    private static let wakeToken: UInt64 = 0

    init(name: String) {
        var fds: [Int32] = [0, 0]
        do throws(Errno) {
            epoll = try systemCall { epoll_create1(Int32(EPOLL_CLOEXEC)) }
            try systemCall { csandboxd_pipe(&fds) }
        } catch {
            preconditionFailure("cannot create the I/O loop: \(error)")
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        control(EPOLL_CTL_ADD, wakeRead, events: Self.readable, token: Self.wakeToken)
        startThread(named: name) { [self] in self.run() }
    }

    static let readable = EPOLLIN.rawValue
    static let writable = EPOLLOUT.rawValue

    /// Watches `fd` for `events` (`readable` or `writable`; hang-ups and errors are always reported); returns the
    /// token that names the registration.
    func register(_ fd: Int32, events: UInt32, handler: @escaping Handler) -> UInt64 {
        state.withLock { state in
            let token = state.nextToken
            state.nextToken += 1
            state.registrations[token] = Registration(fd: fd, events: events, handler: handler, active: true)
            // Under the lock, so a concurrent unregister of this token cannot run between the two.
            control(EPOLL_CTL_ADD, fd, events: events, token: token)
            return token
        }
    }

    /// Stops or restarts delivering events for a registration (the descriptor stays open). A paused descriptor is
    /// taken out of the epoll set: epoll reports hang-ups even for an empty event mask.
    func setActive(_ token: UInt64, _ active: Bool) {
        state.withLock { state in
            guard let registration = state.registrations[token], registration.active != active else { return }
            state.registrations[token]?.active = active
            control(active ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, registration.fd, events: registration.events, token: token)
        }
    }

    /// Forgets a registration; the caller closes the descriptor afterwards.
    func unregister(_ token: UInt64) {
        state.withLock { state in
            guard let registration = state.registrations.removeValue(forKey: token), registration.active else { return }
            control(EPOLL_CTL_DEL, registration.fd, events: 0, token: token)
        }
    }

    /// `epoll_ctl` for one registration: the event's data is its token.
    private func control(_ operation: Int32, _ fd: Int32, events: UInt32, token: UInt64) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = token
        _ = epoll_ctl(epoll, operation, fd, &event)
    }

    /// Runs `task` on the loop thread, after the tasks queued before it.
    func async(_ task: @escaping @Sendable () -> Void) {
        let wake = state.withLock { state -> Bool in
            state.tasks.append(task)
            return state.claimWake(before: 0)
        }
        if wake { writeWakeByte() }
    }

    /// Runs `task` on the loop thread after `seconds`; returns an id for `cancelTimer`.
    @discardableResult
    func after(_ seconds: Double, _ task: @escaping @Sendable () -> Void) -> UInt64 {
        // Capped at ~31 years: no overflow.
        let deadline = monotonicNanoseconds() &+ UInt64(min(max(0, seconds), 1e9) * 1e9)
        let (id, wake) = state.withLock { state -> (UInt64, Bool) in
            let id = state.nextToken
            state.nextToken += 1
            state.timers[id] = Timer(deadline: deadline, task: task)
            return (id, state.claimWake(before: deadline))
        }
        if wake { writeWakeByte() }
        return id
    }

    func cancelTimer(_ id: UInt64) {
        _ = state.withLock { $0.timers.removeValue(forKey: id) }
    }

    /// One byte in the pipe is enough for any number of changes made before the loop runs again.
    private func writeWakeByte() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func run() {
        let capacity = 256
        var ready = [epoll_event](repeating: epoll_event(), count: capacity)
        while true {
            let timeout = state.withLock { state -> Int32 in
                // Changes after this point write a new wake byte if they need one; earlier ones are seen below.
                state.wakePending = false
                guard state.tasks.isEmpty else {
                    state.sleepingUntil = 0
                    return 0
                }
                guard let next = state.timers.values.map(\.deadline).min() else {
                    state.sleepingUntil = .max
                    return -1
                }
                let now = monotonicNanoseconds()
                let milliseconds = next <= now ? 0 : min((next - now + 999_999) / 1_000_000, 60_000)
                state.sleepingUntil = milliseconds == 0 ? 0 : now + milliseconds * 1_000_000
                return Int32(milliseconds)
            }
            let count = epoll_wait(epoll, &ready, Int32(capacity), timeout)
            state.withLock { $0.sleepingUntil = 0 }
            for index in 0..<max(0, Int(count)) {
                let token = ready[index].data.u64
                if token == Self.wakeToken {
                    var drain = [UInt8](repeating: 0, count: 64)
                    while read(wakeRead, &drain, drain.count) > 0 {}
                    continue
                }
                // Looked up per event: a handler earlier in this round may have unregistered this token.
                let handler = state.withLock { $0.registrations[token].flatMap { $0.active ? $0.handler : nil } }
                handler?(ready[index].events)
            }
            runDueTimers()
            runTasks()
        }
    }

    private func runTasks() {
        while true {
            let tasks = state.withLock { state -> [@Sendable () -> Void] in
                defer { state.tasks = [] }
                return state.tasks
            }
            guard !tasks.isEmpty else { return }
            tasks.forEach { $0() }
        }
    }

    private func runDueTimers() {
        let now = monotonicNanoseconds()
        let due = state.withLock { state -> [Timer] in
            let due = state.timers.filter { $0.value.deadline <= now }
            due.keys.forEach { state.timers.removeValue(forKey: $0) }
            return due.values.sorted { $0.deadline < $1.deadline }
        }
        due.forEach { $0.task() }
    }
}
