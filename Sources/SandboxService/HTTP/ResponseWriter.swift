import CMicroHTTPD
import Glibc

/// Hands `HTTPResponse`s to libmicrohttpd: builds the libmicrohttpd response for each kind of body (bytes, a file,
/// an event stream) and queues it; or, refusing a body halfway, writes the answer to the socket itself.
enum ResponseWriter {
    /// Send buffer of an event stream's socket (the kernel doubles it): enough for a fast reader on any link.
    static let streamSendBuffer = 256 * 1024

    /// Queues `response` on `connection` with `X-Request-Id: requestID` (`MHD_queue_response`).
    static func queue(_ response: HTTPResponse, requestID: String, on connection: OpaquePointer) -> MHD_Result {
        guard let created = make(response.body, on: connection) else { return .NO }
        for (name, value) in response.headers {
            MHD_add_response_header(created, name, value)
        }
        MHD_add_response_header(created, "X-Request-Id", requestID)
        let result = MHD_queue_response(connection, UInt32(response.status), created)
        MHD_destroy_response(created)
        return result
    }

    /// The libmicrohttpd response sending `body`, or nil if it could not be made (what the body owned is released).
    private static func make(_ body: HTTPResponse.Body, on connection: OpaquePointer) -> OpaquePointer? {
        switch body {
        case .bytes(let bytes) where bytes.count > 64 * 1024:
            // Large bodies are handed over without a copy: the box keeps the array's storage alive (and unchanged)
            // until libmicrohttpd calls `releaseBody`.
            let box = Unmanaged.passRetained(ByteBox(bytes))
            let created = MHD_create_response_from_buffer_with_free_callback_cls(
                bytes.count, box.takeUnretainedValue().base, HTTPServer.releaseBody, box.toOpaque())
            if created == nil { box.release() }
            return created
        case .bytes(let bytes):
            return bytes.withUnsafeBytes { buffer in
                MHD_create_response_from_buffer(
                    buffer.count, UnsafeMutableRawPointer(mutating: buffer.baseAddress), .RESPMEM_MUST_COPY)
            }
        case .file(let fd, let offset, let size):
            let created = MHD_create_response_from_fd_at_offset64(size, fd, offset)
            if created == nil { close(fd) }
            return created
        case .stream(let stream):
            let handle = ConnectionHandle(raw: connection)
            stream.attach(suspend: handle.suspend, resume: handle.resume)
            // Retained here, released once in `streamReleased` when libmicrohttpd destroys the response.
            let retained = Unmanaged.passRetained(stream).toOpaque()
            let created = MHD_create_response_from_callback(
                UInt64.max,  // MHD_SIZE_UNKNOWN: sent chunked
                16 * 1024, HTTPServer.streamReader, retained, HTTPServer.streamReleased)
            guard created != nil else {
                Unmanaged<EventStream>.fromOpaque(retained).release()
                return nil
            }
            // Linux grows a socket's send buffer up to 4 MiB (`tcp_wmem`): kernel memory, and for an event stream as
            // many bytes produced ahead for a client that may never read them. A stream needs little.
            var sendBuffer = Int32(streamSendBuffer)
            setsockopt(
                CMicroHTTPD_connection_fd(connection), SOL_SOCKET, SO_SNDBUF, &sendBuffer,
                socklen_t(MemoryLayout<Int32>.size))
            return created
        }
    }

    /// Answers a request whose body failed halfway (over a limit, or its sink failed) without reading the rest, and
    /// returns NO so that libmicrohttpd closes the connection.
    ///
    /// libmicrohttpd 0.9.75 takes a response only right after the request head or once the whole body is in
    /// (`MHD_queue_response` accepts the HEADERS_PROCESSED and FULL_REQ_RECEIVED states only), so the answer could
    /// only be queued after the body's end: a chunked body over the limit was read to its end (13 GB in a probe)
    /// before its 413. Instead the answer, with `Connection: close`, is written to the socket here (libmicrohttpd
    /// writes nothing on it while it receives a body), the socket is shut for writing, and the handler fails, so
    /// libmicrohttpd closes the connection at once. The client reads the answer; what it sends after the limit
    /// is bounded by the socket buffers and one read buffer.
    static func refuse(_ response: HTTPResponse, requestID: String, on connection: OpaquePointer) -> MHD_Result {
        let body: [UInt8]
        if case .bytes(let bytes) = response.body { body = bytes } else { body = [] }
        let reason = MHD_get_reason_phrase_for(UInt32(response.status)).map { String(cString: $0) } ?? ""
        var head = "HTTP/1.1 \(response.status) \(reason)\r\n"
        for (name, value) in response.headers { head += "\(name): \(value)\r\n" }
        head += "X-Request-Id: \(requestID)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let socket = CMicroHTTPD_connection_fd(connection)
        guard socket >= 0 else { return .NO }
        let bytes = Array(head.utf8) + body
        // The socket is non-blocking: what does not fit in its buffer now is not sent.
        bytes.withUnsafeBytes { buffer in
            var sent = 0
            while sent < buffer.count {
                let count = try? systemCall {
                    send(socket, buffer.baseAddress! + sent, buffer.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
                guard let count, count > 0 else { break }
                sent += count
            }
        }
        shutdown(socket, Int32(SHUT_WR))
        return .NO
    }
}
