import Dispatch
import Foundation
import Glibc
import Synchronization
import Testing

@testable import SandboxService

/// The `sandboxd` executable built with the tests: next to the test bundle, or in the package's `.build/debug`.
private let sandboxdPath: String? = {
    var candidates: [String] = []
    if let bundle = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        candidates.append((bundle as NSString).deletingLastPathComponent + "/sandboxd")
    }
    let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    candidates.append(package.path + "/.build/debug/sandboxd")
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}()

/// Everything a process wrote, and how it ended, collected from `CommandRunner` events; a test waits on it with a
/// deadline. The test process's own children are spawned through `CommandRunner` (not `Foundation.Process`) because
/// its reaper thread waits for every child of the process.
private final class ProcessOutput: Sendable {
    struct Snapshot: Sendable {
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var termination: Termination?

        var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    }

    private let state = Mutex(Snapshot())
    /// Signalled after every event; only the test's thread waits on it.
    private let changed = DispatchSemaphore(value: 0)

    func receive(_ event: CommandEvent) {
        state.withLock { snapshot in
            switch event {
            case .stdout(let bytes): snapshot.stdout += bytes
            case .stderr(let bytes): snapshot.stderr += bytes
            case .exit(let termination): snapshot.termination = termination
            }
        }
        changed.signal()
    }

    var snapshot: Snapshot { state.withLock { $0 } }

    /// Waits until `probe` finds what it looks for in the output, or the deadline passes, or the process exited
    /// without it (nothing more can come then).
    func wait<T: Sendable>(_ what: String, seconds: Double, _ probe: (Snapshot) -> T?) throws -> T {
        let deadline = Deadline(seconds: seconds)
        while true {
            let current = snapshot
            if let found = probe(current) { return found }
            if let termination = current.termination {
                throw TestFailure("exited (\(termination)) before \(what); stderr:\n\(current.stderrText)")
            }
            if changed.wait(timeout: deadline.dispatchTime) == .timedOut {
                if let found = probe(snapshot) { return found }
                throw TestFailure("timed out after \(seconds) s waiting for \(what); stderr:\n\(snapshot.stderrText)")
            }
        }
    }
}

/// Starts every `sandboxd` of this suite; one runner, so one I/O thread, for all of them.
private let runner = CommandRunner()

/// A running `sandboxd`.
private struct Sandboxd {
    let command: RunningCommand
    let output: ProcessOutput
    var pid: pid_t { command.pid }

    /// Starts the binary in `directory` with the test's environment minus every `SANDBOX_` variable, plus
    /// `environment`. A time limit backs up the test's own deadlines, so no run outlives the suite.
    static func launch(
        _ arguments: [String], environment: [String: String] = [:], in directory: TemporaryDirectory
    ) throws -> Sandboxd {
        let path = try #require(sandboxdPath)
        var variables = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SANDBOX_") }
        variables.merge(environment) { $1 }
        let output = ProcessOutput()
        let spec = CommandSpec(
            argv: [path] + arguments, cwd: directory.path, environment: variables.map { "\($0.key)=\($0.value)" },
            timeout: 50)
        let command = try runner.start(spec) { output.receive($0) }
        return Sandboxd(command: command, output: output)
    }

    /// The port from the `listening on <host>:<port>` line of the log.
    func waitForPort(host: String = "127.0.0.1", seconds: Double = 20) throws -> UInt16 {
        let marker = "listening on \(host):"
        return try output.wait("'\(marker)'", seconds: seconds) { snapshot in
            let text = snapshot.stderrText
            guard let range = text.range(of: marker) else { return nil }
            let digits = text[range.upperBound...].prefix { $0.isNumber }
            // Only a complete number: the rest of the line has arrived once something follows the digits.
            guard text[range.upperBound...].count > digits.count else { return nil }
            return UInt16(digits)
        }
    }

    func waitForExit(seconds: Double = 10) throws -> Termination {
        try output.wait("exit", seconds: seconds) { $0.termination }
    }

    func signal(_ signal: Int32) {
        Glibc.kill(pid, signal)
    }

    /// Last resort when a test failed half-way.
    func kill() {
        if output.snapshot.termination == nil { command.cancel() }
    }
}

@Suite(
    .serialized, .timeLimit(.minutes(1)),
    .enabled(if: sandboxdPath != nil, "the sandboxd executable is not built; run `swift build` first"))
struct BinaryTests {
    private func rootArguments(_ directory: TemporaryDirectory) -> [String] {
        ["--port", "0", "--host", "127.0.0.1", "--root", directory.file("root")]
    }

    @Test func startsLogsWhereItListensAndServes() throws {
        let directory = try TemporaryDirectory("sandboxd-binary")
        defer { directory.remove() }
        let sandboxd = try Sandboxd.launch(rootArguments(directory), in: directory)
        defer { sandboxd.kill() }
        let port = try sandboxd.waitForPort()
        #expect(port != 0)
        let line = sandboxd.output.snapshot.stderrText.split(separator: "\n").first { $0.contains("listening on") }
        #expect(line?.contains(SandboxServer.version) == true)
        #expect(line?.contains("root=\(directory.file("root"))") == true)

        let response = try TestHTTP.get(port: port, "/")
        #expect(response.status == 200)
        #expect(response.text == #"{"status":"ok","message":"Sandbox Runtime is active."}"#)
        // One log line per request, with method, path and status.
        _ = try sandboxd.output.wait("the request's log line", seconds: 10) { snapshot in
            snapshot.stderrText.contains("GET / 200") ? true : nil
        }

        sandboxd.signal(SIGTERM)
        let termination = try sandboxd.waitForExit()
        #expect(termination.exitCode == 0)
        #expect(termination.signal == nil)
    }

    @Test func versionFlagPrintsTheVersion() throws {
        let directory = try TemporaryDirectory("sandboxd-binary")
        defer { directory.remove() }
        let sandboxd = try Sandboxd.launch(["--version"], in: directory)
        defer { sandboxd.kill() }
        #expect(try sandboxd.waitForExit().exitCode == 0)
        #expect(
            sandboxd.output.snapshot.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == SandboxServer.version
        )
    }

    @Test func invalidTimeoutFromTheEnvironmentWarnsAndStarts() throws {
        let directory = try TemporaryDirectory("sandboxd-binary")
        defer { directory.remove() }
        let sandboxd = try Sandboxd.launch(
            rootArguments(directory), environment: ["SANDBOX_EXEC_TIMEOUT_SECONDS": "abc"], in: directory)
        defer { sandboxd.kill() }
        let port = try sandboxd.waitForPort()
        let log = sandboxd.output.snapshot.stderrText
        #expect(log.contains("SANDBOX_EXEC_TIMEOUT_SECONDS=abc"), "\(log)")
        #expect(log.lowercased().contains("warning"), "\(log)")
        #expect(try TestHTTP.get(port: port, "/").status == 200)
        sandboxd.signal(SIGTERM)
        #expect(try sandboxd.waitForExit().exitCode == 0)
    }

    @Test func flagsWinOverTheEnvironment() throws {
        let directory = try TemporaryDirectory("sandboxd-binary")
        defer { directory.remove() }
        // Port 1 can be bound as root and 192.0.2.1 (TEST-NET-1) cannot be bound at all: if either were used,
        // the log would show it or sandboxd would not start.
        let sandboxd = try Sandboxd.launch(
            rootArguments(directory),
            environment: [
                "SANDBOX_PORT": "1", "SANDBOX_HOST": "192.0.2.1", "SANDBOX_BASE_DIR": directory.file("env-root"),
                "SANDBOX_EXEC_TIMEOUT_SECONDS": "0.2",
            ],
            in: directory)
        defer { sandboxd.kill() }
        let port = try sandboxd.waitForPort()
        #expect(port != 1)
        #expect(FileManager.default.fileExists(atPath: directory.file("root")))
        #expect(!FileManager.default.fileExists(atPath: directory.file("env-root")))
        sandboxd.signal(SIGTERM)
        #expect(try sandboxd.waitForExit().exitCode == 0)
    }

    @Test func environmentIsUsedWithoutFlags() throws {
        let directory = try TemporaryDirectory("sandboxd-binary")
        defer { directory.remove() }
        let sandboxd = try Sandboxd.launch(
            [],
            environment: [
                "SANDBOX_PORT": "0", "SANDBOX_HOST": "127.0.0.1", "SANDBOX_BASE_DIR": directory.file("env-root"),
                "SANDBOX_EXEC_TIMEOUT_SECONDS": "0.5",
            ],
            in: directory)
        defer { sandboxd.kill() }
        let port = try sandboxd.waitForPort()
        #expect(FileManager.default.fileExists(atPath: directory.file("env-root")))
        let response = try TestHTTP.post(port: port, "/execute", json: #"{"command": "sleep 300"}"#)
        #expect(response.json?["exit_code"] == .number(124))
        #expect(response.json?["stderr"] == "Command timed out after 0.5 seconds")
        sandboxd.signal(SIGTERM)
        #expect(try sandboxd.waitForExit().exitCode == 0)
    }

    @Test func sigintStopsItCleanly() throws {
        let directory = try TemporaryDirectory("sandboxd-binary")
        defer { directory.remove() }
        let sandboxd = try Sandboxd.launch(rootArguments(directory), in: directory)
        defer { sandboxd.kill() }
        let port = try sandboxd.waitForPort()
        #expect(try TestHTTP.get(port: port, "/").status == 200)
        sandboxd.signal(SIGINT)
        let termination = try sandboxd.waitForExit()
        #expect(termination.exitCode == 0)
        #expect(termination.signal == nil)
    }

    @Test func noChildIsLeftBehindAfterSIGTERM() async throws {
        let directory = try TemporaryDirectory("sandboxd-binary")
        defer { directory.remove() }
        // A short grace: the stream's command never ends by itself, so shutdown has to end it.
        let sandboxd = try Sandboxd.launch(rootArguments(directory) + ["--shutdown-timeout", "1"], in: directory)
        defer { sandboxd.kill() }
        let port = try sandboxd.waitForPort()

        let stream = try TestHTTPConnection(port: port)
        defer { stream.close() }
        stream.send(
            "POST", "/execute/stream", headers: [("Content-Type", "application/json")],
            body: Array(#"{"command": "sh -c 'echo $$; sleep 300 & wait'"}"#.utf8))
        #expect(try stream.readHead(deadline: Deadline(seconds: 10)).status == 200)
        let group = try #require(try stream.readEvent(deadline: Deadline(seconds: 10)).flatMap { pid_t($0.data) })
        defer { killGroup(group) }
        #expect(ProcessTable.entry(group)?.parent == sandboxd.pid)

        sandboxd.signal(SIGTERM)
        // The request's shutdown timeout, then SIGTERM and at most 2 s more before SIGKILL, then the answers leave.
        #expect(try sandboxd.waitForExit(seconds: 15).exitCode == 0)
        let events = try stream.readAllEvents(deadline: Deadline(seconds: 5))
        #expect(events.last?.event == "done", "\(events)")
        let gone = await poll(until: Deadline(seconds: 5)) { ProcessTable.groupIsGone(group) }
        #expect(gone, "command group \(group) outlived sandboxd: \(ProcessTable.liveMembers(ofGroup: group))")
    }

    @Test func invalidFlagsAreRejected() throws {
        let directory = try TemporaryDirectory("sandboxd-binary")
        defer { directory.remove() }
        for arguments in [["--max-timeout", "0"], ["--port", "http"], ["--no-such-flag"]] {
            let sandboxd = try Sandboxd.launch(arguments, in: directory)
            defer { sandboxd.kill() }
            let termination = try sandboxd.waitForExit()
            #expect(termination.exitCode != 0, "\(arguments)")
            #expect(!sandboxd.output.snapshot.stderrText.isEmpty, "\(arguments)")
        }
    }

    @Test func unusableRootFailsToStart() throws {
        let directory = try TemporaryDirectory("sandboxd-binary")
        defer { directory.remove() }
        try directory.write("file", "not a directory")
        let sandboxd = try Sandboxd.launch(
            ["--port", "0", "--host", "127.0.0.1", "--root", directory.file("file/root")], in: directory)
        defer { sandboxd.kill() }
        #expect(try sandboxd.waitForExit().exitCode == 1)
        #expect(sandboxd.output.snapshot.stderrText.contains("cannot"))
    }
}
