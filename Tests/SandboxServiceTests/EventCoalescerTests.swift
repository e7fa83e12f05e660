import Testing

@testable import SandboxService

private func merged(_ events: [(WatchEvent.Kind, String, String)]) -> [String] {
    var window = EventCoalescer()
    for (kind, path, old) in events { window.add(WatchEvent(kind, path: path, oldPath: old)) }
    return window.take().map { $0.oldPath.isEmpty ? "\($0.kind) \($0.path)" : "\($0.kind) \($0.oldPath)>\($0.path)" }
}

@Suite struct EventCoalescerTests {
    @Test func aCreateAndManyWritesAreOneCreateThenOneWrite() {
        let events = [(WatchEvent.Kind.create, "a", "")] + Array(repeating: (.write, "a", ""), count: 50)
        #expect(merged(events) == ["create a", "write a"])
    }

    @Test func aCreatedFileGetsNoChmodInItsWindow() {
        #expect(
            merged([(.create, "a", ""), (.chmod, "a", ""), (.write, "a", ""), (.chmod, "a", "")]) == [
                "create a", "write a",
            ])
    }

    @Test func writesAndChmodsOfAnExistingFileAreOneOfEach() {
        #expect(
            merged([(.write, "a", ""), (.chmod, "a", ""), (.write, "a", ""), (.chmod, "a", ""), (.write, "b", "")]) == [
                "write a", "chmod a", "write b",
            ])
    }

    @Test func aRemovalEndsTheRunSoAFileCreatedAgainIsReportedInOrder() {
        let events: [(WatchEvent.Kind, String, String)] = [
            (.create, "a", ""), (.write, "a", ""), (.remove, "a", ""), (.create, "a", ""), (.write, "a", ""),
        ]
        #expect(merged(events) == ["create a", "write a", "remove a", "create a", "write a"])
    }

    @Test func aDuplicateCreateIsMerged() {
        // A directory's listing reports what its watch may already have reported.
        #expect(merged([(.create, "d/x", ""), (.create, "d/x", "")]) == ["create d/x"])
    }

    @Test func renamesAreNeverMergedAndEndTheRunsOfBothPaths() {
        let events: [(WatchEvent.Kind, String, String)] = [
            (.write, "a", ""), (.rename, "b", "a"), (.write, "a", ""), (.write, "b", ""), (.rename, "c", "b"),
            (.rename, "c", "b"),
        ]
        #expect(merged(events) == ["write a", "rename a>b", "write a", "write b", "rename b>c", "rename b>c"])
    }

    @Test func theCostCountsWhatIsKeptAndTakeEmptiesTheWindow() {
        var window = EventCoalescer()
        let first = window.add(WatchEvent(.write, path: "abc"))
        #expect(first == 3 + 64)
        #expect(window.add(WatchEvent(.write, path: "abc")) == 0)
        #expect(window.cost == first)
        #expect(window.take().count == 1)
        #expect(window.isEmpty && window.cost == 0)
        #expect(window.add(WatchEvent(.write, path: "abc")) == first)
    }
}
