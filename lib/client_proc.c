/*
 * client_proc.c: the processes and threads a profile starts: local
 * servers, the mirai-dispatcher process or the dispatcher engine on a
 * thread; watching them and noting when a child exits.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"

/* How long mirai_daemons() waits for its local servers to connect. */
#define LOCAL_START_MS 10000

static void
on_child_exit(pid_t pid, int status, void *arg)
{
	profile *p  = arg;
	mirai *list = NULL;
	int hello   = 0, is_disp = 0;
	char how[64];

	if (status == -1) {
		snprintf(how, sizeof how, "an unknown status");
	} else if (WIFEXITED(status)) {
		snprintf(how, sizeof how, "exit code %d", WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		snprintf(how, sizeof how, "signal %d", WTERMSIG(status));
	} else {
		snprintf(how, sizeof how, "status %d", status);
	}
	pthread_mutex_lock(&p->mtx);
	for (child *c = p->children.head; c != NULL; c = c->entry.next) {
		if (c->pid == pid) {
			hello   = c->hello;
			is_disp = c->dispatcher;
			MIRAI__LIST_REMOVE(&p->children, c, entry);
			free(c);
			break;
		}
	}
	p->alive--;
	/* A server that left by one of its own rules (its one task done, told
	 * to exit, idle or wall time) had connected, even when its HELLO is
	 * still on its way here: a child's end can be seen before the frames
	 * it sent (seen as a one-shot call failing with ESPAWN under load). */
	hello |= mirai__server_left_by_rule(status);
	if (!p->closing && !hello && p->kind == KIND_ONESHOT) {
		/* Its task may not be queued yet: mirai__cl_dispatch() fails one task
		 * for each server that died unconnected, whichever comes
		 * first. */
		snprintf(p->last_failure, sizeof p->last_failure,
		    "one-shot server (pid %d) ended with %s before connecting",
		    (int) pid, how);
		p->dead_spawns++;
		mirai__cl_dispatch(p, &list);
	} else if (!p->closing && is_disp) {
		snprintf(p->last_failure, sizeof p->last_failure,
		    "the dispatcher (pid %d) ended with %s", (int) pid, how);
		MIRAI__LOG(MIRAI_LOG_WARN, TAG, "profile '%s': %s", p->name,
		    p->last_failure);
		p->no_servers     = 1;
		p->no_servers_why = "the dispatcher of the profile has exited; "
				    "reset it and set daemons again";
		mirai__cl_dispatch(p, &list);
	} else if (!p->closing) {
		if (!hello) {
			snprintf(p->last_failure, sizeof p->last_failure,
			    "local server pid %d ended with %s before connecting",
			    (int) pid, how);
			MIRAI__LOG(MIRAI_LOG_WARN, TAG, "profile '%s': %s",
			    p->name, p->last_failure);
		} else if (status != -1 && !mirai__server_left_by_rule(status)) {
			MIRAI__LOG(MIRAI_LOG_WARN, TAG,
			    "profile '%s': local server pid %d ended with %s",
			    p->name, (int) pid, how);
		}
		if (p->kind == KIND_DIRECT && !p->user_url && !p->dispatcher &&
		    p->alive == 0) {
			p->no_servers     = 1;
			p->no_servers_why = "every local server of the profile has "
					    "exited; reset it and set daemons "
					    "again";
			mirai__cl_dispatch(p, &list);
		}
	}
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mtx);
	mirai__cl_publish(list);
	if (p->kind == KIND_ONESHOT) {
		mirai__cl_oneshot_more(p);
	}
	mirai__cl_profile_unref(p);
}

/* Watch child pid of p (a server, or the dispatcher).  Called unlocked. */
static int
watch(profile *p, pid_t pid, int is_dispatcher, mirai_errmsg *err)
{
	child *c;
	int rv;

	if ((c = calloc(1, sizeof *c)) == NULL) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	c->pid        = pid;
	c->dispatcher = is_dispatcher;
	pthread_mutex_lock(&p->mtx);
	MIRAI__LIST_PUSH_FRONT(&p->children, c, entry);
	p->alive++;
	pthread_mutex_unlock(&p->mtx);
	mirai__cl_profile_ref(p);
	if ((rv = mirai__watch_child(pid, on_child_exit, p)) != 0) {
		/* Cannot watch it: do not leave it running unwatched. */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		on_child_exit(pid, 0, p);
		return mirai__fail(err, rv, "cannot watch a child process");
	}
	return 0;
}

/* Tasks waiting for a one-shot server that nobody starts yet: those not
 * handed out, less the servers started that have not said HELLO.  Called
 * locked. */
static size_t
oneshot_waiting(profile *p)
{
	size_t starting = (size_t) p->spawning;

	for (child *c = p->children.head; c != NULL; c = c->entry.next) {
		starting += !c->hello;
	}
	return p->unassigned.count > starting ? p->unassigned.count - starting
					       : 0;
}

void
mirai__cl_oneshot_more(profile *p)
{
	mirai_errmsg err;
	mirai *list;
	int rv;

	for (;;) {
		pthread_mutex_lock(&p->mtx);
		if (p->closing || p->alive + p->spawning >= p->oneshot_max ||
		    oneshot_waiting(p) == 0) {
			pthread_mutex_unlock(&p->mtx);
			return;
		}
		p->spawning++;
		pthread_mutex_unlock(&p->mtx);
		rv   = mirai__cl_start_local(p, p->socks[0]->url, 0, 1, &err);
		list = NULL;
		pthread_mutex_lock(&p->mtx);
		p->spawning--;
		if (rv != 0) {
			/* One waiting task learns why. */
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "%s", err.text);
			snprintf(p->last_failure, sizeof p->last_failure, "%s",
			    err.text);
			p->dead_spawns++;
			mirai__cl_dispatch(p, &list);
		}
		pthread_mutex_unlock(&p->mtx);
		mirai__cl_publish(list);
		if (rv != 0) {
			return;
		}
	}
}

/* Start local server number k dialing url (when binding is asked for,
 * it binds to bind_count units from bind_index + k * bind_count, so that
 * servers do not share units).  Called unlocked. */
int
mirai__cl_start_local(profile *p, const char *url, int k, int one_shot,
    mirai_errmsg *err)
{
	mirai_server_opts so = p->sopts;
	pid_t pid;
	int rv;

	so.bind_index += k * (so.bind_count > 1 ? so.bind_count : 1);
	if ((rv = mirai__spawn_server(&so, url, one_shot, &pid, err)) != 0) {
		return rv;
	}
	return watch(p, pid, 0, err);
}

/* Wait until every local server said HELLO or died, so the first tasks
 * spread over all of them.  Fails only when none came up. */
int
mirai__cl_wait_local(profile *p, mirai_errmsg *err)
{
	int64_t deadline = mirai__now_ms() + LOCAL_START_MS;
	int waiting, rv = 0;

	pthread_mutex_lock(&p->mtx);
	for (;;) {
		waiting = 0;
		for (child *c = p->children.head; c != NULL; c = c->entry.next) {
			waiting += !c->hello;
		}
		if (waiting == 0 || mirai__now_ms() >= deadline) {
			break;
		}
		mirai__cond_wait_until(&p->cv, &p->mtx, deadline);
	}
	if (p->alive == 0) {
		rv = mirai__fail(err, MIRAI_ESPAWN,
		    "no local server came up: %s", p->last_failure);
	} else if (waiting > 0) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "profile '%s': %d local servers not connected after %d ms",
		    p->name, waiting, LOCAL_START_MS);
	}
	pthread_mutex_unlock(&p->mtx);
	return rv;
}

/* Wait until the dispatcher said HELLO, or its process ended.  Called
 * unlocked. */
static int
wait_dispatcher(profile *p, mirai_errmsg *err)
{
	int64_t deadline = mirai__now_ms() + LOCAL_START_MS + 5000;
	int rv           = 0;

	pthread_mutex_lock(&p->mtx);
	while (mirai__cl_dispatcher_peer(p) == NULL && !p->no_servers &&
	    mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&p->cv, &p->mtx, deadline);
	}
	if (mirai__cl_dispatcher_peer(p) == NULL) {
		rv = mirai__fail(err, MIRAI_ESPAWN,
		    "the dispatcher did not come up: %s",
		    p->last_failure[0] ? p->last_failure : "no answer in time");
	}
	pthread_mutex_unlock(&p->mtx);
	return rv;
}

/* Start the profile's mirai-dispatcher, dialing its link at url. */
int
mirai__cl_start_dispatcher(profile *p, const mirai_daemons_opts *o, const char *url,
    mirai_errmsg *err)
{
	const char **argv;
	char nbuf[7][32], path[4096];
	char *joined = NULL;
	const char *exe;
	size_t n = 0, cap = 48 + 2 * p->sopts.nplugins;
	pid_t pid;
	int rv;

	exe = mirai__find_tool(o->dispatcher_path, "MIRAI_DISPATCHER",
	    "mirai-dispatcher", path, sizeof path);
	if (!mirai__can_exec(exe)) {
		return mirai__fail(err, MIRAI_ESPAWN,
		    "cannot start %s: not an executable file (set "
		    "MIRAI_DISPATCHER or dispatcher_path)",
		    exe);
	}
	if ((argv = calloc(cap, sizeof *argv)) == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	argv[n++] = exe;
	argv[n++] = "--client";
	argv[n++] = url;
	snprintf(nbuf[0], sizeof nbuf[0], "%d", o->n);
	if (o->nurls > 0) {
		size_t len = 1;
		for (size_t i = 0; i < o->nurls; i++) {
			len += strlen(o->urls[i]) + 1;
		}
		if ((joined = calloc(1, len)) == NULL) {
			free(argv);
			return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
		}
		for (size_t i = 0; i < o->nurls; i++) {
			strcat(joined, i > 0 ? "," : "");
			strcat(joined, o->urls[i]);
		}
		argv[n++] = "--urls";
		argv[n++] = joined;
	} else if (o->url != NULL) {
		argv[n++] = "--url";
		argv[n++] = o->url;
		argv[n++] = "-n";
		argv[n++] = nbuf[0];
	} else {
		argv[n++] = "--local";
		argv[n++] = "-n";
		argv[n++] = nbuf[0];
		if (p->sopts.idle_ms > 0) {
			snprintf(nbuf[1], sizeof nbuf[1], "%lld",
			    (long long) p->sopts.idle_ms);
			argv[n++] = "--idle";
			argv[n++] = nbuf[1];
		}
		if (p->sopts.walltime_ms > 0) {
			snprintf(nbuf[2], sizeof nbuf[2], "%lld",
			    (long long) p->sopts.walltime_ms);
			argv[n++] = "--walltime";
			argv[n++] = nbuf[2];
		}
		if (p->sopts.max_tasks > 0) {
			snprintf(nbuf[3], sizeof nbuf[3], "%llu",
			    (unsigned long long) p->sopts.max_tasks);
			argv[n++] = "--max-tasks";
			argv[n++] = nbuf[3];
		}
		if (p->sopts.output) {
			argv[n++] = "--output";
		}
		if (p->sopts.server_path != NULL) {
			argv[n++] = "--server";
			argv[n++] = p->sopts.server_path;
		}
		if (p->sopts.bind_to != NULL) {
			snprintf(nbuf[5], sizeof nbuf[5], "%d", p->sopts.bind_index);
			argv[n++] = "--bind-to";
			argv[n++] = p->sopts.bind_to;
			argv[n++] = "--bind-index";
			argv[n++] = nbuf[5];
			if (p->sopts.bind_count > 1) {
				snprintf(nbuf[6], sizeof nbuf[6], "%d",
				    p->sopts.bind_count);
				argv[n++] = "--bind-count";
				argv[n++] = nbuf[6];
			}
		}
		for (size_t i = 0; i < p->sopts.nplugins; i++) {
			argv[n++] = "--plugin";
			argv[n++] = p->sopts.plugins[i];
		}
	}
	if (p->sopts.max_msg > 0) {
		snprintf(nbuf[4], sizeof nbuf[4], "%zu", p->sopts.max_msg);
		argv[n++] = "--max-msg";
		argv[n++] = nbuf[4];
	}
	if (o->no_token) {
		argv[n++] = "--no-token";
	}
	mirai__tls_args(argv, &n, p->tls_ca, p->tls_cert, p->tls_key);
	if (o->heartbeat_ms != 0) {
		static char hbuf[32];
		if (o->heartbeat_ms < 0) {
			snprintf(hbuf, sizeof hbuf, "off");
		} else {
			snprintf(hbuf, sizeof hbuf, "%lld",
			    (long long) o->heartbeat_ms);
		}
		argv[n++] = "--heartbeat";
		argv[n++] = hbuf;
	}
	if (o->retries > 0) {
		static char rbuf[16];
		snprintf(rbuf, sizeof rbuf, "%d", o->retries);
		argv[n++] = "--retries";
		argv[n++] = rbuf;
	}
	if (o->prefetch > 0) {
		snprintf(nbuf[6], sizeof nbuf[6], "%d", o->prefetch);
		argv[n++] = "--prefetch";
		argv[n++] = nbuf[6];
	}
	argv[n] = NULL;
	rv      = mirai__spawn(argv, NULL, -1, -1, -1, &pid);
	free(joined);
	free(argv);
	if (rv != 0) {
		return mirai__fail(err, MIRAI_ESPAWN, "cannot start %s: %s", exe,
		    strerror(rv));
	}
	if ((rv = watch(p, pid, 1, err)) != 0) {
		return rv;
	}
	return wait_dispatcher(p, err);
}

static void *
dispatcher_thread(void *arg)
{
	profile *p = arg;
	mirai_errmsg err = {{0}};
	mirai *list = NULL;
	int rv;

	rv = mirai_dispatcher_run(p->disp, &err);
	pthread_mutex_lock(&p->mtx);
	if (rv != 0 || !p->closing) {
		snprintf(p->last_failure, sizeof p->last_failure,
		    "the dispatcher stopped: %s",
		    rv != 0 ? err.text : "it lost its link");
		MIRAI__LOG(MIRAI_LOG_WARN, TAG, "profile '%s': %s", p->name,
		    p->last_failure);
		p->no_servers     = 1;
		p->no_servers_why = "the dispatcher of the profile has stopped; "
				    "reset it and set daemons again";
		mirai__cl_dispatch(p, &list);
	}
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mtx);
	mirai__cl_publish(list);
	return NULL;
}

/* Start the dispatcher engine on a thread of this process, linked to the
 * profile in memory at url (mem://): the same code as mirai-dispatcher,
 * without the process hop and without a socket between them. */
int
mirai__cl_start_dispatcher_thread(profile *p, const mirai_daemons_opts *o,
    const char *url, mirai_errmsg *err)
{
	mirai_dispatcher_opts d = MIRAI_DISPATCHER_OPTS_INIT;
	int rv;

	d.client_url = url;
	d.url        = o->url;
	d.urls       = o->urls;
	d.nurls      = o->nurls;
	d.n          = o->n;
	d.no_token   = o->no_token;
	d.local      = o->url == NULL && o->nurls == 0;
	d.server     = &p->sopts;
	d.tls_cert   = p->tls_cert;
	d.tls_key    = p->tls_key;
	d.tls_ca     = p->tls_ca;
	d.retries    = o->retries;
	d.heartbeat_ms = o->heartbeat_ms;
	d.prefetch   = o->prefetch;
	if ((rv = mirai_dispatcher_create(&p->disp, &d, err)) != 0) {
		return rv;
	}
	mirai__dispatcher_in_memory(p->disp);
	if (pthread_create(&p->disp_thread, NULL, dispatcher_thread, p) != 0) {
		mirai_dispatcher_destroy(p->disp);
		p->disp = NULL;
		return mirai__fail(err, MIRAI_ENOMEM, "cannot start a thread");
	}
	p->disp_running = 1;
	return wait_dispatcher(p, err);
}
