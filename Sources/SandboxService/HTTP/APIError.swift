/// An error answer: a status, a JSON body and extra headers. Every error response goes through this type.
public struct APIError: Error, Sendable {
    public var status: Int
    public var body: JSONValue
    public var headers: [(String, String)]

    public init(status: Int, body: JSONValue, headers: [(String, String)] = []) {
        self.status = status
        self.body = body
        self.headers = headers
    }

    /// FastAPI's shape for framework errors: `{"detail": "..."}`.
    public static func detail(_ status: Int, _ message: String, headers: [(String, String)] = []) -> APIError {
        APIError(status: status, body: ["detail": .string(message)], headers: headers)
    }

    /// The legacy file endpoints' shape: `{"message": "..."}`.
    public static func message(_ status: Int, _ message: String) -> APIError {
        APIError(status: status, body: ["message": .string(message)])
    }

    /// A 422 in FastAPI's validation shape.
    public static func validation(_ issues: [ValidationIssue]) -> APIError {
        APIError(status: 422, body: ["detail": .array(issues.map(\.json))])
    }

    public static let notFound = APIError.detail(404, "Not Found")
    public static let bodyTooLarge = APIError.detail(413, "Request body too large")

    public static func uploadTooLarge(_ limit: Int) -> APIError {
        .detail(413, "Upload too large: the limit is \(limit) bytes")
    }

    public var response: HTTPResponse {
        HTTPResponse(
            status: status, headers: [("Content-Type", "application/json")] + headers, body: .bytes(body.encoded()))
    }
}

/// One entry of a FastAPI validation error.
public struct ValidationIssue: Sendable, Equatable {
    public var type: String
    public var loc: [JSONValue]
    public var msg: String
    public var input: JSONValue?
    public var ctx: JSONValue?

    public init(type: String, loc: [JSONValue], msg: String, input: JSONValue? = nil, ctx: JSONValue? = nil) {
        self.type = type
        self.loc = loc
        self.msg = msg
        self.input = input
        self.ctx = ctx
    }

    var json: JSONValue {
        var object: [(String, JSONValue)] = [("type", .string(type)), ("loc", .array(loc)), ("msg", .string(msg))]
        if let input { object.append(("input", input)) }
        if let ctx { object.append(("ctx", ctx)) }
        return .object(object)
    }
}
