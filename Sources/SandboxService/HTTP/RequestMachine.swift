import Dispatch

/// Receives a `multipart/form-data` body (libmicrohttpd's post processor behind `UploadReceiver`), so that the
/// request machine can be driven without libmicrohttpd.
protocol MultipartReceiver: AnyObject {
    func consume(_ chunk: UnsafeRawBufferPointer)
    /// The body is complete: commit the file, or say why not.
    func finish() -> UploadOutcome
    /// The request ended before its body did: leave nothing behind.
    func abort()
}

/// One request's life, from its head to libmicrohttpd's completion callback, as an explicit state machine.
///
/// libmicrohttpd calls the access handler once with the head, once per piece of body, and once more without data
/// when the body is complete (and again after every resume of a suspended connection); the completion callback ends
/// the request. Each call is a transition here that returns what to do with the connection (`Action`), so what is
/// answered from the head alone, how a body is taken and when it is refused, when the handler runs and how a
/// waited-for answer is taken are all decided here, and tested without libmicrohttpd (as `EventStream` is).
///
/// States, in order (a request may skip ahead, never go back):
/// `head` → `receivingBody` → `pending` → `responding` or `streaming` → `done`.
/// Only the connection's polling thread drives a machine.
struct RequestMachine {
    /// What the server configured: the same for every request.
    struct Policy: Sendable {
        var router: Router
        /// When set, every request but `GET /` (and `HEAD /`) must carry `Authorization: Bearer <token>`.
        var bearerToken: String?
        /// Cap on streamed (upload and file write) bodies, in bytes; nil for none.
        var maxUploadBytes: Int?
    }

    enum State {
        /// Waiting for the head; nothing is decided yet.
        case head
        /// The head was accepted; its body, if any, is coming.
        case receivingBody(Body)
        /// The handler answers later: the connection is parked (suspended) while the answer is not ready.
        case pending(PendingResponse)
        /// An answer was handed over: queued for libmicrohttpd to send, or written directly while refusing a body.
        case responding
        /// An event stream is being sent.
        case streaming(EventStream)
        /// The completion callback came.
        case done
        /// Only while a transition changes a payload in place (a copy would copy the buffered body per piece).
        case modifying
    }

    /// How an accepted head's body is taken.
    enum Body {
        /// Read and dropped: the path did not decode or matched no route, and `answer` is sent once the body is in.
        case dropped(answer: APIError)
        /// Read into memory, up to `limit` bytes.
        case buffered([UInt8], limit: Int)
        /// A `multipart/form-data` upload.
        case upload(any MultipartReceiver)
        /// Streamed into a sink as it comes.
        case stream(any UploadSink)
    }

    /// What the bridge does with the connection after a transition.
    enum Action {
        /// Go on: libmicrohttpd reads on (or the connection was parked until the answer comes).
        case proceed
        /// Queue this response.
        case queue(HTTPResponse)
        /// Refuse the body halfway: write this response to the socket at once and close the connection (see
        /// `ResponseWriter.refuse`).
        case refuse(HTTPResponse)
        /// The handler answers later: register `PendingResponse` (so a client that leaves is noticed, and shutdown
        /// waits for it), then `poll` again; or `refuseWait()` if the server is stopping.
        case wait(PendingResponse)
        /// Close the connection without an answer.
        case close
    }

    private(set) var state = State.head
    /// Echoed as `X-Request-Id` and logged with the request.
    let requestID = RequestID.next()
    private let started = DispatchTime.now()
    /// The request as its handler sees it: the path is decoded once the head is accepted.
    private var request = HTTPRequest(method: "", path: "")
    private var route: Router.Route?
    /// `Policy.maxUploadBytes`.
    private var uploadLimit: Int?
    /// Status of the last answer handed over, 0 before.
    private var status = 0
    /// Body bytes taken into an upload or a streamed body.
    private var bytesUploaded = 0
    /// Size of the file response handed over.
    private var fileBytes: UInt64 = 0

    // MARK: transitions

    /// The head is in. Closes the connection for a `Content-Length` that is not a number (libmicrohttpd 0.9.75 answers
    /// one itself after the handler's answer, so the client would read two response heads); answers a refused head
    /// before any of its body (malformed, not authenticated, too large, a body its route cannot take); otherwise
    /// starts receiving the body. `receiver` makes the receiver of a multipart upload.
    mutating func receiveHead(
        _ head: RequestHead, policy: Policy,
        receiver: (_ field: String, _ open: @escaping @Sendable (String) throws(APIError) -> any UploadSink) ->
            any MultipartReceiver
    ) -> Action {
        guard case .head = state else { return .close }
        request = HTTPRequest(method: head.method, path: head.path)
        uploadLimit = policy.maxUploadBytes
        let length = head.declaredLength
        guard length != .invalid else {
            state = .done
            return .close
        }
        if let refusal = head.refusal() { return answer(refusal.response) }
        guard let bytes = PercentDecoding.decode(head.path), !bytes.contains(0) else {
            state = .receivingBody(.dropped(answer: .detail(400, "Invalid path")))
            return .proceed
        }
        request.path = String(decoding: bytes, as: UTF8.self)
        request.headers = head.fields
        request.query = head.query
        if let token = policy.bearerToken, !isPublic,
            !(request.headers["authorization"].map { BearerToken.matches($0, expected: token) } ?? false)
        {
            return answer(APIError.detail(401, "Not authenticated", headers: [("WWW-Authenticate", "Bearer")]).response)
        }
        switch policy.router.match(method: request.method, path: request.path) {
        case .failure(let error):
            state = .receivingBody(.dropped(answer: error))
        case .route(let route, let parameters):
            self.route = route
            request.parameters = parameters
            do throws(APIError) {
                state = .receivingBody(try body(for: route.body, length: length, receiver: receiver))
            } catch {
                return answer(error.response)
            }
        }
        return .proceed
    }

    /// A piece of the body. A body over its limit, or one its sink refused, is answered at once, without reading the
    /// rest; pieces after an answer are dropped.
    mutating func receive(_ chunk: UnsafeRawBufferPointer) -> Action {
        switch state {
        case .receivingBody(.buffered(var bytes, let limit)):
            // The state lets go of the buffer first, so that `bytes` is its only owner and grows in place.
            state = .modifying
            guard bytes.count + chunk.count <= limit else { return refuse(.bodyTooLarge) }
            bytes.append(contentsOf: chunk)
            state = .receivingBody(.buffered(bytes, limit: limit))
        case .receivingBody(.upload(let receiver)):
            bytesUploaded += chunk.count
            if let error = overUploadLimit {
                receiver.abort()
                return refuse(error)
            }
            receiver.consume(chunk)
        case .receivingBody(.stream(let sink)):
            bytesUploaded += chunk.count
            do throws(APIError) {
                if let error = overUploadLimit { throw error }
                try sink.write(chunk)
            } catch {
                sink.abort()
                return refuse(error)
            }
        case .receivingBody(.dropped), .head, .pending, .responding, .streaming, .done, .modifying:
            break
        }
        return .proceed
    }

    /// A call without body data: the body is complete, so the handler runs (and answers now, or later: `.wait`);
    /// or, while waiting for a later answer, takes it if it is ready and otherwise parks the connection with `suspend`
    /// (the answer's producer calls `resume`).
    mutating func poll(suspend: () -> Void, resume: @escaping @Sendable () -> Void) -> Action {
        switch state {
        case .receivingBody(let body):
            state = .modifying
            return dispatch(body)
        case .pending(let pending):
            switch pending.takeOrPark(suspend: suspend, resume: resume) {
            case .response(let response): return answer(response)
            case .parked: return .proceed
            case .abandon: return .close
            }
        case .head, .responding, .streaming, .done, .modifying:
            return .close
        }
    }

    /// The server is stopping and will not wait for a later answer: answer 503 instead.
    mutating func refuseWait() -> Action {
        answer(APIError.detail(503, "Server is shutting down").response)
    }

    /// libmicrohttpd's completion callback: the request ended, `cleanly` when its answer was sent completely. A body
    /// cut halfway leaves nothing behind; a handler still owing an answer learns that its client went away.
    mutating func complete(cleanly: Bool, now: DispatchTime = .now()) -> CompletedRequest {
        switch state {
        case .receivingBody(.upload(let receiver)): receiver.abort()
        case .receivingBody(.stream(let sink)): sink.abort()
        case .pending(let pending): pending.requestEnded()
        default: break
        }
        state = .done
        return CompletedRequest(
            requestID: requestID, method: request.method, path: request.path, route: route?.label ?? "unmatched",
            status: status, seconds: Double(now.uptimeNanoseconds - started.uptimeNanoseconds) / 1e9,
            cleanly: cleanly, bytesUploaded: bytesUploaded, bytesDownloaded: cleanly ? fileBytes : 0)
    }

    // MARK: steps

    /// `GET /` (and `HEAD /`) needs no token: it is the health check of load balancers and probes.
    private var isPublic: Bool {
        request.path == "/" && (request.method == "GET" || request.method == "HEAD")
    }

    /// How the route takes its body, decided from the head; a thrown error is answered before the body is read.
    private func body(
        for mode: BodyMode, length: RequestHead.DeclaredLength,
        receiver: (String, @escaping @Sendable (String) throws(APIError) -> any UploadSink) -> any MultipartReceiver
    ) throws(APIError) -> Body {
        var mode = mode
        while case .perRequest(let choose) = mode { mode = try choose(request) }
        switch mode {
        case .buffered(let limit):
            if case .bytes(let count) = length, count > limit { throw .bodyTooLarge }
            return .buffered([], limit: limit)
        case .upload(let field, let open):
            try checkUploadLimit(length)
            return .upload(receiver(field, open))
        case .stream(let open):
            try checkUploadLimit(length)
            return .stream(try open())
        case .perRequest:
            return .dropped(answer: .notFound)
        }
    }

    /// A streamed body whose `Content-Length` is over the limit is refused before it is read.
    private func checkUploadLimit(_ length: RequestHead.DeclaredLength) throws(APIError) {
        guard let limit = uploadLimit, case .bytes(let count) = length, count > limit else { return }
        throw .uploadTooLarge(limit)
    }

    /// The refusal for a streamed body that went over the limit (`Transfer-Encoding: chunked` declares no length).
    private var overUploadLimit: APIError? {
        guard let limit = uploadLimit, bytesUploaded > limit else { return nil }
        return .uploadTooLarge(limit)
    }

    /// Runs the handler on the complete body.
    private mutating func dispatch(_ body: Body) -> Action {
        let outcome: UploadOutcome?
        switch body {
        case .dropped(let error):
            return answer(error.response)
        case .buffered(let bytes, _):
            request.body = bytes
            outcome = nil
        case .upload(let receiver):
            outcome = receiver.finish()
        case .stream(let sink):
            do throws(APIError) {
                try sink.commit()
                outcome = .stored(filename: "")
            } catch {
                sink.abort()
                outcome = .failed(error)
            }
        }
        guard let route else { return answer(APIError.notFound.response) }
        let reply = route.handler(request, outcome)
        request.body = []
        switch reply {
        case .response(let response):
            return answer(response)
        case .pending(let pending):
            state = .pending(pending)
            return .wait(pending)
        }
    }

    private mutating func answer(_ response: HTTPResponse) -> Action {
        status = response.status
        switch response.body {
        case .stream(let stream):
            state = .streaming(stream)
        case .file(_, _, let size):
            fileBytes = size
            state = .responding
        case .bytes:
            state = .responding
        }
        return .queue(response)
    }

    private mutating func refuse(_ error: APIError) -> Action {
        status = error.status
        state = .responding
        return .refuse(error.response)
    }
}
