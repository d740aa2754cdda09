/* broker/config.h - Herald's settings: defaults, the config file, the flags.
 *
 * Owns: struct config and the one table of options that drives all three
 * sources and `herald --help`, so a setting cannot exist in one and not the
 * others. Precedence: built-in default < config file < command-line flag.
 * The file is INI (read with libinih): `[section]` headers, `key = value`
 * lines, comments starting with ';' or '#'. A bad file stops the broker at
 * start with the file, line and reason. */
#ifndef HERALD_CONFIG_H
#define HERALD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "log.h"

/* Per-namespace options. A channel `ns:rest` takes the options of section
 * [namespace ns]; keys a namespace does not set, and channels of namespaces
 * with no section (and of the default namespace, names without ':'), take
 * those of [namespace *], whose own defaults are built in. */
/* Who may subscribe to a namespace's channels. */
enum sub_perm { SUB_ANYONE = 0, SUB_AUTHENTICATED, SUB_GRANTED };
/* Who may publish to them over WebSocket (REST publishers have API keys). */
enum pub_perm { PUB_ANYONE = 0, PUB_AUTHENTICATED, PUB_SUBSCRIBERS, PUB_GRANTED, PUB_SERVER };

typedef struct ns_config {
    char name[65];                /* "*" for the template */
    uint32_t set;                 /* bit i: option i was set explicitly */
    int where[32];                /* where option i was set, as config_t.where (for messages) */
    int history;                  /* keep a durable log of publications */
    unsigned history_size;        /* entries kept per channel */
    unsigned history_ttl_ms;      /* age after which entries are pruned */
    int subscribe;                /* enum sub_perm */
    int publish;                  /* enum pub_perm */
    int user_list;                /* the name after "ns:" lists the users allowed */
    int moderators;               /* "role": "moderator" may edit/delete others' publications */
    int presence;                 /* track who is subscribed */
    int join_leave;               /* push join/leave events */
    unsigned presence_grace_ms;   /* a leave waits this long for the user to come back */
    unsigned presence_tier;       /* above this many members: counts, samples, batched events */
    int signals;                  /* allow the signal op */
    unsigned signal_rate;         /* signals per second per connection */
    int state;                    /* channels hold a keyed state (state channels) */
    unsigned seat_hold_max_ms;    /* seat maps: the longest hold a request may ask for */
    unsigned seat_offer_ttl_ms;   /* seat maps: how long a waitlist offer holds its seat */
    unsigned waitlist_max;        /* seat maps: users one section's waitlist may hold */
    int seat_release_on_disconnect; /* seat maps: a user's holds go with their last connection */
    unsigned seat_release_grace_ms; /* seat maps: ... unless they reconnect within this long */
    int seat_client_confirm;      /* seat maps: clients may confirm (book) over WebSocket */
} ns_config_t;

/* A backend's REST credential: [apikey NAME]. */
typedef struct apikey {
    char name[65];
    char secret[256];
    char publish[1024];           /* comma-separated namespaces, "*" for all, "" for none */
    int admin;                    /* may use operator endpoints */
    unsigned requests_per_minute; /* REST requests (a batch: its items) per minute with this key; 0: no limit */
} apikey_t;

/* The default of [apikey NAME] requests_per_minute. */
#define APIKEY_RATE_DEFAULT 6000

/* The events a webhook may ask for (webhook_t.events is a mask of them). */
enum webhook_event {
    WH_EV_PUBLICATION = 1 << 0,   /* a publication on one of the webhook's namespaces */
    WH_EV_OCCUPIED = 1 << 1,      /* channel.occupied: a channel got its first subscriber */
    WH_EV_VACATED = 1 << 2,       /* channel.vacated: its last subscriber left */
    WH_EV_MEMBER_ADDED = 1 << 3,  /* presence.member_added */
    WH_EV_MEMBER_REMOVED = 1 << 4, /* presence.member_removed */
    WH_EV_ORDER_CREATED = 1 << 5, /* order.created: the commerce adapter created an order */
    WH_EV_ORDER_STATUS = 1 << 6,  /* order.status: an order changed status */
    WH_EV_SEAT_BOOKED = 1 << 7,   /* seat.booked: a confirm booked seats */
    WH_EV_SEAT_EXPIRED = 1 << 8,  /* seat.expired: a seat hold (or offer) ran out */
    WH_EV_TICKET_CHANGED = 1 << 9, /* ticket.changed: a support ticket was created or changed */
};
#define WH_EV_ALL 0x3ff
/* The most [webhook] sections a config may have. */
#define WEBHOOK_MAX 16

/* An outbound webhook: [webhook NAME] (docs/webhooks.md). */
typedef struct webhook_conf {
    char name[65];
    int line;                     /* the section's first line, for messages */
    char url[1024];               /* http(s)://host[:port]/path */
    char host[256];               /* parsed from url */
    char port[8];
    char path[1024];
    int tls;                      /* the url is https:// */
    char ca_file[1024];           /* PEM CAs trusted for an https url; "": the system store */
    char secret[256];
    unsigned events;              /* enum webhook_event mask; 0 until set */
    char namespaces[1024];        /* comma-separated, "*" for all: where publication events come from */
    unsigned timeout_ms;
    unsigned max_attempts;
    unsigned max_age_ms;
    unsigned batch_size;
    unsigned retry_base_ms;       /* backoff: full jitter over retry_base * 2^(attempt-1) ... */
    unsigned retry_max_ms;        /* ... capped at this */
} webhook_conf_t;

enum durability { DURABILITY_SYNC = 0, DURABILITY_INTERVAL };
/* Where channels live: [engine] type (docs/cluster.md). */
enum engine_type { ENGINE_LMDB = 0, ENGINE_REDIS };
enum log_requests { LOG_REQ_OFF = 0, LOG_REQ_ERRORS, LOG_REQ_ALL };

/* Room in config_t for the options of the table in config.c ([namespace] and
 * [apikey] options are not counted). */
#define CONFIG_OPTS_MAX 96

typedef struct config {
    char config_path[1024];       /* --config, or "" */
    /* [server] */
    char bind[256];
    int port;
    char data_dir[1024];
    unsigned shutdown_timeout_ms;
    /* [limits] */
    size_t max_message_size;
    size_t send_queue_max;
    unsigned max_connections;
    unsigned max_subscriptions;
    unsigned max_channels;
    /* [websocket] */
    unsigned connect_timeout_ms;
    unsigned ping_interval_ms;
    size_t write_batch_max;
    unsigned coalesce_max_ms;
    unsigned latency_goal_ms;
    int batch_sends;              /* websocket.batch_sends: net/sendring.h */
    unsigned threads;             /* server.threads: threads making socket writes (0: one per CPU) */
    /* [sse] */
    unsigned sse_heartbeat_ms;
    unsigned sse_retry_ms;
    /* [log] */
    enum log_level log_level;
    enum log_format log_format;
    int log_requests;             /* enum log_requests */
    /* [history] */
    enum durability durability;
    unsigned sync_interval_ms;
    unsigned idempotency_window_ms; /* how long a publish's idempotency_key is remembered */
    unsigned max_queue_delay_ms;  /* writes are refused (135) while the oldest uncommitted one is older; 0: never */
    size_t map_size;
    size_t map_size_max;
    /* [auth] */
    int anonymous;
    char hmac_secret[512];
    char public_keys[2048];       /* comma-separated PEM files */
    unsigned leeway_ms;
    unsigned refresh_notice_ms;
    unsigned auth_failures_max;
    unsigned auth_cooloff_ms;
    char audience[512];           /* comma-separated; a token's aud must name one; empty: no check */
    char issuer[512];             /* comma-separated; a token's iss must be one; empty: no check */
    int require_exp;              /* tokens without exp are refused */
    /* [limits], per connection and per client address */
    unsigned messages_per_second;
    unsigned rest_per_minute;
    unsigned connects_per_second;
    unsigned connections_per_ip;
    char rate_limit_exempt[512];  /* comma-separated addresses or CIDR blocks */
    /* [server], transport security */
    char tls_cert[1024];
    char tls_key[1024];
    char allowed_origins[2048];   /* comma-separated; empty: any Origin */
    char cors_origins[2048];      /* comma-separated, or "*"; empty: no CORS */
    char trusted_proxies[512];    /* addresses or CIDR blocks whose X-Forwarded-For / Forwarded is believed */
    int allow_open_dev;           /* development mode may listen on a non-loopback address */
    /* [adapter commerce] (app/commerce.c, docs/adapters.md) */
    int commerce_enabled;
    char commerce_stock_channel[129];   /* the state channel holding stock and orders */
    char commerce_orders_ns[65];        /* orders:{id}#{owner} */
    char commerce_admin_channel[129];   /* every order change, for admins */
    char commerce_webhook_secret[256];  /* payment webhooks' HMAC key; "": no webhook endpoint */
    unsigned commerce_webhook_tolerance_ms; /* how far a signature's timestamp may be from now */
    unsigned commerce_webhook_window_ms;    /* how long a provider's event id is remembered */
    /* [adapter tickets] (app/tickets.c, docs/adapters.md) */
    int tickets_enabled;
    char tickets_dashboard_channel[129]; /* the state channel holding every ticket */
    char tickets_timeline_ns[65];        /* {ns}:{id}: each ticket's timeline */
    /* [adapter seats] (app/seats.c, docs/adapters.md) */
    char seats_feed[129];         /* the organiser's feed of issued tickets; "{event}" is the event id; "": none */
    /* [engine] (core/cluster.c, storage/engine.h, docs/cluster.md) */
    int engine_type;              /* enum engine_type */
    char engine_address[1024];    /* HOST:PORT or unix:PATH (checked by config_engine_address()) */
    char engine_password[256];    /* "": no AUTH */
    unsigned engine_database;     /* SELECT; 0 is Redis' default */
    char engine_prefix[65];       /* put before every key Herald writes */
    unsigned engine_connect_timeout_ms;
    unsigned engine_command_timeout_ms;
    unsigned engine_presence_heartbeat_ms; /* the presence lease is two of these (cluster_presence.h) */
    unsigned engine_webhook_lease_ms;   /* a webhook's delivery lease (storage/engine_webhooks.h) */
    int engine_tls;               /* TLS to Redis through storage/engine_tls.c's bridge */
    char engine_tls_ca[1024];     /* "": the system's CA store */
    char engine_tls_cert[1024];   /* client certificate (tls-auth-clients); "": none */
    char engine_tls_key[1024];
    char engine_tls_server_name[256]; /* SNI and the name verified; "": the address' host */
    int engine_tls_verify;        /* off: Redis' certificate is not checked (tests) */
    /* [namespace *] and [namespace NAME] */
    ns_config_t ns_template;
    /* The broker's own namespace "sys" (sys:stats) when no [namespace sys]
     * section exists: the template with history, state, presence and
     * signals off, so the once-a-second feed is neither stored nor synced. */
    ns_config_t ns_sys;
    ns_config_t *ns;
    size_t nns;
    /* [apikey NAME] */
    apikey_t *apikeys;
    size_t napikeys;
    /* [webhook NAME] */
    webhook_conf_t *webhooks;
    size_t nwebhooks;
    /* Where each option of the table in config.c got its value, for error
     * messages (config_where()): 0 built in, > 0 that line of config_path,
     * -1 its flag. The later setting wins, as for the value itself. */
    int where[CONFIG_OPTS_MAX];
} config_t;

/* config_defaults() - fill @c with the embedded defaults, the predefined
 * namespaces (chat, dm, scores, seats) included; config_free() frees them. */
void config_defaults(config_t *c);

/* config_load_file() - apply the settings in the INI file @path to @c, and
 * remember @path in @c->config_path and the line of each option set.
 * @err: [out] on failure, "<path>:<line>: <reason>".
 * Return: 0, or -1. */
int config_load_file(config_t *c, const char *path, char *err, size_t errlen);

enum config_args { CONFIG_ARGS_RUN = 0, CONFIG_ARGS_EXIT_OK, CONFIG_ARGS_ERROR };

/* config_parse_args() - apply defaults, then --config FILE, then every other
 * flag, to @c. --help and --version print and return CONFIG_ARGS_EXIT_OK.
 * @err: [out] on CONFIG_ARGS_ERROR, why.
 * After CONFIG_ARGS_RUN the caller owes a config_free(); otherwise nothing. */
enum config_args config_parse_args(config_t *c, int argc, char **argv, char *err, size_t errlen);

/* config_usage() - write the --help text, generated from the option table. */
void config_usage(FILE *out);

/* config_reload_logging() - read @c's config file again and take its [log]
 * settings (SIGHUP). Return: 0, or -1 with @err (nothing changed). */
int config_reload_logging(config_t *c, char *err, size_t errlen);

/* config_free() - free what config_defaults(), config_load_file() or
 * config_parse_args() allocated in @c. Safe to call twice. */
void config_free(config_t *c);

/* config_engine_address() - split [engine] address @addr: "unix:PATH"
 * (*@port set to 0, @host gets PATH) or "HOST:PORT" / "[V6]:PORT".
 * @host: [out] @hostlen bytes. Return: 0, or -1 with a static @why. */
int config_engine_address(const char *addr, char *host, size_t hostlen, int *port, const char **why);

/* config_where() - where @option got its value in @c, for an error message
 * about it: "<config_path>:<line>" when the config file set it (its last
 * setting there), "--<flag>" when a flag did.
 * @option: [in] "section.key" of an option of the table, e.g.
 *          "auth.hmac_secret" ([namespace] and [apikey] options are not tracked).
 * @buf: [out] @len bytes, NUL-terminated (truncated to fit); "" unless 1 is
 *       returned.
 * Return: 1 when @option was set, 0 when it has its built-in default,
 * -EINVAL when there is no such option. */
int config_where(const config_t *c, const char *option, char *buf, size_t len);

/* config_ns() - the options for the channel named @name (@len bytes, valid).
 * Return: a pointer into @c, valid until config_free(). */
const ns_config_t *config_ns(const config_t *c, const char *name, size_t len);

/* config_webhooks_for() - the webhooks of @c that want event @ev (one
 * enum webhook_event) on channel @chan (@len bytes): their names (pointers
 * into @c, valid until config_free()) in @out, at most WEBHOOK_MAX.
 * Return: how many. Any thread (the configuration is immutable once running). */
size_t config_webhooks_for(const config_t *c, unsigned ev, const char *chan, size_t len,
                           const char *out[WEBHOOK_MAX]);

/* config_webhook() - the webhook named @name, or NULL. */
const webhook_conf_t *config_webhook(const config_t *c, const char *name);

#endif
