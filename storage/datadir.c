/* storage/datadir.c - see datadir.h. */
#include "datadir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static int mkdir_p(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof tmp) { errno = ENAMETOOLONG; return -1; }
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0700) && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0700) && errno != EEXIST) return -1;
    return 0;
}

/* Whether @path holds anything besides "." and "..". */
static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int empty = 1;

    if (!d) return 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "LOCK")) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

int datadir_read_format(const char *dir, int *version, char *err, size_t errlen)
{
    char fpath[4200], line[64];
    FILE *f;

    snprintf(fpath, sizeof fpath, "%s/FORMAT", dir);
    if (!(f = fopen(fpath, "r"))) {
        int e = errno;
        snprintf(err, errlen, "%s: cannot read: %s", fpath, strerror(e));
        return e == ENOENT ? 1 : -1;
    }
    if (!fgets(line, sizeof line, f) || sscanf(line, "herald-data %d", version) != 1) {
        fclose(f);
        snprintf(err, errlen, "%s: not a Herald format marker", fpath);
        return -1;
    }
    fclose(f);
    return 0;
}

int datadir_write_format(const char *dir, int version, char *err, size_t errlen)
{
    char fpath[4200];
    FILE *f;

    snprintf(fpath, sizeof fpath, "%s/FORMAT", dir);
    f = fopen(fpath, "w");
    if (!f || fprintf(f, "herald-data %d\n", version) < 0 || fflush(f) || fsync(fileno(f))) {
        snprintf(err, errlen, "%s: cannot write: %s", fpath, strerror(errno));
        if (f) fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

static int check_format(const char *dir, char *err, size_t errlen)
{
    int version, rc = datadir_read_format(dir, &version, err, errlen);

    if (rc == 1) {
        if (!dir_is_empty(dir)) {
            snprintf(err, errlen, "%s is not a Herald data directory (it has files but no FORMAT); "
                     "refusing to initialise over them", dir);
            return -1;
        }
        return datadir_write_format(dir, DATADIR_FORMAT_VERSION, err, errlen);
    }
    if (rc) return -1;
    /* Both versions in the message: the operator's choice is between the
     * herald that wrote the directory and the backup taken before the upgrade. */
    if (version > DATADIR_FORMAT_VERSION) {
        snprintf(err, errlen, "%s/FORMAT: data format version %d was written by a newer herald; this herald "
                 "(%s) reads version %d: run a herald that reads version %d, or restore the backup taken "
                 "before the upgrade", dir, version, HERALD_VERSION, DATADIR_FORMAT_VERSION, version);
        return -1;
    }
    if (version < DATADIR_FORMAT_VERSION) {
        snprintf(err, errlen, "%s/FORMAT: data format version %d is older than any this herald (%s) reads "
                 "(version %d)", dir, version, HERALD_VERSION, DATADIR_FORMAT_VERSION);
        return -1;
    }
    return 0;
}

int datadir_open(datadir_t *dd, const char *path, char *err, size_t errlen)
{
    char lpath[4200];
    int fd;

    memset(dd, 0, sizeof *dd);
    dd->lock_fd = -1;
    if (mkdir_p(path)) {
        snprintf(err, errlen, "data directory %s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    /* mkdir() says EEXIST for a file as well: without this, the access()
     * below would report a regular file as "Permission denied". */
    {
        struct stat st;
        if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "data directory %s: not a directory", path);
            return -1;
        }
    }
    if (access(path, R_OK | W_OK | X_OK)) {
        snprintf(err, errlen, "data directory %s: not readable and writable: %s", path, strerror(errno));
        return -1;
    }
    /* Refuse a foreign directory before creating anything in it. */
    snprintf(lpath, sizeof lpath, "%s/FORMAT", path);
    if (access(lpath, F_OK) && errno == ENOENT && !dir_is_empty(path)) {
        snprintf(err, errlen, "%s is not a Herald data directory (it has files but no FORMAT); "
                 "refusing to initialise over them", path);
        return -1;
    }
    snprintf(lpath, sizeof lpath, "%s/LOCK", path);
    fd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", lpath, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        snprintf(err, errlen, "data directory %s is in use by another herald (%s is locked)", path, lpath);
        close(fd);
        return -1;
    }
    if (check_format(path, err, errlen)) {
        close(fd);
        return -1;
    }
    dd->path = strdup(path);
    dd->lock_fd = fd;
    return dd->path ? 0 : -1;
}

void datadir_close(datadir_t *dd)
{
    if (dd->lock_fd >= 0) close(dd->lock_fd);
    free(dd->path);
    dd->path = NULL;
    dd->lock_fd = -1;
}
