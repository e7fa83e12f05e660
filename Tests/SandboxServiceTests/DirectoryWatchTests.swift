import Foundation
import Glibc
import Testing

@testable import SandboxService

/// The core's directory watch over a real inotify instance (the end-to-end suite drives both fronts).
@Suite(.timeLimit(.minutes(1))) struct DirectoryWatchTests {
    private static func sandbox(_ directory: TemporaryDirectory, maxWatches: Int = 64) throws -> Sandbox {
        var limits = Watches.Limits()
        limits.maxWatches = maxWatches
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
