/* storage/migrate.h - `herald migrate`: carry a stopped LMDB node's channels
 * into an unused prefix of the Redis engine, each channel keeping its epoch
 * and offsets, so clients' saved positions still recover on the cluster.
 *
 * Owns: reading a data directory's history store in one read transaction
 * and writing the engine's key layout for it (engine_redis.c, engine_state.c
 * headers) over one blocking hiredis connection, pipelined. Does not own:
 * the settings (broker/config.c), the command line (broker/main.c), the
 * engine at run time (engine_redis.c).
 * What is carried, per channel C under prefix P:
 *   - P m:C {offset, epoch} from the channel's record, exactly;
 *   - P s:C the stored publications the publish script would still keep:
 *     the last history_size of them, less those older than history_ttl
 *     (counted from now), with their offsets, ts and record bytes (the LMDB
 *     log and the stream hold the same MessagePack record), expiring
 *     history_ttl after the newest one, as the script's PEXPIRE would;
 *   - a state channel's keys (P st:C "<version>:<value>", P sk:C) and its
 *     version floor (P m:C sfloor);
 *   - idempotency keys still inside history.idempotency_window, with a
 *     request digest (P i:C K, expiring when the window would have ended);
 *   - the rows the adapters keep beside a state, in their engine files'
 *     keys: seat holds' expiries (timers "seat:<id>" -> P sx:C, P sxmaps)
 *     and waitlists ("wait:<section>" -> P sw:C:<section>), engine_seats.c;
 *     commerce orders ("order:<id>" -> P so:C, JSON) and payment events
 *     still inside [adapter commerce] webhook_window ("event:<id>" ->
 *     P se:C:<id>), engine_shop.c; the tickets' sequence and comments
 *     ("seq", "comment:..." -> P ta:C), engine_tickets.c;
 *   - each webhook's queue and dead letters, under their ids, with their
 *     attempts (P wq:H, P we:H, P wa:H; P wdq:H, P wd:H, P wdr:H), as
 *     engine_webhooks.c keeps them. The ids go on above the carried ones:
 *     the engine's counter (P wseq), left unset, starts at Redis' clock in
 *     microseconds, far above the store's counter, which starts at 1.
 * What is not carried is counted per kind (migrate_report_t.left):
 * idempotency keys written before digests existed, rows and timers no
 * adapter above owns. Unless told to skip
 * them, any such data stops the migration before anything is written.
 * DESIGN: offline only. The engine numbers offsets in Redis (HINCRBY in a
 * script), so a channel carried behind a running cluster's back could be
 * numbered twice: the target prefix must hold no key at all, and the data
 * directory is claimed with the broker's own lock (datadir.h), so neither
 * a broker on the directory nor a cluster on the prefix can be running. The
 * check and the writes are not atomic against a node started on the prefix
 * mid-migration: the procedure (docs/cluster.md) starts the cluster after. */
#ifndef HERALD_MIGRATE_H
#define HERALD_MIGRATE_H

#include "hist.h"

#include <stdint.h>
#include <stdio.h>

/* The kinds of data the migration leaves behind. */
enum migrate_left {
    MIGRATE_LEFT_TIMERS,          /* timers of custom operations other than seat holds (none so far) */
    MIGRATE_LEFT_AUX,             /* rows beside a state that no adapter above owns */
    MIGRATE_LEFT_IDEM_OLD,        /* idempotency keys in their window but without a digest */
    MIGRATE_LEFT_N
};

typedef struct migrate_opts {
    const char *data_dir;         /* the LMDB node's data directory (must exist) */
    const char *host;             /* Redis: host name or address, or a unix socket path with port 0 */
    int port;
    const char *password;         /* "" or NULL: no AUTH */
    unsigned database;
    const char *prefix;           /* the engine's key prefix P */
    unsigned timeout_ms;          /* connect and command timeout */
    hist_policy_fn policy;        /* retention of each channel ({0, 0}: its namespace keeps no history) */
    void *policy_ctx;
    int64_t idem_window_ms;       /* history.idempotency_window */
    int64_t pay_window_ms;        /* [adapter commerce] webhook_window */
    int skip_unsupported;         /* go on when data of a kind above is present */
    FILE *progress;               /* a line now and then while writing; NULL: quiet */
} migrate_opts_t;

typedef struct migrate_report {
    uint64_t channels;            /* channel records carried */
    uint64_t publications;        /* stream entries written */
    uint64_t trimmed;             /* stored publications not written: beyond history_size or history_ttl */
    uint64_t state_channels, state_keys;
    uint64_t idem_keys;
    uint64_t seat_holds, waitlists, orders, pay_events, ticket_rows;
    uint64_t wh_queued, wh_dead;  /* webhook events queued, dead letters */
    uint64_t bytes;               /* record and state value bytes written */
    double seconds;               /* reading and writing, from the first key written */
    uint64_t left[MIGRATE_LEFT_N];
} migrate_report_t;

/* Outcomes the caller reports (positive); failures are -1 with @err. */
enum {
    MIGRATE_E_UNSUPPORTED = 1,    /* data of a kind not carried is present: nothing was written */
    MIGRATE_E_IN_USE,             /* the prefix holds keys, or the data directory is claimed */
};

/* migrate_left_name() - how a report names kind @k (an enum migrate_left). */
const char *migrate_left_name(int k);

/* migrate_run() - read the store under @o->data_dir and write it into Redis.
 * @r: [out] zeroed, then filled as far as the migration went (the counts
 * of data not carried also with MIGRATE_E_UNSUPPORTED).
 * @err: [out] with -1 or a positive outcome, a message for the operator.
 * Return: 0; MIGRATE_E_UNSUPPORTED or MIGRATE_E_IN_USE, nothing written;
 * -1: the directory or Redis could not be used, or a write failed (then
 * part of the prefix may be written: @err says so). Blocking; one thread. */
int migrate_run(const migrate_opts_t *o, migrate_report_t *r, char *err, size_t errlen);

#endif
