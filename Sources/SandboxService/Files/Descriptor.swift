import Glibc

/// An open file descriptor, closed when the last reference to it goes away. The Files layer hands these out so that
/// a directory it resolved stays that directory while it is used, whatever is renamed or swapped meanwhile.
public final class Descriptor: Sendable {
    /// The descriptor number, valid while this object lives.
    public let rawValue: Int32

    /// Takes ownership of `rawValue`.
    init(_ rawValue: Int32) {
        self.rawValue = rawValue
    }

    deinit {
        close(rawValue)
    }
}

/// Glibc's module does not export `O_PATH` (it is behind `_GNU_SOURCE`); this is glibc's own value for the
/// architecture.
let O_PATH = __O_PATH

/// Calls `body` with `name` as a NUL-terminated C string; callers have rejected NUL bytes.
func withCPath<R>(_ name: some Collection<UInt8>, _ body: (UnsafePointer<CChar>) -> R) -> R {
    var bytes = Array(name)
    bytes.append(0)
    return bytes.withUnsafeBufferPointer { buffer in
        buffer.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) }
    }
}
