import Glibc

/// How sandboxd shares its descriptor limit (`RLIMIT_NOFILE`) between connections and processes, so that neither
/// can starve the other or the listener: with at most `maxConnections` connections and `maxProcesses` processes,
/// sandboxd uses at most `reserve + maxConnections × perConnection + maxProcesses × perProcess` descriptors (with
/// the gRPC listener, `grpcReserve + maxGRPCConnections × perGRPCConnection` more; `maxWatches × perWatch` more for
/// directory watches), and the defaults keep that
/// within the limit. A refused connection or process is then answered (closed, or 429) before `accept`, `pipe` or
/// `open` can fail with EMFILE, and `GET /` and the error answers always have a descriptor.
public struct DescriptorBudget: Sendable, Equatable {
    /// Descriptors for everything that is neither a connection nor a process: standard streams, the listening socket,
    /// libmicrohttpd's epoll and wake-up descriptors per thread, the I/O loop's epoll and wake pipe, the child signal
    /// descriptor, /dev/null, the PATH watch, the sandbox root, Dispatch's own (about 20 in all, measured idle), plus
    /// room for the transient ones: the child ends of a command's pipes while it is spawned (3 per spawn in
    /// progress), a connection accepted only to be refused, a directory listed or walked.
    public static let reserve = 64
    /// A connection's descriptors at most: its socket, the file it downloads or uploads into (an upload's temporary
    /// file) and that file's directory.
    public static let perConnection = 3
    /// A process's descriptors at most, held by the server while it runs: its stdout, stderr and stdin pipes (the
    /// server's ends; the child's ends are closed once it is spawned), or with a terminal the master side and a
    /// duplicate of it for input (2).
    public static let perProcess = 3
    /// The most connections the default allows, whatever the limit.
    public static let defaultConnectionCap = 1024
    /// With the gRPC listener, its own descriptors: the listening socket and its event loop's epoll, wake-up and
    /// timer descriptors (one loop thread), with room to spare.
    public static let grpcReserve = 8
    /// A gRPC connection's descriptors: its socket only. gRPC moves no files, and one HTTP/2 connection carries
    /// every call of a client; the processes its calls start are counted as processes.
    public static let perGRPCConnection = 1
    /// The most gRPC connections open at once, whatever the limit.
    public static let grpcConnectionCap = 64
    /// A directory watch's descriptors while it runs: its inotify instance. The directories it opens to add watches
    /// are open one or two at a time and closed at once (the reserve's transient ones).
    public static let perWatch = 1

    /// The soft descriptor limit the budget shares.
    public var limit: Int
    /// HTTP connections open at once (`--max-connections`).
    public var maxConnections: Int
    public var maxProcesses: Int
    /// gRPC connections open at once; 0 without the gRPC listener.
    public var maxGRPCConnections: Int
    /// Directory watches whose descriptors the budget holds: `--max-watches`, but at most an eighth of what the
    /// reserve leaves, so that a small limit is not all watches. Past them a watch may find no descriptor (429, as
    /// any watch the kernel cannot give an inotify instance).
    public var maxWatches: Int

    /// The budget for `limit`. With `grpc`, the gRPC listener takes its reserve and its connections first (by
    /// default up to 64, at most an eighth of what the reserve leaves). `maxConnections` defaults to half of what is left (at most 1024
    /// connections), `maxProcesses` to the rest; explicit values are kept as given. `maxWatches` directory watches
    /// (at most an eighth of what the reserve leaves) take their descriptors before all of them.
    public init(
        limit: Int, maxConnections: Int? = nil, maxProcesses: Int? = nil, grpc: Bool = false,
        maxGRPCConnections: Int? = nil, maxWatches: Int = 0
    ) {
        self.limit = limit
        var available = max(0, limit - Self.reserve)
        self.maxWatches = min(maxWatches, available / 8 / Self.perWatch)
        available -= self.maxWatches * Self.perWatch
        self.maxGRPCConnections = 0
        if grpc {
            self.maxGRPCConnections =
                maxGRPCConnections ?? max(1, min(Self.grpcConnectionCap, available / 8 / Self.perGRPCConnection))
            available = max(0, available - Self.grpcReserve - self.maxGRPCConnections * Self.perGRPCConnection)
        }
        let connections =
            maxConnections ?? max(1, min(Self.defaultConnectionCap, available / 2 / Self.perConnection))
        self.maxConnections = connections
        self.maxProcesses = maxProcesses ?? max(1, (available - connections * Self.perConnection) / Self.perProcess)
    }

    /// The most descriptors sandboxd can hold with this budget.
    public var worstCase: Int {
        Self.reserve + maxConnections * Self.perConnection + maxProcesses * Self.perProcess
            + maxWatches * Self.perWatch
            + (maxGRPCConnections > 0 ? Self.grpcReserve + maxGRPCConnections * Self.perGRPCConnection : 0)
    }

    /// Whether `worstCase` fits the limit (explicit flags may ask for more).
    public var fits: Bool { worstCase <= limit }

    /// Raises the soft descriptor limit to the hard one (commands still start with the soft limit sandboxd was
    /// given) and returns the limit now in force, or nil if it cannot be read. Call once at start, before anything
    /// is spawned.
    public static func raiseLimit() -> Int? {
        let descriptors = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var limit = rlimit()
        guard (try? systemCall { getrlimit(descriptors, &limit) }) != nil else { return nil }
        if limit.rlim_cur < limit.rlim_max {
            var raised = rlimit(rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max)
            var result = try? systemCall { setrlimit(descriptors, &raised) }
            // An unlimited hard limit cannot be the soft one: the kernel caps descriptors at fs.nr_open.
            if result == nil, let cap = kernelDescriptorCap(), cap > limit.rlim_cur && cap < raised.rlim_cur {
                raised.rlim_cur = cap
                result = try? systemCall { setrlimit(descriptors, &raised) }
            }
            if result != nil {
                commandDescriptorLimit.withLock { $0 = limit }
                limit = raised
            }
        }
        return Int(clamping: limit.rlim_cur)
    }

    /// `fs.nr_open`: the most descriptors the kernel lets one process have.
    private static func kernelDescriptorCap() -> rlim_t? {
        guard let fd = try? systemCall({ open("/proc/sys/fs/nr_open", O_RDONLY | O_CLOEXEC) }) else { return nil }
        defer { close(fd) }
        var text = [UInt8](repeating: 0, count: 32)
        guard let count = try? systemCall({ text.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } })
        else { return nil }
        return rlim_t(String(decoding: text[..<count].prefix { (48...57).contains($0) }, as: UTF8.self))
    }
}
