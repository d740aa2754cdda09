/* bench/bench.h - herald-bench's process-wide state.
 *
 * Owns: struct bench, the one instance `B`, shared by the modules of the
 * tool: main.c (flags), loop.c (the event loop and the end of a run), run.c
 * (connections, schedule, measurement), rest.c (the REST publisher pool),
 * presence.c and recover.c (their scenarios), staterun.c with scores.c and
 * seats.c (the state-channel scenarios) and report.c (table, JSON, SVG).
 * Everything runs on one libuv loop on one thread. */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "herald_client.h"
#include "hist.h"

enum scenario {
    SC_FANOUT = 0, SC_CHANNELS, SC_IDLE, SC_CONNECT, SC_PUBLISH, SC_PRESENCE, SC_RECOVER, SC_SCORES, SC_SEATS,
    SC_N
};

enum pub_mode { PUB_WS = 0, PUB_REST = 1 };

#define MAX_STEPS 32
#define MAX_CLOSE_CODES 16

struct opts {
    enum scenario sc;
    char url[512];
    double duration;            /* seconds per step (or hold time) */
    herald_encoding_t enc;
    int json;
    const char *svg;
    unsigned size;              /* bytes of payload in each publication */
    unsigned subscribers;       /* fanout: total; channels/publish: per channel */
    unsigned channels;
    double rates[MAX_STEPS];
    int nrates;
    enum pub_mode publish;
    unsigned publishers;        /* WS publisher connections or REST connections */
    unsigned window;            /* publish: outstanding per publisher */
    double p99_max_ms;
    unsigned connections;       /* idle, connect */
    int pid;                    /* broker pid for RSS and CPU, 0 if unknown */
    unsigned concurrency;       /* connection attempts in flight */
    double connect_timeout;
    double drain_timeout;
    double settle;
    int quiet;
    char ns[65];                /* namespace of the bench's channels */
    unsigned members;           /* presence: churned member connections */
    unsigned watchers;          /* presence: connections that count events, never churned */
    double rejoin_delay;        /* presence: seconds between a leave's ack and the rejoin */
    double fraction;            /* recover: share of the subscribers dropped in each cycle */
    double outage;              /* recover: seconds a dropped subscriber stays away */
    unsigned cycles;            /* recover: disconnect/reconnect cycles spread over --duration */
    int expect_unrecovered;     /* recover: the run is meant to see "recovered": false */
    unsigned viewers;           /* scores, seats: connections subscribed to the state channel */
    unsigned clients;           /* seats: REST clients, each with one request in flight */
    unsigned seats;             /* seats: seats in the map */
    unsigned section;           /* seats: seats per section */
    double hot;                 /* seats: share of the seats that holds pick from */
    unsigned ttl;               /* seats: hold ttl, seconds */
};

/* One step of a run: one target rate (or the whole run for idle/connect/publish). */
typedef struct step {
    double rate;                /* target publications/s (0: closed loop) */
    uint64_t seq_start, seq_end;
    uint64_t total;             /* publications scheduled */
    uint64_t published;         /* handed to a publisher */
    uint64_t acked, pub_errors;
    uint64_t expected;          /* sum over acked publications of live subscribers */
    uint64_t received;          /* deliveries of acked publications (at the end) */
    uint64_t recv_all;          /* deliveries of any publication of this step */
    uint64_t t_start, t_end, t_drained;  /* uv_hrtime() */
    uint64_t t_last_rx;         /* read time of the step's latest delivery */
    hist_t *lat, *ack;
    double bench_cpu, broker_cpu;        /* percent of one core during the step */
    uint64_t gaps, dups;
    uint64_t late, late_max;    /* deliveries after the step was closed, and their worst latency */
    int sustained;
    int done;
    /* presence: rate is churn operations/s (one leave, then one join, each). */
    uint64_t leaves_sent, leaves_acked, joins_sent, joins_acked, op_errors, starved;
    uint64_t t_last_ack;        /* receive time of the step's latest leave/join ack */
    uint64_t ev_expected;       /* events each watcher should see: acked leaves + joins */
    uint64_t ev_seen_min, ev_seen_max, ev_seen_sum;   /* over watchers: joins + leaves seen */
    uint64_t ev_joins, ev_leaves;   /* summed over watchers, individual events and batch totals */
    uint64_t ev_batches;        /* presence_batch messages seen by watchers */
    uint64_t ev_unmatched;      /* individual events that matched no operation sent */
    uint64_t member_events;     /* events delivered to churned members (the rest of the fan-out) */
    /* scores, seats: the viewers of the state channel. `lat` is delivery latency, `ack` the
     * latency of the REST writes (seats: of the holds), `received` the deltas delivered. */
    uint64_t snapshots;         /* snapshot pushes (a conflated viewer catching up) */
    uint64_t skipped;           /* offsets viewers got inside a snapshot instead of as a delta */
    uint64_t mismatches;        /* deltas whose values disagree with what the bench wrote */
    uint64_t unreadable;        /* deltas the bench could not read */
    uint32_t converged;         /* viewers whose view equals the broker's state after the step */
    uint32_t diverged;          /* ... whose view differs, or who are behind */
    uint32_t unverifiable;      /* ... whose view a snapshot replaced with what the bench cannot read */
    uint32_t viewers_lost;      /* viewers closed by the broker before the step's checks */
    int64_t broker_score;       /* scores: score:home after the step, as GET .../state reads it */
    uint64_t broker_offset;     /* scores, seats: the channel's offset then */
    uint64_t taken;             /* seats: holds refused with 409 seats_taken */
    uint64_t seats_held;        /* seats: seats in successful holds */
    uint64_t releases, releases_ok;
    hist_t *rel;                /* seats: release latency */
} step_t;

struct close_count {
    int code;
    uint64_t n;
};

/* A connection the bench drives, subscriber, publisher or idle. */
typedef struct peer {
    herald_client_t *c;
    uint8_t kind;               /* PEER_* */
    uint8_t state;              /* PS_* */
    uint32_t chan;
    uint64_t last_off;
    uint64_t t_connect;         /* when its connection attempt started */
} peer_t;

enum { PEER_SUB = 0, PEER_PUB, PEER_IDLE, PEER_MEMBER, PEER_WATCHER };
enum { PS_NEW = 0, PS_CONNECTING, PS_OPEN, PS_READY, PS_CLOSED };

enum phase { PH_SETUP = 0, PH_RUN, PH_DRAIN, PH_HOLD, PH_TEARDOWN, PH_DONE };

/* The recover scenario's figures, filled by recover.c, printed by report.c. */
struct recover_figures {
    char channel[96];
    uint64_t last_offset;       /* the highest acknowledged offset: every subscriber should end there */
    unsigned cycles_run;
    uint64_t dropped;           /* subscriber connections aborted by the bench */
    uint64_t reconnections;     /* reconnects started */
    uint64_t reconnect_failures;/* reconnects that did not get a subscribe reply */
    uint64_t refused;           /* ... of which the subscribe was answered with an error */
    uint64_t recovered_true, recovered_false;
    uint64_t missed;            /* offsets published while away: sum of reply offset - since offset */
    uint64_t recovered_pubs;    /* publications delivered in "recovered": true replies */
    uint64_t unrecoverable;     /* offsets neither in a "recovered": false reply nor delivered live */
    uint64_t tail_pubs;         /* publications delivered in "recovered": false replies */
    uint64_t gaps, dups;        /* per subscriber, offsets skipped / seen again */
    uint64_t mismatches;        /* a payload's sequence number seen with two offsets */
    uint64_t epoch_mismatches;  /* "recovered": true with another epoch than the one given */
    uint64_t bad_replies;       /* no "recovered", unreadable publications, an offset behind the subscriber */
    uint64_t unexpected_closes; /* subscribers closed by the broker (or the network) */
    uint64_t expected, received;/* deliveries over all subscribers, live and in replies */
    uint64_t live, from_replies;
    uint64_t behind;            /* subscribers short of last_offset when the drain ended */
    uint64_t pending_connect;   /* reconnects still opening their connection when the drain ended */
    uint64_t pending_reply;     /* ... and still waiting for their subscribe reply */
    hist_t *recovery;           /* reconnect start -> subscribe reply read, ns */
    hist_t *per_reply;          /* publications in each recovery reply */
    char first_failure[160];    /* the first reconnect failure, for the message */
};

/* The state-channel scenarios' run-wide figures, filled by scores.c / seats.c. */
struct state_figures {
    char channel[96];
    char event[72];             /* seats: the event id */
    uint64_t offset0;           /* the channel's offset when the viewers subscribed */
    int64_t score0;             /* scores: score:home then */
    uint64_t bad_replies;       /* subscribe replies at another offset than offset0 */
    uint64_t gaps, dups;        /* per viewer, offsets skipped without a snapshot / seen again */
    uint64_t rest_errors;       /* REST answers other than the documented outcomes */
    uint64_t cancelled;         /* requests still waiting for a connection when a drain ended */
    uint64_t stale_reads;       /* checks' GET reads behind the last acknowledged write (or, seats:
                                   pages of one read at different offsets), read again */
    uint64_t stale_max;         /* the most offsets such a read was behind */
    char first_error[200];      /* the first of them */
    uint32_t hot_seats;         /* seats: the hot region */
    uint32_t sections;
    /* seats: the invariants, as read with GET .../state after the last step */
    unsigned checks;            /* times the whole map was read and checked */
    uint64_t pages;             /* GET pages read over all checks */
    uint64_t seats_read, free_n, held_n, booked_n, bad_seats;  /* the last check's seats; bad: unknown
                                                                  key, status or section, or held without holder */
    uint64_t missing_seats;     /* seats of the map that the read did not return */
    uint64_t unreleased;        /* seats whose release failed or was cancelled: left held until the ttl */
    uint64_t sections_read, section_mismatches;  /* sections whose counts differ from the seats' statuses */
    uint64_t violations;        /* over all checks: bad seats, missing seats, section mismatches */
    char first_violation[200];
};

struct rest_pool;

struct bench {
    struct opts o;
    uv_loop_t loop;
    herald_ctx_t *hctx;
    herald_url_t url;
    herald_opts_t copts;
    char run_id[16];
    uint64_t t0;                /* uv_hrtime() at start: payload timestamps count from here */
    enum phase phase;
    int exit_code;
    char fatal[512];            /* why the run failed, printed on stderr */

    peer_t *peers;
    uint32_t npeers, nsubs, npubs;
    uint32_t next_peer;         /* next peer to start connecting */
    uint32_t inflight;          /* connection attempts under way */
    uint32_t ready;             /* peers that finished setup */
    uint32_t live;              /* clients not yet closed */
    uint32_t setup_failed;
    int first_err;
    char first_err_text[160];
    uint64_t setup_start, setup_end;
    hist_t *connect_lat;

    uint32_t *chan_live;        /* subscribers alive and subscribed, per channel */
    char *chan_names;           /* nchan fixed-width names */
    unsigned chan_stride;

    /* Per publication: deliveries counted, and whether it was acknowledged. */
    uint32_t *rec;
    uint8_t *acked;
    uint64_t nseq, seq_cap;

    step_t steps[MAX_STEPS];
    int nsteps, cur;
    hist_t *interval;           /* latencies since the last progress line */
    uint64_t outstanding;       /* publications sent and not yet acked or failed */
    uint32_t next_pub;          /* round-robin over WS publishers */
    unsigned char *payload;     /* scratch for one encoded data value */
    char *raw;                  /* scratch: the unencoded payload string */

    struct rest_pool *rest;
    uint64_t rest_http_errors, rest_reconnects;

    uint64_t deliveries;        /* every pub received, for progress */
    uint64_t bad_payload;
    uint64_t protocol_errors;   /* error replies outside publishing */
    struct close_count closes[MAX_CLOSE_CODES];
    int ncloses;
    uint64_t disconnects;

    /* presence */
    int64_t final_members, final_connections;   /* presence_stats after the last step, -1 if none */
    uint64_t setup_events;      /* events seen before the first step (setup joins) */
    double presence_wait;       /* seconds from all subscribed to presence_stats agreeing */

    /* recover */
    struct recover_figures rf;

    /* scores, seats */
    struct state_figures sf;

    /* idle */
    long rss_before, rss_after; /* bytes, -1 if unknown */
    long bench_rss;

    uv_timer_t tick, progress, watchdog, phase_timer;
    uv_check_t check;
    int tty;
    uint64_t last_progress_deliveries;
};

extern struct bench B;

/* run.c */
int run(void);
void bench_count_close(int code);
void bench_ack(uint64_t seq, int ok, uint64_t rx_ns);
size_t bench_payload(uint64_t seq, uint64_t ts_ns, const unsigned char **out);
const char *bench_chan(uint32_t i, size_t *len);
uint32_t bench_chan_of(uint64_t seq);
long proc_rss(int pid);
void bench_peer_ready(peer_t *p);
/* bench_setup_error() - count a connection that failed during setup and keep
 * the first failure's text (B.first_err, B.first_err_text) for the report.
 * bench_setup_failure() - the same, then fail the run (connect: go on). */
void bench_setup_error(int err, const char *reason);
void bench_setup_failure(peer_t *p, int err, const char *reason);
/* bench_peer_open() - start @p's connection with @cb (@p is their ud); counts
 * it in B.live. Return: 0, or herald_client_new()'s error (@p is then PS_CLOSED). */
int bench_peer_open(peer_t *p, const herald_callbacks_t *cb);
void bench_cpu_start(void);
void bench_cpu_stop(step_t *st);
/* bench_end_run() - @st's run phase ends at @now: t_end, CPU figures, PH_DRAIN. */
void bench_end_run(step_t *st, uint64_t now);
/* bench_pump() - the open-loop schedule of step @st (rate > 0, PH_RUN): call
 * @send for every request due by now, at most @burst_max in one call (the
 * rest on the next), each with its scheduled time t_start + n/rate; @send
 * counts it in st->published. After the duration, with all sent, ends the
 * run phase; otherwise wakes the loop when the next one is due. */
void bench_pump(step_t *st, void (*send)(step_t *st, uint64_t ts), unsigned burst_max);

/* presence.c: the presence scenario; run.c calls these only when B.o.sc == SC_PRESENCE. */
int pres_init(void);
void pres_free(void);
void pres_on_open(peer_t *p, const herald_msg_t *connected);
void pres_on_push(peer_t *p, const herald_msg_t *m);
void pres_on_close(peer_t *p);
void pres_setup_done(void);
void pres_tick(uint64_t now);
void pres_pump(void);
const char *pres_channel(size_t *len);
double pres_changes_per_sec(const step_t *st);   /* acked leaves + joins per second */
uint64_t pres_outstanding(void);

/* run.c, for recover.c */
int bench_reconnect(peer_t *p);
int bench_payload_read(const void *data, size_t len, uint64_t *ts, uint64_t *seq);

/* recover.c: the recover scenario; run.c calls these only when B.o.sc == SC_RECOVER. */
int rec_init(void);
void rec_free(void);
void rec_on_setup_subscribed(peer_t *p, const herald_msg_t *subscribed);
void rec_start(step_t *st);
int rec_on_open(peer_t *p);
void rec_on_pub(peer_t *p, const herald_msg_t *m);
void rec_on_ack(uint64_t seq, const herald_msg_t *published);
int rec_on_close(peer_t *p, const herald_close_info_t *info);
void rec_tick(uint64_t now);
int rec_drained(const step_t *st, uint64_t now);
void rec_finish(step_t *st);
void rec_progress(FILE *f);

/* staterun.c: srun() is the whole run of the scores or seats scenario, report
 * included; main.c calls it instead of run(). Return: the exit status. */
int srun(void);

/* report.c */
void report(void);

#endif
