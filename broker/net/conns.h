/* broker/net/conns.h - find a live connection by serial number.
 *
 * Owns: the serial -> object map (srv.conns). Work that finishes later than it
 * started (a publication's commit, a history read) remembers the serial of
 * the WebSocket session or HTTP request that asked, never a pointer:
 * libwebsockets frees per-session data when the connection closes and may
 * reuse the memory for a new one, while a serial is never reused.
 * Loop thread only. */
#ifndef HERALD_CONNS_H
#define HERALD_CONNS_H

#include <stdint.h>

/* conn_register() - make @obj findable by *@serial, which conn_register()
 * assigns; @serial must point into @obj (it is the map key).
 * Return: 0, or -ENOMEM. */
int conn_register(void *obj, uint64_t *serial);

/* conn_unregister() - forget *@serial; harmless if it was not registered. */
void conn_unregister(uint64_t *serial);

/* conn_find() - the object registered under @serial, or NULL if it is gone. */
void *conn_find(uint64_t serial);

#endif
