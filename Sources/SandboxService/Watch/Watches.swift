import Glibc
import Synchronization

/// The directory watches open, at most `maxWatches` (`--max-watches`): each holds an inotify instance, of which a
/// user has few (`fs.inotify.max_user_instances`, often 128), and two descriptors. A watch counts from its start
/// until its inotify instance is closed (it ended, was cancelled, or nobody holds it any more).
final class Watches: Sendable {
    struct Limits: Sendable {
        var maxWatches = 64
        var watch = DirectoryWatch.Limits()
    }

    private struct Slot {
        weak var watch: DirectoryWatch?
    }

    private struct State {
        var next: UInt64 = 0
        var slots: [UInt64: Slot] = [:]
        var closed = false
    }

    let limits: Limits
    private let loop: IOLoop
    private let state = Mutex(State())

    init(limits: Limits, loop: IOLoop = .shared) {
        self.limits = limits
        self.loop = loop
    }

    /// Watches open now.
    var count: Int { state.withLock { $0.slots.count } }

    /// Starts a watch of `top` (open; it is not kept open), whose path relative to `root` is `topPath`.
    /// - Throws: `resourceExhausted` when `maxWatches` are open, when the tree of a recursive watch has more than
    ///   `--max-watch-directories` directories, or when the kernel has no inotify instance or watch left;
    ///   `permissionDenied` when the directory cannot be read; `unavailable` once shutdown has begun.
    func start(root: Descriptor, top: Descriptor, topPath: [UInt8], recursive: Bool, shownPath: String)
        throws(SandboxError)
        -> DirectoryWatch
    {
        let reserved = state.withLock { state -> Result<UInt64, SandboxError> in
            guard !state.closed else { return .failure(.shuttingDown) }
            guard state.slots.count < limits.maxWatches else {
                return .failure(
                    SandboxError(
                        .resourceExhausted,
                        "too many directory watches: \(limits.maxWatches) are open (--max-watches); retry when one "
                            + "has ended", path: shownPath, cause: .watchLimit))
            }
            state.next += 1
            state.slots[state.next] = Slot()
            return .success(state.next)
        }
        let id = try reserved.get()
        do {
            let watch = try DirectoryWatch(
                root: root, top: top, topPath: topPath, recursive: recursive, limits: limits.watch, loop: loop
            ) { [self] in release(id) }
            let closed = state.withLock { state -> Bool in
                if state.slots[id] != nil { state.slots[id]?.watch = watch }
                return state.closed
            }
            // Shutdown began while it started: `close()` did not see it, and its stream must end all the same.
            if closed { watch.end("sandboxd is shutting down") }
            return watch
        } catch {
            release(id)
            throw Self.failure(error, path: shownPath)
        }
    }

    /// Ends every watch (each gets an `error` event saying so) and refuses new ones.
    func close() {
        let open = state.withLock { state -> [DirectoryWatch] in
            state.closed = true
            return state.slots.values.compactMap(\.watch)
        }
        open.forEach { $0.end("sandboxd is shutting down") }
    }

    private func release(_ id: UInt64) {
        _ = state.withLock { $0.slots.removeValue(forKey: id) }
    }

    /// A watch that could not start, as the core reports it.
    private static func failure(_ failure: DirectoryWatch.StartFailure, path: String) -> SandboxError {
        let shown = "/" + path.drop { $0 == "/" }
        switch failure {
        case .tooManyDirectories(let limit):
            // Refused rather than started and ended at once: nothing was promised, and the answer is an ordinary
            // error, the same on both fronts.
            return SandboxError(
                .resourceExhausted,
                "cannot watch '\(shown)' recursively: it has more than \(limit) directories "
                    + "(--max-watch-directories); watch a smaller tree", path: path, cause: .watchLimit)
        case .system(let error) where [EMFILE, ENFILE, ENOSPC, ENOMEM].contains(error.code):
            return SandboxError(
                .resourceExhausted,
                "cannot watch '\(shown)' now: \(error) (the kernel's inotify instances or watches are all in use); "
                    + "retry later", path: path, cause: .watchLimit)
        case .system(let error) where error.code == EACCES || error.code == EPERM:
            return SandboxError(
                .permissionDenied, "'\(shown)': permission denied", path: path, cause: .file(.permissionDenied))
        case .system(let error):
            return SandboxError(.internal, "cannot watch '\(shown)': \(error)", path: path)
        }
    }
}
