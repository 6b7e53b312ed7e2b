/*  =========================================================================
    parleyctl - operator and demo tool for a parley host

    parleyctl COMMAND [OPTIONS]. Each command is one entry in s_commands,
    with its own option parsing, so new ones (status, monitor) slot in
    without touching main. Exit status: 0 done, 1 failed, 2 usage error.
    =========================================================================
*/
#include "pl_token.h"
#include "pl_util.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

typedef struct _s_command_t s_command_t;
struct _s_command_t {
    const char *name;
    const char *arguments;      //  synopsis after the command name
    const char *summary;
    //  argv [0] is the command name; returns the exit status
    int (*run) (const s_command_t *command, int argc, char **argv);
};

static int s_token (const s_command_t *command, int argc, char **argv);

static const s_command_t s_commands [] = {
    { "token",
      "--secret S --user U [--name N] [--ttl SECONDS]",
      "print an HS256 token for user U (secret also from PARLEY_JWT_SECRET)",
      s_token },
};
#define S_COMMANDS (sizeof s_commands / sizeof s_commands [0])

static void
s_usage (FILE *stream)
{
    fprintf (stream, "usage: parleyctl COMMAND [OPTIONS]\n       parleyctl --help\ncommands:\n");
    for (size_t index = 0; index < S_COMMANDS; index++)
        fprintf (stream, "  %s %s\n      %s\n", s_commands [index].name,
                 s_commands [index].arguments, s_commands [index].summary);
}

static int
s_command_usage (const s_command_t *command, FILE *stream)
{
    fprintf (stream, "usage: parleyctl %s %s\n", command->name, command->arguments);
    return stream == stdout? 0: EXIT_USAGE;
}

//  strtoll that accepts only a whole, in-range decimal number
static int
s_parse_int64 (const char *text, int64_t *value_p)
{
    char *end;
    errno = 0;
    long long value = strtoll (text, &end, 10);
    if (errno || end == text || *end)
        return -1;
    *value_p = (int64_t) value;
    return 0;
}

static int
s_token (const s_command_t *command, int argc, char **argv)
{
    static const struct option options [] = {
        { "secret", required_argument, NULL, 's' },
        { "user",   required_argument, NULL, 'u' },
        { "name",   required_argument, NULL, 'n' },
        { "ttl",    required_argument, NULL, 't' },
        { "help",   no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    //  A secret on the command line shows in ps; the environment does not
    const char *secret = getenv ("PARLEY_JWT_SECRET");
    const char *user = NULL;
    const char *name = NULL;
    int64_t ttl = 86400;

    optind = 1;
    opterr = 0;
    int option;
    while ((option = getopt_long (argc, argv, "+", options, NULL)) != -1) {
        switch (option) {
            case 's': secret = optarg; break;
            case 'u': user = optarg; break;
            case 'n': name = optarg; break;
            case 't':
                if (s_parse_int64 (optarg, &ttl) || ttl <= 0) {
                    fprintf (stderr, "parleyctl: --ttl wants a positive number of seconds\n");
                    return s_command_usage (command, stderr);
                }
                break;
            case 'h': return s_command_usage (command, stdout);
            default:
                fprintf (stderr, "parleyctl: unknown or incomplete option '%s'\n", argv [optind - 1]);
                return s_command_usage (command, stderr);
        }
    }
    if (optind < argc) {
        fprintf (stderr, "parleyctl: unexpected argument '%s'\n", argv [optind]);
        return s_command_usage (command, stderr);
    }
    if (!secret || !*secret || !user)
        return s_command_usage (command, stderr);
    if (!pl_id_valid (user)) {
        fprintf (stderr, "parleyctl: user must be 1..%d of [A-Za-z0-9_.:@-]\n", PL_ID_MAX);
        return EXIT_USAGE;
    }
    char *token = pl_token_mint_hs256 (secret, user, name, ttl);
    if (!token) {
        //  The other arguments were checked; what is left is the name or ttl
        fprintf (stderr, "parleyctl: cannot mint token (name must be 1..%d bytes of UTF-8"
                         " without control characters; ttl must not overflow)\n", PL_NAME_MAX);
        return EXIT_USAGE;
    }
    printf ("%s\n", token);
    free (token);
    return fflush (stdout) == 0? 0: 1;
}

int
main (int argc, char **argv)
{
    if (argc < 2) {
        s_usage (stderr);
        return EXIT_USAGE;
    }
    if (streq_safe (argv [1], "--help") || streq_safe (argv [1], "-h")
    ||  streq_safe (argv [1], "help")) {
        s_usage (stdout);
        return 0;
    }
    for (size_t index = 0; index < S_COMMANDS; index++)
        if (streq_safe (argv [1], s_commands [index].name))
            return s_commands [index].run (&s_commands [index], argc - 1, argv + 1);
    fprintf (stderr, "parleyctl: unknown command '%s'\n", argv [1]);
    s_usage (stderr);
    return EXIT_USAGE;
}
