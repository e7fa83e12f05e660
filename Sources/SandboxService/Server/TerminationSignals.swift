import Glibc

/// Waits for SIGTERM or SIGINT without ignoring or blocking them: an ignored disposition survives exec (commands
/// are started with every disposition reset and an empty mask anyway). Handlers are reset to the default at exec,
/// so installing them is safe.
public enum TerminationSignals {
    /// Write end of the self-pipe; a constant-initialized global, so the handler touches no lazy initializer.
    nonisolated(unsafe) private static var writeEnd: Int32 = -1
    nonisolated(unsafe) private static var readEnd: Int32 = -1

    private static let forward: @convention(c) (Int32) -> Void = { signal in
        var byte = UInt8(truncatingIfNeeded: signal)
        _ = write(TerminationSignals.writeEnd, &byte, 1)
    }

    private static let ignore: @convention(c) (Int32) -> Void = { _ in }

    /// Installs the handlers. Call once, early in `main`.
    public static func install() {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        readEnd = fds[0]
        writeEnd = fds[1]
        handle(SIGTERM, with: forward)
        handle(SIGINT, with: forward)
        // A client that goes away must not kill the server; libmicrohttpd already sends with MSG_NOSIGNAL.
        handle(SIGPIPE, with: ignore)
    }

    /// Blocks until SIGTERM or SIGINT arrives; returns the signal number.
    public static func wait() -> Int32 {
        var byte: UInt8 = 0
        while true {
            let count = read(readEnd, &byte, 1)
            if count == 1 { return Int32(byte) }
            if count < 0 && errno == EINTR { continue }
            return SIGTERM
        }
    }

    private static func handle(_ signal: Int32, with handler: @convention(c) (Int32) -> Void) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = handler
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        sigaction(signal, &action, nil)
    }
}
