/*
 * disp_slots.c: the dispatcher's downstream side, one slot per server:
 * the slot sockets (open, retire, close, saisei's fresh URLs), sending to
 * servers (tasks, control frames, EXIT), frames from servers (HELLO,
 * results, bounces, BYE, GONE) including cutting off a peer that sends
 * what no server sends, and pipes coming and going (lost servers, their
 * tasks retried or reported).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "dispatcher.h"

/* Grace before closing a slot cut off by saisei(force). */
#define CUTOFF_GRACE_MS 500

/* ---- sending ---------------------------------------------------------- */

void
mirai__d_slot_send(mirai_dispatcher *d, dsock *ds)
{
	mirai__msghdr h = {0};
	mirai__msg *msg;

	(void) d;
	while (!ds->sending && ds->q.head != NULL) {
		memset(&h, 0, sizeof h);
		h.seq = ++ds->seq;
		if (mirai__outq_pack(&ds->q, &h, &msg, NULL, NULL) != 0) {
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "out of memory sending");
			return;
		}
		ds->last_tx = mirai__now_ms();
		if (!mirai__link_send(ds->link, msg)) {
			ds->sending = 1;
		}
	}
}

void
mirai__d_slot_ctrl(mirai_dispatcher *d, slot *sl, uint8_t type, uint64_t v,
    int u64)
{
	mirai__out *o = mirai__out_new(u64 ? MIRAI__U64_FRAME_LEN
					   : MIRAI__FRAME_HDR_LEN);

	if (o == NULL || sl->cur == NULL) {
		mirai__out_free(o);
		return;
	}
	if (u64) {
		mirai__u64_frame_encode(mirai__out_frame(o), type, v);
	} else {
		mirai__frame_hdr_encode(mirai__out_frame(o), type, 0);
	}
	mirai__outq_push_front(&sl->cur->q, o);
	mirai__d_slot_send(d, sl->cur);
}

/* Tell the server of sl to exit, cancelling its task or letting it
 * finish; it answers GONE. */
void
mirai__d_slot_exit(mirai_dispatcher *d, slot *sl, uint32_t flags)
{
	mirai__out *o;

	if (sl->exit_sent || sl->cur == NULL || !sl->cur->has_pipe) {
		return;
	}
	sl->exit_sent = 1;
	mirai__d_idle_remove(d, sl);
	if ((o = mirai__out_new(MIRAI__U32_FRAME_LEN)) != NULL) {
		mirai__u32_frame_encode(mirai__out_frame(o), MIRAI__F_EXIT, flags);
		mirai__outq_push_front(&sl->cur->q, o);
		mirai__d_slot_send(d, sl->cur);
	}
}

/*
 * The server of sl is given a task encoded with hook fingerprint fp: when
 * the two differ, the task will fail with EHOOK there; say so once per
 * server instance, naming the hooks as far as they are known (a task
 * carries only the fingerprint: its name is known when another server
 * announced the same hook).  Called locked.
 */
static void
check_hook(mirai_dispatcher *d, slot *sl, uint64_t fp)
{
	char task_hook[96];

	if (fp == sl->hook || sl->hook_warned) {
		return;
	}
	sl->hook_warned = 1;
	if (fp == 0) {
		snprintf(task_hook, sizeof task_hook, "none");
	} else {
		snprintf(task_hook, sizeof task_hook, "fingerprint %016" PRIx64,
		    fp);
		for (size_t i = 0; i < d->nslots; i++) {
			if (d->slots[i].hook == fp && d->slots[i].hook_name[0]) {
				snprintf(task_hook, sizeof task_hook, "'%s'",
				    d->slots[i].hook_name);
				break;
			}
		}
	}
	MIRAI__LOG(MIRAI_LOG_WARN, TAG,
	    "slot %zu: server %s:%d uses serialization hook %s%s%s but the "
	    "client's tasks use %s: they fail there with EHOOK",
	    sl->idx, sl->host, sl->pid, sl->hook ? "'" : "",
	    sl->hook ? sl->hook_name : "none", sl->hook ? "'" : "", task_hook);
}

/*
 * Send task t to slot sl.  The dispatcher keeps its own copy of every task
 * a server holds: a retry or a bounce requeues that copy, never bytes a
 * server sent back, so a server cannot change what another one runs.
 */
int
mirai__d_send_task(mirai_dispatcher *d, slot *sl, dtask *t)
{
	mirai__out *o;

	if (t->big) {
		if ((o = malloc(sizeof *o)) == NULL) {
			return MIRAI_ENOMEM;
		}
		memset(o, 0, sizeof *o);
		o->len = t->len;
		if (mirai__msg_dup(&o->msg, mirai__d_msg_of(t)) != 0) {
			free(o);
			return MIRAI_ENOMEM;
		}
	} else {
		if ((o = mirai__out_new(t->len)) == NULL) {
			return MIRAI_ENOMEM;
		}
		mirai__frame_hdr_encode(mirai__out_frame(o), MIRAI__F_TASK,
		    t->len - MIRAI__FRAME_HDR_LEN);
		memcpy(mirai__out_frame(o) + MIRAI__FRAME_HDR_LEN, t->frame,
		    t->len - MIRAI__FRAME_HDR_LEN);
	}
	{
		mirai__frame f = {.type = MIRAI__F_TASK,
		    .body = mirai__out_frame(o) + MIRAI__FRAME_HDR_LEN,
		    .len  = (uint32_t) (t->len - MIRAI__FRAME_HDR_LEN)};
		mirai__task_view tv;
		if (mirai__task_decode(&f, &tv) == 0) {
			check_hook(d, sl, tv.hook);
		}
	}
	mirai__outq_push(&sl->cur->q, o);
	mirai__d_slot_send(d, sl->cur);
	return 0;
}

/* ---- slots: receiving ---------------------------------------------------- */

/* The busy task of sl is done; forward the frame at f (a RESULT) to the
 * client, taking msg when the frame is all of it and big. */
static void
finish_busy(mirai_dispatcher *d, slot *sl, const mirai__frame *f,
    mirai__msg **keep)
{
	dtask *t    = sl->busy;
	size_t flen = MIRAI__FRAME_HDR_LEN + (size_t) f->len;
	int orphan  = t->orphan;
	mirai__out *o;

	sl->busy = NULL;
	sl->complete++;
	d->completed++;
	mirai__d_dtask_free(d, t);
	/* The server's next task first, then the result. */
	if (!sl->leaving) {
		mirai__d_idle_push(d, sl);
	}
	mirai__d_dispatch(d);
	if (orphan) {
		return;
	}
	if (*keep != NULL && flen >= MIRAI__BIG_FRAME) {
		/* Forward the message itself: its header is rewritten when
		 * it goes up. */
		if ((o = malloc(sizeof *o)) != NULL) {
			memset(o, 0, sizeof *o);
			o->msg = *keep;
			o->len = flen;
			*keep  = NULL;
			mirai__d_up_queue(d, o);
			return;
		}
	}
	if ((o = mirai__out_new(flen)) == NULL) {
		MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "out of memory forwarding a result");
		return;
	}
	memcpy(mirai__out_frame(o), f->body - MIRAI__FRAME_HDR_LEN, flen);
	mirai__d_up_queue(d, o);
}

static void
slot_hello(mirai_dispatcher *d, slot *sl, const mirai__frame *f)
{
	mirai__hello_view h;

	if (mirai__hello_decode(f, &h) != 0 || h.proto != MIRAI__PROTO) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "slot %zu: a peer sent a bad HELLO; telling it to exit",
		    sl->idx);
		mirai__d_slot_exit(d, sl, 0);
		return;
	}
	sl->online   = 1;
	sl->leaving  = 0;
	sl->gone     = 0;
	sl->instance++;
	sl->assigned = sl->complete = 0;
	sl->pid      = (int) h.pid;
	snprintf(sl->host, sizeof sl->host, "%.*s", (int) h.host_len, h.host);
	snprintf(sl->binding, sizeof sl->binding, "%.*s", (int) h.binding_len,
	    h.binding);
	sl->hook = h.hook;
	snprintf(sl->hook_name, sizeof sl->hook_name, "%.*s",
	    (int) h.hook_name_len, h.hook_name);
	sl->hook_warned = 0;
	if (d->watch != NULL) {
		d->watch(d->watch_arg);
	}
	MIRAI__LOG(MIRAI_LOG_INFO, TAG, "slot %zu: server %s:%d online (%s)",
	    sl->idx, sl->host, sl->pid, sl->url);
	pthread_cond_broadcast(&d->cv);
	mirai__d_idle_push(d, sl);
	mirai__d_dispatch(d);
}

/*
 * The server of sl sent what no honest server sends: a frame that does not
 * decode, an answer for a task it was not given, a bounce that is not the
 * task it holds, a frame before its HELLO.  Nothing more is read from it;
 * the task it held goes back to the head of the queue (the dispatcher's
 * own copy) and the server is told to exit.  A slot with a path moves to a
 * fresh URL at once, so that the peer cannot hold it; any other slot stays
 * offline until the peer disconnects.  Called locked.
 */
static void
slot_cut(mirai_dispatcher *d, slot *sl, const char *what)
{
	dsock *ds = sl->cur;
	dtask *t  = sl->busy;
	mirai__out *o;

	if (sl->online) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "slot %zu: refused %s from server %s:%d; cutting it off",
		    sl->idx, what, sl->host, sl->pid);
	} else {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "slot %zu: refused %s from a peer; cutting it off", sl->idx,
		    what);
	}
	d->forged++;
	sl->busy = NULL;
	if (t != NULL) {
		if (t->orphan) {
			mirai__d_dtask_free(d, t);
		} else {
			mirai__d_q_push(d, t, 1);
		}
	}
	mirai__d_idle_remove(d, sl);
	sl->online = 0;
	if (sl->has_path) {
		if ((o = mirai__d_saisei(d, 0, (uint32_t) sl->idx, 1)) != NULL) {
			mirai__out_free(o);
		}
		if (sl->cur != ds) {
			return;
		}
	}
	mirai__d_slot_exit(d, sl, MIRAI__EXIT_CANCEL);
	ds->muted = 1;
	if (d->watch != NULL) {
		d->watch(d->watch_arg);
	}
}

/* A BOUNCE: the frame sl's busy task came in, given back unstarted by a
 * leaving server.  Returns 0, or -1 when it is not exactly that task. */
static int
slot_bounce(mirai_dispatcher *d, slot *sl, const mirai__frame *f)
{
	mirai__frame inner;
	mirai__task_view tv;
	dtask *t = sl->busy;

	const uint8_t *mine;

	if (mirai__bounce_decode(f, &inner) != 0 ||
	    mirai__task_decode(&inner, &tv) != 0 || t == NULL ||
	    tv.id != t->id || MIRAI__FRAME_HDR_LEN + inner.len != t->len) {
		return -1;
	}
	/* Byte for byte what it was given (the body; the header matched by
	 * type and length). */
	mine = t->big ? mirai__msg_body(mirai__d_msg_of(t)) + MIRAI__HDR_LEN +
		MIRAI__FRAME_HDR_LEN
		      : t->frame;
	if (memcmp(mine, inner.body, inner.len) != 0) {
		return -1;
	}
	sl->busy = NULL;
	if (t->orphan) {
		mirai__d_dtask_free(d, t);
	} else {
		/* The dispatcher's copy goes back, not the bytes that came. */
		mirai__d_q_push(d, t, 1);
	}
	return 0;
}

/*
 * A server that answered GONE sends nothing more, so its pipe may be
 * closed; and it must be: measured on NNG 1.5.2 (ws and tcp), about one
 * such pipe in 30-60 is never reported gone after the server exits (the
 * connection sits in CLOSE-WAIT, unread), and the slot would stay online
 * for good.  Closing it ourselves brings the pipe's GONE event, which
 * does the usual clean-up.  On the service thread: closing a pipe may run
 * pipe callbacks, which take the lock.
 */
typedef struct gone_job {
	dsock *ds;
	uint32_t pipe;
} gone_job;

static void
gone_close_job(void *arg)
{
	gone_job *j         = arg;
	mirai_dispatcher *d = j->ds->d;

	/* destroy() waits for this job before it closes the link. */
	mirai__link_pipe_close(j->ds->link, j->pipe);
	pthread_mutex_lock(&d->mtx);
	d->pending--;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
	free(j);
}

/* sl's server said GONE on ds.  Called locked. */
static void
slot_gone(mirai_dispatcher *d, dsock *ds)
{
	gone_job *j;

	if (ds->sl->gone || !ds->has_pipe) {
		return;
	}
	ds->sl->gone = 1;
	pthread_cond_broadcast(&d->cv);
	if (d->closing || (j = malloc(sizeof *j)) == NULL) {
		return;
	}
	j->ds   = ds;
	j->pipe = ds->pipe_id;
	d->pending++;
	if (mirai__defer(gone_close_job, j) != 0) {
		d->pending--;
		free(j);
	}
}

static void
slot_msg(dsock *ds, mirai__msg *msg)
{
	mirai_dispatcher *d = ds->d;
	slot *sl            = ds->sl;
	mirai__reader r;
	mirai__msghdr h;
	mirai__frame f;
	mirai__msg *keep = NULL;
	const char *forged = NULL;
	int rv;

	rv = mirai__msg_open(&r, mirai__msg_body(msg), mirai__msg_len(msg), &h);
	pthread_mutex_lock(&d->mtx);
	if (ds->retired || ds->muted || ds != sl->cur) {
		pthread_mutex_unlock(&d->mtx);
		mirai__msg_free(msg);
		return;
	}
	ds->last_rx = mirai__now_ms();
	if (rv != 0) {
		slot_cut(d, sl, "a malformed message");
		mirai__d_dispatch(d);
		pthread_mutex_unlock(&d->mtx);
		mirai__msg_free(msg);
		return;
	}
	if (h.nframes == 1) {
		keep = msg;
	}
	while (forged == NULL && (rv = mirai__msg_next(&r, &f)) == 1) {
		mirai__result_view res;
		uint32_t why;

		if (!sl->online && f.type != MIRAI__F_HELLO &&
		    f.type != MIRAI__F_GONE) {
			forged = "a frame before HELLO";
			break;
		}
		switch (f.type) {
		case MIRAI__F_HELLO:
			if (!sl->online) {
				slot_hello(d, sl, &f);
			}
			break;
		case MIRAI__F_GONE:
			slot_gone(d, ds);
			break;
		case MIRAI__F_RESULT:
			if (mirai__result_decode(&f, &res) != 0 ||
			    sl->busy == NULL || sl->busy->id != res.id) {
				forged = "a result for a task it does not hold";
				break;
			}
			finish_busy(d, sl, &f, &keep);
			break;
		case MIRAI__F_BOUNCE:
			if (slot_bounce(d, sl, &f) != 0) {
				forged = "a bounce that does not match a task it holds";
			}
			break;
		case MIRAI__F_BYE:
			if (mirai__u32_frame_decode(&f, &why) == 0) {
				MIRAI__LOG(MIRAI_LOG_INFO, TAG,
				    "slot %zu: server %s:%d is leaving (exit code "
				    "%u)",
				    sl->idx, sl->host, sl->pid, why);
			}
			sl->leaving = 1;
			mirai__d_idle_remove(d, sl);
			break;
		case MIRAI__F_PING:
		case MIRAI__F_PONG:
			break;
		default:
			forged = "a frame a server never sends";
			break;
		}
	}
	if (forged == NULL && rv != 0) {
		forged = "a garbled frame";
	}
	if (forged != NULL) {
		slot_cut(d, sl, forged);
	} else if (sl->leaving && sl->busy == NULL) {
		/* Everything it had is back: let it go. */
		mirai__d_slot_exit(d, sl, 0);
	}
	mirai__d_dispatch(d);
	pthread_mutex_unlock(&d->mtx);
	if (h.nframes != 1 || keep != NULL) {
		mirai__msg_free(msg);
	}
}

static void
slot_rx(void *arg, mirai__msg *msg)
{
	slot_msg(arg, msg);
}

static void
slot_tx(void *arg, int rv)
{
	dsock *ds           = arg;
	mirai_dispatcher *d = ds->d;

	pthread_mutex_lock(&d->mtx);
	ds->sending = 0;
	if (rv == 0) {
		mirai__d_slot_send(d, ds);
	}
	pthread_mutex_unlock(&d->mtx);
}

/* The server of a slot is gone (deferred from the pipe callback, which
 * must not send).  Its task is retried or reported. */
typedef struct lost_job {
	mirai_dispatcher *d;
	dtask *t;
	size_t slot;
	char who[160];
} lost_job;

static void
slot_lost_job(void *arg)
{
	lost_job *j         = arg;
	mirai_dispatcher *d = j->d;
	dtask *t            = j->t;

	pthread_mutex_lock(&d->mtx);
	if (t != NULL && !d->closing && !t->orphan) {
		if (t->retries > 0) {
			/* Back to the head of the line. */
			t->retries--;
			d->retried++;
			d->slots[j->slot].retries++;
			MIRAI__LOG(MIRAI_LOG_WARN, TAG,
			    "slot %zu: server %s lost mid-task; task %" PRIu64
			    " requeued (%d retries left)",
			    j->slot, j->who, t->id, t->retries);
			mirai__d_q_push(d, t, 1);
		} else {
			char text[256];
			snprintf(text, sizeof text,
			    "server %s at slot %zu was lost while running the "
			    "task",
			    j->who, j->slot);
			MIRAI__LOG(MIRAI_LOG_WARN, TAG, "slot %zu: %s", j->slot,
			    text);
			mirai__d_up_error(d, t->id, MIRAI_ECONNRESET, text);
			mirai__d_dtask_free(d, t);
		}
	} else if (t != NULL) {
		mirai__d_dtask_free(d, t);
	}
	mirai__d_dispatch(d);
	d->pending--;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
	free(j);
}

/* The server of sl is lost (its pipe went, or it fell silent): its task is
 * retried or reported (deferred: this may run in a pipe callback, which
 * must not send), and the slot goes offline.  Called locked. */
static void
slot_lost(mirai_dispatcher *d, slot *sl)
{
	lost_job *j = calloc(1, sizeof *j);

	mirai__d_idle_remove(d, sl);
	if (j != NULL) {
		j->d    = d;
		j->t    = sl->busy;
		j->slot = sl->idx;
		snprintf(j->who, sizeof j->who, "%s:%d",
		    sl->host[0] ? sl->host : "?", sl->pid);
		sl->busy = NULL;
		d->pending++;
		if (mirai__defer(slot_lost_job, j) != 0) {
			d->pending--;
			free(j);
		}
	}
	sl->online  = 0;
	sl->leaving = 0;
	if (d->watch != NULL) {
		d->watch(d->watch_arg);
	}
}

void
mirai__d_slots_beat(mirai_dispatcher *d, int64_t now)
{
	for (size_t i = 0; i < d->nslots; i++) {
		slot *sl  = &d->slots[i];
		dsock *ds = sl->cur;

		if (ds == NULL || !ds->has_pipe || ds->muted || sl->gone) {
			continue;
		}
		if (now - ds->last_rx > d->hb) {
			/* Closing the pipe is unsafe (the peer may wake up
			 * sending): it is muted, told to exit in case it
			 * comes back, and cleaned up when it goes. */
			MIRAI__LOG(MIRAI_LOG_WARN, TAG,
			    "slot %zu: server %s:%d silent for %lld ms "
			    "(heartbeat %lld ms): taken as lost",
			    sl->idx, sl->host[0] ? sl->host : "?", sl->pid,
			    (long long) (now - ds->last_rx), (long long) d->hb);
			slot_lost(d, sl);
			mirai__d_slot_exit(d, sl, MIRAI__EXIT_CANCEL);
			ds->muted = 1;
		} else if (now - ds->last_tx >= d->hb / 3 && !sl->exit_sent) {
			mirai__d_slot_ctrl(d, sl, MIRAI__F_PING, (uint64_t) now,
			    1);
		}
	}
	mirai__d_dispatch(d);
}

static int
slot_pipe(void *arg, int ev, uint32_t pipe)
{
	dsock *ds           = arg;
	mirai_dispatcher *d = ds->d;
	slot *sl            = ds->sl;
	int refuse          = 0;

	pthread_mutex_lock(&d->mtx);
	if (ev == MIRAI__PIPE_ADD) {
		if (ds->has_pipe || ds->retired || d->closing) {
			/* One server per URL; closing before NNG receives on
			 * the pipe is safe. */
			if (!ds->retired && !d->closing) {
				MIRAI__LOG(MIRAI_LOG_WARN, TAG,
				    "slot %zu: refused a second server at %s "
				    "(one is connected)",
				    sl->idx, sl->url);
			}
			refuse = 1;
		} else {
			ds->has_pipe = 1;
			ds->pipe_id  = pipe;
			ds->last_rx  = ds->last_tx = mirai__now_ms();
			d->live_pipes++;
		}
	} else if (ev == MIRAI__PIPE_GONE && ds->has_pipe &&
	    ds->pipe_id == pipe) {
		ds->has_pipe = 0;
		ds->muted    = 0;
		d->live_pipes--;
		mirai__outq_clear(&ds->q);
		if (ds == sl->cur) {
			if (sl->online) {
				MIRAI__LOG(MIRAI_LOG_INFO, TAG,
				    "slot %zu: server %s:%d disconnected", sl->idx,
				    sl->host, sl->pid);
			}
			slot_lost(d, sl);
			sl->exit_sent = 0;
			sl->gone      = 0;
		}
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->mtx);
	return refuse;
}

/* ---- slots: sockets --------------------------------------------------- */

int
mirai__d_dsock_open(mirai_dispatcher *d, slot *sl, const char *listen_url,
    dsock **out, char **resolved, mirai_errmsg *err)
{
	dsock *ds = calloc(1, sizeof *ds);
	mirai__link_cfg cfg = {
		.max_msg = d->opts.server->max_msg,
		.events  = (1u << MIRAI__PIPE_ADD) | (1u << MIRAI__PIPE_GONE),
		.recv    = slot_rx,
		.pipe    = slot_pipe,
		.sent    = slot_tx,
		.arg     = ds,
		.tls     = D_TLS(d),
	};
	int rv;

	if (ds == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	ds->sl = sl;
	ds->d  = d;
	if ((rv = mirai__link_open(&ds->link, &cfg, err)) != 0) {
		free(ds);
		return rv;
	}
	if ((rv = mirai__link_listen(ds->link, listen_url, resolved, err)) != 0) {
		mirai__link_close(ds->link);
		free(ds);
		return rv;
	}
	mirai__link_start(ds->link);
	*out = ds;
	return 0;
}

/* Close a retired socket (on the service thread: closing waits for the
 * socket's callbacks, which must not be the caller). */
static void
dsock_close_job(void *arg)
{
	dsock *ds           = arg;
	mirai_dispatcher *d = ds->d;

	mirai__link_close(ds->link);
	mirai__outq_clear(&ds->q);
	free(ds);
	pthread_mutex_lock(&d->mtx);
	d->pending--;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
}

typedef struct later {
	mirai__timer timer;
	dsock *ds;
} later;

static void
dsock_close_later(void *arg)
{
	later *l = arg;

	if (mirai__defer(dsock_close_job, l->ds) != 0) {
		dsock_close_job(l->ds);
	}
	free(l);
}

static void
random_token(char *hex)
{
	unsigned char b[16];
	size_t got = 0;

	while (got < sizeof b) {
		ssize_t n = getrandom(b + got, sizeof b - got, 0);
		if (n > 0) {
			got += (size_t) n;
		}
	}
	for (size_t i = 0; i < sizeof b; i++) {
		snprintf(hex + 2 * i, 3, "%02x", b[i]);
	}
}

/* The URL slot sl listens on: base + "/<token>/<i>" for paths. */
void
mirai__d_slot_listen_url(mirai_dispatcher *d, slot *sl, char *buf,
    size_t len)
{
	char token[33];

	if (!sl->has_path) {
		snprintf(buf, len, "%s", sl->base);
		return;
	}
	if (d->no_token) {
		snprintf(buf, len, "%s/%zu", sl->base, sl->idx);
		return;
	}
	random_token(token);
	snprintf(buf, len, "%s/%s/%zu", sl->base, token, sl->idx);
}

/* ---- saisei ------------------------------------------------------------- */

/* saisei: a fresh URL for slot i; the reply holds it or the reason why
 * not.  Called locked. */
mirai__out *
mirai__d_saisei(mirai_dispatcher *d, uint64_t req, uint32_t i, int force)
{
	char url[512], text[600];
	mirai_errmsg err = {{0}};
	dsock *old, *ds;
	char *resolved = NULL;
	slot *sl;
	int rv;

	if (i >= d->nslots) {
		snprintf(text, sizeof text, "no slot %u: there are %zu", i,
		    d->nslots);
		return mirai__d_reply_text(req, MIRAI_EINVAL, text);
	}
	sl = &d->slots[i];
	if (!sl->has_path) {
		snprintf(text, sizeof text,
		    "slot %u listens on %s, which has no path: only URLs with a "
		    "path (ws://) can be regenerated",
		    i, sl->url);
		return mirai__d_reply_text(req, MIRAI_ENOTSUP, text);
	}
	old = sl->cur;
	if (old->has_pipe && !force) {
		snprintf(text, sizeof text,
		    "a server is connected at slot %u: use force to cut it off",
		    i);
		return mirai__d_reply_text(req, MIRAI_EBUSY, text);
	}
	mirai__d_slot_listen_url(d, sl, url, sizeof url);
	if ((rv = mirai__d_dsock_open(d, sl, url, &ds, &resolved, &err)) != 0) {
		return mirai__d_reply_text(req, rv, err.text);
	}
	if (old->has_pipe) {
		/* Cut off: the task resolves with "closed", the server is told
		 * to exit, and its socket closes after a grace period. */
		if (sl->busy != NULL) {
			dtask *t = sl->busy;
			sl->busy = NULL;
			mirai__d_up_error(d, t->id, MIRAI_ECLOSED,
			    "the server's URL was regenerated by saisei(force) "
			    "while it ran the task");
			mirai__d_dtask_free(d, t);
		}
		mirai__d_slot_exit(d, sl, MIRAI__EXIT_CANCEL);
	}
	mirai__d_idle_remove(d, sl);
	old->retired  = 1;
	sl->cur       = ds;
	sl->online    = 0;
	sl->leaving   = 0;
	sl->exit_sent = 0;
	sl->gone      = 0;
	sl->instance  = 0;
	sl->assigned  = sl->complete = 0;
	free(sl->url);
	sl->url = resolved;
	{
		later *l = calloc(1, sizeof *l);
		d->pending++;
		if (l != NULL) {
			l->ds        = old;
			l->timer.fn  = dsock_close_later;
			l->timer.arg = l;
		}
		if (l == NULL ||
		    mirai__timer_arm(&l->timer, mirai__now_ms() + CUTOFF_GRACE_MS) !=
			0) {
			free(l);
			if (mirai__defer(dsock_close_job, old) != 0) {
				d->pending--;
			}
		}
	}
	MIRAI__LOG(MIRAI_LOG_INFO, TAG, "slot %u: regenerated: %s", i, sl->url);
	return mirai__d_reply_text(req, 0, sl->url);
}
