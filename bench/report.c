/* bench/report.c - see report.h.
 *
 * Owns: formatting only; it reads struct bench after the loop has ended,
 * and the scenario's figures through its report callbacks (scenario.h).
 * With --json, stdout gets exactly one JSON object and nothing else. */
#include "report.h"
#include "scenario.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double report_ms(uint64_t ns) { return (double)ns / 1e6; }

double report_step_secs(const step_t *st)
{
    return st->t_end > st->t_start ? (double)(st->t_end - st->t_start) / 1e9 : 0;
}

/* A broker that falls behind and delivers during the drain is not credited
 * with the target rate. */
double report_dps(const step_t *st)
{
    uint64_t end = st->t_last_rx > st->t_end ? st->t_last_rx : st->t_end;
    return end > st->t_start ? (double)st->received / ((double)(end - st->t_start) / 1e9) : 0;
}

uint64_t report_total(size_t off)
{
    uint64_t t = 0;
    for (int i = 0; i < B.nsteps; i++) t += *(const uint64_t *)((const char *)&B.steps[i] + off);
    return t;
}

void report_json_lat(FILE *f, const char *key, const hist_t *h)
{
    if (!h || !h->count) { fprintf(f, "\"%s\":null", key); return; }
    fprintf(f, "\"%s\":{\"count\":%llu,\"min\":%.3f,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
               "\"p99_9\":%.3f,\"max\":%.3f}", key, (unsigned long long)h->count, report_ms(h->min),
            h->sum / (double)h->count / 1e6, report_ms(hist_percentile(h, 50)), report_ms(hist_percentile(h, 90)),
            report_ms(hist_percentile(h, 99)), report_ms(hist_percentile(h, 99.9)), report_ms(h->max));
}

static double setup_secs(void)
{
    return B.setup_end > B.setup_start ? (double)(B.setup_end - B.setup_start) / 1e9 : 0;
}

static void json_connections(FILE *f)
{
    double s = setup_secs();
    fprintf(f, "\"connections\":{\"attempted\":%u,\"opened\":%u,\"failed\":%u,\"seconds\":%.3f,\"per_sec\":%.1f,",
            B.next_peer, B.ready, B.setup_failed, s, s > 0 ? B.ready / s : 0);
    report_json_lat(f, "latency_ms", B.connect_lat);
    fprintf(f, "}");
}

int report_best_step(void)
{
    int best = -1;
    for (int i = 0; i < B.nsteps; i++)
        if (B.steps[i].done && B.steps[i].sustained && (best < 0 || B.steps[i].rate > B.steps[best].rate)) best = i;
    return best;
}

void report_json_step_end(FILE *f, const char *lat_key, const step_t *st)
{
    report_json_lat(f, lat_key, st->lat);
    fprintf(f, ",");
    report_json_lat(f, "ack_latency_ms", st->ack);
    fprintf(f, ",\"sustained\":%s}", st->sustained ? "true" : "false");
}

void report_json_max_sustained(FILE *f, const char *rate_key, const char *per_sec_key,
                               double (*per_sec)(const step_t *st))
{
    int best = report_best_step();

    if (best >= 0)
        fprintf(f, ",\"%s\":%.0f,\"%s\":%.1f", rate_key, B.steps[best].rate, per_sec_key, per_sec(&B.steps[best]));
    else
        fprintf(f, ",\"%s\":null", rate_key);
}

const char *report_json_safe(const char *s)
{
    static char buf[256];
    size_t i = 0;

    for (; s[i] && i < sizeof buf - 1; i++)
        buf[i] = s[i] == '"' || s[i] == '\\' || (unsigned char)s[i] < 0x20 ? '\'' : s[i];
    buf[i] = '\0';
    return buf;
}

static void json_common_tail(FILE *f)
{
    const struct bench_scenario *sc = B.o.sc;

    fprintf(f, ",\"disconnects\":{\"total\":%llu,\"by_code\":{", (unsigned long long)B.disconnects);
    for (int i = 0; i < B.ncloses; i++)
        fprintf(f, "%s\"%d\":%llu", i ? "," : "", B.closes[i].code, (unsigned long long)B.closes[i].n);
    fprintf(f, "}},\"errors\":{");
    if (sc->report_json_errors)
        sc->report_json_errors(f);
    else
        fprintf(f, "\"publish\":%llu,\"protocol\":%llu,\"bad_payload\":%llu,\"rest_http\":%llu,"
                   "\"rest_reconnects\":%llu",
                (unsigned long long)REPORT_TOTAL(pub_errors), (unsigned long long)B.protocol_errors,
                (unsigned long long)B.bad_payload, (unsigned long long)B.rest_http_errors,
                (unsigned long long)B.rest_reconnects);
    fprintf(f, "},\"ok\":%s}\n", B.exit_code == 0 ? "true" : "false");
}

static void report_json(FILE *f)
{
    const struct opts *o = &B.o;

    fprintf(f, "{\"scenario\":\"%s\",\"target\":\"%s\",\"url\":\"%s\",\"encoding\":\"%s\",\"duration_s\":%g,",
            o->sc->name, o->target == TARGET_NATS ? "nats" : "herald", o->url,
            o->enc == HERALD_MSGPACK ? "msgpack" : "json", o->duration);
    /* What "acked" means: NATS core acknowledges nothing (bench.h, --target). */
    if (o->target == TARGET_NATS) fprintf(f, "\"ack\":\"pong\",");
    json_connections(f);
    if (o->sc->report_json) o->sc->report_json(f);
    json_common_tail(f);
}

void report_lat_row(FILE *f, const hist_t *h)
{
    if (!h || !h->count) { fprintf(f, " %8s %8s %8s %8s %8s", "-", "-", "-", "-", "-"); return; }
    fprintf(f, " %8.2f %8.2f %8.2f %8.2f %8.2f", report_ms(hist_percentile(h, 50)), report_ms(hist_percentile(h, 90)),
            report_ms(hist_percentile(h, 99)), report_ms(hist_percentile(h, 99.9)), report_ms(h->max));
}

const char *report_si(double v, char *buf, size_t n)
{
    if (v >= 1e6) snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e4) snprintf(buf, n, "%.1fk", v / 1e3);
    else snprintf(buf, n, "%.0f", v);
    return buf;
}

void report_disconnects(FILE *f, int none)
{
    if (B.disconnects) {
        fprintf(f, "disconnects during the run: %llu (", (unsigned long long)B.disconnects);
        for (int i = 0; i < B.ncloses; i++)
            fprintf(f, "%scode %d: %llu", i ? ", " : "", B.closes[i].code, (unsigned long long)B.closes[i].n);
        fprintf(f, ")\n");
    } else if (none) {
        fprintf(f, "disconnects during the run: none\n");
    }
}

void report_errors(FILE *f)
{
    if (REPORT_TOTAL(pub_errors) || B.protocol_errors || B.bad_payload)
        fprintf(f, "errors: %llu publish, %llu protocol, %llu unreadable payloads\n",
                (unsigned long long)REPORT_TOTAL(pub_errors), (unsigned long long)B.protocol_errors,
                (unsigned long long)B.bad_payload);
}

static void report_human(FILE *f)
{
    const struct opts *o = &B.o;
    const struct bench_scenario *sc = o->sc;
    double s = setup_secs();

    fprintf(f, "herald-bench %s  %s  encoding %s", sc->name, o->url, o->enc == HERALD_MSGPACK ? "msgpack" : "json");
    if (o->target == TARGET_NATS) fprintf(f, "  target nats (acked: the PONG after the PUB)");
    if (sc->report_head) sc->report_head(f);
    fprintf(f, "\nconnections: %u opened, %u failed, in %.2f s (%.0f/s); connect latency p50 %.2f ms, p99 %.2f ms\n",
            B.ready, B.setup_failed, s, s > 0 ? B.ready / s : 0, report_ms(hist_percentile(B.connect_lat, 50)),
            report_ms(hist_percentile(B.connect_lat, 99)));
    if (sc->report_body) sc->report_body(f);
    if (sc->report_tail) {
        sc->report_tail(f);
    } else {
        report_disconnects(f, 1);
        report_errors(f);
    }
}

/* ---- SVG ---- */

/* What a chart of several steps shows per step. */
static const char *chart_value(void)
{
    return B.o.sc->chart_value ? B.o.sc->chart_value : "deliveries/s";
}

#define W 640
#define H 400
#define ML 70
#define MR 70
#define MT 40
#define MB 50

static void svg_head(FILE *f, const char *title)
{
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
               "<text x=\"%d\" y=\"22\" font-size=\"14\" font-weight=\"bold\">%s</text>\n",
            W, H, W, H, ML, title);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", ML, MT,
            W - ML - MR, H - MT - MB);
}

static double nice_max(double v)
{
    double p = pow(10, floor(log10(v > 0 ? v : 1)));
    for (double m = 1; m <= 10; m *= 2) if (p * m >= v) return p * m;
    return p * 10;
}

/* Latency by percentile, x in "nines": 0 = p0, 1 = p90, 2 = p99, ... */
static void svg_percentiles(FILE *f, const hist_t *h, const char *title)
{
    double pw = W - ML - MR, ph = H - MT - MB, xmax = 5, ymax = nice_max(report_ms(h->max));
    uint64_t seen = 0;
    int first = 1;

    svg_head(f, title);
    for (int i = 0; i <= 5; i++) {
        static const char *lab[] = { "0%", "90%", "99%", "99.9%", "99.99%", "99.999%" };
        double x = ML + pw * i / xmax;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                   "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                x, MT, x, H - MB, x, H - MB + 16, lab[i]);
    }
    for (int i = 0; i <= 4; i++) {
        double y = MT + ph - ph * i / 4;
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n",
                ML, y, W - MR, y, ML - 6, y + 4, ymax * i / 4);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">percentile</text>\n", ML + (int)pw / 2, H - 12);
    fprintf(f, "<text x=\"16\" y=\"%d\" transform=\"rotate(-90 16 %d)\" text-anchor=\"middle\">latency (ms)</text>\n",
            MT + (int)ph / 2, MT + (int)ph / 2);
    fprintf(f, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"");
    for (unsigned i = 0; i < HIST_BUCKETS && h->count; i++) {
        double frac, nines, v;
        if (!h->b[i]) continue;
        seen += h->b[i];
        frac = (double)seen / (double)h->count;
        nines = frac >= 1 ? xmax : -log10(1 - frac);
        if (nines > xmax) nines = xmax;
        v = report_ms(hist_bucket_value(i));
        if (v > report_ms(h->max)) v = report_ms(h->max);
        if (first) { fprintf(f, "%.1f,%.1f ", (double)ML, MT + ph - ph * v / ymax); first = 0; }
        fprintf(f, "%.1f,%.1f ", ML + pw * nines / xmax, MT + ph - ph * v / ymax);
    }
    fprintf(f, "\"/>\n</svg>\n");
}

/* Deliveries/s (bars) and p99 (line) for each rate step. */
static void svg_steps(FILE *f, const char *title)
{
    const struct bench_scenario *sc = B.o.sc;
    double (*value)(const step_t *st) = sc->chart_step ? sc->chart_step : report_dps;
    double pw = W - ML - MR, ph = H - MT - MB, dmax = 0, pmax = 0, bw;
    int n = 0;

    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        if (!st->lat) continue;
        n++;
        if (value(st) > dmax) dmax = value(st);
        if (report_ms(hist_percentile(st->lat, 99)) > pmax) pmax = report_ms(hist_percentile(st->lat, 99));
    }
    dmax = nice_max(dmax);
    pmax = nice_max(pmax);
    bw = n ? pw / n : pw;
    svg_head(f, title);
    for (int i = 0; i <= 4; i++) {
        double y = MT + ph - ph * i / 4;
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#1f77b4\">%.3g</text>"
                   "<text x=\"%d\" y=\"%.1f\" fill=\"#d62728\">%.3g</text>\n",
                ML, y, W - MR, y, ML - 6, y + 4, dmax * i / 4, W - MR + 6, y + 4, pmax * i / 4);
    }
    fprintf(f, "<text x=\"16\" y=\"%d\" transform=\"rotate(-90 16 %d)\" text-anchor=\"middle\" fill=\"#1f77b4\">"
               "%s</text>\n", MT + (int)ph / 2, MT + (int)ph / 2, chart_value());
    fprintf(f, "<text x=\"%d\" y=\"%d\" transform=\"rotate(90 %d %d)\" text-anchor=\"middle\" fill=\"#d62728\">"
               "p99 latency (ms)</text>\n", W - 14, MT + (int)ph / 2, W - 14, MT + (int)ph / 2);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", ML + (int)pw / 2, H - 12,
            sc->chart_rate ? sc->chart_rate : "target publishes/s");
    for (int i = 0, k = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        double d, x;
        if (!st->lat) continue;
        d = value(st);
        x = ML + bw * k + bw * 0.15;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>"
                   "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f</text>\n",
                x, MT + ph - ph * d / dmax, bw * 0.7, ph * d / dmax, st->sustained ? "#9ecae1" : "#fdae6b",
                x + bw * 0.35, H - MB + 16, st->rate);
        k++;
    }
    fprintf(f, "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"");
    for (int i = 0, k = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        if (!st->lat) continue;
        fprintf(f, "%.1f,%.1f ", ML + bw * k + bw / 2, MT + ph - ph * report_ms(hist_percentile(st->lat, 99)) / pmax);
        k++;
    }
    fprintf(f, "\"/>\n<text x=\"%d\" y=\"%d\" font-size=\"11\">blue: sustained; orange: not sustained</text>\n</svg>\n",
            ML + 4, MT + 14);
}

static void write_svg(void)
{
    const struct bench_scenario *sc = B.o.sc;
    FILE *f = fopen(B.o.svg, "w");
    hist_t *h = hist_new();
    char title[160];

    if (!f || !h) {
        fprintf(stderr, "herald-bench: cannot write %s\n", B.o.svg);
        if (f) fclose(f);
        hist_free(h);
        return;
    }
    if (B.nsteps > 1) {
        snprintf(title, sizeof title, "herald-bench %s: %s and p99 per rate", sc->name, chart_value());
        svg_steps(f, title);
    } else {
        const char *what = "delivery";
        const hist_t *src = sc->chart_latency ? sc->chart_latency(&what) : B.steps[0].lat;
        if (src) hist_add(h, src);
        snprintf(title, sizeof title, "herald-bench %s: %s latency by percentile", sc->name, what);
        svg_percentiles(f, h, title);
    }
    hist_free(h);
    if (fclose(f)) fprintf(stderr, "herald-bench: error writing %s\n", B.o.svg);
}

void report(void)
{
    if (B.o.json) report_json(stdout);
    else report_human(stdout);
    fflush(stdout);
    if (B.o.svg) write_svg();
}
