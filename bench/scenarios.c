/* bench/scenarios.c - the list of herald-bench's scenarios.
 *
 * Owns: bench_scenarios[], the one place that names every scenario: main.c
 * finds the one to run here by its name and lists them all in --help, in
 * this order. Each entry is defined by its own file. */
#include "scenario.h"

extern const struct bench_scenario bench_fanout, bench_channels, bench_cliff, bench_idle, bench_connect, bench_publish,
    bench_presence, bench_recover, bench_scores, bench_seats, bench_orders, bench_payments, bench_sse;

const struct bench_scenario *const bench_scenarios[] = {
    &bench_fanout,   /* pubs.c */
    &bench_channels, /* pubs.c */
    &bench_cliff,    /* pubs.c */
    &bench_idle,     /* conns.c */
    &bench_connect,  /* conns.c */
    &bench_publish,  /* pubs.c */
    &bench_presence, /* presence.c */
    &bench_recover,  /* recover.c */
    &bench_scores,   /* scores.c */
    &bench_seats,    /* seats.c */
    &bench_orders,   /* commerce.c */
    &bench_payments, /* commerce.c */
    &bench_sse,      /* ssefan.c */
    NULL,
};
