/// `GET /metrics`: the server's counters and histograms in the Prometheus text format.
public struct MetricsAPI: Sendable {
    let metrics: Metrics
    /// Bytes of a body read into memory (this route takes none).
    let maxBodyBytes: Int

    /// - Parameter maxBodyBytes: the largest body read into memory (`--max-body-bytes`); 413 beyond.
    public init(metrics: Metrics, maxBodyBytes: Int) {
        self.metrics = metrics
        self.maxBodyBytes = maxBodyBytes
    }

    public func register(in router: inout Router) {
        router.add(
            .init("GET", "/metrics", body: .buffered(limit: maxBodyBytes)) { _, _ in
                .response(
                    HTTPResponse(
                        status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                        body: .bytes(Array(metrics.render().utf8))))
            })
    }
}
