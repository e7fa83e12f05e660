import ArgumentParser
import FoundationEssentials
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

    @Option(
        name: [.customLong("metadata-prefix"), .customLong("metadata-env-prefix")],
        help:
            "Prefix of the environment variables GET /v1/metadata serves. Env SANDBOX_METADATA_PREFIX. (default: SANDBOX_)"
    )
    var metadataPrefix: String?

    @Option(
        help:
            "Bytes of stdout and of stderr /execute keeps per command; the rest is cut and marked.")
    var maxOutputBytes: Int = 16 << 20

    @Option(help: "Largest upload or file write body, in bytes; larger ones get 413. (default: unlimited)")
    var maxUploadBytes: Int?

    @Option(help: "Concurrent connections; more are refused.")
    var maxConnections: Int = 1024

    @Option(
        help: "Seconds a connection may stay silent, and the longest a request head may take to arrive (slowloris).")
    var idleTimeout: Int = 60

    @Option(
        help: "Seconds running requests get to finish after SIGTERM/SIGINT before commands are ended.")
    var shutdownTimeout: Double = 10

    @Option(
        help:
            "Require 'Authorization: Bearer <token>' on every endpoint but GET /. Env SANDBOX_API_TOKEN. (default: none)"
    )
    var token: String?

    @Option(help: "Log lines as 'text' or 'json' (one JSON object per line).")
    var logFormat: LogFormat = .text

    enum LogFormat: String, ExpressibleByArgument {
        case text, json
    }

    func validate() throws {
        if let maxTimeout, !(maxTimeout.isFinite && maxTimeout > 0) {
            throw ValidationError("--max-timeout must be a number of seconds greater than 0")
        }
        guard maxOutputBytes > 0 else { throw ValidationError("--max-output-bytes must be greater than 0") }
        if let maxUploadBytes, maxUploadBytes < 0 { throw ValidationError("--max-upload-bytes must not be negative") }
        guard maxConnections > 0 else { throw ValidationError("--max-connections must be greater than 0") }
        guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be greater than 0") }
        guard shutdownTimeout >= 0, shutdownTimeout.isFinite else {
            throw ValidationError("--shutdown-timeout must be a number of seconds, 0 or more")
        }
    }

    func run() throws {
        deliverChildExitsToTheIOLoop()  // before any thread starts: they all inherit the blocked SIGCHLD
        let format: LineLogHandler.Format = logFormat == .json ? .json : .text
        LoggingSystem.bootstrap { LineLogHandler(label: $0, format: format) }
        let logger = Logger(label: "sandboxd")
        let environment = ProcessInfo.processInfo.environment
        func env(_ name: String) -> String? {
            guard let value = environment[name]?.trimmingWhitespace(), !value.isEmpty else {
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
        options.metadataPrefix = metadataPrefix ?? env("SANDBOX_METADATA_PREFIX") ?? options.metadataPrefix
        if let maxTimeout {
            options.maxTimeout = maxTimeout
        } else if let raw = env("SANDBOX_EXEC_TIMEOUT_SECONDS") {
            if let value = Double(raw), value.isFinite, value > 0 {
                options.maxTimeout = value
            } else {
                logger.warning("Ignoring invalid SANDBOX_EXEC_TIMEOUT_SECONDS=\(raw); using default of 300 seconds")
            }
        }

        options.ownsAllChildren = true
        options.structuredLogs = logFormat == .json
        options.maxOutputBytes = maxOutputBytes
        options.maxUploadBytes = maxUploadBytes
        options.maxConnections = maxConnections
        options.idleTimeout = idleTimeout
        options.shutdownTimeout = shutdownTimeout
        options.token = token ?? env("SANDBOX_API_TOKEN")
        // The environment was read above (commands get a filtered copy); now hide the token from /proc.
        if let token = options.token { SecretScrubber.scrub(token: token) }

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
        LogOutput.standardError.flush()
    }
}
