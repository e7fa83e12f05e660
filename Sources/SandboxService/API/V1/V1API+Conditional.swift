import Glibc

extension V1API {
    /// The validators of one version of a file.
    struct Validators: Equatable {
        /// Strong: size and modification time to the nanosecond. A PUT replaces the file by rename, so its content
        /// changes only with a new mtime; a same-size rewrite within one nanosecond is not told apart.
        let etag: String
        /// Modification time in whole seconds, as `Last-Modified` carries it.
        let lastModified: Int64

        init(_ status: FileTree.Status) {
            let nanoseconds = status.modifiedSeconds &* 1_000_000_000 &+ status.modifiedNanoseconds
            etag = "\"\(String(nanoseconds, radix: 16))-\(String(status.size, radix: 16))\""
            lastModified = status.modifiedSeconds
        }
    }

    /// How a GET or HEAD of a file is answered once its conditional headers (RFC 9110 §13.2.2) and `Range` are read.
    enum FileAnswer: Equatable {
        case whole
        case partial(offset: UInt64, length: UInt64)
        case notModified
        case preconditionFailed
        case unsatisfiable
    }

    /// Evaluates `If-Match`, `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since`, `If-Range` and `Range`
    /// in the order RFC 9110 §13.2.2 gives. Unparseable dates are ignored, as the RFC requires.
    static func answer(headers fields: HeaderFields, validators: Validators, size: UInt64) -> FileAnswer {
        // An empty header counts as absent, as Go's net/http (which the v1 API mirrors) treats it.
        let headers = { (name: String) in fields[name].flatMap { $0.trimmingWhitespace().isEmpty ? nil : $0 } }
        if let ifMatch = headers("if-match") {
            guard EntityTags(ifMatch).matches(validators.etag, weak: false) else { return .preconditionFailed }
        } else if let since = headers("if-unmodified-since").flatMap(HTTPDate.parse), validators.lastModified > since {
            return .preconditionFailed
        }
        if let ifNoneMatch = headers("if-none-match") {
            if EntityTags(ifNoneMatch).matches(validators.etag, weak: true) { return .notModified }
        } else if let since = headers("if-modified-since").flatMap(HTTPDate.parse), validators.lastModified <= since {
            return .notModified
        }
        guard let range = headers("range") else { return .whole }
        if let ifRange = headers("if-range") {
            let trimmed = String(trimmed(Substring(ifRange)))
            let current =
                trimmed.hasPrefix("\"") || trimmed.hasPrefix("W/")
                ? EntityTags(trimmed).matches(validators.etag, weak: false)
                : HTTPDate.parse(trimmed) == validators.lastModified
            if !current { return .whole }
        }
        return switch RangeRequest(header: range, size: size) {
        case .whole: .whole
        case .partial(let offset, let length): .partial(offset: offset, length: length)
        case .unsatisfiable: .unsatisfiable
        }
    }

    /// The answer to a GET or HEAD of a regular file open as `fd`; the response owns `fd` or it is closed here.
    static func fileResponse(fd: Int32, status: FileTree.Status, headers: HeaderFields) -> HTTPResponse {
        let validators = Validators(status)
        let cache = [("ETag", validators.etag), ("Last-Modified", HTTPDate.imfFixdate(validators.lastModified))]
        let answer = answer(headers: headers, validators: validators, size: status.size)
        let representation = [("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes")] + cache
        switch answer {
        case .whole:
            return HTTPResponse(status: 200, headers: representation, body: .file(fd: fd, size: status.size))
        case .partial(let offset, let length):
            let range = "bytes \(offset)-\(offset + length - 1)/\(status.size)"
            return HTTPResponse(
                status: 206, headers: representation + [("Content-Range", range)],
                body: .file(fd: fd, offset: offset, size: length))
        case .notModified:
            close(fd)
            return HTTPResponse(status: 304, headers: cache, body: .bytes([]))
        case .preconditionFailed:
            close(fd)
            return V1Error.answer(
                .failedPrecondition, "the file does not match the request's preconditions", headers: cache
            )
            .response
        case .unsatisfiable:
            close(fd)
            return V1Error.answer(
                .outOfRange, "the requested range is not satisfiable (the file has \(status.size) bytes)",
                headers: [("Content-Range", "bytes */\(status.size)")] + cache
            ).response
        }
    }

    /// An `If-Match` / `If-None-Match` / `If-Range` value: `*` or a list of entity tags (RFC 9110 §8.8.3).
    struct EntityTags: Equatable {
        var any = false
        var tags: [(weak: Bool, opaque: Substring)] = []

        static func == (lhs: EntityTags, rhs: EntityTags) -> Bool {
            lhs.any == rhs.any && lhs.tags.map(\.weak) == rhs.tags.map(\.weak)
                && lhs.tags.map(\.opaque) == rhs.tags.map(\.opaque)
        }

        /// Reads tags up to the first malformed one. Tags are quoted and may contain commas, so the list is scanned
        /// rather than split.
        init(_ text: String) {
            var rest = Substring(text)
            while true {
                rest = rest.drop { $0 == " " || $0 == "\t" || $0 == "," }
                if rest.isEmpty { return }
                if rest.first == "*" {
                    any = true
                    rest = rest.dropFirst()
                    continue
                }
                let weak = rest.hasPrefix("W/")
                if weak { rest = rest.dropFirst(2) }
                guard rest.first == "\"", let close = rest.dropFirst().firstIndex(of: "\"") else { return }
                tags.append((weak, rest[rest.startIndex...close]))
                rest = rest[rest.index(after: close)...]
            }
        }

        /// Whether `etag` (ours, strong) is listed: weak comparison ignores `W/`; strong comparison needs both tags
        /// strong.
        func matches(_ etag: String, weak: Bool) -> Bool {
            any || tags.contains { (weak || !$0.weak) && $0.opaque == etag }
        }
    }
}
