import CSandboxd
import Glibc

/// A new pseudo-terminal: the server keeps the master side, the command opens `childPath` as its terminal.
struct PseudoTerminal {
    let master: Int32
    let childPath: String

    /// Opens a master (`posix_openpt`), unlocks its slave and sets the window size.
    init(size: TerminalSize) throws(SpawnError) {
        // Opening /dev/ptmx is what posix_openpt does on Linux.
        let master = try systemCall(failure: { SpawnError.resourcesExhausted("opening a pseudo-terminal", $0.code) }) {
            open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK)
        }
        var name = [CChar](repeating: 0, count: 128)
        do throws(Errno) {
            try systemCall { csandboxd_unlock_terminal(master, &name, name.count) }
        } catch {
            close(master)
            throw .resourcesExhausted("setting up a pseudo-terminal", error.code)
        }
        self.master = master
        childPath = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        Self.resize(master, to: size)
    }

    /// Sets the window size (`TIOCSWINSZ`); the kernel sends SIGWINCH to the terminal's foreground process group.
    static func resize(_ master: Int32, to size: TerminalSize) {
        var window = winsize(ws_row: size.rows, ws_col: size.columns, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(master, UInt(TIOCSWINSZ), &window)
    }
}
