/* broker/app/metrics.c - see metrics.h. */
#include "app/metrics.h"
#include "core/webhook.h"
#include "app/storage_watch.h"
#include "net/sendring.h"
#include "core/channel.h"
#include "core/cluster.h"
#include "herald.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void head(wbuf_t *b, const char *name, const char *type, const char *help)
{
    wbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(wbuf_t *b, const char *name, const char *type, const char *help, double v)
{
    head(b, name, type, help);
    wbuf_printf(b, "%s %.17g\n", name, v);
}

static void histo(wbuf_t *b, const char *name, const char *help, const histo_t *h)
{
    uint64_t cum = 0;

    head(b, name, "histogram", help);
    for (size_t i = 0; i < h->n; i++) {
        cum += h->counts[i];
        wbuf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[h->n];
    wbuf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n", name, (unsigned long long)cum,
                name, h->sum, name, (unsigned long long)h->count);
}

static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (!d) return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1;                              /* the one opendir() holds */
}

static long rss_bytes(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

/* The webhooks' counters, labelled by webhook (docs/webhooks.md). */
static void webhook_metrics(wbuf_t *b)
{
    static const struct { const char *name, *type, *help; size_t off; } rows[] = {
        { "herald_webhook_deliveries_total", "counter", "Webhook events delivered (2xx).",
          offsetof(struct webhook_stats, deliveries) },
        { "herald_webhook_failures_total", "counter", "Webhook posts that failed (non-2xx, timeout, connect error).",
          offsetof(struct webhook_stats, failures) },
        { "herald_webhook_retries_total", "counter", "Webhook posts holding an event that had failed before.",
          offsetof(struct webhook_stats, retries) },
        { "herald_webhook_dead_letters_total", "counter", "Webhook events moved to the dead letters.",
          offsetof(struct webhook_stats, dead) },
        { "herald_webhook_queue_depth", "gauge", "Webhook events queued, not yet delivered.",
          offsetof(struct webhook_stats, depth) },
        { "herald_webhook_dead_letters", "gauge", "Webhook events in the dead letters now.",
          offsetof(struct webhook_stats, dead_depth) },
        { "herald_webhook_failing_channels", "gauge", "Channels whose webhook events wait for a retry.",
          offsetof(struct webhook_stats, held) },
    };
    struct webhook_stats ws;

    if (!srv.cfg.nwebhooks) return;
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        head(b, rows[r].name, rows[r].type, rows[r].help);
        for (size_t i = 0; !webhook_stats(i, &ws); i++)
            wbuf_printf(b, "%s{webhook=\"%s\"} %llu\n", rows[r].name, ws.name,
                        (unsigned long long)*(const uint64_t *)((const char *)&ws + rows[r].off));
    }
    head(b, "herald_webhook_lag_seconds", "gauge", "Age of the oldest queued webhook event (0: none queued).");
    for (size_t i = 0; !webhook_stats(i, &ws); i++)
        wbuf_printf(b, "herald_webhook_lag_seconds{webhook=\"%s\"} %.3f\n", ws.name, ws.lag_s);
    head(b, "herald_webhook_delivery_seconds", "histogram", "From an event's queueing to its delivery.");
    for (size_t i = 0; !webhook_stats(i, &ws); i++) {
        uint64_t cum = 0;
        for (size_t k = 0; k < ws.latency.n; k++) {
            cum += ws.latency.counts[k];
            wbuf_printf(b, "herald_webhook_delivery_seconds_bucket{webhook=\"%s\",le=\"%g\"} %llu\n", ws.name,
                        ws.latency.bounds[k], (unsigned long long)cum);
        }
        cum += ws.latency.counts[ws.latency.n];
        wbuf_printf(b, "herald_webhook_delivery_seconds_bucket{webhook=\"%s\",le=\"+Inf\"} %llu\n"
                    "herald_webhook_delivery_seconds_sum{webhook=\"%s\"} %.17g\n"
                    "herald_webhook_delivery_seconds_count{webhook=\"%s\"} %llu\n", ws.name,
                    (unsigned long long)cum, ws.name, ws.latency.sum, ws.name, (unsigned long long)ws.latency.count);
    }
}

void metrics_render(wbuf_t *b)
{
    static const char *const reasons[DISC_NREASONS] = {
        "client", "shutdown", "slow_consumer", "unauthorized", "token_expired", "connect_timeout",
        "too_big", "too_many", "internal", "ping_timeout" };
    const char *transport = *srv.cfg.tls_cert ? "wss" : "ws";
    struct storage_status st;
    struct rusage ru;

    head(b, "herald_connections", "gauge", "Open WebSocket sessions by transport and encoding.");
    wbuf_printf(b, "herald_connections{transport=\"%s\",encoding=\"json\"} %u\n", transport, metrics.conn_enc[0]);
    wbuf_printf(b, "herald_connections{transport=\"%s\",encoding=\"msgpack\"} %u\n", transport, metrics.conn_enc[1]);
    one(b, "herald_sse_streams", "gauge", "Open Server-Sent Events streams (GET /api/sse).", metrics.sse_streams);
    one(b, "herald_sse_connects_total", "counter", "Server-Sent Events streams started.", (double)metrics.sse_connects);
    one(b, "herald_sse_events_total", "counter", "Events written to Server-Sent Events streams.",
        (double)metrics.sse_events);
    one(b, "herald_tcp_connections", "gauge", "Open TCP connections, WebSocket and HTTP.", srv.open_connections);
    one(b, "herald_connects_total", "counter", "WebSocket sessions accepted.", (double)srv.stats.connections_total);
    head(b, "herald_disconnects_total", "counter", "WebSocket sessions ended, by reason.");
    for (int i = 0; i < DISC_NREASONS; i++)
        wbuf_printf(b, "herald_disconnects_total{reason=\"%s\"} %llu\n", reasons[i],
                    (unsigned long long)metrics.disconnects[i]);
    head(b, "herald_refused_connections_total", "counter", "TCP connections closed at accept or refused at the handshake.");
    wbuf_printf(b, "herald_refused_connections_total{reason=\"capacity\"} %llu\n",
                (unsigned long long)srv.stats.connections_refused);
    wbuf_printf(b, "herald_refused_connections_total{reason=\"rate_limit\"} %llu\n",
                (unsigned long long)srv.stats.connects_limited);
    wbuf_printf(b, "herald_refused_connections_total{reason=\"origin\"} %llu\n",
                (unsigned long long)srv.stats.origins_refused);
    wbuf_printf(b, "herald_refused_connections_total{reason=\"over_capacity\"} %llu\n",
                (unsigned long long)srv.stats.over_capacity);
    one(b, "herald_close_timeouts_total", "counter", "Closing WebSocket sessions dropped after the 5 s close timeout (close frame not written).",
        (double)srv.stats.close_timeouts);
    one(b, "herald_subscriptions", "gauge", "Subscriptions of all sessions.", (double)srv.subs.count);
    one(b, "herald_channels", "gauge", "Channels the broker holds.", (double)chan_count());
    if (cluster_on()) {
        head(b, "herald_engine_up", "gauge", "1 while the connection to the redis engine is up ([engine] type = redis).");
        wbuf_printf(b, "herald_engine_up{connection=\"command\"} %d\n", cluster_conn_up(0));
        wbuf_printf(b, "herald_engine_up{connection=\"subscription\"} %d\n", cluster_conn_up(1));
    }
    one(b, "herald_loop_busy_ratio", "gauge", "Share of the last second the event loop spent working (0-1).",
        metrics.loop_busy_ppm / 1e6);
    one(b, "herald_write_coalesce_seconds", "gauge",
        "Current wait a streaming connection's next write may take to gather more (adapts to the loop's load).",
        srv.coalesce_ms / 1e3);
    one(b, "herald_write_cost_seconds", "gauge",
        "Event-loop time per socket write of the flush passes, smoothed; sizes the write gap when writes fill the loop.",
        srv.write_cost_ns / 1e9);
    one(b, "herald_messages_received_total", "counter", "Client messages received over WebSocket.",
        (double)srv.stats.messages_in);
    one(b, "herald_messages_sent_total", "counter", "Messages written to WebSocket sessions.", (double)metrics.frames_out);
    one(b, "herald_socket_writes_total", "counter", "Socket writes carrying WebSocket frames (messages coalesce into them).",
        (double)metrics.writes);
    one(b, "herald_socket_writes_batched_total", "counter",
        "Socket writes handed to the kernel several to a system call (io_uring; websocket.batch_sends).",
        (double)metrics.writes_batched);
    one(b, "herald_send_batches_total", "counter", "System calls that carried the batched writes.",
        (double)metrics.send_batches);
    one(b, "herald_send_threads", "gauge",
        "Threads making the batched writes: the loop thread and its helpers (server.threads); 0: no batched writes.",
        (double)sendring_threads());
    one(b, "herald_socket_writes_offloaded_total", "counter",
        "Batched writes made by the helper threads (server.threads) rather than the loop thread.",
        (double)sendring_offloaded());
    one(b, "herald_bytes_received_total", "counter", "WebSocket message bytes received.", (double)metrics.bytes_in);
    one(b, "herald_bytes_sent_total", "counter", "WebSocket payload bytes written.", (double)metrics.bytes_out);
    head(b, "herald_publications_total", "counter", "Publications fanned out, by namespace (* for namespaces without a section; sys: the broker's own feed).");
    for (size_t i = 0; i <= srv.cfg.nns; i++)
        wbuf_printf(b, "herald_publications_total{namespace=\"%s\"} %llu\n",
                    i < srv.cfg.nns ? srv.cfg.ns[i].name : "*", (unsigned long long)metrics.ns_publications[i]);
    /* The broker's own feed, under its own label (unless a [namespace sys]
     * section made sys a configured namespace, counted above). */
    if (config_ns(&srv.cfg, "sys:", 4) == &srv.cfg.ns_sys)
        wbuf_printf(b, "herald_publications_total{namespace=\"sys\"} %llu\n",
                    (unsigned long long)metrics.ns_publications[srv.cfg.nns + 1]);
    one(b, "herald_deliveries_total", "counter", "Publications queued to subscribers (the fan-out count).",
        (double)srv.stats.deliveries);
    head(b, "herald_namespace_deliveries_total", "counter",
         "herald_deliveries_total by namespace (* for namespaces without a section).");
    for (size_t i = 0; i <= srv.cfg.nns; i++)
        wbuf_printf(b, "herald_namespace_deliveries_total{namespace=\"%s\"} %llu\n",
                    i < srv.cfg.nns ? srv.cfg.ns[i].name : "*", (unsigned long long)metrics.ns_deliveries[i]);
    one(b, "herald_slow_consumers_total", "counter", "Sessions closed because their send queue was full.",
        (double)srv.stats.slow_consumers);
    one(b, "herald_storage_failures_total", "counter", "Publications refused because the store failed or was full.",
        (double)srv.stats.storage_failures);
    one(b, "herald_publications_shed_total", "counter",
        "Writes (publications to history channels, state and seat operations, batches) refused with error 135 "
        "because the storage thread was more than history.max_queue_delay behind.",
        (double)srv.stats.publications_shed);
    histo(b, "herald_publish_fanout_seconds", "From a publication's arrival to its fan-out (commit included).",
          &metrics.publish_fanout_seconds);
    histo(b, "herald_storage_commit_seconds", "Duration of one group commit, fsync included.", &metrics.commit_seconds);
    histo(b, "herald_storage_commit_batch_size", "Publications per group commit.", &metrics.commit_batch);
    histo(b, "herald_loop_turn_seconds", "Working time of each event loop iteration (its wait for I/O excluded).",
          &metrics.loop_turn_seconds);
    head(b, "herald_rate_limited_total", "counter", "Requests refused by rate limits.");
    wbuf_printf(b, "herald_rate_limited_total{kind=\"messages\"} %llu\n", (unsigned long long)srv.stats.rate_limited);
    wbuf_printf(b, "herald_rate_limited_total{kind=\"rest\"} %llu\n", (unsigned long long)srv.stats.rest_rate_limited);
    wbuf_printf(b, "herald_rate_limited_total{kind=\"connects\"} %llu\n", (unsigned long long)srv.stats.connects_limited);
    one(b, "herald_auth_failures_total", "counter", "Invalid, missing or foreign tokens and API keys.",
        (double)(srv.stats.auth_failures + srv.stats.rest_unauthorized));
    one(b, "herald_permission_denied_total", "counter", "Subscribes, publishes and reads refused by channel rules.",
        (double)srv.stats.permission_denied);
    head(b, "herald_seat_requests_total", "counter",
         "Seat map requests by action and result (ok; refused: taken, unknown seat, not held, waitlist full; failed).");
    {
        static const char *const actions[] = { NULL, "define", "add", "hold", "confirm", "release", "expire",
                                               "waitlist", "waitlist_leave", "waitlist_position" };
        static const char *const results[] = { "ok", "refused", "failed" };
        for (size_t a = 1; a < sizeof actions / sizeof actions[0]; a++)
            for (size_t r = 0; r < 3; r++)
                wbuf_printf(b, "herald_seat_requests_total{action=\"%s\",result=\"%s\"} %llu\n", actions[a],
                            results[r], (unsigned long long)metrics.seat_requests[a][r]);
    }
    webhook_metrics(b);

    storage_watch_tick();                      /* fresh figures for the scrape */
    storage_watch_status(&st);
    one(b, "herald_storage_map_size_bytes", "gauge", "Current size of the LMDB map.", (double)st.map_size);
    one(b, "herald_storage_map_max_bytes", "gauge", "history.map_size_max.", (double)st.map_max);
    one(b, "herald_storage_used_bytes", "gauge", "Bytes of the map in use (pages up to the last one used).",
        (double)st.used);
    one(b, "herald_storage_entries", "gauge", "Publications stored in all channel logs.", (double)st.entries);
    one(b, "herald_storage_map_usage_ratio", "gauge", "Used bytes over history.map_size_max.", st.map_pct / 100.0);
    one(b, "herald_storage_fs_usage_ratio", "gauge", "Usage of the data directory's filesystem.", st.fs_pct / 100.0);
    one(b, "herald_storage_alert_level", "gauge", "0 ok, 1 over 75%, 2 over 85%, 3 over 95% (map or filesystem).",
        st.level);

    getrusage(RUSAGE_SELF, &ru);
    one(b, "process_cpu_seconds_total", "counter", "User and system CPU time.",
        (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    one(b, "process_resident_memory_bytes", "gauge", "Resident set size.", (double)rss_bytes());
    one(b, "process_open_fds", "gauge", "Open file descriptors.", (double)open_fds());
    /* The soft limit the broker raised at start: connections are refused 64 below it. */
    {
        struct rlimit rl;
        one(b, "process_max_fds", "gauge", "Open file descriptors allowed (RLIMIT_NOFILE).",
            getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY ? -1.0 : (double)rl.rlim_cur);
    }
    one(b, "process_start_time_seconds", "gauge", "Start time, Unix seconds.", (double)srv.started_ms / 1000.0);
}
