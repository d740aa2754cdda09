/* broker/main.c - the herald executable: settings, then start-up, the loop,
 * signals, timers and shutdown; or, with `herald backup DEST`, a copy of a
 * (running) broker's data; or, with `herald migrate`, a stopped node's
 * channels carried into the Redis engine (storage/migrate.h).
 *
 * Owns: the order of start-up and shutdown, the signal handlers (INT/TERM
 * stop, HUP re-reads [log]), the once-a-second tick (keepalive pings and
 * close timeouts, connect timeouts, token expiry and refresh notices, idle
 * rate-limit entries, operator figures), the quarter-second tune (write
 * coalescing, presence leaves, seat releases after a disconnect's grace),
 * the end-of-turn flush, the descriptor limit, and which hook of the
 * layers below calls which function of the layers above.
 * Shutdown (SIGINT/SIGTERM): refuse new connections, ask every session to
 * flush its queue and close with 1001, wait until all have closed or
 * server.shutdown_timeout has passed, commit what is queued, then destroy
 * lws in the two steps its foreign-loop mode needs
 * (../shared/notes/lws-on-uv.md). */
#include "herald.h"
#include "app/admin.h"
#include "app/api.h"
#include "app/ops.h"
#include "app/seats.h"
#include "app/state.h"
#include "core/channel.h"
#include "core/presence.h"
#include "core/cluster.h"
#include "core/pubpipe.h"
#include "core/webhook.h"
#include "net/server.h"
#include "net/session.h"
#include "net/sendring.h"
#include "auth/auth.h"
#include "auth/ratelimit.h"
#include "config.h"
#include "loopwatch.h"
#include "hist.h"
#include "migrate.h"
#include "clock.h"
#include "log.h"
#include "notify.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/resource.h>

/* SIGHUP: take the [log] settings of the config file again, so an operator
 * can turn on debug logging without a restart. */
static void on_hup(uv_signal_t *h, int signum)
{
    char err[512];
    (void)h;
    (void)signum;
    if (config_reload_logging(&srv.cfg, err, sizeof err)) {
        hlog(LOG_WARN, "config", "SIGHUP: %s", err);
        return;
    }
    log_set_level(srv.cfg.log_level);
    server_log_level_changed();
    log_set_format(srv.cfg.log_format);
    hlog(LOG_INFO, "config", "SIGHUP: log level %s, format %s, requests %s (re-read [log] only: other settings "
         "take effect at the next start)", log_level_name(srv.cfg.log_level),
         srv.cfg.log_format == LOG_FMT_JSON ? "json" : "text",
         srv.cfg.log_requests == LOG_REQ_ALL ? "all" : srv.cfg.log_requests == LOG_REQ_ERRORS ? "errors" : "off");
}

static void stop_begin(void);

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    hlog(LOG_INFO, "server", "%s received: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop_begin();
}

/* Once a second: keepalive pings and closes that did not finish
 * (sess_tick()), connections that never sent connect, tokens about to
 * expire or expired, idle rate-limit entries. */
static void on_tick(uv_timer_t *t)
{
    uint64_t now = uv_now(&srv.loop);
    int64_t wall = clock_wall_ms() / 1000;
    int64_t notice = srv.cfg.refresh_notice_ms / 1000, leeway = srv.cfg.leeway_ms / 1000;

    (void)t;
    for (sess_t *s = srv.sessions; s; s = s->next) {
        sess_tick(s, now);
        if (s->close_code || s->close_started) continue;
        if (!s->connected) {
            if (now - s->created_ms >= srv.cfg.connect_timeout_ms) sess_close(s, CLOSE_CONNECT_TIMEOUT, 1);
            continue;
        }
        if (!s->ident.exp) continue;
        if (wall > s->ident.exp + leeway) {
            hlog(LOG_INFO, "auth", "closing client %s (user %s): token expired", s->id, s->ident.user);
            sess_close(s, CLOSE_TOKEN_EXPIRED, 1);
        } else if (!s->refresh_sent && wall >= s->ident.exp - notice) {
            json_t *m = msg_reply("refresh_required", NULL);
            if (m) json_object_set_new(m, "expires", json_integer(s->ident.exp));
            sess_send(s, m);
            s->refresh_sent = 1;
        }
    }
    rl_sweep();
    admin_tick();
}

/* Batched sends (websocket.batch_sends): not over TLS, where libwebsockets
 * must encrypt every write itself. */
static void start_sendring(void)
{
    size_t arena = srv.cfg.write_batch_max + 16 > (1u << 20) ? srv.cfg.write_batch_max + 16 : (1u << 20);
    unsigned threads = srv.cfg.threads;
    cpu_set_t cpus;
    int rc;

    if (!srv.cfg.batch_sends || *srv.cfg.tls_cert) {
        if (threads > 1)
            hlog(LOG_INFO, "server", "server.threads = %u unused: the helper threads share batched sends, which "
                 "are off (%s)", threads, *srv.cfg.tls_cert ? "TLS" : "websocket.batch_sends = off");
        return;
    }
    /* One per CPU this process may run on (taskset, cgroup cpusets), not
     * per CPU in the machine: a broker pinned to one core gets no helper. */
    if (!threads) threads = sched_getaffinity(0, sizeof cpus, &cpus) ? 1 : (unsigned)CPU_COUNT(&cpus);
    if (threads > SENDRING_THREADS_MAX) threads = SENDRING_THREADS_MAX;
    if ((rc = sendring_init(256, arena, threads)))
        hlog(LOG_INFO, "server", "io_uring unavailable (%s): one send() per write", strerror(-rc));
    else if (sendring_threads() < threads)
        hlog(LOG_WARN, "server", "socket writes on %u of %u threads: a helper could not start", sendring_threads(),
             threads);
    else
        hlog(LOG_INFO, "server", "socket writes on %u thread%s", threads, threads == 1 ? "" : "s");
}

static void on_tune(uv_timer_t *t)
{
    (void)t;
    sess_coalesce_adjust();
    presence_tick();
    seats_tick();
}

static void on_flush(uv_check_t *h)
{
    (void)h;
    if (srv.dirty || sess_waiting()) sess_flush_dirty();
}

static void close_own_handles(void)
{
    uv_signal_stop(&srv.sig_int);
    uv_signal_stop(&srv.sig_term);
    uv_signal_stop(&srv.sig_hup);
    uv_close((uv_handle_t *)&srv.sig_hup, NULL);
    uv_timer_stop(&srv.tick);
    uv_timer_stop(&srv.stop_timer);
    uv_check_stop(&srv.flush);
    uv_close((uv_handle_t *)&srv.flush, NULL);
    uv_timer_stop(&srv.flush_timer);
    uv_close((uv_handle_t *)&srv.flush_timer, NULL);
    loopwatch_stop();
    uv_timer_stop(&srv.tune);
    uv_close((uv_handle_t *)&srv.tune, NULL);
    uv_close((uv_handle_t *)&srv.sig_int, NULL);
    uv_close((uv_handle_t *)&srv.sig_term, NULL);
    uv_close((uv_handle_t *)&srv.tick, NULL);
    uv_close((uv_handle_t *)&srv.stop_timer, NULL);
}

/* After the webhooks' delivery threads ended. */
static void stop_rest(void)
{
    cluster_stop();                            /* publications in flight answer 133 */
    pubpipe_stop();
    server_destroy();                          /* 1st call: starts closing lws's handles */
    close_own_handles();                       /* uv_run returns once all are closed */
}

static void stop_finish(void)
{
    if (srv.stopping >= 2) return;
    if (srv.nsessions) hlog(LOG_WARN, "server", "shutdown timeout: closing %u connections that did not finish",
                            srv.nsessions);
    srv.stopping = 2;
    /* Commit what is queued and hand out the last outcomes while sessions
     * and requests can still be found. The delivery threads read the store
     * and may reach Redis through the engine's TLS bridge, so the rest
     * waits for them with the loop running. */
    if (webhook_stop(stop_rest)) return;
    stop_rest();
}

static void on_stop_timer(uv_timer_t *t)
{
    (void)t;
    stop_finish();
}

/* The last session closed while stopping: finish from the loop, not from
 * inside lws's own callback. */
static void on_last_session(void)
{
    uv_timer_start(&srv.stop_timer, on_stop_timer, 0, 0);
}

static void stop_begin(void)
{
    if (srv.stopping) return;
    srv.stopping = 1;
    for (sess_t *s = srv.sessions; s; s = s->next) sess_close(s, CLOSE_GOING_AWAY, 1);
    uv_timer_start(&srv.stop_timer, on_stop_timer, srv.nsessions ? srv.cfg.shutdown_timeout_ms : 0, 0);
}

/* Raise the soft descriptor limit to the hard one and size the connection
 * cap below it: at EMFILE libwebsockets spins on accept(). */
static void set_fd_limit(void)
{
    struct rlimit rl;
    unsigned cap;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            hlog(LOG_WARN, "server", "cannot raise the open file limit: %s", strerror(errno));
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    cap = rl.rlim_cur > FD_RESERVE * 2 ? (unsigned)(rl.rlim_cur - FD_RESERVE) : FD_RESERVE;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000) cap = 1000000;
    if (srv.cfg.max_connections && srv.cfg.max_connections < cap) {
        cap = srv.cfg.max_connections;
        /* libwebsockets sizes its fd -> connection table by the soft limit
         * and finds a connection by indexing it with the fd. Told a smaller
         * size (fd_limit_per_thread) it would search the table instead, on
         * every socket event: with 10,000 connections that costs the loop
         * more than the sends. Lowering the limit itself keeps the index and
         * bounds the table (which lws, as Debian builds it, also scans once
         * per close). Descriptors stay below the limit, so the index holds. */
        rl.rlim_cur = (rlim_t)cap + FD_RESERVE;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            hlog(LOG_WARN, "server", "cannot lower the open file limit to %u: %s", cap + FD_RESERVE,
                 strerror(errno));
    } else if (srv.cfg.max_connections > cap) {
        hlog(LOG_WARN, "server", "limits.max_connections %u is above what the open file limit allows; using %u",
             srv.cfg.max_connections, cap);
    }
    srv.max_connections = cap;
}

/* Which function of the layers above answers each event of the layers below. */
static void wire_hooks(void)
{
    static const struct sess_hooks sess_hooks = { ops_handle, ops_on_closed, state_on_drained };

    sess_set_hooks(&sess_hooks);
    /* Channel and presence changes, and commits, wake the outbound webhooks. */
    if (srv.cfg.nwebhooks) {
        chan_events.on_occupancy = webhook_on_occupancy;
        chan_events.on_member = webhook_on_member;
        chan_events.on_committed = webhook_kick;
    }
    api_init();
}

static int run(void)
{
    static const struct server_hooks server_hooks = { on_last_session };
    char err[512];
    int rc = 0, n;

    srv.started_ms = (uint64_t)clock_wall_ms();
    signal(SIGPIPE, SIG_IGN);
    set_fd_limit();
    if (datadir_open(&srv.data, srv.cfg.data_dir, err, sizeof err)) {
        hlog(LOG_ERROR, "storage", "%s", err);
        auth_deinit();
        rl_deinit();
        return 1;
    }
    wbuf_init(&srv.enc);
    /* Room for one batch and a WebSocket header: a send on the ring that
     * went only in part is finished from here (net/session.c). */
    srv.batch = malloc(FRAME_HEADROOM + srv.cfg.write_batch_max + 16);
    if (!srv.batch || chan_registry_init() || hmap_init(&srv.conns, 1024) || stats_init(&srv.cfg)) {
        hlog(LOG_ERROR, "server", "out of memory at start");
        free(srv.batch);
        datadir_close(&srv.data);
        return 1;
    }
    wire_hooks();
    start_sendring();

    uv_loop_init(&srv.loop);
    loopwatch_configure(&srv.loop);
    loopwatch_start(&srv.loop);
    uv_signal_init(&srv.loop, &srv.sig_int);
    uv_signal_init(&srv.loop, &srv.sig_term);
    uv_timer_init(&srv.loop, &srv.tick);
    uv_timer_init(&srv.loop, &srv.stop_timer);
    uv_signal_start(&srv.sig_int, on_signal, SIGINT);
    uv_signal_start(&srv.sig_term, on_signal, SIGTERM);
    uv_signal_init(&srv.loop, &srv.sig_hup);
    uv_signal_start(&srv.sig_hup, on_hup, SIGHUP);
    uv_timer_start(&srv.tick, on_tick, 1000, 1000);
    uv_timer_init(&srv.loop, &srv.flush_timer);
    uv_timer_init(&srv.loop, &srv.tune);
    uv_timer_start(&srv.tune, on_tune, 250, 250);
    uv_check_init(&srv.loop, &srv.flush);
    uv_check_start(&srv.flush, on_flush);
    uv_unref((uv_handle_t *)&srv.flush);

    cluster_set_state_gap(state_on_gap);
    if (cluster_start() || pubpipe_start() || webhook_start() || server_start(&server_hooks)) {
        rc = 1;
        srv.stopping = 1;
        stop_finish();
    } else {
        seats_init();
        /* Listening, with the history store open: under systemd (Type=notify)
         * this is when `systemctl start` returns and dependent units start. */
        if ((n = notify_send("READY=1")) < 0)
            hlog(LOG_WARN, "server", "cannot notify $NOTIFY_SOCKET: %s", strerror(-n));
    }
    uv_run(&srv.loop, UV_RUN_DEFAULT);
    server_destroy();                          /* 2nd call, outside the loop: frees it */
    uv_run(&srv.loop, UV_RUN_NOWAIT);
    if (uv_loop_close(&srv.loop)) hlog(LOG_WARN, "server", "event loop closed with handles still open");

    chan_registry_deinit();
    seats_deinit();
    admin_deinit();
    hmap_deinit(&srv.conns);
    stats_deinit();
    auth_deinit();
    rl_deinit();
    config_free(&srv.cfg);
    wbuf_deinit(&srv.enc);
    sendring_deinit();
    free(srv.batch);
    datadir_close(&srv.data);
    if (rc == 0) hlog(LOG_INFO, "server", "stopped");
    return rc;
}

/* herald backup DEST [--data-dir DIR | --config FILE]: a consistent, compacted
 * copy of the history store, taken in one LMDB read transaction while the
 * broker keeps running. DEST becomes a data directory a broker can start on. */
static int backup(int argc, char **argv)
{
    char err[1024];
    char *args[argc];
    int n = 0;

    if (argc < 3 || !strncmp(argv[2], "-", 1)) {
        fprintf(stderr, "usage: herald backup DEST [--data-dir DIR | --config FILE]\n");
        return 2;
    }
    args[n++] = argv[0];
    for (int i = 3; i < argc; i++) args[n++] = argv[i];
    switch (config_parse_args(&srv.cfg, n, args, err, sizeof err)) {
    case CONFIG_ARGS_EXIT_OK: return 0;
    case CONFIG_ARGS_ERROR:
        fprintf(stderr, "herald: %s\n", err);
        return 2;
    case CONFIG_ARGS_RUN: break;
    }
    if (hist_backup(srv.cfg.data_dir, argv[2], err, sizeof err)) {
        fprintf(stderr, "herald backup: %s\n", err);
        config_free(&srv.cfg);
        return 1;
    }
    printf("backed up %s to %s\n", srv.cfg.data_dir, argv[2]);
    config_free(&srv.cfg);
    return 0;
}

/* A channel's retention as its namespace in the settings gives it: what
 * core/cluster.c hands the publish script. */
static void migrate_policy(void *ctx, const char *chan, size_t len, struct hist_policy *out)
{
    const ns_config_t *ns = config_ns(&srv.cfg, chan, len);
    (void)ctx;
    out->keep = ns->history ? ns->history_size : 0;
    out->ttl_ms = ns->history ? ns->history_ttl_ms : 0;
}

static void migrate_print_left(FILE *f, const migrate_report_t *r)
{
    for (int k = 0; k < MIGRATE_LEFT_N; k++)
        if (r->left[k]) fprintf(f, "not carried: %llu %s\n", (unsigned long long)r->left[k], migrate_left_name(k));
}

/* herald migrate [--data-dir DIR | --config FILE] [--engine-... flags]
 * [--skip-unsupported]: the stopped node's channels into the Redis engine
 * that [engine] (or the flags) name, under its prefix, which must be
 * unused. Exit status: 0 done; 1 failed (the message says whether the
 * prefix was partly written); 2 bad settings; 3 refused, nothing written
 * (data not carried without --skip-unsupported, the prefix or the data
 * directory in use). */
static int migrate(int argc, char **argv)
{
    char err[1536], host[1024];
    char *args[argc];
    const char *why;
    migrate_report_t rep;
    migrate_opts_t o = { 0 };
    int n = 0, port, rc;

    args[n++] = argv[0];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--skip-unsupported")) o.skip_unsupported = 1;
        else args[n++] = argv[i];
    }
    switch (config_parse_args(&srv.cfg, n, args, err, sizeof err)) {
    case CONFIG_ARGS_EXIT_OK: return 0;
    case CONFIG_ARGS_ERROR:
        fprintf(stderr, "herald: %s\n", err);
        return 2;
    case CONFIG_ARGS_RUN: break;
    }
    if (config_engine_address(srv.cfg.engine_address, host, sizeof host, &port, &why)) {
        fprintf(stderr, "herald migrate: [engine] address = \"%s\": %s\n", srv.cfg.engine_address, why);
        config_free(&srv.cfg);
        return 2;
    }
    /* The TLS bridge (storage/engine_tls.c) lives on the broker's loop;
     * this tool is one blocking connection. */
    if (srv.cfg.engine_tls) {
        fprintf(stderr, "herald migrate: [engine] tls = on is not supported by migrate: run it against a plain "
                "listener of the same Redis (its port, or a unix socket, e.g. on the Redis host)\n");
        config_free(&srv.cfg);
        return 2;
    }
    o.data_dir = srv.cfg.data_dir;
    o.host = host;
    o.port = port;
    o.password = srv.cfg.engine_password;
    o.database = srv.cfg.engine_database;
    o.prefix = srv.cfg.engine_prefix;
    o.timeout_ms = srv.cfg.engine_command_timeout_ms > srv.cfg.engine_connect_timeout_ms
                       ? srv.cfg.engine_command_timeout_ms : srv.cfg.engine_connect_timeout_ms;
    o.policy = migrate_policy;
    o.idem_window_ms = srv.cfg.idempotency_window_ms;
    o.pay_window_ms = srv.cfg.commerce_webhook_window_ms;
    o.progress = stderr;
    rc = migrate_run(&o, &rep, err, sizeof err);
    if (rc == MIGRATE_E_UNSUPPORTED) migrate_print_left(stderr, &rep);
    if (rc) {
        fprintf(stderr, "herald migrate: %s\n", err);
        config_free(&srv.cfg);
        return rc > 0 ? 3 : 1;
    }
    migrate_print_left(stdout, &rep);
    printf("migrated %s into prefix \"%s\" of database %u at %s: %llu channels, %llu publications (%llu "
           "stored ones trimmed: past history_size or history_ttl), %llu state keys in %llu channels, %llu "
           "idempotency keys, %llu seat holds, %llu waitlists, %llu orders, %llu payment events, %llu ticket rows, "
           "%llu webhook events queued, %llu dead letters, %.1f MB in %.2f s\n", srv.cfg.data_dir, o.prefix, o.database, srv.cfg.engine_address,
           (unsigned long long)rep.channels, (unsigned long long)rep.publications, (unsigned long long)rep.trimmed,
           (unsigned long long)rep.state_keys, (unsigned long long)rep.state_channels,
           (unsigned long long)rep.idem_keys, (unsigned long long)rep.seat_holds,
           (unsigned long long)rep.waitlists, (unsigned long long)rep.orders, (unsigned long long)rep.pay_events,
           (unsigned long long)rep.ticket_rows, (unsigned long long)rep.wh_queued, (unsigned long long)rep.wh_dead,
           rep.bytes / 1e6, rep.seconds);
    config_free(&srv.cfg);
    return 0;
}

int main(int argc, char **argv)
{
    char err[1536];
    int r;

    if (argc > 1 && !strcmp(argv[1], "backup")) return backup(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "migrate")) return migrate(argc, argv);
    switch (config_parse_args(&srv.cfg, argc, argv, err, sizeof err)) {
    case CONFIG_ARGS_EXIT_OK: return 0;
    case CONFIG_ARGS_ERROR:
        fprintf(stderr, "herald: %s\n", err);
        return 2;
    case CONFIG_ARGS_RUN: break;
    }
    /* The token keys are settings too: a key file that cannot be used is
     * refused like any other bad value, with where it was named and exit
     * status 2, before anything starts. run() frees them. */
    if ((r = auth_init(err, sizeof err))) {
        fprintf(stderr, "herald: %s\n", err);
        auth_deinit();
        config_free(&srv.cfg);
        return r == AUTH_E_KEY_FILE ? 2 : 1;
    }
    /* The address lists are settings too (exit status 2). run() frees them. */
    if ((r = rl_init(err, sizeof err))) {
        fprintf(stderr, "herald: %s\n", err);
        rl_deinit();
        auth_deinit();
        config_free(&srv.cfg);
        return r == RL_E_SETTING ? 2 : 1;
    }
    log_set_level(srv.cfg.log_level);
    log_set_format(srv.cfg.log_format);
    hlog(LOG_INFO, "server", "herald %s starting (data dir %s)", HERALD_VERSION, srv.cfg.data_dir);
    if (auth_dev_mode())
        hlog(LOG_WARN, "auth", "development mode: no [apikey] section and auth.anonymous on, so the REST API "
             "(publishing included) and every channel are open to whoever reaches %s; see docs/security.md",
             srv.cfg.bind);
    return run();
}
