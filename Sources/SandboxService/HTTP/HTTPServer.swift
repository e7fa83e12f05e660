import CMicroHTTPD
import Dispatch
import Glibc
import Logging
import Synchronization

/// The libmicrohttpd front: bridges its callbacks to the router's handlers.
///
/// libmicrohttpd runs its own epoll loop on a small fixed pool of threads. Handlers never block them: a request that
/// waits (for a command, for output) suspends its connection and is resumed by whoever produces the data.
public final class HTTPServer: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: UInt16
        /// Polling threads; each runs its own epoll loop over its share of the connections.
        public var threads: Int
        public var connectionLimit: Int
        /// Seconds an idle (not suspended) connection is kept open.
        public var idleTimeout: Int
        /// Seconds of silence on an event stream before a keep-alive comment is sent.
        public var keepAliveInterval: Double
        /// When set, every request but `GET /` must carry `Authorization: Bearer <token>`.
        public var bearerToken: String?
        /// Cap on streamed (upload and file write) bodies, in bytes; nil for none.
        public var maxUploadBytes: Int?
        /// Request log lines carry method, path, status and duration as metadata fields (for `--log-format json`).
        public var structuredLogs = false

        public init(
            host: String = "0.0.0.0", port: UInt16 = 8000, threads: Int = 2, connectionLimit: Int = 1024,
            idleTimeout: Int = 60, keepAliveInterval: Double = 15, bearerToken: String? = nil,
            maxUploadBytes: Int? = nil
        ) {
            self.host = host
            self.port = port
            self.threads = threads
            self.connectionLimit = connectionLimit
            self.idleTimeout = idleTimeout
            self.keepAliveInterval = keepAliveInterval
            self.bearerToken = bearerToken
            self.maxUploadBytes = maxUploadBytes
        }
    }

    public enum StartError: Error, CustomStringConvertible {
        case invalidHost(String)
        case cannotListen(String, UInt16)

        public var description: String {
            switch self {
            case .invalidHost(let host): "invalid listen address '\(host)'"
            case .cannotListen(let host, let port): "cannot listen on \(host):\(port) (address in use or not permitted)"
            }
        }
    }

    /// The running daemon. Raw MHD pointers are not `Sendable`; libmicrohttpd allows `MHD_quiesce_daemon` and
    /// `MHD_stop_daemon` from any one thread, and sandboxd calls them only from `stop()`.
    private struct Daemon: @unchecked Sendable {
        let raw: OpaquePointer
    }

    private struct State {
        var daemon: Daemon?
        /// Streams being sent and responses being waited for, with their client sockets.
        var streams: [ObjectIdentifier: (stream: EventStream, socket: Int32)] = [:]
        var pendings: [ObjectIdentifier: (pending: PendingResponse, socket: Int32)] = [:]
        /// Open connections by connection pointer: their socket, and since when they wait for a request head (nil
        /// while a request is being served).
        var connections: [UInt: (socket: Int32, waitingSince: DispatchTime?)] = [:]
        var timer: Source<DispatchSourceTimer>?
        var stopping = false
    }

    let configuration: Configuration
    let router: Router
    let logger: Logger
    let metrics: Metrics
    private let state = Mutex(State())

    public init(configuration: Configuration, router: Router, logger: Logger, metrics: Metrics) {
        self.configuration = configuration
        self.router = router
        self.logger = logger
        self.metrics = metrics
    }

    /// Starts listening and returns the bound port (useful with port 0). The socket accepts connections as soon as
    /// this returns.
    public func start() throws -> UInt16 {
        var flags =
            MHD_USE_EPOLL_INTERNAL_THREAD.rawValue | MHD_USE_INTERNAL_POLLING_THREAD.rawValue
            | MHD_ALLOW_SUSPEND_RESUME.rawValue | MHD_USE_ERROR_LOG.rawValue
        let address = try SocketAddress(host: configuration.host, port: configuration.port)
        if address.isIPv6 { flags |= MHD_USE_IPv6.rawValue }
        if configuration.host == "::" { flags |= MHD_USE_DUAL_STACK.rawValue }
        let context = Unmanaged.passUnretained(self).toOpaque()
        let daemon = address.withSockaddr { sockaddr in
            CMicroHTTPD_start_daemon(
                flags, configuration.port, configuration.host == "::" ? nil : sockaddr,
                HTTPServer.accessHandler, context, HTTPServer.completedHandler, context, HTTPServer.keepEscaped,
                HTTPServer.logError, context, HTTPServer.acceptPolicy, HTTPServer.connectionNotified, context,
                // libmicrohttpd's own limit only stops accepting (clients then wait in the backlog); the accept policy
                // enforces the configured limit by closing extra connections at once, so this one is a backstop.
                UInt32(max(1, configuration.threads)), UInt32(configuration.connectionLimit + 64),
                // Per-connection memory (request head and read buffer). libmicrohttpd clears it for every request, so a
                // larger pool costs every small request; 32 KiB is its default and bounds request heads.
                UInt32(configuration.idleTimeout), 32 * 1024)
        }
        guard let daemon else { throw StartError.cannotListen(configuration.host, configuration.port) }
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "sandboxd.keepalive"))
        timer.schedule(deadline: .now() + 1, repeating: 1, leeway: .milliseconds(100))
        let interval = configuration.keepAliveInterval
        timer.setEventHandler { [self] in self.tick(keepAliveInterval: interval) }
        timer.resume()
        state.withLock {
            $0.daemon = Daemon(raw: daemon)
            $0.timer = Source(timer)
        }
        return CMicroHTTPD_bound_port(daemon)
    }

    /// Stops accepting connections; requests on open connections are still served.
    public func quiesce() {
        state.withLock { state in
            guard let daemon = state.daemon?.raw else { return }
            let fd = MHD_quiesce_daemon(daemon)
            if fd >= 0 { close(fd) }
        }
    }

    /// Ends every stream and waiting request, then stops the daemon. Call exactly once, before releasing the server:
    /// the daemon holds an unretained pointer to it.
    public func stop() {
        let (streams, pendings) = state.withLock { state in
            state.stopping = true
            return (state.streams.values.map(\.stream), state.pendings.values.map(\.pending))
        }
        // libmicrohttpd must not be stopped with suspended connections: finishing resumes every parked one.
        streams.forEach { $0.finish() }
        pendings.forEach { $0.complete(APIError.detail(503, "Server is shutting down").response) }
        let (daemon, timer) = state.withLock { state in
            defer {
                state.daemon = nil
                state.timer = nil
            }
            return (state.daemon, state.timer)
        }
        timer?.source.cancel()
        if let daemon { MHD_stop_daemon(daemon.raw) }
    }

    /// Requests still being answered that a graceful shutdown waits for: waiting for a command, or streaming its
    /// events (not those following background processes).
    public var activeRequests: Int {
        state.withLock { state in
            state.streams.values.count(where: { $0.stream.holdsShutdown })
                + state.pendings.values.count(where: { $0.pending.holdsShutdown })
        }
    }

    /// Once a second: keep-alive comments on silent streams, a check for clients that went away, and the request
    /// head deadline. A suspended connection is not polled by libmicrohttpd, so without this a dead client would go
    /// unnoticed until the command ends; and libmicrohttpd's idle timeout restarts with every byte, so a client
    /// sending a header byte at a time (slowloris) would hold its connection forever.
    private func tick(keepAliveInterval: Double) {
        let now = DispatchTime.now()
        cutSlowConnections(now: now)
        let (gone, silent) = state.withLock { state in
            // Under the lock: entries leave in the completion callback, before libmicrohttpd closes the socket.
            let gone = state.streams.values.filter { Self.peerClosed($0.socket) }.map(\.stream)
            let goneWaits = state.pendings.values.filter { Self.peerClosed($0.socket) }.map(\.pending)
            let silent = state.streams.values.map(\.stream).filter { $0.idleTime(now: now) >= keepAliveInterval }
            return ((gone, goneWaits), silent)
        }
        gone.0.forEach { $0.clientGone() }
        gone.1.forEach { $0.clientGone() }
        silent.forEach { $0.sendComment("keep-alive") }
    }

    /// Shuts down (never closes: libmicrohttpd owns the descriptor) connections that have not sent a complete request
    /// head within the idle timeout; libmicrohttpd then sees the socket fail and closes it.
    private func cutSlowConnections(now: DispatchTime) {
        let limit = UInt64(configuration.idleTimeout) * 1_000_000_000
        let cut = state.withLock { state -> Int in
            var cut = 0
            for (key, connection) in state.connections {
                // `now` was read before the lock: a request may have started waiting after it.
                guard let since = connection.waitingSince, now > since,
                    now.uptimeNanoseconds - since.uptimeNanoseconds > limit
                else { continue }
                shutdown(connection.socket, Int32(SHUT_RDWR))
                state.connections[key]?.waitingSince = nil
                cut += 1
            }
            return cut
        }
        if cut > 0 {
            logger.info(
                "closed \(cut) connection(s) that sent no complete request within \(configuration.idleTimeout) s")
        }
    }

    /// Connection bookkeeping, from libmicrohttpd's connection notifications and the request callbacks.
    func connectionOpened(_ connection: OpaquePointer, socket: Int32) {
        state.withLock {
            $0.connections[UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection)))] = (socket, .now())
        }
    }

    func connectionClosed(_ connection: OpaquePointer) {
        state.withLock {
            _ = $0.connections.removeValue(forKey: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection))))
        }
    }

    /// A request head arrived (`waiting` false), or a request ended and the connection waits for the next (true).
    func connection(_ connection: OpaquePointer, waitsForRequest waiting: Bool) {
        state.withLock { state in
            let key = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection)))
            state.connections[key]?.waitingSince = waiting ? .now() : nil
        }
    }

    /// Open connections, for the accept policy.
    var openConnections: Int { state.withLock { $0.connections.count } }

    /// True when the peer closed or reset the connection (a zero-byte peek), without consuming any data.
    private static func peerClosed(_ socket: Int32) -> Bool {
        guard socket >= 0 else { return false }
        var byte: UInt8 = 0
        let count = recv(socket, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
    }

    func register(_ stream: EventStream, socket: Int32) {
        state.withLock { $0.streams[ObjectIdentifier(stream)] = (stream, socket) }
    }

    func unregister(_ stream: EventStream) {
        state.withLock { _ = $0.streams.removeValue(forKey: ObjectIdentifier(stream)) }
    }

    func register(_ pending: PendingResponse, socket: Int32) -> Bool {
        state.withLock { state in
            guard !state.stopping else { return false }
            state.pendings[ObjectIdentifier(pending)] = (pending, socket)
            return true
        }
    }

    func unregister(_ pending: PendingResponse) {
        state.withLock { _ = $0.pendings.removeValue(forKey: ObjectIdentifier(pending)) }
    }
}

/// Dispatch sources are thread-safe (their methods may be called from any thread) but not marked `Sendable`.
struct Source<S>: @unchecked Sendable {
    let source: S
    init(_ source: S) { self.source = source }
}
