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
    /// only adds its status, 429 or 503 for the two kinds of exhaustion).
    @Test(arguments: failures)
    func theV1APIAnswersTheSameCodeAndMessage(failure: SpawnError) {
        let core = SandboxError(failure)
        let answer = ProcessesAPI.startError(.spawn(failure))
        #expect(answer.body["code"] == .string(core.code.rawValue))
        #expect(answer.body["message"] == .string(core.message))
    }
}
