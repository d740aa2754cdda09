/* broker/net/conns.c - see conns.h. */
#include "net/conns.h"
#include "herald.h"

int conn_register(void *obj, uint64_t *serial)
{
    *serial = ++srv.next_serial;
    return hmap_put(&srv.conns, serial, sizeof *serial, obj);
}

void conn_unregister(uint64_t *serial)
{
    if (*serial) hmap_del(&srv.conns, serial, sizeof *serial);
    *serial = 0;
}

void *conn_find(uint64_t serial)
{
    return serial ? hmap_get(&srv.conns, &serial, sizeof serial) : NULL;
}
