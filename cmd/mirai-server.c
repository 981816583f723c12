/*
 * mirai-server: dial a client (or dispatcher) URL and execute tasks.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mirai.h>

#include "cli.h"

/*
 * --stdin: the launcher's way to start servers over ssh or srun.  URLs
 * (which hold tokens) and environment arrive on stdin as the agent setup
 * (mirai_agent_read() in mirai.h), not on the command line that ps shows.
 * With one URL this process is the server.  With several it is the
 * host's agent (like Open MPI's orted): it starts one server per URL here,
 * so a host costs one ssh exec, not one per server.  stdin then stays open;
 * its EOF (the launcher or its ssh channel gone) stops the server(s) after
 * their current task.  Under srun every node's agent reads the same setup
 * and keeps the URLs addressed to its node ($SLURMD_NODENAME, else the
 * host name).
 *
 * --setup-file FILE: the same setup from an owner-only file, for pbsdsh,
 * whose tasks have no stdin; the agent keeps its node's URLs (by host
 * name) as under srun.  With no stdin to watch, the servers' own ends
 * end the agent: they exit when their dispatcher goes.
 */
static int
read_setup(const char *file, mirai_agent_setup **st)
{
	const char *node = getenv("SLURMD_NODENAME");
	const char *what = file != NULL ? "--setup-file" : "--stdin";
	char host[256];
	mirai_errmsg err;
	int rv;

	if (node == NULL || *node == '\0') {
		if (gethostname(host, sizeof host) != 0) {
			host[0] = '\0';
		}
		host[sizeof host - 1] = '\0';
		node = host;
	}
	rv = file != NULL ? mirai_agent_read_file(file, node, st, &err)
			  : mirai_agent_read(0, node, st, &err);
	if (rv != 0) {
		fprintf(stderr, "mirai-server: %s: %s\n", what, err.text);
		return -1;
	}
	for (size_t i = 0; i < (*st)->nenv; i++) {
		char *e  = (*st)->env[i];
		char *eq = strchr(e, '=');
		*eq      = '\0';
		rv       = setenv(e, eq + 1, 1);
		*eq      = '=';
		if (rv != 0) {
			fprintf(stderr, "mirai-server: %s: cannot set %.*s\n",
			    what, (int) (eq - e), e);
			return -1;
		}
	}
	return 0;
}

/*
 * The launcher's CA, when its slots are wss://: written once to an
 * owner-only file (a directory of our own, 0700) that --tls-ca names for
 * the servers here, removed when this process exits.
 */
static char ca_dir[80], ca_path[96];

static void
ca_remove(void)
{
	unlink(ca_path);
	rmdir(ca_dir);
}

static int
write_ca(const char *pem)
{
	const char *tmp = getenv("TMPDIR");
	size_t len      = strlen(pem);
	int fd;

	if (tmp == NULL || *tmp != '/' || strlen(tmp) > 50) {
		tmp = "/tmp";
	}
	snprintf(ca_dir, sizeof ca_dir, "%s/mirai-ca-XXXXXX", tmp);
	if (mkdtemp(ca_dir) == NULL) {
		return -1;
	}
	snprintf(ca_path, sizeof ca_path, "%s/ca.pem", ca_dir);
	atexit(ca_remove);
	fd = open(ca_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd < 0) {
		return -1;
	}
	if (write(fd, pem, len) != (ssize_t) len) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/*
 * Signals: the first SIGTERM, SIGINT or SIGHUP stops the server after its
 * current task (it says goodbye to its client first); a second one ends it
 * at once.  End of stdin under --stdin counts as the first.
 */
static mirai_server *the_server;
/* The agent's children, with stopping under agent_mtx: a stop that comes
 * while the agent still starts them must reach the later ones too. */
static pthread_mutex_t agent_mtx = PTHREAD_MUTEX_INITIALIZER;
static pid_t *agent_children;
static size_t agent_n;
static int stopping;

static void
stop_all(void)
{
	pthread_mutex_lock(&agent_mtx);
	if (stopping++ > 0) {
		_exit(MIRAI_EXIT_CLOSED);
	}
	if (the_server != NULL) {
		mirai_server_stop(the_server);
	}
	for (size_t i = 0; i < agent_n; i++) {
		if (agent_children[i] > 0) {
			kill(agent_children[i], SIGTERM);
		}
	}
	pthread_mutex_unlock(&agent_mtx);
}

static void *
signal_thread(void *arg)
{
	sigset_t *set = arg;
	int sig;

	while (sigwait(set, &sig) == 0) {
		stop_all();
	}
	return NULL;
}

static void *
watch_stdin(void *arg)
{
	char buf[256];

	(void) arg;
	while (read(0, buf, sizeof buf) > 0) {
	}
	stop_all();
	return NULL;
}

/*
 * The host agent: run argv again (without --stdin or --setup-file) once
 * per URL, each with MIRAI_URL and its own --bind-index, and wait for them
 * all.  Exits 0 when all ended normally, else the first failure's status.
 */
static int
run_agent(int argc, char **argv, const mirai_agent_setup *st)
{
	char **cargv = calloc((size_t) argc + 6, sizeof *cargv);
	extern char **environ;
	int code = 0, k = 0;
	char self[4096];
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);

	if (cargv == NULL || len <= 0) {
		return MIRAI_EXIT_ERROR;
	}
	self[len]      = '\0';
	agent_children = calloc(st->nurls, sizeof *agent_children);
	if (agent_children == NULL) {
		return MIRAI_EXIT_ERROR;
	}
	cargv[k++] = self;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--setup-file") == 0) {
			i++; /* and its FILE */
		} else if (strcmp(argv[i], "--stdin") != 0 &&
		    strncmp(argv[i], "--setup-file=", 13) != 0) {
			cargv[k++] = argv[i];
		}
	}
	if (ca_path[0] != '\0') {
		cargv[k++] = "--tls-ca";
		cargv[k++] = ca_path;
	}
	for (size_t i = 0; i < st->nurls; i++) {
		char idx[16];
		int j = k;
		if (setenv("MIRAI_URL", st->urls[i], 1) != 0) {
			code = MIRAI_EXIT_ERROR;
			continue;
		}
		if (st->bind_index[i] >= 0) {
			snprintf(idx, sizeof idx, "%d", st->bind_index[i]);
			cargv[j++] = "--bind-index";
			cargv[j++] = idx;
		}
		cargv[j] = NULL;
		pthread_mutex_lock(&agent_mtx);
		if (stopping) {
			pthread_mutex_unlock(&agent_mtx);
			break;
		}
		if (posix_spawn(&agent_children[i], self, NULL, NULL, cargv,
			environ) != 0) {
			agent_children[i] = 0;
			code              = MIRAI_EXIT_ERROR;
		}
		agent_n = i + 1;
		pthread_mutex_unlock(&agent_mtx);
		unsetenv("MIRAI_URL");
	}
	for (size_t i = 0; i < st->nurls; i++) {
		int status = 0;
		pid_t r;
		if (agent_children[i] <= 0) {
			continue;
		}
		/* Only an interrupted wait is retried: ECHILD (the child
		 * reaped already) would loop for ever. */
		while ((r = waitpid(agent_children[i], &status, 0)) < 0 &&
		    errno == EINTR) {
		}
		pthread_mutex_lock(&agent_mtx);
		agent_children[i] = 0;
		pthread_mutex_unlock(&agent_mtx);
		if (r < 0) {
			code = code != 0 ? code : MIRAI_EXIT_ERROR;
			continue;
		}
		if (code == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			code = WIFEXITED(status) ? WEXITSTATUS(status) : MIRAI_EXIT_ERROR;
		}
	}
	free(cargv);
	return code;
}

static const char epilog[] =
    "The URL may also come from the environment variable MIRAI_URL, which\n"
    "other users cannot read (unlike the command line), or with --stdin\n"
    "from standard input, as the agent setup mirai-launch writes (URLs with\n"
    "their bind indexes, environment; see mirai_agent_read in mirai.h);\n"
    "several URLs start one server each, from one process that waits for\n"
    "them.  Under srun it keeps the URLs for $SLURMD_NODENAME (else the\n"
    "host name).  The server then stops, after its current\n"
    "task, when its standard input reaches end of file (how mirai-launch\n"
    "starts servers over ssh).  --setup-file FILE reads the same setup from\n"
    "a file (mirai-launch --launcher pbs, under pbsdsh), keeping the URLs\n"
    "for this host's name; it refuses, with exit status 2, a FILE that is a\n"
    "link, not a regular file, not this user's, or open to group or others.\n"
    "Its servers then end on their own, when their dispatcher goes.\n"
    "SIGTERM, SIGINT and SIGHUP stop it after its current task too; a\n"
    "second signal ends it at once.\n"
    "\n"
    "Exit status:\n"
    "  0  the connection ended, or the client told the server to exit\n"
    "  1  error: could not load a plugin, dial, or run\n"
    "  2  bad command line, or a setup (--stdin, --setup-file) refused\n"
    "  3  idle time reached\n"
    "  4  wall time reached\n"
    "  5  maximum number of tasks completed";

int
main(int argc, char **argv)
{
	const char *url = NULL, *bind_to = NULL, *heartbeat = NULL;
	const char *tls_ca = NULL, *tls_cert = NULL, *tls_key = NULL;
	int64_t idle = 0, walltime = 0;
	long long max_tasks = 0, bind_index = 0, bind_count = 0;
	size_t max_msg = 0;
	const char *setup_file = NULL;
	int output = 0, dial_once = 0, verbose = 0, quiet = 0, use_stdin = 0;
	int bind_planned = 0;
	cli_list plugins = {0};
	const cli_opt opts[] = {
	    {"url", 'u', CLI_STR, &url, "URL",
		"dial URL (tcp://, ws://, ipc://); default $MIRAI_URL"},
	    {"plugin", 'p', CLI_LIST, &plugins, "LIB.so",
		"load functions from a plugin (repeatable)"},
	    {"idle", 0, CLI_MS, &idle, "TIME",
		"exit after TIME without a task (250ms, 30s, 5m, 1h; "
		"default: never)"},
	    {"walltime", 0, CLI_MS, &walltime, "TIME",
		"exit between tasks once TIME has passed"},
	    {"max-tasks", 0, CLI_INT, &max_tasks, "N",
		"exit after completing N tasks"},
	    {"output", 0, CLI_FLAG, &output, NULL,
		"keep stdout/stderr of tasks (default: /dev/null)"},
	    {"dial-once", 0, CLI_FLAG, &dial_once, NULL,
		"fail at once if the first dial fails (default: retry)"},
	    {"max-msg", 0, CLI_SIZE, &max_msg, "BYTES",
		"largest message (default 256M)"},
	    {"bind-to", 0, CLI_STR, &bind_to, "KIND",
		"bind before dialing: core, numa, socket or none"},
	    {"bind-index", 0, CLI_INT, &bind_index, "K",
		"bind to unit K (from 0); past the last, wrap round"},
	    {"bind-count", 0, CLI_INT, &bind_count, "N",
		"bind to N units from K on (default 1)"},
	    {"bind-planned", 0, CLI_FLAG, &bind_planned, NULL,
		"(internal) K comes from a placement: only the first server "
		"past the last unit warns of the wrap"},
	    {"heartbeat", 0, CLI_STR, &heartbeat, "TIME",
		"a peer silent this long is lost (default 10s; off)"},
	    {"stdin", 0, CLI_FLAG, &use_stdin, NULL,
		"read URL and environment from stdin; exit at its end"},
	    {"setup-file", 0, CLI_STR, &setup_file, "FILE",
		"read URL and environment from FILE (owner-only; pbsdsh)"},
	    {"tls-ca", 0, CLI_STR, &tls_ca, "FILE",
		"PEM file of the CA of the dispatcher or client (TLS: see README)"},
	    {"tls-cert", 0, CLI_STR, &tls_cert, "FILE",
		"PEM file of a client certificate (TLS: see README)"},
	    {"tls-key", 0, CLI_STR, &tls_key, "FILE",
		"PEM file of the client certificate's key (TLS: see README)"},
	    {"verbose", 'v', CLI_FLAG, &verbose, NULL, "log connections and exits"},
	    {"quiet", 'q', CLI_FLAG, &quiet, NULL, "log errors only"},
	    {NULL, 0, 0, NULL, NULL, NULL},
	};
	const cli_tool tool = {"mirai-server", "[OPTIONS] [URL]",
	    "Dial a mirai client or dispatcher and execute the tasks it sends,\n"
	    "one at a time.  Built-in functions: mirai.echo, mirai.sleep,\n"
	    "mirai.exec, mirai.info.",
	    epilog, opts, 0};
	mirai_server_opts so = MIRAI_SERVER_OPTS_INIT;
	mirai_agent_setup *st = NULL;
	mirai_server *srv;
	mirai_errmsg err;
	sigset_t sigs;
	pthread_t th;
	int first, rv, why = MIRAI_EXIT_ERROR;

	/* Before any thread exists, so that all of them inherit the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	/* A SIGCHLD ignored by whoever started us would reap the agent's
	 * children behind its back. */
	signal(SIGCHLD, SIG_DFL);
	if ((rv = cli_parse(&tool, argc, argv, &first)) != 0) {
		return MIRAI_EXIT_USAGE;
	}
	if (first < argc) {
		if (url != NULL || first + 1 < argc) {
			fprintf(stderr, "mirai-server: one URL only (see --help)\n");
			return MIRAI_EXIT_USAGE;
		}
		url = argv[first];
	}
	if (use_stdin && setup_file != NULL) {
		fprintf(stderr, "mirai-server: --stdin or --setup-file, not "
				"both\n");
		return MIRAI_EXIT_USAGE;
	}
	if (use_stdin || setup_file != NULL) {
		if (url != NULL || first < argc) {
			fprintf(stderr, "mirai-server: %s takes no other URL\n",
			    use_stdin ? "--stdin" : "--setup-file");
			return MIRAI_EXIT_USAGE;
		}
		if (read_setup(setup_file, &st) != 0) {
			mirai_agent_setup_free(st);
			return MIRAI_EXIT_USAGE;
		}
		if (st->tls_ca != NULL && tls_ca == NULL) {
			if (write_ca(st->tls_ca) != 0) {
				fprintf(stderr, "mirai-server: cannot write the "
						"launcher's CA\n");
				mirai_agent_setup_free(st);
				return MIRAI_EXIT_ERROR;
			}
			tls_ca = ca_path;
		}
		url = st->urls[0];
		if (st->bind_index[0] >= 0) {
			bind_index = st->bind_index[0];
		}
	}
	if (url == NULL) {
		url = getenv("MIRAI_URL");
	}
	if (url == NULL || *url == '\0') {
		fprintf(stderr, "mirai-server: no URL: give --url or set "
				"MIRAI_URL (see --help)\n");
		return MIRAI_EXIT_USAGE;
	}
	if (max_tasks < 0) {
		fprintf(stderr, "mirai-server: --max-tasks must be >= 0\n");
		return MIRAI_EXIT_USAGE;
	}
	/* Checked here so that a typo is a usage error, not a failed run. */
	if (bind_to != NULL && strcmp(bind_to, "core") != 0 &&
	    strcmp(bind_to, "numa") != 0 && strcmp(bind_to, "socket") != 0 &&
	    strcmp(bind_to, "none") != 0) {
		fprintf(stderr, "mirai-server: --bind-to must be core, numa, "
				"socket or none, not '%s'\n",
		    bind_to);
		return MIRAI_EXIT_USAGE;
	}
	if (bind_index < 0 || bind_index > INT_MAX) {
		fprintf(stderr, "mirai-server: --bind-index must be from 0 "
				"to %d\n",
		    INT_MAX);
		return MIRAI_EXIT_USAGE;
	}
	if (bind_count < 0 || bind_count > 65536) {
		fprintf(stderr, "mirai-server: --bind-count must be from 1 "
				"to 65536\n");
		return MIRAI_EXIT_USAGE;
	}
	mirai_log_set(mirai_log_stderr, "mirai-server",
	    quiet ? MIRAI_LOG_ERROR : verbose ? MIRAI_LOG_INFO : MIRAI_LOG_WARN);
	/* A client that vanished mid-send must not kill us with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	/* Task and result buffers come and go at the same sizes: keep freed
	 * ones on the heap rather than returning them to the kernel, which
	 * would hand back fresh pages to fault in and zero for every task
	 * (a third of the time of 1 MiB tasks). */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);

	if (cli_parse_heartbeat(heartbeat, &so.heartbeat_ms) != 0) {
		fprintf(stderr, "mirai-server: --heartbeat: '%s' is not a TIME "
				"or off\n",
		    heartbeat);
		return MIRAI_EXIT_USAGE;
	}
	so.idle_ms     = idle;
	so.walltime_ms = walltime;
	so.max_tasks   = (uint64_t) max_tasks;
	so.output      = output;
	so.dial_once   = dial_once;
	so.max_msg     = max_msg;
	so.bind_to     = bind_to;
	so.bind_index  = (int) bind_index;
	so.bind_count  = (int) bind_count;
	so.bind_planned = bind_planned;
	so.plugins     = plugins.items;
	so.nplugins    = plugins.n;
	so.tls_ca      = tls_ca;
	so.tls_cert    = tls_cert;
	so.tls_key     = tls_key;
	if ((rv = mirai_server_create(&srv, &so, &err)) != 0) {
		fprintf(stderr, "mirai-server: %s\n", err.text);
		free(plugins.items);
		return MIRAI_EXIT_ERROR;
	}
	free(plugins.items);
	if (pthread_create(&th, NULL, signal_thread, &sigs) == 0) {
		pthread_detach(th);
	}
	if (st != NULL && st->nurls > 1) {
		/* The host's agent: no server of its own. */
		mirai_server_destroy(srv);
		if (use_stdin &&
		    pthread_create(&th, NULL, watch_stdin, NULL) == 0) {
			pthread_detach(th);
		}
		rv = run_agent(argc, argv, st);
		mirai_agent_setup_free(st);
		return rv;
	}
	/* A stop that came before there was a server to stop (a signal, or
	 * stdin's end, while starting up) stops it now. */
	pthread_mutex_lock(&agent_mtx);
	the_server = srv;
	if (stopping) {
		mirai_server_stop(srv);
	}
	pthread_mutex_unlock(&agent_mtx);
	if (use_stdin && pthread_create(&th, NULL, watch_stdin, NULL) == 0) {
		pthread_detach(th);
	}
	rv = mirai_server_run(srv, url, &why, &err);
	the_server = NULL;
	if (rv != 0) {
		fprintf(stderr, "mirai-server: %s\n", err.text);
		/* A URL that can never work is a usage error. */
		why = rv == MIRAI_EADDRINVAL || rv == MIRAI_ENOTSUP
		    ? MIRAI_EXIT_USAGE
		    : MIRAI_EXIT_ERROR;
	}
	mirai_server_destroy(srv);
	mirai_agent_setup_free(st);
	return why;
}
