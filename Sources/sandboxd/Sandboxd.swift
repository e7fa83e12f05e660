import ArgumentParser
import Foundation
import Logging
import SandboxService

@main
struct Sandboxd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandboxd",
        abstract: "Runs commands and moves files inside an agent sandbox, over HTTP.",
        version: SandboxServer.version)

    @Option(help: "Listen address; '::' listens on IPv6 and IPv4. Env SANDBOX_HOST. (default: 0.0.0.0)")
    var host: String?

    @Option(help: "Listen port; 0 picks a free one. Env SANDBOX_PORT. (default: 8000)")
    var port: UInt16?

    @Option(
        help:
            "Sandbox root: cwd of commands, the only tree file endpoints touch; created if missing. Env SANDBOX_BASE_DIR. (default: /app)"
    )
    var root: String?

    @Option(help: "Cap and default for command timeouts, in seconds. Env SANDBOX_EXEC_TIMEOUT_SECONDS. (default: 300)")
    var maxTimeout: Double?

    func validate() throws {
        if let maxTimeout, !(maxTimeout.isFinite && maxTimeout > 0) {
            throw ValidationError("--max-timeout must be a number of seconds greater than 0")
        }
    }

    func run() throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        let logger = Logger(label: "sandboxd")
        let environment = ProcessInfo.processInfo.environment
        func env(_ name: String) -> String? {
            guard let value = environment[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else {
                return nil
            }
            return value
        }
        var options = SandboxServer.Options()
        options.host = host ?? env("SANDBOX_HOST") ?? options.host
        if let port = port ?? env("SANDBOX_PORT").flatMap(UInt16.init) {
            options.port = port
        } else if let raw = env("SANDBOX_PORT") {
            logger.warning("Ignoring invalid SANDBOX_PORT=\(raw); using \(options.port)")
        }
        options.root = root ?? env("SANDBOX_BASE_DIR") ?? options.root
        if let maxTimeout {
            options.maxTimeout = maxTimeout
        } else if let raw = env("SANDBOX_EXEC_TIMEOUT_SECONDS") {
            if let value = Double(raw), value.isFinite, value > 0 {
                options.maxTimeout = value
            } else {
                logger.warning("Ignoring invalid SANDBOX_EXEC_TIMEOUT_SECONDS=\(raw); using default of 300 seconds")
            }
        }

        TerminationSignals.install()
        let server: SandboxServer
        do {
            server = try SandboxServer(options: options, logger: logger)
            _ = try server.start()
        } catch {
            logger.critical("sandboxd cannot start: \(error)")
            throw ExitCode.failure
        }
        let signal = TerminationSignals.wait()
        logger.info("received signal \(signal), shutting down")
        server.shutdown()
    }
}
