import FoundationEssentials
import Glibc
import Synchronization

/// One thread running `poll` over the pipes of every command, with timers and a task queue; every callback runs on
/// that thread, in order.
///
/// sandboxd does not use Dispatch read sources for pipes: on Linux, libdispatch's epoll bookkeeping has a
/// use-after-free when many read sources are cancelled concurrently (swift-corelibs-libdispatch issue 949), which
/// crashed the server in the 200-concurrent-commands test. Registrations here are keyed by a token, never by the fd,
/// so an event for a descriptor that was unregistered (and whose number was reused) is dropped. `poll` rather than
/// `epoll` because Swift's Glibc module does not export epoll; the set is rebuilt per wait, which costs microseconds
/// for the few thousand descriptors a thousand concurrent commands hold.
final class IOLoop: Sendable {
    typealias Handler = @Sendable (_ revents: Int16) -> Void

    private struct Registration {
        var fd: Int32
        var events: Int16
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
    }

    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let state = Mutex(State())
    private static let wakeToken: UInt64 = 0

    init(name: String) {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0, "cannot create the I/O loop: \(String(cString: strerror(errno)))")
        wakeRead = fds[0]
        wakeWrite = fds[1]
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        startThread(named: name) { [self] in self.run() }
    }

    /// Watches `fd` for `events` (`POLLIN` or `POLLOUT`); returns the token that names the registration.
    func register(_ fd: Int32, events: Int16, handler: @escaping Handler) -> UInt64 {
        let token = state.withLock { state in
            let token = state.nextToken
            state.nextToken += 1
            state.registrations[token] = Registration(fd: fd, events: events, handler: handler, active: true)
            return token
        }
        wake()
        return token
    }

    /// Stops or restarts delivering events for a registration (the descriptor stays open).
    func setActive(_ token: UInt64, _ active: Bool) {
        let changed = state.withLock { state -> Bool in
            guard state.registrations[token]?.active == !active else { return false }
            state.registrations[token]?.active = active
            return true
        }
        if changed { wake() }
    }

    /// Forgets a registration; the caller closes the descriptor afterwards.
    func unregister(_ token: UInt64) {
        _ = state.withLock { $0.registrations.removeValue(forKey: token) }
    }

    /// Runs `task` on the loop thread, after the tasks queued before it.
    func async(_ task: @escaping @Sendable () -> Void) {
        state.withLock { $0.tasks.append(task) }
        wake()
    }

    /// Runs `task` on the loop thread after `seconds`; returns an id for `cancelTimer`.
    @discardableResult
    func after(_ seconds: Double, _ task: @escaping @Sendable () -> Void) -> UInt64 {
        let deadline = Self.now() &+ UInt64(min(max(0, seconds), 1e9) * 1e9)  // capped at ~31 years: no overflow
        let id = state.withLock { state -> UInt64 in
            let id = state.nextToken
            state.nextToken += 1
            state.timers[id] = Timer(deadline: deadline, task: task)
            return id
        }
        wake()
        return id
    }

    func cancelTimer(_ id: UInt64) {
        _ = state.withLock { $0.timers.removeValue(forKey: id) }
    }

    /// Makes the loop re-read its registrations, timers and tasks; one byte in the pipe is enough for any number of
    /// changes made before the loop runs again.
    private func wake() {
        let needed = state.withLock { state -> Bool in
            defer { state.wakePending = true }
            return !state.wakePending
        }
        guard needed else { return }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    private func run() {
        var descriptors: [pollfd] = []
        var tokens: [UInt64] = []
        while true {
            descriptors.removeAll(keepingCapacity: true)
            tokens.removeAll(keepingCapacity: true)
            descriptors.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            tokens.append(Self.wakeToken)
            let timeout = state.withLock { state -> Int32 in
                // Changes after this point write a new wake byte; the ones before are in what is read below.
                state.wakePending = false
                for (token, registration) in state.registrations where registration.active {
                    descriptors.append(pollfd(fd: registration.fd, events: registration.events, revents: 0))
                    tokens.append(token)
                }
                guard let next = state.timers.values.map(\.deadline).min() else { return -1 }
                let now = Self.now()
                return next <= now ? 0 : Int32(min((next - now + 999_999) / 1_000_000, 60_000))
            }
            let count = poll(&descriptors, nfds_t(descriptors.count), timeout)
            if count > 0 {
                for (index, descriptor) in descriptors.enumerated() where descriptor.revents != 0 {
                    if index == 0 {
                        var drain = [UInt8](repeating: 0, count: 256)
                        while read(wakeRead, &drain, drain.count) > 0 {}
                        continue
                    }
                    // Looked up per event: a handler earlier in this round may have unregistered this token.
                    let token = tokens[index]
                    let handler = state.withLock { $0.registrations[token].flatMap { $0.active ? $0.handler : nil } }
                    handler?(descriptor.revents)
                }
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
        let now = Self.now()
        let due = state.withLock { state -> [Timer] in
            let due = state.timers.filter { $0.value.deadline <= now }
            due.keys.forEach { state.timers.removeValue(forKey: $0) }
            return due.values.sorted { $0.deadline < $1.deadline }
        }
        due.forEach { $0.task() }
    }
}
