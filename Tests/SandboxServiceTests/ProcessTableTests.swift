import Dispatch
import Foundation
import Glibc
import Synchronization
import Testing

@testable import SandboxService

/// What a subscriber received: output ids and texts, the missed range, the exit.
private final class Received: Sendable {
    struct Log {
        var ids: [UInt64] = []
        var texts: [String] = []
        var missed: ClosedRange<UInt64>?
        var exit: (id: UInt64, termination: Termination)?
        var replayed = 0
    }

    let log = Mutex(Log())
    /// End the subscription after this many outputs.
    let stopAfter: Int

    init(stopAfter: Int = .max) { self.stopAfter = stopAfter }

    func deliver(_ event: ManagedProcess.Event, isReplay: Bool) -> Bool {
        log.withLock { log in
            if isReplay { log.replayed += 1 }
            switch event {
            case .missed(let range): log.missed = range
            case .output(let output):
                log.ids.append(output.id)
                log.texts.append(output.text)
            case .exit(let id, let termination):
                log.exit = (id, termination)
                log.ids.append(id)
            }
            return log.texts.count < stopAfter
        }
    }

    var ids: [UInt64] { log.withLock { $0.ids } }
    var texts: [String] { log.withLock { $0.texts } }
}

/// The test target has a `ProcessTable` of its own (a /proc reader); this is the server's.
private typealias Registry = SandboxService.ProcessTable

/// A process fed by hand instead of by a command.
private func makeProcess(outputLimit: Int = 1 << 20, finished: @escaping @Sendable (ManagedProcess) -> Void = { _ in })
    -> ManagedProcess
{
    var spec = CommandSpec(argv: ["fake"], cwd: "/", environment: [], timeout: nil)
    spec.stdin = true
    return ManagedProcess(id: "test", serial: 1, spec: spec, outputLimit: outputLimit, onFinish: finished)
}

private func out(_ text: String) -> CommandEvent { .stdout(Array(text.utf8)) }

/// A clock the test moves by hand.
private final class ManualClock: Sendable {
    private let now = Mutex(ContinuousClock.now)
    func read() -> ContinuousClock.Instant { now.withLock { $0 } }
    func advance(_ duration: Duration) { now.withLock { $0 += duration } }
}

@Suite(.timeLimit(.minutes(1))) struct ProcessTableTests {
    @Test func aSubscriberGetsTheReplayThenLiveEventsThenTheExit() throws {
        let process = makeProcess()
        process.receive(out("a"))
        process.receive(out("b"))
        let received = Received()
        let token = try process.subscribe(after: nil, received.deliver)
        #expect(token != nil)
        process.receive(.stderr(Array("c".utf8)))
        process.receive(.exit(Termination(exitCode: 0)))
        #expect(received.ids == [1, 2, 3, 4])
        #expect(received.texts == ["a", "b", "c"])
        #expect(received.log.withLock { $0.replayed } == 2)
        #expect(received.log.withLock { $0.exit?.id } == 4)
        #expect(process.snapshot.status == .exited)
    }

    @Test func resumingAfterAnIdSkipsWhatWasSeen() throws {
        let process = makeProcess()
        for text in ["a", "b", "c"] { process.receive(out(text)) }
        let received = Received()
        _ = try process.subscribe(after: 2, received.deliver)
        process.receive(out("d"))
        #expect(received.texts == ["c", "d"])
        #expect(received.log.withLock { $0.missed } == nil)
    }

    @Test func resumingFromADroppedIdSaysSo() throws {
        let process = makeProcess(outputLimit: 2)
        for text in ["a", "b", "c", "d"] { process.receive(out(text)) }
        let received = Received()
        _ = try process.subscribe(after: 1, received.deliver)
        #expect(received.log.withLock { $0.missed } == 2...2)
        #expect(received.texts == ["c", "d"])
    }

    @Test func anIdNewerThanAnyEventIsRefused() throws {
        let process = makeProcess()
        process.receive(out("a"))
        #expect(throws: ManagedProcess.UnknownEventID(newest: 1)) { try process.subscribe(after: 2) { _, _ in true } }
        process.receive(.exit(Termination(exitCode: 0)))
        #expect(throws: ManagedProcess.UnknownEventID(newest: 2)) { try process.subscribe(after: 3) { _, _ in true } }
    }

    @Test func afterTheExitASubscriberGetsTheReplayAndNoSubscription() throws {
        let process = makeProcess()
        process.receive(out("a"))
        process.receive(.exit(Termination(exitCode: 3)))
        let received = Received()
        #expect(try process.subscribe(after: nil, received.deliver) == nil)
        #expect(received.ids == [1, 2])
        #expect(received.log.withLock { $0.exit?.termination.exitCode } == 3)
        let late = Received()
        #expect(try process.subscribe(after: 2, late.deliver) == nil)
        #expect(late.ids.isEmpty)
    }

    @Test func aSubscriberThatDeclinesIsRemoved() throws {
        let process = makeProcess()
        let received = Received(stopAfter: 2)
        _ = try process.subscribe(after: nil, received.deliver)
        for text in ["a", "b", "c"] { process.receive(out(text)) }
        #expect(received.texts == ["a", "b"])
    }

    @Test func unsubscribingStopsDelivery() throws {
        let process = makeProcess()
        let received = Received()
        let token = try #require(try process.subscribe(after: nil, received.deliver))
        process.receive(out("a"))
        process.unsubscribe(token)
        process.receive(out("b"))
        #expect(received.texts == ["a"])
    }

    /// Subscribers that join while output is produced on another thread each see every event exactly once, in order.
    @Test func subscribingDuringOutputLosesAndRepeatsNothing() async throws {
        let process = makeProcess()
        let count = 2000
        let producer = Thread {
            for index in 0..<count { process.receive(out("\(index)")) }
            process.receive(.exit(Termination(exitCode: 0)))
        }
        let subscribers = (0..<8).map { _ in Received() }
        producer.start()
        for subscriber in subscribers {
            _ = try process.subscribe(after: nil, subscriber.deliver)
        }
        try await withDeadline(seconds: 20, "the producer to finish") {
            while process.isRunning { try await Task.sleep(for: .milliseconds(5)) }
        }
        for subscriber in subscribers {
            #expect(subscriber.ids == Array(1...UInt64(count + 1)))
        }
    }

    @Test func waitersAreCalledAtTheExit() throws {
        let process = makeProcess()
        let calls = Mutex<[ManagedProcess.Status]>([])
        let token = process.whenFinished { snapshot in calls.withLock { $0.append(snapshot.status) } }
        let cancelled = process.whenFinished { _ in calls.withLock { $0.append(.running) } }
        process.cancelWait(try #require(cancelled))
        #expect(token != nil)
        process.receive(.exit(Termination(exitCode: 0)))
        #expect(calls.withLock { $0 } == [.exited])
        #expect(process.whenFinished { _ in } == nil)
    }

    @Test func controlOfAnExitedProcessIsRefused() {
        let process = makeProcess()
        process.receive(.exit(Termination(exitCode: 0)))
        #expect(throws: ManagedProcess.ControlError.exited) { try process.writeStdin([1]) }
        #expect(throws: ManagedProcess.ControlError.exited) { try process.closeStdin() }
        #expect(throws: ManagedProcess.ControlError.exited) { try process.signal(SIGINT) }
        #expect(throws: ManagedProcess.ControlError.noTerminal) {
            try process.resize(to: TerminalSize(columns: 80, rows: 24))
        }
        #expect(process.snapshot.stdinOpen == false)
    }

    // MARK: slow clients

    /// A subscriber that reads the process's events by position, and its stream.
    private func follow(_ process: ManagedProcess, encoding: EventSubscriber.Encoding = .text, after: UInt64? = nil)
        throws -> EventStream
    {
        let subscriber = EventSubscriber(process: process, encoding: encoding)
        let stream = EventStream(holdsShutdown: false, highWater: 1 << 20, source: subscriber)
        stream.attach(suspend: {}, resume: {})
        let start = try process.follow(after: after) { [weak stream] in stream?.wake() }
        subscriber.begin(after: start.start, token: start.token)
        if let missed = start.missed { stream.write(EventSubscriber.comment(missed: missed)) }
        return stream
    }

    @Test func aClientThatFallsBehindTheReplayBufferIsCutOffWithAnError() throws {
        let process = makeProcess(outputLimit: 256 << 10)
        let stream = try follow(process)
        process.receive(.stdout([UInt8](repeating: 0x78, count: 64 << 10)))
        // The client reads one piece of the first event, then stops while the process writes on.
        var buffer = [UInt8](repeating: 0, count: 1000)
        _ = buffer.withUnsafeMutableBytes { stream.read(into: $0) }
        for _ in 0..<8 { process.receive(.stdout([UInt8](repeating: 0x79, count: 64 << 10))) }
        let text = String(decoding: drain(stream), as: UTF8.self)
        // The event it was in the middle of is finished, then the error, then the stream ends.
        #expect(text.hasPrefix(String(repeating: "x", count: 900 - "event: stdout\nid: 1\ndata: \"".count)))
        #expect(!text.contains("yyy"))
        #expect(
            text.hasSuffix(
                "\"\n\nevent: error\ndata: {\"code\":\"RESOURCE_EXHAUSTED\",\"message\":\"the client fell more than the 262144 bytes of output kept for replay behind; reconnect with Last-Event-ID\"}\n\n"
            ))
        var end = [UInt8](repeating: 0, count: 16)
        #expect(end.withUnsafeMutableBytes { stream.read(into: $0) } == .end)
    }

    @Test func aClientThatKeepsUpIsNeverCutOff() throws {
        let process = makeProcess(outputLimit: 256 << 10)
        let stream = try follow(process, encoding: .base64)
        var total = 0
        for _ in 0..<100 {
            process.receive(.stdout([UInt8](repeating: 0, count: 64 << 10)))
            total += drain(stream).count
        }
        process.receive(.exit(Termination(exitCode: 0)))
        let tail = String(decoding: drain(stream), as: UTF8.self)
        #expect(tail.hasPrefix("event: exit\nid: 101\n"))
        #expect(total > 100 * (64 << 10) * 4 / 3)
    }

    /// Written piece by piece into buffers of any size, the frames are exactly what encoding each event whole gives.
    @Test(arguments: [1, 2, 3, 5, 7, 16, 1000, 64 << 10])
    func framesWrittenInPiecesEqualWholeFrames(bufferSize: Int) throws {
        let chunks: [[UInt8]] = [
            Array("plain \"quoted\" back\\slash\ttab\r\n".utf8), [0x00, 0x01, 0x1B, 0x7F, 0x1F],
            Array("héllo 😀".utf8).dropLast(2).map { $0 }, Array("😀".utf8).suffix(2).map { $0 } + [0x41],
            [0xFF, 0xC3, 0x28, 0xE2, 0x82], [0x41, 0xED, 0xA0, 0x80, 0x42], [0xF0, 0x9F], [],
        ]
        for encoding in [EventSubscriber.Encoding.text, .base64] {
            let process = makeProcess()
            let stream = try follow(process, encoding: encoding)
            var expected: [UInt8] = []
            for (index, chunk) in chunks.enumerated() {
                let channel: OutputChannel = index % 3 == 2 ? .stderr : .stdout
                process.receive(channel == .stdout ? .stdout(chunk) : .stderr(chunk))
            }
            process.receive(.exit(Termination(exitCode: 3)))
            // The oracle: each kept event encoded whole, as a JSON string of its text or its base64.
            var log = OutputLog(limit: 1 << 20)
            for (index, chunk) in chunks.enumerated() {
                let event = log.append(chunk, from: index % 3 == 2 ? .stderr : .stdout)
                expected += Self.wholeFrame(event, encoding)
            }
            for event in log.flush() { expected += Self.wholeFrame(event, encoding) }
            let exitID = log.nextID()
            expected += EventSubscriber.frame(
                event: "exit", id: exitID, data: EventSubscriber.exitData(Termination(exitCode: 3)).encoded())
            var got: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: bufferSize)
            while case .bytes(let count) = buffer.withUnsafeMutableBytes({ stream.read(into: $0) }) {
                got += buffer[..<count]
            }
            #expect(String(decoding: got, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
            #expect(got == expected)
        }
    }

    private static func wholeFrame(_ event: OutputLog.Event, _ encoding: EventSubscriber.Encoding) -> [UInt8] {
        let text = encoding == .text ? event.text : Data(event.bytes).base64EncodedString()
        guard !text.isEmpty else { return [] }
        return EventSubscriber.frame(
            event: event.channel.rawValue, id: event.id, data: JSONValue.string(text).encoded())
    }

    // MARK: the table

    @Test func finishedProcessesAreForgottenByCountAndAge() async throws {
        let clock = ManualClock()
        var limits = Registry.Limits()
        limits.retainedCount = 2
        limits.retention = .seconds(60)
        let table = Registry(limits: limits, clock: { clock.read() })
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var ids: [String] = []
        for _ in 0..<3 {
            let process = try table.start(
                CommandSpec(argv: ["true"], cwd: directory.path, environment: [], timeout: 10))
            ids.append(process.id)
            try await waitForExit(process)
        }
        try await withDeadline(seconds: 10, "the table to see the exits") {
            while table.runningCount > 0 { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(table.process(ids[0]) == nil)
        #expect(table.list().map(\.id) == [ids[1], ids[2]])
        clock.advance(.seconds(61))
        #expect(table.list().isEmpty)
    }

    @Test func aProgramThatCannotStartIsAnErrorAndRegistersNothing() async throws {
        let table = Registry()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        #expect(throws: Registry.StartError.spawn(.notFound("/no/such/program"))) {
            try table.start(CommandSpec(argv: ["/no/such/program"], cwd: directory.path, environment: [], timeout: nil))
        }
        #expect(table.list().isEmpty)
    }

    @Test func overTheProcessLimitNothingIsStartedOrRegistered() async throws {
        let table = Registry(runner: CommandRunner(maxProcesses: 1))
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let first = try table.start(
            CommandSpec(argv: ["sleep", "30"], cwd: directory.path, environment: [], timeout: nil))
        defer { first.kill() }
        #expect(throws: Registry.StartError.spawn(.tooManyProcesses(1))) {
            try table.start(CommandSpec(argv: ["sleep", "30"], cwd: directory.path, environment: [], timeout: nil))
        }
        #expect(table.list().map(\.id) == [first.id])
        #expect(table.runner.refusedCount == 1)
        first.kill()
        try await waitForExit(first)
        // The runner counts the command until its exit is delivered, which happens just before `waitForExit` returns.
        try await withDeadline(seconds: 10, "the runner to let the command go") {
            while table.runner.runningCount > 0 { try await Task.sleep(for: .milliseconds(5)) }
        }
        let second = try table.start(
            CommandSpec(argv: ["true"], cwd: directory.path, environment: [], timeout: nil))
        try await waitForExit(second)
        #expect(second.snapshot.termination?.exitCode == 0)
    }

    @Test func terminateAllEndsEverythingAndRefusesNewProcesses() async throws {
        let table = Registry()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let process = try table.start(
            CommandSpec(argv: ["sleep", "30"], cwd: directory.path, environment: [], timeout: nil))
        #expect(table.runningCount == 1)
        table.terminateAll(grace: 2)
        try await waitForExit(process)
        #expect(process.snapshot.termination?.signal == SIGTERM)
        #expect(throws: Registry.StartError.closed) {
            try table.start(CommandSpec(argv: ["true"], cwd: directory.path, environment: [], timeout: nil))
        }
    }

    @Test func removeKillsAndForgets() async throws {
        let table = Registry()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let process = try table.start(
            CommandSpec(argv: ["sleep", "30"], cwd: directory.path, environment: [], timeout: nil))
        #expect(table.remove(process.id) === process)
        #expect(table.process(process.id) == nil)
        try await waitForExit(process)
        #expect(process.snapshot.termination?.signal == SIGKILL)
        #expect(table.runningCount == 0)
    }
}

private func waitForExit(_ process: ManagedProcess) async throws {
    try await withDeadline(seconds: 10, "process \(process.argv) to exit") {
        while process.isRunning { try await Task.sleep(for: .milliseconds(5)) }
    }
}

/// Everything the stream has buffered, read as the connection would.
private func drain(_ stream: EventStream) -> [UInt8] {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 << 10)
    while true {
        let result = buffer.withUnsafeMutableBytes { stream.read(into: $0) }
        guard case .bytes(let count) = result else { return bytes }
        bytes += buffer[..<count]
    }
}
