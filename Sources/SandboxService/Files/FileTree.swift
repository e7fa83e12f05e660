import Glibc

/// The files under a `SandboxRoot`: every file access of every API goes through here (read, list, test, write
/// atomically, remove, and the working directory of a command). Every path is a request path, resolved under the
/// root by descriptors (`Location`) and used through those descriptors. Knows nothing of HTTP; failures are
/// `FileError`, whose messages never name a host path.
public struct FileTree: Sendable {
    /// What `stat` says about a file or directory, reduced to what the APIs report.
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

    /// One directory entry. A symlink is described by what it points to, resolved as a request path would be; one
    /// that dangles, loops or leads out of the root is left out, so a listing never describes anything outside.
    public struct Entry: Equatable, Sendable {
        /// The name; bytes that are not UTF-8 are shown as U+FFFD.
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

    /// Where a write goes, checked and resolved (its directory is open) but not created yet.
    public struct Destination: Sendable {
        let location: Location
        let path: String
    }

    public let root: SandboxRoot

    public init(root: SandboxRoot) {
        self.root = root
    }

    /// Opens a regular file, or lists a directory. Anything else is refused without being opened (opening a device
    /// can have effects, and a FIFO would wait for a writer).
    public func read(_ path: String) throws(FileError) -> Contents {
        try attempt(path) { () throws(FileError.Code) in
            let location = try root.locate(path)
            guard location.tail.isEmpty else {
                let (fd, status) = try openRegularFile(location)
                return .file(fd: fd, status)
            }
            guard let info = location.status() else { throw .notFound }
            return .directory(Status(info), try entries(location))
        }
    }

    /// Opens a regular file for reading; the caller owns `fd`. A directory is `.isADirectory`.
    public func openFile(_ path: String) throws(FileError) -> (fd: Int32, status: Status) {
        try attempt(path) { () throws(FileError.Code) in
            let location = try root.locate(path)
            guard !location.tail.isEmpty else { throw .isADirectory }
            return try openRegularFile(location)
        }
    }

    /// A directory's entries, sorted by name (byte order).
    public func list(_ path: String) throws(FileError) -> [Entry] {
        try attempt(path) { () throws(FileError.Code) in
            let location = try root.locate(path)
            guard location.tail.isEmpty else { throw location.exists ? .notADirectory : .notFound }
            return try entries(location)
        }
    }

    /// Whether something (of any kind) exists at `path`; a name too long to exist does not.
    public func exists(_ path: String) throws(FileError) -> Bool {
        try attempt(path) { () throws(FileError.Code) in
            do throws(FileError.Code) {
                return try root.locate(path).exists
            } catch .nameTooLong {
                return false
            }
        }
    }

    /// A directory to run a command in, open (`fchdir` needs nothing else), and its host path for display.
    public func workingDirectory(_ path: String) throws(FileError) -> (descriptor: Descriptor, path: String) {
        try attempt(path) { () throws(FileError.Code) in
            let location = try root.locate(path)
            guard location.tail.isEmpty else { throw location.exists ? .notADirectory : .notFound }
            return (location.directory, location.hostPath)
        }
    }

    /// A directory, open, and its path relative to the root with symlinks resolved (its names from the root): what a
    /// directory watch watches.
    public func directory(_ path: String) throws(FileError) -> (descriptor: Descriptor, path: [UInt8]) {
        try attempt(path) { () throws(FileError.Code) in
            let location = try root.locate(path)
            guard location.tail.isEmpty else { throw location.exists ? .notADirectory : .notFound }
            let names = location.levels.dropFirst().map(\.name)
            return (location.directory, Array(names.joined(separator: [slash])))
        }
    }

    /// Where a write of `path` goes. Everything that would refuse it is checked here, before anything is created:
    /// confinement, an existing directory (the root included) at `path`, a file where a directory is needed, names
    /// longer than `NAME_MAX`, and a path longer than `PATH_MAX` (such a file could not be reached by path).
    public func destination(_ path: String) throws(FileError) -> Destination {
        try attempt(path) { () throws(FileError.Code) in
            let location = try root.locate(path)
            guard !location.tail.isEmpty else { throw .isADirectory }
            if location.tail.count > 1 && location.tailStatus != nil { throw .notADirectory }
            guard location.tail.allSatisfy({ $0.count <= Int(NAME_MAX) }), location.hostPathLength < Int(PATH_MAX)
            else { throw .nameTooLong }
            return Destination(location: location, path: path)
        }
    }

    /// Starts an atomic write of `destination`: missing parents are created (`mkdirat`, and removed again if the
    /// write fails or is aborted), the bytes go to a temporary file next to it, and `commit()` renames it into
    /// place, with exactly `permissions` when given (else 0644 under the umask).
    public func create(_ destination: Destination, permissions: UInt32?) throws(FileError) -> NewFile {
        var created: [(directory: Descriptor, name: [UInt8])] = []
        do throws(FileError.Code) {
            var directory = destination.location.directory
            for name in destination.location.tail.dropLast() {
                do throws(Errno) {
                    try systemCall { withCPath(name) { mkdirat(directory.rawValue, $0, 0o777) } }
                    created.append((directory, name))
                } catch EEXIST {
                    // There already: entered below if it is a directory.
                } catch {
                    throw FileError.Code(error)
                }
                do throws(Errno) {
                    // O_NOFOLLOW: a symlink put in its place meanwhile is not entered (ELOOP or ENOTDIR).
                    let fd = try systemCall {
                        withCPath(name) {
                            openat(directory.rawValue, $0, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                        }
                    }
                    directory = Descriptor(fd)
                } catch ELOOP, ENOTDIR {
                    throw .notADirectory
                } catch {
                    throw FileError.Code(error)
                }
            }
            let file = try AtomicFile(
                directory: directory, name: destination.location.tail.last!, permissions: permissions)
            return NewFile(file: file, createdDirectories: created, path: destination.path)
        } catch {
            NewFile.removeDirectories(created)
            throw FileError(error, path: destination.path)
        }
    }

    /// Removes a file or directory (a directory with its contents when `recursive`). The root itself is never
    /// removed: with `recursive` its contents are. A symlink is resolved first, as for every path.
    public func remove(_ path: String, recursive: Bool) throws(FileError) {
        try attempt(path) { () throws(FileError.Code) in
            let location = try root.locate(path)
            guard location.tail.isEmpty else {
                guard location.exists else { throw .notFound }
                try systemCall(failure: Self.removeError) {
                    withCPath(location.tail[0]) { unlinkat(location.directory.rawValue, $0, 0) }
                }
                return
            }
            if location.isRoot {
                guard recursive else { throw .isRoot }
                try Self.removeContents(of: location.directory)
                return
            }
            if recursive { try Self.removeContents(of: location.directory) }
            let parent = try location.parentDirectory()
            try systemCall(failure: Self.removeError) {
                withCPath(location.levels.last!.name) { unlinkat(parent.rawValue, $0, AT_REMOVEDIR) }
            }
        }
    }

    /// Runs `body`, giving its error the request path.
    private func attempt<T>(_ path: String, _ body: () throws(FileError.Code) -> T) throws(FileError) -> T {
        do {
            return try body()
        } catch {
            throw FileError(error, path: path)
        }
    }

    /// Opens `tail[0]` of a location for reading, if it is a regular file. It is opened by name relative to the
    /// directory with `O_NOFOLLOW` (a symlink swapped in meanwhile fails) and checked again once open.
    private func openRegularFile(_ location: Location) throws(FileError.Code) -> (fd: Int32, status: Status) {
        guard location.tail.count == 1, let info = location.tailStatus else { throw .notFound }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .unsupportedType }
        let fd: Int32
        do throws(Errno) {
            // O_NONBLOCK: should a FIFO be swapped in meanwhile, opening it must not wait; regular files ignore it.
            fd = try systemCall {
                withCPath(location.tail[0]) {
                    openat(location.directory.rawValue, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
                }
            }
        } catch ELOOP, ENOTDIR {
            throw .notFound
        } catch {
            throw FileError.Code(error)
        }
        var opened = stat()
        guard fstat(fd, &opened) == 0, opened.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw .unsupportedType
        }
        return (fd, Status(opened))
    }

    /// The entries of the directory a location names, each described as `Entry` says.
    private func entries(_ location: Location) throws(FileError.Code) -> [Entry] {
        let directory: DirectoryEntries
        do throws(Errno) {
            directory = try DirectoryEntries(of: location.directory.rawValue)
        } catch {
            throw FileError.Code(error)
        }
        var entries: [(name: [UInt8], status: Status)] = []
        directory.forEach { entry in
            let name = Array(entry.name)
            var info = stat()
            guard withCPath(name, { fstatat(directory.descriptor, $0, &info, AT_SYMLINK_NOFOLLOW) }) == 0 else {
                return
            }
            if info.st_mode & S_IFMT == S_IFLNK {
                var target = location
                guard (try? target.follow(name[...])) != nil, target.isInsideRoot, let resolved = target.status()
                else { return }
                info = resolved
            }
            entries.append((name, Status(info)))
        }
        return entries.sorted { $0.name.lexicographicallyPrecedes($1.name) }.map {
            Entry(name: String(decoding: $0.name, as: UTF8.self), status: $0.status)
        }
    }

    /// Empties a directory without following symlinks: each level is opened with `O_NOFOLLOW` relative to its
    /// parent's descriptor, so a link swapped in meanwhile is removed, never entered.
    private static func removeContents(of directory: Descriptor) throws(FileError.Code) {
        let fd = try systemCall(failure: removeError) {
            openat(directory.rawValue, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        }
        try removeContents(ofDirectory: fd)
    }

    /// Empties the directory open as `fd` and closes `fd`.
    private static func removeContents(ofDirectory fd: Int32) throws(FileError.Code) {
        let directory: DirectoryEntries
        do throws(Errno) {
            directory = try DirectoryEntries(taking: fd)
        } catch {
            throw removeError(error)
        }
        var children: [(name: [UInt8], isDirectory: Bool)] = []
        directory.forEach { entry in
            let name = Array(entry.name)
            var isDirectory = entry.type == DT_DIR
            if entry.type == DT_UNKNOWN {
                var info = stat()
                isDirectory =
                    withCPath(name, { fstatat(directory.descriptor, $0, &info, AT_SYMLINK_NOFOLLOW) }) == 0
                    && info.st_mode & S_IFMT == S_IFDIR
            }
            children.append((name, isDirectory))
        }
        for child in children {
            if child.isDirectory {
                let childFD: Int32
                do throws(Errno) {
                    childFD = try systemCall {
                        withCPath(child.name) {
                            openat(directory.descriptor, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                        }
                    }
                } catch ENOENT {
                    continue  // removed meanwhile
                } catch {
                    throw removeError(error)
                }
                try removeContents(ofDirectory: childFD)
            }
            do throws(Errno) {
                try systemCall {
                    withCPath(child.name) { unlinkat(directory.descriptor, $0, child.isDirectory ? AT_REMOVEDIR : 0) }
                }
            } catch ENOENT {
                // Removed meanwhile.
            } catch {
                throw removeError(error)
            }
        }
    }

    private static func removeError(_ error: Errno) -> FileError.Code {
        switch error.code {
        case ENOTEMPTY, EEXIST: .notEmpty
        case ENOTDIR: .notFound
        default: FileError.Code(error)
        }
    }
}

extension FileTree {
    /// A file being written: invisible until `commit()`, gone after `abort()` (with the parents its creation made).
    public final class NewFile {
        private let file: AtomicFile
        private var createdDirectories: [(directory: Descriptor, name: [UInt8])]
        private let path: String

        init(file: AtomicFile, createdDirectories: [(directory: Descriptor, name: [UInt8])], path: String) {
            self.file = file
            self.createdDirectories = createdDirectories
            self.path = path
        }

        deinit {
            abort()
        }

        public func write(_ bytes: UnsafeRawBufferPointer) throws(FileError) {
            do { try file.write(bytes) } catch { throw FileError(error, path: path) }
        }

        /// Moves the file into place.
        public func commit() throws(FileError) {
            do { try file.commit() } catch { throw FileError(error, path: path) }
            createdDirectories = []
        }

        /// Removes the temporary file and the directories created for it (those still empty). Safe after `commit`.
        public func abort() {
            file.abort()
            Self.removeDirectories(createdDirectories)
            createdDirectories = []
        }

        /// Removes directories created for a write, deepest first, where they are still empty.
        static func removeDirectories(_ directories: [(directory: Descriptor, name: [UInt8])]) {
            for (directory, name) in directories.reversed() {
                _ = withCPath(name) { unlinkat(directory.rawValue, $0, AT_REMOVEDIR) }
            }
        }
    }
}
