/* broker/main.c - the herald executable: parse settings, run the server. */
#include "herald.h"
#include "server.h"
#include "config.h"
#include "log.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    char err[1024];

    switch (config_parse_args(&srv.cfg, argc, argv, err, sizeof err)) {
    case CONFIG_ARGS_EXIT_OK: return 0;
    case CONFIG_ARGS_ERROR:
        fprintf(stderr, "herald: %s\n", err);
        return 2;
    case CONFIG_ARGS_RUN: break;
    }
    log_set_level(srv.cfg.log_level);
    log_set_format(srv.cfg.log_format);
    hlog(LOG_INFO, "server", "herald %s starting (data dir %s)", HERALD_VERSION, srv.cfg.data_dir);
    return server_run();
}
