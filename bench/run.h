/* bench/run.h - the driver of the scenarios built on connections that
 * subscribe, publish or idle (every scenario but the state-channel ones),
 * and the pieces of it that other modules share.
 *
 * Owns: bench_run(), the peers' setup and accounting, the publications of a
 * run (payloads, sequence numbers, acks, delivery counts) and the open-loop
 * schedule. Does not own: what a scenario does (through struct
 * bench_scenario, scenario.h), the loop's handles and the end of a run
 * (loop.h), REST connections (rest.h), output (report.h).
 *
 * Everything here runs on the loop's thread. */
#ifndef BENCH_RUN_H
#define BENCH_RUN_H

#include "bench.h"

/* bench_run() - the whole run of B.o.sc on this driver, report included.
 * Return: the exit status. */
int bench_run(void);

/* bench_publish_one() - send one publication with timestamp @ts, counted in
 * st->published, through the WebSocket publisher @via or, when NULL, the
 * next ready one in turn or the REST pool. Its answer is counted, then goes
 * to the scenario's on_ack (scenario.h). */
void bench_publish_one(step_t *st, uint64_t ts, peer_t *via);

void bench_count_close(int code);
size_t bench_payload(uint64_t seq, uint64_t ts_ns, const unsigned char **out);
const char *bench_chan(uint32_t i, size_t *len);
uint32_t bench_chan_of(uint64_t seq);
void bench_peer_ready(peer_t *p);
/* bench_peer_opened() - count @p's connect latency (the driver does so for
 * every connection that opens, unless the scenario's on_open takes it over). */
void bench_peer_opened(peer_t *p);
/* bench_setup_error() - count a connection that failed during setup and keep
 * the first failure's text (B.first_err, B.first_err_text) for the report.
 * bench_setup_failure() - the same, then fail the run (a ramp: go on). */
void bench_setup_error(int err, const char *reason);
void bench_setup_failure(peer_t *p, int err, const char *reason);
/* bench_peer_open() - start @p's connection with @cb (@p is their ud); counts
 * it in B.live. Return: 0, or herald_client_new()'s error (@p is then PS_CLOSED). */
int bench_peer_open(peer_t *p, const herald_callbacks_t *cb);
/* bench_end_run() - @st's run phase ends at @now: t_end, CPU figures, PH_DRAIN. */
void bench_end_run(step_t *st, uint64_t now);
/* bench_pump() - the open-loop schedule of step @st (rate > 0, PH_RUN): call
 * @send for every request due by now, at most @burst_max in one call (the
 * rest on the next), each with its scheduled time t_start + n/rate; @send
 * counts it in st->published. After the duration, with all sent, ends the
 * run phase; otherwise wakes the loop when the next one is due. */
void bench_pump(step_t *st, void (*send)(step_t *st, uint64_t ts), unsigned burst_max);

/* bench_reconnect() - a new connection for a subscriber whose old one is
 * closed (recover); it takes no part in setup accounting. Return: as
 * bench_peer_open(). */
int bench_reconnect(peer_t *p);
/* bench_payload_read() - the timestamp and sequence number in a payload
 * that bench_payload() made. Return: 0, or -1 if it is not one. */
int bench_payload_read(const void *data, size_t len, uint64_t *ts, uint64_t *seq);
/* bench_pub_pos() - where pub @m (whose payload holds @seq) stands in its
 * channel: Herald's offset; with --target nats, which has none, the
 * publication's number in its channel, seq / channels + 1, which the
 * round-robin schedule of one publisher makes consecutive. */
uint64_t bench_pub_pos(const herald_msg_t *m, uint64_t seq);
/* bench_order() - a subscriber whose last pub stood at *@last got one at
 * @pos: count the positions skipped in *@gaps, or a repeat in *@dups; *@last
 * becomes @pos. */
void bench_order(uint64_t *last, uint64_t pos, uint64_t *gaps, uint64_t *dups);

/* bench_remote_ready() - reader process @k of @nreaders (readers.h) has
 * subscribed all @n of its subscribers, B.peers[k], [k + nreaders], ...:
 * count them ready and subscribed to their channels, and merge their
 * connect latencies @connect (borrowed). */
void bench_remote_ready(uint32_t n, const hist_t *connect, uint32_t k, uint32_t nreaders);
/* bench_remote_lost() - a reader's ready subscriber on channel @chan was
 * closed with @code during the run: counted as run.c counts its own. */
void bench_remote_lost(uint32_t chan, int code);

#endif
