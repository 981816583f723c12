/*
 * launch.c: a launch's lifetime and its plan: create (options, the
 * forwarded environment, which server goes to which host and CPU), the
 * public getters (slots, the plan as JSON, the dispatcher's URLs), and
 * destroy, which stops and reaps whatever the start began.  See
 * launch_int.h for the whole picture.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "launch_int.h"

#define REAP_WAIT_MS 5000
/* After REAP_WAIT_MS, srun or pbsdsh gets a SIGTERM (each passes it to
 * its tasks) and this long before the SIGKILL. */
#define STEP_TERM_MS 2000
#define MAX_SERVERS 100000
/* Keeps the first unit of every server (k * cpus) within an int. */
#define MAX_CPUS_PER_SERVER 4096

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

/*
 * One -x entry as "VAR=VALUE" into *out (kept by l): "VAR" takes its value
 * here, and must have one; "VAR=VALUE" is kept whole, every byte after the
 * first '=' being the value.
 */
static int
env_entry(mirai_launch *l, const char *v, const char **out,
    mirai_errmsg *err)
{
	const char *val;
	char *both;

	if (v == NULL || *v == '\0' || *v == '=') {
		return mirai__fail(err, MIRAI_EINVAL,
		    "-x '%s': give VAR or VAR=VALUE", v != NULL ? v : "");
	}
	if (strchr(v, '=') != NULL) {
		*out = keep(l, v);
	} else if ((val = getenv(v)) == NULL) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "-x %s: %s is not set here (give -x %s=VALUE)", v, v, v);
	} else {
		if ((both = malloc(strlen(v) + strlen(val) + 2)) == NULL) {
			return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
		}
		sprintf(both, "%s=%s", v, val);
		*out = keep(l, both);
		free(both);
	}
	if (*out == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	if (mirai__agent_env_ok(*out) != 0) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "-x %.40s: longer than %u bytes", v,
		    (unsigned) MIRAI_AGENT_MAX_RECORD);
	}
	return 0;
}

/*
 * How many servers each host gets: counts[0 .. hosts->n), *total their sum.
 * Slots are cores: a host holds slots / per servers.  Up to what the hosts
 * hold, they fill in order (like Open MPI's default, by slot); beyond it,
 * with oversubscribe, the rest go round robin, one a host a round, a host
 * taking at most max_slots / per servers when its max_slots is given.
 * The plan is counts rather than a list so that a host's servers stay
 * next to each other, started by one ssh exec.
 */
static int
plan_counts(const mirai_launch_opts *o, int per, size_t *counts,
    size_t *total, mirai_errmsg *err)
{
	const mirai_hostlist *hl = o->hosts;
	size_t held = 0, want, left, room = 0, *ready, nready;
	int limited = 1;

	for (size_t h = 0; h < hl->n; h++) {
		const mirai_host *host = &hl->hosts[h];

		if (host->slots < per && !o->oversubscribe) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "host %s has %d slot%s, fewer than --cpus-per-server "
			    "%d (--oversubscribe shares them)", host->name,
			    host->slots, host->slots == 1 ? "" : "s", per);
		}
		held += (size_t) (host->slots / per);
		if (host->max_slots == 0) {
			limited = 0;
		} else {
			room += (size_t) (host->max_slots / per);
		}
	}
	want = o->max_servers > 0 ? (size_t) o->max_servers : held;
	if (want == 0) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "no host has the %d slots of --cpus-per-server %d: give "
		    "-n to oversubscribe", per, per);
	}
	if (want > MAX_SERVERS) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "%zu servers: at most %d per launch", want, MAX_SERVERS);
	}
	if (want > held && !o->oversubscribe) {
		if (per > 1) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "-n %zu is more than the %zu slots of %zu host%s "
			    "hold at --cpus-per-server %d (%zu servers; "
			    "--oversubscribe places more)", want,
			    hl->total_slots, hl->n, hl->n == 1 ? "" : "s",
			    per, held);
		}
		return mirai__fail(err, MIRAI_EINVAL,
		    "-n %zu is more than the %zu slots of %zu host%s "
		    "(--oversubscribe places more)", want, hl->total_slots,
		    hl->n, hl->n == 1 ? "" : "s");
	}
	if (want > held && limited && want > room) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "-n %zu is more than the max_slots of the hosts allow "
		    "(%zu servers%s)", want, room, per > 1 ? " at "
		    "--cpus-per-server" : "");
	}
	left = want;
	for (size_t h = 0; h < hl->n; h++) {
		size_t c = (size_t) (hl->hosts[h].slots / per);

		counts[h] = c < left ? c : left;
		left -= counts[h];
	}
	/* Round robin over the hosts with room left; a host whose max_slots
	 * is reached drops out, so every round places at least one. */
	if (left > 0) {
		if ((ready = calloc(hl->n, sizeof *ready)) == NULL) {
			return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
		}
		nready = 0;
		for (size_t h = 0; h < hl->n; h++) {
			ready[nready++] = h;
		}
		while (left > 0 && nready > 0) {
			size_t k = 0;
			for (size_t j = 0; j < nready && left > 0; j++) {
				const mirai_host *host = &hl->hosts[ready[j]];
				size_t c = counts[ready[j]];
				if (host->max_slots != 0 &&
				    c >= (size_t) (host->max_slots / per)) {
					continue;
				}
				counts[ready[j]]++;
				left--;
				ready[k++] = ready[j];
			}
			nready = k;
		}
		free(ready);
	}
	*total = want - left;
	return 0;
}

/* Whether name is this machine: started without ssh. */
static int
is_local(const mirai_launch *l, const char *name)
{
	size_t n = strcspn(l->myhost, ".");

	return strcmp(name, "localhost") == 0 || strcmp(name, l->myhost) == 0 ||
	    (strlen(name) == n && strncmp(name, l->myhost, n) == 0);
}

static int
is_tls_url(const char *url)
{
	return strncmp(url, "wss://", 6) == 0 || strncmp(url, "tls+", 4) == 0;
}

/*
 * The client or control URL to listen on, kept by l.  Beyond an ipc://
 * URL the dispatcher gives it a secret of its own at the end (see
 * mirai__url_cred), which a process must present to attach or ask; the
 * URL travels only by environment.
 */
static const char *
link_url(mirai_launch *l, const char *url)
{
	return keep(l, url);
}

static int
launch_create_impl(mirai_launch **out, const mirai_launch_opts *o,
    mirai_errmsg *err)
{
	mirai_launch *l;
	size_t total = 0, k = 0, *counts;
	const char *bind;
	int per, rv;

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
	    o->retries > 255 || mirai__timeout(o->timeout_ms, 0) < MIRAI_FOREVER ||
	    o->cpus_per_server < 0) {
		return mirai__fail(err, MIRAI_EINVAL, "invalid launch options");
	}
	per = o->cpus_per_server > 0 ? o->cpus_per_server : 1;
	if (per > MAX_CPUS_PER_SERVER) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "--cpus-per-server %d: at most %d", per,
		    MAX_CPUS_PER_SERVER);
	}
	if (per > 1 && strcmp(bind, "core") != 0 && strcmp(bind, "none") != 0) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "--cpus-per-server %d needs --bind-to core or none, not %s",
		    per, bind);
	}
	if (o->launcher < MIRAI_LAUNCHER_AUTO ||
	    o->launcher > MIRAI_LAUNCHER_PBS) {
		return mirai__fail(err, MIRAI_EINVAL, "unknown launcher %d",
		    o->launcher);
	}
	if ((counts = calloc(o->hosts->n, sizeof *counts)) == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	if ((rv = plan_counts(o, per, counts, &total, err)) != 0) {
		free(counts);
		return rv;
	}
	if ((size_t) o->min_servers > total) {
		free(counts);
		return mirai__fail(err, MIRAI_EINVAL,
		    "--min-servers %d is more than the %zu server%s planned",
		    o->min_servers, total, total == 1 ? "" : "s");
	}
	if ((l = calloc(1, sizeof *l)) == NULL) {
		free(counts);
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
		free(counts);
		mirai_launch_destroy(l);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	mirai__hostname(l->myhost, sizeof l->myhost);
	l->srun_sock = -1;
	l->launcher  = o->launcher;
	if (l->launcher == MIRAI_LAUNCHER_AUTO) {
		/* Inside a Slurm job its own launcher is the fast one and
		 * needs no ssh between the nodes. */
		const char *job = getenv("SLURM_JOB_ID");
		l->launcher = job != NULL && *job != '\0' &&
			mirai__can_exec("srun") ? MIRAI_LAUNCHER_SRUN
						: MIRAI_LAUNCHER_SSH;
	}
	/* The srun step's tasks, one a node, each get the cores its
	 * servers bind to (at most the node's slots). */
	for (size_t h = 0; h < o->hosts->n; h++) {
		size_t want = counts[h] * (size_t) per;
		size_t have = (size_t) o->hosts->hosts[h].slots;
		size_t c    = want < have ? want : have;
		if (counts[h] > 0 && (int) c > l->srun_cpus) {
			l->srun_cpus = (int) c;
		}
	}
	l->o       = *o;
	l->o.hosts = NULL;
	l->o.cpus_per_server = per;
	l->o.bind_to = keep(l, bind);
	l->o.server_url  = keep(l, o->server_url != NULL ? o->server_url : "ws://*:0");
	l->o.advertise   = keep(l, o->advertise);
	{
		/* The client command and `mirai` run here: by default they
		 * reach the dispatcher through owner-only ipc sockets. */
		char cu[128], ku[128];
		if ((o->client_url == NULL &&
			(rv = mirai__local_url(cu, sizeof cu, err)) != 0) ||
		    (o->control_url == NULL &&
			(rv = mirai__local_url(ku, sizeof ku, err)) != 0)) {
			free(counts);
			mirai_launch_destroy(l);
			return rv;
		}
		l->o.client_url  = link_url(l, o->client_url ? o->client_url : cu);
		l->o.control_url = link_url(l, o->control_url ? o->control_url
							  : ku);
	}
	l->o.ssh_user     = keep(l, o->ssh_user);
	l->o.ssh_identity = keep(l, o->ssh_identity);
	l->o.ssh_config   = keep(l, o->ssh_config);
	l->o.known_hosts  = keep(l, o->known_hosts);
	l->o.setup_dir    = keep(l, o->setup_dir);
	l->o.server             = &l->sopts;
	l->o.env                = NULL;
	l->env     = calloc(o->nenv + 1, sizeof *l->env);
	if (mirai__sopts_copy(&l->sopts, o->server, &l->sopts_mem) != 0 ||
	    l->env == NULL) {
		free(counts);
		mirai_launch_destroy(l);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	/* Servers keep a heartbeat of their own; the launch's otherwise. */
	if (l->sopts.heartbeat_ms == 0) {
		l->sopts.heartbeat_ms = o->heartbeat_ms;
	}
	{
		for (size_t i = 0; i < o->nenv; i++) {
			if ((rv = env_entry(l, o->env[i], &l->env[i], err)) != 0) {
				free(counts);
				mirai_launch_destroy(l);
				return rv;
			}
		}
		l->o.env            = l->env;
	}
	/* The plan: slots in host order, the k-th server of a host bound to
	 * its k-th unit (its k-th group of per units). */
	for (size_t h = 0; h < o->hosts->n && k < total; h++) {
		const mirai_host *host = &o->hosts->hosts[h];
		const char *name, *user;
		if (counts[h] == 0) {
			continue;
		}
		name = keep(l, host->name);
		user = keep(l, host->user ? host->user : "");
		for (size_t s = 0; s < counts[h] && k < total; s++, k++) {
			mirai_launch_slot *sl = &l->slots[k];
			sl->slot      = k;
			sl->host      = name;
			sl->user      = user;
			sl->host_slot = (int) s;
			sl->unit      = strcmp(bind, "none") == 0 ? -1
								: (int) s * per;
			sl->local     = l->launcher == MIRAI_LAUNCHER_LOCAL ||
			    (l->launcher == MIRAI_LAUNCHER_SSH &&
				!o->ssh_local && is_local(l, name));
			sl->state     = MIRAI_LAUNCH_PLANNED;
			sl->url       = l->urls[k];
			sl->binding   = l->bindings[k];
			sl->error     = l->errors[k];
		}
	}
	free(counts);
	l->n = k;
	/* All servers here: listen and advertise on loopback only, which
	 * needs no name resolution and opens nothing to the network.  Else
	 * the default slots listen on the advertised host's address only
	 * (see launch_start.c); a wildcard host the user gives listens on
	 * every interface. */
	if (o->server_url == NULL) {
		int all_local = 1;
		for (size_t i = 0; i < l->n; i++) {
			all_local &= l->slots[i].local;
		}
		if (all_local) {
			l->o.server_url = keep(l, "ws://127.0.0.1:0");
		}
		l->bind_advertised = !all_local;
	}
	/* TLS when a server is remote (or asked for): the slots' traffic
	 * and tokens leave this machine. */
	{
		int remote = 0;
		for (size_t i = 0; i < l->n; i++) {
			remote |= !l->slots[i].local;
		}
		l->tls = o->tls > 0 || (o->tls == 0 && remote);
		if (l->tls && strncmp(l->o.server_url, "ws://", 5) == 0) {
			char wss[512];
			snprintf(wss, sizeof wss, "wss://%s", l->o.server_url + 5);
			l->o.server_url = keep(l, wss);
		} else if (l->tls && strncmp(l->o.server_url, "wss://", 6) != 0) {
			MIRAI__LOG(MIRAI_LOG_WARN, TAG,
			    "%s: TLS is for ws:// slots (wss://); this launch's "
			    "slots stay in clear",
			    l->o.server_url);
			l->tls = 0;
		}
		l->tls_links = (l->o.client_url != NULL &&
				   is_tls_url(l->o.client_url)) ||
		    (l->o.control_url != NULL && is_tls_url(l->o.control_url));
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

int
mirai_launch_create(mirai_launch **out, const mirai_launch_opts *o,
    mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, launch_create_impl(out, o, &mine));
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
		mirai__sb_printf(&sb, ",\"cpus\":%d}\n",
		    sl->unit >= 0 ? l->o.cpus_per_server : 0);
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

const char *
mirai_launch_tls_ca(const mirai_launch *l)
{
	return l != NULL ? l->tls_files[0] : NULL;
}

void
mirai_launch_cancel(mirai_launch *l)
{
	if (l == NULL) {
		return;
	}
	pthread_mutex_lock(&l->mtx);
	l->cancelled = 1;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mtx);
}

void
mirai_launch_destroy(mirai_launch *l)
{
	int64_t deadline;

	if (l == NULL) {
		return;
	}
	/* The agents' secrets leave the disk first, whatever happens next. */
	mirai__ln_setup_remove(l);
	if (l->running) {
		/* Servers are told to exit, an attached client to let go. */
		mirai_dispatcher_stop(l->d);
		pthread_join(l->thr, NULL);
	}
	/* The ssh channels close, srun's stdin too: remote servers still
	 * there see EOF.  (pbsdsh's agents end with their servers.) */
	mirai__ssh_destroy(l->ssh);
	if (l->srun_sock >= 0) {
		shutdown(l->srun_sock, SHUT_WR);
	}
	mirai_dispatcher_destroy(l->d);
	if (l->pids != NULL) {
		deadline = mirai__now_ms() + REAP_WAIT_MS;
		pthread_mutex_lock(&l->mtx);
		while (l->alive > 0 && mirai__now_ms() < deadline) {
			mirai__cond_wait_until(&l->cv, &l->mtx, deadline);
		}
		if (l->alive > 0 && l->step_pid > 0) {
			/* srun and pbsdsh pass a TERM on to their tasks: the
			 * servers stop after their task, or at once on a
			 * second. */
			kill(l->step_pid, SIGTERM);
			deadline = mirai__now_ms() + STEP_TERM_MS;
			while (l->alive > 0 && mirai__now_ms() < deadline) {
				mirai__cond_wait_until(&l->cv, &l->mtx,
				    deadline);
			}
		}
		if (l->alive > 0) {
			/* Stuck in a task past the bound: the launcher's
			 * watchers must not outlive it. */
			if (l->step_pid > 0) {
				kill(l->step_pid, SIGKILL);
			}
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
	if (l->srun_sock >= 0) {
		/* A writer still blocked in send() returns. */
		shutdown(l->srun_sock, SHUT_RDWR);
	}
	if (l->writing) {
		pthread_join(l->writer, NULL);
	}
	if (l->srun_sock >= 0) {
		close(l->srun_sock);
	}
	free(l->srun_in.p);
	for (int i = 0; i < 3; i++) {
		if (l->tls_files[i] != NULL) {
			unlink(l->tls_files[i]);
			free(l->tls_files[i]);
		}
	}
	if (l->tls_dir[0] != '\0') {
		rmdir(l->tls_dir);
	}
	mirai__tls_ca_destroy(l->ca);
	for (size_t i = 0; i < l->nstrs; i++) {
		free(l->strs[i]);
	}
	free(l->strs);
	free(l->sopts_mem);
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
