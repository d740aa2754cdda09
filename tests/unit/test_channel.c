/* tests/unit/test_channel.c - broker/core/channel.c: the channel registry and
 * fan-out, with fake sessions.
 *
 * Sessions here are zeroed sess_t objects in test storage with only enc, wsi
 * and id set; no lws context exists. sess_push() asks libwebsockets for a
 * writable callback, and the link flag -Wl,--wrap=lws_callback_on_writable
 * (tests/unit/meson.build) sends that call to the counter below instead.
 * A closing session lets go of its subscriptions through the hook the
 * broker's main.c installs (there, app/ops.c's, which starts with this). */
#include "unit.h"

#include "core/channel.h"
#include "herald.h"
#include "record.h"
#include "net/session.h"
#include "net/sendring.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

int __wrap_lws_callback_on_writable(struct lws *wsi);
int __wrap_lws_partial_buffered(struct lws *wsi);
int __wrap_lws_get_socket_fd(struct lws *wsi);

static int wakeups;
static struct lws *last_wsi;

int __wrap_lws_callback_on_writable(struct lws *wsi)
{
    wakeups++;
    last_wsi = wsi;
    return 0;
}

/* The end-of-turn flush (sess_flush_dirty()) asks lws whether it holds
 * part of an earlier write (never, here) and for the socket to write to:
 * the fd set for the test, -1 otherwise. */
static int wrap_fd = -1;

int __wrap_lws_partial_buffered(struct lws *wsi)
{
    (void)wsi;
    return 0;
}

int __wrap_lws_get_socket_fd(struct lws *wsi)
{
    (void)wsi;
    return wrap_fd;
}

/* Sessions waiting for the end-of-turn flush (session.c writes them then,
 * without asking lws for a writable callback). */
static int dirty_count(void)
{
    int n = 0;
    for (sess_t *d = srv.dirty; d; d = d->dirty_next) n++;
    return n;
}

/* A fake wsi: a distinct address per session, never dereferenced. */
static char fake_wsi[4096];

static sess_t *sessions_new(size_t n, int enc_mix)
{
    sess_t *s = calloc(n, sizeof *s);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) {
        s[i].kind = SESS_KIND_WS;
        s[i].enc = (uint8_t)(enc_mix ? i % PROTO_NENC : PROTO_JSON);
        s[i].wsi = (struct lws *)&fake_wsi[i % sizeof fake_wsi];
        s[i].connected = 1;
        snprintf(s[i].id, sizeof s[i].id, "%016zx", i);
    }
    srv.nsessions += (unsigned)n;
    return s;
}

static void sessions_free(sess_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) sess_on_closed(&s[i]);
    free(s);
}

static int setup(void **state)
{
    (void)state;
    memset(&srv, 0, sizeof srv);
    config_defaults(&srv.cfg);
    /* Offsets of channels without history live in memory only, so such a
     * channel is kept once published; the history case is tested apart. */
    srv.cfg.ns_template.history = 0;
    log_set_level(LOG_ERROR);             /* slow-consumer closes log at info */
    wbuf_init(&srv.enc);
    wakeups = 0;
    sess_set_hooks(&(struct sess_hooks){ .on_closed = chan_unsubscribe_all });
    return chan_registry_init();
}

static int teardown(void **state)
{
    (void)state;
    chan_registry_deinit();
    config_free(&srv.cfg);
    wbuf_deinit(&srv.enc);
    free(srv.batch);
    srv.batch = NULL;
    return 0;
}

static chan_t *open_chan(const char *name)
{
    chan_t *c = NULL;
    assert_int_equal(chan_open(name, strlen(name), &c), 0);
    assert_non_null(c);
    return c;
}

/* One publication of @data on @c at the next offset, the way the publish
 * path does it: build the record, fan it out with no frames pre-encoded. */
static int publish(chan_t *c, const json_t *data, uint64_t *offset)
{
    frame_t *frames[PROTO_NENC] = { NULL };
    wbuf_t rec;
    int r;

    wbuf_init(&rec);
    rec_build(&rec, 1795242265885LL, data, NULL, 0, NULL);
    assert_false(rec.oom);
    *offset = c->last_offset + 1;
    r = chan_fanout(c, *offset, rec.p, rec.len, frames);
    if (r == 0) assert_int_equal(c->last_offset, *offset);
    wbuf_deinit(&rec);
    return r;
}

/* members[], subs[] and both indexes agree with each other and with srv.subs. */
static void check_chan(const chan_t *c)
{
    uint32_t nenc[PROTO_NENC] = { 0 };

    assert_true(c->nsubs <= c->cap);
    for (uint32_t i = 0; i < c->nsubs; i++) {
        const sub_t *sub = c->subs[i];
        const void *key[2] = { c->members[i], c };
        assert_ptr_equal(sub->chan, c);
        assert_ptr_equal(sub->sess, c->members[i]);
        assert_int_equal(sub->chan_idx, i);
        assert_true(sub->sess_idx < sub->sess->nsubs);
        assert_ptr_equal(sub->sess->subs[sub->sess_idx], sub);
        assert_ptr_equal(hmap_get(&srv.subs, key, sizeof key), sub);
        nenc[c->members[i]->enc]++;
    }
    for (int e = 0; e < PROTO_NENC; e++) assert_int_equal(c->nenc[e], nenc[e]);
}

static void check_sess(const sess_t *s)
{
    for (uint32_t i = 0; i < s->nsubs; i++) {
        const sub_t *sub = s->subs[i];
        assert_ptr_equal(sub->sess, s);
        assert_int_equal(sub->sess_idx, i);
        assert_ptr_equal(sub->chan->subs[sub->chan_idx], sub);
        assert_ptr_equal(sub->chan->members[sub->chan_idx], s);
    }
}

static void test_open_find(void **state)
{
    chan_t *c, *d;
    (void)state;

    assert_null(chan_find("news", 4));
    c = open_chan("news");
    assert_int_equal(c->namelen, 4);
    assert_string_equal(c->name, "news");
    assert_int_equal(c->last_offset, 0);
    assert_ptr_equal(chan_find("news", 4), c);
    d = open_chan("news");
    assert_ptr_equal(c, d);
    assert_int_equal(chan_count(), 1);
    /* The name is copied: the caller's buffer may go away. */
    {
        char tmp[16];
        strcpy(tmp, "chat:room1");
        c = NULL;
        assert_int_equal(chan_open(tmp, strlen(tmp), &c), 0);
        memset(tmp, 'x', sizeof tmp);
        assert_ptr_equal(chan_find("chat:room1", 10), c);
    }
    assert_int_equal(chan_count(), 2);
}

static void test_subscribe_unsubscribe(void **state)
{
    sess_t *s = sessions_new(2, 1);
    chan_t *a = open_chan("a"), *b = open_chan("b");
    (void)state;

    assert_int_equal(chan_subscribe(&s[0], a), 0);
    assert_int_equal(chan_subscribe(&s[0], a), PROTO_E_ALREADY_SUBSCRIBED);
    assert_int_equal(chan_subscribe(&s[0], b), 0);
    assert_int_equal(chan_subscribe(&s[1], a), 0);
    assert_int_equal(a->nsubs, 2);
    assert_int_equal(b->nsubs, 1);
    assert_int_equal(s[0].nsubs, 2);
    assert_int_equal(a->nenc[PROTO_JSON], 1);
    assert_int_equal(a->nenc[PROTO_MSGPACK], 1);
    assert_int_equal(srv.subs.count, 3);
    check_chan(a);
    check_chan(b);
    check_sess(&s[0]);
    check_sess(&s[1]);

    assert_int_equal(chan_unsubscribe(&s[1], b), PROTO_E_NOT_SUBSCRIBED);
    assert_int_equal(chan_unsubscribe(&s[0], a), 0);
    assert_int_equal(chan_unsubscribe(&s[0], a), PROTO_E_NOT_SUBSCRIBED);
    assert_int_equal(a->nsubs, 1);
    assert_ptr_equal(a->members[0], &s[1]);
    check_chan(a);
    check_sess(&s[0]);
    /* Re-subscribing after unsubscribing works. */
    assert_int_equal(chan_subscribe(&s[0], a), 0);
    check_chan(a);

    /* unsubscribe_all drops every subscription and frees the array. */
    chan_unsubscribe_all(&s[0]);
    assert_int_equal(s[0].nsubs, 0);
    assert_null(s[0].subs);
    assert_int_equal(srv.subs.count, 1);
    assert_null(chan_find("b", 1));            /* b: no subscribers, never published */
    assert_non_null(chan_find("a", 1));
    sessions_free(s, 2);
    assert_int_equal(chan_count(), 0);
    assert_int_equal(srv.subs.count, 0);
}

static void test_channel_lifetime(void **state)
{
    sess_t *s = sessions_new(1, 0);
    uint64_t off = 0;
    chan_t *c;
    (void)state;

    /* Freed when the last subscriber leaves and nothing was published. */
    c = open_chan("t:1");
    assert_int_equal(chan_subscribe(&s[0], c), 0);
    assert_int_equal(chan_unsubscribe(&s[0], c), 0);
    assert_null(chan_find("t:1", 3));
    assert_int_equal(chan_count(), 0);

    /* Kept after a publish, with its offset. */
    c = open_chan("t:2");
    assert_int_equal(chan_subscribe(&s[0], c), 0);
    assert_int_equal(publish(c, json_true(), &off), 0);
    assert_int_equal(off, 1);
    assert_int_equal(chan_unsubscribe(&s[0], c), 0);
    assert_ptr_equal(chan_find("t:2", 3), c);
    assert_int_equal(c->last_offset, 1);
    assert_int_equal(chan_subscribe(&s[0], c), 0);
    assert_int_equal(publish(c, json_null(), &off), 0);
    assert_int_equal(off, 2);

    /* Publishing to a channel nobody subscribes is fine and numbers it. */
    c = open_chan("t:3");
    assert_int_equal(publish(c, json_null(), &off), 0);
    assert_int_equal(off, 1);
    assert_int_equal(publish(c, json_null(), &off), 0);
    assert_int_equal(off, 2);
    assert_int_equal(chan_count(), 2);
    sessions_free(s, 1);
    assert_int_equal(chan_count(), 2);         /* published channels stay */
}

static void test_max_subscriptions(void **state)
{
    sess_t *s = sessions_new(2, 0);
    char name[16];
    chan_t *c;
    (void)state;

    srv.cfg.max_subscriptions = 3;
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "c%d", i);
        assert_int_equal(chan_subscribe(&s[0], open_chan(name)), 0);
    }
    c = open_chan("c3");
    assert_int_equal(chan_subscribe(&s[0], c), PROTO_E_LIMIT);
    /* The refused subscription freed the channel it would have created. */
    assert_null(chan_find("c3", 2));
    assert_int_equal(s[0].nsubs, 3);
    /* The cap is per session: another one can still subscribe. */
    c = open_chan("c3");
    assert_int_equal(chan_subscribe(&s[1], c), 0);
    /* Already subscribed is reported before the cap. */
    assert_int_equal(chan_subscribe(&s[0], chan_find("c0", 2)), PROTO_E_ALREADY_SUBSCRIBED);
    /* A refused subscription leaves a channel that others hold alone. */
    assert_int_equal(chan_subscribe(&s[0], c), PROTO_E_LIMIT);
    assert_ptr_equal(chan_find("c3", 2), c);
    check_chan(c);
    /* Unsubscribing makes room again. */
    assert_int_equal(chan_unsubscribe(&s[0], chan_find("c0", 2)), 0);
    assert_int_equal(chan_subscribe(&s[0], c), 0);
    check_sess(&s[0]);
    sessions_free(s, 2);
}

static void test_max_channels(void **state)
{
    sess_t *s = sessions_new(1, 0);
    chan_t *c = NULL;
    uint64_t off;
    (void)state;

    srv.cfg.max_channels = 2;
    open_chan("x");
    open_chan("y");
    assert_int_equal(chan_open("z", 1, &c), PROTO_E_LIMIT);
    assert_null(chan_find("z", 1));
    /* Existing channels still open at the cap. */
    assert_ptr_equal(open_chan("x"), chan_find("x", 1));
    /* A channel freed makes room. */
    assert_int_equal(chan_subscribe(&s[0], chan_find("x", 1)), 0);
    assert_int_equal(chan_unsubscribe(&s[0], chan_find("x", 1)), 0);   /* frees x */
    assert_int_equal(chan_count(), 1);
    c = open_chan("z");
    assert_int_equal(publish(c, json_null(), &off), 0);
    assert_int_equal(chan_open("w", 1, &c), PROTO_E_LIMIT);
    sessions_free(s, 1);
}

#define NSESS 1000

static void test_swap_remove_integrity(void **state)
{
    sess_t *s = sessions_new(NSESS, 1);
    chan_t *c = open_chan("big"), *d = open_chan("other");
    int *present = calloc(NSESS, sizeof *present);
    uint64_t rng = 7;
    uint32_t live = 0;
    (void)state;

    for (int i = 0; i < NSESS; i++) {
        assert_int_equal(chan_subscribe(&s[i], c), 0);
        /* Every third session is also on a second channel, so sess_idx moves too. */
        if (i % 3 == 0) assert_int_equal(chan_subscribe(&s[i], d), 0);
        present[i] = 1;
        live++;
    }
    check_chan(c);
    check_chan(d);
    for (int round = 0; round < 4000; round++) {
        int i = (int)(test_rand(&rng) % NSESS);
        if (present[i]) {
            assert_int_equal(chan_unsubscribe(&s[i], c), 0);
            present[i] = 0;
            live--;
        } else if (test_rand(&rng) % 2) {
            assert_int_equal(chan_subscribe(&s[i], c), 0);
            present[i] = 1;
            live++;
        } else {
            assert_int_equal(chan_unsubscribe(&s[i], c), PROTO_E_NOT_SUBSCRIBED);
        }
        if (round % 500 == 0) {
            check_chan(c);
            check_chan(d);
        }
        if (live == 0) break;
    }
    assert_int_equal(c->nsubs, live);
    check_chan(c);
    check_chan(d);
    for (int i = 0; i < NSESS; i++) {
        int found = 0;
        for (uint32_t k = 0; k < c->nsubs; k++) found += c->members[k] == &s[i];
        assert_int_equal(found, present[i]);
        check_sess(&s[i]);
    }
    free(present);
    sessions_free(s, NSESS);
    assert_int_equal(srv.subs.count, 0);
}

/* Fan-out: one frame per encoding, shared by reference by every subscriber. */
static void test_publish_shares_frames(void **state)
{
    sess_t *s = sessions_new(10, 1);            /* 5 JSON, 5 MessagePack */
    json_t *data = json_pack("{s:s}", "text", "hello");
    chan_t *c = open_chan("chat:room1");
    frame_t *fj, *fm;
    uint64_t off = 0;
    (void)state;

    for (int i = 0; i < 10; i++) assert_int_equal(chan_subscribe(&s[i], c), 0);
    wakeups = 0;
    assert_int_equal(publish(c, data, &off), 0);
    assert_int_equal(off, 1);
    assert_int_equal(dirty_count(), 10);        /* each subscriber is due a write */
    assert_int_equal(wakeups, 0);               /* and no POLLOUT round trip is asked for */
    assert_int_equal(srv.stats.deliveries, 10);

    fj = s[0].q[s[0].qhead];
    fm = s[1].q[s[1].qhead];
    assert_ptr_not_equal(fj, fm);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(s[i].qlen, 1);
        assert_ptr_equal(s[i].q[s[i].qhead], s[i].enc == PROTO_JSON ? fj : fm);
        assert_int_equal(s[i].qbytes, s[i].q[s[i].qhead]->len);
        assert_true(s[i].dirty);
    }
    /* Exactly one reference per queue: chan_publish kept none. */
    assert_int_equal(fj->refs, 5);
    assert_int_equal(fm->refs, 5);
    {
        const char *want = "\"offset\":1,";
        assert_non_null(memmem(frame_payload(fj), fj->len, want, strlen(want)));
        assert_non_null(memmem(frame_payload(fj), fj->len, "\"data\":{\"text\":\"hello\"}", 23));
        assert_int_equal(frame_payload(fm)[0], 0x85);
    }

    /* A second publish: a new pair of frames; each session is on the flush
     * list once, however much it has queued. */
    assert_int_equal(publish(c, json_true(), &off), 0);
    assert_int_equal(off, 2);
    assert_int_equal(dirty_count(), 10);
    for (int i = 0; i < 10; i++) assert_int_equal(s[i].qlen, 2);
    assert_int_equal(fj->refs, 5);
    {
        frame_t *fj2 = s[0].q[(s[0].qhead + 1) & (s[0].qcap - 1)];
        assert_ptr_not_equal(fj2, fj);
        assert_int_equal(fj2->refs, 5);
    }

    /* Clearing queues drops the references; the last one frees (ASan checks). */
    for (int i = 0; i < 8; i++) sess_on_closed(&s[i]);
    assert_int_equal(fj->refs, 1);              /* s[8] holds the last JSON ref */
    assert_int_equal(fm->refs, 1);              /* s[9] holds the last msgpack ref */
    sess_on_closed(&s[8]);
    sess_on_closed(&s[9]);
    free(s);
    json_decref(data);
}

/* No subscriber in an encoding: nothing is encoded in it. */
static void test_publish_one_encoding(void **state)
{
    sess_t *s = sessions_new(3, 0);             /* all JSON */
    chan_t *c = open_chan("only-json");
    uint64_t off;
    (void)state;

    for (int i = 0; i < 3; i++) assert_int_equal(chan_subscribe(&s[i], c), 0);
    assert_int_equal(c->nenc[PROTO_MSGPACK], 0);
    assert_int_equal(publish(c, json_null(), &off), 0);
    assert_int_equal(s[0].q[s[0].qhead]->refs, 3);
    assert_ptr_equal(s[0].q[s[0].qhead], s[2].q[s[2].qhead]);
    sessions_free(s, 3);
}

static void test_slow_consumer(void **state)
{
    sess_t *s = sessions_new(2, 0);
    chan_t *c = open_chan("fast");
    json_t *data = json_pack("{s:s}", "pad", "0123456789012345678901234567890123456789");
    size_t flen;
    uint64_t off;
    frame_t *first;
    (void)state;

    assert_int_equal(chan_subscribe(&s[0], c), 0);
    assert_int_equal(chan_subscribe(&s[1], c), 0);
    assert_int_equal(publish(c, data, &off), 0);
    first = s[0].q[s[0].qhead];
    flen = first->len;
    assert_int_equal(first->refs, 2);

    /* Room for exactly three frames of this size. */
    srv.cfg.send_queue_max = 3 * flen + flen / 2;
    assert_int_equal(publish(c, data, &off), 0);
    assert_int_equal(publish(c, data, &off), 0);
    assert_int_equal(s[0].qlen, 3);
    assert_int_equal(s[0].close_code, 0);

    /* s[1] drains (as a writable callback would); s[0] does not. */
    {
        while (s[1].qlen) {
            frame_t *f = s[1].q[s[1].qhead];
            s[1].qbytes -= f->len;
            frame_unref(f);
            s[1].qhead = (s[1].qhead + 1) & (s[1].qcap - 1);
            s[1].qlen--;
        }
    }
    assert_int_equal(publish(c, data, &off), 0);
    assert_int_equal(off, 4);
    assert_int_equal(s[0].close_code, CLOSE_SLOW_CONSUMER);
    assert_int_equal(s[0].qlen, 0);
    assert_int_equal(s[0].qbytes, 0);
    assert_int_equal(srv.stats.slow_consumers, 1);
    assert_int_equal(s[1].close_code, 0);
    assert_int_equal(s[1].qlen, 1);
    assert_int_equal(s[1].q[s[1].qhead]->refs, 1);   /* s[0] dropped its references */

    /* A closing session gets nothing more; the others go on. */
    assert_int_equal(publish(c, data, &off), 0);
    assert_int_equal(s[0].qlen, 0);
    assert_int_equal(s[1].qlen, 2);
    assert_int_equal(srv.stats.slow_consumers, 1);
    sessions_free(s, 2);
    json_decref(data);
}


/* Frames the caller already encoded are queued as they are, by reference. */
static void test_fanout_given_frames(void **state)
{
    sess_t *s = sessions_new(4, 1);
    chan_t *c = open_chan("given");
    frame_t *frames[PROTO_NENC] = { NULL };
    wbuf_t rec;
    (void)state;

    for (int i = 0; i < 4; i++) assert_int_equal(chan_subscribe(&s[i], c), 0);
    wbuf_init(&rec);
    rec_build(&rec, 1, json_true(), NULL, 0, NULL);
    frames[PROTO_JSON] = frame_new("{\"op\":\"pub\"}", 12);
    assert_int_equal(chan_fanout(c, 7, rec.p, rec.len, frames), 0);
    assert_int_equal(c->last_offset, 7);
    assert_int_equal(frames[PROTO_JSON]->refs, 3);        /* ours + 2 JSON queues */
    for (int i = 0; i < 4; i++) {
        frame_t *f = s[i].q[s[i].qhead];
        if (s[i].enc == PROTO_JSON) assert_ptr_equal(f, frames[PROTO_JSON]);
        else assert_int_equal(f->refs, 2);                 /* encoded here, once */
    }
    assert_ptr_equal(s[1].q[s[1].qhead], s[3].q[s[3].qhead]);
    /* An older offset is delivered but does not move last_offset back. */
    assert_int_equal(chan_fanout(c, 3, rec.p, rec.len, frames), 0);
    assert_int_equal(c->last_offset, 7);
    frame_unref(frames[PROTO_JSON]);
    wbuf_deinit(&rec);
    sessions_free(s, 4);
}

/* While a subscriber's history read is in flight, live publications wait
 * for it and then follow in order; the others get them at once. */
static void test_replay_holds(void **state)
{
    sess_t *s = sessions_new(2, 0);
    chan_t *c = open_chan("replay");
    uint64_t off;
    sub_t *sub;
    frame_t *f1, *f2;
    json_t *n[4];
    (void)state;

    for (int i = 0; i < 4; i++) n[i] = json_integer(i + 1);

    assert_int_equal(chan_subscribe(&s[0], c), 0);
    assert_int_equal(chan_subscribe(&s[1], c), 0);
    sub = chan_sub(&s[0], c);
    assert_non_null(sub);
    assert_null(chan_sub(&s[0], open_chan("elsewhere")));
    chan_replay_start(sub);
    assert_int_equal(publish(c, n[0], &off), 0);
    assert_int_equal(publish(c, n[1], &off), 0);
    assert_int_equal(s[0].qlen, 0);
    assert_int_equal(s[1].qlen, 2);
    f1 = s[1].q[s[1].qhead];
    f2 = s[1].q[(s[1].qhead + 1) & (s[1].qcap - 1)];
    assert_int_equal(f1->refs, 2);                         /* s[1]'s queue + held for s[0] */
    chan_replay_end(sub);
    assert_int_equal(s[0].qlen, 2);
    assert_ptr_equal(s[0].q[s[0].qhead], f1);
    assert_ptr_equal(s[0].q[(s[0].qhead + 1) & (s[0].qcap - 1)], f2);
    assert_int_equal(f1->refs, 2);
    assert_int_equal(c->nreplaying, 0);
    /* Live again. */
    assert_int_equal(publish(c, n[2], &off), 0);
    assert_int_equal(s[0].qlen, 3);
    /* Unsubscribing mid-replay drops what was held. */
    chan_replay_start(sub);
    assert_int_equal(publish(c, n[3], &off), 0);
    assert_int_equal(chan_unsubscribe(&s[0], c), 0);
    assert_int_equal(c->nreplaying, 0);
    assert_int_equal(s[1].q[(s[1].qhead + 3) & (s[1].qcap - 1)]->refs, 1);
    sessions_free(s, 2);
    for (int i = 0; i < 4; i++) json_decref(n[i]);
}

/* With history on, a published channel that has no stored log is not kept
 * by its offset (the store is the record); one with a stored log is. */
static void test_history_channel_lifetime(void **state)
{
    sess_t *s = sessions_new(1, 0);
    uint64_t off;
    chan_t *c;
    (void)state;

    srv.cfg.ns_template.history = 1;
    c = open_chan("h:1");
    assert_int_equal(chan_subscribe(&s[0], c), 0);
    assert_int_equal(publish(c, json_null(), &off), 0);
    assert_int_equal(chan_unsubscribe(&s[0], c), 0);
    assert_null(chan_find("h:1", 3));
    c = open_chan("h:2");
    c->stored = 1;
    assert_int_equal(chan_subscribe(&s[0], c), 0);
    assert_int_equal(chan_unsubscribe(&s[0], c), 0);
    assert_ptr_equal(chan_find("h:2", 3), c);
    sessions_free(s, 1);
}

/* A filter for the test: keys that start with @arg. */
static int match_prefix(const char *arg, const char *key, size_t klen, const json_t *value)
{
    (void)value;
    return klen >= strlen(arg) && !memcmp(key, arg, strlen(arg));
}

/* Filtered subscribers: one filtered frame per (filter, encoding), shared by
 * every subscriber with that filter; none for a filter that passes nothing. */
static void test_filtered_fanout_shares_frames(void **state)
{
    sess_t *s = sessions_new(12, 1);            /* 6 JSON, 6 MessagePack */
    json_t *delta = json_pack("{s:[{s:s,s:i,s:i},{s:s,s:b}]}", "changes", "key", "a:1", "value", 7, "version", 3,
                              "key", "c:9", "deleted", 1);
    chan_t *c = open_chan("seats:e1");
    frame_t *plain[PROTO_NENC], *fa[PROTO_NENC];
    uint64_t off = 0;
    (void)state;

    /* s[0..3] see everything, s[4..7] keys "a:", s[8..11] keys "b:". */
    for (int i = 0; i < 12; i++) {
        assert_int_equal(chan_subscribe(&s[i], c), 0);
        if (i >= 4) assert_int_equal(chan_sub_filter(chan_sub(&s[i], c), match_prefix, i < 8 ? "a:" : "b:"), 0);
    }
    assert_int_equal(c->nfilters, 2);
    assert_int_equal(c->nfiltered, 8);
    assert_int_equal(publish(c, delta, &off), 0);
    for (int e = 0; e < PROTO_NENC; e++) {
        plain[e] = s[e].q[s[e].qhead];
        fa[e] = s[4 + e].q[s[4 + e].qhead];
        assert_ptr_not_equal(plain[e], fa[e]);
        assert_int_equal(plain[e]->refs, 2);    /* s[0..3]: two per encoding */
        assert_int_equal(fa[e]->refs, 2);       /* s[4..7]: one filtered frame per encoding */
        assert_int_equal(fa[e]->offset, off);
    }
    for (int i = 0; i < 8; i++) {
        assert_int_equal(s[i].qlen, 1);
        assert_ptr_equal(s[i].q[s[i].qhead], i < 4 ? plain[s[i].enc] : fa[s[i].enc]);
    }
    for (int i = 8; i < 12; i++) assert_int_equal(s[i].qlen, 0);   /* nothing for "b:" */
    assert_int_equal(srv.stats.deliveries, 8);
    assert_non_null(memmem(frame_payload(fa[PROTO_JSON]), fa[PROTO_JSON]->len, "\"a:1\"", 5));
    assert_null(memmem(frame_payload(fa[PROTO_JSON]), fa[PROTO_JSON]->len, "\"c:9\"", 5));
    assert_non_null(memmem(frame_payload(plain[PROTO_JSON]), plain[PROTO_JSON]->len, "\"c:9\"", 5));

    /* The last subscriber of a filter takes it with it. */
    for (int i = 8; i < 12; i++) assert_int_equal(chan_unsubscribe(&s[i], c), 0);
    assert_int_equal(c->nfilters, 1);
    assert_int_equal(c->nfiltered, 4);
    assert_ptr_equal(c->filters[0], chan_sub(&s[4], c)->filter);
    assert_int_equal(c->filters[0]->idx, 0);
    check_chan(c);
    sessions_free(s, 12);
    json_decref(delta);
}

/* The end-of-turn flush with batched sends (net/sendring.h): one
 * publication reaches a subscriber's socket as exactly the WebSocket frame
 * lws_write() would have sent (a text frame, header ours), and a session
 * on the dirty list whose queue is empty and has no ring (pop() freed a
 * grown one after the writable callback drained it) is skipped - the
 * batched path once read its ring before checking, and crashed. */
static void test_flush_through_send_ring(void **state)
{
    int sv[2], rc;
    unsigned char got[512];
    uint64_t off;
    (void)state;
    if ((rc = sendring_init(8, 1 << 16, 1))) {
        print_message("io_uring not available here (%s): skipped\n", strerror(-rc));
        skip();
        return;
    }
    srv.batch = malloc(FRAME_HEADROOM + srv.cfg.write_batch_max + 16);
    assert_non_null(srv.batch);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    wrap_fd = sv[0];

    sess_t *s = sessions_new(2, 0);
    chan_t *c = open_chan("ring:a");
    assert_int_equal(chan_subscribe(&s[0], c), 0);
    /* s[1]: marked for the flush with nothing queued and no ring at all. */
    frame_t *f = frame_new("x", 1);
    assert_non_null(f);
    sess_push(&s[1], f);
    frame_unref(f);                                    /* ours */
    s[1].q[s[1].qhead] = frame_unref(s[1].q[s[1].qhead]);   /* the queue's */
    s[1].qlen = 0;
    s[1].qbytes = 0;
    free(s[1].q);
    s[1].q = NULL;
    s[1].qcap = 0;
    s[1].qhead = 0;
    uint64_t batched = metrics.writes_batched;
    json_t *data = json_pack("{s:i}", "n", 7);
    assert_int_equal(publish(c, data, &off), 0);
    json_decref(data);
    assert_int_equal(dirty_count(), 2);
    sess_flush_dirty();
    assert_int_equal(dirty_count(), 0);
    assert_int_equal(s[0].qlen, 0);                   /* written, and let go of */
    assert_int_equal(metrics.writes_batched, batched + 1);

    ssize_t n = read(sv[1], got, sizeof got);
    assert_true(n > 2);
    assert_int_equal(got[0], 0x81);                    /* FIN, text */
    assert_int_equal(got[1], n - 2);                   /* unmasked, 7-bit length */
    json_t *m = json_loadb((const char *)got + 2, (size_t)n - 2, 0, NULL);
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "op")), "pub");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "data"), "n")), 7);
    json_decref(m);

    wrap_fd = -1;
    close(sv[0]);
    close(sv[1]);
    sessions_free(s, 2);
    sendring_deinit();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_unsubscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_channel_lifetime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_subscriptions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_channels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swap_remove_integrity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_shares_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_one_encoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_consumer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_through_send_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fanout_given_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_channel_lifetime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filtered_fanout_shares_frames, setup, teardown),
    };
    return cmocka_run_group_tests_name("channel", tests, NULL, NULL);
}
