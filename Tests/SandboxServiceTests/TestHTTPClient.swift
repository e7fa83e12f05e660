import Foundation
import Glibc

@testable import SandboxService

/// A parsed HTTP/1.1 response.
struct TestHTTPResponse {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    /// The first value of a header, by case-insensitive name.
    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var text: String { String(decoding: body, as: UTF8.self) }
    var json: JSONValue? { JSONValue.parse(body) }
}

/// One Server-Sent Event: its type and its `data:` lines joined with `\n`.
struct TestSSEEvent: Equatable, CustomStringConvertible {
    var event: String
    var data: String
    var description: String { "\(event): \(data)" }
}

/// A minimal HTTP/1.1 client over a blocking socket, for tests: every read is bounded by a deadline (`poll(2)`), the
/// response is parsed by hand (Content-Length, chunked, or until close), and an event stream can be read one event at
/// a time as it arrives. Not thread-safe: one test uses one connection.
final class TestHTTPConnection {
    let port: UInt16
    private var fd: Int32
    /// Bytes received and not yet consumed.
    private var buffer: [UInt8] = []
    /// Incremental chunked decoding of a streamed body: bytes left in the current chunk, or nil between chunks.
    private var chunkLeft: Int?
    private var bodyEnded = false
    /// Decoded body bytes of an event stream not yet parsed into an event.
    private var eventBytes: [UInt8] = []
    /// Comment lines (`: keep-alive`) seen on the event stream.
    private(set) var comments: [String] = []

    init(port: UInt16, host: String = "127.0.0.1") throws {
        self.port = port
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw TestFailure("connect to \(host):\(port): errno \(code)")
        }
    }

    deinit { close() }

    func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    /// Sends raw bytes. A peer that already closed is not an error here: the response may still be readable.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, msgNoSignal)
            }
            if sent < 0 {
                if errno == EINTR { continue }
                return false  // EPIPE/ECONNRESET: the server answered early and closed
            }
            offset += sent
        }
        return true
    }

    /// Sends a request. `Content-Length` is added for a body (and for POST/PUT) unless `chunked` is set, in which
    /// case the body goes in chunks of `chunkSize` bytes.
    @discardableResult
    func send(
        _ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [], chunked: Bool = false,
        chunkSize: Int = 16 * 1024, close: Bool = false
    ) -> Bool {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if chunked {
            head += "Transfer-Encoding: chunked\r\n"
        } else if !body.isEmpty || method == "POST" || method == "PUT" {
            head += "Content-Length: \(body.count)\r\n"
        }
        if close { head += "Connection: close\r\n" }
        head += "\r\n"
        var bytes = Array(head.utf8)
        if chunked {
            var offset = 0
            while offset < body.count {
                let piece = body[offset..<min(body.count, offset + chunkSize)]
                bytes += Array(String(piece.count, radix: 16).utf8) + [13, 10] + piece + [13, 10]
                offset += piece.count
            }
            bytes += Array("0\r\n\r\n".utf8)
        } else {
            bytes += body
        }
        return send(bytes)
    }

    /// Reads one whole response. `head` says the request was HEAD, so there is no body whatever the headers say.
    func readResponse(deadline: Deadline, head: Bool = false) throws -> TestHTTPResponse {
        var response = try readHead(deadline: deadline)
        if head || response.status == 204 || response.status == 304 { return response }
        if response.header("Transfer-Encoding")?.lowercased().contains("chunked") == true {
            chunkLeft = nil
            bodyEnded = false
            while let bytes = try readBodyPiece(deadline: deadline) { response.body += bytes }
        } else if let length = response.header("Content-Length").flatMap({ Int($0) }) {
            response.body = try readExactly(length, deadline: deadline)
        } else {
            while try fill(deadline: deadline) {}
            response.body = buffer
            buffer = []
        }
        return response
    }

    /// Reads the status line and headers, skipping interim 1xx responses; the body is left unread.
    func readHead(deadline: Deadline) throws -> TestHTTPResponse {
        while true {
            let statusLine = try readLine(deadline: deadline)
            let parts = statusLine.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
                throw TestFailure("malformed status line '\(statusLine)'")
            }
            var headers: [(name: String, value: String)] = []
            while true {
                let line = try readLine(deadline: deadline)
                if line.isEmpty { break }
                guard let colon = line.firstIndex(of: ":") else { throw TestFailure("malformed header '\(line)'") }
                headers.append(
                    (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
            }
            if (100..<200).contains(status) { continue }
            chunkLeft = nil
            bodyEnded = false
            eventBytes = []
            return TestHTTPResponse(status: status, headers: headers, body: [])
        }
    }

    /// The next event of a chunked event stream whose head was read with `readHead`; nil once the stream ended.
    /// Comment lines are collected in `comments`.
    func readEvent(deadline: Deadline) throws -> TestSSEEvent? {
        while true {
            if let end = Self.find([10, 10], in: eventBytes) {
                let block = String(decoding: eventBytes[..<end], as: UTF8.self)
                eventBytes.removeSubrange(..<(end + 2))
                var event = ""
                var data: [String] = []
                for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
                    if line.hasPrefix(":") {
                        comments.append(line.dropFirst().trimmingCharacters(in: .whitespaces))
                    } else if line.hasPrefix("event:") {
                        event = String(line.dropFirst(6).drop { $0 == " " })
                    } else if line.hasPrefix("data:") {
                        data.append(String(line.dropFirst(5).dropFirst(line.dropFirst(5).hasPrefix(" ") ? 1 : 0)))
                    } else {
                        throw TestFailure("unexpected event stream line '\(line)'")
                    }
                }
                if event.isEmpty && data.isEmpty { continue }
                return TestSSEEvent(event: event.isEmpty ? "message" : event, data: data.joined(separator: "\n"))
            }
            guard let bytes = try readBodyPiece(deadline: deadline) else {
                guard eventBytes.isEmpty else {
                    throw TestFailure("stream ended inside an event: '\(String(decoding: eventBytes, as: UTF8.self))'")
                }
                return nil
            }
            eventBytes += bytes
        }
    }

    /// Every remaining event, until the stream ends.
    func readAllEvents(deadline: Deadline) throws -> [TestSSEEvent] {
        var events: [TestSSEEvent] = []
        while let event = try readEvent(deadline: deadline) { events.append(event) }
        return events
    }

    /// The next decoded piece of a chunked body, as soon as any of it is here; nil after the last chunk.
    private func readBodyPiece(deadline: Deadline) throws -> [UInt8]? {
        while true {
            if bodyEnded { return nil }
            if let left = chunkLeft {
                if left == 0 {
                    let empty = try readLine(deadline: deadline)
                    guard empty.isEmpty else { throw TestFailure("chunk not followed by CRLF: '\(empty)'") }
                    chunkLeft = nil
                    continue
                }
                if buffer.isEmpty, !(try fill(deadline: deadline)) {
                    throw TestFailure("connection closed inside a chunk")
                }
                let count = min(left, buffer.count)
                let piece = Array(buffer[..<count])
                buffer.removeSubrange(..<count)
                chunkLeft = left - count
                return piece
            }
            let sizeLine = try readLine(deadline: deadline)
            let hex = sizeLine.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            guard let size = Int(hex, radix: 16) else { throw TestFailure("malformed chunk size '\(sizeLine)'") }
            if size == 0 {
                while !(try readLine(deadline: deadline)).isEmpty {}  // trailers
                bodyEnded = true
                return nil
            }
            chunkLeft = size
        }
    }

    private func readLine(deadline: Deadline) throws -> String {
        while true {
            if let end = Self.find([13, 10], in: buffer) {
                let line = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeSubrange(..<(end + 2))
                return line
            }
            guard try fill(deadline: deadline) else {
                throw TestFailure(
                    "connection closed before a full line; have '\(String(decoding: buffer, as: UTF8.self))'")
            }
        }
    }

    private func readExactly(_ count: Int, deadline: Deadline) throws -> [UInt8] {
        while buffer.count < count {
            guard try fill(deadline: deadline) else {
                throw TestFailure("connection closed after \(buffer.count) of \(count) body bytes")
            }
        }
        let bytes = Array(buffer[..<count])
        buffer.removeSubrange(..<count)
        return bytes
    }

    /// Waits for bytes and appends them to `buffer`; false at end of stream.
    private func fill(deadline: Deadline) throws -> Bool {
        guard fd >= 0 else { throw TestFailure("connection is closed") }
        while true {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = Glibc.poll(&descriptor, 1, deadline.remainingMilliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw TestFailure("poll: errno \(errno)")
            }
            if ready == 0 { throw TestFailure("timed out waiting for the server on port \(port)") }
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                if errno == ECONNRESET { return false }
                throw TestFailure("recv: errno \(errno)")
            }
            if count == 0 { return false }
            buffer += chunk[..<count]
            return true
        }
    }

    /// True once the server closed the connection (EOF or reset), within the deadline; unread bytes are discarded.
    func waitForClose(deadline: Deadline) throws -> Bool {
        while try fill(deadline: deadline) { buffer = [] }
        return true
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for index in 0...(haystack.count - needle.count)
        where haystack[index] == needle[0] && haystack[index..<(index + needle.count)].elementsEqual(needle) {
            return index
        }
        return nil
    }
}

/// One-shot requests: a new connection each, closed after the response.
enum TestHTTP {
    static func request(
        port: UInt16, _ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
        chunked: Bool = false, seconds: Double = 10
    ) throws -> TestHTTPResponse {
        let connection = try TestHTTPConnection(port: port)
        defer { connection.close() }
        connection.send(method, path, headers: headers, body: body, chunked: chunked, close: true)
        return try connection.readResponse(deadline: Deadline(seconds: seconds), head: method == "HEAD")
    }

    static func get(port: UInt16, _ path: String) throws -> TestHTTPResponse {
        try request(port: port, "GET", path)
    }

    /// `POST` of a JSON body.
    static func post(port: UInt16, _ path: String, json: String, seconds: Double = 10) throws -> TestHTTPResponse {
        try request(
            port: port, "POST", path, headers: [("Content-Type", "application/json")], body: Array(json.utf8),
            seconds: seconds)
    }

    /// A `multipart/form-data` body with one file part, as `curl -F` builds it.
    static func multipart(
        field: String = "file", filename: String, contents: [UInt8], boundary: String = "sandboxd-test-boundary"
    ) -> (contentType: String, body: [UInt8]) {
        var body = Array("--\(boundary)\r\n".utf8)
        body += Array(
            "Content-Disposition: form-data; name=\"\(field)\"; filename=\"\(filename)\"\r\n".utf8)
        body += Array("Content-Type: application/octet-stream\r\n\r\n".utf8)
        body += contents
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        return ("multipart/form-data; boundary=\(boundary)", body)
    }
}

/// `MSG_NOSIGNAL`: a write to a connection the server closed returns EPIPE instead of raising SIGPIPE.
private let msgNoSignal = Int32(0x4000)
