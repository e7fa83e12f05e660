import Glibc

/// Why the core refused or failed an operation, as every front reports it: a stable code (spelled as the v1 API's
/// codes, which are gRPC's canonical codes and `CONFLICT`), a message that names what the client named (never a host
/// path), the path the error is about as the client named it, and the failure of the layer below it came from.
public struct SandboxError: Error, Equatable, Sendable {
    public enum Code: String, CaseIterable, Sendable {
        case invalidArgument = "INVALID_ARGUMENT"
        case notFound = "NOT_FOUND"
        case permissionDenied = "PERMISSION_DENIED"
        /// The resource is in a state that does not allow the action (a process that has exited, a directory that
        /// is not empty).
        case conflict = "CONFLICT"
        case failedPrecondition = "FAILED_PRECONDITION"
        case outOfRange = "OUT_OF_RANGE"
        case resourceExhausted = "RESOURCE_EXHAUSTED"
        case unavailable = "UNAVAILABLE"
        case `internal` = "INTERNAL"
    }

    /// The failure of the layer below, for a front that answers apart what one code covers (a process limit and a
    /// lack of descriptors are both `resourceExhausted`), or that words its answers as another server did.
    public enum Cause: Equatable, Sendable {
        case file(FileError.Code)
        case spawn(SpawnError)
        case process(ManagedProcess.ControlError)
        /// `--max-watches` directory watches are open, a recursive watch's tree has more than
        /// `--max-watch-directories` directories, or the kernel has no inotify instance or watch left.
        case watchLimit
    }

    public var code: Code
    public var message: String
    /// The path the error is about, as the client named it (a file, a working directory).
    public var path: String?
    public var cause: Cause?

    public init(_ code: Code, _ message: String, path: String? = nil, cause: Cause? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.cause = cause
    }
}

extension SandboxError {
    /// The one place where file errors become core errors; the message names the request path.
    public init(_ error: FileError) {
        let code: Code =
            switch error.code {
            case .escapesRoot, .permissionDenied: .permissionDenied
            case .tooManyLinks, .invalidPath, .nameTooLong, .isADirectory, .notADirectory, .unsupportedType:
                .invalidArgument
            case .notFound: .notFound
            case .notEmpty, .isRoot: .conflict
            case .noSpace: .resourceExhausted
            case .other: .internal
            }
        self.init(code, error.message, path: error.path, cause: .file(error.code))
    }

    /// The one place where a command that could not be started becomes a core error; the codes are the Go daemon's
    /// for the same failures.
    public init(_ error: SpawnError) {
        let (code, message): (Code, String) =
            switch error {
            case .notFound(let program): (.notFound, "program '\(program)' not found")
            case .notExecutable(let program): (.permissionDenied, "program '\(program)' is not executable")
            case .tooManyProcesses(let limit):
                (
                    .resourceExhausted,
                    "too many processes: \(limit) are running (--max-processes); retry when one has ended"
                )
            case .resourcesExhausted:
                (.resourceExhausted, "cannot start the process now: \(error.message); retry later")
            case .failed(_, E2BIG): (.invalidArgument, "the command and its environment are too long to start")
            case .failed: (.internal, "cannot start the process: \(error.message)")
            }
        self.init(code, message, cause: .spawn(error))
    }

    /// A background process that could not be started; nothing was registered then.
    init(_ error: ProcessTable.StartError) {
        switch error {
        case .closed: self = .shuttingDown
        case .spawn(let failure): self.init(failure)
        }
    }

    /// The one place where a process's refusal of a control action becomes a core error.
    public init(_ error: ManagedProcess.ControlError, process id: String) {
        let (code, message): (Code, String) =
            switch error {
            case .exited: (.conflict, "process '\(id)' has exited")
            case .stdinClosed:
                (.conflict, "process '\(id)' takes no input: it was started without stdin, or its stdin was closed")
            case .noTerminal: (.conflict, "process '\(id)' has no pty")
            case .stdinFull:
                (.resourceExhausted, "process '\(id)' is not reading its stdin: too many bytes are waiting")
            }
        self.init(code, message, cause: .process(error))
    }

    /// A command's refusal of stdin, as the same refusal of a background process.
    public init(_ error: RunningCommand.StdinError, process id: String) {
        switch error {
        case .notOpen: self.init(ManagedProcess.ControlError.stdinClosed, process: id)
        case .full: self.init(ManagedProcess.ControlError.stdinFull, process: id)
        }
    }

    static let shuttingDown = SandboxError(.unavailable, "sandboxd is shutting down")
}
