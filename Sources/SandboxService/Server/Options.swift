extension SandboxServer {
    /// Every setting of the server, with its default. The command line and the environment are read into it by
    /// `Options.parse`, from one declaration per option (`Options.declarations`).
    public struct Options: Sendable {
        /// Listen address of every listener.
        public var host = "0.0.0.0"
        /// Port of the HTTP listener; 0 picks a free one.
        public var port: UInt16 = 8000
        /// Port of the gRPC listener; none when nil.
        public var grpcPort: UInt16?
        public var root = "/app"
        /// Cap and default for command timeouts, in seconds.
        public var maxTimeout: Double = 300
        /// libmicrohttpd polling threads.
        public var threads = 2
        /// Environment variables commands never see.
        public var secretVariables: Set<String> = ["SANDBOX_API_TOKEN"]
        /// Prefix of the environment variables `GET /v1/metadata` serves.
        public var metadataPrefix = "SANDBOX_"
        /// Bytes of stdout and of stderr `/execute` keeps per command.
        public var maxOutputBytes = 16 << 20
        /// Cap on upload and file write bodies, in bytes; nil for none.
        public var maxUploadBytes: Int?
        /// Cap on every body read into memory (JSON bodies, a stdin write), in bytes; 8 times it caps the stdin
        /// bytes waiting for one command.
        public var maxBodyBytes = 1 << 20
        /// Output bytes each v1 process keeps for replay.
        public var replayBytes = 1 << 20
        /// Finished v1 processes kept (the newest).
        public var keepFinished = 100
        /// Seconds a finished v1 process is kept after its exit.
        public var keepFinishedFor: Double = 600
        /// Output bytes buffered for one event-stream client before the command's pipes are no longer read.
        public var streamBufferBytes = 1 << 20
        /// Seconds output is still read after a command's main process exited.
        public var drainTimeout = 0.1
        /// Concurrent connections; more are refused. nil: what the descriptor budget leaves (`DescriptorBudget`; the
        /// binary derives it at start), 1024 where nobody did.
        public var maxConnections: Int?
        /// Commands of every kind (`/execute`, streams, v1 processes, terminals) running at once; more are refused
        /// (429). nil: what the descriptor budget leaves (the binary derives it at start), no limit where nobody did.
        public var maxProcesses: Int?
        /// gRPC connections open at once; more are closed at once. nil: the gRPC listener's share of the descriptor
        /// budget (the binary derives it at start).
        public var maxGRPCConnections: Int?
        /// Directory watches open at once (gRPC `WatchDir`, `GET /v1/watch`); more are refused.
        public var maxWatches = 64
        /// Seconds over which a watch merges events before sending them.
        public var watchDebounce = 0.25
        /// Bytes of events one watch holds for its client; past it the watch ends with an error event.
        public var watchQueueBytes = 1 << 20
        /// Directories one recursive watch covers (each an inotify watch of the user's); a tree with more is
        /// refused at the start, and ends the watch with an error event when created or moved in later.
        public var maxWatchDirectories = 2048
        /// Bytes of memory each HTTP connection has for its request head (and read buffer).
        public var maxHeaderBytes = 32 * 1024
        /// Seconds an idle or slow connection (no bytes from the client) is kept.
        public var idleTimeout: Double = 60
        /// Seconds running requests get to finish after SIGTERM before commands are terminated.
        public var shutdownTimeout: Double = 10
        /// When set, every endpoint but `GET /` needs `Authorization: Bearer <token>`.
        public var token: String?
        /// A file holding the token, read once at start by the binary (so the token is never on a command line).
        public var tokenFile: String?
        /// Log lines as text or one JSON object each.
        public var logFormat = LogFormat.text
        /// Every child of this process is sandboxd's (true for the binary, not for a host embedding the library):
        /// what a command leaves behind outside its process group is then killed when it ends (`ChildReaper`), and
        /// shutdown ends every child and its descendants.
        public var ownsAllChildren = false

        public init() {}

        public enum LogFormat: String, Sendable, CaseIterable {
            case text, json
        }

        /// Request log lines carry their fields as metadata (for a JSON log handler).
        public var structuredLogs: Bool { logFormat == .json }
    }
}

extension SandboxServer.Options {
    /// The options of the command line, each declared once: its names (the first is shown; the others are aliases,
    /// such as the Go daemon's), its environment variable, what it means, and where its value goes. The help text
    /// and the defaults it shows come from here.
    public static let declarations: [OptionDeclaration] = [
        .init(
            ["host", "listen-host"], env: "SANDBOX_HOST", \.host,
            "Listen address of every listener; '::' listens on IPv6 and IPv4, 127.0.0.1 on loopback only."),
        .init(
            ["port", "rest-port"], env: "SANDBOX_PORT", \.port, "HTTP listen port; 0 picks a free one (logged)."),
        .init(
            ["grpc-port"], env: "SANDBOX_GRPC_PORT", \.grpcPort,
            "gRPC listen port (process.v1.ProcessService, watcher.v1.FileWatcherService and reflection); 0 picks a "
                + "free one. Without it no gRPC "
                + "listener is started."),
        .init(
            ["root", "root-dir"], env: "SANDBOX_BASE_DIR", \.root,
            "The sandbox root: cwd of every command, the only tree the file endpoints touch; created if missing."),
        .init(
            ["max-timeout"], env: "SANDBOX_EXEC_TIMEOUT_SECONDS", \.maxTimeout,
            "Cap and default for command timeouts.", check: positive),
        .init(
            ["metadata-prefix", "metadata-env-prefix"], env: "SANDBOX_METADATA_PREFIX", \.metadataPrefix,
            "Prefix of the environment variables GET /v1/metadata serves."),
        .init(
            ["max-output-bytes"], \.maxOutputBytes,
            "Bytes of stdout and of stderr /execute keeps per command, and twice that once escaped as JSON; the "
                + "rest is cut and marked.", check: positive),
        .init(
            ["max-upload-bytes"], \.maxUploadBytes, "Largest upload or file write body; larger ones get 413.",
            check: notNegative),
        .init(
            ["max-body-bytes"], \.maxBodyBytes,
            "Largest body read into memory: a JSON body (/execute, /execute/stream, v1 process start, signal, "
                + "resize) or a stdin write; larger ones get 413. Stdin waiting for a command to read it is capped at "
                + "8 times this; writes past that get 429.", check: positive),
        .init(
            ["replay-bytes"], \.replayBytes,
            "Output each v1 process keeps for replay (its newest bytes); a client that attaches later gets a comment "
                + "marking the older output as missed, and one that falls further behind an error event.",
            check: positive),
        .init(
            ["keep-finished"], \.keepFinished,
            "Finished v1 processes kept, the newest; older ones are forgotten (404).", check: positive),
        .init(
            ["keep-finished-for"], \.keepFinishedFor,
            "How long a finished v1 process is kept after its exit; then it is forgotten (404).", check: positive),
        .init(
            ["stream-buffer-bytes"], \.streamBufferBytes,
            "Output buffered for one /execute/stream client or gRPC Start or Execute call; past it sandboxd stops reading the command's pipes, so "
                + "the command blocks on write until less than a quarter of it is left to send.", check: positive),
        .init(
            ["drain-timeout"], \.drainTimeout,
            "How long output is still read after a command's main process exited, from what it left holding its "
                + "pipes; then what the pipes hold is read once and they are closed.", check: positive),
        .init(
            ["max-connections"], \.maxConnections, "Concurrent connections; more are closed at once.", check: positive,
            derivedDefault: "half of the descriptor limit left after a reserve of 64 and one per --max-watches, at "
                + "3 per connection, at most 1024: 149 under a limit of 1024"),
        .init(
            ["max-processes"], \.maxProcesses,
            "Commands of every kind running at once (/execute, streams, v1 processes, terminals); more get 429.",
            check: positive,
            derivedDefault: "the rest of the descriptor limit, at 3 per process: 149 under a limit of 1024"),
        .init(
            ["max-grpc-connections"], \.maxGRPCConnections,
            "With --grpc-port, gRPC connections open at once (each carries any number of calls); more are closed at "
                + "once.", check: positive,
            derivedDefault: "an eighth of the descriptor limit left after a reserve of 64, at most 64: 64 under a "
                + "limit of 1024; HTTP connections and processes then default to 137 each"),
        .init(
            ["max-watches"], \.maxWatches,
            "Directory watches open at once (gRPC WatchDir, GET /v1/watch), each an inotify instance; more get 429 "
                + "(RESOURCE_EXHAUSTED).", check: positive),
        .init(
            ["watch-debounce"], \.watchDebounce,
            "How long a directory watch merges events before sending them (a file created and written is one create "
                + "and at most one write per window); 0 sends them as they are read.", check: notNegative),
        .init(
            ["watch-queue-bytes"], \.watchQueueBytes,
            "Events one directory watch holds for its client (each counts its paths and 64 bytes); past it the "
                + "watch ends with an error event saying events were lost.", check: positive),
        .init(
            ["max-watch-directories"], env: "SANDBOX_MAX_WATCH_DIRECTORIES", \.maxWatchDirectories,
            "Directories one recursive directory watch covers, itself included; each takes one of the user's "
                + "inotify watches (fs.inotify.max_user_watches, shared with the commands' own use). A watch whose "
                + "tree has more at its start gets 429 (RESOURCE_EXHAUSTED); one whose tree grows past it (a "
                + "directory tree created or moved in) ends with an error event naming the limit. The default keeps "
                + "--max-watches (64) times it (131072) under the 192543 watches Linux gives a user on a 24 GiB host "
                + "(about 1% of its memory); lower it on a smaller host.", check: positive),
        .init(
            ["max-header-bytes"], \.maxHeaderBytes,
            "Memory of each HTTP connection for its request head (and read buffer); a larger head gets 431, a longer "
                + "target 414.", check: atLeastFourKiB),
        .init(
            ["idle-timeout", "http-idle-timeout"], \.idleTimeout,
            "How long a connection may stay silent, and the longest a request head may take to arrive; a gRPC "
                + "connection without a call is closed gracefully after it, outright after twice it.",
            check: positive),
        .init(
            ["shutdown-timeout"], \.shutdownTimeout,
            "How long running requests get to finish after SIGTERM/SIGINT before commands are ended.",
            check: notNegative),
        .init(
            ["token"], env: "SANDBOX_API_TOKEN", \.token,
            "Require 'Authorization: Bearer <token>' on every HTTP endpoint but GET / and on every gRPC call. The "
                + "variable is removed from the environment once read; prefer --token-file."),
        .init(
            ["token-file"], \.tokenFile,
            "Read the token of --token from this file, once at start (a trailing newline is dropped); it never "
                + "appears on the command line, which every process can read."),
        .init(["log-format"], \.logFormat, "Log lines as text, or json (one JSON object per line)."),
    ]

    private static func positive<Value: Comparable & Numeric>(_ value: Value) -> String? {
        value > 0 ? nil : "must be greater than 0"
    }

    private static func atLeastFourKiB(_ value: Int) -> String? {
        value >= 4096 ? nil : "must be at least 4096"
    }

    private static func notNegative<Value: Comparable & Numeric>(_ value: Value) -> String? {
        value >= 0 ? nil : "must not be negative"
    }
}
