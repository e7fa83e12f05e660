import FoundationEssentials
import Synchronization

/// Counters and histograms of the server, rendered in the Prometheus text format for `GET /metrics`.
///
/// Label values are bounded: routes are route patterns (`/download/{path}`), never raw paths.
public final class Metrics: Sendable {
    /// Upper bounds, in seconds, of the request duration histogram's buckets.
    static let durationBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

    private struct RequestKey: Hashable {
        var route: String
        var method: String
        var status: Int
    }

    private struct Histogram {
        var buckets = [UInt64](repeating: 0, count: Metrics.durationBuckets.count)
        var count: UInt64 = 0
        var sum = 0.0

        mutating func record(_ seconds: Double) {
            for (index, bound) in Metrics.durationBuckets.enumerated() where seconds <= bound { buckets[index] += 1 }
            count += 1
            sum += seconds
        }
    }

    private struct State {
        var requests: [RequestKey: UInt64] = [:]
        var durations: [String: Histogram] = [:]
        var bytesUploaded: UInt64 = 0
        var bytesDownloaded: UInt64 = 0
    }

    private let state = Mutex(State())
    /// Gauges and counters owned elsewhere, read when rendering: (name, help, type, value). A name may carry labels
    /// (`name{label="value"}`); the series of one name come together, and its help and type are printed once.
    private let readings: @Sendable () -> [(String, String, String, Double)]

    public init(readings: @escaping @Sendable () -> [(String, String, String, Double)] = { [] }) {
        self.readings = readings
    }

    /// Records one finished request.
    public func observe(route: String, method: String, status: Int, seconds: Double) {
        state.withLock { state in
            state.requests[RequestKey(route: route, method: method, status: status), default: 0] += 1
            // In place: a copy taken out of the dictionary and stored back copied its buckets on every request.
            state.durations[route, default: Histogram()].record(seconds)
        }
    }

    public func addUploaded(_ bytes: Int) {
        state.withLock { $0.bytesUploaded += UInt64(bytes) }
    }

    public func addDownloaded(_ bytes: UInt64) {
        state.withLock { $0.bytesDownloaded += bytes }
    }

    /// The Prometheus text exposition (version 0.0.4).
    public func render() -> String {
        let snapshot = state.withLock { $0 }
        var out = ""
        out += "# HELP sandboxd_http_requests_total HTTP requests by route, method and status.\n"
        out += "# TYPE sandboxd_http_requests_total counter\n"
        for (key, count) in snapshot.requests.sorted(by: {
            ($0.key.route, $0.key.method, $0.key.status) < ($1.key.route, $1.key.method, $1.key.status)
        }) {
            out +=
                "sandboxd_http_requests_total{route=\"\(Self.escape(key.route))\",method=\"\(Self.escape(key.method))\",status=\"\(key.status)\"} \(count)\n"
        }
        out +=
            "# HELP sandboxd_http_request_duration_seconds Time from the first byte of a request to its completion.\n"
        out += "# TYPE sandboxd_http_request_duration_seconds histogram\n"
        for (route, histogram) in snapshot.durations.sorted(by: { $0.key < $1.key }) {
            let label = "route=\"\(Self.escape(route))\""
            for (index, bound) in Self.durationBuckets.enumerated() {
                out +=
                    "sandboxd_http_request_duration_seconds_bucket{\(label),le=\"\(bound)\"} \(histogram.buckets[index])\n"
            }
            out += "sandboxd_http_request_duration_seconds_bucket{\(label),le=\"+Inf\"} \(histogram.count)\n"
            out += "sandboxd_http_request_duration_seconds_sum{\(label)} \(histogram.sum)\n"
            out += "sandboxd_http_request_duration_seconds_count{\(label)} \(histogram.count)\n"
        }
        var values: [(String, String, String, Double)] = [
            (
                "sandboxd_uploaded_bytes_total", "Bytes received in upload and file write bodies.", "counter",
                Double(snapshot.bytesUploaded)
            ),
            (
                "sandboxd_downloaded_bytes_total", "Bytes of files sent in downloads.", "counter",
                Double(snapshot.bytesDownloaded)
            ),
        ]
        values += readings()
        var described: Set<Substring> = []
        for (name, help, type, value) in values {
            let family = name.prefix { $0 != "{" }
            if described.insert(family).inserted { out += "# HELP \(family) \(help)\n# TYPE \(family) \(type)\n" }
            out += "\(name) \(Self.format(value))\n"
        }
        return out
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    private static func escape(_ value: String) -> String {
        value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n")
    }
}
