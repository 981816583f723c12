/*
 * mirai: the command for job scripts.  It talks to a running dispatcher
 * (mirai-launch or mirai-dispatcher --listen/--control), found through
 * MIRAI_DISPATCHER_URL and MIRAI_CONTROL_URL unless --url says otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mirai.h>

#include "cli.h"

static const char epilog[] =
    "Commands:\n"
    "  status             the dispatcher's status matrix, as one line of JSON\n"
    "                     (asks MIRAI_CONTROL_URL)\n"
    "  saisei I           a fresh URL for server slot I (--force cuts off a\n"
    "                     connected server); prints the new URL\n"
    "  call FN [DATA]     run FN(DATA) on a server, DATA '-' or absent: stdin;\n"
    "                     writes the result to stdout (attaches to\n"
    "                     MIRAI_DISPATCHER_URL)\n"
    "  exec COMMAND       run COMMAND with sh -c on a server; passes on its\n"
    "                     stdout, stderr and exit status\n"
    "\n"
    "Exit status: 0 done (exec: the command's status), 1 the task or the\n"
    "dispatcher failed (the message says which), 2 bad command line.";

static int
fail(const char *what, int rv, const char *text)
{
	fprintf(stderr, "mirai: %s: %s (%s)\n", what,
	    text != NULL && *text ? text : mirai_strerror(rv), mirai_errname(rv));
	return 1;
}

/* Read all of stdin. */
static char *
slurp(size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf  = malloc(cap);
	ssize_t r;

	while (buf != NULL && (r = read(0, buf + n, cap - n)) > 0) {
		n += (size_t) r;
		if (n == cap) {
			char *b = realloc(buf, cap *= 2);
			if (b == NULL) {
				free(buf);
				return NULL;
			}
			buf = b;
		}
	}
	*len = n;
	return buf;
}

static int
run_task(const char *url, int64_t attach_ms, int64_t timeout, const char *fn,
    const void *data, size_t len, int exec)
{
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
	mirai_errmsg err  = {{0}};
	mirai_exec_result xr;
	const void *out;
	size_t olen;
	mirai *m;
	int rv, code = 0;

	if ((rv = mirai_attach(NULL, url, attach_ms, &err)) != 0) {
		return fail("attach", rv, err.text);
	}
	o.timeout_ms = timeout;
	if ((rv = mirai_call(&o, fn, data, len, &m)) != 0) {
		mirai_shutdown();
		return fail(fn, rv, NULL);
	}
	if ((rv = mirai_wait(m)) != 0) {
		code = fail(fn, rv, mirai_errortext(m));
	} else {
		out = mirai_data(m, &olen);
		if (exec && mirai_exec_parse(out, olen, &xr) == 0) {
			fwrite(xr.out, 1, xr.out_len, stdout);
			fwrite(xr.err, 1, xr.err_len, stderr);
			code = xr.status;
		} else if (exec) {
			code = fail(fn, MIRAI_EPROTO, "a garbled exec result");
		} else {
			fwrite(out, 1, olen, stdout);
		}
	}
	mirai_free(m);
	mirai_shutdown();
	return code;
}

int
main(int argc, char **argv)
{
	const char *url = NULL;
	int64_t timeout = 0, attach_ms = 0;
	int force = 0;
	const cli_opt opts[] = {
	    {"url", 'u', CLI_STR, &url, "URL",
		"dispatcher URL (status, saisei: its control URL)"},
	    {"timeout", 't', CLI_MS, &timeout, "TIME",
		"call, exec: give up after TIME (error 5)"},
	    {"wait", 'w', CLI_MS, &attach_ms, "TIME",
		"call, exec: wait this long for a busy dispatcher (30s)"},
	    {"force", 'f', CLI_FLAG, &force, NULL,
		"saisei: cut off a connected server"},
	    {NULL, 0, 0, NULL, NULL, NULL},
	};
	const cli_tool tool = {"mirai", "[OPTIONS] COMMAND [ARGS]",
	    "Talk to a running mirai dispatcher from a shell or job script.",
	    epilog, opts, 0};
	mirai_errmsg err = {{0}};
	const char *cmd;
	int first, rv;

	if (cli_parse(&tool, argc, argv, &first) != 0) {
		return 2;
	}
	if (first >= argc) {
		fprintf(stderr, "mirai: give a command (see --help)\n");
		return 2;
	}
	cmd = argv[first];
	if (strcmp(cmd, "status") == 0 && first + 1 == argc) {
		mirai_status *st;
		char *json;
		if ((rv = mirai_status_query(url, &st, &err)) != 0) {
			return fail("status", rv, err.text);
		}
		if ((rv = mirai_status_json(st, &json)) != 0) {
			mirai_status_free(st);
			return fail("status", rv, NULL);
		}
		printf("%s\n", json);
		free(json);
		mirai_status_free(st);
		return 0;
	}
	if (strcmp(cmd, "saisei") == 0 && first + 2 == argc) {
		char *end, *fresh = NULL;
		long i = strtol(argv[first + 1], &end, 10);
		if (*end != '\0' || i < 0) {
			fprintf(stderr, "mirai: saisei: '%s' is not a slot number\n",
			    argv[first + 1]);
			return 2;
		}
		if ((rv = mirai_saisei_query(url, (size_t) i, force, &fresh,
			 &err)) != 0) {
			return fail("saisei", rv, err.text);
		}
		printf("%s\n", fresh);
		free(fresh);
		return 0;
	}
	if (strcmp(cmd, "call") == 0 && first + 2 <= argc && first + 3 >= argc) {
		const char *fn = argv[first + 1];
		if (first + 3 == argc && strcmp(argv[first + 2], "-") != 0) {
			return run_task(url, attach_ms, timeout, fn, argv[first + 2],
			    strlen(argv[first + 2]), 0);
		}
		size_t len;
		char *in = slurp(&len);
		if (in == NULL) {
			return fail("call", MIRAI_ENOMEM, NULL);
		}
		rv = run_task(url, attach_ms, timeout, fn, in, len, 0);
		free(in);
		return rv;
	}
	if (strcmp(cmd, "exec") == 0 && first + 2 == argc) {
		return run_task(url, attach_ms, timeout, "mirai.exec",
		    argv[first + 1], strlen(argv[first + 1]), 1);
	}
	fprintf(stderr, "mirai: bad command line (see --help)\n");
	return 2;
}
