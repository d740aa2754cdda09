/* bench/readers.c - see readers.h: subscribers in reader processes.
 *
 * Owns: the reader processes and their control sockets, both ends. Does not
 * own: the steps and their judging (run.c), the payload format (run.c's
 * bench_payload() / bench_payload_read(), used here unchanged).
 *
 * DESIGN: a reader is a fork of the bench taken before the loop exists, so
 * it has the flags, the channels' names and the steps' rates without being
 * told. It knows which step a publication belongs to from its sequence
 * number alone: run.c's open loop publishes exactly llround(rate * duration)
 * publications per step, numbered from 0 in order, so step k holds the
 * sequence numbers after the totals of the steps before it. No message has
 * to overtake a delivery, and none races one.
 *
 * The socket is an AF_UNIX SOCK_SEQPACKET pair, so each message is one
 * send() and one recv() with its boundaries kept. Parent to reader: START
 * (B.t0, the clock the payloads' timestamps count from), UNACKED (sequence
 * numbers the broker did not acknowledge, whose deliveries must not count
 * as received), REPORT (a step's drain is over). Reader to parent: READY
 * (all its subscribers subscribed, with their connect latency), FAIL (setup
 * failed), LOST (a ready subscriber was closed), COUNT (its deliveries per
 * step so far, for the parent's drain check and progress line; sent at most
 * every 10 ms, and only when something arrived, so an idle reader stays
 * asleep) and FIGURES (the answer to REPORT: the step's received count and
 * latency histogram, and the per-step counters so far).
 *
 * A reader measures latency as run.c does: the read time of the bytes that
 * held the pub (the client library's rx_ns, CLOCK_MONOTONIC, one clock for
 * every process on the machine) minus the payload's scheduled send time. */
#include "readers.h"
#include "nodes.h"
#include "proc.h"
#include "run.h"
#include "loop.h"
#include "hc_nats.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum { RM_START = 1, RM_UNACKED, RM_REPORT, RM_READY, RM_FAIL, RM_LOST, RM_COUNT, RM_FIGURES };

#define UNACKED_CHUNK 4096

struct rm_start { uint32_t type; uint64_t t0; };
struct rm_unacked { uint32_t type; uint32_t n; uint64_t seq[UNACKED_CHUNK]; };
struct rm_report { uint32_t type; uint32_t step; };
struct rm_ready { uint32_t type; uint32_t subscribed; hist_t connect; };
struct rm_fail { uint32_t type; char why[300]; };
struct rm_lost { uint32_t type; uint32_t chan; int32_t code; };
struct rm_count { uint32_t type; uint64_t recv_all[MAX_STEPS]; };

/* A reader's counters of one step, since the run began. */
struct rstep {
    uint64_t recv_all;          /* deliveries of the step's publications */
    uint64_t gaps, dups;
    uint64_t late, late_max;    /* after the step's REPORT */
};

struct rm_figures {
    uint32_t type;
    uint32_t step;
    uint64_t received;          /* of the step's acknowledged publications, at REPORT */
    uint64_t t_last_rx;
    uint64_t bad_payload;       /* the whole run's so far */
    struct rstep s[MAX_STEPS];
    hist_t lat;                 /* the step's delivery latency */
};

/* Large enough for any message above. */
union rm_any {
    uint32_t type;
    struct rm_start start;
    struct rm_unacked unacked;
    struct rm_report report;
    struct rm_ready ready;
    struct rm_fail fail;
    struct rm_lost lost;
    struct rm_count count;
    struct rm_figures figures;
};

static union rm_any *msg;        /* one message, received or being built */

/* The first sequence number of each step, and one past the last step's. */
static uint64_t step_first[MAX_STEPS + 1];

static void plan_steps(void)
{
    step_first[0] = 0;
    for (int i = 0; i < B.nsteps; i++)
        step_first[i + 1] = step_first[i] + (uint64_t)llround(B.o.rates[i] * B.o.duration);
}

static int step_of_seq(uint64_t seq)
{
    int i = 0;
    while (i + 1 < B.nsteps && seq >= step_first[i + 1]) i++;
    return i;
}

/* One message; a blocking send, which the peer's loop empties promptly. */
static int send_msg(int fd, const void *m, size_t len)
{
    ssize_t n;
    do n = send(fd, m, len, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    return n == (ssize_t)len ? 0 : -1;
}

/* ================= the reader process ================= */

typedef struct rpeer {
    herald_client_t *c;
    uint32_t chan;
    uint32_t idx;               /* its index among the subscribers (B.peers), which picks its node */
    uint8_t state;              /* PS_* */
    uint64_t last_off;
    uint64_t t_connect;
} rpeer_t;

static struct {
    int fd;
    uv_loop_t loop;
    herald_ctx_t *hctx;
    herald_opts_t copts;
    uv_poll_t ctl;
    uv_timer_t count_timer, abort_timer;
    rpeer_t *peers;
    uint32_t npeers, next, inflight, ready, live;
    int started, failed, stopping;
    uint64_t t0;
    uint32_t *rec;              /* per publication: deliveries */
    uint64_t nseq;
    int cur_done;               /* steps [0, cur_done) are reported */
    struct rstep s[MAX_STEPS];
    hist_t *lat[MAX_STEPS];
    uint64_t t_last_rx[MAX_STEPS];
    uint64_t bad_payload;
    uint64_t sub_unacked;       /* deliveries of unacknowledged publications of the step being reported */
    hist_t *connect;
} R;

static void r_shutdown(void);

static void r_fail(const char *fmt, const char *a, const char *b)
{
    struct rm_fail f = { .type = RM_FAIL };

    if (R.failed) return;
    R.failed = 1;
    snprintf(f.why, sizeof f.why, fmt, a, b);
    send_msg(R.fd, &f, sizeof f);
    r_shutdown();
}

static void r_on_open(herald_client_t *c, const herald_msg_t *m, void *ud);
static void r_on_reply(herald_client_t *c, const herald_msg_t *m, void *ud);
static void r_on_pub(herald_client_t *c, const herald_msg_t *m, void *ud);
static void r_on_close(herald_client_t *c, const herald_close_info_t *info, void *ud);

static const herald_callbacks_t r_callbacks = { r_on_open, r_on_reply, r_on_pub, r_on_close, NULL };

static void r_fill(void)
{
    while (!R.stopping && R.inflight < B.o.concurrency && R.next < R.npeers) {
        rpeer_t *p = &R.peers[R.next++];
        int r;
        p->state = PS_CONNECTING;
        p->t_connect = uv_hrtime();
        if ((r = herald_client_new(R.hctx, nodes_sub_url(p->idx), &R.copts, &r_callbacks, p, &p->c))) {
            p->c = NULL;
            p->state = PS_CLOSED;
            r_fail("cannot set up connections to %s: %s", nodes_sub_url(p->idx)->name, herald_strerror(r));
            return;
        }
        R.inflight++;
        R.live++;
    }
}

static void r_subscribed(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    rpeer_t *p = arg;
    char why[200];

    (void)c;
    if (m->op != HERALD_OP_SUBSCRIBED) {
        snprintf(why, sizeof why, "subscribe refused with error %d: %.*s", m->code, (int)m->reason_len,
                 m->reason ? m->reason : "");
        r_fail("cannot set up connections to %s: %s", B.url.name, why);
        return;
    }
    p->last_off = m->offset;
    p->state = PS_READY;
    R.inflight--;
    if (++R.ready == R.npeers) {
        msg->ready.type = RM_READY;
        msg->ready.subscribed = R.ready;
        msg->ready.connect = *R.connect;
        send_msg(R.fd, &msg->ready, sizeof msg->ready);
        return;
    }
    r_fill();
}

static void r_on_open(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    rpeer_t *p = ud;
    size_t len;
    const char *ch = bench_chan(p->chan, &len);
    int r;

    (void)m;
    p->state = PS_OPEN;
    hist_record(R.connect, uv_hrtime() - p->t_connect);
    if ((r = herald_subscribe(c, ch, len, r_subscribed, p, NULL)))
        r_fail("cannot set up connections to %s: subscribe: %s", B.url.name, herald_strerror(r));
}

static void r_on_reply(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    (void)c; (void)m; (void)ud;
}

static void r_send_count(void)
{
    struct rm_count cnt;

    memset(&cnt, 0, sizeof cnt);
    cnt.type = RM_COUNT;
    for (int i = 0; i < B.nsteps; i++) cnt.recv_all[i] = R.s[i].recv_all;
    send_msg(R.fd, &cnt, sizeof cnt);
}

static void r_on_count_timer(uv_timer_t *t)
{
    (void)t;
    r_send_count();
}

/* The same checks as run.c's on_pub, into this reader's counters. */
static void r_on_pub(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    rpeer_t *p = ud;
    uint64_t ts, seq, at, lat;
    int k;

    (void)c;
    if (bench_payload_read(m->data, m->data_len, &ts, &seq) || seq >= R.nseq) {
        R.bad_payload++;
        if (B.o.target != TARGET_NATS) p->last_off = m->offset;
        return;
    }
    k = step_of_seq(seq);
    bench_order(&p->last_off, bench_pub_pos(m, seq), &R.s[k].gaps, &R.s[k].dups);
    at = R.t0 + ts;
    lat = m->rx_ns > at ? m->rx_ns - at : 0;
    if (k < R.cur_done) {
        R.s[k].late++;
        if (lat > R.s[k].late_max) R.s[k].late_max = lat;
        return;
    }
    R.rec[seq]++;
    R.s[k].recv_all++;
    if (m->rx_ns > R.t_last_rx[k]) R.t_last_rx[k] = m->rx_ns;
    hist_record(R.lat[k], lat);
    if (!uv_is_active((uv_handle_t *)&R.count_timer)) uv_timer_start(&R.count_timer, r_on_count_timer, 10, 0);
}

static void r_on_close(herald_client_t *c, const herald_close_info_t *info, void *ud)
{
    rpeer_t *p = ud;
    int prev = p->state;

    (void)c;
    p->c = NULL;
    p->state = PS_CLOSED;
    R.live--;
    if (R.stopping) {
        if (R.live == 0) uv_stop(&R.loop);
        return;
    }
    if (prev != PS_READY) {
        char why[200];
        snprintf(why, sizeof why, "%s%s%s", herald_strerror(info->err ? info->err : HERALD_E_PROTOCOL),
                 info->reason && *info->reason ? ": " : "", info->reason ? info->reason : "");
        r_fail("cannot set up connections to %s: %s", B.url.name, why);
        return;
    }
    struct rm_lost l = { RM_LOST, p->chan, info->code };
    send_msg(R.fd, &l, sizeof l);
}

static void r_report(uint32_t k)
{
    struct rm_figures *f = &msg->figures;

    if (k >= (uint32_t)B.nsteps) return;
    r_send_count();
    R.cur_done = (int)k + 1;
    f->type = RM_FIGURES;
    f->step = k;
    f->received = R.s[k].recv_all - R.sub_unacked;
    f->t_last_rx = R.t_last_rx[k];
    f->bad_payload = R.bad_payload;
    memcpy(f->s, R.s, sizeof f->s);
    f->lat = *R.lat[k];
    R.sub_unacked = 0;
    send_msg(R.fd, f, sizeof *f);
}

static void r_on_abort(uv_timer_t *t)
{
    (void)t;
    for (uint32_t i = 0; i < R.npeers; i++)
        if (R.peers[i].c) herald_client_abort(R.peers[i].c);
}

/* Close every connection; the loop stops once all are closed, or aborted after 3 s. */
static void r_shutdown(void)
{
    if (R.stopping) return;
    R.stopping = 1;
    uv_poll_stop(&R.ctl);
    uv_timer_stop(&R.count_timer);
    for (uint32_t i = 0; i < R.npeers; i++)
        if (R.peers[i].c) herald_close(R.peers[i].c, 1000, "bench done");
    if (R.live == 0) { uv_stop(&R.loop); return; }
    uv_timer_start(&R.abort_timer, r_on_abort, 3000, 0);
}

static void r_on_ctl(uv_poll_t *h, int status, int events)
{
    ssize_t n;

    (void)h; (void)status; (void)events;
    for (;;) {
        n = recv(R.fd, msg, sizeof *msg, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) { r_shutdown(); return; }     /* the parent closed it, or is gone */
        switch (msg->type) {
        case RM_START:
            if (R.started) break;
            R.started = 1;
            R.t0 = msg->start.t0;
            r_fill();
            break;
        case RM_UNACKED:
            for (uint32_t i = 0; i < msg->unacked.n && i < UNACKED_CHUNK; i++)
                if (msg->unacked.seq[i] < R.nseq) R.sub_unacked += R.rec[msg->unacked.seq[i]];
            break;
        case RM_REPORT: r_report(msg->report.step); break;
        default: break;
        }
        if (R.stopping) return;
    }
}

static void r_close_cb(uv_handle_t *h) { (void)h; }

/* Reader process: subscribers first, first + step, ... of B.nsubs; its socket @fd. */
static int reader_main(int fd, uint32_t first, uint32_t step)
{
    R.fd = fd;
    signal(SIGINT, SIG_IGN);                /* the parent handles ^C and then closes our socket */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    R.nseq = step_first[B.nsteps];
    R.npeers = (B.nsubs - first + step - 1) / step;
    R.peers = calloc(R.npeers ? R.npeers : 1, sizeof *R.peers);
    R.rec = calloc(R.nseq ? R.nseq : 1, sizeof *R.rec);
    R.connect = hist_new();
    for (int i = 0; i < B.nsteps; i++)
        if (!(R.lat[i] = hist_new())) return 1;
    if (!R.peers || !R.rec || !R.connect) return 1;
    for (uint32_t i = 0; i < R.npeers; i++) {
        R.peers[i].idx = first + i * step;
        R.peers[i].chan = R.peers[i].idx % B.o.channels;
    }
    R.copts.encoding = B.o.enc;
    R.copts.connect_timeout_ms = (unsigned)(B.o.connect_timeout * 1000);

    uv_loop_init(&R.loop);
    if (herald_ctx_new(&R.loop, &R.hctx)) return 1;
    if (B.o.target == TARGET_NATS) hc_ctx_speak_nats(R.hctx);
    uv_timer_init(&R.loop, &R.count_timer);
    uv_timer_init(&R.loop, &R.abort_timer);
    uv_poll_init(&R.loop, &R.ctl, fd);
    uv_poll_start(&R.ctl, UV_READABLE | UV_DISCONNECT, r_on_ctl);
    uv_run(&R.loop, UV_RUN_DEFAULT);

    uv_close((uv_handle_t *)&R.ctl, r_close_cb);
    uv_close((uv_handle_t *)&R.count_timer, r_close_cb);
    uv_close((uv_handle_t *)&R.abort_timer, r_close_cb);
    herald_ctx_free(R.hctx);
    uv_run(&R.loop, UV_RUN_DEFAULT);
    return 0;
}

/* ================= the parent ================= */

static struct reader {
    pid_t pid;
    int fd;
    uv_poll_t poll;
    int ready, reported, open;
    uint64_t recv_all[MAX_STEPS];   /* as last told, added into the steps */
    uint64_t bad_payload;           /* as last reported */
    struct rstep s[MAX_STEPS];      /* as last reported in FIGURES */
    long cpu0, cpu1;                /* clock ticks at the step's start and end */
} rd[READERS_MAX];

static int nreaders;
static step_t *collecting;
static void (*collected)(step_t *st);

int readers_spawn(void)
{
    int sv[2];
    uint32_t P = B.o.readers;

    if (!(msg = calloc(1, sizeof *msg))) {
        fprintf(stderr, "herald-bench: out of memory\n");
        return -1;
    }
    plan_steps();
    fflush(NULL);
    for (uint32_t k = 0; k < P; k++) {
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
            fprintf(stderr, "herald-bench: socketpair: %s\n", strerror(errno));
            goto fail;
        }
        rd[k].pid = fork();
        if (rd[k].pid < 0) {
            fprintf(stderr, "herald-bench: fork: %s\n", strerror(errno));
            close(sv[0]);
            close(sv[1]);
            goto fail;
        }
        if (rd[k].pid == 0) {
            /* The earlier readers' sockets are theirs and the parent's. */
            for (uint32_t j = 0; j < k; j++) close(rd[j].fd);
            close(sv[0]);
            _exit(reader_main(sv[1], k, P));
        }
        close(sv[1]);
        rd[k].fd = sv[0];
        rd[k].open = 1;
        nreaders++;
    }
    return 0;
fail:
    for (int k = 0; k < nreaders; k++) close(rd[k].fd);
    readers_reap();
    return -1;
}

static void on_reader(uv_poll_t *h, int status, int events);

void readers_attach(void)
{
    struct rm_start s;

    memset(&s, 0, sizeof s);            /* no uninitialised padding on the wire */
    s.type = RM_START;
    s.t0 = B.t0;

    for (int k = 0; k < nreaders; k++) {
        uv_poll_init(&B.loop, &rd[k].poll, rd[k].fd);
        rd[k].poll.data = &rd[k];
        uv_poll_start(&rd[k].poll, UV_READABLE | UV_DISCONNECT, on_reader);
        if (send_msg(rd[k].fd, &s, sizeof s)) bench_fail("reader process %d: %s", k, strerror(errno));
    }
}

/* Add a reader's latest per-step delivery counts into the steps. */
static void take_counts(struct reader *r, const uint64_t *recv_all)
{
    for (int i = 0; i < B.nsteps; i++) {
        uint64_t d = recv_all[i] - r->recv_all[i];
        if (!d) continue;
        B.steps[i].recv_all += d;
        B.deliveries += d;
        r->recv_all[i] = recv_all[i];
    }
}

/* The steps' gaps, duplicates and late deliveries: the readers' sums. */
static void sum_counters(void)
{
    B.bad_payload = 0;
    for (int k = 0; k < nreaders; k++) B.bad_payload += rd[k].bad_payload;
    for (int i = 0; i < B.nsteps; i++) {
        step_t *st = &B.steps[i];
        st->gaps = st->dups = st->late = st->late_max = 0;
        for (int k = 0; k < nreaders; k++) {
            st->gaps += rd[k].s[i].gaps;
            st->dups += rd[k].s[i].dups;
            st->late += rd[k].s[i].late;
            if (rd[k].s[i].late_max > st->late_max) st->late_max = rd[k].s[i].late_max;
        }
    }
}

static void take_figures(struct reader *r, const struct rm_figures *f)
{
    step_t *st = collecting;
    uint64_t ra[MAX_STEPS];

    if (!st || f->step != (uint32_t)(st - B.steps) || r->reported) return;
    r->reported = 1;
    memcpy(r->s, f->s, sizeof r->s);
    for (int i = 0; i < MAX_STEPS; i++) ra[i] = f->s[i].recv_all;
    take_counts(r, ra);
    r->bad_payload = f->bad_payload;
    st->received += f->received;
    if (f->t_last_rx > st->t_last_rx) st->t_last_rx = f->t_last_rx;
    hist_add(st->lat, &f->lat);
    sum_counters();
}

/* Every reader has answered the REPORT: the step can be judged. */
static void maybe_collected(void)
{
    step_t *st = collecting;

    if (!st) return;
    for (int k = 0; k < nreaders; k++)
        if (!rd[k].reported) return;
    collecting = NULL;
    collected(st);
}

static void on_reader(uv_poll_t *h, int status, int events)
{
    struct reader *r = h->data;
    int k = (int)(r - rd);
    ssize_t n;

    (void)status; (void)events;
    for (;;) {
        n = recv(r->fd, msg, sizeof *msg, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            uv_poll_stop(h);
            if (B.phase < PH_TEARDOWN) bench_fail("reader process %d exited during the run", k);
            return;
        }
        switch (msg->type) {
        case RM_READY:
            if (r->ready) break;
            r->ready = 1;
            bench_remote_ready(msg->ready.subscribed, &msg->ready.connect, (uint32_t)k, (uint32_t)nreaders);
            break;
        case RM_FAIL:
            bench_fail("reader process %d: %s", k, msg->fail.why);
            return;
        case RM_LOST: bench_remote_lost(msg->lost.chan, msg->lost.code); break;
        case RM_COUNT: take_counts(r, msg->count.recv_all); break;
        case RM_FIGURES:
            take_figures(r, &msg->figures);
            maybe_collected();
            break;
        default: break;
        }
        if (B.phase >= PH_TEARDOWN) return;
    }
}

void readers_collect(step_t *st, void (*done)(step_t *st))
{
    struct rm_report rep = { RM_REPORT, (uint32_t)(st - B.steps) };
    uint32_t n = 0;

    collecting = st;
    collected = done;
    for (int k = 0; k < nreaders; k++) rd[k].reported = 0;
    /* The unacknowledged publications of the step, in chunks, then the request. */
    for (uint64_t s = st->seq_start; s < st->seq_end; s++) {
        if (B.acked[s]) continue;
        msg->unacked.seq[n++] = s;
        if (n == UNACKED_CHUNK || s + 1 == st->seq_end) {
            msg->unacked.type = RM_UNACKED;
            msg->unacked.n = n;
            for (int k = 0; k < nreaders; k++) send_msg(rd[k].fd, &msg->unacked, sizeof msg->unacked);
            n = 0;
        }
    }
    if (n) {
        msg->unacked.type = RM_UNACKED;
        msg->unacked.n = n;
        for (int k = 0; k < nreaders; k++) send_msg(rd[k].fd, &msg->unacked, sizeof msg->unacked);
    }
    for (int k = 0; k < nreaders; k++)
        if (send_msg(rd[k].fd, &rep, sizeof rep)) {
            bench_fail("reader process %d: %s", k, strerror(errno));
            return;
        }
}

void readers_cpu_start(void)
{
    for (int k = 0; k < nreaders; k++) rd[k].cpu0 = proc_ticks(rd[k].pid);
}

void readers_cpu_stop(step_t *st)
{
    double wall = (double)(st->t_end - st->t_start) / 1e9, tick = (double)sysconf(_SC_CLK_TCK);

    st->readers_cpu = st->readers_cpu_max = 0;
    if (wall <= 0) return;
    for (int k = 0; k < nreaders; k++) {
        long t = proc_ticks(rd[k].pid);
        double pct = t >= 0 && rd[k].cpu0 >= 0 ? 100.0 * (double)(t - rd[k].cpu0) / tick / wall : 0;
        st->readers_cpu += pct;
        if (pct > st->readers_cpu_max) st->readers_cpu_max = pct;
    }
}

static void poll_closed(uv_handle_t *h) { (void)h; }

void readers_stop(void)
{
    for (int k = 0; k < nreaders; k++) {
        if (!rd[k].open) continue;
        rd[k].open = 0;
        uv_close((uv_handle_t *)&rd[k].poll, poll_closed);
        close(rd[k].fd);
    }
}

void readers_reap(void)
{
    for (int k = 0; k < nreaders; k++) {
        int st;
        while (waitpid(rd[k].pid, &st, 0) < 0 && errno == EINTR) {}
    }
    nreaders = 0;
    free(msg);
    msg = NULL;
}
