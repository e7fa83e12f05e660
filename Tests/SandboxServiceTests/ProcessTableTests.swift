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

    @Test func aClientThatFallsBehindIsCutOffWithAnError() throws {
        let process = makeProcess()
        let stream = EventStream()  // never read: the client does not read at all
        let subscriber = EventSubscriber(stream: stream, encoding: .text, maxBacklog: 256 << 10)
        stream.setFlowControl(pause: subscriber.fellBehind, resume: subscriber.caughtUp)
        // A replay larger than the backlog does not count against the client.
        for _ in 0..<20 { process.receive(.stdout([UInt8](repeating: 0x78, count: 64 << 10))) }
        #expect(try process.subscribe(after: nil, subscriber.deliver) != nil)
        #expect(!stream.isFinished)
        for _ in 0..<3 { process.receive(.stdout([UInt8](repeating: 0x79, count: 64 << 10))) }
        #expect(!stream.isFinished)
        // This one takes the live backlog past 256 KiB: it is sent, then the error, then nothing.
        process.receive(.stdout([UInt8](repeating: 0x7A, count: 64 << 10)))
        #expect(stream.isFinished)
        process.receive(.stdout([UInt8](repeating: 0x77, count: 64 << 10)))
        let text = String(decoding: drain(stream), as: UTF8.self)
        #expect(
            text.hasSuffix(
                "event: error\ndata: {\"code\":\"RESOURCE_EXHAUSTED\",\"message\":\"the client fell more than 262144 bytes behind the output; reconnect with Last-Event-ID\"}\n\n"
            ))
        #expect(text.contains("zzz") && !text.contains("www"))
    }

    @Test func aClientThatCatchesUpIsNotCutOff() throws {
        let process = makeProcess()
        let stream = EventStream()
        stream.attach(suspend: {}, resume: {})
        let subscriber = EventSubscriber(stream: stream, encoding: .base64, maxBacklog: 256 << 10)
        stream.setFlowControl(pause: subscriber.fellBehind, resume: subscriber.caughtUp)
        _ = try process.subscribe(after: nil, subscriber.deliver)
        for _ in 0..<100 {
            process.receive(.stdout([UInt8](repeating: 0, count: 64 << 10)))
            _ = drain(stream)
        }
        #expect(!stream.isFinished)
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

    @Test func aProgramThatCannotStartIsAProcessThatExited() async throws {
        let table = Registry()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let process = try table.start(
            CommandSpec(argv: ["/no/such/program"], cwd: directory.path, environment: [], timeout: nil))
        try await waitForExit(process)
        #expect(process.snapshot.pid == nil)
        #expect(process.snapshot.termination?.exitCode == 127)
        let received = Received()
        _ = try process.subscribe(after: nil, received.deliver)
        #expect(received.texts.joined().contains("/no/such/program"))
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
