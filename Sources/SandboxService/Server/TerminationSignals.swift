import CSandboxd
import Glibc
import Logging

/// Waits for SIGTERM or SIGINT without ignoring or blocking them: an ignored disposition survives exec (commands
/// are started with every disposition reset and an empty mask anyway). Handlers are reset to the default at exec,
/// so installing them is safe.
public enum TerminationSignals {
    nonisolated(unsafe) private static var readEnd: Int32 = -1

    private static let ignore: @convention(c) (Int32) -> Void = { _ in }

    /// One SIGTERM or SIGINT, and who sent it.
    public struct Received: Sendable {
        public var signal: Int32
        /// The sender's pid as this process sees it: 0 when it came from outside this process's pid namespace
        /// (a container runtime, the kubelet) or from the kernel (a terminal's Ctrl-C).
        public var sender: pid_t

        /// Whether to obey it. As a container's PID 1, sandboxd obeys only signals from outside the container:
        /// everything inside it is a command or a command's descendant (they run as sandboxd's user, so the kernel
        /// lets them signal it), and the kernel already drops their SIGKILL and SIGSTOP to a PID 1. Anywhere else a
        /// command could kill sandboxd anyway, and `kill` from a shell must work.
        public func isObeyed(byProcess pid: pid_t = getpid()) -> Bool { pid != 1 || sender == 0 }
    }

    /// Installs the handlers. Call once, early in `main`.
    public static func install() {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        readEnd = fds[0]
        _ = csandboxd_forward_termination_signals(fds[1])
        // A client that goes away must not kill the server; libmicrohttpd already sends with MSG_NOSIGNAL.
        var action = sigaction()
        action.__sigaction_handler.sa_handler = ignore
        sigemptyset(&action.sa_mask)
        sigaction(SIGPIPE, &action, nil)
    }

    /// Blocks until a SIGTERM or SIGINT arrives that `isObeyed`, and returns it; the others are logged (at most once
    /// a second: a command can send them in a loop).
    public static func waitForShutdown(logger: Logger) -> Int32 {
        let throttle = LogThrottle(logger: logger)
        while true {
            let received = wait()
            if received.isObeyed() { return received.signal }
            throttle.warning(
                "ignored-signal",
                "ignored signal \(received.signal) from pid \(received.sender): as PID 1, sandboxd stops only for "
                    + "signals from outside its container")
        }
    }

    /// Blocks until SIGTERM or SIGINT arrives.
    static func wait() -> Received {
        var message = csandboxd_termination()
        let size = MemoryLayout<csandboxd_termination>.size
        guard (try? systemCall { read(readEnd, &message, size) }) == size else {
            return Received(signal: SIGTERM, sender: 0)
        }
        return Received(signal: message.signal, sender: message.sender)
    }
}
