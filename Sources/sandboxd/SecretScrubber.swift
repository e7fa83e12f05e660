import Glibc
import SandboxService

/// Overwrites the API token where other processes of the same user could read it: the original argument and
/// environment blocks, which the kernel serves as /proc/<pid>/cmdline and /proc/<pid>/environ (cmdline is readable by
/// anyone, even when sandboxd is not dumpable), and removes `SANDBOX_API_TOKEN` from the environment. Commands never
/// get the token in their environment; this keeps them from reading it from their parent too.
enum SecretScrubber {
    static let variable = "SANDBOX_API_TOKEN"

    /// Masks every argument that is `token` or `--token=<token>`.
    static func scrub(token: String) {
        guard !token.isEmpty else { return }
        let arguments = CommandLine.unsafeArgv
        for index in 1..<Int(CommandLine.argc) {
            guard let argument = arguments[index] else { continue }
            let text = String(cString: argument)
            if text == token {
                mask(argument, from: 0)
            } else if text.hasPrefix("--token=") {
                mask(argument, from: "--token=".utf8.count)
            }
        }
    }

    /// Masks the value of `SANDBOX_API_TOKEN` in the original environment block and removes the variable.
    static func clearEnvironmentToken() {
        var entry = environ
        while let variable = entry.pointee {
            if String(cString: variable).hasPrefix(Self.variable + "=") {
                mask(variable, from: Self.variable.utf8.count + 1)
            }
            entry += 1
        }
        unsetenv(Self.variable)
    }

    /// Reads a token file once: its content without one trailing newline (`\n` or `\r\n`). nil if it cannot be
    /// read; at most 64 KiB are read.
    static func readTokenFile(_ path: String) -> String? {
        guard let fd = try? systemCall({ open(path, O_RDONLY | O_CLOEXEC) }) else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 64 << 10 {
            guard let count = try? systemCall({ chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } })
            else { return nil }
            if count == 0 { break }
            bytes += chunk[..<count]
        }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Replaces the C string's bytes from `offset` on with `*`, keeping its length.
    private static func mask(_ string: UnsafeMutablePointer<CChar>, from offset: Int) {
        let length = strlen(string)
        guard length > offset else { return }
        memset(string + offset, Int32(UInt8(ascii: "*")), length - offset)
    }
}
