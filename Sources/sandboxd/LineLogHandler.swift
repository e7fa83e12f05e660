import Glibc
import Logging
import SandboxService

/// Writes one line per log message to stderr (through `LogOutput`), as text or (`--log-format json`) as a JSON object with every metadata
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
        let all = metadata.isEmpty ? (explicit ?? [:]) : metadata.merging(explicit ?? [:], uniquingKeysWith: { $1 })
        let fields = all.sorted { $0.key < $1.key }
        var bytes: [UInt8]
        switch format {
        case .text:
            bytes = []
            bytes.reserveCapacity(160)
            Self.appendTimestamp(to: &bytes)
            bytes.append(0x20)
            bytes += level.rawValue.utf8
            bytes.append(0x20)
            bytes += label.utf8
            bytes += ": ".utf8
            bytes += message.description.utf8
            for (key, value) in fields {
                bytes.append(0x20)
                bytes += key.utf8
                bytes.append(UInt8(ascii: "="))
                bytes += value.description.utf8
            }
            bytes.append(0x0A)
        case .json:
            var members: [(String, JSONValue)] = [
                ("time", .string(Self.timestamp())), ("level", .string(level.rawValue)), ("logger", .string(label)),
                ("message", .string(message.description)),
            ]
            members += fields.map { ($0.key, .string($0.value.description)) }
            bytes = JSONValue.object(members).encoded()
            bytes.append(0x0A)
        }
        LogOutput.standardError.write(bytes, immediately: level >= .warning)
    }

    /// `2026-11-28T13:00:43.402Z`.
    static func timestamp() -> String {
        var bytes: [UInt8] = []
        appendTimestamp(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    static func appendTimestamp(to bytes: inout [UInt8]) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func digits(_ value: Int32, _ width: Int, then separator: UInt8?) {
            var divisor: Int32 = 1
            for _ in 1..<width { divisor *= 10 }
            var rest = max(0, value)
            while divisor > 0 {
                bytes.append(UInt8(ascii: "0") + UInt8(rest / divisor % 10))
                rest %= divisor
                divisor /= 10
            }
            if let separator { bytes.append(separator) }
        }
        digits(parts.tm_year + 1900, 4, then: UInt8(ascii: "-"))
        digits(parts.tm_mon + 1, 2, then: UInt8(ascii: "-"))
        digits(parts.tm_mday, 2, then: UInt8(ascii: "T"))
        digits(parts.tm_hour, 2, then: UInt8(ascii: ":"))
        digits(parts.tm_min, 2, then: UInt8(ascii: ":"))
        digits(parts.tm_sec, 2, then: UInt8(ascii: "."))
        digits(Int32(now.tv_nsec / 1_000_000), 3, then: UInt8(ascii: "Z"))
    }
}
