/* bench/fork-vs-vfork.c: what a callback spawn pays for fork(2) (std's Command with a
 * pre_exec hook) against clone(CLONE_VM|CLONE_VFORK) (posix_spawn's way), in a parent
 * with some written heap, as supd has. Each round spawns a static `true`, waits until
 * it has exec'd (std reads a close-on-exec pipe; vfork returns then anyway), then writes
 * one byte into each page of the heap, as the parent's next work would: a fork
 * write-protected every such page for copy-on-write, and the first write to each still
 * faults after the child's exec, when no copy is needed any more.
 *
 *   gcc -O2 -static -o fork-vs-vfork bench/fork-vs-vfork.c && ./fork-vs-vfork TRUE
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEAP (400 * 1024)
#define ROUNDS 300

extern char **environ;
static char *argv_child[2];

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int child(void *unused) {
    (void)unused;
    execve(argv_child[0], argv_child, environ);
    _exit(127);
}

static void run(int vfork_like, char *heap, char *stack) {
    double spawn = 0, touch = 0;
    for (int i = 0; i < ROUNDS; i++) {
        double t0 = now_us();
        pid_t pid;
        if (vfork_like) {
            /* The parent resumes once the child has exec'd (or exited). */
            pid = clone(child, stack + 65536, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
        } else {
            int exec_pipe[2];
            if (pipe2(exec_pipe, O_CLOEXEC) != 0)
                exit(1);
            pid = fork();
            if (pid == 0)
                child(NULL);
            close(exec_pipe[1]);
            char byte;
            while (read(exec_pipe[0], &byte, 1) > 0) {
            }
            close(exec_pipe[0]);
        }
        double t1 = now_us();
        for (size_t off = 0; off < HEAP; off += 4096)
            heap[off]++;
        double t2 = now_us();
        waitpid(pid, NULL, 0);
        spawn += t1 - t0;
        touch += t2 - t1;
    }
    printf("%-16s spawn %5.1f us, then %d page writes %6.1f us\n",
           vfork_like ? "clone(VM|VFORK)" : "fork + exec wait", spawn / ROUNDS, HEAP / 4096,
           touch / ROUNDS);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s STATIC-TRUE\n", argv[0]);
        return 2;
    }
    argv_child[0] = argv[1];
    char *heap = malloc(HEAP);
    char *stack = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!heap || stack == MAP_FAILED)
        return 1;
    memset(heap, 1, HEAP);
    run(0, heap, stack);
    run(1, heap, stack);
    return 0;
}
