/*
 * disp_slots.c: the dispatcher's downstream side, one slot per server:
 * sending to servers (tasks, control frames, EXIT), frames from servers
 * (HELLO with the slot's secret, results, bounces, BYE, GONE) including
 * cutting off a peer that sends what no server sends, lost servers (their
 * tasks retried or reported), heartbeats, and saisei's fresh secrets.
 * Where servers connect is disp_socks.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatcher.h"

/* Grace before closing a slot cut off by saisei(force). */
#define CUTOFF_GRACE_MS 500

/*
 * Messages a slot on a shared listener may have unacknowledged.  There
 * PAIR1 is polyamorous and silently drops a message when the pipe's queue
 * (2 messages) is full, as the client's links do (see client.h): the last
 * message the window allows asks for an acknowledgement at once, and what
 * queues up meanwhile goes packed into the next one.  One task at a time
 * never came near it; a server holding prefetched tasks does.  A slot's
 * own socket is monogamous and holds messages until the pipe takes them.
 */
#define SLOT_WINDOW 2

/* ---- sending ---------------------------------------------------------- */

void
mirai__d_slot_send(mirai_dispatcher *d, dsock *ds)
{
	mirai__msghdr h = {0};
	mirai__msg *msg;

	(void) d;
	/* At most SLOT_WINDOW unacknowledged on a shared listener, but an
	 * EXIT goes past it (see mirai__d_slot_exit()). */
	while (!ds->sending && ds->q.head != NULL &&
	    (ds->lis == NULL || ds->urgent ||
		(uint32_t) (ds->seq - ds->seq_acked) < SLOT_WINDOW)) {
		ds->urgent = 0;
		memset(&h, 0, sizeof h);
		h.seq = ++ds->seq;
		if (ds->lis != NULL &&
		    (uint32_t) (h.seq - ds->seq_acked) >= SLOT_WINDOW) {
			h.flags |= MIRAI__M_ACKREQ;
		}
		if (mirai__outq_pack(&ds->q, &h, &msg, NULL, NULL) != 0) {
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "out of memory sending");
			return;
		}
		ds->last_tx = mirai__now_ms();
		if (ds->lis != NULL) {
			mirai__msg_set_pipe(msg, ds->pipe_id);
			if (!mirai__tx_send(ds->tx, msg)) {
				ds->sending = 1;
			}
		} else if (!mirai__link_send(ds->link, msg)) {
			ds->sending = 1;
		}
	}
}

void
mirai__d_slot_ctrl(mirai_dispatcher *d, slot *sl, uint8_t type, uint64_t v,
    int u64)
{
	mirai__out *o = mirai__out_ctrl(type, u64 ? 8 : 0, v);

	if (o == NULL || sl->cur == NULL) {
		mirai__out_free(o);
		return;
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
	mirai__d_unready(d, sl);
	/* EXIT goes past a full window: a server stopped and woken must
	 * find it before its own heartbeat gives up on us (what it held
	 * went out long ago, so its queue has room). */
	sl->cur->urgent = 1;
	if ((o = mirai__out_ctrl(MIRAI__F_EXIT, 4, flags)) != NULL) {
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

/* The task with this id that sl holds (the oldest such: a task of a
 * client that left may share its id with a newer one), and in *prev the
 * one held before it; NULL if it holds none. */
static dtask *
held_find(slot *sl, uint64_t id, dtask **prev)
{
	*prev = NULL;
	for (dtask *t = sl->held; t != NULL; *prev = t, t = t->next) {
		if (t->id == id) {
			return t;
		}
	}
	return NULL;
}

/* A task its server gave back, or lost, that nobody waits for any more
 * (its client left, or cancelled it) goes instead of back to the queue:
 * 1 when it went.  Called locked. */
static int
drop_unwanted(mirai_dispatcher *d, dtask *t)
{
	if (!t->orphan && !t->cancel_sent) {
		return 0;
	}
	if (!t->orphan) {
		mirai__d_up_error(d, t->id, MIRAI_ECANCELED, "task cancelled");
	}
	mirai__d_dtask_free(d, t);
	return 1;
}

/* Held tasks of a server that is cut off (list, oldest first): back to the
 * head of the queue in their order, the dispatcher's own copies, but for
 * those nobody waits for.  Called locked. */
static void
held_requeue(mirai_dispatcher *d, dtask *list)
{
	dtask *keep = NULL, **tail = &keep;

	while (list != NULL) {
		dtask *t = list;
		list     = t->next;
		t->next  = NULL;
		if (!drop_unwanted(d, t)) {
			*tail = t;
			tail  = &t->next;
		}
	}
	mirai__d_q_push_list(d, keep);
}

/* Task t, held by sl (after prev), is done; forward the frame at f (a
 * RESULT) to the client, taking msg when the frame is all of it and big.
 * Results come in the order the server runs its tasks, which is the order
 * they were sent, but for one cancelled before it started: that answer
 * comes at once. */
static void
finish_task(mirai_dispatcher *d, slot *sl, dtask *prev, dtask *t,
    const mirai__frame *f, mirai__msg **keep)
{
	size_t flen = MIRAI__FRAME_HDR_LEN + (size_t) f->len;
	int orphan  = t->orphan;
	mirai__out *o;

	mirai__d_held_take(sl, prev, t);
	sl->complete++;
	sl->unsure += t->cancel_sent;
	d->completed++;
	mirai__d_dtask_free(d, t);
	/* The server's next task first, then the result. */
	mirai__d_ready(d, sl);
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

/* A HELLO on sl's pipe: 0 when sl is online now, 1 when it lacks the
 * slot's secret (forged), -1 when it does not decode. */
static int
slot_hello(mirai_dispatcher *d, slot *sl, const mirai__frame *f)
{
	mirai__hello_view h;
	char who[64];
	int rv;

	snprintf(who, sizeof who, "slot %zu", sl->idx);
	rv = mirai__hello_admit(f, &h, d->no_token ? NULL : sl->cur->secret,
	    (uint32_t) sl->idx, TAG, who);
	if (rv != 0) {
		if (rv < 0) {
			mirai__d_slot_exit(d, sl, 0);
		}
		return rv;
	}
	sl->online   = 1;
	sl->leaving  = 0;
	sl->gone     = 0;
	sl->instance++;
	sl->assigned = sl->complete = 0;
	sl->max_tasks = h.max_tasks;
	sl->unsure    = 0;
	sl->bounced   = 0;
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
	mirai__d_ready(d, sl);
	mirai__d_dispatch(d);
	return 0;
}

/*
 * The server of sl sent what no honest server sends: a frame that does not
 * decode, an answer for a task it does not hold, a bounce that is not a
 * task it holds, a frame before its HELLO, a HELLO without the slot's
 * secret.  Nothing more is read from it; the tasks it held go back to
 * the head of the queue in their order (the dispatcher's own copies) and
 * the server is told to exit.  A shared slot moves to a fresh secret at
 * once, so that the peer cannot hold it; a local slot stays offline until
 * the peer disconnects.  Called locked.
 */
static void
slot_cut(mirai_dispatcher *d, slot *sl, const char *what)
{
	dsock *ds = sl->cur;
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
	held_requeue(d, mirai__d_held_take_all(sl));
	mirai__d_unready(d, sl);
	sl->online = 0;
	if (sl->shared) {
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

/* A BOUNCE: the frame one of sl's held tasks came in, given back
 * unstarted by a leaving server.  A server bounces what it holds in
 * order, so each goes back behind the one bounced before it, if that one
 * still waits.  Returns 0, or -1 when it is not exactly a task it holds. */
static int
slot_bounce(mirai_dispatcher *d, slot *sl, const mirai__frame *f)
{
	mirai__frame inner;
	mirai__task_view tv;
	dtask *t, *prev, *behind;

	if (mirai__bounce_decode(f, &inner) != 0 ||
	    mirai__task_decode(&inner, &tv) != 0) {
		return -1;
	}
	for (t = held_find(sl, tv.id, &prev); t != NULL; prev = t, t = t->next) {
		/* Byte for byte what it was given (the body; the header
		 * matched by type and length). */
		const uint8_t *mine = t->big
		    ? mirai__msg_body(mirai__d_msg_of(t)) + MIRAI__HDR_LEN +
			MIRAI__FRAME_HDR_LEN
		    : t->frame;
		if (t->id == tv.id &&
		    MIRAI__FRAME_HDR_LEN + inner.len == t->len &&
		    memcmp(mine, inner.body, inner.len) == 0) {
			break;
		}
	}
	if (t == NULL) {
		return -1;
	}
	/* Only a leaving server bounces: it gets nothing more, not even
	 * before its BYE comes. */
	sl->leaving = 1;
	mirai__d_unready(d, sl);
	mirai__d_held_take(sl, prev, t);
	if (drop_unwanted(d, t)) {
		return 0;
	}
	/* The dispatcher's copy goes back, not the bytes that came. */
	behind = sl->bounced ? mirai__idmap_get(&d->tasks, sl->bounce_id)
			     : NULL;
	if (behind != NULL && behind->queued) {
		mirai__d_q_push_after(d, behind, t);
	} else {
		mirai__d_q_push(d, t, 1);
	}
	sl->bounced   = 1;
	sl->bounce_id = t->id;
	return 0;
}

/* sl's server said GONE on ds.  Called locked. */
static void
slot_gone(mirai_dispatcher *d, dsock *ds)
{
	if (ds->sl->gone || !ds->has_pipe) {
		return;
	}
	ds->sl->gone = 1;
	pthread_cond_broadcast(&d->cv);
	mirai__d_pipe_close_later(d, ds->link, ds->pipe_id, 0);
}

/* ---- frames from servers ------------------------------------------------ */

/* The frames of msg from the server at ds.  Called locked; returns 1 when
 * the caller frees msg, 0 when it was passed on. */
int
mirai__d_slot_frames(mirai_dispatcher *d, dsock *ds, mirai__msg *msg)
{
	slot *sl = ds->sl;
	mirai__reader r;
	mirai__msghdr h;
	mirai__frame f;
	mirai__msg *keep   = NULL;
	const char *forged = NULL;
	int rv;

	if (ds->retired || ds != sl->cur) {
		return 1;
	}
	rv = mirai__msg_open(&r, mirai__msg_body(msg), mirai__msg_len(msg), &h);
	if (rv == 0 && (int32_t) (h.ack - ds->seq_acked) > 0 &&
	    (int32_t) (h.ack - ds->seq) <= 0) {
		/* The window opens: whatever waited may go (the EXIT for a
		 * muted peer, too). */
		ds->seq_acked = h.ack;
		mirai__d_slot_send(d, ds);
	}
	if (ds->muted) {
		return 1;
	}
	ds->last_rx = mirai__now_ms();
	if (rv != 0) {
		slot_cut(d, sl, "a malformed message");
		mirai__d_dispatch(d);
		return 1;
	}
	if (h.nframes == 1) {
		keep = msg;
	}
	while (forged == NULL && (rv = mirai__msg_next(&r, &f)) == 1) {
		mirai__result_view res;
		dtask *t, *prev;
		uint32_t why;

		if (!sl->online && f.type != MIRAI__F_HELLO &&
		    f.type != MIRAI__F_GONE) {
			forged = "a frame before HELLO";
			break;
		}
		switch (f.type) {
		case MIRAI__F_HELLO:
			if (!sl->online && slot_hello(d, sl, &f) > 0) {
				forged = "a HELLO without the slot's secret";
			}
			break;
		case MIRAI__F_GONE:
			slot_gone(d, ds);
			break;
		case MIRAI__F_RESULT:
			if (mirai__result_decode(&f, &res) != 0 ||
			    (t = held_find(sl, res.id, &prev)) == NULL) {
				forged = "a result for a task it does not hold";
				break;
			}
			finish_task(d, sl, prev, t, &f, &keep);
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
			mirai__d_unready(d, sl);
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
	} else if (sl->leaving && sl->held == NULL) {
		/* Everything it had is back: let it go. */
		mirai__d_slot_exit(d, sl, 0);
	}
	mirai__d_dispatch(d);
	return h.nframes != 1 || keep != NULL;
}

/* A message on a slot's own socket. */
void
mirai__d_slot_rx(void *arg, mirai__msg *msg)
{
	dsock *ds           = arg;
	mirai_dispatcher *d = ds->d;
	int drop;

	pthread_mutex_lock(&d->mtx);
	drop = mirai__d_slot_frames(d, ds, msg);
	pthread_mutex_unlock(&d->mtx);
	if (drop) {
		mirai__msg_free(msg);
	}
}

void
mirai__d_slot_tx(void *arg, int rv)
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

/* ---- lost servers ------------------------------------------------------- */

/* The server of a slot is gone (deferred from the pipe callback, which
 * must not send).  Its tasks are retried or reported. */
typedef struct lost_job {
	mirai_dispatcher *d;
	dtask *held;       /* oldest first */
	size_t slot;
	char who[160];
} lost_job;

/*
 * Each task the lost server held is retried (back to the head of the
 * line, in the order they were sent) or reported with ECONNRESET.  Only
 * the oldest was surely running; one queued behind it may have started
 * too (if a result was lost on the way), so all spend a retry alike: a
 * task runs twice only where its retries allow it.
 */
static void
slot_lost_job(void *arg)
{
	lost_job *j         = arg;
	mirai_dispatcher *d = j->d;
	dtask *retry = NULL, **tail = &retry;
	int first = 1;

	pthread_mutex_lock(&d->mtx);
	while (j->held != NULL) {
		dtask *t = j->held;
		const char *how = first ? "mid-task" : "holding a prefetched task";

		j->held = t->next;
		t->next = NULL;
		first   = 0;
		if (d->closing) {
			mirai__d_dtask_free(d, t);
		} else if (drop_unwanted(d, t)) {
			continue;
		} else if (t->retries > 0) {
			t->retries--;
			d->retried++;
			d->slots[j->slot].retries++;
			MIRAI__LOG(MIRAI_LOG_WARN, TAG,
			    "slot %zu: server %s lost %s; task %" PRIu64
			    " requeued (%d retries left)",
			    j->slot, j->who, how, t->id, t->retries);
			*tail = t;
			tail  = &t->next;
		} else {
			char text[256];
			snprintf(text, sizeof text,
			    "server %s at slot %zu was lost while %s the task",
			    j->who, j->slot,
			    how[0] == 'm' ? "running" : "holding (prefetched)");
			MIRAI__LOG(MIRAI_LOG_WARN, TAG, "slot %zu: %s", j->slot,
			    text);
			mirai__d_up_error(d, t->id, MIRAI_ECONNRESET, text);
			mirai__d_dtask_free(d, t);
		}
	}
	mirai__d_q_push_list(d, retry);
	mirai__d_dispatch(d);
	d->pending--;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
	free(j);
}

/* The server of sl is lost (its pipe went, or it fell silent): its tasks
 * are retried or reported (deferred: this may run in a pipe callback,
 * which must not send), and the slot goes offline.  Called locked. */
void
mirai__d_slot_lost(mirai_dispatcher *d, slot *sl)
{
	lost_job *j = calloc(1, sizeof *j);

	mirai__d_unready(d, sl);
	if (j != NULL) {
		j->d    = d;
		j->held = mirai__d_held_take_all(sl);
		j->slot = sl->idx;
		snprintf(j->who, sizeof j->who, "%s:%d",
		    sl->host[0] ? sl->host : "?", sl->pid);
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

/* ---- heartbeats --------------------------------------------------------- */

void
mirai__d_slots_beat(mirai_dispatcher *d, int64_t now)
{
	mirai__d_pipes_sweep(d, now);
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
			mirai__d_slot_lost(d, sl);
			mirai__d_slot_exit(d, sl, MIRAI__EXIT_CANCEL);
			ds->muted = 1;
		} else if (now - ds->last_tx >= d->hb / 3 && !sl->exit_sent) {
			mirai__d_slot_ctrl(d, sl, MIRAI__F_PING, (uint64_t) now,
			    1);
		}
	}
	mirai__d_dispatch(d);
}

/* ---- saisei ------------------------------------------------------------- */

/* saisei: a fresh secret, so a fresh URL, for slot i; the reply holds the
 * URL or the reason why not.  Called locked. */
mirai__out *
mirai__d_saisei(mirai_dispatcher *d, uint64_t req, uint32_t i, int force)
{
	char text[600];
	dsock *old, *ds;
	char *url;
	slot *sl;

	if (i >= d->nslots) {
		snprintf(text, sizeof text, "no slot %u: there are %zu", i,
		    d->nslots);
		return mirai__d_reply_text(req, MIRAI_EINVAL, text);
	}
	sl = &d->slots[i];
	if (!sl->shared || d->no_token) {
		snprintf(text, sizeof text,
		    "slot %u %s: only a slot with a secret on a shared listener "
		    "can be regenerated",
		    i,
		    d->no_token ? "has no secret (no_token)"
				: "is a local slot with a socket of its own");
		return mirai__d_reply_text(req, MIRAI_ENOTSUP, text);
	}
	old = sl->cur;
	if (old->has_pipe && !force) {
		snprintf(text, sizeof text,
		    "a server is connected at slot %u: use force to cut it off",
		    i);
		return mirai__d_reply_text(req, MIRAI_EBUSY, text);
	}
	if ((ds = mirai__d_dsock_new(d, sl, old->lis)) == NULL ||
	    (url = mirai__d_slot_url(d, ds, old->lis->url)) == NULL) {
		free(ds);
		return mirai__d_reply_text(req, MIRAI_ENOMEM, "out of memory");
	}
	if (old->has_pipe) {
		/* Cut off: the task it runs resolves with "closed", those
		 * prefetched behind it go back to the head of the queue, the
		 * server is told to exit, and its pipe closes after a grace
		 * period. */
		dtask *t = mirai__d_held_take_all(sl);
		if (t != NULL) {
			dtask *rest = t->next;
			t->next     = NULL;
			if (!t->orphan) {
				mirai__d_up_error(d, t->id, MIRAI_ECLOSED,
				    "the server's URL was regenerated by "
				    "saisei(force) while it ran the task");
			}
			mirai__d_dtask_free(d, t);
			held_requeue(d, rest);
		}
		mirai__d_slot_exit(d, sl, MIRAI__EXIT_CANCEL);
		mirai__d_pipe_close_later(d, old->link, old->pipe_id, CUTOFF_GRACE_MS);
	}
	mirai__d_unready(d, sl);
	old->retired  = 1;
	sl->cur       = ds;
	sl->online    = 0;
	sl->leaving   = 0;
	sl->exit_sent = 0;
	sl->gone      = 0;
	sl->instance  = 0;
	sl->assigned  = sl->complete = 0;
	free(sl->url);
	sl->url = url;
	if (!old->has_pipe) {
		mirai__d_dsock_free_later(d, old);
	}
	MIRAI__LOG(MIRAI_LOG_INFO, TAG, "slot %u: regenerated", i);
	return mirai__d_reply_text(req, 0, sl->url);
}
