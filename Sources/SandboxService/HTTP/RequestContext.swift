import CMicroHTTPD
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
    var upload: UploadReceiver?
    var dispatched = false
    var pending: PendingResponse?
    var stream: EventStream?

    init(method: String, path: String, match: Router.Match) {
        self.method = method
        self.path = path
        self.match = match
    }

    /// Takes one chunk of the request body.
    func consume(_ chunk: UnsafeRawBufferPointer) {
        guard bodyError == nil, case .route(let route, _) = match else { return }
        switch route.body {
        case .buffered(let limit):
            if body.count + chunk.count > limit {
                bodyError = .bodyTooLarge
                body = []
            } else {
                body.append(contentsOf: chunk)
            }
        case .upload:
            upload?.consume(chunk)
        }
    }
}

/// A connection pointer that crosses threads. libmicrohttpd allows `MHD_resume_connection` from any thread (the
/// daemon uses an inter-thread channel); `MHD_suspend_connection` is only called from this connection's callbacks.
struct ConnectionHandle: @unchecked Sendable {
    let raw: OpaquePointer

    func suspend() { MHD_suspend_connection(raw) }
    func resume() { MHD_resume_connection(raw) }
}
