/* floor-init: the least an init can do, the floor bench/lean.sh measures supd against.
 *
 *   floor-init CMD [ARG...]
 *
 * Block every signal, fork+exec CMD (mask restored in the child), then loop on
 * sigwaitinfo: SIGCHLD reaps every exited child (orphans included), any other signal
 * is forwarded to CMD. Exits with CMD's status (128+N when killed by signal N) once CMD
 * is reaped. No grace period, no process groups, no logging: a floor, not an init to
 * ship. Build: gcc -O2 -static -o floor-init floor-init.c
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: floor-init CMD [ARG...]\n");
        return 2;
    }
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);
    pid_t child = fork();
    if (child < 0) return 1;
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    for (;;) {
        siginfo_t info;
        if (sigwaitinfo(&all, &info) < 0) continue;
        if (info.si_signo != SIGCHLD) {
            kill(child, info.si_signo);
            continue;
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid != child) continue;
            if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
            return WEXITSTATUS(status);
        }
    }
}
