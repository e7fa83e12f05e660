import Dispatch

/// Per-request state, owned by libmicrohttpd's `*req_cls`: retained on the first access-handler call and released
/// once in the completion callback. Only the connection's polling thread touches it.
final class RequestContext {
    let method: String
    let path: String
    let started = DispatchTime.now()
    let match: Router.Match
    var status = 0
    var body: [UInt8] = []
    var bodyError: APIError?
    /// How the body is received, once the route (and, for `.perRequest`, the request's head) decided.
    var bodyMode: BodyMode?
    var upload: UploadReceiver?
    /// Where a `.stream` body goes.
    var sink: (any UploadSink)?
    var dispatched = false
    /// Answered from the head alone (a refusal): the body, if any, is not read.
    var earlyAnswer = false
    /// Echoed as `X-Request-Id` and logged with the request.
    let requestID = RequestID.next()
    /// Body bytes received, and the cap on streamed bodies.
    var bytesReceived = 0
    var uploadLimit: Int?
    /// Size of a file response, counted as downloaded if it was sent completely.
    var fileBytes: UInt64 = 0
    var pending: PendingResponse?
    var stream: EventStream?

    init(method: String, path: String, match: Router.Match, earlyAnswer: Bool = false) {
        self.method = method
        self.path = path
        self.match = match
        self.earlyAnswer = earlyAnswer
    }

    /// The failure to answer before reading the body, if the request was refused from its head.
    var earlyFailure: APIError? {
        guard earlyAnswer, case .failure(let error) = match else { return nil }
        return error
    }

    /// The route's pattern, a bounded label for metrics.
    var routeLabel: String {
        guard case .route(let route, _) = match else { return "unmatched" }
        return route.label
    }

    /// A request cut before its body was complete leaves nothing behind.
    deinit { sink?.abort() }

    /// Takes one chunk of the request body.
    func consume(_ chunk: UnsafeRawBufferPointer) {
        guard bodyError == nil, let bodyMode else { return }
        bytesReceived += chunk.count
        if bodyMode.isStreamed, let uploadLimit, bytesReceived > uploadLimit {
            bodyError = .uploadTooLarge(uploadLimit)
            upload = nil
            sink?.abort()
            sink = nil
            return
        }
        switch bodyMode {
        case .buffered(let limit):
            if body.count + chunk.count > limit {
                bodyError = .bodyTooLarge
                body = []
            } else {
                body.append(contentsOf: chunk)
            }
        case .upload:
            upload?.consume(chunk)
        case .stream:
            do throws(APIError) {
                try sink?.write(chunk)
            } catch {
                bodyError = error
                sink?.abort()
                sink = nil
            }
        case .perRequest:
            break
        }
    }

    /// The body is complete: commits an upload or a streamed body and says how that went; nil for a buffered body.
    func finishBody() -> UploadOutcome? {
        defer {
            upload = nil
            sink = nil
        }
        if let upload { return upload.finish() }
        guard let sink else { return nil }
        do throws(APIError) {
            try sink.commit()
        } catch {
            sink.abort()
            return .failed(error)
        }
        return .stored(filename: "")
    }
}
