/*
 * server.c: a server's life: create and destroy, the registry of
 * functions, the serialization hook, plugins, stop, and run: CPU binding,
 * opening and dialing the link, the run loop that executes tasks until a
 * reason to stop, and leaving.  See server_int.h for the whole picture.
 */

#include <dlfcn.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server_int.h"

/* Not connected yet: a note at -v this often, a warning after this long. */
#define DIAL_NOTE_MS 10000
#define DIAL_WARN_MS 60000

/* ---- registry of functions ----------------------------------------- */

fn_entry *
mirai__srv_find_fn(mirai_server *srv, const char *name)
{
	for (size_t i = 0; i < srv->nfns; i++) {
		if (strcmp(srv->fns[i].name, name) == 0) {
			return &srv->fns[i];
		}
	}
	return NULL;
}

int
mirai_server_register(mirai_server *srv, const char *name, mirai_fn fn,
    void *arg)
{
	fn_entry *e;
	size_t len;

	if (srv == NULL || name == NULL || fn == NULL ||
	    (len = strlen(name)) == 0 || len > 0xffff) {
		return MIRAI_EINVAL;
	}
	if ((e = mirai__srv_find_fn(srv, name)) != NULL) {
		e->fn  = fn;
		e->arg = arg;
		return 0;
	}
	if (srv->nfns == srv->capfns) {
		size_t cap = srv->capfns == 0 ? 16 : srv->capfns * 2;
		fn_entry *n = realloc(srv->fns, cap * sizeof *n);
		if (n == NULL) {
			return MIRAI_ENOMEM;
		}
		srv->fns    = n;
		srv->capfns = cap;
	}
	e = &srv->fns[srv->nfns];
	if ((e->name = mirai__strdup(name)) == NULL) {
		return MIRAI_ENOMEM;
	}
	e->fn  = fn;
	e->arg = arg;
	srv->nfns++;
	return 0;
}

int
mirai_server_set_hook(mirai_server *srv, const mirai_hook *hook)
{
	char *name;

	if (srv == NULL || hook == NULL || hook->name == NULL ||
	    *hook->name == '\0' || hook->encode == NULL ||
	    hook->decode == NULL) {
		return MIRAI_EINVAL;
	}
	if ((name = mirai__strdup(hook->name)) == NULL) {
		return MIRAI_ENOMEM;
	}
	free(srv->hook_name);
	srv->hook      = *hook;
	srv->hook_name = name;
	srv->hook.name = name;
	srv->hook_fp   = mirai__hash64(name);
	return 0;
}

static int
server_load_plugin_impl(mirai_server *srv, const char *path,
    mirai_errmsg *err)
{
	void *dl, **dls;
	mirai_plugin_init_fn init;
	int rv;

	if (srv == NULL || path == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "no plugin path");
	}
	if ((dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		return mirai__fail(err, MIRAI_ENOENT, "cannot load plugin %s",
		    dlerror());
	}
	*(void **) (&init) = dlsym(dl, MIRAI_PLUGIN_INIT);
	if (init == NULL) {
		dlclose(dl);
		return mirai__fail(err, MIRAI_ENOENT,
		    "plugin %s has no %s() entry point", path,
		    MIRAI_PLUGIN_INIT);
	}
	if ((dls = realloc(srv->dls, (srv->ndls + 1) * sizeof *dls)) == NULL) {
		dlclose(dl);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	srv->dls              = dls;
	srv->dls[srv->ndls++] = dl;
	if ((rv = init(srv)) != 0) {
		return mirai__fail(err, rv, "plugin %s: %s() returned %d (%s)",
		    path, MIRAI_PLUGIN_INIT, rv, mirai_strerror(rv));
	}
	return 0;
}

int
mirai_server_load_plugin(mirai_server *srv, const char *path,
    mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, server_load_plugin_impl(srv, path, &mine));
}

static int
server_create(mirai_server **out, const mirai_server_opts *opts,
    mirai_errmsg *err)
{
	mirai_server *srv;
	mirai_server_opts def = MIRAI_SERVER_OPTS_INIT;

	if (out == NULL) {
		return MIRAI_EINVAL;
	}
	if (opts == NULL) {
		opts = &def;
	}
	if (opts->idle_ms < MIRAI_FOREVER || opts->walltime_ms < MIRAI_FOREVER ||
	    opts->max_msg > (size_t) UINT32_MAX - 65536) {
		return mirai__fail(err, MIRAI_EINVAL, "invalid server options");
	}
	if ((srv = calloc(1, sizeof *srv)) == NULL) {
		return MIRAI_ENOMEM;
	}
	/* The caller's strings need not outlive this call. */
	if (mirai__sopts_copy(&srv->opts, opts, &srv->opts_mem) != 0) {
		free(srv);
		return MIRAI_ENOMEM;
	}
	srv->max_msg      = opts->max_msg ? opts->max_msg : MIRAI__DEFAULT_MAX_MSG;
	pthread_mutex_init(&srv->mtx, NULL);
	mirai__cond_init(&srv->cv);
	mirai__hostname(srv->host, sizeof srv->host);
	if (mirai__builtin_register(srv) != 0) {
		mirai_server_destroy(srv);
		return MIRAI_ENOMEM;
	}
	for (size_t i = 0; i < opts->nplugins; i++) {
		int rv = mirai_server_load_plugin(srv, opts->plugins[i], err);
		if (rv != 0) {
			mirai_server_destroy(srv);
			return rv;
		}
	}
	*out = srv;
	return 0;
}

int
mirai_server_create(mirai_server **out, const mirai_server_opts *opts,
    mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, server_create(out, opts, &mine));
}

void
mirai__srv_stask_free(stask *t)
{
	if (t != NULL) {
		if (t->msg != NULL) {
			mirai__msg_free(t->msg);
		}
		free(t);
	}
}

void
mirai_server_destroy(mirai_server *srv)
{
	if (srv == NULL) {
		return;
	}
	while (srv->queue.head != NULL) {
		stask *t = srv->queue.head;
		mirai__srv_queue_remove(srv, t);
		mirai__srv_stask_free(t);
	}
	mirai__outq_clear(&srv->outq);
	for (size_t i = 0; i < srv->nfns; i++) {
		free(srv->fns[i].name);
	}
	free(srv->fns);
	for (size_t i = srv->ndls; i > 0; i--) {
		dlclose(srv->dls[i - 1]);
	}
	free(srv->dls);
	free(srv->hook_name);
	free(srv->opts_mem);
	pthread_cond_destroy(&srv->cv);
	pthread_mutex_destroy(&srv->mtx);
	free(srv);
}

void
mirai_server_stop(mirai_server *srv)
{
	if (srv != NULL) {
		pthread_mutex_lock(&srv->mtx);
		srv->stop_req = 1;
		pthread_cond_broadcast(&srv->cv);
		pthread_mutex_unlock(&srv->mtx);
	}
}

const char *
mirai__server_binding(mirai_server *srv)
{
	return srv->binding;
}

void
mirai__server_functions_json(mirai_server *srv, mirai__sb *sb)
{
	mirai__sb_printf(sb, "[");
	for (size_t i = 0; i < srv->nfns; i++) {
		mirai__sb_printf(sb, i > 0 ? "," : "");
		mirai__sb_json_str(sb, srv->fns[i].name);
	}
	mirai__sb_printf(sb, "]");
}

/* ---- running -------------------------------------------------------- */

static int
stop_reason(mirai_server *srv, int64_t now, int64_t *deadline)
{
	int64_t d = -1;

	*deadline = -1;
	if (srv->conn_lost || srv->exit_req || srv->stop_req) {
		return MIRAI_EXIT_CLOSED;
	}
	if (srv->opts.max_tasks > 0 && srv->completed >= srv->opts.max_tasks) {
		return MIRAI_EXIT_MAXTASKS;
	}
	if (srv->opts.walltime_ms > 0) {
		d = srv->t_start + srv->opts.walltime_ms;
		if (now >= d) {
			return MIRAI_EXIT_WALLTIME;
		}
	}
	if (srv->opts.idle_ms > 0 && srv->queue.head == NULL) {
		int64_t di = srv->t_last + srv->opts.idle_ms;
		if (now >= di) {
			return MIRAI_EXIT_IDLE;
		}
		if (d < 0 || di < d) {
			d = di;
		}
	}
	*deadline = d;
	return -1;
}

static const char *
reason_text(int why)
{
	switch (why) {
	case MIRAI_EXIT_IDLE:
		return "idle time reached";
	case MIRAI_EXIT_WALLTIME:
		return "wall time reached";
	case MIRAI_EXIT_MAXTASKS:
		return "maximum tasks completed";
	default:
		return "connection ended";
	}
}

/* Execute tasks until a reason to stop; called and returns locked. */
/*
 * A server that cannot reach its URL keeps trying (unless --dial-once):
 * it says so at -v every DIAL_NOTE_MS, and once as a warning after
 * DIAL_WARN_MS, so that a wrong URL or port does not fail in silence.
 * Lowers *deadline to the next note.  Called locked.
 */
static void
note_dialing(mirai_server *srv, int64_t now, int64_t *deadline)
{
	int64_t next;

	if (srv->connected || srv->conn_lost) {
		return;
	}
	if (!srv->dial_warned && now - srv->t_start >= DIAL_WARN_MS) {
		srv->dial_warned = 1;
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "not connected to %s after %d s: check the URL and port, "
		    "and that its dispatcher or client runs and is reachable "
		    "from here; still trying",
		    srv->dialing, DIAL_WARN_MS / 1000);
	}
	if (now >= srv->next_dial_note) {
		if (srv->next_dial_note != 0) {
			MIRAI__LOG(MIRAI_LOG_INFO, TAG,
			    "dialing %s: not connected after %" PRId64 " s",
			    srv->dialing, (now - srv->t_start) / 1000);
		}
		srv->next_dial_note = now + DIAL_NOTE_MS;
	}
	next = srv->next_dial_note;
	if (!srv->dial_warned && srv->t_start + DIAL_WARN_MS < next) {
		next = srv->t_start + DIAL_WARN_MS;
	}
	if (*deadline < 0 || next < *deadline) {
		*deadline = next;
	}
}

static int
run_loop(mirai_server *srv)
{
	for (;;) {
		/* The clock only where a limit or a wait needs it: a read
		 * costs a few per cent of a short task. */
		int64_t deadline, now = srv->queue.head == NULL ||
			srv->opts.walltime_ms > 0 || !srv->connected
		    ? mirai__now_ms()
		    : 0;
		int why = stop_reason(srv, now, &deadline);

		note_dialing(srv, now, &deadline);
		mirai_task task;
		mirai__out *o;

		if (why >= 0) {
			return why;
		}
		if (srv->queue.head == NULL) {
			mirai__cond_wait_until(&srv->cv, &srv->mtx, deadline);
			continue;
		}
		memset(&task, 0, sizeof task);
		task.srv = srv;
		task.t   = srv->queue.head;
		mirai__srv_queue_remove(srv, task.t);
		srv->current = &task;
		pthread_mutex_unlock(&srv->mtx);

		o = mirai__srv_run_task(srv, &task);

		pthread_mutex_lock(&srv->mtx);
		srv->current = NULL;
		srv->completed++;
		if (srv->opts.idle_ms > 0) {
			srv->t_last = mirai__now_ms();
		}
		if (o == NULL) {
			o = mirai__srv_error_result(srv, task.t->id,
			    MIRAI_ENOMEM, "server out of memory");
		}
		if (o != NULL) {
			mirai__srv_queue_out(srv, o);
		} else {
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG,
			    "out of memory: result of task %" PRIu64 " lost",
			    task.t->id);
		}
		pthread_mutex_unlock(&srv->mtx);
		mirai__srv_task_cleanup(srv, &task);
		pthread_mutex_lock(&srv->mtx);
	}
}

/*
 * Bind to the CPUs asked for, or describe the binding inherited.  Done
 * before the socket opens: the threads NNG starts then inherit the mask,
 * and tasks never run on a CPU the server was not meant to use.
 */
static int
bind_cpus(mirai_server *srv, mirai_errmsg *err)
{
	const char *kind = srv->opts.bind_to;
	int n = srv->opts.bind_count > 0 ? srv->opts.bind_count : 1;
	int wrapped = 0, count, level;
	const char *later;

	if (kind == NULL || strcmp(kind, "none") == 0) {
		mirai__topo_binding(srv->binding, sizeof srv->binding);
		return 0;
	}
	/* Counted before binding: afterwards only the one unit is usable. */
	count = mirai__topo_count(kind);
	if (mirai__topo_bind_range(kind, srv->opts.bind_index, n,
		srv->binding, sizeof srv->binding, &wrapped, err) != 0) {
		return MIRAI_ETOPO;
	}
	/* Placed by a plan, one warning a host: the first server past the
	 * last unit gives it. */
	level = !srv->opts.bind_planned || srv->opts.bind_index <= count
	    ? MIRAI_LOG_WARN
	    : MIRAI_LOG_INFO;
	later = srv->opts.bind_planned ? "; so do the servers placed after it"
				       : "";
	if (wrapped && n == 1) {
		MIRAI__LOG(level, TAG,
		    "bind index %d is past the last of %d usable %s units: "
		    "wrapped round to %s, shared with other servers%s",
		    srv->opts.bind_index, count, kind, srv->binding, later);
	} else if (wrapped) {
		MIRAI__LOG(level, TAG,
		    "bind indexes %d to %lld go past the last of %d usable "
		    "%s units: wrapped round to %s, shared with other "
		    "servers%s",
		    srv->opts.bind_index,
		    (long long) srv->opts.bind_index + n - 1, count, kind,
		    srv->binding, later);
	}
	MIRAI__LOG(MIRAI_LOG_INFO, TAG, "bound to %s", srv->binding);
	return 0;
}

/* Attempts of a server that dials once, when they time out. */
#define DIAL_TRIES 5

static int
server_run(mirai_server *srv, const char *url, int *reason, mirai_errmsg *err)
{
	int rv, why, saved_err = -1;

	if (srv == NULL || url == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "no URL to dial");
	}
	if ((rv = bind_cpus(srv, err)) != 0) {
		return rv;
	}
	/* A slot's URL: the listener's, then the slot and its secret, which
	 * go in the HELLO (see mirai__url_cred). */
	if (strlen(url) >= sizeof srv->base) {
		return mirai__fail(err, MIRAI_EADDRINVAL, "URL too long");
	}
	mirai__url_cred(url, srv->base, sizeof srv->base, &srv->slot,
	    srv->secret);
	mirai__link_cfg cfg = {
		.max_msg          = srv->max_msg,
		.reconnect_min_ms = 20,
		.reconnect_max_ms = 2000,
		.events = (1u << MIRAI__PIPE_UP) | (1u << MIRAI__PIPE_GONE),
		.recv   = mirai__srv_on_rx,
		.pipe   = mirai__srv_on_pipe,
		.sent   = mirai__srv_on_tx,
		.arg    = srv,
		/* For tls+tcp:// and wss:// URLs: the CA that signed the
		 * dispatcher's (or client's) certificate, and our own. */
		.tls = {.ca_file = srv->opts.tls_ca,
		    .cert_file   = srv->opts.tls_cert,
		    .key_file    = srv->opts.tls_key},
	};
	if ((rv = mirai__link_open(&srv->link, &cfg, err)) != 0) {
		return rv;
	}
	srv->t_start = srv->t_last = mirai__now_ms();
	mirai__url_redact(url, srv->dialing, sizeof srv->dialing);
	srv->hb = mirai__heartbeat_ms(srv->opts.heartbeat_ms);
	if (srv->hb > 0) {
		mirai__ticker_start(&srv->beat, srv->hb / 3, mirai__srv_beat,
		    srv);
	}
	pthread_mutex_lock(&srv->mtx);
	mirai__srv_send_hello(srv);
	mirai__srv_kick_send(srv);
	pthread_mutex_unlock(&srv->mtx);
	mirai__link_start(srv->link);

	/* Dialing once still tries again when the attempt timed out: a
	 * listener busy with many TLS handshakes at once (a launch of many
	 * servers on a few cores) may not get to it in time. */
	for (int k = 0; (rv = mirai__link_dial(srv->link, srv->base,
			     srv->opts.dial_once, err)) == MIRAI_ETIMEDOUT &&
	     srv->opts.dial_once && k < DIAL_TRIES - 1;
	     k++) {
		MIRAI__LOG(MIRAI_LOG_INFO, TAG, "%s: trying again", err->text);
	}
	if (rv != 0) {
		mirai__ticker_stop(&srv->beat);
		mirai__link_close(srv->link);
		srv->link = NULL;
		return rv;
	}
	if (!srv->opts.output) {
		/* Task output goes nowhere; our own log lines still go to the
		 * stderr we were given. */
		int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
		saved_err   = fcntl(2, F_DUPFD_CLOEXEC, 3);
		if (devnull >= 0 && saved_err >= 0) {
			fflush(stdout);
			fflush(stderr);
			mirai__log_set_fd(saved_err);
			dup2(devnull, 1);
			dup2(devnull, 2);
		}
		if (devnull >= 0) {
			close(devnull);
		}
	}

	pthread_mutex_lock(&srv->mtx);
	why = run_loop(srv);
	if (why != MIRAI_EXIT_CLOSED && srv->connected && !srv->conn_lost) {
		MIRAI__LOG(MIRAI_LOG_INFO, TAG, "leaving: %s", reason_text(why));
		mirai__srv_leave(srv, why);
	} else if (why == MIRAI_EXIT_CLOSED && srv->connected &&
	    !srv->conn_lost && !srv->exit_req) {
		/* Stopped by mirai_server_stop(): leave politely too. */
		mirai__srv_leave(srv, why);
	}
	pthread_mutex_unlock(&srv->mtx);

	mirai__ticker_stop(&srv->beat);
	mirai__link_close(srv->link);
	srv->link = NULL;
	if (saved_err >= 0) {
		fflush(stderr);
		dup2(saved_err, 2);
		close(saved_err);
		mirai__log_set_fd(2);
	}
	if (reason != NULL) {
		*reason = why;
	}
	if (srv->refused) {
		return mirai__fail(err, MIRAI_EPERM,
		    "%s refused this server: the URL lacks its slot's secret "
		    "(mistyped, or regenerated by saisei), or the slot has a "
		    "server already",
		    srv->dialing);
	}
	return 0;
}

int
mirai_server_run(mirai_server *srv, const char *url, int *reason,
    mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, server_run(srv, url, reason, &mine));
}
