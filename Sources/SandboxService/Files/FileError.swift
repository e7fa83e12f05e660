import Glibc

/// Why a file operation failed, the one error of the Files layer. It knows nothing of HTTP: each API maps `code` to
/// its own status in one place. `message` names the path as the client gave it, never a host path.
public struct FileError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: Error, Equatable, Sendable {
        /// The real location is outside the root.
        case escapesRoot
        /// More than 40 symbolic links had to be followed (a loop, or a long chain): `ELOOP`.
        case tooManyLinks
        /// The path contains a NUL byte.
        case invalidPath
        /// A component is longer than `NAME_MAX`, or a path to create longer than `PATH_MAX`.
        case nameTooLong
        case notFound
        /// A write names an existing directory (the root included).
        case isADirectory
        /// A directory is needed where a file stands.
        case notADirectory
        /// A directory that is not empty, removed without `recursive`.
        case notEmpty
        /// The root itself, removed without `recursive` (with it, only its contents go).
        case isRoot
        /// Neither a regular file nor a directory (a FIFO, socket or device).
        case unsupportedType
        case permissionDenied
        case noSpace
        /// Anything else, as `strerror` describes it.
        case other(String)

        /// The code of a failed system call's `errno`.
        init(_ error: Errno) {
            switch error.code {
            case ENOENT: self = .notFound
            case ENOTDIR: self = .notADirectory
            case EISDIR: self = .isADirectory
            case ENOTEMPTY: self = .notEmpty
            case ELOOP: self = .tooManyLinks
            case ENAMETOOLONG: self = .nameTooLong
            case ENOSPC, EDQUOT: self = .noSpace
            case EACCES, EPERM, EROFS: self = .permissionDenied
            default: self = .other(error.description)
            }
        }
    }

    public var code: Code
    /// The request path, as the client gave it.
    public var path: String

    public init(_ code: Code, path: String) {
        self.code = code
        self.path = path
    }

    /// What went wrong, naming the path relative to the root with a leading slash (`'/data/x.csv'`).
    public var message: String {
        let shown = "'/" + path.drop { $0 == "/" } + "'"
        return switch code {
        case .escapesRoot: "\(shown): path traversal outside sandbox root is forbidden"
        case .tooManyLinks: "\(shown): too many levels of symbolic links"
        case .invalidPath: "\(shown) is not a usable path"
        case .nameTooLong: "\(shown): file name too long"
        case .notFound: "\(shown): path does not exist within the sandbox"
        case .isADirectory: "\(shown): target path is a directory"
        case .notADirectory: "\(shown): a parent of the target path is not a directory"
        case .notEmpty: "\(shown): directory is not empty; pass recursive=true to remove it"
        case .isRoot: "cannot delete the sandbox root; pass recursive=true to clear its contents"
        case .unsupportedType: "\(shown) is not a regular file or directory"
        case .permissionDenied: "\(shown): permission denied"
        case .noSpace: "\(shown): no space left on device"
        case .other(let reason): "\(shown): \(reason)"
        }
    }

    public var description: String { message }
}
