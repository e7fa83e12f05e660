/// Bearer-token comparison for `--token`, shared by every front that checks a token.
public enum BearerToken {
    /// True if `header` is `Bearer <expected>`. The token comparison takes the same time whatever the first
    /// differing byte, so response times tell nothing about the token.
    public static func matches(_ header: String, expected: String) -> Bool {
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        let given = Array(parts[1].utf8)
        let wanted = Array(expected.utf8)
        var difference = UInt8(given.count == wanted.count ? 0 : 1)
        for index in 0..<wanted.count {
            difference |= wanted[index] ^ (index < given.count ? given[index] : 0)
        }
        return difference == 0
    }
}
