/* broker/main.c - the herald executable: parse settings, then run the server,
 * or with `herald backup DEST`, copy a (running) broker's data. */
#include "herald.h"
#include "server.h"
#include "auth.h"
#include "config.h"
#include "hist.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

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

int main(int argc, char **argv)
{
    char err[1536];
    int r;

    if (argc > 1 && !strcmp(argv[1], "backup")) return backup(argc, argv);
    switch (config_parse_args(&srv.cfg, argc, argv, err, sizeof err)) {
    case CONFIG_ARGS_EXIT_OK: return 0;
    case CONFIG_ARGS_ERROR:
        fprintf(stderr, "herald: %s\n", err);
        return 2;
    case CONFIG_ARGS_RUN: break;
    }
    /* The token keys are settings too: a key file that cannot be used is
     * refused like any other bad value, with where it was named and exit
     * status 2, before anything starts. server_run() frees them. */
    if ((r = auth_init(err, sizeof err))) {
        fprintf(stderr, "herald: %s\n", err);
        auth_deinit();
        config_free(&srv.cfg);
        return r == AUTH_E_KEY_FILE ? 2 : 1;
    }
    log_set_level(srv.cfg.log_level);
    log_set_format(srv.cfg.log_format);
    hlog(LOG_INFO, "server", "herald %s starting (data dir %s)", HERALD_VERSION, srv.cfg.data_dir);
    return server_run();
}
