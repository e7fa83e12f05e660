#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The sandbox root: the only tree the file endpoints touch. It is opened once, and every request path is resolved
/// from that descriptor, one component at a time (`Location`), so what is checked is what is used: nothing is
/// checked as a string and opened by path afterwards.
///
/// Paths are handled as bytes, as the kernel sees them. Swift `String` comparison and splitting work on canonically
/// equivalent grapheme clusters, so `"/"` followed by a combining mark would not split and a decomposed `"é"` would
/// equal a precomposed one; either would let a path that the kernel reads differently slip past the check.
public struct SandboxRoot: Sendable {
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

    /// The root's canonical real path (symlinks resolved, no trailing slash unless it is "/"), for display.
    public let path: String
    /// The root directory, open with `O_PATH`: every resolution starts here.
    public let descriptor: Descriptor
    /// The components of `path`: an absolute symlink target is followed through them back into the root.
    let components: [[UInt8]]
    /// The root's identity (`st_dev`, `st_ino`).
    let identity: Location.Identity

    /// Creates the directory (and parents) if missing, canonicalizes it and opens it.
    /// - Throws: `SetupError` if it cannot be created, resolved or opened, or is not a directory.
    public init(path: String) throws {
        guard !path.isEmpty, !path.utf8.contains(0) else { throw SetupError(path: path, code: EINVAL) }
        try Self.makeDirectories(path)
        var info = stat()
        do throws(Errno) {
            // The corresponding C function is `realpath`; every component exists now, so it is exact.
            let resolved = try systemCall { realpath(path, nil) }
            defer { free(resolved) }
            let fd = try systemCall { open(resolved, O_PATH | O_DIRECTORY | O_CLOEXEC) }
            descriptor = Descriptor(fd)
            try systemCall { fstat(fd, &info) }
            self.path = String(cString: resolved)
        } catch {
            throw SetupError(path: path, code: error.code)
        }
        components = Array(self.path.utf8).split(separator: slash).map { Array($0) }
        identity = Location.Identity(info)
    }

    /// Resolves a percent-decoded request path under the root, by descriptors.
    ///
    /// Leading slashes are stripped; then, as realpath does, symlinks are followed (a target that lies inside the
    /// root is fine; an absolute one is followed from `/`, so it must lead through the root's own path), `..`
    /// applies to the component before it after that one is resolved, and a tail that does not exist is kept as
    /// written (`missing/../x` is `x`). `""`, `"."` and `"/"` name the root itself; `../<root's name>/x` is `x`.
    /// - Throws: `.escapesRoot` if the real location is outside the root; `.tooManyLinks` after 40 symlinks (a loop,
    ///   or a long chain); `.invalidPath` for a NUL byte; the `errno` of a component that cannot be looked up.
    func locate(_ requestPath: String) throws(FileError.Code) -> Location {
        let bytes = Array(requestPath.utf8)
        guard !bytes.contains(0) else { throw .invalidPath }
        var location = Location(root: self)
        try location.follow(bytes[...])
        guard location.isInsideRoot else { throw .escapesRoot }
        return location
    }

    /// `mkdir -p`: creates each missing component, tolerating ones that exist (or appear meanwhile).
    /// Splits at slash bytes, as the kernel does.
    private static func makeDirectories(_ path: String) throws {
        let bytes = Array(path.utf8)
        let ends = bytes.indices.filter { $0 > 0 && bytes[$0] == slash } + [bytes.endIndex]
        for end in ends {
            do throws(Errno) {
                try systemCall { withCPath(bytes[..<end]) { mkdir($0, 0o755) } }
            } catch EEXIST {
                // There already (or made meanwhile).
            } catch {
                throw SetupError(path: path, code: error.code)
            }
        }
    }
}

let slash = UInt8(ascii: "/")
