#define _GNU_SOURCE
#include "csandboxd.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// The kernel's sigaction, called directly: glibc's wrapper refuses its internal signals (32 and 33), which a parent
// may have ignored all the same.
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

static int kernel_sigaction(int sig, const struct kernel_sigaction *action, struct kernel_sigaction *old) {
    return (int)syscall(SYS_rt_sigaction, sig, action, old, sizeof(uint64_t));
}

// Runs in the vfork child, on the parent's stack and memory: system calls only, no allocation, no locks. Returns
// only on failure, with the errno to report.
static int spawn_child(const csandboxd_spawn_request *r, volatile int *executed) {
    const struct kernel_sigaction dfl = {.handler = SIG_DFL};
    for (int i = 0; i < r->reset_count; i++) kernel_sigaction(r->reset_signals[i], &dfl, NULL);
    // The command's orphans stay in its subtree while it lives (kept across execve), so none escapes its tree.
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) return errno;
    if (r->descriptor_limit.rlim_cur != 0) setrlimit(RLIMIT_NOFILE, &r->descriptor_limit);

    if (r->terminal) {
        if (setsid() < 0) return errno;
        int fd = open(r->terminal, O_RDWR);  // the session leader's first terminal: its controlling terminal
        if (fd < 0) return errno;
        for (int target = 0; target < 3; target++)
            if (fd != target && dup2(fd, target) < 0) return errno;
    } else {
        if (setpgid(0, 0) < 0) return errno;
        const int sources[3] = {r->stdin_fd, r->stdout_fd, r->stderr_fd};
        for (int target = 0; target < 3; target++) {
            if (sources[target] == target) {
                if (fcntl(target, F_SETFD, 0) < 0) return errno;  // keep it across exec
            } else if (dup2(sources[target], target) < 0) {
                return errno;
            }
        }
    }
    if ((r->cwd_fd >= 0 ? fchdir(r->cwd_fd) : chdir(r->cwd)) < 0) return errno;
    if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0) {
        for (int fd = 3; fd < 65536; fd++) close(fd);  // kernels before 5.9
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    int result = ENOENT;
    for (int i = 0; r->candidates[i]; i++) {
        *executed = i;
        execve(r->candidates[i], r->argv, r->envp);
        // As execvp: keep looking past a missing file or a directory we may not search; remember a denial.
        if (errno == EACCES) result = EACCES;
        else if (errno != ENOENT && errno != ENOTDIR) return errno;
    }
    return result;
}

int csandboxd_spawn(const csandboxd_spawn_request *request, pid_t *pid, int *executed) {
    // With every signal blocked no handler of the server can run in the child, which shares its memory.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    volatile int child_error = 0;
    pid_t child = vfork();
    if (child == 0) {
        child_error = spawn_child(request, executed);
        _exit(127);
    }
    int fork_error = child < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (fork_error) return fork_error;
    if (child_error) {
        waitpid(child, NULL, 0);  // may fail if the server's reaper was first
        return child_error;
    }
    *pid = child;
    return 0;
}

int csandboxd_signals_not_default(int *out, int max) {
    int count = 0;
    for (int sig = 1; sig < NSIG && count < max; sig++) {
        struct kernel_sigaction action;
        if (sig == SIGKILL || sig == SIGSTOP || kernel_sigaction(sig, NULL, &action) != 0) continue;
        if (action.handler != SIG_DFL) out[count++] = sig;
    }
    return count;
}

int csandboxd_unlock_terminal(int master, char *name, size_t size) {
    if (grantpt(master) != 0 || unlockpt(master) != 0) return -1;
    int error = ptsname_r(master, name, size);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return 0;
}

void csandboxd_name_thread(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = 0;
    pthread_setname_np(pthread_self(), truncated);
}

int csandboxd_become_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int csandboxd_make_undumpable(void) { return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); }

int csandboxd_pipe(int fds[_Nonnull 2]) { return pipe2(fds, O_CLOEXEC); }

static int termination_fd = -1;

static void forward_termination(int signal, siginfo_t *info, void *context) {
    (void)context;
    int saved = errno;
    csandboxd_termination message = {signal, info->si_code <= 0 ? info->si_pid : 0};
    // One write below PIPE_BUF is atomic; a full pipe drops the signal, and one already waiting does the same work.
    ssize_t written = write(termination_fd, &message, sizeof message);
    (void)written;
    errno = saved;
}

int csandboxd_forward_termination_signals(int fd) {
    termination_fd = fd;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = forward_termination;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGTERM, &action, NULL) != 0) return -1;
    return sigaction(SIGINT, &action, NULL);
}
