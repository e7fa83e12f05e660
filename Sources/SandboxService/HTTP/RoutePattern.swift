/// A route's path, written as the OpenAPI document writes it: literal text, `{name}` for one non-empty segment (no
/// slash), and `{name...}` as the last segment for the rest of the path, slashes included and possibly empty.
/// `/v1/processes/{id}/stdin` matches `/v1/processes/k3x9/stdin`; `/download/{path...}` matches `/download/a/b.txt`
/// and `/download/`.
///
/// Paths are compared as UTF-8 bytes: as Characters, a rest that starts with a combining mark (`/exists/\u{301}x`)
/// would fuse with the slash before it and miss.
public struct RoutePattern: Sendable, Equatable, ExpressibleByStringLiteral {
    enum Piece: Sendable, Equatable {
        case literal([UInt8])
        case segment(String)
        case rest(String)
    }

    let pieces: [Piece]
    /// The pattern as the OpenAPI document and the metrics labels write it: `{path...}` as `{path}`.
    public let template: String

    /// Parses `text`; a capture that is not a whole segment, or a rest that is not last, is a programming error.
    public init(_ text: String) {
        var pieces: [Piece] = []
        var template = ""
        var literal: [UInt8] = []
        for (index, segment) in text.split(separator: "/", omittingEmptySubsequences: false).enumerated() {
            if case .rest? = pieces.last { preconditionFailure("\(text): {name...} must be the last segment") }
            if index > 0 {
                literal.append(UInt8(ascii: "/"))
                template += "/"
            }
            guard segment.hasPrefix("{") && segment.hasSuffix("}") else {
                precondition(!segment.contains("{") && !segment.contains("}"), "\(text): a capture is a whole segment")
                literal += Array(segment.utf8)
                template += segment
                continue
            }
            if !literal.isEmpty { pieces.append(.literal(literal)) }
            literal = []
            let name = segment.dropFirst().dropLast()
            let rest = name.hasSuffix("...")
            let bare = String(rest ? name.dropLast(3) : name)
            pieces.append(rest ? .rest(bare) : .segment(bare))
            template += "{\(bare)}"
        }
        if !literal.isEmpty { pieces.append(.literal(literal)) }
        self.pieces = pieces
        self.template = template
    }

    public init(stringLiteral value: String) {
        self.init(value)
    }

    /// The captures if `path` (percent-decoded) matches, else nil.
    func match(_ path: String) -> PathParameters? {
        let bytes = path.utf8
        var index = bytes.startIndex
        var captures: [(String, String)] = []
        for piece in pieces {
            switch piece {
            case .literal(let text):
                guard bytes[index...].starts(with: text) else { return nil }
                index = bytes.index(index, offsetBy: text.count)
            case .segment(let name):
                let end = bytes[index...].firstIndex(of: UInt8(ascii: "/")) ?? bytes.endIndex
                guard end > index else { return nil }
                captures.append((name, String(decoding: bytes[index..<end], as: UTF8.self)))
                index = end
            case .rest(let name):
                captures.append((name, String(decoding: bytes[index...], as: UTF8.self)))
                index = bytes.endIndex
            }
        }
        return index == bytes.endIndex ? PathParameters(captures) : nil
    }
}

/// What a route's pattern captured from the request path, percent-decoded once (as the path was).
public struct PathParameters: Sendable, Equatable {
    private var captures: [(name: String, value: String)]

    public init(_ captures: [(String, String)] = []) {
        self.captures = captures.map { (name: $0.0, value: $0.1) }
    }

    /// The value captured as `{name}` or `{name...}`; empty when the pattern has no such capture.
    public subscript(name: String) -> String {
        captures.first { $0.name == name }?.value ?? ""
    }

    public static func == (lhs: PathParameters, rhs: PathParameters) -> Bool {
        lhs.captures.map(\.name) == rhs.captures.map(\.name) && lhs.captures.map(\.value) == rhs.captures.map(\.value)
    }
}
