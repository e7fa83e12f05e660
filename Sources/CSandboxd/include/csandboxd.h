// What sandboxd cannot do in Swift: the child side of a spawn (after vfork it may make only async-signal-safe system
// calls, on the parent's stack), a signal handler, and calls Swift cannot see: variadic ones (`prctl`, `syscall`) and
// those glibc declares only under _GNU_SOURCE or _XOPEN_SOURCE, which Swift's Glibc module is not built with
// (`pipe2`, `grantpt`, `unlockpt`, `ptsname_r`, `pthread_setname_np`). Each function says why it is here; everything
// else (epoll, signalfd, inotify, `waitid`, resource limits) is called from Swift.
#ifndef CSANDBOXD_H
#define CSANDBOXD_H

#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

// Headers Swift's Glibc module leaves out; Swift calls their functions through this module. `struct epoll_event` is
// packed on x86_64 (12 bytes), and Swift imports it with that layout.
#include <sys/epoll.h>
#include <sys/signalfd.h>

// Every pointer below is non-null unless marked `_Nullable`, so Swift sees non-optional pointers where C needs one.
#pragma clang assume_nonnull begin

/// What `csandboxd_spawn` starts. Every pointer stays owned by the caller.
typedef struct {
    /// Full paths to try in order, as `execvp` would from a PATH search (one entry when the program has a slash);
    /// like `argv` and `envp`, ended by NULL.
    char *_Nullable const *_Nonnull candidates;
    char *_Nullable const *_Nonnull argv;
    char *_Nullable const *_Nonnull envp;
    /// The child's working directory: the open directory `cwd_fd` (`fchdir`), or the path `cwd` when it is -1.
    const char *_Nullable cwd;
    int cwd_fd;
    /// With a terminal path the child leads a new session and opens the terminal as 0, 1 and 2 (it becomes the
    /// controlling terminal); without one it leads a new process group and gets the three descriptors below.
    const char *_Nullable terminal;
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    /// Signals set back to their default action in the child (the ones the server ignores or handles).
    const int *_Nullable reset_signals;
    int reset_count;
    /// The child's descriptor limit (`RLIMIT_NOFILE`); a soft limit of 0 keeps the server's.
    struct rlimit descriptor_limit;
} csandboxd_spawn_request;

/// Starts the program; returns 0, the pid and the index of the candidate executed, or the errno of the step that
/// failed (the child, if any, is reaped by the caller's reaper). Every descriptor from 3 up is closed in the child;
/// its signal mask is empty. The child is a child subreaper (orphans of its descendants are re-parented to it, not to
/// sandboxd, while it lives). In C: the child runs between `vfork` and `execve`, where Swift code must not run.
int csandboxd_spawn(const csandboxd_spawn_request *request, pid_t *pid, int *executed);

/// Writes the signals whose action is not the default (ignored or handled) to `out`; returns how many. In C: it asks
/// the kernel's `rt_sigaction` through the variadic `syscall`, because glibc's `sigaction` refuses its internal
/// signals 32 and 33, which a parent may have ignored all the same.
int csandboxd_signals_not_default(int *out, int max);

/// `grantpt`, `unlockpt` and `ptsname_r` on a new pseudo-terminal master: writes the slave's path to `name`;
/// returns 0, or -1 with errno. In C: glibc declares them only under _XOPEN_SOURCE and _GNU_SOURCE.
int csandboxd_unlock_terminal(int master, char *name, size_t size);

/// `pthread_setname_np` for the calling thread (at most 15 bytes are kept). In C: _GNU_SOURCE only.
void csandboxd_name_thread(const char *name);

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`: orphans of the process's descendants are re-parented to it. Returns 0 or -1.
/// In C: `prctl` is variadic.
int csandboxd_become_child_subreaper(void);

/// `prctl(PR_SET_DUMPABLE, 0)`: processes of the same user can no longer read this one's memory, environment or
/// descriptors through /proc, ptrace or `pidfd_getfd`. Commands are dumpable again after their `execve`. In C:
/// `prctl` is variadic.
int csandboxd_make_undumpable(void);

/// `pipe2(fds, O_CLOEXEC)`: both ends close-on-exec from the start. In C: _GNU_SOURCE only.
int csandboxd_pipe(int fds[_Nonnull 2]);

/// SIGTERM and SIGINT: `csandboxd_forward_termination_signals` installs a handler for both that writes one
/// `csandboxd_termination` to `fd` (a pipe) per signal: the signal and its sender's pid as this process sees it, which
/// is 0 for a sender outside this process's pid namespace (a container runtime, the kubelet) or the kernel (a
/// terminal's Ctrl-C). Returns 0, or -1 with errno. In C: a signal handler may run only async-signal-safe code.
typedef struct {
    int32_t signal;
    int32_t sender;
} csandboxd_termination;
int csandboxd_forward_termination_signals(int fd);

#pragma clang assume_nonnull end

#endif
