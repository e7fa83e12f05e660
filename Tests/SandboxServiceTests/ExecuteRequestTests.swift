import Testing

@testable import SandboxService

/// The error that `body` is rejected with, or nil if it is accepted.
private func rejection(_ body: String, contentType: String? = "application/json") -> APIError? {
    rejection(bytes: Array(body.utf8), contentType: contentType)
}

private func rejection(bytes: [UInt8], contentType: String? = "application/json") -> APIError? {
    do throws(APIError) {
        _ = try ExecuteRequest.decode(bytes, contentType: contentType)
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
    try ExecuteRequest.decode(Array(body.utf8), contentType: "application/json")
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

    // The cases below follow the reference's FastAPI as measured (Tests/e2e/execute_body_table.py).

    @Test(arguments: [
        "application/json", "APPLICATION/JSON", "application/json; charset=latin-1", "application/json;charset=utf-8",
        " application/json ; charset=utf-8", "application/vnd.x+json", "application/+json", "Application/Problem+JSON",
    ])
    func jsonContentTypes(type: String) {
        #expect(ExecuteRequest.isJSON(contentType: type))
    }

    @Test(arguments: [
        nil, "", "text/plain", "application/x-www-form-urlencoded", "application/ json", "text/json",
        "application/jsonx", "json", "application/json, text/plain", "multipart/form-data; boundary=x",
        "application/json/x", "application", "application/json+",
    ])
    func otherContentTypes(type: String?) {
        #expect(!ExecuteRequest.isJSON(contentType: type))
    }

    @Test(arguments: [nil, "text/plain", "application/x-www-form-urlencoded"])
    func aBodyThatIsNotJSONIsNotAModel(type: String?) {
        let body = #"{"command": "echo ok"}"#
        #expect(
            rejection(body, contentType: type)?.body == [
                "detail": .array([
                    [
                        "type": "model_attributes_type", "loc": .array(["body"]),
                        "msg": "Input should be a valid dictionary or object to extract fields from",
                        "input": .string(body),
                    ]
                ])
            ])
    }

    @Test func anEmptyBodyIsMissingWhateverItsType() {
        #expect(issues(rejection("", contentType: "text/plain")).first?["type"] == "missing")
    }

    @Test(arguments: [
        Array(#"{"command": "echo "#.utf8) + [0xFF] + Array(#""}"#.utf8),
        [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x22], [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],
        [0x22, 0xE0, 0x80, 0x80, 0x22],
    ])
    func textThatIsNotUTF8IsAParseError(body: [UInt8]) {
        let error = rejection(bytes: body)
        #expect(error?.status == 400)
        #expect(error?.body == ["detail": "There was an error parsing the body"])
    }

    @Test func byteOrderMarksAndWideEncodingsAreDecoded() throws {
        let text = #"{"command": "echo h\#u{E9}llo \#u{1F600}"}"#
        let utf16LE = text.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        let utf16BE = text.utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        let utf32LE = text.unicodeScalars.flatMap { scalar in (0..<4).map { UInt8((scalar.value >> (8 * $0)) & 0xFF) } }
        let utf32BE = text.unicodeScalars.flatMap { scalar in
            (0..<4).reversed().map { UInt8((scalar.value >> (8 * $0)) & 0xFF) }
        }
        let bodies: [[UInt8]] = [
            Array(text.utf8), [0xEF, 0xBB, 0xBF] + Array(text.utf8), utf16LE, utf16BE, [0xFF, 0xFE] + utf16LE,
            [0xFE, 0xFF] + utf16BE, utf32LE, utf32BE, [0xFF, 0xFE, 0, 0] + utf32LE, [0, 0, 0xFE, 0xFF] + utf32BE,
        ]
        for body in bodies {
            #expect(try ExecuteRequest.decode(body, contentType: "application/json").command == "echo héllo 😀")
        }
    }

    @Test func brokenWideEncodingsAreParseErrors() {
        let utf16 = Array("{}".utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })
        #expect(rejection(bytes: utf16 + [0])?.status == 400)
        #expect(rejection(bytes: [0x7B, 0, 0, 0, 0x7D, 0, 0, 0, 0, 0, 0x11, 0])?.status == 400)
        #expect(rejection(bytes: [0x7B, 0, 0, 0, 0x7D, 0, 0])?.status == 400)
    }

    @Test func unpairedSurrogatesPassAsReplacementCharacters() throws {
        // Python decodes with `surrogatepass`; a Swift string cannot hold a surrogate.
        let utf8 = Array(#"{"command": "echo "#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8)
        #expect(try ExecuteRequest.decode(utf8, contentType: "application/json").command == "echo \u{FFFD}")
        let utf16 = Array(#"{"command": "a"#.utf16) + [0xD800] + Array(#""}"#.utf16)
        let bytes = utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        #expect(try ExecuteRequest.decode(bytes, contentType: "application/json").command == "a\u{FFFD}")
    }

    @Test func twoByteOrderMarksLeaveOneInTheText() {
        let error = rejection(bytes: [0xEF, 0xBB, 0xBF, 0xEF, 0xBB, 0xBF] + Array("{}".utf8))
        #expect(issues(error).first?["loc"] == .array(["body", .number(0)]))
        #expect(issues(error).first?["ctx"] == ["error": "Expecting value"])
    }

    @Test func aJSONErrorIsPlacedInCharactersNotBytes() {
        // Python counts characters of the decoded text: "é" is one, as two bytes of UTF-8 or as UTF-16.
        let text = #"{"command": "é" x}"#
        #expect(issues(rejection(text)).first?["loc"] == .array(["body", .number(16)]))
        let utf16 = text.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        #expect(issues(rejection(bytes: utf16)).first?["loc"] == .array(["body", .number(16)]))
        let utf8BOM = [0xEF, 0xBB, 0xBF] + Array(text.utf8)
        #expect(issues(rejection(bytes: utf8BOM)).first?["loc"] == .array(["body", .number(16)]))
    }
}
