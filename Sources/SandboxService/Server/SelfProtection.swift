import CSandboxd

/// Keeps commands, which run as sandboxd's own user, from reading sandboxd.
public enum SelfProtection {
    /// Marks the process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): its /proc files (`mem`, `environ`, `maps`,
    /// `fd`) belong to root from then on, and ptrace and `pidfd_getfd` need `CAP_SYS_PTRACE`, so a process of the
    /// same user can read neither its memory (the token), nor its environment, nor take its descriptors (the
    /// listening socket). Commands are dumpable again after their `execve`. Returns false if the call failed.
    public static func makeUndumpable() -> Bool {
        csandboxd_make_undumpable() == 0
    }
}
