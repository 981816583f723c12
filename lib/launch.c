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
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec.h"
#include "internal.h"
#include "ssh.h"

#define TAG "launch"
#define START_WAIT_MS 60000
#define REAP_WAIT_MS 5000
/* After REAP_WAIT_MS, srun gets a SIGTERM (it passes it to its tasks) and
 * this long before the SIGKILL. */
#define SRUN_TERM_MS 2000
#define MAX_SERVERS 100000
/* Keeps the first unit of every server (k * cpus) within an int. */
#define MAX_CPUS_PER_SERVER 4096

struct mirai_launch {
	mirai_launch_opts o;
	char **strs;           /* strings owned by the launch */
	size_t nstrs;
	mirai_server_opts sopts; /* o.server points here; strings in sopts_mem */
	void *sopts_mem;
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
	int launcher;          /* MIRAI_LAUNCHER_SSH, _SRUN or _LOCAL */
	int srun_cpus;         /* --cpus-per-task of the srun step */
	pid_t srun_pid;        /* the srun of the servers' step, 0 if none */
	int srun_sock;         /* its stdin, our end; -1 if none */
	mirai__wbuf srun_in;   /* the setup all its agents read */
	int tls;               /* the slots are wss:// */
	mirai__tls_ca *ca;     /* this launch's CA, once started */
	char tls_dir[96];      /* its files (owner-only), "" if none */
	char *tls_files[3];    /* ca.pem, cert.pem, key.pem in tls_dir */
	pthread_t writer;
	int writing;           /* writer started */
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
	    o->launcher > MIRAI_LAUNCHER_LOCAL) {
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
		l->o.client_url  = keep(l, o->client_url != NULL ? o->client_url
								  : cu);
		l->o.control_url = keep(l, o->control_url != NULL ? o->control_url
								   : ku);
	}
	l->o.ssh_user     = keep(l, o->ssh_user);
	l->o.ssh_identity = keep(l, o->ssh_identity);
	l->o.ssh_config   = keep(l, o->ssh_config);
	l->o.known_hosts  = keep(l, o->known_hosts);
	l->o.server             = &l->sopts;
	l->o.env                = NULL;
	l->env     = calloc(o->nenv + 1, sizeof *l->env);
	if (mirai__sopts_copy(&l->sopts, o->server, &l->sopts_mem) != 0 ||
	    l->env == NULL) {
		free(counts);
		mirai_launch_destroy(l);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
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

/*
 * Fail servers [first, end) (of one host) with one reason, logged once:
 * a dead host with 50 slots is one line, not 50.  The caller's message
 * is complete; a server online already or failed already is left alone.
 * Logged at INFO: the launch's error, or mirai-launch's summary once it
 * goes on without them, reports each host once.
 */
static void
fail_range(mirai_launch *l, size_t first, size_t end, const char *fmt, ...)
    MIRAI_PRINTF(4, 5);

static void
fail_range(mirai_launch *l, size_t first, size_t end, const char *fmt, ...)
{
	char why[sizeof l->errors[0]];
	size_t failed = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	for (size_t i = first; i < end; i++) {
		if (l->slots[i].state == MIRAI_LAUNCH_ONLINE ||
		    l->slots[i].state == MIRAI_LAUNCH_FAILED) {
			continue;
		}
		memcpy(l->errors[i], why, sizeof why);
		l->slots[i].state = MIRAI_LAUNCH_FAILED;
		failed++;
	}
	if (failed > 0) {
		MIRAI__LOG(MIRAI_LOG_INFO, TAG, "%s: %zu server%s failed: %s",
		    l->slots[first].host, failed, failed == 1 ? "" : "s", why);
		changed(l);
	}
}

/*
 * The ssh layer's hints named in the launcher's terms: what the user can
 * give is mirai-launch's option, not the ssh module's policy name.
 */
static const struct {
	const char *from, *to;
} hints[] = {
    {"(use accept-new to learn it)", "(--accept-new learns it)"},
};

/* msg from the ssh layer without the "host: " it opens with (the launch
 * names the host itself) and with its hints in mirai-launch's terms. */
static void
ssh_reason(const char *host, const char *msg, char *buf, size_t len)
{
	size_t n = strlen(host);
	char *at;

	if (strncmp(msg, host, n) == 0 && strncmp(msg + n, ": ", 2) == 0) {
		msg += n + 2;
	}
	snprintf(buf, len, "%s", msg);
	for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++) {
		size_t fl = strlen(hints[i].from), tl = strlen(hints[i].to);
		if ((at = strstr(buf, hints[i].from)) != NULL &&
		    strlen(buf) - fl + tl < len) {
			memmove(at + tl, at + fl, strlen(at + fl) + 1);
			memcpy(at, hints[i].to, tl);
		}
	}
}

/* id is the first slot of the host the event is about; it applies to
 * every slot of that host not online. */
static void
on_ssh(void *arg, size_t id, int event, int status, const char *msg)
{
	mirai_launch *l = arg;
	char why[256];
	size_t end;

	pthread_mutex_lock(&l->mtx);
	for (end = id; end < l->n && l->slots[end].host == l->slots[id].host;
	     end++) {
	}
	ssh_reason(l->slots[id].host, msg, why, sizeof why);
	if (event == MIRAI__SSH_FAILED) {
		fail_range(l, id, end, "%s (%s)", why, mirai_errname(status));
	} else if (event == MIRAI__SSH_EXITED && status == 127) {
		fail_range(l, id, end, "server binary missing: %s", why);
	} else if (event == MIRAI__SSH_EXITED) {
		fail_range(l, id, end, "server exited with status %d%s%s",
		    status, *why ? ": " : "", why);
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
				fail_range(l, i, i + 1, "server ended");
			} else if (WIFEXITED(status)) {
				fail_range(l, i, i + 1,
				    "server exited with status %d",
				    WEXITSTATUS(status));
			} else {
				fail_range(l, i, i + 1,
				    "server killed by signal %d",
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
 * setup (URLs, environment) goes over its stdin. */
static void
agent_argv(const mirai_launch *l, const char *server, int bind, argvec *a)
{
	const mirai_server_opts *so = &l->sopts;

	av_add(a, "%s", server);
	av_add(a, "--stdin");
	if (bind) {
		av_add(a, "--bind-to");
		av_add(a, "%s", l->o.bind_to);
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
	for (size_t p = 0; p < so->nplugins; p++) {
		av_add(a, "--plugin");
		av_add(a, "%s", so->plugins[p]);
	}
}

/* The setup records of slots [first, end) (one host), addressed to that
 * host when node is set. */
static void
setup_urls(const mirai_launch *l, size_t first, size_t end, int node,
    mirai__wbuf *w)
{
	if (node) {
		mirai__agent_node(w, l->slots[first].host);
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
	if (l->ca != NULL) {
		/* The servers verify the dispatcher with it. */
		mirai__agent_ca(w, mirai__tls_ca_pem(l->ca));
	}
	mirai__agent_end(w);
}

/*
 * This launch's TLS material: a fresh CA, the dispatcher's certificate
 * (for MIRAI__TLS_NAME, which servers verify), both with the CA written to
 * an owner-only directory; the dispatcher listens with them and local
 * servers dial with the CA file.
 */
static int
tls_setup(mirai_launch *l, mirai_dispatcher_opts *dopts, mirai_errmsg *err)
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
	l->sopts.tls_ca = l->tls_files[0];
	return 0;
}

/* Start the servers of slots [first, first + count) (one remote host)
 * through one ssh exec, id first. */
static int
start_remote(mirai_launch *l, size_t first, size_t count, mirai_errmsg *err)
{
	const mirai_launch_slot *sl = &l->slots[first];
	const mirai_server_opts *so = &l->sopts;
	mirai__sb cmd = {0};
	mirai__wbuf in = {0};
	argvec av = {0};
	int rv;

	agent_argv(l, so->server_path != NULL ? so->server_path : "mirai-server",
	    sl->unit >= 0, &av);
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
	setup_urls(l, first, first + count, 0, &in);
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

/* ---- srun ------------------------------------------------------------------ */

extern char **environ;

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

static void
on_srun_exit(pid_t pid, int status, void *arg)
{
	mirai_launch *l = arg;

	(void) pid;
	pthread_mutex_lock(&l->mtx);
	l->srun_pid = 0;
	if (status != -1 && WIFEXITED(status)) {
		fail_range(l, 0, l->n, "srun exited with status %d",
		    WEXITSTATUS(status));
	} else {
		fail_range(l, 0, l->n, "srun ended (signal %d)",
		    status != -1 && WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	}
	l->alive--;
	changed(l);
	pthread_mutex_unlock(&l->mtx);
}

/*
 * Every server through one srun job step: one task a node (the node's
 * agent, as over ssh), all reading one setup in which each node's URLs are
 * addressed to it.  The mirai-server is the one this machine would run,
 * by the same path on the nodes (a shared file system), unless given.
 */
static int
start_srun(mirai_launch *l, mirai_errmsg *err)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, def;
	mirai__sb nodes = {0};
	argvec av = {0};
	char exe[4096];
	const char *server;
	size_t nhosts = 0;
	int sv[2], rv;
	pid_t pid;

	server = mirai__find_tool(l->sopts.server_path, "MIRAI_SERVER",
	    "mirai-server", exe, sizeof exe);
	mirai__agent_begin(&l->srun_in);
	for (size_t i = 0, end; i < l->n; i = end) {
		for (end = i + 1; end < l->n &&
		     l->slots[end].host == l->slots[i].host;
		     end++) {
		}
		setup_urls(l, i, end, 1, &l->srun_in);
		mirai__sb_printf(&nodes, "%s%s", nhosts > 0 ? "," : "",
		    l->slots[i].host);
		nhosts++;
	}
	setup_env(l, &l->srun_in);
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
	agent_argv(l, server, l->slots[0].unit >= 0, &av);
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
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGTERM);
	sigaddset(&def, SIGINT);
	sigaddset(&def, SIGHUP);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &def);
	/* Its own process group: a ^C at the terminal reaches the launcher,
	 * which ends the step its own way. */
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
	    POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
	rv = posix_spawnp(&pid, "srun", &fa, &at, av.v, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	av_free(&av);
	close(sv[1]);
	if (rv != 0) {
		close(sv[0]);
		return mirai__fail(err, MIRAI_ESPAWN, "cannot run srun: %s",
		    strerror(rv));
	}
	pthread_mutex_lock(&l->mtx);
	l->srun_sock = sv[0];
	l->srun_pid  = pid;
	l->alive++;
	pthread_mutex_unlock(&l->mtx);
	if ((rv = mirai__watch_child(pid, on_srun_exit, l)) != 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		on_srun_exit(pid, -1, l);
		return mirai__fail(err, rv, "cannot watch srun");
	}
	if (pthread_create(&l->writer, NULL, srun_writer, l) != 0) {
		return mirai__fail(err, MIRAI_ENOMEM, "cannot start a thread");
	}
	l->writing = 1;
	return 0;
}

static int
start_local(mirai_launch *l, size_t i, mirai_errmsg *err)
{
	mirai_server_opts so = l->sopts;
	pid_t pid;
	int rv;

	if (l->slots[i].unit >= 0) {
		so.bind_to    = l->o.bind_to;
		so.bind_index = l->slots[i].unit;
		so.bind_count = l->o.cpus_per_server;
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

/*
 * What went wrong, into buf: runs of servers of one host with one reason
 * ("servers 2-51 on nohost.invalid: unreachable: ..."), the first three,
 * then how many more.  Called with the states settled.
 */
static void
failures(const mirai_launch *l, char *buf, size_t len)
{
	size_t shown = 0, more = 0, used = 0;

	buf[0] = '\0';
	for (size_t i = 0, end; i < l->n; i = end) {
		for (end = i + 1; end < l->n &&
		     l->slots[end].host == l->slots[i].host &&
		     strcmp(l->errors[end], l->errors[i]) == 0;
		     end++) {
		}
		if (l->errors[i][0] == '\0') {
			continue;
		}
		if (shown == 3) {
			more += end - i;
			continue;
		}
		if (end - i > 1) {
			used += (size_t) snprintf(buf + used, len - used,
			    "%sservers %zu-%zu on %s: %s", shown ? "; " : "", i,
			    end - 1, l->slots[i].host, l->errors[i]);
		} else {
			used += (size_t) snprintf(buf + used, len - used,
			    "%sserver %zu on %s: %s", shown ? "; " : "", i,
			    l->slots[i].host, l->errors[i]);
		}
		used = used < len ? used : len - 1;
		shown++;
	}
	if (more > 0) {
		snprintf(buf + used, len - used, "; %zu more server%s failed",
		    more, more == 1 ? "" : "s");
	}
}

static int
launch_start_impl(mirai_launch *l, mirai_launch_progress_fn progress,
    void *arg, mirai_errmsg *err)
{
	mirai_dispatcher_opts dopts = MIRAI_DISPATCHER_OPTS_INIT;
	int64_t wait;
	int64_t deadline;
	size_t need, online = 0, failed = 0, remote = 0;
	unsigned seen;
	int rv;

	if (l == NULL || l->d != NULL) {
		return mirai__fail(err, MIRAI_ESTATE, "already started");
	}
	wait = mirai__timeout(l->o.timeout_ms, START_WAIT_MS);
	dopts.listen_url  = l->o.client_url;
	dopts.control_url = l->o.control_url;
	dopts.url         = l->o.server_url;
	dopts.n           = (int) l->n;
	dopts.no_token    = l->o.no_token;
	dopts.retries     = l->o.retries;
	dopts.server      = &l->sopts;
	if (l->tls && (rv = tls_setup(l, &dopts, err)) != 0) {
		return rv;
	}
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
	if (remote > 0 && l->launcher == MIRAI_LAUNCHER_SSH) {
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
	if (l->launcher == MIRAI_LAUNCHER_SRUN) {
		mirai_errmsg e2 = {{0}};
		pthread_mutex_lock(&l->mtx);
		for (size_t k = 0; k < l->n; k++) {
			l->slots[k].state = MIRAI_LAUNCH_STARTING;
		}
		pthread_mutex_unlock(&l->mtx);
		if (start_srun(l, &e2) != 0) {
			pthread_mutex_lock(&l->mtx);
			fail_range(l, 0, l->n, "%s", e2.text);
			pthread_mutex_unlock(&l->mtx);
		}
	}
	/* Slots of a host are next to each other in the plan. */
	for (size_t i = 0, end; i < l->n && l->launcher != MIRAI_LAUNCHER_SRUN;
	     i = end) {
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
				fail_range(l, i, end, "%s", e2.text);
				pthread_mutex_unlock(&l->mtx);
			}
			continue;
		}
		for (size_t k = i; k < end; k++) {
			if (start_local(l, k, &e2) != 0) {
				pthread_mutex_lock(&l->mtx);
				fail_range(l, k, k + 1, "%s", e2.text);
				pthread_mutex_unlock(&l->mtx);
			}
		}
	}
	need     = l->o.min_servers > 0 ? (size_t) l->o.min_servers : l->n;
	deadline = wait < 0 ? -1 : mirai__now_ms() + wait;
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
		if (online + failed >= l->n ||
		    (deadline >= 0 && mirai__now_ms() >= deadline)) {
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
		char list[800];
		failures(l, list, sizeof list);
		return mirai__fail(err, MIRAI_ESPAWN,
		    "%zu of %zu servers online, %zu needed: %s", online, l->n,
		    need, list);
	}
	return 0;
}

int
mirai_launch_start(mirai_launch *l, mirai_launch_progress_fn progress,
    void *arg, mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, launch_start_impl(l, progress, arg, &mine));
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
	/* The ssh channels close, srun's stdin too: remote servers still
	 * there see EOF. */
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
		if (l->alive > 0 && l->srun_pid > 0) {
			/* srun passes a TERM on to its tasks: the servers
			 * stop after their task, or at once on a second. */
			kill(l->srun_pid, SIGTERM);
			deadline = mirai__now_ms() + SRUN_TERM_MS;
			while (l->alive > 0 && mirai__now_ms() < deadline) {
				mirai__cond_wait_until(&l->cv, &l->mtx,
				    deadline);
			}
		}
		if (l->alive > 0) {
			/* Stuck in a task past the bound: the launcher's
			 * watchers must not outlive it. */
			if (l->srun_pid > 0) {
				kill(l->srun_pid, SIGKILL);
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
