import Logging

/// One log line per request: method, path, status and duration in the text, with the request id as metadata.
struct AccessLog: RequestObserver {
    let logger: Logger
    /// Method, path, status and duration also as metadata fields (for `--log-format json`).
    let structured: Bool

    func requestCompleted(_ request: CompletedRequest) {
        let status = request.status == 0 ? "-" : String(request.status)
        let microseconds = Int((request.seconds * 1e6).rounded())
        let message: Logger.Message =
            "\(request.method) \(request.path) \(status) \(Self.decimal(microseconds, places: 3, of: 1))ms\(request.cleanly ? "" : " (connection closed)")"
        // The text line already says method, path, status and duration; structured logs get them as fields.
        if structured {
            logger.info(
                message,
                metadata: [
                    "request_id": "\(request.requestID)", "method": "\(request.method)", "path": "\(request.path)",
                    "status": "\(request.status)", "duration_ms": "\(Self.decimal(microseconds, places: 3, of: 3))",
                ])
        } else {
            logger.info(message, metadata: ["request_id": "\(request.requestID)"])
        }
    }

    /// `value / 10^places` printed with `shown` decimals (without Foundation's `String(format:)`, which is slow in
    /// the per-request log line).
    static func decimal(_ value: Int, places: Int, of shown: Int) -> String {
        var scale = 1
        for _ in 0..<places { scale *= 10 }
        var drop = 1
        for _ in 0..<(places - shown) { drop *= 10 }
        let scaled = (value + drop / 2) / drop
        let unit = scale / drop
        let fraction = String(scaled % unit)
        return "\(scaled / unit).\(String(repeating: "0", count: shown - fraction.count))\(fraction)"
    }
}
