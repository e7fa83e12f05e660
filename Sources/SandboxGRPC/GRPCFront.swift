import Dispatch
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import SandboxService
import Synchronization

/// The gRPC listener (HTTP/2 without TLS, as the Go daemon serves it): `process.v1.ProcessService` and server
/// reflection, over the same core as the HTTP front. libmicrohttpd speaks HTTP/1.1 only, so this front runs on
/// grpc-swift's NIO transport; nothing of it exists until `start` is called.
public final class GRPCFront: ServerFront {
    public struct Configuration: Sendable {
        public var host: String
        public var port: UInt16
        /// When set, every call needs `authorization: Bearer <token>` metadata.
        public var bearerToken: String?

        public init(host: String, port: UInt16, bearerToken: String?) {
            self.host = host
            self.port = port
            self.bearerToken = bearerToken
        }
    }

    public enum StartError: Error, CustomStringConvertible {
        case cannotListen(String, UInt16, String)

        public var description: String {
            switch self {
            case .cannotListen(let host, let port, let reason): "cannot listen for gRPC on \(host):\(port): \(reason)"
            }
        }
    }

    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let calls: CallLog
    private let configuration: Configuration
    private let serving = Mutex<Task<Void, any Error>?>(nil)

    public init(configuration: Configuration, sandbox: Sandbox, logger: Logger) throws {
        self.configuration = configuration
        calls = CallLog(logger: logger)
        let address: GRPCNIOTransportCore.SocketAddress =
            configuration.host.contains(":")
            ? .ipv6(host: configuration.host, port: Int(configuration.port))
            : .ipv4(
                host: configuration.host == "localhost" ? "127.0.0.1" : configuration.host,
                port: Int(configuration.port))
        var interceptors: [any ServerInterceptor] = [calls]
        if let token = configuration.bearerToken { interceptors.append(BearerAuthentication(token: token)) }
        server = GRPCServer(
            transport: .http2NIOPosix(address: address, transportSecurity: .plaintext),
            services: [ProcessService(sandbox: sandbox), ReflectionService(index: try DescriptorIndex.embedded())],
            interceptors: interceptors)
    }

    /// Starts listening; returns the bound port once the socket accepts connections. Blocks the calling (non-async)
    /// thread until then.
    public func start() throws -> UInt16 {
        let server = server
        let task = Task { try await server.serve() }
        serving.withLock { $0 = task }
        let bound = Mutex<Result<UInt16, any Error>?>(nil)
        let ready = DispatchSemaphore(value: 0)
        Task {
            do {
                guard let address = try await server.listeningAddress else {
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
    }
}
