/*
 * test_cli.c: unit tests of cmd/cli.c, the option parser the tools share.
 *
 * One table of command lines, each parsed by a tool table that has every
 * option type, with what the parse must give: the return value, the
 * values, the operands in order, and a piece of the message on stderr.
 * The cases run one after the other in one process, which also checks
 * that a parse starts afresh after the one before (getopt keeps state).
 * --help and --version exit, so they run in a child.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <mirai.h>

#include "../../cmd/cli.h"

static struct {
	int verbose, quiet;
	const char *url, *url_file;
	long long num, window;
	size_t size;
	int64_t ms;
	cli_list plugins;
} v;

static const cli_opt opts[] = {
    {"verbose", 'v', CLI_FLAG, &v.verbose, NULL, "say more"},
    {"quiet", 'q', CLI_FLAG, &v.quiet, NULL, "say less"},
    {"url", 'u', CLI_STR, &v.url, "URL", "where"},
    {"url-file", 0, CLI_STR, &v.url_file, "FILE", "where, from a file"},
    {"num", 'n', CLI_INT, &v.num, "N", "how many"},
    {"window", 0, CLI_INT, &v.window, "N", "a long name alone"},
    {"size", 's', CLI_SIZE, &v.size, "BYTES", "how big"},
    {"timeout", 't', CLI_MS, &v.ms, "TIME", "how long"},
    {"plugin", 'p', CLI_LIST, &v.plugins, "LIB.so", "repeatable"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

typedef struct parse_case {
	const char *name;
	int stop;               /* stop_at_operand */
	const char *args[12];   /* after the tool name; NULL-ended */
	int rv;
	const char *err;        /* in the message; NULL: stderr is empty */
	/* What a successful parse gives (unset options: 0 or NULL). */
	int verbose, quiet;
	const char *url, *url_file;
	long long num, window;
	size_t size;
	int64_t ms;
	const char *plugins;    /* the list's items, joined by ',' */
	const char *operands;   /* argv[first..), joined by ' ' */
} parse_case;

static const parse_case cases[] = {
    {.name = "nothing", .args = {NULL}},
    {.name = "long flag", .args = {"--verbose", NULL}, .verbose = 1},
    {.name = "short flags", .args = {"-v", "-q", NULL}, .verbose = 1,
        .quiet = 1},
    {.name = "bundled flags", .args = {"-qv", NULL}, .verbose = 1, .quiet = 1},
    {.name = "--name=value", .args = {"--url=ws://a:1", NULL},
        .url = "ws://a:1"},
    {.name = "--name value", .args = {"--url", "ws://a:1", NULL},
        .url = "ws://a:1"},
    {.name = "-x value", .args = {"-u", "ws://a:1", NULL}, .url = "ws://a:1"},
    {.name = "-xvalue", .args = {"-uws://a:1", NULL}, .url = "ws://a:1"},
    {.name = "flags then -xvalue", .args = {"-vuws://a:1", NULL}, .verbose = 1,
        .url = "ws://a:1"},
    {.name = "--name= is empty", .args = {"--url=", NULL}, .url = ""},
    {.name = "a value that looks like an option", .args = {"--url", "-v", NULL},
        .url = "-v"},
    {.name = "exact name, prefix of another", .args = {"--url", "x", NULL},
        .url = "x"},
    {.name = "the longer name", .args = {"--url-file", "f", NULL},
        .url_file = "f"},
    {.name = "long name alone", .args = {"--window", "7", NULL}, .window = 7},
    {.name = "last value wins", .args = {"-n", "1", "--num=2", NULL}, .num = 2},

    /* Numbers. */
    {.name = "int", .args = {"--num", "12", NULL}, .num = 12},
    {.name = "negative int", .args = {"-n", "-5", NULL}, .num = -5},
    {.name = "int -nVALUE", .args = {"-n12", NULL}, .num = 12},
    {.name = "int with junk", .args = {"--num", "12x", NULL}, .rv = 2,
        .err = "--num: '12x' is not a valid N"},
    {.name = "int empty", .args = {"--num=", NULL}, .rv = 2,
        .err = "--num: '' is not a valid N"},
    {.name = "int too big", .args = {"--num", "99999999999999999999", NULL},
        .rv = 2, .err = "is not a valid N"},
    {.name = "size", .args = {"--size", "123", NULL}, .size = 123},
    {.name = "size k", .args = {"--size", "4k", NULL}, .size = 4096},
    {.name = "size K", .args = {"-s", "5K", NULL}, .size = 5120},
    {.name = "size M", .args = {"-s2M", NULL}, .size = 2u << 20},
    {.name = "size G", .args = {"--size=1G", NULL}, .size = (size_t) 1 << 30},
    {.name = "size bad suffix", .args = {"--size", "4x", NULL}, .rv = 2,
        .err = "--size: '4x' is not a valid BYTES"},
    {.name = "size suffix and more", .args = {"--size", "4kk", NULL}, .rv = 2,
        .err = "is not a valid BYTES"},
    {.name = "size negative", .args = {"--size", "-1", NULL}, .rv = 2,
        .err = "is not a valid BYTES"},
    {.name = "size no digits", .args = {"--size", "k", NULL}, .rv = 2,
        .err = "is not a valid BYTES"},
    {.name = "ms plain", .args = {"--timeout", "250", NULL}, .ms = 250},
    {.name = "ms", .args = {"-t", "250ms", NULL}, .ms = 250},
    {.name = "s", .args = {"-t2s", NULL}, .ms = 2000},
    {.name = "fractional s", .args = {"--timeout=1.5s", NULL}, .ms = 1500},
    {.name = "m", .args = {"-t", "5m", NULL}, .ms = 300000},
    {.name = "h", .args = {"-t", "1h", NULL}, .ms = 3600000},
    {.name = "time bad suffix", .args = {"--timeout", "3x", NULL}, .rv = 2,
        .err = "--timeout: '3x' is not a valid TIME"},
    {.name = "time negative", .args = {"-t", "-1s", NULL}, .rv = 2,
        .err = "is not a valid TIME"},

    /* Lists. */
    {.name = "list, every form", .args = {"-p", "a", "-pb", "--plugin=c",
        "--plugin", "d", NULL}, .plugins = "a,b,c,d"},
    {.name = "list among others", .args = {"-p", "a", "-v", "-p", "b", NULL},
        .verbose = 1, .plugins = "a,b"},

    /* Refusals. */
    {.name = "unknown long", .args = {"--bogus", NULL}, .rv = 2,
        .err = "test-tool: unknown option '--bogus' (see --help)"},
    {.name = "unknown long with a value", .args = {"--bogus=1", NULL}, .rv = 2,
        .err = "unknown option '--bogus=1'"},
    {.name = "unknown short", .args = {"-Z", NULL}, .rv = 2,
        .err = "unknown option '-Z'"},
    {.name = "unknown short in a bundle", .args = {"-vZq", NULL}, .rv = 2,
        .err = "unknown option '-Z'"},
    {.name = "after a half-read bundle", .args = {"-q", NULL}, .quiet = 1},
    {.name = "abbreviation", .args = {"--quie", NULL}, .rv = 2,
        .err = "unknown option '--quie'"},
    {.name = "abbreviation with a value", .args = {"--url-f", "x", NULL},
        .rv = 2, .err = "unknown option '--url-f'"},
    {.name = "abbreviation with =value", .args = {"--tim=2s", NULL}, .rv = 2,
        .err = "unknown option '--tim=2s'"},
    {.name = "ambiguous abbreviation", .args = {"--ur", "x", NULL}, .rv = 2,
        .err = "unknown option '--ur'"},
    {.name = "abbreviated --version", .args = {"--vers", NULL}, .rv = 2,
        .err = "unknown option '--vers'"},
    {.name = "long missing its value", .args = {"--url", NULL}, .rv = 2,
        .err = "test-tool: --url needs URL"},
    {.name = "short missing its value", .args = {"-v", "-u", NULL}, .rv = 2,
        .err = "--url needs URL"},
    {.name = "int missing its value", .args = {"--num", NULL}, .rv = 2,
        .err = "--num needs N"},
    {.name = "flag given a value", .args = {"--verbose=1", NULL}, .rv = 2,
        .err = "test-tool: --verbose takes no value"},
    {.name = "--help given a value", .args = {"--help=1", NULL}, .rv = 2,
        .err = "--help takes no value"},
    {.name = "an error ends the parse", .args = {"--bogus", "--help", NULL},
        .rv = 2, .err = "unknown option '--bogus'"},

    /* Operands. */
    {.name = "operands mix with options", .args = {"a", "-v", "b", "--num", "3",
        "c", NULL}, .verbose = 1, .num = 3, .operands = "a b c"},
    {.name = "-- ends the options", .args = {"-v", "--", "-q", "x", NULL},
        .verbose = 1, .operands = "-q x"},
    {.name = "operands before --, then after", .args = {"a", "--", "-b", NULL},
        .operands = "a -b"},
    {.name = "-- alone", .args = {"--", NULL}},
    {.name = "a second --", .args = {"--", "--", NULL}, .operands = "--"},
    {.name = "- is an operand", .args = {"-", "-v", NULL}, .verbose = 1,
        .operands = "-"},
    {.name = "stop at the first operand", .stop = 1, .args = {"-v", "cmd", "-q",
        "arg", NULL}, .verbose = 1, .operands = "cmd -q arg"},
    {.name = "stop: options before the operand", .stop = 1, .args = {"-n", "2",
        "--url=u", "cmd", "--url", "v", NULL}, .num = 2, .url = "u",
        .operands = "cmd --url v"},
    {.name = "stop: --", .stop = 1, .args = {"-v", "--", "-q", NULL},
        .verbose = 1, .operands = "-q"},
    {.name = "stop: an option's value is no operand", .stop = 1,
        .args = {"-u", "x", "cmd", NULL}, .url = "x", .operands = "cmd"},
    {.name = "stop: unknown option before the operand", .stop = 1,
        .args = {"-Z", "cmd", NULL}, .rv = 2, .err = "unknown option '-Z'"},
};

/* Join n strings with sep; "" for none.  The caller frees. */
static char *
join(const char *const *s, size_t n, const char *sep)
{
	size_t len = 1;
	char *out;

	for (size_t i = 0; i < n; i++) {
		len += strlen(s[i]) + strlen(sep);
	}
	out = calloc(1, len);
	assert_non_null(out);
	for (size_t i = 0; i < n; i++) {
		if (i > 0) {
			strcat(out, sep);
		}
		strcat(out, s[i]);
	}
	return out;
}

/* Parse args (NULL-ended) with stderr caught into err (NUL-ended). */
static int
parse_caught(const cli_tool *tool, const char *const *args, int *argc,
    char **argv, int *first, char *err, size_t err_len)
{
	FILE *f = tmpfile();
	int saved, rv;
	size_t n;

	assert_non_null(f);
	*argc   = 0;
	argv[(*argc)++] = (char *) tool->name;
	for (size_t i = 0; args[i] != NULL; i++) {
		argv[(*argc)++] = (char *) args[i];
	}
	argv[*argc] = NULL;
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
	rv = cli_parse(tool, *argc, argv, first);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	rewind(f);
	n      = fread(err, 1, err_len - 1, f);
	err[n] = '\0';
	fclose(f);
	return rv;
}

/* A string option's value: unset (NULL) or the one wanted. */
static void
check_str(const char *got, const char *want)
{
	if (want == NULL) {
		assert_null(got);
	} else {
		assert_non_null(got);
		assert_string_equal(got, want);
	}
}

static void
check_case(const parse_case *c)
{
	cli_tool tool = {"test-tool", "[OPTIONS] [ARGS]", "A test.", NULL,
	    opts, c->stop};
	char *argv[16], err[512], *got;
	int argc, first = -1, rv;

	memset(&v, 0, sizeof v);
	rv = parse_caught(&tool, c->args, &argc, argv, &first, err,
	    sizeof err);
	print_message("%-40s rv %d %s", c->name, rv, err[0] ? err : "\n");
	assert_int_equal(rv, c->rv);
	if (c->err == NULL) {
		assert_string_equal(err, "");
	} else {
		assert_non_null(strstr(err, c->err));
		/* One line, naming the tool. */
		assert_int_equal(strncmp(err, "test-tool: ", 11), 0);
		assert_ptr_equal(strchr(err, '\n'), err + strlen(err) - 1);
	}
	if (c->rv == 0) {
		assert_true(first >= 1 && first <= argc);
		got = join((const char *const *) argv + first,
		    (size_t) (argc - first), " ");
		assert_string_equal(got, c->operands ? c->operands : "");
		free(got);
		assert_int_equal(v.verbose, c->verbose);
		assert_int_equal(v.quiet, c->quiet);
		check_str(v.url, c->url);
		check_str(v.url_file, c->url_file);
		assert_true(v.num == c->num);
		assert_true(v.window == c->window);
		assert_true(v.size == c->size);
		assert_true(v.ms == c->ms);
		got = join(v.plugins.items, v.plugins.n, ",");
		assert_string_equal(got, c->plugins ? c->plugins : "");
		free(got);
	}
	free(v.plugins.items);
}

static void
test_table(void **state)
{
	(void) state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		check_case(&cases[i]);
	}
}

/* The cases again, backwards: no case leans on the one before it. */
static void
test_table_backwards(void **state)
{
	(void) state;
	for (size_t i = sizeof cases / sizeof cases[0]; i-- > 0;) {
		check_case(&cases[i]);
	}
}

/* POSIXLY_CORRECT makes plain getopt stop at the first operand; the
 * tools mix operands and options all the same. */
static void
test_posixly_correct(void **state)
{
	static const parse_case c = {.name = "POSIXLY_CORRECT",
	    .args = {"a", "-v", "b", "-n", "1", NULL}, .verbose = 1,
	    .num = 1, .operands = "a b"};

	(void) state;
	assert_int_equal(setenv("POSIXLY_CORRECT", "1", 1), 0);
	check_case(&c);
	unsetenv("POSIXLY_CORRECT");
}

/* Run cli_parse on args in a child; its exit status and stdout. */
static int
run_child(const char *const *args, char *out, size_t out_len)
{
	cli_tool tool = {"test-tool", "[OPTIONS] [ARGS]", "A test summary.",
	    "Exit status: 0.", opts, 0};
	FILE *f = tmpfile();
	pid_t pid;
	int status;
	size_t n;

	assert_non_null(f);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *argv[16], err[256];
		int argc, first;

		dup2(fileno(f), STDOUT_FILENO);
		parse_caught(&tool, args, &argc, argv, &first, err,
		    sizeof err);
		_exit(99); /* cli_parse returned */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	rewind(f);
	n      = fread(out, 1, out_len - 1, f);
	out[n] = '\0';
	fclose(f);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_help_version(void **state)
{
	static const struct {
		const char *args[4];
		const char *out;
	} runs[] = {
	    {{"--help", NULL}, "Usage: test-tool [OPTIONS] [ARGS]\n"},
	    {{"-h", NULL}, "Usage: test-tool [OPTIONS] [ARGS]\n"},
	    {{"-v", "--help", "--bogus", NULL}, "Usage: test-tool"},
	    {{"a", "-h", NULL}, "Usage: test-tool"},
	    {{"--version", NULL}, "test-tool " MIRAI_VERSION_STRING "\n"},
	};
	char out[4096];

	(void) state;
	for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
		assert_int_equal(run_child(runs[i].args, out, sizeof out), 0);
		assert_int_equal(strncmp(out, runs[i].out, strlen(runs[i].out)),
		    0);
	}
	/* The help lists every option of the table, and its epilog. */
	assert_int_equal(run_child(runs[0].args, out, sizeof out), 0);
	assert_non_null(strstr(out, "-v, --verbose"));
	assert_non_null(strstr(out, "-u, --url URL"));
	assert_non_null(strstr(out, "    --window N"));
	assert_non_null(strstr(out, "-h, --help"));
	assert_non_null(strstr(out, "    --version"));
	assert_non_null(strstr(out, "Exit status: 0."));
}

static void
test_parse_ms(void **state)
{
	(void) state;
	assert_true(cli_parse_ms("0") == 0);
	assert_true(cli_parse_ms("250") == 250);
	assert_true(cli_parse_ms("0.5s") == 500);
	assert_true(cli_parse_ms("2m") == 120000);
	assert_true(cli_parse_ms("") == -1);
	assert_true(cli_parse_ms("s") == -1);
	assert_true(cli_parse_ms("1d") == -1);
	assert_true(cli_parse_ms("1e30h") == -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_table_backwards),
	    cmocka_unit_test(test_posixly_correct),
	    cmocka_unit_test(test_help_version),
	    cmocka_unit_test(test_parse_ms),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
