import Glibc

/// Where a request path leads under the root, found the way the kernel walks a path but by hand, from the root's
/// descriptor: each component is opened with `openat(directory, name, O_PATH | O_NOFOLLOW)` relative to the one
/// before, a symlink is read with `readlinkat` and its target walked in its place (at most 40 of them), and `..`
/// goes back to the directory that was walked through, never to whatever `..` names by then.
///
/// The result is descriptors: `directory` is the last directory reached, open; `tail` the names after it. Every
/// operation then works relative to `directory` (`openat`, `mkdirat`, `renameat`, `unlinkat` with `O_NOFOLLOW` or
/// `AT_SYMLINK_NOFOLLOW`), so a directory swapped for a symlink after the walk is never followed.
struct Location: Sendable {
    /// A file's identity, to recognize a directory seen before.
    struct Identity: Equatable, Sendable {
        var device: UInt64
        var inode: UInt64

        init(_ info: stat) {
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
        }
    }

    /// A directory on the way from the root: its name in the one before (empty for the root) and its identity.
    struct Level: Sendable {
        var name: [UInt8]
        var identity: Identity
    }

    /// Linux's own limit on symlinks followed in one lookup (`MAXSYMLINKS`); past it, `ELOOP`.
    static let maxLinks = 40

    let root: SandboxRoot
    /// The directories from the root (first) to `directory` (last).
    private(set) var levels: [Level]
    /// The last of `levels`, open with `O_PATH`.
    private(set) var directory: Descriptor
    /// The one before it, while it is still open.
    private var parent: Descriptor?
    /// Names after `directory`: the first may exist and is then not a directory (`tailStatus` describes it); the
    /// ones after it do not exist.
    private(set) var tail: [[UInt8]] = []
    /// The status of `tail[0]`, when it exists.
    private(set) var tailStatus: stat?
    /// Set while the walk is above the root, at the ancestor made of this many of the root's components (`..` out
    /// of the root, or an absolute symlink target). Only the root's own components lead back in.
    private var above: Int?
    private var linksFollowed = 0

    /// The root itself.
    init(root: SandboxRoot) {
        self.root = root
        levels = [Level(name: [], identity: root.identity)]
        directory = root.descriptor
    }

    /// False when the walk ended above the root, i.e. outside it.
    var isInsideRoot: Bool { above == nil }

    /// The location is the root itself.
    var isRoot: Bool { levels.count == 1 && tail.isEmpty }

    /// Something exists here: a directory, or a file of another kind.
    var exists: Bool { tail.isEmpty || (tail.count == 1 && tailStatus != nil) }

    /// The host path, for display only (the startup log, a process's `cwd`); bytes that are not UTF-8 are shown
    /// as U+FFFD. Never opened.
    var hostPath: String {
        var bytes = Array(root.path.utf8)
        for name in levels.dropFirst().map(\.name) + tail {
            if bytes.last != slash { bytes.append(slash) }
            bytes += name
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The length in bytes of `hostPath`: a file to be created must stay reachable by path (under `PATH_MAX`).
    var hostPathLength: Int {
        let names = levels.dropFirst().map(\.name) + tail
        let separators = root.path == "/" ? max(names.count - 1, 0) : names.count
        return root.path.utf8.count + separators + names.reduce(0) { $0 + $1.count }
    }

    /// What stands here: `directory`'s status when the tail is empty, `tail[0]`'s when it is the only name and
    /// exists; nil otherwise.
    func status() -> stat? {
        if tail.isEmpty {
            var info = stat()
            return fstat(directory.rawValue, &info) == 0 ? info : nil
        }
        return tail.count == 1 ? tailStatus : nil
    }

    /// Walks `path` (split at slashes; empty components and `.` are skipped) from here.
    mutating func follow(_ path: ArraySlice<UInt8>) throws(FileError.Code) {
        var pending = Array(path.split(separator: slash).reversed())
        while let name = pending.popLast() {
            if name.elementsEqual(Self.current) { continue }
            let isParent = name.elementsEqual(Self.parentName)
            if let depth = above {
                if isParent {
                    above = max(depth - 1, 0)
                } else if name.elementsEqual(root.components[depth]) {
                    above = depth + 1 == root.components.count ? nil : depth + 1
                } else {
                    throw .escapesRoot
                }
            } else if !tail.isEmpty {
                if isParent {
                    tail.removeLast()
                    if tail.isEmpty { tailStatus = nil }
                } else {
                    tail.append(Array(name))
                }
            } else if isParent {
                try ascend()
            } else if let target = try step(name, isLast: pending.isEmpty) {
                linksFollowed += 1
                guard linksFollowed <= Self.maxLinks else { throw .tooManyLinks }
                if target.first == slash { restartAtFilesystemRoot() }
                pending += target.split(separator: slash).reversed()
            }
        }
    }

    /// The directory `levels.dropLast()` ends at, open: the parent of a directory to remove.
    func parentDirectory() throws(FileError.Code) -> Descriptor {
        if levels.count == 2 { return root.descriptor }
        if let parent { return parent }
        return try openParent()
    }

    /// Looks `name` up in `directory`: enters a directory, returns a symlink's target, or starts the tail with a
    /// file of another kind or a name that does not exist.
    private mutating func step(_ name: ArraySlice<UInt8>, isLast: Bool) throws(FileError.Code) -> [UInt8]? {
        do throws(Errno) {
            if isLast {
                // The last name is usually a file: one `fstatat` says so, and nothing needs to be held open for it
                // (it is opened later by name, with `O_NOFOLLOW`). A directory or symlink is looked up as below.
                var info = stat()
                try systemCall { withCPath(name) { fstatat(directory.rawValue, $0, &info, AT_SYMLINK_NOFOLLOW) } }
                let type = info.st_mode & S_IFMT
                if type != S_IFDIR && type != S_IFLNK {
                    tail = [Array(name)]
                    tailStatus = info
                    return nil
                }
            }
            let opened = Descriptor(
                try systemCall { withCPath(name) { openat(directory.rawValue, $0, O_PATH | O_NOFOLLOW | O_CLOEXEC) } })
            var info = stat()
            try systemCall { fstat(opened.rawValue, &info) }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                parent = directory
                directory = opened
                levels.append(Level(name: Array(name), identity: Identity(info)))
                return nil
            case S_IFLNK:
                return try Self.readLink(opened.rawValue)
            default:
                tail = [Array(name)]
                tailStatus = info
                return nil
            }
        } catch ENOENT {
            // From `fstatat` or `openat` (an open descriptor's `fstat` and `readlinkat` do not report it): the name
            // does not exist, and starts the tail.
            tail = [Array(name)]
            return nil
        } catch {
            throw Self.lookupError(error)
        }
    }

    /// `..` from `directory`: back to the level before. Out of the root, the walk continues above it.
    private mutating func ascend() throws(FileError.Code) {
        guard levels.count > 1 else {
            if !root.components.isEmpty { above = root.components.count - 1 }
            return
        }
        let up = try parentDirectory()
        levels.removeLast()
        directory = up
        parent = nil
    }

    /// Opens `..` of `directory`, and makes sure it is the directory walked through: `directory` may have been
    /// moved since (even out of the root), and its `..` would then be somewhere else.
    private func openParent() throws(FileError.Code) -> Descriptor {
        let up: Descriptor
        var info = stat()
        do throws(Errno) {
            up = Descriptor(try systemCall { openat(directory.rawValue, "..", O_PATH | O_DIRECTORY | O_CLOEXEC) })
            try systemCall { fstat(up.rawValue, &info) }
        } catch {
            throw Self.lookupError(error)
        }
        // Moved meanwhile: the path as the client named it no longer leads there.
        guard Identity(info) == levels[levels.count - 2].identity else { throw .notFound }
        return up
    }

    /// An absolute symlink target: from `/`, which is the root itself when the root is `/`.
    private mutating func restartAtFilesystemRoot() {
        levels.removeSubrange(1...)
        directory = root.descriptor
        parent = nil
        tail = []
        tailStatus = nil
        above = root.components.isEmpty ? nil : 0
    }

    /// The target of the symlink open as `fd` (`O_PATH | O_NOFOLLOW`). The corresponding C function is
    /// `readlinkat`, with an empty path; the buffer grows until the target fits.
    private static func readLink(_ fd: Int32) throws(Errno) -> [UInt8] {
        var capacity = Int(PATH_MAX)
        while true {
            var buffer = [UInt8](repeating: 0, count: capacity)
            let count = try systemCall {
                buffer.withUnsafeMutableBufferPointer { readlinkat(fd, "", $0.baseAddress!, capacity) }
            }
            if count < capacity { return Array(buffer[..<count]) }
            capacity *= 2
        }
    }

    /// A failed lookup of a component.
    private static func lookupError(_ error: Errno) -> FileError.Code {
        error.code == ENOTDIR ? .notFound : FileError.Code(error)
    }

    private static let current = Array(".".utf8)
    private static let parentName = Array("..".utf8)
}
