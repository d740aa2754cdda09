/* tests/unit/test_engine_tls.c - storage/engine_tls.c: the file checks
 * (CA, certificate, key that is not the certificate's), and the bridge on a
 * real loop: four megabytes echoed through it by a TLS server on a thread, the
 * private directory it makes and removes, the buffers filling and draining, a refused connect closing the
 * unix side, an untrusted server closing it too; the other threads' slot
 * holding connections until its first route, then bridging each to a TLS
 * connection of its own. Certificates are made in the test with OpenSSL
 * (no files shipped, no openssl CLI). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "engine_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char dir[64];
static char cert1[128], key1[128], cert2[128], key2[128], garbage[128];

/* A self-signed certificate for 127.0.0.1 (its SAN) and its key, as PEM files. */
static void make_cert(const char *certpath, const char *keypath)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *n;
    X509_EXTENSION *ext;
    X509V3_CTX v3;
    FILE *f;

    assert_non_null(k);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1");
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    assert_non_null(f = fopen(certpath, "w"));
    PEM_write_X509(f, x);
    fclose(f);
    assert_non_null(f = fopen(keypath, "w"));
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    FILE *f;
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/herald-test-etls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cert1, sizeof cert1, "%s/c1.pem", dir);
    snprintf(key1, sizeof key1, "%s/k1.pem", dir);
    snprintf(cert2, sizeof cert2, "%s/c2.pem", dir);
    snprintf(key2, sizeof key2, "%s/k2.pem", dir);
    snprintf(garbage, sizeof garbage, "%s/garbage.pem", dir);
    make_cert(cert1, key1);
    make_cert(cert2, key2);
    assert_non_null(f = fopen(garbage, "w"));
    fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    const char *files[] = { cert1, key1, cert2, key2, garbage };
    (void)state;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) unlink(files[i]);
    rmdir(dir);
    return 0;
}

static void expect_refused(const struct engine_tls_conf *c, const char *needle)
{
    char err[512] = "";

    assert_int_equal(engine_tls_ctx_check(c, err, sizeof err), -EINVAL);
    if (!strstr(err, needle)) {
        print_error("error \"%s\" lacks \"%s\"\n", err, needle);
        fail();
    }
}

static void test_files(void **state)
{
    char err[512] = "", want[400];
    (void)state;

    assert_int_equal(engine_tls_ctx_check(&(struct engine_tls_conf){ .verify = 1 }, err, sizeof err), 0);
    assert_int_equal(engine_tls_ctx_check(&(struct engine_tls_conf){ .ca = cert1, .verify = 1 }, err, sizeof err), 0);
    assert_int_equal(engine_tls_ctx_check(&(struct engine_tls_conf){ .ca = cert1, .cert = cert2, .key = key2,
                                                                      .verify = 1 }, err, sizeof err), 0);
    expect_refused(&(struct engine_tls_conf){ .ca = "/nonexistent/ca.pem" },
                   "[engine] tls_ca /nonexistent/ca.pem cannot be read: No such file or directory");
    expect_refused(&(struct engine_tls_conf){ .ca = garbage }, "no CA certificate could be loaded");
    expect_refused(&(struct engine_tls_conf){ .ca = key1 }, "no CA certificate could be loaded");
    expect_refused(&(struct engine_tls_conf){ .cert = cert1 }, "tls_cert and tls_key go together");
    expect_refused(&(struct engine_tls_conf){ .key = key1 }, "tls_cert and tls_key go together");
    expect_refused(&(struct engine_tls_conf){ .cert = cert1, .key = "/nonexistent/k" },
                   "[engine] tls_key /nonexistent/k cannot be read");
    expect_refused(&(struct engine_tls_conf){ .cert = garbage, .key = key1 }, "not a PEM certificate");
    expect_refused(&(struct engine_tls_conf){ .cert = cert1, .key = garbage }, "not a PEM private key");
    snprintf(want, sizeof want, "[engine] tls_key %s is not the private key of tls_cert %s", key2, cert1);
    expect_refused(&(struct engine_tls_conf){ .cert = cert1, .key = key2 }, want);
    assert_int_equal(ERR_peek_error(), 0);               /* nothing left on OpenSSL's error queue */
}

/* ---- the bridge on a loop ---- */

struct server {
    int lfd;                      /* listening TCP socket on 127.0.0.1 */
    int port;
    const char *cert, *key;
    int conns;                    /* how many connections to serve, one after the other; 0: one */
    size_t echoed;
    int handshake_failed;
    int sessions;                 /* TLS sessions accepted */
    pthread_t thread;
};

/* Accepts @s->conns connections in turn, answers TLS with @s->cert and
 * echoes everything each sends until it closes. */
static void *server_main(void *arg)
{
    struct server *s = arg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL *ssl;
    char buf[8192];
    int fd, n;

    SSL_CTX_use_certificate_file(ctx, s->cert, SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(ctx, s->key, SSL_FILETYPE_PEM);
    for (int i = 0; i < (s->conns ? s->conns : 1); i++) {
        fd = accept(s->lfd, NULL, NULL);
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) {
            s->handshake_failed = 1;
        } else {
            s->sessions++;
            while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) {
                if (SSL_write(ssl, buf, n) != n) break;
                s->echoed += (size_t)n;
            }
        }
        SSL_free(ssl);
        close(fd);
    }
    SSL_CTX_free(ctx);
    ERR_clear_error();
    OPENSSL_thread_stop();
    return NULL;
}

static void server_start(struct server *s, const char *cert, const char *key)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t l = sizeof a;

    s->cert = cert;
    s->key = key;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &l), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static int unix_connect(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs @loop until @fd reads end-of-file (returns 1) or 5 s pass (0). */
static int until_eof(uv_loop_t *loop, int fd)
{
    char buf[256];

    for (double end = now_s() + 5; now_s() < end;) {
        ssize_t n;
        uv_run(loop, UV_RUN_NOWAIT);
        n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) return 1;
        usleep(1000);
    }
    return 0;
}

static engine_tls_t *bridge(uv_loop_t *loop, const char *ca, const char *name)
{
    struct engine_tls_conf c = { .ca = ca, .server_name = name, .verify = 1 };
    engine_tls_t *t = NULL;
    char err[512] = "";

    if (engine_tls_new(loop, &c, "127.0.0.1", &t, err, sizeof err)) {
        print_error("%s\n", err);
        fail();
    }
    return t;
}

static void bridge_free(uv_loop_t *loop, engine_tls_t *t)
{
    engine_tls_free(t);
    for (int i = 0; i < 100 && uv_run(loop, UV_RUN_NOWAIT); i++);
}

/* Four megabytes echoed; the client reads nothing for the first 300 ms, so
 * that every buffer on the way fills (the bridge's too) and drains again. */
static void test_echo_with_a_stall(void **state)
{
    enum { TOTAL = 4 << 20 };
    uv_loop_t loop;
    struct server s = { 0 };
    engine_tls_t *t;
    unsigned char *out = malloc(TOTAL), *in = malloc(TOTAL);
    size_t sent = 0, got = 0;
    char sockdir[128];
    const char *path;
    struct stat st;
    int fd;
    (void)state;

    for (size_t i = 0; i < TOTAL; i++) out[i] = (unsigned char)(i * 7 + i / 251);
    uv_loop_init(&loop);
    server_start(&s, cert1, key1);
    t = bridge(&loop, cert1, NULL);
    path = engine_tls_route(t, 1, "127.0.0.1", s.port);
    snprintf(sockdir, sizeof sockdir, "%s", path);
    *strrchr(sockdir, '/') = '\0';
    assert_int_equal(stat(sockdir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    fd = unix_connect(path);
    for (double start = now_s(), end = start + 20; got < TOTAL && now_s() < end;) {
        ssize_t n;
        uv_run(&loop, UV_RUN_NOWAIT);
        if (sent < TOTAL && (n = send(fd, out + sent, TOTAL - sent > 50000 ? 50000 : TOTAL - sent, 0)) > 0)
            sent += (size_t)n;
        if (now_s() - start < 0.3) continue;
        while ((n = recv(fd, in + got, TOTAL - got, 0)) > 0) got += (size_t)n;
        assert_true(n != 0);                             /* no EOF before everything came back */
    }
    assert_int_equal(got, TOTAL);
    assert_memory_equal(in, out, TOTAL);
    /* hiredis letting go closes the TLS side: the server's read ends. */
    close(fd);
    for (double end = now_s() + 5; now_s() < end && pthread_tryjoin_np(s.thread, NULL); )
        uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
    assert_int_equal(s.echoed, TOTAL);
    close(s.lfd);
    bridge_free(&loop, t);
    assert_int_equal(stat(sockdir, &st), -1);            /* the directory went with the bridge */
    assert_int_equal(uv_loop_close(&loop), 0);
    free(out);
    free(in);
}

static void test_failures_close_the_unix_side(void **state)
{
    uv_loop_t loop;
    struct server s = { 0 };
    engine_tls_t *t;
    int fd, closed_port;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t l = sizeof a;
    (void)state;

    uv_loop_init(&loop);
    /* Nothing listens: the connect is refused. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &l);
    closed_port = ntohs(a.sin_port);
    close(fd);
    t = bridge(&loop, cert1, NULL);
    fd = unix_connect(engine_tls_route(t, 0, "127.0.0.1", closed_port));
    assert_int_equal(send(fd, "PING\r\n", 6, 0), 6);
    assert_true(until_eof(&loop, fd));
    close(fd);
    /* A server whose certificate the CA did not sign. */
    server_start(&s, cert2, key2);
    fd = unix_connect(engine_tls_route(t, 0, "127.0.0.1", s.port));
    assert_true(until_eof(&loop, fd));
    close(fd);
    pthread_join(s.thread, NULL);
    assert_true(s.handshake_failed);
    close(s.lfd);
    bridge_free(&loop, t);
    /* The right CA, the wrong name. */
    memset(&s, 0, sizeof s);
    server_start(&s, cert1, key1);
    t = bridge(&loop, cert1, "redis.example");
    fd = unix_connect(engine_tls_route(t, 1, "127.0.0.1", s.port));
    assert_true(until_eof(&loop, fd));
    close(fd);
    pthread_join(s.thread, NULL);
    assert_true(s.handshake_failed);
    close(s.lfd);
    /* Freed with a connection still open: closed with the bridge. */
    memset(&s, 0, sizeof s);
    server_start(&s, cert1, key1);
    fd = unix_connect(engine_tls_route(t, 1, "127.0.0.1", s.port));
    for (int i = 0; i < 50; i++) uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
    bridge_free(&loop, t);
    assert_true(until_eof(&loop, fd));
    close(fd);
    pthread_join(s.thread, NULL);
    close(s.lfd);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Runs @loop until @len bytes came back on @fd, equal to @want (1), or 5 s pass (0). */
static int echoed_back(uv_loop_t *loop, int fd, const char *want, size_t len)
{
    char buf[256];
    size_t got = 0;

    for (double end = now_s() + 5; now_s() < end && got < len;) {
        ssize_t n;
        uv_run(loop, UV_RUN_NOWAIT);
        n = recv(fd, buf + got, sizeof buf - got, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) return 0;
        if (n > 0) got += (size_t)n;
        else usleep(1000);
    }
    return got == len && !memcmp(buf, want, len);
}

/* The delivery threads' slot: its path is known before any route; what
 * connects (and writes) before the first route waits, neither refused nor
 * closed; once routed, each connection is its own TLS session. */
static void test_threads_slot(void **state)
{
    uv_loop_t loop;
    struct server s = { .conns = 2 };
    engine_tls_t *t;
    char path[128], buf[8];
    int a, b;
    (void)state;

    uv_loop_init(&loop);
    server_start(&s, cert1, key1);
    t = bridge(&loop, cert1, NULL);
    snprintf(path, sizeof path, "%s", engine_tls_path(t, ENGINE_TLS_SLOT_THREADS));
    assert_string_not_equal(path, engine_tls_path(t, ENGINE_TLS_SLOT_CMD));
    assert_string_not_equal(path, engine_tls_path(t, ENGINE_TLS_SLOT_SUB));
    a = unix_connect(path);
    b = unix_connect(path);
    assert_int_equal(send(a, "first", 5, 0), 5);
    assert_int_equal(send(b, "second", 6, 0), 6);
    for (int i = 0; i < 100; i++) uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
    assert_int_equal(recv(a, buf, sizeof buf, 0), -1);  /* not closed: waiting */
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(s.sessions, 0);
    /* Routed (as engine_redis.c does for the command connection): both go. */
    assert_string_equal(engine_tls_route(t, ENGINE_TLS_SLOT_THREADS, "127.0.0.1", s.port), path);
    assert_true(echoed_back(&loop, a, "first", 5));
    close(a);                                           /* the server serves the next one */
    assert_true(echoed_back(&loop, b, "second", 6));
    assert_int_equal(send(b, "again", 5, 0), 5);
    assert_true(echoed_back(&loop, b, "again", 5));
    close(b);
    for (double end = now_s() + 5; now_s() < end && pthread_tryjoin_np(s.thread, NULL); )
        uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
    assert_int_equal(s.sessions, 2);
    assert_int_equal(s.echoed, 16);
    close(s.lfd);
    bridge_free(&loop, t);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_echo_with_a_stall),
        cmocka_unit_test(test_failures_close_the_unix_side),
        cmocka_unit_test(test_threads_slot),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
