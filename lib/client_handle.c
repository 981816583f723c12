/*
 * client_handle.c: the mirai handles of submitted tasks: their pool and
 * reference counts, the task table of a profile, claiming and publishing
 * results, submitting (mirai_call, mirai_try_call, queue cap and pacing,
 * time-outs), cancelling, waiting, and reading a result.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

/* Handles come from a pool, 104 bytes each with no malloc header, and
 * the holes they leave are not taken by frames (w6). */
static mirai__pool handles = MIRAI__POOL_INIT(sizeof(struct mirai));

/* ---- waiting ---------------------------------------------------------- */

typedef struct waiter {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	int fired;
} waiter;

typedef struct wnode {
	struct wnode *next;
	waiter *w;
} wnode;

/* Set while a completion callback runs: mirai_call() must not block
 * there, as the thread is the one that frees room. */
static _Thread_local int in_callback;

#define NSTRIPES 64
static pthread_mutex_t stripes[NSTRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static void
stripes_init(void)
{
	for (int i = 0; i < NSTRIPES; i++) {
		pthread_mutex_init(&stripes[i], NULL);
	}
}

static pthread_mutex_t *
stripe(const mirai *m)
{
	return &stripes[((uintptr_t) m >> 6) % NSTRIPES];
}

static void
result_release(mirai *m)
{
	switch (m->own) {
	case OWN_MSG:
		mirai__msg_free(m->owner);
		break;
	case OWN_BUF:
		free(m->owner);
		break;
	case OWN_HOOK:
		if (m->prof->hook.release != NULL) {
			m->prof->hook.release(m->prof->hook.arg, m->owner);
		} else {
			free(m->owner);
		}
		break;
	default:
		break;
	}
	m->own     = OWN_NONE;
	m->owner   = NULL;
	m->res     = NULL;
	m->res_len = 0;
}

/* m's extra part, made on first need; NULL when out of memory. */
static mirai_extra *
extra(mirai *m)
{
	if (m->x == NULL) {
		m->x = calloc(1, sizeof *m->x);
	}
	return m->x;
}

static void
mirai_unref(mirai *m)
{
	if (atomic_fetch_sub(&m->refs, 1) != 1) {
		return;
	}
	if (m->own != OWN_NONE) {
		result_release(m);
	} else {
		mirai__out_free(m->out);
	}
	if (m->x != NULL) {
		free(m->x->errtext);
		free(m->x);
	}
	mirai__cl_profile_unref(m->prof);
	mirai__pool_put(&handles, m);
}

/* ---- claiming and publishing results ----------------------------------- */

/*
 * Take m out of every structure and record its outcome; the caller
 * publishes the list after unlocking.  Called locked.
 */
void
mirai__cl_claim(profile *p, mirai *m, int status, mirai **list)
{
	if (m->claimed) {
		return;
	}
	m->claimed = 1;
	if (m->where == AT_QUEUE) {
		if (m->peer != NULL) {
			mirai__outq_remove(&m->peer->queue, m->out);
			m->peer->nqueue--;
			m->peer->qbytes -= m->bytes;
			mirai__cl_peer_changed(p, m->peer);
		} else {
			mirai__outq_remove(&p->unassigned, m->out);
		}
		mirai__out_free(m->out);
		m->out = NULL;
	} else if (m->where == AT_INFLIGHT) {
		mirai__cl_inflight_remove(m->peer, m);
		if (m->own == OWN_NONE) {
			/* The copy kept while a server held it. */
			mirai__out_free(m->out);
			m->out = NULL;
		}
	}
	m->where = AT_NONE;
	mirai__idmap_del(&p->tasks, m);
	p->queued_bytes -= m->bytes;
	if (p->room_waiters > 0) {
		pthread_cond_broadcast(&p->cv);
	}
	if (m->x != NULL && m->x->timer.heap_idx != 0 &&
	    mirai__timer_cancel(&m->x->timer)) {
		/* The timer's reference; the runtime's keeps m alive. */
		atomic_fetch_sub(&m->refs, 1);
	}
	m->status     = status;
	m->entry.next = *list;
	*list         = m;
}

void
mirai__cl_set_errtext(mirai *m, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (extra(m) != NULL) {
		free(m->x->errtext);
		m->x->errtext = mirai__strdup(buf);
	}
}

static void
publish_one(mirai *m)
{
	profile *p = m->prof;
	pthread_mutex_t *s;

	if (m->status == 0 && p->hook_fp != 0) {
		void *out  = NULL;
		size_t len = 0;
		int rv = p->hook.decode(p->hook.arg, m->res, m->res_len, &out, &len);
		result_release(m);
		if (rv == 0 && len > UINT32_MAX) {
			rv = MIRAI_EMSGSIZE;
		}
		if (rv != 0) {
			m->status = MIRAI_EHOOK;
			mirai__cl_set_errtext(m,
			    "serialization hook '%s' failed to decode the result: "
			    "%s",
			    p->hook_name, mirai_strerror(rv));
		} else {
			m->res     = out;
			m->res_len = (uint32_t) len;
			m->owner   = out;
			m->own     = OWN_HOOK;
		}
	}
	s = stripe(m);
	pthread_mutex_lock(s);
	atomic_store(&m->state, 1);
	for (wnode *n = m->waiters; n != NULL; n = n->next) {
		pthread_mutex_lock(&n->w->mtx);
		n->w->fired = 1;
		pthread_cond_signal(&n->w->cv);
		pthread_mutex_unlock(&n->w->mtx);
	}
	m->waiters = NULL;
	pthread_mutex_unlock(s);
	if (m->x != NULL && m->x->done != NULL) {
		in_callback++;
		m->x->done(m, m->x->done_arg);
		in_callback--;
	}
	mirai_unref(m);
}

void
mirai__cl_publish(mirai *list)
{
	/* The list is newest first; publish in claim order. */
	mirai *rev = NULL;

	while (list != NULL) {
		mirai *n         = list->entry.next;
		list->entry.next = rev;
		rev              = list;
		list             = n;
	}
	while (rev != NULL) {
		mirai *n        = rev->entry.next;
		rev->entry.next = NULL;
		publish_one(rev);
		rev = n;
	}
}

/* ---- submitting ------------------------------------------------------- */

static void
on_timeout(void *arg)
{
	mirai *m    = arg;
	profile *p  = m->prof;
	mirai *list = NULL;

	pthread_mutex_lock(&p->mtx);
	if (!m->claimed) {
		peer *pk     = m->peer;
		int inflight = m->where == AT_INFLIGHT;
		mirai__cl_claim(p, m, MIRAI_ETIMEDOUT, &list);
		if (inflight && pk != NULL && !pk->dead) {
			/* Stop the work too: the server sends no result we
			 * would want, but stays busy until the function ends. */
			mirai__cl_send_ctrl(p, pk, MIRAI__F_CANCEL, m->id);
		}
	}
	pthread_mutex_unlock(&p->mtx);
	mirai__cl_publish(list);
	mirai_unref(m);
}

static int
valid_fn(const char *fn)
{
	size_t n;

	return fn != NULL && (n = strlen(fn)) > 0 && n <= 0xffff;
}

/* Reserve bytes of the profile's queue cap, waiting for room unless
 * nowait.  A task larger than the cap goes alone.  Called locked. */
static int
reserve(profile *p, size_t bytes, int nowait)
{
	while (!p->closing && p->queued_bytes > 0 &&
	    p->queued_bytes + bytes > p->max_queue) {
		if (nowait) {
			return MIRAI_EAGAIN;
		}
		p->room_waiters++;
		pthread_cond_wait(&p->cv, &p->mtx);
		p->room_waiters--;
	}
	if (p->closing) {
		return MIRAI_ECLOSED;
	}
	p->queued_bytes += bytes;
	return 0;
}

/*
 * With a dispatcher, the queue is the dispatcher's: hold a submitter back
 * while more than PACE_BYTES of frames wait to be handed to it, rather
 * than encode a burst of a million tasks far ahead of the link.  Each
 * frame is freed once sent; a million of them freed after the burst
 * would leave this process's heap resident and full of holes (w6), and
 * the link runs no faster for the lead.
 */
static void
pace(profile *p)
{
	peer *pk;

	pthread_mutex_lock(&p->mtx);
	while (!p->closing && (pk = mirai__cl_dispatcher_peer(p)) != NULL &&
	    pk->qbytes > PACE_BYTES) {
		/* Timed: a link that stalls is noticed by whoever resolves
		 * its tasks, not by us. */
		p->room_waiters++;
		mirai__cond_wait_until(&p->cv, &p->mtx, mirai__now_ms() + 100);
		p->room_waiters--;
	}
	pthread_mutex_unlock(&p->mtx);
}

static void
release_hook_buf(profile *p, void *buf)
{
	if (buf == NULL) {
		return;
	}
	if (p->hook.release != NULL) {
		p->hook.release(p->hook.arg, buf);
	} else {
		free(buf);
	}
}

static int
submit(const mirai_call_opts *opts, const char *fn, const void *data,
    size_t len, mirai **out, int nowait)
{
	static const mirai_call_opts def = MIRAI_CALL_OPTS_INIT;
	static atomic_uint_fast64_t next_id = 1;
	mirai__task_view t = {0};
	void *enc          = NULL;
	mirai *list        = NULL;
	mirai *m           = NULL;
	mirai_errmsg err;
	size_t size;
	profile *p;
	int rv, retries, behind, spawn = 0, reserved = 0;
	int64_t timeout;

	if (opts == NULL) {
		opts = &def;
	}
	if (out == NULL || !valid_fn(fn) || (data == NULL && len > 0) ||
	    (timeout = mirai__timeout(opts->timeout_ms, -1)) < MIRAI_FOREVER) {
		return MIRAI_EINVAL;
	}
	pthread_once(&stripes_once, stripes_init);
	if ((rv = mirai__cl_profile_for_call(opts->profile ? opts->profile : "default", &p)) != 0) {
		return rv;
	}
	if (p->hook_fp != 0) {
		size_t enc_len = 0;
		if (p->hook.encode(p->hook.arg, data, len, &enc, &enc_len) != 0) {
			mirai__cl_profile_unref(p);
			return MIRAI_EHOOK;
		}
		data = enc;
		len  = enc_len;
	}
	retries = opts->retries > 0 ? opts->retries : opts->retries < 0 ? 0
									: p->retries;
	t.fn         = fn;
	t.fn_len     = (uint16_t) strlen(fn);
	t.data       = data;
	t.len        = len;
	t.hook       = p->hook_fp;
	/* The task's own choice travels as such; the profile's default is
	 * applied here in direct mode and by the dispatcher otherwise, whose
	 * default may be another (mirai-launch -r). */
	t.flags = (uint32_t) (retries > 255 ? 255 : retries) |
	    (opts->retries != 0 ? MIRAI__TF_RETRIES_SET : 0);
	/* On the wire 0 is no limit. */
	t.timeout_ms = timeout < 0 ? 0 : timeout > UINT32_MAX ? UINT32_MAX
							      : (uint32_t) timeout;
	size = mirai__task_size(t.fn_len, len);
	if (size > p->max_msg) {
		rv = MIRAI_EMSGSIZE;
		goto fail;
	}
	if ((m = mirai__pool_get(&handles)) == NULL ||
	    (m->out = mirai__out_new(size)) == NULL) {
		rv = MIRAI_ENOMEM;
		goto discard;
	}
	/* Ids are unique across profiles, which makes logs unambiguous. */
	t.id = m->id = atomic_fetch_add(&next_id, 1);
	mirai__task_encode(mirai__out_frame(m->out), &t);
	release_hook_buf(p, enc);
	enc           = NULL;
	m->out->owner = m;
	m->bytes      = (uint32_t) size;
	if (opts->done != NULL || timeout > 0) {
		if (extra(m) == NULL) {
			rv = MIRAI_ENOMEM;
			goto discard;
		}
		m->x->done      = opts->done;
		m->x->done_arg  = opts->done_arg;
		m->x->timer.fn  = on_timeout;
		m->x->timer.arg = m;
	}
	atomic_init(&m->refs, 2); /* the caller's and the runtime's */
	atomic_init(&m->state, 0);

	if (p->kind == KIND_ONESHOT) {
		/* Room first: no server is started for a task that cannot be
		 * taken.  Then a server for this task when there is room; else
		 * it waits for one that ends (mirai__cl_oneshot_more).  A
		 * server that cannot start at all fails the call. */
		pthread_mutex_lock(&p->mtx);
		if ((rv = reserve(p, size, nowait || in_callback > 0)) != 0) {
			pthread_mutex_unlock(&p->mtx);
			goto discard;
		}
		reserved = 1;
		spawn    = p->alive + p->spawning < p->oneshot_max;
		p->spawning += spawn;
		pthread_mutex_unlock(&p->mtx);
		if (spawn) {
			rv = mirai__cl_start_local(p, p->socks[0]->url, 0, 1, &err);
			pthread_mutex_lock(&p->mtx);
			p->spawning--;
			pthread_mutex_unlock(&p->mtx);
			if (rv != 0) {
				MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "%s", err.text);
				goto unreserve;
			}
		}
	}
	/* A dispatcher thread receives the task on this thread once we
	 * unlock (see mirai__link_hold).  Room and queue under one lock:
	 * most calls take it once. */
	mirai__link_hold();
	pthread_mutex_lock(&p->mtx);
	if (!reserved &&
	    (rv = reserve(p, size, nowait || in_callback > 0)) != 0) {
		pthread_mutex_unlock(&p->mtx);
		mirai__link_flush();
		goto discard;
	}
	if (p->closing || (rv = mirai__idmap_put(&p->tasks, m)) != 0) {
		pthread_mutex_unlock(&p->mtx);
		mirai__link_flush();
		rv = rv != 0 ? rv : MIRAI_ECLOSED;
		goto unreserve;
	}
	m->prof = p; /* takes over our reference */
	if (timeout > 0) {
		atomic_fetch_add(&m->refs, 1);
		if (mirai__timer_arm(&m->x->timer, mirai__now_ms() + timeout) != 0) {
			atomic_fetch_sub(&m->refs, 1);
		}
	}
	m->where = AT_QUEUE;
	mirai__outq_push(&p->unassigned, m->out);
	mirai__cl_dispatch(p, &list);
	/* Read here, under the lock we hold anyway: most calls need no
	 * pacing and so take the lock once. */
	behind = p->dispatcher && m->peer != NULL &&
	    m->peer->qbytes > PACE_BYTES;
	pthread_mutex_unlock(&p->mtx);
	mirai__link_flush();
	mirai__cl_publish(list);
	*out = m;
	if (p->kind == KIND_ONESHOT && !spawn) {
		/* A server may have ended since: then nobody else starts
		 * one for this task. */
		mirai__cl_oneshot_more(p);
	}
	if (behind && !nowait && in_callback == 0) {
		pace(p);
	}
	return 0;

unreserve:
	pthread_mutex_lock(&p->mtx);
	p->queued_bytes -= size;
	if (p->room_waiters > 0) {
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mtx);
discard:
	if (m != NULL) {
		mirai__out_free(m->out);
		free(m->x);
		mirai__pool_put(&handles, m);
	}
fail:
	release_hook_buf(p, enc);
	mirai__cl_profile_unref(p);
	return rv;
}

int
mirai_call(const mirai_call_opts *opts, const char *fn, const void *data,
    size_t len, mirai **out)
{
	return submit(opts, fn, data, len, out, 0);
}

int
mirai_try_call(const mirai_call_opts *opts, const char *fn, const void *data,
    size_t len, mirai **out)
{
	return submit(opts, fn, data, len, out, 1);
}

int
mirai_cancel(mirai *m)
{
	profile *p;
	mirai *list = NULL;
	int rv      = 0;

	if (m == NULL) {
		return MIRAI_EINVAL;
	}
	p = m->prof;
	pthread_mutex_lock(&p->mtx);
	if (m->claimed) {
		rv = MIRAI_ESTATE;
	} else {
		peer *pk     = m->peer;
		int inflight = m->where == AT_INFLIGHT;
		/* Queued here: removed, never sent.  Sent: the server (or
		 * the dispatcher's queue) drops or stops it. */
		mirai__cl_claim(p, m, MIRAI_ECANCELED, &list);
		mirai__cl_set_errtext(m, "cancelled");
		if (inflight && pk != NULL && !pk->dead) {
			mirai__cl_send_ctrl(p, pk, MIRAI__F_CANCEL, m->id);
		}
	}
	pthread_mutex_unlock(&p->mtx);
	mirai__cl_publish(list);
	return rv;
}

/* ---- waiting and reading ---------------------------------------------- */

/* Whether the wait is over; hit gets the first resolved index. */
static int
wait_done(mirai *const *ms, size_t n, int any, size_t *hit)
{
	size_t done = 0;

	for (size_t i = 0; i < n; i++) {
		if (atomic_load(&ms[i]->state)) {
			if (*hit == SIZE_MAX) {
				*hit = i;
			}
			if (any) {
				return 1;
			}
			done++;
		}
	}
	return done == n;
}

/* The monotonic deadline of a wait of timeout_ms (-1: none); -2 when
 * timeout_ms is invalid. */
static int64_t
wait_deadline(int64_t timeout_ms)
{
	int64_t t = mirai__timeout(timeout_ms, MIRAI_FOREVER);

	return t < 0 ? t : mirai__now_ms() + t;
}

/* Wait for one (any) or all of ms until deadline (-1: none); MIRAI_EPENDING
 * when it passes.  Waiting for all of many mirais goes through
 * mirai_wait_all, one at a time, to stay linear. */
static int
wait_many(mirai *const *ms, size_t n, int64_t deadline, int any,
    size_t *index)
{
	wnode local[16];
	wnode *nodes = n <= 16 ? local : malloc(n * sizeof *nodes);
	size_t hit       = SIZE_MAX;
	waiter w;
	int rv = 0;

	if (nodes == NULL) {
		return MIRAI_ENOMEM;
	}
	pthread_mutex_init(&w.mtx, NULL);
	mirai__cond_init(&w.cv);
	w.fired = 0;
	for (size_t i = 0; i < n; i++) {
		pthread_mutex_t *s = stripe(ms[i]);
		nodes[i].w         = &w;
		pthread_mutex_lock(s);
		nodes[i].next  = ms[i]->waiters;
		ms[i]->waiters = &nodes[i];
		pthread_mutex_unlock(s);
	}
	pthread_mutex_lock(&w.mtx);
	for (;;) {
		if (wait_done(ms, n, any, &hit)) {
			break;
		}
		if (w.fired) {
			w.fired = 0;
			continue;
		}
		if (mirai__cond_wait_until(&w.cv, &w.mtx, deadline) != 0 &&
		    !w.fired) {
			if (!wait_done(ms, n, any, &hit)) {
				rv = MIRAI_EPENDING;
			}
			break;
		}
	}
	pthread_mutex_unlock(&w.mtx);
	/* Unhook from the mirais that are still pending (publishing clears
	 * the list of a resolved one). */
	for (size_t i = 0; i < n; i++) {
		pthread_mutex_t *s = stripe(ms[i]);
		pthread_mutex_lock(s);
		for (wnode **pp = &ms[i]->waiters; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == &nodes[i]) {
				*pp = nodes[i].next;
				break;
			}
		}
		pthread_mutex_unlock(s);
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mtx);
	if (nodes != local) {
		free(nodes);
	}
	if (rv == 0 && index != NULL) {
		*index = hit;
	}
	return rv;
}

int
mirai_wait_for(mirai *m, int64_t timeout_ms)
{
	int64_t deadline = wait_deadline(timeout_ms);
	int rv;

	if (m == NULL || deadline < MIRAI_FOREVER) {
		return MIRAI_EINVAL;
	}
	if (!atomic_load(&m->state) &&
	    (rv = wait_many(&m, 1, deadline, 0, NULL)) != 0) {
		return rv;
	}
	return m->status;
}

int
mirai_wait(mirai *m)
{
	return mirai_wait_for(m, MIRAI_FOREVER);
}

int
mirai_wait_all(mirai *const *ms, size_t n, int64_t timeout_ms)
{
	int64_t deadline = wait_deadline(timeout_ms);

	if ((ms == NULL && n > 0) || deadline < MIRAI_FOREVER) {
		return MIRAI_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (ms[i] == NULL) {
			return MIRAI_EINVAL;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (!atomic_load(&ms[i]->state) &&
		    wait_many(&ms[i], 1, deadline, 0, NULL) != 0) {
			return MIRAI_EPENDING;
		}
	}
	return 0;
}

int
mirai_wait_any(mirai *const *ms, size_t n, int64_t timeout_ms, size_t *index)
{
	int64_t deadline = wait_deadline(timeout_ms);

	if (ms == NULL || n == 0 || deadline < MIRAI_FOREVER) {
		return MIRAI_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (ms[i] == NULL) {
			return MIRAI_EINVAL;
		}
	}
	return wait_many(ms, n, deadline, 1, index);
}

int
mirai_resolved(const mirai *m)
{
	return m != NULL && atomic_load(&((mirai *) m)->state) != 0;
}

int
mirai_error(const mirai *m)
{
	if (m == NULL) {
		return MIRAI_EINVAL;
	}
	return mirai_resolved(m) ? m->status : MIRAI_EBUSY;
}

const void *
mirai_data(const mirai *m, size_t *len)
{
	if (m == NULL || !mirai_resolved(m) || m->status != 0) {
		if (len != NULL) {
			*len = 0;
		}
		return NULL;
	}
	if (len != NULL) {
		*len = m->res_len;
	}
	return m->res != NULL ? m->res : "";
}

const char *
mirai_errortext(const mirai *m)
{
	if (m == NULL || !mirai_resolved(m) || m->status == 0) {
		return "";
	}
	return m->x != NULL && m->x->errtext != NULL ? m->x->errtext
						      : mirai_strerror(m->status);
}

uint64_t
mirai_id(const mirai *m)
{
	return m != NULL ? m->id : 0;
}

void
mirai_free(mirai *m)
{
	if (m != NULL) {
		mirai_unref(m);
	}
}
