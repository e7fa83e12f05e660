import Glibc

/// Finds processes by their parent links in /proc, reading only each process's `stat` (one short read per process;
/// never its environment).
///
/// Used for what a command leaves behind once its main process is gone: every command's main process is a child
/// subreaper, so until it exits its descendants stay in its subtree (a `setsid` daemon whose parent died is
/// re-parented to it); once it has exited they are re-parented to sandboxd. A child of sandboxd that is not a
/// running command's main process therefore belongs to a command that has ended.
enum ProcessTree {
    /// A child of the parent a scan looked at, with all its live descendants.
    struct Stray: Equatable {
        var root: pid_t
        var descendants: [pid_t]
    }

    /// Every live (not zombie) child of `parent` whose pid is not in `keeping`, each with its live descendants.
    static func strays(of parent: pid_t, keeping: Set<pid_t>) -> [Stray] {
        var children: [pid_t: [pid_t]] = [:]
        var roots: [pid_t] = []
        forEachProcess { pid, ppid, state in
            guard state != UInt8(ascii: "Z") else { return }
            if ppid == parent {
                if !keeping.contains(pid) { roots.append(pid) }
            } else {
                children[ppid, default: []].append(pid)
            }
        }
        return roots.map { root in
            var descendants: [pid_t] = []
            var queue = children[root] ?? []
            while let pid = queue.popLast() {
                descendants.append(pid)
                queue += children[pid] ?? []
            }
            return Stray(root: root, descendants: descendants)
        }
    }

    /// Whether /proc shows this process's own pid namespace. One mounted for another namespace (sandboxd started by
    /// `unshare --pid` without its own /proc) numbers other processes: a scan of it would kill strangers, so none is
    /// made and only process groups are killed.
    static let procIsOurs: Bool = {
        var link = [CChar](repeating: 0, count: 32)
        let count = readlink("/proc/self", &link, link.count - 1)
        guard count > 0 else { return false }
        return String(decoding: link[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) == String(getpid())
    }()

    /// Calls `body` with the pid, parent pid and state letter of every process in /proc.
    private static func forEachProcess(_ body: (pid_t, pid_t, UInt8) -> Void) {
        guard procIsOurs, let proc = try? DirectoryEntries(path: "/proc") else { return }
        // One buffer for every path ("<pid>/stat", opened beneath /proc) and every stat line: this runs for each
        // process on every sweep.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 512) { buffer in
            proc.forEach { entry in
                guard entry.name.count <= 10 else { return }
                var pid: pid_t = 0
                for (length, byte) in entry.name.enumerated() {
                    guard (48...57).contains(byte) else { return }
                    pid = pid * 10 + pid_t(byte - 48)
                    buffer[length] = byte
                }
                guard pid > 0 else { return }
                var length = entry.name.count
                for byte in "/stat".utf8 {
                    buffer[length] = byte
                    length += 1
                }
                buffer[length] = 0
                guard let (state, ppid) = stat(in: proc.descriptor, buffer) else { return }
                body(pid, ppid, state)
            }
        }
    }

    /// State (field 3) and parent pid (field 4) from the stat file whose path (relative to /proc) is in `buffer`;
    /// they come right after the parenthesised command name (at most 16 bytes, possibly holding spaces and
    /// parentheses: the last `)` ends it).
    private static func stat(in proc: Int32, _ buffer: UnsafeMutableBufferPointer<UInt8>) -> (UInt8, pid_t)? {
        let fd = buffer.withMemoryRebound(to: CChar.self) { openat(proc, $0.baseAddress!, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { return nil }
        let count = read(fd, buffer.baseAddress, buffer.count)
        close(fd)
        guard count > 0 else { return nil }
        var close = count - 1
        while close > 0 && buffer[close] != UInt8(ascii: ")") { close -= 1 }
        guard buffer[close] == UInt8(ascii: ")"), close + 4 < count else { return nil }
        let state = buffer[close + 2]
        var ppid: pid_t = 0
        var index = close + 4
        while index < count, (48...57).contains(buffer[index]) {
            ppid = ppid * 10 + pid_t(buffer[index] - 48)
            index += 1
        }
        return (state, ppid)
    }
}
