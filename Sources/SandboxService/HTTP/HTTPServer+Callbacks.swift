import CMicroHTTPD
import Dispatch
import Glibc
import Logging

// libmicrohttpd's callbacks. Each is a non-capturing closure that recovers its Swift object from the `void *`
// context and calls one method; the logic lives in those methods.
extension HTTPServer {
    static let accessHandler: MHD_AccessHandlerCallback = {
        cls, connection, url, method, _, uploadData, uploadDataSize, requestContext in
        guard let cls, let connection, let url, let method, let uploadDataSize, let requestContext else {
            return .NO
        }
        let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
        return server.handle(
            connection: connection, url: url, method: method, upload: uploadData, uploadSize: uploadDataSize,
            requestContext: requestContext)
    }

    static let completedHandler: MHD_RequestCompletedCallback = { cls, _, requestContext, termination in
        guard let cls, let requestContext, let pointer = requestContext.pointee else { return }
        requestContext.pointee = nil
        let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
        let context = Unmanaged<RequestContext>.fromOpaque(pointer).takeRetainedValue()
        server.completed(context, cleanly: termination == .REQUEST_TERMINATED_COMPLETED_OK)
    }

    /// Leaves URLs percent-encoded: sandboxd decodes them itself, exactly once, so that `%00` is refused instead of
    /// silently cutting the C string libmicrohttpd would hand over.
    static let keepEscaped: CMicroHTTPD_UnescapeCallback = { _, _, string in
        guard let string else { return 0 }
        return strlen(string)
    }

    /// Content reader of event streams: bytes, or park (return 0 after suspending), or end.
    static let streamReader: MHD_ContentReaderCallback = { cls, _, buffer, max in
        guard let cls, let buffer else { return -1 }
        let stream = Unmanaged<EventStream>.fromOpaque(cls).takeUnretainedValue()
        switch stream.read(into: UnsafeMutableRawBufferPointer(start: buffer, count: max)) {
        case .bytes(let count): return count
        case .parked: return 0
        case .end: return -1  // MHD_CONTENT_READER_END_OF_STREAM
        }
    }

    /// Releases the stream retained when its response was created.
    static let streamReleased: MHD_ContentReaderFreeCallback = { cls in
        guard let cls else { return }
        let stream = Unmanaged<EventStream>.fromOpaque(cls).takeRetainedValue()
        stream.responseReleased()
    }

    private static let collectValue: MHD_KeyValueIterator = { cls, _, key, value in
        guard let cls, let key else { return .YES }
        let box = Unmanaged<ValueBox>.fromOpaque(cls).takeUnretainedValue()
        box.values[box.decode(String(cString: key))] = value.map { box.decode(String(cString: $0)) } ?? ""
        return .YES
    }

    private final class ValueBox {
        var values: [String: String] = [:]
        /// Header names are lower-cased; query keys and values are percent-decoded (NUL bytes become U+FFFD).
        let decode: (String) -> String

        init(kind: MHD_ValueKind) {
            decode =
                kind == .HEADER_KIND
                ? { $0.lowercased() } : { String(decoding: PercentDecoding.decode($0) ?? [], as: UTF8.self) }
        }
    }

    /// Header or query values of a connection (`MHD_get_connection_values`); header names are lower-cased.
    private func values(of connection: OpaquePointer, kind: MHD_ValueKind) -> [String: String] {
        let box = ValueBox(kind: kind)
        withExtendedLifetime(box) {
            _ = MHD_get_connection_values(
                connection, kind, HTTPServer.collectValue, Unmanaged.passUnretained(box).toOpaque())
        }
        return box.values
    }

    func handle(
        connection: OpaquePointer, url: UnsafePointer<CChar>, method: UnsafePointer<CChar>,
        upload: UnsafePointer<CChar>?, uploadSize: UnsafeMutablePointer<Int>,
        requestContext: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    ) -> MHD_Result {
        guard let pointer = requestContext.pointee else {
            let context = begin(connection: connection, url: String(cString: url), method: String(cString: method))
            requestContext.pointee = Unmanaged.passRetained(context).toOpaque()
            if let error = context.bodyError, context.body.isEmpty, !context.dispatched {
                // Content-Length already says the body is too large: answer before reading it.
                context.dispatched = true
                return queue(error.response, on: connection, for: context)
            }
            return .YES
        }
        let context = Unmanaged<RequestContext>.fromOpaque(pointer).takeUnretainedValue()
        if uploadSize.pointee > 0 {
            context.consume(UnsafeRawBufferPointer(start: upload, count: uploadSize.pointee))
            uploadSize.pointee = 0
            return .YES
        }
        if !context.dispatched {
            context.dispatched = true
            switch dispatch(context, connection: connection) {
            case .response(let response): return queue(response, on: connection, for: context)
            case .pending(let pending):
                guard register(pending, socket: CMicroHTTPD_connection_fd(connection)) else {
                    return queue(APIError.detail(503, "Server is shutting down").response, on: connection, for: context)
                }
                context.pending = pending
            }
        }
        guard let pending = context.pending else { return .NO }
        let handle = ConnectionHandle(raw: connection)
        guard let response = pending.takeOrPark(suspend: handle.suspend, resume: handle.resume) else { return .YES }
        return queue(response, on: connection, for: context)
    }

    private func begin(connection: OpaquePointer, url: String, method: String) -> RequestContext {
        guard let bytes = PercentDecoding.decode(url), !bytes.contains(0) else {
            return RequestContext(method: method, path: url, match: .failure(.detail(400, "Invalid path")))
        }
        let path = String(decoding: bytes, as: UTF8.self)
        let match = router.match(method: method, path: path)
        let context = RequestContext(method: method, path: path, match: match)
        guard case .route(let route, _) = match else { return context }
        switch route.body {
        case .buffered(let limit):
            let length = MHD_lookup_connection_value(connection, .HEADER_KIND, "Content-Length")
                .flatMap { Int(String(cString: $0)) }
            if let length, length > limit { context.bodyError = .bodyTooLarge }
        case .upload(let field, let open):
            context.upload = UploadReceiver(connection: connection, field: field, open: open)
        }
        return context
    }

    private func dispatch(_ context: RequestContext, connection: OpaquePointer) -> Reply {
        switch context.match {
        case .failure(let error): return .response(error.response)
        case .route(let route, let parameter):
            if let error = context.bodyError { return .response(error.response) }
            let outcome = context.upload?.finish()
            context.upload = nil
            let request = HTTPRequest(
                method: context.method, path: context.path, pathParameter: parameter,
                headers: values(of: connection, kind: .HEADER_KIND),
                query: values(of: connection, kind: .GET_ARGUMENT_KIND), body: context.body)
            context.body = []
            return route.handler(request, outcome)
        }
    }

    private func queue(_ response: HTTPResponse, on connection: OpaquePointer, for context: RequestContext)
        -> MHD_Result
    {
        context.status = response.status
        let created: OpaquePointer?
        switch response.body {
        case .bytes(let bytes):
            created = bytes.withUnsafeBytes { buffer in
                MHD_create_response_from_buffer(
                    buffer.count, UnsafeMutableRawPointer(mutating: buffer.baseAddress), .RESPMEM_MUST_COPY)
            }
        case .file(let fd, let size):
            created = MHD_create_response_from_fd64(size, fd)
            if created == nil { close(fd) }
        case .stream(let stream):
            let handle = ConnectionHandle(raw: connection)
            stream.attach(suspend: handle.suspend, resume: handle.resume)
            // Retained here, released once in `streamReleased` when libmicrohttpd destroys the response.
            let retained = Unmanaged.passRetained(stream).toOpaque()
            created = MHD_create_response_from_callback(
                UInt64.max,  // MHD_SIZE_UNKNOWN: sent chunked
                16 * 1024, HTTPServer.streamReader, retained, HTTPServer.streamReleased)
            if created == nil {
                Unmanaged<EventStream>.fromOpaque(retained).release()
            } else {
                context.stream = stream
                register(stream, socket: CMicroHTTPD_connection_fd(connection))
            }
        }
        guard let created else { return .NO }
        for (name, value) in response.headers {
            MHD_add_response_header(created, name, value)
        }
        let result = MHD_queue_response(connection, UInt32(response.status), created)
        MHD_destroy_response(created)
        return result
    }

    private func completed(_ context: RequestContext, cleanly: Bool) {
        if let pending = context.pending {
            pending.requestEnded()
            unregister(pending)
        }
        if let stream = context.stream { unregister(stream) }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - context.started.uptimeNanoseconds) / 1e6
        let status = context.status == 0 ? "-" : String(context.status)
        let duration = String(format: "%.1fms", elapsed)
        logger.info("\(context.method) \(context.path) \(status) \(duration)\(cleanly ? "" : " (connection closed)")")
    }
}

/// An IPv4 or IPv6 listen address parsed from text.
struct SocketAddress {
    private var storage = sockaddr_storage()
    let isIPv6: Bool

    init(host: String, port: UInt16) throws {
        if host.contains(":") {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, host, &address.sin6_addr) == 1 else {
                throw HTTPServer.StartError.invalidHost(host)
            }
            isIPv6 = true
            storage = Self.store(address)
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &address.sin_addr) == 1 else {
                throw HTTPServer.StartError.invalidHost(host)
            }
            isIPv6 = false
            storage = Self.store(address)
        }
    }

    private static func store<A>(_ address: A) -> sockaddr_storage {
        var storage = sockaddr_storage()
        withUnsafeBytes(of: address) { source in
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) }
        }
        return storage
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>) -> R) -> R {
        withUnsafeBytes(of: storage) { body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self)) }
    }
}
