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

    /// The one place where file errors become HTTP answers. `path` is the request path: messages name it, never a
    /// host path.
    static func apiError(_ error: FileTree.Error, path: String) -> APIError {
        let shown = "'\(shown(path))'"
        return switch error {
        case .escapesRoot: failure(.permissionDenied, "\(shown): path traversal outside sandbox root is forbidden")
        case .invalidPath: failure(.invalidArgument, "\(shown) is not a usable path")
        case .notFound: failure(.notFound, "\(shown): path does not exist within the sandbox")
        case .isADirectory: failure(.invalidArgument, "\(shown): target path is a directory")
        case .notADirectory: failure(.invalidArgument, "\(shown): a parent of the target path is not a directory")
        case .notEmpty: failure(.conflict, "\(shown): directory is not empty; pass recursive=true to remove it")
        case .isRoot:
            failure(.conflict, "cannot delete the sandbox root; pass recursive=true to clear its contents")
        case .unsupportedType: failure(.invalidArgument, "\(shown) is not a regular file or directory")
        case .permissionDenied: failure(.permissionDenied, "\(shown): permission denied")
        case .noSpace: failure(.resourceExhausted, "\(shown): no space left on device")
        case .other(let reason): failure(.internal, "\(shown): \(reason)")
        }
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
