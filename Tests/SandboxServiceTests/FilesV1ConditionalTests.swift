import Testing

@testable import SandboxService

@Suite("v1 files: Range, ETag and conditional requests")
struct FilesV1ConditionalTests {
    typealias RangeRequest = V1API.RangeRequest

    @Test(
        "single byte ranges",
        arguments: [
            ("bytes=0-0", 100, RangeRequest.partial(offset: 0, length: 1)),
            ("bytes=2-4", 100, .partial(offset: 2, length: 3)),
            ("bytes=10-", 100, .partial(offset: 10, length: 90)),
            ("bytes=-10", 100, .partial(offset: 90, length: 10)),
            ("bytes=-1000", 100, .partial(offset: 0, length: 100)),
            ("bytes=90-1000", 100, .partial(offset: 90, length: 10)),
            ("bytes=99-99", 100, .partial(offset: 99, length: 1)),
            ("BYTES=1-2", 100, .partial(offset: 1, length: 2)),
            ("bytes= 1-2 ", 100, .partial(offset: 1, length: 2)),
            ("bytes=1-2,", 100, .partial(offset: 1, length: 2)),
            ("bytes=0-18446744073709551615", 5, .partial(offset: 0, length: 5)),
        ])
    func singleRange(header: String, size: UInt64, expected: RangeRequest) {
        #expect(RangeRequest(header: header, size: size) == expected)
    }

    @Test(
        "unsatisfiable ranges",
        arguments: [
            ("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=0-", 0), ("bytes=-5", 0),
            ("bytes=0-0", 0),
        ])
    func unsatisfiable(header: String, size: UInt64) {
        #expect(RangeRequest(header: header, size: size) == .unsatisfiable)
    }

    @Test(
        "anything else is the whole file",
        arguments: [
            nil, "", "bytes", "bytes=", "bytes=-", "bytes=a-b", "bytes=5-2", "bytes=0-1,3-4", "items=0-1", "bytes=1",
            "bytes=+1-2", "bytes=1--2", "bytes=99999999999999999999-", "bytes 0-1",
        ])
    func whole(header: String?) {
        #expect(RangeRequest(header: header, size: 100) == .whole)
    }

    @Test("the ETag is strong and changes with size and modification time")
    func etag() {
        let status = FileTree.Status(
            isDirectory: false, size: 11, modifiedSeconds: 1_700_000_000, modifiedNanoseconds: 5, permissions: 0o644)
        let validators = V1API.Validators(status)
        #expect(validators.etag.hasPrefix("\"") && validators.etag.hasSuffix("\""))
        #expect(!validators.etag.hasPrefix("W/"))
        #expect(validators.lastModified == 1_700_000_000)
        var later = status
        later.modifiedNanoseconds += 1
        var longer = status
        longer.size += 1
        #expect(V1API.Validators(later).etag != validators.etag)
        #expect(V1API.Validators(longer).etag != validators.etag)
        #expect(V1API.Validators(status) == validators)
    }

    @Test("entity tag lists: quoted tags may hold commas, W/ marks weak ones, * matches anything")
    func entityTags() {
        let tags = V1API.EntityTags(#""a,b", W/"c" ,"d""#)
        #expect(tags.tags.map(\.opaque) == [#""a,b""#, #""c""#, #""d""#])
        #expect(tags.tags.map(\.weak) == [false, true, false])
        #expect(tags.matches(#""c""#, weak: true))
        #expect(!tags.matches(#""c""#, weak: false))
        #expect(tags.matches(#""a,b""#, weak: false))
        #expect(V1API.EntityTags("*").matches(#""x""#, weak: false))
        #expect(!V1API.EntityTags("garbage").matches(#""x""#, weak: true))
    }

    private let status = FileTree.Status(
        isDirectory: false, size: 100, modifiedSeconds: 784_111_777, modifiedNanoseconds: 123, permissions: 0o644)

    private func answer(_ headers: HeaderFields) -> V1API.FileAnswer {
        V1API.answer(headers: headers, validators: V1API.Validators(status), size: status.size)
    }

    @Test("If-None-Match and If-Modified-Since give 304; If-None-Match wins over the date")
    func notModified() {
        let etag = V1API.Validators(status).etag
        #expect(answer(["if-none-match": etag]) == .notModified)
        #expect(answer(["if-none-match": "W/\(etag)"]) == .notModified)
        #expect(answer(["if-none-match": "\"other\", \(etag)"]) == .notModified)
        #expect(answer(["if-none-match": "*"]) == .notModified)
        #expect(answer(["if-none-match": "\"other\""]) == .whole)
        #expect(answer(["if-modified-since": "Sun, 06 Nov 1994 08:49:37 GMT"]) == .notModified)
        #expect(answer(["if-modified-since": "Sun, 06 Nov 1994 08:49:36 GMT"]) == .whole)
        #expect(answer(["if-modified-since": "not a date"]) == .whole)
        #expect(
            answer(["if-none-match": "\"other\"", "if-modified-since": "Sun, 06 Nov 1994 08:49:37 GMT"]) == .whole)
    }

    @Test("If-Match and If-Unmodified-Since give 412")
    func preconditions() {
        let etag = V1API.Validators(status).etag
        #expect(answer(["if-match": etag]) == .whole)
        #expect(answer(["if-match": "*"]) == .whole)
        #expect(answer(["if-match": "W/\(etag)"]) == .preconditionFailed)
        #expect(answer(["if-match": "\"other\""]) == .preconditionFailed)
        #expect(answer(["if-unmodified-since": "Sun, 06 Nov 1994 08:49:36 GMT"]) == .preconditionFailed)
        #expect(answer(["if-unmodified-since": "Sun, 06 Nov 1994 08:49:37 GMT"]) == .whole)
        #expect(answer(["if-match": etag, "if-unmodified-since": "Sun, 06 Nov 1994 08:49:36 GMT"]) == .whole)
    }

    @Test("Range is honoured when If-Range names the current version, else the whole file is sent")
    func ifRange() {
        let etag = V1API.Validators(status).etag
        #expect(answer(["range": "bytes=0-9"]) == .partial(offset: 0, length: 10))
        #expect(answer(["range": "bytes=0-9", "if-range": etag]) == .partial(offset: 0, length: 10))
        #expect(answer(["range": "bytes=0-9", "if-range": "\"old\""]) == .whole)
        #expect(answer(["range": "bytes=0-9", "if-range": "W/\(etag)"]) == .whole)
        #expect(
            answer(["range": "bytes=0-9", "if-range": "Sun, 06 Nov 1994 08:49:37 GMT"])
                == .partial(offset: 0, length: 10))
        #expect(answer(["range": "bytes=0-9", "if-range": "Sun, 06 Nov 1994 08:49:38 GMT"]) == .whole)
        #expect(answer(["range": "bytes=200-"]) == .unsatisfiable)
        #expect(answer(["range": "bytes=0-9", "if-none-match": etag]) == .notModified)
    }

    @Test("HTTP dates: IMF-fixdate out; IMF-fixdate, RFC 850 and asctime in")
    func httpDates() {
        #expect(HTTPDate.imfFixdate(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.imfFixdate(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.parse("Sun Nov  6 08:49:37 1994") == 784_111_777)
        for invalid in [
            "", "yesterday", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 06 Nov 1994 08:49 GMT",
        ] {
            #expect(HTTPDate.parse(invalid) == nil, "\(invalid)")
        }
        #expect(HTTPDate.rfc3339(784_111_777) == "1994-11-06T08:49:37Z")
    }
}
