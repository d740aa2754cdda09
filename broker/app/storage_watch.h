/* broker/app/storage_watch.h - how full the store is, and the alerts about it.
 *
 * Owns: the storage usage figures refreshed once a second (LMDB map usage
 * against history.map_size_max, and the data directory's filesystem), the
 * alert level they give, and the log line written once each time a level is
 * crossed: 75% (warning), 85% (critical), 95% (full). Health, metrics and
 * sys:stats read the cached figures. Loop thread only. */
#ifndef HERALD_STORAGE_WATCH_H
#define HERALD_STORAGE_WATCH_H

#include <stddef.h>
#include <stdint.h>

struct storage_status {
    size_t map_size, map_max, used;
    uint64_t entries;
    double map_pct;               /* used / map_max, in percent */
    double fs_pct;                /* the data directory's filesystem, in percent */
    int level;                    /* 0 ok, 1 >= 75%, 2 >= 85%, 3 >= 95% (the worse of the two) */
    const char *status;           /* "ok", "warning", "critical", "full" */
};

/* storage_watch_tick() - refresh the figures; log a warning when a
 * threshold is crossed upwards, a notice when back under. */
void storage_watch_tick(void);

/* storage_watch_status() - the figures of the last refresh. */
void storage_watch_status(struct storage_status *out);

/* storage_watch_reasons() - append to @reasons (a JSON array) why the store
 * is not "ok"; nothing when it is. */
struct json_t;
void storage_watch_reasons(struct json_t *reasons);

#endif
