/* bench/main.c - herald-bench: flags, help, and the choice of scenario.
 *
 * Owns: the one table of flags that drives parsing, validation and both
 * levels of --help, so a flag cannot exist without being documented, and
 * the flags' common defaults. Each scenario names the flags it takes
 * (bench_scenario.flags); giving a flag to another is an error rather than
 * being silently ignored. Does not own: the scenarios' own defaults, checks
 * and help (scenario.h, each scenario's file), the run (its driver). */
#include "scenario.h"
#include "nodes.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* getopt_long() returns a flag's id plus this: above every short option. */
#define OPT_BASE 256

struct flag {
    const char *name;
    int id;                     /* BF_* */
    int has_arg;
    const char *arg;
    const char *help;
};

static const struct flag flags[] = {
    { "url", BF_URL, 1, "URL[,URL...]",
      "broker WebSocket URL (default ws://127.0.0.1:8080/ws); REST uses its host and port. fanout, channels, "
      "publish: several nodes of a cluster, comma-separated (at most 16): the subscribers are spread over them "
      "round-robin (the k-th subscriber of channel c on node (c + k) mod N) and the publishers connect to "
      "--publish-url" },
    { "publish-url", BF_PUBLISH_URL, 1, "URL",
      "where the publishers connect, over WebSocket or, with --publish rest, REST to its host and port "
      "(default: the first --url)" },
    { "duration", BF_DURATION, 1, "SECONDS",
      "publishing time per rate step (fanout, channels, cliff, publish), churn time per step (presence), hold time "
      "(idle), the most time to spend opening connections (connect), the publishing time over which the "
      "--cycles are spread (recover, default 10), or the time per step of updates (scores) or holds (seats); "
      "default 5" },
    { "encoding", BF_ENCODING, 1, "json|msgpack", "WebSocket subprotocol and REST body format (default json)" },
    { "json", BF_JSON, 0, NULL, "print exactly one JSON object on stdout instead of a table" },
    { "svg", BF_SVG, 1, "FILE",
      "write an SVG chart: latency by percentile, or deliveries/s (presence: joins+leaves/s) and p99 per step "
      "when --rate (--churn) has several steps" },
    { "size", BF_SIZE, 1, "BYTES",
      "payload size: each publication's data is a string of this many bytes holding its scheduled send time "
      "and sequence number (default 100, at least 20); scores: each update also sets the key \"pad\" to a "
      "string of this many bytes (default: no pad)" },
    { "subscribers", BF_SUBSCRIBERS, 1, "N",
      "fanout, recover: subscriber connections on the one channel (default 100); channels: subscribers per "
      "channel (default 2); publish: subscribers per channel (default 0)" },
    { "channels", BF_CHANNELS, 1, "M",
      "channels; publications go to them in turn (default 100 for channels, 1 for publish)" },
    { "rate", BF_RATE, 1, "R[,R...]",
      "target publications per second, open loop; several comma-separated rates run as steps and the report "
      "names the highest sustained one (default 1000); recover: one rate only; scores: score updates per "
      "second (default 100); seats: holds per second, open loop (default: none, --clients closed loops)" },
    { "publish", BF_PUBLISH, 1, "ws|rest",
      "publish over WebSocket connections or with POST /api/publish over keep-alive HTTP/1.1 (default ws)" },
    { "publishers", BF_PUBLISHERS, 1, "N",
      "WebSocket publisher connections, or HTTP connections with --publish rest (default: 1 ws / 16 rest; "
      "publish: 4); scores: HTTP connections for the updates (default 4)" },
    { "window", BF_WINDOW, 1, "N", "publish over ws: publications in flight per publisher (default 64)" },
    { "p99-max", BF_P99MAX, 1, "MS",
      "a step is sustained when >= 99.9% of deliveries arrived and p99 <= MS (default 100); presence: the p99 "
      "of event latency and of unsubscribe/subscribe ack latency; seats with --rate: of hold latency" },
    { "connections", BF_CONNECTIONS, 1, "N", "connections to open (default 1000)" },
    { "pid", BF_PID, 1, "PID[,PID...]",
      "the broker's process id: idle reads its VmRSS before and after connecting and reports bytes per "
      "connection; the others report its CPU use per step. fanout, channels, cliff, publish: one PID per --url, in "
      "the same order, and the report shows the CPU of each node per step (the broker column: their sum)" },
    { "concurrency", BF_CONCURRENCY, 1, "N", "connection attempts in flight at once (default 256)" },
    { "connect-timeout", BF_CONNECT_TIMEOUT, 1, "SECONDS",
      "limit for one connection's TCP connect, WebSocket upgrade and Herald connect (default 10)" },
    { "drain-timeout", BF_DRAIN_TIMEOUT, 1, "SECONDS",
      "after each step, the longest wait for outstanding acks and deliveries (default 5); presence: also bounds "
      "the wait for the broker to count every member, and for the final count; recover: also for the last "
      "recovery replies; scores, seats: until every viewer is at the last offset written" },
    { "settle", BF_SETTLE, 1, "SECONDS", "idle: wait after connecting before reading the broker's RSS (default 1)" },
    { "namespace", BF_NAMESPACE, 1, "NS",
      "namespace of the bench's channels, named NS:RUNID-N with a fresh RUNID per run; its broker options "
      "(history, durability) apply (default bench). presence: the one channel NS:presence-bench, whose "
      "namespace needs presence=on and join_leave=on (default chat). recover: the one channel NS:RUNID-0, "
      "whose namespace needs history on with a history_size above what one outage misses (default chat). "
      "scores: the one channel NS:bench-RUNID, whose namespace needs state=on (default scores)" },
    { "members", BF_MEMBERS, 1, "N",
      "member connections, each subscribed to the channel and churned in turn (default 1000)" },
    { "watchers", BF_WATCHERS, 1, "N",
      "further member connections that are never churned: they count the join/leave events (and "
      "presence_batch totals) and measure event latency (default 5, at most 1000)" },
    { "churn", BF_CHURN, 1, "R[,R...]",
      "target churn operations per second, open loop; one operation is one member's unsubscribe (a leave) "
      "followed, once acknowledged, by its subscribe (a join), so R operations/s are 2R joins+leaves/s. "
      "Several comma-separated rates run as steps and the report names the highest sustained one "
      "(default 100)" },
    { "rejoin-delay", BF_REJOIN_DELAY, 1, "SECONDS",
      "wait between a leave's acknowledgement and the rejoin (default 0: at once); a delay above the "
      "broker's presence_grace turns rejoins into real leave+join pairs when the grace is on" },
    { "fraction", BF_FRACTION, 1, "F",
      "share of the subscribers that drop in each cycle, above 0 and at most 1; at least one subscriber "
      "(default 0.2)" },
    { "outage", BF_OUTAGE, 1, "SECONDS",
      "how long the dropped subscribers stay away while publishing goes on; shorter than --duration / "
      "--cycles (default 2)" },
    { "cycles", BF_CYCLES, 1, "N",
      "disconnect/reconnect cycles, one in the middle of each of N equal slots of --duration (default 3)" },
    { "expect-unrecovered", BF_EXPECT_UNRECOVERED, 0, NULL,
      "the broker keeps less history than an outage misses: \"recovered\": false is expected and reported as "
      "such; the run fails if every recovery succeeds instead (for testing)" },
    { "viewers", BF_VIEWERS, 1, "N",
      "connections subscribed to the state channel, each keeping its view of it (default 10000 for scores, "
      "10 for seats)" },
    { "clients", BF_CLIENTS, 1, "K",
      "seats: HTTP connections for holds and releases; without --rate, K clients each hold, release and hold again "
      "in a closed loop (default 16); orders, payments: HTTP connections, each a closed loop with one request in "
      "flight (default 16)" },
    { "seats", BF_SEATS, 1, "N", "seats in the map, 2 to 20000 (default 1000)" },
    { "section", BF_SECTION, 1, "N", "seats per section (default 100)" },
    { "hot", BF_HOT, 1, "F",
      "the contention: holds pick their 2 to 4 seats from the first F of the seats, above 0 and at most 1 "
      "(default 0.1)" },
    { "ttl", BF_TTL, 1, "SECONDS", "ttl of each hold; holds are released at once anyway (default 60)" },
    { "skus", BF_SKUS, 1, "N",
      "orders: SKUs each order picks one unit of, at random; 1 is the single hot SKU (default 1)" },
    { "stock", BF_STOCK, 1, "N",
      "orders, payments: units of each SKU set before the run (default 1000000); a smaller stock sells out "
      "and measures the refusals (409, code 124)" },
    { "orders", BF_ORDERS, 1, "N", "payments: orders created (not timed) before the events are posted (default 5000)" },
    { "secret", BF_SECRET, 1, "S",
      "payments: the broker's [adapter commerce] webhook_secret, to sign the events with (required)" },
    { "sse", BF_SSE, 1, "N", "sse: Server-Sent Events streams on the channel (default: as many as --subscribers)" },
    { "readers", BF_READERS, 1, "P",
      "fanout, channels, cliff: put the subscriber connections in P reader processes (1 to 64) that do nothing but "
      "read and check, like remote clients: each sleeps in epoll between messages, so the broker's writes "
      "find their readers asleep, as with real, mostly idle subscribers. Each opens its share with "
      "--concurrency attempts in flight. They report counts, latency and their CPU (readers%, the busiest: "
      "reader%) to the bench, which publishes and reports as usual (default 0: the subscribers are read in "
      "the bench's own loop)" },
    { "target", BF_TARGET, 1, "T",
      "fanout, channels, cliff: the broker measured, herald (default) or nats: nats-server's WebSocket listener "
      "(--url ws://127.0.0.1:PORT), spoken to in NATS core's protocol through the same connections, payloads "
      "and checks; subjects are NAMESPACE.RUN.N. NATS acknowledges no publication: a publication counts as "
      "acked when the PONG of the PING the publisher sends after it arrives (the server has processed it); "
      "it has no offsets, so gaps and duplicates are read from the payloads' sequence numbers (one "
      "publisher only); WebSocket publishing only" },
    { "quiet", BF_QUIET, 0, NULL, "no progress line on stderr (it is shown only when stderr is a terminal)" },
    { "help", BF_HELP, 0, NULL, "show help (herald-bench SCENARIO --help for a scenario's flags)" },
};
#define NFLAGS (sizeof flags / sizeof flags[0])

static void wrap(FILE *f, const char *text, int indent, int width)
{
    int col = indent;
    const char *p = text;

    while (*p) {
        const char *sp = strchr(p, ' ');
        int wl = sp ? (int)(sp - p) : (int)strlen(p);
        if (col + wl > width && col > indent) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        }
        fprintf(f, "%.*s", wl, p);
        col += wl;
        p += wl;
        if (*p == ' ') { p++; if (*p) { fputc(' ', f); col++; } }
    }
    fputc('\n', f);
}

static void usage_flags(FILE *f, uint64_t mask)
{
    for (size_t i = 0; i < NFLAGS; i++) {
        char left[64];
        if (!(mask & 1ull << flags[i].id)) continue;
        snprintf(left, sizeof left, "  --%s%s%s", flags[i].name, flags[i].arg ? " " : "", flags[i].arg ? flags[i].arg : "");
        fprintf(f, "%-32s", left);
        if (strlen(left) >= 32) fprintf(f, "\n%32s", "");
        wrap(f, flags[i].help, 32, 100);
    }
}

/* usage() - herald-bench --help, or with @sc, SCENARIO --help. */
static void usage(FILE *f, const struct bench_scenario *sc)
{
    if (!sc) {
        uint64_t all = 0;
        fprintf(f, "usage: herald-bench SCENARIO [flags]\n\n"
                   "Load generator for the Herald broker: opens many WebSocket connections from one\n"
                   "thread on one libuv loop, publishes on an open-loop schedule, and measures delivery\n"
                   "latency (publish -> each subscriber) and exact delivery counts.\n\nScenarios:\n");
        for (int i = 0; bench_scenarios[i]; i++) {
            fprintf(f, "  %-10s", bench_scenarios[i]->name);
            wrap(f, bench_scenarios[i]->summary, 12, 100);
            all |= bench_scenarios[i]->flags;
        }
        fprintf(f, "\nFlags (not every flag applies to every scenario; see herald-bench SCENARIO --help):\n");
        usage_flags(f, all);
        fprintf(f, "\nExit status: 0 when the run completed, 1 when it failed (broker unreachable, connections\n"
                   "refused or dropped during setup, protocol errors, time bound exceeded; presence: the\n"
                   "broker's final member count is wrong; recover: a gap, a duplicate or a failed recovery;\n"
                   "scores: a viewer that does not end at the broker's score; seats: a broken invariant;\n"
                   "orders, payments: the broker's stock is not the initial stock minus what was sold, or an\n"
                   "answer is not the documented one; sse: a delivery missing, duplicated or out of order),\n"
                   "2 for bad flags.\n");
        return;
    }
    fprintf(f, "usage: herald-bench %s [flags]\n\n", sc->name);
    wrap(f, sc->summary, 0, 100);
    fprintf(f, "\nexample:\n  %s\n\nflags:\n", sc->example);
    usage_flags(f, sc->flags);
    if (sc->notes) fputs(sc->notes, f);
}

/* " (fanout, channels, ...)": every scenario's name, in @buf of @cap bytes. */
static const char *scenario_names(char *buf, size_t cap)
{
    size_t n = 0;

    buf[0] = '\0';
    for (int i = 0; bench_scenarios[i] && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : " (", bench_scenarios[i]->name);
    if (n < cap) snprintf(buf + n, cap - n, ")");
    return buf;
}

static int bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "herald-bench: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n(see herald-bench --help)\n");
    return 2;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned *out)
{
    char *end;
    unsigned long v;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (end == s || *end || errno || *s == '-' || v < lo || v > hi) return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_rates(const char *s, struct opts *o)
{
    char buf[512], *tok, *save = NULL;

    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    o->nrates = 0;
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        double r;
        char *end;
        errno = 0;
        r = strtod(tok, &end);
        if ((*end == 'k' || *end == 'K') && end[1] == '\0') { r *= 1000; end++; }
        else if ((*end == 'm' || *end == 'M') && end[1] == '\0') { r *= 1e6; end++; }
        if (end == tok || *end || errno || !(r > 0) || r > 1e8 || o->nrates == MAX_STEPS) return -1;
        o->rates[o->nrates++] = r;
    }
    return o->nrates ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct option lopts[NFLAGS + 1];
    struct opts *o = &B.o;
    const struct bench_scenario *sc = NULL;
    uint64_t given = 0;
    int c;
    double v;
    char why[256];

    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    if (argc < 2) { usage(stderr, NULL); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout, NULL);
        return 0;
    }
    for (int i = 0; bench_scenarios[i]; i++)
        if (!strcmp(argv[1], bench_scenarios[i]->name)) sc = bench_scenarios[i];
    if (!sc) return bad("unknown scenario \"%s\"%s", argv[1], scenario_names(why, sizeof why));

    memset(lopts, 0, sizeof lopts);
    for (size_t i = 0; i < NFLAGS; i++)
        lopts[i] = (struct option){ flags[i].name, flags[i].has_arg ? required_argument : no_argument, NULL,
                                    OPT_BASE + flags[i].id };

    o->sc = sc;
    snprintf(o->url, sizeof o->url, "ws://127.0.0.1:8080/ws");
    o->duration = 5;
    o->fraction = 0.2;
    o->outage = 2;
    o->cycles = 3;
    o->enc = HERALD_JSON;
    o->size = 100;
    o->subscribers = 0;
    o->channels = 1;
    o->rates[0] = 1000;
    o->members = 1000;
    o->watchers = 5;
    o->nrates = 1;
    o->viewers = 10;
    o->clients = 16;
    o->seats = 1000;
    o->section = 100;
    o->hot = 0.1;
    o->ttl = 60;
    o->skus = 1;
    o->stock = 1000000;
    o->orders = 5000;
    o->publish = PUB_WS;
    o->window = 64;
    o->p99_max_ms = 100;
    o->connections = 1000;
    o->concurrency = 256;
    o->connect_timeout = 10;
    o->drain_timeout = 5;
    o->settle = 1;
    snprintf(o->ns, sizeof o->ns, "bench");
    if (sc->defaults) sc->defaults(o);

    optind = 2;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        const struct flag *fl = NULL;
        if (c == 'h') c = OPT_BASE + BF_HELP;
        if (c == '?' || c == ':') {
            const char *arg = argv[optind - 1];
            return bad(optopt ? "flag %s needs a value%s" : "unknown flag %s%s", arg, "");
        }
        for (size_t i = 0; i < NFLAGS; i++) if (OPT_BASE + flags[i].id == c) fl = &flags[i];
        if (!fl) return bad("unknown flag%s%s", "", "");
        if (!(sc->flags & 1ull << fl->id)) {
            fprintf(stderr, "herald-bench: --%s does not apply to %s\n(see herald-bench %s --help)\n", fl->name,
                    sc->name, sc->name);
            return 2;
        }
        given |= 1ull << fl->id;
        switch (fl->id) {
        case BF_HELP: usage(stdout, sc); return 0;
        case BF_URL:
            if (strlen(optarg) >= sizeof o->url) return bad("--url is too long%s%s", "", "");
            snprintf(o->url, sizeof o->url, "%s", optarg);
            break;
        case BF_DURATION:
            if (parse_double(optarg, 0.1, 3600, &o->duration)) return bad("--duration %s: want seconds, 0.1 to 3600%s", optarg, "");
            break;
        case BF_ENCODING:
            if (!strcmp(optarg, "json")) o->enc = HERALD_JSON;
            else if (!strcmp(optarg, "msgpack")) o->enc = HERALD_MSGPACK;
            else return bad("--encoding %s: want json or msgpack%s", optarg, "");
            break;
        case BF_JSON: o->json = 1; break;
        case BF_SVG: o->svg = optarg; break;
        case BF_SIZE:
            if (parse_uint(optarg, 20, 60000, &o->size)) return bad("--size %s: want 20 to 60000 bytes%s", optarg, "");
            break;
        case BF_SUBSCRIBERS:
            if (parse_uint(optarg, 0, 1000000, &o->subscribers)) return bad("--subscribers %s: want 0 to 1000000%s", optarg, "");
            break;
        case BF_CHANNELS:
            if (parse_uint(optarg, 1, 1000000, &o->channels)) return bad("--channels %s: want 1 to 1000000%s", optarg, "");
            break;
        case BF_RATE:
            if (parse_rates(optarg, o))
                return bad("--rate %s: want positive rates separated by commas (at most 32), e.g. 1000,5k,20k%s", optarg, "");
            break;
        case BF_PUBLISH:
            if (!strcmp(optarg, "ws")) o->publish = PUB_WS;
            else if (!strcmp(optarg, "rest")) o->publish = PUB_REST;
            else return bad("--publish %s: want ws or rest%s", optarg, "");
            break;
        case BF_PUBLISHERS:
            if (parse_uint(optarg, 1, 10000, &o->publishers)) return bad("--publishers %s: want 1 to 10000%s", optarg, "");
            break;
        case BF_WINDOW:
            if (parse_uint(optarg, 1, 100000, &o->window)) return bad("--window %s: want 1 to 100000%s", optarg, "");
            break;
        case BF_P99MAX:
            if (parse_double(optarg, 0.001, 1e6, &o->p99_max_ms)) return bad("--p99-max %s: want milliseconds > 0%s", optarg, "");
            break;
        case BF_CONNECTIONS:
            if (parse_uint(optarg, 1, 1000000, &o->connections)) return bad("--connections %s: want 1 to 1000000%s", optarg, "");
            break;
        case BF_PUBLISH_URL: nodes_set_publish_url(optarg); break;
        case BF_PID:
            if (nodes_set_pids(o, optarg, why, sizeof why)) return bad("%s%s", why, "");
            break;
        case BF_CONCURRENCY:
            if (parse_uint(optarg, 1, 100000, &o->concurrency)) return bad("--concurrency %s: want 1 to 100000%s", optarg, "");
            break;
        case BF_CONNECT_TIMEOUT:
            if (parse_double(optarg, 0.1, 600, &o->connect_timeout)) return bad("--connect-timeout %s: want 0.1 to 600 seconds%s", optarg, "");
            break;
        case BF_DRAIN_TIMEOUT:
            if (parse_double(optarg, 0, 600, &o->drain_timeout)) return bad("--drain-timeout %s: want 0 to 600 seconds%s", optarg, "");
            break;
        case BF_SETTLE:
            if (parse_double(optarg, 0, 600, &v)) return bad("--settle %s: want 0 to 600 seconds%s", optarg, "");
            o->settle = v;
            break;
        case BF_QUIET: o->quiet = 1; break;
        case BF_MEMBERS:
            if (parse_uint(optarg, 1, 1000000, &o->members)) return bad("--members %s: want 1 to 1000000%s", optarg, "");
            break;
        case BF_WATCHERS:
            if (parse_uint(optarg, 0, 1000, &o->watchers)) return bad("--watchers %s: want 0 to 1000%s", optarg, "");
            break;
        case BF_CHURN:
            if (parse_rates(optarg, o))
                return bad("--churn %s: want positive rates separated by commas (at most 32), e.g. 50,100,1k%s", optarg, "");
            break;
        case BF_FRACTION:
            if (parse_double(optarg, 1e-9, 1, &o->fraction)) return bad("--fraction %s: want a share above 0 and at most 1%s", optarg, "");
            break;
        case BF_OUTAGE:
            if (parse_double(optarg, 0.01, 3600, &o->outage)) return bad("--outage %s: want 0.01 to 3600 seconds%s", optarg, "");
            break;
        case BF_CYCLES:
            if (parse_uint(optarg, 1, 1000, &o->cycles)) return bad("--cycles %s: want 1 to 1000%s", optarg, "");
            break;
        case BF_EXPECT_UNRECOVERED: o->expect_unrecovered = 1; break;
        case BF_VIEWERS:
            if (parse_uint(optarg, 0, 1000000, &o->viewers)) return bad("--viewers %s: want 0 to 1000000%s", optarg, "");
            break;
        case BF_CLIENTS:
            if (parse_uint(optarg, 1, 10000, &o->clients)) return bad("--clients %s: want 1 to 10000%s", optarg, "");
            break;
        case BF_SEATS:
            if (parse_uint(optarg, 2, 20000, &o->seats)) return bad("--seats %s: want 2 to 20000%s", optarg, "");
            break;
        case BF_SECTION:
            if (parse_uint(optarg, 1, 20000, &o->section)) return bad("--section %s: want 1 to 20000 seats%s", optarg, "");
            break;
        case BF_HOT:
            if (parse_double(optarg, 1e-9, 1, &o->hot)) return bad("--hot %s: want a share above 0 and at most 1%s", optarg, "");
            break;
        case BF_TTL:
            if (parse_uint(optarg, 1, 86400, &o->ttl)) return bad("--ttl %s: want 1 to 86400 seconds%s", optarg, "");
            break;
        case BF_SKUS:
            if (parse_uint(optarg, 1, 100000, &o->skus)) return bad("--skus %s: want 1 to 100000%s", optarg, "");
            break;
        case BF_STOCK:
            if (parse_uint(optarg, 0, 1000000000, &o->stock)) return bad("--stock %s: want 0 to 1000000000%s", optarg, "");
            break;
        case BF_ORDERS:
            if (parse_uint(optarg, 1, 10000000, &o->orders)) return bad("--orders %s: want 1 to 10000000%s", optarg, "");
            break;
        case BF_SECRET:
            if (!*optarg || strlen(optarg) >= sizeof o->secret) return bad("--secret: want 1 to 128 bytes%s%s", "", "");
            snprintf(o->secret, sizeof o->secret, "%s", optarg);
            break;
        case BF_SSE:
            if (parse_uint(optarg, 0, 1000000, &o->sse)) return bad("--sse %s: want 0 to 1000000%s", optarg, "");
            break;
        case BF_READERS:
            if (parse_uint(optarg, 0, 64, &o->readers)) return bad("--readers %s: want 0 to 64%s", optarg, "");
            break;
        case BF_TARGET:
            if (!strcmp(optarg, "herald")) o->target = TARGET_HERALD;
            else if (!strcmp(optarg, "nats")) o->target = TARGET_NATS;
            else return bad("--target %s: want herald or nats%s", optarg, "");
            break;
        case BF_REJOIN_DELAY:
            if (parse_double(optarg, 0, 600, &o->rejoin_delay)) return bad("--rejoin-delay %s: want 0 to 600 seconds%s", optarg, "");
            break;
        case BF_NAMESPACE:
            if (!*optarg || strlen(optarg) > 64 || strspn(optarg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                               "0123456789_-") != strlen(optarg))
                return bad("--namespace %s: want 1 to 64 letters, digits, '_' or '-'%s", optarg, "");
            snprintf(o->ns, sizeof o->ns, "%s", optarg);
            break;
        default: break;
        }
    }
    if (optind < argc) return bad("unexpected argument \"%s\"%s", argv[optind], "");
    if (!(given & BF(PUBLISHERS))) o->publishers = o->publish == PUB_REST ? 16 : 1;
    if (o->target == TARGET_NATS) {
        /* NATS has no REST publishing; and it orders a channel's messages
         * per publisher only, so with several the sequence numbers that
         * stand in for offsets would read reordering as gaps. */
        if (o->publish == PUB_REST) return bad("--target nats publishes over WebSocket only, not --publish rest%s%s", "", "");
        if (o->publishers > 1) return bad("--target nats takes one publisher (--publishers 1)%s%s", "", "");
    }
    if (nodes_setup(o, !!(sc->flags & BF(PUBLISH_URL)), why, sizeof why)) return bad("%s%s", why, "");
    if (sc->check_opts && sc->check_opts(o, given, why, sizeof why)) return bad("%s%s", why, "");
    return sc->run();
}
