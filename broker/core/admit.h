/* broker/core/admit.h - admission control for the storage pipeline: whether
 * a new write is refused because the storage thread is too far behind, and
 * how often that is said in the log.
 *
 * Owns: the shed decision (a pure function of three times) and the
 * once-a-second account of refusals. Does not own: the measure of how far
 * behind the storage thread is (core/pubpipe.c keeps the enqueue time of
 * the oldest write not yet committed), the refusal's answer (pubpipe.c,
 * app/batch.c) or the counter (srv.stats.publications_shed).
 * DESIGN: past its capacity the broker must degrade gradually. Letting every
 * write queue behind the storage thread turns a small overload into a queue
 * that never drains (each later publication waits behind it, for seconds);
 * refusing new writes once the oldest waiting one is older than
 * history.max_queue_delay bounds that wait and tells the publisher at once,
 * with a documented error it can retry after a backoff. The measure is the
 * oldest write's age, not the queue's length: it costs one clock read per
 * write and says what the publisher feels, whatever a write costs. */
#ifndef HERALD_ADMIT_H
#define HERALD_ADMIT_H

#include <stdint.h>

/* admit_shed() - whether a new write is refused: the oldest write not yet
 * committed was queued at @oldest_ns (0: none is waiting) and it is now
 * @now_ns, both on one monotonic clock in nanoseconds; @max_ms is
 * history.max_queue_delay (0: never refuse).
 * Return: 1 to refuse, 0 to admit. Any thread; no side effects. */
int admit_shed(uint64_t oldest_ns, uint64_t now_ns, unsigned max_ms);

/* The account of refusals for the log: at most one line a second, whether
 * it counts refusals or says that writes are admitted again. */
typedef struct admit_log {
    uint64_t last_ns;             /* when the last line was due; 0: never */
    uint64_t pending;             /* refusals since that line */
    int shedding;                 /* refused since the last admission */
} admit_log_t;

/* admit_log_note() - count one refusal at @now_ns in @l (zeroed at first).
 * Return: the refusals the caller should report now (this one included),
 * when a second has passed since the last report (or there was none); else 0
 * and the refusal waits for the next report. Loop thread (one owner). */
uint64_t admit_log_note(admit_log_t *l, uint64_t now_ns);

/* admit_log_end() - a write was admitted at @now_ns: whether to say now
 * that a spell of refusals ended (then the caller logs one line, with
 * @unreported [out] the refusals no line has counted yet, maybe 0). Within
 * a second of the last line the spell stays open: a later admission says
 * it, or a refusal's line counts on. Loop thread (one owner).
 * Return: 1 to log, 0 not. */
int admit_log_end(admit_log_t *l, uint64_t now_ns, uint64_t *unreported);

#endif
