/*
 * dispatcher.c: the dispatcher's life cycle and public API: options,
 * create/listen/run/stop/destroy, the local servers it starts, the
 * control socket and the answers to status and saisei requests.  How the
 * dispatcher works, and which file holds what, is in dispatcher.h.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "dispatcher.h"

/* How long to wait for servers to close at the end. */
#define EXIT_WAIT_MS 1000
/* How long to wait for local servers before dialing the client. */
#define LOCAL_START_MS 10000

/* ---- status and control answers ----------------------------------------- */

/* The status payload (see client_status.c: status_dispatcher). */
static void
status_payload(mirai_dispatcher *d, mirai__wbuf *w)
{
	mirai__status_head h = {.queued = d->qlen, .completed = d->completed,
	    .retried = d->retried, .nrows = (uint32_t) d->nslots};

	for (size_t i = 0; i < d->nslots; i++) {
		/* Held: running, or prefetched behind the one running. */
		h.running += d->slots[i].nheld;
	}
	mirai__status_head_encode(w, &h);
	for (size_t i = 0; i < d->nslots; i++) {
		slot *sl              = &d->slots[i];
		const char *host      = sl->online ? sl->host : "";
		const char *binding   = sl->online ? sl->binding : "";
		mirai__status_row row = {.url = sl->url,
		    .url_len          = (uint16_t) strnlen(sl->url, 0xffff),
		    .host = host, .host_len = (uint16_t) strlen(host),
		    .binding = binding, .binding_len = (uint16_t) strlen(binding),
		    .online = (uint8_t) sl->online, .instance = sl->instance,
		    .assigned = sl->assigned, .complete = sl->complete,
		    .retries = sl->retries,
		    .pid     = (uint32_t) (sl->online ? sl->pid : 0)};
		mirai__status_row_encode(w, &row);
	}
}

/* A REP frame for request req. */
static mirai__out *
rep_frame(uint64_t req, int status, const void *data, size_t len)
{
	mirai__rep_view rep = {.req = req, .status = (uint32_t) status,
	    .data = data, .len = len};
	mirai__out *o       = mirai__out_new(mirai__rep_size(len));

	if (o != NULL) {
		mirai__rep_encode(mirai__out_frame(o), &rep);
	}
	return o;
}

/* The answer to control request q: a REP frame.  Called locked. */
mirai__out *
mirai__d_answer(mirai_dispatcher *d, const mirai__req_view *q)
{
	static const char oom[] = "dispatcher out of memory";
	mirai__wbuf w = {0};
	mirai__out *o;

	switch (q->op) {
	case MIRAI__OP_STATUS:
		status_payload(d, &w);
		o = w.failed ? rep_frame(q->req, MIRAI_ENOMEM, oom, sizeof oom - 1)
			     : rep_frame(q->req, 0, w.p, w.len);
		free(w.p);
		return o;
	case MIRAI__OP_SAISEI:
		return mirai__d_saisei(d, q->req, q->a, q->b != 0);
	default:
		return rep_frame(q->req, MIRAI_ENOTSUP, "unknown request", 15);
	}
}

mirai__out *
mirai__d_reply_text(uint64_t req, int status, const char *text)
{
	return rep_frame(req, status, text, strlen(text));
}

/* ---- local servers -------------------------------------------------------- */

static void
on_child_exit(pid_t pid, int status, void *arg)
{
	mirai_dispatcher *d = arg;

	pthread_mutex_lock(&d->mtx);
	d->alive--;
	if (!d->closing && status != -1 && !mirai__server_left_by_rule(status)) {
		snprintf(d->last_failure, sizeof d->last_failure,
		    "local server pid %d ended with %s %d", (int) pid,
		    WIFEXITED(status) ? "exit code" : "signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		MIRAI__LOG(MIRAI_LOG_WARN, TAG, "%s", d->last_failure);
	}
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
}

/* ---- heartbeat ------------------------------------------------------------ */

static void
beat(void *arg)
{
	mirai_dispatcher *d = arg;
	int64_t now         = mirai__now_ms();

	pthread_mutex_lock(&d->mtx);
	if (!d->closing) {
		mirai__d_slots_beat(d, now);
		mirai__d_up_beat(d, now);
	}
	pthread_mutex_unlock(&d->mtx);
}

/* ---- life cycle ----------------------------------------------------------- */

static char *
keep_str(mirai_dispatcher *d, const char *s)
{
	char **v;

	if (s == NULL) {
		return NULL;
	}
	if ((v = realloc(d->strings, (d->nstrings + 1) * sizeof *v)) == NULL) {
		return NULL;
	}
	d->strings = v;
	return d->strings[d->nstrings++] = mirai__strdup(s);
}

static int
dispatcher_create_impl(mirai_dispatcher **out,
    const mirai_dispatcher_opts *o, mirai_errmsg *err)
{
	mirai_dispatcher *d;
	size_t n;
	int rv;

	if (out == NULL || o == NULL || o->n < 0 || o->retries < 0 ||
	    o->retries > 255) {
		return mirai__fail(err, MIRAI_EINVAL, "invalid dispatcher options");
	}
	if (o->prefetch < 0 || o->prefetch > MIRAI__PREFETCH_MAX) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "prefetch must be 0-%d", MIRAI__PREFETCH_MAX);
	}
	n = o->nurls > 0 ? o->nurls : (size_t) o->n;
	if (n == 0 || n > D_MAX_SLOTS) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "a dispatcher needs between 1 and %d server slots",
		    D_MAX_SLOTS);
	}
	if (o->nurls > 0 && o->url != NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "give a base URL or a list "
						      "of URLs, not both");
	}
	if ((d = calloc(1, sizeof *d)) == NULL ||
	    (d->slots = calloc(n, sizeof *d->slots)) == NULL) {
		free(d);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	pthread_mutex_init(&d->mtx, NULL);
	mirai__cond_init(&d->cv);
	MIRAI__IDMAP_INIT(&d->tasks, dtask, id, hnext);
	d->opts          = *o;
	d->opts.urls     = NULL;
	d->opts.url      = NULL;
	d->opts.server   = &d->sopts;
	d->no_token      = o->no_token;
	d->cap           = 1 + (uint32_t) o->prefetch;
	d->up_slot       = MIRAI__NO_SLOT;
	d->opts.client_url  = keep_str(d, o->client_url);
	d->opts.listen_url  = keep_str(d, o->listen_url);
	d->opts.control_url = keep_str(d, o->control_url);
	d->opts.tls_cert    = keep_str(d, o->tls_cert);
	d->opts.tls_key     = keep_str(d, o->tls_key);
	d->opts.tls_ca      = keep_str(d, o->tls_ca);
	if (mirai__sopts_copy(&d->sopts, o->server, &d->sopts_mem) != 0) {
		mirai_dispatcher_destroy(d);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	d->nslots = n;
	MIRAI__IDMAP_INIT(&d->pipes, dpipe, id, hnext);
	/* One shared listener for a base URL, one per given URL; local
	 * slots have sockets of their own. */
	d->nlis = o->nurls > 0 ? o->nurls : o->url != NULL ? 1 : 0;
	if ((d->nlis > 0 && (d->lis = calloc(d->nlis, sizeof *d->lis)) == NULL) ||
	    (d->no_token && o->nurls == 0 && o->url != NULL &&
		(d->free_slots = calloc(n, sizeof *d->free_slots)) == NULL)) {
		mirai_dispatcher_destroy(d);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < d->nlis; i++) {
		if ((rv = mirai__d_lis_open(d, &d->lis[i],
			 o->nurls > 0 ? o->urls[i] : o->url, err)) != 0) {
			mirai_dispatcher_destroy(d);
			return rv;
		}
	}
	for (size_t i = 0; i < n; i++) {
		slot *sl = &d->slots[i];
		char url[512];

		sl->d   = d;
		sl->idx = i;
		if (d->nlis == 0 && (rv = mirai__local_url(url, sizeof url, err)) != 0) {
			mirai_dispatcher_destroy(d);
			return rv;
		}
		if ((rv = mirai__d_slot_open(d, sl, d->nlis == 0 ? url : NULL,
			 d->nlis == 0 ? NULL : &d->lis[o->nurls > 0 ? i : 0],
			 err)) != 0) {
			mirai_dispatcher_destroy(d);
			return rv;
		}
	}
	/* Without secrets, servers take free slots lowest first. */
	for (size_t i = n; d->free_slots != NULL && i-- > 0;) {
		d->slots[i].free_listed     = 1;
		d->free_slots[d->nfree++] = i;
	}
	d->hb = mirai__heartbeat_ms(o->heartbeat_ms);
	if (d->sopts.heartbeat_ms == 0) {
		d->sopts.heartbeat_ms = o->heartbeat_ms;
	}
	if (o->local && (d->kids = calloc(n, sizeof *d->kids)) == NULL) {
		mirai_dispatcher_destroy(d);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	if (o->local) {
		for (size_t i = 0; i < n; i++) {
			mirai_server_opts so = d->sopts;
			pid_t pid;
			/* Each takes bind_count units, after the ones
			 * before it. */
			so.bind_index += (int) i *
			    (so.bind_count > 1 ? so.bind_count : 1);
			if ((rv = mirai__spawn_server(&so, d->slots[i].url, 0, &pid,
				 err)) != 0) {
				mirai_dispatcher_destroy(d);
				return rv;
			}
			pthread_mutex_lock(&d->mtx);
			d->alive++;
			pthread_mutex_unlock(&d->mtx);
			if (mirai__watch_child(pid, on_child_exit, d) != 0) {
				kill(pid, SIGKILL);
				waitpid(pid, NULL, 0);
				pthread_mutex_lock(&d->mtx);
				d->alive--;
				pthread_mutex_unlock(&d->mtx);
			} else {
				d->kids[d->nkids++] = pid;
			}
		}
	}
	if (d->hb > 0 && mirai__ticker_start(&d->beat, d->hb / 3, beat, d) != 0) {
		mirai_dispatcher_destroy(d);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	*out = d;
	return 0;
}

int
mirai_dispatcher_create(mirai_dispatcher **out, const mirai_dispatcher_opts *o,
    mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, dispatcher_create_impl(out, o, &mine));
}

size_t
mirai_dispatcher_slots(const mirai_dispatcher *d)
{
	return d != NULL ? d->nslots : 0;
}

const char *
mirai_dispatcher_url(const mirai_dispatcher *d, size_t i)
{
	return d != NULL && i < d->nslots ? d->slots[i].url : NULL;
}

void
mirai_dispatcher_stop(mirai_dispatcher *d)
{
	if (d != NULL) {
		pthread_mutex_lock(&d->mtx);
		d->stop_req = 1;
		pthread_cond_broadcast(&d->cv);
		pthread_mutex_unlock(&d->mtx);
	}
}

static size_t
online_count(mirai_dispatcher *d)
{
	size_t k = 0;

	for (size_t i = 0; i < d->nslots; i++) {
		k += d->slots[i].online;
	}
	return k;
}

/* Whether every slot is silent: no pipe, or GONE received. */
static int
all_quiet(mirai_dispatcher *d)
{
	for (size_t i = 0; i < d->nslots; i++) {
		slot *sl = &d->slots[i];
		if (sl->cur != NULL && sl->cur->has_pipe && !sl->gone) {
			return 0;
		}
	}
	return 1;
}

/* ---- control socket ------------------------------------------------------ */

static void
ctl_rx(void *arg, mirai__msg *msg)
{
	mirai_dispatcher *d = arg;
	mirai__reader r;
	mirai__msghdr h;
	mirai__frame f;
	mirai__outq q = {0};
	mirai__msghdr oh = {0};
	mirai__req_view req;
	mirai__msg *out;
	int authed, first;

	if (mirai__msg_open(&r, mirai__msg_body(msg), mirai__msg_len(msg), &h) != 0) {
		mirai__msg_free(msg);
		return;
	}
	pthread_mutex_lock(&d->mtx);
	/* With a secret, each request message starts with the asker's
	 * HELLO holding it; a request without gets a refusal. */
	authed = d->ctl_secret[0] == '\0';
	first  = !authed && mirai__msg_next(&r, &f) == 1;
	if (first && f.type == MIRAI__F_HELLO) {
		authed = mirai__d_client_ok(d, &f, d->ctl_secret, "control URL");
		first  = 0;
	} else if (first) {
		mirai__d_client_ok(d, NULL, d->ctl_secret, "control URL");
	}
	while (first || mirai__msg_next(&r, &f) == 1) {
		mirai__out *o;
		first = 0;
		if (mirai__req_decode(&f, &req) != 0) {
			continue;
		}
		o = authed ? mirai__d_answer(d, &req)
			   : mirai__d_reply_text(req.req, MIRAI_EPERM,
				 "refused: the control URL lacks its secret");
		if (o != NULL) {
			mirai__outq_push(&q, o);
		}
	}
	pthread_mutex_unlock(&d->mtx);
	/* One reply message per request message: the asker's pipe never
	 * holds more than that. */
	if (q.head != NULL && mirai__outq_pack(&q, &oh, &out, NULL, NULL) == 0) {
		mirai__msg_set_pipe(out, mirai__msg_pipe(msg));
		mirai__link_try_send(d->ctl, out);
	}
	mirai__outq_clear(&q);
	mirai__msg_free(msg);
}

/*
 * A URL clients dial from beyond this machine gets a fresh secret at its
 * end (see mirai__url_cred), which their first frame must hold; an ipc
 * URL is guarded by its owner-only directory instead.
 */
static int
with_secret(mirai_dispatcher *d, char **url, char *secret, mirai_errmsg *err)
{
	char buf[1100];
	char *s;

	if (d->no_token || strncmp(*url, "ipc://", 6) == 0 ||
	    strncmp(*url, "inproc://", 9) == 0) {
		return 0;
	}
	mirai__secret_new(secret);
	mirai__url_with_cred(buf, sizeof buf, *url, secret, 0);
	if ((s = mirai__strdup(buf)) == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	free(*url);
	*url = s;
	return 0;
}

static int
dispatcher_listen_impl(mirai_dispatcher *d, mirai_errmsg *err)
{
	int rv;

	if (d == NULL) {
		return MIRAI_EINVAL;
	}
	if (d->listened) {
		return 0;
	}
	if (d->opts.listen_url != NULL) {
		if ((rv = mirai__d_open_up(d, 0, err)) != 0) {
			return rv;
		}
		d->listen = 1;
		if ((rv = mirai__link_listen(d->up, d->opts.listen_url,
			 &d->client_url, err)) != 0 ||
		    (rv = with_secret(d, &d->client_url, d->attach_secret,
			 err)) != 0) {
			return rv;
		}
		mirai__link_start(d->up);
	}
	if (d->opts.control_url != NULL) {
		mirai__link_cfg cfg = {.poly = 1,
		    .admits = !d->no_token,
		    .recv   = ctl_rx,
		    .arg    = d,
		    .tls    = D_TLS(d)};
		if ((rv = mirai__link_open(&d->ctl, &cfg, err)) != 0 ||
		    (rv = mirai__link_listen(d->ctl, d->opts.control_url,
			 &d->control_url, err)) != 0 ||
		    (rv = with_secret(d, &d->control_url, d->ctl_secret, err)) !=
			0) {
			return rv;
		}
		mirai__link_start(d->ctl);
	}
	d->listened = 1;
	return 0;
}

int
mirai_dispatcher_listen(mirai_dispatcher *d, mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, dispatcher_listen_impl(d, &mine));
}

const char *
mirai_dispatcher_client_url(const mirai_dispatcher *d)
{
	return d != NULL ? d->client_url : NULL;
}

const char *
mirai_dispatcher_control_url(const mirai_dispatcher *d)
{
	return d != NULL ? d->control_url : NULL;
}

void
mirai__dispatcher_watch(mirai_dispatcher *d, void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&d->mtx);
	d->watch     = fn;
	d->watch_arg = arg;
	pthread_mutex_unlock(&d->mtx);
}

void
mirai__dispatcher_in_memory(mirai_dispatcher *d)
{
	d->up_mem = 1;
}

void
mirai__dispatcher_slot(mirai_dispatcher *d, size_t i, int *online, int *pid,
    char *host, size_t hlen, char *binding, size_t blen)
{
	pthread_mutex_lock(&d->mtx);
	*online = d->slots[i].online;
	*pid    = d->slots[i].pid;
	snprintf(host, hlen, "%s", d->slots[i].host);
	snprintf(binding, blen, "%s", d->slots[i].binding);
	pthread_mutex_unlock(&d->mtx);
}

size_t
mirai_dispatcher_online(mirai_dispatcher *d)
{
	size_t k;

	if (d == NULL) {
		return 0;
	}
	pthread_mutex_lock(&d->mtx);
	k = online_count(d);
	pthread_mutex_unlock(&d->mtx);
	return k;
}

static int
dispatcher_run_impl(mirai_dispatcher *d, mirai_errmsg *err)
{
	int64_t deadline;
	int rv = 0;

	if (d == NULL ||
	    (d->opts.client_url == NULL && d->opts.listen_url == NULL)) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "no client URL to dial or listen on");
	}
	if (d->opts.local) {
		/* The client hears from us once our servers are there. */
		deadline = mirai__now_ms() + LOCAL_START_MS;
		pthread_mutex_lock(&d->mtx);
		while (online_count(d) < (size_t) d->alive && !d->stop_req &&
		    mirai__now_ms() < deadline) {
			mirai__cond_wait_until(&d->cv, &d->mtx, deadline);
		}
		if (d->alive == 0) {
			pthread_mutex_unlock(&d->mtx);
			return mirai__fail(err, MIRAI_ESPAWN,
			    "no local server came up: %s", d->last_failure);
		}
		pthread_mutex_unlock(&d->mtx);
	}
	if ((rv = mirai_dispatcher_listen(d, err)) != 0) {
		return rv;
	}
	if (!d->listen) {
		char base[1024];

		if ((rv = mirai__d_open_up(d, d->up_mem, err)) != 0) {
			return rv;
		}
		/* A client listening on a URL it gave out wants its secret
		 * in our HELLO, like a server's. */
		if (strlen(d->opts.client_url) >= sizeof base) {
			return mirai__fail(err, MIRAI_EADDRINVAL, "URL too long");
		}
		mirai__url_cred(d->opts.client_url, base, sizeof base,
		    &d->up_slot, d->up_secret);
		pthread_mutex_lock(&d->mtx);
		mirai__d_send_hello(d);
		mirai__d_up_send(d);
		pthread_mutex_unlock(&d->mtx);
		mirai__link_start(d->up);
		if ((rv = mirai__link_dial(d->up, base, 1, err)) !=
		    0) {
			rv = rv == MIRAI_EADDRINVAL ? rv : MIRAI_ECONNREFUSED;
			pthread_mutex_lock(&d->mtx);
			d->up_lost = 1;
			pthread_mutex_unlock(&d->mtx);
		}
	}

	pthread_mutex_lock(&d->mtx);
	/* Dialing, the client is the reason to live; listening, we serve
	 * clients until stopped. */
	while (!d->stop_req &&
	    (d->listen || (!d->up_lost && !d->exit_req))) {
		pthread_cond_wait(&d->cv, &d->mtx);
	}
	if (d->listen && d->up_connected) {
		/* Stopped under an attached client: ask it to let go, and
		 * close only once it did (or after a bound). */
		mirai__out *o = mirai__out_ctrl(MIRAI__F_BYE, 4, 0);
		if (o != NULL) {
			mirai__d_up_queue(d, o);
		}
		deadline = mirai__now_ms() + EXIT_WAIT_MS;
		while (d->up_connected && mirai__now_ms() < deadline) {
			mirai__cond_wait_until(&d->cv, &d->mtx, deadline);
		}
	}
	/* The end: queued tasks go (the client resolved them or is gone),
	 * servers are told to exit, idle ones close at once. */
	d->closing = 1;
	for (dtask *t; (t = mirai__d_q_pop(d)) != NULL;) {
		mirai__d_dtask_free(d, t);
	}
	/* When the client went away, running tasks are finished first; a
	 * reset cancels them. */
	for (size_t i = 0; i < d->nslots; i++) {
		mirai__d_slot_exit(d, &d->slots[i], d->exit_req ? d->exit_flags : 0);
	}
	deadline = mirai__now_ms() + EXIT_WAIT_MS;
	while ((!all_quiet(d) || d->pending > 0) && mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&d->cv, &d->mtx, deadline);
	}
	pthread_mutex_unlock(&d->mtx);
	return rv;
}

int
mirai_dispatcher_run(mirai_dispatcher *d, mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, dispatcher_run_impl(d, &mine));
}

void
mirai_dispatcher_destroy(mirai_dispatcher *d)
{
	int64_t deadline;

	if (d == NULL) {
		return;
	}
	/* Deferred jobs (lost servers, pipes to close, retired sockets) hold
	 * on to d and may use the slot sockets: none is started once closing
	 * is set, and those already queued run out first. */
	mirai__ticker_stop(&d->beat);
	pthread_mutex_lock(&d->mtx);
	d->closing = 1;
	while (d->pending > 0) {
		pthread_cond_wait(&d->cv, &d->mtx);
	}
	pthread_mutex_unlock(&d->mtx);
	mirai__link_close(d->up);
	mirai__link_close(d->ctl);
	mirai__d_slots_close(d);
	/* Closing may have queued more (a pipe's GONE): they only take the
	 * lock and touch d. */
	pthread_mutex_lock(&d->mtx);
	while (d->pending > 0) {
		pthread_cond_wait(&d->cv, &d->mtx);
	}
	/* Local servers get a bounded while to finish; the ones still
	 * running (a task that ignores cancellation) are reaped without us. */
	deadline = mirai__now_ms() + 5000;
	while (d->alive > 0 && mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&d->cv, &d->mtx, deadline);
	}
	pthread_mutex_unlock(&d->mtx);
	for (size_t i = 0; i < d->nkids; i++) {
		mirai__watch_cancel(d->kids[i], on_child_exit, d);
	}
	free(d->kids);
	mirai__d_slots_free(d);
	for (size_t i = 0; i < d->nslots; i++) {
		for (dtask *t = mirai__d_held_take_all(&d->slots[i]), *next;
		     t != NULL; t = next) {
			next = t->next;
			mirai__d_dtask_free(d, t);
		}
		free(d->slots[i].url);
	}
	for (dtask *t; (t = mirai__d_q_pop(d)) != NULL;) {
		mirai__d_dtask_free(d, t);
	}
	mirai__outq_clear(&d->up_q);
	mirai__idmap_fini(&d->tasks);
	free(d->slots);
	free(d->client_url);
	free(d->control_url);
	free(d->sopts_mem);
	for (size_t i = 0; i < d->nstrings; i++) {
		free(d->strings[i]);
	}
	free(d->strings);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mtx);
	free(d);
}
