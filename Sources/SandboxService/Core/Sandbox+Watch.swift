extension Sandbox {
    /// Watches the directory `path` names (relative to the root, a leading slash re-rooted; symlinks resolved as for
    /// every path), and with `recursive` every directory below it. The watch starts before this returns: what
    /// changes afterwards is reported. The caller cancels it when its client leaves.
    /// - Throws: `permissionDenied` outside the root; `notFound` when nothing is there; `invalidArgument` for a file;
    ///   `resourceExhausted` past `--max-watches` (cause `watchLimit`) or when the kernel has no inotify instance
    ///   left; `unavailable` once shutdown has begun.
    public func watch(_ path: String, recursive: Bool) throws(SandboxError) -> DirectoryWatch {
        let directory: (descriptor: Descriptor, path: [UInt8])
        do {
            directory = try files.directory(path)
        } catch  where error.code == .notADirectory {
            throw SandboxError(
                .invalidArgument, "'/\(path.drop { $0 == "/" })' is not a directory", path: path,
                cause: .file(.notADirectory))
        } catch {
            throw SandboxError(error)
        }
        return try watches.start(
            root: root.descriptor, top: directory.descriptor, topPath: directory.path, recursive: recursive,
            shownPath: path)
    }

    /// Directory watches open now.
    public var openWatches: Int { watches.count }
}
