/* runstat: runs a command and reports what it cost, from the kernel's
 * accounting of that one child process (wait4):
 *
 *   runstat [-c CPU] [-f PRIORITY] OUTFILE TIMEOUT_SECONDS -- COMMAND [ARG...]
 *
 * The command inherits stdin/stdout/stderr. -c pins the command to CPU and
 * -f runs it under SCHED_FIFO at PRIORITY (root); runstat itself stays an
 * ordinary task on any CPU, so that its timeout still fires when the
 * command spins: a SCHED_FIFO runstat on the command's CPU at the command's
 * priority (as bench/pinned once ran it) never got the CPU back from a
 * command that did not block, and its alarm came only after the command
 * ended on its own. OUTFILE gets one line:
 *   wall_s=W user_s=U sys_s=S maxrss_kb=R csw=C exit=E signal=G
 * (C: context switches, voluntary and involuntary, of all its threads).
 * The child is killed (SIGKILL, by its pid) when TIMEOUT_SECONDS pass.
 * runstat exits with the child's exit status (128+signal if killed). */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t timed_out;
static pid_t child;

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
    if (child > 0) kill(child, SIGKILL);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* In the child, before the exec: the CPU (-1: any) and SCHED_FIFO
 * priority (0: the caller's policy) asked for; 0, or -1 with errno set. */
static int place(int cpu, int prio)
{
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof(set), &set)) return -1;
    }
    struct sched_param sp = {.sched_priority = prio};
    return prio > 0 ? sched_setscheduler(0, SCHED_FIFO, &sp) : 0;
}

int main(int argc, char **argv)
{
    int cpu = -1, prio = 0;
    while (argc > 2 && (!strcmp(argv[1], "-c") || !strcmp(argv[1], "-f"))) {
        *(argv[1][1] == 'c' ? &cpu : &prio) = atoi(argv[2]);
        argv += 2;
        argc -= 2;
    }
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: runstat [-c CPU] [-f PRIORITY] OUTFILE TIMEOUT_SECONDS -- COMMAND "
                        "[ARG...]\n");
        return 125;
    }
    const char *outfile = argv[1];
    unsigned timeout = (unsigned)atoi(argv[2]);
    double t0 = now();
    child = fork();
    if (child < 0) {
        perror("runstat: fork");
        return 125;
    }
    if (child == 0) {
        if (place(cpu, prio)) {
            fprintf(stderr, "runstat: CPU %d, SCHED_FIFO %d: %s\n", cpu, prio, strerror(errno));
            _exit(126);
        }
        execvp(argv[4], &argv[4]);
        fprintf(stderr, "runstat: %s: %s\n", argv[4], strerror(errno));
        _exit(127);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    if (timeout) alarm(timeout);
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof(ru));
    while (wait4(child, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("runstat: wait4");
            return 125;
        }
    }
    alarm(0);
    double wall = now() - t0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    FILE *out = fopen(outfile, "w");
    if (!out) {
        perror("runstat: output file");
        return 125;
    }
    fprintf(out, "wall_s=%.6f user_s=%.6f sys_s=%.6f maxrss_kb=%ld csw=%ld exit=%d signal=%d%s\n",
            wall, (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, ru.ru_maxrss,
            ru.ru_nvcsw + ru.ru_nivcsw, code, sig, timed_out ? " timeout=1" : "");
    fclose(out);
    if (timed_out) fprintf(stderr, "runstat: %s killed after %u s\n", argv[4], timeout);
    return sig ? 128 + sig : code;
}
