import Testing

@testable import SandboxService

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite struct ProcessOutputLogTests {
    @Test func idsIncreaseFromOneAndEverythingIsReplayed() {
        var log = OutputLog(limit: 1 << 20)
        let first = log.append(bytes("a"), from: .stdout)
        let second = log.append(bytes("b"), from: .stderr)
        #expect(first.id == 1 && second.id == 2)
        #expect(log.nextID() == 3)
        let replay = log.replay(after: 0)
        #expect(replay.missed == nil)
        #expect(replay.events.map(\.id) == [1, 2])
        #expect(replay.events.map(\.channel) == [.stdout, .stderr])
    }

    @Test func theBudgetCountsBytesAndDropsTheOldest() {
        var log = OutputLog(limit: 10)
        for text in ["aaaa", "bbbb", "cccc"] { _ = log.append(bytes(text), from: .stdout) }
        #expect(log.byteCount == 8)
        #expect(log.droppedThrough == 1)
        #expect(log.kept.map(\.text) == ["bbbb", "cccc"])
        let replay = log.replay(after: 0)
        #expect(replay.missed == 1...1)
        #expect(replay.events.map(\.id) == [2, 3])
    }

    @Test func anEventLargerThanTheBudgetIsReturnedButNotKept() {
        var log = OutputLog(limit: 4)
        _ = log.append(bytes("ok"), from: .stdout)
        let big = log.append(bytes("too large"), from: .stdout)
        #expect(big.id == 2 && big.text == "too large")
        #expect(log.kept.isEmpty && log.byteCount == 0)
        #expect(log.replay(after: 0) == OutputLog.Replay(missed: 1...2, events: []))
        #expect(log.replay(after: 2) == OutputLog.Replay(missed: nil, events: []))
    }

    @Test func replayResumesAfterTheLastSeenId() {
        var log = OutputLog(limit: 1 << 20)
        for index in 1...5 { _ = log.append(bytes("\(index)"), from: .stdout) }
        #expect(log.replay(after: 3).events.map(\.text) == ["4", "5"])
        #expect(log.replay(after: 3).missed == nil)
        #expect(log.replay(after: 5).events.isEmpty)
        _ = log.nextID()  // the exit's id
        #expect(log.replay(after: 6).events.isEmpty)
    }

    @Test func resumingFromADroppedIdStartsAtTheOldestKeptAndSaysWhatWasMissed() {
        var log = OutputLog(limit: 3)
        for index in 1...6 { _ = log.append(bytes("\(index)"), from: .stdout) }
        #expect(log.droppedThrough == 3)
        let replay = log.replay(after: 1)
        #expect(replay.missed == 2...3)
        #expect(replay.events.map(\.id) == [4, 5, 6])
    }

    @Test func manyEventsStayWithinTheBudget() {
        var log = OutputLog(limit: 1000)
        for index in 0..<10_000 {
            _ = log.append([UInt8](repeating: UInt8(ascii: "x"), count: index % 97 + 1), from: .stdout)
            #expect(log.byteCount <= 1000)
        }
        let kept = log.kept
        #expect(kept.reduce(0) { $0 + $1.bytes.count } == log.byteCount)
        #expect(kept.last?.id == 10_000)
        #expect(zip(kept.dropFirst(), kept).allSatisfy { $0.id == $1.id + 1 })
        #expect(kept.first?.id == log.droppedThrough + 1)
    }

    @Test func aCharacterSplitAcrossReadsIsShownWholeInTheSecond() {
        var log = OutputLog(limit: 1 << 20)
        let first = log.append([0x61, 0xC3], from: .stdout)
        let other = log.append([0xE2, 0x82], from: .stderr)
        let second = log.append([0xA9, 0x62], from: .stdout)
        let third = log.append([0xAC], from: .stderr)
        #expect(first.text == "a" && second.text == "é" + "b")
        #expect(other.text == "" && third.text == "€")
        // The raw bytes stay as read, for base64 clients.
        #expect(first.bytes == [0x61, 0xC3] && second.bytes == [0xA9, 0x62])
    }

    @Test func aCharacterSpreadOverThreeReadsIsHeldUntilComplete() {
        var log = OutputLog(limit: 1 << 20)
        let texts = [[0xF0], [0x9F, 0x98], [0x80, 0x21]].map { log.append($0, from: .stdout).text }
        #expect(texts == ["", "", "😀!"])
    }

    @Test func invalidBytesBecomeReplacementCharacters() {
        var log = OutputLog(limit: 1 << 20)
        #expect(log.append([0xC3, 0x41], from: .stdout).text == "\u{FFFD}A")
        #expect(log.append([0xFF, 0x0A], from: .stdout).text == "\u{FFFD}\n")
    }

    @Test func anIncompleteCharacterAtTheEndIsFlushedAsReplacement() {
        var log = OutputLog(limit: 1 << 20)
        _ = log.append([0x61, 0xE2, 0x82], from: .stdout)
        let flushed = log.flush()
        #expect(flushed.map(\.text) == ["\u{FFFD}"])
        #expect(flushed.map(\.bytes) == [[]])
        #expect(flushed.map(\.id) == [2])
        #expect(log.flush().isEmpty)
    }

    @Test(
        arguments: [
            ([], 0), ([0x41], 0), ([0xC3], 1), ([0xC3, 0xA9], 0), ([0xE2], 1), ([0xE2, 0x82], 2),
            ([0xE2, 0x82, 0xAC], 0),
            ([0xF0, 0x9F, 0x98], 3), ([0xF0, 0x9F, 0x98, 0x80], 0), ([0x80, 0x80, 0x80], 0), ([0xFF], 0),
            ([0x41, 0xF0], 1),
        ] as [([UInt8], Int)])
    func incompleteSuffix(bytes: [UInt8], expected: Int) {
        #expect(OutputLog.incompleteSuffix(bytes) == expected)
    }
}
