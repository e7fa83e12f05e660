import CMicroHTTPD
import Dispatch
import FoundationEssentials
import Glibc
import Logging

// libmicrohttpd's callbacks. Each is a non-capturing closure that recovers its Swift object from the `void *`
// context and calls one method; the logic lives in those methods.
extension HTTPServer {
    static let accessHandler: MHD_AccessHandlerCallback = {
        cls, connection, url, method, version, uploadData, uploadDataSize, requestContext in
        guard let cls, let connection, let url, let method, let version, let uploadDataSize, let requestContext else {
            return .NO
        }
        let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
        return server.handle(
            connection: connection, url: url, method: method, version: version, upload: uploadData,
            uploadSize: uploadDataSize, requestContext: requestContext)
    }

    static let completedHandler: MHD_RequestCompletedCallback = { cls, connection, requestContext, termination in
        guard let cls, let requestContext, let pointer = requestContext.pointee else { return }
        requestContext.pointee = nil
        let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
        if let connection { server.connection(connection, waitsForRequest: true) }
        let context = Unmanaged<RequestContext>.fromOpaque(pointer).takeRetainedValue()
        server.completed(context, cleanly: termination == .REQUEST_TERMINATED_COMPLETED_OK)
    }

    /// Leaves URLs percent-encoded: sandboxd decodes them itself, exactly once, so that `%00` is refused instead of
    /// silently cutting the C string libmicrohttpd would hand over.
    static let keepEscaped: CMicroHTTPD_UnescapeCallback = { _, _, string in
        guard let string else { return 0 }
        return strlen(string)
    }

    /// Keeps the request target, before libmicrohttpd cuts it into path and query, if it is valid as far as it can be
    /// seen here (`RequestHead.isValidTarget`). libmicrohttpd hands over C strings, so a NUL byte sent in the target
    /// would silently end it; `head(of:url:version:)` finds such a NUL by the length kept here. The target is kept as
    /// the connection's one nameless POSTDATA value, a kind sandboxd has no other use for (it lives in the request's
    /// pool).
    static let noteRequestTarget: CMicroHTTPD_URILogCallback = { _, uri, connection in
        guard let uri, let connection else { return nil }
        let length = strlen(uri)
        if RequestHead.isValidTarget(UnsafeRawBufferPointer(start: uri, count: length)) {
            _ = MHD_set_connection_value_n(connection, .POSTDATA_KIND, nil, 0, uri, length)
        }
        return nil
    }

    /// libmicrohttpd's own diagnostics (refused connections at the limit, malformed requests, timeouts), at most one
    /// line per second for each message format: a failing `accept` repeats its message as fast as it retries.
    static let logError: MHD_LogCallback = { cls, format, arguments in
        guard let cls, let format, let arguments else { return }
        var buffer = [CChar](repeating: 0, count: 512)
        _ = vsnprintf(&buffer, buffer.count, format, arguments)
        let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
        let message = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        server.throttle.warning(
            "libmicrohttpd:" + String(cString: format), "libmicrohttpd: \(message.trimmingWhitespace())")
    }

    /// Refuses a new connection (libmicrohttpd closes it at once) when `--max-connections` are open.
    static let acceptPolicy: MHD_AcceptPolicyCallback = { cls, _, _ in
        guard let cls else { return .YES }
        let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
        guard server.openConnections >= server.configuration.connectionLimit else { return .YES }
        server.throttle.warning(
            "connection limit", "refused a connection: \(server.configuration.connectionLimit) connections are open")
        return .NO
    }

    static let connectionNotified: MHD_NotifyConnectionCallback = { cls, connection, _, code in
        guard let cls, let connection else { return }
        let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
        if code == .CONNECTION_NOTIFY_STARTED {
            server.connectionOpened(connection, socket: CMicroHTTPD_connection_fd(connection))
        } else {
            server.connectionClosed(connection)
        }
    }

    /// Content reader of event streams: bytes, or park (return 0 after suspending), or end.
    static let streamReader: MHD_ContentReaderCallback = { cls, _, buffer, max in
        guard let cls, let buffer else { return -1 }
        let stream = Unmanaged<EventStream>.fromOpaque(cls).takeUnretainedValue()
        switch stream.read(into: UnsafeMutableRawBufferPointer(start: buffer, count: max)) {
        case .bytes(let count): return count
        case .parked: return 0
        case .end: return -1  // MHD_CONTENT_READER_END_OF_STREAM
        case .abort: return -2  // MHD_CONTENT_READER_END_WITH_ERROR: libmicrohttpd closes the connection
        }
    }

    /// Releases the body retained when its response was created.
    static let releaseBody: MHD_ContentReaderFreeCallback = { cls in
        guard let cls else { return }
        Unmanaged<ByteBox>.fromOpaque(cls).release()
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
        let name = box.decodeKey(String(cString: key))
        // A repeated header keeps its first value, as `MHD_lookup_connection_value` and Starlette do.
        if box.keepsFirst && box.values[name] != nil { return .YES }
        box.values[name] = value.map { box.decodeValue(String(cString: $0)) } ?? ""
        return .YES
    }

    private final class ValueBox {
        var values: [String: String] = [:]
        /// Header names are lower-cased and their values kept as sent; query keys and values are percent-decoded
        /// (NUL bytes become U+FFFD).
        let decodeKey: (String) -> String
        let decodeValue: (String) -> String
        let keepsFirst: Bool

        init(kind: MHD_ValueKind) {
            keepsFirst = kind == .HEADER_KIND
            let percentDecode = { String(decoding: PercentDecoding.decode($0) ?? [], as: UTF8.self) }
            decodeKey = kind == .HEADER_KIND ? { $0.lowercased() } : percentDecode
            decodeValue = kind == .HEADER_KIND ? { $0 } : percentDecode
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
        version: UnsafePointer<CChar>, upload: UnsafePointer<CChar>?, uploadSize: UnsafeMutablePointer<Int>,
        requestContext: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    ) -> MHD_Result {
        guard let pointer = requestContext.pointee else {
            self.connection(connection, waitsForRequest: false)
            // libmicrohttpd 0.9.75 answers a Content-Length it cannot parse itself, after the handler's answer, so the
            // client would read two response heads; closing without an answer is the clean failure.
            guard Self.contentLengthIsValid(connection) else { return .NO }
            let context: RequestContext
            if let refusal = Self.head(of: connection, url: url, version: version).refusal() {
                context = RequestContext(
                    method: String(cString: method), path: String(cString: url), match: .failure(refusal),
                    earlyAnswer: true)
            } else {
                context = begin(connection: connection, url: String(cString: url), method: String(cString: method))
            }
            requestContext.pointee = Unmanaged.passRetained(context).toOpaque()
            if let error = context.bodyError ?? context.earlyFailure, !context.dispatched {
                // Refused from the head alone (malformed, too large, not authenticated): answered before any body.
                context.dispatched = true
                connectionReceivedBody(connection)
                return queue(error.response, on: connection, for: context)
            }
            return .YES
        }
        let context = Unmanaged<RequestContext>.fromOpaque(pointer).takeUnretainedValue()
        if uploadSize.pointee > 0 {
            context.consume(UnsafeRawBufferPointer(start: upload, count: uploadSize.pointee))
            uploadSize.pointee = 0
            if let error = context.bodyError, !context.dispatched {
                return refuseInBody(error, on: connection, for: context)
            }
            return .YES
        }
        if !context.dispatched {
            context.dispatched = true
            connectionReceivedBody(connection)
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
        switch pending.takeOrPark(suspend: handle.suspend, resume: handle.resume) {
        case .response(let response): return queue(response, on: connection, for: context)
        case .parked: return .YES
        case .abandon: return .NO  // libmicrohttpd closes the connection
        }
    }

    /// Answers a request whose body failed halfway (over a limit, or its sink failed) without reading the rest.
    ///
    /// libmicrohttpd 0.9.75 takes a response only right after the request head or once the whole body is in
    /// (`MHD_queue_response` accepts the HEADERS_PROCESSED and FULL_REQ_RECEIVED states only), so the answer could
    /// only be queued after the body's end: a chunked body over the limit was read to its end (13 GB in a probe)
    /// before its 413. Instead the answer, with `Connection: close`, is written to the socket here (libmicrohttpd
    /// writes nothing on it while it receives a body), the socket is shut for writing, and the handler fails, so
    /// libmicrohttpd closes the connection at once. The client reads the answer; what it sends after the limit
    /// is bounded by the socket buffers and one read buffer.
    private func refuseInBody(_ error: APIError, on connection: OpaquePointer, for context: RequestContext)
        -> MHD_Result
    {
        context.dispatched = true
        connectionReceivedBody(connection)
        let response = error.response
        context.status = response.status
        let body: [UInt8]
        if case .bytes(let bytes) = response.body { body = bytes } else { body = [] }
        let reason = MHD_get_reason_phrase_for(UInt32(response.status)).map { String(cString: $0) } ?? ""
        var head = "HTTP/1.1 \(response.status) \(reason)\r\n"
        for (name, value) in response.headers { head += "\(name): \(value)\r\n" }
        head += "X-Request-Id: \(context.requestID)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let socket = CMicroHTTPD_connection_fd(connection)
        guard socket >= 0 else { return .NO }
        var bytes = Array(head.utf8) + body
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeMutableBytes {
                send(socket, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if count > 0 {
                sent += count
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        bytes = []
        shutdown(socket, Int32(SHUT_WR))
        return .NO
    }

    private func begin(connection: OpaquePointer, url: String, method: String) -> RequestContext {
        guard let bytes = PercentDecoding.decode(url), !bytes.contains(0) else {
            return RequestContext(method: method, path: url, match: .failure(.detail(400, "Invalid path")))
        }
        let path = String(decoding: bytes, as: UTF8.self)
        if let token = configuration.bearerToken, !(path == "/" && (method == "GET" || method == "HEAD")) {
            let given = MHD_lookup_connection_value(connection, .HEADER_KIND, "Authorization").map {
                String(cString: $0)
            }
            guard let given, BearerToken.matches(given, expected: token) else {
                let error = APIError.detail(401, "Not authenticated", headers: [("WWW-Authenticate", "Bearer")])
                return RequestContext(method: method, path: path, match: .failure(error), earlyAnswer: true)
            }
        }
        let match = router.match(method: method, path: path)
        let context = RequestContext(method: method, path: path, match: match)
        context.uploadLimit = configuration.maxUploadBytes
        guard case .route(let route, let parameter) = match else { return context }
        var mode = route.body
        do throws(APIError) {
            while case .perRequest(let choose) = mode {
                mode = try choose(
                    HTTPRequest(
                        method: method, path: path, pathParameter: parameter,
                        headers: values(of: connection, kind: .HEADER_KIND),
                        query: values(of: connection, kind: .GET_ARGUMENT_KIND)))
            }
            switch mode {
            case .buffered(let limit):
                let length = MHD_lookup_connection_value(connection, .HEADER_KIND, "Content-Length")
                    .flatMap { Int(String(cString: $0)) }
                if let length, length > limit { context.bodyError = .bodyTooLarge }
            case .upload(let field, let open):
                try Self.checkDeclaredLength(connection, limit: configuration.maxUploadBytes)
                context.upload = UploadReceiver(connection: connection, field: field, open: open)
            case .stream(let open):
                try Self.checkDeclaredLength(connection, limit: configuration.maxUploadBytes)
                context.sink = try open()
            case .perRequest:
                break
            }
        } catch {
            context.bodyError = error
            context.earlyAnswer = true
        }
        context.bodyMode = mode
        return context
    }

    /// The request's head for `RequestHead`'s checks: every header field, repeats included, and whether the target
    /// arrived whole. libmicrohttpd wrote a NUL over the space that ended the target, and `url` and the kept target
    /// both start where the target did, so the target held no NUL of its own exactly when the version begins right
    /// after the kept length.
    private static func head(
        of connection: OpaquePointer, url: UnsafePointer<CChar>, version: UnsafePointer<CChar>
    ) -> RequestHead {
        var target: UnsafePointer<CChar>?
        var length = 0
        let kept = MHD_lookup_connection_value_n(connection, .POSTDATA_KIND, nil, 0, &target, &length) == .YES
        let box = FieldBox()
        withExtendedLifetime(box) {
            _ = MHD_get_connection_values(
                connection, .HEADER_KIND, HTTPServer.collectField, Unmanaged.passUnretained(box).toOpaque())
        }
        return RequestHead(
            version: String(cString: version), targetIsValid: kept && target == url && url + length + 1 == version,
            fields: box.fields)
    }

    private final class FieldBox {
        var fields: [(name: [UInt8], value: [UInt8])] = []
    }

    private static let collectField: MHD_KeyValueIterator = { cls, _, key, value in
        guard let cls, let key else { return .YES }
        let box = Unmanaged<FieldBox>.fromOpaque(cls).takeUnretainedValue()
        let bytes = { (text: UnsafePointer<CChar>) in Array(UnsafeRawBufferPointer(start: text, count: strlen(text))) }
        box.fields.append((bytes(key), value.map(bytes) ?? []))
        return .YES
    }

    /// False for a `Content-Length` that is not a plain decimal number of at most 18 digits.
    private static func contentLengthIsValid(_ connection: OpaquePointer) -> Bool {
        guard let raw = MHD_lookup_connection_value(connection, .HEADER_KIND, "Content-Length") else { return true }
        let text = String(cString: raw).trimmingWhitespace()
        return !text.isEmpty && text.utf8.count <= 18 && text.utf8.allSatisfy { (48...57).contains($0) }
    }

    /// A body whose `Content-Length` is over the limit is refused before it is read.
    private static func checkDeclaredLength(_ connection: OpaquePointer, limit: Int?) throws(APIError) {
        guard let limit else { return }
        let length = MHD_lookup_connection_value(connection, .HEADER_KIND, "Content-Length")
            .flatMap { Int(String(cString: $0)) }
        if let length, length > limit { throw APIError.uploadTooLarge(limit) }
    }

    private func dispatch(_ context: RequestContext, connection: OpaquePointer) -> Reply {
        switch context.match {
        case .failure(let error): return .response(error.response)
        case .route(let route, let parameter):
            if let error = context.bodyError { return .response(error.response) }
            let outcome = context.finishBody()
            let request = HTTPRequest(
                method: context.method, path: context.path, pathParameter: parameter,
                headers: values(of: connection, kind: .HEADER_KIND),
                query: values(of: connection, kind: .GET_ARGUMENT_KIND), body: context.body)
            context.body = []
            return route.handler(request, outcome)
        }
    }

    /// Send buffer of an event stream's socket (the kernel doubles it): enough for a fast reader on any link.
    static let streamSendBuffer = 256 * 1024

    private func queue(_ response: HTTPResponse, on connection: OpaquePointer, for context: RequestContext)
        -> MHD_Result
    {
        context.status = response.status
        let created: OpaquePointer?
        switch response.body {
        case .bytes(let bytes) where bytes.count > 64 * 1024:
            // Large bodies are handed over without a copy: the box keeps the array's storage alive (and unchanged)
            // until libmicrohttpd calls `releaseBody`.
            let box = Unmanaged.passRetained(ByteBox(bytes))
            created = MHD_create_response_from_buffer_with_free_callback_cls(
                bytes.count, box.takeUnretainedValue().base, HTTPServer.releaseBody, box.toOpaque())
            if created == nil { box.release() }
        case .bytes(let bytes):
            created = bytes.withUnsafeBytes { buffer in
                MHD_create_response_from_buffer(
                    buffer.count, UnsafeMutableRawPointer(mutating: buffer.baseAddress), .RESPMEM_MUST_COPY)
            }
        case .file(let fd, let offset, let size):
            created = MHD_create_response_from_fd_at_offset64(size, fd, offset)
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
                let socket = CMicroHTTPD_connection_fd(connection)
                // Linux grows a socket's send buffer up to 4 MiB (`tcp_wmem`): kernel memory, and for an event
                // stream as many bytes produced ahead for a client that may never read them. A stream needs little.
                var sendBuffer = Int32(Self.streamSendBuffer)
                setsockopt(socket, SOL_SOCKET, SO_SNDBUF, &sendBuffer, socklen_t(MemoryLayout<Int32>.size))
                register(stream, socket: socket)
            }
        }
        guard let created else { return .NO }
        for (name, value) in response.headers {
            MHD_add_response_header(created, name, value)
        }
        MHD_add_response_header(created, "X-Request-Id", context.requestID)
        let result = MHD_queue_response(connection, UInt32(response.status), created)
        MHD_destroy_response(created)
        if result == .YES, case .file(let fd, let offset, let size) = response.body {
            context.fileBytes = size
            registerDownload(context, file: fd, socket: CMicroHTTPD_connection_fd(connection), end: offset + size)
        }
        return result
    }

    private func completed(_ context: RequestContext, cleanly: Bool) {
        if let pending = context.pending {
            pending.requestEnded()
            unregister(pending)
        }
        if let stream = context.stream { unregister(stream) }
        if context.fileBytes > 0 { unregisterDownload(context) }
        let request = CompletedRequest(
            requestID: context.requestID, method: context.method, path: context.path, route: context.routeLabel,
            status: context.status,
            seconds: Double(DispatchTime.now().uptimeNanoseconds - context.started.uptimeNanoseconds) / 1e9,
            cleanly: cleanly, bytesUploaded: context.bodyMode.isStreamed ? context.bytesReceived : 0,
            bytesDownloaded: cleanly ? context.fileBytes : 0)
        for observer in observers { observer.requestCompleted(request) }
    }
}
