/* bench/nodes.c - see nodes.h. */
#include "nodes.h"
#include "proc.h"
#include "report.h"
#include "scenario.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    char text[sizeof ((struct opts *)0)->url];  /* o->url, split in place at the commas */
    const char *name[NODES_MAX];                /* each node's URL as given */
    herald_url_t url[NODES_MAX];
    unsigned n;                                 /* nodes; 0 until nodes_setup() */
    const char *pub_text;                       /* --publish-url, or NULL */
    int pid[NODES_MAX];
    unsigned npids;
    long ticks0[NODES_MAX];                     /* each PID's CPU ticks at the step's start */
    double cpu[MAX_STEPS][NODES_MAX];           /* percent of one core, per step and node */
} N;

int nodes_set_pids(struct opts *o, const char *list, char *why, size_t n)
{
    const char *p = list;

    N.npids = 0;
    for (;;) {
        char *end;
        unsigned long v;
        errno = 0;
        v = strtoul(p, &end, 10);
        if (end == p || *p == '-' || *p == '+' || errno || v < 1 || v > 1ul << 30 || (*end && *end != ',')) {
            snprintf(why, n, "--pid %s: want a process id, or several separated by commas", list);
            return -1;
        }
        if (N.npids == NODES_MAX) {
            snprintf(why, n, "--pid %s: at most %d process ids", list, NODES_MAX);
            return -1;
        }
        if (proc_rss((int)v) < 0) {
            snprintf(why, n, "--pid %lu: no such process (cannot read /proc/%lu/status)", v, v);
            return -1;
        }
        N.pid[N.npids++] = (int)v;
        if (!*end) break;
        p = end + 1;
    }
    o->pid = N.pid[0];
    return 0;
}

void nodes_set_publish_url(const char *url)
{
    N.pub_text = url;
}

/* The scenarios that take several nodes, for the message that refuses a list. */
static const char *list_scenarios(char *buf, size_t cap)
{
    size_t len = 0;

    buf[0] = '\0';
    for (int i = 0; bench_scenarios[i] && len < cap; i++)
        if (bench_scenarios[i]->flags & BF(PUBLISH_URL))
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", bench_scenarios[i]->name);
    return buf;
}

static int parse_url(const char *what, unsigned k, const char *s, herald_url_t *out, char *why, size_t n)
{
    int r = herald_url_parse(s, out);

    if (!r) return 0;
    if (k) snprintf(why, n, "%s: broker %u of %u, \"%s\": %s", what, k, N.n, s, herald_strerror(r));
    else snprintf(why, n, "bad %s %s: %s", what, s, herald_strerror(r));
    return -1;
}

int nodes_setup(struct opts *o, int lists, char *why, size_t n)
{
    char names[128];
    char *p;

    if (!lists) {
        if (!strchr(o->url, ',') && N.npids <= 1) return parse_url("--url", 0, o->url, &B.url, why, n);
        snprintf(why, n, "%s apply only to %s", strchr(o->url, ',') ? "--url: several brokers" : "--pid: several process ids",
                 list_scenarios(names, sizeof names));
        return -1;
    }
    memcpy(N.text, o->url, sizeof N.text);
    N.n = 0;
    for (p = N.text;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (N.n == NODES_MAX) {
            snprintf(why, n, "--url: at most %d brokers", NODES_MAX);
            return -1;
        }
        N.name[N.n++] = p;
        if (!comma) break;
        p = comma + 1;
    }
    for (unsigned k = 0; k < N.n; k++) {
        if (!*N.name[k]) {
            snprintf(why, n, "--url %s: broker %u of %u is empty (want URLs separated by single commas)", o->url,
                     k + 1, N.n);
            return -1;
        }
        if (parse_url("--url", N.n > 1 ? k + 1 : 0, N.name[k], &N.url[k], why, n)) return -1;
    }
    if (N.npids && N.npids != N.n) {
        snprintf(why, n, "--pid: %u process ids for %u brokers in --url (want one per broker, in the same order)",
                 N.npids, N.n);
        return -1;
    }
    if (N.pub_text) return parse_url("--publish-url", 0, N.pub_text, &B.url, why, n);
    B.url = N.url[0];
    return 0;
}

unsigned nodes_count(void)
{
    return N.n ? N.n : 1;
}

static unsigned node_of(uint32_t i)
{
    uint32_t m = B.o.channels ? B.o.channels : 1;
    return (unsigned)((i % m + i / m) % nodes_count());
}

const herald_url_t *nodes_sub_url(uint32_t i)
{
    return N.n > 1 ? &N.url[node_of(i)] : &B.url;
}

const herald_url_t *nodes_peer_url(const peer_t *p)
{
    return p->kind == PEER_SUB ? nodes_sub_url((uint32_t)(p - B.peers)) : &B.url;
}

void nodes_cpu_start(void)
{
    for (unsigned k = 0; k < N.npids; k++) N.ticks0[k] = proc_ticks(N.pid[k]);
}

double nodes_cpu_stop(const step_t *st)
{
    double wall = (double)(st->t_end - st->t_start) / 1e9, sum = 0;
    long hz = sysconf(_SC_CLK_TCK);
    int i = (int)(st - B.steps), ok = N.npids > 0 && wall > 0;

    for (unsigned k = 0; k < N.npids; k++) {
        long t = proc_ticks(N.pid[k]);
        double pct = t >= 0 && N.ticks0[k] >= 0 && wall > 0 ? 100.0 * (double)(t - N.ticks0[k]) / (double)hz / wall
                                                             : -1;
        if (i >= 0 && i < MAX_STEPS) N.cpu[i][k] = pct;
        if (pct < 0) ok = 0;
        else sum += pct;
    }
    return ok ? sum : -1;
}

/* The publishers' node as given. */
static const char *pub_name(void)
{
    return N.pub_text ? N.pub_text : N.n ? N.name[0] : B.o.url;
}

/* Something beyond one broker to show: several nodes, several PIDs, or publishers elsewhere. */
static int shown(void)
{
    return N.n > 1 || N.npids > 1 || N.pub_text;
}

static uint32_t subs_on(unsigned k)
{
    uint32_t c = 0;

    if (N.n <= 1) return B.nsubs;
    for (uint32_t i = 0; i < B.nsubs; i++) c += node_of(i) == k;
    return c;
}

void nodes_report(FILE *f)
{
    if (!shown()) return;
    fprintf(f, "\nnodes: %u, subscribers round-robin over them; publishers on %s\n", nodes_count(), pub_name());
    for (unsigned k = 0; k < nodes_count(); k++) {
        fprintf(f, "  %-32s", N.n ? N.name[k] : B.o.url);
        if (k < N.npids) fprintf(f, "  pid %-8d", N.pid[k]);
        fprintf(f, "  %6u subscribers", subs_on(k));
        if (k < N.npids) {
            fprintf(f, "  CPU%% by step:");
            for (int i = 0; i < B.nsteps && i < MAX_STEPS; i++) {
                if (!B.steps[i].t_end) continue;
                if (N.cpu[i][k] < 0) fprintf(f, " -");
                else fprintf(f, " %.0f", N.cpu[i][k]);
            }
        }
        fprintf(f, "\n");
    }
}

void nodes_json(FILE *f)
{
    if (!shown()) return;
    fprintf(f, ",\"publish_url\":\"%s\",\"nodes\":[", report_json_safe(pub_name()));
    for (unsigned k = 0; k < nodes_count(); k++) {
        fprintf(f, "%s{\"url\":\"%s\",", k ? "," : "", report_json_safe(N.n ? N.name[k] : B.o.url));
        if (k < N.npids) fprintf(f, "\"pid\":%d,", N.pid[k]);
        fprintf(f, "\"subscribers\":%u}", subs_on(k));
    }
    fprintf(f, "]");
}

void nodes_json_step(FILE *f, const step_t *st)
{
    int i = (int)(st - B.steps);

    if (N.npids <= 1 || i < 0 || i >= MAX_STEPS) return;
    fprintf(f, "\"nodes_cpu_pct\":[");
    for (unsigned k = 0; k < N.npids; k++) {
        if (N.cpu[i][k] < 0) fprintf(f, "%snull", k ? "," : "");
        else fprintf(f, "%s%.1f", k ? "," : "", N.cpu[i][k]);
    }
    fprintf(f, "],");
}
