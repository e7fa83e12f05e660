import Foundation
import Testing

@testable import SandboxService

@Suite("v1 files: parameters, errors, health and metadata")
struct FilesV1APITests {
    @Test(
        "mode must match ^0[0-7]{3}$; empty means 0644",
        arguments: [("", 0o644), ("0644", 0o644), ("0755", 0o755), ("0000", 0), ("0777", 0o777), ("0600", 0o600)])
    func validMode(text: String, expected: UInt32) {
        #expect(V1API.permissions(text) == expected)
    }

    @Test(
        "other modes are refused",
        arguments: ["0999", "777", "abcd", "01777", "0x1ff", " 0644", "0644 ", "+644", "0٦٤٤"])
    func invalidMode(text: String) {
        #expect(V1API.permissions(text) == nil)
    }

    @Test("octal permissions have four digits")
    func octal() {
        #expect(V1API.octal(0o644) == "0644")
        #expect(V1API.octal(0o7) == "0007")
        #expect(V1API.octal(0o4755) == "0755")
    }

    @Test("recursive is read as Go's strconv.ParseBool reads it")
    func boolean() {
        for text in ["1", "t", "T", "true", "TRUE", "True"] { #expect(V1API.boolean(text) == true) }
        for text in ["", "0", "f", "F", "false", "FALSE", "False"] { #expect(V1API.boolean(text) == false) }
        for text in ["yes", "banana", "tRuE", " true"] { #expect(V1API.boolean(text) == nil) }
    }

    @Test("only multipart/form-data bodies are read as forms")
    func multipart() {
        #expect(V1API.isMultipart("multipart/form-data; boundary=x"))
        #expect(V1API.isMultipart("Multipart/Form-Data;boundary=x"))
        #expect(!V1API.isMultipart(nil))
        #expect(!V1API.isMultipart("application/octet-stream"))
        #expect(!V1API.isMultipart("application/x-www-form-urlencoded"))
        #expect(!V1API.isMultipart("multipart/mixed; boundary=x"))
    }

    @Test("every file error has its code and status, and names the request path only")
    func errorMapping() throws {
        let expected: [(FileError.Code, Int, String)] = [
            (.escapesRoot, 403, "PERMISSION_DENIED"), (.invalidPath, 400, "INVALID_ARGUMENT"),
            (.tooManyLinks, 400, "INVALID_ARGUMENT"), (.nameTooLong, 400, "INVALID_ARGUMENT"),
            (.notFound, 404, "NOT_FOUND"), (.isADirectory, 400, "INVALID_ARGUMENT"),
            (.notADirectory, 400, "INVALID_ARGUMENT"), (.notEmpty, 409, "CONFLICT"), (.isRoot, 409, "CONFLICT"),
            (.unsupportedType, 400, "INVALID_ARGUMENT"), (.permissionDenied, 403, "PERMISSION_DENIED"),
            (.noSpace, 507, "RESOURCE_EXHAUSTED"), (.other("Input/output error"), 500, "INTERNAL"),
        ]
        for (error, status, code) in expected {
            let mapped = V1Error.answer(SandboxError(FileError(error, path: "dir/file.txt")))
            #expect(mapped.status == status, "\(error)")
            #expect(mapped.body["code"] == .string(code), "\(error)")
            let message = try #require(
                mapped.body["message"].flatMap { if case .string(let s) = $0 { s } else { nil } })
            if error != .isRoot { #expect(message.contains("'/dir/file.txt'"), "\(message)") }
            #expect(mapped.response.headers.contains { $0 == ("Content-Type", "application/json") })
        }
    }

    @Test("errors of the multipart reader are given this API's shape")
    func conforming() {
        let malformed = V1Error.conforming(.detail(400, "Malformed multipart body"))
        #expect(malformed.status == 400)
        #expect(malformed.body == ["code": "INVALID_ARGUMENT", "message": "Malformed multipart body"])
        let noForm = V1Error.conforming(
            .validation([ValidationIssue(type: "missing", loc: ["body", "file"], msg: "Field required")]))
        #expect(noForm.status == 400)
        #expect(noForm.body["code"] == "INVALID_ARGUMENT")
        let ours = V1Error.answer(.resourceExhausted, "full")
        #expect(V1Error.conforming(ours).body == ours.body)
        #expect(V1Error.conforming(ours).status == 507)
    }

    @Test("metadata serves the prefix's variables, never credentials, sorted")
    func metadata() {
        let environment = [
            "SANDBOX_ID": "sbx-123", "SANDBOX_WORKSPACE": "/workspace", "SANDBOX_API_TOKEN": "t",
            "SANDBOX_SSH_KEY": "k", "SANDBOX_db_password": "p", "SANDBOX_AWS_Credentials": "c",
            "SANDBOX_SECRET_SAUCE": "s", "SANDBOX_AUTH_HEADER": "a", "SANDBOX_TLS_CERT": "c", "SANDBOX_PASSWD": "p",
            "SANDBOX_PRIVATE_URL": "u", "SANDBOX_BEARER": "b", "SANDBOX_A": "first", "HOME": "/root",
            "sandbox_lower": "x", "MY_SANDBOX_X": "y",
        ]
        #expect(
            V1API.metadata(environment: environment, prefix: "SANDBOX_")
                == ["env": ["SANDBOX_A": "first", "SANDBOX_ID": "sbx-123", "SANDBOX_WORKSPACE": "/workspace"]])
        #expect(
            V1API.metadata(environment: environment, prefix: "")
                == V1API.metadata(
                    environment: environment, prefix: "SANDBOX_"))
        #expect(
            V1API.metadata(environment: ["APP_X": "1", "APP_KEY": "k"], prefix: "APP_") == ["env": ["APP_X": "1"]]
        )
        #expect(V1API.metadata(environment: [:], prefix: "SANDBOX_") == ["env": .object([])])
    }

    @Test("health is ok until the server is stopping, then 503 UNAVAILABLE")
    func health() throws {
        let directory = try TemporaryDirectory("sandboxd-v1-health")
        defer { directory.remove() }
        let sandbox = try directory.sandbox()
        let api = V1API(sandbox: sandbox, environment: [:])
        guard case .response(let ok) = api.health(), case .bytes(let body) = ok.body else {
            Issue.record("health did not answer at once")
            return
        }
        #expect(ok.status == 200)
        #expect(JSONValue.parse(body)?["status"] == "ok")
        #expect(JSONValue.parse(body)?["uptime_seconds"] == .number(0))
        sandbox.beginShutdown()
        guard case .response(let stopping) = api.health(), case .bytes(let stoppingBody) = stopping.body else {
            Issue.record("health did not answer at once")
            return
        }
        #expect(stopping.status == 503)
        #expect(JSONValue.parse(stoppingBody)?["code"] == "UNAVAILABLE")
    }

    @Test("a directory listing has the Go daemon's shape")
    func listing() {
        let entry = FileTree.Entry(
            name: "main.py",
            status: .init(isDirectory: false, size: 12, modifiedSeconds: 784_111_777, permissions: 0o755))
        let directory = FileTree.Entry(
            name: "src", status: .init(isDirectory: true, size: 4096, modifiedSeconds: 0, permissions: 0o700))
        let json = V1API.listing(path: "work", entries: [entry, directory])
        #expect(
            String(decoding: json.encoded(), as: UTF8.self)
                == #"{"path":"/work","entries":[{"name":"main.py","size":12,"type":"file","#
                + #""modified_at":"1994-11-06T08:49:37Z","mode":"0755"},{"name":"src","size":4096,"#
                + #""type":"directory","modified_at":"1970-01-01T00:00:00Z","mode":"0700"}]}"#)
        #expect(V1API.listing(path: "", entries: []) == ["path": "/", "entries": .array([])])
    }
}
