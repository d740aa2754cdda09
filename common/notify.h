/* common/notify.h - telling the service manager how the broker is doing:
 * systemd's readiness protocol (sd_notify(3)), spoken directly, so Herald
 * needs no libsystemd. */
#ifndef HERALD_NOTIFY_H
#define HERALD_NOTIFY_H

/* notify_send() - send @state ("READY=1", "STOPPING=1", ...) to the socket
 * named by $NOTIFY_SOCKET, as one datagram. Without $NOTIFY_SOCKET (not
 * started by systemd as Type=notify) it does nothing.
 * Return: 1 sent, 0 nothing to send to, or -errno (the socket cannot be
 * reached; the caller logs it and goes on). */
int notify_send(const char *state);

#endif
