/* broker/config.c - see config.h. */
#include "config.h"
#include "datadir.h"
#include "engine_tls.h"
#include "hist.h"
#include "chname.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* RFC 7518 section 3.2: an HS256 key at least as long as the hash (the same
 * floor as auth/jwt.h JWT_MIN_SECRET_LEN, which the key set enforces). */
#define HMAC_SECRET_MIN 32

enum opt_type { T_STR, T_OPTSTR, T_PORT, T_UINT, T_SIZE, T_MS, T_LEVEL, T_FORMAT, T_BOOL, T_DURABILITY,
                T_SUBPERM, T_PUBPERM, T_REQLOG, T_ENGINE };

struct opt {
    const char *section;
    const char *key;
    const char *flag;       /* --flag; NULL: the key with '_' as '-' */
    enum opt_type type;
    size_t off;
    size_t size;            /* T_STR: buffer size */
    const char *def;
    const char *help;
};

#define O(f) offsetof(config_t, f)
static const struct opt opts[] = {
    { "server", "bind", NULL, T_STR, O(bind), sizeof(((config_t *)0)->bind), "127.0.0.1",
      "address to listen on (IPv4 or IPv6 literal; 0.0.0.0 or :: for all)" },
    { "server", "port", NULL, T_PORT, O(port), 0, "8080", "TCP port for WebSocket (/ws) and HTTP (/api)" },
    { "server", "data_dir", NULL, T_STR, O(data_dir), sizeof(((config_t *)0)->data_dir), "./herald-data",
      "data directory (created if missing)" },
    { "server", "threads", NULL, T_UINT, O(threads), 0, "0",
      "threads that make the socket writes of a big flush pass: the loop thread and threads - 1 helpers, "
      "each with its own io_uring (needs websocket.batch_sends); 0: one per CPU the broker may run on" },
    { "server", "shutdown_timeout", NULL, T_MS, O(shutdown_timeout_ms), 0, "5s",
      "on SIGINT/SIGTERM, how long to flush queued messages before exiting" },
    { "server", "tls_cert", NULL, T_OPTSTR, O(tls_cert), sizeof(((config_t *)0)->tls_cert), "",
      "PEM certificate (chain): serve wss:// and https:// instead of ws:// and http://" },
    { "server", "tls_key", NULL, T_OPTSTR, O(tls_key), sizeof(((config_t *)0)->tls_key), "",
      "PEM private key of tls_cert" },
    { "server", "allowed_origins", NULL, T_OPTSTR, O(allowed_origins), sizeof(((config_t *)0)->allowed_origins), "",
      "WebSocket Origins allowed, comma-separated (https://app.example.com); empty: any" },
    { "server", "cors_origins", NULL, T_OPTSTR, O(cors_origins), sizeof(((config_t *)0)->cors_origins), "",
      "Origins allowed to call the REST API from browsers, comma-separated, or *; empty: none" },
    { "server", "trusted_proxies", NULL, T_OPTSTR, O(trusted_proxies), sizeof(((config_t *)0)->trusted_proxies), "",
      "reverse proxies (addresses or CIDR blocks, comma-separated) whose X-Forwarded-For or Forwarded header "
      "names the client; empty: none" },
    { "server", "allow_open_dev", NULL, T_BOOL, O(allow_open_dev), 0, "off",
      "allow development mode (no [apikey], auth.anonymous on) on a non-loopback bind address" },
    { "limits", "max_message_size", NULL, T_SIZE, O(max_message_size), 0, "64k",
      "largest client message or REST body accepted" },
    { "limits", "send_queue_max", NULL, T_SIZE, O(send_queue_max), 0, "4m",
      "bytes queued for one connection before it is closed as a slow consumer (4000)" },
    { "limits", "max_connections", NULL, T_UINT, O(max_connections), 0, "0",
      "connections accepted at once; 0 = as many as the file limit allows" },
    { "limits", "max_subscriptions", NULL, T_UINT, O(max_subscriptions), 0, "1024",
      "channels one connection may subscribe to" },
    { "limits", "max_channels", NULL, T_UINT, O(max_channels), 0, "1000000", "channels the broker keeps at once" },
    { "limits", "messages_per_second", NULL, T_UINT, O(messages_per_second), 0, "100",
      "messages one connection may send per second, with bursts of twice that (error 115); 0: no limit; "
      "rate_limit_exempt addresses skip it" },
    { "limits", "rest_per_minute", NULL, T_UINT, O(rest_per_minute), 0, "100",
      "REST requests per client address per minute (429); 0: no limit" },
    { "limits", "connects_per_second", NULL, T_UINT, O(connects_per_second), 0, "20",
      "new connections per client address per second, with bursts of twice that; 0: no limit" },
    { "limits", "connections_per_ip", NULL, T_UINT, O(connections_per_ip), 0, "0",
      "connections one client address may hold at once; 0: no limit" },
    { "limits", "rate_limit_exempt", NULL, T_OPTSTR, O(rate_limit_exempt), sizeof(((config_t *)0)->rate_limit_exempt),
      "127.0.0.0/8,::1", "addresses (or CIDR blocks) the per-address limits skip, comma-separated; \"none\" for none" },
    { "websocket", "connect_timeout", NULL, T_MS, O(connect_timeout_ms), 0, "10s",
      "time a new connection has to send its connect message (close 4002)" },
    { "websocket", "ping_interval", NULL, T_MS, O(ping_interval_ms), 0, "25s",
      "silence before the broker pings a client; silent for 2x this + 5s, it is dropped (0 = never)" },
    { "websocket", "coalesce_max", NULL, T_MS, O(coalesce_max_ms), 0, "50ms",
      "when the broker is busy, streaming connections gather messages for up to this long so each "
      "write carries more; 0: write every loop turn (unless latency_goal stretches it)" },
    { "websocket", "latency_goal", NULL, T_MS, O(latency_goal_ms), 0, "500ms",
      "when writes alone would take more than half the event loop (big fan-outs), streaming connections "
      "gather for as long as their measured cost needs, up to this; at most coalesce_max when 0 or lower" },
    { "websocket", "write_batch_max", NULL, T_SIZE, O(write_batch_max), 0, "64k",
      "most bytes coalesced into one WebSocket frame per write" },
    { "websocket", "batch_sends", NULL, T_BOOL, O(batch_sends), 0, "on",
      "hand the kernel the writes of a loop turn to many connections in one system call (io_uring); "
      "off, or where the kernel forbids io_uring: one send() per write" },
    { "sse", "heartbeat", "sse-heartbeat", T_MS, O(sse_heartbeat_ms), 0, "15s",
      "a Server-Sent Events stream idle this long is sent a comment line, so proxies keep it and a "
      "dead client is found; 0: never" },
    { "sse", "retry", "sse-retry", T_MS, O(sse_retry_ms), 0, "3s",
      "the reconnect delay a Server-Sent Events stream asks EventSource to use (its retry: field)" },
    { "log", "level", "log-level", T_LEVEL, O(log_level), 0, "info", "error, warn, info or debug" },
    { "log", "format", "log-format", T_FORMAT, O(log_format), 0, "text", "text, or json (one object per line)" },
    { "log", "requests", "log-requests", T_REQLOG, O(log_requests), 0, "errors",
      "log REST requests (address, method, path, status, duration): all, errors (status >= 400) or off" },
    { "auth", "anonymous", NULL, T_BOOL, O(anonymous), 0, "on",
      "allow connections without a token (development); turn off in production" },
    { "auth", "hmac_secret", NULL, T_OPTSTR, O(hmac_secret), sizeof(((config_t *)0)->hmac_secret), "",
      "shared secret for HS256 tokens" },
    { "auth", "public_keys", NULL, T_OPTSTR, O(public_keys), sizeof(((config_t *)0)->public_keys), "",
      "PEM public key files for RS256/ES256 tokens, comma-separated" },
    { "auth", "leeway", "auth-leeway", T_MS, O(leeway_ms), 0, "30s", "clock skew allowed on exp and nbf" },
    { "auth", "refresh_notice", NULL, T_MS, O(refresh_notice_ms), 0, "30s",
      "how long before its token expires a connection is sent refresh_required" },
    { "auth", "failures_max", "auth-failures-max", T_UINT, O(auth_failures_max), 0, "10",
      "failed authentications from one address before it is refused for cooloff; 0: never" },
    { "auth", "cooloff", "auth-cooloff", T_MS, O(auth_cooloff_ms), 0, "5m",
      "how long an address that failed too often is refused" },
    { "auth", "audience", "auth-audience", T_OPTSTR, O(audience), sizeof(((config_t *)0)->audience), "",
      "accepted token audiences, comma-separated: a token's aud must name one; empty: aud not checked" },
    { "auth", "issuer", "auth-issuer", T_OPTSTR, O(issuer), sizeof(((config_t *)0)->issuer), "",
      "accepted token issuers, comma-separated: a token's iss must be one; empty: iss not checked" },
    { "auth", "require_exp", NULL, T_BOOL, O(require_exp), 0, "off", "refuse tokens without an exp claim" },
    { "history", "durability", NULL, T_DURABILITY, O(durability), 0, "sync",
      "sync: fsync every group commit; interval: fsync every sync_interval (a crash can lose that much)" },
    { "history", "sync_interval", NULL, T_MS, O(sync_interval_ms), 0, "100ms",
      "with durability = interval, how often committed publications are flushed to disk" },
    { "history", "idempotency_window", NULL, T_MS, O(idempotency_window_ms), 0, "5m",
      "a publish repeating an idempotency key seen on its channel within this long is answered, not published "
      "again (another request with the key: error 132)" },
    { "history", "max_queue_delay", NULL, T_MS, O(max_queue_delay_ms), 0, "500ms",
      "while the oldest write waiting for the storage thread is older than this, new writes (publications to "
      "history channels, state and seat operations, batches) are refused at once with error 135 (HTTP 503) "
      "instead of queueing; 0: never refuse" },
    { "history", "map_size", NULL, T_SIZE, O(map_size), 0, "64m", "initial size of the LMDB map (grows as needed)" },
    { "history", "map_size_max", NULL, T_SIZE, O(map_size_max), 0, "4g",
      "the map grows up to this; beyond it publications to history channels fail (error 111)" },
    { "engine", "type", "engine", T_ENGINE, O(engine_type), 0, "lmdb",
      "where channels live: lmdb (this node's data directory) or redis (shared by several nodes; docs/cluster.md)" },
    { "engine", "address", "engine-address", T_STR, O(engine_address), sizeof(((config_t *)0)->engine_address),
      "127.0.0.1:6379", "the Redis server: HOST:PORT, [IPv6]:PORT or unix:PATH" },
    { "engine", "password", "engine-password", T_OPTSTR, O(engine_password), sizeof(((config_t *)0)->engine_password),
      "", "Redis AUTH password; empty: none" },
    { "engine", "database", "engine-database", T_UINT, O(engine_database), 0, "0", "Redis database number (SELECT)" },
    { "engine", "prefix", "engine-prefix", T_STR, O(engine_prefix), sizeof(((config_t *)0)->engine_prefix), "herald:",
      "put before every Redis key and pub/sub channel Herald uses, so several clusters can share one Redis" },
    { "engine", "connect_timeout", "engine-connect-timeout", T_MS, O(engine_connect_timeout_ms), 0, "2s",
      "how long a connection to Redis may take before it is dropped and tried again" },
    { "engine", "command_timeout", "engine-command-timeout", T_MS, O(engine_command_timeout_ms), 0, "5s",
      "how long Redis may take to answer before the connection is dropped (its publications fail with 133)" },
    { "engine", "presence_heartbeat", "engine-presence-heartbeat", T_MS, O(engine_presence_heartbeat_ms), 0, "2s",
      "how often a node renews its presence lease in Redis; a node that stops (kill -9) has its members leave within "
      "3 of these" },
    { "engine", "webhook_lease", "engine-webhook-lease", T_MS, O(engine_webhook_lease_ms), 0, "5s",
      "how long a node's lease to deliver a webhook's events lasts unrenewed; another node takes over the delivery "
      "within this after the deliverer dies (docs/cluster.md#webhooks)" },
    { "engine", "tls", "engine-tls", T_BOOL, O(engine_tls), 0, "off",
      "TLS to Redis (Redis' tls-port), bridged in the broker: hiredis 0.14 has none (docs/cluster.md)" },
    { "engine", "tls_ca", "engine-tls-ca", T_OPTSTR, O(engine_tls_ca), sizeof(((config_t *)0)->engine_tls_ca), "",
      "PEM file of the CAs that sign Redis' certificate; empty: the system's CA store" },
    { "engine", "tls_cert", "engine-tls-cert", T_OPTSTR, O(engine_tls_cert), sizeof(((config_t *)0)->engine_tls_cert),
      "", "PEM client certificate, for a Redis with tls-auth-clients; empty: none" },
    { "engine", "tls_key", "engine-tls-key", T_OPTSTR, O(engine_tls_key), sizeof(((config_t *)0)->engine_tls_key), "",
      "PEM private key of tls_cert" },
    { "engine", "tls_server_name", "engine-tls-server-name", T_OPTSTR, O(engine_tls_server_name),
      sizeof(((config_t *)0)->engine_tls_server_name), "",
      "the name sent as SNI and verified in Redis' certificate; empty: the host of address" },
    { "engine", "tls_verify", "engine-tls-verify", T_BOOL, O(engine_tls_verify), 0, "on",
      "verify Redis' certificate; off is for tests only (logged as a warning)" },
    { "adapter commerce", "enabled", "commerce", T_BOOL, O(commerce_enabled), 0, "off",
      "the commerce adapter: orders and stock under /api/commerce/ (docs/adapters.md)" },
    { "adapter commerce", "stock_channel", "commerce-stock-channel", T_STR, O(commerce_stock_channel),
      sizeof(((config_t *)0)->commerce_stock_channel), "stock:all",
      "the state channel whose keys are the SKUs' counts (product pages subscribe to it); orders are kept beside it" },
    { "adapter commerce", "orders_namespace", "commerce-orders-namespace", T_STR, O(commerce_orders_ns),
      sizeof(((config_t *)0)->commerce_orders_ns), "orders",
      "namespace of the order channels {ns}:{order}#{owner}, readable by the owner and admins only" },
    { "adapter commerce", "admin_channel", "commerce-admin-channel", T_STR, O(commerce_admin_channel),
      sizeof(((config_t *)0)->commerce_admin_channel), "sys:orders",
      "channel that gets every order change, for admin dashboards" },
    { "adapter commerce", "webhook_secret", "commerce-webhook-secret", T_OPTSTR, O(commerce_webhook_secret),
      sizeof(((config_t *)0)->commerce_webhook_secret), "",
      "shared secret of payment webhooks (POST /api/commerce/payments, HMAC-SHA256); empty: no webhook endpoint" },
    { "adapter commerce", "webhook_tolerance", "commerce-webhook-tolerance", T_MS, O(commerce_webhook_tolerance_ms),
      0, "5m", "a webhook whose signed timestamp is further than this from now is refused (a replay)" },
    { "adapter commerce", "webhook_window", "commerce-webhook-window", T_MS, O(commerce_webhook_window_ms), 0,
      "24h", "how long a payment event id is remembered: a repeat within it changes nothing" },
    { "adapter tickets", "enabled", "tickets", T_BOOL, O(tickets_enabled), 0, "off",
      "the support-tickets adapter: tickets under /api/tickets (docs/adapters.md)" },
    { "adapter tickets", "dashboard_channel", "tickets-dashboard-channel", T_STR, O(tickets_dashboard_channel),
      sizeof(((config_t *)0)->tickets_dashboard_channel), "helpdesk:tickets",
      "the state channel holding every ticket as key ticket:<id> (agents' consoles subscribe to it)" },
    { "adapter tickets", "timeline_namespace", "tickets-timeline-namespace", T_STR, O(tickets_timeline_ns),
      sizeof(((config_t *)0)->tickets_timeline_ns), "ticket",
      "namespace of each ticket's timeline channel {ns}:{id} (history on: its changes and comments)" },
    { "adapter seats", "feed", "seats-feed", T_OPTSTR, O(seats_feed), sizeof(((config_t *)0)->seats_feed), "",
      "the organiser's feed channel: each confirmed booking publishes a ticket_issued there, in the booking's "
      "transaction; \"{event}\" in it is replaced by the event id; empty: none" },
};
#define NOPTS (sizeof opts / sizeof opts[0])
_Static_assert(NOPTS <= CONFIG_OPTS_MAX, "config_t.where[] has no room for every option: raise CONFIG_OPTS_MAX");

/* Options of [namespace NAME] sections; offsets are into ns_config_t. */
#define NO(f) offsetof(ns_config_t, f)
static const struct opt ns_opts[] = {
    { "namespace", "history", NULL, T_BOOL, NO(history), 0, "on", "keep a durable log of publications (on/off)" },
    { "namespace", "history_size", NULL, T_UINT, NO(history_size), 0, "100", "publications kept per channel" },
    { "namespace", "history_ttl", NULL, T_MS, NO(history_ttl_ms), 0, "24h", "age after which publications are pruned" },
    { "namespace", "subscribe", NULL, T_SUBPERM, NO(subscribe), 0, "anyone",
      "who may subscribe: anyone, authenticated, or granted (token channels claim or a subscribe token)" },
    { "namespace", "publish", NULL, T_PUBPERM, NO(publish), 0, "anyone",
      "who may publish over WebSocket: anyone, authenticated, subscribers, granted, or server (REST only)" },
    { "namespace", "user_list", NULL, T_BOOL, NO(user_list), 0, "off",
      "the channel name after \"ns:\" is the comma-separated list of users allowed (dm:alice,bob)" },
    { "namespace", "moderators", NULL, T_BOOL, NO(moderators), 0, "off",
      "tokens with \"role\": \"moderator\" may edit and delete other users' publications" },
    { "namespace", "presence", NULL, T_BOOL, NO(presence), 0, "off", "track who is subscribed (on/off)" },
    { "namespace", "join_leave", NULL, T_BOOL, NO(join_leave), 0, "off",
      "push join and leave events to subscribers (needs presence)" },
    { "namespace", "presence_grace", NULL, T_MS, NO(presence_grace_ms), 0, "5s",
      "a user whose last connection leaves is kept this long before the leave is announced" },
    { "namespace", "presence_tier", NULL, T_UINT, NO(presence_tier), 0, "1000",
      "above this many members, presence gives counts and a sample, and join/leave come in batches" },
    { "namespace", "signals", NULL, T_BOOL, NO(signals), 0, "off",
      "allow the signal op (typing indicators and other ephemeral events)" },
    { "namespace", "signal_rate", NULL, T_UINT, NO(signal_rate), 0, "5", "signals per second per connection" },
    { "namespace", "state", NULL, T_BOOL, NO(state), 0, "off",
      "channels hold a keyed state changed by atomic operations; subscribers get a snapshot, then deltas "
      "(needs history)" },
    { "namespace", "seat_hold_max", NULL, T_MS, NO(seat_hold_max_ms), 0, "15m",
      "seat maps: the longest hold (ttl) a hold request may ask for" },
    { "namespace", "seat_offer_ttl", NULL, T_MS, NO(seat_offer_ttl_ms), 0, "2m",
      "seat maps: how long a seat offered to the head of a waitlist stays held for that user" },
    { "namespace", "waitlist_max", NULL, T_UINT, NO(waitlist_max), 0, "1000",
      "seat maps: users one section's waitlist may hold (error 110 beyond)" },
    { "namespace", "seat_release_on_disconnect", NULL, T_BOOL, NO(seat_release_on_disconnect), 0, "off",
      "seat maps: release the seats a user held over WebSocket when their last connection closes and they do not "
      "come back within seat_release_grace" },
    { "namespace", "seat_release_grace", NULL, T_MS, NO(seat_release_grace_ms), 0, "10s",
      "seat maps: with seat_release_on_disconnect, how long a user's holds wait for them to reconnect" },
    { "namespace", "seat_client_confirm", NULL, T_BOOL, NO(seat_client_confirm), 0, "off",
      "seat maps: clients may confirm (book) their holds over WebSocket; off: only the backend, over REST" },
};
#define NNSOPTS (sizeof ns_opts / sizeof ns_opts[0])
_Static_assert(NNSOPTS <= 32, "ns_config_t.set and .where have room for 32 namespace options");

/* Parses "<n>[k|m|g]" (binary multiples) into bytes. */
static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;
    unsigned long long mul = 1;

    /* strtoull() accepts blanks and a sign, and wraps "-1" to a huge value. */
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (end == s || errno) return -1;
    if (*end) {
        switch (*end | 0x20) {
        case 'k': mul = 1024; break;
        case 'm': mul = 1024 * 1024; break;
        case 'g': mul = 1024ULL * 1024 * 1024; break;
        default: return -1;
        }
        end++;
        if ((*end | 0x20) == 'b') end++;       /* "64kb", "1MB" */
        if (*end) return -1;
    }
    if (v > SIZE_MAX / mul) return -1;
    *out = (size_t)(v * mul);
    return 0;
}

/* Parses "<n>[ms|s|m]" into milliseconds; a bare number is milliseconds. */
static int parse_ms(const char *s, unsigned *out)
{
    char *end;
    unsigned long long v, mul = 1;

    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (end == s || errno) return -1;
    if (!strcmp(end, "s")) mul = 1000;
    else if (!strcmp(end, "m")) mul = 60000;
    else if (!strcmp(end, "h")) mul = 3600000;
    else if (*end && strcmp(end, "ms")) return -1;
    if (v > UINT_MAX / mul) return -1;
    *out = (unsigned)(v * mul);
    return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (end == s || *end || errno || v > max) return -1;
    *out = v;
    return 0;
}

/* Applies @val to option @o in the struct at @base. Return: NULL, or why the
 * value is bad. */
static const char *apply(void *base, const struct opt *o, const char *val)
{
    char *field = (char *)base + o->off;
    unsigned long ul;

    switch (o->type) {
    case T_STR:
        if (strlen(val) >= o->size) return "value too long";
        if (!*val) return "value is empty";
        strcpy(field, val);
        return NULL;
    case T_OPTSTR:
        if (strlen(val) >= o->size) return "value too long";
        strcpy(field, val);
        return NULL;
    case T_REQLOG:
        if (!strcasecmp(val, "off")) *(int *)field = LOG_REQ_OFF;
        else if (!strcasecmp(val, "errors")) *(int *)field = LOG_REQ_ERRORS;
        else if (!strcasecmp(val, "all")) *(int *)field = LOG_REQ_ALL;
        else return "expected all, errors or off";
        return NULL;
    case T_SUBPERM: {
        static const char *const names[] = { "anyone", "authenticated", "granted" };
        for (int i = 0; i < 3; i++)
            if (!strcasecmp(val, names[i])) { *(int *)field = i; return NULL; }
        return "expected anyone, authenticated or granted";
    }
    case T_PUBPERM: {
        static const char *const names[] = { "anyone", "authenticated", "subscribers", "granted", "server" };
        for (int i = 0; i < 5; i++)
            if (!strcasecmp(val, names[i])) { *(int *)field = i; return NULL; }
        return "expected anyone, authenticated, subscribers, granted or server";
    }
    case T_PORT:
        if (parse_uint(val, 65535, &ul)) return "expected a port number 0-65535";
        *(int *)field = (int)ul;
        return NULL;
    case T_UINT:
        if (parse_uint(val, UINT_MAX, &ul)) return "expected a non-negative integer";
        *(unsigned *)field = (unsigned)ul;
        return NULL;
    case T_SIZE:
        if (parse_size(val, (size_t *)field)) return "expected a size such as 65536, 64k or 1m";
        return NULL;
    case T_MS:
        if (parse_ms(val, (unsigned *)field)) return "expected a duration such as 500ms, 10s, 2m or 24h";
        return NULL;
    case T_LEVEL:
        if (log_level_parse(val, (enum log_level *)field)) return "expected error, warn, info or debug";
        return NULL;
    case T_FORMAT:
        if (!strcasecmp(val, "text")) *(enum log_format *)field = LOG_FMT_TEXT;
        else if (!strcasecmp(val, "json")) *(enum log_format *)field = LOG_FMT_JSON;
        else return "expected text or json";
        return NULL;
    case T_BOOL:
        if (!strcasecmp(val, "on") || !strcasecmp(val, "true") || !strcasecmp(val, "yes") || !strcmp(val, "1"))
            *(int *)field = 1;
        else if (!strcasecmp(val, "off") || !strcasecmp(val, "false") || !strcasecmp(val, "no") || !strcmp(val, "0"))
            *(int *)field = 0;
        else return "expected on or off";
        return NULL;
    case T_ENGINE:
        if (!strcasecmp(val, "lmdb")) *(int *)field = ENGINE_LMDB;
        else if (!strcasecmp(val, "redis")) *(int *)field = ENGINE_REDIS;
        else return "expected lmdb or redis";
        return NULL;
    case T_DURABILITY:
        if (!strcasecmp(val, "sync")) *(enum durability *)field = DURABILITY_SYNC;
        else if (!strcasecmp(val, "interval")) *(enum durability *)field = DURABILITY_INTERVAL;
        else return "expected sync or interval";
        return NULL;
    }
    return "unknown option type";
}

/* Cross-option checks that no single value can make. */
static const char *validate(const config_t *c)
{
    if (c->max_message_size < 256) return "limits.max_message_size must be at least 256 bytes";
    if (c->max_message_size > 64u * 1024 * 1024) return "limits.max_message_size must be at most 64m";
    if (c->send_queue_max < c->max_message_size)
        return "limits.send_queue_max must be at least limits.max_message_size";
    if (c->write_batch_max < 1024 || c->write_batch_max > 16u * 1024 * 1024)
        return "websocket.write_batch_max must be between 1k and 16m";
    if (c->max_subscriptions == 0) return "limits.max_subscriptions must be at least 1";
    if (c->max_channels == 0) return "limits.max_channels must be at least 1";
    if (c->map_size < 1024 * 1024) return "history.map_size must be at least 1m";
    if (c->map_size_max < c->map_size) return "history.map_size_max must be at least history.map_size";
    if (c->sync_interval_ms == 0) return "history.sync_interval must be more than 0";
    if (!*c->tls_cert != !*c->tls_key) return "server.tls_cert and server.tls_key go together";
    for (size_t i = 0; i < c->napikeys; i++)
        if (!*c->apikeys[i].secret) {
            static char why[160];
            snprintf(why, sizeof why, "[apikey %s] has no secret", c->apikeys[i].name);
            return why;
        }
    for (size_t i = 0; i <= c->nns; i++) {
        const ns_config_t *n = i < c->nns ? &c->ns[i] : &c->ns_template;
        static char why[160];
        if (n->state && !n->history) {
            snprintf(why, sizeof why, "[namespace %s] state = on needs history = on (deltas are its log)", n->name);
            return why;
        }
        if (n->seat_hold_max_ms < 1000 || n->seat_offer_ttl_ms < 1000) {
            snprintf(why, sizeof why, "[namespace %s] seat_hold_max and seat_offer_ttl must be at least 1s", n->name);
            return why;
        }
        if (n->history && n->history_size == 0) {
            snprintf(why, sizeof why, "[namespace %s] history_size must be at least 1 (or set history = off)", n->name);
            return why;
        }
    }
    return NULL;
}

/* Whether the public_keys list @list names at least one file (auth_init()
 * skips blanks between the commas). */
static int names_a_key_file(const char *list)
{
    return list[strspn(list, ", ")] != '\0';
}

/* The [auth] checks that need no key loaded. Unlike validate()'s, their
 * messages say where the offending option was set ("PATH:LINE: " or
 * "--flag: "), as the file's own errors do: an operator who turned anonymous
 * access off wants the line that did it. The key files are read, and checked
 * the same way, by auth_init(). Return: 0, or -1 with @err. */
static int validate_auth(const config_t *c, char *err, size_t errlen)
{
    const char *option;
    char where[sizeof c->config_path + 16], why[200];

    if (*c->hmac_secret && strlen(c->hmac_secret) < HMAC_SECRET_MIN) {
        option = "auth.hmac_secret";
        snprintf(why, sizeof why, "auth.hmac_secret must be at least %d characters", HMAC_SECRET_MIN);
    } else if (!c->anonymous && !*c->hmac_secret && !names_a_key_file(c->public_keys)) {
        option = "auth.anonymous";
        snprintf(why, sizeof why, "auth.anonymous is off but no token key is configured "
                 "(auth.hmac_secret or auth.public_keys): nobody could connect");
    } else {
        return 0;
    }
    if (config_where(c, option, where, sizeof where) > 0) snprintf(err, errlen, "%s: %s", where, why);
    else snprintf(err, errlen, "%s", why);
    return -1;
}

/* Whether server.bind @addr is a loopback address (a literal, or "localhost"). */
static int bind_is_loopback(const char *addr)
{
    unsigned char a[16];

    if (!strcasecmp(addr, "localhost")) return 1;
    if (inet_pton(AF_INET, addr, a) == 1) return a[0] == 127;
    if (inet_pton(AF_INET6, addr, a) != 1) return 0;
    if (!memcmp(a, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16)) return 1;
    return !memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) && a[12] == 127;
}

/* "PATH:LINE: " or "--flag: " for a namespace option set at @where
 * (ns_config_t.where), or "" when it has its built-in value. */
static void ns_where(const config_t *c, const char *ns, const char *key, int where, char *buf, size_t len)
{
    if (where > 0) snprintf(buf, len, "%s:%d: ", c->config_path, where);
    else if (where < 0) snprintf(buf, len, "--ns %s.%s: ", ns, key);
    else *buf = '\0';
}

static int ns_name_ok(const char *n);

/* [adapter commerce], when enabled: the channels it writes must be valid
 * names, and the stock channel a state channel (its reservations are state
 * operations). Return: 0, or -1 with @err naming where the option was set. */
static int validate_commerce(const config_t *c, char *err, size_t errlen)
{
    static const char sec[] = "adapter commerce";
    char where[sizeof c->config_path + 80];
    const char *stock = c->commerce_stock_channel, *admin = c->commerce_admin_channel, *opt = NULL, *why = NULL;
    char probe[sizeof c->commerce_orders_ns + 2];

    if (!chname_valid(stock, strlen(stock), &why)) opt = "stock_channel";
    else if (!config_ns(c, stock, strlen(stock))->state) {
        opt = "stock_channel";
        why = "its namespace needs state = on (and history = on)";
    } else if (!ns_name_ok(c->commerce_orders_ns) || !strcmp(c->commerce_orders_ns, "*")) {
        opt = "orders_namespace";
        why = "a namespace name is 1-64 letters, digits, '_' or '-'";
    } else if (snprintf(probe, sizeof probe, "%s:x", c->commerce_orders_ns) > 0 &&
               !config_ns(c, probe, strlen(probe))->history) {
        opt = "orders_namespace";
        why = "the order channels' history is each order's timeline: the namespace needs history = on";
    } else if (!chname_valid(admin, strlen(admin), &why)) {
        opt = "admin_channel";
    } else if (config_ns(c, admin, strlen(admin))->state) {
        opt = "admin_channel";
        why = "its namespace has state = on: the admin channel takes plain publications";
    } else if (*c->commerce_webhook_secret && strlen(c->commerce_webhook_secret) < 16) {
        opt = "webhook_secret";
        why = "a webhook secret must be at least 16 characters";
    } else if (*c->commerce_webhook_secret && c->commerce_webhook_tolerance_ms < 1000) {
        opt = "webhook_tolerance";
        why = "at least 1s";
    }
    if (!opt) return 0;
    {
        char name[64];
        snprintf(name, sizeof name, "%s.%s", sec, opt);
        if (config_where(c, name, where, sizeof where) > 0) strcat(where, ": ");
    }
    snprintf(err, errlen, "%s[%s] %s = \"%s\": %s", where, sec, opt,
             !strcmp(opt, "stock_channel") ? stock : !strcmp(opt, "admin_channel") ? admin :
             !strcmp(opt, "orders_namespace") ? c->commerce_orders_ns : "...",
             why ? why : "not a valid channel name");
    return -1;
}

/* [adapter tickets], when enabled: the dashboard must be a state channel
 * and the timelines keep history. Return: 0, or -1 with @err naming where
 * the option was set. */
static int validate_tickets(const config_t *c, char *err, size_t errlen)
{
    const char *board = c->tickets_dashboard_channel, *opt = NULL, *why = NULL;
    char where[sizeof c->config_path + 80], probe[sizeof c->tickets_timeline_ns + 2];

    if (!chname_valid(board, strlen(board), &why)) opt = "dashboard_channel";
    else if (!config_ns(c, board, strlen(board))->state) {
        opt = "dashboard_channel";
        why = "its namespace needs state = on (and history = on)";
    } else if (!ns_name_ok(c->tickets_timeline_ns) || !strcmp(c->tickets_timeline_ns, "*")) {
        opt = "timeline_namespace";
        why = "a namespace name is 1-64 letters, digits, '_' or '-'";
    } else if (snprintf(probe, sizeof probe, "%s:x", c->tickets_timeline_ns) > 0 &&
               !config_ns(c, probe, strlen(probe))->history) {
        opt = "timeline_namespace";
        why = "a ticket's timeline is its channel's history: the namespace needs history = on";
    }
    if (!opt) return 0;
    {
        char name[64];
        snprintf(name, sizeof name, "adapter tickets.%s", opt);
        if (config_where(c, name, where, sizeof where) > 0) strcat(where, ": ");
    }
    snprintf(err, errlen, "%s[adapter tickets] %s = \"%s\": %s", where, opt,
             !strcmp(opt, "dashboard_channel") ? board : c->tickets_timeline_ns, why ? why : "not a valid channel name");
    return -1;
}

/* [adapter seats] feed: a channel name once "{event}" is replaced (by the
 * longest event id), and not a state channel (it takes plain publications).
 * Return: 0, or -1 with @err. */
static int validate_seats_feed(const config_t *c, char *err, size_t errlen)
{
    char name[sizeof c->seats_feed + 64], where[sizeof c->config_path + 80];
    const char *at = strstr(c->seats_feed, "{event}"), *why = NULL;
    int n = at ? snprintf(name, sizeof name, "%.*s%s%s", (int)(at - c->seats_feed), c->seats_feed,
                          "0123456789012345678901234567890123456789012345678901234567890123", at + 7)
               : snprintf(name, sizeof name, "%s", c->seats_feed);

    if (n < 0 || (size_t)n >= sizeof name || !chname_valid(name, (size_t)n, &why)) {
        if (!why) why = "too long once {event} is replaced by an event id of up to 64 characters";
    } else if (config_ns(c, name, (size_t)n)->state) {
        why = "its namespace has state = on: a feed takes plain publications";
    }
    if (!why) return 0;
    if (config_where(c, "adapter seats.feed", where, sizeof where) > 0) strcat(where, ": ");
    else where[0] = '\0';
    snprintf(err, errlen, "%s[adapter seats] feed = \"%s\": %s", where, c->seats_feed, why);
    return -1;
}

/* Cross-checks whose messages name where the offending option was set, as
 * validate_auth()'s do. Return: 0, or -1 with @err. */
static int validate_where(const config_t *c, char *err, size_t errlen)
{
    char where[sizeof c->config_path + 80];

    for (size_t i = 0; i <= c->nns; i++) {
        const ns_config_t *n = i < c->nns ? &c->ns[i] : &c->ns_template;
        size_t jl;
        /* join/leave events come from presence: without it they never fire. */
        if (!n->join_leave || n->presence) continue;
        for (jl = 0; jl < NNSOPTS && strcmp(ns_opts[jl].key, "join_leave"); jl++) {}
        /* Inherited from [namespace *]: name the section that set it. */
        const char *setter = (n->set & (1u << jl)) ? n->name : "*";
        ns_where(c, setter, "join_leave", n->where[jl], where, sizeof where);
        snprintf(err, errlen, "%s[namespace %s] join_leave = on needs presence = on (join and leave events come "
                 "from presence); set presence = on or join_leave = off", where, setter);
        return -1;
    }
    if (c->commerce_enabled && validate_commerce(c, err, errlen)) return -1;
    if (c->tickets_enabled && validate_tickets(c, err, errlen)) return -1;
    if (*c->seats_feed && validate_seats_feed(c, err, errlen)) return -1;
    /* Development mode: with no API key the REST API, publishing included,
     * answers whoever reaches the port. Fine on loopback; elsewhere only
     * when the operator says so. */
    if (!c->napikeys && c->anonymous && !c->allow_open_dev && !bind_is_loopback(c->bind)) {
        if (config_where(c, "server.bind", where, sizeof where) > 0) strcat(where, ": ");
        snprintf(err, errlen, "%sserver.bind = %s in development mode (no [apikey] section, auth.anonymous on) "
                 "would open the REST API, publishing included, to anyone who can reach that address: add an "
                 "[apikey] section and set auth.anonymous = off, bind to 127.0.0.1, or set "
                 "server.allow_open_dev = on (--allow-open-dev on) to run it open anyway", where, c->bind);
        return -1;
    }
    return 0;
}

int config_engine_address(const char *addr, char *host, size_t hostlen, int *port, const char **why)
{
    const char *colon, *h = addr;
    size_t hl;
    unsigned long p;

    if (!strncmp(addr, "unix:", 5)) {
        if (!addr[5] || addr[5] != '/') { *why = "unix:PATH needs an absolute path"; return -1; }
        if (strlen(addr + 5) >= hostlen || strlen(addr + 5) >= 108) { *why = "the socket path is too long"; return -1; }
        strcpy(host, addr + 5);
        *port = 0;
        return 0;
    }
    if (*addr == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':') { *why = "expected [IPv6]:PORT"; return -1; }
        h = addr + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || strchr(addr, ':') != colon) { *why = "expected HOST:PORT, [IPv6]:PORT or unix:PATH"; return -1; }
        hl = (size_t)(colon - addr);
    }
    if (!hl || hl >= hostlen) { *why = "the host is empty or too long"; return -1; }
    if (parse_uint(colon + 1, 65535, &p) || p == 0) { *why = "the port must be a number from 1 to 65535"; return -1; }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

/* [engine] tls and its files: TLS needs a TCP address; a certificate goes
 * with its key; the files are loaded as the bridge will load them, so a
 * bad one stops the start here (storage/engine_tls.c). The tls_* options
 * without tls = on are refused rather than silently unused.
 * Return: 0, or -1 with @err. */
static int validate_engine_tls(config_t *c, int port, char *err, size_t errlen)
{
    static const char *const names[] = { "engine.tls_ca", "engine.tls_cert", "engine.tls_key",
                                         "engine.tls_server_name" };
    const char *vals[] = { c->engine_tls_ca, c->engine_tls_cert, c->engine_tls_key, c->engine_tls_server_name };
    struct engine_tls_conf tc = { c->engine_tls_ca, c->engine_tls_cert, c->engine_tls_key,
                                  c->engine_tls_server_name, c->engine_tls_verify };
    char where[sizeof c->config_path + 80], why[1200];

    if (!c->engine_tls) {
        for (size_t i = 0; i < sizeof names / sizeof *names; i++)
            if (*vals[i]) {
                if (config_where(c, names[i], where, sizeof where) > 0) strcat(where, ": ");
                snprintf(err, errlen, "%s[engine] %s is only used with tls = on", where, names[i] + 7);
                return -1;
            }
        return 0;
    }
    if (!port) {
        if (config_where(c, "engine.tls", where, sizeof where) > 0) strcat(where, ": ");
        snprintf(err, errlen, "%s[engine] tls = on needs a HOST:PORT address (Redis' tls-port), not unix:PATH", where);
        return -1;
    }
    if (!*c->engine_tls_cert != !*c->engine_tls_key) {
        if (config_where(c, *c->engine_tls_cert ? "engine.tls_cert" : "engine.tls_key", where, sizeof where) > 0)
            strcat(where, ": ");
        snprintf(err, errlen, "%s[engine] tls_cert and tls_key go together", where);
        return -1;
    }
    if (engine_tls_ctx_check(&tc, why, sizeof why)) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    return 0;
}

/* [engine] type = redis: the engine's own options (docs/cluster.md). Every
 * namespace option is carried across nodes (state channels, seat maps with
 * their organiser's feed, presence, signals: core/cluster_*.c), and so are
 * the adapters (core/cluster_shop.c, cluster_tickets.c) and the webhooks
 * (storage/engine_webhooks.c), so nothing else is refused.
 * Return: 0, or -1 with @err. */
static int validate_engine(config_t *c, char *err, size_t errlen)
{
    char host[1024], where[sizeof c->config_path + 80];
    const char *why = NULL;
    int port;

    if (c->engine_type != ENGINE_REDIS) return 0;
    if (config_engine_address(c->engine_address, host, sizeof host, &port, &why)) {
        if (config_where(c, "engine.address", where, sizeof where) > 0) strcat(where, ": ");
        snprintf(err, errlen, "%s[engine] address = \"%s\": %s", where, c->engine_address, why);
        return -1;
    }
    if (validate_engine_tls(c, port, err, errlen)) return -1;
    if (c->engine_presence_heartbeat_ms < 100) {
        if (config_where(c, "engine.presence_heartbeat", where, sizeof where) > 0) strcat(where, ": ");
        snprintf(err, errlen, "%s[engine] presence_heartbeat must be at least 100ms", where);
        return -1;
    }
    if (c->engine_webhook_lease_ms < 1000) {
        if (config_where(c, "engine.webhook_lease", where, sizeof where) > 0) strcat(where, ": ");
        snprintf(err, errlen, "%s[engine] webhook_lease must be at least 1s", where);
        return -1;
    }
    return 0;
}

/* Each [webhook] needs a url, a secret and its events; the message names
 * the section's first line. Return: 0, or -1 with @err. */
static int validate_webhooks(const config_t *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->nwebhooks; i++) {
        const webhook_conf_t *w = &c->webhooks[i];
        const char *missing = !*w->url ? "url" : !*w->secret ? "secret" : !w->events ? "events" : NULL;
        char where[1200];
        if (w->line > 0) snprintf(where, sizeof where, "%s:%d: [webhook %s]", c->config_path, w->line, w->name);
        else snprintf(where, sizeof where, "--webhook %s", w->name);
        if (missing) {
            snprintf(err, errlen, "%s has no %s", where, missing);
            return -1;
        }
        if (w->retry_max_ms < w->retry_base_ms) {
            snprintf(err, errlen, "%s retry_max must be at least retry_base", where);
            return -1;
        }
        if (*w->ca_file && !w->tls) {
            snprintf(err, errlen, "%s ca_file is only used with an https:// url", where);
            return -1;
        }
        if (*w->ca_file && access(w->ca_file, R_OK)) {
            snprintf(err, errlen, "%s ca_file %s cannot be read: %s", where, w->ca_file, strerror(errno));
            return -1;
        }
    }
    return 0;
}

int config_where(const config_t *c, const char *option, char *buf, size_t len)
{
    const char *dot = strchr(option, '.');
    size_t slen = dot ? (size_t)(dot - option) : 0, i;

    if (len) *buf = '\0';
    if (!dot) return -EINVAL;
    for (i = 0; i < NOPTS; i++)
        if (strlen(opts[i].section) == slen && !memcmp(opts[i].section, option, slen) && !strcmp(opts[i].key, dot + 1))
            break;
    if (i == NOPTS) return -EINVAL;
    if (c->where[i] == 0) return 0;
    if (c->where[i] > 0) {
        snprintf(buf, len, "%s:%d", c->config_path, c->where[i]);
    } else {
        size_t n = (size_t)snprintf(buf, len, "--%s", opts[i].flag ? opts[i].flag : opts[i].key);
        for (size_t j = 2; j < n && j < len; j++) if (buf[j] == '_') buf[j] = '-';
    }
    return 1;
}

/* Builds c->ns_sys from the template (see config.h). */
static void sys_ns_init(config_t *c)
{
    c->ns_sys = c->ns_template;
    strcpy(c->ns_sys.name, "sys");
    c->ns_sys.history = 0;
    c->ns_sys.state = 0;
    c->ns_sys.presence = 0;
    c->ns_sys.join_leave = 0;
    c->ns_sys.signals = 0;
    c->ns_sys.user_list = 0;
}

/* The namespaces the embedded widgets (/widgets/) use, so that a broker
 * started with no config at all serves a working chat, scoreboard and seat
 * map. Each row counts as set in that namespace: a config file or --ns may set
 * it again, and every key not listed comes from [namespace *] as usual. The
 * state namespaces pin history on, which state needs, so that
 * [namespace *] history = off does not make them invalid. */
static const struct { const char *ns, *key, *val; } builtin_ns[] = {
    { "chat", "presence", "on" },
    { "chat", "join_leave", "on" },
    { "chat", "signals", "on" },
    { "dm", "user_list", "on" },
    { "dm", "signals", "on" },
    { "scores", "state", "on" },
    { "scores", "history", "on" },
    { "seats", "state", "on" },
    { "seats", "history", "on" },
    { "stock", "state", "on" },
    { "stock", "history", "on" },
    { "orders", "history", "on" },
    /* An order's timeline is the broker's account of it: its owner may read it, not write it. */
    { "orders", "publish", "server" },
    /* The support-tickets board and timelines change through /api/tickets only. */
    { "helpdesk", "state", "on" },
    { "helpdesk", "history", "on" },
    { "helpdesk", "publish", "server" },
    { "ticket", "history", "on" },
    { "ticket", "publish", "server" },
};

static const char *apply_ns(config_t *c, const char *name, const char *key, const char *val, int where);

void config_defaults(config_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NOPTS; i++)
        apply(c, &opts[i], opts[i].def);
    strcpy(c->ns_template.name, "*");
    for (size_t i = 0; i < NNSOPTS; i++)
        apply(&c->ns_template, &ns_opts[i], ns_opts[i].def);
    sys_ns_init(c);
    /* These values are known good; only running out of memory fails, and
     * then the namespace is simply not predefined. */
    for (size_t i = 0; i < sizeof builtin_ns / sizeof builtin_ns[0]; i++)
        (void)apply_ns(c, builtin_ns[i].ns, builtin_ns[i].key, builtin_ns[i].val, 0);
}

int config_reload_logging(config_t *c, char *err, size_t errlen)
{
    config_t fresh;

    if (!*c->config_path) {
        snprintf(err, errlen, "no config file was given (--config): nothing to reload");
        return -1;
    }
    config_defaults(&fresh);
    if (config_load_file(&fresh, c->config_path, err, errlen)) {
        config_free(&fresh);
        return -1;
    }
    c->log_level = fresh.log_level;
    c->log_format = fresh.log_format;
    c->log_requests = fresh.log_requests;
    config_free(&fresh);
    return 0;
}

void config_free(config_t *c)
{
    free(c->ns);
    c->ns = NULL;
    c->nns = 0;
    if (c->apikeys) memset(c->apikeys, 0, c->napikeys * sizeof *c->apikeys);   /* secrets */
    free(c->apikeys);
    c->apikeys = NULL;
    c->napikeys = 0;
    if (c->webhooks) memset(c->webhooks, 0, c->nwebhooks * sizeof *c->webhooks);   /* secrets */
    free(c->webhooks);
    c->webhooks = NULL;
    c->nwebhooks = 0;
}

/* Applies `key = val` of section [apikey NAME]. Return: NULL, or why not. */
static const char *apply_apikey(config_t *c, const char *name, const char *key, const char *val)
{
    apikey_t *k = NULL;

    if (!*name || strlen(name) >= sizeof k->name) return "an API key name is 1-64 characters";
    for (size_t i = 0; i < c->napikeys; i++)
        if (!strcmp(c->apikeys[i].name, name)) k = &c->apikeys[i];
    if (!k) {
        apikey_t *n = realloc(c->apikeys, (c->napikeys + 1) * sizeof *n);
        if (!n) return "out of memory";
        c->apikeys = n;
        k = &c->apikeys[c->napikeys++];
        memset(k, 0, sizeof *k);
        strcpy(k->name, name);
        k->requests_per_minute = APIKEY_RATE_DEFAULT;
    }
    if (!strcmp(key, "secret")) {
        if (strlen(val) < 16) return "an API key secret must be at least 16 characters";
        if (strlen(val) >= sizeof k->secret) return "value too long";
        strcpy(k->secret, val);
    } else if (!strcmp(key, "publish")) {
        if (strlen(val) >= sizeof k->publish) return "value too long";
        strcpy(k->publish, val);
    } else if (!strcmp(key, "admin")) {
        static const struct opt o = { "apikey", "admin", NULL, T_BOOL, offsetof(apikey_t, admin), 0, "off", "" };
        return apply(k, &o, val);
    } else if (!strcmp(key, "requests_per_minute")) {
        static const struct opt o = { "apikey", "requests_per_minute", NULL, T_UINT,
                                       offsetof(apikey_t, requests_per_minute), 0, "6000", "" };
        return apply(k, &o, val);
    } else {
        return "unknown key (an [apikey NAME] section takes secret, publish, admin and requests_per_minute)";
    }
    return NULL;
}

/* Parses webhook @w's url: http(s)://host[:port][/path]. Return: NULL, or why not. */
static const char *webhook_url(webhook_conf_t *w, const char *val)
{
    const char *p, *hend, *slash;
    size_t hl;

    if (strlen(val) >= sizeof w->url) return "value too long";
    if (!strncasecmp(val, "https://", 8)) {
        w->tls = 1;
        p = val + 8;
    } else if (!strncasecmp(val, "http://", 7)) {
        w->tls = 0;
        p = val + 7;
    } else {
        return "a webhook url must start with http:// or https://";
    }
    slash = strchr(p, '/');
    hend = slash ? slash : p + strlen(p);
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (!rb) return "a bracketed IPv6 host needs its ']'";
        hl = (size_t)(rb - p - 1);
        if (!hl || hl >= sizeof w->host) return "bad host";
        memcpy(w->host, p + 1, hl);
        w->host[hl] = '\0';
        p = rb + 1;
    } else {
        const char *colon = memchr(p, ':', (size_t)(hend - p));
        const char *e = colon ? colon : hend;
        hl = (size_t)(e - p);
        if (!hl || hl >= sizeof w->host) return "a webhook url needs a host";
        memcpy(w->host, p, hl);
        w->host[hl] = '\0';
        p = e;
    }
    if (memchr(w->host, '@', strlen(w->host))) return "credentials in the url are not supported";
    strcpy(w->port, w->tls ? "443" : "80");
    if (*p == ':') {
        unsigned long port;
        char num[8];
        size_t nl = (size_t)(hend - p - 1);
        if (!nl || nl >= sizeof num) return "bad port";
        memcpy(num, p + 1, nl);
        num[nl] = '\0';
        if (parse_uint(num, 65535, &port) || !port) return "bad port";
        snprintf(w->port, sizeof w->port, "%u", (unsigned)(port & 0xffff));
    } else if (p != hend) {
        return "bad host";
    }
    snprintf(w->path, sizeof w->path, "%s", slash ? slash : "/");
    for (const char *q = w->path; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f) return "the path may not hold spaces or control characters";
    strcpy(w->url, val);
    return NULL;
}

/* Parses an events list ("publication, channel.occupied" or "*"). */
static const char *webhook_events(webhook_conf_t *w, const char *val)
{
    static const struct { const char *name; unsigned bit; } names[] = {
        { "publication", WH_EV_PUBLICATION }, { "channel.occupied", WH_EV_OCCUPIED },
        { "channel.vacated", WH_EV_VACATED }, { "presence.member_added", WH_EV_MEMBER_ADDED },
        { "presence.member_removed", WH_EV_MEMBER_REMOVED }, { "order.created", WH_EV_ORDER_CREATED },
        { "order.status", WH_EV_ORDER_STATUS }, { "seat.booked", WH_EV_SEAT_BOOKED },
        { "seat.expired", WH_EV_SEAT_EXPIRED }, { "ticket.changed", WH_EV_TICKET_CHANGED }, { "*", WH_EV_ALL },
    };
    unsigned mask = 0;
    const char *p = val;

    while (*p) {
        size_t len, i;
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        if (!*p) break;
        for (len = 0; p[len] && p[len] != ',' && p[len] != ' ' && p[len] != '\t'; len++) {}
        for (i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strlen(names[i].name) == len && !memcmp(names[i].name, p, len)) break;
        if (i == sizeof names / sizeof names[0])
            return "unknown event (known: publication, channel.occupied, channel.vacated, presence.member_added, "
                   "presence.member_removed, order.created, order.status, seat.booked, seat.expired, ticket.changed, "
                   "or * for all)";
        mask |= names[i].bit;
        p += len;
    }
    if (!mask) return "name at least one event";
    w->events = mask;
    return NULL;
}

/* Applies `key = val` of section [webhook NAME], on @line. Return: NULL, or why not. */
static const char *apply_webhook(config_t *c, const char *name, const char *key, const char *val, int line)
{
    webhook_conf_t *w = NULL;
    unsigned long ul;

    if (!*name || strlen(name) >= sizeof w->name) return "a webhook name is 1-64 letters, digits, '_' or '-'";
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-'))
            return "a webhook name is 1-64 letters, digits, '_' or '-'";
    for (size_t i = 0; i < c->nwebhooks; i++)
        if (!strcmp(c->webhooks[i].name, name)) w = &c->webhooks[i];
    if (!w) {
        webhook_conf_t *n;
        if (c->nwebhooks >= WEBHOOK_MAX) return "too many [webhook] sections (at most 16)";
        if (!(n = realloc(c->webhooks, (c->nwebhooks + 1) * sizeof *n))) return "out of memory";
        c->webhooks = n;
        w = &c->webhooks[c->nwebhooks++];
        memset(w, 0, sizeof *w);
        strcpy(w->name, name);
        w->line = line;
        strcpy(w->namespaces, "*");
        w->timeout_ms = 5000;
        w->max_attempts = 10;
        w->max_age_ms = 24u * 3600 * 1000;
        w->batch_size = 10;
        w->retry_base_ms = 1000;
        w->retry_max_ms = 5u * 60 * 1000;
    }
    if (!strcmp(key, "url")) return webhook_url(w, val);
    if (!strcmp(key, "secret")) {
        if (strlen(val) < 16) return "a webhook secret must be at least 16 characters";
        if (strlen(val) >= sizeof w->secret) return "value too long";
        strcpy(w->secret, val);
        return NULL;
    }
    if (!strcmp(key, "events")) return webhook_events(w, val);
    if (!strcmp(key, "ca_file")) {
        if (strlen(val) >= sizeof w->ca_file) return "value too long";
        strcpy(w->ca_file, val);
        return NULL;
    }
    if (!strcmp(key, "namespaces")) {
        if (strlen(val) >= sizeof w->namespaces) return "value too long";
        strcpy(w->namespaces, val);
        return NULL;
    }
    if (!strcmp(key, "timeout") || !strcmp(key, "max_age") || !strcmp(key, "retry_base") ||
        !strcmp(key, "retry_max")) {
        unsigned ms;
        if (parse_ms(val, &ms) || !ms) return "expected a duration above 0 (ms, s, m or h)";
        if (!strcmp(key, "timeout")) w->timeout_ms = ms;
        else if (!strcmp(key, "max_age")) w->max_age_ms = ms;
        else if (!strcmp(key, "retry_base")) w->retry_base_ms = ms;
        else w->retry_max_ms = ms;
        return NULL;
    }
    if (!strcmp(key, "max_attempts")) {
        if (parse_uint(val, 1000, &ul) || !ul) return "expected 1 to 1000";
        w->max_attempts = (unsigned)ul;
        return NULL;
    }
    if (!strcmp(key, "batch_size")) {
        if (parse_uint(val, 100, &ul) || !ul) return "expected 1 to 100";
        w->batch_size = (unsigned)ul;
        return NULL;
    }
    return "unknown key (a [webhook NAME] section takes url, secret, events, namespaces, ca_file, timeout, "
           "max_attempts, max_age, batch_size, retry_base and retry_max)";
}

/* Whether the comma-separated namespace list @list names @ns (@len bytes). */
static int list_names(const char *list, const char *ns, size_t len)
{
    const char *p = list;

    while (*p) {
        size_t l;
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        for (l = 0; p[l] && p[l] != ',' && p[l] != ' ' && p[l] != '\t'; l++) {}
        if (l == 1 && *p == '*') return 1;
        if (l == 1 && *p == '-' && !len) return 1;   /* the default namespace (names without ':') */
        if (l && l == len && !memcmp(p, ns, len)) return 1;
        p += l;
    }
    return 0;
}

size_t config_webhooks_for(const config_t *c, unsigned ev, const char *chan, size_t len,
                           const char *out[WEBHOOK_MAX])
{
    const char *colon = memchr(chan, ':', len);
    size_t nslen = colon ? (size_t)(colon - chan) : 0, n = 0;

    /* sys:stats is the broker's own feed, not traffic. */
    if (nslen == 3 && !memcmp(chan, "sys", 3)) return 0;
    for (size_t i = 0; i < c->nwebhooks && n < WEBHOOK_MAX; i++) {
        const webhook_conf_t *w = &c->webhooks[i];
        if (!(w->events & ev)) continue;
        if (ev == WH_EV_PUBLICATION && !list_names(w->namespaces, colon ? chan : "", nslen)) continue;
        out[n++] = w->name;
    }
    return n;
}

const webhook_conf_t *config_webhook(const config_t *c, const char *name)
{
    for (size_t i = 0; i < c->nwebhooks; i++)
        if (!strcmp(c->webhooks[i].name, name)) return &c->webhooks[i];
    return NULL;
}

/* A namespace name in a section header: letters, digits, '_' and '-', or "*". */
static int ns_name_ok(const char *n)
{
    size_t len = strlen(n);
    if (!strcmp(n, "*")) return 1;
    if (len == 0 || len > 64) return 0;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/* The namespace @name's entry in @c, created if missing. NULL if out of memory. */
static ns_config_t *ns_get(config_t *c, const char *name)
{
    ns_config_t *n;

    if (!strcmp(name, "*")) return &c->ns_template;
    for (size_t i = 0; i < c->nns; i++)
        if (!strcmp(c->ns[i].name, name)) return &c->ns[i];
    n = realloc(c->ns, (c->nns + 1) * sizeof *c->ns);
    if (!n) return NULL;
    c->ns = n;
    n = &c->ns[c->nns++];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    return n;
}

/* Applies namespace option @key = @val to namespace @name, set at @where
 * (a line of the config file, or -1 for a flag).
 * Return: NULL, or why not (a static string). */
static const char *apply_ns(config_t *c, const char *name, const char *key, const char *val, int where)
{
    ns_config_t *n;
    const char *why;
    size_t i;

    if (!ns_name_ok(name)) return "a namespace name is 1-64 letters, digits, '_' or '-' (or * for all)";
    for (i = 0; i < NNSOPTS; i++)
        if (!strcmp(ns_opts[i].key, key)) break;
    if (i == NNSOPTS) return "unknown namespace option";
    if (!(n = ns_get(c, name))) return "out of memory";
    if ((why = apply(n, &ns_opts[i], val))) return why;
    n->set |= 1u << i;
    n->where[i] = where;
    return NULL;
}

/* Gives each namespace the template's value for every key it did not set. */
static void ns_inherit(config_t *c)
{
    sys_ns_init(c);
    for (size_t k = 0; k < c->nns; k++) {
        ns_config_t *n = &c->ns[k];
        for (size_t i = 0; i < NNSOPTS; i++) {
            const struct opt *o = &ns_opts[i];
            if (n->set & (1u << i)) continue;
            memcpy((char *)n + o->off, (char *)&c->ns_template + o->off,
                   o->type == T_UINT || o->type == T_MS ? sizeof(unsigned) : sizeof(int));
            n->where[i] = c->ns_template.where[i];
        }
    }
}

const ns_config_t *config_ns(const config_t *c, const char *name, size_t len)
{
    const char *colon = memchr(name, ':', len);
    size_t nlen;

    if (!colon) return &c->ns_template;
    nlen = (size_t)(colon - name);
    for (size_t i = 0; i < c->nns; i++)
        if (strlen(c->ns[i].name) == nlen && !memcmp(c->ns[i].name, name, nlen)) return &c->ns[i];
    if (nlen == 3 && !memcmp(name, "sys", 3)) return &c->ns_sys;
    return &c->ns_template;
}

struct ini_state {
    config_t *c;
    FILE *f;
    int line;                     /* the line the handler is called for */
    char *err;
    size_t errlen;
    int failed;
};

/* Debian's libinih passes no line number to the handler (INI_HANDLER_LINENO
 * is off). It reads one line through this reader, then calls the handler for
 * it, so counting reads here, as libinih counts its lines, gives the
 * handler's line: on_ini() records it for config_where(). */
static char *read_line(char *str, int num, void *user)
{
    struct ini_state *st = user;
    char *s = fgets(str, num, st->f);

    if (s) st->line++;
    return s;
}

/* ini_parse_stream() returns the line of the first handler failure, so
 * messages here leave the line out and config_load_file() puts it in front. */
static int on_ini(void *user, const char *section, const char *key, const char *value)
{
    struct ini_state *st = user;
    const char *why = NULL;
    size_t i;

    if (st->failed) return 1;
    if (!strncmp(section, "apikey ", 7)) {
        if ((why = apply_apikey(st->c, section + 7, key, value))) {
            snprintf(st->err, st->errlen, "[%s] %s: %s", section, key, why);
            st->failed = 1;
            return 0;
        }
        return 1;
    }
    if (!strncmp(section, "webhook ", 8)) {
        if ((why = apply_webhook(st->c, section + 8, key, value, st->line))) {
            snprintf(st->err, st->errlen, "[%s] %s = \"%s\": %s", section, key, value, why);
            st->failed = 1;
            return 0;
        }
        return 1;
    }
    if (!strncmp(section, "namespace ", 10)) {
        if ((why = apply_ns(st->c, section + 10, key, value, st->line))) {
            snprintf(st->err, st->errlen, "[%s] %s = \"%s\": %s", section, key, value, why);
            st->failed = 1;
            return 0;
        }
        return 1;
    }
    for (i = 0; i < NOPTS; i++)
        if (!strcmp(opts[i].section, section) && !strcmp(opts[i].key, key)) break;
    if (i == NOPTS) {
        int known_section = 0;
        for (size_t j = 0; j < NOPTS; j++) known_section |= !strcmp(opts[j].section, section);
        snprintf(st->err, st->errlen, "%s [%s]%s%s",
                 known_section ? "unknown key" : "unknown section", section,
                 known_section ? " " : "", known_section ? key : "");
        st->failed = 1;
        return 0;
    }
    if ((why = apply(st->c, &opts[i], value))) {
        snprintf(st->err, st->errlen, "%s.%s = \"%s\": %s", section, key, value, why);
        st->failed = 1;
        return 0;
    }
    st->c->where[i] = st->line;
    return 1;
}

int config_load_file(config_t *c, const char *path, char *err, size_t errlen)
{
    char why[512] = "";
    FILE *f = fopen(path, "r");
    struct ini_state st = { c, f, 0, why, sizeof why, 0 };
    struct stat fst;
    int r;

    if (!f) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &fst) || !S_ISREG(fst.st_mode)) {
        fclose(f);
        snprintf(err, errlen, "%s: not a regular file", path);
        return -1;
    }
    if (path != c->config_path) snprintf(c->config_path, sizeof c->config_path, "%s", path);
    r = ini_parse_stream(read_line, &st, on_ini, &st);
    fclose(f);
    if (st.failed) {
        snprintf(err, errlen, "%s:%d: %s", path, r, why);
        return -1;
    }
    if (r > 0) {
        snprintf(err, errlen, "%s:%d: syntax error (expected [section] or key = value)", path, r);
        return -1;
    }
    if (r < 0) {
        snprintf(err, errlen, "%s: cannot read", path);
        return -1;
    }
    return 0;
}

static const struct opt *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const char *k = opts[i].flag ? opts[i].flag : opts[i].key;
        size_t j;
        if (strlen(k) != len) continue;
        for (j = 0; j < len; j++)
            if ((k[j] == '_' ? '-' : k[j]) != name[j]) break;
        if (j == len) return &opts[i];
    }
    return NULL;
}

void config_usage(FILE *out)
{
    fprintf(out,
        "Usage: herald [OPTIONS]\n"
        "       herald --config FILE [OPTIONS]\n"
        "       herald backup DEST [--data-dir DIR | --config FILE]\n"
        "       herald migrate [--data-dir DIR | --config FILE] [--engine-... OPTIONS] [--skip-unsupported]\n"
        "                      (a stopped node's channels into the redis engine: docs/cluster.md)\n\n"
        "Herald %s, a real-time pub/sub broker: WebSocket clients at /ws\n"
        "(subprotocols herald.json and herald.msgpack), REST at /api.\n\n"
        "  -h, --help           print this help and exit\n"
        "  -V, --version        print the version and exit\n"
        "  -c, --config FILE    read settings from an INI file (see conf/herald.conf)\n\n"
        "Every setting can be given as a flag (--name VALUE or --name=VALUE) or in the\n"
        "config file as `name = value` under its [section]; flags win.\n", HERALD_VERSION);
    for (size_t i = 0; i < NOPTS; i++) {
        char flag[64];
        size_t n = (size_t)snprintf(flag, sizeof flag, "--%s", opts[i].flag ? opts[i].flag : opts[i].key);
        for (size_t j = 2; j < n; j++) if (flag[j] == '_') flag[j] = '-';
        if (i == 0 || strcmp(opts[i].section, opts[i - 1].section)) fprintf(out, "\n[%s]\n", opts[i].section);
        /* An empty default means "none": the help text says what that does. */
        if (*opts[i].def) fprintf(out, "  %-22s %s (default %s)\n", flag, opts[i].help, opts[i].def);
        else fprintf(out, "  %-22s %s\n", flag, opts[i].help);
    }
    fprintf(out, "\n[namespace NAME]  (per namespace; [namespace *] sets the default for all)\n"
                 "  --ns NAME.KEY=VALUE    set a namespace option, e.g. --ns chat.history_size=500\n");
    for (size_t i = 0; i < NNSOPTS; i++)
        fprintf(out, "  %-22s %s (default %s)\n", ns_opts[i].key, ns_opts[i].help, ns_opts[i].def);
    fprintf(out, "\n[apikey NAME]  (a REST credential; with none configured the REST API is open)\n"
                 "  --apikey NAME.KEY=VALUE  e.g. --apikey backend.secret=... --apikey backend.publish=orders,chat\n"
                 "  secret                 the key itself, sent as Authorization: Bearer <secret> (16+ characters)\n"
                 "  publish                namespaces it may publish to, comma-separated, or * (default: none)\n"
                 "  admin                  may use operator endpoints (on/off, default off)\n"
                 "  requests_per_minute    REST requests with this key per minute, a batch counting its items,\n"
                 "                         instead of limits.rest_per_minute (429); 0: no limit (default 6000)\n");
    fprintf(out, "\n[webhook NAME]  (an outbound webhook, docs/webhooks.md; at most 16)\n"
                 "  --webhook NAME.KEY=VALUE  e.g. --webhook orders.url=http://127.0.0.1:9000/hook\n"
                 "  url                    http://host[:port]/path or https://host[:port]/path\n"
                 "  ca_file                https: PEM file of the CAs to trust (default: the system store)\n"
                 "  secret                 the HMAC-SHA256 signing key (16+ characters)\n"
                 "  events                 publication, channel.occupied, channel.vacated, presence.member_added,\n"
                 "                         presence.member_removed, order.created, order.status, seat.booked,\n"
                 "                         seat.expired, ticket.changed, comma-separated, or * for all\n"
                 "  namespaces             where publication events come from, comma-separated, or * (default *)\n"
                 "  timeout                per request (default 5s)\n"
                 "  max_attempts           failed posts of an event before it is dead-lettered (default 10)\n"
                 "  max_age                age of an event after which a failure dead-letters it (default 24h)\n"
                 "  batch_size             events per request, 1-100 (default 10)\n"
                 "  retry_base, retry_max  backoff: full jitter up to retry_base * 2^(attempt-1), capped (1s, 5m)\n");
}

/* Applies "--ns NAME.KEY=VALUE", "--apikey ..." or "--webhook ..." (@kind
 * 'n', 'a' or 'w'). Return: NULL, or why not. */
static const char *apply_section_flag(config_t *c, const char *arg, int kind)
{
    char name[80], key[64];
    const char *dot = strchr(arg, '.'), *eq = dot ? strchr(dot, '=') : NULL;

    if (!dot || !eq || (size_t)(dot - arg) >= sizeof name || (size_t)(eq - dot - 1) >= sizeof key)
        return kind == 'a' ? "expected NAME.KEY=VALUE, e.g. backend.secret=..."
             : kind == 'w' ? "expected NAME.KEY=VALUE, e.g. orders.url=http://127.0.0.1:9000/hook"
                           : "expected NAME.KEY=VALUE, e.g. chat.history_size=500";
    memcpy(name, arg, (size_t)(dot - arg));
    name[dot - arg] = '\0';
    memcpy(key, dot + 1, (size_t)(eq - dot - 1));
    key[eq - dot - 1] = '\0';
    if (kind == 'w') return apply_webhook(c, name, key, eq + 1, -1);
    return kind == 'a' ? apply_apikey(c, name, key, eq + 1) : apply_ns(c, name, key, eq + 1, -1);
}

static enum config_args parse_args(config_t *c, int argc, char **argv, char *err, size_t errlen)
{
    const char *config_path = NULL;

    config_defaults(c);
    /* First pass: --help, --version and --config, so the file is applied
     * before any flag overrides it, wherever the flags stand. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { config_usage(stdout); return CONFIG_ARGS_EXIT_OK; }
        if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("herald %s (data format %d, history format %d)\n", HERALD_VERSION, DATADIR_FORMAT_VERSION,
                   HIST_FORMAT_VERSION);
            return CONFIG_ARGS_EXIT_OK;
        }
        if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (i + 1 >= argc) { snprintf(err, errlen, "%s needs a file name", a); return CONFIG_ARGS_ERROR; }
            config_path = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            config_path = a + 9;
        }
    }
    if (config_path) snprintf(c->config_path, sizeof c->config_path, "%s", config_path);
    if (config_path && config_load_file(c, config_path, err, errlen)) return CONFIG_ARGS_ERROR;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val, *eq, *why;
        const struct opt *o;

        if (!strcmp(a, "-c") || !strcmp(a, "--config")) { i++; continue; }
        if (!strncmp(a, "--config=", 9)) continue;
        if (!strcmp(a, "--ns") || !strncmp(a, "--ns=", 5) || !strcmp(a, "--apikey") || !strncmp(a, "--apikey=", 9) ||
            !strcmp(a, "--webhook") || !strncmp(a, "--webhook=", 10)) {
            int kind = a[2], ak = kind == 'a' || kind == 'w';     /* their values hold secrets */
            size_t fl = kind == 'a' ? 8 : kind == 'w' ? 9 : 4;
            const char *v = a[fl] == '=' ? a + fl + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) { snprintf(err, errlen, "%.*s needs NAME.KEY=VALUE", (int)fl, a); return CONFIG_ARGS_ERROR; }
            if ((why = apply_section_flag(c, v, kind))) {
                /* Never echo a secret back. */
                snprintf(err, errlen, "%.*s %.*s: %s", (int)fl, a, ak ? (int)strcspn(v, "=") : (int)strlen(v), v, why);
                return CONFIG_ARGS_ERROR;
            }
            continue;
        }
        if (strncmp(a, "--", 2)) {
            snprintf(err, errlen, "unexpected argument '%s' (see herald --help)", a);
            return CONFIG_ARGS_ERROR;
        }
        eq = strchr(a, '=');
        o = find_flag(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
        if (!o) { snprintf(err, errlen, "unknown option '%s' (see herald --help)", a); return CONFIG_ARGS_ERROR; }
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else { snprintf(err, errlen, "%s needs a value", a); return CONFIG_ARGS_ERROR; }
        if ((why = apply(c, o, val))) {
            snprintf(err, errlen, "--%.*s %s: %s", (int)(eq ? (size_t)(eq - a - 2) : strlen(a + 2)), a + 2, val, why);
            return CONFIG_ARGS_ERROR;
        }
        c->where[o - opts] = -1;
    }
    ns_inherit(c);
    {
        const char *why = validate(c);
        if (why) {
            snprintf(err, errlen, "%s%s%s", config_path ? config_path : "", config_path ? ": " : "", why);
            return CONFIG_ARGS_ERROR;
        }
    }
    if (validate_auth(c, err, errlen) || validate_where(c, err, errlen) || validate_webhooks(c, err, errlen) ||
        validate_engine(c, err, errlen))
        return CONFIG_ARGS_ERROR;
    return CONFIG_ARGS_RUN;
}

enum config_args config_parse_args(config_t *c, int argc, char **argv, char *err, size_t errlen)
{
    enum config_args r = parse_args(c, argc, argv, err, errlen);

    /* Only a run keeps what was allocated (the namespaces, the API keys):
     * after --help or an error the caller has nothing to free. */
    if (r != CONFIG_ARGS_RUN) config_free(c);
    return r;
}
