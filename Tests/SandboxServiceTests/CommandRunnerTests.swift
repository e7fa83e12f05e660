import Foundation
import Glibc
import Synchronization
import Testing

@testable import SandboxService

/// What one command produced, collected from its events.
private struct Run {
    var events: [CommandEvent]
    var pid: pid_t
    var elapsed: Duration

    var stdout: [UInt8] {
        events.flatMap { event -> [UInt8] in
            guard case .stdout(let bytes) = event else { return [] }
            return bytes
        }
    }
    var stderr: [UInt8] {
        events.flatMap { event -> [UInt8] in
            guard case .stderr(let bytes) = event else { return [] }
            return bytes
        }
    }
    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    var stderrText: String { String(decoding: stderr, as: UTF8.self) }

    /// The termination, if the last event is the one and only `.exit`.
    var termination: Termination? {
        let exits = events.compactMap { event -> Termination? in
            guard case .exit(let termination) = event else { return nil }
            return termination
        }
        guard exits.count == 1, case .exit(let termination)? = events.last else { return nil }
        return termination
    }
}

private let runner = CommandRunner()

private func spec(_ argv: [String], in directory: TemporaryDirectory, timeout: Double? = 20) -> CommandSpec {
    let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
    return CommandSpec(argv: argv, cwd: directory.path, environment: environment, timeout: timeout)
}

/// Starts `spec` and collects its events until `.exit`, which must come within `seconds`.
private func run(_ spec: CommandSpec, seconds: Double = 20) async throws -> Run {
    let (events, continuation) = AsyncStream.makeStream(of: CommandEvent.self)
    let started = ContinuousClock.now
    let command = try runner.start(spec) { event in
        continuation.yield(event)
        if case .exit = event { continuation.finish() }
    }
    let pid = command.pid
    do {
        let collected = try await withDeadline(seconds: seconds, "\(spec.argv) to exit") {
            var collected: [CommandEvent] = []
            for await event in events { collected.append(event) }
            return collected
        }
        return Run(events: collected, pid: pid, elapsed: .now - started)
    } catch {
        killGroup(pid)
        throw error
    }
}

/// The hexadecimal mask of a `/proc/<pid>/status` line such as `SigIgn:\t0000000000001000`.
private func statusMask(_ name: String, in status: String) -> UInt64? {
    let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
    return line.flatMap { UInt64($0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces), radix: 16) }
}

@Suite(.serialized, .timeLimit(.minutes(1))) struct CommandRunnerTests {
    @Test func echoWritesStdoutAndExitsZeroLast() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await run(spec(["echo", "hello world"], in: directory))
        #expect(result.stdoutText == "hello world\n")
        #expect(result.stderr.isEmpty)
        #expect(result.termination == Termination(exitCode: 0))
        #expect(result.pid > 0)
    }

    @Test func stderrIsSeparate() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await run(spec(["sh", "-c", "echo out; echo err >&2"], in: directory))
        #expect(result.stdoutText == "out\n")
        #expect(result.stderrText == "err\n")
        #expect(result.termination?.exitCode == 0)
    }

    @Test(arguments: [0, 1, 2, 3, 42, 126, 127, 255])
    func exitCodeIsReported(code: Int32) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await run(spec(["sh", "-c", "exit \(code)"], in: directory))
        #expect(result.termination == Termination(exitCode: code))
    }

    @Test func falseExitsOne() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        #expect(try await run(spec(["false"], in: directory)).termination?.exitCode == 1)
    }

    @Test func signalIs128PlusN() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let killed = try await run(spec(["sh", "-c", "kill -9 $$"], in: directory))
        #expect(killed.termination?.exitCode == 137)
        #expect(killed.termination?.signal == 9)
        #expect(killed.termination?.timedOut == false)
        let terminated = try await run(spec(["sh", "-c", "kill -TERM $$"], in: directory))
        #expect(terminated.termination?.exitCode == 143)
        #expect(terminated.termination?.signal == SIGTERM)
    }

    @Test func missingProgramIsNotFound() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        for program in ["sandboxd-no-such-program", "/nonexistent/dir/program", "./missing.sh"] {
            #expect(throws: SpawnError.notFound(program)) {
                _ = try runner.start(spec([program], in: directory)) { _ in }
            }
        }
        #expect(SpawnError.notFound("x").exitCode == 127)
        #expect(SpawnError.notFound("x").message.contains("x"))
    }

    @Test func nonExecutableFileIsNotExecutable() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("plain.txt", "echo hi\n", mode: 0o644)
        for program in [directory.file("plain.txt"), directory.path] {
            #expect(throws: SpawnError.notExecutable(program)) {
                _ = try runner.start(spec([program], in: directory)) { _ in }
            }
        }
        #expect(SpawnError.notExecutable("x").exitCode == 126)
    }

    @Test func relativeProgramIsFoundInTheCommandsDirectory() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("hello.sh", "#!/bin/sh\necho from script\n", mode: 0o755)
        let result = try await run(spec(["./hello.sh"], in: directory))
        #expect(result.stdoutText == "from script\n")
        #expect(result.termination?.exitCode == 0)
    }

    @Test func timeoutKillsTheWholeProcessGroup() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await run(spec(["sh", "-c", "sleep 300 & sleep 300"], in: directory, timeout: 0.5))
        #expect(result.termination?.timedOut == true)
        #expect(result.termination?.exitCode == 124)
        #expect(result.elapsed < .seconds(10))
        let gone = await poll(until: Deadline(seconds: 5)) { ProcessTable.groupIsGone(result.pid) }
        #expect(gone, "process group \(result.pid) still has \(ProcessTable.liveMembers(ofGroup: result.pid))")
        if !gone { killGroup(result.pid) }
    }

    @Test func noTimeoutMeansNoLimit() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await run(spec(["sh", "-c", "exit 0"], in: directory, timeout: nil))
        #expect(result.termination == Termination(exitCode: 0))
    }

    @Test func backgroundChildHoldingThePipesDoesNotHoldTheExit() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await run(spec(["sh", "-c", "sleep 5 & echo hi"], in: directory))
        defer { killGroup(result.pid) }
        #expect(result.stdoutText == "hi\n")
        #expect(result.termination?.exitCode == 0)
        // The contract allows a grace of 250 ms after the main process exits; well under the 5 s of the sleep.
        #expect(result.elapsed < .seconds(2))
    }

    @Test func backgroundChildrenInTheGroupDieWhenTheMainProcessExits() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await run(spec(["sh", "-c", "sleep 300 & echo $!"], in: directory))
        defer { killGroup(result.pid) }
        let child = try #require(pid_t(result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(result.termination?.exitCode == 0)
        let gone = await poll(until: Deadline(seconds: 1)) { ProcessTable.entry(child)?.isLive != true }
        #expect(gone, "the background sleep \(child) outlived its command")
    }

    @Test func orphansStayUnderTheMainProcessWhileItLives() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // The main process is a subreaper even after its execve: the orphan of a double fork into a new session is
        // re-parented to it, not to an ancestor of sandboxd's.
        var given = spec(["sh", "-c", "(setsid sleep 300 & echo $! > orphan.pid); read line"], in: directory)
        given.stdin = true
        let (events, continuation) = AsyncStream.makeStream(of: CommandEvent.self)
        let command = try runner.start(given) { event in
            if case .exit = event { continuation.finish() }
        }
        defer { killGroup(command.pid) }
        let orphanFile = directory.path + "/orphan.pid"
        _ = await poll(until: Deadline(seconds: 5)) {
            (try? String(contentsOfFile: orphanFile, encoding: .utf8)) != nil
        }
        let text = try String(contentsOfFile: orphanFile, encoding: .utf8)
        let orphan = try #require(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { kill(orphan, SIGKILL) }
        let adopted = await poll(until: Deadline(seconds: 5)) { ProcessTable.entry(orphan)?.parent == command.pid }
        #expect(adopted, "orphan \(orphan) has parent \(String(describing: ProcessTable.entry(orphan)?.parent))")
        try command.closeStdin()
        try await withDeadline(seconds: 10, "the command to exit") { for await _ in events {} }
    }

    @Test func drainAfterExitWaitsWhilePausedAndReadsOnePipeAtMost() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // `yes` leaves the group and keeps the pipe full after the shell exits; nothing kills it here (the embedded
        // runner does not sweep), so the drain's own bounds are what ends the command.
        final class Observed: Sendable {
            struct State {
                var command: RunningCommand?
                var bytes = 0
                var exited = false
            }
            let state = Mutex(State())
        }
        let observed = Observed()
        // The shell waits for its stdin to close, so `yes` has left the group (and is writing) before the shell
        // exits and its group is killed.
        var given = spec(["sh", "-c", "setsid yes & echo $! > yes.pid; read line"], in: directory, timeout: nil)
        given.stdin = true
        let command = try runner.start(given) { event in
            let pause = observed.state.withLock { state -> RunningCommand? in
                switch event {
                case .stdout(let bytes), .stderr(let bytes):
                    state.bytes += bytes.count
                    return state.bytes == bytes.count ? state.command : nil
                case .exit:
                    state.exited = true
                    return nil
                }
            }
            pause?.pauseOutput()
        }
        observed.state.withLock { $0.command = command }
        let writing = await poll(until: Deadline(seconds: 5)) { observed.state.withLock { $0.bytes > 0 } }
        #expect(writing, "yes wrote nothing")
        command.pauseOutput()
        try command.closeStdin()
        let pidFile = directory.path + "/yes.pid"
        _ = await poll(until: Deadline(seconds: 5)) { (try? String(contentsOfFile: pidFile, encoding: .utf8)) != nil }
        let writer = pid_t(
            (try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(
                in: .whitespacesAndNewlines) ?? "")
        defer { if let writer { kill(writer, SIGKILL) } }
        let mainGone = await poll(until: Deadline(seconds: 5)) { ProcessTable.entry(command.pid)?.isLive != true }
        #expect(mainGone)
        // Paused well past the drain grace: nothing is read and the exit waits for the reader.
        let before = observed.state.withLock { $0.bytes }
        let delivered = await poll(until: Deadline(seconds: 0.5)) {
            observed.state.withLock { $0.exited || $0.bytes != before }
        }
        #expect(!delivered, "output or the exit was delivered while the output was paused")
        command.resumeOutput()
        let exited = await poll(until: Deadline(seconds: 5)) { observed.state.withLock { $0.exited } }
        #expect(exited, "the exit did not follow the drain")
        let drained = observed.state.withLock { $0.bytes } - before
        // What the pipe held when the grace expired: at most its capacity (1 MiB is the most an unprivileged writer
        // can make it).
        #expect(drained <= 1 << 20, "\(drained) bytes read after the resume")
        if let writer {
            let writerGone = await poll(until: Deadline(seconds: 5)) { ProcessTable.entry(writer)?.isLive != true }
            #expect(writerGone, "yes keeps writing into a pipe nobody reads")
        }
    }

    @Test func outputWrittenJustBeforeExitByABackgroundChildIsDelivered() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await run(spec(["sh", "-c", "(echo from-child; sleep 5) & echo from-parent"], in: directory))
        defer { killGroup(result.pid) }
        #expect(result.stdoutText.contains("from-parent\n"))
        #expect(result.termination?.exitCode == 0)
        #expect(result.elapsed < .seconds(2))
    }

    @Test func childStartsWithNoIgnoredAndNoBlockedSignals() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // Make the parent ignore and block something, as a server would, so a leak would show.
        let previous = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previous) }
        var block = sigset_t()
        var saved = sigset_t()
        sigemptyset(&block)
        sigaddset(&block, SIGUSR2)
        pthread_sigmask(SIG_BLOCK, &block, &saved)
        let command: RunningCommand
        let (events, continuation) = AsyncStream.makeStream(of: CommandEvent.self)
        do {
            defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
            command = try runner.start(spec(["cat", "/proc/self/status"], in: directory)) { event in
                continuation.yield(event)
                if case .exit = event { continuation.finish() }
            }
        }
        let collected = try await withDeadline(seconds: 20, "cat to exit") {
            var collected: [CommandEvent] = []
            for await event in events { collected.append(event) }
            return collected
        }
        let result = Run(events: collected, pid: command.pid, elapsed: .zero)
        #expect(result.termination?.exitCode == 0)
        #expect(statusMask("SigIgn", in: result.stdoutText) == 0)
        #expect(statusMask("SigBlk", in: result.stdoutText) == 0)
    }

    @Test func childHasOnlyTheThreeStandardDescriptors() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // A descriptor the parent opened without O_CLOEXEC must not reach the command either.
        let inheritable = open("/dev/null", O_RDONLY)
        defer { close(inheritable) }
        #expect(inheritable > 2)
        let result = try await run(spec(["ls", "/proc/self/fd"], in: directory))
        // 3 is the directory `ls` itself opened to list.
        #expect(result.stdoutText.split(separator: "\n") == ["0", "1", "2", "3"])
    }

    @Test func stdinIsDevNull() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await run(spec(["sh", "-c", "cat; readlink /proc/self/fd/0"], in: directory), seconds: 10)
        #expect(result.stdoutText == "/dev/null\n")
    }

    @Test func workingDirectoryIsTheGivenDirectory() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await run(spec(["pwd", "-P"], in: directory))
        #expect(result.stdoutText == directory.path + "\n")
    }

    @Test func anOpenWorkingDirectoryIsEnteredWithoutLookingItUpAgain() async throws {
        // The directory the Files layer resolved is the one the command starts in, even when its name has been
        // swapped for a symlink to the outside since: the child changes to the descriptor, not to the path.
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try FileManager.default.createDirectory(
            atPath: directory.file("root/checked"), withIntermediateDirectories: true)
        let resolved = try FileTree(root: try SandboxRoot(path: directory.file("root"))).workingDirectory("checked")
        try FileManager.default.moveItem(atPath: directory.file("root/checked"), toPath: directory.file("root/moved"))
        try FileManager.default.createSymbolicLink(atPath: directory.file("root/checked"), withDestinationPath: "/")
        var given = spec(["pwd", "-P"], in: directory)
        given.cwd = resolved.path
        given.directory = resolved.descriptor
        let result = try await run(given)
        #expect(result.stdoutText == directory.file("root/moved") + "\n")
    }

    @Test func environmentIsExactlyTheGivenOne() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var given = spec(["env"], in: directory)
        given.environment = ["SANDBOXD_TEST=1", "PATH=/usr/bin:/bin"]
        let result = try await run(given)
        let lines = Set(result.stdoutText.split(separator: "\n").map(String.init))
        #expect(lines.isSuperset(of: ["SANDBOXD_TEST=1", "PATH=/usr/bin:/bin"]))
        // Nothing of the test process's own environment leaks in, and nothing is added.
        let extra = lines.subtracting(["SANDBOXD_TEST=1", "PATH=/usr/bin:/bin"])
        #expect(extra.isEmpty, "\(extra)")
    }

    @Test func commandIsItsOwnProcessGroupLeader() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // Field 5 of /proc/<pid>/stat is the process group (the name, `sh`, has no spaces).
        let result = try await run(spec(["sh", "-c", "echo $$ $(cut -d ' ' -f 5 /proc/$$/stat)"], in: directory))
        let fields = result.stdoutText.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(fields.count == 2)
        #expect(fields.first == String(result.pid))
        #expect(fields.last == String(result.pid))
    }

    @Test func largeOutputIsDeliveredBeforeExit() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await run(spec(["head", "-c", "5000000", "/dev/zero"], in: directory))
        #expect(result.stdout.count == 5_000_000)
        #expect(result.stdout.allSatisfy { $0 == 0 })
        #expect(result.termination?.exitCode == 0)
    }

    @Test func largeOutputOnBothPipesIsDeliveredBeforeExit() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try await run(
            spec(["sh", "-c", "head -c 3000000 /dev/zero; head -c 2000000 /dev/zero >&2; echo end"], in: directory))
        #expect(result.stdout.count == 3_000_004)
        #expect(result.stderr.count == 2_000_000)
        #expect(result.termination?.exitCode == 0)
    }

    @Test func cancelKillsTheGroup() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (events, continuation) = AsyncStream.makeStream(of: CommandEvent.self)
        let command = try runner.start(spec(["sh", "-c", "sleep 300 & echo started; wait"], in: directory)) {
            event in
            continuation.yield(event)
            if case .exit = event { continuation.finish() }
        }
        let collected = try await withDeadline(seconds: 20, "cancelled command to exit") {
            var collected: [CommandEvent] = []
            for await event in events {
                collected.append(event)
                if case .stdout = event { command.cancel() }
            }
            return collected
        }
        let result = Run(events: collected, pid: command.pid, elapsed: .zero)
        #expect(result.termination?.exitCode == 137)
        let gone = await poll(until: Deadline(seconds: 5)) { ProcessTable.groupIsGone(result.pid) }
        #expect(gone)
        if !gone { killGroup(result.pid) }
    }

    @Test func manyConcurrentCommandsEachGetTheirOwnOutput() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try await withThrowingTaskGroup(of: (Int, Run).self) { group in
            for index in 0..<20 {
                group.addTask {
                    (index, try await run(spec(["sh", "-c", "echo \(index); exit \(index)"], in: directory)))
                }
            }
            for try await (index, result) in group {
                #expect(result.stdoutText == "\(index)\n")
                #expect(result.termination?.exitCode == Int32(index))
            }
        }
    }
}
