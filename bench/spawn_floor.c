// The machine's floor for running a command: posix_spawnp + waitpid of a command with its stdout on a pipe read to
// EOF, the work every POST /execute does at the least. Prints one JSON object.
//
//   spawn_floor loop WORKERS SECONDS MAX_SPAWNS CMD [ARGS...]
//       WORKERS threads each spawn CMD, read its stdout to EOF and wait for it, back to back, until SECONDS have
//       passed or MAX_SPAWNS spawns were done in all: spawns/s and per-spawn latency p50/p99.
//   spawn_floor burst COUNT TIMEOUT_SECONDS CMD [ARGS...]
//       spawns COUNT copies of CMD at once (stdout on a pipe each), reads every pipe to EOF with poll and waits for
//       every child: the total time (the floor for COUNT concurrent `sleep 1` executes).
//
// Build: gcc -O2 -pthread -o spawn_floor spawn_floor.c
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char **command;
static double deadline;
static long max_spawns;
static long spawned; // guarded by counter_lock
static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;

#define MAX_SAMPLES 2000000

typedef struct {
    double *latencies;
    long count;
    long errors;
} worker_t;

// Spawns `command` with stdout on a new pipe; returns the pid (or -1) and the read end in *out.
static pid_t spawn_with_pipe(int *out) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, command[0], &actions, NULL, command, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        errno = rc;
        return -1;
    }
    *out = fds[0];
    return pid;
}

static int take_ticket(void) {
    pthread_mutex_lock(&counter_lock);
    int ok = spawned < max_spawns;
    if (ok) spawned++;
    pthread_mutex_unlock(&counter_lock);
    return ok;
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    char buf[65536];
    while (now_s() < deadline && w->count < MAX_SAMPLES && take_ticket()) {
        double t0 = now_s();
        int fd;
        pid_t pid = spawn_with_pipe(&fd);
        if (pid < 0) {
            w->errors++;
            continue;
        }
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n > 0) continue;
            if (n < 0 && errno == EINTR) continue;
            break;
        }
        close(fd);
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) w->errors++;
        w->latencies[w->count++] = now_s() - t0;
    }
    return NULL;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *sorted, long n, double p) {
    if (n == 0) return 0;
    long i = (long)(p / 100.0 * (double)(n - 1) + 0.5);
    if (i >= n) i = n - 1;
    return sorted[i];
}

static int run_loop(int workers, double seconds, long limit) {
    max_spawns = limit;
    worker_t *ws = calloc((size_t)workers, sizeof *ws);
    pthread_t *threads = calloc((size_t)workers, sizeof *threads);
    for (int i = 0; i < workers; i++) ws[i].latencies = malloc(sizeof(double) * MAX_SAMPLES);
    double t0 = now_s();
    deadline = t0 + seconds;
    for (int i = 0; i < workers; i++) pthread_create(&threads[i], NULL, worker_main, &ws[i]);
    for (int i = 0; i < workers; i++) pthread_join(threads[i], NULL);
    double elapsed = now_s() - t0;
    long total = 0, errors = 0;
    for (int i = 0; i < workers; i++) total += ws[i].count, errors += ws[i].errors;
    double *all = malloc(sizeof(double) * (size_t)(total ? total : 1));
    long k = 0;
    for (int i = 0; i < workers; i++)
        for (long j = 0; j < ws[i].count; j++) all[k++] = ws[i].latencies[j];
    qsort(all, (size_t)total, sizeof(double), compare_doubles);
    printf("{\"mode\":\"loop\",\"workers\":%d,\"spawns\":%ld,\"errors\":%ld,\"seconds\":%.6f,"
           "\"spawns_per_s\":%.1f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f}\n",
           workers, total, errors, elapsed, total / elapsed, percentile(all, total, 50) * 1e3,
           percentile(all, total, 99) * 1e3, total ? all[total - 1] * 1e3 : 0.0);
    return total > 0 ? 0 : 1;
}

static int run_burst(int count, double timeout) {
    pid_t *pids = calloc((size_t)count, sizeof *pids);
    struct pollfd *pfds = calloc((size_t)count, sizeof *pfds);
    int *alive = calloc((size_t)count, sizeof *alive);
    long errors = 0;
    double t0 = now_s();
    int started = 0;
    for (int i = 0; i < count; i++) {
        int fd;
        pid_t pid = spawn_with_pipe(&fd);
        if (pid < 0) {
            errors++;
            pfds[i].fd = -1;
            continue;
        }
        pids[i] = pid;
        pfds[i].fd = fd;
        pfds[i].events = POLLIN;
        alive[i] = 1;
        started++;
    }
    double spawned_at = now_s();
    int open_pipes = started;
    char buf[65536];
    while (open_pipes > 0) {
        double left = t0 + timeout - now_s();
        if (left <= 0) break;
        int n = poll(pfds, (nfds_t)count, (int)(left * 1000) + 1);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < count && n > 0; i++) {
            if (pfds[i].fd < 0 || pfds[i].revents == 0) continue;
            ssize_t r = read(pfds[i].fd, buf, sizeof buf);
            if (r <= 0 && !(r < 0 && errno == EINTR)) {
                close(pfds[i].fd);
                pfds[i].fd = -1;
                open_pipes--;
            }
        }
    }
    for (int i = 0; i < count; i++) {
        if (pfds[i].fd >= 0) { // timed out
            kill(pids[i], SIGKILL);
            close(pfds[i].fd);
            errors++;
        }
        if (alive[i]) {
            int status;
            while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR) {}
        }
    }
    double elapsed = now_s() - t0;
    printf("{\"mode\":\"burst\",\"count\":%d,\"started\":%d,\"errors\":%ld,\"spawn_seconds\":%.6f,"
           "\"seconds\":%.6f}\n",
           count, started, errors, spawned_at - t0, elapsed);
    return errors == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 6 && strcmp(argv[1], "loop") == 0) {
        command = &argv[5];
        return run_loop(atoi(argv[2]), atof(argv[3]), atol(argv[4]));
    }
    if (argc >= 5 && strcmp(argv[1], "burst") == 0) {
        command = &argv[4];
        return run_burst(atoi(argv[2]), atof(argv[3]));
    }
    fprintf(stderr,
            "usage: %s loop WORKERS SECONDS MAX_SPAWNS CMD [ARGS...]\n"
            "       %s burst COUNT TIMEOUT_SECONDS CMD [ARGS...]\n",
            argv[0], argv[0]);
    return 2;
}
