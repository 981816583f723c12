/*
 * mirai-launch: start a dispatcher and one mirai-server per slot of a host
 * list (over ssh for remote hosts, bound to cores), run a client command
 * with the dispatcher's address in its environment, then tear everything
 * down and exit with the command's status.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mirai.h>

#include "cli.h"

extern char **environ;

static const char epilog[] =
    "Hosts come from --hostfile (Open MPI, MPICH, PBS/Torque nodefiles, SGE\n"
    "pe_hostfile, LSF, Slurm node lists: recognised from the content), from\n"
    "--host, or inside a batch job from the scheduler's environment.  Local\n"
    "hosts (localhost, this host's name) start without ssh.\n"
    "\n"
    "With a COMMAND it runs with MIRAI_DISPATCHER_URL and MIRAI_CONTROL_URL\n"
    "set (a client attaches with mirai_attach(); `mirai status` asks for the\n"
    "status), and with MIRAI_TLS_CA, the PEM file of this launch's CA (an\n"
    "owner-only file), when the launch uses TLS; mirai-launch exits with its\n"
    "status.  Without one it prints those and the server URLs and serves\n"
    "until SIGINT or SIGTERM.\n"
    "\n"
    "What listens: the server slots on the address of the --advertise host\n"
    "(default: this host's name, which must not resolve to a loopback\n"
    "address), or on 127.0.0.1 when every server is local; on every\n"
    "interface only with a --server-url whose host is '*'.  Clients and\n"
    "status requests: owner-only ipc sockets unless --client-url and\n"
    "--control-url say otherwise; such a URL ends in a secret the command\n"
    "gets by environment, a tls+tcp:// or wss:// one TLS as well.\n"
    "\n"
    "Placement: slots count cores.  A host holds slots / --cpus-per-server\n"
    "servers, each bound to that many cores; hosts fill in order.  -n above\n"
    "what the slots hold is an error unless --oversubscribe, which places\n"
    "the rest round robin, a host at most max_slots / --cpus-per-server.\n"
    "--dry-run prints the plan.\n"
    "\n"
    "Launchers: ssh starts each remote host's servers with one ssh exec\n"
    "(local hosts directly); srun starts them all with one job step of the\n"
    "Slurm job, one task a node (srun --overlap); local starts every server\n"
    "here; pbs starts them all with one `pbsdsh -u` (Torque's: OpenPBS's\n"
    "pbsdsh has no -u), one task a node.  URLs and -x values go to the\n"
    "servers over stdin, never on a command line; under pbsdsh, whose tasks\n"
    "have no stdin, in an owner-only file (0600, in a 0700 directory made\n"
    "in --setup-dir) that is removed once the servers are online, or the\n"
    "start is over.  pbs is never the default: it was tested only with a\n"
    "stand-in pbsdsh, never under a real PBS.  -x VAR needs VAR set here.\n"
    "\n"
    "A TERM, INT or HUP ends COMMAND (TERM to its process group, KILL\n"
    "after 5 s), then the servers; mirai-launch then exits with 128 + the\n"
    "signal.  COMMAND gets a TERM when mirai-launch dies, even by KILL.\n"
    "COMMAND runs in a process group of its own, which is the terminal's\n"
    "foreground group while it runs when mirai-launch was in the\n"
    "foreground: COMMAND reads the terminal, ^C and ^Z go to it.  Under a\n"
    "job-control shell, mirai-launch's job stops when COMMAND stops (^Z,\n"
    "or a read from the terminal in the background), and mirai-launch\n"
    "continues it with the terminal when continued (fg).\n"
    "\n"
    "Exit status: the command's; 0 without one; 1 the launch failed (a\n"
    "hostfile that cannot be read or parsed, fewer than --min-servers\n"
    "online); 2 bad command line, or options the hosts cannot meet (-n,\n"
    "--cpus-per-server, --min-servers).";

/*
 * Signals are blocked in every thread and taken here.  A TERM, INT or HUP
 * while the command runs goes to the command's process group as a TERM;
 * a KILL follows after GRACE_S seconds if it is still there.  Teardown
 * follows its end, and mirai-launch exits with 128 + the signal.
 */
#define GRACE_S 5

static pthread_mutex_t sig_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sig_cv   = PTHREAD_COND_INITIALIZER;
static int got_signal;
static pid_t child; /* also its process group */
static mirai_launch *starting; /* while mirai_launch_start runs */

static void *
signal_thread(void *arg)
{
	sigset_t *set = arg;
	int sig;

	while (sigwait(set, &sig) == 0) {
		pthread_mutex_lock(&sig_mtx);
		if (got_signal == 0) {
			got_signal = sig;
		}
		/* A start waits for servers up to --timeout: give up now. */
		mirai_launch_cancel(starting);
		if (child > 0) {
			struct timespec until;
			pid_t was = child;
			/* The client goes first; teardown follows its end.
			 * A stopped group takes the TERM once continued. */
			kill(-was, SIGTERM);
			kill(-was, SIGCONT);
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += GRACE_S;
			while (child == was &&
			    pthread_cond_timedwait(&sig_cv, &sig_mtx, &until) == 0) {
			}
			if (child == was) {
				kill(-was, SIGKILL);
			}
		}
		pthread_mutex_unlock(&sig_mtx);
		if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
			/* Wake a main thread waiting without a command. */
			kill(getpid(), SIGUSR1);
		}
	}
	return NULL;
}

/* Take the terminal back from the command's group pid, if it has it. */
static void
take_terminal(pid_t pid)
{
	if (tcgetpgrp(STDIN_FILENO) == pid) {
		tcsetpgrp(STDIN_FILENO, getpgrp());
	}
}

/*
 * Run argv as the client command: fork and exec, the child in a process
 * group of its own, with a SIGTERM when mirai-launch dies (even by
 * SIGKILL: PR_SET_PDEATHSIG, which posix_spawn cannot set).  With fg set
 * (we are the foreground of the terminal on stdin) that group becomes the
 * terminal's foreground group, as a shell runs a job: else the command
 * would be stopped by SIGTTIN when it reads the terminal, and ^C would
 * reach us instead of it.  Both sides call tcsetpgrp(), so that it holds
 * before the exec and whichever runs first; SIGTTOU is blocked in every
 * thread here (see main), so the call cannot stop either.  NNG's threads
 * run here, so between fork and exec the child makes only
 * async-signal-safe calls: the PATH search is done before the fork.
 * Returns the child's pid, or -1 with *errnum set (from the child's failed
 * exec, through a close-on-exec pipe).
 */
static pid_t
run_command(char **argv, int fg, int *errnum)
{
	const char *path = getenv("PATH");
	char **cands = NULL;
	size_t n = 0;
	int fds[2], e = 0;
	pid_t parent = getpid(), pid;
	ssize_t r;

	if (strchr(argv[0], '/') != NULL) {
		cands = calloc(2, sizeof *cands);
		if (cands != NULL && (cands[0] = strdup(argv[0])) != NULL) {
			n = 1;
		}
	} else {
		if (path == NULL) {
			path = "/usr/local/bin:/usr/bin:/bin";
		}
		cands = calloc(strlen(path) + 2, sizeof *cands);
		while (cands != NULL && *path != '\0') {
			size_t len = strcspn(path, ":");
			if (asprintf(&cands[n], "%.*s/%s", (int) len,
				len > 0 ? path : ".", argv[0]) >= 0) {
				n++;
			}
			path += len + (path[len] == ':');
		}
	}
	if (n == 0 || pipe2(fds, O_CLOEXEC) != 0) {
		*errnum = n == 0 ? ENOMEM : errno;
		goto out;
	}
	if ((pid = fork()) == 0) {
		sigset_t none;
		struct sigaction dfl;
		memset(&dfl, 0, sizeof dfl);
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGPIPE, &dfl, NULL);
		sigaction(SIGUSR1, &dfl, NULL);
		setpgid(0, 0);
		if (fg) {
			/* Before SIGTTOU is unblocked. */
			tcsetpgrp(STDIN_FILENO, getpid());
		}
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		/* The parent may have died before the line above. */
		if (getppid() != parent) {
			_exit(128 + SIGTERM);
		}
		for (size_t i = 0; i < n; i++) {
			execve(cands[i], argv, environ);
			if (errno != ENOENT && errno != ENOTDIR) {
				e = errno;
			}
		}
		e = e != 0 ? e : errno;
		r = write(fds[1], &e, sizeof e);
		(void) r;
		_exit(127);
	}
	close(fds[1]);
	if (pid < 0) {
		*errnum = errno;
		close(fds[0]);
		goto out;
	}
	/* Also here: the child may not have run setpgid yet when a signal
	 * comes for its group. */
	setpgid(pid, pid);
	if (fg) {
		tcsetpgrp(STDIN_FILENO, pid);
	}
	while ((r = read(fds[0], &e, sizeof e)) < 0 && errno == EINTR) {
	}
	close(fds[0]);
	if (r == (ssize_t) sizeof e) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
		}
		if (fg) {
			take_terminal(pid);
		}
		*errnum = e;
		pid     = -1;
	}
	for (size_t i = 0; i < n; i++) {
		free(cands[i]);
	}
	free(cands);
	return pid;
out:
	for (size_t i = 0; i < n; i++) {
		free(cands[i]);
	}
	free(cands);
	return -1;
}

/*
 * Wait for the command pid to end.  With job control (jc: stdin is our
 * terminal and a shell above us can continue us), a stop of the command
 * stops our process group too (the shell's job: a script that runs us is
 * in it), after we took the terminal back, as ^Z would have stopped it
 * had the command been in it: the shell sees its job stopped and gets
 * the terminal.  Once continued we hand the terminal back if we are in
 * the foreground (fg) and continue the command (bg: without the terminal,
 * so that a read stops it again).  Returns waitpid()'s result, the status
 * in *status.
 */
static pid_t
wait_command(pid_t pid, int jc, int *status)
{
	pid_t r;

	for (;;) {
		r = waitpid(pid, status, jc ? WUNTRACED : 0);
		if (r < 0 && errno == EINTR) {
			/* Only an interrupted wait is retried: ECHILD would
			 * loop for ever. */
			continue;
		}
		if (r != pid || !WIFSTOPPED(*status)) {
			return r;
		}
		take_terminal(pid);
		kill(0, SIGSTOP);
		if (tcgetpgrp(STDIN_FILENO) == getpgrp()) {
			tcsetpgrp(STDIN_FILENO, pid);
		}
		kill(-pid, SIGCONT);
	}
}

typedef struct progress {
	int tty;
	double t0;
	double last;
	size_t last_online;
} progress;

static void
on_progress(void *arg, size_t online, size_t failed, size_t total)
{
	progress *p = arg;
	double t    = cli_now_s();

	if (p->tty) {
		fprintf(stderr, "\rmirai-launch: servers online %zu/%zu%s (%.1f s)   ",
		    online, total, failed ? ", some failed" : "", t - p->t0);
		if (online + failed >= total) {
			fprintf(stderr, "\n");
		}
	} else if (online + failed >= total ||
	    (online != p->last_online && t - p->last >= 0.5)) {
		fprintf(stderr, "mirai-launch: %zu/%zu servers online, %zu failed "
				"(%.1f s)\n",
		    online, total, failed, t - p->t0);
		p->last = t;
	}
	p->last_online = online;
}

int
main(int argc, char **argv)
{
	const char *hostfile = NULL, *format = NULL, *hostarg = NULL;
	const char *server = NULL, *bind = NULL, *ssh_user = NULL;
	const char *identity = NULL, *ssh_config = NULL, *known = NULL;
	const char *server_url = NULL, *advertise = NULL, *client_url = NULL;
	const char *control_url = NULL, *launcher = NULL, *heartbeat = NULL;
	const char *setup_dir = NULL;
	long long n = 0, max_ssh = 0, ssh_port = 0, min = 0, retries = 0,
		  max_tasks = 0, cpus = 0;
	int64_t timeout = 0, idle = 0, walltime = 0;
	size_t max_msg = 0;
	int tls = 0, no_tls = 0;
	int dry = 0, report = 0, accept_new = 0, ssh_local = 0, no_token = 0,
	    output = 0, verbose = 0, quiet = 0, oversub = 0, no_oversub = 0;
	cli_list plugins = {0}, env = {0};
	const cli_opt opts[] = {
	    {"hostfile", 'f', CLI_STR, &hostfile, "FILE", "the hosts and slots"},
	    {"hostfile-format", 0, CLI_STR, &format, "FMT",
		"openmpi, mpich, nodefile, sge, lsf or slurm (default: guess)"},
	    {"host", 'H', CLI_STR, &hostarg, "LIST", "hosts: a,b:2,user@c:4"},
	    {"np", 'n', CLI_INT, &n, "N",
		"start N servers (default: as many as the slots hold)"},
	    {"cpus-per-server", 0, CLI_INT, &cpus, "N",
		"N cores (slots) per server, bound to them (default 1)"},
	    {"oversubscribe", 0, CLI_FLAG, &oversub, NULL,
		"allow -n above the slots, up to max_slots"},
	    {"no-oversubscribe", 0, CLI_FLAG, &no_oversub, NULL,
		"-n above the slots is an error (the default)"},
	    {"dry-run", 0, CLI_FLAG, &dry, NULL,
		"print the plan (JSON, one server a line), start nothing"},
	    {"report-bindings", 0, CLI_FLAG, &report, NULL,
		"print host, slot, unit and CPUs of every server"},
	    {"launcher", 0, CLI_STR, &launcher, "KIND",
		"ssh, srun, local or pbs (default: srun inside a Slurm job, "
		"else ssh)"},
	    {"setup-dir", 0, CLI_STR, &setup_dir, "DIR",
		"pbs: where the servers' setup file goes, a directory every "
		"node sees (default $MIRAI_SETUP_DIR, $PBS_O_WORKDIR, $HOME)"},
	    {"server", 0, CLI_STR, &server, "PATH",
		"mirai-server to run (remote hosts: default from PATH)"},
	    {"plugin", 'p', CLI_LIST, &plugins, "LIB.so",
		"plugin for the servers (repeatable)"},
	    {"export", 'x', CLI_LIST, &env, "VAR[=V]",
		"pass an environment variable to the servers (repeatable)"},
	    {"bind-to", 0, CLI_STR, &bind, "KIND",
		"core (default), numa, socket or none"},
	    {"max-ssh", 0, CLI_INT, &max_ssh, "N",
		"ssh connections set up at once (default 16)"},
	    {"ssh-port", 0, CLI_INT, &ssh_port, "PORT", "ssh port"},
	    {"ssh-user", 0, CLI_STR, &ssh_user, "USER", "ssh user"},
	    {"identity", 'i', CLI_STR, &identity, "FILE", "ssh private key"},
	    {"ssh-config", 0, CLI_STR, &ssh_config, "FILE",
		"ssh config (default ~/.ssh/config)"},
	    {"known-hosts", 0, CLI_STR, &known, "FILE",
		"known_hosts (default ~/.ssh/known_hosts)"},
	    {"accept-new", 0, CLI_FLAG, &accept_new, NULL,
		"learn unknown host keys whatever the ssh config says "
		"(changed ones are still refused)"},
	    {"ssh-local", 0, CLI_FLAG, &ssh_local, NULL,
		"start local hosts through ssh too"},
	    {"min-servers", 0, CLI_INT, &min, "K",
		"go on when at least K servers came up (default: all)"},
	    {"timeout", 't', CLI_MS, &timeout, "TIME",
		"time for servers to come online (default and 0: 60s; "
		"'forever')"},
	    {"server-url", 0, CLI_STR, &server_url, "URL",
		"base URL of the server slots (default: ws, port 0, on the "
		"--advertise host's address; host '*': all interfaces)"},
	    {"advertise", 0, CLI_STR, &advertise, "HOST",
		"host servers dial; the default slots listen on its address "
		"(default: this host's name)"},
	    {"no-token", 0, CLI_FLAG, &no_token, NULL, "slots without secrets"},
	    {"tls", 0, CLI_FLAG, &tls, NULL,
		"wss:// slots even when every server is local"},
	    {"no-tls", 0, CLI_FLAG, &no_tls, NULL,
		"ws:// slots in clear even with remote servers"},
	    {"client-url", 0, CLI_STR, &client_url, "URL",
		"where clients attach (default: an owner-only ipc socket)"},
	    {"control-url", 0, CLI_STR, &control_url, "URL",
		"where status requests go (default: an owner-only ipc socket)"},
	    {"retries", 'r', CLI_INT, &retries, "K",
		"requeue a task whose server died, at most K times"},
	    {"idle", 0, CLI_MS, &idle, "TIME", "servers: idle time"},
	    {"walltime", 0, CLI_MS, &walltime, "TIME", "servers: wall time"},
	    {"max-tasks", 0, CLI_INT, &max_tasks, "N", "servers: max tasks"},
	    {"output", 0, CLI_FLAG, &output, NULL, "servers keep task output"},
	    {"max-msg", 0, CLI_SIZE, &max_msg, "BYTES", "largest message"},
	    {"heartbeat", 0, CLI_STR, &heartbeat, "TIME",
		"dispatcher and servers: a peer silent this long is lost "
		"(default 10s; off)"},
	    {"verbose", 'v', CLI_FLAG, &verbose, NULL, "log more"},
	    {"quiet", 'q', CLI_FLAG, &quiet, NULL, "log errors only"},
	    {NULL, 0, 0, NULL, NULL, NULL},
	};
	const cli_tool tool = {"mirai-launch",
	    "--hostfile FILE [OPTIONS] [-- COMMAND [ARGS]]",
	    "Start a mirai dispatcher and one mirai-server per host slot (over\n"
	    "ssh, bound to cores), run COMMAND as their client, tear down.",
	    epilog, opts, 1};
	mirai_launch_opts lo = MIRAI_LAUNCH_OPTS_INIT;
	mirai_server_opts so = MIRAI_SERVER_OPTS_INIT;
	mirai_hostlist *hosts = NULL;
	mirai_errmsg err      = {{0}};
	mirai_launch *l;
	progress prog = {0};
	sigset_t sigs;
	pthread_t sigthr;
	int first, rv, fmt = MIRAI_HOSTS_AUTO, code = 0;

	/* Before any thread exists, so that all of them inherit the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTTOU);
	/* SIGTTOU stays blocked (not waited for): taking the terminal back
	 * from the command (tcsetpgrp() from the background), and writing
	 * progress to it meanwhile, must not stop us. */
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* An inherited SIGCHLD ignore would reap the command (and local
	 * servers) behind our back. */
	signal(SIGCHLD, SIG_DFL);
	if (cli_parse(&tool, argc, argv, &first) != 0) {
		return 2;
	}
	if (format != NULL && (fmt = mirai_hosts_format_parse(format)) < 0) {
		fprintf(stderr, "mirai-launch: unknown hostfile format '%s'\n",
		    format);
		return 2;
	}
	if (hostfile != NULL && hostarg != NULL) {
		fprintf(stderr, "mirai-launch: --hostfile or --host, not both\n");
		return 2;
	}
	if (launcher != NULL) {
		if (strcmp(launcher, "ssh") == 0) {
			lo.launcher = MIRAI_LAUNCHER_SSH;
		} else if (strcmp(launcher, "srun") == 0) {
			lo.launcher = MIRAI_LAUNCHER_SRUN;
		} else if (strcmp(launcher, "local") == 0) {
			lo.launcher = MIRAI_LAUNCHER_LOCAL;
		} else if (strcmp(launcher, "pbs") == 0) {
			lo.launcher = MIRAI_LAUNCHER_PBS;
		} else {
			fprintf(stderr, "mirai-launch: --launcher %s: use ssh, "
					"srun, local or pbs\n", launcher);
			return 2;
		}
	}
	if (oversub && no_oversub) {
		fprintf(stderr, "mirai-launch: --oversubscribe or "
				"--no-oversubscribe, not both\n");
		return 2;
	}
	{
		const struct {
			const char *name;
			long long v, lo, hi;
		} ranges[] = {
		    {"-n", n, 0, 100000},
		    {"--min-servers", min, 0, 100000},
		    {"--cpus-per-server", cpus, 0, 4096},
		    {"--retries", retries, 0, 255},
		    {"--max-tasks", max_tasks, 0, LLONG_MAX},
		    {"--max-ssh", max_ssh, 0, 100000},
		    {"--ssh-port", ssh_port, 0, 65535},
		};
		for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
			if (ranges[i].v < ranges[i].lo ||
			    ranges[i].v > ranges[i].hi) {
				fprintf(stderr, "mirai-launch: %s %lld: out of "
						"range %lld to %lld\n",
				    ranges[i].name, ranges[i].v, ranges[i].lo,
				    ranges[i].hi);
				return 2;
			}
		}
	}
	if (cli_parse_heartbeat(heartbeat, &lo.heartbeat_ms) != 0) {
		fprintf(stderr, "mirai-launch: --heartbeat: '%s' is not a TIME "
				"or off\n",
		    heartbeat);
		return 2;
	}
	mirai_log_set(mirai_log_stderr, "mirai-launch",
	    quiet ? MIRAI_LOG_ERROR : verbose ? MIRAI_LOG_INFO : MIRAI_LOG_WARN);
	if (hostfile != NULL) {
		rv = mirai_hosts_load(hostfile, fmt, &hosts, &err);
	} else if (hostarg != NULL) {
		rv = mirai_hosts_from_arg(hostarg, &hosts, &err);
	} else {
		rv = mirai_hosts_from_env(&hosts, &err);
		if (rv == MIRAI_ENOENT) {
			fprintf(stderr, "mirai-launch: no hosts: give --hostfile or "
					"--host, or run inside a batch job\n");
			return 2;
		}
	}
	if (rv != 0) {
		fprintf(stderr, "mirai-launch: %s\n", err.text);
		return 1;
	}
	lo.hosts              = hosts;
	lo.max_servers        = (int) n;
	lo.server_url         = server_url;
	lo.advertise          = advertise;
	lo.no_token           = no_token;
	lo.tls                = tls ? 1 : no_tls ? -1 : 0;
	lo.client_url         = client_url;
	lo.control_url        = control_url;
	lo.bind_to            = bind;
	lo.env                = env.items;
	lo.nenv               = env.n;
	so.server_path        = server;
	so.plugins            = plugins.items;
	so.nplugins           = plugins.n;
	so.idle_ms            = idle;
	so.walltime_ms        = walltime;
	so.max_tasks          = (uint64_t) max_tasks;
	so.output             = output;
	so.max_msg            = max_msg;
	lo.server             = &so;
	lo.max_ssh            = (int) max_ssh;
	lo.ssh_port           = (int) ssh_port;
	lo.ssh_user           = ssh_user;
	lo.ssh_identity       = identity;
	lo.ssh_config         = ssh_config;
	lo.known_hosts        = known;
	lo.accept_new         = accept_new;
	lo.ssh_local          = ssh_local;
	lo.min_servers        = (int) min;
	lo.timeout_ms         = timeout;
	lo.retries            = (int) retries;
	lo.cpus_per_server    = (int) cpus;
	lo.oversubscribe      = oversub;
	lo.setup_dir          = setup_dir;
	rv = mirai_launch_create(&l, &lo, &err);
	mirai_hostlist_free(hosts);
	free(plugins.items);
	free(env.items);
	if (rv != 0) {
		fprintf(stderr, "mirai-launch: %s\n", err.text);
		return rv == MIRAI_EINVAL || rv == MIRAI_EADDRINVAL ||
			rv == MIRAI_ENOTSUP
		    ? 2
		    : 1;
	}
	if (dry) {
		char *json;
		if ((rv = mirai_launch_plan_json(l, &json)) == 0) {
			fputs(json, stdout);
			free(json);
		}
		mirai_launch_destroy(l);
		return rv == 0 ? 0 : 1;
	}
	/* SIGUSR1 wakes main from the signal thread: blocked everywhere, but
	 * not in the set that thread waits for. */
	{
		sigset_t usr1;
		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	}
	if (pthread_create(&sigthr, NULL, signal_thread, &sigs) == 0) {
		pthread_detach(sigthr);
	}
	prog.tty = isatty(2) && !quiet;
	prog.t0  = cli_now_s();
	pthread_mutex_lock(&sig_mtx);
	starting = got_signal == 0 ? l : NULL;
	pthread_mutex_unlock(&sig_mtx);
	rv = starting != NULL ? mirai_launch_start(l, quiet ? NULL : on_progress,
				    &prog, &err)
			      : MIRAI_ECANCELED;
	pthread_mutex_lock(&sig_mtx);
	starting = NULL;
	if (rv != 0 && got_signal != 0) {
		/* A signal during the start: torn down, no error of ours. */
		int sig = got_signal;
		pthread_mutex_unlock(&sig_mtx);
		mirai_launch_destroy(l);
		return 128 + sig;
	}
	pthread_mutex_unlock(&sig_mtx);
	if (rv != 0) {
		fprintf(stderr, "mirai-launch: %s\n", err.text);
		mirai_launch_destroy(l);
		/* A URL that can never work is a usage error. */
		return rv == MIRAI_EADDRINVAL || rv == MIRAI_ENOTSUP ? 2 : 1;
	}
	{
		const mirai_launch_slot *slots;
		size_t ns;
		mirai_launch_slots(l, &slots, &ns);
		/* Servers that failed, a line for each run of one host with
		 * one reason: a dead host is one line however many slots. */
		for (size_t i = 0, end; i < ns; i = end) {
			for (end = i + 1; end < ns &&
			     slots[end].state != MIRAI_LAUNCH_ONLINE &&
			     strcmp(slots[end].host, slots[i].host) == 0 &&
			     strcmp(slots[end].error, slots[i].error) == 0;
			     end++) {
			}
			if (slots[i].state == MIRAI_LAUNCH_ONLINE) {
				end = i + 1;
			} else if (end - i > 1) {
				fprintf(stderr, "mirai-launch: servers %zu-%zu on "
						"%s: %s\n",
				    i, end - 1, slots[i].host, slots[i].error);
			} else {
				fprintf(stderr, "mirai-launch: server %zu on %s: "
						"%s\n",
				    i, slots[i].host, slots[i].error);
			}
		}
		for (size_t i = 0; i < ns; i++) {
			if (slots[i].state == MIRAI_LAUNCH_ONLINE && report) {
				printf("%s slot %zu %s %d cpus %s\n", slots[i].host,
				    slots[i].slot, bind != NULL ? bind : "core",
				    slots[i].unit, slots[i].binding);
			}
		}
		fflush(stdout);
		if (first >= argc) {
			printf("MIRAI_DISPATCHER_URL=%s\n",
			    mirai_launch_client_url(l));
			printf("MIRAI_CONTROL_URL=%s\n", mirai_launch_control_url(l));
			if (mirai_launch_tls_ca(l) != NULL) {
				printf("MIRAI_TLS_CA=%s\n", mirai_launch_tls_ca(l));
			}
			for (size_t i = 0; i < ns; i++) {
				printf("%s\n", slots[i].url);
			}
			fflush(stdout);
		}
	}
	if (first < argc) {
		int status = 0, e = 0;
		/* stdin is our controlling terminal: fg, we are its
		 * foreground; jc, a session leader other than us (a shell)
		 * can continue us after a stop. */
		int tty = isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) > 0;
		int fg  = tty && tcgetpgrp(STDIN_FILENO) == getpgrp();
		int jc  = tty && getsid(0) != getpgrp();
		pid_t pid = -1, r;
		setenv("MIRAI_DISPATCHER_URL", mirai_launch_client_url(l), 1);
		setenv("MIRAI_CONTROL_URL", mirai_launch_control_url(l), 1);
		/* The CA's path by environment, never on the command's argv;
		 * the command verifies the dispatcher with it. */
		if (mirai_launch_tls_ca(l) != NULL) {
			setenv("MIRAI_TLS_CA", mirai_launch_tls_ca(l), 1);
		} else {
			unsetenv("MIRAI_TLS_CA");
		}
		pthread_mutex_lock(&sig_mtx);
		if (got_signal == 0) {
			pid = child = run_command(argv + first, fg, &e);
		}
		pthread_mutex_unlock(&sig_mtx);
		if (pid < 0 && got_signal == 0) {
			fprintf(stderr, "mirai-launch: cannot run %s: %s\n",
			    argv[first], strerror(e));
			code = 127;
		} else if (pid > 0) {
			r = wait_command(pid, jc, &status);
			if (fg) {
				take_terminal(pid);
			}
			pthread_mutex_lock(&sig_mtx);
			child = 0;
			pthread_cond_broadcast(&sig_cv);
			pthread_mutex_unlock(&sig_mtx);
			if (r < 0) {
				fprintf(stderr, "mirai-launch: lost %s: %s\n",
				    argv[first], strerror(errno));
				code = 1;
			} else {
				code = WIFEXITED(status) ? WEXITSTATUS(status)
							 : 128 + WTERMSIG(status);
			}
		}
		pthread_mutex_lock(&sig_mtx);
		if (got_signal != 0) {
			code = 128 + got_signal;
		}
		pthread_mutex_unlock(&sig_mtx);
	} else {
		/* Serve until a signal; the signal thread wakes us. */
		sigset_t wake;
		int sig;
		sigemptyset(&wake);
		sigaddset(&wake, SIGUSR1);
		sigwait(&wake, &sig);
	}
	mirai_launch_destroy(l);
	return code;
}
