/* bench/bench.h - herald-bench's process-wide state.
 *
 * Owns: struct bench, the one instance `B` (defined in run.c), and the
 * types its parts are made of: the flags (struct opts), the steps of a run
 * (step_t), the connections (peer_t). It is shared by the tool's modules:
 * main.c (flags), loop.c (the event loop and the end of a run), the two
 * drivers run.c and staterun.c, rest.c and http.c (REST), proc.c (CPU and
 * RSS), report.c (table, JSON, SVG) and the scenarios (scenario.h). Does
 * not own: any one scenario's state, which stays in its own file; step_t
 * has the per-step figures of all of them because the drivers keep the
 * steps. Everything runs on one libuv loop on one thread. */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "herald_client.h"
#include "hist.h"

enum pub_mode { PUB_WS = 0, PUB_REST = 1 };

/* The broker measured (--target): Herald, or nats-server's WebSocket listener
 * spoken to in NATS core's protocol (clients/hc_nats.h). */
enum bench_target { TARGET_HERALD = 0, TARGET_NATS = 1 };

#define MAX_STEPS 32
#define MAX_CLOSE_CODES 16

struct bench_scenario;

struct opts {
    const struct bench_scenario *sc;   /* the scenario run (scenario.h) */
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
    unsigned skus;              /* orders: SKUs the orders pick from (1: one hot SKU) */
    unsigned stock;             /* orders, payments: units of each SKU at the start */
    unsigned orders;            /* payments: orders created before the events */
    char secret[129];           /* payments: the broker's [adapter commerce] webhook_secret */
    unsigned sse;               /* sse: Server-Sent Events streams (WebSocket subscribers: --subscribers) */
    unsigned readers;           /* fanout, channels: reader processes holding the subscribers (0: none) */
    enum bench_target target;   /* fanout, channels, cliff: the broker's protocol */
};

/* One step of a run: one target rate (or the whole run for idle/connect/publish). */
typedef struct step {
    double rate;                /* target publications/s (0: closed loop) */
    uint64_t seq_start, seq_end;
    uint64_t total;             /* publications scheduled */
    uint64_t published;         /* handed to a publisher */
    uint64_t acked, pub_errors;
    uint64_t pub_shed;          /* of pub_errors: refused with error 135 (overloaded); no delivery is expected */
    uint64_t expected;          /* sum over acked publications of live subscribers */
    uint64_t received;          /* deliveries of acked publications (at the end) */
    uint64_t recv_all;          /* deliveries of any publication of this step */
    uint64_t t_start, t_end, t_drained;  /* uv_hrtime() */
    uint64_t t_last_rx;         /* read time of the step's latest delivery */
    hist_t *lat, *ack;
    double bench_cpu, broker_cpu;        /* percent of one core during the step */
    double readers_cpu, readers_cpu_max; /* --readers: their sum, and the busiest one */
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

    /* scores, seats */
    struct state_figures sf;

    uv_timer_t tick, progress, watchdog, phase_timer;
    uv_check_t check;
    int tty;
    uint64_t last_progress_deliveries;
};

extern struct bench B;

#endif
