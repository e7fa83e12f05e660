import Glibc
import Logging
import SandboxService

/// Writes one line per log message to stderr, as text or (`--log-format json`) as a JSON object with every metadata
/// field (a request's line carries request_id, method, path, status and duration_ms).
///
/// Time is UTC from `clock_gettime`, formatted by hand: swift-log's stream handler formats local time, which makes
/// glibc stat /etc/localtime on every line, a system call per request.
struct LineLogHandler: LogHandler {
    enum Format: Sendable {
        case text, json
    }

    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    private let label: String
    private let format: Format

    init(label: String, format: Format) {
        self.label = label
        self.format = format
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
        file: String, function: String, line: UInt
    ) {
        let fields = metadata.merging(explicit ?? [:], uniquingKeysWith: { $1 }).sorted { $0.key < $1.key }
        var bytes: [UInt8]
        switch format {
        case .text:
            let extras = fields.map { " \($0.key)=\($0.value)" }.joined()
            bytes = Array("\(Self.timestamp()) \(level) \(label): \(message)\(extras)\n".utf8)
        case .json:
            var members: [(String, JSONValue)] = [
                ("time", .string(Self.timestamp())), ("level", .string(level.rawValue)), ("logger", .string(label)),
                ("message", .string(message.description)),
            ]
            members += fields.map { ($0.key, .string($0.value.description)) }
            bytes = JSONValue.object(members).encoded()
            bytes.append(0x0A)
        }
        // One write per line, so lines from different threads never interleave.
        _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    /// `2026-11-28T13:00:43.402Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}
