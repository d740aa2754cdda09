/* bench/staterun.h - one run of a state-channel scenario (scores, seats).
 *
 * Owns: the phases of such a run: the REST pool (http.h) and the scenario's
 * REST setup, the viewers (WebSocket connections subscribed to the one state
 * channel, B.peers), the steps, the drain, the checks after each step and
 * the time bounds. Does not own: what is sent and what is checked (scores.c,
 * seats.c, through struct srun_scenario), the open-loop schedule
 * (bench_pump(), run.c), the loop's handles and the end of a run (loop.c),
 * flags (main.c), output (report.c).
 *
 * run.c drives the publishing scenarios; this is a separate, smaller driver
 * because a state-channel scenario writes through REST adapters rather than
 * publishing payloads, and because what is verified after a step (a viewer's
 * view against the broker's state) needs REST reads between steps. */
#ifndef BENCH_STATERUN_H
#define BENCH_STATERUN_H

#include "bench.h"
#include "http.h"

/* What a scenario plugs in. Everything is called on the loop's thread; @v is
 * a viewer's index in B.peers. */
struct srun_scenario {
    /* Allocate the scenario's state and fill B.sf.channel. Return: 0, or -1 (out of memory). */
    int (*init)(void);
    /* Every REST connection is open: set the channel up over REST, then call
     * srun_prepared(), or bench_fail() (loop.h) with the reason. */
    void (*prepare)(void);
    /* A viewer's subscribe was answered with op subscribed. */
    void (*on_subscribed)(uint32_t v, const herald_msg_t *m);
    /* A pub (a delta) or a snapshot push for the channel reached viewer @v.
     * A snapshot is already counted (snapshots, skipped) and the viewer's
     * last_off moved to its offset. */
    void (*on_pub)(uint32_t v, const herald_msg_t *m);
    void (*on_snapshot)(uint32_t v, const herald_msg_t *m);
    /* A step begins (st->t_start and st->rate are set). With rate 0 the
     * scenario runs its own closed loop until B.phase leaves PH_RUN. */
    void (*start_step)(step_t *st);
    /* Open loop: send the one request due at @ts (its scheduled time). */
    void (*send)(step_t *st, uint64_t ts);
    /* After the step's duration: 1 once every answer and every delivery it waits for is in. */
    int (*drained)(const step_t *st);
    /* After the drain: read the broker's state, judge the step (st->sustained),
     * then call srun_checked(st), or bench_fail() (loop.h). */
    void (*check)(step_t *st);
    /* The tail of the progress line on a terminal. */
    void (*progress)(FILE *f, const step_t *st);
    void (*free)(void);
};

extern const struct srun_scenario scores_scenario, seats_scenario;

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

#endif
