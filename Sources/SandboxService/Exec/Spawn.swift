import CSandboxd
import Glibc
import Synchronization

/// Why a command could not be started. The HTTP layer turns these into shell-style exit codes or error answers.
public enum SpawnError: Error, Equatable, Sendable {
    /// The program does not exist (exit code 127 by shell convention).
    case notFound(String)
    /// The program exists but cannot be executed (exit code 126).
    case notExecutable(String)
    /// `maxProcesses` commands are running already; nothing was started.
    case tooManyProcesses(Int)
    /// The system is out of something a command needs: descriptors (`EMFILE`, `ENFILE`), processes or memory
    /// (`EAGAIN`, `ENOMEM`), a pipe or a pseudo-terminal. `what` names the step that failed. Retrying later may work.
    case resourcesExhausted(String, Int32)
    /// Any other failure of the spawn.
    case failed(String, Int32)

    /// The exit code a shell would report for this failure.
    public var exitCode: Int32 {
        switch self {
        case .notFound: 127
        case .notExecutable: 126
        case .tooManyProcesses, .resourcesExhausted, .failed: 1
        }
    }

    /// A message for the command's stderr, or an error answer.
    public var message: String {
        switch self {
        case .notFound(let name): "\(name): command not found"
        case .notExecutable(let name): "\(name): Permission denied"
        case .tooManyProcesses(let limit):
            "too many processes: \(limit) are running, the most sandboxd runs at once (--max-processes)"
        case .resourcesExhausted(let what, let code):
            "\(what) failed: \(String(cString: strerror(code))) (\(Self.name(of: code)))"
        case .failed(let what, let code): "\(what): \(String(cString: strerror(code)))"
        }
    }

    /// The errors that mean the system (or sandboxd's share of it) is out of resources.
    static let resourceErrors: Set<Int32> = [EMFILE, ENFILE, EAGAIN, ENOMEM]

    /// The symbolic name of the errno values a spawn reports for lack of resources (a metric label), else `other`.
    public static func name(of code: Int32) -> String {
        switch code {
        case EMFILE: "EMFILE"
        case ENFILE: "ENFILE"
        case EAGAIN: "EAGAIN"
        case ENOMEM: "ENOMEM"
        case ENOSPC: "ENOSPC"
        default: "other"
        }
    }
}

/// The descriptors a command is started with: the child's ends (closed in the server once it is spawned) and the
/// server's ends (read for output, written for stdin). With a terminal, the child opens the terminal as 0, 1 and 2
/// and the server reads and writes the terminal's master side.
struct ChildStreams {
    var childStdin = CommandRunner.devNull
    var childStdout: Int32 = -1
    var childStderr: Int32 = -1
    var terminalPath: String?
    /// Server ends; -1 when absent.
    var stdin: Int32 = -1
    var stdout: Int32 = -1
    var stderr: Int32 = -1

    init() {}

    /// Creates the pipes (or terminal); every descriptor is close-on-exec, the server's read ends non-blocking.
    init(stdinPipe: Bool, terminal: TerminalSize?) throws(SpawnError) {
        do throws(SpawnError) {
            if let terminal {
                let pty = try PseudoTerminal(size: terminal)
                terminalPath = pty.childPath
                stdout = pty.master
                stdin = try systemCall(failure: { SpawnError.resourcesExhausted("dup of the pseudo-terminal", $0.code) }
                ) {
                    dup(pty.master)
                }
                setCloseOnExec(stdin)
            } else {
                (stdout, childStdout) = try makePipe(nonBlocking: .read)
                (stderr, childStderr) = try makePipe(nonBlocking: .read)
                if stdinPipe { (childStdin, stdin) = try makePipe(nonBlocking: .write) }
            }
        } catch {
            closeAll()
            throw error
        }
    }

    /// After the spawn: the child has its copies.
    func closeChildEnds() {
        for fd in [childStdout, childStderr] where fd >= 0 { close(fd) }
        if childStdin != CommandRunner.devNull && childStdin >= 0 { close(childStdin) }
    }

    func closeAll() {
        closeChildEnds()
        for fd in [stdin, stdout, stderr] where fd >= 0 { close(fd) }
    }

    private enum End { case read, write }

    /// A pipe, close-on-exec from the start (no concurrent spawn can inherit it), with O_NONBLOCK on the server's end.
    private func makePipe(nonBlocking end: End) throws(SpawnError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        try systemCall(failure: { SpawnError.resourcesExhausted("pipe", $0.code) }) { csandboxd_pipe(&fds) }
        let serverEnd = end == .read ? fds[0] : fds[1]
        _ = fcntl(serverEnd, F_SETFL, O_NONBLOCK)  // a new pipe has no other status flag to keep
        return (fds[0], fds[1])
    }
}

func setCloseOnExec(_ fd: Int32) {
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
}

/// Starts `argv` with `csandboxd_spawn` (vfork and exec), in the open directory `cwdDescriptor` (`fchdir`; the path
/// `cwd` when it is -1), with default signal dispositions and an empty signal mask whatever the server itself ignores
/// or blocks, and no descriptor but 0, 1 and 2. It leads a new process
/// group, or with a terminal a new session whose controlling terminal that is. The program is looked up in the
/// server's PATH, as `execvp` does (`ProgramLocator`).
///
/// Exec failures are reported synchronously, which gives the 126/127 distinction without a shell. glibc's
/// `posix_spawn` does the same work but resets all 64 signals in the child and maps a new stack per spawn; this does
/// only what sandboxd needs (about 30 µs less per command on the development machine).
func spawnProcess(
    argv: [String], cwd: String, cwdDescriptor: Int32 = -1, environment: [String], streams: ChildStreams,
    locator: ProgramLocator = .shared
) throws(SpawnError) -> pid_t {
    guard let program = argv.first, !program.isEmpty else { throw .notFound(argv.first ?? "") }
    let candidates = locator.candidates(for: program)
    var pid: pid_t = 0
    var executed: Int32 = 0
    let descriptorLimit = commandDescriptorLimit.withLock { $0 }
    let attempt = { (pid: inout pid_t, executed: inout Int32) -> Int32 in
        withCStrings(candidates) { cCandidates in
            withCStrings(argv) { cArgv in
                withCStrings(environment) { cEnv in
                    cwd.withCString { cCwd in
                        withOptionalCString(streams.terminalPath) { cTerminal in
                            resetSignals.withUnsafeBufferPointer { signals in
                                var request = csandboxd_spawn_request(
                                    candidates: cCandidates, argv: cArgv, envp: cEnv, cwd: cCwd,
                                    cwd_fd: cwdDescriptor, terminal: cTerminal, stdin_fd: streams.childStdin,
                                    stdout_fd: streams.childStdout, stderr_fd: streams.childStderr,
                                    reset_signals: signals.baseAddress, reset_count: Int32(signals.count),
                                    descriptor_limit: descriptorLimit)
                                return csandboxd_spawn(&request, &pid, &executed)
                            }
                        }
                    }
                }
            }
        }
    }
    // ETXTBSY: the program is open for writing somewhere. Often only for an instant: a concurrent spawn's vfork child
    // holds a copy of every descriptor of the server until its exec, so a file just written (an upload, a test's
    // script) can be "busy" for a few microseconds after its writer closed it. A few short retries ride that out;
    // a program really held open for writing still fails (126, as a shell reports it).
    var result = attempt(&pid, &executed)
    for delay in [1, 2, 4, 8, 16] where result == ETXTBSY {
        usleep(UInt32(delay * 1000))
        result = attempt(&pid, &executed)
    }
    switch result {
    case 0:
        locator.found(program, at: candidates[Int(executed)])
        return pid
    case ENOENT, ENOTDIR: throw .notFound(program)
    case EACCES, ENOEXEC, EISDIR, EPERM, ETXTBSY: throw .notExecutable(program)
    case _ where SpawnError.resourceErrors.contains(result): throw .resourcesExhausted("spawn", result)
    default: throw .failed("spawn", result)
    }
}

/// The descriptor limit commands start with when it is not the server's own (a soft limit of 0: the server's).
/// `DescriptorBudget.raiseLimit` sets it once, before anything is spawned, to the limit sandboxd was given: programs
/// that use `select` or close every possible descriptor expect the usual 1024.
let commandDescriptorLimit = Mutex(rlimit())

/// The signals a command must not inherit a disposition for: every one the server ignores or handles when it first
/// spawns (the Swift runtime's crash handlers included), and those it may handle later. Exec resets handled signals
/// itself, but ignored ones would stay ignored, and a handler must not run in the child before exec.
private let resetSignals: [Int32] = {
    var signals: Set<Int32> = [SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD]
    var found = [Int32](repeating: 0, count: 128)
    let count = csandboxd_signals_not_default(&found, Int32(found.count))
    signals.formUnion(found.prefix(Int(max(0, count))))
    return signals.sorted()
}()

private func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}

/// Calls `body` with a NULL-terminated C array of the strings, valid only during the call.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { pointers.forEach { free($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
