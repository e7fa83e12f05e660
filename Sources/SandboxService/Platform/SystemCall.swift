import Glibc

/// The `errno` of a failed system call, thrown by `systemCall`.
package struct Errno: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The raw value (`ENOENT`, `EAGAIN`, …).
    package let code: Int32

    package init(_ code: Int32) {
        self.code = code
    }

    /// `strerror`'s text for the code.
    package var description: String { String(cString: strerror(code)) }

    /// Lets a `catch` clause name a code: `catch EEXIST { … }`.
    package static func ~= (code: Int32, error: Errno) -> Bool { code == error.code }
}

/// Calls `body`, a system call that returns -1 and sets `errno` when it fails, and returns its result; throws the
/// `errno` of a failure. A call interrupted by a signal (`EINTR`) is made again, unless `retryingInterrupts` is false
/// (`close`, whose descriptor is gone even when it reports `EINTR`). This is the one place that reads `errno` after
/// a call (swift-system's `valueOrErrno`).
@inline(__always) @discardableResult
package func systemCall<Result: FixedWidthInteger>(
    retryingInterrupts: Bool = true, _ body: () -> Result
) throws(Errno) -> Result {
    while true {
        let result = body()
        guard result == -1 else { return result }
        let code = errno
        guard code == EINTR && retryingInterrupts else { throw Errno(code) }
    }
}

/// Calls `body`, a C function that returns NULL and sets `errno` when it fails (`opendir`, `realpath`), and returns
/// its result; throws the `errno` of a failure. A call interrupted by a signal is made again.
@inline(__always)
package func systemCall<Pointer>(_ body: () -> Pointer?) throws(Errno) -> Pointer {
    while true {
        if let result = body() { return result }
        let code = errno
        guard code == EINTR else { throw Errno(code) }
    }
}

/// `systemCall`, with a failure thrown as `failure` makes it: the error a layer reports for it.
@inline(__always) @discardableResult
package func systemCall<Result: FixedWidthInteger, Failure: Error>(
    failure: (Errno) -> Failure, _ body: () -> Result
) throws(Failure) -> Result {
    do {
        return try systemCall(body)
    } catch {
        throw failure(error)
    }
}
