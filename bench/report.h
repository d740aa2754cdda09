/* bench/report.h - the results of a run: a table, one JSON object, an SVG
 * chart; and the pieces of them that the scenarios' report callbacks share.
 *
 * Owns: the frame of the report (the first line, the connections, the
 * disconnects and errors, "ok"), the charts, and the formatting helpers
 * below. Does not own: a scenario's own figures, which its report callbacks
 * print (scenario.h). All of it reads struct bench after the loop ended. */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "bench.h"

/* report() - print the report of the run on stdout (--json: exactly one
 * JSON object and nothing else) and write the --svg chart. */
void report(void);

/* report_ms() - @ns in milliseconds. */
double report_ms(uint64_t ns);

/* report_step_secs() - the length of @st's run phase in seconds. */
double report_step_secs(const step_t *st);

/* report_dps() - deliveries per second over the span in which they arrived:
 * from the step's start to its last delivery, or to its end if that came
 * later. */
double report_dps(const step_t *st);

/* report_best_step() - the index of the sustained step with the highest
 * rate, or -1. */
int report_best_step(void);

/* report_total() - the sum over the steps of the uint64_t member at
 * @offset of step_t; REPORT_TOTAL(published) names it. */
uint64_t report_total(size_t offset);
#define REPORT_TOTAL(field) report_total(offsetof(step_t, field))

/* report_si() - @v with k or M for thousands and millions, in @buf (@n
 * bytes), which is returned. */
const char *report_si(double v, char *buf, size_t n);

/* report_json_safe() - @s with the characters a JSON string cannot hold as
 * they are replaced by '\'' (a static buffer: one call per printf). */
const char *report_json_safe(const char *s);

/* report_json_lat() - "@key":{count, min, mean, p50 ... max} of latency
 * histogram @h in milliseconds, or "@key":null when it is empty. */
void report_json_lat(FILE *f, const char *key, const hist_t *h);

/* report_json_step_end() - the end of a step's JSON object: its delivery
 * latency under @lat_key, its ack latency, whether it was sustained. */
void report_json_step_end(FILE *f, const char *lat_key, const step_t *st);

/* report_json_max_sustained() - the best sustained step's rate under
 * @rate_key and its @per_sec under @per_sec_key, or @rate_key null when no
 * step was sustained. */
void report_json_max_sustained(FILE *f, const char *rate_key, const char *per_sec_key,
                               double (*per_sec)(const step_t *st));

/* report_lat_row() - p50, p90, p99, p99.9 and max of @h as table columns. */
void report_lat_row(FILE *f, const hist_t *h);

/* report_disconnects() - the line of disconnects during the run, by close
 * code; when there were none, "none" if @none, else nothing. */
void report_disconnects(FILE *f, int none);

/* report_errors() - the line of publishing errors, if there were any. */
void report_errors(FILE *f);

#endif
