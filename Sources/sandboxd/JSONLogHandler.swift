import FoundationEssentials
import Glibc
import Logging
import SandboxService

/// `--log-format json`: one JSON object per line on stderr, with the message, level, time and every metadata field
/// (a request's line carries request_id, method, path, status and duration_ms).
struct JSONLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    private let label: String
    private static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
        file: String, function: String, line: UInt
    ) {
        var fields: [String: String] = [
            "time": Date().formatted(Self.timeFormat), "level": level.rawValue,
            "logger": label, "message": message.description,
        ]
        for (key, value) in metadata.merging(explicit ?? [:], uniquingKeysWith: { $1 }) {
            fields[key] = value.description
        }
        var line = JSONValue.object(fields.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }).encoded()
        line.append(0x0A)
        // One write per line, so lines from different threads never interleave.
        _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}
