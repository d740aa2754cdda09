/* clients/herald_session.c - see herald_session.h.
 *
 * Owns: the session's subscriptions and their positions (epoch, last offset
 * delivered), the retry timer and the current client. Does not own: the
 * connection itself (herald_client.c).
 *
 * DESIGN: exactly once. Each subscription remembers the epoch of its log and
 * the last offset handed to on_pub. A subscribe reply's publications end at
 * the reply's offset and live pushes continue from offset + 1
 * (docs/protocol.md, subscribe), so after a reply the position is its
 * offset, and anything at or below the position is a duplicate: a resumed
 * subscription asks for "since" = that position, and whatever the broker
 * sends twice (it never should) is dropped here rather than delivered twice.
 * Another epoch means the offsets started over: nothing is a duplicate, and
 * the broker reports recovered = false, which becomes on_lost.
 *
 * Callbacks may call back into the session (close, unsubscribe), so every
 * loop that calls out looks its subscription up again afterwards instead of
 * keeping a pointer into the array. */
#include "herald_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define CHANNEL_MAX 255
#define EPOCH_MAX 64

struct sess_sub {
    char *channel;
    size_t chlen;
    char *token;                  /* a subscribe token, or NULL */
    char epoch[EPOCH_MAX];
    size_t epoch_len;             /* 0: no position yet */
    uint64_t last;                /* the last offset delivered (or asked for) in epoch */
    uint64_t req_id;              /* the subscribe awaiting its reply; 0 if none */
    int active;                   /* subscribed on the current connection */
    int resumed;                  /* the pending subscribe is a recovery */
};

struct herald_session {
    herald_ctx_t *ctx;
    herald_url_t url;
    herald_session_opts_t opts;
    herald_session_callbacks_t cb;
    void *ud;
    herald_client_t *c;           /* NULL between connections */
    int open;                     /* c is past on_open */
    uv_timer_t timer;
    char *token;
    struct sess_sub *subs;
    size_t nsubs, capsubs;
    unsigned attempts;            /* failed attempts in a row */
    unsigned opened;              /* connections that reached on_open */
    int closing;
    int paused;                   /* herald_session_pause(): every connection starts paused */
    herald_close_info_t last_info;
    char last_reason[128];
};

unsigned herald_backoff_ms(unsigned attempt, unsigned min, unsigned max, uint32_t rnd)
{
    uint64_t d = min ? min : 1;

    for (unsigned i = 0; i < attempt && d < max; i++) d *= 2;
    if (d > max) d = max;
    return (unsigned)(d / 2 + (d - d / 2) * (uint64_t)rnd / UINT32_MAX);
}

static long find(const herald_session_t *s, const char *ch, size_t chlen)
{
    for (size_t i = 0; i < s->nsubs; i++)
        if (s->subs[i].chlen == chlen && !memcmp(s->subs[i].channel, ch, chlen)) return (long)i;
    return -1;
}

static void sub_remove(herald_session_t *s, size_t i)
{
    free(s->subs[i].channel);
    free(s->subs[i].token);
    s->subs[i] = s->subs[--s->nsubs];
}

/* ---- finishing ---- */

static void on_timer_closed(uv_handle_t *h)
{
    herald_session_t *s = h->data;

    if (s->cb.on_close) s->cb.on_close(s, &s->last_info, s->ud);
    while (s->nsubs) sub_remove(s, 0);
    free(s->subs);
    free(s->token);
    free(s);
}

static void finish(herald_session_t *s)
{
    s->closing = 1;
    uv_timer_stop(&s->timer);
    if (!uv_is_closing((uv_handle_t *)&s->timer)) uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static void keep_info(herald_session_t *s, const herald_close_info_t *info)
{
    s->last_info = *info;
    snprintf(s->last_reason, sizeof s->last_reason, "%s", info->reason ? info->reason : "");
    s->last_info.reason = s->last_reason;
}

/* ---- subscribing ---- */

static void on_sub_reply(herald_client_t *c, const herald_msg_t *m, void *arg);

static int send_subscribe(herald_session_t *s, struct sess_sub *sub)
{
    herald_sub_opts_t o = { .token = sub->token };

    sub->resumed = sub->epoch_len != 0;
    sub->active = 0;
    if (sub->epoch_len) {
        o.epoch = sub->epoch;
        o.epoch_len = sub->epoch_len;
        o.since = sub->last;
    }
    return herald_subscribe_ex(s->c, sub->channel, sub->chlen, &o, on_sub_reply, s, &sub->req_id);
}

/* Hands @m to on_pub unless it is at or below the position of the
 * subscription at @i. Return: the subscription's index afterwards, or -1 if
 * the callback removed it (or closed the session). */
static long deliver(herald_session_t *s, long i, const herald_msg_t *m)
{
    char ch[CHANNEL_MAX];
    size_t chlen = s->subs[i].chlen;

    if (m->offset <= s->subs[i].last) return i;
    s->subs[i].last = m->offset;
    memcpy(ch, s->subs[i].channel, chlen);
    if (s->cb.on_pub) s->cb.on_pub(s, m, s->ud);
    if (s->closing) return -1;
    return find(s, ch, chlen);
}

static void on_sub_reply(herald_client_t *c, const herald_msg_t *m, void *arg)
{
    herald_session_t *s = arg;
    char ch[CHANNEL_MAX];
    size_t chlen;
    long i = -1;
    uint64_t before;
    int same_epoch, resumed;
    herald_pubs_t it;
    herald_msg_t p;

    for (size_t k = 0; k < s->nsubs; k++)
        if (s->subs[k].req_id && s->subs[k].req_id == m->id) { i = (long)k; break; }
    if (i < 0) return;                  /* unsubscribed meanwhile */
    s->subs[i].req_id = 0;
    chlen = s->subs[i].chlen;
    memcpy(ch, s->subs[i].channel, chlen);
    if (m->op == HERALD_OP_ERROR) {
        sub_remove(s, (size_t)i);
        if (s->cb.on_sub_error) s->cb.on_sub_error(s, ch, chlen, m, s->ud);
        return;
    }
    resumed = s->subs[i].resumed;
    before = s->subs[i].last;
    same_epoch = m->epoch_len && m->epoch_len == s->subs[i].epoch_len &&
                 !memcmp(m->epoch, s->subs[i].epoch, m->epoch_len);
    if (m->epoch_len && m->epoch_len < EPOCH_MAX) {
        memcpy(s->subs[i].epoch, m->epoch, m->epoch_len);
        s->subs[i].epoch_len = m->epoch_len;
    }
    if (!same_epoch) s->subs[i].last = 0;      /* a new log: its offsets start over */
    if (!resumed) s->subs[i].last = m->offset; /* from now on: nothing before the reply */
    s->subs[i].active = 1;
    if (s->cb.on_subscribed) {
        s->cb.on_subscribed(s, m, resumed, s->ud);
        if (s->closing || (i = find(s, ch, chlen)) < 0) return;
    }
    if (resumed && m->has_recovered && !m->recovered && s->cb.on_lost) {
        s->cb.on_lost(s, ch, chlen, before, m, s->ud);
        if (s->closing || (i = find(s, ch, chlen)) < 0) return;
    }
    herald_pubs_init(&it, herald_client_encoding(c), m);
    while (herald_pubs_next(&it, &p) == 1) {
        p.op = HERALD_OP_PUB;
        p.channel = m->channel;
        p.channel_len = m->channel_len;
        p.rx_ns = m->rx_ns;
        p.raw = NULL;
        p.raw_len = 0;
        if ((i = deliver(s, i, &p)) < 0) return;
    }
    if (s->subs[i].last < m->offset) s->subs[i].last = m->offset;
}

/* ---- the connection ---- */

static void c_open(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    herald_session_t *s = ud;

    s->open = 1;
    s->attempts = 0;
    s->opened++;
    for (size_t i = 0; i < s->nsubs; i++)
        if (send_subscribe(s, &s->subs[i])) {
            herald_client_abort(c);
            return;
        }
    if (s->cb.on_open) s->cb.on_open(s, m, s->opened > 1, s->ud);
}

static void c_pub(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    herald_session_t *s = ud;
    long i = find(s, m->channel, m->channel_len);

    (void)c;
    if (i < 0 || !s->subs[i].active) return;   /* forgotten, or its reply is still due */
    deliver(s, i, m);
}

static void c_reply(herald_client_t *c, const herald_msg_t *m, void *ud)
{
    herald_session_t *s = ud;

    (void)c;
    if (m->op == HERALD_OP_SNAPSHOT && m->channel) {
        /* A state channel's subscriber lagged and was resynchronised: the
         * snapshot replaces the deltas up to its offset, which is where the
         * channel now stands (and where a resume starts). */
        long i = find(s, m->channel, m->channel_len);
        if (i >= 0 && s->subs[i].active && m->offset > s->subs[i].last) s->subs[i].last = m->offset;
    }
    if (s->cb.on_reply) s->cb.on_reply(s, m, s->ud);
}

static const char *c_token(herald_client_t *c, void *ud)
{
    herald_session_t *s = ud;
    const char *t;
    char *copy;

    (void)c;
    if (!s->cb.on_token || !(t = s->cb.on_token(s, s->ud)) || !(copy = strdup(t))) return NULL;
    free(s->token);
    s->token = copy;
    return s->token;
}

static void connect_now(herald_session_t *s);

static void on_retry(uv_timer_t *t)
{
    connect_now(t->data);
}

/* After a failed attempt or a lost connection: retry later, or give up. */
static void retry_or_give_up(herald_session_t *s, const herald_close_info_t *info)
{
    uint32_t rnd;
    unsigned delay;

    keep_info(s, info);
    if (s->closing || (info->err == HERALD_E_REFUSED && !s->cb.on_token) ||
        (s->opts.max_attempts && s->attempts >= s->opts.max_attempts)) {
        finish(s);
        return;
    }
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd) rnd = (uint32_t)uv_hrtime();
    delay = herald_backoff_ms(s->attempts, s->opts.backoff_min_ms, s->opts.backoff_max_ms, rnd);
    s->attempts++;
    if (s->cb.on_disconnect) s->cb.on_disconnect(s, info, delay, s->ud);
    if (s->closing) {
        if (!uv_is_closing((uv_handle_t *)&s->timer)) finish(s);
        return;
    }
    uv_timer_start(&s->timer, on_retry, delay, 0);
}

static void c_close(herald_client_t *c, const herald_close_info_t *info, void *ud)
{
    herald_session_t *s = ud;

    (void)c;
    s->c = NULL;
    s->open = 0;
    for (size_t i = 0; i < s->nsubs; i++) {
        s->subs[i].active = 0;
        s->subs[i].req_id = 0;
    }
    if (s->closing) {
        keep_info(s, info);
        s->last_info.err = 0;
        finish(s);
        return;
    }
    retry_or_give_up(s, info);
}

static void connect_now(herald_session_t *s)
{
    static const herald_callbacks_t cbs = { c_open, c_reply, c_pub, c_close, c_token };
    herald_opts_t o = s->opts.client;
    herald_close_info_t info = { .code = 1006, .reason = "" };
    int r;

    if (s->opened || s->attempts) c_token(NULL, s);     /* a fresh token for a new connection */
    o.token = s->token;
    if ((r = herald_client_new(s->ctx, &s->url, &o, &cbs, s, &s->c))) {
        s->c = NULL;
        info.err = r;
        info.reason = herald_strerror(r);
        retry_or_give_up(s, &info);
        return;
    }
    /* Applies once it is open: c_open() still resubscribes; the replies wait. */
    if (s->paused) herald_client_pause(s->c);
}

/* ---- API ---- */

int herald_session_new(herald_ctx_t *ctx, const herald_url_t *url, const herald_session_opts_t *opts,
                       const herald_session_callbacks_t *cb, void *ud, herald_session_t **out)
{
    herald_session_t *s = calloc(1, sizeof *s);

    if (!s) return UV_ENOMEM;
    s->ctx = ctx;
    s->url = *url;
    if (opts) s->opts = *opts;
    if (!s->opts.backoff_min_ms) s->opts.backoff_min_ms = 250;
    if (!s->opts.backoff_max_ms) s->opts.backoff_max_ms = 10000;
    if (s->opts.backoff_max_ms < s->opts.backoff_min_ms) s->opts.backoff_max_ms = s->opts.backoff_min_ms;
    if (s->opts.client.token && !(s->token = strdup(s->opts.client.token))) {
        free(s);
        return UV_ENOMEM;
    }
    s->opts.client.token = NULL;
    s->cb = *cb;
    s->ud = ud;
    uv_timer_init(herald_ctx_loop(ctx), &s->timer);
    s->timer.data = s;
    *out = s;
    /* The first attempt runs from the loop, so that no callback fires inside this call
     * (and the caller can subscribe before it connects). */
    uv_timer_start(&s->timer, on_retry, 0, 0);
    return 0;
}

int herald_session_subscribe(herald_session_t *s, const char *channel, size_t chlen, const char *epoch,
                             size_t epoch_len, uint64_t since)
{
    return herald_session_subscribe_token(s, channel, chlen, epoch, epoch_len, since, NULL);
}

int herald_session_subscribe_token(herald_session_t *s, const char *channel, size_t chlen, const char *epoch,
                                   size_t epoch_len, uint64_t since, const char *token)
{
    struct sess_sub *sub;

    if (s->closing) return HERALD_E_STATE;
    if (!chlen || chlen > CHANNEL_MAX || (epoch && (!epoch_len || epoch_len >= EPOCH_MAX))) return UV_EINVAL;
    if (find(s, channel, chlen) >= 0) return UV_EEXIST;
    if (s->nsubs == s->capsubs) {
        size_t nc = s->capsubs ? s->capsubs * 2 : 8;
        struct sess_sub *n = realloc(s->subs, nc * sizeof *n);
        if (!n) return UV_ENOMEM;
        s->subs = n;
        s->capsubs = nc;
    }
    sub = &s->subs[s->nsubs];
    memset(sub, 0, sizeof *sub);
    if (!(sub->channel = malloc(chlen))) return UV_ENOMEM;
    if (token && !(sub->token = strdup(token))) {
        free(sub->channel);
        return UV_ENOMEM;
    }
    memcpy(sub->channel, channel, chlen);
    sub->chlen = chlen;
    if (epoch) {
        memcpy(sub->epoch, epoch, epoch_len);
        sub->epoch_len = epoch_len;
        sub->last = since;
    }
    s->nsubs++;
    if (s->open && send_subscribe(s, sub)) {
        sub_remove(s, s->nsubs - 1);
        return UV_ENOMEM;
    }
    return 0;
}

int herald_session_unsubscribe(herald_session_t *s, const char *channel, size_t chlen)
{
    long i = find(s, channel, chlen);
    int active;

    if (i < 0) return UV_ENOENT;
    active = s->subs[i].active || s->subs[i].req_id;
    sub_remove(s, (size_t)i);
    if (s->open && active) herald_unsubscribe(s->c, channel, chlen, NULL, NULL, NULL);
    return 0;
}

int herald_session_position(const herald_session_t *s, const char *channel, size_t chlen, const char **epoch,
                            size_t *epoch_len, uint64_t *offset)
{
    long i = find(s, channel, chlen);

    if (i < 0 || !s->subs[i].epoch_len) return UV_ENOENT;
    *epoch = s->subs[i].epoch;
    *epoch_len = s->subs[i].epoch_len;
    *offset = s->subs[i].last;
    return 0;
}

herald_client_t *herald_session_client(const herald_session_t *s)
{
    return s->open ? s->c : NULL;
}

/* A client that is ending refuses pause/resume with HERALD_E_STATE; the
 * session's flag is what the next connection starts with. */
int herald_session_pause(herald_session_t *s)
{
    if (s->closing) return HERALD_E_STATE;
    s->paused = 1;
    if (s->c) herald_client_pause(s->c);
    return 0;
}

int herald_session_resume(herald_session_t *s)
{
    if (s->closing) return HERALD_E_STATE;
    s->paused = 0;
    if (s->c) herald_client_resume(s->c);
    return 0;
}

int herald_session_paused(const herald_session_t *s)
{
    return s->paused;
}

void herald_session_close(herald_session_t *s)
{
    if (s->closing) return;
    s->closing = 1;
    if (s->c) {
        herald_close(s->c, 1000, NULL);    /* c_close() finishes */
        return;
    }
    s->last_info = (herald_close_info_t){ .code = 1000, .reason = "" };
    finish(s);
}
