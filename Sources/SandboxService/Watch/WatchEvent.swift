/// One change under a watched directory, as every front reports it.
public struct WatchEvent: Equatable, Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        /// Something appeared: created, or moved in from outside the watch.
        case create
        /// A file's contents changed.
        case write
        /// Something disappeared: removed, or moved out of the watch.
        case remove
        /// Something moved within the watch: `path` is where it is now, `oldPath` where it was.
        case rename
        /// Permissions, ownership or another attribute changed.
        case chmod
        /// The watch ended; `message` says why. Always the last event.
        case error
    }

    public var kind: Kind
    /// Relative to the sandbox root, without a leading slash; empty for an `error`.
    public var path: String
    /// For a `rename`, where it was, relative to the sandbox root; empty otherwise.
    public var oldPath: String
    /// For an `error`, why the watch ended; empty otherwise.
    public var message: String

    public init(_ kind: Kind, path: String, oldPath: String = "", message: String = "") {
        self.kind = kind
        self.path = path
        self.oldPath = oldPath
        self.message = message
    }

    static func error(_ message: String) -> WatchEvent {
        WatchEvent(.error, path: "", message: message)
    }

    /// What the event costs in a watch's queue: its text and a fixed overhead.
    var cost: Int { path.utf8.count + oldPath.utf8.count + message.utf8.count + 64 }
}
