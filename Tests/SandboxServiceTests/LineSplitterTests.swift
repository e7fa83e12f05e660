import Testing

@testable import SandboxService

/// Feeds `chunks` and returns every line, including the unterminated last one from `finish()`, as text.
private func split(_ chunks: [String], maxLine: Int = LineSplitter.defaultMaxLine) -> [String] {
    splitBytes(chunks.map { Array($0.utf8) }, maxLine: maxLine).map { String(decoding: $0, as: UTF8.self) }
}

private func splitBytes(_ chunks: [[UInt8]], maxLine: Int = LineSplitter.defaultMaxLine) -> [[UInt8]] {
    var splitter = LineSplitter(maxLine: maxLine)
    var lines: [[UInt8]] = []
    for chunk in chunks { lines += splitter.feed(chunk) }
    if let last = splitter.finish() { lines.append(last) }
    return lines
}

/// `bytes` cut into pieces of `size`.
private func pieces(_ bytes: [UInt8], size: Int) -> [[UInt8]] {
    stride(from: 0, to: bytes.count, by: size).map { Array(bytes[$0..<min(bytes.count, $0 + size)]) }
}

@Suite(.timeLimit(.minutes(1))) struct LineSplitterTests {
    @Test func endsLinesAtLFAndCRLFAndCR() {
        #expect(split(["a\nb\r\nc\rd\n"]) == ["a", "b", "c", "d"])
    }

    @Test func noLineContainsCROrLF() {
        let lines = splitBytes([Array("x\r\r\n\n\ry\n\r\nz".utf8)])
        #expect(lines.allSatisfy { !$0.contains(10) && !$0.contains(13) })
        #expect(lines.map { String(decoding: $0, as: UTF8.self) } == ["x", "", "", "", "y", "", "z"])
    }

    @Test func crAtTheEndOfAChunkAndLFAtTheStartOfTheNextAreOneLineEnd() {
        var splitter = LineSplitter()
        #expect(splitter.feed(Array("one\r".utf8)) == [Array("one".utf8)])
        #expect(splitter.feed(Array("\ntwo\n".utf8)) == [Array("two".utf8)])
        #expect(splitter.finish() == nil)
    }

    @Test func crAtAChunkEndFollowedByAnotherLineIsStillALineEnd() {
        #expect(split(["one\r", "two\n"]) == ["one", "two"])
        #expect(split(["one\r", "\r", "\n", "two"]) == ["one", "", "two"])
    }

    @Test func emptyLinesAreKept() {
        #expect(split(["\n\n"]) == ["", ""])
        #expect(split(["a\n\nb\n"]) == ["a", "", "b"])
        #expect(split(["\r\n\r\n"]) == ["", ""])
    }

    @Test func byteAtATimeGivesTheSameLines() {
        let text = "alpha\r\nbeta\rgamma\n\ndelta"
        #expect(split(text.map { String($0) }) == split([text]))
        #expect(split(Array(text.utf8).map { String(decoding: [$0], as: UTF8.self) }) == split([text]))
    }

    @Test func finishReturnsThePartialLastLineOnce() {
        var splitter = LineSplitter()
        #expect(splitter.feed(Array("done\npartial".utf8)) == [Array("done".utf8)])
        #expect(splitter.finish() == Array("partial".utf8))
        #expect(splitter.finish() == nil)
    }

    @Test func finishAfterALineEndReturnsNothing() {
        for text in ["a\n", "a\r", "a\r\n", ""] {
            var splitter = LineSplitter()
            _ = splitter.feed(Array(text.utf8))
            #expect(splitter.finish() == nil, "\(text.debugDescription)")
        }
    }

    @Test(arguments: [1 << 16, 1000, 65535, 200_001])
    func longLineComesIn64KiBPieces(chunkSize: Int) {
        let line = [UInt8](repeating: UInt8(ascii: "x"), count: 200_000)
        let lines = splitBytes(pieces(line + [10], size: chunkSize))
        #expect(lines.map(\.count) == [65536, 65536, 65536, 3392])
        #expect(Array(lines.joined()) == line)
    }

    @Test func lineOfExactlyTheLimitIsOneLine() {
        // The contract cuts lines *longer* than 64 KiB; one of exactly 64 KiB is a single event, with no empty
        // event after it.
        let line = [UInt8](repeating: UInt8(ascii: "x"), count: 65536)
        #expect(splitBytes([line + [10], Array("next\n".utf8)]).map(\.count) == [65536, 4])
    }

    @Test(arguments: ["é", "€", "😀"])
    func multiByteCharacterIsNotSplitAcrossPieces(character: String) {
        let width = character.utf8.count
        // Put the character across the 64 KiB boundary at every possible offset.
        for before in (65536 - width + 1)...65535 {
            let line = [UInt8](repeating: UInt8(ascii: "a"), count: before) + Array(character.utf8) + Array("bc".utf8)
            for chunkSize in [line.count, 4096] {
                let lines = splitBytes(pieces(line, size: chunkSize))
                #expect(lines.count == 2, "before \(before)")
                #expect(Array(lines.joined()) == line)
                #expect(lines.allSatisfy { $0.count <= 65536 })
                #expect(lines.allSatisfy { String(validating: $0, as: UTF8.self) != nil }, "before \(before)")
                #expect(lines.first?.count == before, "the cut is just before the character")
            }
        }
    }

    @Test func characterEndingExactlyAtTheLimitStaysInTheFirstPiece() {
        let line = [UInt8](repeating: UInt8(ascii: "a"), count: 65536 - 4) + Array("😀".utf8) + Array("z".utf8)
        let lines = splitBytes([line])
        #expect(lines.map(\.count) == [65536, 1])
    }

    @Test func invalidUTF8IsStillCutAtTheLimit() {
        for filler: UInt8 in [0x80, 0xFF, 0xC3, 0xF0] {
            let line = [UInt8](repeating: filler, count: 150_000)
            let lines = splitBytes([line + [10]])
            #expect(Array(lines.joined()) == line, "filler \(filler)")
            #expect(lines.allSatisfy { $0.count <= 65536 && !$0.isEmpty }, "filler \(filler)")
        }
    }

    @Test func smallLimitCutsOnCharacterBoundaries() {
        let text = "aéb€c😀d"
        let lines = split([text + "\n"], maxLine: 4)
        #expect(lines.joined() == text)
        #expect(lines.allSatisfy { $0.utf8.count <= 4 && !$0.contains("\u{FFFD}") })
    }
}
