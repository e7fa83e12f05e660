/// Files under the root, by the path the client named (percent-decoded, relative to the root; leading slashes are
/// stripped). Every error names that path, never a host path, and carries it in `SandboxError.path`.
extension Sandbox {
    /// A regular file, open, or a directory's entries.
    public func read(_ path: String) throws(SandboxError) -> FileTree.Contents {
        try file { () throws(FileError) in try files.read(path) }
    }

    /// A regular file, open for reading; the caller owns the descriptor.
    public func openFile(_ path: String) throws(SandboxError) -> (fd: Int32, status: FileTree.Status) {
        try file { () throws(FileError) in try files.openFile(path) }
    }

    /// A directory's entries, sorted by name; a symlink described by its target when that is inside the root.
    public func list(_ path: String) throws(SandboxError) -> [FileTree.Entry] {
        try file { () throws(FileError) in try files.list(path) }
    }

    public func exists(_ path: String) throws(SandboxError) -> Bool {
        try file { () throws(FileError) in try files.exists(path) }
    }

    /// Where a write of `path` goes, checked before anything is created or received: confinement, a directory at
    /// `path`, a file where a directory is needed, names too long.
    public func destination(_ path: String) throws(SandboxError) -> FileTree.Destination {
        try file { () throws(FileError) in try files.destination(path) }
    }

    /// A new file at `destination` (parents created), written in pieces and made visible at once by `commit`, with
    /// `permissions` exactly (the umask's default when nil).
    public func create(_ destination: FileTree.Destination, permissions: UInt32?) throws(SandboxError) -> NewFile {
        NewFile(try file { () throws(FileError) in try files.create(destination, permissions: permissions) })
    }

    /// Removes a file, or a directory (with its contents when `recursive`; the root's contents only, never the root).
    public func remove(_ path: String, recursive: Bool) throws(SandboxError) {
        try file { () throws(FileError) in try files.remove(path, recursive: recursive) }
    }

    private func file<T>(_ operation: () throws(FileError) -> T) throws(SandboxError) -> T {
        do { return try operation() } catch { throw SandboxError(error) }
    }

    /// A file being written: nothing is visible until `commit`; `abort` (or a failure) leaves nothing behind.
    public final class NewFile {
        private let file: FileTree.NewFile

        init(_ file: FileTree.NewFile) {
            self.file = file
        }

        public func write(_ bytes: UnsafeRawBufferPointer) throws(SandboxError) {
            do { try file.write(bytes) } catch { throw SandboxError(error) }
        }

        public func commit() throws(SandboxError) {
            do { try file.commit() } catch { throw SandboxError(error) }
        }

        public func abort() { file.abort() }
    }
}
