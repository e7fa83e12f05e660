import Foundation
import Glibc
import Testing

@testable import SandboxService

@Suite struct ProgramLocatorTests {
    /// Two directories, `first` and `second`, searched in that order, with `prog` (printing `second`) in the second.
    private struct Path {
        let first: TemporaryDirectory
        let second: TemporaryDirectory
        let locator: ProgramLocator

        init() throws {
            first = try TemporaryDirectory()
            second = try TemporaryDirectory()
            try second.write("prog", "#!/bin/sh\necho second\n", mode: 0o755)
            locator = ProgramLocator(path: "\(first.path):\(second.path)")
        }

        func remove() {
            first.remove()
            second.remove()
        }

        /// Spawns `prog` with this PATH and returns what it printed.
        func run() throws -> String {
            let streams = try ChildStreams(stdinPipe: false, terminal: nil)
            let pid: pid_t
            do {
                pid = try spawnProcess(argv: ["prog"], cwd: "/", environment: [], streams: streams, locator: locator)
            } catch {
                streams.closeAll()
                throw error
            }
            // Each descriptor is closed exactly once: a second close could hit a concurrent test's descriptor.
            streams.closeChildEnds()
            defer {
                close(streams.stdout)
                close(streams.stderr)
            }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            _ = fcntl(streams.stdout, F_SETFL, 0)
            var output: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 256)
            while true {
                let count = read(streams.stdout, &buffer, buffer.count)
                if count <= 0 { break }
                output += buffer[..<count]
            }
            return String(decoding: output, as: UTF8.self)
        }
    }

    @Test func aProgramFoundIsTriedFirstNextTime() throws {
        let path = try Path()
        defer { path.remove() }
        #expect(path.locator.candidates(for: "prog") == [path.first.file("prog"), path.second.file("prog")])
        #expect(try path.run() == "second\n")
        #expect(path.locator.candidates(for: "prog").first == path.second.file("prog"))
        #expect(try path.run() == "second\n")
    }

    @Test func aProgramInstalledEarlierInThePathIsFoundAtOnce() throws {
        let path = try Path()
        defer { path.remove() }
        #expect(try path.run() == "second\n")
        try path.first.write("prog", "#!/bin/sh\necho first\n", mode: 0o755)
        #expect(try path.run() == "first\n")
        #expect(path.locator.candidates(for: "prog").first == path.first.file("prog"))
    }

    @Test func aRemovedProgramIsNotFound() throws {
        let path = try Path()
        defer { path.remove() }
        #expect(try path.run() == "second\n")
        unlink(path.second.file("prog"))
        #expect(throws: SpawnError.notFound("prog")) { try path.run() }
    }

    @Test func nothingIsRememberedBehindARelativeOrMissingDirectory() throws {
        let second = try TemporaryDirectory()
        defer { second.remove() }
        try second.write("prog", "#!/bin/sh\necho second\n", mode: 0o755)
        for path in ["bin:\(second.path)", "/nonexistent-sandboxd-dir:\(second.path)"] {
            let locator = ProgramLocator(path: path)
            locator.found("prog", at: second.file("prog"))
            #expect(locator.candidates(for: "prog").count == 2, "\(path)")
        }
    }

    @Test func aNameWithASlashIsNotSearched() {
        let locator = ProgramLocator(path: "/usr/bin:/bin")
        #expect(locator.candidates(for: "./run") == ["./run"])
        #expect(locator.candidates(for: "/bin/sh") == ["/bin/sh"])
    }
}
