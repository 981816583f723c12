/*
 * disp_socks.c: where the dispatcher's servers connect: a local slot's
 * own socket, the shared listeners and their pipes (admitted by a HELLO
 * with a slot's secret, refused otherwise), the dsocks that hold a slot's
 * secret and pipe, closing pipes, and opening and closing it all.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatcher.h"

/* ---- closing one pipe --------------------------------------------------- */

/*
 * A server that answered GONE sends nothing more, so its pipe may be
 * closed; and it must be: measured on NNG 1.5.2 (ws and tcp), about one
 * such pipe in 30-60 is never reported gone after the server exits (the
 * connection sits in CLOSE-WAIT, unread), and the slot would stay online
 * for good.  Closing it ourselves brings the pipe's GONE event, which
 * does the usual clean-up.  Refused pipes and pipes cut off by saisei are
 * closed the same way.  On the service thread: closing a pipe may run pipe
 * callbacks, which take the lock.
 */
typedef struct pipe_job {
	mirai__timer timer; /* for a close after a grace period */
	mirai_dispatcher *d;
	mirai__link *link;
	uint32_t pipe;
	void (*then)(mirai_dispatcher *d, uint32_t pipe); /* locked, or NULL */
} pipe_job;

static void
pipe_close_job(void *arg)
{
	pipe_job *j         = arg;
	mirai_dispatcher *d = j->d;

	/* destroy() waits for this job before it closes the link. */
	mirai__link_pipe_close(j->link, j->pipe);
	pthread_mutex_lock(&d->mtx);
	if (j->then != NULL) {
		j->then(d, j->pipe);
	}
	d->pending--;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
	free(j);
}

static void
pipe_close_timed(void *arg)
{
	if (mirai__defer(pipe_close_job, arg) != 0) {
		pipe_close_job(arg);
	}
}

/* Close pipe of link on the service thread, after grace_ms, then call
 * then(d, pipe) locked (when then is not NULL).  Called locked. */
void
mirai__d_pipe_close_then(mirai_dispatcher *d, mirai__link *link, uint32_t pipe,
    int64_t grace_ms, void (*then)(mirai_dispatcher *d, uint32_t pipe))
{
	pipe_job *j;

	if (d->closing || (j = calloc(1, sizeof *j)) == NULL) {
		return;
	}
	j->d    = d;
	j->link = link;
	j->pipe = pipe;
	j->then = then;
	d->pending++;
	if (grace_ms > 0) {
		j->timer.fn  = pipe_close_timed;
		j->timer.arg = j;
		if (mirai__timer_arm(&j->timer, mirai__now_ms() + grace_ms) == 0) {
			return;
		}
	}
	if (mirai__defer(pipe_close_job, j) != 0) {
		d->pending--;
		free(j);
	}
}

void
mirai__d_pipe_close_later(mirai_dispatcher *d, mirai__link *link, uint32_t pipe,
    int64_t grace_ms)
{
	mirai__d_pipe_close_then(d, link, pipe, grace_ms, NULL);
}

/* ---- dsocks ----------------------------------------------------------- */

dsock *
mirai__d_dsock_new(mirai_dispatcher *d, slot *sl, dlis *lis)
{
	dsock *ds = calloc(1, sizeof *ds);

	if (ds == NULL) {
		return NULL;
	}
	ds->sl  = sl;
	ds->d   = d;
	ds->lis = lis;
	if (lis != NULL) {
		ds->link = lis->link;
	}
	if (!d->no_token) {
		mirai__secret_new(ds->secret);
	}
	return ds;
}

static void
dsock_free(dsock *ds)
{
	if (ds->lis == NULL) {
		mirai__link_close(ds->link);
	}
	mirai__tx_free(ds->tx);
	mirai__outq_clear(&ds->q);
	mirai__msg_free(ds->waiter_msg);
	explicit_bzero(ds->secret, sizeof ds->secret);
	free(ds);
}

/* Free a retired dsock on the service thread (its sender's callback
 * takes the lock). */
static void
dsock_free_job(void *arg)
{
	dsock *ds           = arg;
	mirai_dispatcher *d = ds->d;

	dsock_free(ds);
	pthread_mutex_lock(&d->mtx);
	d->pending--;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
}

/* Called locked. */
void
mirai__d_dsock_free_later(mirai_dispatcher *d, dsock *ds)
{
	d->pending++;
	if (mirai__defer(dsock_free_job, ds) != 0) {
		d->pending--;
		MIRAI__LOG(MIRAI_LOG_ERROR, TAG,
		    "slot %zu: out of memory freeing a retired socket",
		    ds->sl->idx);
	}
}

static int waiter_admit(mirai_dispatcher *d, uint32_t pipe);

typedef struct waiter_job {
	mirai_dispatcher *d;
	uint32_t pipe;
} waiter_job;

static void
waiter_job_run(void *arg)
{
	waiter_job *j       = arg;
	mirai_dispatcher *d = j->d;

	pthread_mutex_lock(&d->mtx);
	if (!d->closing) {
		waiter_admit(d, j->pipe);
	}
	d->pending--;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
	free(j);
}

/* Admit the waiting pipe from the service thread (a pipe callback must
 * not send).  Called locked. */
static void
waiter_later(mirai_dispatcher *d, uint32_t pipe)
{
	waiter_job *j = malloc(sizeof *j);

	if (j == NULL) {
		return;
	}
	j->d    = d;
	j->pipe = pipe;
	d->pending++;
	if (mirai__defer(waiter_job_run, j) != 0) {
		d->pending--;
		free(j);
	}
}

/* ds's pipe is gone.  Called locked. */
static void
ds_pipe_gone(mirai_dispatcher *d, dsock *ds, uint32_t pipe)
{
	slot *sl = ds->sl;

	if (!ds->has_pipe || ds->pipe_id != pipe) {
		return;
	}
	ds->has_pipe = 0;
	ds->muted    = 0;
	mirai__outq_clear(&ds->q);
	if (ds == sl->cur) {
		if (sl->online) {
			MIRAI__LOG(MIRAI_LOG_INFO, TAG,
			    "slot %zu: server %s:%d disconnected", sl->idx,
			    sl->host, sl->pid);
		}
		mirai__d_slot_lost(d, sl);
		sl->exit_sent = 0;
		sl->gone      = 0;
		if (d->free_slots != NULL && !sl->free_listed) {
			sl->free_listed               = 1;
			d->free_slots[d->nfree++] = sl->idx;
		}
		if (ds->waiter != NULL) {
			waiter_later(d, (uint32_t) ds->waiter->id);
		}
	} else if (ds->lis != NULL && ds->retired) {
		mirai__d_dsock_free_later(d, ds);
	}
	pthread_cond_broadcast(&d->cv);
}

/* Pipe events of a slot's own socket. */
static int
slot_pipe(void *arg, int ev, uint32_t pipe)
{
	dsock *ds           = arg;
	mirai_dispatcher *d = ds->d;
	int refuse          = 0;

	pthread_mutex_lock(&d->mtx);
	if (ev == MIRAI__PIPE_ADD) {
		if (ds->has_pipe || ds->retired || d->closing) {
			/* One server per socket; closing before NNG receives
			 * on the pipe is safe. */
			if (!ds->retired && !d->closing) {
				MIRAI__LOG(MIRAI_LOG_WARN, TAG,
				    "slot %zu: refused a second server (one is "
				    "connected)",
				    ds->sl->idx);
			}
			refuse = 1;
		} else {
			ds->has_pipe = 1;
			ds->pipe_id  = pipe;
			ds->last_rx = ds->last_tx = mirai__now_ms();
		}
	} else if (ev == MIRAI__PIPE_GONE) {
		ds_pipe_gone(d, ds, pipe);
	}
	pthread_mutex_unlock(&d->mtx);
	return refuse;
}

/* ---- shared listeners: admitting pipes ---------------------------------- */


static void
plist_add(mirai_dispatcher *d, dpipe *p)
{
	if (p->ds == NULL && !p->refused) {
		MIRAI__LIST_PUSH_BACK(&d->pend, p, entry);
	} else {
		MIRAI__LIST_PUSH_FRONT(&d->adm, p, entry);
	}
}

static void
plist_remove(mirai_dispatcher *d, dpipe *p)
{
	if (p->ds == NULL && !p->refused) {
		MIRAI__LIST_REMOVE(&d->pend, p, entry);
	} else {
		MIRAI__LIST_REMOVE(&d->adm, p, entry);
	}
}

/* p no longer waits for its slot. */
static void
waiter_drop(dpipe *p)
{
	if (p->waits_for != NULL) {
		mirai__msg_free(p->waits_for->waiter_msg);
		p->waits_for->waiter_msg = NULL;
		p->waits_for->waiter     = NULL;
		p->waits_for             = NULL;
	}
}

/* Refuse pending pipe p: nothing more is read from it, and it is closed.
 * Called locked. */
static void
pipe_refuse(mirai_dispatcher *d, dpipe *p, const char *why)
{
	/* Logged, but not without bound: anyone may connect. */
	d->forged++;
	if (d->forged <= 20 || d->forged % 1000 == 0) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "refused a peer at %s: %s (%" PRIu64 " refused so far)",
		    p->lis->url, why, d->forged);
	}
	waiter_drop(p);
	plist_remove(d, p);
	p->refused = 1;
	plist_add(d, p);
	mirai__d_pipe_refuse(d, p->lis->link, (uint32_t) p->id);
}

void
mirai__d_pipe_refuse(mirai_dispatcher *d, mirai__link *link, uint32_t pipe)
{
	uint8_t b[MIRAI__HDR_LEN + MIRAI__U32_FRAME_LEN];
	mirai__msghdr h = {.nframes = 1, .seq = 1};
	mirai__msg *m;

	/* An honest peer learns why (and exits); the pipe closes after a
	 * grace period either way. */
	mirai__hdr_encode(b, &h);
	mirai__u32_frame_encode(b + MIRAI__HDR_LEN, MIRAI__F_EXIT,
	    MIRAI__EXIT_REFUSED);
	if (mirai__msg_alloc(&m, sizeof b) == 0) {
		memcpy(mirai__msg_body(m), b, sizeof b);
		mirai__msg_set_pipe(m, pipe);
		mirai__link_try_send(link, m);
	}
	mirai__d_pipe_close_later(d, link, pipe, REFUSE_GRACE_MS);
}

/* The slot a HELLO asks for on p's listener, or NULL. */
static slot *
hello_slot(mirai_dispatcher *d, const dpipe *p, const mirai__hello_view *h)
{
	slot *sl = NULL;

	if (!d->no_token) {
		sl = h->slot < d->nslots ? &d->slots[h->slot] : NULL;
		if (sl != NULL && (sl->cur->lis != p->lis ||
				      !mirai__secret_eq(sl->cur->secret,
					  h->secret, h->secret_len))) {
			sl = NULL;
		}
		return sl;
	}
	/* Without secrets: the slot of a per-slot listener, or any free one
	 * of the shared listener. */
	if (d->free_slots == NULL) {
		return &d->slots[p->lis - d->lis];
	}
	while (sl == NULL && d->nfree > 0) {
		sl              = &d->slots[d->free_slots[--d->nfree]];
		sl->free_listed = 0;
		if (sl->cur->has_pipe) {
			sl = NULL;
		}
	}
	return sl;
}

/*
 * The first message of pending pipe p must be a HELLO naming a slot of
 * p's listener with that slot's secret: p is then the slot's pipe.  Called
 * locked; returns the slot's dsock, or NULL with p refused.
 */
static dsock *
pipe_admit(mirai_dispatcher *d, dpipe *p, mirai__msg *msg, int *kept)
{
	mirai__reader r;
	mirai__msghdr h;
	mirai__frame f;
	mirai__hello_view hv;
	char why[96];
	slot *sl;
	dsock *ds;

	if (mirai__msg_open(&r, mirai__msg_body(msg), mirai__msg_len(msg), &h) !=
		0 ||
	    mirai__msg_next(&r, &f) != 1 || mirai__hello_decode(&f, &hv) != 0) {
		pipe_refuse(d, p, "its first message is not a HELLO");
		return NULL;
	}
	if (hv.proto != MIRAI__PROTO) {
		snprintf(why, sizeof why,
		    "protocol %u, not %u (another version of mirai)", hv.proto,
		    MIRAI__PROTO);
		pipe_refuse(d, p, why);
		return NULL;
	}
	if ((sl = hello_slot(d, p, &hv)) == NULL) {
		pipe_refuse(d, p,
		    d->no_token ? "every slot has a server"
				: "its HELLO lacks a slot's secret");
		return NULL;
	}
	ds = sl->cur;
	if (ds->has_pipe && !sl->gone && !ds->muted) {
		if (ds->waiter != NULL || p->waits_for != NULL) {
			snprintf(why, sizeof why, "slot %zu has a server",
			    sl->idx);
			pipe_refuse(d, p, why);
			return NULL;
		}
		/* Perhaps a restart that came before the old server's pipe
		 * was seen to go: it waits (in the pending list, so refused
		 * after ADMIT_MS if the old one stays). */
		ds->waiter     = p;
		ds->waiter_msg = msg;
		p->waits_for   = ds;
		*kept          = 1;
		return NULL;
	}
	waiter_drop(p);
	if (ds->has_pipe) {
		/* The slot's server said GONE, or was taken as lost, and its
		 * pipe has not closed yet: the newcomer takes the slot, and
		 * nothing more is read from the old pipe. */
		dpipe *old = mirai__idmap_get(&d->pipes, ds->pipe_id);
		if (old != NULL) {
			old->ds      = NULL;
			old->refused = 1;
		}
		ds_pipe_gone(d, ds, ds->pipe_id);
	}
	if (ds->tx == NULL && mirai__tx_open(&ds->tx, ds->link, mirai__d_slot_tx, ds) != 0) {
		pipe_refuse(d, p, "out of memory");
		return NULL;
	}
	plist_remove(d, p);
	p->ds = ds;
	plist_add(d, p);
	ds->has_pipe  = 1;
	ds->pipe_id   = (uint32_t) p->id;
	ds->seq_acked = ds->seq; /* a new peer: an empty window */
	ds->last_rx = ds->last_tx = mirai__now_ms();
	return ds;
}

/* The waiting pipe's slot is free now: it is admitted with the message
 * it came with.  Called locked; returns 0 when it was. */
static int
waiter_admit(mirai_dispatcher *d, uint32_t pipe)
{
	dpipe *p = mirai__idmap_get(&d->pipes, pipe);
	mirai__msg *msg;
	dsock *ds;
	int kept = 0;

	if (p == NULL || p->waits_for == NULL || p->waits_for->has_pipe) {
		return -1;
	}
	msg                      = p->waits_for->waiter_msg;
	p->waits_for->waiter_msg = NULL;
	p->waits_for->waiter     = NULL;
	p->waits_for             = NULL;
	if ((ds = pipe_admit(d, p, msg, &kept)) != NULL) {
		if (mirai__d_slot_frames(d, ds, msg)) {
			mirai__msg_free(msg);
		}
		return 0;
	}
	if (!kept) {
		mirai__msg_free(msg);
	}
	return -1;
}

static void
lis_rx(void *arg, mirai__msg *msg)
{
	dlis *lis           = arg;
	mirai_dispatcher *d = lis->d;
	dsock *ds           = NULL;
	int drop = 1, kept = 0;
	dpipe *p;

	pthread_mutex_lock(&d->mtx);
	p = mirai__idmap_get(&d->pipes, mirai__msg_pipe(msg));
	if (p != NULL && !p->refused && p->waits_for == NULL) {
		ds = p->ds != NULL ? p->ds : pipe_admit(d, p, msg, &kept);
	}
	if (ds != NULL) {
		drop = mirai__d_slot_frames(d, ds, msg);
	} else if (kept) {
		drop = 0;
	}
	pthread_mutex_unlock(&d->mtx);
	if (drop) {
		mirai__msg_free(msg);
	}
}

static int
lis_pipe(void *arg, int ev, uint32_t pipe)
{
	dlis *lis           = arg;
	mirai_dispatcher *d = lis->d;
	int refuse          = 0;
	dpipe *p;

	pthread_mutex_lock(&d->mtx);
	if (ev == MIRAI__PIPE_ADD) {
		if (d->closing || (p = calloc(1, sizeof *p)) == NULL) {
			refuse = 1;
		} else {
			p->id    = pipe;
			p->lis   = lis;
			p->t_add = mirai__now_ms();
			if (mirai__idmap_put(&d->pipes, p) != 0) {
				free(p);
				refuse = 1;
			} else {
				plist_add(d, p);
			}
		}
	} else if (ev == MIRAI__PIPE_GONE &&
	    (p = mirai__idmap_get(&d->pipes, pipe)) != NULL) {
		mirai__idmap_del(&d->pipes, p);
		plist_remove(d, p);
		waiter_drop(p);
		if (p->ds != NULL) {
			ds_pipe_gone(d, p->ds, pipe);
		}
		free(p);
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->mtx);
	return refuse;
}

void
mirai__d_pipes_sweep(mirai_dispatcher *d, int64_t now)
{
	dpipe *p, *next;

	while ((p = d->pend.head) != NULL && now - p->t_add > ADMIT_MS) {
		pipe_refuse(d, p, "no HELLO in 10 s");
	}
	/* Waiting for a slot whose server stays: refused sooner. */
	MIRAI__LIST_EACH(p, next, &d->pend, entry) {
		if (p->waits_for != NULL && now - p->t_add > WAIT_MS) {
			char why[64];
			snprintf(why, sizeof why, "slot %zu has a server",
			    p->waits_for->sl->idx);
			pipe_refuse(d, p, why);
		}
	}
}

/* ---- opening and closing ------------------------------------------------ */

int
mirai__d_lis_open(mirai_dispatcher *d, dlis *lis, const char *url,
    mirai_errmsg *err)
{
	mirai__link_cfg cfg = {
		.poly    = 1,
		.admits  = !d->no_token,
		.max_msg = d->opts.server->max_msg,
		.events  = (1u << MIRAI__PIPE_ADD) | (1u << MIRAI__PIPE_GONE),
		.recv    = lis_rx,
		.pipe    = lis_pipe,
		.arg     = lis,
		.tls     = D_TLS(d),
	};
	int rv;

	lis->d = d;
	if ((rv = mirai__link_open(&lis->link, &cfg, err)) != 0) {
		return rv;
	}
	if ((rv = mirai__link_listen(lis->link, url, &lis->url, err)) != 0) {
		mirai__link_close(lis->link);
		lis->link = NULL;
		return rv;
	}
	mirai__link_start(lis->link);
	return 0;
}

/* sl's URL for ds: the listener's URL and the slot suffix. */
char *
mirai__d_slot_url(mirai_dispatcher *d, const dsock *ds, const char *base)
{
	char buf[1100];

	if (d->no_token) {
		return mirai__strdup(base);
	}
	mirai__url_with_cred(buf, sizeof buf, base, ds->secret,
	    (uint32_t) ds->sl->idx);
	return mirai__strdup(buf);
}

int
mirai__d_slot_open(mirai_dispatcher *d, slot *sl, const char *own_url,
    dlis *lis, mirai_errmsg *err)
{
	dsock *ds      = mirai__d_dsock_new(d, sl, lis);
	char *resolved = NULL;
	int rv;

	if (ds == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	if (lis == NULL) {
		mirai__link_cfg cfg = {
			.max_msg = d->opts.server->max_msg,
			.events  = (1u << MIRAI__PIPE_ADD) |
			    (1u << MIRAI__PIPE_GONE),
			.recv = mirai__d_slot_rx,
			.pipe = slot_pipe,
			.sent = mirai__d_slot_tx,
			.arg  = ds,
			.tls  = D_TLS(d),
		};
		if ((rv = mirai__link_open(&ds->link, &cfg, err)) != 0) {
			free(ds);
			return rv;
		}
		if ((rv = mirai__link_listen(ds->link, own_url, &resolved,
			 err)) != 0) {
			mirai__link_close(ds->link);
			free(ds);
			return rv;
		}
		mirai__link_start(ds->link);
	}
	sl->cur    = ds;
	sl->shared = lis != NULL;
	sl->url    = mirai__d_slot_url(d, ds, lis != NULL ? lis->url : resolved);
	free(resolved);
	if (sl->url == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	return 0;
}

void
mirai__d_slots_close(mirai_dispatcher *d)
{
	for (size_t i = 0; i < d->nslots; i++) {
		dsock *ds = d->slots[i].cur;
		if (ds != NULL && ds->lis == NULL) {
			mirai__link_close(ds->link);
			ds->link = NULL;
		}
	}
	for (size_t i = 0; i < d->nlis; i++) {
		mirai__link_close(d->lis[i].link);
		d->lis[i].link = NULL;
	}
}

void
mirai__d_slots_free(mirai_dispatcher *d)
{
	dpipe_list *lists[2] = {&d->pend, &d->adm};
	dpipe *p, *next;

	for (int k = 0; k < 2; k++) {
		MIRAI__LIST_EACH(p, next, lists[k], entry) {
			if (p->ds != NULL && p->ds->retired) {
				dsock_free(p->ds);
			}
			free(p);
		}
	}
	d->pend.head = d->pend.tail = NULL;
	d->adm.head  = d->adm.tail  = NULL;
	mirai__idmap_fini(&d->pipes);
	for (size_t i = 0; i < d->nslots; i++) {
		if (d->slots[i].cur != NULL) {
			dsock_free(d->slots[i].cur);
			d->slots[i].cur = NULL;
		}
	}
	for (size_t i = 0; i < d->nlis; i++) {
		free(d->lis[i].url);
	}
	free(d->lis);
	free(d->free_slots);
}

