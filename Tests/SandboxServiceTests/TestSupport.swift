import Dispatch
import Foundation
import Glibc
import Synchronization

@testable import SandboxService

/// A fresh directory per test under the system temp dir, removed by `remove()`. `path` is canonical (symlinks
/// resolved), so it compares equal to what the server and the kernel report.
struct TemporaryDirectory: Sendable {
    let path: String

    init(_ label: String = "sandboxd-test") throws {
        let made = NSTemporaryDirectory() + "/\(label)-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: made, withIntermediateDirectories: true)
        guard let resolved = realpath(made, nil) else { throw TestFailure("realpath(\(made)) failed: errno \(errno)") }
        defer { free(resolved) }
        path = String(cString: resolved)
    }

    func file(_ relative: String) -> String { path + "/" + relative }

    func write(_ relative: String, _ contents: String, mode: Int = 0o644) throws {
        let full = file(relative)
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: full, contents: Data(contents.utf8)) else {
            throw TestFailure("cannot create \(full)")
        }
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: full)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

extension TemporaryDirectory {
    /// The core over this directory, with a runner of its own and an empty environment, as the server assembles it.
    func sandbox(maxOutputBytes: Int = 1 << 20) throws -> Sandbox {
        Sandbox(
            root: try SandboxRoot(path: path), runner: CommandRunner(), environment: [], maxOutputBytes: maxOutputBytes,
            streamBufferBytes: 1 << 20)
    }
}

/// A failure of the test harness itself (a wait that ran out, a socket call that failed), with what was going on.
struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A point in time every wait of a test is bounded by.
struct Deadline: Sendable {
    let end: ContinuousClock.Instant

    init(seconds: Double) {
        end = .now + .nanoseconds(Int64(seconds * 1e9))
    }

    var hasPassed: Bool { ContinuousClock.now >= end }

    /// Milliseconds left, for `poll(2)`; 0 once passed.
    var remainingMilliseconds: Int32 {
        let left = end - .now
        guard left > .zero else { return 0 }
        let (seconds, attoseconds) = left.components
        return Int32(min(Int64(Int32.max), seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1))
    }

    /// The same instant for `DispatchSemaphore.wait(timeout:)`.
    var dispatchTime: DispatchTime { .now() + .milliseconds(Int(remainingMilliseconds)) }
}

/// Runs `operation`, failing with `TestFailure` if it has not returned after `seconds`. The operation is cancelled
/// then; `AsyncStream` iteration ends on cancellation, so waiting on a stream always stops.
func withDeadline<T: Sendable>(
    seconds: Double, _ what: String, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: .nanoseconds(Int64(seconds * 1e9)))
            throw TestFailure("timed out after \(seconds) s: \(what)")
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw TestFailure("no result: \(what)") }
        return first
    }
}

/// Checks a condition that only changes outside the test's control (the kernel reaping a process), every 10 ms
/// until it holds or the deadline passes. Returns whether it held.
func poll(until deadline: Deadline, _ condition: () -> Bool) async -> Bool {
    while true {
        if condition() { return true }
        if deadline.hasPassed { return false }
        try? await Task.sleep(for: .milliseconds(10))
    }
}

/// Reads `/proc` to see which processes exist: the equivalent of a leak check for child processes.
enum ProcessTable {
    struct Entry: Sendable {
        let pid: pid_t
        let state: Character
        let parent: pid_t
        let group: pid_t
        var isLive: Bool { state != "Z" && state != "X" }
    }

    /// Every process visible in `/proc`.
    static func all() -> [Entry] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap { pid_t($0) }.compactMap(entry)
    }

    /// One process's state, parent and process group (`/proc/<pid>/stat`); nil if it is gone.
    static func entry(_ pid: pid_t) -> Entry? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // The command name is in parentheses and may contain spaces; the fields after it are fixed.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 3, let state = fields[0].first, let parent = pid_t(fields[1]),
            let group = pid_t(fields[2])
        else { return nil }
        return Entry(pid: pid, state: state, parent: parent, group: group)
    }

    /// Live (not zombie) members of a process group.
    static func liveMembers(ofGroup group: pid_t) -> [pid_t] {
        all().filter { $0.group == group && $0.isLive }.map(\.pid)
    }

    /// True once no live process is left in the group. `kill(-group, 0)` failing with ESRCH is the direct answer;
    /// a group whose killed members are still zombies (their new parent, often PID 1 in a container, has not
    /// reaped them yet) is gone too, since nothing in it can run any more.
    static func groupIsGone(_ group: pid_t) -> Bool {
        if kill(-group, 0) == -1 && errno == ESRCH { return true }
        return liveMembers(ofGroup: group).isEmpty
    }

    /// Live processes whose working directory is `directory` or below it: the commands a test started there.
    static func liveProcesses(under directory: String) -> [pid_t] {
        all().filter(\.isLive).map(\.pid).filter { pid in
            guard let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd") else {
                return false
            }
            return cwd == directory || cwd.hasPrefix(directory + "/")
        }
    }

    /// Live children of `parent`.
    static func liveChildren(of parent: pid_t) -> [pid_t] {
        all().filter { $0.parent == parent && $0.isLive }.map(\.pid)
    }
}

/// Waits until no process is left running in `directory` (a test's sandbox root), and kills any that are, so one
/// failing test does not leave processes behind for the next. Returns the pids that were still there.
func leftoverProcesses(under directory: String, seconds: Double = 5) async -> [pid_t] {
    let deadline = Deadline(seconds: seconds)
    if await poll(until: deadline, { ProcessTable.liveProcesses(under: directory).isEmpty }) { return [] }
    let left = ProcessTable.liveProcesses(under: directory)
    for pid in left { kill(pid, SIGKILL) }
    return left
}

/// A thread-safe count, for closures that must be called a given number of times.
final class Counter: Sendable {
    private let count = Mutex(0)

    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

/// SIGKILL to a process group a test started; never to group 0 or 1 (which would mean the test process's own group
/// or every process).
func killGroup(_ group: pid_t) {
    if group > 1 { kill(-group, SIGKILL) }
}
