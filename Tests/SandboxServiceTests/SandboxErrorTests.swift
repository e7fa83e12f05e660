import Glibc
import Testing

@testable import SandboxService

@Suite struct SandboxErrorTests {
    static let failures: [SpawnError] = [
        .notFound("nope"), .notExecutable("/etc/passwd"), .tooManyProcesses(2), .resourcesExhausted("pipe", EMFILE),
        .resourcesExhausted("spawn", EAGAIN), .failed("spawn", E2BIG), .failed("spawn", EIO),
    ]

    @Test func spawnFailuresMapToTheGoDaemonsCodes() {
        let codes = Self.failures.map { SandboxError($0).code }
        #expect(
            codes == [
                .notFound, .permissionDenied, .resourceExhausted, .resourceExhausted, .resourceExhausted,
                .invalidArgument, .internal,
            ])
        #expect(SandboxError(.tooManyProcesses(2)).message.contains("2 are running (--max-processes)"))
        #expect(SandboxError(.resourcesExhausted("pipe", EMFILE)).message.contains("(EMFILE)"))
    }

    /// The gRPC front reports what the v1 HTTP API answers for the same failure: the same code and message (HTTP
    /// only adds its status, 429 or 503 with `Retry-After` for the two kinds of exhaustion).
    @Test(arguments: failures)
    func theV1APIAnswersTheSameCodeAndMessage(failure: SpawnError) {
        let core = SandboxError(failure)
        let answer = V1Error.answer(core)
        #expect(answer.body["code"] == .string(core.code.rawValue))
        #expect(answer.body["message"] == .string(core.message))
        let retryAfter = answer.headers.first { $0.0 == "Retry-After" }?.1
        switch failure {
        case .tooManyProcesses: #expect(answer.status == 429 && retryAfter == nil)
        case .resourcesExhausted: #expect(answer.status == 503 && retryAfter == "1")
        default: #expect(answer.status == V1Error.status(of: core.code) && retryAfter == nil)
        }
    }

    @Test func controlRefusalsAreConflictsButAFullStdin() {
        let codes = [ManagedProcess.ControlError.exited, .stdinClosed, .noTerminal, .stdinFull].map {
            SandboxError($0, process: "k3x9").code
        }
        #expect(codes == [.conflict, .conflict, .conflict, .resourceExhausted])
        #expect(SandboxError(.exited, process: "k3x9").message == "process 'k3x9' has exited")
        #expect(SandboxError(RunningCommand.StdinError.full, process: "3") == SandboxError(.stdinFull, process: "3"))
        #expect(V1Error.answer(SandboxError(.stdinFull, process: "k3x9")).status == 429)
        #expect(V1Error.answer(SandboxError(.noTerminal, process: "k3x9")).status == 409)
    }
}
