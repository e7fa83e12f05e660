import Glibc
import Synchronization

/// A directory under the root, watched with inotify: its changes (and with `recursive`, those of every directory
/// below it) as `WatchEvent`s, merged over a window (`EventCoalescer`) and queued for one consumer, which takes them
/// with `next()` (awaiting) or `poll()` (with `onReady` telling it when to poll again).
///
/// No thread waits for a watch: its inotify descriptor is read by the shared I/O loop, which also runs its window
/// timer. The queue is bounded in bytes (`WatchEvent.cost`): a consumer that does not keep up, or a burst larger
/// than the bound, ends the watch with an `error` event after what was queued, as the kernel's own queue overflow
/// does. The watched directory removed or moved ends it the same way, after the events before it. Ending, a
/// cancel, or the last reference going away closes the inotify descriptor at once (which frees the kernel's
/// instance and all its watches).
public final class DirectoryWatch: Sendable {
    /// What `poll()` found.
    public enum Poll: Equatable, Sendable {
        case event(WatchEvent)
        /// Nothing yet; `onReady` is called when there is.
        case waiting
        /// The watch ended and every event was taken.
        case end
    }

    struct Limits: Sendable {
        /// Seconds over which events are merged before they are queued (`--watch-debounce`).
        var debounce: Double = 0.25
        /// Bytes of events (`WatchEvent.cost`) held for the consumer (`--watch-queue-bytes`).
        var queueBytes = 1 << 20
        /// Directories a recursive watch covers at most, itself included (`--max-watch-directories`): each takes
        /// one of the user's inotify watches (`fs.inotify.max_user_watches`, shared by every process of the user),
        /// and watching one is work on the I/O loop.
        var maxDirectories = 2048
    }

    /// Why a watch could not start.
    enum StartFailure: Error, Equatable {
        /// `inotify_init1` or the first `inotify_add_watch` failed, or the watched directory could not be read.
        case system(Errno)
        /// A recursive watch's tree has more directories than `Limits.maxDirectories`.
        case tooManyDirectories(limit: Int)
    }

    /// Why a walk of a tree stopped before its end.
    private enum WalkStop: Error {
        /// Its first directory could not be opened or watched, or the user's inotify watches are all in use
        /// (`ENOSPC`, at any directory).
        case failed(Errno)
        /// The watch would cover more than `Limits.maxDirectories` directories.
        case tooManyDirectories
        /// The watch ended while the walk reported what the tree holds (its queue overflowed).
        case ended
    }

    /// Where a walk stands: the directory it opened last (a child of it, or of one of its parents, is the next one
    /// in a depth-first walk), and the identity of that directory and of each one above it, by depth (nil where the
    /// walk did not open it), to check that `..` leads back to the directory the walk came from.
    private struct WalkCursor {
        var open: DirectoryEntries?
        var path: [UInt8] = []
        var identities: [Location.Identity?] = []
    }

    private struct State {
        /// The inotify instance; -1 once closed.
        var inotify: Int32 = -1
        var token: UInt64?
        var timer: UInt64?
        /// Watched directories by watch descriptor: their path relative to the watched directory (empty: itself).
        var directories: [Int32: [UInt8]] = [:]
        var topWatch: Int32 = -1
        /// A move out of a watched directory whose move in (same cookie) may be the next event.
        var pendingMove: (cookie: UInt32, path: [UInt8], isDirectory: Bool)?
        var window = EventCoalescer()
        var queue: [WatchEvent] = []
        var head = 0
        var queuedCost = 0
        /// No event is added any more: the last one (an `error`) is queued, or the consumer cancelled.
        var ended = false
        var waiter: CheckedContinuation<WatchEvent?, Never>?
        var onReady: (@Sendable () -> Void)?
        var released = false
    }

    /// The root's descriptor: directories of the watch are opened from here one name at a time, never by a path
    /// string. The watched directory itself is not kept open: an open descriptor would hold its dentry, and the
    /// kernel then reports its removal (`IN_DELETE_SELF`) only once that descriptor is closed.
    private let root: Descriptor
    /// The watched directory's path relative to the root, symlinks resolved (empty: the root).
    private let topPath: [UInt8]
    /// The watched directory's identity: reached by its path again, it must still be this directory.
    private let topIdentity: Location.Identity
    public let recursive: Bool
    private let limits: Limits
    private let loop: IOLoop
    /// Called once when the inotify descriptor is closed (the slot it held under `--max-watches` is free).
    private let released: @Sendable () -> Void
    private let state = Mutex(State())

    /// What inotify reports for every watched directory. `IN_EXCL_UNLINK`: a file already removed (but still open)
    /// reports nothing more.
    private static let mask: UInt32 = UInt32(
        IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF
            | IN_EXCL_UNLINK | IN_ONLYDIR)

    /// Starts watching `top` (a directory, open), whose path relative to the root is `topPath`.
    /// - Throws: `system` with the `Errno` of `inotify_init1` (`EMFILE`: the user's inotify instances are all in
    ///   use) or of an `inotify_add_watch` (`ENOSPC`: the user's inotify watches are all in use);
    ///   `tooManyDirectories` when the tree of a recursive watch has more than `limits.maxDirectories`.
    init(
        root: Descriptor, top: Descriptor, topPath: [UInt8], recursive: Bool, limits: Limits, loop: IOLoop,
        released: @escaping @Sendable () -> Void
    ) throws(StartFailure) {
        self.root = root
        self.topPath = topPath
        var info = stat()
        let fd: Int32
        do throws(Errno) {
            try systemCall { fstat(top.rawValue, &info) }
            fd = try systemCall { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) }
        } catch {
            throw .system(error)
        }
        topIdentity = Location.Identity(info)
        self.recursive = recursive
        self.limits = limits
        self.loop = loop
        self.released = released
        do throws(WalkStop) {
            try state.withLock { state throws(WalkStop) in
                state.inotify = fd
                do throws(Errno) {
                    state.topWatch = try Self.addWatch(fd, directory: top.rawValue)
                } catch {
                    throw .failed(error)
                }
                state.directories[state.topWatch] = []
                if recursive { try addTree(below: [], emittingCreates: false, &state) }
            }
        } catch {
            // Every watch the walk added goes with the instance.
            state.withLock { closeInotify(&$0) }
            switch error {
            case .failed(let error): throw .system(error)
            // A walk that reports nothing (no events) never ends the watch: only the cap stops it.
            case .tooManyDirectories, .ended: throw .tooManyDirectories(limit: limits.maxDirectories)
            }
        }
        // Weak: the loop keeps its handlers, and a watch nobody holds any more must go away (closing its instance).
        let token = loop.register(fd, events: IOLoop.readable) { [weak self] _ in self?.readEvents() }
        state.withLock { $0.token = token }
    }

    deinit {
        state.withLock { closeInotify(&$0) }
    }

    // MARK: the consumer

    /// The next event, waiting for one; nil once the watch ended (after its `error`) or was cancelled. One consumer
    /// at a time.
    public func next() async -> WatchEvent? {
        await withCheckedContinuation { continuation in
            let taken = state.withLock { state -> WatchEvent?? in
                switch Self.take(&state) {
                case .event(let event): return .some(event)
                case .end: return .some(nil)
                case .waiting:
                    state.waiter = continuation
                    return nil
                }
            }
            if let taken { continuation.resume(returning: taken) }
        }
    }

    /// The next event if one is queued.
    public func poll() -> Poll {
        state.withLock { Self.take(&$0) }
    }

    /// Sets what is called (on any thread, without locks held) when `poll()` has something new to say.
    public func onReady(_ handler: @escaping @Sendable () -> Void) {
        state.withLock { $0.onReady = handler }
    }

    /// Ends the watch now: its inotify instance is closed, queued events are dropped, and a waiting `next()` returns
    /// nil.
    public func cancel() {
        let waiter = state.withLock { state -> CheckedContinuation<WatchEvent?, Never>? in
            state.ended = true
            state.queue = []
            state.head = 0
            state.queuedCost = 0
            _ = state.window.take()
            closeInotify(&state)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// Ends the watch with an `error` event saying why, after the events already seen (the server is shutting
    /// down).
    func end(_ message: String) {
        let wake = state.withLock { state -> Wake in
            terminate(message, keepingWindow: true, &state)
            return Self.wake(&state)
        }
        wake.run()
    }

    private static func take(_ state: inout State) -> Poll {
        guard state.head < state.queue.count else { return state.ended ? .end : .waiting }
        let event = state.queue[state.head]
        state.head += 1
        state.queuedCost -= event.cost
        if state.head == state.queue.count {
            state.queue.removeAll(keepingCapacity: state.queue.capacity <= 1024)
            state.head = 0
        }
        return .event(event)
    }

    /// Who to tell that events were queued: the waiting `next()` (with its event) or the `onReady` handler.
    private struct Wake {
        var waiter: (CheckedContinuation<WatchEvent?, Never>, WatchEvent?)?
        var ready: (@Sendable () -> Void)?

        func run() {
            if let (continuation, event) = waiter { continuation.resume(returning: event) }
            ready?()
        }
    }

    private static func wake(_ state: inout State) -> Wake {
        var wake = Wake(ready: state.onReady)
        if let waiter = state.waiter {
            switch take(&state) {
            case .event(let event):
                state.waiter = nil
                wake.waiter = (waiter, event)
            case .end:
                state.waiter = nil
                wake.waiter = (waiter, nil)
            case .waiting:
                break
            }
        }
        return wake
    }

    // MARK: the I/O loop's side

    /// I/O loop: reads what inotify has (until it has nothing, at most 16 reads, so that one busy watch does not
    /// hold the loop from the others), turns it into events of the window, and starts the window's timer.
    private func readEvents() {
        let wake = state.withLock { state -> Wake? in
            // 16 events of the longest name each; the kernel never splits an event over two reads.
            let size = 16 * (MemoryLayout<inotify_event>.size + Int(NAME_MAX) + 1)
            var buffer = [UInt8](repeating: 0, count: size)
            var rounds = 0
            while state.inotify >= 0 && !state.ended && rounds < 16 {
                rounds += 1
                let fd = state.inotify
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                guard count > 0 else { break }
                var offset = 0
                while offset + 16 <= count && !state.ended {
                    let (wd, mask, cookie, length) = buffer.withUnsafeBytes { bytes in
                        (
                            bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self),
                            bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self),
                            bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self),
                            Int(bytes.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                        )
                    }
                    // The name is padded with NULs.
                    let name = Array(buffer[(offset + 16)..<min(count, offset + 16 + length)].prefix { $0 != 0 })
                    offset += 16 + length
                    handle(wd: wd, mask: mask, cookie: cookie, name: name, &state)
                }
            }
            if let move = state.pendingMove, !state.ended {
                state.pendingMove = nil
                movedOut(move.path, isDirectory: move.isDirectory, &state)
            }
            if !state.ended && state.queuedCost + state.window.cost > limits.queueBytes { overflow(&state) }
            if state.timer == nil && !state.window.isEmpty && !state.ended {
                state.timer = loop.after(limits.debounce) { [weak self] in self?.flushWindow() }
            }
            return state.ended ? Self.wake(&state) : nil
        }
        wake?.run()
    }

    /// I/O loop: the window is over: its events join the queue.
    private func flushWindow() {
        let wake = state.withLock { state -> Wake? in
            state.timer = nil
            guard !state.ended, !state.window.isEmpty else { return nil }
            state.queuedCost += state.window.cost
            state.queue += state.window.take()
            return Self.wake(&state)
        }
        wake?.run()
    }

    /// One inotify event.
    private func handle(wd: Int32, mask: UInt32, cookie: UInt32, name: [UInt8], _ state: inout State) {
        if mask & UInt32(IN_Q_OVERFLOW) != 0 {
            terminate(
                "the kernel's event queue overflowed (fs.inotify.max_queued_events): events were lost",
                keepingWindow: true, &state)
            return
        }
        if let move = state.pendingMove, !(mask & UInt32(IN_MOVED_TO) != 0 && cookie == move.cookie) {
            // The kernel reports a rename's two halves one after the other: anything else in between means the
            // other half is outside the watch.
            state.pendingMove = nil
            movedOut(move.path, isDirectory: move.isDirectory, &state)
        }
        if wd == state.topWatch && mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT) != 0 {
            let message =
                mask & UInt32(IN_MOVE_SELF) != 0
                ? "the watched directory was moved" : "the watched directory was removed"
            terminate(message, keepingWindow: true, &state)
            return
        }
        if mask & UInt32(IN_IGNORED) != 0 {
            // A directory below was removed (or its watch dropped): its events stop.
            state.directories[wd] = nil
            return
        }
        // Events about a watched directory itself (no name) are reported by its parent's watch, with its name.
        guard !name.isEmpty, let directory = state.directories[wd] else { return }
        let path = Self.join(directory, name)
        let isDirectory = mask & UInt32(IN_ISDIR) != 0
        if mask & UInt32(IN_MOVED_FROM) != 0 {
            state.pendingMove = (cookie, path, isDirectory)
        } else if mask & UInt32(IN_MOVED_TO) != 0 {
            if let move = state.pendingMove, move.cookie == cookie {
                state.pendingMove = nil
                add(WatchEvent(.rename, path: shown(path), oldPath: shown(move.path)), &state)
                if isDirectory && recursive { renameDirectories(from: move.path, to: path, &state) }
            } else {
                add(WatchEvent(.create, path: shown(path)), &state)
                if isDirectory && recursive { addTreeReporting(path, &state) }
            }
        } else if mask & UInt32(IN_CREATE) != 0 {
            add(WatchEvent(.create, path: shown(path)), &state)
            if isDirectory && recursive { addTreeReporting(path, &state) }
        } else if mask & UInt32(IN_DELETE) != 0 {
            add(WatchEvent(.remove, path: shown(path)), &state)
        } else if mask & UInt32(IN_MODIFY) != 0 {
            add(WatchEvent(.write, path: shown(path)), &state)
        } else if mask & UInt32(IN_ATTRIB) != 0 {
            add(WatchEvent(.chmod, path: shown(path)), &state)
        }
    }

    /// A move out of the watch: `remove` (the path names nothing the watch can see any more); the directories
    /// below a directory moved out are no longer watched.
    private func movedOut(_ path: [UInt8], isDirectory: Bool, _ state: inout State) {
        add(WatchEvent(.remove, path: shown(path)), &state)
        guard isDirectory && recursive else { return }
        for (wd, directory) in state.directories where Self.isSame(directory, orBelow: path) {
            inotify_rm_watch(state.inotify, wd)
            state.directories[wd] = nil
        }
    }

    /// A directory renamed within the watch: the directories below it keep their watches under their new paths.
    private func renameDirectories(from old: [UInt8], to new: [UInt8], _ state: inout State) {
        for (wd, directory) in state.directories where Self.isSame(directory, orBelow: old) {
            state.directories[wd] = new + directory.dropFirst(old.count)
        }
    }

    /// A directory created or moved in during a recursive watch: it and the directories below it are watched, and
    /// what they already hold is reported as created (it may have been filled before its watch was in place).
    private func addTreeReporting(_ path: [UInt8], _ state: inout State) {
        do throws(WalkStop) {
            try addTree(below: path, emittingCreates: true, &state)
        } catch .failed(let error) where error.code == ENOSPC {
            terminate(
                "too many directories to watch: the user's inotify watches are all in use "
                    + "(fs.inotify.max_user_watches is reached)", keepingWindow: true, &state)
        } catch .tooManyDirectories {
            terminate(
                "too many directories to watch: more than \(limits.maxDirectories) (--max-watch-directories)",
                keepingWindow: true, &state)
        } catch {
            // Gone or replaced meanwhile (its removal is reported by its parent's watch), or the watch ended.
        }
    }

    /// Watches `path` (relative to the watched directory; empty: itself) and every directory below it, depth first,
    /// and with `emittingCreates` reports what they hold as created. It stops as soon as the watch would cover more
    /// than `limits.maxDirectories` directories or has ended (its queue overflowed): the walk runs on the I/O loop
    /// for a directory created or moved in, and its cost is bounded by those two limits whatever the tree.
    /// Every directory is opened with `O_NOFOLLOW` (`reach`), so a symlink is never followed and a directory swapped
    /// for one is skipped; at most two descriptors are open at once, however wide or deep the tree.
    /// - Throws: `failed` with `ENOSPC` when the user's inotify watches are all in use, or with the `Errno` of
    ///   opening or watching `path` itself; `tooManyDirectories`; `ended`.
    private func addTree(below path: [UInt8], emittingCreates: Bool, _ state: inout State) throws(WalkStop) {
        var pending: [[UInt8]] = [path]
        var cursor = WalkCursor()
        var first = true
        while let directory = pending.popLast() {
            let entries: DirectoryEntries
            do throws(Errno) {
                entries = try reach(directory, &cursor)
            } catch {
                if first { throw .failed(error) }
                continue
            }
            if !directory.isEmpty || !first {
                // Counting the directories found and not yet watched too: the walk stops before it watches them.
                guard state.directories.count + pending.count < limits.maxDirectories else {
                    throw .tooManyDirectories
                }
                do throws(Errno) {
                    state.directories[try Self.addWatch(state.inotify, directory: entries.descriptor)] = directory
                } catch ENOSPC {
                    throw .failed(Errno(ENOSPC))
                } catch {
                    if first { throw .failed(error) }
                    continue
                }
            }
            first = false
            try entries.forEach { entry throws(WalkStop) in
                let child = Self.join(directory, Array(entry.name))
                if emittingCreates {
                    add(WatchEvent(.create, path: shown(child)), &state)
                    // Overflowed: what is left of the directory is not read.
                    if state.ended { throw .ended }
                }
                var isDirectory = entry.type == DT_DIR
                if entry.type == DT_UNKNOWN {
                    var info = stat()
                    isDirectory =
                        withCPath(entry.name, { fstatat(entries.descriptor, $0, &info, AT_SYMLINK_NOFOLLOW) }) == 0
                        && info.st_mode & S_IFMT == S_IFDIR
                }
                if isDirectory {
                    guard state.directories.count + pending.count < limits.maxDirectories else {
                        throw .tooManyDirectories
                    }
                    pending.append(child)
                }
            }
        }
    }

    /// Opens `path` (relative to the watched directory) for a walk, from the directory the walk opened last: up
    /// through `..` to the nearest directory `path` is below (each one checked to be the directory the walk opened
    /// there), then down one name at a time with `O_NOFOLLOW`. Each directory is then reached in a step or two
    /// however deep it is; opening each from the root would make a walk of a chain of directories take time in
    /// proportion to the square of its length. Where `..` does not lead back (a directory moved meanwhile), `path` is
    /// opened from the root (`openDirectory`). A directory moved out of the watch after it was opened is dropped
    /// with what is below it when its move is read (`movedOut`), as one moved out after a walk is.
    private func reach(_ path: [UInt8], _ cursor: inout WalkCursor) throws(Errno) -> DirectoryEntries {
        var current = cursor.open
        var at = cursor.path
        // Until this succeeds, the next directory is opened from the root.
        cursor.open = nil
        while let directory = current, !Self.isSame(path, orBelow: at) {
            current = nil
            _ = cursor.identities.popLast()
            guard let identity = cursor.identities.last ?? nil else { break }
            let up = try? DirectoryEntries(
                taking: systemCall {
                    openat(directory.descriptor, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                })
            guard let up, Self.identity(of: up.descriptor) == identity else { break }
            current = up
            at.removeSubrange((at.lastIndex(of: slash) ?? 0)...)
        }
        if current == nil {
            let directory = try DirectoryEntries(taking: openDirectory(path))
            let depth = path.isEmpty ? 0 : path.count { $0 == slash } + 1
            cursor.identities = Array(repeating: nil, count: depth) + [Self.identity(of: directory.descriptor)]
            current = directory
            at = path
        }
        guard var directory = current else { throw Errno(ENOENT) }
        for name in path.dropFirst(at.count).split(separator: slash) {
            let parent = directory
            directory = try DirectoryEntries(
                taking: systemCall {
                    withCPath(name) { openat(parent.descriptor, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
                })
            cursor.identities.append(Self.identity(of: directory.descriptor))
        }
        cursor.open = directory
        cursor.path = path
        return directory
    }

    private static func identity(of fd: Int32) -> Location.Identity? {
        var info = stat()
        return fstat(fd, &info) == 0 ? Location.Identity(info) : nil
    }

    /// Opens `path` (relative to the watched directory) for reading, one name at a time from the root's descriptor
    /// with `O_NOFOLLOW` at every step (the watched directory's path is symlink-free and has no `..`), and checks on
    /// the way that the watched directory is still the one watched (`ENOENT` otherwise: it was moved or replaced,
    /// which its own watch reports).
    private func openDirectory(_ path: [UInt8]) throws(Errno) -> Int32 {
        var fd = try systemCall { openat(root.rawValue, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        let topDepth = topPath.split(separator: slash).count
        for (depth, name) in (topPath.split(separator: slash) + path.split(separator: slash)).enumerated() {
            let parent = fd
            defer { close(parent) }
            fd = try systemCall {
                withCPath(name) { openat(parent, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            }
            if depth + 1 == topDepth { try checkTop(fd) }
        }
        if topDepth == 0 { try checkTop(fd) }
        return fd
    }

    private func checkTop(_ fd: Int32) throws(Errno) {
        var info = stat()
        try systemCall { fstat(fd, &info) }
        guard Location.Identity(info) == topIdentity else {
            close(fd)
            throw Errno(ENOENT)
        }
    }

    /// Adds an inotify watch on the directory open as `directory`.
    ///
    /// `inotify_add_watch` takes a path, not a descriptor: given the directory's path it would resolve it again,
    /// and a directory swapped for a symlink meanwhile would have the symlink's target watched. `/proc/self/fd/N`
    /// names the very directory the descriptor holds (the kernel follows that link to the open file, not to a path),
    /// so what is watched is what was opened beneath the root.
    private static func addWatch(_ inotify: Int32, directory: Int32) throws(Errno) -> Int32 {
        try systemCall { inotify_add_watch(inotify, "/proc/self/fd/\(directory)", mask) }
    }

    /// Adds an event to the window; past the queue's bound the watch ends (`overflow`).
    private func add(_ event: WatchEvent, _ state: inout State) {
        guard !state.ended else { return }
        state.window.add(event)
        if state.queuedCost + state.window.cost > limits.queueBytes { overflow(&state) }
    }

    private func overflow(_ state: inout State) {
        // The window's events are dropped: the error says events were lost, and the bound holds.
        terminate(
            "too many events waiting for the client (more than \(limits.queueBytes) bytes, --watch-queue-bytes): "
                + "events were lost", keepingWindow: false, &state)
    }

    /// Ends the watch: its instance is closed, the window's events queued (unless dropped), then an `error` event.
    private func terminate(_ message: String, keepingWindow: Bool, _ state: inout State) {
        guard !state.ended else { return }
        if keepingWindow {
            state.queuedCost += state.window.cost
            state.queue += state.window.take()
        } else {
            _ = state.window.take()
        }
        let error = WatchEvent.error(message)
        state.queue.append(error)
        state.queuedCost += error.cost
        state.ended = true
        closeInotify(&state)
    }

    /// Closes the inotify instance (every watch of it goes with it) and stops its timer; frees the watch's slot.
    private func closeInotify(_ state: inout State) {
        if let token = state.token { loop.unregister(token) }
        if let timer = state.timer { loop.cancelTimer(timer) }
        state.token = nil
        state.timer = nil
        if state.inotify >= 0 { close(state.inotify) }
        state.inotify = -1
        state.directories = [:]
        state.pendingMove = nil
        guard !state.released else { return }
        state.released = true
        released()
    }

    /// A path relative to the root, as events show it.
    private func shown(_ path: [UInt8]) -> String {
        String(decoding: Self.join(topPath, path), as: UTF8.self)
    }

    private static func join(_ directory: [UInt8], _ name: some Collection<UInt8>) -> [UInt8] {
        guard !directory.isEmpty else { return Array(name) }
        guard !name.isEmpty else { return directory }
        return directory + [slash] + name
    }

    /// Whether `path` is `ancestor` or below it (everything is below the watched directory, the empty path).
    /// `memcmp`: a walk asks this once per directory, of paths as long as the tree is deep.
    private static func isSame(_ path: [UInt8], orBelow ancestor: [UInt8]) -> Bool {
        guard !ancestor.isEmpty else { return true }
        guard path.count == ancestor.count || (path.count > ancestor.count && path[ancestor.count] == slash) else {
            return false
        }
        // Both are non-empty: their buffers have an address.
        return path.withUnsafeBytes { path in
            ancestor.withUnsafeBytes { memcmp(path.baseAddress!, $0.baseAddress!, $0.count) == 0 }
        }
    }
}
