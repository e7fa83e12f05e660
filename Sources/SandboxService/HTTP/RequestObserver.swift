/// Watches requests end (the access log, metrics): the bridge calls every observer once per request, on the polling
/// thread that completed it, so an observer is quick and does not block.
protocol RequestObserver: Sendable {
    func requestCompleted(_ request: CompletedRequest)
}

/// A request that ended, as its observers see it.
struct CompletedRequest: Sendable {
    /// Echoed as `X-Request-Id`.
    var requestID: String
    var method: String
    /// Percent-decoded, or as sent for a request refused before its path was decoded.
    var path: String
    /// The route's pattern (`/download/{path}`), or `unmatched`: a bounded label for metrics.
    var route: String
    /// The status of the answer, 0 when none was given.
    var status: Int
    /// From the request's head to its end.
    var seconds: Double
    /// The answer was sent completely (libmicrohttpd's `REQUEST_TERMINATED_COMPLETED_OK`).
    var cleanly: Bool
    /// Body bytes taken into an upload or a file write.
    var bytesUploaded: Int
    /// Bytes of a file answer sent completely.
    var bytesDownloaded: UInt64
}
