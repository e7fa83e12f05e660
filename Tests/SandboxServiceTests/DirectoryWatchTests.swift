import Foundation
import Glibc
import Testing

@testable import SandboxService

/// The core's directory watch over a real inotify instance (the end-to-end suite drives both fronts).
@Suite(.timeLimit(.minutes(1))) struct DirectoryWatchTests {
    private static func sandbox(
        _ directory: TemporaryDirectory, maxWatches: Int = 64, maxDirectories: Int = 2048
    ) throws -> Sandbox {
        var limits = Watches.Limits()
        limits.maxWatches = maxWatches
        limits.watch.maxDirectories = maxDirectories
        limits.watch.debounce = 0.05
        return Sandbox(
            root: try SandboxRoot(path: directory.path), runner: CommandRunner(), environment: [],
            maxOutputBytes: 1 << 20, streamBufferBytes: 1 << 20, watchLimits: limits)
    }

    @Test func aRenameInsideIsOneEventWithBothPathsAndCancelFreesTheSlot() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("w/old", "x")
        let sandbox = try Self.sandbox(directory)
        let watch = try sandbox.watch("/w", recursive: false)
        #expect(sandbox.openWatches == 1)
        #expect(rename(directory.file("w/old"), directory.file("w/new")) == 0)
        #expect(await watch.next() == WatchEvent(.rename, path: "w/new", oldPath: "w/old"))
        watch.cancel()
        #expect(await watch.next() == nil)
        #expect(sandbox.openWatches == 0)
    }

    @Test func theDirectoryRemovedEndsTheWatchWithOneError() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("w/f", "x")
        let sandbox = try Self.sandbox(directory)
        let watch = try sandbox.watch("w", recursive: true)
        try FileManager.default.removeItem(atPath: directory.file("w"))
        var events: [WatchEvent] = []
        while let event = await watch.next() { events.append(event) }
        #expect(events == [WatchEvent(.remove, path: "w/f"), .error("the watched directory was removed")])
        #expect(sandbox.openWatches == 0)
    }

    @Test func refusalsAreTheCoresCodes() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("file", "x")
        try FileManager.default.createDirectory(atPath: directory.file("d"), withIntermediateDirectories: true)
        let sandbox = try Self.sandbox(directory, maxWatches: 1)
        #expect(
            Self.refusal { () throws(SandboxError) in try sandbox.watch("../..", recursive: false) }
                == .permissionDenied)
        #expect(Self.refusal { () throws(SandboxError) in try sandbox.watch("missing", recursive: false) } == .notFound)
        #expect(
            Self.refusal { () throws(SandboxError) in try sandbox.watch("file", recursive: false) } == .invalidArgument)
        let first = try sandbox.watch("d", recursive: false)
        do {
            _ = try sandbox.watch("d", recursive: false)
            Issue.record("a second watch past --max-watches 1 started")
        } catch {
            #expect(error.code == .resourceExhausted && error.cause == .watchLimit)
            #expect(error.message.contains("1 are open") && error.message.contains("--max-watches"))
        }
        first.cancel()
        _ = try sandbox.watch("d", recursive: false)
        sandbox.beginShutdown()
        #expect(Self.refusal { () throws(SandboxError) in try sandbox.watch("d", recursive: false) } == .unavailable)
    }

    @Test func aRecursiveWatchOfATreeWithMoreDirectoriesThanTheCapIsRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("w/a/b/f", "x")
        let sandbox = try Self.sandbox(directory, maxDirectories: 3)
        // w, w/a and w/a/b: at the cap.
        try sandbox.watch("w", recursive: true).cancel()
        try FileManager.default.createDirectory(atPath: directory.file("w/a/b/c"), withIntermediateDirectories: true)
        do {
            _ = try sandbox.watch("w", recursive: true)
            Issue.record("a watch of 4 directories past --max-watch-directories 3 started")
        } catch {
            #expect(error.code == .resourceExhausted && error.cause == .watchLimit)
            #expect(error.message.contains("more than 3") && error.message.contains("--max-watch-directories"))
        }
        #expect(sandbox.openWatches == 0)
        // Without `recursive` the directory alone is watched.
        try sandbox.watch("w", recursive: false).cancel()
    }

    @Test func aTreeMovedInPastTheCapEndsTheWatchWithOneError() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("staging/small/f", "x")
        try directory.write("staging/big/x/y/f", "x")
        try FileManager.default.createDirectory(atPath: directory.file("w"), withIntermediateDirectories: true)
        let sandbox = try Self.sandbox(directory, maxDirectories: 4)
        let watch = try sandbox.watch("w", recursive: true)
        // w and w/small: under the cap.
        #expect(rename(directory.file("staging/small"), directory.file("w/small")) == 0)
        #expect(await watch.next() == WatchEvent(.create, path: "w/small"))
        #expect(await watch.next() == WatchEvent(.create, path: "w/small/f"))
        // Three more: past it.
        #expect(rename(directory.file("staging/big"), directory.file("w/big")) == 0)
        var events: [WatchEvent] = []
        while let event = await watch.next() { events.append(event) }
        #expect(events.last == .error("too many directories to watch: more than 4 (--max-watch-directories)"))
        #expect(events.dropLast().allSatisfy { $0.kind == .create }, "\(events)")
        #expect(sandbox.openWatches == 0)
    }

    @Test func aTreeMovedInIsWatchedAtEveryDepthAndBranch() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // A chain with branches: the walk goes down, back up and down again.
        let leaves = ["t/a/b/c/d", "t/a/b/e", "t/a/f", "t/g/h", "t/i"]
        for leaf in leaves {
            try FileManager.default.createDirectory(
                atPath: directory.file("staging/" + leaf), withIntermediateDirectories: true)
        }
        try FileManager.default.createDirectory(atPath: directory.file("w"), withIntermediateDirectories: true)
        let sandbox = try Self.sandbox(directory, maxDirectories: 11)
        let watch = try sandbox.watch("w", recursive: true)
        #expect(rename(directory.file("staging/t"), directory.file("w/t")) == 0)
        var created = Set<String>()
        let directories: Set<String> = [
            "w/t", "w/t/a", "w/t/a/b", "w/t/a/b/c", "w/t/a/b/c/d", "w/t/a/b/e", "w/t/a/f", "w/t/g", "w/t/g/h", "w/t/i",
        ]
        while created != directories, let event = await watch.next() {
            #expect(event.kind == .create && directories.contains(event.path), "\(event)")
            created.insert(event.path)
        }
        for leaf in leaves {
            let fd = open(directory.file("w/\(leaf)/new"), O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            #expect(fd >= 0)
            close(fd)
        }
        var later = Set<String>()
        while later.count < leaves.count, let event = await watch.next() {
            #expect(event.kind == .create, "\(event)")
            later.insert(event.path)
        }
        #expect(later == Set(leaves.map { "w/\($0)/new" }))
        watch.cancel()
    }

    /// The code of the error `body` throws; nil if it started a watch (which is cancelled).
    private static func refusal(_ body: () throws(SandboxError) -> DirectoryWatch) -> SandboxError.Code? {
        do {
            try body().cancel()
            return nil
        } catch {
            return error.code
        }
    }
}
