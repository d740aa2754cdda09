/* tests/unit/test_datadir.c - storage/datadir.c: creating, reopening,
 * locking, and refusing directories that are not Herald's. */
#include "unit.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datadir.h"

static char base[] = "/tmp/herald-test-datadir-XXXXXX";
static int ndirs;

static int setup(void **state)
{
    (void)state;
    return mkdtemp(base) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *fresh_path(const char *suffix)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/d%d%s", base, ndirs++, suffix);
    return path;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char p[600];
    FILE *f;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int exists(const char *dir, const char *name)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void test_create_fresh(void **state)
{
    char path[512], fpath[600], line[64];
    char err[512] = "";
    struct stat st;
    datadir_t dd;
    FILE *f;
    (void)state;

    /* Parents are created too. */
    snprintf(path, sizeof path, "%s", fresh_path("/a/b/c"));
    assert_int_equal(datadir_open(&dd, path, err, sizeof err), 0);
    assert_non_null(dd.path);
    assert_string_equal(dd.path, path);
    assert_true(dd.lock_fd >= 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(fpath, sizeof fpath, "%s/FORMAT", path);
    f = fopen(fpath, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    snprintf(fpath, sizeof fpath, "herald-data %d\n", DATADIR_FORMAT_VERSION);
    assert_string_equal(line, fpath);
    assert_true(exists(path, "LOCK"));
    datadir_close(&dd);
    assert_null(dd.path);
    assert_int_equal(dd.lock_fd, -1);
    datadir_close(&dd);                     /* twice is harmless */

    /* Reopening works and leaves FORMAT as it was. */
    assert_int_equal(datadir_open(&dd, path, err, sizeof err), 0);
    datadir_close(&dd);

    /* An existing empty directory is initialised. */
    snprintf(path, sizeof path, "%s", fresh_path(""));
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(datadir_open(&dd, path, err, sizeof err), 0);
    assert_true(exists(path, "FORMAT"));
    datadir_close(&dd);

    /* A trailing slash names the same directory. */
    snprintf(fpath, sizeof fpath, "%s/", path);
    assert_int_equal(datadir_open(&dd, fpath, err, sizeof err), 0);
    datadir_close(&dd);
}

static void test_locked(void **state)
{
    char path[512], err[512] = "";
    datadir_t a, b;
    (void)state;

    snprintf(path, sizeof path, "%s", fresh_path(""));
    assert_int_equal(datadir_open(&a, path, err, sizeof err), 0);
    err[0] = '\0';
    assert_int_equal(datadir_open(&b, path, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "in use"));
    assert_null(b.path);
    assert_int_equal(b.lock_fd, -1);
    datadir_close(&b);
    datadir_close(&a);
    /* Released on close: a second broker can take it now. */
    assert_int_equal(datadir_open(&b, path, err, sizeof err), 0);
    datadir_close(&b);
}

/* A directory that is not Herald's is refused and not touched: no FORMAT
 * written, and no LOCK file left behind among someone else's files. */
static void test_foreign_dir(void **state)
{
    char path[512], err[512] = "";
    datadir_t dd;
    (void)state;

    snprintf(path, sizeof path, "%s", fresh_path(""));
    assert_int_equal(mkdir(path, 0700), 0);
    write_text(path, "notes.txt", "mine\n");
    assert_int_equal(datadir_open(&dd, path, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "not a Herald data directory"));
    assert_null(dd.path);
    assert_false(exists(path, "FORMAT"));
    if (exists(path, "LOCK")) {
        print_error("datadir_open() refused %s but left a LOCK file in it\n", path);
        fail();
    }
}

static void test_foreign_dir_only_hidden_file(void **state)
{
    char path[512], err[512] = "";
    datadir_t dd;
    (void)state;

    snprintf(path, sizeof path, "%s", fresh_path(""));
    assert_int_equal(mkdir(path, 0700), 0);
    write_text(path, ".hidden", "x");
    assert_int_equal(datadir_open(&dd, path, err, sizeof err), -1);
    assert_false(exists(path, "FORMAT"));
}

static void test_wrong_format(void **state)
{
    char path[512], err[512] = "";
    datadir_t dd;
    (void)state;

    snprintf(path, sizeof path, "%s", fresh_path(""));
    assert_int_equal(mkdir(path, 0700), 0);
    write_text(path, "FORMAT", "herald-data 2\n");
    assert_int_equal(datadir_open(&dd, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "version 2"));
    assert_null(dd.path);

    write_text(path, "FORMAT", "herald-data 0\n");
    assert_int_equal(datadir_open(&dd, path, err, sizeof err), -1);

    write_text(path, "FORMAT", "something else\n");
    err[0] = '\0';
    assert_int_equal(datadir_open(&dd, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "FORMAT"));

    write_text(path, "FORMAT", "");
    assert_int_equal(datadir_open(&dd, path, err, sizeof err), -1);

    /* The refusal releases the lock: fixing FORMAT makes it open. */
    write_text(path, "FORMAT", "herald-data 1\n");
    assert_int_equal(datadir_open(&dd, path, err, sizeof err), 0);
    datadir_close(&dd);
}

/* The marker without claiming the directory (herald backup reads its
 * source's and writes the same into the copy); the refusal names both versions. */
static void test_read_write_format(void **state)
{
    char path[512], err[512] = "";
    datadir_t dd;
    int v = -1;
    (void)state;

    snprintf(path, sizeof path, "%s", fresh_path(""));
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(datadir_read_format(path, &v, err, sizeof err), 1);
    assert_int_equal(v, -1);
    assert_int_equal(datadir_write_format(path, 7, err, sizeof err), 0);
    assert_int_equal(datadir_read_format(path, &v, err, sizeof err), 0);
    assert_int_equal(v, 7);
    assert_false(exists(path, "LOCK"));

    assert_int_equal(datadir_open(&dd, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "data format version 7 was written by a newer herald"));
    assert_non_null(strstr(err, "reads version 1"));

    write_text(path, "FORMAT", "herald-data\n");
    assert_int_equal(datadir_read_format(path, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a Herald format marker"));
    assert_int_equal(datadir_write_format("/nonexistent-herald-dir", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent-herald-dir/FORMAT"));
}

static void test_not_a_dir(void **state)
{
    char path[512], err[512] = "";
    datadir_t dd;
    FILE *f;
    (void)state;

    snprintf(path, sizeof path, "%s", fresh_path(".file"));
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(datadir_open(&dd, path, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_int_equal(datadir_open(&dd, "", err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_fresh),
        cmocka_unit_test(test_locked),
        cmocka_unit_test(test_foreign_dir),
        cmocka_unit_test(test_foreign_dir_only_hidden_file),
        cmocka_unit_test(test_wrong_format),
        cmocka_unit_test(test_read_write_format),
        cmocka_unit_test(test_not_a_dir),
    };
    return cmocka_run_group_tests_name("datadir", tests, setup, teardown);
}
