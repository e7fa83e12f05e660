import Glibc

/// The files under a `SandboxRoot` as the v1 files API sees them: read, list, write atomically, remove. Every path is
/// a request path, confined by the root first. Knows nothing of HTTP; failures are `FileTree.Error`, whose messages
/// never name a host path.
public struct FileTree: Sendable {
    /// Why an operation failed.
    public enum Error: Swift.Error, Equatable, Sendable {
        /// The real location is outside the root.
        case escapesRoot
        /// The path contains a NUL byte, is too long, loops through symlinks, or resolves to bytes that are not UTF-8.
        case invalidPath
        case notFound
        /// A write names an existing directory.
        case isADirectory
        /// A write needs a directory where a file stands.
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
    }

    /// What `stat` says about a file or directory, reduced to what the API reports.
    public struct Status: Equatable, Sendable {
        public var isDirectory: Bool
        public var size: UInt64
        /// Modification time: seconds since the epoch and the nanoseconds within that second.
        public var modifiedSeconds: Int64
        public var modifiedNanoseconds: Int64
        /// Permission bits (`st_mode & 0o777`).
        public var permissions: UInt32

        public init(
            isDirectory: Bool, size: UInt64, modifiedSeconds: Int64, modifiedNanoseconds: Int64 = 0,
            permissions: UInt32
        ) {
            self.isDirectory = isDirectory
            self.size = size
            self.modifiedSeconds = modifiedSeconds
            self.modifiedNanoseconds = modifiedNanoseconds
            self.permissions = permissions
        }

        init(_ info: stat) {
            self.init(
                isDirectory: info.st_mode & S_IFMT == S_IFDIR, size: UInt64(max(0, info.st_size)),
                modifiedSeconds: Int64(info.st_mtim.tv_sec), modifiedNanoseconds: Int64(info.st_mtim.tv_nsec),
                permissions: UInt32(info.st_mode & 0o777))
        }
    }

    /// One directory entry; a symlink is described by what it points to.
    public struct Entry: Equatable, Sendable {
        public var name: String
        public var status: Status
    }

    /// What a path holds.
    public enum Contents {
        /// A regular file, open for reading; the caller owns `fd`.
        case file(fd: Int32, Status)
        /// A directory's entries, sorted by name (byte order).
        case directory(Status, [Entry])
    }

    public let root: SandboxRoot

    public init(root: SandboxRoot) {
        self.root = root
    }

    /// The host path of a request path.
    public func resolve(_ path: String) throws(Error) -> String {
        do {
            return try root.resolve(path)
        } catch .escapesRoot {
            throw .escapesRoot
        } catch {
            throw .invalidPath
        }
    }

    /// Opens a regular file, or lists a directory. Anything else is refused without being opened (opening a device
    /// can have effects, and a FIFO would wait for a writer).
    public func read(_ path: String) throws(Error) -> Contents {
        let target = try resolve(path)
        var info = stat()
        guard stat(target, &info) == 0 else { throw Self.lookupError(errno) }
        if info.st_mode & S_IFMT == S_IFDIR {
            return .directory(Status(info), try entries(of: target, requestPath: path))
        }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .unsupportedType }
        // O_NONBLOCK: should a FIFO replace the file meanwhile, opening it must not wait; regular files ignore it.
        let fd = open(target, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw Self.lookupError(errno) }
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw .unsupportedType
        }
        return .file(fd: fd, Status(info))
    }

    /// Where a write of `path` goes: the resolved destination, checked not to be a directory. Nothing is created yet.
    public func destination(_ path: String) throws(Error) -> String {
        let target = try resolve(path)
        var info = stat()
        if stat(target, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR { throw .isADirectory }
        return target
    }

    /// Starts an atomic write of `destination` (from `destination(_:)`): missing parents are created, the bytes go to
    /// a temporary file next to it, and `commit()` renames it into place with exactly `permissions`.
    public func create(_ destination: String, permissions: UInt32) throws(Error) -> NewFile {
        do {
            return NewFile(file: try AtomicFile(destination: destination, mode: mode_t(permissions)), permissions)
        } catch {
            throw Self.writeError(error)
        }
    }

    /// Removes a file or directory (a directory with its contents when `recursive`). The root itself is never
    /// removed: with `recursive` its contents are.
    public func remove(_ path: String, recursive: Bool) throws(Error) {
        let target = try resolve(path)
        var info = stat()
        guard lstat(target, &info) == 0 else { throw Self.lookupError(errno) }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            guard unlink(target) == 0 else { throw Self.removeError(errno) }
            return
        }
        if target == root.path {
            guard recursive else { throw .isRoot }
            try Self.removeContents(of: target)
            return
        }
        if recursive { try Self.removeContents(of: target) }
        guard rmdir(target) == 0 else { throw Self.removeError(errno) }
    }

    /// The entries of a directory. Symlinks are described by their targets; those that dangle or lead out of the
    /// root are left out, so a listing never describes anything outside the root.
    private func entries(of directory: String, requestPath: String) throws(Error) -> [Entry] {
        guard let stream = opendir(directory) else { throw Self.lookupError(errno) }
        defer { closedir(stream) }
        var entries: [Entry] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
            }
            guard name != "." && name != ".." else { continue }
            var info = stat()
            guard lstat(directory + "/" + name, &info) == 0 else { continue }  // removed meanwhile
            if info.st_mode & S_IFMT == S_IFLNK {
                guard let target = try? resolve(requestPath + "/" + name), stat(target, &info) == 0 else { continue }
            }
            entries.append(Entry(name: name, status: Status(info)))
        }
        return entries.sorted { Array($0.name.utf8).lexicographicallyPrecedes($1.name.utf8) }
    }

    /// Empties a directory without following symlinks: each level is opened with `O_NOFOLLOW` relative to its
    /// parent's descriptor, so a link swapped in meanwhile is removed, never entered.
    private static func removeContents(of directory: String) throws(Error) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw removeError(errno) }
        try removeContents(ofDirectory: fd)
    }

    /// Empties the directory open as `fd` and closes `fd`.
    private static func removeContents(ofDirectory fd: Int32) throws(Error) {
        guard let stream = fdopendir(fd) else {
            let code = errno
            close(fd)
            throw removeError(code)
        }
        defer { closedir(stream) }
        var children: [(name: String, isDirectory: Bool)] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
            }
            guard name != "." && name != ".." else { continue }
            var isDirectory = entry.pointee.d_type == DT_DIR
            if entry.pointee.d_type == DT_UNKNOWN {
                var info = stat()
                isDirectory = fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 && info.st_mode & S_IFMT == S_IFDIR
            }
            children.append((name, isDirectory))
        }
        for child in children {
            if child.isDirectory {
                let childFD = openat(fd, child.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard childFD >= 0 else {
                    if errno == ENOENT { continue }
                    throw removeError(errno)
                }
                try removeContents(ofDirectory: childFD)
            }
            if unlinkat(fd, child.name, child.isDirectory ? AT_REMOVEDIR : 0) != 0 && errno != ENOENT {
                throw removeError(errno)
            }
        }
    }

    /// Errors of looking a path up for reading or removal: a file where a directory should be means "not found".
    private static func lookupError(_ code: Int32) -> Error {
        switch code {
        case ENOENT, ENOTDIR: .notFound
        case ELOOP, ENAMETOOLONG: .invalidPath
        case EACCES, EPERM: .permissionDenied
        default: .other(String(cString: strerror(code)))
        }
    }

    private static func removeError(_ code: Int32) -> Error {
        switch code {
        case ENOTEMPTY, EEXIST: .notEmpty
        case EROFS: .permissionDenied
        default: lookupError(code)
        }
    }

    static func writeError(_ error: FileError) -> Error {
        switch error {
        case .notFound: .notFound
        case .notADirectory: .notADirectory
        case .isADirectory: .isADirectory
        case .noSpace: .noSpace
        case .permissionDenied: .permissionDenied
        case .nameTooLong: .invalidPath
        case .other(let message): .other(message)
        }
    }
}

extension FileTree {
    /// A file being written: invisible until `commit()`, gone after `abort()`.
    public final class NewFile {
        private let file: AtomicFile
        private let permissions: UInt32

        init(file: AtomicFile, _ permissions: UInt32) {
            self.file = file
            self.permissions = permissions
        }

        public func write(_ bytes: UnsafeRawBufferPointer) throws(FileTree.Error) {
            do { try file.write(bytes) } catch { throw FileTree.writeError(error) }
        }

        /// Moves the file into place and gives it its permissions. `AtomicFile` creates it subject to the umask, so
        /// the exact bits are set right after the rename, without following a symlink swapped in meanwhile.
        public func commit() throws(FileTree.Error) {
            do { try file.commit() } catch { throw FileTree.writeError(error) }
            if fchmodat(AT_FDCWD, file.destination, mode_t(permissions), AT_SYMLINK_NOFOLLOW) != 0 {
                throw FileTree.writeError(FileError(errno: errno))
            }
        }

        public func abort() { file.abort() }
    }
}
