import Dispatch
import GRPCCore
import GRPCNIOTransportHTTP2TransportServices
import Logging
import NIOCore
import NIOPosix
import SandboxService
import Synchronization

/// The gRPC listener (HTTP/2 without TLS, as the Go daemon serves it): `process.v1.ProcessService`,
/// `watcher.v1.FileWatcherService` and server reflection, over the same core as the HTTP front. libmicrohttpd speaks
/// HTTP/1.1 only, so this front runs on grpc-swift's NIO transport; nothing of it exists until `start` is called.
public final class GRPCFront: ServerFront {
    public struct Configuration: Sendable {
        public var host = "0.0.0.0"
        public var port: UInt16 = 9090
        /// When set, every call needs `authorization: Bearer <token>` metadata.
        public var bearerToken: String?
        /// Connections open at once (the descriptor budget's share for gRPC); more are closed as soon as they are
        /// accepted.
        public var maxConnections = 1024
        /// Seconds a connection without a call may stay open (`--idle-timeout`); the client reconnects when it needs
        /// to. nil: no limit.
        public var idleTimeout: Double?
        /// Calls open at once on one connection, advertised as HTTP/2's `SETTINGS_MAX_CONCURRENT_STREAMS` so that a
        /// client queues the rest instead of having the connection ended (unadvertised, the HTTP/2 handler holds
        /// streams to 100 and ends a connection that opens more).
        public var maxCallsPerConnection = 100

        /// The defaults above; set what differs.
        public init() {}
    }

    public enum StartError: Error, CustomStringConvertible {
        case cannotListen(String, UInt16, String)

        public var description: String {
            switch self {
            case .cannotListen(let host, let port, let reason): "cannot listen for gRPC on \(host):\(port): \(reason)"
            }
        }
    }

    private let server: GRPCServer<HTTP2ServerTransport.Custom<PlaintextListener>>
    /// The server's transport, asked for the bound port (GRPCServer knows it only of its own listening transports).
    private let transport: HTTP2ServerTransport.Custom<PlaintextListener>
    private let calls: CallLog
    /// One event loop thread of its own (not NIO's shared group, one thread per core): the listener's descriptors
    /// are then a fixed few, whatever the machine (`DescriptorBudget.grpcReserve`).
    private let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let configuration: Configuration
    private let serving = Mutex<Task<Void, any Error>?>(nil)

    public init(configuration: Configuration, sandbox: Sandbox, logger: Logger) throws {
        self.configuration = configuration
        calls = CallLog(logger: logger)
        var interceptors: [any ServerInterceptor] = [calls]
        if let token = configuration.bearerToken { interceptors.append(BearerAuthentication(token: token)) }
        let connections = ConnectionLimit(
            limit: configuration.maxConnections, idleTimeout: configuration.idleTimeout, logger: logger)
        var config = HTTP2ServerTransport.Custom<PlaintextListener>.Config.defaults
        config.http2.maxConcurrentStreams = configuration.maxCallsPerConnection
        config.connection.maxIdleTime = configuration.idleTimeout.map { .milliseconds(Int64($0 * 1000)) }
        config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
            connections.accept(channel)
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        config.channelDebuggingCallbacks.onAcceptHTTP2Stream = { stream in
            connections.callStarted(stream)
            return stream.eventLoop.makeSucceededVoidFuture()
        }
        let listener = PlaintextListener(
            host: configuration.host == "localhost" ? "127.0.0.1" : configuration.host, port: Int(configuration.port),
            eventLoopGroup: eventLoops)
        transport = HTTP2ServerTransport.Custom(listenerFactory: listener, config: config)
        server = GRPCServer(
            transport: transport,
            services: [
                ProcessService(sandbox: sandbox), WatcherService(sandbox: sandbox),
                ReflectionService(index: try DescriptorIndex.embedded()),
            ],
            interceptors: interceptors)
    }

    /// Starts listening; returns the bound port once the socket accepts connections. Blocks the calling (non-async)
    /// thread until then.
    public func start() throws -> UInt16 {
        let (server, transport) = (server, transport)
        let task = Task(executorPreference: EventLoopTaskExecutor(eventLoops.next())) { try await server.serve() }
        serving.withLock { $0 = task }
        let bound = Mutex<Result<UInt16, any Error>?>(nil)
        let ready = DispatchSemaphore(value: 0)
        Task {
            do {
                guard let address = await transport.listeningAddress else {
                    // The transport stopped before it listened: its reason is the serving task's error.
                    if case .failure(let error) = await task.result { throw error }
                    throw StartError.cannotListen(configuration.host, configuration.port, "the transport stopped")
                }
                let port = address.ipv4?.port ?? address.ipv6?.port ?? 0
                bound.withLock { $0 = .success(UInt16(port)) }
            } catch {
                bound.withLock { $0 = .failure(error) }
            }
            ready.signal()
        }
        ready.wait()
        switch bound.withLock({ $0 })! {
        case .success(let port): return port
        case .failure(let error):
            throw StartError.cannotListen(configuration.host, configuration.port, String(describing: error))
        }
    }

    /// Stops accepting new calls; running ones go on (their commands are ended by the shutdown sequence).
    public func quiesce() {
        server.beginGracefulShutdown()
    }

    /// Calls still running, for the graceful shutdown's wait.
    public var activeRequests: Int { calls.active }

    /// Waits up to 2 s for the listener to close after `quiesce`, then cancels whatever is left.
    public func stop() {
        let seconds = 2.0
        guard let task = serving.withLock({ $0 }) else { return }
        server.beginGracefulShutdown()
        let done = DispatchSemaphore(value: 0)
        Task {
            _ = await task.result
            done.signal()
        }
        if done.wait(timeout: .now() + seconds) == .timedOut {
            task.cancel()
            _ = done.wait(timeout: .now() + 2)
        }
        try? eventLoops.syncShutdownGracefully()
    }
}

/// Runs tasks on a NIO event loop: the calls' tasks (children of the serving task, so they inherit it as their
/// preferred executor) then run on the thread that reads and writes their connection, not on Swift's global pool,
/// which costs two thread wake-ups per message each way.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// The listening socket of the gRPC front: a plain TCP listener (h2c, as the Go daemon serves it) whose accepted
/// connections the transport's own configurator turns into HTTP/2 gRPC pipelines.
struct PlaintextListener: HTTP2ServerTransport.ListenerFactory {
    let host: String
    let port: Int
    let eventLoopGroup: any EventLoopGroup

    func makeListeningChannel(
        listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator,
        connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator
    ) async throws -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
        try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { listenerConfigurator.configure(channel: $0) }
            .bind(host: host, port: port) { connectionConfigurator.configure(channel: $0, tls: .none) }
    }
}

/// The gRPC connections open: at most `limit` (the descriptor budget's share); one past it is closed as soon as it
/// is accepted (as libmicrohttpd closes an HTTP connection past `--max-connections`), logged at most once a second.
/// With an idle timeout, a connection that has had no call for twice that long is closed outright: the transport's
/// own idle close is graceful (GOAWAY, then a ping the client must answer) and never ends a client that does not
/// answer, or never spoke HTTP/2, so without this such clients could hold every slot.
final class ConnectionLimit: Sendable {
    let limit: Int
    private let hardIdleTimeout: Double?
    private let connections = Mutex<[ObjectIdentifier: Activity]>([:])
    private let throttle: LogThrottle

    private struct Activity {
        var calls = 0
        var idleSince = NIODeadline.now()
    }

    init(limit: Int, idleTimeout: Double?, logger: Logger) {
        self.limit = limit
        hardIdleTimeout = idleTimeout.map { $0 * 2 }
        throttle = LogThrottle(logger: logger)
    }

    /// Counts `channel` until it closes, or closes it at once if `limit` are open.
    func accept(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let admitted = connections.withLock { connections -> Bool in
            guard connections.count < limit else { return false }
            connections[id] = Activity()
            return true
        }
        guard admitted else {
            throttle.warning("gRPC connection limit", "refused a gRPC connection: \(limit) are open")
            channel.close(promise: nil)
            return
        }
        let sweep = hardIdleTimeout.map { timeout in
            let period = TimeAmount.milliseconds(max(100, Int64(timeout * 250)))
            return channel.eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { [self] _ in
                let idle = connections.withLock { connections in
                    connections[id].map {
                        $0.calls == 0 && $0.idleSince + .milliseconds(Int64(timeout * 1000)) < .now()
                    }
                }
                if idle == true { channel.close(promise: nil) }
            }
        }
        channel.closeFuture.whenComplete { [self] _ in
            sweep?.cancel()
            _ = connections.withLock { $0.removeValue(forKey: id) }
        }
    }

    /// Counts a call (an HTTP/2 stream) on its connection until it ends.
    func callStarted(_ stream: any Channel) {
        guard let connection = stream.parent else { return }
        let id = ObjectIdentifier(connection)
        connections.withLock { $0[id]?.calls += 1 }
        stream.closeFuture.whenComplete { [self] _ in
            connections.withLock { connections in
                guard var activity = connections[id] else { return }
                activity.calls -= 1
                if activity.calls == 0 { activity.idleSince = .now() }
                connections[id] = activity
            }
        }
    }
}
