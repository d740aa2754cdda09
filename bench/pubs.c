/* bench/pubs.c - the publishing scenarios: fanout, channels, cliff and publish.
 *
 * Owns: their entries (struct bench_scenario, scenario.h): flags, defaults,
 * help, the connections each one opens, publish's closed loop, and their
 * part of the report (the table of steps, or publish's acks). Does not own:
 * the connections, the open-loop schedule, the counting and judging of
 * deliveries (run.c, their driver), flags in general (main.c), the report's
 * frame (report.c).
 *
 * fanout and channels publish open loop at each --rate in turn, with
 * run.c's schedule and its judging of a step. publish is one closed-loop
 * step instead: every WebSocket publisher keeps --window publications in
 * flight (every HTTP connection one, with --publish rest) and sends the next
 * as each is answered, so it measures the rate the broker commits at rather
 * than a rate it is given. cliff is channels with the issue-14 preset
 * (5,000 channels x 2, 5k to 40k publications/s) and a verdict on how p99
 * grows from step to step: the regression check of the former cliff. */
#include "nodes.h"
#include "run.h"
#include "report.h"
#include "scenario.h"

/* The flags all three take. */
#define PUBS_FLAGS                                                                                             \
    (BF_COMMON | BF(PUBLISH_URL) | BF(SVG) | BF(SIZE) | BF(SUBSCRIBERS) | BF(PUBLISH) | BF(PUBLISHERS) | BF(DRAIN_TIMEOUT) |      \
     BF(NAMESPACE))

/* ---- connections ---- */

/* @nsubs subscriber connections, spread over the channels, then the
 * WebSocket publishers; @nsteps steps. */
static void plan(unsigned nsubs, int nsteps)
{
    B.nsubs = nsubs;
    B.npubs = B.o.publish == PUB_WS ? B.o.publishers : 0;
    B.npeers = B.nsubs + B.npubs;
    B.nsteps = nsteps;
}

static void fanout_plan(void)
{
    B.o.channels = 1;
    plan(B.o.subscribers, B.o.nrates);
}

static void channels_plan(void)
{
    plan(B.o.subscribers * B.o.channels, B.o.nrates);
}

static void publish_plan(void)
{
    plan(B.o.subscribers * B.o.channels, 1);
}

/* ---- flags ---- */

static void fanout_defaults(struct opts *o)
{
    o->subscribers = 100;
}

static void channels_defaults(struct opts *o)
{
    o->subscribers = 2;
    o->channels = 100;
}

/* --readers: at least one subscriber each. */
static int readers_check(const struct opts *o, uint64_t nsubs, char *why, size_t n)
{
    if (o->readers <= nsubs) return 0;
    snprintf(why, n, "--readers %u: more reader processes than the %llu subscriber connections", o->readers,
             (unsigned long long)nsubs);
    return -1;
}

static int fanout_check(struct opts *o, uint64_t given, char *why, size_t n)
{
    (void)given;
    if (o->subscribers > 0) return readers_check(o, o->subscribers, why, n);
    snprintf(why, n, "fanout needs --subscribers >= 1");
    return -1;
}

static int channels_check(struct opts *o, uint64_t given, char *why, size_t n)
{
    (void)given;
    if (o->subscribers > 0) return readers_check(o, (uint64_t)o->subscribers * o->channels, why, n);
    snprintf(why, n, "channels needs --subscribers >= 1");
    return -1;
}

/* cliff: the shape of the former cliff (docs/benchmarks.md, "Many small
 * channels"), each default replaced by the flag that names it. */
static void cliff_defaults(struct opts *o)
{
    static const double rates[] = { 5000, 10000, 15000, 20000, 25000, 30000, 40000 };

    o->subscribers = 2;
    o->channels = 5000;
    o->nrates = (int)(sizeof rates / sizeof *rates);
    for (int i = 0; i < o->nrates; i++) o->rates[i] = rates[i];
    o->p99_max_ms = 10;
    o->drain_timeout = 3;
}

static int publish_check(struct opts *o, uint64_t given, char *why, size_t n)
{
    (void)why; (void)n;
    if (!(given & BF(PUBLISHERS))) o->publishers = 4;
    return 0;
}

/* ---- publish's closed loop ---- */

/* The step starts with --window publications on every WebSocket publisher,
 * or one on every HTTP connection. */
static void publish_start_step(step_t *st)
{
    st->rate = 0;
    st->total = 0;
    if (B.o.publish == PUB_REST) {
        for (unsigned k = 0; k < B.o.publishers; k++) bench_publish_one(st, uv_hrtime(), NULL);
    } else {
        for (uint32_t k = 0; k < B.npubs; k++)
            for (unsigned w = 0; w < B.o.window && B.phase == PH_RUN; w++)
                bench_publish_one(st, uv_hrtime(), &B.peers[B.nsubs + k]);
    }
}

/* Every answer lets the next request go: over REST on the pool, over
 * WebSocket on the publisher that was answered (not after a publication
 * that could not be sent, which would only fail again). */
static void publish_on_ack(uint64_t seq, const herald_msg_t *published, peer_t *via)
{
    (void)seq;
    if (B.phase != PH_RUN) return;
    if (B.o.publish == PUB_REST) bench_publish_one(&B.steps[0], uv_hrtime(), NULL);
    else if (published && via->state == PS_READY) bench_publish_one(&B.steps[0], uv_hrtime(), via);
}

/* ---- the report ---- */

static void human_head(FILE *f)
{
    const struct opts *o = &B.o;

    fprintf(f, "  publish via %s (%u %s)  %u-byte payloads\n  %u channel(s) x %u subscriber(s) = %u subscriptions",
            o->publish == PUB_REST ? "REST" : "WebSocket", o->publishers,
            o->publish == PUB_REST ? "HTTP connections" : "publishers", o->size, o->channels,
            o->channels ? B.nsubs / o->channels : 0, B.nsubs);
    if (o->readers) fprintf(f, " in %u reader processes", o->readers);
}

/* fanout, channels, cliff: a row per step, then the best sustained rate. */
static void human_steps(FILE *f)
{
    const struct opts *o = &B.o;
    int best = report_best_step();
    char a[32], b[32], c[32];

    fprintf(f, "\n%9s %9s %9s %7s %11s %11s %8s %9s %8s %8s %8s %8s %8s %6s", "rate/s", "published",
            "acked", "shed", "expected", "received", "lost%", "deliv/s", "p50ms", "p90ms", "p99ms", "p99.9ms",
            "maxms", "bench%");
    if (o->readers) fprintf(f, " %8s %8s", "readers%", "reader%");
    fprintf(f, " %6s  %s\n", "broker%", "ok");
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        if (!st->lat) continue;
        fprintf(f, "%9.0f %9llu %9llu %7llu %11llu %11llu %8.3f %9s", st->rate, (unsigned long long)st->published,
                (unsigned long long)st->acked, (unsigned long long)st->pub_shed, (unsigned long long)st->expected,
                (unsigned long long)st->received,
                st->expected ? 100.0 * (1.0 - (double)st->received / (double)st->expected) : 0,
                report_si(report_dps(st), a, sizeof a));
        report_lat_row(f, st->lat);
        fprintf(f, " %6.0f", st->bench_cpu);
        if (o->readers) fprintf(f, " %8.0f %8.0f", st->readers_cpu, st->readers_cpu_max);
        fprintf(f, " %6s  %s\n",
                st->broker_cpu >= 0 ? (snprintf(b, sizeof b, "%.0f", st->broker_cpu), b) : "-",
                st->sustained ? "yes" : "no");
    }
    for (int i = 0; i < B.nsteps; i++)
        if (B.steps[i].late)
            fprintf(f, "step %.0f/s: %llu deliveries arrived after its drain timeout (worst %.0f ms): counted as lost\n",
                    B.steps[i].rate, (unsigned long long)B.steps[i].late, report_ms(B.steps[i].late_max));
    nodes_report(f);
    if (best >= 0) {
        fprintf(f, "\nmax sustained rate: %s publishes/s = %s deliveries/s (>= 99.9%% delivered, p99 <= %g ms)\n",
                report_si(B.steps[best].rate, a, sizeof a), report_si(report_dps(&B.steps[best]), c, sizeof c),
                o->p99_max_ms);
    } else {
        fprintf(f, "\nmax sustained rate: none of the rates met >= 99.9%% delivered with p99 <= %g ms\n", o->p99_max_ms);
    }
}

static void human_publish(FILE *f)
{
    const struct opts *o = &B.o;
    const step_t *st = &B.steps[0];
    double secs = report_step_secs(st);
    char a[32];

    fprintf(f, "\npublished %llu, acked %llu, errors %llu (shed: %llu) in %.2f s: %s acks/s (window %u per publisher)\n",
            (unsigned long long)st->published, (unsigned long long)st->acked,
            (unsigned long long)st->pub_errors, (unsigned long long)st->pub_shed, secs, report_si(secs > 0 ? st->acked / secs : 0, a, sizeof a),
            o->publish == PUB_REST ? 1 : o->window);
    fprintf(f, "ack latency ms:  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
            report_ms(hist_percentile(st->ack, 50)), report_ms(hist_percentile(st->ack, 90)),
            report_ms(hist_percentile(st->ack, 99)), report_ms(hist_percentile(st->ack, 99.9)),
            report_ms(st->ack ? st->ack->max : 0));
    if (B.nsubs)
        fprintf(f, "deliveries: expected %llu, received %llu; latency ms p50 %.3f p99 %.3f\n",
                (unsigned long long)st->expected, (unsigned long long)st->received,
                report_ms(hist_percentile(st->lat, 50)), report_ms(hist_percentile(st->lat, 99)));
    fprintf(f, "bench CPU %.0f%%", st->bench_cpu);
    if (st->broker_cpu >= 0) fprintf(f, ", broker CPU %.0f%%", st->broker_cpu);
    fprintf(f, "\n");
    nodes_report(f);
}

static void json_steps(FILE *f)
{
    hist_t *all = hist_new(), *ack = hist_new();
    uint64_t exp = REPORT_TOTAL(expected), rec = REPORT_TOTAL(received);
    double dps_max = 0;

    fprintf(f, "\"steps\":[");
    for (int i = 0; i < B.nsteps; i++) {
        step_t *st = &B.steps[i];
        double s = report_step_secs(st), d = report_dps(st);
        if (!st->lat) continue;
        if (all) hist_add(all, st->lat);
        if (ack) hist_add(ack, st->ack);
        if (d > dps_max) dps_max = d;
        fprintf(f, "%s{\"rate\":%.0f,\"seconds\":%.3f,\"published\":%llu,\"acked\":%llu,\"publish_errors\":%llu,"
                   "\"shed\":%llu,\"publishes_per_sec\":%.1f,\"expected\":%llu,\"received\":%llu,\"lost\":%lld,"
                   "\"delivery_ratio\":%.6f,\"deliveries_per_sec\":%.1f,\"gaps\":%llu,\"duplicates\":%llu,"
                   "\"late\":%llu,\"late_max_ms\":%.3f,\"drain_seconds\":%.3f,\"bench_cpu_pct\":%.1f,",
                i ? "," : "", st->rate, s, (unsigned long long)st->published, (unsigned long long)st->acked,
                (unsigned long long)st->pub_errors, (unsigned long long)st->pub_shed, s > 0 ? st->acked / s : 0,
                (unsigned long long)st->expected, (unsigned long long)st->received,
                (long long)st->expected - (long long)st->received,
                st->expected ? (double)st->received / (double)st->expected : 0, d,
                (unsigned long long)st->gaps, (unsigned long long)st->dups,
                (unsigned long long)st->late, report_ms(st->late_max),
                st->t_drained > st->t_end ? (double)(st->t_drained - st->t_end) / 1e9 : 0, st->bench_cpu);
        if (st->broker_cpu >= 0) fprintf(f, "\"broker_cpu_pct\":%.1f,", st->broker_cpu);
        if (B.o.readers)
            fprintf(f, "\"readers_cpu_pct\":%.1f,\"readers_cpu_max_pct\":%.1f,", st->readers_cpu,
                    st->readers_cpu_max);
        nodes_json_step(f, st);
        report_json_step_end(f, "latency_ms", st);
    }
    fprintf(f, "],\"published\":%llu,\"acked\":%llu,\"shed\":%llu,\"expected\":%llu,\"received\":%llu,\"lost\":%lld,"
               "\"deliveries_per_sec\":%.1f,",
            (unsigned long long)REPORT_TOTAL(published), (unsigned long long)REPORT_TOTAL(acked),
            (unsigned long long)REPORT_TOTAL(pub_shed), (unsigned long long)exp, (unsigned long long)rec, (long long)exp - (long long)rec, dps_max);
    report_json_lat(f, "latency_ms", all);
    fprintf(f, ",");
    report_json_lat(f, "ack_latency_ms", ack);
    report_json_max_sustained(f, "max_sustained_rate", "max_sustained_deliveries_per_sec", report_dps);
    fprintf(f, ",\"p99_max_ms\":%g", B.o.p99_max_ms);
    hist_free(all);
    hist_free(ack);
}

static void json_head(FILE *f)
{
    const struct opts *o = &B.o;

    fprintf(f, ",\"namespace\":\"%s\"", o->ns);
    fprintf(f, ",\"publish\":\"%s\",\"size\":%u,\"channels\":%u,\"subscribers\":%u,\"subscribers_per_channel\":%u,"
               "\"publishers\":%u,\"readers\":%u", o->publish == PUB_REST ? "rest" : "ws", o->size, o->channels,
            B.nsubs, o->channels ? B.nsubs / o->channels : 0, o->publishers, o->readers);
    nodes_json(f);
    fprintf(f, ",");
}

static void json_pubs(FILE *f)
{
    json_head(f);
    json_steps(f);
}

/* ---- cliff's verdict ---- */

/* Past its limit the broker must degrade gradually: p99 grows with the
 * overload, or the broker sheds (error 135). A step whose p99 is more than
 * CLIFF_JUMP times the last judged step's, and above CLIFF_FLOOR_MS, after an
 * offered rate at most CLIFF_RATE_STEP times higher, with the broker under
 * CLIFF_BUSY_PCT of a core (when --pid says), is the cliff: latency that
 * jumps while the core still has room is a feedback loop, not a limit. A
 * step where the bench itself was that busy measures the bench: judging
 * stops there. */
#define CLIFF_JUMP 10.0
#define CLIFF_FLOOR_MS 200.0
#define CLIFF_RATE_STEP 2.0
#define CLIFF_BUSY_PCT 90.0

enum cliff_verdict { CLIFF_GRADUAL, CLIFF_FOUND, CLIFF_BENCH_BOUND };

static struct {
    enum cliff_verdict v;
    int at, prev;                 /* the steps judged last: the cliff's two sides, or where judging stopped */
    double worst;                 /* the largest step-to-step growth of p99 judged */
} cv;

static void cliff_judge(void)
{
    double last_p99 = -1, last_rate = 0;

    cv.v = CLIFF_GRADUAL;
    cv.at = cv.prev = -1;
    cv.worst = 0;
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        double p99;
        if (!st->lat) continue;
        if (st->bench_cpu >= CLIFF_BUSY_PCT) {
            cv.v = CLIFF_BENCH_BOUND;
            cv.at = i;
            return;
        }
        p99 = report_ms(hist_percentile(st->lat, 99));
        if (last_p99 >= 0) {
            double base = last_p99 > 1 ? last_p99 : 1, grow = p99 / base;
            if (grow > cv.worst) cv.worst = grow;
            if (grow > CLIFF_JUMP && p99 > CLIFF_FLOOR_MS && st->rate <= CLIFF_RATE_STEP * last_rate &&
                (st->broker_cpu < 0 || st->broker_cpu < CLIFF_BUSY_PCT)) {
                cv.v = CLIFF_FOUND;
                cv.at = i;
                return;
            }
        }
        cv.prev = i;
        last_p99 = p99;
        last_rate = st->rate;
    }
}

static void cliff_human(FILE *f)
{
    human_steps(f);
    cliff_judge();
    if (cv.v == CLIFF_FOUND) {
        const step_t *a = &B.steps[cv.prev], *b = &B.steps[cv.at];
        char cpu[16] = "?";
        if (b->broker_cpu >= 0) snprintf(cpu, sizeof cpu, "%.0f", b->broker_cpu);
        fprintf(f, "verdict: CLIFF between %.0f/s and %.0f/s: p99 %.1f -> %.1f ms with the broker at %s%% of a core\n",
                a->rate, b->rate, report_ms(hist_percentile(a->lat, 99)), report_ms(hist_percentile(b->lat, 99)), cpu);
    } else if (cv.v == CLIFF_BENCH_BOUND) {
        if (cv.prev >= 0)
            fprintf(f, "verdict: no cliff up to %.0f/s (p99 grew at most %.1fx from one step to the next); ",
                    B.steps[cv.prev].rate, cv.worst);
        else
            fprintf(f, "verdict: nothing judged; ");
        fprintf(f, "from %.0f/s the bench was at %.0f%% of its core, so those steps measure the bench, not the "
                   "broker\n", B.steps[cv.at].rate, B.steps[cv.at].bench_cpu);
    } else {
        fprintf(f, "verdict: gradual (p99 grew at most %.1fx from one step to the next)\n", cv.worst);
    }
}

static void cliff_json(FILE *f)
{
    static const char *const names[] = { "gradual", "cliff", "bench_bound" };

    json_head(f);
    cliff_judge();
    fprintf(f, "\"verdict\":\"%s\",\"verdict_rate\":", names[cv.v]);
    if (cv.v == CLIFF_GRADUAL) fprintf(f, "null");
    else fprintf(f, "%.0f", B.steps[cv.at].rate);
    fprintf(f, ",\"p99_growth_max\":%.2f,", cv.worst);
    json_steps(f);
}

/* The run as channels runs it; exit status 3 when its report found the
 * cliff (judged there: bench_run() frees the steps' figures before it returns). */
static int cliff_run(void)
{
    int rc = bench_run();

    return rc ? rc : cv.v == CLIFF_FOUND ? 3 : 0;
}

static void json_publish(FILE *f)
{
    const struct opts *o = &B.o;
    const step_t *st = &B.steps[0];
    double s = report_step_secs(st);

    json_head(f);
    fprintf(f, "\"window\":%u,\"acks_per_sec\":%.1f,", o->publish == PUB_REST ? 1 : o->window,
            s > 0 ? st->acked / s : 0);
    json_steps(f);
}

/* Without subscribers publish has only ack latency to chart. */
static const hist_t *publish_chart(const char **what)
{
    *what = B.nsubs ? "delivery" : "ack";
    return B.nsubs ? B.steps[0].lat : B.steps[0].ack;
}

const struct bench_scenario bench_fanout = {
    .name = "fanout",
    .summary = "one channel, N subscribers, open-loop publishing at a target rate; delivery latency and counts",
    .example = "herald-bench fanout --url ws://127.0.0.1:8080/ws --subscribers 1000 --rate 1000,3000,6000 "
               "--duration 10",
    .flags = PUBS_FLAGS | BF(RATE) | BF(P99MAX) | BF(READERS) | BF(TARGET),
    .defaults = fanout_defaults,
    .check_opts = fanout_check,
    .run = bench_run,
    .plan = fanout_plan,
    .report_head = human_head,
    .report_body = human_steps,
    .report_json = json_pubs,
};

const struct bench_scenario bench_channels = {
    .name = "channels",
    .summary = "M channels x K subscribers each, publications spread over the channels",
    .example = "herald-bench channels --channels 5000 --subscribers 2 --rate 30000 --duration 10",
    .flags = PUBS_FLAGS | BF(CHANNELS) | BF(RATE) | BF(P99MAX) | BF(READERS) | BF(TARGET),
    .defaults = channels_defaults,
    .check_opts = channels_check,
    .run = bench_run,
    .plan = channels_plan,
    .report_head = human_head,
    .report_body = human_steps,
    .report_json = json_pubs,
};

const struct bench_scenario bench_cliff = {
    .name = "cliff",
    .summary = "the former many-channels cliff as a regression check: channels with 5,000 channels x 2 "
               "subscribers stepped from 5k to 40k publications/s, and a verdict on whether p99 grows gradually",
    .example = "herald-bench cliff --url ws://127.0.0.1:8080/ws --encoding msgpack --pid $(pidof herald)",
    .notes = "Defaults: --channels 5000 --subscribers 2 --rate 5000,10000,15000,20000,25000,30000,40000\n"
             "--p99-max 10 --drain-timeout 3; each can be given. The verdict: a step whose p99 is more than\n"
             "10 times the previous step's (and over 200 ms) after at most twice the rate, with the broker\n"
             "under 90% of a core (known with --pid), is a cliff: exit status 3. From the first step where\n"
             "the bench itself is at 90% of its core, nothing is judged (verdict: bench_bound).\n",
    .flags = PUBS_FLAGS | BF(CHANNELS) | BF(RATE) | BF(P99MAX) | BF(READERS) | BF(TARGET),
    .defaults = cliff_defaults,
    .check_opts = channels_check,
    .run = cliff_run,
    .plan = channels_plan,
    .report_head = human_head,
    .report_body = cliff_human,
    .report_json = cliff_json,
};

const struct bench_scenario bench_publish = {
    .name = "publish",
    .summary = "closed-loop publishing with a window per publisher: the broker's max commit rate and ack latency",
    .example = "herald-bench publish --publishers 4 --window 64 --publish ws --duration 10",
    .flags = PUBS_FLAGS | BF(CHANNELS) | BF(WINDOW),
    .check_opts = publish_check,
    .run = bench_run,
    .plan = publish_plan,
    .start_step = publish_start_step,
    .on_ack = publish_on_ack,
    .report_head = human_head,
    .report_body = human_publish,
    .report_json = json_publish,
    .chart_latency = publish_chart,
};
