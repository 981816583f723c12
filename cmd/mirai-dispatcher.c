/*
 * mirai-dispatcher: keep the FIFO queue between one client and its server
 * slots, giving a task only to a server that is online and idle.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mirai.h>

#include "cli.h"

static const char epilog[] =
    "Server URLs: with --url URL and -n N, all N slots share one listener\n"
    "at URL (tcp://, ws://, wss://, tls+tcp://); slot i is URL/<secret>/i,\n"
    "a random 128-bit secret per slot that the server presents in its\n"
    "first message: a peer without it is refused before anything else is\n"
    "read.  With --urls, one listener per URL, one slot each, the same way.\n"
    "With neither, N owner-only ipc sockets of this machine.  Port 0 is\n"
    "resolved.  --no-token drops the secrets: every slot's URL is then its\n"
    "listener's and a server takes any free slot (anyone who can reach the\n"
    "port can serve).  --print-urls shows what servers dial.\n"
    "\n"
    "The client URL may also come from MIRAI_CLIENT_URL.  With --listen the\n"
    "dispatcher prints MIRAI_DISPATCHER_URL=... (for mirai_attach) and, with\n"
    "--control, MIRAI_CONTROL_URL=... (for mirai status), and serves until\n"
    "SIGINT or SIGTERM.\n"
    "\n"
    "--prefetch K (default 0) lets a server hold up to K tasks queued behind\n"
    "the one it runs, so that short tasks never wait a round trip; a task\n"
    "may then wait behind a long one.\n"
    "\n"
    "Exit status: 0 the client went away or told the dispatcher to exit,\n"
    "1 error, 2 bad command line.";

/* SIGINT and SIGTERM are blocked in every thread and taken here, where
 * stopping the dispatcher is an ordinary call. */
static void *
signal_thread(void *arg)
{
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigwait(&set, &sig) == 0) {
		mirai_dispatcher_stop(arg);
	}
	return NULL;
}

/* Split a comma-separated list in place. */
static const char **
split(char *s, size_t *n)
{
	size_t cap = 8;
	const char **v = malloc(cap * sizeof *v);

	*n = 0;
	for (char *tok = strtok(s, ","); tok != NULL && v != NULL;
	     tok = strtok(NULL, ",")) {
		if (*n == cap) {
			const char **w = realloc(v, (cap *= 2) * sizeof *v);
			if (w == NULL) {
				free(v);
				return NULL;
			}
			v = w;
		}
		v[(*n)++] = tok;
	}
	return v;
}

/* A URL that can never work is a usage error (exit 2). */
static int
bad_url(int rv)
{
	return rv == MIRAI_EADDRINVAL || rv == MIRAI_ENOTSUP;
}

int
main(int argc, char **argv)
{
	const char *client = NULL, *url = NULL, *urls = NULL, *server = NULL;
	const char *listen = NULL, *control = NULL, *bind_to = NULL;
	const char *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL;
	const char *heartbeat = NULL;
	long long bind_index = 0, bind_count = 0;
	long long n = 0, retries = 0, max_tasks = 0, prefetch = 0;
	int64_t idle = 0, walltime = 0;
	size_t max_msg = 0;
	int no_token = 0, local = 0, output = 0, print = 0, verbose = 0,
	    quiet = 0;
	cli_list plugins = {0};
	const cli_opt opts[] = {
	    {"client", 'c', CLI_STR, &client, "URL",
		"dial the client here (default $MIRAI_CLIENT_URL)"},
	    {"listen", 0, CLI_STR, &listen, "URL",
		"instead, let clients attach here, one at a time"},
	    {"control", 0, CLI_STR, &control, "URL",
		"answer status and saisei requests here (mirai status)"},
	    {"url", 'u', CLI_STR, &url, "URL",
		"one listener for all server slots (see below)"},
	    {"n", 'n', CLI_INT, &n, "N", "number of server slots"},
	    {"urls", 0, CLI_STR, &urls, "U1,U2,..", "server URLs, one slot each"},
	    {"no-token", 0, CLI_FLAG, &no_token, NULL,
		"slots without secrets (see below)"},
	    {"retries", 'r', CLI_INT, &retries, "K",
		"requeue a task whose server died, at most K times"},
	    {"prefetch", 0, CLI_INT, &prefetch, "K",
		"a server may hold K tasks behind its running one (0-1024)"},
	    {"local", 'l', CLI_FLAG, &local, NULL,
		"start a local mirai-server for every slot"},
	    {"server", 0, CLI_STR, &server, "PATH",
		"mirai-server to start with --local"},
	    {"plugin", 'p', CLI_LIST, &plugins, "LIB.so",
		"plugin for the local servers (repeatable)"},
	    {"idle", 0, CLI_MS, &idle, "TIME", "local servers: idle time"},
	    {"walltime", 0, CLI_MS, &walltime, "TIME", "local servers: wall time"},
	    {"max-tasks", 0, CLI_INT, &max_tasks, "N", "local servers: max tasks"},
	    {"output", 0, CLI_FLAG, &output, NULL,
		"local servers keep task output"},
	    {"bind-to", 0, CLI_STR, &bind_to, "KIND",
		"local servers bind to core, numa or socket units"},
	    {"bind-index", 0, CLI_INT, &bind_index, "K",
		"the first local server's unit; the next ones follow"},
	    {"bind-count", 0, CLI_INT, &bind_count, "N",
		"local servers bind to N units each (default 1)"},
	    {"max-msg", 0, CLI_SIZE, &max_msg, "BYTES",
		"largest message (default 256M)"},
	    {"tls-cert", 0, CLI_STR, &tls_cert, "FILE",
		"PEM certificate of its TLS URLs: slots, --listen, --control"},
	    {"tls-key", 0, CLI_STR, &tls_key, "FILE",
		"PEM key of that certificate (TLS: see README)"},
	    {"tls-ca", 0, CLI_STR, &tls_ca, "FILE",
		"require client certificates of this PEM CA (TLS: see README)"},
	    {"heartbeat", 0, CLI_STR, &heartbeat, "TIME",
		"a peer silent this long is lost (default 10s; off)"},
	    {"print-urls", 0, CLI_FLAG, &print, NULL,
		"print the slot URLs (they hold secrets)"},
	    {"verbose", 'v', CLI_FLAG, &verbose, NULL, "log servers coming and going"},
	    {"quiet", 'q', CLI_FLAG, &quiet, NULL, "log errors only"},
	    {NULL, 0, 0, NULL, NULL, NULL},
	};
	const cli_tool tool = {"mirai-dispatcher", "[OPTIONS]",
	    "Queue tasks for one mirai client and hand each to a server that is\n"
	    "online and idle, first in first out.",
	    epilog, opts, 0};
	mirai_dispatcher_opts o = MIRAI_DISPATCHER_OPTS_INIT;
	mirai_server_opts so    = MIRAI_SERVER_OPTS_INIT;
	mirai_dispatcher *d;
	mirai_errmsg err = {{0}};
	const char **list = NULL;
	char *urls_copy   = NULL;
	int first, rv;

	sigset_t sigs;
	pthread_t sigthr;

	/* Before any thread exists, so that all of them inherit the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if (cli_parse(&tool, argc, argv, &first) != 0) {
		return 2;
	}
	if (first < argc) {
		fprintf(stderr, "mirai-dispatcher: unexpected '%s' (see --help)\n",
		    argv[first]);
		return 2;
	}
	if (client == NULL) {
		client = getenv("MIRAI_CLIENT_URL");
	}
	if (listen == NULL && (client == NULL || *client == '\0')) {
		fprintf(stderr, "mirai-dispatcher: no client URL: give --client "
				"or --listen (see --help)\n");
		return 2;
	}
	if (listen != NULL && client != NULL) {
		fprintf(stderr, "mirai-dispatcher: --client or --listen, not "
				"both\n");
		return 2;
	}
	if (retries < 0 || retries > 255 || n < 0 || max_tasks < 0 ||
	    bind_index < 0 || bind_index > 1000000) {
		fprintf(stderr, "mirai-dispatcher: -n, --retries (0-255) and "
				"--max-tasks must not be negative\n");
		return 2;
	}
	if (bind_count < 0 || bind_count > 65536) {
		fprintf(stderr, "mirai-dispatcher: --bind-count must be from 1 "
				"to 65536\n");
		return 2;
	}
	if (prefetch < 0 || prefetch > 1024) {
		fprintf(stderr, "mirai-dispatcher: --prefetch must be 0-1024\n");
		return 2;
	}
	if (cli_parse_heartbeat(heartbeat, &o.heartbeat_ms) != 0) {
		fprintf(stderr, "mirai-dispatcher: --heartbeat: '%s' is not a "
				"TIME or off\n",
		    heartbeat);
		return 2;
	}
	if (urls != NULL) {
		if ((urls_copy = strdup(urls)) == NULL ||
		    (list = split(urls_copy, &o.nurls)) == NULL) {
			fprintf(stderr, "mirai-dispatcher: out of memory\n");
			return 1;
		}
		o.urls = list;
	}
	mirai_log_set(mirai_log_stderr, "mirai-dispatcher",
	    quiet ? MIRAI_LOG_ERROR : verbose ? MIRAI_LOG_INFO : MIRAI_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);

	o.client_url         = listen != NULL ? NULL : client;
	o.listen_url         = listen;
	o.control_url        = control;
	o.url                = url;
	o.n                  = (int) n;
	o.no_token           = no_token;
	o.local              = local;
	o.retries            = (int) retries;
	o.prefetch           = (int) prefetch;
	o.tls_cert           = tls_cert;
	o.tls_key            = tls_key;
	o.tls_ca             = tls_ca;
	so.idle_ms           = idle;
	so.walltime_ms       = walltime;
	so.max_tasks         = (uint64_t) max_tasks;
	so.output            = output;
	so.max_msg           = max_msg;
	so.plugins           = plugins.items;
	so.nplugins          = plugins.n;
	so.server_path       = server;
	so.bind_to           = bind_to;
	so.bind_index        = (int) bind_index;
	so.bind_count        = (int) bind_count;
	o.server             = &so;
	rv = mirai_dispatcher_create(&d, &o, &err);
	free(list);
	free(plugins.items);
	if (rv != 0) {
		fprintf(stderr, "mirai-dispatcher: %s\n", err.text);
		free(urls_copy);
		return bad_url(rv) ? 2 : 1;
	}
	if ((rv = mirai_dispatcher_listen(d, &err)) != 0) {
		fprintf(stderr, "mirai-dispatcher: %s\n", err.text);
		mirai_dispatcher_destroy(d);
		free(urls_copy);
		return bad_url(rv) ? 2 : 1;
	}
	if (print) {
		for (size_t i = 0; i < mirai_dispatcher_slots(d); i++) {
			printf("%s\n", mirai_dispatcher_url(d, i));
		}
	}
	/* Where clients attach and where to ask for status. */
	if (listen != NULL) {
		printf("MIRAI_DISPATCHER_URL=%s\n", mirai_dispatcher_client_url(d));
	}
	if (control != NULL) {
		printf("MIRAI_CONTROL_URL=%s\n", mirai_dispatcher_control_url(d));
	}
	fflush(stdout);
	int sigthr_ok = pthread_create(&sigthr, NULL, signal_thread, d) == 0;
	rv = mirai_dispatcher_run(d, &err);
	if (sigthr_ok) {
		pthread_cancel(sigthr);
		pthread_join(sigthr, NULL);
	}
	if (rv != 0) {
		fprintf(stderr, "mirai-dispatcher: %s\n", err.text);
	}
	mirai_dispatcher_destroy(d);
	free(urls_copy);
	/* A --client URL is checked when it is dialled, here. */
	return rv == 0 ? 0 : bad_url(rv) ? 2 : 1;
}
