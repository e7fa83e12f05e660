import Foundation
import Logging

/// sandboxd assembled: the sandbox root, the command runner, the routes and the HTTP front.
public final class SandboxServer: Sendable {
    public struct Options: Sendable {
        public var host = "0.0.0.0"
        public var port: UInt16 = 8000
        public var root = "/app"
        /// Cap and default for command timeouts, in seconds.
        public var maxTimeout: Double = 300
        /// libmicrohttpd polling threads.
        public var threads = 2
        /// Environment variables commands never see.
        public var secretVariables: Set<String> = ["SANDBOX_API_TOKEN"]

        public init() {}
    }

    public static let version = "0.1.0"

    public let root: SandboxRoot
    public let options: Options
    private let http: HTTPServer
    private let logger: Logger

    public init(options: Options, logger: Logger) throws {
        self.options = options
        self.logger = logger
        root = try SandboxRoot(path: options.root)
        let environment = ProcessInfo.processInfo.environment
            .filter { !options.secretVariables.contains($0.key) }
            .map { "\($0.key)=\($0.value)" }
        var router = Router()
        LegacyAPI(root: root, runner: CommandRunner(), maxTimeout: options.maxTimeout, environment: environment)
            .register(in: &router)
        http = HTTPServer(router: router, logger: logger)
    }

    /// Starts listening; returns the bound port.
    public func start() throws -> UInt16 {
        let port = try http.start(
            HTTPServer.Configuration(host: options.host, port: options.port, threads: options.threads))
        let shownHost = options.host.contains(":") ? "[\(options.host)]" : options.host
        logger.info("sandboxd \(Self.version) listening on \(shownHost):\(port) root=\(root.path)")
        return port
    }

    /// Stops accepting, ends waiting requests and streams, and stops the daemon.
    public func shutdown() {
        http.quiesce()
        http.stop()
        logger.info("sandboxd stopped")
    }
}
