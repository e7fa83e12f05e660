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

    /// An open connection as the tick sees it.
    private struct Connection {
        let socket: Int32
        /// Since when it waits for a request head; nil while a request is being served.
        var waitingSince: DispatchTime?
        /// A request head arrived and its body is still coming.
        var receivingBody = false
        /// When the tick first found the client's end of stream with nothing left to read, in the current phase.
        var endSeen: DispatchTime?
    }

    private struct State {
        var daemon: Daemon?
        /// Streams being sent and responses being waited for, with their client sockets.
        var streams: [ObjectIdentifier: (stream: EventStream, socket: Int32)] = [:]
        var pendings: [ObjectIdentifier: (pending: PendingResponse, socket: Int32)] = [:]
        /// Files being sent: the descriptor, the client socket, and the offset where the response ends.
        var downloads: [ObjectIdentifier: (file: Int32, socket: Int32, end: UInt64)] = [:]
        /// Open connections by connection pointer.
        var connections: [UInt: Connection] = [:]
        var timer: Source<DispatchSourceTimer>?
        var stopping = false
    }

    let configuration: Configuration
    let router: Router
    let logger: Logger
    /// Told of every finished request: the access log and metrics.
    let observers: [any RequestObserver]
    /// Warnings that can come in floods (refused connections, libmicrohttpd's messages): one line per second each.
    let throttle: LogThrottle
    private let state = Mutex(State())

    public init(configuration: Configuration, router: Router, logger: Logger, metrics: Metrics) {
        self.configuration = configuration
        self.router = router
        self.logger = logger
        observers = [AccessLog(logger: logger, structured: configuration.structuredLogs), metrics]
        throttle = LogThrottle(logger: logger)
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
                HTTPServer.noteRequestTarget,
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
        // A client that leaves must be noticed within a second; an end of stream is acted on at the second tick
        // that sees it (see `cutEndedConnections`), so a tick every 250 ms notices it within about 500 ms.
        timer.schedule(
            deadline: .now() + Self.tickInterval, repeating: Self.tickInterval, leeway: .milliseconds(50))
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

    static let tickInterval = DispatchTimeInterval.milliseconds(250)

    /// Every `tickInterval`: keep-alive comments on silent streams, a check for clients that went away, and the
    /// request head deadline. A suspended connection is not polled by libmicrohttpd, so without this a dead client
    /// would go unnoticed until the command ends; and libmicrohttpd's idle timeout restarts with every byte, so a
    /// client sending a header byte at a time (slowloris) would hold its connection forever.
    private func tick(keepAliveInterval: Double) {
        let now = DispatchTime.now()
        cutSlowConnections(now: now)
        cutEndedConnections(now: now)
        cutShrunkDownloads()
        let (gone, silent) = state.withLock { state in
            // Under the lock: entries leave in the completion callback, before libmicrohttpd closes the socket.
            let gone = state.streams.values.filter { Self.peerEnded($0.socket) }.map(\.stream)
            let goneWaits = state.pendings.values.filter { Self.peerEnded($0.socket) }.map(\.pending)
            let silent = state.streams.values.map(\.stream).filter { $0.idleTime(now: now) >= keepAliveInterval }
            return ((gone, goneWaits), silent)
        }
        gone.0.forEach { $0.clientGone() }
        gone.1.forEach { $0.clientGone() }
        silent.forEach { $0.sendComment("keep-alive") }
    }

    /// Shuts down connections whose client ended its side while sandboxd waits for it to send: in the middle of a
    /// request body, or between requests.
    ///
    /// libmicrohttpd 0.9.75 misses such an end of stream whenever it arrives with the last bytes or before
    /// libmicrohttpd read them: its epoll loop is edge-triggered and `recv_param_adapter` clears the connection's
    /// read-ready flag after any short read, taking it for "drained", so the `recv` that would return 0 is never
    /// made; no new edge comes (the FIN was already there), and the connection sits in CLOSE-WAIT until the idle
    /// timeout with its upload's temporary file open. A connection found ended at two ticks in a row, with nothing
    /// left to read and in the same phase (a request that was complete when the client ended its side has been
    /// dispatched by then), is shut down; libmicrohttpd then sees the socket fail, closes it and reports the
    /// request as ended with an error, which removes what the request had created.
    private func cutEndedConnections(now: DispatchTime) {
        state.withLock { state in
            for (key, connection) in state.connections {
                guard connection.waitingSince != nil || connection.receivingBody,
                    Self.peerEnded(connection.socket, unreadCounts: false)
                else {
                    if connection.endSeen != nil { state.connections[key]?.endSeen = nil }
                    continue
                }
                guard let seen = connection.endSeen else {
                    state.connections[key]?.endSeen = now
                    continue
                }
                guard now > seen else { continue }
                shutdown(connection.socket, Int32(SHUT_RDWR))
                state.connections[key]?.waitingSince = nil
                state.connections[key]?.receivingBody = false
                state.connections[key]?.endSeen = nil
            }
        }
    }

    /// Shuts down the connections of file responses whose file became shorter than the response: libmicrohttpd
    /// sends files with `sendfile`, which then returns 0 forever, and the client would wait for the missing bytes.
    private func cutShrunkDownloads() {
        state.withLock { state in
            for download in state.downloads.values {
                var info = stat()
                guard fstat(download.file, &info) == 0, UInt64(max(0, info.st_size)) < download.end else { continue }
                shutdown(download.socket, Int32(SHUT_RDWR))
            }
        }
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
            $0.connections[UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection)))] = Connection(
                socket: socket, waitingSince: .now())
        }
    }

    func connectionClosed(_ connection: OpaquePointer) {
        state.withLock {
            _ = $0.connections.removeValue(forKey: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection))))
        }
    }

    /// A request head arrived (`waiting` false: its body, if any, comes next), or a request ended and the
    /// connection waits for the next (true).
    func connection(_ connection: OpaquePointer, waitsForRequest waiting: Bool) {
        state.withLock { state in
            let key = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection)))
            state.connections[key]?.waitingSince = waiting ? .now() : nil
            state.connections[key]?.receivingBody = !waiting
            state.connections[key]?.endSeen = nil
        }
    }

    /// The request's body is complete (or will not be read): it is being answered.
    func connectionReceivedBody(_ connection: OpaquePointer) {
        state.withLock { state in
            let key = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection)))
            state.connections[key]?.receivingBody = false
            state.connections[key]?.endSeen = nil
        }
    }

    /// Open connections, for the accept policy.
    var openConnections: Int { state.withLock { $0.connections.count } }

    /// True when the client closed, reset or shut down its side of the connection. With `unreadCounts` false, only
    /// once nothing it sent is left to read: libmicrohttpd still reads and handles those bytes itself.
    ///
    /// A suspended request treats an end of stream as the client leaving even with bytes unread (a client that
    /// pipelined a request and then ended its side is gone as far as the waiting answer is concerned).
    /// `POLLRDHUP`, which Glibc's module does not export (it is defined only under `_GNU_SOURCE`).
    private static let pollReadHangUp: Int16 = 0x2000

    private static func peerEnded(_ socket: Int32, unreadCounts: Bool = true) -> Bool {
        guard socket >= 0 else { return false }
        var entry = pollfd(fd: socket, events: Self.pollReadHangUp, revents: 0)
        guard poll(&entry, 1, 0) == 1 else { return false }
        if Int32(entry.revents) & (POLLHUP | POLLERR) != 0 { return true }
        guard entry.revents & Self.pollReadHangUp != 0 else { return false }
        if unreadCounts { return true }
        var unread: Int32 = 0
        return ioctl(socket, UInt(FIONREAD), &unread) == 0 && unread == 0
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

    /// A file response being sent from `file` (owned by libmicrohttpd's response, which closes it only after the
    /// request's completion callback has unregistered it) up to offset `end`.
    func registerDownload(_ context: RequestContext, file: Int32, socket: Int32, end: UInt64) {
        state.withLock { $0.downloads[ObjectIdentifier(context)] = (file, socket, end) }
    }

    func unregisterDownload(_ context: RequestContext) {
        state.withLock { _ = $0.downloads.removeValue(forKey: ObjectIdentifier(context)) }
    }
}

/// Dispatch sources are thread-safe (their methods may be called from any thread) but not marked `Sendable`.
struct Source<S>: @unchecked Sendable {
    let source: S
    init(_ source: S) { self.source = source }
}
