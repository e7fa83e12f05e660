import Dispatch
import Foundation
import Glibc
import Logging
import Testing

@testable import SandboxService

/// A real `SandboxServer` on 127.0.0.1 and a free port, with its own root in a fresh temp dir.
private final class TestServer {
    let directory: TemporaryDirectory
    let server: SandboxServer
    let port: UInt16
    private var stopped = false

    var root: String { server.root.path }

    init(maxTimeout: Double = 30, shutdownTimeout: Double = 10) throws {
        directory = try TemporaryDirectory("sandboxd-server")
        var options = SandboxServer.Options()
        options.host = "127.0.0.1"
        options.port = 0
        options.root = directory.file("root")
        options.maxTimeout = maxTimeout
        options.shutdownTimeout = shutdownTimeout
        server = try SandboxServer(options: options, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        port = try server.start()
    }

    func shutdown() {
        guard !stopped else { return }
        stopped = true
        server.shutdown()
    }

    func get(_ path: String) throws -> TestHTTPResponse { try TestHTTP.get(port: port, path) }

    func post(_ path: String, json: String, seconds: Double = 10) throws -> TestHTTPResponse {
        try TestHTTP.post(port: port, path, json: json, seconds: seconds)
    }

    func execute(_ command: String, timeout: Double? = nil) throws -> JSONValue? {
        var body: JSONValue = ["command": .string(command)]
        if let timeout, case .object(let members) = body { body = .object(members + [("timeout", .number(timeout))]) }
        let response = try post("/execute", json: String(decoding: body.encoded(), as: UTF8.self))
        #expect(response.status == 200, "\(response.text)")
        return response.json
    }

    /// Opens `/execute/stream` for `command` and reads the response head; events are read from the connection.
    func openStream(_ command: String) throws -> TestHTTPConnection {
        let connection = try TestHTTPConnection(port: port)
        let body: JSONValue = ["command": .string(command)]
        connection.send(
            "POST", "/execute/stream", headers: [("Content-Type", "application/json")], body: body.encoded())
        let head = try connection.readHead(deadline: Deadline(seconds: 10))
        #expect(head.status == 200)
        #expect(head.header("Content-Type")?.hasPrefix("text/event-stream") == true)
        return connection
    }

    /// Every event of one `/execute/stream` request.
    func stream(_ command: String, seconds: Double = 10) throws -> [TestSSEEvent] {
        let connection = try openStream(command)
        defer { connection.close() }
        return try connection.readAllEvents(deadline: Deadline(seconds: seconds))
    }

    func upload(_ filename: String, _ contents: [UInt8], chunked: Bool = false) throws -> TestHTTPResponse {
        let (contentType, body) = TestHTTP.multipart(filename: filename, contents: contents)
        return try TestHTTP.request(
            port: port, "POST", "/upload", headers: [("Content-Type", contentType)], body: body, chunked: chunked)
    }

    /// The server still answers `GET /`.
    func expectHealthy(sourceLocation: SourceLocation = #_sourceLocation) {
        let response = try? get("/")
        #expect(response?.status == 200, "server no longer healthy", sourceLocation: sourceLocation)
    }

    /// Stops the server and checks that no command is left running in the root.
    func finish() async {
        shutdown()
        let left = await leftoverProcesses(under: root)
        #expect(left.isEmpty, "processes left running in the root: \(left)")
        directory.remove()
    }
}

/// Runs `body` against a fresh server, which is always stopped and checked for leftover processes.
private func withServer(maxTimeout: Double = 30, _ body: (TestServer) async throws -> Void) async throws {
    let server = try TestServer(maxTimeout: maxTimeout)
    do {
        try await body(server)
    } catch {
        await server.finish()
        throw error
    }
    await server.finish()
}

/// A named pipe a command writes one line to (`echo $$ > fifo`), so the test learns when the command runs and what
/// it reports without polling the file system.
private struct FIFO {
    let path: String
    private let fd: Int32

    /// Creates the pipe and opens its read end, so the writer never blocks.
    init(_ path: String) throws {
        self.path = path
        guard mkfifo(path, 0o600) == 0 else { throw TestFailure("mkfifo \(path): errno \(errno)") }
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw TestFailure("open \(path): errno \(errno)") }
    }

    func close() { Glibc.close(fd) }

    /// The first line written, once a writer wrote and closed it.
    func readLine(deadline: Deadline) throws -> String {
        var bytes: [UInt8] = []
        while true {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, deadline.remainingMilliseconds)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else {
                throw TestFailure(
                    "nothing written to \(path) in time; have '\(String(decoding: bytes, as: UTF8.self))'")
            }
            var chunk = [UInt8](repeating: 0, count: 256)
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 { bytes += chunk[..<count] }
            if let newline = bytes.firstIndex(of: 10) { return String(decoding: bytes[..<newline], as: UTF8.self) }
            if count == 0 { return String(decoding: bytes, as: UTF8.self) }
        }
    }
}

/// Runs a blocking call on a thread of its own and waits for it with a deadline; false if it did not return in time.
private func returnsInTime(seconds: Double, _ body: @escaping @Sendable () -> Void) -> Bool {
    let done = DispatchSemaphore(value: 0)
    Thread {
        body()
        done.signal()
    }.start()
    return done.wait(timeout: .now() + seconds) == .success
}

private func events(_ events: [TestSSEEvent], _ type: String) -> [String] {
    events.filter { $0.event == type }.map(\.data)
}

@Suite(.serialized, .timeLimit(.minutes(1))) struct ServerIntegrationTests {
    // MARK: health, routing

    @Test func rootSaysTheRuntimeIsActive() async throws {
        try await withServer { server in
            let response = try server.get("/")
            #expect(response.status == 200)
            #expect(response.text == #"{"status":"ok","message":"Sandbox Runtime is active."}"#)
            #expect(response.header("Content-Type") == "application/json")
        }
    }

    @Test func headHasTheHeadersOfGetAndNoBody() async throws {
        try await withServer { server in
            let response = try TestHTTP.request(port: server.port, "HEAD", "/")
            #expect(response.status == 200)
            #expect(response.body.isEmpty)
            #expect(response.header("Content-Type") == "application/json")
            server.expectHealthy()
        }
    }

    @Test func unknownPathIs404() async throws {
        try await withServer { server in
            for path in ["/nope", "/execute/", "/download", "/v0/x"] {
                let response = try server.get(path)
                #expect(response.status == 404, "\(path)")
                #expect(response.text == #"{"detail":"Not Found"}"#, "\(path)")
            }
            server.expectHealthy()
        }
    }

    @Test func wrongMethodIs405WithAllow() async throws {
        try await withServer { server in
            let get = try server.get("/execute")
            #expect(get.status == 405)
            #expect(get.text == #"{"detail":"Method Not Allowed"}"#)
            #expect(get.header("Allow") == "POST")
            let post = try server.post("/", json: "{}")
            #expect(post.status == 405)
            #expect(post.header("Allow")?.contains("GET") == true)
            let delete = try TestHTTP.request(port: server.port, "DELETE", "/download/x")
            #expect(delete.status == 405)
            server.expectHealthy()
        }
    }

    @Test func keepAliveConnectionServesSeveralRequests() async throws {
        try await withServer { server in
            let connection = try TestHTTPConnection(port: server.port)
            defer { connection.close() }
            for index in 0..<3 {
                connection.send("GET", "/")
                #expect(try connection.readResponse(deadline: Deadline(seconds: 10)).status == 200, "request \(index)")
            }
            connection.send(
                "POST", "/execute", headers: [("Content-Type", "application/json")],
                body: Array(#"{"command": "echo again"}"#.utf8))
            let response = try connection.readResponse(deadline: Deadline(seconds: 10))
            #expect(response.json?["stdout"] == "again\n")
        }
    }

    // MARK: /execute

    @Test func executeEcho() async throws {
        try await withServer { server in
            let response = try server.post("/execute", json: #"{"command": "echo 'hello world'", "timeout": 30}"#)
            #expect(response.status == 200)
            #expect(response.header("Content-Type") == "application/json")
            #expect(response.text == #"{"stdout":"hello world\n","stderr":"","exit_code":0,"timed_out":false}"#)
        }
    }

    @Test func executeRunsInTheRoot() async throws {
        try await withServer { server in
            let result = try server.execute("pwd -P")
            #expect(result?["stdout"] == .string(server.root + "\n"))
        }
    }

    @Test func executeReportsExitCodesAndStderr() async throws {
        try await withServer { server in
            let failed = try server.execute("sh -c 'echo out; echo err >&2; exit 3'")
            #expect(failed?["stdout"] == "out\n")
            #expect(failed?["stderr"] == "err\n")
            #expect(failed?["exit_code"] == .number(3))
            #expect(try server.execute("sh -c 'kill -9 $$'")?["exit_code"] == .number(137))
        }
    }

    @Test func executeOfAMissingOrNonExecutableProgram() async throws {
        try await withServer { server in
            let missing = try server.execute("sandboxd-no-such-program --flag")
            #expect(missing?["exit_code"] == .number(127))
            guard case .string(let stderr)? = missing?["stderr"] else {
                Issue.record("no stderr")
                return
            }
            #expect(stderr.contains("sandboxd-no-such-program"))
            try TemporaryDirectory.write(server.root + "/plain.txt", "x")
            #expect(try server.execute("./plain.txt")?["exit_code"] == .number(126))
        }
    }

    @Test func executeOfAnUnparseableCommandIsExitCode1() async throws {
        try await withServer { server in
            for command in ["echo 'unterminated", "", "   "] {
                let result = try server.execute(command)
                #expect(result?["exit_code"] == .number(1), "\(command.debugDescription)")
                #expect(result?["stderr"] != "", "\(command.debugDescription)")
            }
        }
    }

    @Test func executeTimeoutKillsAndSays124() async throws {
        try await withServer { server in
            let started = ContinuousClock.now
            let result = try server.execute("sh -c 'echo before; sleep 300 & sleep 300'", timeout: 0.5)
            #expect(ContinuousClock.now - started < .seconds(10))
            #expect(result?["exit_code"] == .number(124))
            #expect(result?["timed_out"] == .bool(true))
            #expect(result?["stdout"] == "before\n")
            #expect(result?["stderr"] == "Command timed out after 0.5 seconds")
        }
    }

    @Test func executeTimeoutIsCappedByMaxTimeout() async throws {
        try await withServer(maxTimeout: 0.5) { server in
            let result = try server.execute("sleep 300", timeout: 30)
            #expect(result?["exit_code"] == .number(124))
            #expect(result?["stderr"] == "Command timed out after 0.5 seconds")
        }
    }

    @Test func executeReplacesInvalidUTF8() async throws {
        try await withServer { server in
            let result = try server.execute(#"printf 'a\377b'"#)
            #expect(result?["stdout"] == "a\u{FFFD}b")
        }
    }

    @Test func executeSplitsLikeShlex() async throws {
        try await withServer { server in
            let result = try server.execute(#"printf '%s|' "a b" 'c d' e\ f $HOME '*'"#)
            #expect(result?["stdout"] == "a b|c d|e f|$HOME|*|")
        }
    }

    @Test func executeWithABackgroundChildAnswersPromptly() async throws {
        try await withServer { server in
            let started = ContinuousClock.now
            let result = try server.execute("sh -c 'sleep 5 & echo hi'")
            #expect(ContinuousClock.now - started < .seconds(2))
            #expect(result?["stdout"] == "hi\n")
            // The background sleep is allowed to outlive the request; end it so the leak check sees a clean root.
            for pid in ProcessTable.liveProcesses(under: server.root) { kill(pid, SIGKILL) }
        }
    }

    @Test func invalidBodiesAre422AndTheServerStaysHealthy() async throws {
        try await withServer { server in
            let cases: [(String, String)] = [
                ("", "missing"), ("{bad", "json_invalid"), ("[1]", "model_attributes_type"), ("{}", "missing"),
                (#"{"command": 5}"#, "string_type"), (#"{"command": "ls", "timeout": "abc"}"#, "float_parsing"),
                (#"{"command": "ls", "timeout": 0}"#, "greater_than"),
                (#"{"command": "ls", "timeout": true}"#, "float_type"),
            ]
            for (body, type) in cases {
                for path in ["/execute", "/execute/stream"] {
                    let response = try server.post(path, json: body)
                    #expect(response.status == 422, "\(path) \(body)")
                    #expect(response.header("Content-Type") == "application/json")
                    guard case .array(let issues)? = response.json?["detail"] else {
                        Issue.record("no detail array for \(body): \(response.text)")
                        continue
                    }
                    #expect(issues.first?["type"] == .string(type), "\(path) \(body)")
                }
                server.expectHealthy()
            }
        }
    }

    @Test func timeoutSecondsIsAccepted() async throws {
        try await withServer { server in
            let response = try server.post("/execute", json: #"{"command": "sleep 300", "timeout_seconds": 0.3}"#)
            #expect(response.json?["exit_code"] == .number(124))
        }
    }

    @Test func jsonBodyOver1MiBIs413() async throws {
        try await withServer { server in
            let padding = String(repeating: " ", count: 1 << 20)
            let body = Array(#"{"command": "echo hi"\#(padding)}"#.utf8)
            for chunked in [false, true] {
                let response = try TestHTTP.request(
                    port: server.port, "POST", "/execute", headers: [("Content-Type", "application/json")], body: body,
                    chunked: chunked)
                #expect(response.status == 413, "chunked: \(chunked)")
                #expect(response.json?["detail"] != nil)
                server.expectHealthy()
            }
            // Just under the limit is fine.
            let fits = Array(#"{"command": "echo hi"}"#.utf8)
            let response = try server.post(
                "/execute",
                json: String(decoding: fits + Array(repeating: 32, count: (1 << 20) - fits.count), as: UTF8.self))
            #expect(response.status == 200)
        }
    }

    @Test func clientLeavingExecuteKillsTheCommand() async throws {
        try await withServer { server in
            let fifo = try FIFO(server.root + "/pid.fifo")
            defer { fifo.close() }
            let connection = try TestHTTPConnection(port: server.port)
            connection.send(
                "POST", "/execute", headers: [("Content-Type", "application/json")],
                body: Array(#"{"command": "sh -c 'echo $$ > pid.fifo; sleep 300'"}"#.utf8))
            let group = try #require(pid_t(try fifo.readLine(deadline: Deadline(seconds: 10))))
            connection.close()
            let gone = await poll(until: Deadline(seconds: 10)) { ProcessTable.groupIsGone(group) }
            #expect(gone, "process group \(group) outlived its client")
            if !gone { killGroup(group) }
            server.expectHealthy()
        }
    }

    // MARK: /execute/stream

    @Test func streamSendsLinesInOrderThenDone() async throws {
        try await withServer { server in
            let all = try server.stream("sh -c 'echo one; echo two >&2; echo three; printf four'")
            #expect(events(all, "stdout") == ["one", "three", "four"])
            #expect(events(all, "stderr") == ["two"])
            #expect(all.last?.event == "done")
            #expect(all.filter { $0.event == "done" }.count == 1)
            let done = JSONValue.parse(Array((all.last?.data ?? "").utf8))
            #expect(done?["exit_code"] == .number(0))
        }
    }

    @Test func streamSplitsOnEveryLineEnd() async throws {
        try await withServer { server in
            let all = try server.stream(#"printf 'a\r\nb\rc\n\nd'"#)
            #expect(events(all, "stdout") == ["a", "b", "c", "", "d"])
            #expect(all.allSatisfy { !$0.data.contains("\r") })
        }
    }

    @Test func streamTimeoutSendsErrorThenDone() async throws {
        try await withServer { server in
            let body: JSONValue = ["command": "sh -c 'echo started; sleep 300'", "timeout": .number(0.5)]
            let connection = try TestHTTPConnection(port: server.port)
            defer { connection.close() }
            connection.send(
                "POST", "/execute/stream", headers: [("Content-Type", "application/json")], body: body.encoded())
            #expect(try connection.readHead(deadline: Deadline(seconds: 10)).status == 200)
            let all = try connection.readAllEvents(deadline: Deadline(seconds: 10))
            #expect(all.map(\.event) == ["stdout", "error", "done"])
            #expect(all.dropFirst().first?.data == "Command timed out after 0.5 seconds")
            #expect(JSONValue.parse(Array((all.last?.data ?? "").utf8))?["exit_code"] == .number(124))
        }
    }

    @Test func streamOfAMissingProgramSendsErrorThenDone() async throws {
        try await withServer { server in
            let all = try server.stream("sandboxd-no-such-program")
            #expect(all.map(\.event) == ["error", "done"])
            #expect(all.first?.data.contains("sandboxd-no-such-program") == true)
            #expect(JSONValue.parse(Array((all.last?.data ?? "").utf8))?["exit_code"] == .number(127))
        }
    }

    @Test func streamDeliversEachLineAsItIsWritten() async throws {
        try await withServer { server in
            // The command prints a line, then blocks until the test writes to the FIFO: the first event must arrive
            // while the command is still running.
            guard mkfifo(server.root + "/gate", 0o600) == 0 else { throw TestFailure("mkfifo: errno \(errno)") }
            let connection = try server.openStream("sh -c 'echo first; read line < gate; echo \"$line\"'")
            defer { connection.close() }
            let deadline = Deadline(seconds: 10)
            #expect(try connection.readEvent(deadline: deadline) == TestSSEEvent(event: "stdout", data: "first"))
            var writer: Int32 = -1
            // The shell opens the FIFO after printing; until then an open for writing fails with ENXIO.
            _ = await poll(until: deadline) {
                writer = open(server.root + "/gate", O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                return writer >= 0
            }
            try #require(writer >= 0, "the command never opened the FIFO")
            _ = write(writer, "second\n", 7)
            close(writer)
            #expect(try connection.readEvent(deadline: deadline) == TestSSEEvent(event: "stdout", data: "second"))
            #expect(try connection.readEvent(deadline: deadline)?.event == "done")
            #expect(try connection.readEvent(deadline: deadline) == nil)
        }
    }

    @Test func streamOfLargeOutputDeliversEveryLine() async throws {
        try await withServer { server in
            let all = try server.stream("seq 1 20000", seconds: 30)
            let lines = events(all, "stdout")
            #expect(lines.count == 20000)
            #expect(lines.first == "1")
            #expect(lines.last == "20000")
            #expect(all.last?.event == "done")
        }
    }

    @Test func clientLeavingStreamKillsTheCommand() async throws {
        try await withServer { server in
            let connection = try server.openStream("sh -c 'echo $$; sleep 300 & wait'")
            let first = try connection.readEvent(deadline: Deadline(seconds: 10))
            let group = try #require(first.flatMap { pid_t($0.data) })
            connection.close()
            let gone = await poll(until: Deadline(seconds: 10)) { ProcessTable.groupIsGone(group) }
            #expect(gone, "process group \(group) outlived its client")
            if !gone { killGroup(group) }
            server.expectHealthy()
        }
    }

    // MARK: files

    @Test func uploadThenDownloadListAndExists() async throws {
        try await withServer { server in
            let contents = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let upload = try server.upload("data/input.csv", contents)
            #expect(upload.status == 200)
            #expect(upload.text == #"{"message":"File 'data/input.csv' uploaded successfully."}"#)
            #expect(FileManager.default.contents(atPath: server.root + "/data/input.csv") == Data(contents))

            let download = try server.get("/download/data/input.csv")
            #expect(download.status == 200)
            #expect(download.body == contents)
            #expect(download.header("Content-Type") == "application/octet-stream")
            #expect(download.header("Content-Disposition")?.hasPrefix("attachment") == true)

            let list = try server.get("/list/data")
            #expect(list.status == 200)
            guard case .array(let entries)? = list.json, let entry = entries.first else {
                Issue.record("list: \(list.text)")
                return
            }
            #expect(entries.count == 1)
            #expect(entry["name"] == "input.csv")
            #expect(entry["size"] == .number(100_000))
            #expect(entry["type"] == "file")
            guard case .number(let modified)? = entry["mod_time"] else {
                Issue.record("mod_time: \(list.text)")
                return
            }
            #expect(abs(modified - Date().timeIntervalSince1970) < 600)

            let rootList = try server.get("/list/")
            #expect(rootList.json.map { "\($0)" }?.contains("directory") == true)

            #expect(try server.get("/exists/data/input.csv").text == #"{"path":"data/input.csv","exists":true}"#)
            #expect(try server.get("/exists/data/missing.csv").text == #"{"path":"data/missing.csv","exists":false}"#)
        }
    }

    @Test func chunkedUploadIsStoredWhole() async throws {
        try await withServer { server in
            let contents = [UInt8](repeating: 0x5A, count: 300_000) + [0, 13, 10, 45, 45]
            let upload = try server.upload("big.bin", contents, chunked: true)
            #expect(upload.status == 200)
            #expect(try server.get("/download/big.bin").body == contents)
        }
    }

    @Test func uploadReplacesAnExistingFileAndLeavesNoTemporaryFiles() async throws {
        try await withServer { server in
            let first = try server.upload("f.txt", Array("old".utf8))
            #expect(first.status == 200)
            #expect(try server.upload("/f.txt", Array("new".utf8)).status == 200)
            #expect(try server.get("/download/f.txt").text == "new")
            #expect(try FileManager.default.contentsOfDirectory(atPath: server.root) == ["f.txt"])
        }
    }

    @Test func uploadFilenameThatNamesNoFileIs400() async throws {
        try await withServer { server in
            for filename in ["", "/", ".", "dir/"] {
                let response = try server.upload(filename, Array("x".utf8))
                #expect(response.status == 400, "\(filename.debugDescription): \(response.text)")
                #expect(response.json?["message"] != nil)
            }
            server.expectHealthy()
        }
    }

    @Test func missingFilesAndDirectories() async throws {
        try await withServer { server in
            try TemporaryDirectory.write(server.root + "/file.txt", "x")
            let download = try server.get("/download/missing.txt")
            #expect(download.status == 404)
            #expect(download.text == #"{"message":"File not found"}"#)
            #expect(try server.get("/download/").status == 404)
            let list = try server.get("/list/file.txt")
            #expect(list.status == 404)
            #expect(list.text == #"{"message":"Path is not a directory"}"#)
        }
    }

    @Test func traversalIsForbidden() async throws {
        try await withServer { server in
            let outside = server.directory.file("secret.txt")
            try TemporaryDirectory.write(outside, "secret")
            try FileManager.default.createSymbolicLink(atPath: server.root + "/link", withDestinationPath: outside)
            for path in [
                "/download/..%2Fsecret.txt", "/download/../secret.txt", "/download/..%2F..%2F..%2Fetc%2Fpasswd",
                "/download/link", "/list/..", "/list/..%2F..", "/exists/..%2Fsecret.txt",
            ] {
                let response = try server.get(path)
                #expect(response.status == 403, "\(path)")
                #expect(response.text == #"{"message":"Access denied"}"#, "\(path)")
            }
            let upload = try server.upload("../escaped.txt", Array("x".utf8))
            #expect(upload.status == 403)
            #expect(!FileManager.default.fileExists(atPath: server.directory.file("escaped.txt")))
            server.expectHealthy()
        }
    }

    @Test func pathsArePercentDecodedOnce() async throws {
        try await withServer { server in
            try TemporaryDirectory.write(server.root + "/a%41.txt", "literal")
            try TemporaryDirectory.write(server.root + "/a b.txt", "space")
            #expect(try server.get("/download/a%2541.txt").text == "literal")
            #expect(try server.get("/download/a%20b.txt").text == "space")
            #expect(try server.get("/exists/a%2541.txt").text == #"{"path":"a%41.txt","exists":true}"#)
            #expect(try server.get("/exists/aA.txt").json?["exists"] == .bool(false))
        }
    }

    // MARK: robustness, shutdown

    @Test func malformedRequestsDoNotHurtTheServer() async throws {
        try await withServer { server in
            for raw in [
                "GARBAGE\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "GET\r\n\r\n",
                "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                "POST /execute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            ] {
                let connection = try TestHTTPConnection(port: server.port)
                connection.send(Array(raw.utf8))
                if let response = try? connection.readResponse(deadline: Deadline(seconds: 5)) {
                    #expect((400..<500).contains(response.status) || response.status == 505, "\(raw.debugDescription)")
                }
                connection.close()
                server.expectHealthy()
            }
        }
    }

    @Test func clientCuttingAnUploadLeavesNothingBehind() async throws {
        try await withServer { server in
            let (contentType, body) = TestHTTP.multipart(
                filename: "cut.bin", contents: Array(repeating: 1, count: 200_000))
            let connection = try TestHTTPConnection(port: server.port)
            var head = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: \(contentType)\r\n"
            head += "Content-Length: \(body.count)\r\n\r\n"
            connection.send(Array(head.utf8) + body[..<100_000])
            connection.close()
            // The server notices the cut and removes the temporary file; nothing named cut.bin may appear.
            let clean = await poll(until: Deadline(seconds: 10)) {
                (try? FileManager.default.contentsOfDirectory(atPath: server.root))?.isEmpty == true
            }
            #expect(clean, "\((try? FileManager.default.contentsOfDirectory(atPath: server.root)) ?? [])")
            server.expectHealthy()
        }
    }

    @Test func shutdownEndsOnlyItsOwnCommands() async throws {
        // A process started by someone else in the same process (another runner, another server) is not the
        // server's to end.
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (events, continuation) = AsyncStream.makeStream(of: CommandEvent.self)
        let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        let other = try CommandRunner().start(
            CommandSpec(argv: ["sleep", "30"], cwd: directory.path, environment: environment, timeout: 30)
        ) { event in
            continuation.yield(event)
            if case .exit = event { continuation.finish() }
        }
        defer { killGroup(other.pid) }
        let server = try TestServer(shutdownTimeout: 0.1)
        await server.finish()
        #expect(ProcessTable.entry(other.pid)?.isLive == true, "shutdown() killed a process it did not start")
        other.cancel()
        _ = try await withDeadline(seconds: 10, "the other command to exit") {
            for await _ in events {}
        }
    }

    @Test func shutdownAnswersRunningStreamsAndWaitingRequests() async throws {
        // Running requests get `shutdownTimeout` to finish; then their commands are ended and they are answered.
        let server = try TestServer(shutdownTimeout: 0.5)
        defer { server.directory.remove() }
        let stream = try server.openStream("sh -c 'echo $$; sleep 300 & wait'")
        defer { stream.close() }
        let streamGroup = try #require(
            try stream.readEvent(deadline: Deadline(seconds: 10)).flatMap { pid_t($0.data) })

        let fifo = try FIFO(server.root + "/pid.fifo")
        defer { fifo.close() }
        let waiting = try TestHTTPConnection(port: server.port)
        defer { waiting.close() }
        waiting.send(
            "POST", "/execute", headers: [("Content-Type", "application/json")],
            body: Array(#"{"command": "sh -c 'echo $$ > pid.fifo; sleep 300'"}"#.utf8))
        let executeGroup = try #require(pid_t(try fifo.readLine(deadline: Deadline(seconds: 10))))
        defer {
            killGroup(streamGroup)
            killGroup(executeGroup)
        }

        let shutdown = server.server
        #expect(returnsInTime(seconds: 20) { shutdown.shutdown() }, "shutdown() did not return")

        // The stream ends with its terminating chunk, and the waiting request gets a whole response.
        switch Result(catching: { try stream.readAllEvents(deadline: Deadline(seconds: 10)) }) {
        case .success(let rest):
            #expect(rest.last?.event == "done", "the stream ended without `done`: \(rest)")
        case .failure(let error):
            Issue.record("the open stream was not ended cleanly: \(error)")
        }
        switch Result(catching: { try waiting.readResponse(deadline: Deadline(seconds: 10)) }) {
        case .success(let answer):
            #expect(answer.json != nil, "\(answer.status) \(answer.text)")
        case .failure(let error):
            Issue.record("the waiting /execute got no response: \(error)")
        }

        // Nothing the server started outlives it.
        for group in [streamGroup, executeGroup] {
            let gone = await poll(until: Deadline(seconds: 5)) { ProcessTable.groupIsGone(group) }
            #expect(gone, "process group \(group) outlived shutdown()")
        }
        #expect(throws: (any Error).self) { try TestHTTPConnection(port: server.port) }
    }
}

extension TemporaryDirectory {
    /// Writes a file at an absolute path.
    static func write(_ path: String, _ contents: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(contents.utf8)) else {
            throw TestFailure("cannot create \(path)")
        }
    }
}
