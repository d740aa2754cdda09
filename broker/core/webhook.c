/* broker/core/webhook.c - see webhook.h. */
#include "core/webhook.h"
#include "core/pubpipe.h"
#include "net/http.h"
#include "herald.h"
#include "clock.h"
#include "log.h"
#include "rand.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The most of a response read: its status line is all that counts. */
#define RESPONSE_MAX 8192
/* How long an idle thread sleeps before looking at its queue anyway. */
#define IDLE_LOOK_MS 1000
/* How often the queue depth is counted. */
#define DEPTH_EVERY_MS 500
/* Slices a blocking wait is cut into, so that a stop is seen quickly. */
#define SLICE_MS 100

enum cmd_kind { CMD_LIST = 1, CMD_RETRY, CMD_DELETE };

/* A REST request for a webhook's thread. */
struct cmd {
    struct cmd *next;
    enum cmd_kind kind;
    uint64_t serial;
    uint64_t id, after;
    unsigned limit;
    unsigned status;              /* the answer: HTTP status and body */
    json_t *res;
};

struct wh {
    const webhook_conf_t *conf;
    uv_thread_t thread;
    uv_mutex_t mu;                /* everything below */
    uv_cond_t cv;
    int kick, stop, started;
    struct cmd *cmds, **cmds_tail;
    struct webhook_stats st;
    unsigned attempts;            /* failed posts of the batch at the head */
    int64_t next_try_ms;          /* the head's next post (wall ms); 0: now */
    int64_t last_success_ms, last_error_ms, oldest_ms;
    uint64_t dead_depth;
    char last_error[256];
};

static const double latency_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                                         900, 3600 };

static struct {
    struct wh *hooks;
    size_t n;
    uv_async_t async;
    uv_mutex_t mu;                /* done */
    struct cmd *done;
    int running;
} wh;

static int stopping(struct wh *w)
{
    int s;
    uv_mutex_lock(&w->mu);
    s = w->stop;
    uv_mutex_unlock(&w->mu);
    return s;
}

/* ---- the HTTP client (delivery thread) ---- */

/* Waits up to the deadline for @events on @fd, in slices that notice a stop.
 * Return: 1 ready, 0 timed out or stopping, -1 error. */
static int wait_fd(struct wh *w, int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = { fd, events, 0 };
        int64_t left = deadline - (int64_t)(clock_mono_ns() / 1000000);
        int r;
        if (left <= 0 || stopping(w)) return 0;
        r = poll(&p, 1, (int)(left < SLICE_MS ? left : SLICE_MS));
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return -1;
    }
}

/* Opens a connection to the webhook's host before @deadline.
 * Return: the socket, or -1 with @err. */
static int dial(struct wh *w, int64_t deadline, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *a;
    int fd = -1, rc;

    if ((rc = getaddrinfo(w->conf->host, w->conf->port, &hints, &res))) {
        snprintf(err, errlen, "cannot resolve %.100s: %s", w->conf->host, gai_strerror(rc));
        return -1;
    }
    snprintf(err, errlen, "cannot connect to %.100s:%s", w->conf->host, w->conf->port);
    for (a = res; a; a = a->ai_next) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if ((fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol)) < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        if (errno == EINPROGRESS && wait_fd(w, fd, POLLOUT, deadline) == 1 &&
            !getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) && !soerr)
            break;
        if (soerr) snprintf(err, errlen, "cannot connect to %.100s:%s: %s", w->conf->host, w->conf->port, strerror(soerr));
        else if ((int64_t)(clock_mono_ns() / 1000000) >= deadline)
            snprintf(err, errlen, "timed out connecting to %.100s:%s", w->conf->host, w->conf->port);
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Writes @len bytes of @p before @deadline. Return: 0, or -1. */
static int send_all(struct wh *w, int fd, const char *p, size_t len, int64_t deadline)
{
    while (len) {
        ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
        if (k > 0) { p += k; len -= (size_t)k; continue; }
        if (k < 0 && errno != EAGAIN && errno != EINTR) return -1;
        if (wait_fd(w, fd, POLLOUT, deadline) != 1) return -1;
    }
    return 0;
}

/* The hex HMAC-SHA256 of "<t>.<body>" under the webhook's secret ("" out of memory). */
static void sign(const webhook_conf_t *c, long long t, const char *body, size_t len, char hex[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    char *msg = malloc(len + 32);
    int pl;

    hex[0] = '\0';
    if (!msg) return;
    pl = snprintf(msg, 32, "%lld.", t);
    memcpy(msg + pl, body, len);
    if (HMAC(EVP_sha256(), c->secret, (int)strlen(c->secret), (const unsigned char *)msg, (size_t)pl + len, mac,
             &mlen))
        for (unsigned i = 0; i < mlen && i < 32; i++) sprintf(hex + 2 * i, "%02x", mac[i]);
    free(msg);
}

/* Posts @body to the webhook. Return: 0 on a 2xx answer, else -1 with @err. */
static int post(struct wh *w, const char *body, size_t blen, const char *ids, char *err, size_t errlen)
{
    const webhook_conf_t *c = w->conf;
    int64_t deadline = (int64_t)(clock_mono_ns() / 1000000) + c->timeout_ms;
    long long t = (long long)(clock_wall_ms() / 1000);
    char head[2048 + 1024], sig[65], resp[RESPONSE_MAX + 1];
    size_t got = 0;
    int fd, hl, status = 0;
    char *eol;

    sign(c, t, body, blen, sig);
    hl = snprintf(head, sizeof head,
                  "POST %s HTTP/1.1\r\nHost: %s%s%s\r\nUser-Agent: herald/%s\r\nContent-Type: application/json\r\n"
                  "Content-Length: %zu\r\nHerald-Webhook: %s\r\nHerald-Event-Id: %s\r\n"
                  "Herald-Signature: t=%lld,v1=%s\r\nConnection: close\r\n\r\n",
                  c->path, c->host, strcmp(c->port, "80") ? ":" : "", strcmp(c->port, "80") ? c->port : "",
                  HERALD_VERSION, blen, c->name, ids, t, sig);
    if (hl < 0 || (size_t)hl >= sizeof head) {
        snprintf(err, errlen, "request head too long");
        return -1;
    }
    if ((fd = dial(w, deadline, err, errlen)) < 0) return -1;
    if (send_all(w, fd, head, (size_t)hl, deadline) || send_all(w, fd, body, blen, deadline)) {
        snprintf(err, errlen, "%s sending the request",
                 (int64_t)(clock_mono_ns() / 1000000) >= deadline ? "timed out" : "connection lost");
        close(fd);
        return -1;
    }
    /* Only the status line is read: a huge answer costs at most RESPONSE_MAX. */
    while (got < RESPONSE_MAX && !memchr(resp, '\n', got)) {
        ssize_t k = recv(fd, resp + got, RESPONSE_MAX - got, 0);
        if (k > 0) { got += (size_t)k; continue; }
        if (k == 0) break;
        if (errno != EAGAIN && errno != EINTR) break;
        if (wait_fd(w, fd, POLLIN, deadline) != 1) {
            snprintf(err, errlen, "timed out after %u ms waiting for the answer", c->timeout_ms);
            close(fd);
            return -1;
        }
    }
    close(fd);
    resp[got] = '\0';
    if ((eol = strchr(resp, '\r')) || (eol = strchr(resp, '\n'))) *eol = '\0';
    if (strncmp(resp, "HTTP/1.", 7) || sscanf(resp + 8, " %3d", &status) != 1 || status < 100) {
        snprintf(err, errlen, "not an HTTP answer%s", got ? "" : " (connection closed)");
        return -1;
    }
    if (status >= 200 && status < 300) return 0;
    if (status >= 300 && status < 400)
        snprintf(err, errlen, "HTTP %d: redirects are not followed", status);
    else
        snprintf(err, errlen, "HTTP %d", status);
    return -1;
}

/* ---- delivery (delivery thread) ---- */

/* Full jitter: a uniform delay in [0, min(retry_max, retry_base * 2^(attempts-1))]. */
static int64_t backoff_ms(const webhook_conf_t *c, unsigned attempts)
{
    uint64_t cap = c->retry_base_ms, r;

    for (unsigned i = 1; i < attempts && cap < c->retry_max_ms; i++) cap *= 2;
    if (cap > c->retry_max_ms) cap = c->retry_max_ms;
    rand_bytes(&r, sizeof r);
    return (int64_t)(r % (cap + 1));
}

static void count_depth(struct wh *w)
{
    uint64_t n = 0, dn = 0;
    int64_t oldest = 0, dold;

    if (hist_outbox_depth(pubpipe_store(), w->conf->name, 0, &n, &oldest) ||
        hist_outbox_depth(pubpipe_store(), w->conf->name, 1, &dn, &dold))
        return;
    uv_mutex_lock(&w->mu);
    w->st.depth = n;
    w->oldest_ms = oldest;
    w->dead_depth = dn;
    uv_mutex_unlock(&w->mu);
}

/* Posts the oldest batch. Return: 1 when it was settled (delivered or
 * dead-lettered) and more may follow, 0 when the queue is empty or the batch
 * waits for a retry. */
static int deliver(struct wh *w)
{
    const webhook_conf_t *c = w->conf;
    hist_ob_item_t *items;
    size_t n;
    uint64_t ids[100];
    char idlist[100 * 21], err[200];
    json_t *body, *evs;
    char *text;
    int64_t now;
    size_t il = 0;
    int rc, retry;

    if ((rc = hist_outbox_read(pubpipe_store(), c->name, 0, 0, c->batch_size, &items, &n))) {
        hlog(LOG_WARN, "webhook", "%s: reading its queue failed: %s", c->name, strerror(-rc));
        return 0;
    }
    if (!n) {
        hist_ob_items_free(items, n);
        return 0;
    }
    evs = json_array();
    idlist[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        ids[i] = items[i].id;
        json_array_append(evs, items[i].event);
        il += (size_t)snprintf(idlist + il, sizeof idlist - il, "%s%llu", i ? "," : "", (unsigned long long)ids[i]);
    }
    body = json_pack("{s:s,s:o}", "webhook", c->name, "events", evs);
    text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    uv_mutex_lock(&w->mu);
    retry = w->attempts > 0;
    w->st.retries += retry;
    uv_mutex_unlock(&w->mu);
    if (!text) snprintf(err, sizeof err, "out of memory");
    rc = text ? post(w, text, strlen(text), idlist, err, sizeof err) : -1;
    free(text);
    now = clock_wall_ms();
    if (rc == 0) {
        int ar = hist_outbox_ack(pubpipe_store(), c->name, ids, n);
        uv_mutex_lock(&w->mu);
        w->attempts = 0;
        w->next_try_ms = 0;
        w->st.deliveries += n;
        w->last_success_ms = now;
        for (size_t i = 0; i < n; i++) histo_observe(&w->st.latency, (double)(now - items[i].ts) / 1000.0);
        uv_mutex_unlock(&w->mu);
        hist_ob_items_free(items, n);
        if (ar) {
            /* Delivered but still queued: it will be delivered again. */
            hlog(LOG_WARN, "webhook", "%s: removing delivered events failed: %s", c->name, strerror(-ar));
            return 0;
        }
        return 1;
    }
    if (stopping(w)) {                         /* cut short by the shutdown: not the receiver's failure */
        hist_ob_items_free(items, n);
        return 0;
    }
    uv_mutex_lock(&w->mu);
    w->st.failures++;
    w->attempts++;
    w->last_error_ms = now;
    snprintf(w->last_error, sizeof w->last_error, "%s", err);
    if (w->attempts >= c->max_attempts || now - items[0].ts >= (int64_t)c->max_age_ms) {
        char why[300];
        snprintf(why, sizeof why, "gave up after %u attempt%s: %s", w->attempts, w->attempts == 1 ? "" : "s", err);
        w->attempts = 0;
        w->next_try_ms = 0;
        uv_mutex_unlock(&w->mu);
        if ((rc = hist_outbox_bury(pubpipe_store(), c->name, ids, n, why))) {
            hlog(LOG_WARN, "webhook", "%s: moving events to the dead letters failed: %s", c->name,
                 rc == HIST_E_FULL ? "the store is full" : strerror(-rc));
            uv_mutex_lock(&w->mu);
            w->next_try_ms = now + (int64_t)c->retry_max_ms;
            uv_mutex_unlock(&w->mu);
            hist_ob_items_free(items, n);
            return 0;
        }
        hlog(LOG_WARN, "webhook", "%s: events %s dead-lettered (%s)", c->name, idlist, why);
        uv_mutex_lock(&w->mu);
        w->st.dead += n;
        uv_mutex_unlock(&w->mu);
        hist_ob_items_free(items, n);
        return 1;
    }
    w->next_try_ms = now + backoff_ms(c, w->attempts);
    uv_mutex_unlock(&w->mu);
    hlog(LOG_INFO, "webhook", "%s: delivery of %s failed (%s); attempt %u of %u", c->name, idlist, err,
         w->attempts, c->max_attempts);
    hist_ob_items_free(items, n);
    return 0;
}

/* Runs a REST request on the queues. */
static void run_cmd(struct wh *w, struct cmd *k)
{
    hist_t *h = pubpipe_store();
    int rc;

    if (k->kind == CMD_LIST) {
        hist_ob_item_t *items;
        size_t n;
        json_t *list;
        if ((rc = hist_outbox_read(h, w->conf->name, 1, k->after, k->limit, &items, &n))) {
            k->status = 500;
            return;
        }
        list = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(list, json_pack("{s:I,s:I,s:s,s:O}", "id", (json_int_t)items[i].id, "queued_at",
                                                  (json_int_t)items[i].ts, "error", items[i].error, "event",
                                                  items[i].event));
        k->res = json_pack("{s:s,s:o}", "webhook", w->conf->name, "dead_letters", list);
        if (k->res && n == k->limit) json_object_set_new(k->res, "next_after", json_integer((json_int_t)items[n - 1].id));
        hist_ob_items_free(items, n);
        k->status = k->res ? 200 : 500;
        return;
    }
    rc = k->kind == CMD_RETRY ? hist_outbox_revive(h, w->conf->name, k->id) : hist_outbox_drop(h, w->conf->name, k->id);
    if (rc < 0) {
        hlog(LOG_WARN, "webhook", "%s: %s dead letters failed: %s", w->conf->name,
             k->kind == CMD_RETRY ? "retrying" : "deleting", strerror(-rc));
        k->status = 500;
        return;
    }
    if (k->id && rc == 0) {
        k->status = 404;
        return;
    }
    if (k->kind == CMD_RETRY) {
        uv_mutex_lock(&w->mu);
        w->attempts = 0;
        w->next_try_ms = 0;
        w->kick = 1;
        uv_mutex_unlock(&w->mu);
    }
    k->res = json_pack("{s:s,s:i}", "webhook", w->conf->name, k->kind == CMD_RETRY ? "retried" : "deleted", rc);
    k->status = k->res ? 200 : 500;
}

static void wh_main(void *arg)
{
    struct wh *w = arg;
    int64_t next_depth = 0, wait;
    int more = 1;

    for (;;) {
        struct cmd *cmds;
        int64_t now;

        uv_mutex_lock(&w->mu);
        while (!w->stop && !w->cmds && !w->kick) {
            now = clock_wall_ms();
            if (more && w->next_try_ms <= now) break;
            wait = IDLE_LOOK_MS;
            if (w->next_try_ms > now && w->next_try_ms - now < wait) wait = w->next_try_ms - now;
            if (uv_cond_timedwait(&w->cv, &w->mu, (uint64_t)wait * 1000000ULL) == UV_ETIMEDOUT) {
                /* An idle look: events may have come without a kick. */
                more = 1;
                if (w->next_try_ms <= clock_wall_ms()) break;
            }
        }
        if (w->stop) {
            uv_mutex_unlock(&w->mu);
            break;
        }
        cmds = w->cmds;
        w->cmds = NULL;
        w->cmds_tail = &w->cmds;
        if (w->kick) more = 1;
        w->kick = 0;
        uv_mutex_unlock(&w->mu);

        while (cmds) {
            struct cmd *k = cmds;
            cmds = k->next;
            run_cmd(w, k);
            uv_mutex_lock(&wh.mu);
            k->next = wh.done;
            wh.done = k;
            uv_mutex_unlock(&wh.mu);
            uv_async_send(&wh.async);
            more = 1;
        }
        uv_mutex_lock(&w->mu);
        wait = w->next_try_ms - clock_wall_ms();
        uv_mutex_unlock(&w->mu);
        if (more && wait <= 0) more = deliver(w);
        now = clock_wall_ms();
        if (now >= next_depth) {
            /* Counting walks the queue: a long backlog is counted less often,
             * so the count never takes more than a tenth of the thread. */
            int64_t took;
            count_depth(w);
            took = clock_wall_ms() - now;
            next_depth = now + (took * 10 > DEPTH_EVERY_MS ? took * 10 : DEPTH_EVERY_MS);
        }
    }
}

/* ---- loop ---- */

static void on_async(uv_async_t *a)
{
    struct cmd *done;

    (void)a;
    uv_mutex_lock(&wh.mu);
    done = wh.done;
    wh.done = NULL;
    uv_mutex_unlock(&wh.mu);
    while (done) {
        struct cmd *k = done;
        done = k->next;
        if (k->status == 200) http_finish_json(k->serial, 200, k->res);
        else if (k->status == 404) http_finish_error(k->serial, 404, PROTO_E_BAD_FIELD, "no such dead letter");
        else http_finish_error(k->serial, 500, PROTO_E_STORAGE, "the webhook store failed");
        if (k->status != 200) json_decref(k->res);
        free(k);
    }
}

void webhook_kick(void)
{
    for (size_t i = 0; i < wh.n; i++) {
        uv_mutex_lock(&wh.hooks[i].mu);
        wh.hooks[i].kick = 1;
        uv_cond_signal(&wh.hooks[i].cv);
        uv_mutex_unlock(&wh.hooks[i].mu);
    }
}

int webhook_start(void)
{
    if (!srv.cfg.nwebhooks) return 0;
    if (!pubpipe_store()) {
        hlog(LOG_ERROR, "webhook", "webhooks need the history store");
        return -1;
    }
    if (!(wh.hooks = calloc(srv.cfg.nwebhooks, sizeof *wh.hooks))) return -1;
    uv_mutex_init(&wh.mu);
    uv_async_init(&srv.loop, &wh.async, on_async);
    wh.running = 1;
    for (size_t i = 0; i < srv.cfg.nwebhooks; i++) {
        struct wh *w = &wh.hooks[i];
        w->conf = &srv.cfg.webhooks[i];
        w->st.name = w->conf->name;
        w->st.latency.bounds = latency_bounds;
        w->st.latency.n = sizeof latency_bounds / sizeof latency_bounds[0];
        w->cmds_tail = &w->cmds;
        uv_mutex_init(&w->mu);
        uv_cond_init(&w->cv);
        wh.n++;
        if (uv_thread_create(&w->thread, wh_main, w)) {
            hlog(LOG_ERROR, "webhook", "%s: cannot start its delivery thread", w->conf->name);
            return -1;
        }
        w->started = 1;
        hlog(LOG_INFO, "webhook", "%s: delivering to %s", w->conf->name, w->conf->url);
    }
    return 0;
}

void webhook_stop(void)
{
    if (!wh.running) return;
    for (size_t i = 0; i < wh.n; i++) {
        struct wh *w = &wh.hooks[i];
        uv_mutex_lock(&w->mu);
        w->stop = 1;
        uv_cond_signal(&w->cv);
        uv_mutex_unlock(&w->mu);
    }
    for (size_t i = 0; i < wh.n; i++) {
        struct wh *w = &wh.hooks[i];
        if (w->started) uv_thread_join(&w->thread);
        /* Requests not run: their HTTP requests are answered as failed. */
        while (w->cmds) {
            struct cmd *k = w->cmds;
            w->cmds = k->next;
            k->status = 500;
            k->next = wh.done;
            wh.done = k;
        }
        uv_mutex_destroy(&w->mu);
        uv_cond_destroy(&w->cv);
    }
    on_async(&wh.async);
    uv_close((uv_handle_t *)&wh.async, NULL);
    uv_mutex_destroy(&wh.mu);
    free(wh.hooks);
    wh.hooks = NULL;
    wh.n = 0;
    wh.running = 0;
}

/* Queues @ev (taken) for the webhooks that want @mask on @c. */
static void queue_event(chan_t *c, unsigned mask, json_t *ev)
{
    const char *hooks[WEBHOOK_MAX];
    size_t n;

    if (!ev) return;
    n = config_webhooks_for(&srv.cfg, mask, c->name, c->namelen, hooks);
    if (n && pubpipe_event(hooks, n, ev))
        hlog(LOG_WARN, "webhook", "out of memory queueing an event of %.*s", (int)c->namelen, c->name);
    json_decref(ev);
}

void webhook_on_occupancy(chan_t *c, int occupied)
{
    if (!wh.running || srv.stopping) return;
    queue_event(c, occupied ? WH_EV_OCCUPIED : WH_EV_VACATED,
                json_pack("{s:s,s:s%,s:I}", "type", occupied ? "channel.occupied" : "channel.vacated", "channel",
                          c->name, (size_t)c->namelen, "ts", (json_int_t)clock_wall_ms()));
}

void webhook_on_member(chan_t *c, const char *user, size_t len, int added)
{
    if (!wh.running || srv.stopping) return;
    queue_event(c, added ? WH_EV_MEMBER_ADDED : WH_EV_MEMBER_REMOVED,
                json_pack("{s:s,s:s%,s:s%,s:I}", "type", added ? "presence.member_added" : "presence.member_removed",
                          "channel", c->name, (size_t)c->namelen, "user", user, len, "ts",
                          (json_int_t)clock_wall_ms()));
}

json_t *webhook_status(void)
{
    json_t *list = json_array();
    int64_t now = clock_wall_ms();

    for (size_t i = 0; i < srv.cfg.nwebhooks; i++) {
        const webhook_conf_t *c = &srv.cfg.webhooks[i];
        struct wh *w = i < wh.n ? &wh.hooks[i] : NULL;
        json_t *o = json_pack("{s:s,s:s,s:i,s:i}", "name", c->name, "url", c->url, "max_attempts",
                              (int)c->max_attempts, "batch_size", (int)c->batch_size);
        if (!o) continue;
        if (w) {
            uv_mutex_lock(&w->mu);
            json_object_set_new(o, "queue_depth", json_integer((json_int_t)w->st.depth));
            json_object_set_new(o, "lag_ms", json_integer(w->st.depth && w->oldest_ms ? now - w->oldest_ms : 0));
            json_object_set_new(o, "dead_letters", json_integer((json_int_t)w->dead_depth));
            json_object_set_new(o, "deliveries", json_integer((json_int_t)w->st.deliveries));
            json_object_set_new(o, "failures", json_integer((json_int_t)w->st.failures));
            json_object_set_new(o, "attempts", json_integer(w->attempts));
            json_object_set_new(o, "next_attempt", w->next_try_ms ? json_integer(w->next_try_ms) : json_null());
            json_object_set_new(o, "last_success", w->last_success_ms ? json_integer(w->last_success_ms) : json_null());
            json_object_set_new(o, "last_error", w->last_error_ms ? json_pack("{s:I,s:s}", "at",
                                (json_int_t)w->last_error_ms, "reason", w->last_error) : json_null());
            uv_mutex_unlock(&w->mu);
        }
        json_array_append_new(list, o);
    }
    return json_pack("{s:o}", "webhooks", list);
}

static struct wh *find(const char *name)
{
    for (size_t i = 0; i < wh.n; i++)
        if (!strcmp(wh.hooks[i].conf->name, name)) return &wh.hooks[i];
    return NULL;
}

static int submit(uint64_t serial, const char *name, enum cmd_kind kind, uint64_t id, uint64_t after, unsigned limit)
{
    struct wh *w = find(name);
    struct cmd *k;

    if (!w) return 1;
    if (!(k = calloc(1, sizeof *k))) return -ENOMEM;
    k->kind = kind;
    k->serial = serial;
    k->id = id;
    k->after = after;
    k->limit = limit;
    uv_mutex_lock(&w->mu);
    *w->cmds_tail = k;
    w->cmds_tail = &k->next;
    uv_cond_signal(&w->cv);
    uv_mutex_unlock(&w->mu);
    return 0;
}

int webhook_dead_list(uint64_t serial, const char *name, uint64_t after, unsigned limit)
{
    return submit(serial, name, CMD_LIST, 0, after, limit);
}

int webhook_dead_retry(uint64_t serial, const char *name, uint64_t id)
{
    return submit(serial, name, CMD_RETRY, id, 0, 0);
}

int webhook_dead_delete(uint64_t serial, const char *name, uint64_t id)
{
    return submit(serial, name, CMD_DELETE, id, 0, 0);
}

int webhook_stats(size_t i, struct webhook_stats *out)
{
    if (i >= wh.n) return -1;
    uv_mutex_lock(&wh.hooks[i].mu);
    *out = wh.hooks[i].st;
    uv_mutex_unlock(&wh.hooks[i].mu);
    return 0;
}
