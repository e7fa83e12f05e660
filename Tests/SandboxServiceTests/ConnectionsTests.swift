import Dispatch
import Glibc
import Logging
import Synchronization
import Testing

@testable import SandboxService

/// A connected pair of stream sockets: `server` plays the connection libmicrohttpd accepted, `client` its peer.
private final class SocketPair {
    let server: Int32
    let client: Int32

    init() throws {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw TestFailure("socketpair: errno \(errno)")
        }
        server = fds[0]
        client = fds[1]
    }

    deinit {
        close(server)
        close(client)
    }

    /// True once the server side was shut down: the client then reads an end of stream (instead of "nothing yet").
    var serverWasShutDown: Bool {
        var byte: UInt8 = 0
        return recv(client, &byte, 1, Int32(MSG_DONTWAIT)) == 0
    }
}

/// A connection pointer for the registry's bookkeeping; never dereferenced.
private func connection(_ number: Int) -> OpaquePointer { OpaquePointer(bitPattern: number * 16)! }

private func connections(
    limit: Int = 8, idleTimeout: Int = 60, keepAliveInterval: Double = 15,
    logger: Logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
) -> Connections {
    // An interval no test outlasts: whether a warning is written does not depend on the test's speed.
    Connections(
        limit: limit, idleTimeout: idleTimeout, keepAliveInterval: keepAliveInterval, logger: logger,
        throttle: LogThrottle(logger: logger, seconds: 3600))
}

/// A request identity, as the pipeline uses its context's.
private final class Request {}

@Suite(.timeLimit(.minutes(1))) struct ConnectionsTests {
    @Test func aConnectionPastTheLimitIsRefused() {
        let registry = connections(limit: 2)
        registry.opened(connection(1), socket: -1)
        #expect(registry.admitsConnection())
        registry.opened(connection(2), socket: -1)
        #expect(!registry.admitsConnection())
        registry.closed(connection(1))
        #expect(registry.admitsConnection())
    }

    @Test func aFloodOfRefusedConnectionsWritesOneWarningPerInterval() {
        let records = CapturingLogHandler.Records()
        let registry = connections(
            limit: 1, logger: Logger(label: "test") { _ in CapturingLogHandler(records: records) })
        registry.opened(connection(1), socket: -1)
        for _ in 0..<100 { #expect(!registry.admitsConnection()) }
        #expect(records.lines.withLock { $0.map(\.message) } == ["refused a connection: 1 connections are open"])
    }

    @Test func aHeadNotCompleteWithinTheIdleTimeoutIsCut() throws {
        let sockets = try SocketPair()
        let registry = connections(idleTimeout: 1)
        registry.opened(connection(1), socket: sockets.server)
        registry.tick(now: .now())
        #expect(!sockets.serverWasShutDown)
        registry.tick(now: .now() + .seconds(2))
        #expect(sockets.serverWasShutDown)
    }

    @Test func aConnectionServingARequestIsNotCutForItsHead() throws {
        let sockets = try SocketPair()
        let registry = connections(idleTimeout: 1)
        registry.opened(connection(1), socket: sockets.server)
        registry.headReceived(on: connection(1))
        registry.bodyReceived(on: connection(1))
        registry.tick(now: .now() + .seconds(2))
        #expect(!sockets.serverWasShutDown)
    }

    @Test func aClientThatEndedItsSideMidBodyIsCutAtTheSecondTickThatSeesIt() throws {
        let sockets = try SocketPair()
        let registry = connections()
        registry.opened(connection(1), socket: sockets.server)
        registry.headReceived(on: connection(1))
        shutdown(sockets.client, Int32(SHUT_WR))
        let first = DispatchTime.now()
        registry.tick(now: first)
        #expect(!sockets.serverWasShutDown, "one sighting is not enough: libmicrohttpd may still read the end itself")
        registry.tick(now: first + .milliseconds(250))
        #expect(sockets.serverWasShutDown)
    }

    @Test func anEndedClientWithBytesLeftToReadIsLeftToLibmicrohttpd() throws {
        let sockets = try SocketPair()
        let registry = connections()
        registry.opened(connection(1), socket: sockets.server)
        var byte: UInt8 = 65
        #expect(send(sockets.client, &byte, 1, 0) == 1)
        shutdown(sockets.client, Int32(SHUT_WR))
        let first = DispatchTime.now()
        registry.tick(now: first)
        registry.tick(now: first + .milliseconds(250))
        #expect(!sockets.serverWasShutDown)
    }

    @Test func aClientGoneFromALaterAnswerIsNoticedAndTheAnswerAbandoned() throws {
        let sockets = try SocketPair()
        let registry = connections()
        let pending = PendingResponse()
        let told = Mutex(0)
        pending.onClientGone { told.withLock { $0 += 1 } }
        let request = Request()
        #expect(registry.watch(pending, of: ObjectIdentifier(request), socket: sockets.server))
        registry.tick()
        #expect(told.withLock { $0 } == 0)
        shutdown(sockets.client, Int32(SHUT_RDWR))
        registry.tick()
        #expect(told.withLock { $0 } == 1)
        guard case .abandon = pending.takeOrPark(suspend: {}, resume: {}) else {
            Issue.record("the answer was not abandoned")
            return
        }
    }

    @Test func aSilentStreamGetsAKeepAliveComment() throws {
        let sockets = try SocketPair()
        let registry = connections(keepAliveInterval: 0)
        let stream = EventStream(highWater: 1 << 20)
        registry.watch(stream, of: ObjectIdentifier(Request()), socket: sockets.server)
        registry.tick()
        var buffer = [UInt8](repeating: 0, count: 64)
        let result = buffer.withUnsafeMutableBytes { stream.read(into: $0) }
        guard case .bytes(let count) = result else {
            Issue.record("nothing to send: \(result)")
            return
        }
        #expect(String(decoding: buffer[..<count], as: UTF8.self) == ": keep-alive\n\n")
    }

    @Test func aDownloadWhoseFileShrankIsCut() throws {
        let directory = try TemporaryDirectory("sandboxd-connections")
        defer { directory.remove() }
        try directory.write("file", "0123456789")
        let file = open(directory.file("file"), O_RDONLY | O_CLOEXEC)
        defer { close(file) }
        let sockets = try SocketPair()
        let registry = connections()
        registry.watchDownload(file: file, end: 10, of: ObjectIdentifier(Request()), socket: sockets.server)
        registry.tick()
        #expect(!sockets.serverWasShutDown)
        #expect(truncate(directory.file("file"), 4) == 0)
        registry.tick()
        #expect(sockets.serverWasShutDown)
    }

    @Test func shutdownWaitsForWhatHoldsItAndNoLaterAnswerIsWaitedForAfterIt() throws {
        let registry = connections()
        let held = Request()
        let background = Request()
        let ended = Request()
        #expect(registry.watch(PendingResponse(), of: ObjectIdentifier(held), socket: -1))
        registry.watch(EventStream(holdsShutdown: true, highWater: 1 << 20), of: ObjectIdentifier(held), socket: -1)
        registry.watch(
            EventStream(holdsShutdown: false, highWater: 1 << 20), of: ObjectIdentifier(background), socket: -1)
        #expect(registry.watch(PendingResponse(), of: ObjectIdentifier(ended), socket: -1))
        #expect(registry.activeRequests == 3)
        registry.requestEnded(ObjectIdentifier(ended), on: nil)
        #expect(registry.activeRequests == 2)
        let (streams, pendings) = registry.stop()
        #expect(streams.count == 2)
        #expect(pendings.count == 1)
        #expect(!registry.watch(PendingResponse(), of: ObjectIdentifier(Request()), socket: -1))
    }
}
