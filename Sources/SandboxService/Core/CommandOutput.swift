/// Where a collected run (`Sandbox.run(_:collecting:done:)`) keeps a command's output as it arrives. Each front keeps
/// it as its answer needs it, within a bound: raw bytes (`CollectedOutput`), or already escaped as a JSON answer.
public protocol CommandOutput: Sendable {
    mutating func append(_ bytes: [UInt8], from channel: OutputChannel)
}

/// A command's output as bytes: up to `limit` of each stream (the command keeps running and its pipes keep being
/// drained past it); a cut is marked at the end, as `/execute` marks it.
public struct CollectedOutput: CommandOutput {
    public let limit: Int
    private var kept: (stdout: [UInt8], stderr: [UInt8]) = ([], [])
    private var cut: (stdout: Bool, stderr: Bool) = (false, false)

    public init(limit: Int) {
        self.limit = limit
    }

    public mutating func append(_ bytes: [UInt8], from channel: OutputChannel) {
        switch channel {
        case .stdout: Self.append(bytes, to: &kept.stdout, cut: &cut.stdout, limit: limit)
        case .stderr: Self.append(bytes, to: &kept.stderr, cut: &cut.stderr, limit: limit)
        }
    }

    /// What was kept of `channel`, with a marker line where it was cut.
    public func bytes(of channel: OutputChannel) -> [UInt8] {
        var bytes = channel == .stdout ? kept.stdout : kept.stderr
        guard channel == .stdout ? cut.stdout : cut.stderr else { return bytes }
        if bytes.last != 0x0A { bytes.append(0x0A) }
        return bytes + Array("[output truncated: more than \(limit) bytes]\n".utf8)
    }

    private static func append(_ bytes: [UInt8], to kept: inout [UInt8], cut: inout Bool, limit: Int) {
        guard !cut else { return }
        if kept.count + bytes.count > limit {
            kept += bytes.prefix(limit - kept.count)
            cut = true
        } else {
            kept += bytes
        }
    }
}
