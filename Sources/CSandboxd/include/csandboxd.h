// Linux and glibc calls sandboxd needs that Swift's Glibc module does not offer (or offers only as C variadics):
// a vfork-based spawn (the child runs only async-signal-safe system calls before exec), epoll, signalfd, inotify,
// pseudo-terminal setup, thread names, the child-subreaper and dumpable flags, the descriptor limit and `waitid`.
#ifndef CSANDBOXD_H
#define CSANDBOXD_H

#include <stdint.h>
#include <sys/types.h>

// Swift's Glibc module does not include <sys/epoll.h>: Swift calls epoll_create1, epoll_ctl and epoll_wait through
// this module. `struct epoll_event` is packed on x86_64 (12 bytes); Swift imports it with that layout.
#include <sys/epoll.h>

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
} csandboxd_spawn_request;

/// Starts the program; returns 0, the pid and the index of the candidate executed, or the errno of the step that
/// failed (the child, if any, is reaped by the caller's reaper). Every descriptor from 3 up is closed in the child; its signal mask is empty. The child is
/// a child subreaper (orphans of its descendants are re-parented to it, not to sandboxd, while it lives).
int csandboxd_spawn(const csandboxd_spawn_request *request, pid_t *pid, int *executed);

/// Writes the signals whose action is not the default (ignored or handled) to `out`; returns how many.
int csandboxd_signals_not_default(int *out, int max);

/// `grantpt`, `unlockpt` and `ptsname_r` on a new pseudo-terminal master: writes the slave's path to `name`;
/// returns 0, or -1 with errno.
int csandboxd_unlock_terminal(int master, char *name, size_t size);

/// `pthread_setname_np` for the calling thread (at most 15 bytes are kept).
void csandboxd_name_thread(const char *name);

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`: orphans of the process's descendants are re-parented to it. Returns 0 or -1.
int csandboxd_become_child_subreaper(void);

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and writes both (after the change) to `soft` and `hard`.
/// Commands spawned afterwards start with the soft limit as it was (programs that use `select` or close every
/// possible descriptor expect the usual 1024). Returns 0, or -1 with errno. Call once, before any spawn.
int csandboxd_raise_descriptor_limit(uint64_t *soft, uint64_t *hard);

/// `prctl(PR_SET_DUMPABLE, 0)`: processes of the same user can no longer read this one's memory, environment or
/// descriptors through /proc, ptrace or `pidfd_getfd`. Commands are dumpable again after their `execve`.
int csandboxd_make_undumpable(void);

/// `waitid(P_ALL, …, WEXITED | WNOWAIT)`: the pid of a child that has exited, left unreaped (its zombie keeps the pid
/// and process group id from being reused), or 0 if none has (only without `block`), or -1 with errno.
pid_t csandboxd_exited_child(int block);

/// `pipe2(fds, O_CLOEXEC)`: both ends close-on-exec from the start.
int csandboxd_pipe(int fds[_Nonnull 2]);

/// SIGCHLD: `csandboxd_block_sigchld` blocks it in the calling thread (and so in the threads it starts later);
/// `csandboxd_sigchld_fd` opens a non-blocking signalfd for it, and `csandboxd_drain_signalfd` reads everything pending
/// there.
void csandboxd_block_sigchld(void);
int csandboxd_sigchld_fd(void);
void csandboxd_drain_signalfd(int fd);

/// SIGTERM and SIGINT: `csandboxd_forward_termination_signals` installs a handler for both that writes one
/// `csandboxd_termination` to `fd` (a pipe) per signal: the signal and its sender's pid as this process sees it, which
/// is 0 for a sender outside this process's pid namespace (a container runtime, the kubelet) or the kernel (a
/// terminal's Ctrl-C). Returns 0, or -1 with errno.
typedef struct {
    int32_t signal;
    int32_t sender;
} csandboxd_termination;
int csandboxd_forward_termination_signals(int fd);

/// inotify, to learn when a directory's entries change: `csandboxd_watch_directories` starts watching the given
/// directories (an entry of `watched` is set to 1 for each one that could be watched) and returns the descriptor
/// (non-blocking) or -1; `csandboxd_directory_events` reads what is pending and returns 0 (nothing), 1 (entries
/// changed) or 2 (a watch ended: a directory was removed or moved).
int csandboxd_watch_directories(char *_Nullable const *_Nonnull paths, int count, int *watched);
int csandboxd_directory_events(int fd);

#pragma clang assume_nonnull end

#endif
