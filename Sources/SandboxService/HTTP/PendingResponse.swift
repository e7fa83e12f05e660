import Synchronization

/// A response that a handler completes later, from any thread (a command's exit, for example).
///
/// While it is not ready the request's connection is suspended, so no polling thread waits for it. The parked flag
/// and the suspension change under one lock, so resume is only ever called, once, on a connection that is
/// suspended.
public final class PendingResponse: Sendable {
    private struct State {
        var response: HTTPResponse?
        var parked = false
        var resume: (@Sendable () -> Void)?
        var onClientGone: (@Sendable () -> Void)?
        var taken = false
    }

    private let state = Mutex(State())
    /// Whether a graceful shutdown waits for this response (false for a wait on a background process).
    public let holdsShutdown: Bool

    public init(holdsShutdown: Bool = true) {
        self.holdsShutdown = holdsShutdown
    }

    /// Delivers the response; later calls are ignored.
    public func complete(_ response: HTTPResponse) {
        let resume = state.withLock { state -> (@Sendable () -> Void)? in
            guard state.response == nil, !state.taken else { return nil }
            state.response = response
            guard state.parked else { return nil }
            state.parked = false
            return state.resume
        }
        // Outside the lock: the woken polling thread takes the response at once instead of waiting for the lock.
        // The connection stays suspended until this call, and nothing suspends it again: the response is set.
        resume?()
    }

    /// Called once if the connection ends before the response was sent.
    public func onClientGone(_ handler: @escaping @Sendable () -> Void) {
        state.withLock { $0.onClientGone = handler }
    }

    /// Polling thread: the response if ready, otherwise suspends the connection (via `suspend`) and returns nil.
    func takeOrPark(suspend: () -> Void, resume: @escaping @Sendable () -> Void) -> HTTPResponse? {
        state.withLock { state in
            if let response = state.response {
                state.response = nil
                state.taken = true
                return response
            }
            state.resume = resume
            state.parked = true
            suspend()
            return nil
        }
    }

    /// The client went away while the response was being waited for.
    func clientGone() {
        let handler = state.withLock { state -> (@Sendable () -> Void)? in
            defer { state.onClientGone = nil }
            return state.onClientGone
        }
        handler?()
    }

    /// The request ended; if no response was sent, the client went away.
    func requestEnded() {
        let handler = state.withLock { state -> (@Sendable () -> Void)? in
            defer {
                state.taken = true
                state.onClientGone = nil
            }
            return state.taken ? nil : state.onClientGone
        }
        handler?()
    }
}
