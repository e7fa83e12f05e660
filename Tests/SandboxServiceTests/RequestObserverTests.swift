import Logging
import Synchronization
import Testing

@testable import SandboxService

/// Keeps every record logged through it.
struct CapturingLogHandler: LogHandler {
    final class Records: Sendable {
        let lines = Mutex<[(message: String, metadata: [String: String])]>([])
    }

    let records: Records
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).mapValues { "\($0)" }
        records.lines.withLock { $0.append(("\(event.message)", fields)) }
    }
}

private func completed(
    status: Int = 200, seconds: Double = 0.0012345, cleanly: Bool = true, uploaded: Int = 0, downloaded: UInt64 = 0
) -> CompletedRequest {
    CompletedRequest(
        requestID: "0123456789abcdef", method: "GET", path: "/download/a b", route: "/download/{path}", status: status,
        seconds: seconds, cleanly: cleanly, bytesUploaded: uploaded, bytesDownloaded: downloaded)
}

@Suite(.timeLimit(.minutes(1))) struct RequestObserverTests {
    @Test func theAccessLogWritesOneLinePerRequestWithItsId() {
        let records = CapturingLogHandler.Records()
        let log = AccessLog(
            logger: Logger(label: "test") { _ in CapturingLogHandler(records: records) }, structured: false)
        log.requestCompleted(completed())
        log.requestCompleted(completed(status: 0, seconds: 2, cleanly: false))
        let lines = records.lines.withLock { $0 }
        #expect(
            lines.map(\.message) == ["GET /download/a b 200 1.2ms", "GET /download/a b - 2000.0ms (connection closed)"])
        #expect(lines.map(\.metadata) == [["request_id": "0123456789abcdef"], ["request_id": "0123456789abcdef"]])
    }

    @Test func aStructuredAccessLogAlsoCarriesTheFieldsAsMetadata() throws {
        let records = CapturingLogHandler.Records()
        let log = AccessLog(
            logger: Logger(label: "test") { _ in CapturingLogHandler(records: records) }, structured: true)
        log.requestCompleted(completed())
        let line = try #require(records.lines.withLock { $0.first })
        #expect(line.message == "GET /download/a b 200 1.2ms")
        #expect(
            line.metadata == [
                "request_id": "0123456789abcdef", "method": "GET", "path": "/download/a b", "status": "200",
                "duration_ms": "1.235",
            ])
    }

    @Test func metricsCountRequestsAndTheBytesTheyMoved() {
        let metrics = Metrics()
        metrics.requestCompleted(completed(uploaded: 5))
        metrics.requestCompleted(completed(downloaded: 7))
        let text = metrics.render()
        #expect(text.contains(#"sandboxd_http_requests_total{route="/download/{path}",method="GET",status="200"} 2"#))
        #expect(text.contains("sandboxd_uploaded_bytes_total 5\n"))
        #expect(text.contains("sandboxd_downloaded_bytes_total 7\n"))
    }
}
