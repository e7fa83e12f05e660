import Glibc

/// Why the core refused or failed an operation, as every front reports it: a stable code (spelled as the v1 API's
/// codes, which are gRPC's canonical codes and `CONFLICT`), and a message that names what the client named, never a
/// host path.
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

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
}

extension SandboxError {
    /// The one place where a command that could not be started becomes a core error; the codes are the Go daemon's
    /// for the same failures, and the v1 HTTP API answers the same codes and messages (`ProcessesAPI.startError`,
    /// which adds 429, or 503 with `Retry-After`, to tell the process limit from a lack of resources).
    public init(_ error: SpawnError) {
        switch error {
        case .notFound(let program): self.init(.notFound, "program '\(program)' not found")
        case .notExecutable(let program): self.init(.permissionDenied, "program '\(program)' is not executable")
        case .tooManyProcesses(let limit):
            self.init(
                .resourceExhausted,
                "too many processes: \(limit) are running (--max-processes); retry when one has ended")
        case .resourcesExhausted:
            self.init(.resourceExhausted, "cannot start the process now: \(error.message); retry later")
        case .failed(_, E2BIG): self.init(.invalidArgument, "the command and its environment are too long to start")
        case .failed: self.init(.internal, "cannot start the process: \(error.message)")
        }
    }
}
