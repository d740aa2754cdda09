/* bench/main.c - herald-bench: flags, help, and the choice of scenario.
 *
 * Owns: the one table of flags that drives parsing, validation and both
 * levels of --help, so a flag cannot exist without being documented. Each
 * flag names the scenarios it applies to; giving it to another is an error
 * rather than being silently ignored. */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define F_FANOUT (1u << SC_FANOUT)
#define F_CHANNELS (1u << SC_CHANNELS)
#define F_IDLE (1u << SC_IDLE)
#define F_CONNECT (1u << SC_CONNECT)
#define F_PUBLISH (1u << SC_PUBLISH)
#define F_PRESENCE (1u << SC_PRESENCE)
#define F_RECOVER (1u << SC_RECOVER)
#define F_SCORES (1u << SC_SCORES)
#define F_SEATS (1u << SC_SEATS)
#define F_ALL (F_FANOUT | F_CHANNELS | F_IDLE | F_CONNECT | F_PUBLISH | F_PRESENCE | F_RECOVER | F_SCORES | F_SEATS)
#define F_STATE (F_SCORES | F_SEATS)
#define F_PUBS (F_FANOUT | F_CHANNELS | F_PUBLISH)

enum {
    O_URL = 256, O_DURATION, O_ENCODING, O_JSON, O_SVG, O_SIZE, O_SUBSCRIBERS, O_CHANNELS, O_RATE,
    O_PUBLISH, O_PUBLISHERS, O_WINDOW, O_P99MAX, O_CONNECTIONS, O_PID, O_CONCURRENCY, O_CONNECT_TIMEOUT,
    O_DRAIN_TIMEOUT, O_SETTLE, O_QUIET, O_NAMESPACE, O_MEMBERS, O_WATCHERS, O_CHURN, O_REJOIN_DELAY, O_FRACTION,
    O_OUTAGE, O_CYCLES, O_EXPECT_UNRECOVERED, O_VIEWERS, O_CLIENTS, O_SEATS, O_SECTION, O_HOT, O_TTL, O_HELP,
};

struct flag {
    const char *name;
    int id;
    int has_arg;
    unsigned scenarios;
    const char *arg;
    const char *help;
};

static const struct flag flags[] = {
    { "url", O_URL, 1, F_ALL, "URL", "broker WebSocket URL (default ws://127.0.0.1:8080/ws); REST uses its host and port" },
    { "duration", O_DURATION, 1, F_ALL, "SECONDS",
      "publishing time per rate step (fanout, channels, publish), churn time per step (presence), hold time "
      "(idle), the most time to spend opening connections (connect), the publishing time over which the "
      "--cycles are spread (recover, default 10), or the time per step of updates (scores) or holds (seats); "
      "default 5" },
    { "encoding", O_ENCODING, 1, F_ALL, "json|msgpack", "WebSocket subprotocol and REST body format (default json)" },
    { "json", O_JSON, 0, F_ALL, NULL, "print exactly one JSON object on stdout instead of a table" },
    { "svg", O_SVG, 1, F_ALL & ~(F_RECOVER | F_SEATS), "FILE",
      "write an SVG chart: latency by percentile, or deliveries/s (presence: joins+leaves/s) and p99 per step "
      "when --rate (--churn) has several steps" },
    { "size", O_SIZE, 1, F_PUBS | F_RECOVER | F_SCORES, "BYTES",
      "payload size: each publication's data is a string of this many bytes holding its scheduled send time "
      "and sequence number (default 100, at least 20); scores: each update also sets the key \"pad\" to a "
      "string of this many bytes (default: no pad)" },
    { "subscribers", O_SUBSCRIBERS, 1, F_PUBS | F_RECOVER, "N",
      "fanout, recover: subscriber connections on the one channel (default 100); channels: subscribers per "
      "channel (default 2); publish: subscribers per channel (default 0)" },
    { "channels", O_CHANNELS, 1, F_CHANNELS | F_PUBLISH, "M",
      "channels; publications go to them in turn (default 100 for channels, 1 for publish)" },
    { "rate", O_RATE, 1, F_FANOUT | F_CHANNELS | F_RECOVER | F_STATE, "R[,R...]",
      "target publications per second, open loop; several comma-separated rates run as steps and the report "
      "names the highest sustained one (default 1000); recover: one rate only; scores: score updates per "
      "second (default 100); seats: holds per second, open loop (default: none, --clients closed loops)" },
    { "publish", O_PUBLISH, 1, F_PUBS, "ws|rest",
      "publish over WebSocket connections or with POST /api/publish over keep-alive HTTP/1.1 (default ws)" },
    { "publishers", O_PUBLISHERS, 1, F_PUBS | F_SCORES, "N",
      "WebSocket publisher connections, or HTTP connections with --publish rest (default: 1 ws / 16 rest; "
      "publish: 4); scores: HTTP connections for the updates (default 4)" },
    { "window", O_WINDOW, 1, F_PUBLISH, "N", "publish over ws: publications in flight per publisher (default 64)" },
    { "p99-max", O_P99MAX, 1, F_FANOUT | F_CHANNELS | F_PRESENCE | F_STATE, "MS",
      "a step is sustained when >= 99.9% of deliveries arrived and p99 <= MS (default 100); presence: the p99 "
      "of event latency and of unsubscribe/subscribe ack latency; seats with --rate: of hold latency" },
    { "connections", O_CONNECTIONS, 1, F_IDLE | F_CONNECT, "N", "connections to open (default 1000)" },
    { "pid", O_PID, 1, F_ALL, "PID",
      "the broker's process id: idle reads its VmRSS before and after connecting and reports bytes per "
      "connection; the others report its CPU use per step" },
    { "concurrency", O_CONCURRENCY, 1, F_ALL, "N", "connection attempts in flight at once (default 256)" },
    { "connect-timeout", O_CONNECT_TIMEOUT, 1, F_ALL, "SECONDS",
      "limit for one connection's TCP connect, WebSocket upgrade and Herald connect (default 10)" },
    { "drain-timeout", O_DRAIN_TIMEOUT, 1, F_PUBS | F_PRESENCE | F_RECOVER | F_STATE, "SECONDS",
      "after each step, the longest wait for outstanding acks and deliveries (default 5); presence: also bounds "
      "the wait for the broker to count every member, and for the final count; recover: also for the last "
      "recovery replies; scores, seats: until every viewer is at the last offset written" },
    { "settle", O_SETTLE, 1, F_IDLE, "SECONDS", "idle: wait after connecting before reading the broker's RSS (default 1)" },
    { "namespace", O_NAMESPACE, 1, F_PUBS | F_PRESENCE | F_RECOVER | F_SCORES, "NS",
      "namespace of the bench's channels, named NS:RUNID-N with a fresh RUNID per run; its broker options "
      "(history, durability) apply (default bench). presence: the one channel NS:presence-bench, whose "
      "namespace needs presence=on and join_leave=on (default chat). recover: the one channel NS:RUNID-0, "
      "whose namespace needs history on with a history_size above what one outage misses (default chat). "
      "scores: the one channel NS:bench-RUNID, whose namespace needs state=on (default scores)" },
    { "members", O_MEMBERS, 1, F_PRESENCE, "N",
      "member connections, each subscribed to the channel and churned in turn (default 1000)" },
    { "watchers", O_WATCHERS, 1, F_PRESENCE, "N",
      "further member connections that are never churned: they count the join/leave events (and "
      "presence_batch totals) and measure event latency (default 5, at most 1000)" },
    { "churn", O_CHURN, 1, F_PRESENCE, "R[,R...]",
      "target churn operations per second, open loop; one operation is one member's unsubscribe (a leave) "
      "followed, once acknowledged, by its subscribe (a join), so R operations/s are 2R joins+leaves/s. "
      "Several comma-separated rates run as steps and the report names the highest sustained one "
      "(default 100)" },
    { "rejoin-delay", O_REJOIN_DELAY, 1, F_PRESENCE, "SECONDS",
      "wait between a leave's acknowledgement and the rejoin (default 0: at once); a delay above the "
      "broker's presence_grace turns rejoins into real leave+join pairs when the grace is on" },
    { "fraction", O_FRACTION, 1, F_RECOVER, "F",
      "share of the subscribers that drop in each cycle, above 0 and at most 1; at least one subscriber "
      "(default 0.2)" },
    { "outage", O_OUTAGE, 1, F_RECOVER, "SECONDS",
      "how long the dropped subscribers stay away while publishing goes on; shorter than --duration / "
      "--cycles (default 2)" },
    { "cycles", O_CYCLES, 1, F_RECOVER, "N",
      "disconnect/reconnect cycles, one in the middle of each of N equal slots of --duration (default 3)" },
    { "expect-unrecovered", O_EXPECT_UNRECOVERED, 0, F_RECOVER, NULL,
      "the broker keeps less history than an outage misses: \"recovered\": false is expected and reported as "
      "such; the run fails if every recovery succeeds instead (for testing)" },
    { "viewers", O_VIEWERS, 1, F_STATE, "N",
      "connections subscribed to the state channel, each keeping its view of it (default 10000 for scores, "
      "10 for seats)" },
    { "clients", O_CLIENTS, 1, F_SEATS, "K",
      "HTTP connections for holds and releases; without --rate, K clients each hold, release and hold again "
      "in a closed loop (default 16)" },
    { "seats", O_SEATS, 1, F_SEATS, "N", "seats in the map, 2 to 20000 (default 1000)" },
    { "section", O_SECTION, 1, F_SEATS, "N", "seats per section (default 100)" },
    { "hot", O_HOT, 1, F_SEATS, "F",
      "the contention: holds pick their 2 to 4 seats from the first F of the seats, above 0 and at most 1 "
      "(default 0.1)" },
    { "ttl", O_TTL, 1, F_SEATS, "SECONDS", "ttl of each hold; holds are released at once anyway (default 60)" },
    { "quiet", O_QUIET, 0, F_ALL, NULL, "no progress line on stderr (it is shown only when stderr is a terminal)" },
    { "help", O_HELP, 0, F_ALL, NULL, "show help (herald-bench SCENARIO --help for a scenario's flags)" },
};
#define NFLAGS (sizeof flags / sizeof flags[0])

static const struct {
    const char *name;
    const char *summary;
    const char *example;
} scenarios[SC_N] = {
    { "fanout", "one channel, N subscribers, open-loop publishing at a target rate; delivery latency and counts",
      "herald-bench fanout --url ws://127.0.0.1:8080/ws --subscribers 1000 --rate 1000,3000,6000 --duration 10" },
    { "channels", "M channels x K subscribers each, publications spread over the channels",
      "herald-bench channels --channels 5000 --subscribers 2 --rate 30000 --duration 10" },
    { "idle", "N idle connections held open; with --pid, the broker's memory per connection",
      "herald-bench idle --connections 19500 --pid $(pgrep -n herald) --duration 5" },
    { "connect", "connection ramp: TCP connect + WebSocket upgrade + Herald connect per second",
      "herald-bench connect --connections 5000 --concurrency 256" },
    { "publish", "closed-loop publishing with a window per publisher: the broker's max commit rate and ack latency",
      "herald-bench publish --publishers 4 --window 64 --publish ws --duration 10" },
    { "presence", "one channel with N members, open-loop member churn (leave, then rejoin); join/leave events "
      "counted and timed by watcher connections, the broker's presence count checked at the end",
      "herald-bench presence --url ws://127.0.0.1:8080/ws --members 10000 --churn 50,100,200 --watchers 5" },
    { "recover", "one channel, N subscribers, open-loop publishing; in each cycle a fraction of the subscribers "
      "drops, stays away, and resubscribes with since: every missed publication must come back exactly once",
      "herald-bench recover --url ws://127.0.0.1:8080/ws --subscribers 1000 --fraction 0.2 --rate 2000 "
      "--duration 10 --outage 2 --cycles 3" },
    { "scores", "one state channel (a scoreboard), N viewers, open-loop score updates over REST at a target "
      "rate; delivery latency, snapshots (conflation), and whether every viewer ends at the broker's score",
      "herald-bench scores --url ws://127.0.0.1:8080/ws --viewers 10000 --rate 20,40,80 --publishers 32 "
      "--p99-max 1000" },
    { "seats", "one seat map, K REST clients holding 2 to 4 seats from a hot region and releasing them; "
      "holds/s, seats_taken share, hold latency, and the map's invariants checked after each step",
      "herald-bench seats --url ws://127.0.0.1:8080/ws --seats 1000 --hot 0.1 --clients 16 --viewers 10" },
};

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

static void usage_flags(FILE *f, unsigned mask)
{
    for (size_t i = 0; i < NFLAGS; i++) {
        char left[64];
        if (!(flags[i].scenarios & mask)) continue;
        snprintf(left, sizeof left, "  --%s%s%s", flags[i].name, flags[i].arg ? " " : "", flags[i].arg ? flags[i].arg : "");
        fprintf(f, "%-32s", left);
        if (strlen(left) >= 32) fprintf(f, "\n%32s", "");
        wrap(f, flags[i].help, 32, 100);
    }
}

static void usage_state(FILE *f, int sc)
{
    if (sc == SC_SCORES)
        fprintf(f, "\nThe namespace needs state on, e.g.\n"
                   "  herald --ns scores.state=on\n"
                   "Update i of a step is due at start + i/rate and goes out as POST /api/channels/CH/state\n"
                   "with {\"op\":\"incr\",\"key\":\"score:home\"} and {\"op\":\"set\",\"key\":\"t\"} = its scheduled\n"
                   "time; a viewer's latency is its read time minus t. A snapshot (a conflated viewer catching\n"
                   "up) resets the viewer's view. After each step GET /api/channels/CH/state gives the broker's\n"
                   "score; a viewer converged when it is at that offset with that score. A step is sustained\n"
                   "when >= 99.9%% of the updates were acked, >= 99.9%% of acked updates x viewers arrived as\n"
                   "deltas, p99 <= --p99-max, and every viewer converged. The run fails (exit 1) if a viewer\n"
                   "does not converge, or a delta is lost, repeated or carries a wrong score. --encoding is\n"
                   "the viewers'; REST bodies are JSON.\n");
    if (sc == SC_SEATS)
        fprintf(f, "\nThe broker needs seat maps and the seats namespace with state on, e.g.\n"
                   "  herald --ns seats.state=on\n"
                   "The map is defined with PUT /api/events/bench-RUNID/seats (POST for seats past the\n"
                   "first 500). Each hold is POST .../hold for a new user u<n> with 2 to 4 distinct seats of\n"
                   "the hot region; a successful hold is released at once (POST .../release); 409\n"
                   "seats_taken is counted, not an error. After each step every seat and section is read\n"
                   "with GET /api/channels/seats:bench-RUNID/state?prefix=seat: and ?prefix=section: (pages\n"
                   "of 1000): every seat needs a valid status and its section, each section's counts must\n"
                   "equal its seats' statuses, and each viewer's view must equal the broker's. The run\n"
                   "fails (exit 1) on any broken invariant, a diverged viewer, seats still held at the end,\n"
                   "or a REST answer that is not a documented outcome. --encoding is the viewers'; REST\n"
                   "bodies are JSON.\n");
}

static void usage(FILE *f, int sc)
{
    if (sc < 0) {
        fprintf(f, "usage: herald-bench SCENARIO [flags]\n\n"
                   "Load generator for the Herald broker: opens many WebSocket connections from one\n"
                   "thread on one libuv loop, publishes on an open-loop schedule, and measures delivery\n"
                   "latency (publish -> each subscriber) and exact delivery counts.\n\nScenarios:\n");
        for (int i = 0; i < SC_N; i++) {
            fprintf(f, "  %-10s", scenarios[i].name);
            wrap(f, scenarios[i].summary, 12, 100);
        }
        fprintf(f, "\nFlags (not every flag applies to every scenario; see herald-bench SCENARIO --help):\n");
        usage_flags(f, F_ALL);
        fprintf(f, "\nExit status: 0 when the run completed, 1 when it failed (broker unreachable, connections\n"
                   "refused or dropped during setup, protocol errors, time bound exceeded; presence: the\n"
                   "broker's final member count is wrong; recover: a gap, a duplicate or a failed recovery;\n"
                   "scores: a viewer that does not end at the broker's score; seats: a broken invariant),\n"
                   "2 for bad flags.\n");
        return;
    }
    fprintf(f, "usage: herald-bench %s [flags]\n\n", scenarios[sc].name);
    wrap(f, scenarios[sc].summary, 0, 100);
    fprintf(f, "\nexample:\n  %s\n\nflags:\n", scenarios[sc].example);
    usage_flags(f, 1u << sc);
    if (sc == SC_PRESENCE)
        fprintf(f, "\nThe broker needs presence on for the namespace, e.g.\n"
                   "  herald --ns chat.presence=on --ns chat.join_leave=on --ns chat.presence_grace=0\n"
                   "Events per watcher are exact (expected = acked leaves + joins) only with presence_grace=0\n"
                   "and the channel at or below presence_tier members; above the tier they are counted from\n"
                   "presence_batch totals and have no latency. A step is sustained when >= 99.9%% of its\n"
                   "leaves and joins were acknowledged, at >= 85%% of the target joins+leaves/s counted up to\n"
                   "the last ack, every watcher saw >= 99.9%% of the expected events,\n"
                   "and the p99 of both ack latency (a leave counts from its scheduled time) and event\n"
                   "latency is <= --p99-max. The run fails (exit 1) unless presence_stats counts\n"
                   "--members + --watchers members and connections at the end.\n");
    usage_state(f, sc);
    if (sc == SC_RECOVER)
        fprintf(f, "\nThe channel's namespace must keep history (the broker's default) and enough of it: each\n"
                   "outage misses about --rate x --outage publications, and a subscribe with since recovers\n"
                   "only when all of them are still kept. The default history_size is 100, so for big runs\n"
                   "start the broker with e.g.\n"
                   "  herald --ns chat.history_size=100000\n"
                   "A recovery reply also has to fit in half of the broker's send_queue_max (4m by default);\n"
                   "above that the broker sends the newest part with \"recovered\": false.\n\n"
                   "Every subscriber remembers the epoch and the last offset it saw. Checked per subscriber:\n"
                   "the reply says \"recovered\": true with the same epoch; its publications and the live pubs\n"
                   "after it carry every offset from the last one seen to the last one published exactly\n"
                   "once; each payload's sequence number has one offset. Recovery latency runs from the start\n"
                   "of the new connection to reading the subscribe reply. The run fails (exit 1) on any gap,\n"
                   "duplicate or mismatch, a reply with \"recovered\": false (unless --expect-unrecovered), a\n"
                   "reconnection that does not recover, a subscriber the broker disconnects, or deliveries\n"
                   "short of the expected count after --drain-timeout.\n");
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
    uint64_t given = 0;
    unsigned pid = 0;
    int sc = -1, c;
    double v;

    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    if (argc < 2) { usage(stderr, -1); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout, -1);
        return 0;
    }
    for (int i = 0; i < SC_N; i++)
        if (!strcmp(argv[1], scenarios[i].name)) sc = i;
    if (sc < 0)
        return bad("unknown scenario \"%s\"%s", argv[1],
                   " (fanout, channels, idle, connect, publish, presence, recover, scores, seats)");

    memset(lopts, 0, sizeof lopts);
    for (size_t i = 0; i < NFLAGS; i++)
        lopts[i] = (struct option){ flags[i].name, flags[i].has_arg ? required_argument : no_argument, NULL, flags[i].id };

    o->sc = (enum scenario)sc;
    snprintf(o->url, sizeof o->url, "ws://127.0.0.1:8080/ws");
    o->duration = sc == SC_RECOVER ? 10 : 5;
    o->fraction = 0.2;
    o->outage = 2;
    o->cycles = 3;
    o->enc = HERALD_JSON;
    o->size = sc == SC_SCORES ? 0 : 100;
    o->subscribers = sc == SC_FANOUT || sc == SC_RECOVER ? 100 : sc == SC_CHANNELS ? 2 : 0;
    o->channels = sc == SC_CHANNELS ? 100 : 1;
    o->rates[0] = sc == SC_PRESENCE || sc == SC_SCORES ? 100 : 1000;
    o->members = 1000;
    o->watchers = 5;
    o->nrates = sc == SC_SEATS ? 0 : 1;     /* seats: closed loop unless --rate */
    o->viewers = sc == SC_SCORES ? 10000 : 10;
    o->clients = 16;
    o->seats = 1000;
    o->section = 100;
    o->hot = 0.1;
    o->ttl = 60;
    o->publish = PUB_WS;
    o->window = 64;
    o->p99_max_ms = 100;
    o->connections = 1000;
    o->concurrency = 256;
    o->connect_timeout = 10;
    o->drain_timeout = 5;
    o->settle = 1;
    snprintf(o->ns, sizeof o->ns, "%s", sc == SC_PRESENCE || sc == SC_RECOVER ? "chat" : sc == SC_SCORES ? "scores"
                                                                                               : "bench");

    optind = 2;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        const struct flag *fl = NULL;
        if (c == 'h') c = O_HELP;
        if (c == '?' || c == ':') {
            const char *arg = argv[optind - 1];
            return bad(optopt ? "flag %s needs a value%s" : "unknown flag %s%s", arg, "");
        }
        for (size_t i = 0; i < NFLAGS; i++) if (flags[i].id == c) fl = &flags[i];
        if (!fl) return bad("unknown flag%s%s", "", "");
        if (!(fl->scenarios & (1u << sc))) {
            fprintf(stderr, "herald-bench: --%s does not apply to %s\n(see herald-bench %s --help)\n", fl->name,
                    scenarios[sc].name, scenarios[sc].name);
            return 2;
        }
        given |= 1ull << (c - O_URL);
        switch (c) {
        case O_HELP: usage(stdout, sc); return 0;
        case O_URL:
            if (strlen(optarg) >= sizeof o->url) return bad("--url is too long%s%s", "", "");
            snprintf(o->url, sizeof o->url, "%s", optarg);
            break;
        case O_DURATION:
            if (parse_double(optarg, 0.1, 3600, &o->duration)) return bad("--duration %s: want seconds, 0.1 to 3600%s", optarg, "");
            break;
        case O_ENCODING:
            if (!strcmp(optarg, "json")) o->enc = HERALD_JSON;
            else if (!strcmp(optarg, "msgpack")) o->enc = HERALD_MSGPACK;
            else return bad("--encoding %s: want json or msgpack%s", optarg, "");
            break;
        case O_JSON: o->json = 1; break;
        case O_SVG: o->svg = optarg; break;
        case O_SIZE:
            if (parse_uint(optarg, 20, 60000, &o->size)) return bad("--size %s: want 20 to 60000 bytes%s", optarg, "");
            break;
        case O_SUBSCRIBERS:
            if (parse_uint(optarg, 0, 1000000, &o->subscribers)) return bad("--subscribers %s: want 0 to 1000000%s", optarg, "");
            break;
        case O_CHANNELS:
            if (parse_uint(optarg, 1, 1000000, &o->channels)) return bad("--channels %s: want 1 to 1000000%s", optarg, "");
            break;
        case O_RATE:
            if (parse_rates(optarg, o))
                return bad("--rate %s: want positive rates separated by commas (at most 32), e.g. 1000,5k,20k%s", optarg, "");
            break;
        case O_PUBLISH:
            if (!strcmp(optarg, "ws")) o->publish = PUB_WS;
            else if (!strcmp(optarg, "rest")) o->publish = PUB_REST;
            else return bad("--publish %s: want ws or rest%s", optarg, "");
            break;
        case O_PUBLISHERS:
            if (parse_uint(optarg, 1, 10000, &o->publishers)) return bad("--publishers %s: want 1 to 10000%s", optarg, "");
            break;
        case O_WINDOW:
            if (parse_uint(optarg, 1, 100000, &o->window)) return bad("--window %s: want 1 to 100000%s", optarg, "");
            break;
        case O_P99MAX:
            if (parse_double(optarg, 0.001, 1e6, &o->p99_max_ms)) return bad("--p99-max %s: want milliseconds > 0%s", optarg, "");
            break;
        case O_CONNECTIONS:
            if (parse_uint(optarg, 1, 1000000, &o->connections)) return bad("--connections %s: want 1 to 1000000%s", optarg, "");
            break;
        case O_PID:
            if (parse_uint(optarg, 1, 1u << 30, &pid)) return bad("--pid %s: want a process id%s", optarg, "");
            o->pid = (int)pid;
            if (proc_rss(o->pid) < 0) return bad("--pid %s: no such process (cannot read /proc/%s/status)", optarg, optarg);
            break;
        case O_CONCURRENCY:
            if (parse_uint(optarg, 1, 100000, &o->concurrency)) return bad("--concurrency %s: want 1 to 100000%s", optarg, "");
            break;
        case O_CONNECT_TIMEOUT:
            if (parse_double(optarg, 0.1, 600, &o->connect_timeout)) return bad("--connect-timeout %s: want 0.1 to 600 seconds%s", optarg, "");
            break;
        case O_DRAIN_TIMEOUT:
            if (parse_double(optarg, 0, 600, &o->drain_timeout)) return bad("--drain-timeout %s: want 0 to 600 seconds%s", optarg, "");
            break;
        case O_SETTLE:
            if (parse_double(optarg, 0, 600, &v)) return bad("--settle %s: want 0 to 600 seconds%s", optarg, "");
            o->settle = v;
            break;
        case O_QUIET: o->quiet = 1; break;
        case O_MEMBERS:
            if (parse_uint(optarg, 1, 1000000, &o->members)) return bad("--members %s: want 1 to 1000000%s", optarg, "");
            break;
        case O_WATCHERS:
            if (parse_uint(optarg, 0, 1000, &o->watchers)) return bad("--watchers %s: want 0 to 1000%s", optarg, "");
            break;
        case O_CHURN:
            if (parse_rates(optarg, o))
                return bad("--churn %s: want positive rates separated by commas (at most 32), e.g. 50,100,1k%s", optarg, "");
            break;
        case O_FRACTION:
            if (parse_double(optarg, 1e-9, 1, &o->fraction)) return bad("--fraction %s: want a share above 0 and at most 1%s", optarg, "");
            break;
        case O_OUTAGE:
            if (parse_double(optarg, 0.01, 3600, &o->outage)) return bad("--outage %s: want 0.01 to 3600 seconds%s", optarg, "");
            break;
        case O_CYCLES:
            if (parse_uint(optarg, 1, 1000, &o->cycles)) return bad("--cycles %s: want 1 to 1000%s", optarg, "");
            break;
        case O_EXPECT_UNRECOVERED: o->expect_unrecovered = 1; break;
        case O_VIEWERS:
            if (parse_uint(optarg, 0, 1000000, &o->viewers)) return bad("--viewers %s: want 0 to 1000000%s", optarg, "");
            break;
        case O_CLIENTS:
            if (parse_uint(optarg, 1, 10000, &o->clients)) return bad("--clients %s: want 1 to 10000%s", optarg, "");
            break;
        case O_SEATS:
            if (parse_uint(optarg, 2, 20000, &o->seats)) return bad("--seats %s: want 2 to 20000%s", optarg, "");
            break;
        case O_SECTION:
            if (parse_uint(optarg, 1, 20000, &o->section)) return bad("--section %s: want 1 to 20000 seats%s", optarg, "");
            break;
        case O_HOT:
            if (parse_double(optarg, 1e-9, 1, &o->hot)) return bad("--hot %s: want a share above 0 and at most 1%s", optarg, "");
            break;
        case O_TTL:
            if (parse_uint(optarg, 1, 86400, &o->ttl)) return bad("--ttl %s: want 1 to 86400 seconds%s", optarg, "");
            break;
        case O_REJOIN_DELAY:
            if (parse_double(optarg, 0, 600, &o->rejoin_delay)) return bad("--rejoin-delay %s: want 0 to 600 seconds%s", optarg, "");
            break;
        case O_NAMESPACE:
            if (!*optarg || strlen(optarg) > 64 || strspn(optarg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                               "0123456789_-") != strlen(optarg))
                return bad("--namespace %s: want 1 to 64 letters, digits, '_' or '-'%s", optarg, "");
            snprintf(o->ns, sizeof o->ns, "%s", optarg);
            break;
        default: break;
        }
    }
    if (optind < argc) return bad("unexpected argument \"%s\"%s", argv[optind], "");
    if (!(given & (1ull << (O_PUBLISHERS - O_URL))))
        o->publishers = sc == SC_PUBLISH ? 4 : o->publish == PUB_REST ? 16 : 1;
    if (!(given & (1ull << (O_SUBSCRIBERS - O_URL))) && sc == SC_PUBLISH) o->subscribers = 0;
    if (sc == SC_FANOUT && o->subscribers == 0) return bad("fanout needs --subscribers >= 1%s%s", "", "");
    if (sc == SC_CHANNELS && o->subscribers == 0) return bad("channels needs --subscribers >= 1%s%s", "", "");
    if (sc == SC_RECOVER) {
        char a[64], b[64];
        if (o->subscribers == 0) return bad("recover needs --subscribers >= 1%s%s", "", "");
        if (o->nrates != 1) return bad("recover takes one --rate, not steps%s%s", "", "");
        if (o->fraction * o->subscribers + 0.5 < 1) {
            snprintf(a, sizeof a, "%g", o->fraction);
            snprintf(b, sizeof b, "%u", o->subscribers);
            return bad("--fraction %s of %s subscribers drops nobody", a, b);
        }
        if (o->outage >= o->duration / o->cycles) {
            snprintf(a, sizeof a, "%g", o->outage);
            snprintf(b, sizeof b, "%g", o->duration / o->cycles);
            return bad("--outage %s must be shorter than --duration / --cycles = %s s", a, b);
        }
        if (o->rates[0] * o->duration > 1e9) return bad("--rate x --duration is over a billion publications%s%s", "", "");
    }
    if (sc == SC_PRESENCE && (uint64_t)o->members * o->watchers > 50000000ULL)
        return bad("--members x --watchers is over 50 million (each watcher tracks every member)%s%s", "", "");
    if (sc == SC_SCORES) {
        if (o->viewers == 0) return bad("scores needs --viewers >= 1%s%s", "", "");
        o->clients = given & (1ull << (O_PUBLISHERS - O_URL)) ? o->publishers : 4;
    }
    if (sc == SC_SEATS && (uint64_t)o->viewers * o->seats > 1000000000ULL)
        return bad("--viewers x --seats is over a billion (each viewer keeps a view of every seat)%s%s", "", "");
    if (sc == SC_SCORES || sc == SC_SEATS) {
        for (int i = 0; i < o->nrates; i++)
            if (o->rates[i] * o->duration > 1e8) return bad("--rate x --duration is over 100 million requests%s%s", "", "");
        return srun();
    }
    return run();
}
