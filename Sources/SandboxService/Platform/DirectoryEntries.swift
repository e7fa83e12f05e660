import Glibc

/// An open directory read entry by entry (`readdir`); the stream, and the descriptor it reads, are closed when this
/// goes away.
final class DirectoryEntries {
    /// One entry, valid only during the call of `forEach` that hands it over.
    struct Entry {
        /// The name's bytes, without the terminating NUL: they point into the stream's buffer.
        let name: UnsafeRawBufferPointer
        /// `DT_DIR`, `DT_REG`, `DT_LNK`, …; `DT_UNKNOWN` when the file system does not say.
        let type: UInt8
    }

    private let stream: OpaquePointer
    /// The directory's descriptor, for `*at` calls relative to it; it belongs to the stream.
    let descriptor: Int32

    /// Reads the directory open as `fd`, which it takes over (`fdopendir`): `fd` is closed with the stream, or at
    /// once if it cannot be read.
    init(taking fd: Int32) throws(Errno) {
        do {
            stream = try systemCall { fdopendir(fd) }
        } catch {
            close(fd)
            throw error
        }
        descriptor = fd
    }

    /// Reads the directory that `directory` (a descriptor, `O_PATH` is enough) is open on.
    convenience init(of directory: Int32) throws(Errno) {
        try self.init(taking: systemCall { openat(directory, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) })
    }

    /// Reads the directory at `path` (`opendir`).
    init(path: String) throws(Errno) {
        stream = try systemCall { opendir(path) }
        descriptor = dirfd(stream)
    }

    deinit { closedir(stream) }

    /// Calls `body` with each entry but `.` and `..`, in the order the file system lists them.
    func forEach<Failure: Error>(_ body: (Entry) throws(Failure) -> Void) throws(Failure) {
        let nameOffset = MemoryLayout<dirent>.offset(of: \.d_name)!
        let dot = UInt8(ascii: ".")
        while let entry = readdir(stream) {
            let start = UnsafeRawPointer(entry) + nameOffset
            let name = UnsafeRawBufferPointer(start: start, count: strlen(start.assumingMemoryBound(to: CChar.self)))
            if name.first == dot && (name.count == 1 || (name.count == 2 && name[1] == dot)) { continue }
            try body(Entry(name: name, type: entry.pointee.d_type))
        }
    }
}
