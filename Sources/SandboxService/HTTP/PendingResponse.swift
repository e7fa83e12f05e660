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
        /// The client went away: the request is to be dropped without an answer.
        var abandoned = false
    }

    /// What the polling thread does with the request.
    enum Take {
        case response(HTTPResponse)
        /// Not ready: the connection was suspended.
        case parked
        /// The client went away: close the connection.
        case abandon
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
            guard state.response == nil, !state.taken, !state.abandoned else { return nil }
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

    /// Polling thread: the response if ready, otherwise suspends the connection (via `suspend`) and parks; or, once
    /// the client went away, abandon.
    func takeOrPark(suspend: () -> Void, resume: @escaping @Sendable () -> Void) -> Take {
        state.withLock { state in
            if state.abandoned { return .abandon }
            if let response = state.response {
                state.response = nil
                state.taken = true
                return .response(response)
            }
            state.resume = resume
            state.parked = true
            suspend()
            return .parked
        }
    }

    /// The client went away while the response was being waited for: tells the handler, then resumes the
    /// connection so that the polling thread drops it (a suspended connection would otherwise stay open, and its
    /// socket in CLOSE-WAIT, until the response came, which for a wait on a long-running process is never).
    func clientGone() {
        let (handler, resume) = state.withLock { state -> ((@Sendable () -> Void)?, (@Sendable () -> Void)?) in
            defer { state.onClientGone = nil }
            guard !state.taken, !state.abandoned else { return (nil, nil) }
            state.abandoned = true
            state.response = nil
            let resume = state.parked ? state.resume : nil
            state.parked = false
            return (state.onClientGone, resume)
        }
        handler?()
        resume?()
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
