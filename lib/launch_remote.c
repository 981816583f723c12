/*
 * launch_remote.c: starting remote servers: the agent's command line
 * (`mirai-server --stdin` with the servers' options) and its setup
 * records (URLs, environment, the CA), one ssh exec a host, or one srun
 * step or one pbsdsh for all (pbsdsh's agents read the setup from an
 * owner-only file: `mirai-server --setup-file`), and this launch's TLS
 * material.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launch_int.h"

/* ---- agents and ssh ----------------------------------------------------- */

/* A word for the remote shell: single-quoted. */
static void
quote(mirai__sb *sb, const char *s)
{
	mirai__sb_printf(sb, " '");
	for (; *s != '\0'; s++) {
		if (*s == '\'') {
			mirai__sb_printf(sb, "'\\''");
		} else {
			mirai__sb_printf(sb, "%c", *s);
		}
	}
	mirai__sb_printf(sb, "'");
}

/* A growable argument vector of copies, NULL-terminated. */
typedef struct argvec {
	char **v;
	size_t n;
	int failed;
} argvec;

static void
av_add(argvec *a, const char *fmt, ...) MIRAI_PRINTF(2, 3);

static void
av_add(argvec *a, const char *fmt, ...)
{
	char **v;
	va_list ap;
	int n;

	if (a->failed || (v = realloc(a->v, (a->n + 2) * sizeof *v)) == NULL) {
		a->failed = 1;
		return;
	}
	a->v = v;
	va_start(ap, fmt);
	n = vasprintf(&a->v[a->n], fmt, ap);
	va_end(ap);
	if (n < 0) {
		a->failed = 1;
		a->v[a->n] = NULL;
		return;
	}
	a->v[++a->n] = NULL;
}

static void
av_free(argvec *a)
{
	for (size_t i = 0; i < a->n; i++) {
		free(a->v[i]);
	}
	free(a->v);
}

/* The agent's command: `SERVER --stdin` with the servers' options; its
 * setup (URLs, environment) goes over its stdin, or with setup_file set
 * comes from that file. */
static void
agent_argv(const mirai_launch *l, const char *server, int bind,
    const char *setup_file, argvec *a)
{
	const mirai_server_opts *so = &l->sopts;

	av_add(a, "%s", server);
	if (setup_file == NULL) {
		av_add(a, "--stdin");
	} else {
		/* No stdin ties the agent to us: its servers' links do, and
		 * a server that cannot dial must fail rather than try for
		 * ever, so that the agent always ends. */
		av_add(a, "--setup-file");
		av_add(a, "%s", setup_file);
		av_add(a, "--dial-once");
	}
	if (bind) {
		av_add(a, "--bind-to");
		av_add(a, "%s", l->o.bind_to);
		av_add(a, "--bind-planned");
		if (l->o.cpus_per_server > 1) {
			av_add(a, "--bind-count");
			av_add(a, "%d", l->o.cpus_per_server);
		}
	}
	if (so->idle_ms > 0) {
		av_add(a, "--idle");
		av_add(a, "%" PRId64, so->idle_ms);
	}
	if (so->walltime_ms > 0) {
		av_add(a, "--walltime");
		av_add(a, "%" PRId64, so->walltime_ms);
	}
	if (so->max_tasks > 0) {
		av_add(a, "--max-tasks");
		av_add(a, "%" PRIu64, so->max_tasks);
	}
	if (so->max_msg > 0) {
		av_add(a, "--max-msg");
		av_add(a, "%zu", so->max_msg);
	}
	if (so->output) {
		av_add(a, "--output");
	}
	if (so->heartbeat_ms != 0) {
		av_add(a, "--heartbeat");
		if (so->heartbeat_ms < 0) {
			av_add(a, "off");
		} else {
			av_add(a, "%" PRId64, so->heartbeat_ms);
		}
	}
	for (size_t p = 0; p < so->nplugins; p++) {
		av_add(a, "--plugin");
		av_add(a, "%s", so->plugins[p]);
	}
}

/* The setup records of slots [first, end) (one host), addressed to node
 * unless it is NULL. */
static void
setup_urls(const mirai_launch *l, size_t first, size_t end, const char *node,
    mirai__wbuf *w)
{
	if (node != NULL) {
		mirai__agent_node(w, node);
	}
	for (size_t i = first; i < end; i++) {
		mirai__agent_url(w, l->slots[i].url, l->slots[i].unit);
	}
}

static void
setup_env(const mirai_launch *l, mirai__wbuf *w)
{
	for (size_t e = 0; e < l->o.nenv; e++) {
		mirai__agent_env(w, l->o.env[e]);
	}
	if (l->tls) {
		/* The servers verify the dispatcher with it. */
		mirai__agent_ca(w, mirai__tls_ca_pem(l->ca));
	}
	mirai__agent_end(w);
}

/*
 * The one setup that every agent of a srun step or a pbsdsh reads, each
 * host's URLs addressed to it; the hosts, comma separated, into nodes
 * unless it is NULL.  Returns how many hosts.
 */
static size_t
setup_all(const mirai_launch *l, mirai__wbuf *w, mirai__sb *nodes)
{
	size_t nhosts = 0;

	mirai__agent_begin(w);
	for (size_t i = 0, end; i < l->n; i = end) {
		const char *node = l->slots[i].host;
		for (end = i + 1; end < l->n && l->slots[end].host == node;
		     end++) {
		}
		/* pbsdsh's agents know their node by its host name only: a
		 * nodefile's "localhost" is this machine. */
		if (l->launcher == MIRAI_LAUNCHER_PBS &&
		    strcmp(node, "localhost") == 0) {
			node = l->myhost;
		}
		setup_urls(l, i, end, node, w);
		if (nodes != NULL) {
			mirai__sb_printf(nodes, "%s%s", nhosts > 0 ? "," : "",
			    node);
		}
		nhosts++;
	}
	setup_env(l, w);
	return nhosts;
}

/*
 * This launch's TLS material: a fresh CA, the dispatcher's certificate
 * (for MIRAI__TLS_NAME, which servers verify), both with the CA written to
 * an owner-only directory; the dispatcher listens with them on every TLS
 * URL (slots, client, control), local servers of wss:// slots dial with
 * the CA file, and the client command gets its path (MIRAI_TLS_CA).
 */
int
mirai__ln_tls_setup(mirai_launch *l, mirai_dispatcher_opts *dopts,
    mirai_errmsg *err)
{
	static const char *const names[3] = {"ca.pem", "cert.pem", "key.pem"};
	const char *tmp = getenv("TMPDIR");
	char *cert = NULL, *key = NULL;
	const char *pem[3];
	int rv;

	if (tmp == NULL || *tmp != '/' || strlen(tmp) > 60) {
		tmp = "/tmp";
	}
	snprintf(l->tls_dir, sizeof l->tls_dir, "%s/mirai-tls-XXXXXX", tmp);
	if (mkdtemp(l->tls_dir) == NULL) {
		l->tls_dir[0] = '\0';
		return mirai__fail(err, MIRAI_EPERM,
		    "cannot make a directory for this launch's certificates in "
		    "%s",
		    tmp);
	}
	if ((rv = mirai__tls_ca_create(&l->ca, "mirai-launch", err)) != 0 ||
	    (rv = mirai__tls_cert_issue(l->ca, MIRAI__TLS_NAME, &cert, &key,
		 err)) != 0) {
		return rv;
	}
	pem[0] = mirai__tls_ca_pem(l->ca);
	pem[1] = cert;
	pem[2] = key;
	for (int i = 0; i < 3 && rv == 0; i++) {
		rv = mirai__tls_write_private(l->tls_dir, names[i], pem[i],
		    &l->tls_files[i], err);
	}
	free(cert);
	mirai__tls_secret_free(key);
	if (rv != 0) {
		return rv;
	}
	dopts->tls_cert = l->tls_files[1];
	dopts->tls_key  = l->tls_files[2];
	if (l->tls) {
		l->sopts.tls_ca = l->tls_files[0];
	}
	return 0;
}

/* Start the servers of slots [first, first + count) (one remote host)
 * through one ssh exec, id first. */
int
mirai__ln_start_remote(mirai_launch *l, size_t first, size_t count,
    mirai_errmsg *err)
{
	const mirai_launch_slot *sl = &l->slots[first];
	const mirai_server_opts *so = &l->sopts;
	mirai__sb cmd = {0};
	mirai__wbuf in = {0};
	argvec av = {0};
	int rv;

	agent_argv(l, so->server_path != NULL ? so->server_path : "mirai-server",
	    sl->unit >= 0, NULL, &av);
	mirai__sb_printf(&cmd, "exec");
	for (size_t i = 0; i < av.n; i++) {
		/* Plain words stay plain; anything else is quoted. */
		if (strspn(av.v[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
				    "OPQRSTUVWXYZ0123456789-_./") ==
		    strlen(av.v[i])) {
			mirai__sb_printf(&cmd, " %s", av.v[i]);
		} else {
			quote(&cmd, av.v[i]);
		}
	}
	/* What must not show in ps goes over stdin. */
	mirai__agent_begin(&in);
	setup_urls(l, first, first + count, NULL, &in);
	setup_env(l, &in);
	if (cmd.failed || in.failed || av.failed) {
		rv = mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	} else {
		rv = mirai__ssh_run(l->ssh, first, sl->host,
		    *sl->user ? sl->user : NULL, 0, cmd.buf, in.p, in.len);
		if (rv != 0) {
			mirai__fail(err, rv, "cannot start ssh to %s", sl->host);
		}
	}
	av_free(&av);
	free(cmd.buf);
	free(in.p);
	return rv;
}

/* ---- one step for every agent: srun or pbsdsh ------------------------------ */

/* The step's tool, for messages. */
static const char *
step_tool(const mirai_launch *l)
{
	return l->launcher == MIRAI_LAUNCHER_PBS ? "pbsdsh" : "srun";
}

static void
on_step_exit(pid_t pid, int status, void *arg)
{
	mirai_launch *l = arg;

	(void) pid;
	pthread_mutex_lock(&l->mtx);
	l->step_pid = 0;
	if (status != -1 && WIFEXITED(status)) {
		mirai__ln_fail_range(l, 0, l->n, "%s exited with status %d",
		    step_tool(l), WEXITSTATUS(status));
	} else {
		mirai__ln_fail_range(l, 0, l->n, "%s ended (signal %d)",
		    step_tool(l),
		    status != -1 && WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	}
	l->alive--;
	mirai__ln_changed(l);
	pthread_mutex_unlock(&l->mtx);
}

/*
 * Run argv (srun or pbsdsh, from the PATH) as the launch's step, its
 * stdin in_fd, or /dev/null when in_fd is -1.  In a process group of its
 * own: a ^C at the terminal reaches the launcher, which ends the step its
 * own way (launch.c, teardown).
 */
static int
spawn_step(mirai_launch *l, char *const *argv, int in_fd, mirai_errmsg *err)
{
	pid_t pid;
	int rv;

	if ((rv = mirai__spawn((const char *const *) argv, NULL, in_fd, -1, -1,
		 &pid)) != 0) {
		return mirai__fail(err, MIRAI_ESPAWN, "cannot run %s: %s",
		    argv[0], strerror(rv));
	}
	return mirai__ln_adopt(l, pid, &l->step_pid, on_step_exit, argv[0],
	    err);
}

/* ---- srun ------------------------------------------------------------------ */

/* Feeds the setup to srun's stdin, which srun copies to every agent
 * (--input=all): a thread, because srun reads it only as the step starts
 * and a setup may exceed a socket buffer. */
static void *
srun_writer(void *arg)
{
	mirai_launch *l  = arg;
	const uint8_t *p = l->srun_in.p;
	size_t left      = l->srun_in.len;

	while (left > 0) {
		ssize_t w = send(l->srun_sock, p, left, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w <= 0) {
			break;
		}
		p += w;
		left -= (size_t) w;
	}
	return NULL;
}

/*
 * Every server through one srun job step: one task a node (the node's
 * agent, as over ssh), all reading one setup in which each node's URLs are
 * addressed to it.  The mirai-server is the one this machine would run,
 * by the same path on the nodes (a shared file system), unless given.
 */
int
mirai__ln_start_srun(mirai_launch *l, mirai_errmsg *err)
{
	mirai__sb nodes = {0};
	argvec av = {0};
	char exe[4096];
	const char *server;
	size_t nhosts;
	int sv[2], rv;

	server = mirai__find_tool(l->sopts.server_path, "MIRAI_SERVER",
	    "mirai-server", exe, sizeof exe);
	nhosts = setup_all(l, &l->srun_in, &nodes);
	av_add(&av, "srun");
	/* --overlap: the step shares the job's CPUs with the client's. */
	av_add(&av, "--overlap");
	av_add(&av, "--input=all");
	av_add(&av, "--job-name=mirai-servers");
	av_add(&av, "--nodes=%zu", nhosts);
	av_add(&av, "--ntasks=%zu", nhosts);
	av_add(&av, "--ntasks-per-node=1");
	av_add(&av, "--cpus-per-task=%d", l->srun_cpus > 0 ? l->srun_cpus : 1);
	av_add(&av, "--nodelist=%s", nodes.buf != NULL ? nodes.buf : "");
	agent_argv(l, server, l->slots[0].unit >= 0, NULL, &av);
	if (av.failed || nodes.failed || l->srun_in.failed) {
		av_free(&av);
		free(nodes.buf);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	free(nodes.buf);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		av_free(&av);
		return mirai__fail(err, MIRAI_ESPAWN, "socketpair: %s",
		    strerror(errno));
	}
	rv = spawn_step(l, av.v, sv[1], err);
	av_free(&av);
	close(sv[1]);
	if (rv != 0) {
		close(sv[0]);
		return rv;
	}
	l->srun_sock = sv[0];
	if (pthread_create(&l->writer, NULL, srun_writer, l) != 0) {
		return mirai__fail(err, MIRAI_ENOMEM, "cannot start a thread");
	}
	l->writing = 1;
	return 0;
}

/* ---- pbsdsh ---------------------------------------------------------------- */

/* Where the setup's directory goes (a directory the nodes see by the same
 * path) and, in *which, where that came from. */
static const char *
setup_parent(const mirai_launch *l, const char **which)
{
	static const char *const vars[] = {"MIRAI_SETUP_DIR", "PBS_O_WORKDIR",
	    "HOME"};
	const char *v;

	*which = "--setup-dir";
	if (l->o.setup_dir != NULL && *l->o.setup_dir != '\0') {
		return l->o.setup_dir;
	}
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
		if ((v = getenv(vars[i])) != NULL && *v != '\0') {
			*which = vars[i];
			return v;
		}
	}
	return NULL;
}

/* The setup, for every agent, in a new owner-only directory of parent:
 * l->setup_tmpdir and l->setup_file. */
static int
write_setup(mirai_launch *l, mirai_errmsg *err)
{
	mirai__wbuf in = {0};
	const char *parent, *which;
	char *real, *dir;
	int rv;

	if ((parent = setup_parent(l, &which)) == NULL) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "--launcher pbs: no directory for the agents' setup: give "
		    "--setup-dir, or set MIRAI_SETUP_DIR, PBS_O_WORKDIR or "
		    "HOME");
	}
	/* The agents may start in another directory: the path they get
	 * must be absolute. */
	if ((real = realpath(parent, NULL)) == NULL) {
		return mirai__fail(err, MIRAI_ENOENT,
		    "--launcher pbs: the setup directory %s (%s): %s", parent,
		    which, strerror(errno));
	}
	rv = asprintf(&dir, "%s%smirai-setup-XXXXXX", real,
		 real[strlen(real) - 1] == '/' ? "" : "/");
	free(real);
	if (rv < 0) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	if (mkdtemp(dir) == NULL) {
		rv = mirai__fail(err, MIRAI_EPERM,
		    "--launcher pbs: cannot make a directory in %s (%s): %s",
		    parent, which, strerror(errno));
		free(dir);
		return rv;
	}
	l->setup_tmpdir = dir;
	/* mkdtemp makes it 0700, less what a umask takes away. */
	if (chmod(dir, 0700) != 0) {
		return mirai__fail(err, MIRAI_EPERM, "%s: %s", dir,
		    strerror(errno));
	}
	setup_all(l, &in, NULL);
	if (in.failed) {
		free(in.p);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	rv = mirai__write_private(dir, "setup", in.p, in.len, &l->setup_file,
	    err);
	/* The copy in memory held the secrets too. */
	memset(in.p, 0, in.len);
	free(in.p);
	return rv;
}

/*
 * Every server through one `pbsdsh -u`: one task a node (Torque's -u: once
 * per unique host of the job), the node's agent, started with no stdin:
 * the setup, each node's URLs addressed to it, goes to an owner-only file
 * on a file system the nodes share, named on the agents' command line (the
 * path is no secret; the file is).  mirai_launch_start removes it when the
 * start is over, destroy at the latest.  The mirai-server is found as for
 * srun.
 */
int
mirai__ln_start_pbs(mirai_launch *l, mirai_errmsg *err)
{
	argvec av = {0};
	char exe[4096];
	const char *server;
	int rv;

	server = mirai__find_tool(l->sopts.server_path, "MIRAI_SERVER",
	    "mirai-server", exe, sizeof exe);
	if ((rv = write_setup(l, err)) != 0) {
		mirai__ln_setup_remove(l);
		return rv;
	}
	av_add(&av, "pbsdsh");
	av_add(&av, "-u");
	av_add(&av, "--");
	agent_argv(l, server, l->slots[0].unit >= 0, l->setup_file, &av);
	rv = av.failed ? mirai__fail(err, MIRAI_ENOMEM, "out of memory")
		       : spawn_step(l, av.v, -1, err);
	av_free(&av);
	if (rv != 0) {
		mirai__ln_setup_remove(l);
	}
	return rv;
}

void
mirai__ln_setup_remove(mirai_launch *l)
{
	if (l->setup_file != NULL) {
		unlink(l->setup_file);
		free(l->setup_file);
		l->setup_file = NULL;
	}
	if (l->setup_tmpdir != NULL) {
		rmdir(l->setup_tmpdir);
		free(l->setup_tmpdir);
		l->setup_tmpdir = NULL;
	}
}
