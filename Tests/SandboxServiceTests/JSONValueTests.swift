import Foundation
import Testing

@testable import SandboxService

private func encode(_ value: JSONValue) -> String { String(decoding: value.encoded(), as: UTF8.self) }

@Suite(.timeLimit(.minutes(1))) struct JSONValueTests {
    @Test func scalars() {
        #expect(encode(.null) == "null")
        #expect(encode(.bool(true)) == "true")
        #expect(encode(.bool(false)) == "false")
        #expect(encode("") == #""""#)
    }

    @Test func integersHaveNoFraction() {
        #expect(encode(.number(0)) == "0")
        #expect(encode(.number(-1)) == "-1")
        #expect(encode(.number(124)) == "124")
        #expect(encode(.number(137)) == "137")
        #expect(encode(.number(2_147_483_647)) == "2147483647")
        #expect(encode(.number(5_000_000_000)) == "5000000000")
        #expect(encode(.number(-0.0)) == "0")
    }

    @Test func fractionsRoundTrip() {
        #expect(encode(.number(0.5)) == "0.5")
        #expect(encode(.number(-2.25)) == "-2.25")
        for value in [1_764_331_200.123456, 0.1, 1e-7, 123.456e10, 1.7976931348623157e308] {
            #expect(JSONValue.parse(JSONValue.number(value).encoded()) == .number(value), "\(value)")
        }
    }

    @Test func nonFiniteNumbersBecomeNull() {
        #expect(encode(.number(.nan)) == "null")
        #expect(encode(.number(.infinity)) == "null")
        #expect(encode(.number(-.infinity)) == "null")
    }

    @Test func escapesQuoteBackslashAndLineEnds() {
        #expect(encode(#"say "hi""#) == #""say \"hi\"""#)
        #expect(encode(#"C:\dir"#) == #""C:\\dir""#)
        #expect(encode("a\nb\rc\td") == #""a\nb\rc\td""#)
        #expect(encode("/") == #""/""#)
    }

    @Test func controlCharactersAreUnicodeEscapes() {
        #expect(encode("\u{0}") == #""\u0000""#)
        #expect(encode("\u{1}\u{1F}") == #""\u0001\u001f""#)
        #expect(encode("\u{1B}[31m") == #""\u001b[31m""#)
        // Python writes \b and \f; the \u form is the same JSON string.
        for control in ["\u{8}", "\u{C}"] {
            #expect(JSONValue.parse(JSONValue.string(control).encoded()) == .string(control))
        }
        // DEL is not a JSON control character and passes through, as in Python.
        #expect(encode("\u{7F}") == "\"\u{7F}\"")
    }

    @Test func everyControlCharacterRoundTrips() {
        let all = String(decoding: (0..<0x20).map { UInt8($0) }, as: UTF8.self)
        let bytes = JSONValue.string(all).encoded()
        #expect(!bytes.contains { $0 < 0x20 })
        #expect(JSONValue.parse(bytes) == .string(all))
    }

    @Test func unicodeIsWrittenAsUTF8NotEscaped() {
        // FastAPI's JSONResponse uses ensure_ascii=False.
        #expect(encode("héllo 😀 \u{2028} \u{FFFD}") == "\"héllo 😀 \u{2028} \u{FFFD}\"")
        #expect(JSONValue.string("é").encoded() == [34, 0xC3, 0xA9, 34])
    }

    @Test func objectsKeepKeyOrderAndUseCompactSeparators() {
        let value: JSONValue = [
            "stdout": "hello world\n", "stderr": "", "exit_code": .number(0), "timed_out": .bool(false),
        ]
        #expect(encode(value) == #"{"stdout":"hello world\n","stderr":"","exit_code":0,"timed_out":false}"#)
        #expect(encode(["b": .number(1), "a": .number(2)]) == #"{"b":1,"a":2}"#)
        #expect(encode(["z": .null, "m": .null, "a": .null]) == #"{"z":null,"m":null,"a":null}"#)
    }

    @Test func nestedValuesAreCompact() {
        let value: JSONValue = [
            "detail": .array([
                ["type": "missing", "loc": .array(["body", "command"]), "msg": "Field required", "input": [:]]
            ])
        ]
        #expect(
            encode(value)
                == #"{"detail":[{"type":"missing","loc":["body","command"],"msg":"Field required","input":{}}]}"#)
        #expect(encode(.array([])) == "[]")
        #expect(encode([:]) == "{}")
        #expect(encode(.array([.number(1), .array([.null]), [:]])) == "[1,[null],{}]")
    }

    @Test func keysAreEscapedLikeStrings() {
        #expect(encode(["a\"b\n": .number(1)]) == #"{"a\"b\n":1}"#)
    }

    @Test func parseTellsBooleansFromNumbers() {
        #expect(
            JSONValue.parse(Array("[true, 1, 0, false, 1.5, null]".utf8))
                == .array([
                    .bool(true), .number(1), .number(0), .bool(false), .number(1.5), .null,
                ]))
    }

    @Test func parseAcceptsAnyTopLevelValue() {
        #expect(JSONValue.parse(Array("5".utf8)) == .number(5))
        #expect(JSONValue.parse(Array(#""x""#.utf8)) == "x")
        #expect(JSONValue.parse(Array("null".utf8)) == .null)
        #expect(JSONValue.parse(Array(" {\"a\": [1]} ".utf8)) == ["a": .array([.number(1)])])
    }

    @Test func parseFollowsPythonJSON() {
        // Python's json.loads, which FastAPI uses: NaN and Infinity are numbers, the last duplicate key wins.
        #expect(
            JSONValue.parse(Array("[Infinity, -Infinity]".utf8)) == .array([.number(.infinity), .number(-.infinity)]))
        #expect(JSONValue.parse(Array("[NaN]".utf8)).map { "\($0)" } == "\(JSONValue.array([.number(.nan)]))")
        #expect(JSONValue.parse(Array(#"{"a": 1, "b": 2, "a": 3}"#.utf8)) == ["a": .number(3), "b": .number(2)])
    }

    @Test func parseRejectsWhatIsNotOneDocument() {
        for text in ["", "{", "{} {}", "{'a': 1}", "nul", "\u{FEFF}", "[01]", "[nan]", "/*c*/[1]", "[\"a\tb\"]"] {
            #expect(JSONValue.parse(Array(text.utf8)) == nil, "\(text.debugDescription)")
        }
        #expect(JSONValue.parse([0xFF, 0xFE]) == nil)
    }

    @Test func parseRejectsTrailingCommas() {
        // Python's json.loads (so FastAPI) answers `{"command": "ls",}` with a 422 json_invalid.
        #expect(JSONValue.parse(Array("[1,]".utf8)) == nil)
        #expect(JSONValue.parse(Array(#"{"command": "ls",}"#.utf8)) == nil)
    }

    @Test func parseDecodesEscapes() {
        #expect(JSONValue.parse(Array(#""a\u00e9\ud83d\ude00\n\"""#.utf8)) == "aé😀\n\"")
    }

    @Test func subscriptFindsMembers() {
        let value: JSONValue = ["command": "ls", "timeout": .number(3)]
        #expect(value["command"] == "ls")
        #expect(value["timeout"] == .number(3))
        #expect(value["missing"] == nil)
        #expect(JSONValue.array([]).self["command"] == nil)
    }

    @Test func equalityComparesObjectsInOrder() {
        #expect(JSONValue.object([("a", .null), ("b", .null)]) == .object([("a", .null), ("b", .null)]))
        #expect(JSONValue.object([("a", .null), ("b", .null)]) != .object([("b", .null), ("a", .null)]))
        #expect(JSONValue.number(1) != .bool(true))
    }
}
