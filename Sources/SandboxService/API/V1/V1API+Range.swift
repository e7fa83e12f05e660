extension V1API {
    /// A `Range` header (RFC 9110 §14.2) as sandboxd answers it: one byte range, or the whole file.
    enum RangeRequest: Equatable {
        /// No single usable range (none, malformed, another unit, or several ranges): the whole file, 200.
        case whole
        /// Bytes `offset ..< offset + length`, 206.
        case partial(offset: UInt64, length: UInt64)
        /// The range starts past the end (or asks for the last 0 bytes): 416.
        case unsatisfiable

        /// Reads `header` against a file of `size` bytes. `bytes=a-b`, `bytes=a-` and `bytes=-n` are honoured; a
        /// last position past the end is clamped to it.
        init(header: String?, size: UInt64) {
            guard let header, let equals = header.firstIndex(of: "="),
                header[..<equals].lowercased() == "bytes"
            else {
                self = .whole
                return
            }
            // `1#range-spec`: list elements are comma-separated with optional whitespace; empty ones are allowed.
            let specs = header[header.index(after: equals)...].split(separator: ",")
                .map(V1API.trimmed).filter { !$0.isEmpty }
            guard specs.count == 1, let dash = specs[0].firstIndex(of: "-") else {
                self = .whole
                return
            }
            let first = specs[0][..<dash]
            let last = specs[0][specs[0].index(after: dash)...]
            if first.isEmpty {
                guard let count = Self.number(last) else {
                    self = .whole
                    return
                }
                let length = min(count, size)
                self = length == 0 ? .unsatisfiable : .partial(offset: size - length, length: length)
                return
            }
            guard let start = Self.number(first) else {
                self = .whole
                return
            }
            var end = size == 0 ? 0 : size - 1
            if !last.isEmpty {
                guard let requested = Self.number(last), requested >= start else {
                    self = .whole
                    return
                }
                end = min(end, requested)
            }
            self = start >= size ? .unsatisfiable : .partial(offset: start, length: end - start + 1)
        }

        /// A run of ASCII digits; nil for anything else or an overflow.
        private static func number(_ text: Substring) -> UInt64? {
            guard !text.isEmpty, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
            else { return nil }
            return UInt64(text)
        }
    }

    /// Without HTTP's optional whitespace (spaces and tabs) at either end.
    static func trimmed(_ text: Substring) -> Substring {
        let isContent: (Character) -> Bool = { $0 != " " && $0 != "\t" }
        guard let start = text.firstIndex(where: isContent), let end = text.lastIndex(where: isContent) else {
            return text[text.endIndex...]
        }
        return text[start...end]
    }
}
