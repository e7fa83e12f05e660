/// The error answer of every v1 endpoint (files, processes, health): `{"code": "...", "message": "..."}`. The codes
/// are the core's (`SandboxError.Code`, spelled as the Go daemon spells them), each with one status here; an answer
/// has another status only where the code's own does not say enough (a process limit is 429, a body too large 413).
enum V1Error {
    /// The status of each code, as the Go daemon's REST API answers it.
    static func status(of code: SandboxError.Code) -> Int {
        switch code {
        case .invalidArgument: 400
        case .permissionDenied: 403
        case .notFound: 404
        case .conflict: 409
        case .failedPrecondition: 412
        case .outOfRange: 416
        case .internal: 500
        case .unavailable: 503
        case .resourceExhausted: 507
        }
    }

    /// The code for a status another layer chose; a 422 (a malformed form body) is an invalid argument.
    static func code(status: Int) -> SandboxError.Code {
        status == 422
            ? .invalidArgument : SandboxError.Code.allCases.first { Self.status(of: $0) == status } ?? .internal
    }

    /// An error answer: `code` and `message`, with the code's status unless `status` is given.
    static func answer(
        _ code: SandboxError.Code, _ message: String, status: Int? = nil, headers: [(String, String)] = []
    ) -> APIError {
        APIError(
            status: status ?? Self.status(of: code),
            body: ["code": .string(code.rawValue), "message": .string(message)], headers: headers)
    }

    /// The one place where core errors become v1 answers: the code's status, except where the cause says more (the
    /// process limit, the watch limit and a stdin the process does not read are 429; a lack of descriptors, processes or memory is
    /// 503 with `Retry-After`, while `RESOURCE_EXHAUSTED` is otherwise 507, no space left).
    static func answer(_ error: SandboxError) -> APIError {
        switch error.cause {
        case .spawn(.tooManyProcesses)?, .process(.stdinFull)?, .watchLimit?:
            answer(error.code, error.message, status: 429)
        case .spawn(.resourcesExhausted)?:
            answer(error.code, error.message, status: 503, headers: [("Retry-After", "1")])
        default:
            answer(error.code, error.message)
        }
    }

    /// An upload error in this shape: ours pass unchanged; the multipart reader's (`{"detail": …}`, or a 422 when
    /// the body cannot be read as a form at all, e.g. no boundary) are converted.
    static func conforming(_ error: APIError) -> APIError {
        if error.body["code"] != nil { return error }
        guard case .string(let detail)? = error.body["detail"] else {
            return answer(code(status: error.status), "malformed multipart body", headers: error.headers)
        }
        return answer(code(status: error.status), detail, headers: error.headers)
    }
}
