/* storage/datadir.h - the broker's data directory: creating it, claiming it
 * and checking that it is Herald's.
 *
 * Owns: the directory's lock file and its format marker. Does not own what
 * lives inside (history, later). A data directory holds a file FORMAT with the
 * line "herald-data <version>"; a directory that has other files but no
 * FORMAT is not Herald's and is refused rather than initialised over, and a
 * FORMAT of another version is refused rather than misread. An exclusive
 * flock() on LOCK keeps two brokers off one directory. */
#ifndef HERALD_DATADIR_H
#define HERALD_DATADIR_H

#include <stddef.h>

#define DATADIR_FORMAT_VERSION 1

typedef struct datadir {
    char *path;
    int lock_fd;
} datadir_t;

/* datadir_open() - create @path if missing (mode 0700, parents too), claim it
 * and check or write its format marker.
 * @dd: [out] caller storage, filled on success.
 * @err: [out] on failure, a message for the operator naming the path.
 * Return: 0, or -1. */
int datadir_open(datadir_t *dd, const char *path, char *err, size_t errlen);

/* datadir_close() - release the lock; the directory stays. */
void datadir_close(datadir_t *dd);

#endif
