// Time from exec to the first answered `GET /`: spawns a server, then connects and sends `GET /` to 127.0.0.1:PORT in
// a tight loop (a 50 µs pause after each refused attempt) until a `200` status line comes back or the deadline
// passes. Prints one JSON object, then stops the server (SIGTERM, SIGKILL after 5 s) and reaps it.
//
//   launcher PORT DEADLINE_MS CMD [ARGS...]
//
// Build: gcc -O2 -o launcher launcher.c
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// One attempt: 1 when a 200 answer's status line came back, 0 otherwise.
static int try_get(int port, double deadline) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
        static const char request[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if (write(fd, request, sizeof request - 1) == (ssize_t)(sizeof request - 1)) {
            char buf[512];
            size_t have = 0;
            while (have < 12 && now_s() < deadline) {
                ssize_t n = read(fd, buf + have, sizeof buf - have);
                if (n > 0) {
                    have += (size_t)n;
                } else if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
                    continue;
                } else {
                    break;
                }
            }
            ok = have >= 12 && memcmp(buf, "HTTP/1.", 7) == 0 && memcmp(buf + 9, "200", 3) == 0;
        }
    }
    close(fd);
    return ok;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT DEADLINE_MS CMD [ARGS...]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    double deadline_s = atof(argv[2]) / 1000.0;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    double t0 = now_s();
    int rc = posix_spawn(&pid, argv[3], &actions, NULL, &argv[3], environ);
    if (rc != 0) {
        fprintf(stderr, "spawn %s: %s\n", argv[3], strerror(rc));
        return 1;
    }
    double deadline = t0 + deadline_s;
    int attempts = 0, answered = 0;
    double t1 = 0;
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 50000};
    while (now_s() < deadline) {
        attempts++;
        if (try_get(port, deadline)) {
            t1 = now_s();
            answered = 1;
            break;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) { // the server died
            pid = -1;
            break;
        }
        nanosleep(&pause, NULL);
    }
    if (answered)
        printf("{\"ms\":%.4f,\"attempts\":%d}\n", (t1 - t0) * 1e3, attempts);
    else
        printf("{\"ms\":null,\"attempts\":%d,\"error\":\"%s\"}\n", attempts,
               pid < 0 ? "server exited" : "deadline passed");
    fflush(stdout);
    if (pid > 0) {
        kill(pid, SIGTERM);
        double stop_deadline = now_s() + 5;
        int status;
        while (waitpid(pid, &status, WNOHANG) == 0) {
            if (now_s() > stop_deadline) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                break;
            }
            struct timespec ms = {.tv_sec = 0, .tv_nsec = 1000000};
            nanosleep(&ms, NULL);
        }
    }
    return answered ? 0 : 1;
}
