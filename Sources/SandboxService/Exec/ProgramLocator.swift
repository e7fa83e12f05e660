import Glibc
import Synchronization

/// Where a program named without a slash is looked for: the directories of the server's PATH, in order, as `execvp`
/// searches them. The directory a program was found in is remembered, so a command does not pay a failed `execve`
/// for each directory before it (eight for `echo` with the development machine's PATH: 20–60 µs per command). The
/// memory is dropped whenever an entry of a watched directory changes (inotify), so a program installed earlier in
/// PATH, removed, or made unexecutable is found as a fresh search would find it. Only directories that are absolute
/// and could be watched count, and only a program found before the first other one is remembered.
final class ProgramLocator: Sendable {
    static let shared = ProgramLocator(path: getenv("PATH").map { String(cString: $0) } ?? "/bin:/usr/bin")

    let directories: [String]
    /// How many leading directories are absolute and watched.
    private let watchedPrefix: Int
    private let events: Int32
    private let state = Mutex<(found: [String: Int], disabled: Bool)>(([:], false))

    init(path: String) {
        let directories = path.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let events = (try? systemCall { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) }) ?? -1
        var prefix = 0
        while events >= 0, prefix < directories.count, directories[prefix].hasPrefix("/"),
            inotify_add_watch(events, directories[prefix], Self.watchedEvents) >= 0
        {
            prefix += 1
        }
        self.directories = directories
        self.events = events
        watchedPrefix = prefix
    }

    deinit { if events >= 0 { close(events) } }

    /// The paths to try in order: the whole search, preceded by the remembered path if there is one.
    func candidates(for program: String) -> [String] {
        if program.contains("/") { return [program] }
        let search = directories.map { path(of: program, in: $0) }
        guard watchedPrefix > 0 else { return search }
        let remembered = state.withLock { state -> Int? in
            switch pendingChange() {
            case .none: break
            case .entries: state.found.removeAll()
            case .watchEnded:
                state.found.removeAll()
                state.disabled = true  // a watched directory was removed or moved: stop remembering
            }
            return state.found[program]
        }
        guard let remembered else { return search }
        return [search[remembered]] + search
    }

    /// The spawn of `program` executed `path` (one of its candidates).
    func found(_ program: String, at path: String) {
        guard !program.contains("/"),
            let index = directories.prefix(watchedPrefix).firstIndex(where: { self.path(of: program, in: $0) == path })
        else { return }
        state.withLock { state in
            guard !state.disabled else { return }
            if state.found.count >= 1024 { state.found.removeAll() }
            state.found[program] = index
        }
    }

    /// What inotify reports for a watched directory: an entry created, removed, renamed or changed (its permissions),
    /// and the directory itself removed or moved.
    private static let watchedEvents = UInt32(
        IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

    private enum Change { case none, entries, watchEnded }

    /// Reads every pending inotify event: entries changed, or a watch ended (a directory was removed or moved, or
    /// the queue overflowed and events were lost).
    private func pendingChange() -> Change {
        var change = Change.none
        let ended = UInt32(IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW)
        // 1 KiB holds at least one event with the longest name (16 + 256 bytes) and stays on the stack: this runs
        // before every spawn, and a larger temporary buffer was a heap allocation each time (with glibc's
        // consolidation of its small free chunks for every request of that size).
        withUnsafeTemporaryAllocation(byteCount: 1024, alignment: MemoryLayout<inotify_event>.alignment) { buffer in
            while let length = try? systemCall({ read(events, buffer.baseAddress, buffer.count) }), length > 0 {
                var offset = 0
                while offset < length {
                    let event = buffer.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    if event.mask & ended != 0 {
                        change = .watchEnded
                    } else if change == .none {
                        change = .entries
                    }
                    offset += MemoryLayout<inotify_event>.size + Int(event.len)
                }
            }
        }
        return change
    }

    private func path(of program: String, in directory: String) -> String {
        directory.isEmpty ? program : "\(directory)/\(program)"
    }
}
