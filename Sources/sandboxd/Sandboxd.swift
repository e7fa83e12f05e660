import FoundationEssentials
import Glibc
import Logging
import SandboxGRPC
import SandboxService

/// `sandboxd [options]`: reads its options (`SandboxServer.Options.declarations`), serves until SIGTERM or SIGINT,
/// then shuts down gracefully and exits 0.
@main
enum Sandboxd {
    static func main() {
        deliverChildExitsToTheIOLoop()  // before any thread starts: they all inherit the blocked SIGCHLD
        let environment = ProcessInfo.processInfo.environment
        let options: SandboxServer.Options
        let warnings: [String]
        do {
            switch try SandboxServer.Options.parse(Array(CommandLine.arguments.dropFirst()), environment: environment)
            {
            case .help:
                print(SandboxServer.Options.help)
                exit(0)
            case .version:
                print(SandboxServer.version)
                exit(0)
            case .run(let parsed, let ignored, let given):
                guard !(given.contains("token") && given.contains("token-file")) else {
                    printError("sandboxd: give --token or --token-file, not both")
                    exit(64)
                }
                (options, warnings) = (parsed, ignored)
            }
        } catch {
            printError("sandboxd: \(error)\nsee 'sandboxd --help'")
            exit(64)  // EX_USAGE
        }
        if let grpcPort = options.grpcPort, grpcPort != 0, grpcPort == options.port {
            printError("sandboxd: --grpc-port and --port must differ (both \(grpcPort))")
            exit(64)
        }
        run(options, warnings: warnings)
    }

    private static func run(_ parsed: SandboxServer.Options, warnings: [String]) -> Never {
        var options = parsed
        options.ownsAllChildren = true
        let format: LineLogHandler.Format = options.logFormat == .json ? .json : .text
        LoggingSystem.bootstrap { LineLogHandler(label: $0, format: format) }
        let logger = Logger(label: "sandboxd")
        warnings.forEach { logger.warning("\($0)") }
        // Before anything secret is read: commands run as this user and must not read this process.
        if !SelfProtection.makeUndumpable() {
            logger.warning("cannot mark sandboxd non-dumpable: commands of the same user may read its memory")
        }
        let descriptorLimit = DescriptorBudget.raiseLimit()
        if descriptorLimit == nil { logger.warning("cannot read the descriptor limit; assuming 1024") }
        let budget = DescriptorBudget(
            limit: descriptorLimit ?? 1024, maxConnections: options.maxConnections, maxProcesses: options.maxProcesses,
            grpc: options.grpcPort != nil, maxGRPCConnections: options.maxGRPCConnections,
            maxWatches: options.maxWatches)
        options.maxConnections = budget.maxConnections
        options.maxProcesses = budget.maxProcesses
        let grpcShare =
            budget.maxGRPCConnections > 0
            ? ", \(budget.maxGRPCConnections) gRPC connections (\(DescriptorBudget.perGRPCConnection) each) and \(DescriptorBudget.grpcReserve) more reserved for the gRPC listener"
            : ""
        logger.info(
            "descriptor limit \(budget.limit): up to \(budget.maxConnections) connections (\(DescriptorBudget.perConnection) descriptors each) and \(budget.maxProcesses) processes (\(DescriptorBudget.perProcess) each), \(DescriptorBudget.reserve) reserved, \(budget.maxWatches) for directory watches\(grpcShare)"
        )
        if !budget.fits {
            logger.warning(
                "--max-connections \(budget.maxConnections) and --max-processes \(budget.maxProcesses) may need \(budget.worstCase) descriptors, more than the limit of \(budget.limit): connections or commands may then fail with EMFILE"
            )
        }
        if let tokenFile = options.tokenFile {
            guard let token = SecretScrubber.readTokenFile(tokenFile), !token.isEmpty else {
                logger.critical("sandboxd cannot start: --token-file \(tokenFile) cannot be read or is empty")
                LogOutput.standardError.flush()
                exit(1)
            }
            options.token = token
        }
        // The environment was read (commands get a filtered copy); now hide the token from /proc.
        if let token = options.token { SecretScrubber.scrub(token: token) }
        SecretScrubber.clearEnvironmentToken()

        TerminationSignals.install()
        let server: SandboxServer
        do {
            server = try SandboxServer(options: options, logger: logger)
            _ = try server.start()
            if let grpcPort = options.grpcPort {
                var configuration = GRPCFront.Configuration()
                configuration.host = options.host
                configuration.port = grpcPort
                configuration.bearerToken = options.token
                configuration.maxConnections = budget.maxGRPCConnections
                configuration.idleTimeout = options.idleTimeout
                // A call beyond the process cap could only be refused; at least 100, HTTP/2's usual figure.
                configuration.maxCallsPerConnection = max(100, budget.maxProcesses)
                let front = try GRPCFront(configuration: configuration, sandbox: server.sandbox, logger: logger)
                let bound = try front.start()
                server.add(front)
                let shownHost = options.host.contains(":") ? "[\(options.host)]" : options.host
                logger.info("gRPC listening on \(shownHost):\(bound)")
            }
        } catch {
            logger.critical("sandboxd cannot start: \(error)")
            LogOutput.standardError.flush()
            exit(1)
        }
        let signal = TerminationSignals.waitForShutdown(logger: logger)
        logger.info("received signal \(signal), shutting down")
        server.shutdown()
        LogOutput.standardError.flush()
        exit(0)
    }
}

/// A line on stderr, before logging is set up.
private func printError(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
}
