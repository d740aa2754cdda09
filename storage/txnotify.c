/* storage/txnotify.c - see txnotify.h. */
#include "txnotify.h"
#include "chname.h"
#include "record.h"
#include "wbuf.h"

#include <errno.h>
#include <string.h>

int txnotify(hist_tx_t *tx, const char *name, const json_t *data)
{
    size_t len = name ? strlen(name) : 0;
    wbuf_t b;
    int rc;

    if (!len || !chname_valid(name, len, NULL)) return 0;
    wbuf_init(&b);
    rec_build(&b, hist_tx_now(tx), data, NULL, 0, NULL);
    rc = b.oom ? ENOMEM : hist_tx_publish(tx, name, len, b.p, b.len, NULL);
    wbuf_deinit(&b);
    return rc == EINVAL ? 0 : rc;
}
