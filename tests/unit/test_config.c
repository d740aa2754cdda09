/* tests/unit/test_config.c - broker/config.c: defaults, flags in both forms,
 * sizes and durations, the INI file, precedence, and every error path. */
#include "unit.h"

#include <errno.h>
#include <unistd.h>

#include "config.h"

#define ARGV(...) ((char *[]){ "herald", __VA_ARGS__, NULL })
#define ARGC(...) ((int)(sizeof((char *[]){ "herald", __VA_ARGS__ }) / sizeof(char *)))
/* Frees what an earlier successful parse left in @c first: every config_t
 * here starts zeroed, and each test frees its own at the end. */
#define PARSE(c, err, ...) \
    (config_free(c), config_parse_args((c), ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (err), sizeof(err)))

static char tmpdir[] = "/tmp/herald-test-config-XXXXXX";
static int nfiles;

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes @text to a new file in the temp dir; returns its path (static). */
static const char *write_file(const char *text)
{
    static char path[256];
    FILE *f;
    snprintf(path, sizeof path, "%s/c%d.conf", tmpdir, nfiles++);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void expect_error(enum config_args r, const char *err, const char *needle)
{
    assert_int_equal(r, CONFIG_ARGS_ERROR);
    assert_true(err[0] != '\0');
    if (needle && !strstr(err, needle)) {
        print_error("error \"%s\" does not contain \"%s\"\n", err, needle);
        fail();
    }
}

static void test_defaults(void **state)
{
    char err[512] = "";
    config_t c = { 0 }, d = { 0 };
    (void)state;

    assert_int_equal(config_parse_args(&c, 1, ARGV(NULL), err, sizeof err), CONFIG_ARGS_RUN);
    assert_string_equal(c.bind, "127.0.0.1");
    assert_int_equal(c.port, 8080);
    assert_string_equal(c.data_dir, "./herald-data");
    assert_int_equal(c.shutdown_timeout_ms, 5000);
    assert_int_equal(c.max_message_size, 64 * 1024);
    assert_int_equal(c.send_queue_max, 4 * 1024 * 1024);
    assert_int_equal(c.max_connections, 0);
    assert_int_equal(c.max_subscriptions, 1024);
    assert_int_equal(c.max_channels, 1000000);
    assert_int_equal(c.connect_timeout_ms, 10000);
    assert_int_equal(c.ping_interval_ms, 25000);
    assert_int_equal(c.write_batch_max, 64 * 1024);
    assert_int_equal(c.max_queue_delay_ms, 500);
    assert_int_equal(c.log_level, LOG_INFO);
    assert_int_equal(c.log_format, LOG_FMT_TEXT);
    /* The namespaces the embedded widgets use are predefined; a namespace
     * not named anywhere takes [namespace *]. */
    assert_int_equal(config_ns(&c, "chat:lobby", 10)->presence, 1);
    assert_int_equal(config_ns(&c, "chat:lobby", 10)->join_leave, 1);
    assert_int_equal(config_ns(&c, "chat:lobby", 10)->signals, 1);
    assert_int_equal(config_ns(&c, "chat:lobby", 10)->history_size, 100);
    assert_int_equal(config_ns(&c, "dm:ann,bob", 10)->user_list, 1);
    assert_int_equal(config_ns(&c, "scores:g1", 9)->state, 1);
    assert_int_equal(config_ns(&c, "seats:e1", 8)->state, 1);
    assert_int_equal(config_ns(&c, "news:x", 6)->presence, 0);
    assert_int_equal(config_ns(&c, "news:x", 6)->state, 0);
    config_defaults(&d);
    assert_int_equal(c.nns, d.nns);
    /* Past the namespaces (pointers, and values filled in by inheritance),
     * parsing no arguments gives the defaults. */
    {
        ns_config_t *cn = c.ns, *dn = d.ns;
        c.ns = d.ns = NULL;
        assert_memory_equal(&c, &d, sizeof c);
        c.ns = cn;
        d.ns = dn;
    }
    config_free(&c);
    config_free(&d);
}

/* A config file or --ns sets a key of a predefined namespace again; the
 * others stay predefined. */
static void test_builtin_namespaces_overridable(void **state)
{
    char err[512] = "";
    config_t c = { 0 };
    (void)state;

    assert_int_equal(PARSE(&c, err, "--ns", "chat.signals=off", "--ns", "*.history_size=7"), CONFIG_ARGS_RUN);
    assert_int_equal(config_ns(&c, "chat:x", 6)->signals, 0);
    assert_int_equal(config_ns(&c, "chat:x", 6)->presence, 1);
    assert_int_equal(config_ns(&c, "chat:x", 6)->history_size, 7);
    config_free(&c);
    /* State needs history: the state namespaces keep it when * turns it off. */
    assert_int_equal(PARSE(&c, err, "--ns", "*.history=off"), CONFIG_ARGS_RUN);
    assert_int_equal(config_ns(&c, "scores:g", 8)->history, 1);
    assert_int_equal(config_ns(&c, "chat:x", 6)->history, 0);
    config_free(&c);
}

static void test_flag_forms(void **state)
{
    char err[512] = "";
    config_t c = { 0 };
    (void)state;

    assert_int_equal(PARSE(&c, err, "--port", "9001", "--bind=0.0.0.0", "--allow-open-dev=on", "--data-dir", "/tmp/x",
                           "--max-subscriptions=7", "--max-channels", "99", "--max-connections=5",
                           "--log-level", "debug", "--log-format=json", "--shutdown-timeout", "1s",
                           "--connect-timeout=250ms", "--ping-interval", "0", "--write-batch-max=1k",
                           "--max-message-size", "1k", "--send-queue-max=2k"),
                     CONFIG_ARGS_RUN);
    assert_int_equal(c.port, 9001);
    assert_string_equal(c.bind, "0.0.0.0");
    assert_string_equal(c.data_dir, "/tmp/x");
    assert_int_equal(c.max_subscriptions, 7);
    assert_int_equal(c.max_channels, 99);
    assert_int_equal(c.max_connections, 5);
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_int_equal(c.log_format, LOG_FMT_JSON);
    assert_int_equal(c.shutdown_timeout_ms, 1000);
    assert_int_equal(c.connect_timeout_ms, 250);
    assert_int_equal(c.ping_interval_ms, 0);
    assert_int_equal(c.write_batch_max, 1024);
    assert_int_equal(c.max_message_size, 1024);
    assert_int_equal(c.send_queue_max, 2048);

    /* The later flag wins; an '=' inside the value stays in the value. */
    assert_int_equal(PARSE(&c, err, "--port=1", "--port", "2", "--data-dir=/a=b"), CONFIG_ARGS_RUN);
    assert_int_equal(c.port, 2);
    assert_string_equal(c.data_dir, "/a=b");
    /* [history] max_queue_delay: a duration; 0 turns shedding off. */
    assert_int_equal(PARSE(&c, err, "--max-queue-delay=1ms"), CONFIG_ARGS_RUN);
    assert_int_equal(c.max_queue_delay_ms, 1);
    assert_int_equal(PARSE(&c, err, "--max-queue-delay", "0"), CONFIG_ARGS_RUN);
    assert_int_equal(c.max_queue_delay_ms, 0);
    /* Level names are case-insensitive; "warning" is "warn". */
    assert_int_equal(PARSE(&c, err, "--log-level=WARNING", "--log-format", "TEXT"), CONFIG_ARGS_RUN);
    assert_int_equal(c.log_level, LOG_WARN);
    assert_int_equal(c.log_format, LOG_FMT_TEXT);
    config_free(&c);
}

static void test_sizes(void **state)
{
    static const struct { const char *v; size_t want; } ok[] = {
        { "65536", 65536 }, { "64k", 65536 }, { "64K", 65536 }, { "64kb", 65536 }, { "64KB", 65536 },
        { "1m", 1048576 }, { "1M", 1048576 }, { "1MB", 1048576 }, { "1mb", 1048576 }, { "2m", 2097152 },
        { "1g", 1073741824 }, { "1GB", 1073741824 },
    };
    static const char *bad[] = { "", "k", "-1", "1x", "1kk", "1 k", "1kbb", "1.5m", "abc", "1kib",
                                 "99999999999999999999", "18014398509481984k" };
    char err[512], arg[64];
    config_t c = { 0 };
    (void)state;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(arg, sizeof arg, "--send-queue-max=%s", ok[i].v);
        assert_int_equal(PARSE(&c, err, arg, "--max-message-size=256"), CONFIG_ARGS_RUN);
        assert_int_equal(c.send_queue_max, ok[i].want);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(arg, sizeof arg, "--send-queue-max=%s", bad[i]);
        err[0] = '\0';
        expect_error(PARSE(&c, err, arg), err, "send-queue-max");
        assert_non_null(strstr(err, "expected a size"));
    }
    config_free(&c);
}

/* A minus sign after leading blanks slips past the `*s == '-'` check, and
 * strtoull() negates: " -1" would become a 16 EiB queue limit. */
static void test_size_negative_with_blank(void **state)
{
    char err[512] = "";
    config_t c = { 0 };
    (void)state;
    expect_error(PARSE(&c, err, "--send-queue-max= -1"), err, "send-queue-max");
    expect_error(PARSE(&c, err, "--write-batch-max", " -1k"), err, "write-batch-max");
    config_free(&c);
}

static void test_durations(void **state)
{
    static const struct { const char *v; unsigned want; } ok[] = {
        { "500ms", 500 }, { "10s", 10000 }, { "2m", 120000 }, { "750", 750 }, { "0", 0 }, { "0s", 0 },
        { "4294967295ms", 4294967295u }, { "4294967s", 4294967000u },
    };
    static const char *bad[] = { "", "s", "-1s", "10d", "1.5s", "10 s", "10S", "5sec", "4294967296",
                                 "4294968s", "71583m", "ms10" };
    char err[512], arg[64];
    config_t c = { 0 };
    (void)state;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(arg, sizeof arg, "--connect-timeout=%s", ok[i].v);
        assert_int_equal(PARSE(&c, err, arg), CONFIG_ARGS_RUN);
        assert_int_equal(c.connect_timeout_ms, ok[i].want);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(arg, sizeof arg, "--ping-interval=%s", bad[i]);
        err[0] = '\0';
        expect_error(PARSE(&c, err, arg), err, "expected a duration");
    }
    config_free(&c);
}

static void test_arg_errors(void **state)
{
    char err[512];
    config_t c = { 0 };
    (void)state;

    err[0] = '\0';
    expect_error(PARSE(&c, err, "--nope"), err, "--nope");
    expect_error(PARSE(&c, err, "--nope=1"), err, "unknown option");
    expect_error(PARSE(&c, err, "--max_subscriptions=1"), err, "unknown option");   /* flags use '-' */
    expect_error(PARSE(&c, err, "port"), err, "unexpected argument");
    expect_error(PARSE(&c, err, "-p"), err, "unexpected argument");
    expect_error(PARSE(&c, err, "--port"), err, "needs a value");
    expect_error(PARSE(&c, err, "--bind", "::", "--data-dir"), err, "--data-dir");
    expect_error(PARSE(&c, err, "--config"), err, "needs a file name");
    expect_error(PARSE(&c, err, "-c"), err, "needs a file name");
    expect_error(PARSE(&c, err, "--port=70000"), err, "port");
    expect_error(PARSE(&c, err, "--port", "-1"), err, "expected a port");
    expect_error(PARSE(&c, err, "--port", "80x"), err, "expected a port");
    expect_error(PARSE(&c, err, "--port="), err, "expected a port");
    expect_error(PARSE(&c, err, "--max-channels=4294967296"), err, "non-negative integer");
    expect_error(PARSE(&c, err, "--max-channels=-5"), err, "non-negative integer");
    expect_error(PARSE(&c, err, "--log-level=verbose"), err, "expected error, warn, info or debug");
    expect_error(PARSE(&c, err, "--log-format=xml"), err, "expected text or json");
    expect_error(PARSE(&c, err, "--bind="), err, "empty");
    {
        char longval[300];
        char arg[320];
        memset(longval, 'a', sizeof longval - 1);
        longval[sizeof longval - 1] = '\0';
        snprintf(arg, sizeof arg, "--bind=%s", longval);
        expect_error(PARSE(&c, err, arg), err, "too long");
    }
    /* validate(): cross checks no single value can make. */
    expect_error(PARSE(&c, err, "--send-queue-max=32k"), err, "send_queue_max");
    expect_error(PARSE(&c, err, "--max-message-size=8m"), err, "send_queue_max");
    expect_error(PARSE(&c, err, "--max-message-size=2m", "--send-queue-max=1m"), err, "send_queue_max");
    assert_int_equal(PARSE(&c, err, "--max-message-size=8m", "--send-queue-max=8m"), CONFIG_ARGS_RUN);
    expect_error(PARSE(&c, err, "--max-message-size=255"), err, "max_message_size");
    expect_error(PARSE(&c, err, "--max-message-size=65m", "--send-queue-max=1g"), err, "max_message_size");
    expect_error(PARSE(&c, err, "--write-batch-max=1023"), err, "write_batch_max");
    expect_error(PARSE(&c, err, "--write-batch-max=17m"), err, "write_batch_max");
    expect_error(PARSE(&c, err, "--max-subscriptions=0"), err, "max_subscriptions");
    expect_error(PARSE(&c, err, "--max-channels=0"), err, "max_channels");
    config_free(&c);
}

static void test_help_version(void **state)
{
    char err[512];
    config_t c = { 0 };
    (void)state;
    assert_int_equal(PARSE(&c, err, "--help"), CONFIG_ARGS_EXIT_OK);
    assert_int_equal(PARSE(&c, err, "-h"), CONFIG_ARGS_EXIT_OK);
    assert_int_equal(PARSE(&c, err, "--version"), CONFIG_ARGS_EXIT_OK);
    assert_int_equal(PARSE(&c, err, "-V"), CONFIG_ARGS_EXIT_OK);
    /* Wherever they stand, and before any other flag is judged. */
    assert_int_equal(PARSE(&c, err, "--port=99999", "--help"), CONFIG_ARGS_EXIT_OK);
    assert_int_equal(PARSE(&c, err, "--nope", "-V"), CONFIG_ARGS_EXIT_OK);
    fflush(stdout);
    config_free(&c);
}

static void test_usage_lists_every_flag(void **state)
{
    static const char *flags[] = { "--bind", "--port", "--data-dir", "--shutdown-timeout", "--max-message-size",
                                   "--send-queue-max", "--max-connections", "--max-subscriptions",
                                   "--max-channels", "--connect-timeout", "--ping-interval",
                                   "--write-batch-max", "--log-level", "--log-format", "--config" };
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    (void)state;

    config_usage(f);
    fclose(f);
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (!strstr(text, flags[i])) print_error("--help does not mention %s\n", flags[i]);
        assert_non_null(strstr(text, flags[i]));
    }
    /* An empty default is left out, not printed as "(default )". */
    assert_null(strstr(text, "(default )"));
    assert_non_null(strstr(text, "--trusted-proxies"));
    free(text);
}

static void test_file(void **state)
{
    const char *path = write_file("; comment\n"
                                  "# another\n"
                                  "[server]\n"
                                  "bind = ::1\n"
                                  "port = 9000\n"
                                  "data_dir = /var/lib/herald\n"
                                  "shutdown_timeout = 2s\n"
                                  "\n"
                                  "[limits]\n"
                                  "max_message_size = 128k\n"
                                  "send_queue_max = 4MB\n"
                                  "max_subscriptions = 10\n"
                                  "[websocket]\n"
                                  "ping_interval = 1m\n"
                                  "[log]\n"
                                  "level = error\n"
                                  "format = json\n");
    char err[512] = "", arg[300];
    config_t c = { 0 };
    (void)state;

    config_free(&c);
    config_defaults(&c);
    assert_int_equal(config_load_file(&c, path, err, sizeof err), 0);
    assert_string_equal(c.bind, "::1");
    assert_int_equal(c.port, 9000);
    assert_string_equal(c.data_dir, "/var/lib/herald");
    assert_int_equal(c.shutdown_timeout_ms, 2000);
    assert_int_equal(c.max_message_size, 128 * 1024);
    assert_int_equal(c.send_queue_max, 4 * 1024 * 1024);
    assert_int_equal(c.max_subscriptions, 10);
    assert_int_equal(c.ping_interval_ms, 60000);
    assert_int_equal(c.log_level, LOG_ERROR);
    assert_int_equal(c.log_format, LOG_FMT_JSON);
    assert_int_equal(c.max_channels, 1000000);          /* untouched */

    /* Through the flags: the file applies, flags win wherever they stand. */
    snprintf(arg, sizeof arg, "--config=%s", path);
    assert_int_equal(PARSE(&c, err, "--port", "9001", arg, "--log-level=info"), CONFIG_ARGS_RUN);
    assert_int_equal(c.port, 9001);
    assert_int_equal(c.log_level, LOG_INFO);
    assert_int_equal(c.max_subscriptions, 10);
    assert_string_equal(c.bind, "::1");
    assert_int_equal(PARSE(&c, err, "-c", (char *)path), CONFIG_ARGS_RUN);
    assert_int_equal(c.port, 9000);
    assert_int_equal(PARSE(&c, err, "--max-subscriptions", "3", "--config", (char *)path), CONFIG_ARGS_RUN);
    assert_int_equal(c.max_subscriptions, 3);
    config_free(&c);
}

static void file_error(const char *text, int line, const char *needle)
{
    const char *path = write_file(text);
    char err[1024] = "", prefix[300];
    config_t c = { 0 };

    config_free(&c);
    config_defaults(&c);
    assert_int_equal(config_load_file(&c, path, err, sizeof err), -1);
    snprintf(prefix, sizeof prefix, "%s:%d:", path, line);
    if (strncmp(err, prefix, strlen(prefix)) || (needle && !strstr(err, needle))) {
        print_error("error \"%s\": want prefix \"%s\" and \"%s\"\n", err, prefix, needle ? needle : "");
        fail();
    }
    /* The same through the flags. */
    {
        char arg[300];
        snprintf(arg, sizeof arg, "--config=%s", path);
        err[0] = '\0';
        expect_error(PARSE(&c, err, arg), err, prefix);
    }
    config_free(&c);
}

static void test_file_errors(void **state)
{
    char err[512] = "";
    config_t c = { 0 };
    (void)state;

    file_error("[server]\nport = 1\nnope = 2\n", 3, "unknown key");
    file_error("[server]\n\n\n[bogus]\nkey = 1\n", 5, "unknown section");
    file_error("[limits]\nmax_message_size = 1k\nsend_queue_max = lots\n", 3, "expected a size");
    file_error("[server]\nport = 65536\n", 2, "port");
    file_error("[log]\nlevel = loud\n", 2, "level");
    file_error("[server]\nthis line has no equals sign\n", 2, "syntax");
    file_error("[server\nport = 1\n", 1, NULL);
    file_error("port = 1\n", 1, "unknown section");                 /* keys outside a section */
    file_error("[server]\nport = 1\n[limits]\nmax_channels = x\nmax_channels = y\n", 4, "max_channels");
    file_error("[server]\nbind =\n", 2, "empty");

    /* Missing file. */
    config_free(&c);
    config_defaults(&c);
    assert_int_equal(config_load_file(&c, "/nonexistent/herald.conf", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/herald.conf"));
    expect_error(PARSE(&c, err, "--config", "/nonexistent/herald.conf"), err, "/nonexistent/herald.conf");

    /* validate() on values from the file names the file. */
    {
        const char *path = write_file("[limits]\nsend_queue_max = 1k\n");
        char arg[300];
        snprintf(arg, sizeof arg, "--config=%s", path);
        expect_error(PARSE(&c, err, arg), err, "send_queue_max");
        assert_non_null(strstr(err, path));
        /* ... and a flag can repair it. */
        assert_int_equal(PARSE(&c, err, arg, "--max-message-size=1k"), CONFIG_ARGS_RUN);
    }
    config_free(&c);
}

/* config_where(): the last line of the file that set an option, or its flag
 * when one did, whatever the order on the command line. */
static void test_where(void **state)
{
    const char *path = write_file("[server]\n"
                                  "port = 9000\n"
                                  "; a comment line counts\n"
                                  "\n"
                                  "[auth]\n"
                                  "leeway = 5s\n"
                                  "anonymous = on\n"
                                  "[log]\n"
                                  "level = debug\n"
                                  "[auth]\n"
                                  "anonymous = yes\n");
    char err[512] = "", buf[300], want[300], arg[300];
    config_t c = { 0 };
    (void)state;

    snprintf(arg, sizeof arg, "--config=%s", path);
    assert_int_equal(PARSE(&c, err, "--log-level", "info", arg, "--max-channels=5"), CONFIG_ARGS_RUN);
    assert_int_equal(config_where(&c, "server.port", buf, sizeof buf), 1);
    snprintf(want, sizeof want, "%s:2", path);
    assert_string_equal(buf, want);
    assert_int_equal(config_where(&c, "auth.leeway", buf, sizeof buf), 1);
    snprintf(want, sizeof want, "%s:6", path);
    assert_string_equal(buf, want);
    /* Set twice: the later line, the one whose value counts. */
    assert_int_equal(config_where(&c, "auth.anonymous", buf, sizeof buf), 1);
    snprintf(want, sizeof want, "%s:11", path);
    assert_string_equal(buf, want);
    /* A flag beats the file, and is named as written: '-' for '_', the
     * [log] options' own names. */
    assert_int_equal(config_where(&c, "log.level", buf, sizeof buf), 1);
    assert_string_equal(buf, "--log-level");
    assert_int_equal(config_where(&c, "limits.max_channels", buf, sizeof buf), 1);
    assert_string_equal(buf, "--max-channels");
    /* Built in, unknown, malformed. */
    strcpy(buf, "x");
    assert_int_equal(config_where(&c, "server.bind", buf, sizeof buf), 0);
    assert_string_equal(buf, "");
    assert_int_equal(config_where(&c, "server.nope", buf, sizeof buf), -EINVAL);
    assert_int_equal(config_where(&c, "auth", buf, sizeof buf), -EINVAL);
    assert_int_equal(config_where(&c, "aut.leeway", buf, sizeof buf), -EINVAL);
    /* Truncated to fit. */
    assert_int_equal(config_where(&c, "log.level", buf, 5), 1);
    assert_string_equal(buf, "--lo");

    /* Flags alone. */
    assert_int_equal(PARSE(&c, err, "--auth-leeway=1s"), CONFIG_ARGS_RUN);
    assert_int_equal(config_where(&c, "auth.leeway", buf, sizeof buf), 1);
    assert_string_equal(buf, "--auth-leeway");
    assert_int_equal(config_where(&c, "server.port", buf, sizeof buf), 0);

    /* config_load_file() on its own remembers the file too. */
    config_free(&c);
    config_defaults(&c);
    assert_int_equal(config_load_file(&c, path, err, sizeof err), 0);
    assert_int_equal(config_where(&c, "log.level", buf, sizeof buf), 1);
    snprintf(want, sizeof want, "%s:9", path);
    assert_string_equal(buf, want);
    config_free(&c);
}

/* [auth] refusals name where the offending option was set. */
static void test_auth_checks(void **state)
{
    char err[1024] = "", arg[300], want[300];
    const char *path;
    config_t c = { 0 };
    (void)state;

    /* A short hmac_secret: its line, never its value. */
    path = write_file("[server]\nport = 0\n[auth]\n\nhmac_secret = 0123456789abcdef0123456789abcde\n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    snprintf(want, sizeof want, "%s:5: auth.hmac_secret must be at least 32 characters", path);
    expect_error(PARSE(&c, err, arg), err, NULL);
    assert_string_equal(err, want);
    assert_null(strstr(err, "0123456789"));
    /* By a flag: the flag, even with a config file. */
    expect_error(PARSE(&c, err, "--hmac-secret=short"), err, NULL);
    assert_string_equal(err, "--hmac-secret: auth.hmac_secret must be at least 32 characters");
    expect_error(PARSE(&c, err, arg, "--hmac-secret", "short"), err, NULL);
    assert_string_equal(err, "--hmac-secret: auth.hmac_secret must be at least 32 characters");
    /* 32 characters will do; a flag repairs the file; "" means none. */
    assert_int_equal(PARSE(&c, err, "--hmac-secret=0123456789abcdef0123456789abcdef"), CONFIG_ARGS_RUN);
    assert_int_equal(PARSE(&c, err, arg, "--hmac-secret=0123456789abcdef0123456789abcdef"), CONFIG_ARGS_RUN);
    assert_int_equal(PARSE(&c, err, arg, "--hmac-secret="), CONFIG_ARGS_RUN);

    /* anonymous = off with no key: the line of anonymous = off. */
    path = write_file("[auth]\nhmac_secret =\nanonymous = off\npublic_keys = , \n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    expect_error(PARSE(&c, err, arg), err, NULL);
    snprintf(want, sizeof want, "%s:3: auth.anonymous is off", path);
    if (strncmp(err, want, strlen(want))) {
        print_error("error \"%s\" does not start with \"%s\"\n", err, want);
        fail();
    }
    expect_error(PARSE(&c, err, "--anonymous", "off"), err, "--anonymous: auth.anonymous is off");
    /* Any key named will do here; whether it loads is auth_init()'s to say. */
    assert_int_equal(PARSE(&c, err, arg, "--public-keys=/etc/herald/rs256.pem"), CONFIG_ARGS_RUN);
    assert_int_equal(PARSE(&c, err, arg, "--hmac-secret=0123456789abcdef0123456789abcdef"), CONFIG_ARGS_RUN);
    assert_int_equal(PARSE(&c, err, arg, "--anonymous=on"), CONFIG_ARGS_RUN);
    config_free(&c);
}

/* Starts with: @err begins with @want. */
static void expect_prefix(const char *err, const char *want)
{
    if (strncmp(err, want, strlen(want))) {
        print_error("error \"%s\" does not start with \"%s\"\n", err, want);
        fail();
    }
}

static void test_join_leave_needs_presence(void **state)
{
    char err[1024] = "", arg[300], want[400];
    const char *path;
    config_t c = { 0 };
    (void)state;

    path = write_file("[namespace room]\nsignals = on\njoin_leave = on\n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    expect_error(PARSE(&c, err, arg), err, "needs presence = on");
    snprintf(want, sizeof want, "%s:3: [namespace room] join_leave = on", path);
    expect_prefix(err, want);
    config_free(&c);
    expect_error(PARSE(&c, err, "--ns", "room.join_leave=on"), err, NULL);
    expect_prefix(err, "--ns room.join_leave: [namespace room] join_leave = on needs presence = on");
    config_free(&c);
    /* Set in [namespace *]: the template is refused too, naming its line. */
    path = write_file("[namespace *]\njoin_leave = on\n[namespace room]\npresence = on\n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    expect_error(PARSE(&c, err, arg), err, NULL);
    snprintf(want, sizeof want, "%s:2: [namespace *] join_leave = on", path);
    expect_prefix(err, want);
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--ns", "room.join_leave=on", "--ns", "room.presence=on"), CONFIG_ARGS_RUN);
    config_free(&c);
}

static void test_open_dev_mode(void **state)
{
    static char *const loopback[] = { "127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "localhost" };
    static char *const open[] = { "0.0.0.0", "::", "192.168.1.10", "2001:db8::1", "example.com" };
    char err[1024] = "", arg[300], want[400];
    const char *path;
    config_t c = { 0 };
    (void)state;

    for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++) {
        assert_int_equal(PARSE(&c, err, "--bind", loopback[i]), CONFIG_ARGS_RUN);
        config_free(&c);
    }
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++) {
        expect_error(PARSE(&c, err, "--bind", open[i]), err, "server.allow_open_dev = on");
        expect_prefix(err, "--bind: server.bind = ");
        config_free(&c);
        assert_int_equal(PARSE(&c, err, "--bind", open[i], "--allow-open-dev", "on"), CONFIG_ARGS_RUN);
        config_free(&c);
        assert_int_equal(PARSE(&c, err, "--bind", open[i], "--apikey", "b.secret=0123456789abcdef"), CONFIG_ARGS_RUN);
        config_free(&c);
        assert_int_equal(PARSE(&c, err, "--bind", open[i], "--anonymous", "off",
                               "--hmac-secret", "0123456789abcdef0123456789abcdef"), CONFIG_ARGS_RUN);
        config_free(&c);
    }
    path = write_file("[server]\nbind = 0.0.0.0\n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    expect_error(PARSE(&c, err, arg), err, NULL);
    snprintf(want, sizeof want, "%s:2: server.bind = 0.0.0.0 in development mode", path);
    expect_prefix(err, want);
    config_free(&c);
}

/* [apikey NAME] requests_per_minute: 6000 unless set, 0 allowed (no
 * limit), anything but a non-negative integer refused. */
static void test_apikey_rate(void **state)
{
    char err[1024] = "";
    config_t c = { 0 };
    (void)state;

    assert_int_equal(PARSE(&c, err, "--apikey", "a.secret=0123456789abcdef", "--apikey", "b.secret=0123456789abcdef",
                           "--apikey", "b.requests_per_minute=30", "--apikey", "c.secret=0123456789abcdef",
                           "--apikey", "c.requests_per_minute=0"), CONFIG_ARGS_RUN);
    assert_int_equal(c.napikeys, 3);
    assert_int_equal(c.apikeys[0].requests_per_minute, APIKEY_RATE_DEFAULT);
    assert_int_equal(c.apikeys[1].requests_per_minute, 30);
    assert_int_equal(c.apikeys[2].requests_per_minute, 0);
    config_free(&c);
    expect_error(PARSE(&c, err, "--apikey", "a.secret=0123456789abcdef", "--apikey", "a.requests_per_minute=fast"),
                 err, "expected a non-negative integer");
    config_free(&c);
}

/* [webhook NAME]: the url's parts, the events, which webhooks want what,
 * https with its default port and ca_file, and the errors (a scheme other
 * than http(s) refused with FILE:LINE; ca_file without https or unreadable;
 * a missing key; the flag form). */
static void test_webhooks(void **state)
{
    char err[1024] = "", arg[300], want[400];
    const char *path, *names[WEBHOOK_MAX];
    const webhook_conf_t *w;
    config_t c = { 0 };
    (void)state;

    path = write_file("[webhook a]\nurl = http://127.0.0.1:9000/in?x=1\nsecret = 0123456789abcdef\n"
                      "events = publication, channel.vacated\nnamespaces = orders, -\n\n"
                      "[webhook b]\nurl = http://[::1]/\nsecret = 0123456789abcdef\nevents = *\n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    assert_int_equal(PARSE(&c, err, arg), CONFIG_ARGS_RUN);
    assert_int_equal(c.nwebhooks, 2);
    w = config_webhook(&c, "a");
    assert_non_null(w);
    assert_string_equal(w->host, "127.0.0.1");
    assert_string_equal(w->port, "9000");
    assert_string_equal(w->path, "/in?x=1");
    assert_int_equal(w->events, WH_EV_PUBLICATION | WH_EV_VACATED);
    assert_int_equal(w->timeout_ms, 5000);
    w = config_webhook(&c, "b");
    assert_string_equal(w->host, "::1");
    assert_string_equal(w->port, "80");
    assert_int_equal(w->events, WH_EV_ALL);
    assert_int_equal(config_webhooks_for(&c, WH_EV_PUBLICATION, "orders:1", 8, names), 2);
    assert_int_equal(config_webhooks_for(&c, WH_EV_PUBLICATION, "chat:1", 6, names), 1);
    assert_string_equal(names[0], "b");
    assert_int_equal(config_webhooks_for(&c, WH_EV_PUBLICATION, "plain", 5, names), 2);   /* "-" */
    assert_int_equal(config_webhooks_for(&c, WH_EV_OCCUPIED, "orders:1", 8, names), 1);
    assert_int_equal(config_webhooks_for(&c, WH_EV_VACATED, "sys:stats", 9, names), 0);
    assert_null(config_webhook(&c, "c"));
    config_free(&c);

    path = write_file("[webhook a]\nsecret = 0123456789abcdef\nurl = ftp://h/x\n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    expect_error(PARSE(&c, err, arg), err, "a webhook url must start with http:// or https://");
    snprintf(want, sizeof want, "%s:3: [webhook a] url", path);
    expect_prefix(err, want);
    assert_int_equal(PARSE(&c, err, "--webhook", "s.url=https://hooks.example.com/in", "--webhook",
                           "s.secret=0123456789abcdef", "--webhook", "s.events=*", "--webhook", "s.ca_file=/dev/null"),
                     CONFIG_ARGS_RUN);
    assert_int_equal(c.webhooks[0].tls, 1);
    assert_string_equal(c.webhooks[0].port, "443");
    assert_string_equal(c.webhooks[0].host, "hooks.example.com");
    assert_string_equal(c.webhooks[0].ca_file, "/dev/null");
    config_free(&c);
    expect_error(PARSE(&c, err, "--webhook", "s.url=http://h/", "--webhook", "s.secret=0123456789abcdef",
                       "--webhook", "s.events=*", "--webhook", "s.ca_file=/dev/null"),
                 err, "--webhook s ca_file is only used with an https:// url");
    expect_error(PARSE(&c, err, "--webhook", "s.url=https://h/", "--webhook", "s.secret=0123456789abcdef",
                       "--webhook", "s.events=*", "--webhook", "s.ca_file=/nonexistent/ca.pem"),
                 err, "--webhook s ca_file /nonexistent/ca.pem cannot be read");
    path = write_file("[webhook a]\nsecret = 0123456789abcdef\nevents = *\n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    expect_error(PARSE(&c, err, arg), err, NULL);
    snprintf(want, sizeof want, "%s:2: [webhook a] has no url", path);
    expect_prefix(err, want);
    expect_error(PARSE(&c, err, "--webhook", "a.url=http://h/", "--webhook", "a.secret=0123456789abcdef"), err,
                 "--webhook a has no events");
    expect_error(PARSE(&c, err, "--webhook", "a.secret=short"), err, "at least 16 characters");
    assert_null(strstr(err, "short"));                   /* a secret is never echoed */
    expect_error(PARSE(&c, err, "--webhook", "a b.url=http://h/"), err, "a webhook name");
    assert_int_equal(PARSE(&c, err, "--webhook", "a.url=http://h:81", "--webhook", "a.secret=0123456789abcdef",
                           "--webhook", "a.events=presence.member_added", "--webhook", "a.batch_size=100"),
                     CONFIG_ARGS_RUN);
    assert_string_equal(c.webhooks[0].port, "81");
    assert_string_equal(c.webhooks[0].path, "/");
    config_free(&c);
}

static void test_engine(void **state)
{
    char err[1024] = "", arg[300], want[400], host[256];
    const char *path, *why;
    config_t c = { 0 };
    int port;
    (void)state;

    /* The default is the embedded engine, with every embedded namespace. */
    assert_int_equal(PARSE(&c, err, "--port", "1"), CONFIG_ARGS_RUN);
    assert_int_equal(c.engine_type, ENGINE_LMDB);
    assert_string_equal(c.engine_address, "127.0.0.1:6379");
    assert_string_equal(c.engine_prefix, "herald:");
    assert_int_equal(c.engine_connect_timeout_ms, 2000);
    assert_int_equal(c.engine_command_timeout_ms, 5000);
    assert_int_equal(c.engine_presence_heartbeat_ms, 2000);
    assert_true(config_ns(&c, "chat:x", 6)->presence);
    config_free(&c);

    path = write_file("[engine]\ntype = redis\naddress = unix:/run/redis.sock\npassword = pw\ndatabase = 3\n"
                      "prefix = app1:\nconnect_timeout = 500ms\ncommand_timeout = 1s\ntls = off\n"
                      "[namespace room]\nhistory_size = 5\n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    assert_int_equal(PARSE(&c, err, arg), CONFIG_ARGS_RUN);
    assert_int_equal(c.engine_type, ENGINE_REDIS);
    assert_string_equal(c.engine_address, "unix:/run/redis.sock");
    assert_string_equal(c.engine_password, "pw");
    assert_int_equal(c.engine_database, 3);
    assert_string_equal(c.engine_prefix, "app1:");
    assert_int_equal(c.engine_connect_timeout_ms, 500);
    assert_int_equal(c.engine_command_timeout_ms, 1000);
    /* Every embedded namespace is predefined under redis: state channels,
     * seat maps, presence and signals are carried (core/cluster_*.c). */
    assert_true(config_ns(&c, "chat:x", 6)->presence);
    assert_true(config_ns(&c, "chat:x", 6)->signals);
    assert_true(config_ns(&c, "dm:x", 4)->signals);
    assert_true(config_ns(&c, "dm:x", 4)->user_list);
    assert_true(config_ns(&c, "scores:x", 8)->state);
    assert_true(config_ns(&c, "seats:x", 7)->state);
    assert_int_equal(config_ns(&c, "room:x", 6)->history_size, 5);
    config_free(&c);

    expect_error(PARSE(&c, err, "--engine", "memcached"), err, "expected lmdb or redis");
    path = write_file("[engine]\ntype = redis\naddress = nohost\n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    expect_error(PARSE(&c, err, arg), err, NULL);
    snprintf(want, sizeof want, "%s:3: [engine] address = \"nohost\": expected HOST:PORT", path);
    expect_prefix(err, want);
    expect_error(PARSE(&c, err, "--engine", "redis", "--engine-address", "h:70000"), err, "from 1 to 65535");
    /* TLS to Redis (storage/engine_tls.c): the defaults, a TCP address, the
     * files loaded at parse time, the options that need tls = on. */
    assert_int_equal(PARSE(&c, err, "--engine", "redis", "--engine-tls", "on"), CONFIG_ARGS_RUN);
    assert_true(c.engine_tls);
    assert_true(c.engine_tls_verify);
    assert_string_equal(c.engine_tls_ca, "");
    assert_string_equal(c.engine_tls_server_name, "");
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--engine", "redis", "--engine-tls", "on", "--engine-tls-verify", "off",
                           "--engine-tls-server-name", "redis.internal"), CONFIG_ARGS_RUN);
    assert_false(c.engine_tls_verify);
    assert_string_equal(c.engine_tls_server_name, "redis.internal");
    config_free(&c);
    path = write_file("[engine]\ntype = redis\naddress = unix:/run/redis.sock\ntls = on\n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    expect_error(PARSE(&c, err, arg), err, NULL);
    snprintf(want, sizeof want, "%s:4: [engine] tls = on needs a HOST:PORT address", path);
    expect_prefix(err, want);
    path = write_file("[engine]\ntype = redis\ntls_server_name = r.test\n");
    snprintf(arg, sizeof arg, "--config=%s", path);
    expect_error(PARSE(&c, err, arg), err, NULL);
    snprintf(want, sizeof want, "%s:3: [engine] tls_server_name is only used with tls = on", path);
    expect_prefix(err, want);
    path = write_file("not a certificate\n");
    snprintf(arg, sizeof arg, "--engine-tls-ca=%s", path);
    expect_error(PARSE(&c, err, "--engine", "redis", "--engine-tls", "on", arg), err,
                 "no CA certificate could be loaded");
    expect_error(PARSE(&c, err, "--engine", "redis", "--engine-tls", "on", "--engine-tls-ca", "/nonexistent.pem"),
                 err, "[engine] tls_ca /nonexistent.pem cannot be read: No such file or directory");
    expect_error(PARSE(&c, err, "--engine", "redis", "--engine-tls", "on", "--engine-tls-key", "/k.pem"), err,
                 "[engine] tls_cert and tls_key go together");
    expect_error(PARSE(&c, err, "--engine", "redis", "--engine-tls", "on", "--engine-tls-verify", "sometimes"), err,
                 "expected on or off");
    /* Presence is carried across nodes (core/cluster_presence.c); its heartbeat has a floor. */
    assert_int_equal(PARSE(&c, err, "--engine", "redis", "--ns", "room.presence=on", "--ns", "room.join_leave=on",
                           "--engine-presence-heartbeat", "500ms"), CONFIG_ARGS_RUN);
    assert_true(config_ns(&c, "room:x", 6)->presence);
    assert_int_equal(c.engine_presence_heartbeat_ms, 500);
    config_free(&c);
    expect_error(PARSE(&c, err, "--engine", "redis", "--engine-presence-heartbeat", "10ms"), err,
                 "[engine] presence_heartbeat must be at least 100ms");
    /* Signals are carried across nodes (core/cluster_signal.c). */
    assert_int_equal(PARSE(&c, err, "--engine", "redis", "--ns", "*.signals=on"), CONFIG_ARGS_RUN);
    assert_true(config_ns(&c, "room:x", 6)->signals);
    config_free(&c);
    /* Seat maps are carried (core/cluster_seats.c), their organiser's feed too. */
    assert_int_equal(PARSE(&c, err, "--engine", "redis", "--ns", "seats.history_size=9"), CONFIG_ARGS_RUN);
    assert_true(config_ns(&c, "seats:x", 7)->state);
    assert_int_equal(config_ns(&c, "seats:x", 7)->history_size, 9);
    config_free(&c);
    assert_int_equal(PARSE(&c, err, "--engine", "redis", "--seats-feed", "orders:{event}"), CONFIG_ARGS_RUN);
    assert_string_equal(c.seats_feed, "orders:{event}");
    config_free(&c);
    /* ... still checked as under lmdb: a feed takes plain publications. */
    expect_error(PARSE(&c, err, "--engine", "redis", "--seats-feed", "seats:{event}"), err, "state = on");
    assert_int_equal(PARSE(&c, err, "--engine", "redis", "--ns", "board.state=on"), CONFIG_ARGS_RUN);
    assert_true(config_ns(&c, "board:x", 7)->state);
    config_free(&c);
    /* The adapters run on the redis engine (core/cluster_shop.c, cluster_tickets.c). */
    assert_int_equal(PARSE(&c, err, "--engine", "redis", "--commerce", "on", "--tickets", "on"), CONFIG_ARGS_RUN);
    assert_true(c.commerce_enabled && c.tickets_enabled);
    config_free(&c);
    /* Under lmdb the [engine] values are not checked beyond their type. */
    assert_int_equal(PARSE(&c, err, "--engine-address", "nohost"), CONFIG_ARGS_RUN);
    config_free(&c);

    assert_int_equal(config_engine_address("10.0.0.1:6380", host, sizeof host, &port, &why), 0);
    assert_string_equal(host, "10.0.0.1");
    assert_int_equal(port, 6380);
    assert_int_equal(config_engine_address("[::1]:7000", host, sizeof host, &port, &why), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7000);
    assert_int_equal(config_engine_address("unix:/tmp/r.sock", host, sizeof host, &port, &why), 0);
    assert_string_equal(host, "/tmp/r.sock");
    assert_int_equal(port, 0);
    assert_int_equal(config_engine_address("::1:7000", host, sizeof host, &port, &why), -1);
    assert_int_equal(config_engine_address(":7000", host, sizeof host, &port, &why), -1);
    assert_int_equal(config_engine_address("h:x", host, sizeof host, &port, &why), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_engine),
        cmocka_unit_test(test_builtin_namespaces_overridable),
        cmocka_unit_test(test_flag_forms),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_size_negative_with_blank),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_arg_errors),
        cmocka_unit_test(test_help_version),
        cmocka_unit_test(test_usage_lists_every_flag),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_where),
        cmocka_unit_test(test_auth_checks),
        cmocka_unit_test(test_join_leave_needs_presence),
        cmocka_unit_test(test_open_dev_mode),
        cmocka_unit_test(test_apikey_rate),
        cmocka_unit_test(test_webhooks),
    };
    return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
