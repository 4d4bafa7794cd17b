/* quiver: the command-line tool. Dispatches to a subcommand; handles the
 * top-level --help and --version. */
#include "cli.h"

#include <curl/curl.h>
#include <jansson.h>
#include <quiver.h>
#include <stdio.h>
#include <string.h>

static const char synopsis[] = "quiver COMMAND [options] (get, fetch, bench; --help, --version)";

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *what;
} commands[] = {
    {"get", cmd_get, "send one request and print the response"},
    {"fetch", cmd_fetch, "fetch many URLs concurrently; JSON Lines results"},
    {"bench", cmd_bench, "load-test one URL; latency and throughput summary"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void help(void)
{
    printf("usage: quiver COMMAND [options]\n\n"
           "Asynchronous HTTP for humans, from the shell.\n\nCommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        printf("  %-7s %s\n", commands[i].name, commands[i].what);
    printf("\n'quiver COMMAND --help' describes a command.\n\nOptions:\n"
           "  -h, --help     show this help\n"
           "  -V, --version  show the versions of quiver, libcurl and jansson\n");
}

static void version(void)
{
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    printf("quiver %s (libquiver %s, libcurl %s, jansson %s)\n", QV_VERSION_STRING, qv_version(),
           cv ? cv->version : "?", JANSSON_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) return cli_usage_error(NULL, synopsis, "no command given");
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        help();
        return CLI_OK;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        version();
        return CLI_OK;
    }
    /* "quiver help fetch" is "quiver fetch --help". */
    if (strcmp(cmd, "help") == 0) {
        if (argc < 3) {
            help();
            return CLI_OK;
        }
        for (size_t i = 0; i < NCOMMANDS; i++) {
            if (strcmp(argv[2], commands[i].name) == 0) {
                char *args[] = {argv[2], "--help", NULL};
                return commands[i].run(2, args);
            }
        }
        return cli_usage_error(NULL, synopsis, "unknown command '%s'", argv[2]);
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(cmd, commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    if (cmd[0] == '-') return cli_usage_error(NULL, synopsis, "unknown option '%s'", cmd);
    return cli_usage_error(NULL, synopsis, "unknown command '%s'", cmd);
}
