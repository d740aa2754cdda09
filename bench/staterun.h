/* bench/staterun.h - one run of a state-channel scenario (scores, seats).
 *
 * Owns: the phases of such a run: the REST pool (http.h) and the scenario's
 * REST setup, the viewers (WebSocket connections subscribed to the one state
 * channel, B.peers), the steps, the drain, the checks after each step and
 * the time bounds; and the pieces of the report both scenarios share. Does
 * not own: what is sent and what is checked (scores.c, seats.c, through
 * their struct bench_scenario, scenario.h), the open-loop schedule
 * (bench_pump(), run.c), the loop's handles and the end of a run (loop.c),
 * flags (main.c), the report's frame (report.c).
 *
 * run.c drives the publishing scenarios; this is a separate, smaller driver
 * because a state-channel scenario writes through REST adapters rather than
 * publishing payloads, and because what is verified after a step (a viewer's
 * view against the broker's state) needs REST reads between steps. */
#ifndef BENCH_STATERUN_H
#define BENCH_STATERUN_H

#include "bench.h"
#include "http.h"

/* srun() - the whole run of B.o.sc on this driver, report included: a
 * state-channel scenario's `run` (scenario.h). Return: the exit status. */
int srun(void);

/* srun_prepared() - the scenario's REST setup is done: connect the viewers. */
void srun_prepared(void);

/* srun_checked() - the checks after @st are done: next step, or the end. */
void srun_checked(step_t *st);

/* srun_request() - a REST request on the run's pool; see http_request().
 * Return: 0, or an error (then @cb does not fire). */
int srun_request(const char *method, const char *target, const char *body, size_t blen, http_done_cb cb,
                 void *arg);

/* srun_after() - call @fn once, @ms milliseconds from now, unless the run
 * ends first. For the checks (PH_HOLD) only: one pending call at a time. */
void srun_after(unsigned ms, void (*fn)(void));

/* srun_in_flight() - REST requests not yet answered. */
uint64_t srun_in_flight(void);

/* srun_live() - 1 if viewer @v is subscribed and connected.
 * srun_viewers_live() - how many are. */
int srun_live(uint32_t v);
uint32_t srun_viewers_live(void);

/* srun_rest_code() - the "code" of a REST error body {"error":{"code":N,...}}, or 0. */
int srun_rest_code(const char *body, size_t len);

/* srun_rest_error() - count an answer that is not a documented outcome of
 * @what (B.sf.rest_errors) and keep the first one's status and body for the
 * report. Answers with status 0 (no answer) during teardown, and requests
 * cancelled at the end of a drain (HTTP_CANCELLED, counted in B.sf.cancelled),
 * are not counted. */
void srun_rest_error(const char *what, int status, const char *body, size_t len);

/* srun_scan_behind() - 1 if some live viewer's offset (B.peers[v].last_off)
 * is below @off. Resumes where the previous call stopped, so calling it on
 * every tick of a drain costs one pass over the viewers in all;
 * srun_scan_reset() starts over (at each step). */
int srun_scan_behind(uint64_t off);
void srun_scan_reset(void);

/* srun_step_of() - the step that was running at @ts (uv_hrtime()). */
step_t *srun_step_of(uint64_t ts);

/* srun_check_rates() - for a check_opts: -1 with the reason in @why (@n
 * bytes) when a --rate step would send over 100 million requests, else 0. */
int srun_check_rates(const struct opts *o, char *why, size_t n);

/* The report's pieces both state-channel scenarios print.
 * srun_answers_per_sec() - @answered requests per second over the span from
 * the step's start to its last answer.
 * srun_json_step() - a step's snapshots, viewers and drain, as JSON members
 * each followed by a comma.
 * srun_viewers() - a step's viewers: converged, unverifiable, diverged, lost.
 * srun_report_tail() - the lines after the table (a report_tail): the
 * disconnects, stale reads, cancelled requests and errors.
 * srun_json_errors() - the members of "errors" (a report_json_errors), the
 * failed writes under @writes. */
double srun_answers_per_sec(const step_t *st, uint64_t answered);
void srun_json_step(FILE *f, const step_t *st);
void srun_viewers(FILE *f, const step_t *st);
void srun_report_tail(FILE *f);
void srun_json_errors(FILE *f, const char *writes);

#endif
