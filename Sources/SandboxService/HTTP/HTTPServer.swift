import CMicroHTTPD
import Dispatch
import Glibc
import Logging
import Synchronization

/// The libmicrohttpd front: starts, quiesces and stops the daemon, and wires its callbacks to `RequestPipeline` (which
/// serves requests) and `Connections` (which polices connections).
///
/// libmicrohttpd runs its own epoll loop on a small fixed pool of threads. Handlers never block them: a request that
/// waits (for a command, for output) suspends its connection and is resumed by whoever produces the data.
public final class HTTPServer: Sendable {
    public struct Configuration: Sendable {
        public var host = "0.0.0.0"
        public var port: UInt16 = 8000
        /// Polling threads; each runs its own epoll loop over its share of the connections.
        public var threads = 2
        public var connectionLimit = 1024
        /// Seconds an idle (not suspended) connection is kept open.
        public var idleTimeout = 60
        /// Seconds of silence on an event stream before a keep-alive comment is sent.
        public var keepAliveInterval = 15.0
        /// When set, every request but `GET /` must carry `Authorization: Bearer <token>`.
        public var bearerToken: String?
        /// Cap on streamed (upload and file write) bodies, in bytes; nil for none.
        public var maxUploadBytes: Int?
        /// Request log lines carry method, path, status and duration as metadata fields (for `--log-format json`).
        public var structuredLogs = false
        /// Each connection's memory pool: its request head (and read buffer) must fit; a larger head gets 431, or
        /// 414 for its target alone.
        public var maxHeaderBytes = 32 * 1024

        /// The defaults above; set what differs.
        public init() {}
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
        var timer: Source<DispatchSourceTimer>?
    }

    let configuration: Configuration
    let logger: Logger
    private let connections: Connections
    private let pipeline: RequestPipeline
    /// Warnings that can come in floods (refused connections, libmicrohttpd's messages): one line per second each.
    let throttle: LogThrottle
    private let state = Mutex(State())

    public init(configuration: Configuration, router: Router, logger: Logger, metrics: Metrics) {
        self.configuration = configuration
        self.logger = logger
        throttle = LogThrottle(logger: logger)
        connections = Connections(
            limit: configuration.connectionLimit, idleTimeout: configuration.idleTimeout,
            keepAliveInterval: configuration.keepAliveInterval, logger: logger,
            throttle: throttle)
        pipeline = RequestPipeline(
            policy: RequestMachine.Policy(
                router: router, bearerToken: configuration.bearerToken,
                maxUploadBytes: configuration.maxUploadBytes),
            connections: connections,
            observers: [AccessLog(logger: logger, structured: configuration.structuredLogs), metrics])
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
        // Unretained: the daemon must not outlive them, so `stop()` is called explicitly, never left to `deinit`.
        let server = Unmanaged.passUnretained(self).toOpaque()
        let pipeline = Unmanaged.passUnretained(pipeline).toOpaque()
        let connections = Unmanaged.passUnretained(connections).toOpaque()
        let daemon = address.withSockaddr { sockaddr in
            CMicroHTTPD_start_daemon(
                flags, configuration.port, configuration.host == "::" ? nil : sockaddr,
                HTTPServer.accessHandler, pipeline, HTTPServer.completedHandler, pipeline, HTTPServer.keepEscaped,
                HTTPServer.noteRequestTarget,
                HTTPServer.logError, server, HTTPServer.acceptPolicy, HTTPServer.connectionNotified, connections,
                // libmicrohttpd's own limit only stops accepting (clients then wait in the backlog); the accept policy
                // enforces the configured limit by closing extra connections at once, so this one is a backstop.
                UInt32(max(1, configuration.threads)), UInt32(configuration.connectionLimit + 64),
                // Per-connection memory (request head and read buffer). libmicrohttpd clears it for every request, so a
                // larger pool costs every small request; 32 KiB is its default.
                UInt32(configuration.idleTimeout), configuration.maxHeaderBytes)
        }
        guard let daemon else { throw StartError.cannotListen(configuration.host, configuration.port) }
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "sandboxd.keepalive"))
        // A client that leaves must be noticed within a second; an end of stream is acted on at the second tick
        // that sees it (see `Connections.cutEndedConnections`), so a tick every 250 ms notices it within about 500 ms.
        timer.schedule(
            deadline: .now() + Self.tickInterval, repeating: Self.tickInterval, leeway: .milliseconds(50))
        timer.setEventHandler { [connections = self.connections] in connections.tick() }
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
    /// the daemon holds unretained pointers to it, its pipeline and its connections.
    public func stop() {
        let (streams, pendings) = connections.stop()
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

    /// The routes it serves.
    var router: Router { pipeline.policy.router }

    /// Requests still being answered that a graceful shutdown waits for: waiting for a command, or streaming its
    /// events (not those following background processes).
    public var activeRequests: Int { connections.activeRequests }

    /// How often `Connections.tick()` polices the connections.
    static let tickInterval = DispatchTimeInterval.milliseconds(250)
}

/// Dispatch sources are thread-safe (their methods may be called from any thread) but not marked `Sendable`.
struct Source<S>: @unchecked Sendable {
    let source: S
    init(_ source: S) { self.source = source }
}
