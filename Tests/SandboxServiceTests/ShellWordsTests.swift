import Foundation
import Testing

@testable import SandboxService

/// One row of `Fixtures/shlex_cases.json`, produced by Python's real `shlex.split`
/// (`Tests/tools/gen_shlex_table.py`).
struct ShlexCase: Decodable, Sendable, CustomTestStringConvertible {
    let input: String
    let argv: [String]?
    let error: String?

    var testDescription: String { String(reflecting: input) }

    /// Loads the table next to this file; it is not a package resource, so `#filePath` finds it.
    static func all(file: String = #filePath) throws -> [ShlexCase] {
        let url = URL(fileURLWithPath: file).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/shlex_cases.json")
        return try JSONDecoder().decode([ShlexCase].self, from: Data(contentsOf: url))
    }
}

@Suite struct ShellWordsTests {
    @Test func fixtureTableIsLoadedAndLarge() throws {
        let cases = try ShlexCase.all()
        #expect(cases.count >= 450)
        #expect(cases.contains { $0.error == "No closing quotation" })
        #expect(cases.contains { $0.error == "No escaped character" })
    }

    @Test(arguments: try ShlexCase.all())
    func matchesPythonShlex(_ testCase: ShlexCase) {
        let result = Result { () throws(ShellWords.Error) in try ShellWords.split(testCase.input) }
        switch result {
        case .success(let argv):
            #expect(argv == testCase.argv, "Python raised \(testCase.error ?? "nothing")")
        case .failure(let error):
            #expect(error.description == testCase.error, "Python returned \(testCase.argv ?? [])")
        }
    }

    @Test func splitsOnWhitespaceAndJoinsQuotedParts() throws {
        #expect(try ShellWords.split("echo 'hello world'") == ["echo", "hello world"])
        #expect(try ShellWords.split("  a\t\tb\r\nc  ") == ["a", "b", "c"])
        #expect(try ShellWords.split("a\"b c\"'d'") == ["ab cd"])
        #expect(try ShellWords.split("") == [])
    }

    @Test func emptyQuotesAreWordsOfTheirOwn() throws {
        #expect(try ShellWords.split("a '' b") == ["a", "", "b"])
        #expect(try ShellWords.split("\"\"") == [""])
        #expect(try ShellWords.split("a\"\"b") == ["ab"])
    }

    @Test func backslashEscapesOnlyQuoteAndItselfInsideDoubleQuotes() throws {
        #expect(try ShellWords.split(#""a\"b""#) == [#"a"b"#])
        #expect(try ShellWords.split(#""a\\b""#) == [#"a\b"#])
        #expect(try ShellWords.split(#""a\nb""#) == [#"a\nb"#])
        #expect(try ShellWords.split(#"'a\nb'"#) == [#"a\nb"#])
        #expect(try ShellWords.split(#"a\ b\nc"#) == ["a bnc"])
    }

    @Test func backslashNewlineIsAnEscapedNewlineNotALineContinuation() throws {
        #expect(try ShellWords.split("a \\\n b") == ["a", "\n", "b"])
    }

    @Test func shellSyntaxIsLiteral() throws {
        #expect(
            try ShellWords.split("echo $HOME # not a comment; a|b *.txt") == [
                "echo", "$HOME", "#", "not", "a", "comment;", "a|b", "*.txt",
            ])
    }

    @Test func onlyASCIISpacingSeparatesWords() throws {
        #expect(try ShellWords.split("a\u{0B}b\u{0C}c\u{A0}d") == ["a\u{0B}b\u{0C}c\u{A0}d"])
    }

    @Test func combiningMarksDoNotHideQuotesOrSpaces() throws {
        // "e" + U+0301 is one Character in Swift but two code points for Python; the quote before a
        // combining mark and the space before it must still count.
        #expect(try ShellWords.split("'\u{301}' \u{301}x") == ["\u{301}", "\u{301}x"])
        #expect(try ShellWords.split("cafe\u{301} \u{1F600}") == ["cafe\u{301}", "\u{1F600}"])
    }

    @Test func reportsPythonsErrors() {
        #expect(throws: ShellWords.Error.noClosingQuotation) { try ShellWords.split("echo 'hello") }
        #expect(throws: ShellWords.Error.noClosingQuotation) { try ShellWords.split(#"a "b\""#) }
        #expect(throws: ShellWords.Error.noEscapedCharacter) { try ShellWords.split(#"a\"#) }
        #expect(throws: ShellWords.Error.noEscapedCharacter) { try ShellWords.split(#""a\"#) }
        #expect(ShellWords.Error.noClosingQuotation.description == "No closing quotation")
        #expect(ShellWords.Error.noEscapedCharacter.description == "No escaped character")
    }
}
