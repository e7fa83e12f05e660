import Dispatch
import Synchronization
import Testing

@testable import SandboxService

/// An `EventStream` attached to counting suspend/resume closures instead of a libmicrohttpd connection. It also
/// tracks whether the "connection" is suspended, and records a misuse (resume while not suspended, suspend while
/// suspended), which libmicrohttpd would not survive.
private final class FakeConnection: Sendable {
    struct Counts: Equatable {
        var suspends = 0
        var resumes = 0
    }

    private final class Record: Sendable {
        let state = Mutex((counts: Counts(), suspended: false, misuses: [String]()))
    }

    private let record = Record()
    let stream: EventStream

    init(highWater: Int = 1 << 20) {
        stream = EventStream(highWater: highWater)
        stream.attach(
            suspend: { [record] in
                record.state.withLock {
                    if $0.suspended { $0.misuses.append("suspend while suspended") }
                    $0.suspended = true
                    $0.counts.suspends += 1
                }
            },
            resume: { [record] in
                record.state.withLock {
                    if !$0.suspended { $0.misuses.append("resume while not suspended") }
                    $0.suspended = false
                    $0.counts.resumes += 1
                }
            })
    }

    var counts: Counts { record.state.withLock { $0.counts } }
    var misuses: [String] { record.state.withLock { $0.misuses } }

    /// One call of the content reader with a buffer of `size` bytes: what it returned and the bytes it wrote.
    func read(size: Int = 16 * 1024) -> (result: EventStream.ReadResult, bytes: [UInt8]) {
        var buffer = [UInt8](repeating: 0, count: size)
        let result = buffer.withUnsafeMutableBytes { stream.read(into: $0) }
        if case .bytes(let count) = result { return (result, Array(buffer[..<count])) }
        return (result, [])
    }

    /// Reads until the reader parks or ends; returns everything read and how it stopped.
    func drain(size: Int = 16 * 1024) -> (bytes: [UInt8], stop: EventStream.ReadResult) {
        var bytes: [UInt8] = []
        while true {
            let (result, piece) = read(size: size)
            guard case .bytes = result else { return (bytes, result) }
            bytes += piece
        }
    }
}

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

@Suite(.timeLimit(.minutes(1))) struct EventStreamTests {
    @Test func readingAnEmptyBufferParksAndSuspendsOnce() {
        let connection = FakeConnection()
        #expect(connection.read().result == .parked)
        #expect(connection.counts == .init(suspends: 1, resumes: 0))
        #expect(connection.misuses.isEmpty)
    }

    @Test func writeWhileParkedResumesExactlyOnce() {
        let connection = FakeConnection()
        _ = connection.read()
        connection.stream.send(event: "stdout", data: "one")
        connection.stream.send(event: "stdout", data: "two")
        #expect(connection.counts == .init(suspends: 1, resumes: 1))
        let (bytes, stop) = connection.drain()
        #expect(text(bytes) == "event: stdout\ndata: one\n\nevent: stdout\ndata: two\n\n")
        #expect(stop == .parked)
        #expect(connection.counts == .init(suspends: 2, resumes: 1))
        #expect(connection.misuses.isEmpty)
    }

    @Test func writeWhileNotParkedDoesNotResume() {
        let connection = FakeConnection()
        connection.stream.send(event: "stdout", data: "early")
        #expect(connection.counts == .init(suspends: 0, resumes: 0))
        #expect(text(connection.read().bytes) == "event: stdout\ndata: early\n\n")
        #expect(connection.counts == .init(suspends: 0, resumes: 0))
    }

    @Test func finishWhileParkedResumesAndTheNextReadEnds() {
        let connection = FakeConnection()
        _ = connection.read()
        connection.stream.finish()
        #expect(connection.counts == .init(suspends: 1, resumes: 1))
        #expect(connection.read().result == .end)
        #expect(connection.stream.isFinished)
        // Finishing again neither resumes nor suspends.
        connection.stream.finish()
        #expect(connection.counts == .init(suspends: 1, resumes: 1))
        #expect(connection.misuses.isEmpty)
    }

    @Test func finishWhileNotParkedDoesNotResume() {
        let connection = FakeConnection()
        connection.stream.finish()
        #expect(connection.counts == .init(suspends: 0, resumes: 0))
        #expect(connection.read().result == .end)
    }

    @Test func readAfterFinishDrainsEverythingThenEnds() {
        let connection = FakeConnection()
        connection.stream.send(event: "stdout", data: "a")
        connection.stream.send(event: "done", data: #"{"exit_code":0}"#)
        connection.stream.finish()
        let (bytes, stop) = connection.drain(size: 7)
        #expect(text(bytes) == "event: stdout\ndata: a\n\nevent: done\ndata: {\"exit_code\":0}\n\n")
        #expect(stop == .end)
        #expect(connection.read().result == .end)
        #expect(connection.counts == .init(suspends: 0, resumes: 0))
    }

    @Test func writesAfterFinishAreDropped() {
        let connection = FakeConnection()
        connection.stream.finish()
        connection.stream.send(event: "stdout", data: "late")
        connection.stream.sendComment("keep-alive")
        #expect(connection.read().result == .end)
    }

    @Test func readsNeverExceedTheBuffer() {
        let connection = FakeConnection()
        connection.stream.send(event: "stdout", data: String(repeating: "x", count: 1000))
        for _ in 0..<10 {
            let (result, bytes) = connection.read(size: 10)
            #expect(result == .bytes(10))
            #expect(bytes.count == 10)
        }
    }

    @Test func interleavedWritesAndPartialReadsKeepEveryByteInOrder() {
        // Large writes read back in small pieces exercise the buffer's compaction.
        let connection = FakeConnection()
        var expected: [UInt8] = []
        var received: [UInt8] = []
        for index in 0..<40 {
            let data = String(repeating: Character(Unicode.Scalar(UInt8(65 + index % 26))), count: 10_000 + index)
            connection.stream.send(event: "stdout", data: data)
            expected += EventStream.frame(event: "stdout", data: data)
            for _ in 0..<(index % 3) {
                let (result, bytes) = connection.read(size: 9_000)
                if case .bytes = result { received += bytes }
            }
        }
        connection.stream.finish()
        let (rest, stop) = connection.drain(size: 9_000)
        received += rest
        #expect(stop == .end)
        #expect(received == expected)
        #expect(connection.misuses.isEmpty)
    }

    @Test func commentIsALineTheClientIgnores() {
        let connection = FakeConnection()
        connection.stream.sendComment("keep-alive")
        #expect(text(connection.read().bytes) == ": keep-alive\n\n")
    }

    @Test func parkedWritesBeforeAttachAreOnlyBuffered() {
        let stream = EventStream(highWater: 1 << 20)
        stream.send(event: "stdout", data: "before attach")
        stream.finish()
        var buffer = [UInt8](repeating: 0, count: 256)
        let result = buffer.withUnsafeMutableBytes { stream.read(into: $0) }
        #expect(result == .bytes("event: stdout\ndata: before attach\n\n".utf8.count))
    }

    // MARK: backpressure

    @Test func theProducerIsPausedPastTheHighWaterMarkAndResumedBelowAQuarterOfIt() {
        let connection = FakeConnection(highWater: 1000)
        let pauses = Counter()
        let resumes = Counter()
        connection.stream.setFlowControl(pause: { pauses.increment() }, resume: { resumes.increment() })
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 400)
        connection.stream.write(chunk)
        connection.stream.write(chunk)
        #expect(pauses.value == 0, "800 bytes are within a high-water mark of 1000")
        connection.stream.write(chunk)
        #expect(pauses.value == 1, "1200 bytes are past it")
        connection.stream.write(chunk)
        #expect(pauses.value == 1, "a paused producer is not paused again")
        _ = connection.read(size: 1000)
        #expect(resumes.value == 0, "600 bytes left are more than a quarter of 1000")
        _ = connection.read(size: 351)
        #expect(resumes.value == 1, "249 bytes left are less than a quarter")
    }

    // MARK: framing

    @Test func frameOfOneLine() {
        #expect(text(EventStream.frame(event: "stdout", data: "hello world")) == "event: stdout\ndata: hello world\n\n")
    }

    @Test func frameGivesOneDataLinePerLine() {
        #expect(
            text(EventStream.frame(event: "error", data: "a\nb\nc")) == "event: error\ndata: a\ndata: b\ndata: c\n\n")
        #expect(text(EventStream.frame(event: "e", data: "a\r\nb\rc")) == "event: e\ndata: a\ndata: b\ndata: c\n\n")
    }

    @Test func frameKeepsEmptyLines() {
        #expect(text(EventStream.frame(event: "e", data: "")) == "event: e\ndata: \n\n")
        #expect(text(EventStream.frame(event: "e", data: "a\n")) == "event: e\ndata: a\ndata: \n\n")
        #expect(text(EventStream.frame(event: "e", data: "\n\n")) == "event: e\ndata: \ndata: \ndata: \n\n")
    }

    @Test func frameNeverLetsALineEndIntoAField() {
        let framed = text(EventStream.frame(event: "e", data: "x\r\n\r\ny\u{0085}z\u{2028}w\r"))
        // Every line of the frame is a field; a CR anywhere would split one into two for an SSE parser.
        #expect(!framed.contains("\r"))
        let lines = framed.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.dropLast(2).allSatisfy { $0.hasPrefix("event: ") || $0.hasPrefix("data: ") })
    }

    @Test func frameKeepsUnicode() {
        #expect(text(EventStream.frame(event: "stdout", data: "héllo 😀")) == "event: stdout\ndata: héllo 😀\n\n")
    }

    // MARK: client gone

    @Test func clientGoneCallsTheHandlerOnceAndFinishes() {
        let connection = FakeConnection()
        let calls = Counter()
        connection.stream.onClientGone { calls.increment() }
        _ = connection.read()
        connection.stream.clientGone()
        connection.stream.clientGone()
        connection.stream.responseReleased()
        #expect(calls.value == 1)
        #expect(connection.stream.isFinished)
        // The parked connection was resumed, and its reader aborts, so libmicrohttpd closes it at once.
        #expect(connection.counts == .init(suspends: 1, resumes: 1))
        #expect(connection.misuses.isEmpty)
        #expect(connection.read().result == .abort)
    }

    @Test func clientGoneDropsWhatIsQueued() {
        let connection = FakeConnection()
        connection.stream.send(event: "stdout", data: "never read")
        connection.stream.clientGone()
        #expect(connection.read().result == .abort)
        #expect(connection.counts == .init(suspends: 0, resumes: 0))
    }

    @Test func anAbandonedPendingResponseResumesItsConnectionToBeDropped() {
        let pending = PendingResponse()
        let calls = Counter()
        let resumes = Counter()
        pending.onClientGone { calls.increment() }
        guard case .parked = pending.takeOrPark(suspend: {}, resume: { resumes.increment() }) else {
            Issue.record("a response that is not ready parks")
            return
        }
        pending.clientGone()
        pending.clientGone()
        #expect(calls.value == 1)
        #expect(resumes.value == 1)
        guard case .abandon = pending.takeOrPark(suspend: {}, resume: {}) else {
            Issue.record("after the client left, the request is dropped")
            return
        }
        // A late completion neither resumes again nor answers.
        pending.complete(HTTPResponse(status: 200, body: .bytes([])))
        #expect(resumes.value == 1)
        pending.requestEnded()
        #expect(calls.value == 1)
    }

    @Test func responseReleasedBeforeFinishCallsTheHandlerOnce() {
        let connection = FakeConnection()
        let calls = Counter()
        connection.stream.onClientGone { calls.increment() }
        connection.stream.responseReleased()
        connection.stream.responseReleased()
        connection.stream.clientGone()
        #expect(calls.value == 1)
        #expect(connection.stream.isFinished)
    }

    @Test func handlerIsNeverCalledAfterFinish() {
        let connection = FakeConnection()
        let calls = Counter()
        connection.stream.onClientGone { calls.increment() }
        connection.stream.finish()
        connection.stream.clientGone()
        connection.stream.responseReleased()
        #expect(calls.value == 0)
    }

    @Test func idleTimeCountsFromTheLastWrite() {
        let stream = EventStream(highWater: 1 << 20)
        stream.send(event: "stdout", data: "x")
        #expect(stream.idleTime(now: DispatchTime.now() + .seconds(20)) >= 19.9)
        #expect(stream.idleTime() < 5)
    }
}
