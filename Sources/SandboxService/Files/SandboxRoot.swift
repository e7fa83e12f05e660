#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The sandbox root: the only tree the file endpoints touch. It maps request paths to host paths
/// and refuses any whose real location (symlinks resolved) is outside the root.
///
/// Paths are handled as UTF-8 bytes, as the kernel sees them. Swift `String` comparison and
/// splitting work on canonically equivalent grapheme clusters, so `"/"` followed by a combining
/// mark would not split and a decomposed `"é"` would equal a precomposed one; either would let a
/// path that the kernel reads differently slip past the check.
public struct SandboxRoot: Sendable {
    /// Why a request path is refused.
    public enum Error: Swift.Error, Equatable, Sendable {
        /// The real location is outside the root, or cannot be determined (a symlink loop
        /// followed by `..`).
        case escapesRoot
        /// The path contains a NUL byte, or resolves through a symlink to bytes that are not UTF-8.
        case invalidPath
    }

    /// Why the root directory cannot be used; thrown only by `init(path:)`, at startup.
    public struct SetupError: Swift.Error, Equatable, Sendable, CustomStringConvertible {
        /// The path as given to `init(path:)`.
        public let path: String
        /// The `errno` of the call that failed.
        public let code: Int32

        public var description: String {
            "cannot use '\(path)' as the sandbox root: \(String(cString: strerror(code)))"
        }
    }

    /// The root's canonical real path (symlinks resolved, no trailing slash unless it is "/").
    public let path: String
    private let rootBytes: [UInt8]

    /// Creates the directory (and parents) if missing, then canonicalizes it.
    /// - Throws: `SetupError` if it cannot be created, resolved, or is not a directory.
    public init(path: String) throws {
        guard !path.isEmpty, !path.utf8.contains(0) else { throw SetupError(path: path, code: EINVAL) }
        try Self.makeDirectories(path)
        // The corresponding C function is `realpath`; every component exists now, so it is exact.
        guard let resolved = realpath(path, nil) else { throw SetupError(path: path, code: errno) }
        defer { free(resolved) }
        var info = stat()
        guard stat(resolved, &info) == 0 else { throw SetupError(path: path, code: errno) }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw SetupError(path: path, code: ENOTDIR) }
        self.path = String(cString: resolved)
        self.rootBytes = Array(self.path.utf8)
    }

    /// Resolves a percent-decoded request path against the root.
    ///
    /// Leading slashes are stripped, then the real location is computed as Python's
    /// `os.path.realpath(os.path.join(root, rel))` does: symlinks in existing components are
    /// resolved, `..` applies to the component before it after that one is resolved, and a tail
    /// that does not exist is kept as written. `""`, `"."` and `"/"` name the root itself. A path
    /// through a symlink loop is left unresolved past the loop, as realpath leaves it.
    /// - Returns: The absolute host path, the root or under it.
    /// - Throws: `.escapesRoot` if the result is neither the root nor under `root + "/"` (so a
    ///   sibling `/app-evil` does not pass for root `/app`), or if `..` follows a symlink loop;
    ///   `.invalidPath` for a NUL byte or a result that is not UTF-8.
    public func resolve(_ requestPath: String) throws(SandboxRoot.Error) -> String {
        let request = Array(requestPath.utf8)
        guard !request.contains(0) else { throw .invalidPath }

        var resolver = PathResolver()
        let (resolved, complete) = resolver.join(rootBytes, request.drop { $0 == slash })
        let components = resolved.split(separator: slash)
        // A symlink loop leaves the rest of the path unresolved, as realpath does. Python would then
        // apply `..` lexically across the loop, which can land somewhere the kernel would never reach
        // and that was never checked for symlinks; refuse that instead.
        if !complete && components.contains(where: { $0.elementsEqual(PathResolver.parent) }) {
            throw .escapesRoot
        }
        let normalized = components.filter { !$0.elementsEqual(PathResolver.current) }
        let absolute = normalized.isEmpty ? [slash] : Array(normalized.map { [slash] + $0 }.joined())

        guard isConfined(absolute) else { throw .escapesRoot }
        // Only a symlink target can bring in bytes that are not UTF-8; a lossy String would name a
        // different file than the one checked.
        guard let result = String(validating: absolute, as: UTF8.self) else { throw .invalidPath }
        return result
    }

    /// Byte-wise, so canonically equivalent but different names don't match.
    private func isConfined(_ candidate: [UInt8]) -> Bool {
        if rootBytes == [slash] || candidate == rootBytes { return true }
        return candidate.count > rootBytes.count && candidate.starts(with: rootBytes)
            && candidate[rootBytes.count] == slash
    }

    /// `mkdir -p`: creates each missing component, tolerating ones that exist (or appear meanwhile).
    /// Splits at slash bytes, as the kernel does.
    private static func makeDirectories(_ path: String) throws {
        let bytes = Array(path.utf8)
        let ends = bytes.indices.filter { $0 > 0 && bytes[$0] == slash } + [bytes.endIndex]
        for end in ends {
            let failure = withCPath(Array(bytes[..<end])) { mkdir($0, 0o755) == 0 ? 0 : errno }
            if failure != 0 && failure != EEXIST {
                throw SetupError(path: path, code: failure)
            }
        }
    }
}

private let slash = UInt8(ascii: "/")

/// A port of CPython's `posixpath._joinrealpath` (non-strict) over bytes. It keeps CPython's
/// cache of resolved links, which is also what detects loops, and additionally caps the number
/// of links read so a pathological tree (e.g. bind-mount cycles) still terminates.
private struct PathResolver {
    static let current = Array(".".utf8)
    static let parent = Array("..".utf8)
    /// Linux's own limit on symlinks followed in one lookup (`MAXSYMLINKS`).
    static let maxLinkReads = 40

    /// Symlink path → its resolution, or `nil` while it is being resolved (seeing it then is a loop).
    private var seen: [[UInt8]: [UInt8]?] = [:]
    private var linkReads = 0

    /// Resolves `rest` relative to the already resolved absolute `path`.
    /// - Returns: The resolved path and `true`, or, on a loop, the path up to the looping link with
    ///   the unresolved rest appended and `false`.
    mutating func join(_ path: [UInt8], _ rest: ArraySlice<UInt8>) -> (path: [UInt8], complete: Bool) {
        var path = path
        var rest = rest
        if rest.first == slash {
            path = [slash]
        }
        while !rest.isEmpty {
            let name = rest.prefix { $0 != slash }
            rest = rest.dropFirst(name.count).drop { $0 == slash }
            if name.isEmpty || name.elementsEqual(Self.current) {
                continue
            }
            if name.elementsEqual(Self.parent) {
                path = Self.dirname(path)
                continue
            }
            let candidate = Self.appending(name, to: path)
            guard Self.isSymlink(candidate) else {
                // Existing non-links and missing components alike are taken as written.
                path = candidate
                continue
            }
            if let cached = seen[candidate] {
                if let resolution = cached {
                    path = resolution
                    continue
                }
                return (Self.appending(rest, to: candidate), false)
            }
            linkReads += 1
            guard linkReads <= Self.maxLinkReads, let target = Self.readLink(candidate) else {
                return (Self.appending(rest, to: candidate), false)
            }
            seen[candidate] = .some(nil)
            let (resolved, complete) = join(path, target[...])
            if !complete {
                return (Self.appending(rest, to: resolved), false)
            }
            seen[candidate] = resolved
            path = resolved
        }
        return (path, true)
    }

    private static func appending(_ name: some Collection<UInt8>, to path: [UInt8]) -> [UInt8] {
        if name.isEmpty { return path }
        return path.last == slash ? path + name : path + [slash] + name
    }

    /// The parent of an absolute path without `.` or `..` components; "/" is its own parent.
    private static func dirname(_ path: [UInt8]) -> [UInt8] {
        guard let last = path.lastIndex(of: slash), last > 0 else { return [slash] }
        return Array(path[..<last])
    }

    /// The corresponding C function is `lstat`; any failure means "not a link", as in realpath.
    private static func isSymlink(_ path: [UInt8]) -> Bool {
        var info = stat()
        let status = withCPath(path) { lstat($0, &info) }
        return status == 0 && info.st_mode & S_IFMT == S_IFLNK
    }

    /// The corresponding C function is `readlink`; grows the buffer until the target fits.
    private static func readLink(_ path: [UInt8]) -> [UInt8]? {
        var capacity = Int(PATH_MAX)
        while true {
            var buffer = [UInt8](repeating: 0, count: capacity)
            let count = withCPath(path) { cPath in
                buffer.withUnsafeMutableBufferPointer { readlink(cPath, $0.baseAddress!, capacity) }
            }
            if count < 0 { return nil }
            if count < capacity { return Array(buffer[..<count]) }
            capacity *= 2
        }
    }
}

/// Calls `body` with `path` as a NUL-terminated C string; callers have rejected NUL bytes.
private func withCPath<R>(_ path: [UInt8], _ body: (UnsafePointer<CChar>) -> R) -> R {
    (path + [0]).withUnsafeBufferPointer { bytes in
        bytes.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) }
    }
}
