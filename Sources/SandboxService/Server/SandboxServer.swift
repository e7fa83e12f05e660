import CSandboxd
import FoundationEssentials
import Glibc
import Logging
import Synchronization

/// sandboxd assembled: the sandbox root, the command runner, the routes and the HTTP front.
public final class SandboxServer: Sendable {
    public static let version = "0.1.0"

    public let root: SandboxRoot
    public let options: Options
    private let http: HTTPServer
    private let runner: CommandRunner
    /// The core every front calls into; shutdown begins with it (no new background process, health says so).
    public let sandbox: Sandbox
    private let metrics: Metrics
    private let logger: Logger
    /// Listeners beside the HTTP front (gRPC), driven by `shutdown` with it.
    private let fronts = Mutex<[any ServerFront]>([])

    public init(options: Options, logger: Logger) throws {
        self.options = options
        self.logger = logger
        root = try SandboxRoot(path: options.root)
        // A command's pending stdin holds eight of the largest writes (8 MiB by default).
        let (stdinCap, overflow) = options.maxBodyBytes.multipliedReportingOverflow(by: 8)
        runner = CommandRunner(
            maxProcesses: options.maxProcesses, drainGrace: options.drainTimeout,
            maxPendingStdin: overflow ? Int.max : stdinCap)
        // Orphaned descendants of ended commands come to sandboxd (which reaps them) even when it is not PID 1.
        _ = csandboxd_become_child_subreaper()
        if options.ownsAllChildren { ChildReaper.shared.killStrays() }
        let environment = ProcessInfo.processInfo.environment
            .filter { !options.secretVariables.contains($0.key) }
            .map { "\($0.key)=\($0.value)" }
        var limits = ProcessTable.Limits()
        limits.outputBytes = options.replayBytes
        limits.retainedCount = options.keepFinished
        // Capped at ~31 years, as the I/O loop's timers are: a Duration of any Double would overflow.
        limits.retention = .seconds(min(options.keepFinishedFor, 1e9))
        var watchLimits = Watches.Limits()
        watchLimits.maxWatches = options.maxWatches
        watchLimits.watch.debounce = options.watchDebounce
        watchLimits.watch.queueBytes = options.watchQueueBytes
        watchLimits.watch.maxDirectories = options.maxWatchDirectories
        sandbox = Sandbox(
            root: root, runner: runner, environment: environment, maxOutputBytes: options.maxOutputBytes,
            streamBufferBytes: options.streamBufferBytes, processLimits: limits, watchLimits: watchLimits)
        let runner = runner
        metrics = Metrics {
            var readings: [(String, String, String, Double)] = [
                ("sandboxd_processes_running", "Commands running now.", "gauge", Double(runner.runningCount)),
                (
                    "sandboxd_commands_timed_out_total", "Commands killed by their timeout.", "counter",
                    Double(runner.timedOutCount)
                ),
                (
                    "sandboxd_processes_refused_total", "Commands refused because --max-processes were running.",
                    "counter", Double(runner.refusedCount)
                ),
                (
                    "sandboxd_strays_killed_total",
                    "Processes killed because their command had ended (descendants that left its process group).",
                    "counter", Double(ChildReaper.shared.straysKilled)
                ),
            ]
            let failures = runner.spawnFailureCounts
            for reason in Set(["EMFILE", "ENFILE", "EAGAIN", "ENOMEM"]).union(failures.keys).sorted() {
                readings.append(
                    (
                        "sandboxd_spawn_failures_total{reason=\"\(reason)\"}",
                        "Commands that could not be started for lack of resources (answered 503), by errno.", "counter",
                        Double(failures[reason] ?? 0)
                    ))
            }
            return readings
        }
        var router = Router(maxBodyBytes: options.maxBodyBytes)
        LegacyAPI(sandbox: sandbox, maxTimeout: options.maxTimeout).register(in: &router)
        V1API(sandbox: sandbox, metadataPrefix: options.metadataPrefix).register(in: &router)
        OpenAPIDocument.register(in: &router)
        MetricsAPI(metrics: metrics).register(in: &router)
        var configuration = HTTPServer.Configuration()
        configuration.host = options.host
        configuration.port = options.port
        configuration.threads = options.threads
        configuration.connectionLimit = options.maxConnections ?? DescriptorBudget.defaultConnectionCap
        configuration.idleTimeout = Int(options.idleTimeout.rounded(.up))
        configuration.bearerToken = options.token
        configuration.maxUploadBytes = options.maxUploadBytes
        configuration.structuredLogs = options.structuredLogs
        configuration.maxHeaderBytes = options.maxHeaderBytes
        http = HTTPServer(configuration: configuration, router: router, logger: logger, metrics: metrics)
    }

    /// The routes it serves (tests hold them against the OpenAPI document).
    var router: Router { http.router }

    /// Starts listening; returns the bound port.
    public func start() throws -> UInt16 {
        let port = try http.start()
        let shownHost = options.host.contains(":") ? "[\(options.host)]" : options.host
        logger.info("sandboxd \(Self.version) listening on \(shownHost):\(port) root=\(root.path)")
        if options.ownsAllChildren && !ProcessTree.procIsOurs {
            logger.warning(
                "/proc belongs to another pid namespace: what a command leaves outside its process group is not found")
        }
        return port
    }

    /// Adds a listener that `shutdown` quiesces, waits for and stops with the HTTP front.
    public func add(_ front: any ServerFront) {
        fronts.withLock { $0.append(front) }
    }

    /// Graceful stop: stop accepting connections (requests on open ones are still answered, `/v1/health` with 503),
    /// let running requests finish for up to `shutdownTimeout`, then SIGTERM and, 2 s later, SIGKILL every command
    /// tree still running (their clients get the resulting answer or `done` event), and stop the daemon.
    public func shutdown() {
        sandbox.beginShutdown()
        let fronts = fronts.withLock { $0 }
        http.quiesce()
        fronts.forEach { $0.quiesce() }
        let http = http
        let active = { http.activeRequests + fronts.reduce(0) { $0 + $1.activeRequests } }
        logger.info("shutting down: \(active()) requests and \(runner.runningCount) commands running")
        waitUntil(seconds: options.shutdownTimeout) { active() == 0 }
        runner.terminateAll(grace: 2, includingAllChildren: options.ownsAllChildren)
        // The answers of the commands just ended are on their way; give them a moment to leave.
        waitUntil(seconds: 1) { active() == 0 }
        fronts.forEach { $0.stop() }
        http.stop()
        logger.info("sandboxd stopped")
    }

    /// Polls `done` until it holds or `seconds` pass. Only for shutdown, on the main thread.
    private func waitUntil(seconds: Double, _ done: () -> Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        while !done() && Date() < deadline { usleep(20_000) }
    }
}

/// A listener serving the core beside the HTTP front (the gRPC one). `SandboxServer.shutdown` stops it from taking
/// new calls, waits for its running ones, then stops it.
public protocol ServerFront: AnyObject, Sendable {
    /// Stop accepting new calls; running ones go on.
    func quiesce()
    /// Calls still being answered.
    var activeRequests: Int { get }
    /// Close the listener (after the commands were ended).
    func stop()
}
