/// `GET /metrics`: the server's counters and histograms in the Prometheus text format.
public struct MetricsAPI: Sendable {
    let metrics: Metrics

    public init(metrics: Metrics) {
        self.metrics = metrics
    }

    public func register(in router: inout Router) {
        router.add("GET", "/metrics") { _, _ in
            .response(
                HTTPResponse(
                    status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                    body: .bytes(Array(metrics.render().utf8))))
        }
    }
}
