import Glibc

/// Overwrites the API token where other processes of the same user could read it: the original argument and
/// environment blocks, which the kernel serves as /proc/<pid>/cmdline and /proc/<pid>/environ. Commands never get the
/// token in their environment; this keeps them from reading it from their parent too.
enum SecretScrubber {
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
        var entry = environ
        while let variable = entry.pointee {
            if String(cString: variable).hasPrefix("SANDBOX_API_TOKEN=") {
                mask(variable, from: "SANDBOX_API_TOKEN=".utf8.count)
            }
            entry += 1
        }
    }

    /// Replaces the C string's bytes from `offset` on with `*`, keeping its length.
    private static func mask(_ string: UnsafeMutablePointer<CChar>, from offset: Int) {
        let length = strlen(string)
        guard length > offset else { return }
        memset(string + offset, Int32(UInt8(ascii: "*")), length - offset)
    }
}
