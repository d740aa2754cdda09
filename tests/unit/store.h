/* tests/unit/store.h - a history store of its own for each unit test file
 * that drives storage/ through the real LMDB code (test_hist_write,
 * test_shop, test_seatmap, test_tickets_db): a temporary directory, the
 * store opened in it as cmocka's group setup, and both gone in teardown.
 * The test file defines STORE_NAME (a word for the directory's name) before
 * including this, and uses `h`. */
#ifndef HERALD_TEST_STORE_H
#define HERALD_TEST_STORE_H

#include "unit.h"
#include "hist.h"

#ifndef STORE_NAME
#error "define STORE_NAME before including store.h"
#endif

static char store_dir[] = "/tmp/herald-test-" STORE_NAME "-XXXXXX";
static hist_t *h;

/* cmocka group setup: a fresh directory and a small store in it. */
static int setup(void **state)
{
    struct hist_opts o = { .dir = store_dir, .map_size = 1 << 20, .map_size_max = 64 << 20 };
    char err[256];
    (void)state;
    if (!mkdtemp(store_dir)) return -1;
    return hist_open(&h, &o, err, sizeof err);
}

/* cmocka group teardown: the store closed, the directory removed. */
static int teardown(void **state)
{
    char cmd[sizeof store_dir + 16];
    (void)state;
    hist_close(h);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", store_dir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
