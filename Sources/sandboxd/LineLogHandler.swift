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

    func log(event: LogEvent) {
        let (level, message, explicit) = (event.level, event.message, event.metadata)
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
            Self.appendEscaped(message.description, to: &bytes)
            for (key, value) in fields {
                bytes.append(0x20)
                Self.appendEscaped(key, to: &bytes)
                bytes.append(UInt8(ascii: "="))
                let text = value.description
                // A value with a space, quote or `=` (or none at all) is quoted, so it cannot pass for more fields.
                let quoted =
                    text.isEmpty
                    || text.utf8.contains { $0 == 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "=") }
                if quoted { bytes.append(UInt8(ascii: "\"")) }
                Self.appendEscaped(text, to: &bytes, quotes: quoted)
                if quoted { bytes.append(UInt8(ascii: "\"")) }
            }
            bytes.append(0x0A)
        case .json:
            var members: [(String, JSONValue)] = [
                ("time", .string(Self.timestamp())), ("level", .string(level.rawValue)), ("logger", .string(label)),
                ("message", .string(message.description)),
            ]
            members += fields.map { ($0.key, .string($0.value.description)) }
            bytes = Self.escapingLineBreaks(JSONValue.object(members).encoded())
            bytes.append(0x0A)
        }
        LogOutput.standardError.write(bytes, immediately: level >= .warning)
    }

    /// Appends `text` to a text-format line so that it stays on that line and cannot be taken for another record:
    /// backslashes are doubled, CR, LF and tab become `\r`, `\n`, `\t`, other control characters (C0, DEL) `\xHH`,
    /// and the C1 controls and Unicode's line and paragraph separators `\u{HHHH}`; with `quotes`, `"` becomes `\"`.
    /// Values reach log lines from clients (request paths, libmicrohttpd's messages about their requests), so every
    /// one goes through here.
    static func appendEscaped(_ text: String, to bytes: inout [UInt8], quotes: Bool = false) {
        var text = text
        text.withUTF8 { utf8 in
            // Runs of bytes that need no escape (nearly every value) are appended in one piece.
            var run = 0
            var index = 0
            while index < utf8.count {
                let byte = utf8[index]
                var width = 1
                let escape: [UInt8]
                switch byte {
                case 0x5C: escape = Array(#"\\"#.utf8)
                case 0x22 where quotes: escape = Array(#"\""#.utf8)
                case 0x0A: escape = Array(#"\n"#.utf8)
                case 0x0D: escape = Array(#"\r"#.utf8)
                case 0x09: escape = Array(#"\t"#.utf8)
                case 0..<0x20, 0x7F: escape = Array(#"\x"#.utf8) + hex(UInt32(byte), digits: 2)
                // U+0080–U+009F are C2 80–C2 9F in UTF-8; U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
                case 0xC2 where index + 1 < utf8.count && (0x80...0x9F).contains(utf8[index + 1]):
                    escape = Array(#"\u{"#.utf8) + hex(UInt32(utf8[index + 1]), digits: 4) + [0x7D]
                    width = 2
                case 0xE2 where index + 2 < utf8.count && utf8[index + 1] == 0x80 && utf8[index + 2] & 0xFE == 0xA8:
                    escape = Array(#"\u{"#.utf8) + hex(0x2000 | UInt32(utf8[index + 2] & 0x3F), digits: 4) + [0x7D]
                    width = 3
                default:
                    index += 1
                    continue
                }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[run..<index]))
                bytes += escape
                index += width
                run = index
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[run...]))
        }
    }

    /// JSON allows DEL, the C1 controls and U+2028/U+2029 raw inside strings, but many line readers (Python's
    /// `splitlines`, JavaScript before ES2019) break lines at some of them: a JSON line gets them as `\uHHHH`.
    static func escapingLineBreaks(_ json: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(json.count)
        var index = 0
        while index < json.count {
            let byte = json[index]
            if byte == 0x7F {
                out += Array("\\u007f".utf8)
            } else if byte == 0xC2, index + 1 < json.count, (0x80...0x9F).contains(json[index + 1]) {
                out += Array("\\u00".utf8) + hex(UInt32(json[index + 1]), digits: 2)
                index += 1
            } else if byte == 0xE2, index + 2 < json.count, json[index + 1] == 0x80, json[index + 2] & 0xFE == 0xA8 {
                out += Array("\\u202".utf8) + [json[index + 2] == 0xA8 ? UInt8(ascii: "8") : UInt8(ascii: "9")]
                index += 2
            } else {
                out.append(byte)
            }
            index += 1
        }
        return out
    }

    private static func hex(_ value: UInt32, digits: Int) -> [UInt8] {
        let text = String(value, radix: 16)
        return Array((String(repeating: "0", count: max(0, digits - text.count)) + text).utf8)
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
