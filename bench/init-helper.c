/* Helper for bench/init.sh: the services and the drivers that measure an init.
 *
 *   init-helper orphans N             service: make N double-forked orphans, then wait
 *                                     until every one of them has been reaped (only PID 1
 *                                     and this process left in /proc); exit 0.
 *   init-helper orphan-steps N        service: make N double-forked orphans one at a time,
 *                                     each reaped by the init before the next is made (one
 *                                     wakeup of the init each); exit 0.
 *   init-helper sigchild FIFO         service: write CLOCK_MONOTONIC (ns, 8 bytes) to FIFO
 *                                     from its SIGUSR1 handler; exit 0 on SIGTERM.
 *   init-helper siglat N INIT...      driver: run INIT... sigchild FIFO in a new PID
 *                                     namespace, send N SIGUSR1 to the init, print the
 *                                     latencies kill() -> child's handler (us), one a line.
 *   init-helper shutdown N INIT...    driver: N times, start INIT... sleep 1000 in a new
 *                                     PID namespace, SIGTERM the init, print the time
 *                                     until unshare has exited (us), one a line.
 *   init-helper settle                service: exit 0 (once SETTLE_PATH exists).
 *   init-helper slow-stop MS          service: on SIGTERM, take MS ms to stop, exit 0.
 *
 * STOP_MS (optional, shutdown driver): the service is `init-helper slow-stop STOP_MS`
 * (a service that takes its time, as real ones do) instead of `sleep 1000`.
 *
 * SETTLE_PATH (optional, for every mode): the services and the shutdown driver wait
 * until that path exists before they start (supd's socket: see settle()).
 *
 * INIT... is the init's command line up to and including its "--" (if it takes one);
 * the driver appends the service. Build: gcc -O2 -o init-helper init-helper.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* With SETTLE_PATH set (supd's socket), wait until it exists: an init whose second
 * thread binds a socket has settled only then, and a run that ended before the bind
 * would count fewer instructions than one that did not (the bind lands in one run of
 * a pair and not in the other). */
static void settle(void) {
    const char *path = getenv("SETTLE_PATH");
    if (!path || !*path) return;
    while (access(path, F_OK) != 0) usleep(1000);
}

/* ---- orphans ---- */

static int others_left(void) {
    DIR *dir = opendir("/proc");
    if (!dir) die("opendir /proc");
    int left = 0, self = getpid();
    struct dirent *e;
    while ((e = readdir(dir))) {
        int pid = atoi(e->d_name);
        if (pid > 1 && pid != self) left++;
    }
    closedir(dir);
    return left;
}

static int orphans(int n) {
    for (int i = 0; i < n; i++) {
        pid_t child = fork();
        if (child < 0) die("fork");
        if (child == 0) {
            /* Both the child and the grandchild _exit at once; the grandchild, orphaned,
             * is re-parented to the init, which must reap it. */
            if (fork() < 0) _exit(1);
            _exit(0);
        }
        waitpid(child, NULL, 0);
        /* the grandchild exits at once; its zombie is the init's to reap */
    }
    while (others_left() > 0) usleep(200);
    return 0;
}

/* One orphan at a time: the grandchild's pid comes back through a pipe, and the next
 * orphan is made once kill(pid, 0) says it is gone (a zombie still answers kill). */
static int orphan_steps(int n) {
    settle();
    for (int i = 0; i < n; i++) {
        int fds[2];
        if (pipe(fds) < 0) die("pipe");
        pid_t child = fork();
        if (child < 0) die("fork");
        if (child == 0) {
            pid_t grandchild = fork();
            if (grandchild == 0) _exit(0);
            (void)!write(fds[1], &grandchild, sizeof grandchild);
            _exit(0);
        }
        pid_t grandchild = 0;
        if (read(fds[0], &grandchild, sizeof grandchild) != sizeof grandchild) die("read");
        close(fds[0]);
        close(fds[1]);
        waitpid(child, NULL, 0);
        while (grandchild > 0 && kill(grandchild, 0) == 0) usleep(50);
    }
    return 0;
}

/* ---- sigchild ---- */

static int fifo_fd = -1;

static void on_usr1(int sig) {
    (void)sig;
    int64_t t = now_ns();
    (void)!write(fifo_fd, &t, sizeof t);
}

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

static int sigchild(const char *fifo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    settle();
    fifo_fd = open(fifo, O_WRONLY); /* blocks until the driver reads: the handshake */
    if (fifo_fd < 0) die("open fifo");
    int64_t ready = 0;
    if (write(fifo_fd, &ready, sizeof ready) != sizeof ready) die("write ready");
    for (;;) pause();
    return 0;
}

/* ---- slow-stop ---- */

static int stop_ms;

static void on_term_slowly(int sig) {
    (void)sig;
    struct timespec t = {stop_ms / 1000, (long)(stop_ms % 1000) * 1000000};
    nanosleep(&t, NULL);
    _exit(0);
}

static int slow_stop(int ms) {
    stop_ms = ms;
    signal(SIGTERM, on_term_slowly);
    for (;;) pause();
    return 0;
}

/* ---- drivers ---- */

/* Start unshare --pid --fork --mount-proc INIT... SERVICE...; return unshare's pid. */
static pid_t start(char **init, int ninit, char **service, int nservice) {
    char **argv = calloc(ninit + nservice + 5, sizeof *argv);
    int k = 0;
    argv[k++] = "unshare";
    argv[k++] = "--pid";
    argv[k++] = "--fork";
    argv[k++] = "--mount-proc";
    for (int i = 0; i < ninit; i++) argv[k++] = init[i];
    for (int i = 0; i < nservice; i++) argv[k++] = service[i];
    argv[k] = NULL;
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    free(argv);
    return pid;
}

/* The first child of `pid` (its main thread's), waiting for it to appear. */
static pid_t child_of(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, pid);
    for (int tries = 0; tries < 100000; tries++) {
        FILE *f = fopen(path, "r");
        int child = 0;
        if (f) {
            if (fscanf(f, "%d", &child) != 1) child = 0;
            fclose(f);
        }
        if (child > 0) return child;
        usleep(100);
    }
    fprintf(stderr, "no child of %d\n", pid);
    exit(1);
}

static int comm_is(pid_t pid, const char *name) {
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
    fclose(f);
    comm[strcspn(comm, "\n")] = 0;
    return strcmp(comm, name) == 0;
}

static int siglat(int n, char **init, int ninit, const char *self) {
    char dir[] = "/tmp/init-bench-XXXXXX";
    if (!mkdtemp(dir)) die("mkdtemp");
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    if (mkfifo(fifo, 0600) < 0) die("mkfifo");
    char *service[] = {(char *)self, "sigchild", fifo};
    pid_t unshare = start(init, ninit, service, 3);
    int fd = open(fifo, O_RDONLY);
    if (fd < 0) die("open fifo");
    int64_t t;
    if (read(fd, &t, sizeof t) != sizeof t) die("read ready");
    pid_t init_pid = child_of(unshare);
    for (int i = 0; i < n; i++) {
        int64_t t0 = now_ns();
        if (kill(init_pid, SIGUSR1) < 0) die("kill");
        if (read(fd, &t, sizeof t) != sizeof t) die("read");
        printf("%.1f\n", (t - t0) / 1000.0);
    }
    kill(init_pid, SIGTERM);
    waitpid(unshare, NULL, 0);
    unlink(fifo);
    rmdir(dir);
    return 0;
}

static int shutdown_latency(int n, char **init, int ninit, char *self) {
    char *slow = getenv("STOP_MS");
    char *service[] = {"sleep", "1000", NULL};
    const char *comm = "sleep";
    if (slow && *slow) {
        service[0] = self;
        service[1] = "slow-stop";
        service[2] = slow;
        const char *base = strrchr(self, '/');
        comm = base ? base + 1 : self; /* this program's comm: its file's name */
    }
    for (int i = 0; i < n; i++) {
        pid_t unshare = start(init, ninit, service, service[2] ? 3 : 2);
        pid_t init_pid = child_of(unshare);
        pid_t svc = child_of(init_pid);
        while (!comm_is(svc, comm)) usleep(100);
        settle();
        usleep(2000); /* let the init settle in its loop */
        int64_t t0 = now_ns();
        kill(init_pid, SIGTERM);
        waitpid(unshare, NULL, 0);
        printf("%.1f\n", (now_ns() - t0) / 1000.0);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "slow-stop") == 0) return slow_stop(atoi(argv[2]));
    if (argc >= 2 && strcmp(argv[1], "settle") == 0) {
        settle();
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "orphans") == 0) return orphans(atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "orphan-steps") == 0) return orphan_steps(atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "sigchild") == 0) return sigchild(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "siglat") == 0)
        return siglat(atoi(argv[2]), argv + 3, argc - 3, argv[0]);
    if (argc >= 4 && strcmp(argv[1], "shutdown") == 0)
        return shutdown_latency(atoi(argv[2]), argv + 3, argc - 3, argv[0]);
    fprintf(stderr, "usage: see the comment at the top of init-helper.c\n");
    return 2;
}
