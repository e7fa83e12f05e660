import CMicroHTTPD
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
        let pipeline = Unmanaged<RequestPipeline>.fromOpaque(cls).takeUnretainedValue()
        return pipeline.handle(
            connection: connection, url: url, method: method, version: version, upload: uploadData,
            uploadSize: uploadDataSize, requestContext: requestContext)
    }

    static let completedHandler: MHD_RequestCompletedCallback = { cls, connection, requestContext, termination in
        guard let cls, let requestContext, let pointer = requestContext.pointee else { return }
        requestContext.pointee = nil
        let pipeline = Unmanaged<RequestPipeline>.fromOpaque(cls).takeUnretainedValue()
        // The release matching the retain in `RequestPipeline.begin`.
        let context = Unmanaged<RequestContext>.fromOpaque(pointer).takeRetainedValue()
        pipeline.completed(context, on: connection, cleanly: termination == .REQUEST_TERMINATED_COMPLETED_OK)
    }

    /// Leaves URLs percent-encoded: sandboxd decodes them itself, exactly once, so that `%00` is refused instead of
    /// silently cutting the C string libmicrohttpd would hand over.
    static let keepEscaped: CMicroHTTPD_UnescapeCallback = { _, _, string in
        guard let string else { return 0 }
        return strlen(string)
    }

    /// Sees the request target before libmicrohttpd cuts it into path and query. Returns the request's initial
    /// `*req_cls`: none.
    static let noteRequestTarget: CMicroHTTPD_URILogCallback = { _, uri, connection in
        guard let uri, let connection else { return nil }
        RequestHead.keepTarget(uri, on: connection)
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

    static let acceptPolicy: MHD_AcceptPolicyCallback = { cls, _, _ in
        guard let cls else { return .YES }
        let connections = Unmanaged<Connections>.fromOpaque(cls).takeUnretainedValue()
        return connections.admitsConnection() ? .YES : .NO
    }

    static let connectionNotified: MHD_NotifyConnectionCallback = { cls, connection, _, code in
        guard let cls, let connection else { return }
        let connections = Unmanaged<Connections>.fromOpaque(cls).takeUnretainedValue()
        if code == .CONNECTION_NOTIFY_STARTED {
            connections.opened(connection, socket: CMicroHTTPD_connection_fd(connection))
        } else {
            connections.closed(connection)
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

    /// Releases the body retained when its response was created (`ResponseWriter`).
    static let releaseBody: MHD_ContentReaderFreeCallback = { cls in
        guard let cls else { return }
        Unmanaged<ByteBox>.fromOpaque(cls).release()
    }

    /// Releases the stream retained when its response was created (`ResponseWriter`).
    static let streamReleased: MHD_ContentReaderFreeCallback = { cls in
        guard let cls else { return }
        let stream = Unmanaged<EventStream>.fromOpaque(cls).takeRetainedValue()
        stream.responseReleased()
    }

    /// One header field of `RequestHead(of:url:method:version:)`.
    static let collectField: MHD_KeyValueIterator = { cls, _, key, value in
        guard let cls, let key else { return .YES }
        Unmanaged<FieldCollector>.fromOpaque(cls).takeUnretainedValue().add(key: key, value: value)
        return .YES
    }

    /// One query argument of `RequestHead(of:url:method:version:)`.
    static let collectQueryArgument: MHD_KeyValueIterator = { cls, _, key, value in
        guard let cls, let key else { return .YES }
        Unmanaged<QueryCollector>.fromOpaque(cls).takeUnretainedValue().add(key: key, value: value)
        return .YES
    }
}
