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

/// The file descriptors a spawned child gets as 0, 1 and 2; each is closed in the parent by the caller.
struct ChildDescriptors {
    var stdin: Int32
    var stdout: Int32
    var stderr: Int32
}

/// Starts `argv` with `posix_spawnp` (the corresponding C function), as a new process group leader, in `cwd`, with
/// default signal dispositions and an empty signal mask whatever the server itself ignores or blocks.
///
/// `posix_spawn` reports exec failures synchronously, which gives the 126/127 distinction without a shell.
func spawnProcess(
    argv: [String], cwd: String, environment: [String], descriptors: ChildDescriptors, newSession: Bool = false
) throws(SpawnError) -> pid_t {
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
    if newSession {
        flags |= posixSpawnSetSID
    } else {
        flags |= POSIX_SPAWN_SETPGROUP
        posix_spawnattr_setpgroup(&attributes, 0)
    }
    posix_spawnattr_setflags(&attributes, Int16(flags))

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, descriptors.stdin, 0)
    posix_spawn_file_actions_adddup2(&actions, descriptors.stdout, 1)
    posix_spawn_file_actions_adddup2(&actions, descriptors.stderr, 2)
    _ = addChdirAction(&actions, cwd)
    // Descriptors the server inherited or opened without FD_CLOEXEC (its own stdin-less parent's, for example)
    // must not reach commands.
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

// glibc declares these only under _GNU_SOURCE, which Swift's Glibc module does not define.
/// `POSIX_SPAWN_SETSID` from glibc's `<spawn.h>`.
private let posixSpawnSetSID: Int32 = 0x80

/// `posix_spawn_file_actions_addchdir_np` (glibc 2.29+), looked up once: it makes the child change directory
/// between fork and exec, so the server never changes its own working directory.
private let addChdirAction:
    @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32 = {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addchdir_np") else {
            fatalError("glibc 2.29 or later is required (posix_spawn_file_actions_addchdir_np)")
        }
        return unsafeBitCast(
            symbol,
            to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32).self)
    }()

/// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34+): closes every descriptor from the given one up in the
/// child.
private let addCloseFromAction: @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32 = {
    guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else {
        fatalError("glibc 2.34 or later is required (posix_spawn_file_actions_addclosefrom_np)")
    }
    return unsafeBitCast(
        symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
}()
