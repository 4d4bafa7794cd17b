/* TLS identity and settings: client certificates (mutual TLS, an encrypted
 * key, per request), what each refusal says, a CA directory, a pinned
 * public key and the lowest TLS version.
 *
 * The servers are tests/servers/tls_server.py: QV_MTLS_URL (TLS 1.3) and
 * QV_MTLS12_URL (TLS 1.2 at most) demand a client certificate from the
 * throwaway CA in QV_MTLS_DIR and answer GET /whoami with its common name;
 * QV_TLS_URL asks for none (QV_TLS_CAPATH, QV_TLS_PIN: a CA directory and
 * the pin of its key). scripts/lib/servers.sh makes the certificates. */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(identity, .timeout = 30);

/* A file of QV_MTLS_DIR (ring of buffers, like tu()). */
static const char *mtls_file(const char *name)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s",
             tx_env("QV_MTLS_DIR", "the mutual-TLS test servers (qv_start_mtls)"), name);
    return b;
}

static const char *mtls_url(int tls12, const char *path)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s%s",
             tls12 ? tx_env("QV_MTLS12_URL", "the mutual-TLS 1.2 test server")
                   : tx_env("QV_MTLS_URL", "the mutual-TLS test server"),
             path);
    return b;
}

static const char *key_password(void)
{
    return tx_env("QV_MTLS_KEY_PASSWORD", "the password of the encrypted test key");
}

/* GET /whoami and expect the server to have seen `who`. */
static void expect_whoami(qv_session *s, int tls12, const char *who)
{
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, mtls_url(tls12, "/whoami"));
    tx_assert_str_eq(qv_response_text(r), who);
    qv_future_release(f);
}

/* GET /whoami and expect QV_ETLS with a message containing `says`. */
static void expect_refused(qv_session *s, int tls12, const char *says)
{
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, mtls_url(tls12, "/whoami")), QV_OK);
    const char *msg = tx_expect_error(f, QV_ETLS);
    tx_assert_contains(msg, says);
    qv_future_release(f);
}

Test(identity, client_certificate_with_a_plain_key, .timeout = 30)
{
    qv_session *s =
        TX_SESSION(.ca_file = mtls_file("ca.pem"), .client_cert = mtls_file("client.pem"),
                   .client_key = mtls_file("client.key"));
    for (int tls12 = 0; tls12 <= 1; tls12++) expect_whoami(s, tls12, "client");
    qv_session_free(s);
}

Test(identity, client_certificate_with_an_encrypted_key, .timeout = 30)
{
    qv_session *s =
        TX_SESSION(.ca_file = mtls_file("ca.pem"), .client_cert = mtls_file("client.pem"),
                   .client_key = mtls_file("client-enc.key"), .key_password = key_password());
    for (int tls12 = 0; tls12 <= 1; tls12++) expect_whoami(s, tls12, "client");
    qv_session_free(s);
}

Test(identity, wrong_key_password_is_etls_naming_the_key, .timeout = 30)
{
    qv_session *s =
        TX_SESSION(.ca_file = mtls_file("ca.pem"), .client_cert = mtls_file("client.pem"),
                   .client_key = mtls_file("client-enc.key"), .key_password = "not-the-password");
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, mtls_url(0, "/whoami")), QV_OK);
    const char *msg = tx_expect_error(f, QV_ETLS);
    tx_assert_contains(msg, "key_password");
    cr_assert_null(strstr(msg, "not-the-password"), "the password is in the message: %s", msg);
    qv_future_release(f);
    qv_session_free(s);
}

/* Both servers refuse s's requests, each time (TLS 1.3: the server's alert
 * arrives after the client's handshake, where libcurl sees a receive or
 * send error; TLS 1.2: in the handshake); frees s. */
static void expect_refused_by_both(qv_session *s, const char *says)
{
    for (int i = 0; i < 3; i++)
        for (int tls12 = 0; tls12 <= 1; tls12++) expect_refused(s, tls12, says);
    qv_session_free(s);
}

Test(identity, no_certificate_when_demanded_is_etls, .timeout = 30)
{
    expect_refused_by_both(TX_SESSION(.ca_file = mtls_file("ca.pem")),
                           "demands a client certificate");
}

Test(identity, certificate_from_another_ca_is_etls, .timeout = 30)
{
    expect_refused_by_both(TX_SESSION(.ca_file = mtls_file("ca.pem"),
                                      .client_cert = mtls_file("rogue.pem"),
                                      .client_key = mtls_file("rogue.key")),
                           "rejected the client certificate");
}

Test(identity, per_request_certificate_replaces_the_session_s, .timeout = 30)
{
    qv_session *s =
        TX_SESSION(.ca_file = mtls_file("ca.pem"), .client_cert = mtls_file("rogue.pem"),
                   .client_key = mtls_file("rogue.key"));
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, mtls_url(0, "/whoami"), .client_cert = mtls_file("client.pem"),
                        .client_key = mtls_file("client-enc.key"), .key_password = key_password()),
                 QV_OK);
    tx_assert_str_eq(qv_response_text(tx_expect_status(f, 200)), "client");
    qv_future_release(f);
    /* The connection made with the request's certificate is not reused by
     * a request with the session's. */
    expect_refused(s, 0, "rejected the client certificate");
    qv_session_free(s);

    /* And the other way round: a session without one, a request with one. */
    s = TX_SESSION(.ca_file = mtls_file("ca.pem"));
    cr_assert_eq(qv_get(s, &f, mtls_url(1, "/whoami"), .client_cert = mtls_file("client.pem"),
                        .client_key = mtls_file("client.key")),
                 QV_OK);
    tx_assert_str_eq(qv_response_text(tx_expect_status(f, 200)), "client");
    qv_future_release(f);
    expect_refused(s, 1, "demands a client certificate");
    qv_session_free(s);
}

/* A file's text (free it). */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "cannot open %s", path);
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return strdup(buf);
}

Test(identity, certificate_and_key_as_pem_text, .timeout = 30)
{
    char *cert = slurp(mtls_file("client.pem")), *key = slurp(mtls_file("client-enc.key"));
    qv_session *s = TX_SESSION(.ca_file = mtls_file("ca.pem"), .client_cert_pem = cert,
                               .client_key_pem = key, .key_password = key_password());
    /* Copied: the caller's text may go at once. */
    memset(cert, 'x', strlen(cert));
    free(cert);
    free(key);
    for (int tls12 = 0; tls12 <= 1; tls12++) expect_whoami(s, tls12, "client");
    qv_session_free(s);

    /* Per request, over a session without one. */
    cert = slurp(mtls_file("client.pem"));
    key = slurp(mtls_file("client.key"));
    s = TX_SESSION(.ca_file = mtls_file("ca.pem"));
    qv_future *f;
    cr_assert_eq(
        qv_get(s, &f, mtls_url(0, "/whoami"), .client_cert_pem = cert, .client_key_pem = key),
        QV_OK);
    free(cert);
    free(key);
    tx_assert_str_eq(qv_response_text(tx_expect_status(f, 200)), "client");
    qv_future_release(f);
    qv_session_free(s);
}

Test(identity, missing_certificate_file_is_etls, .timeout = 30)
{
    qv_session *s =
        TX_SESSION(.ca_file = mtls_file("ca.pem"), .client_cert = "/nonexistent/quiver-client.pem");
    expect_refused(s, 0, "client certificate could not be loaded");
    qv_session_free(s);
}

Test(identity, ca_path_verifies, .timeout = 30)
{
    /* The system bundle does not hold the throwaway CA (test_tls): the
     * directory vouches for the server. */
    qv_session *s = TX_SESSION(.ca_path = tx_env("QV_TLS_CAPATH", "a CA directory"),
                               .ca_file = "/etc/ssl/certs/ca-certificates.crt");
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tx_tls_url("/hello"));
    tx_assert_str_eq(qv_response_text(r), "hello tls");
    qv_future_release(f);
    qv_session_free(s);
}

Test(identity, pinned_public_key, .timeout = 30)
{
    const char *pin = tx_env("QV_TLS_PIN", "the TLS test server's key pin");
    qv_session *s = TX_SESSION(.ca_file = tx_tls_ca(), .pinned_public_key = pin);
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tx_tls_url("/hello"));
    tx_assert_str_eq(qv_response_text(r), "hello tls");
    qv_future_release(f);
    qv_session_free(s);

    /* A pin of another key fails, even though the certificate verifies. */
    s = TX_SESSION(.ca_file = tx_tls_ca(),
                   .pinned_public_key = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    cr_assert_eq(qv_get(s, &f, tx_tls_url("/hello")), QV_OK);
    tx_assert_contains(tx_expect_error(f, QV_ETLS), "pinned_public_key");
    qv_future_release(f);
    qv_session_free(s);
}

Test(identity, tls_min_version, .timeout = 30)
{
    qv_session *s =
        TX_SESSION(.ca_file = mtls_file("ca.pem"), .client_cert = mtls_file("client.pem"),
                   .client_key = mtls_file("client.key"), .tls_min_version = 13);
    expect_whoami(s, 0, "client");
    /* The other server stops at TLS 1.2. */
    expect_refused(s, 1, "tls_min_version");
    qv_session_free(s);

    s = TX_SESSION(.ca_file = mtls_file("ca.pem"), .client_cert = mtls_file("client.pem"),
                   .client_key = mtls_file("client.key"), .tls_min_version = 12);
    expect_whoami(s, 1, "client");
    qv_session_free(s);
}

Test(identity, bad_settings_are_einval, .timeout = 30)
{
    qv_session *s = NULL;
    const qv_session_opts bad[] = {
        {.size = sizeof(qv_session_opts), .tls_min_version = 11},
        {.size = sizeof(qv_session_opts), .tls_min_version = 14},
        {.size = sizeof(qv_session_opts), .client_cert = "a.pem\r\nX: y"},
        {.size = sizeof(qv_session_opts), .key_password = "line\nbreak"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(qv_session_new(&s, &bad[i]), QV_EINVAL, "case %zu", i);
        cr_assert_null(s);
    }
    s = TX_SESSION();
    qv_future *f = NULL;
    cr_assert_eq(qv_get(s, &f, tu("/get"), .client_key = "k\r\n"), QV_EINVAL);
    cr_assert_null(f);
    qv_session_free(s);
}
