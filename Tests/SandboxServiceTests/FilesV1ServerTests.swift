import Foundation
import Glibc
import Logging
import Testing

@testable import SandboxService

/// The v1 routes of a real `SandboxServer` on 127.0.0.1 and a free port: how bodies reach the disk.
@Suite("v1 files: over HTTP", .timeLimit(.minutes(1)))
struct FilesV1ServerTests {
    private final class Server {
        let directory: TemporaryDirectory
        let server: SandboxServer
        let port: UInt16
        var root: String { server.root.path }

        init() throws {
            directory = try TemporaryDirectory("sandboxd-v1-server")
            var options = SandboxServer.Options()
            options.host = "127.0.0.1"
            options.port = 0
            options.root = directory.file("root")
            server = try SandboxServer(
                options: options, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
            port = try server.start()
        }

        deinit {
            server.shutdown()
            directory.remove()
        }

        func request(
            _ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
            chunked: Bool = false
        ) throws -> TestHTTPResponse {
            try TestHTTP.request(port: port, method, path, headers: headers, body: body, chunked: chunked)
        }

        func contents(_ relative: String) -> [UInt8]? {
            FileManager.default.contents(atPath: root + "/" + relative).map { Array($0) }
        }
    }

    private static let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }

    @Test("a raw PUT body, with Content-Length or chunked, lands as the file")
    func rawPut() throws {
        let server = try Server()
        let plain = try server.request("PUT", "/v1/files/dir%2Fplain.bin", body: Self.payload)
        #expect(plain.status == 204)
        #expect(plain.body.isEmpty)
        #expect(server.contents("dir/plain.bin") == Self.payload)
        let chunked = try server.request(
            "PUT", "/v1/files/chunked.bin", headers: [("Content-Type", "application/x-www-form-urlencoded")],
            body: Self.payload, chunked: true)
        #expect(chunked.status == 204)
        #expect(server.contents("chunked.bin") == Self.payload)
        #expect(try server.request("PUT", "/v1/files/empty.bin").status == 204)
        #expect(server.contents("empty.bin") == [])
    }

    @Test("a multipart PUT stores its file part, wherever the filename says")
    func multipartPut() throws {
        let server = try Server()
        let (contentType, body) = TestHTTP.multipart(filename: "ignored/name.bin", contents: Self.payload)
        let response = try server.request(
            "PUT", "/v1/files/target.bin?mode=0750", headers: [("Content-Type", contentType)], body: body)
        #expect(response.status == 204)
        #expect(server.contents("target.bin") == Self.payload)
        #expect(server.contents("ignored/name.bin") == nil)
        var info = stat()
        #expect(stat(server.root + "/target.bin", &info) == 0 && info.st_mode & 0o777 == 0o750)

        let (otherType, otherBody) = TestHTTP.multipart(field: "other", filename: "x", contents: [1])
        let missing = try server.request(
            "PUT", "/v1/files/missing.bin", headers: [("Content-Type", otherType)], body: otherBody)
        #expect(missing.status == 400)
        #expect(missing.json?["code"] == "INVALID_ARGUMENT")
        #expect(server.contents("missing.bin") == nil)
    }

    @Test("a refused PUT is answered before its body is read, and nothing is created")
    func refusedPut() throws {
        let server = try Server()
        for (path, status, code) in [
            ("/v1/files/f.txt?mode=999", 400, "INVALID_ARGUMENT"),
            ("/v1/files/..%2Fescape.txt", 403, "PERMISSION_DENIED"),
            ("/v1/files/", 400, "INVALID_ARGUMENT"),
        ] {
            let connection = try TestHTTPConnection(port: server.port)
            defer { connection.close() }
            // Announces a large body and sends none of it: only an answer that needs no body can arrive.
            connection.send(Array("PUT \(path) HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n".utf8))
            let response = try connection.readResponse(deadline: Deadline(seconds: 10))
            #expect(response.status == status, "\(path)")
            #expect(response.json?["code"] == .string(code), "\(path)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: server.root).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: server.directory.file("escape.txt")))
    }

    @Test("GET answers ranges from the file; HEAD gives GET's headers")
    func getAndHead() throws {
        let server = try Server()
        #expect(try server.request("PUT", "/v1/files/f.bin", body: Self.payload).status == 204)
        let whole = try server.request("GET", "/v1/files/f.bin")
        #expect(whole.status == 200)
        #expect(whole.body == Self.payload)
        #expect(whole.header("Content-Type") == "application/octet-stream")
        #expect(whole.header("Content-Length") == String(Self.payload.count))
        let head = try server.request("HEAD", "/v1/files/f.bin")
        #expect(head.status == 200)
        for name in ["Content-Type", "Content-Length", "ETag", "Last-Modified", "Accept-Ranges"] {
            #expect(head.header(name) != nil && head.header(name) == whole.header(name), "\(name)")
        }
        let part = try server.request("GET", "/v1/files/f.bin", headers: [("Range", "bytes=1000-1999")])
        #expect(part.status == 206)
        #expect(part.header("Content-Range") == "bytes 1000-1999/\(Self.payload.count)")
        #expect(part.body == Array(Self.payload[1000..<2000]))
        let tail = try server.request("GET", "/v1/files/f.bin", headers: [("Range", "bytes=-10")])
        #expect(tail.body == Array(Self.payload.suffix(10)))
        let etag = try #require(whole.header("ETag"))
        #expect(try server.request("GET", "/v1/files/f.bin", headers: [("If-None-Match", etag)]).status == 304)
    }

    @Test("DELETE removes, and the root survives")
    func delete() throws {
        let server = try Server()
        #expect(try server.request("PUT", "/v1/files/d/f.txt", body: [1]).status == 204)
        #expect(try server.request("DELETE", "/v1/files/d").status == 409)
        #expect(try server.request("DELETE", "/v1/files/d?recursive=true").status == 204)
        #expect(try server.request("DELETE", "/v1/files/d").status == 404)
        #expect(try server.request("DELETE", "/v1/files/").status == 409)
        var info = stat()
        #expect(stat(server.root, &info) == 0)
    }
}
