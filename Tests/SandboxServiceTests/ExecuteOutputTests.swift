import Foundation
import Testing

@testable import SandboxService

@Suite struct ExecuteOutputTests {
    /// The answer `ExecuteOutput` builds, decoded.
    private func answer(_ output: inout ExecuteOutput) throws -> [String: Any] {
        var taken = output.take()
        let body = taken.json(then: [("truncated", .bool(taken.truncated))])
        return try #require(JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
    }

    @Test func controlCharactersAreCutAtTwiceTheLimitOnceEscaped() throws {
        var output = ExecuteOutput(limit: 1000)
        output.append([UInt8](repeating: 0, count: 1000), toStdout: true)
        let json = try answer(&output)
        #expect(json["truncated"] as? Bool == true)
        let stdout = try #require(json["stdout"] as? String)
        let kept = stdout.prefix { $0 == "\0" }
        // 2000 escaped bytes hold 333 `\u0000` escapes; none is split.
        #expect(kept.count == 333)
        #expect(stdout.hasSuffix("\n[output truncated: more than 2000 bytes once escaped]"))
    }

    @Test func textOfNewlinesAtTheByteLimitIsNotCut() throws {
        var output = ExecuteOutput(limit: 1000)
        output.append([UInt8](repeating: 0x0A, count: 1000), toStdout: true)
        let json = try answer(&output)
        #expect(json["truncated"] as? Bool == false)
        #expect(json["stdout"] as? String == String(repeating: "\n", count: 1000))
    }

    @Test func multiByteCharactersAreNeverSplitByTheEscapedCut() throws {
        var output = ExecuteOutput(limit: 10)
        // Nine bytes that are not UTF-8 are within the byte limit, but become nine U+FFFD (three bytes each, 27 in
        // all) against an escaped limit of 20: six whole characters (18 bytes) are kept.
        output.append([UInt8](repeating: 0xFF, count: 9), toStdout: false)
        let json = try answer(&output)
        #expect(json["truncated"] as? Bool == true)
        #expect(
            json["stderr"] as? String
                == String(repeating: "\u{FFFD}", count: 6) + "\n[output truncated: more than 20 bytes once escaped]")
    }

    @Test func escapedUnitsEndOnBoundaries() {
        let escaped = Array(#"a\n\u0000é"#.utf8)[...]
        #expect(JSONTextBuilder.wholeUnits(of: escaped, upTo: 2) == 1)
        #expect(JSONTextBuilder.wholeUnits(of: escaped, upTo: 3) == 3)
        #expect(JSONTextBuilder.wholeUnits(of: escaped, upTo: 8) == 3)
        #expect(JSONTextBuilder.wholeUnits(of: escaped, upTo: 9) == 9)
        #expect(JSONTextBuilder.wholeUnits(of: escaped, upTo: 10) == 9)
        #expect(JSONTextBuilder.wholeUnits(of: escaped, upTo: 11) == 11)
    }
}
