/* common/notify.c - see notify.h.
 *
 * The protocol is one datagram of NEWLINE-separated VAR=VALUE assignments to
 * the AF_UNIX socket in $NOTIFY_SOCKET: a path, or an abstract name written
 * with a leading '@'. systemd documents it as stable for implementations
 * that do not link libsystemd; credentials travel with the datagram, which is
 * how systemd knows the sender is the service's main process. */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int notify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    size_t n, len = strlen(state);
    socklen_t salen;
    int fd, e = 0;

    if (!path || !*path) return 0;
    n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path) return -EINVAL;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@') sa.sun_path[0] = '\0';     /* an abstract name: no trailing NUL counted */
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
    if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) return -errno;
    if (sendto(fd, state, len, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) != (ssize_t)len) e = errno ? errno : EIO;
    close(fd);
    return e ? -e : 1;
}
