import CMicroHTTPD

/// Serves requests on libmicrohttpd's polling threads: reads each head once, drives the request's `RequestMachine`
/// with libmicrohttpd's access-handler calls, carries out its actions (queue an answer, refuse a body, wait for a
/// later answer) and hands every finished request to the observers (the access log, metrics).
final class RequestPipeline: Sendable {
    let policy: RequestMachine.Policy
    let connections: Connections
    let observers: [any RequestObserver]

    init(policy: RequestMachine.Policy, connections: Connections, observers: [any RequestObserver]) {
        self.policy = policy
        self.connections = connections
        self.observers = observers
    }

    /// libmicrohttpd's access handler: the head (with `*requestContext` still nil), then each piece of body, then
    /// calls without data until an answer is queued.
    func handle(
        connection: OpaquePointer, url: UnsafePointer<CChar>, method: UnsafePointer<CChar>,
        version: UnsafePointer<CChar>, upload: UnsafePointer<CChar>?, uploadSize: UnsafeMutablePointer<Int>,
        requestContext: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    ) -> MHD_Result {
        guard let pointer = requestContext.pointee else {
            return begin(
                connection: connection, head: RequestHead(of: connection, url: url, method: method, version: version),
                requestContext: requestContext)
        }
        let context = Unmanaged<RequestContext>.fromOpaque(pointer).takeUnretainedValue()
        if uploadSize.pointee > 0 {
            let action = context.machine.receive(UnsafeRawBufferPointer(start: upload, count: uploadSize.pointee))
            uploadSize.pointee = 0
            return perform(action, for: context, on: connection)
        }
        connections.bodyReceived(on: connection)
        return poll(context, on: connection)
    }

    /// The head is in: the request starts, unless its head closes the connection at once.
    private func begin(
        connection: OpaquePointer, head: RequestHead, requestContext: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    ) -> MHD_Result {
        connections.headReceived(on: connection)
        let context = RequestContext()
        let action = context.machine.receiveHead(head, policy: policy) { field, open in
            UploadReceiver(connection: connection, field: field, open: open)
        }
        if case .close = action { return .NO }
        // Retained here, released once in `completed(_:on:cleanly:)`, libmicrohttpd's completion callback.
        requestContext.pointee = Unmanaged.passRetained(context).toOpaque()
        if case .queue = action { connections.bodyReceived(on: connection) }
        return perform(action, for: context, on: connection)
    }

    private func poll(_ context: RequestContext, on connection: OpaquePointer) -> MHD_Result {
        let handle = ConnectionHandle(raw: connection)
        return perform(
            context.machine.poll(suspend: handle.suspend, resume: handle.resume), for: context, on: connection)
    }

    private func perform(_ action: RequestMachine.Action, for context: RequestContext, on connection: OpaquePointer)
        -> MHD_Result
    {
        switch action {
        case .proceed:
            return .YES
        case .close:
            return .NO
        case .queue(let response):
            return queue(response, for: context, on: connection)
        case .refuse(let response):
            connections.bodyReceived(on: connection)
            return ResponseWriter.refuse(response, requestID: context.machine.requestID, on: connection)
        case .wait(let pending):
            let socket = CMicroHTTPD_connection_fd(connection)
            guard connections.watch(pending, of: ObjectIdentifier(context), socket: socket) else {
                return perform(context.machine.refuseWait(), for: context, on: connection)
            }
            return poll(context, on: connection)
        }
    }

    private func queue(_ response: HTTPResponse, for context: RequestContext, on connection: OpaquePointer)
        -> MHD_Result
    {
        let request = ObjectIdentifier(context)
        let socket = CMicroHTTPD_connection_fd(connection)
        if case .stream(let stream) = response.body { connections.watch(stream, of: request, socket: socket) }
        let result = ResponseWriter.queue(response, requestID: context.machine.requestID, on: connection)
        if result == .YES, case .file(let fd, let offset, let size) = response.body {
            connections.watchDownload(file: fd, end: offset + size, of: request, socket: socket)
        }
        return result
    }

    /// libmicrohttpd's completion callback: the request ended (`cleanly` if its answer was sent completely).
    func completed(_ context: RequestContext, on connection: OpaquePointer?, cleanly: Bool) {
        connections.requestEnded(ObjectIdentifier(context), on: connection)
        let request = context.machine.complete(cleanly: cleanly)
        for observer in observers { observer.requestCompleted(request) }
    }
}
