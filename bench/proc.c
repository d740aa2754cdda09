/* bench/proc.c - see proc.h. */
#include "proc.h"
#include "nodes.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

long proc_rss(int pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if (!(f = fopen(path, "r"))) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) { kb = strtol(line + 6, NULL, 10); break; }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

long proc_ticks(int pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut, st;
    ssize_t n;
    int fd;

    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if ((fd = open(path, O_RDONLY)) < 0) return -1;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    if (!(p = strrchr(buf, ')'))) return -1;
    /* After ") " come fields 3..; utime and stime are fields 14 and 15. */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
    return (long)(ut + st);
}

static uint64_t cpu_self_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ULL +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ULL;
}

static uint64_t step_cpu0;

void proc_cpu_start(void)
{
    step_cpu0 = cpu_self_ns();
    nodes_cpu_start();
}

/* The broker's CPU is that of every --pid: one node's, or the sum over a
 * cluster's nodes, each of which nodes.c keeps for the report. */
void proc_cpu_stop(step_t *st)
{
    double wall = (double)(st->t_end - st->t_start);

    st->bench_cpu = wall > 0 ? 100.0 * (double)(cpu_self_ns() - step_cpu0) / wall : 0;
    st->broker_cpu = nodes_cpu_stop(st);
}
