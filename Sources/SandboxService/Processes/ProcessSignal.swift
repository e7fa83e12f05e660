import Glibc

/// Signal names as the processes API shows and accepts them.
enum ProcessSignal {
    /// The signals a client may send to a process group.
    static let sendable: [(name: String, number: Int32)] = [
        ("SIGINT", SIGINT), ("SIGTERM", SIGTERM), ("SIGKILL", SIGKILL), ("SIGHUP", SIGHUP), ("SIGQUIT", SIGQUIT),
        ("SIGUSR1", SIGUSR1), ("SIGUSR2", SIGUSR2),
    ]

    /// Every standard Linux signal, for naming the one that ended a process.
    private static let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
        SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1",
        SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
        SIGSTKFLT: "SIGSTKFLT", SIGCHLD: "SIGCHLD", SIGCONT: "SIGCONT", SIGSTOP: "SIGSTOP", SIGTSTP: "SIGTSTP",
        SIGTTIN: "SIGTTIN", SIGTTOU: "SIGTTOU", SIGURG: "SIGURG", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ",
        SIGVTALRM: "SIGVTALRM", SIGPROF: "SIGPROF", SIGWINCH: "SIGWINCH", SIGPOLL: "SIGIO", SIGPWR: "SIGPWR",
        SIGSYS: "SIGSYS",
    ]

    /// `SIGTERM` for 15; a real-time or unknown signal is `SIG<number>`.
    static func name(of number: Int32) -> String {
        names[number] ?? "SIG\(number)"
    }

    /// The number of a signal a client may send, by its exact name (`SIGINT`); nil for any other text.
    static func number(named name: String) -> Int32? {
        sendable.first { $0.name == name }?.number
    }
}
