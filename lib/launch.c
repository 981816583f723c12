/*
 * launch.c: starting a dispatcher and one server per slot of a host list,
 * MPI style.  It owns the plan (which server goes where, bound to what),
 * the start (local servers directly, remote ones over ssh, many at once),
 * watching them come online, and the teardown.
 *
 * A remote host gets one ssh exec, `mirai-server --stdin ...`, whatever its
 * number of slots: the servers' URLs (with their tokens) and the forwarded
 * environment travel over the channel's stdin, never on a command line
 * another user could read with ps, and that process starts the host's
 * servers (like Open MPI's orted: an exec costs the remote login shell's
 * start-up, tens to hundreds of milliseconds).  stdin then stays open; its
 * EOF (the launcher or its ssh channel gone) stops the servers: a second
 * tie besides their dispatcher links.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "ssh.h"

#define TAG "launch"
#define START_WAIT_MS 60000
#define REAP_WAIT_MS 5000

struct mirai_launch {
	mirai_launch_opts o;
	char **strs;           /* strings owned by the launch */
	size_t nstrs;
	const char **plugins;  /* o.server.plugins, owned */
	const char **env;      /* o.env, owned */
	mirai_launch_slot *slots;
	size_t n;
	char (*errors)[256];   /* per slot */
	char (*urls)[512];     /* per slot */
	char (*bindings)[96];  /* per slot */
	int *snap_online;      /* refresh(): what the dispatcher said */
	int *snap_pid;
	char (*snap_binding)[96];
	pid_t *pids;           /* local children, 0 if none */
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	unsigned changes;
	int alive;             /* local children not yet reaped */
	mirai_dispatcher *d;
	pthread_t thr;
	int running;
	mirai__ssh *ssh;
	char myhost[256];
};

static const char *
keep(mirai_launch *l, const char *s)
{
	char **v;

	if (s == NULL) {
		return NULL;
	}
	if ((v = realloc(l->strs, (l->nstrs + 1) * sizeof *v)) == NULL) {
		return NULL;
	}
	l->strs = v;
	return l->strs[l->nstrs++] = mirai__strdup(s);
}

/* Whether name is this machine: started without ssh. */
static int
is_local(const mirai_launch *l, const char *name)
{
	size_t n = strcspn(l->myhost, ".");

	return strcmp(name, "localhost") == 0 || strcmp(name, l->myhost) == 0 ||
	    (strlen(name) == n && strncmp(name, l->myhost, n) == 0);
}

int
mirai_launch_create(mirai_launch **out, const mirai_launch_opts *o,
    mirai_errmsg *err)
{
	mirai_launch *l;
	size_t total = 0, k = 0;
	const char *bind;

	if (out == NULL || o == NULL || o->hosts == NULL || o->hosts->n == 0) {
		return mirai__fail(err, MIRAI_EINVAL, "no hosts to launch on");
	}
	bind = o->bind_to != NULL ? o->bind_to : "core";
	if (strcmp(bind, "core") != 0 && strcmp(bind, "numa") != 0 &&
	    strcmp(bind, "socket") != 0 && strcmp(bind, "none") != 0) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "bind to '%s'? use core, numa, socket or none", bind);
	}
	if (o->max_servers < 0 || o->min_servers < 0 || o->retries < 0 ||
	    o->retries > 255 || o->timeout_ms < 0) {
		return mirai__fail(err, MIRAI_EINVAL, "invalid launch options");
	}
	for (size_t i = 0; i < o->hosts->n; i++) {
		total += (size_t) o->hosts->hosts[i].slots;
	}
	if (o->max_servers > 0 && (size_t) o->max_servers < total) {
		total = (size_t) o->max_servers;
	}
	if (total > 100000) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "%zu servers: at most 100000 per launch", total);
	}
	if ((l = calloc(1, sizeof *l)) == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	pthread_mutex_init(&l->mtx, NULL);
	mirai__cond_init(&l->cv);
	if ((l->slots = calloc(total, sizeof *l->slots)) == NULL ||
	    (l->errors = calloc(total, sizeof *l->errors)) == NULL ||
	    (l->urls = calloc(total, sizeof *l->urls)) == NULL ||
	    (l->bindings = calloc(total, sizeof *l->bindings)) == NULL ||
	    (l->snap_online = calloc(total, sizeof *l->snap_online)) == NULL ||
	    (l->snap_pid = calloc(total, sizeof *l->snap_pid)) == NULL ||
	    (l->snap_binding = calloc(total, sizeof *l->snap_binding)) == NULL ||
	    (l->pids = calloc(total, sizeof *l->pids)) == NULL) {
		mirai_launch_destroy(l);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	mirai__hostname(l->myhost, sizeof l->myhost);
	l->o       = *o;
	l->o.hosts = NULL;
	l->o.bind_to = keep(l, bind);
	l->o.server_url  = keep(l, o->server_url != NULL ? o->server_url : "ws://*:0");
	l->o.advertise   = keep(l, o->advertise);
	l->o.client_url  = keep(l, o->client_url != NULL ? o->client_url
							  : "tcp://127.0.0.1:0");
	l->o.control_url = keep(l, o->control_url != NULL ? o->control_url
							   : "tcp://127.0.0.1:0");
	l->o.ssh_user     = keep(l, o->ssh_user);
	l->o.ssh_identity = keep(l, o->ssh_identity);
	l->o.ssh_config   = keep(l, o->ssh_config);
	l->o.known_hosts  = keep(l, o->known_hosts);
	l->o.server.server_path = keep(l, o->server.server_path);
	l->o.server.plugins     = NULL;
	l->o.env                = NULL;
	l->plugins = calloc(o->server.nplugins + 1, sizeof *l->plugins);
	l->env     = calloc(o->nenv + 1, sizeof *l->env);
	if (l->plugins == NULL || l->env == NULL) {
		mirai_launch_destroy(l);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	{
		for (size_t i = 0; i < o->server.nplugins; i++) {
			l->plugins[i] = keep(l, o->server.plugins[i]);
		}
		for (size_t i = 0; i < o->nenv; i++) {
			/* "VAR" forwards its value here. */
			const char *v = o->env[i];
			if (strchr(v, '=') == NULL) {
				const char *val = getenv(v);
				char buf[8192];
				snprintf(buf, sizeof buf, "%s=%s", v, val ? val : "");
				l->env[i] = keep(l, buf);
			} else {
				l->env[i] = keep(l, v);
			}
		}
		l->o.server.plugins = l->plugins;
		l->o.env            = l->env;
	}
	/* The plan: slots in host order, the k-th server of a host bound to
	 * its k-th unit. */
	for (size_t h = 0; h < o->hosts->n && k < total; h++) {
		const mirai_host *host = &o->hosts->hosts[h];
		const char *name       = keep(l, host->name);
		const char *user       = keep(l, host->user ? host->user : "");
		for (int s = 0; s < host->slots && k < total; s++, k++) {
			mirai_launch_slot *sl = &l->slots[k];
			sl->slot      = k;
			sl->host      = name;
			sl->user      = user;
			sl->host_slot = s;
			sl->unit      = strcmp(bind, "none") == 0 ? -1 : s;
			sl->local     = !o->ssh_local && is_local(l, name);
			sl->state     = MIRAI_LAUNCH_PLANNED;
			sl->url       = l->urls[k];
			sl->binding   = l->bindings[k];
			sl->error     = l->errors[k];
		}
	}
	l->n = k;
	/* All servers here: listen and advertise on loopback only, which
	 * needs no name resolution and opens nothing to the network. */
	if (o->server_url == NULL) {
		int all_local = 1;
		for (size_t i = 0; i < l->n; i++) {
			all_local &= l->slots[i].local;
		}
		if (all_local) {
			l->o.server_url = keep(l, "ws://127.0.0.1:0");
		}
	}
	for (size_t i = 0; i < l->nstrs; i++) {
		if (l->strs[i] == NULL) {
			mirai_launch_destroy(l);
			return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
		}
	}
	*out = l;
	return 0;
}

void
mirai_launch_slots(mirai_launch *l, const mirai_launch_slot **slots,
    size_t *n)
{
	*slots = l != NULL ? l->slots : NULL;
	*n     = l != NULL ? l->n : 0;
}

/* The URL a planned slot will have: scheme://HOST:PORT[/<token>]/i, with
 * the advertised host for a wildcard and "<port>" for a port to come. */
static void
planned_url(mirai_launch *l, size_t i, char *buf, size_t len)
{
	const char *u = l->o.server_url, *h = strstr(u, "://");
	const char *colon, *host;
	int hlen, port, ws;

	if (h == NULL || (colon = strrchr(h + 3, ':')) == NULL) {
		snprintf(buf, len, "%s", u);
		return;
	}
	h += 3;
	port = atoi(colon + 1);
	ws   = strncmp(u, "ws", 2) == 0;
	host = h;
	hlen = (int) (colon - h);
	if (l->o.advertise != NULL) {
		host = l->o.advertise;
		hlen = (int) strlen(host);
	} else if (hlen == 0 || (hlen == 1 && *h == '*')) {
		host = l->myhost;
		hlen = (int) strlen(host);
	}
	if (port > 0) {
		snprintf(buf, len, "%.*s%.*s:%d", (int) (h - u), u, hlen, host,
		    ws ? port : port + (int) i);
	} else {
		snprintf(buf, len, "%.*s%.*s:<port>", (int) (h - u), u, hlen,
		    host);
	}
	if (ws) {
		size_t n = strlen(buf);
		snprintf(buf + n, len - n, "%s/%zu",
		    l->o.no_token ? "" : "/<token>", i);
	}
}

int
mirai_launch_plan_json(mirai_launch *l, char **out)
{
	mirai__sb sb = {0};

	if (l == NULL || out == NULL) {
		return MIRAI_EINVAL;
	}
	for (size_t i = 0; i < l->n; i++) {
		const mirai_launch_slot *sl = &l->slots[i];
		char url[512];

		if (sl->url[0] != '\0') {
			snprintf(url, sizeof url, "%s", sl->url);
		} else {
			planned_url(l, i, url, sizeof url);
		}
		mirai__sb_printf(&sb, "{\"slot\":%zu,\"host\":", sl->slot);
		mirai__sb_json_str(&sb, sl->host);
		mirai__sb_printf(&sb, ",\"user\":");
		mirai__sb_json_str(&sb, sl->user);
		mirai__sb_printf(&sb, ",\"host_slot\":%d,\"bind\":", sl->host_slot);
		mirai__sb_json_str(&sb, l->o.bind_to);
		mirai__sb_printf(&sb, ",\"core\":%d,\"local\":%s,\"url\":", sl->unit,
		    sl->local ? "true" : "false");
		mirai__sb_json_str(&sb, url);
		mirai__sb_printf(&sb, "}\n");
	}
	if (sb.failed) {
		free(sb.buf);
		return MIRAI_ENOMEM;
	}
	*out = sb.buf != NULL ? sb.buf : mirai__strdup("");
	return *out != NULL ? 0 : MIRAI_ENOMEM;
}

const char *
mirai_launch_client_url(const mirai_launch *l)
{
	return l != NULL && l->d != NULL ? mirai_dispatcher_client_url(l->d)
					 : NULL;
}

const char *
mirai_launch_control_url(const mirai_launch *l)
{
	return l != NULL && l->d != NULL ? mirai_dispatcher_control_url(l->d)
					 : NULL;
}

/* ---- events -------------------------------------------------------------- */

static void
changed(mirai_launch *l)
{
	l->changes++;
	pthread_cond_broadcast(&l->cv);
}

/* From the dispatcher (its lock held): note, wake. */
static void
on_watch(void *arg)
{
	mirai_launch *l = arg;

	pthread_mutex_lock(&l->mtx);
	changed(l);
	pthread_mutex_unlock(&l->mtx);
}

static void
fail_slot(mirai_launch *l, size_t i, const char *fmt, ...)
    MIRAI_PRINTF(3, 4);

static void
fail_slot(mirai_launch *l, size_t i, const char *fmt, ...)
{
	va_list ap;

	if (l->slots[i].state == MIRAI_LAUNCH_ONLINE ||
	    l->slots[i].state == MIRAI_LAUNCH_FAILED) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(l->errors[i], sizeof l->errors[i], fmt, ap);
	va_end(ap);
	l->slots[i].state = MIRAI_LAUNCH_FAILED;
	MIRAI__LOG(MIRAI_LOG_WARN, TAG, "server %zu on %s: %s", i,
	    l->slots[i].host, l->errors[i]);
	changed(l);
}

/* id is the first slot of the host the event is about; it applies to
 * every slot of that host not online. */
static void
on_ssh(void *arg, size_t id, int event, int status, const char *msg)
{
	mirai_launch *l = arg;

	pthread_mutex_lock(&l->mtx);
	for (size_t i = id; i < l->n && l->slots[i].host == l->slots[id].host;
	     i++) {
		if (event == MIRAI__SSH_FAILED) {
			fail_slot(l, i, "%s (%s)", msg, mirai_errname(status));
		} else if (event == MIRAI__SSH_EXITED && status == 127) {
			fail_slot(l, i, "server binary missing: %s", msg);
		} else if (event == MIRAI__SSH_EXITED) {
			fail_slot(l, i, "server exited with status %d%s%s",
			    status, *msg ? ": " : "", msg);
		}
	}
	pthread_mutex_unlock(&l->mtx);
}

static void
on_child_exit(pid_t pid, int status, void *arg)
{
	mirai_launch *l = arg;

	pthread_mutex_lock(&l->mtx);
	for (size_t i = 0; i < l->n; i++) {
		if (l->pids[i] == pid) {
			l->pids[i] = 0;
			if (status == -1) {
				fail_slot(l, i, "server ended");
			} else if (WIFEXITED(status)) {
				fail_slot(l, i, "server exited with status %d",
				    WEXITSTATUS(status));
			} else {
				fail_slot(l, i, "server killed by signal %d",
				    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
			}
		}
	}
	l->alive--;
	changed(l);
	pthread_mutex_unlock(&l->mtx);
}

/* ---- starting --------------------------------------------------------------- */

static void *
dispatcher_main(void *arg)
{
	mirai_launch *l  = arg;
	mirai_errmsg err = {{0}};

	if (mirai_dispatcher_run(l->d, &err) != 0) {
		MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "dispatcher: %s", err.text);
	}
	return NULL;
}

/* url with its host replaced by the advertised one. */
static void
advertised(const mirai_launch *l, const char *url, char *buf, size_t len)
{
	const char *h = strstr(url, "://"), *e;

	if (l->o.advertise == NULL || h == NULL) {
		snprintf(buf, len, "%s", url);
		return;
	}
	h += 3;
	e = *h == '[' ? strchr(h, ']') + 1 : h + strcspn(h, ":/");
	snprintf(buf, len, "%.*s%s%s", (int) (h - url), url, l->o.advertise, e);
}

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

/* Start the servers of slots [first, first + count) (one remote host)
 * through one ssh exec, id first. */
static int
start_remote(mirai_launch *l, size_t first, size_t count, mirai_errmsg *err)
{
	const mirai_launch_slot *sl = &l->slots[first];
	const mirai_server_opts *so = &l->o.server;
	mirai__sb cmd = {0}, in = {0};
	int rv;

	mirai__sb_printf(&cmd, "exec");
	quote(&cmd, so->server_path != NULL ? so->server_path : "mirai-server");
	mirai__sb_printf(&cmd, " --stdin");
	if (sl->unit >= 0) {
		mirai__sb_printf(&cmd, " --bind-to %s", l->o.bind_to);
	}
	if (so->idle_ms > 0) {
		mirai__sb_printf(&cmd, " --idle %" PRId64, so->idle_ms);
	}
	if (so->walltime_ms > 0) {
		mirai__sb_printf(&cmd, " --walltime %" PRId64, so->walltime_ms);
	}
	if (so->max_tasks > 0) {
		mirai__sb_printf(&cmd, " --max-tasks %" PRIu64, so->max_tasks);
	}
	if (so->max_msg > 0) {
		mirai__sb_printf(&cmd, " --max-msg %zu", so->max_msg);
	}
	if (so->output) {
		mirai__sb_printf(&cmd, " --output");
	}
	for (size_t p = 0; p < so->nplugins; p++) {
		mirai__sb_printf(&cmd, " --plugin");
		quote(&cmd, so->plugins[p]);
	}
	/* What must not show in ps goes over stdin. */
	for (size_t i = first; i < first + count; i++) {
		if (l->slots[i].unit >= 0) {
			mirai__sb_printf(&in, "url %s %d\n", l->slots[i].url,
			    l->slots[i].unit);
		} else {
			mirai__sb_printf(&in, "url %s\n", l->slots[i].url);
		}
	}
	for (size_t e = 0; e < l->o.nenv; e++) {
		mirai__sb_printf(&in, "env %s\n", l->o.env[e]);
	}
	mirai__sb_printf(&in, "end\n");
	if (cmd.failed || in.failed) {
		rv = mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	} else {
		rv = mirai__ssh_run(l->ssh, first, sl->host,
		    *sl->user ? sl->user : NULL, 0, cmd.buf, in.buf, in.len);
		if (rv != 0) {
			mirai__fail(err, rv, "cannot start ssh to %s", sl->host);
		}
	}
	free(cmd.buf);
	free(in.buf);
	return rv;
}

static int
start_local(mirai_launch *l, size_t i, mirai_errmsg *err)
{
	mirai_server_opts so = l->o.server;
	pid_t pid;
	int rv;

	if (l->slots[i].unit >= 0) {
		so.bind_to    = l->o.bind_to;
		so.bind_index = l->slots[i].unit;
	}
	if ((rv = mirai__spawn_server(&so, l->slots[i].url, 0, &pid, err)) != 0) {
		return rv;
	}
	pthread_mutex_lock(&l->mtx);
	l->pids[i] = pid;
	l->alive++;
	pthread_mutex_unlock(&l->mtx);
	if ((rv = mirai__watch_child(pid, on_child_exit, l)) != 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		on_child_exit(pid, -1, l);
		return mirai__fail(err, rv, "cannot watch a server");
	}
	return 0;
}

/* Bring slot states up to date with the dispatcher; counts online and
 * failed.  Called with l->mtx held, which it drops while it reads the
 * dispatcher: the dispatcher calls on_watch() with its own lock held, so
 * the two locks are never taken in the other order. */
static void
refresh(mirai_launch *l, size_t *online, size_t *failed)
{
	pthread_mutex_unlock(&l->mtx);
	for (size_t i = 0; i < l->n; i++) {
		char host[64];
		mirai__dispatcher_slot(l->d, i, &l->snap_online[i],
		    &l->snap_pid[i], host, sizeof host, l->snap_binding[i],
		    sizeof l->snap_binding[i]);
	}
	pthread_mutex_lock(&l->mtx);
	*online = *failed = 0;
	for (size_t i = 0; i < l->n; i++) {
		mirai_launch_slot *sl = &l->slots[i];

		if (l->snap_online[i] && sl->state != MIRAI_LAUNCH_ONLINE) {
			sl->state       = MIRAI_LAUNCH_ONLINE;
			sl->pid         = l->snap_pid[i];
			l->errors[i][0] = '\0';
			memcpy(l->bindings[i], l->snap_binding[i],
			    sizeof l->bindings[i]);
		} else if (!l->snap_online[i] && sl->state == MIRAI_LAUNCH_ONLINE) {
			sl->state = MIRAI_LAUNCH_GONE;
			snprintf(l->errors[i], sizeof l->errors[i],
			    "the server went away");
		}
		*online += sl->state == MIRAI_LAUNCH_ONLINE;
		*failed += sl->state == MIRAI_LAUNCH_FAILED ||
		    sl->state == MIRAI_LAUNCH_GONE;
	}
}

int
mirai_launch_start(mirai_launch *l, mirai_launch_progress_fn progress,
    void *arg, mirai_errmsg *err)
{
	mirai_dispatcher_opts dopts = MIRAI_DISPATCHER_OPTS_INIT;
	int64_t wait = l->o.timeout_ms > 0 ? l->o.timeout_ms : START_WAIT_MS;
	int64_t deadline;
	size_t need, online = 0, failed = 0, remote = 0;
	unsigned seen;
	int rv;

	if (l == NULL || l->d != NULL) {
		return mirai__fail(err, MIRAI_ESTATE, "already started");
	}
	dopts.listen_url  = l->o.client_url;
	dopts.control_url = l->o.control_url;
	dopts.url         = l->o.server_url;
	dopts.n           = (int) l->n;
	dopts.no_token    = l->o.no_token;
	dopts.retries     = l->o.retries;
	dopts.server      = l->o.server;
	if ((rv = mirai_dispatcher_create(&l->d, &dopts, err)) != 0) {
		return rv;
	}
	mirai__dispatcher_watch(l->d, on_watch, l);
	if ((rv = mirai_dispatcher_listen(l->d, err)) != 0) {
		return rv;
	}
	if (pthread_create(&l->thr, NULL, dispatcher_main, l) != 0) {
		return mirai__fail(err, MIRAI_ENOMEM, "cannot start a thread");
	}
	l->running = 1;
	for (size_t i = 0; i < l->n; i++) {
		advertised(l, mirai_dispatcher_url(l->d, i), l->urls[i],
		    sizeof l->urls[i]);
		remote += !l->slots[i].local;
	}
	if (remote > 0) {
		mirai__ssh_opts so = {0};
		so.max_parallel = l->o.max_ssh;
		so.port         = l->o.ssh_port;
		so.user         = l->o.ssh_user;
		so.identity     = l->o.ssh_identity;
		so.config       = l->o.ssh_config;
		so.known_hosts  = l->o.known_hosts;
		/* Without --accept-new, the ssh config's StrictHostKeyChecking
		 * decides (strict when it says nothing). */
		so.hostkey = l->o.accept_new > 0   ? MIRAI__SSH_ACCEPT_NEW
			   : l->o.accept_new < 0 ? MIRAI__SSH_STRICT
						 : MIRAI__SSH_FROM_CONFIG;
		if ((rv = mirai__ssh_create(&l->ssh, &so, on_ssh, l, err)) != 0) {
			return rv;
		}
	}
	/* -x VAR=value reaches local servers through our environment. */
	for (size_t e = 0; e < l->o.nenv; e++) {
		char *copy = mirai__strdup(l->o.env[e]), *eq;
		if (copy != NULL && (eq = strchr(copy, '=')) != NULL) {
			*eq = '\0';
			setenv(copy, eq + 1, 1);
		}
		free(copy);
	}
	/* Slots of a host are next to each other in the plan. */
	for (size_t i = 0, end; i < l->n; i = end) {
		mirai_errmsg e2 = {{0}};
		for (end = i + 1; end < l->n && l->slots[end].host == l->slots[i].host;
		     end++) {
		}
		pthread_mutex_lock(&l->mtx);
		for (size_t k = i; k < end; k++) {
			l->slots[k].state = MIRAI_LAUNCH_STARTING;
		}
		pthread_mutex_unlock(&l->mtx);
		if (!l->slots[i].local) {
			rv = start_remote(l, i, end - i, &e2);
			if (rv != 0) {
				pthread_mutex_lock(&l->mtx);
				for (size_t k = i; k < end; k++) {
					fail_slot(l, k, "%s", e2.text);
				}
				pthread_mutex_unlock(&l->mtx);
			}
			continue;
		}
		for (size_t k = i; k < end; k++) {
			if (start_local(l, k, &e2) != 0) {
				pthread_mutex_lock(&l->mtx);
				fail_slot(l, k, "%s", e2.text);
				pthread_mutex_unlock(&l->mtx);
			}
		}
	}
	need     = l->o.min_servers > 0 ? (size_t) l->o.min_servers : l->n;
	deadline = mirai__now_ms() + wait;
	pthread_mutex_lock(&l->mtx);
	seen = l->changes - 1;
	for (;;) {
		if (seen != l->changes) {
			seen = l->changes;
			refresh(l, &online, &failed);
			if (progress != NULL) {
				pthread_mutex_unlock(&l->mtx);
				progress(arg, online, failed, l->n);
				pthread_mutex_lock(&l->mtx);
			}
		}
		if (online + failed >= l->n || mirai__now_ms() >= deadline) {
			break;
		}
		mirai__cond_wait_until(&l->cv, &l->mtx, deadline);
	}
	for (size_t i = 0; i < l->n; i++) {
		if (l->slots[i].state == MIRAI_LAUNCH_STARTING) {
			snprintf(l->errors[i], sizeof l->errors[i],
			    "not online after %lld ms", (long long) wait);
		}
	}
	pthread_mutex_unlock(&l->mtx);
	if (online < need) {
		size_t shown = 0;
		char list[300] = "";
		for (size_t i = 0; i < l->n && shown < 3; i++) {
			if (l->errors[i][0] != '\0') {
				size_t n = strlen(list);
				snprintf(list + n, sizeof list - n, "%s%s: %s",
				    shown > 0 ? "; " : "", l->slots[i].host,
				    l->errors[i]);
				shown++;
			}
		}
		return mirai__fail(err, MIRAI_ESPAWN,
		    "%zu of %zu servers online, %zu needed: %s", online, l->n,
		    need, list);
	}
	return 0;
}

void
mirai_launch_destroy(mirai_launch *l)
{
	int64_t deadline;

	if (l == NULL) {
		return;
	}
	if (l->running) {
		/* Servers are told to exit, an attached client to let go. */
		mirai_dispatcher_stop(l->d);
		pthread_join(l->thr, NULL);
	}
	/* The ssh channels close: remote servers still there see EOF. */
	mirai__ssh_destroy(l->ssh);
	mirai_dispatcher_destroy(l->d);
	if (l->pids != NULL) {
		deadline = mirai__now_ms() + REAP_WAIT_MS;
		pthread_mutex_lock(&l->mtx);
		while (l->alive > 0 && mirai__now_ms() < deadline) {
			mirai__cond_wait_until(&l->cv, &l->mtx, deadline);
		}
		if (l->alive > 0) {
			/* Stuck in a task past the bound: the launcher's
			 * watchers must not outlive it. */
			for (size_t i = 0; i < l->n; i++) {
				if (l->pids[i] > 0) {
					kill(l->pids[i], SIGKILL);
				}
			}
			while (l->alive > 0) {
				pthread_cond_wait(&l->cv, &l->mtx);
			}
		}
		pthread_mutex_unlock(&l->mtx);
	}
	for (size_t i = 0; i < l->nstrs; i++) {
		free(l->strs[i]);
	}
	free(l->strs);
	free(l->plugins);
	free(l->env);
	free(l->slots);
	free(l->errors);
	free(l->urls);
	free(l->bindings);
	free(l->snap_online);
	free(l->snap_pid);
	free(l->snap_binding);
	free(l->pids);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mtx);
	free(l);
}
