import Synchronization
import Testing

@testable import SandboxService

/// An upload sink that records what happened to it, and can be told to fail its writes.
private final class RecordingSink: UploadSink, @unchecked Sendable {
    var written: [UInt8] = []
    var committed = false
    var aborted = false
    var failure: APIError?

    func write(_ bytes: UnsafeRawBufferPointer) throws(APIError) {
        if let failure { throw failure }
        written += bytes
    }

    func commit() throws(APIError) { committed = true }
    func abort() { aborted = true }
}

/// A multipart receiver standing in for libmicrohttpd's post processor.
private final class RecordingReceiver: MultipartReceiver {
    var consumed: [UInt8] = []
    var aborted = false

    func consume(_ chunk: UnsafeRawBufferPointer) { consumed += chunk }
    func finish() -> UploadOutcome { .stored(filename: "upload.bin") }
    func abort() { aborted = true }
}

/// Counts suspend and resume calls and records a misuse (resume while not suspended), as libmicrohttpd would not
/// survive one.
private final class FakeSuspension: Sendable {
    struct Counts: Equatable {
        var suspends = 0
        var resumes = 0
        var misuses = 0
    }

    private let state = Mutex((suspended: false, counts: Counts()))

    func suspend() {
        state.withLock {
            if $0.suspended { $0.counts.misuses += 1 }
            $0.suspended = true
            $0.counts.suspends += 1
        }
    }

    func resume() {
        state.withLock {
            if !$0.suspended { $0.counts.misuses += 1 }
            $0.suspended = false
            $0.counts.resumes += 1
        }
    }

    var counts: Counts { state.withLock { $0.counts } }
}

/// What a handler saw, for the test to look at.
private final class Seen: Sendable {
    let state = Mutex<(request: HTTPRequest, outcome: UploadOutcome?)?>(nil)

    func record(_ request: HTTPRequest, _ outcome: UploadOutcome?) -> Reply {
        state.withLock { $0 = (request, outcome) }
        return .response(.json(["ok": .bool(true)]))
    }

    var request: HTTPRequest? { state.withLock { $0?.request } }
    var outcome: UploadOutcome? { state.withLock { $0?.outcome } }
}

private func head(
    _ method: String = "GET", _ path: String = "/", fields: [(String, String)] = [("Host", "sandbox")],
    query: [String: String] = [:]
) -> RequestHead {
    RequestHead(
        method: method, path: path, query: query, version: "HTTP/1.1", targetIsValid: true,
        fields: HeaderFields(fields))
}

/// A machine with the head and the policy its first transition takes.
private struct DrivenRequest {
    var machine = RequestMachine()
    let head: RequestHead
    let policy: RequestMachine.Policy

    var state: RequestMachine.State { machine.state }

    /// `receiveHead` for a request whose route takes no multipart body.
    mutating func receiveHead() -> RequestMachine.Action {
        receiveHead { _, _ in
            Issue.record("no multipart receiver was expected")
            return RecordingReceiver()
        }
    }

    mutating func receiveHead(
        receiver: (String, @escaping @Sendable (String) throws(APIError) -> any UploadSink) -> any MultipartReceiver
    ) -> RequestMachine.Action {
        machine.receiveHead(head, policy: policy, receiver: receiver)
    }

    mutating func receive(_ text: String) -> RequestMachine.Action {
        Array(text.utf8).withUnsafeBytes { receive($0) }
    }

    mutating func receive(_ bytes: UnsafeRawBufferPointer) -> RequestMachine.Action {
        machine.receive(bytes)
    }

    mutating func poll(_ suspension: FakeSuspension = FakeSuspension()) -> RequestMachine.Action {
        machine.poll(suspend: suspension.suspend, resume: suspension.resume)
    }

    mutating func refuseWait() -> RequestMachine.Action { machine.refuseWait() }

    mutating func complete(cleanly: Bool) -> CompletedRequest { machine.complete(cleanly: cleanly) }
}

private func machine(
    _ head: RequestHead, routes: [Router.Route] = [], token: String? = nil, maxUploadBytes: Int? = nil
) -> DrivenRequest {
    var router = Router()
    routes.forEach { router.add($0) }
    return DrivenRequest(
        head: head, policy: RequestMachine.Policy(router: router, bearerToken: token, maxUploadBytes: maxUploadBytes))
}

extension RequestMachine.Action {
    /// The status of the answer to queue or to refuse with, nil for other actions.
    fileprivate var status: Int? {
        switch self {
        case .queue(let response), .refuse(let response): response.status
        case .proceed, .wait, .close: nil
        }
    }

    fileprivate var isQueue: Bool {
        if case .queue = self { true } else { false }
    }

    fileprivate var isRefuse: Bool {
        if case .refuse = self { true } else { false }
    }

    fileprivate var isProceed: Bool {
        if case .proceed = self { true } else { false }
    }

    fileprivate var isClose: Bool {
        if case .close = self { true } else { false }
    }

    fileprivate var response: HTTPResponse? {
        switch self {
        case .queue(let response), .refuse(let response): response
        case .proceed, .wait, .close: nil
        }
    }

    fileprivate var text: String {
        guard case .bytes(let bytes) = response?.body else { return "" }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A handler that answers `POST /wait` later, and counts how often it heard that its client left.
private final class LaterAnswer: Sendable {
    let pending = PendingResponse()
    private let told = Mutex(0)

    init() {
        pending.onClientGone { [self] in told.withLock { $0 += 1 } }
    }

    var clientGoneCalls: Int { told.withLock { $0 } }

    /// A request to `POST /wait`, taken up to the wait for `pending`.
    func waitingRequest() -> DrivenRequest {
        var request = machine(
            head("POST", "/wait"), routes: [.init("POST", "/wait") { [pending] _, _ in .pending(pending) }])
        #expect(request.receiveHead().isProceed)
        let action = request.poll()
        guard case .wait(let waited) = action, waited === pending else {
            Issue.record("no wait for the answer: \(action)")
            return request
        }
        return request
    }
}

private func header(_ response: HTTPResponse?, _ name: String) -> String? {
    response?.headers.first { $0.0.lowercased() == name.lowercased() }?.1
}

@Suite(.timeLimit(.minutes(1))) struct RequestMachineTests {
    // MARK: the head

    @Test func aRefusedHeadIsAnsweredBeforeItsBodyAndClosesTheConnection() {
        var request = machine(
            head("POST", "/a%41", fields: []),
            routes: [
                .init("POST", "/aA") { _, _ in
                    Issue.record("the handler ran")
                    return .response(.json(["ok": .bool(true)]))
                }
            ])
        let action = request.receiveHead()
        #expect(action.isQueue)
        #expect(action.status == 400)
        #expect(action.text == #"{"detail":"Missing Host header"}"#)
        #expect(header(action.response, "Connection") == "close")
        #expect(request.receive("ignored").isProceed)
        #expect(request.poll().isClose)
        let completed = request.complete(cleanly: true)
        #expect(completed.status == 400)
        #expect(completed.path == "/a%41", "a refused head is logged as sent")
        #expect(completed.route == "unmatched")
    }

    @Test func aContentLengthThatIsNotANumberClosesTheConnectionWithoutAnAnswer() {
        for (name, value) in [
            ("Content-Length", "1x"), ("content-length", ""), ("CONTENT-LENGTH", "-1"),
            ("Content-Length", "1234567890123456789"),
        ] {
            var request = machine(head("POST", "/", fields: [("Host", "h"), (name, value)]))
            #expect(request.receiveHead().isClose, "\(name): \(value)")
        }
        var padded = machine(head("POST", "/", fields: [("Host", "h"), ("Content-Length", " 2 ")]))
        #expect(padded.receiveHead().isProceed)
    }

    @Test func withATokenEveryRequestButTheHealthCheckMustCarryIt() {
        let routes: [Router.Route] = [
            .init("GET", "/") { _, _ in .response(.json(["ok": .bool(true)])) },
            .init("GET", "/files") { _, _ in .response(.json(["ok": .bool(true)])) },
        ]
        for (method, path, authorization, status) in [
            ("GET", "/", nil, nil), ("HEAD", "/", nil, nil), ("GET", "/files", nil, 401),
            ("GET", "/files", "Bearer wrong", 401), ("GET", "/files", "Basic secret", 401),
            ("GET", "/files", "bearer secret", nil), ("GET", "/nope", nil, 401),
        ] as [(String, String, String?, Int?)] {
            let fields = [("Host", "h")] + (authorization.map { [("Authorization", $0)] } ?? [])
            var request = machine(head(method, path, fields: fields), routes: routes, token: "secret")
            let action = request.receiveHead()
            #expect(action.status == status, "\(method) \(path) \(authorization ?? "-")")
            if status == 401 {
                #expect(header(action.response, "WWW-Authenticate") == "Bearer")
                #expect(action.text == #"{"detail":"Not authenticated"}"#)
            }
        }
    }

    @Test func anUnknownPathOrAPathThatDoesNotDecodeIsAnsweredAfterItsBody() {
        for (path, status) in [("/nope", 404), ("/a%zz", 400), ("/a%00b", 400)] {
            var request = machine(head("POST", path))
            #expect(request.receiveHead().isProceed, "\(path)")
            #expect(request.receive("some body").isProceed)
            let action = request.poll()
            #expect(action.status == status, "\(path)")
            let completed = request.complete(cleanly: true)
            #expect(completed.route == "unmatched")
            #expect(completed.bytesUploaded == 0)
        }
    }

    // MARK: bodies

    @Test func theHandlerGetsTheBodyHeadersAndQueryReadOnceFromTheHead() throws {
        let seen = Seen()
        var request = machine(
            head(
                "POST", "/run%20it",
                fields: [("Host", "h"), ("Content-Type", "text/plain"), ("X-Twice", "first"), ("x-twice", "second")],
                query: ["q": "a b"]),
            routes: [.init("POST", "/run it", handler: seen.record)])
        #expect(request.receiveHead().isProceed)
        #expect(request.receive("hello ").isProceed)
        #expect(request.receive("world").isProceed)
        let action = request.poll()
        #expect(action.status == 200)
        let handled = try #require(seen.request)
        #expect(String(decoding: handled.body, as: UTF8.self) == "hello world")
        #expect(handled.path == "/run it")
        #expect(handled.headers["content-type"] == "text/plain")
        #expect(handled.headers["x-twice"] == "first", "a repeated header keeps its first value")
        #expect(handled.query == ["q": "a b"])
        let completed = request.complete(cleanly: true)
        #expect(completed.route == "/run it")
        #expect(completed.path == "/run it")
        #expect(completed.status == 200)
    }

    @Test func aBufferedBodyOverItsLimitIsRefusedFromItsLengthOrAsSoonAsItPassesIt() {
        let route = Router.Route("POST", "/small", body: .buffered(limit: 8)) { _, _ in
            Issue.record("the handler ran")
            return .response(.json(["ok": .bool(true)]))
        }
        var declared = machine(
            head("POST", "/small", fields: [("Host", "h"), ("Content-Length", "9")]), routes: [route])
        let early = declared.receiveHead()
        #expect(early.isQueue)
        #expect(early.status == 413)

        var chunked = machine(head("POST", "/small"), routes: [route])
        #expect(chunked.receiveHead().isProceed)
        #expect(chunked.receive("12345").isProceed)
        let refusal = chunked.receive("6789")
        #expect(refusal.isRefuse)
        #expect(refusal.status == 413)
        #expect(refusal.text == #"{"detail":"Request body too large"}"#)
        #expect(chunked.receive("more").isProceed, "what comes after the refusal is dropped")
        #expect(chunked.poll().isClose)
        #expect(chunked.complete(cleanly: false).status == 413)
    }

    @Test func aBufferedBodyOfManyPiecesIsKeptWhole() throws {
        let seen = Seen()
        var request = machine(
            head("POST", "/big"),
            routes: [
                .init("POST", "/big", body: .buffered(limit: 1 << 20), handler: seen.record)
            ])
        #expect(request.receiveHead().isProceed)
        let piece = [UInt8](repeating: 7, count: 1024)
        for _ in 0..<1024 {
            #expect(piece.withUnsafeBytes { request.receive($0) }.isProceed)
        }
        #expect(request.poll().status == 200)
        #expect(try #require(seen.request).body == [UInt8](repeating: 7, count: 1 << 20))
    }

    @Test func aStreamedBodyGoesToItsSinkAndIsCommittedOnceComplete() throws {
        let sink = RecordingSink()
        let seen = Seen()
        var request = machine(
            head("PUT", "/file"),
            routes: [
                .init("PUT", "/file", body: .stream { sink }, handler: seen.record)
            ])
        #expect(request.receiveHead().isProceed)
        #expect(request.receive("abc").isProceed)
        #expect(request.receive("def").isProceed)
        #expect(!sink.committed)
        #expect(request.poll().status == 200)
        #expect(sink.committed && !sink.aborted)
        #expect(sink.written == Array("abcdef".utf8))
        guard case .stored(let filename) = try #require(seen.outcome) else {
            Issue.record("not stored")
            return
        }
        #expect(filename == "")
        #expect(request.complete(cleanly: true).bytesUploaded == 6)
    }

    @Test func aStreamedBodyOverTheUploadLimitIsRefusedAndLeavesNothing() {
        let opened = Mutex(0)
        let sink = RecordingSink()
        let route = Router.Route(
            "PUT", "/file",
            body: .stream {
                opened.withLock { $0 += 1 }
                return sink
            }
        ) { _, _ in .response(.json(["ok": .bool(true)])) }

        var declared = machine(
            head("PUT", "/file", fields: [("Host", "h"), ("Content-Length", "11")]), routes: [route], maxUploadBytes: 10
        )
        let early = declared.receiveHead()
        #expect(early.status == 413)
        #expect(early.text == #"{"detail":"Upload too large: the limit is 10 bytes"}"#)
        #expect(opened.withLock { $0 } == 0, "no sink is opened for a body refused from its length")

        var chunked = machine(head("PUT", "/file"), routes: [route], maxUploadBytes: 10)
        #expect(chunked.receiveHead().isProceed)
        #expect(chunked.receive("123456").isProceed)
        let refusal = chunked.receive("789012")
        #expect(refusal.isRefuse)
        #expect(refusal.status == 413)
        #expect(sink.aborted && !sink.committed)
        #expect(sink.written == Array("123456".utf8))
        #expect(chunked.complete(cleanly: false).bytesUploaded == 12)
    }

    @Test func aSinkThatFailsRefusesTheBodyWithItsError() {
        let sink = RecordingSink()
        sink.failure = .detail(507, "No space left")
        var request = machine(
            head("PUT", "/file"),
            routes: [
                .init("PUT", "/file", body: .stream { sink }) { _, _ in .response(.json(["ok": .bool(true)])) }
            ])
        #expect(request.receiveHead().isProceed)
        let refusal = request.receive("abc")
        #expect(refusal.isRefuse)
        #expect(refusal.status == 507)
        #expect(sink.aborted)
    }

    @Test func aBodyCutHalfwayLeavesNothingBehind() {
        let sink = RecordingSink()
        var streamed = machine(
            head("PUT", "/file"),
            routes: [
                .init("PUT", "/file", body: .stream { sink }) { _, _ in .response(.json(["ok": .bool(true)])) }
            ])
        #expect(streamed.receiveHead().isProceed)
        #expect(streamed.receive("abc").isProceed)
        let completed = streamed.complete(cleanly: false)
        #expect(sink.aborted && !sink.committed)
        #expect(completed.status == 0)
        #expect(!completed.cleanly)

        let receiver = RecordingReceiver()
        var uploaded = machine(
            head("POST", "/upload"),
            routes: [
                .init("POST", "/upload", body: .upload(field: "file") { _ in RecordingSink() }) { _, _ in
                    .response(.json(["ok": .bool(true)]))
                }
            ])
        #expect(uploaded.receiveHead { _, _ in receiver }.isProceed)
        #expect(uploaded.receive("--boundary").isProceed)
        _ = uploaded.complete(cleanly: false)
        #expect(receiver.aborted)
    }

    @Test func anUploadGoesThroughItsMultipartReceiver() throws {
        let receiver = RecordingReceiver()
        let seen = Seen()
        var request = machine(
            head("POST", "/upload"),
            routes: [
                .init(
                    "POST", "/upload", body: .upload(field: "file") { _ in RecordingSink() },
                    handler: seen.record)
            ])
        let field = Mutex("")
        #expect(
            request.receiveHead { name, _ in
                field.withLock { $0 = name }
                return receiver
            }.isProceed)
        #expect(field.withLock { $0 } == "file")
        #expect(request.receive("part one").isProceed)
        #expect(request.poll().status == 200)
        #expect(receiver.consumed == Array("part one".utf8))
        guard case .stored(let filename) = try #require(seen.outcome) else {
            Issue.record("not stored")
            return
        }
        #expect(filename == "upload.bin")
        #expect(!receiver.aborted)
        #expect(request.complete(cleanly: true).bytesUploaded == 8)
    }

    @Test func aBodyModeChosenFromTheHeadMayRefuseTheBodyBeforeItIsRead() {
        let route = Router.Route(
            "PUT", "/file",
            body: .perRequest { request throws(APIError) in
                guard request.headers["content-type"] == "application/octet-stream" else {
                    throw .detail(415, "Unsupported Media Type")
                }
                return .buffered(limit: 10)
            }
        ) { _, _ in .response(.json(["ok": .bool(true)])) }
        var refused = machine(
            head("PUT", "/file", fields: [("Host", "h"), ("Content-Type", "text/plain")]), routes: [route])
        #expect(refused.receiveHead().status == 415)
        #expect(refused.complete(cleanly: true).route == "/file")

        var taken = machine(
            head("PUT", "/file", fields: [("Host", "h"), ("Content-Type", "application/octet-stream")]),
            routes: [route])
        #expect(taken.receiveHead().isProceed)
        #expect(taken.receive("12345678901").status == 413, "the chosen mode's limit applies")
    }

    // MARK: later answers

    @Test func aLaterAnswerParksTheConnectionUntilItIsReady() {
        let answer = LaterAnswer()
        var request = answer.waitingRequest()
        let suspension = FakeSuspension()
        #expect(request.poll(suspension).isProceed)
        #expect(suspension.counts == .init(suspends: 1, resumes: 0))
        answer.pending.complete(.json(["done": .bool(true)], status: 201))
        #expect(suspension.counts == .init(suspends: 1, resumes: 1))
        let action = request.poll(suspension)
        #expect(action.status == 201)
        #expect(action.text == #"{"done":true}"#)
        #expect(request.poll(suspension).isClose, "nothing is queued twice")
        #expect(request.complete(cleanly: true).status == 201)
        #expect(answer.clientGoneCalls == 0)
    }

    @Test func aLaterAnswerWhoseClientLeftClosesTheConnection() {
        let answer = LaterAnswer()
        var request = answer.waitingRequest()
        let suspension = FakeSuspension()
        #expect(request.poll(suspension).isProceed)
        answer.pending.clientGone()
        #expect(suspension.counts == .init(suspends: 1, resumes: 1), "the parked connection is resumed to be closed")
        #expect(request.poll(suspension).isClose)
        _ = request.complete(cleanly: false)
        #expect(answer.clientGoneCalls == 1)
    }

    @Test func aRequestEndingBeforeItsLaterAnswerTellsTheHandler() {
        let answer = LaterAnswer()
        var request = answer.waitingRequest()
        #expect(request.poll().isProceed)
        let completed = request.complete(cleanly: false)
        #expect(answer.clientGoneCalls == 1)
        #expect(completed.status == 0)
    }

    @Test func aStoppingServerAnswers503InsteadOfWaiting() {
        let answer = LaterAnswer()
        var request = answer.waitingRequest()
        let action = request.refuseWait()
        #expect(action.status == 503)
        #expect(action.text == #"{"detail":"Server is shutting down"}"#)
        #expect(request.complete(cleanly: true).status == 503)
    }

    // MARK: answers

    @Test func anEventStreamAnswerIsStreamed() {
        let stream = EventStream(highWater: 1 << 20)
        var request = machine(
            head("POST", "/events"),
            routes: [
                .init("POST", "/events") { _, _ in .response(.eventStream(stream)) }
            ])
        _ = request.receiveHead()
        #expect(request.poll().status == 200)
        guard case .streaming(let streaming) = request.state else {
            Issue.record("not streaming: \(request.state)")
            return
        }
        #expect(streaming === stream)
    }

    @Test func aFileAnswerCountsAsDownloadedOnlyWhenSentCompletely() {
        for cleanly in [true, false] {
            var request = machine(
                head("GET", "/file"),
                routes: [
                    .init("GET", "/file") { _, _ in
                        .response(HTTPResponse(status: 200, body: .file(fd: -1, size: 10)))
                    }
                ])
            _ = request.receiveHead()
            #expect(request.poll().status == 200)
            let completed = request.complete(cleanly: cleanly)
            #expect(completed.bytesDownloaded == (cleanly ? 10 : 0))
            #expect(completed.cleanly == cleanly)
        }
    }
}
