import Glibc

/// Why a command could not be started. The HTTP layer turns these into shell-style exit codes.
public enum SpawnError: Error, Equatable, Sendable {
    /// The program does not exist (exit code 127 by shell convention).
    case notFound(String)
    /// The program exists but cannot be executed (exit code 126).
    case notExecutable(String)
    /// Any other failure of `posix_spawn` or of creating pipes.
    case failed(String, Int32)

    /// The exit code a shell would report for this failure.
    public var exitCode: Int32 {
        switch self {
        case .notFound: 127
        case .notExecutable: 126
        case .failed: 1
        }
    }

    /// A message for the command's stderr.
    public var message: String {
        switch self {
        case .notFound(let name): "\(name): command not found"
        case .notExecutable(let name): "\(name): Permission denied"
        case .failed(let what, let code): "\(what): \(String(cString: strerror(code)))"
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
                stdin = dup(pty.master)
                guard stdin >= 0 else { throw SpawnError.failed("dup", errno) }
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

    /// `pipe` with FD_CLOEXEC on both ends and O_NONBLOCK on the server's end. Called under the spawn lock, so no
    /// other spawn can inherit the pipe before FD_CLOEXEC is set.
    private func makePipe(nonBlocking end: End) throws(SpawnError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw .failed("pipe", errno) }
        setCloseOnExec(fds[0])
        setCloseOnExec(fds[1])
        let serverEnd = end == .read ? fds[0] : fds[1]
        _ = fcntl(serverEnd, F_SETFL, fcntl(serverEnd, F_GETFL) | O_NONBLOCK)
        return (fds[0], fds[1])
    }
}

func setCloseOnExec(_ fd: Int32) {
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
}

/// Starts `argv` with `posix_spawnp` (the corresponding C function), in `cwd`, with default signal dispositions and
/// an empty signal mask whatever the server itself ignores or blocks, and no descriptor but 0, 1 and 2. It leads a
/// new process group, or with a terminal a new session whose controlling terminal that is.
///
/// `posix_spawn` reports exec failures synchronously, which gives the 126/127 distinction without a shell.
func spawnProcess(argv: [String], cwd: String, environment: [String], streams: ChildStreams) throws(SpawnError)
    -> pid_t
{
    guard let program = argv.first else { throw .notFound("") }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    // Every signal 1...64 back to its default, set bit by bit: sigfillset leaves out glibc's internal signals
    // (32, 33), which a parent may have ignored and which would then stay ignored in the command.
    var allSignals = sigset_t()
    withUnsafeMutableBytes(of: &allSignals) { bits in
        for index in 0..<min(8, bits.count) { bits[index] = 0xFF }
    }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    posix_spawnattr_setsigdefault(&attributes, &allSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    var flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK
    if streams.terminalPath != nil {
        // setsid runs before the file actions, so opening the terminal makes it the controlling terminal.
        flags |= posixSpawnSetSID
    } else {
        flags |= POSIX_SPAWN_SETPGROUP
        posix_spawnattr_setpgroup(&attributes, 0)
    }
    posix_spawnattr_setflags(&attributes, Int16(flags))

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    if let terminal = streams.terminalPath {
        posix_spawn_file_actions_addopen(&actions, 0, terminal, O_RDWR, 0)
        posix_spawn_file_actions_adddup2(&actions, 0, 1)
        posix_spawn_file_actions_adddup2(&actions, 0, 2)
    } else {
        posix_spawn_file_actions_adddup2(&actions, streams.childStdin, 0)
        posix_spawn_file_actions_adddup2(&actions, streams.childStdout, 1)
        posix_spawn_file_actions_adddup2(&actions, streams.childStderr, 2)
    }
    _ = addChdirAction(&actions, cwd)
    // Descriptors the server inherited or opened without FD_CLOEXEC (from whoever started it) must not reach
    // commands.
    _ = addCloseFromAction(&actions, 3)

    var pid: pid_t = 0
    let result = withCStrings(argv) { cArgv in
        withCStrings(environment) { cEnv in
            posix_spawnp(&pid, program, &actions, &attributes, cArgv, cEnv)
        }
    }
    switch result {
    case 0: return pid
    case ENOENT, ENOTDIR: throw .notFound(program)
    case EACCES, ENOEXEC, EISDIR, EPERM: throw .notExecutable(program)
    default: throw .failed("posix_spawn", result)
    }
}

/// Calls `body` with a NULL-terminated C array of the strings, valid only during the call.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}
