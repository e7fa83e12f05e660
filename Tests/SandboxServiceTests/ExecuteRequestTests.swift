import Testing

@testable import SandboxService

/// The 422 that `body` is rejected with, or nil if it is accepted.
private func rejection(_ body: String) -> APIError? {
    do {
        _ = try ExecuteRequest.decode(Array(body.utf8))
        return nil
    } catch {
        return error
    }
}

/// The entries of a 422's `detail` array.
private func issues(_ error: APIError?) -> [JSONValue] {
    guard case .array(let issues)? = error?.body["detail"] else { return [] }
    return issues
}

private func decode(_ body: String) throws -> ExecuteRequest {
    try ExecuteRequest.decode(Array(body.utf8))
}

@Suite(.timeLimit(.minutes(1))) struct ExecuteRequestTests {
    @Test func acceptsCommandAlone() throws {
        #expect(try decode(#"{"command": "echo 'hello world'"}"#) == ExecuteRequest(command: "echo 'hello world'"))
    }

    @Test func acceptsIntegerAndFractionalTimeouts() throws {
        #expect(try decode(#"{"command": "ls", "timeout": 30}"#).timeout == 30)
        #expect(try decode(#"{"command": "ls", "timeout": 0.25}"#).timeout == 0.25)
        #expect(try decode(#"{"command": "ls", "timeout": 1e2}"#).timeout == 100)
    }

    @Test func acceptsATimeoutStringHoldingANumber() throws {
        // pydantic's lax mode turns "30" into 30.0.
        #expect(try decode(#"{"command": "ls", "timeout": "30"}"#).timeout == 30)
        #expect(try decode(#"{"command": "ls", "timeout": " 2.5 "}"#).timeout == 2.5)
    }

    @Test func nullTimeoutMeansAbsent() throws {
        #expect(try decode(#"{"command": "ls", "timeout": null}"#).timeout == nil)
    }

    @Test func timeoutSecondsIsTheSameField() throws {
        #expect(try decode(#"{"command": "ls", "timeout_seconds": 7}"#).timeout == 7)
        let error = rejection(#"{"command": "ls", "timeout_seconds": "abc"}"#)
        #expect(error?.status == 422)
        #expect(issues(error).first?["loc"] == .array(["body", "timeout_seconds"]))
    }

    @Test func unknownFieldsAreIgnored() throws {
        #expect(try decode(#"{"command": "ls", "cwd": "/tmp", "extra": [1, 2]}"#).command == "ls")
    }

    @Test func unicodeCommandsSurviveDecoding() throws {
        #expect(try decode(#"{"command": "echo h\u00e9llo \ud83d\ude00"}"#).command == "echo héllo 😀")
    }

    @Test func emptyBodyIsAMissingBody() {
        let error = rejection("")
        #expect(error?.status == 422)
        #expect(
            error?.body == [
                "detail": .array([
                    ["type": "missing", "loc": .array(["body"]), "msg": "Field required", "input": .null]
                ])
            ])
    }

    @Test(arguments: ["{bad", "{\"command\": \"ls\"", "nope", "{\"command\": \"ls\"} trailing", "\u{FEFF}"])
    func invalidJSONIsAJSONDecodeError(body: String) {
        let error = rejection(body)
        #expect(error?.status == 422)
        let issue = issues(error).first
        #expect(issue?["type"] == "json_invalid")
        #expect(issue?["msg"] == "JSON decode error")
        guard case .array(let loc)? = issue?["loc"] else {
            Issue.record("no loc in \(String(describing: issue))")
            return
        }
        #expect(loc.first == "body")
        #expect(loc.count == 2)
    }

    @Test(arguments: [
        ("[1, 2]", JSONValue.array([.number(1), .number(2)])), ("\"ls\"", "ls"), ("null", .null), ("5", .number(5)),
    ])
    func nonObjectBodyIsRejected(body: String, input: JSONValue) {
        let error = rejection(body)
        #expect(error?.status == 422)
        #expect(
            error?.body == [
                "detail": .array([
                    [
                        "type": "model_attributes_type", "loc": .array(["body"]),
                        "msg": "Input should be a valid dictionary or object to extract fields from", "input": input,
                    ]
                ])
            ])
    }

    @Test func missingCommand() {
        let error = rejection(#"{"timeout": 5}"#)
        #expect(error?.status == 422)
        #expect(
            error?.body == [
                "detail": .array([
                    [
                        "type": "missing", "loc": .array(["body", "command"]), "msg": "Field required",
                        "input": ["timeout": .number(5)],
                    ]
                ])
            ])
    }

    @Test(arguments: [("5", JSONValue.number(5)), ("true", .bool(true)), ("null", .null), ("[\"ls\"]", .array(["ls"]))])
    func nonStringCommand(raw: String, input: JSONValue) {
        let error = rejection(#"{"command": \#(raw)}"#)
        #expect(error?.status == 422)
        #expect(
            error?.body == [
                "detail": .array([
                    [
                        "type": "string_type", "loc": .array(["body", "command"]),
                        "msg": "Input should be a valid string", "input": input,
                    ]
                ])
            ])
    }

    @Test(arguments: [
        ("\"abc\"", "float_parsing"), ("\"\"", "float_parsing"), ("0", "greater_than"), ("-1", "greater_than"),
        ("\"-5\"", "greater_than"), ("true", "float_type"), ("false", "float_type"), ("[30]", "float_type"),
        ("{}", "float_type"),
    ])
    func invalidTimeout(raw: String, type: String) {
        let error = rejection(#"{"command": "ls", "timeout": \#(raw)}"#)
        #expect(error?.status == 422)
        let all = issues(error)
        #expect(all.count == 1)
        #expect(all.first?["type"] == .string(type))
        #expect(all.first?["loc"] == .array(["body", "timeout"]))
        #expect(all.first?["input"] == JSONValue.parse(Array(raw.utf8)))
    }

    @Test func greaterThanMessage() {
        let issue = issues(rejection(#"{"command": "ls", "timeout": 0}"#)).first
        #expect(issue?["msg"] == "Input should be greater than 0")
    }

    @Test func everyInvalidFieldIsReported() {
        let all = issues(rejection(#"{"command": 5, "timeout": "abc"}"#))
        #expect(all.map { $0["loc"] } == [.array(["body", "command"]), .array(["body", "timeout"])])
    }

    @Test func errorResponseIsJSONWith422() {
        let response = rejection("")?.response
        #expect(response?.status == 422)
        #expect(response?.headers.contains { $0.0 == "Content-Type" && $0.1 == "application/json" } == true)
        guard case .bytes(let bytes)? = response?.body else {
            Issue.record("not a byte body")
            return
        }
        #expect(
            String(decoding: bytes, as: UTF8.self)
                == #"{"detail":[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]}"#)
    }
}
