/* broker/net/reply.c - see reply.h. */
#include "net/reply.h"
#include "net/conns.h"
#include "net/http.h"
#include "net/session.h"
#include "herald.h"
#include "record.h"

static reply_call_fn call_fn;

void reply_set_call(reply_call_fn fn)
{
    call_fn = fn;
}

void origin_clear(origin_t *o)
{
    json_decref(o->id);
    o->id = NULL;
}

void reply_ok(const origin_t *o, const char *op, json_t *fields)
{
    sess_t *s;
    json_t *m;

    switch (o->kind) {
    case ORIGIN_WS:
        if (!(s = conn_find(o->serial))) break;
        m = fields ? msg_reply(op, o->id) : NULL;
        if (m) json_object_update(m, fields);
        sess_send(s, m);
        break;
    case ORIGIN_REST:
        http_finish_json(o->serial, 200, json_incref(fields));
        break;
    case ORIGIN_CALL:
        if (call_fn) call_fn(o->serial, fields ? 0 : PROTO_E_INTERNAL, fields ? NULL : "out of memory", fields);
        break;
    case ORIGIN_NONE:
        break;
    }
    json_decref(fields);
}

void reply_error(const origin_t *o, unsigned status, int code, const char *reason, const json_t *extra)
{
    json_t *m;
    sess_t *s;

    if (code < 0) code = PROTO_E_INTERNAL;    /* an errno is ours, not a client's code */
    switch (o->kind) {
    case ORIGIN_WS:
        if (!(s = conn_find(o->serial))) return;
        m = msg_error(o->id, code, reason);
        if (m && extra) json_object_update_missing(m, (json_t *)extra);
        sess_send(s, m);
        return;
    case ORIGIN_REST:
        /* An overloaded broker asks the client to back off before retrying. */
        if (code == PROTO_E_OVERLOADED) http_set_retry_after(o->serial, 1);
        m = json_pack("{s:{s:i,s:s}}", "error", "code", code, "reason", reason);
        if (m && extra) json_object_update_missing(json_object_get(m, "error"), (json_t *)extra);
        http_finish_json(o->serial, status ? status : proto_err_http_status(code), m);
        return;
    case ORIGIN_CALL:
        if (call_fn) call_fn(o->serial, code, reason, extra);
        return;
    case ORIGIN_NONE:
        return;
    }
}

void reply_list(const origin_t *o, const char *op, json_t *head, const char *key, reply_emit_fn emit, void *ctx)
{
    frame_t *f;
    json_t *m;
    sess_t *s;

    switch (o->kind) {
    case ORIGIN_WS:
        if (!(s = conn_find(o->serial))) break;
        m = head ? msg_reply(op, o->id) : NULL;
        if (!m) { sess_close(s, CLOSE_INTERNAL, 0); break; }
        json_object_update(m, head);
        wbuf_reset(&srv.enc);
        rec_encode_open((enum proto_enc)s->enc, m, key, &srv.enc);
        emit((enum proto_enc)s->enc, &srv.enc, ctx);
        rec_encode_close((enum proto_enc)s->enc, &srv.enc);
        json_decref(m);
        if (srv.enc.oom || !(f = frame_new(srv.enc.p, srv.enc.len))) { sess_close(s, CLOSE_INTERNAL, 0); break; }
        sess_push(s, f);
        frame_unref(f);
        break;
    case ORIGIN_REST:
        if (!head) { http_finish(o->serial, 500, NULL, NULL, 0); break; }
        wbuf_reset(&srv.enc);
        rec_encode_open(PROTO_JSON, head, key, &srv.enc);
        emit(PROTO_JSON, &srv.enc, ctx);
        rec_encode_close(PROTO_JSON, &srv.enc);
        wbuf_putc(&srv.enc, '\n');
        if (srv.enc.oom) http_finish(o->serial, 500, NULL, NULL, 0);
        else http_finish(o->serial, 200, "application/json", srv.enc.p, srv.enc.len);
        break;
    case ORIGIN_CALL:
    case ORIGIN_NONE:
        break;
    }
    json_decref(head);
}
