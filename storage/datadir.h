/* storage/datadir.h - the broker's data directory: creating it, claiming it
 * and checking that it is Herald's.
 *
 * Owns: the directory's lock file and its format marker. Does not own what
 * lives inside (history, later). A data directory holds a file FORMAT with the
 * line "herald-data <version>"; a directory that has other files but no
 * FORMAT is not Herald's and is refused rather than initialised over, and a
 * FORMAT of another version is refused rather than misread, with a message
 * naming both versions (docs/operations.md, Upgrades). Version 1 is the only
 * one so far: a release that changes the layout bumps DATADIR_FORMAT_VERSION
 * and either upgrades older directories in place here (idempotently, writing
 * FORMAT last, so a crash mid-upgrade leaves the old marker and the upgrade
 * runs again) or keeps refusing them. An exclusive flock() on LOCK keeps two
 * brokers off one directory. */
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

/* datadir_read_format() - the version in @dir's FORMAT marker, without
 * claiming the directory (herald backup reads its source's).
 * @version: [out] written on success.
 * @err: [out] on failure, a message naming the file.
 * Return: 0; 1 if there is no FORMAT; -1 if it cannot be read or is not a
 * Herald marker. */
int datadir_read_format(const char *dir, int *version, char *err, size_t errlen);

/* datadir_write_format() - write @dir's FORMAT marker for @version, flushed
 * to disk. Return: 0, or -1 with @err naming the file. */
int datadir_write_format(const char *dir, int version, char *err, size_t errlen);

/* datadir_close() - release the lock; the directory stays. */
void datadir_close(datadir_t *dd);

#endif
