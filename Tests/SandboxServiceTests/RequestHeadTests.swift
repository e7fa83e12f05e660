import Testing

@testable import SandboxService

/// The status `RequestHead` refuses a head with, or nil if it lets it through.
private func verdict(_ fields: [(String, String)], version: String = "HTTP/1.1", targetIsValid: Bool = true) -> Int? {
    let head = RequestHead(
        version: version, targetIsValid: targetIsValid,
        fields: HeaderFields(fields))
    return head.refusal()?.status
}

@Suite(.timeLimit(.minutes(1))) struct RequestHeadTests {
    @Test func anOrdinaryHeadPasses() {
        #expect(
            verdict([("Host", "sandbox:8000"), ("Content-Type", "application/json"), ("Content-Length", "2")]) == nil)
        #expect(verdict([("Host", "x"), ("Transfer-Encoding", "chunked")]) == nil)
        #expect(verdict([("host", "x"), ("TRANSFER-ENCODING", "CHUNKED")]) == nil)
    }

    @Test func theHostRules() {
        #expect(verdict([]) == 400)
        #expect(verdict([], version: "HTTP/1.0") == nil)
        #expect(verdict([("Host", "a"), ("host", "b")]) == 400)
        #expect(verdict([("Host", "a"), ("Host", "a")], version: "HTTP/1.0") == 400)
        #expect(verdict([("Host", "")]) == nil)
        #expect(verdict([("Host", "[::1]:8000")]) == nil)
        #expect(verdict([("Host", "a b")]) == 400)
        #expect(verdict([("Host", "a/b")]) == 400)
        #expect(verdict([("Host", "user@a")]) == 400)
    }

    @Test func fieldNamesMustBeTokens() {
        #expect(verdict([("Host", "x"), ("Transfer-Encoding ", "chunked")]) == 400)
        #expect(verdict([("Host", "x"), ("Transfer-Encoding\t", "chunked")]) == 400)
        #expect(verdict([("Host", "x"), (" X-A", "b")]) == 400)
        #expect(verdict([("Host", "x"), ("", "b")]) == 400)
        #expect(verdict([("Host", "x"), ("X-Odd!#$%&'*+-.^_`|~1", "b")]) == nil)
    }

    @Test func fieldValuesHoldNoControls() {
        #expect(verdict([("Host", "x"), ("X-A", "a\rb")]) == 400)
        #expect(verdict([("Host", "x"), ("X-A", "a\u{7F}")]) == 400)
        #expect(verdict([("Host", "x"), ("X-A", "a\tb é")]) == nil)
    }

    @Test func theTargetVerdictIsKept() {
        #expect(verdict([("Host", "x")], targetIsValid: false) == 400)
    }

    @Test func targetBytes() {
        let valid = ["/", "/exists/caf\u{E9}?a=b&c", "*", "http://h/p"]
        let invalid = ["/a b", "/a\tb", "/a\u{1}", "/a\u{7F}", "/a\0b", "/a\r"]
        for target in valid {
            #expect(Array(target.utf8).withUnsafeBytes { RequestHead.isValidTarget($0) }, "\(target)")
        }
        for target in invalid {
            #expect(!Array(target.utf8).withUnsafeBytes { RequestHead.isValidTarget($0) }, "\(target)")
        }
    }

    @Test func contentLengthsMustAgree() {
        #expect(verdict([("Host", "x"), ("Content-Length", "5"), ("Content-Length", "5")]) == nil)
        #expect(verdict([("Host", "x"), ("Content-Length", "5"), ("Content-Length", "6")]) == 400)
        #expect(verdict([("Host", "x"), ("Content-Length", "5"), ("Content-Length", "05")]) == 400)
    }

    @Test(arguments: [
        ("gzip", 501), ("x-custom", 501), ("identity", 501), ("gzip, chunked", 400), ("chunked, gzip", 400),
        ("chunked, chunked", 400), ("chunked;x=1", 400), ("chunked ", 400), ("", 400), (",", 400),
        ("gzip;q=1", 400), ("a b", 400),
    ])
    func transferCodingsOtherThanChunkedAlone(value: String, status: Int) {
        #expect(verdict([("Host", "x"), ("Transfer-Encoding", value)]) == status)
    }

    @Test func transferEncodingRefusedBesideContentLengthOrTwiceOrInHTTP10() {
        #expect(verdict([("Host", "x"), ("Transfer-Encoding", "chunked"), ("Content-Length", "5")]) == 400)
        #expect(verdict([("Host", "x"), ("Content-Length", "5"), ("Transfer-Encoding", "gzip")]) == 400)
        #expect(verdict([("Host", "x"), ("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")]) == 400)
        #expect(verdict([("Host", "x"), ("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "gzip")]) == 400)
        #expect(verdict([("Transfer-Encoding", "chunked")], version: "HTTP/1.0") == 400)
    }

    @Test func everyRefusalClosesTheConnection() {
        let head = RequestHead(version: "HTTP/1.1", targetIsValid: true, fields: [:])
        #expect(head.refusal()?.headers.contains { $0.0 == "Connection" && $0.1 == "close" } == true)
    }
}
