/* bench/report.c - the results of a run: a table, one JSON object, an SVG chart.
 *
 * Owns: formatting only; it reads struct bench after the loop has ended.
 * With --json, stdout gets exactly one JSON object and nothing else. */
#include "bench.h"
#include "rest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *sc_name[SC_N] = { "fanout", "channels", "idle", "connect", "publish", "presence", "recover",
                                     "scores", "seats" };

static double ms(uint64_t ns) { return (double)ns / 1e6; }

static double step_secs(const step_t *st)
{
    return st->t_end > st->t_start ? (double)(st->t_end - st->t_start) / 1e9 : 0;
}

/* Deliveries per second over the span in which they arrived: from the
 * step's start to its last delivery (or its end, if that came later), so a
 * broker that falls behind and delivers during the drain is not credited
 * with the target rate. */
static double dps(const step_t *st)
{
    uint64_t end = st->t_last_rx > st->t_end ? st->t_last_rx : st->t_end;
    return end > st->t_start ? (double)st->received / ((double)(end - st->t_start) / 1e9) : 0;
}

/* The value a step chart shows: deliveries/s, or joins+leaves/s for presence. */
static double step_value(const step_t *st)
{
    return B.o.sc == SC_PRESENCE ? pres_changes_per_sec(st) : dps(st);
}

static uint64_t total_of(size_t off)
{
    uint64_t t = 0;
    for (int i = 0; i < B.nsteps; i++) t += *(const uint64_t *)((const char *)&B.steps[i] + off);
    return t;
}

#define TOTAL(field) total_of(offsetof(step_t, field))

static void json_lat(FILE *f, const char *key, const hist_t *h)
{
    if (!h || !h->count) { fprintf(f, "\"%s\":null", key); return; }
    fprintf(f, "\"%s\":{\"count\":%llu,\"min\":%.3f,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
               "\"p99_9\":%.3f,\"max\":%.3f}", key, (unsigned long long)h->count, ms(h->min),
            h->sum / (double)h->count / 1e6, ms(hist_percentile(h, 50)), ms(hist_percentile(h, 90)),
            ms(hist_percentile(h, 99)), ms(hist_percentile(h, 99.9)), ms(h->max));
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
    json_lat(f, "latency_ms", B.connect_lat);
    fprintf(f, "}");
}

static int best_step(void)
{
    int best = -1;
    for (int i = 0; i < B.nsteps; i++)
        if (B.steps[i].done && B.steps[i].sustained && (best < 0 || B.steps[i].rate > B.steps[best].rate)) best = i;
    return best;
}

/* The end of a step's JSON object: its delivery latency under @lat_key, its
 * ack latency, whether it was sustained. */
static void json_step_end(FILE *f, const char *lat_key, const step_t *st)
{
    json_lat(f, lat_key, st->lat);
    fprintf(f, ",");
    json_lat(f, "ack_latency_ms", st->ack);
    fprintf(f, ",\"sustained\":%s}", st->sustained ? "true" : "false");
}

/* The best sustained step's rate under @rate_key and its @per_sec under
 * @per_sec_key, or @rate_key null when no step was sustained. */
static void json_max_sustained(FILE *f, const char *rate_key, const char *per_sec_key,
                               double (*per_sec)(const step_t *st))
{
    int best = best_step();

    if (best >= 0)
        fprintf(f, ",\"%s\":%.0f,\"%s\":%.1f", rate_key, B.steps[best].rate, per_sec_key, per_sec(&B.steps[best]));
    else
        fprintf(f, ",\"%s\":null", rate_key);
}

/* @s with the characters a JSON string cannot hold as they are replaced by
 * '?' (a static buffer: one call per printf). */
static const char *json_safe(const char *s)
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
    fprintf(f, ",\"disconnects\":{\"total\":%llu,\"by_code\":{", (unsigned long long)B.disconnects);
    for (int i = 0; i < B.ncloses; i++)
        fprintf(f, "%s\"%d\":%llu", i ? "," : "", B.closes[i].code, (unsigned long long)B.closes[i].n);
    if (B.o.sc == SC_SCORES || B.o.sc == SC_SEATS)
        fprintf(f, "}},\"errors\":{\"%s\":%llu,\"cancelled\":%llu,\"rest\":%llu,\"rest_first\":\"%s\","
                   "\"protocol\":%llu,\"rest_reconnects\":%llu}", B.o.sc == SC_SCORES ? "updates" : "holds",
                (unsigned long long)TOTAL(pub_errors), (unsigned long long)B.sf.cancelled,
                (unsigned long long)B.sf.rest_errors,
                json_safe(B.sf.first_error), (unsigned long long)B.protocol_errors,
                (unsigned long long)B.rest_reconnects);
    else if (B.o.sc == SC_PRESENCE)
        fprintf(f, "}},\"errors\":{\"presence_ops\":%llu,\"starved\":%llu,\"protocol\":%llu}",
                (unsigned long long)TOTAL(op_errors), (unsigned long long)TOTAL(starved),
                (unsigned long long)B.protocol_errors);
    else fprintf(f, "}},\"errors\":{\"publish\":%llu,\"protocol\":%llu,\"bad_payload\":%llu,"
               "\"rest_http\":%llu,\"rest_reconnects\":%llu}",
            (unsigned long long)TOTAL(pub_errors), (unsigned long long)B.protocol_errors,
            (unsigned long long)B.bad_payload, (unsigned long long)B.rest_http_errors,
            (unsigned long long)B.rest_reconnects);
    fprintf(f, ",\"ok\":%s}\n", B.exit_code == 0 ? "true" : "false");
}

static void json_steps(FILE *f)
{
    hist_t *all = hist_new(), *ack = hist_new();
    uint64_t exp = TOTAL(expected), rec = TOTAL(received);
    double dps_max = 0;

    fprintf(f, "\"steps\":[");
    for (int i = 0; i < B.nsteps; i++) {
        step_t *st = &B.steps[i];
        double s = step_secs(st), d = dps(st);
        if (!st->lat) continue;
        if (all) hist_add(all, st->lat);
        if (ack) hist_add(ack, st->ack);
        if (d > dps_max) dps_max = d;
        fprintf(f, "%s{\"rate\":%.0f,\"seconds\":%.3f,\"published\":%llu,\"acked\":%llu,\"publish_errors\":%llu,"
                   "\"publishes_per_sec\":%.1f,\"expected\":%llu,\"received\":%llu,\"lost\":%lld,"
                   "\"delivery_ratio\":%.6f,\"deliveries_per_sec\":%.1f,\"gaps\":%llu,\"duplicates\":%llu,"
                   "\"late\":%llu,\"late_max_ms\":%.3f,\"drain_seconds\":%.3f,\"bench_cpu_pct\":%.1f,",
                i ? "," : "", st->rate, s, (unsigned long long)st->published, (unsigned long long)st->acked,
                (unsigned long long)st->pub_errors, s > 0 ? st->acked / s : 0,
                (unsigned long long)st->expected, (unsigned long long)st->received,
                (long long)st->expected - (long long)st->received,
                st->expected ? (double)st->received / (double)st->expected : 0, d,
                (unsigned long long)st->gaps, (unsigned long long)st->dups,
                (unsigned long long)st->late, ms(st->late_max), st->t_drained > st->t_end ? (double)(st->t_drained - st->t_end) / 1e9 : 0, st->bench_cpu);
        if (st->broker_cpu >= 0) fprintf(f, "\"broker_cpu_pct\":%.1f,", st->broker_cpu);
        json_step_end(f, "latency_ms", st);
    }
    fprintf(f, "],\"published\":%llu,\"acked\":%llu,\"expected\":%llu,\"received\":%llu,\"lost\":%lld,"
               "\"deliveries_per_sec\":%.1f,",
            (unsigned long long)TOTAL(published), (unsigned long long)TOTAL(acked), (unsigned long long)exp,
            (unsigned long long)rec, (long long)exp - (long long)rec, dps_max);
    json_lat(f, "latency_ms", all);
    fprintf(f, ",");
    json_lat(f, "ack_latency_ms", ack);
    json_max_sustained(f, "max_sustained_rate", "max_sustained_deliveries_per_sec", dps);
    fprintf(f, ",\"p99_max_ms\":%g", B.o.p99_max_ms);
    hist_free(all);
    hist_free(ack);
}

static void json_presence(FILE *f)
{
    const struct opts *o = &B.o;
    size_t chlen;
    const char *ch = pres_channel(&chlen);

    fprintf(f, ",\"namespace\":\"%s\",\"channel\":\"%.*s\",\"members\":%u,\"watchers\":%u,\"rejoin_delay_s\":%g,"
               "\"presence_wait_s\":%.3f,\"setup_events\":%llu,\"steps\":[", o->ns, (int)chlen, ch, o->members,
            o->watchers, o->rejoin_delay, B.presence_wait, (unsigned long long)B.setup_events);
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        double s = step_secs(st);
        if (!st->lat) continue;
        fprintf(f, "%s{\"churn\":%.0f,\"target_changes_per_sec\":%.0f,\"seconds\":%.3f,\"operations\":%llu,"
                   "\"leaves_sent\":%llu,\"leaves_acked\":%llu,\"joins_sent\":%llu,\"joins_acked\":%llu,"
                   "\"op_errors\":%llu,\"starved\":%llu,\"changes_per_sec\":%.1f,",
                i ? "," : "", st->rate, 2 * st->rate, s, (unsigned long long)st->total,
                (unsigned long long)st->leaves_sent, (unsigned long long)st->leaves_acked,
                (unsigned long long)st->joins_sent, (unsigned long long)st->joins_acked,
                (unsigned long long)st->op_errors, (unsigned long long)st->starved, pres_changes_per_sec(st));
        fprintf(f, "\"events\":{\"expected_per_watcher\":%llu,\"seen_min\":%llu,\"seen_max\":%llu,"
                   "\"seen_mean\":%.1f,\"ratio_min\":%.6f,\"joins\":%llu,\"leaves\":%llu,\"batches\":%llu,"
                   "\"unmatched\":%llu},\"member_events\":%llu,\"member_events_per_sec\":%.1f,"
                   "\"drain_seconds\":%.3f,\"bench_cpu_pct\":%.1f,",
                (unsigned long long)st->ev_expected, (unsigned long long)st->ev_seen_min,
                (unsigned long long)st->ev_seen_max, o->watchers ? (double)st->ev_seen_sum / o->watchers : 0,
                st->ev_expected ? (double)st->ev_seen_min / (double)st->ev_expected : 0,
                (unsigned long long)st->ev_joins, (unsigned long long)st->ev_leaves,
                (unsigned long long)st->ev_batches, (unsigned long long)st->ev_unmatched,
                (unsigned long long)st->member_events,
                st->t_drained > st->t_start ? st->member_events / ((double)(st->t_drained - st->t_start) / 1e9) : 0,
                st->t_drained > st->t_end ? (double)(st->t_drained - st->t_end) / 1e9 : 0, st->bench_cpu);
        if (st->broker_cpu >= 0) fprintf(f, "\"broker_cpu_pct\":%.1f,", st->broker_cpu);
        json_step_end(f, "event_latency_ms", st);
    }
    fprintf(f, "]");
    json_max_sustained(f, "max_sustained_churn", "max_sustained_changes_per_sec", pres_changes_per_sec);
    fprintf(f, ",\"p99_max_ms\":%g,\"final_presence\":{\"expected\":%u,", o->p99_max_ms, o->members + o->watchers);
    if (B.final_members >= 0)
        fprintf(f, "\"members\":%lld,\"connections\":%lld,\"ok\":%s}", (long long)B.final_members,
                (long long)B.final_connections,
                B.final_members == o->members + o->watchers && B.final_connections == o->members + o->watchers
                    ? "true" : "false");
    else
        fprintf(f, "\"members\":null,\"connections\":null,\"ok\":false}");
}

/* A histogram of counts (not nanoseconds). */
static void json_counts(FILE *f, const char *key, const hist_t *h)
{
    if (!h || !h->count) { fprintf(f, "\"%s\":null", key); return; }
    fprintf(f, "\"%s\":{\"count\":%llu,\"min\":%llu,\"mean\":%.1f,\"p50\":%llu,\"p99\":%llu,\"max\":%llu}", key,
            (unsigned long long)h->count, (unsigned long long)h->min, h->sum / (double)h->count,
            (unsigned long long)hist_percentile(h, 50), (unsigned long long)hist_percentile(h, 99),
            (unsigned long long)h->max);
}

static void json_recover(FILE *f)
{
    const struct opts *o = &B.o;
    const struct recover_figures *r = &B.rf;
    const step_t *st = &B.steps[0];
    double s = step_secs(st);

    fprintf(f, ",\"namespace\":\"%s\",\"channel\":\"%s\",\"size\":%u,\"subscribers\":%u,\"fraction\":%g,"
               "\"outage_s\":%g,\"cycles\":%u,\"expect_unrecovered\":%s,\"rate\":%.0f,\"seconds\":%.3f,"
               "\"published\":%llu,\"acked\":%llu,\"publish_errors\":%llu,\"publishes_per_sec\":%.1f,"
               "\"last_offset\":%llu,",
            o->ns, r->channel, o->size, B.nsubs, o->fraction, o->outage, o->cycles,
            o->expect_unrecovered ? "true" : "false", st->rate, s, (unsigned long long)st->published,
            (unsigned long long)st->acked, (unsigned long long)st->pub_errors, s > 0 ? st->acked / s : 0,
            (unsigned long long)r->last_offset);
    fprintf(f, "\"cycles_run\":%u,\"dropped\":%llu,\"reconnections\":%llu,\"reconnect_failures\":%llu,"
               "\"refused\":%llu,\"recovered\":{\"true\":%llu,\"false\":%llu},\"missed\":%llu,"
               "\"recovered_publications\":%llu,\"unrecoverable\":%llu,\"tail_publications\":%llu,"
               "\"gaps\":%llu,\"duplicates\":%llu,\"seq_mismatches\":%llu,\"epoch_mismatches\":%llu,"
               "\"bad_replies\":%llu,\"unexpected_closes\":%llu,\"pending_at_end\":{\"connecting\":%llu,\"subscribing\":%llu},",
            r->cycles_run, (unsigned long long)r->dropped, (unsigned long long)r->reconnections,
            (unsigned long long)r->reconnect_failures, (unsigned long long)r->refused,
            (unsigned long long)r->recovered_true, (unsigned long long)r->recovered_false,
            (unsigned long long)r->missed, (unsigned long long)r->recovered_pubs,
            (unsigned long long)r->unrecoverable, (unsigned long long)r->tail_pubs, (unsigned long long)r->gaps,
            (unsigned long long)r->dups, (unsigned long long)r->mismatches, (unsigned long long)r->epoch_mismatches,
            (unsigned long long)r->bad_replies, (unsigned long long)r->unexpected_closes,
            (unsigned long long)r->pending_connect, (unsigned long long)r->pending_reply);
    json_lat(f, "recovery_latency_ms", r->recovery);
    fprintf(f, ",");
    json_counts(f, "publications_per_reply", r->per_reply);
    fprintf(f, ",\"deliveries\":{\"expected\":%llu,\"received\":%llu,\"live\":%llu,\"in_replies\":%llu,"
               "\"subscribers_behind\":%llu},",
            (unsigned long long)r->expected, (unsigned long long)r->received, (unsigned long long)r->live,
            (unsigned long long)r->from_replies, (unsigned long long)r->behind);
    json_lat(f, "latency_ms", st->lat);
    fprintf(f, ",");
    json_lat(f, "ack_latency_ms", st->ack);
    fprintf(f, ",\"drain_seconds\":%.3f,\"bench_cpu_pct\":%.1f",
            st->t_drained > st->t_end ? (double)(st->t_drained - st->t_end) / 1e9 : 0, st->bench_cpu);
    if (st->broker_cpu >= 0) fprintf(f, ",\"broker_cpu_pct\":%.1f", st->broker_cpu);
}

/* Updates (scores) or holds (seats) answered per second, over the span from
 * the step's start to its last answer. */
static double answers_per_sec(const step_t *st, uint64_t answered)
{
    uint64_t end = st->t_last_ack > st->t_end ? st->t_last_ack : st->t_end;
    return end > st->t_start ? (double)answered / ((double)(end - st->t_start) / 1e9) : 0;
}

static void json_state_step_tail(FILE *f, const step_t *st)
{
    fprintf(f, "\"snapshots\":%llu,\"skipped\":%llu,\"unreadable\":%llu,\"viewers\":{\"converged\":%u,"
               "\"unverifiable\":%u,\"diverged\":%u,\"lost\":%u},\"broker_offset\":%llu,\"drain_seconds\":%.3f,"
               "\"bench_cpu_pct\":%.1f,", (unsigned long long)st->snapshots, (unsigned long long)st->skipped,
            (unsigned long long)st->unreadable, st->converged, st->unverifiable, st->diverged, st->viewers_lost,
            (unsigned long long)st->broker_offset,
            st->t_drained > st->t_end ? (double)(st->t_drained - st->t_end) / 1e9 : 0, st->bench_cpu);
    if (st->broker_cpu >= 0) fprintf(f, "\"broker_cpu_pct\":%.1f,", st->broker_cpu);
}

static void json_scores(FILE *f)
{
    const struct opts *o = &B.o;
    const struct state_figures *sf = &B.sf;
    const step_t *last = &B.steps[B.nsteps - 1];

    fprintf(f, ",\"namespace\":\"%s\",\"channel\":\"%s\",\"viewers\":%u,\"publishers\":%u,\"offset0\":%llu,"
               "\"score0\":%lld,\"steps\":[", o->ns, sf->channel, B.nsubs, o->clients,
            (unsigned long long)sf->offset0, (long long)sf->score0);
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        if (!st->lat) continue;
        fprintf(f, "%s{\"rate\":%.0f,\"seconds\":%.3f,\"updates_sent\":%llu,\"updates_acked\":%llu,"
                   "\"update_errors\":%llu,\"updates_per_sec\":%.1f,\"expected\":%llu,\"received\":%llu,"
                   "\"delivery_ratio\":%.6f,\"deliveries_per_sec\":%.1f,\"mismatches\":%llu,\"late\":%llu,"
                   "\"broker_score\":%lld,",
                i ? "," : "", st->rate, step_secs(st), (unsigned long long)st->published,
                (unsigned long long)st->acked, (unsigned long long)st->pub_errors, answers_per_sec(st, st->acked),
                (unsigned long long)st->expected, (unsigned long long)st->received,
                st->expected ? (double)st->received / (double)st->expected : 0, dps(st),
                (unsigned long long)st->mismatches, (unsigned long long)st->late, (long long)st->broker_score);
        json_state_step_tail(f, st);
        json_step_end(f, "latency_ms", st);
    }
    fprintf(f, "]");
    json_max_sustained(f, "max_sustained_rate", "max_sustained_deliveries_per_sec", dps);
    fprintf(f, ",\"p99_max_ms\":%g,\"gaps\":%llu,\"duplicates\":%llu,\"bad_replies\":%llu,\"stale_reads\":%llu,"
               "\"stale_max\":%llu,\"final\":{\"broker_score\":%lld,\"broker_offset\":%llu,\"viewers\":%u,\"converged\":%u,"
               "\"unverifiable\":%u,\"diverged\":%u}", o->p99_max_ms, (unsigned long long)sf->gaps,
            (unsigned long long)sf->dups, (unsigned long long)sf->bad_replies, (unsigned long long)sf->stale_reads,
            (unsigned long long)sf->stale_max, (long long)last->broker_score,
            (unsigned long long)last->broker_offset, B.nsubs, last->converged, last->unverifiable, last->diverged);
}

static void json_seats(FILE *f)
{
    const struct opts *o = &B.o;
    const struct state_figures *sf = &B.sf;

    fprintf(f, ",\"event\":\"%s\",\"channel\":\"%s\",\"seats\":%u,\"sections\":%u,\"section_size\":%u,"
               "\"hot\":%g,\"hot_seats\":%u,\"ttl\":%u,\"clients\":%u,\"viewers\":%u,\"mode\":\"%s\","
               "\"offset0\":%llu,\"steps\":[", sf->event, sf->channel, o->seats, sf->sections, o->section, o->hot,
            sf->hot_seats, o->ttl, o->clients, B.nsubs, o->nrates ? "open" : "closed",
            (unsigned long long)sf->offset0);
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        uint64_t answered = st->acked + st->taken;
        if (!st->lat) continue;
        fprintf(f, "%s{", i ? "," : "");
        if (st->rate > 0) fprintf(f, "\"rate\":%.0f,", st->rate);
        else fprintf(f, "\"rate\":null,");
        fprintf(f, "\"seconds\":%.3f,\"holds_sent\":%llu,\"holds_ok\":%llu,\"holds_taken\":%llu,"
                   "\"hold_errors\":%llu,\"holds_per_sec\":%.1f,\"holds_ok_per_sec\":%.1f,\"taken_ratio\":%.4f,"
                   "\"seats_held\":%llu,\"releases\":%llu,\"releases_ok\":%llu,\"deltas_received\":%llu,"
                   "\"deltas_per_sec\":%.1f,",
                step_secs(st), (unsigned long long)st->published, (unsigned long long)st->acked,
                (unsigned long long)st->taken, (unsigned long long)st->pub_errors, answers_per_sec(st, answered),
                answers_per_sec(st, st->acked), answered ? (double)st->taken / (double)answered : 0,
                (unsigned long long)st->seats_held, (unsigned long long)st->releases,
                (unsigned long long)st->releases_ok, (unsigned long long)st->received,
                st->t_last_rx > st->t_start ? st->received / ((double)(st->t_last_rx - st->t_start) / 1e9) : 0);
        json_state_step_tail(f, st);
        json_lat(f, "hold_latency_ms", st->ack);
        fprintf(f, ",");
        json_lat(f, "release_latency_ms", st->rel);
        fprintf(f, ",");
        json_lat(f, "delta_latency_ms", st->lat);
        fprintf(f, ",\"sustained\":%s}", st->sustained ? "true" : "false");
    }
    fprintf(f, "],\"p99_max_ms\":%g,\"gaps\":%llu,\"duplicates\":%llu,\"bad_replies\":%llu,\"stale_reads\":%llu,"
               "\"stale_max\":%llu,", o->p99_max_ms, (unsigned long long)sf->gaps, (unsigned long long)sf->dups,
            (unsigned long long)sf->bad_replies, (unsigned long long)sf->stale_reads,
            (unsigned long long)sf->stale_max);
    fprintf(f, "\"invariants\":{\"checks\":%u,\"pages\":%llu,\"seats_read\":%llu,\"free\":%llu,\"held\":%llu,"
               "\"booked\":%llu,\"bad_seats\":%llu,\"missing_seats\":%llu,\"sections_read\":%llu,"
               "\"section_mismatches\":%llu,\"unreleased\":%llu,\"violations\":%llu,\"first_violation\":\"%s\","
               "\"ok\":%s}",
            sf->checks, (unsigned long long)sf->pages, (unsigned long long)sf->seats_read,
            (unsigned long long)sf->free_n, (unsigned long long)sf->held_n, (unsigned long long)sf->booked_n,
            (unsigned long long)sf->bad_seats, (unsigned long long)sf->missing_seats,
            (unsigned long long)sf->sections_read, (unsigned long long)sf->section_mismatches,
            (unsigned long long)sf->unreleased, (unsigned long long)sf->violations, json_safe(sf->first_violation),
            sf->checks && !sf->violations ? "true" : "false");
}

static void report_json(FILE *f)
{
    const struct opts *o = &B.o;

    fprintf(f, "{\"scenario\":\"%s\",\"url\":\"%s\",\"encoding\":\"%s\",\"duration_s\":%g,", sc_name[o->sc],
            o->url, o->enc == HERALD_MSGPACK ? "msgpack" : "json", o->duration);
    json_connections(f);
    switch (o->sc) {
    case SC_FANOUT: case SC_CHANNELS: case SC_PUBLISH:
        fprintf(f, ",\"namespace\":\"%s\"", o->ns);
        fprintf(f, ",\"publish\":\"%s\",\"size\":%u,\"channels\":%u,\"subscribers\":%u,\"subscribers_per_channel\":%u,"
                   "\"publishers\":%u,", o->publish == PUB_REST ? "rest" : "ws", o->size, o->channels, B.nsubs,
                o->channels ? B.nsubs / o->channels : 0, o->publishers);
        if (o->sc == SC_PUBLISH) {
            const step_t *st = &B.steps[0];
            double s = step_secs(st);
            fprintf(f, "\"window\":%u,\"acks_per_sec\":%.1f,", o->publish == PUB_REST ? 1 : o->window,
                    s > 0 ? st->acked / s : 0);
        }
        json_steps(f);
        break;
    case SC_IDLE:
        fprintf(f, ",\"pid\":%d,\"broker_rss_before\":%ld,\"broker_rss_after\":%ld,", o->pid, B.rss_before, B.rss_after);
        if (B.rss_before > 0 && B.rss_after > 0 && B.ready)
            fprintf(f, "\"bytes_per_connection\":%.1f,", (double)(B.rss_after - B.rss_before) / B.ready);
        else
            fprintf(f, "\"bytes_per_connection\":null,");
        fprintf(f, "\"bench_rss\":%ld", B.bench_rss);
        break;
    case SC_PRESENCE:
        json_presence(f);
        break;
    case SC_RECOVER:
        json_recover(f);
        break;
    case SC_SCORES:
        json_scores(f);
        break;
    case SC_SEATS:
        json_seats(f);
        break;
    default:
        break;
    }
    json_common_tail(f);
}

static void human_lat_row(FILE *f, const hist_t *h)
{
    if (!h || !h->count) { fprintf(f, " %8s %8s %8s %8s %8s", "-", "-", "-", "-", "-"); return; }
    fprintf(f, " %8.2f %8.2f %8.2f %8.2f %8.2f", ms(hist_percentile(h, 50)), ms(hist_percentile(h, 90)),
            ms(hist_percentile(h, 99)), ms(hist_percentile(h, 99.9)), ms(h->max));
}

static const char *si(double v, char *buf, size_t n)
{
    if (v >= 1e6) snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e4) snprintf(buf, n, "%.1fk", v / 1e3);
    else snprintf(buf, n, "%.0f", v);
    return buf;
}

static void human_presence(FILE *f)
{
    const struct opts *o = &B.o;
    int best = best_step();
    char a[32], b[32];

    fprintf(f, "presence: the broker counted all %u members %.2f s after the last subscribe was acknowledged; "
               "watchers saw %llu setup events\n", o->members + o->watchers, B.presence_wait,
            (unsigned long long)B.setup_events);
    fprintf(f, "\n%8s %8s %8s %8s %6s %9s %10s %10s %7s %8s %8s %8s %8s %9s %6s %7s  %s\n", "churn/s", "target/s",
            "leaves", "joins", "errors", "changes/s", "events/w", "expected", "batches", "p50ms", "p99ms", "maxms",
            "ackp99", "fanout/s", "bench%", "broker%", "ok");
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        double fan = st->t_drained > st->t_start ? st->member_events / ((double)(st->t_drained - st->t_start) / 1e9) : 0;
        if (!st->lat) continue;
        fprintf(f, "%8.0f %8.0f %8llu %8llu %6llu %9.1f %10llu %10llu %7llu", st->rate, 2 * st->rate,
                (unsigned long long)st->leaves_acked, (unsigned long long)st->joins_acked,
                (unsigned long long)(st->op_errors + st->starved), pres_changes_per_sec(st),
                (unsigned long long)st->ev_seen_min, (unsigned long long)st->ev_expected,
                (unsigned long long)st->ev_batches);
        if (st->lat->count)
            fprintf(f, " %8.2f %8.2f %8.2f", ms(hist_percentile(st->lat, 50)), ms(hist_percentile(st->lat, 99)),
                    ms(st->lat->max));
        else
            fprintf(f, " %8s %8s %8s", "-", "-", "-");
        fprintf(f, " %8.2f %9s %6.0f %7s  %s\n", ms(hist_percentile(st->ack, 99)), si(fan, a, sizeof a), st->bench_cpu,
                st->broker_cpu >= 0 ? (snprintf(b, sizeof b, "%.0f", st->broker_cpu), b) : "-",
                st->sustained ? "yes" : "no");
        if (st->ev_unmatched || st->starved || st->op_errors)
            fprintf(f, "  step %.0f/s: %llu events matched no operation, %llu operations dropped (no member free), "
                       "%llu failed\n", st->rate, (unsigned long long)st->ev_unmatched,
                    (unsigned long long)st->starved, (unsigned long long)st->op_errors);
    }
    fprintf(f, "(events/w: the fewest join+leave events any watcher saw, batch totals included; expected: acked\n"
               " leaves + joins, exact with presence_grace 0; fanout/s: events delivered to the churned members)\n");
    if (best >= 0)
        fprintf(f, "\nmax sustained churn: %.0f operations/s = %.0f joins+leaves/s\n", B.steps[best].rate,
                pres_changes_per_sec(&B.steps[best]));
    else
        fprintf(f, "\nmax sustained churn: none of the rates met the criteria (see herald-bench presence --help)\n");
    if (B.final_members >= 0)
        fprintf(f, "final presence_stats: %lld members, %lld connections (expected %u): %s\n",
                (long long)B.final_members, (long long)B.final_connections, o->members + o->watchers,
                B.final_members == o->members + o->watchers && B.final_connections == o->members + o->watchers
                    ? "ok" : "WRONG");
    else
        fprintf(f, "final presence_stats: not read\n");
}

static void human_recover(FILE *f)
{
    const struct opts *o = &B.o;
    const struct recover_figures *r = &B.rf;
    const step_t *st = &B.steps[0];
    const hist_t *h = r->recovery, *n = r->per_reply;
    double s = step_secs(st);

    fprintf(f, "\npublished %llu, acked %llu (%.0f/s over %.2f s), errors %llu; last offset %llu\n",
            (unsigned long long)st->published, (unsigned long long)st->acked, s > 0 ? st->acked / s : 0, s,
            (unsigned long long)st->pub_errors, (unsigned long long)r->last_offset);
    fprintf(f, "cycles: %u of %u, %llu subscribers dropped, %llu reconnections, %llu failed\n", r->cycles_run,
            o->cycles, (unsigned long long)r->dropped, (unsigned long long)r->reconnections,
            (unsigned long long)r->reconnect_failures);
    fprintf(f, "recovered: true %llu, false %llu%s\n", (unsigned long long)r->recovered_true,
            (unsigned long long)r->recovered_false,
            o->expect_unrecovered ? " (false expected: --expect-unrecovered)" : "");
    fprintf(f, "missed while away: %llu publications; recovered %llu in replies; unrecoverable %llu "
               "(%llu more in the tails of failed recoveries)\n",
            (unsigned long long)r->missed, (unsigned long long)r->recovered_pubs,
            (unsigned long long)r->unrecoverable, (unsigned long long)r->tail_pubs);
    fprintf(f, "checks: gaps %llu, duplicates %llu, sequence/offset mismatches %llu, epoch mismatches %llu, "
               "bad replies %llu\n", (unsigned long long)r->gaps, (unsigned long long)r->dups,
            (unsigned long long)r->mismatches, (unsigned long long)r->epoch_mismatches,
            (unsigned long long)r->bad_replies);
    if (h && h->count)
        fprintf(f, "recovery latency ms (reconnect -> subscribe reply): p50 %.2f  p99 %.2f  max %.2f\n",
                ms(hist_percentile(h, 50)), ms(hist_percentile(h, 99)), ms(h->max));
    if (n && n->count)
        fprintf(f, "publications per recovery reply: mean %.1f  p50 %llu  p99 %llu  max %llu\n",
                n->sum / (double)n->count, (unsigned long long)hist_percentile(n, 50),
                (unsigned long long)hist_percentile(n, 99), (unsigned long long)n->max);
    fprintf(f, "deliveries: expected %llu, received %llu (%llu live, %llu in replies)%s\n",
            (unsigned long long)r->expected, (unsigned long long)r->received, (unsigned long long)r->live,
            (unsigned long long)r->from_replies, r->behind ? "; some subscribers were still behind" : "");
    if (st->lat && st->lat->count)
        fprintf(f, "live delivery latency ms: p50 %.2f  p99 %.2f  max %.2f\n", ms(hist_percentile(st->lat, 50)),
                ms(hist_percentile(st->lat, 99)), ms(st->lat->max));
    fprintf(f, "bench CPU %.0f%%", st->bench_cpu);
    if (st->broker_cpu >= 0) fprintf(f, ", broker CPU %.0f%%", st->broker_cpu);
    fprintf(f, "\n");
}

static void human_viewers(FILE *f, const step_t *st)
{
    fprintf(f, "%u converged, %u unverifiable, %u diverged, %u lost", st->converged, st->unverifiable,
            st->diverged, st->viewers_lost);
}

static void human_scores(FILE *f)
{
    const struct state_figures *sf = &B.sf;
    const step_t *last = &B.steps[B.nsteps - 1];
    int best = best_step();
    char a[32], b[32], c[32];

    fprintf(f, "\n%7s %8s %8s %8s %11s %11s %8s %7s %8s %8s %8s %8s %8s %8s %6s %6s  %s\n", "rate/s", "sent",
            "acked", "upd/s", "expected", "received", "deliv/s", "snaps", "p50ms", "p90ms", "p99ms", "p99.9ms",
            "maxms", "ackp99", "bench%", "broker%", "ok");
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        if (!st->lat) continue;
        fprintf(f, "%7.0f %8llu %8llu %8.1f %11llu %11llu %8s %7llu", st->rate, (unsigned long long)st->published,
                (unsigned long long)st->acked, answers_per_sec(st, st->acked), (unsigned long long)st->expected,
                (unsigned long long)st->received, si(dps(st), a, sizeof a), (unsigned long long)st->snapshots);
        human_lat_row(f, st->lat);
        fprintf(f, " %8.2f %6.0f %6s  %s\n", ms(hist_percentile(st->ack, 99)), st->bench_cpu,
                st->broker_cpu >= 0 ? (snprintf(b, sizeof b, "%.0f", st->broker_cpu), b) : "-",
                st->sustained ? "yes" : "no");
        fprintf(f, "        after the step: broker score %lld at offset %llu; snapshots replaced %llu deltas; viewers: ",
                (long long)st->broker_score, (unsigned long long)st->broker_offset, (unsigned long long)st->skipped);
        human_viewers(f, st);
        fprintf(f, "%s\n", st->mismatches || st->unreadable ? "; DELTAS WITH WRONG OR UNREADABLE VALUES" : "");
    }
    fprintf(f, "(upd/s: acked updates per second; expected: acked updates x live viewers; received: deltas;\n"
               " snaps: snapshots sent to conflated viewers, which replace the deltas they skipped;\n"
               " unverifiable: at the broker's offset through a snapshot, whose state the bench cannot read)\n");
    if (best >= 0)
        fprintf(f, "\nmax sustained rate: %s updates/s = %s deliveries/s to %u viewers\n", si(B.steps[best].rate, a, sizeof a),
                si(dps(&B.steps[best]), c, sizeof c), B.nsubs);
    else
        fprintf(f, "\nmax sustained rate: none of the rates met the criteria (see herald-bench scores --help)\n");
    fprintf(f, "at the end: %u of %u viewers converged on score %lld (%u more at the offset through a snapshot, "
               "%u diverged); gaps %llu, duplicates %llu\n", last->converged, B.nsubs, (long long)last->broker_score,
            last->unverifiable, last->diverged, (unsigned long long)sf->gaps, (unsigned long long)sf->dups);
}

static void human_seats(FILE *f)
{
    const struct state_figures *sf = &B.sf;
    char a[32];

    fprintf(f, "\n%7s %8s %8s %8s %8s %6s %8s %8s %8s %8s %8s %8s %8s %8s %6s %6s\n", "rate/s", "holds", "ok",
            "taken", "errors", "taken%", "holds/s", "hp50ms", "hp99ms", "hmaxms", "relp99", "deltas", "dp50ms",
            "dp99ms", "bench%", "broker%");
    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        uint64_t answered = st->acked + st->taken;
        if (!st->lat) continue;
        fprintf(f, "%7s %8llu %8llu %8llu %8llu %6.1f %8.0f %8.2f %8.2f %8.2f %8.2f %8llu",
                st->rate > 0 ? si(st->rate, a, sizeof a) : "closed", (unsigned long long)st->published,
                (unsigned long long)st->acked, (unsigned long long)st->taken, (unsigned long long)st->pub_errors,
                answered ? 100.0 * (double)st->taken / (double)answered : 0, answers_per_sec(st, answered),
                ms(hist_percentile(st->ack, 50)), ms(hist_percentile(st->ack, 99)), ms(st->ack->max),
                ms(hist_percentile(st->rel, 99)), (unsigned long long)st->received);
        if (st->lat->count) fprintf(f, " %8.2f %8.2f", ms(hist_percentile(st->lat, 50)), ms(hist_percentile(st->lat, 99)));
        else fprintf(f, " %8s %8s", "-", "-");
        fprintf(f, " %6.0f %6s\n", st->bench_cpu, st->broker_cpu >= 0 ? (snprintf(a, sizeof a, "%.0f", st->broker_cpu), a) : "-");
        fprintf(f, "        releases %llu of %llu ok; snapshots %llu; viewers: ", (unsigned long long)st->releases_ok,
                (unsigned long long)st->releases, (unsigned long long)st->snapshots);
        human_viewers(f, st);
        fprintf(f, "\n");
    }
    fprintf(f, "(holds/s: holds answered, ok or 409 seats_taken, per second; h: hold latency; relp99: release\n"
               " latency; deltas: deltas delivered to all viewers; d: a hold's delta reaching a viewer)\n");
    fprintf(f, "invariants after %u check(s), %llu pages: %llu seats read (%llu free, %llu held, %llu booked), %llu bad, "
               "%llu missing; %llu sections, %llu mismatched: %s\n", sf->checks, (unsigned long long)sf->pages,
            (unsigned long long)sf->seats_read, (unsigned long long)sf->free_n, (unsigned long long)sf->held_n,
            (unsigned long long)sf->booked_n, (unsigned long long)sf->bad_seats, (unsigned long long)sf->missing_seats,
            (unsigned long long)sf->sections_read, (unsigned long long)sf->section_mismatches,
            sf->checks && !sf->violations ? "ok" : "WRONG");
    if (sf->unreleased)
        fprintf(f, "%llu seats were left held by releases that failed or were never sent (they expire after "
                   "the ttl)\n", (unsigned long long)sf->unreleased);
    if (sf->first_violation[0]) fprintf(f, "first violation: %s\n", sf->first_violation);
}

static void report_human(FILE *f)
{
    const struct opts *o = &B.o;
    double s = setup_secs();
    char a[32], b[32], c[32];

    fprintf(f, "herald-bench %s  %s  encoding %s", sc_name[o->sc], o->url, o->enc == HERALD_MSGPACK ? "msgpack" : "json");
    if (o->sc == SC_FANOUT || o->sc == SC_CHANNELS || o->sc == SC_PUBLISH)
        fprintf(f, "  publish via %s (%u %s)  %u-byte payloads\n  %u channel(s) x %u subscriber(s) = %u subscriptions",
                o->publish == PUB_REST ? "REST" : "WebSocket", o->publishers,
                o->publish == PUB_REST ? "HTTP connections" : "publishers", o->size, o->channels,
                o->channels ? B.nsubs / o->channels : 0, B.nsubs);
    if (o->sc == SC_RECOVER)
        fprintf(f, "  %u-byte payloads at %.0f/s\n  channel %s: %u subscribers; %u cycles, each dropping %g of them "
                   "for %g s", o->size, o->rates[0], B.rf.channel, B.nsubs, o->cycles, o->fraction, o->outage);
    if (o->sc == SC_SCORES)
        fprintf(f, "\n  channel %s: %u viewers; updates: POST /api/channels/{channel}/state over %u HTTP connections",
                B.sf.channel, B.nsubs, o->clients);
    if (o->sc == SC_SEATS)
        fprintf(f, "\n  %s: %u seats in %u sections, holds of 2-4 from the first %u; %u REST clients (%s); "
                   "%u viewers", B.sf.channel, o->seats, B.sf.sections, B.sf.hot_seats, o->clients,
                o->nrates ? "open loop" : "closed loop", B.nsubs);
    if (o->sc == SC_PRESENCE) {
        size_t chlen;
        const char *ch = pres_channel(&chlen);
        fprintf(f, "\n  channel %.*s: %u churned members + %u watchers; rejoin ", (int)chlen, ch, o->members,
                o->watchers);
        if (o->rejoin_delay > 0) fprintf(f, "%g s after the leave's ack", o->rejoin_delay);
        else fprintf(f, "as soon as the leave is acked");
    }
    fprintf(f, "\nconnections: %u opened, %u failed, in %.2f s (%.0f/s); connect latency p50 %.2f ms, p99 %.2f ms\n",
            B.ready, B.setup_failed, s, s > 0 ? B.ready / s : 0, ms(hist_percentile(B.connect_lat, 50)),
            ms(hist_percentile(B.connect_lat, 99)));
    if (o->sc == SC_FANOUT || o->sc == SC_CHANNELS) {
        int best = best_step();
        fprintf(f, "\n%9s %9s %9s %11s %11s %8s %9s %8s %8s %8s %8s %8s %6s %6s  %s\n", "rate/s", "published",
                "acked", "expected", "received", "lost%", "deliv/s", "p50ms", "p90ms", "p99ms", "p99.9ms",
                "maxms", "bench%", "broker%", "ok");
        for (int i = 0; i < B.nsteps; i++) {
            const step_t *st = &B.steps[i];
            if (!st->lat) continue;
            fprintf(f, "%9.0f %9llu %9llu %11llu %11llu %8.3f %9s", st->rate, (unsigned long long)st->published,
                    (unsigned long long)st->acked, (unsigned long long)st->expected,
                    (unsigned long long)st->received,
                    st->expected ? 100.0 * (1.0 - (double)st->received / (double)st->expected) : 0,
                    si(dps(st), a, sizeof a));
            human_lat_row(f, st->lat);
            fprintf(f, " %6.0f %6s  %s\n", st->bench_cpu,
                    st->broker_cpu >= 0 ? (snprintf(b, sizeof b, "%.0f", st->broker_cpu), b) : "-",
                    st->sustained ? "yes" : "no");
        }
        for (int i = 0; i < B.nsteps; i++)
            if (B.steps[i].late)
                fprintf(f, "step %.0f/s: %llu deliveries arrived after its drain timeout (worst %.0f ms): counted as lost\n",
                        B.steps[i].rate, (unsigned long long)B.steps[i].late, ms(B.steps[i].late_max));
        if (best >= 0) {
            fprintf(f, "\nmax sustained rate: %s publishes/s = %s deliveries/s (>= 99.9%% delivered, p99 <= %g ms)\n",
                    si(B.steps[best].rate, a, sizeof a), si(dps(&B.steps[best]), c, sizeof c),
                    o->p99_max_ms);
        } else {
            fprintf(f, "\nmax sustained rate: none of the rates met >= 99.9%% delivered with p99 <= %g ms\n", o->p99_max_ms);
        }
    } else if (o->sc == SC_PUBLISH) {
        const step_t *st = &B.steps[0];
        double secs = step_secs(st);
        fprintf(f, "\npublished %llu, acked %llu, errors %llu in %.2f s: %s acks/s (window %u per publisher)\n",
                (unsigned long long)st->published, (unsigned long long)st->acked,
                (unsigned long long)st->pub_errors, secs, si(secs > 0 ? st->acked / secs : 0, a, sizeof a),
                o->publish == PUB_REST ? 1 : o->window);
        fprintf(f, "ack latency ms:  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
                ms(hist_percentile(st->ack, 50)), ms(hist_percentile(st->ack, 90)), ms(hist_percentile(st->ack, 99)),
                ms(hist_percentile(st->ack, 99.9)), ms(st->ack ? st->ack->max : 0));
        if (B.nsubs)
            fprintf(f, "deliveries: expected %llu, received %llu; latency ms p50 %.3f p99 %.3f\n",
                    (unsigned long long)st->expected, (unsigned long long)st->received,
                    ms(hist_percentile(st->lat, 50)), ms(hist_percentile(st->lat, 99)));
        fprintf(f, "bench CPU %.0f%%", st->bench_cpu);
        if (st->broker_cpu >= 0) fprintf(f, ", broker CPU %.0f%%", st->broker_cpu);
        fprintf(f, "\n");
    } else if (o->sc == SC_PRESENCE) {
        human_presence(f);
    } else if (o->sc == SC_RECOVER) {
        human_recover(f);
    } else if (o->sc == SC_SCORES) {
        human_scores(f);
    } else if (o->sc == SC_SEATS) {
        human_seats(f);
    } else if (o->sc == SC_IDLE) {
        if (B.rss_before > 0 && B.rss_after > 0 && B.ready)
            fprintf(f, "broker RSS: %.1f MiB before, %.1f MiB with %u connections: %.0f bytes (%.2f KiB) per connection\n",
                    B.rss_before / 1048576.0, B.rss_after / 1048576.0, B.ready,
                    (double)(B.rss_after - B.rss_before) / B.ready, (double)(B.rss_after - B.rss_before) / B.ready / 1024);
        else
            fprintf(f, "broker RSS: not measured (pass --pid PID of the broker)\n");
        if (B.bench_rss > 0) fprintf(f, "bench RSS: %.1f MiB\n", B.bench_rss / 1048576.0);
    }
    if (B.disconnects) {
        fprintf(f, "disconnects during the run: %llu (", (unsigned long long)B.disconnects);
        for (int i = 0; i < B.ncloses; i++)
            fprintf(f, "%scode %d: %llu", i ? ", " : "", B.closes[i].code, (unsigned long long)B.closes[i].n);
        fprintf(f, ")\n");
    } else if (o->sc != SC_CONNECT) {
        fprintf(f, "disconnects during the run: none\n");
    }
    if ((o->sc == SC_SCORES || o->sc == SC_SEATS) && B.sf.stale_reads)
        fprintf(f, "GET .../state was behind the acknowledged writes %llu time(s) (by up to %llu offsets): read "
                   "again\n", (unsigned long long)B.sf.stale_reads, (unsigned long long)B.sf.stale_max);
    if ((o->sc == SC_SCORES || o->sc == SC_SEATS) && B.sf.cancelled)
        fprintf(f, "%llu requests were still queued for a REST connection when a drain ended: not sent, "
                   "counted as errors\n", (unsigned long long)B.sf.cancelled);
    if ((o->sc == SC_SCORES || o->sc == SC_SEATS) && (B.sf.rest_errors || B.protocol_errors)) {
        fprintf(f, "errors: %llu REST answers that are not documented outcomes, %llu protocol\n",
                (unsigned long long)B.sf.rest_errors, (unsigned long long)B.protocol_errors);
        if (B.sf.first_error[0]) fprintf(f, "first REST error: %s\n", B.sf.first_error);
    } else if (TOTAL(pub_errors) || B.protocol_errors || B.bad_payload)
        fprintf(f, "errors: %llu publish, %llu protocol, %llu unreadable payloads\n",
                (unsigned long long)TOTAL(pub_errors), (unsigned long long)B.protocol_errors,
                (unsigned long long)B.bad_payload);
}

/* ---- SVG ---- */

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
    double pw = W - ML - MR, ph = H - MT - MB, xmax = 5, ymax = nice_max(ms(h->max));
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
        v = ms(hist_bucket_value(i));
        if (v > ms(h->max)) v = ms(h->max);
        if (first) { fprintf(f, "%.1f,%.1f ", (double)ML, MT + ph - ph * v / ymax); first = 0; }
        fprintf(f, "%.1f,%.1f ", ML + pw * nines / xmax, MT + ph - ph * v / ymax);
    }
    fprintf(f, "\"/>\n</svg>\n");
}

/* Deliveries/s (bars) and p99 (line) for each rate step. */
static void svg_steps(FILE *f, const char *title)
{
    double pw = W - ML - MR, ph = H - MT - MB, dmax = 0, pmax = 0, bw;
    int n = 0;

    for (int i = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        if (!st->lat) continue;
        n++;
        if (step_value(st) > dmax) dmax = step_value(st);
        if (ms(hist_percentile(st->lat, 99)) > pmax) pmax = ms(hist_percentile(st->lat, 99));
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
               "%s</text>\n", MT + (int)ph / 2, MT + (int)ph / 2,
            B.o.sc == SC_PRESENCE ? "joins+leaves/s" : "deliveries/s");
    fprintf(f, "<text x=\"%d\" y=\"%d\" transform=\"rotate(90 %d %d)\" text-anchor=\"middle\" fill=\"#d62728\">"
               "p99 latency (ms)</text>\n", W - 14, MT + (int)ph / 2, W - 14, MT + (int)ph / 2);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", ML + (int)pw / 2, H - 12,
            B.o.sc == SC_PRESENCE ? "target churn operations/s" : B.o.sc == SC_SCORES ? "target updates/s"
                                                                        : "target publishes/s");
    for (int i = 0, k = 0; i < B.nsteps; i++) {
        const step_t *st = &B.steps[i];
        double d, x;
        if (!st->lat) continue;
        d = step_value(st);
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
        fprintf(f, "%.1f,%.1f ", ML + bw * k + bw / 2, MT + ph - ph * ms(hist_percentile(st->lat, 99)) / pmax);
        k++;
    }
    fprintf(f, "\"/>\n<text x=\"%d\" y=\"%d\" font-size=\"11\">blue: sustained; orange: not sustained</text>\n</svg>\n",
            ML + 4, MT + 14);
}

static void write_svg(void)
{
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
        snprintf(title, sizeof title, "herald-bench %s: %s and p99 per rate", sc_name[B.o.sc],
                 B.o.sc == SC_PRESENCE ? "joins+leaves/s" : "deliveries/s");
        svg_steps(f, title);
    } else {
        const hist_t *src = B.o.sc == SC_CONNECT || B.o.sc == SC_IDLE ? B.connect_lat
                          : B.o.sc == SC_PUBLISH && !B.nsubs ? B.steps[0].ack : B.steps[0].lat;
        if (src) hist_add(h, src);
        snprintf(title, sizeof title, "herald-bench %s: %s latency by percentile", sc_name[B.o.sc],
                 B.o.sc == SC_CONNECT || B.o.sc == SC_IDLE ? "connect" : B.o.sc == SC_PUBLISH && !B.nsubs ? "ack"
                 : B.o.sc == SC_PRESENCE ? "join/leave event" : "delivery");
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
