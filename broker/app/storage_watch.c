/* broker/app/storage_watch.c - see storage_watch.h. */
#include "app/storage_watch.h"
#include "herald.h"
#include "core/pubpipe.h"
#include "log.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

static const char *const names[] = { "ok", "warning", "critical", "full" };

static struct {
    struct storage_status st;
    int map_level, fs_level;
} w = { .st = { .status = "ok" } };

static int level_of(double pct)
{
    return pct >= 95 ? 3 : pct >= 85 ? 2 : pct >= 75 ? 1 : 0;
}

static void crossed(const char *what, int *last, int now, double pct)
{
    static const int marks[] = { 0, 75, 85, 95 };
    /* One line per threshold crossed, even when one refresh jumps several. */
    for (int l = *last + 1; l <= now; l++)
        hlog(LOG_WARN, "storage", "%s usage crossed %d%% (%.1f%%)", what, marks[l], pct);
    if (now < *last)
        hlog(LOG_INFO, "storage", "%s usage back under %d%% (%.1f%%)", what, marks[*last], pct);
    *last = now;
}

void storage_watch_tick(void)
{
    struct statvfs fs;
    hist_t *h = pubpipe_store();

    if (h) {
        hist_usage(h, &w.st.map_size, &w.st.used, &w.st.entries);
        w.st.map_max = srv.cfg.map_size_max > w.st.map_size ? srv.cfg.map_size_max : w.st.map_size;
        w.st.map_pct = w.st.map_max ? 100.0 * (double)w.st.used / (double)w.st.map_max : 0;
    }
    if (statvfs(srv.cfg.data_dir, &fs) == 0 && fs.f_blocks)
        w.st.fs_pct = 100.0 * (double)(fs.f_blocks - fs.f_bavail) / (double)fs.f_blocks;
    crossed("history map", &w.map_level, level_of(w.st.map_pct), w.st.map_pct);
    crossed("data directory filesystem", &w.fs_level, level_of(w.st.fs_pct), w.st.fs_pct);
    w.st.level = w.map_level > w.fs_level ? w.map_level : w.fs_level;
    w.st.status = names[w.st.level];
}

void storage_watch_status(struct storage_status *out) { *out = w.st; }

void storage_watch_reasons(json_t *reasons)
{
    char buf[160];
    if (w.map_level) {
        snprintf(buf, sizeof buf, "history map %.1f%% of history.map_size_max", w.st.map_pct);
        json_array_append_new(reasons, json_string(buf));
    }
    if (w.fs_level) {
        snprintf(buf, sizeof buf, "data directory filesystem %.1f%% full", w.st.fs_pct);
        json_array_append_new(reasons, json_string(buf));
    }
}
