extension FilesV1API {
    /// The machine-readable `code` of an error body, as the Go daemon spells it; each has one status.
    enum ErrorCode: String, CaseIterable, Sendable {
        case invalidArgument = "INVALID_ARGUMENT"
        case permissionDenied = "PERMISSION_DENIED"
        case notFound = "NOT_FOUND"
        case conflict = "CONFLICT"
        case failedPrecondition = "FAILED_PRECONDITION"
        case outOfRange = "OUT_OF_RANGE"
        case `internal` = "INTERNAL"
        case unavailable = "UNAVAILABLE"
        case resourceExhausted = "RESOURCE_EXHAUSTED"

        var status: Int {
            switch self {
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
        init(status: Int) {
            if status == 422 {
                self = .invalidArgument
            } else {
                self = Self.allCases.first { $0.status == status } ?? .internal
            }
        }
    }

    /// An error answer in this API's shape: `{"code": …, "message": …}` with the code's status.
    static func failure(_ code: ErrorCode, _ message: String, headers: [(String, String)] = []) -> APIError {
        APIError(
            status: code.status, body: ["code": .string(code.rawValue), "message": .string(message)], headers: headers)
    }

    /// The one place where file errors become HTTP answers; the message names the request path, never a host path.
    static func apiError(_ error: FileError) -> APIError {
        let code: ErrorCode =
            switch error.code {
            case .escapesRoot, .permissionDenied: .permissionDenied
            case .tooManyLinks, .invalidPath, .nameTooLong, .isADirectory, .notADirectory, .unsupportedType:
                .invalidArgument
            case .notFound: .notFound
            case .notEmpty, .isRoot: .conflict
            case .noSpace: .resourceExhausted
            case .other: .internal
            }
        return failure(code, error.message)
    }

    /// An upload error in this API's shape: ours pass unchanged; the multipart reader's (`{"detail": …}`, or a 422
    /// when the body cannot be read as a form at all, e.g. no boundary) are converted.
    static func conforming(_ error: APIError) -> APIError {
        if error.body["code"] != nil { return error }
        guard case .string(let detail)? = error.body["detail"] else {
            return failure(ErrorCode(status: error.status), "malformed multipart body", headers: error.headers)
        }
        return failure(ErrorCode(status: error.status), detail, headers: error.headers)
    }
}
