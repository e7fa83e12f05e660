import Foundation
import Glibc
import Synchronization
import Testing

@testable import SandboxService

@Suite(.serialized, .timeLimit(.minutes(1))) struct ProcessTreeTests {
    /// A shell with two background children, each with a child of its own; their pids as the shell printed them.
    private func startTree(in directory: TemporaryDirectory) async throws -> (RunningCommand, [pid_t]) {
        let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        var spec = CommandSpec(
            argv: ["sh", "-c", "sh -c 'sleep 300 & wait' & echo $!; sh -c 'sleep 300 & wait' & echo $!; read line"],
            cwd: directory.path, environment: environment, timeout: 20)
        spec.stdin = true
        final class Printed: Sendable { let bytes = Mutex<[UInt8]>([]) }
        let printed = Printed()
        let command = try CommandRunner().start(spec) { event in
            if case .stdout(let bytes) = event { printed.bytes.withLock { $0 += bytes } }
        }
        let lines = { String(decoding: printed.bytes.withLock { $0 }, as: UTF8.self).split(separator: "\n") }
        _ = await poll(until: Deadline(seconds: 5)) { lines().count == 2 }
        let shells = lines().compactMap { pid_t($0) }
        try #require(shells.count == 2)
        // Each inner shell has started its sleep.
        _ = await poll(until: Deadline(seconds: 5)) {
            shells.allSatisfy { shell in ProcessTable.all().contains { $0.parent == shell && $0.isLive } }
        }
        return (command, shells)
    }

    @Test func straysAreTheChildrenNotKeptAndAllTheirDescendants() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (command, shells) = try await startTree(in: directory)
        defer { killGroup(command.pid) }
        let grandchildren = shells.map { shell in ProcessTable.all().filter { $0.parent == shell }.map(\.pid) }
        let all = ProcessTree.strays(of: command.pid, keeping: [])
        #expect(Set(all.map(\.root)) == Set(shells))
        for tree in all {
            #expect(Set(tree.descendants) == Set(grandchildren[shells.firstIndex(of: tree.root)!]))
        }
        let kept = ProcessTree.strays(of: command.pid, keeping: [shells[0]])
        #expect(kept == [ProcessTree.Stray(root: shells[1], descendants: grandchildren[1])])
        #expect(ProcessTree.strays(of: command.pid, keeping: Set(shells)).isEmpty)
    }

    @Test func zombiesAreNotStrays() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (command, shells) = try await startTree(in: directory)
        defer { killGroup(command.pid) }
        // The command's shell is blocked in `read`, so the killed child stays a zombie until the shell exits.
        kill(shells[0], SIGKILL)
        _ = await poll(until: Deadline(seconds: 5)) { ProcessTable.entry(shells[0])?.state == "Z" }
        #expect(!ProcessTree.strays(of: command.pid, keeping: []).map(\.root).contains(shells[0]))
    }
}
