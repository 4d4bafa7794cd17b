/* The quiver tool's network options, shared by every subcommand: --cert,
 * --key, --pass (mutual TLS), --proxy, --unix-socket and --resolve; shown
 * with `quiver get` against the servers of test_identity.c and
 * test_network.c. */
#include "support.h"

#include "cli/run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(cli_net, .timeout = 60);

static const char *mtls(const char *name)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", tx_env("QV_MTLS_DIR", "the mutual-TLS test servers"),
             name);
    return b;
}

static const char *mtls_whoami(void)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/whoami", tx_env("QV_MTLS_URL", "the mutual-TLS test server"));
    return buf;
}

Test(cli_net, client_certificate_with_an_encrypted_key, .timeout = 60)
{
    const char *pass = tx_env("QV_MTLS_KEY_PASSWORD", "the test key's password");
    cli_result *r =
        CLI("get", "--executor", tx_kind_name(), "-b", "--cacert", mtls("ca.pem"), "--cert",
            mtls("client.pem"), "--key", mtls("client-enc.key"), "--pass", pass, mtls_whoami());
    cli_expect_status(r, 0);
    tx_assert_str_eq(r->out, "client");
    cli_result_free(r);

    /* --key-password is the same; -E is --cert. */
    r = CLI("get", "-b", "--cacert", mtls("ca.pem"), "-E", mtls("client.pem"), "--key",
            mtls("client-enc.key"), "--key-password", pass, mtls_whoami());
    cli_expect_status(r, 0);
    tx_assert_str_eq(r->out, "client");
    cli_result_free(r);
}

Test(cli_net, wrong_password_and_no_certificate_fail_saying_which, .timeout = 60)
{
    cli_result *r =
        CLI("get", "--executor", tx_kind_name(), "--cacert", mtls("ca.pem"), "--cert",
            mtls("client.pem"), "--key", mtls("client-enc.key"), "--pass", "wrong", mtls_whoami());
    cli_expect_status(r, 1);
    tx_assert_contains(r->err, "QV_ETLS");
    tx_assert_contains(r->err, "key_password");
    cli_result_free(r);

    r = CLI("get", "--cacert", mtls("ca.pem"), mtls_whoami());
    cli_expect_status(r, 1);
    tx_assert_contains(r->err, "demands a client certificate");
    cli_result_free(r);
}

Test(cli_net, proxy, .timeout = 60)
{
    unsetenv("http_proxy");
    cli_result *r = CLI("get", "--executor", tx_kind_name(), "--proxy", tx_proxy_url(), tu("/get"));
    cli_expect_status(r, 0);
    tx_assert_contains(r->out, "\nVia: quiver-test-proxy\n");
    cli_result_free(r);

    r = CLI("get", "-x", "http://127.0.0.1:1", tu("/get"));
    cli_expect_status(r, 1);
    tx_assert_contains(r->err, "QV_EPROXY");
    cli_result_free(r);
}

Test(cli_net, unix_socket, .timeout = 60)
{
    cli_result *r =
        CLI("get", "--executor", tx_kind_name(), "-b", "--unix-socket",
            tx_env("QV_NGINX_SOCKET", "nginx on a Unix socket"), "http://sidecar.invalid/whoami");
    cli_expect_status(r, 0);
    tx_assert_str_eq(r->out, "sidecar.invalid /whoami");
    cli_result_free(r);
}

Test(cli_net, resolve, .timeout = 60)
{
    const char *port = strrchr(tx_base(), ':') + 1;
    char pin[128], url[128];
    snprintf(pin, sizeof pin, "cli.quiver.test:%s:127.0.0.1", port);
    snprintf(url, sizeof url, "http://cli.quiver.test:%s/headers", port);
    cli_result *r = CLI("get", "--executor", tx_kind_name(), "-b", "--resolve", pin, url);
    cli_expect_status(r, 0);
    tx_assert_contains(r->out, "cli.quiver.test");
    cli_result_free(r);

    const char *bad[] = {"cli.quiver.test", "cli.quiver.test:80", "cli.quiver.test:x:1.2.3.4",
                         ":80:127.0.0.1", "host:80:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = CLI("get", "--resolve", bad[i], url);
        cli_expect_status(r, 2);
        tx_assert_contains(r->err, "--resolve wants HOST:PORT:ADDRESS");
        cli_result_free(r);
    }
}
