/*
 * launch_start.c: mirai_launch_start: the dispatcher on its thread (its
 * slots bound to the advertised host's address), local servers started
 * directly, remote ones handed to launch_remote.c, then
 * watching them come online (events from the dispatcher, from children
 * and from ssh) with progress reports, until enough are or time is up.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "launch_int.h"

#define START_WAIT_MS 60000

/* ---- events -------------------------------------------------------------- */

void
mirai__ln_changed(mirai_launch *l)
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
	mirai__ln_changed(l);
	pthread_mutex_unlock(&l->mtx);
}

int
mirai__ln_adopt(mirai_launch *l, pid_t pid, pid_t *at,
    void (*on_exit)(pid_t, int, void *), const char *what, mirai_errmsg *err)
{
	int rv;

	pthread_mutex_lock(&l->mtx);
	*at = pid;
	l->alive++;
	pthread_mutex_unlock(&l->mtx);
	if ((rv = mirai__watch_child(pid, on_exit, l)) != 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		on_exit(pid, -1, l);
		return mirai__fail(err, rv, "cannot watch %s", what);
	}
	return 0;
}

void
mirai__ln_fail_range(mirai_launch *l, size_t first, size_t end,
    const char *fmt, ...)
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
		mirai__ln_changed(l);
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
		mirai__ln_fail_range(l, id, end, "%s (%s)", why,
		    mirai_errname(status));
	} else if (event == MIRAI__SSH_EXITED && status == 127) {
		mirai__ln_fail_range(l, id, end, "server binary missing: %s",
		    why);
	} else if (event == MIRAI__SSH_EXITED) {
		mirai__ln_fail_range(l, id, end,
		    "server exited with status %d%s%s", status, *why ? ": " : "", why);
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
				mirai__ln_fail_range(l, i, i + 1,
				    "server ended");
			} else if (WIFEXITED(status)) {
				mirai__ln_fail_range(l, i, i + 1,
				    "server exited with status %d",
				    WEXITSTATUS(status));
			} else {
				mirai__ln_fail_range(l, i, i + 1,
				    "server killed by signal %d",
				    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
			}
		}
	}
	l->alive--;
	mirai__ln_changed(l);
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

/* The host servers dial: --advertise, else for the default slots of a
 * launch with remote servers this host's name; NULL: the URL's own. */
static const char *
dial_host(const mirai_launch *l)
{
	return l->o.advertise != NULL ? l->o.advertise
	     : l->bind_advertised   ? l->myhost
				    : NULL;
}

/* url with its host replaced by the advertised one. */
static void
advertised(const mirai_launch *l, const char *url, char *buf, size_t len)
{
	const char *h = strstr(url, "://"), *e, *host = dial_host(l);

	if (host == NULL || h == NULL) {
		snprintf(buf, len, "%s", url);
		return;
	}
	h += 3;
	e = *h == '[' ? strchr(h, ']') + 1 : h + strcspn(h, ":/");
	snprintf(buf, len, "%.*s%s%s", (int) (h - url), url, host, e);
}

static int
is_loopback(const struct sockaddr *sa)
{
	static const unsigned char v4_in_v6[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0, 0xff, 0xff};
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) sa;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *) sa;
		return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	}
	return sa->sa_family == AF_INET6 &&
	    (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr) ||
		(memcmp(s6->sin6_addr.s6_addr, v4_in_v6, 12) == 0 &&
		    s6->sin6_addr.s6_addr[12] == 127));
}

/*
 * The default slots of a launch with remote servers (ws or wss, host *,
 * port 0) listen on the address the advertised host has here, the one servers
 * dial, not on every interface: nothing of the launch shows on this
 * node's other networks.  That host is --advertise (taken as given), or
 * this host's name, which must not resolve to a loopback address here
 * (Debian maps it to 127.0.1.1): remote servers could not reach it.  A
 * wildcard host that the user gives in --server-url still listens on
 * every interface.  buf gets the URL to listen on.
 */
static int
bind_url(const mirai_launch *l, char *buf, size_t len, mirai_errmsg *err)
{
	static const char hint[] =
	    "give --advertise with this machine's address on the servers' "
	    "network, or --server-url 'ws://*:0' to listen on every "
	    "interface";
	const char *url = l->o.server_url, *host = dial_host(l);
	const char *star = strstr(url, "://*");
	struct addrinfo want, *ai = NULL;
	char name[256], num[INET6_ADDRSTRLEN];
	int rc, v6;

	if (star == NULL) {
		snprintf(buf, len, "%s", url);
		return 0;
	}
	/* A bracketed IPv6 literal resolves without its brackets. */
	snprintf(name, sizeof name, "%.*s",
	    (int) strcspn(host + (*host == '['), "]"), host + (*host == '['));
	memset(&want, 0, sizeof want);
	want.ai_family   = AF_UNSPEC;
	want.ai_socktype = SOCK_STREAM;
	want.ai_flags    = AI_ADDRCONFIG;
	if ((rc = getaddrinfo(name, NULL, &want, &ai)) == 0) {
		rc = getnameinfo(ai->ai_addr, ai->ai_addrlen, num, sizeof num,
		    NULL, 0, NI_NUMERICHOST);
		if (rc == 0 && l->o.advertise == NULL &&
		    is_loopback(ai->ai_addr)) {
			freeaddrinfo(ai);
			return mirai__fail(err, MIRAI_EADDRINVAL,
			    "this host's name %s resolves to %s here, a "
			    "loopback address remote servers cannot reach: %s",
			    name, num, hint);
		}
		v6 = ai->ai_family == AF_INET6;
		freeaddrinfo(ai);
	}
	if (rc != 0) {
		return mirai__fail(err, MIRAI_EADDRINVAL,
		    "%s does not resolve here (%s), so the server slots have no "
		    "address to listen on: %s",
		    name, gai_strerror(rc), hint);
	}
	snprintf(buf, len, "%.*s%s%s%s%s", (int) (star + 3 - url), url,
	    v6 ? "[" : "", num, v6 ? "]" : "", star + 4);
	MIRAI__LOG(MIRAI_LOG_INFO, TAG, "server slots listen on %s (%s)", buf,
	    name);
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
	return mirai__ln_adopt(l, pid, &l->pids[i], on_child_exit, "a server",
	    err);
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
	char slots_url[512];
	int64_t wait;
	int64_t deadline;
	size_t need, online = 0, failed = 0, remote = 0;
	unsigned seen;
	int rv;
	/* One srun step or one pbsdsh starts every agent. */
	int step = l != NULL && (l->launcher == MIRAI_LAUNCHER_SRUN ||
				    l->launcher == MIRAI_LAUNCHER_PBS);

	if (l == NULL || l->d != NULL) {
		return mirai__fail(err, MIRAI_ESTATE, "already started");
	}
	wait = mirai__timeout(l->o.timeout_ms, START_WAIT_MS);
	dopts.listen_url  = l->o.client_url;
	dopts.control_url = l->o.control_url;
	if (l->bind_advertised &&
	    (rv = bind_url(l, slots_url, sizeof slots_url, err)) != 0) {
		return rv;
	}
	dopts.url         = l->bind_advertised ? slots_url : l->o.server_url;
	dopts.n           = (int) l->n;
	dopts.no_token    = l->o.no_token;
	dopts.retries     = l->o.retries;
	dopts.server      = &l->sopts;
	dopts.heartbeat_ms = l->o.heartbeat_ms;
	if ((l->tls || l->tls_links) &&
	    (rv = mirai__ln_tls_setup(l, &dopts, err)) != 0) {
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
	if (step) {
		mirai_errmsg e2 = {{0}};
		pthread_mutex_lock(&l->mtx);
		for (size_t k = 0; k < l->n; k++) {
			l->slots[k].state = MIRAI_LAUNCH_STARTING;
		}
		pthread_mutex_unlock(&l->mtx);
		rv = l->launcher == MIRAI_LAUNCHER_SRUN
		    ? mirai__ln_start_srun(l, &e2)
		    : mirai__ln_start_pbs(l, &e2);
		if (rv != 0) {
			pthread_mutex_lock(&l->mtx);
			mirai__ln_fail_range(l, 0, l->n, "%s", e2.text);
			pthread_mutex_unlock(&l->mtx);
		}
	}
	/* Slots of a host are next to each other in the plan. */
	for (size_t i = 0, end; i < l->n && !step; i = end) {
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
			rv = mirai__ln_start_remote(l, i, end - i, &e2);
			if (rv != 0) {
				pthread_mutex_lock(&l->mtx);
				mirai__ln_fail_range(l, i, end, "%s", e2.text);
				pthread_mutex_unlock(&l->mtx);
			}
			continue;
		}
		for (size_t k = i; k < end; k++) {
			if (start_local(l, k, &e2) != 0) {
				pthread_mutex_lock(&l->mtx);
				mirai__ln_fail_range(l, k, k + 1, "%s",
				    e2.text);
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
		if (online + failed >= l->n || l->cancelled ||
		    (deadline >= 0 && mirai__now_ms() >= deadline)) {
			break;
		}
		mirai__cond_wait_until(&l->cv, &l->mtx, deadline);
	}
	if (l->cancelled) {
		pthread_mutex_unlock(&l->mtx);
		mirai__ln_setup_remove(l);
		return mirai__fail(err, MIRAI_ECANCELED, "start cancelled with "
		    "%zu of %zu servers online", online, l->n);
	}
	for (size_t i = 0; i < l->n; i++) {
		if (l->slots[i].state == MIRAI_LAUNCH_STARTING) {
			snprintf(l->errors[i], sizeof l->errors[i],
			    "not online after %lld ms", (long long) wait);
		}
	}
	pthread_mutex_unlock(&l->mtx);
	/* Every agent has read its setup (its servers are online), or is
	 * given up on: pbsdsh's leaves the disk now. */
	mirai__ln_setup_remove(l);
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
