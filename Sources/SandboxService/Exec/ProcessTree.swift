import FoundationEssentials
import Glibc

/// Finds and signals the processes that belong to a command, from /proc: its process group, every descendant by
/// parent links, and every process carrying the command's environment marker. The marker catches what the other
/// two miss: a `setsid` daemon whose parent already exited and which was re-parented away from the command.
enum ProcessTree {
    /// The environment variable every command and its descendants carry (unless they clear their environment).
    static let marker = "SANDBOXD_TREE"

    /// Signals the tree of `root` (process group and descendants) and every process whose environment holds
    /// `markerEntry` exactly; repeats a few rounds so children forked meanwhile are caught.
    static func kill(root: pid_t, markerEntry: String, signal: Int32) {
        _ = Glibc.kill(-root, signal)
        for _ in 0..<3 {
            let members = find(root: root) { $0 == markerEntry }
            guard !members.isEmpty else { return }
            members.forEach { _ = Glibc.kill($0, signal) }
            if signal != SIGKILL { return }
        }
    }

    /// Signals every process whose marker starts with `markerPrefix` (all commands of one runner, and whatever they
    /// left behind), and their descendants. Processes without the marker are never touched, even children of this
    /// process: sandboxd may be embedded in a host that has children of its own.
    static func kill(markerPrefix: String, signal: Int32) {
        for _ in 0..<3 {
            let members = find(root: -1) { $0.hasPrefix(markerPrefix) }
            guard !members.isEmpty else { return }
            members.forEach { _ = Glibc.kill($0, signal) }
        }
    }

    /// Signals every process whose environment holds `markerEntry` exactly, and their descendants, and nothing found
    /// by group or parent pid: for a command that was reaped, whose pid (and so its group id) may be another's now.
    static func kill(markerEntry: String, signal: Int32) {
        for _ in 0..<3 {
            let members = find(root: -1) { $0 == markerEntry }
            guard !members.isEmpty else { return }
            members.forEach { _ = Glibc.kill($0, signal) }
        }
    }

    /// Signals every child of this process and their descendants: for a process whose children are all its commands'
    /// (the sandboxd binary, a subreaper), this also ends orphans that carry no marker (a daemon that cleared its
    /// environment and left its session).
    static func killAllChildren(signal: Int32) {
        let me = getpid()
        for _ in 0..<3 {
            let members = find(root: me) { _ in false }.filter { $0 != me }
            guard !members.isEmpty else { return }
            members.forEach { _ = Glibc.kill($0, signal) }
        }
    }

    /// Processes that descend from `root` (and `root` itself), or carry a matching marker, or descend from one that
    /// does. A `root` of -1 selects by marker alone.
    private static func find(root: pid_t, markerMatches: (String) -> Bool) -> [pid_t] {
        let me = getpid()
        var parents: [pid_t: pid_t] = [:]
        var marked: Set<pid_t> = []
        for pid in allPids() where pid != me {
            guard let parent = parentPid(of: pid) else { continue }
            parents[pid] = parent
            if let entry = markerEntry(of: pid), markerMatches(entry) { marked.insert(pid) }
        }
        var members = marked
        var changed = true
        while changed {
            changed = false
            for (pid, parent) in parents where !members.contains(pid) && (parent == root || members.contains(parent)) {
                members.insert(pid)
                changed = true
            }
        }
        if parents[root] != nil { members.insert(root) }
        return Array(members)
    }

    private static func allPids() -> [pid_t] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var pids: [pid_t] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
            }
            if let pid = pid_t(name) { pids.append(pid) }
        }
        return pids
    }

    /// Field 4 of /proc/<pid>/stat (after the parenthesised command name, which may hold spaces).
    private static func parentPid(of pid: pid_t) -> pid_t? {
        guard let stat = readFile("/proc/\(pid)/stat", limit: 4096) else { return nil }
        guard let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
        guard fields.count > 1 else { return nil }
        return pid_t(String(decoding: fields[1], as: UTF8.self))
    }

    private static func markerEntry(of pid: pid_t) -> String? {
        guard let environ = readFile("/proc/\(pid)/environ", limit: 1 << 20) else { return nil }
        let prefix = Array("\(marker)=".utf8)
        for entry in environ.split(separator: 0) where entry.starts(with: prefix) {
            return String(decoding: entry, as: UTF8.self)
        }
        return nil
    }

    private static func readFile(_ path: String, limit: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
            if count <= 0 { break }
            bytes += chunk[..<count]
        }
        return bytes
    }
}
