/*
 * dispatcher.c: the dispatcher.  It sits between one client and a set of
 * server slots, keeps the FIFO queue of tasks and gives a task only to a
 * server that is online and idle.
 *
 * Links: upstream, the dispatcher dials the client like a server does and
 * introduces itself as a dispatcher; or it listens for one client at a
 * time to attach (mirai-launch), and outlives its clients.  A control
 * socket, if asked for, answers status and saisei requests of any process.  Downstream, every slot listens on a
 * URL of its own with a monogamous PAIR1 socket: a send waits for the pipe
 * instead of being dropped, NNG itself refuses a second pipe, and the
 * dispatcher addresses each server directly.  ws slots share one port.
 *
 * Scheduling is event driven: a task arrives, a server says HELLO, or a
 * result comes back, and dispatch() pairs the head of the queue with the
 * server that has been idle longest.  On a result the server gets its next
 * task before the result is forwarded, so the server waits for nothing but
 * the round trip.  Everything runs in NNG callbacks under one mutex; the
 * caller of mirai_dispatcher_run() only waits for the end.
 *
 * Closing follows the rule of client.h: a started pipe is closed only once
 * the peer has gone quiet (EXIT sent, or the link already down), because
 * NNG 1.5.2 can hang closing a pipe that is receiving.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"


#define TAG "dispatcher"
/* Grace before closing a slot cut off by saisei(force). */
#define CUTOFF_GRACE_MS 500
/* How long to wait for servers to close at the end. */
#define EXIT_WAIT_MS 1000
/* How long to wait for local servers before dialing the client. */
#define LOCAL_START_MS 10000

typedef struct slot slot;
typedef struct dsock dsock;

/*
 * A queued or running task: its TASK frame as it came.  Small, because a
 * million may wait: a big task keeps its message instead, its pointer
 * where a small task's frame starts.
 */
typedef struct dtask {
	struct dtask *next;        /* FIFO while queued */
	struct dtask *hnext;       /* id table */
	uint64_t id;
	uint32_t len;              /* frame length */
	uint8_t retries;
	unsigned queued : 1;
	unsigned orphan : 1;       /* its client left: run out, report nothing */
	unsigned big : 1;          /* in a message of its own (see msg_of) */
	unsigned dropped : 1;      /* cancelled while queued: freed when
	                              reached, so the FIFO needs one link */
	uint8_t frame[];           /* a small task's frame, without its 8-byte
	                              frame header (rebuilt from len) */
} dtask;

/* A task is allocated to the end of its frame, not to sizeof(dtask): a
 * million queued tasks are a million of these. */
#define DTASK_HDR offsetof(dtask, frame)

/* The message of a big task (NULL once handed on), kept unaligned where a
 * small task's frame would be. */
static mirai__msg *
msg_of(const dtask *t)
{
	mirai__msg *m;

	memcpy(&m, t->frame, sizeof m);
	return m;
}

static void
set_msg(dtask *t, mirai__msg *m)
{
	memcpy(t->frame, &m, sizeof m);
}

/* One listening socket of a slot; saisei replaces it with a new one. */
struct dsock {
	slot *sl;
	mirai_dispatcher *d;
	mirai__link *link;
	mirai__outq q;
	int sending;
	int has_pipe;
	uint32_t pipe_id;
	int retired;
	int muted;         /* its peer was cut off: nothing more is read */
	uint32_t seq;
};

struct slot {
	mirai_dispatcher *d;
	size_t idx;
	dsock *cur;
	char *url;         /* what servers dial */
	char *base;        /* scheme://host:port for regenerating paths */
	int has_path;
	int online;        /* HELLO received on the current pipe */
	int leaving;       /* BYE received */
	int exit_sent;
	int gone;          /* GONE received: it sends nothing more */
	dtask *busy;
	uint64_t instance, assigned, complete, retries;
	int pid;
	char host[64];
	char binding[96];
	slot *idle_next;
	int idle;
};

struct mirai_dispatcher {
	mirai_dispatcher_opts opts;
	char **strings;    /* copies of the option strings */
	size_t nstrings;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	slot *slots;
	size_t nslots;
	int no_token;

	/* upstream */
	int listen;        /* clients attach to us (else we dial one) */
	int listened;      /* sockets bound (mirai_dispatcher_listen) */
	uint32_t up_pipe_id;
	char *client_url;  /* resolved listen URL */
	mirai__link *ctl;  /* control socket, if any */
	char *control_url;
	mirai__link *up;
	mirai__outq up_q;
	int up_sending;
	uint32_t up_seq;
	uint32_t up_recv_seq;
	int up_connected;
	int up_lost;
	int exit_req;
	uint32_t exit_flags;
	int stop_req;
	int closing;
	int up_mute;       /* GONE sent to the client */

	/* queue */
	dtask *head, *tail;
	size_t qlen;
	dtask **table;
	size_t tcap, tcount;
	slot *idle_head, *idle_tail;
	uint64_t completed, retried;
	uint64_t forged;    /* peers cut off for frames no server sends */

	void (*watch)(void *arg); /* told of servers coming and going */
	void *watch_arg;
	int alive;         /* local servers not yet reaped */
	int live_pipes;    /* slot pipes not yet removed */
	int pending;       /* deferred jobs holding a reference */
	char last_failure[128];
};

/* ---- the task table --------------------------------------------------- */

static int
table_put(mirai_dispatcher *d, dtask *t)
{
	if (d->tcount >= d->tcap) {
		size_t cap = d->tcap == 0 ? 1024 : d->tcap * 2;
		dtask **tb = calloc(cap, sizeof *tb);
		if (tb == NULL) {
			return MIRAI_ENOMEM;
		}
		for (size_t i = 0; i < d->tcap; i++) {
			for (dtask *e = d->table[i], *n; e != NULL; e = n) {
				n        = e->hnext;
				e->hnext = tb[e->id & (cap - 1)];
				tb[e->id & (cap - 1)] = e;
			}
		}
		free(d->table);
		d->table = tb;
		d->tcap  = cap;
	}
	t->hnext                        = d->table[t->id & (d->tcap - 1)];
	d->table[t->id & (d->tcap - 1)] = t;
	d->tcount++;
	return 0;
}

static dtask *
table_get(mirai_dispatcher *d, uint64_t id)
{
	dtask *t;

	if (d->tcap == 0) {
		return NULL;
	}
	for (t = d->table[id & (d->tcap - 1)]; t != NULL && t->id != id;
	     t = t->hnext) {
	}
	return t;
}

static void
table_del(mirai_dispatcher *d, dtask *t)
{
	dtask **pp = &d->table[t->id & (d->tcap - 1)];

	while (*pp != NULL && *pp != t) {
		pp = &(*pp)->hnext;
	}
	if (*pp == t) {
		*pp = t->hnext;
		d->tcount--;
	}
}

static void
dtask_free(mirai_dispatcher *d, dtask *t)
{
	table_del(d, t);
	if (t->big && msg_of(t) != NULL) {
		mirai__msg_free(msg_of(t));
	}
	free(t);
}

/* ---- the FIFO and the idle list ----------------------------------------- */

static void
q_push(mirai_dispatcher *d, dtask *t, int front)
{
	t->queued = 1;
	if (front) {
		t->next = d->head;
		d->head = t;
		if (d->tail == NULL) {
			d->tail = t;
		}
	} else {
		t->next = NULL;
		if (d->tail != NULL) {
			d->tail->next = t;
		} else {
			d->head = t;
		}
		d->tail = t;
	}
	d->qlen++;
}

/* The head of the FIFO, freeing tasks dropped while they waited. */
static dtask *
q_pop(mirai_dispatcher *d)
{
	dtask *t;

	while ((t = d->head) != NULL) {
		d->head = t->next;
		if (d->head == NULL) {
			d->tail = NULL;
		}
		t->next   = NULL;
		t->queued = 0;
		if (!t->dropped) {
			d->qlen--;
			return t;
		}
		free(t);
	}
	return NULL;
}

/* Drop a queued task: out of the table and the count now, out of the
 * FIFO when reached. */
static void
q_drop(mirai_dispatcher *d, dtask *t)
{
	table_del(d, t);
	if (t->big && msg_of(t) != NULL) {
		mirai__msg_free(msg_of(t));
		set_msg(t, NULL);
	}
	t->dropped = 1;
	d->qlen--;
}

static void
idle_push(mirai_dispatcher *d, slot *sl)
{
	if (sl->idle || !sl->online || sl->leaving || sl->exit_sent) {
		return;
	}
	sl->idle      = 1;
	sl->idle_next = NULL;
	if (d->idle_tail != NULL) {
		d->idle_tail->idle_next = sl;
	} else {
		d->idle_head = sl;
	}
	d->idle_tail = sl;
}

static void
idle_remove(mirai_dispatcher *d, slot *sl)
{
	slot **pp = &d->idle_head, *prev = NULL;

	if (!sl->idle) {
		return;
	}
	while (*pp != NULL && *pp != sl) {
		prev = *pp;
		pp   = &(*pp)->idle_next;
	}
	if (*pp == sl) {
		*pp = sl->idle_next;
		if (d->idle_tail == sl) {
			d->idle_tail = prev;
		}
	}
	sl->idle      = 0;
	sl->idle_next = NULL;
}

/* ---- sending ---------------------------------------------------------- */

static void
slot_send(mirai_dispatcher *d, dsock *ds)
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
		if (!mirai__link_send(ds->link, msg)) {
			ds->sending = 1;
		}
	}
}

static void
up_send(mirai_dispatcher *d)
{
	mirai__msghdr h = {0};
	mirai__msg *msg;

	while (!d->up_sending && d->up_q.head != NULL && !d->up_lost) {
		memset(&h, 0, sizeof h);
		h.seq = ++d->up_seq;
		h.ack = d->up_recv_seq;
		if (mirai__outq_pack(&d->up_q, &h, &msg, NULL, NULL) != 0) {
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "out of memory sending");
			return;
		}
		if (!mirai__link_send(d->up, msg)) {
			d->up_sending = 1;
		}
	}
}

static void
up_queue(mirai_dispatcher *d, mirai__out *o)
{
	if (d->up_mute) {
		mirai__out_free(o);
		return;
	}
	mirai__outq_push(&d->up_q, o);
	up_send(d);
}

/* An error RESULT for the client. */
static void
up_error(mirai_dispatcher *d, uint64_t id, int status, const char *text)
{
	size_t len           = strlen(text);
	mirai__result_view r = {.id = id, .status = (uint32_t) status,
	    .data = (const uint8_t *) text, .len = len};
	mirai__out *o        = mirai__out_new(mirai__result_size(len));

	if (o == NULL) {
		MIRAI__LOG(MIRAI_LOG_ERROR, TAG,
		    "out of memory: the client will not hear of task %" PRIu64,
		    id);
		return;
	}
	mirai__result_encode(mirai__out_frame(o), &r);
	up_queue(d, o);
}

static void
slot_ctrl(mirai_dispatcher *d, slot *sl, uint8_t type, uint64_t v, int u64)
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
	slot_send(d, sl->cur);
}

/* Tell the server of sl to exit, cancelling its task or letting it
 * finish; it answers GONE. */
static void
slot_exit(mirai_dispatcher *d, slot *sl, uint32_t flags)
{
	mirai__out *o;

	if (sl->exit_sent || sl->cur == NULL || !sl->cur->has_pipe) {
		return;
	}
	sl->exit_sent = 1;
	idle_remove(d, sl);
	if ((o = mirai__out_new(MIRAI__U32_FRAME_LEN)) != NULL) {
		mirai__u32_frame_encode(mirai__out_frame(o), MIRAI__F_EXIT, flags);
		mirai__outq_push_front(&sl->cur->q, o);
		slot_send(d, sl->cur);
	}
}

/*
 * Send task t to slot sl.  The dispatcher keeps its own copy of every task
 * a server holds: a retry or a bounce requeues that copy, never bytes a
 * server sent back, so a server cannot change what another one runs.
 */
static int
send_task(mirai_dispatcher *d, slot *sl, dtask *t)
{
	mirai__out *o;

	if (t->big) {
		if ((o = malloc(sizeof *o)) == NULL) {
			return MIRAI_ENOMEM;
		}
		memset(o, 0, sizeof *o);
		o->len = t->len;
		if (mirai__msg_dup(&o->msg, msg_of(t)) != 0) {
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
	mirai__outq_push(&sl->cur->q, o);
	slot_send(d, sl->cur);
	return 0;
}

/* Pair queued tasks with idle servers.  Called locked. */
static void
dispatch(mirai_dispatcher *d)
{
	while (d->qlen > 0 && d->idle_head != NULL && !d->closing) {
		slot *sl = d->idle_head;
		dtask *t = q_pop(d);

		if (t == NULL) {
			break;
		}
		idle_remove(d, sl);
		if (send_task(d, sl, t) != 0) {
			/* Out of memory: put both back and wait for an event. */
			q_push(d, t, 1);
			idle_push(d, sl);
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "out of memory dispatching");
			return;
		}
		sl->busy = t;
		sl->assigned++;
	}
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
	dtask_free(d, t);
	/* The server's next task first, then the result. */
	if (!sl->leaving) {
		idle_push(d, sl);
	}
	dispatch(d);
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
			up_queue(d, o);
			return;
		}
	}
	if ((o = mirai__out_new(flen)) == NULL) {
		MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "out of memory forwarding a result");
		return;
	}
	memcpy(mirai__out_frame(o), f->body - MIRAI__FRAME_HDR_LEN, flen);
	up_queue(d, o);
}

static void
slot_hello(mirai_dispatcher *d, slot *sl, const mirai__frame *f)
{
	mirai__hello_view h;

	if (mirai__hello_decode(f, &h) != 0 || h.proto != MIRAI__PROTO) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "slot %zu: a peer sent a bad HELLO; telling it to exit",
		    sl->idx);
		slot_exit(d, sl, 0);
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
	if (d->watch != NULL) {
		d->watch(d->watch_arg);
	}
	MIRAI__LOG(MIRAI_LOG_INFO, TAG, "slot %zu: server %s:%d online (%s)",
	    sl->idx, sl->host, sl->pid, sl->url);
	pthread_cond_broadcast(&d->cv);
	idle_push(d, sl);
	dispatch(d);
}

static mirai__out *saisei(mirai_dispatcher *d, uint64_t req, uint32_t i,
    int force);

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
			dtask_free(d, t);
		} else {
			q_push(d, t, 1);
		}
	}
	idle_remove(d, sl);
	sl->online = 0;
	if (sl->has_path) {
		if ((o = saisei(d, 0, (uint32_t) sl->idx, 1)) != NULL) {
			mirai__out_free(o);
		}
		if (sl->cur != ds) {
			return;
		}
	}
	slot_exit(d, sl, MIRAI__EXIT_CANCEL);
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
	mine = t->big ? mirai__msg_body(msg_of(t)) + MIRAI__HDR_LEN +
		MIRAI__FRAME_HDR_LEN
		      : t->frame;
	if (memcmp(mine, inner.body, inner.len) != 0) {
		return -1;
	}
	sl->busy = NULL;
	if (t->orphan) {
		dtask_free(d, t);
	} else {
		/* The dispatcher's copy goes back, not the bytes that came. */
		q_push(d, t, 1);
	}
	return 0;
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
	if (rv != 0) {
		slot_cut(d, sl, "a malformed message");
		dispatch(d);
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
			sl->gone = 1;
			pthread_cond_broadcast(&d->cv);
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
			idle_remove(d, sl);
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
		slot_exit(d, sl, 0);
	}
	dispatch(d);
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
		slot_send(d, ds);
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
			q_push(d, t, 1);
		} else {
			char text[256];
			snprintf(text, sizeof text,
			    "server %s at slot %zu was lost while running the "
			    "task",
			    j->who, j->slot);
			MIRAI__LOG(MIRAI_LOG_WARN, TAG, "slot %zu: %s", j->slot,
			    text);
			up_error(d, t->id, MIRAI_ECONNRESET, text);
			dtask_free(d, t);
		}
	} else if (t != NULL) {
		dtask_free(d, t);
	}
	dispatch(d);
	d->pending--;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
	free(j);
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
			d->live_pipes++;
		}
	} else if (ev == MIRAI__PIPE_GONE && ds->has_pipe &&
	    ds->pipe_id == pipe) {
		ds->has_pipe = 0;
		ds->muted    = 0;
		d->live_pipes--;
		mirai__outq_clear(&ds->q);
		if (ds == sl->cur) {
			lost_job *j = calloc(1, sizeof *j);
			if (sl->online) {
				MIRAI__LOG(MIRAI_LOG_INFO, TAG,
				    "slot %zu: server %s:%d disconnected", sl->idx,
				    sl->host, sl->pid);
			}
			idle_remove(d, sl);
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
			sl->online    = 0;
			sl->leaving   = 0;
			sl->exit_sent = 0;
			sl->gone      = 0;
			if (d->watch != NULL) {
				d->watch(d->watch_arg);
			}
		}
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->mtx);
	return refuse;
}

/* ---- slots: sockets --------------------------------------------------- */

static int
dsock_open(mirai_dispatcher *d, slot *sl, const char *listen_url,
    dsock **out, char **resolved, mirai_errmsg *err)
{
	dsock *ds = calloc(1, sizeof *ds);
	mirai__link_cfg cfg = {
		.max_msg = d->opts.server.max_msg,
		.events  = (1u << MIRAI__PIPE_ADD) | (1u << MIRAI__PIPE_GONE),
		.recv    = slot_rx,
		.pipe    = slot_pipe,
		.sent    = slot_tx,
		.arg     = ds,
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
static void
slot_listen_url(mirai_dispatcher *d, slot *sl, char *buf, size_t len)
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

/* ---- upstream ----------------------------------------------------------- */

/* The status payload (see client_status.c: status_dispatcher). */
static void
status_payload(mirai_dispatcher *d, mirai__wbuf *w)
{
	uint64_t running = 0;

	for (size_t i = 0; i < d->nslots; i++) {
		running += d->slots[i].busy != NULL;
	}
	mirai__w_u64(w, d->qlen);
	mirai__w_u64(w, running);
	mirai__w_u64(w, d->completed);
	mirai__w_u64(w, d->retried);
	mirai__w_u32(w, (uint32_t) d->nslots);
	for (size_t i = 0; i < d->nslots; i++) {
		slot *sl = &d->slots[i];
		mirai__w_str(w, sl->url);
		mirai__w_u8(w, (uint8_t) sl->online);
		mirai__w_u64(w, sl->instance);
		mirai__w_u64(w, sl->assigned);
		mirai__w_u64(w, sl->complete);
		mirai__w_u64(w, sl->retries);
		mirai__w_u32(w, (uint32_t) (sl->online ? sl->pid : 0));
		mirai__w_str(w, sl->online ? sl->host : "");
		mirai__w_str(w, sl->online ? sl->binding : "");
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
static mirai__out *saisei(mirai_dispatcher *d, uint64_t req, uint32_t i,
    int force);

static mirai__out *
answer(mirai_dispatcher *d, const mirai__req_view *q)
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
		return saisei(d, q->req, q->a, q->b != 0);
	default:
		return rep_frame(q->req, MIRAI_ENOTSUP, "unknown request", 15);
	}
}

static mirai__out *
reply_text(uint64_t req, int status, const char *text)
{
	return rep_frame(req, status, text, strlen(text));
}

/* saisei: a fresh URL for slot i; the reply holds it or the reason why
 * not.  Called locked. */
static mirai__out *
saisei(mirai_dispatcher *d, uint64_t req, uint32_t i, int force)
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
		return reply_text(req, MIRAI_EINVAL, text);
	}
	sl = &d->slots[i];
	if (!sl->has_path) {
		snprintf(text, sizeof text,
		    "slot %u listens on %s, which has no path: only URLs with a "
		    "path (ws://) can be regenerated",
		    i, sl->url);
		return reply_text(req, MIRAI_ENOTSUP, text);
	}
	old = sl->cur;
	if (old->has_pipe && !force) {
		snprintf(text, sizeof text,
		    "a server is connected at slot %u: use force to cut it off",
		    i);
		return reply_text(req, MIRAI_EBUSY, text);
	}
	slot_listen_url(d, sl, url, sizeof url);
	if ((rv = dsock_open(d, sl, url, &ds, &resolved, &err)) != 0) {
		return reply_text(req, rv, err.text);
	}
	if (old->has_pipe) {
		/* Cut off: the task resolves with "closed", the server is told
		 * to exit, and its socket closes after a grace period. */
		if (sl->busy != NULL) {
			dtask *t = sl->busy;
			sl->busy = NULL;
			up_error(d, t->id, MIRAI_ECLOSED,
			    "the server's URL was regenerated by saisei(force) "
			    "while it ran the task");
			dtask_free(d, t);
		}
		slot_exit(d, sl, MIRAI__EXIT_CANCEL);
	}
	idle_remove(d, sl);
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
	return reply_text(req, 0, sl->url);
}

/* The client left or detached: its queued tasks go, its running ones
 * are cancelled and their results dropped (a next client's ids may be the
 * same).  Called locked. */
static void
drop_client_work(mirai_dispatcher *d)
{
	for (dtask *t; (t = q_pop(d)) != NULL;) {
		dtask_free(d, t);
	}
	for (size_t i = 0; i < d->nslots; i++) {
		dtask *t = d->slots[i].busy;
		if (t != NULL && !t->orphan) {
			table_del(d, t);
			t->orphan = 1;
			slot_ctrl(d, &d->slots[i], MIRAI__F_CANCEL, t->id, 1);
		}
	}
}

static void
up_task(mirai_dispatcher *d, const mirai__frame *f, mirai__msg **keep)
{
	size_t flen = MIRAI__FRAME_HDR_LEN + (size_t) f->len;
	mirai__task_view tv;
	dtask *t;

	if (mirai__task_decode(f, &tv) != 0) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG, "rejected a garbled task frame");
		return;
	}
	if (table_get(d, tv.id) != NULL) {
		up_error(d, tv.id, MIRAI_EPROTO, "duplicate task id");
		return;
	}
	if (*keep != NULL && flen >= MIRAI__BIG_FRAME) {
		if ((t = calloc(1, DTASK_HDR + sizeof(mirai__msg *))) == NULL) {
			goto oom;
		}
		t->big     = 1;
		set_msg(t, *keep);
		*keep      = NULL;
	} else {
		if ((t = malloc(DTASK_HDR + f->len)) == NULL) {
			goto oom;
		}
		memset(t, 0, DTASK_HDR);
		memcpy(t->frame, f->body, f->len);
	}
	t->id      = tv.id;
	t->len     = (uint32_t) flen;
	t->retries = (tv.flags & 0x100u) ? (uint8_t) (tv.flags & MIRAI__TF_RETRIES)
					 : (uint8_t) d->opts.retries;
	if (table_put(d, t) != 0) {
		if (t->big) {
			*keep = msg_of(t);
		}
		free(t);
		goto oom;
	}
	q_push(d, t, 0);
	return;
oom:
	up_error(d, tv.id, MIRAI_ENOMEM, "dispatcher out of memory");
}

static void
up_cancel(mirai_dispatcher *d, uint64_t id)
{
	dtask *t = table_get(d, id);

	if (t == NULL) {
		return;
	}
	if (t->queued) {
		/* Never runs. */
		q_drop(d, t);
	} else {
		/* Running: at the slot that has it. */
		for (size_t i = 0; i < d->nslots; i++) {
			if (d->slots[i].busy == t) {
				slot_ctrl(d, &d->slots[i], MIRAI__F_CANCEL, id, 1);
				break;
			}
		}
	}
}

static void
up_msg(mirai_dispatcher *d, mirai__msg *msg)
{
	mirai__reader r;
	mirai__msghdr h;
	mirai__frame f;
	mirai__msg *keep = NULL;
	int rv;

	rv = mirai__msg_open(&r, mirai__msg_body(msg), mirai__msg_len(msg), &h);
	if (rv != 0) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG, "rejected a message from the "
						"client: %s",
		    mirai_strerror(rv));
		mirai__msg_free(msg);
		return;
	}
	if (h.nframes == 1) {
		keep = msg;
	}
	pthread_mutex_lock(&d->mtx);
	d->up_recv_seq = h.seq;
	while ((rv = mirai__msg_next(&r, &f)) == 1) {
		mirai__req_view q;
		uint64_t id;

		switch (f.type) {
		case MIRAI__F_TASK:
			if (!d->up_mute) {
				up_task(d, &f, &keep);
			}
			break;
		case MIRAI__F_CANCEL:
			if (mirai__u64_frame_decode(&f, &id) == 0) {
				up_cancel(d, id);
			}
			break;
		case MIRAI__F_EXIT:
			/* GONE first, then silence: the client may close. */
			if (!d->up_mute) {
				mirai__out *o = mirai__out_new(MIRAI__FRAME_HDR_LEN);
				if (o != NULL) {
					mirai__frame_hdr_encode(mirai__out_frame(o),
					    MIRAI__F_GONE, 0);
					up_queue(d, o);
				}
				d->up_mute = 1;
			}
			if (d->listen) {
				/* An attached client detaches: its work goes,
				 * the dispatcher stays for the next one. */
				drop_client_work(d);
			} else {
				d->exit_req   = 1;
				d->exit_flags = f.len == 4 ? mirai__get32(f.body)
							   : 0;
			}
			pthread_cond_broadcast(&d->cv);
			break;
		case MIRAI__F_REQ:
			if (mirai__req_decode(&f, &q) == 0) {
				mirai__out *o = answer(d, &q);
				if (o != NULL && !d->up_mute) {
					mirai__outq_push_front(&d->up_q, o);
					up_send(d);
				} else {
					mirai__out_free(o);
				}
			}
			break;
		case MIRAI__F_PING:
			if (mirai__u64_frame_decode(&f, &id) == 0) {
				mirai__out *o = mirai__out_new(MIRAI__U64_FRAME_LEN);
				if (o != NULL) {
					mirai__u64_frame_encode(mirai__out_frame(o),
					    MIRAI__F_PONG, id);
					up_queue(d, o);
				}
			}
			break;
		default:
			break;
		}
	}
	dispatch(d);
	up_send(d);
	pthread_mutex_unlock(&d->mtx);
	if (h.nframes != 1 || keep != NULL) {
		mirai__msg_free(msg);
	}
}

static void
up_rx(void *arg, mirai__msg *msg)
{
	up_msg(arg, msg);
}

static void
up_tx(void *arg, int rv)
{
	mirai_dispatcher *d = arg;

	pthread_mutex_lock(&d->mtx);
	d->up_sending = 0;
	if (rv == 0) {
		up_send(d);
	}
	pthread_mutex_unlock(&d->mtx);
}

static void send_hello(mirai_dispatcher *d);

static void
up_kick(void *arg)
{
	mirai_dispatcher *d = arg;

	pthread_mutex_lock(&d->mtx);
	up_send(d);
	d->pending--;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
}

static int
up_pipe(void *arg, int ev, uint32_t id)
{
	mirai_dispatcher *d = arg;
	int refuse          = 0;

	pthread_mutex_lock(&d->mtx);
	if (ev == MIRAI__PIPE_ADD && d->listen) {
		if (d->up_connected || d->closing) {
			/* One client at a time: refuse before NNG receives
			 * on the pipe, which is safe. */
			MIRAI__LOG(MIRAI_LOG_WARN, TAG,
			    "refused a client: another one is attached");
			refuse = 1;
		} else {
			d->up_connected = 1;
			d->up_pipe_id   = id;
			d->up_lost      = 0;
			d->up_mute      = 0;
			mirai__outq_clear(&d->up_q);
			send_hello(d);
			/* Sending is a socket call: not from here. */
			d->pending++;
			if (mirai__defer(up_kick, d) != 0) {
				d->pending--;
			}
			MIRAI__LOG(MIRAI_LOG_INFO, TAG, "a client attached");
		}
	} else if (ev == MIRAI__PIPE_UP && !d->listen && !d->up_lost) {
		d->up_connected = 1;
		d->up_pipe_id   = id;
	} else if (ev == MIRAI__PIPE_GONE && d->up_connected &&
	    id == d->up_pipe_id) {
		d->up_connected = 0;
		d->up_lost      = 1;
		mirai__outq_clear(&d->up_q);
		if (d->listen) {
			drop_client_work(d);
			MIRAI__LOG(MIRAI_LOG_INFO, TAG, "the client detached");
		} else {
			MIRAI__LOG(MIRAI_LOG_INFO, TAG, "the client went away");
		}
	}
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
	return refuse;
}

/* Queue our HELLO first in line.  Called locked. */
static void
send_hello(mirai_dispatcher *d)
{
	char host[256];
	mirai__hello_view h = {.proto = MIRAI__PROTO,
	    .kind = MIRAI__KIND_DISPATCHER, .pid = (uint32_t) getpid(),
	    .version = MIRAI_VERSION_STRING,
	    .version_len = (uint16_t) strlen(MIRAI_VERSION_STRING)};
	mirai__out *o;

	mirai__hostname(host, sizeof host);
	h.host     = host;
	h.host_len = (uint16_t) strlen(host);
	if ((o = mirai__out_new(mirai__hello_size(&h))) != NULL) {
		mirai__hello_encode(mirai__out_frame(o), &h);
		mirai__outq_push_front(&d->up_q, o);
	}
}

/* ---- local servers -------------------------------------------------------- */

static void
on_child_exit(pid_t pid, int status, void *arg)
{
	mirai_dispatcher *d = arg;

	pthread_mutex_lock(&d->mtx);
	d->alive--;
	if (!d->closing && status != -1 &&
	    !(WIFEXITED(status) && (WEXITSTATUS(status) == 0 ||
				       WEXITSTATUS(status) >= 3))) {
		snprintf(d->last_failure, sizeof d->last_failure,
		    "local server pid %d ended with %s %d", (int) pid,
		    WIFEXITED(status) ? "exit code" : "signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		MIRAI__LOG(MIRAI_LOG_WARN, TAG, "%s", d->last_failure);
	}
	pthread_cond_broadcast(&d->cv);
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

/* Split "scheme://host:port[/path]": base gets "scheme://host", *port the
 * port. */
static int
split_base(const char *url, char *base, size_t len, int *port, int *has_path)
{
	const char *h = strstr(url, "://"), *colon, *slash;

	if (h == NULL) {
		return MIRAI_EADDRINVAL;
	}
	h += 3;
	slash = strchr(h, '/');
	colon = h[0] == '[' ? strstr(h, "]:") : strchr(h, ':');
	if (colon != NULL && h[0] == '[') {
		colon++;
	}
	if (colon == NULL || (slash != NULL && colon > slash)) {
		return MIRAI_EADDRINVAL;
	}
	*port = atoi(colon + 1);
	snprintf(base, len, "%.*s", (int) (colon - url), url);
	*has_path = strncmp(url, "ws://", 5) == 0 || strncmp(url, "wss://", 6) == 0;
	return 0;
}

int
mirai_dispatcher_create(mirai_dispatcher **out,
    const mirai_dispatcher_opts *o, mirai_errmsg *err)
{
	mirai_dispatcher *d;
	size_t n;
	int rv, port = 0, has_path = 0, ws_port = -1;
	char base[380];

	if (out == NULL || o == NULL || o->n < 0 || o->retries < 0 ||
	    o->retries > 255) {
		return mirai__fail(err, MIRAI_EINVAL, "invalid dispatcher options");
	}
	n = o->nurls > 0 ? o->nurls : (size_t) o->n;
	if (n == 0 || n > 100000) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "a dispatcher needs between 1 and 100000 server slots");
	}
	if (o->nurls > 0 && o->url != NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "give a base URL or a list "
						      "of URLs, not both");
	}
	if (o->url != NULL &&
	    split_base(o->url, base, sizeof base, &port, &has_path) != 0) {
		return mirai__fail(err, MIRAI_EADDRINVAL,
		    "%s: expected scheme://host:port", o->url);
	}
	if ((d = calloc(1, sizeof *d)) == NULL ||
	    (d->slots = calloc(n, sizeof *d->slots)) == NULL) {
		free(d);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	pthread_mutex_init(&d->mtx, NULL);
	mirai__cond_init(&d->cv);
	d->opts          = *o;
	d->opts.urls     = NULL;
	d->opts.url      = NULL;
	d->opts.server.plugins = NULL;
	d->no_token      = o->no_token;
	d->opts.client_url  = keep_str(d, o->client_url);
	d->opts.listen_url  = keep_str(d, o->listen_url);
	d->opts.control_url = keep_str(d, o->control_url);
	if (o->server.nplugins > 0) {
		const char **pl = calloc(o->server.nplugins, sizeof *pl);
		if (pl == NULL) {
			mirai_dispatcher_destroy(d);
			return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
		}
		for (size_t i = 0; i < o->server.nplugins; i++) {
			pl[i] = keep_str(d, o->server.plugins[i]);
		}
		d->opts.server.plugins = pl;
	}
	d->opts.server.server_path = keep_str(d, o->server.server_path);
	d->opts.server.bind_to     = keep_str(d, o->server.bind_to);
	d->nslots = n;
	for (size_t i = 0; i < n; i++) {
		slot *sl = &d->slots[i];
		char url[512], b2[420];
		int p2 = 0;

		sl->d   = d;
		sl->idx = i;
		if (o->nurls > 0) {
			if (split_base(o->urls[i], b2, sizeof b2, &p2,
				&sl->has_path) != 0) {
				mirai_dispatcher_destroy(d);
				return mirai__fail(err, MIRAI_EADDRINVAL,
				    "%s: expected scheme://host:port[/path]",
				    o->urls[i]);
			}
			/* Given URLs are used as given. */
			sl->has_path = 0;
			sl->base     = mirai__strdup(o->urls[i]);
		} else if (o->url == NULL) {
			sl->base = mirai__strdup("tcp://127.0.0.1:0");
		} else if (has_path) {
			/* ws: all slots on one port; port 0 becomes the port
			 * the first slot got. */
			snprintf(b2, sizeof b2, "%s:%d", base,
			    ws_port >= 0 ? ws_port : port);
			sl->base     = mirai__strdup(b2);
			sl->has_path = 1;
		} else {
			snprintf(b2, sizeof b2, "%s:%d", base,
			    port == 0 ? 0 : port + (int) i);
			sl->base = mirai__strdup(b2);
		}
		if (sl->base == NULL) {
			mirai_dispatcher_destroy(d);
			return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
		}
		slot_listen_url(d, sl, url, sizeof url);
		if ((rv = dsock_open(d, sl, url, &sl->cur, &sl->url, err)) != 0) {
			mirai_dispatcher_destroy(d);
			return rv;
		}
		if (has_path && ws_port < 0) {
			const char *pp = strrchr(sl->url, ':');
			ws_port = pp != NULL ? atoi(pp + 1) : 0;
			if (port == 0 && ws_port > 0) {
				/* Later slots share the port this one got. */
				char fixed[420];
				snprintf(fixed, sizeof fixed, "%s:%d", base,
				    ws_port);
				free(sl->base);
				sl->base = mirai__strdup(fixed);
			}
		}
	}
	if (o->local) {
		for (size_t i = 0; i < n; i++) {
			mirai_server_opts so = d->opts.server;
			pid_t pid;
			so.bind_index += (int) i;
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
			}
		}
	}
	*out = d;
	return 0;
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

	if (mirai__msg_open(&r, mirai__msg_body(msg), mirai__msg_len(msg), &h) != 0) {
		mirai__msg_free(msg);
		return;
	}
	pthread_mutex_lock(&d->mtx);
	while (mirai__msg_next(&r, &f) == 1) {
		mirai__out *o;
		if (mirai__req_decode(&f, &req) == 0 &&
		    (o = answer(d, &req)) != NULL) {
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

static int
open_up(mirai_dispatcher *d, mirai_errmsg *err)
{
	mirai__link_cfg cfg = {
		.max_msg = d->opts.server.max_msg,
		.events  = (1u << MIRAI__PIPE_ADD) | (1u << MIRAI__PIPE_UP) |
		    (1u << MIRAI__PIPE_GONE),
		.recv = up_rx,
		.pipe = up_pipe,
		.sent = up_tx,
		.arg  = d,
	};

	return mirai__link_open(&d->up, &cfg, err);
}

int
mirai_dispatcher_listen(mirai_dispatcher *d, mirai_errmsg *err)
{
	int rv;

	if (d == NULL) {
		return MIRAI_EINVAL;
	}
	if (d->listened) {
		return 0;
	}
	if (d->opts.listen_url != NULL) {
		if ((rv = open_up(d, err)) != 0) {
			return rv;
		}
		d->listen = 1;
		if ((rv = mirai__link_listen(d->up, d->opts.listen_url,
			 &d->client_url, err)) != 0) {
			return rv;
		}
		mirai__link_start(d->up);
	}
	if (d->opts.control_url != NULL) {
		mirai__link_cfg cfg = {
			.poly = 1, .recv = ctl_rx, .arg = d};
		if ((rv = mirai__link_open(&d->ctl, &cfg, err)) != 0 ||
		    (rv = mirai__link_listen(d->ctl, d->opts.control_url,
			 &d->control_url, err)) != 0) {
			return rv;
		}
		mirai__link_start(d->ctl);
	}
	d->listened = 1;
	return 0;
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

int
mirai_dispatcher_run(mirai_dispatcher *d, mirai_errmsg *err)
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
		if ((rv = open_up(d, err)) != 0) {
			return rv;
		}
		pthread_mutex_lock(&d->mtx);
		send_hello(d);
		up_send(d);
		pthread_mutex_unlock(&d->mtx);
		mirai__link_start(d->up);
		if ((rv = mirai__link_dial(d->up, d->opts.client_url, 1, err)) !=
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
		mirai__out *o = mirai__out_new(MIRAI__U32_FRAME_LEN);
		if (o != NULL) {
			mirai__u32_frame_encode(mirai__out_frame(o), MIRAI__F_BYE, 0);
			up_queue(d, o);
		}
		deadline = mirai__now_ms() + EXIT_WAIT_MS;
		while (d->up_connected && mirai__now_ms() < deadline) {
			mirai__cond_wait_until(&d->cv, &d->mtx, deadline);
		}
	}
	/* The end: queued tasks go (the client resolved them or is gone),
	 * servers are told to exit, idle ones close at once. */
	d->closing = 1;
	for (dtask *t; (t = q_pop(d)) != NULL;) {
		dtask_free(d, t);
	}
	/* When the client went away, running tasks are finished first; a
	 * reset cancels them. */
	for (size_t i = 0; i < d->nslots; i++) {
		slot_exit(d, &d->slots[i], d->exit_req ? d->exit_flags : 0);
	}
	deadline = mirai__now_ms() + EXIT_WAIT_MS;
	while ((!all_quiet(d) || d->pending > 0) && mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&d->cv, &d->mtx, deadline);
	}
	pthread_mutex_unlock(&d->mtx);
	return rv;
}

void
mirai_dispatcher_destroy(mirai_dispatcher *d)
{
	int64_t deadline;

	if (d == NULL) {
		return;
	}
	pthread_mutex_lock(&d->mtx);
	d->closing = 1;
	pthread_mutex_unlock(&d->mtx);
	mirai__link_close(d->up);
	mirai__link_close(d->ctl);
	for (size_t i = 0; i < d->nslots; i++) {
		dsock *ds = d->slots[i].cur;
		if (ds != NULL) {
			mirai__link_close(ds->link);
			mirai__outq_clear(&ds->q);
			free(ds);
		}
	}
	/* Deferred jobs (lost servers, retired sockets) hold on to d. */
	deadline = mirai__now_ms() + 5000;
	pthread_mutex_lock(&d->mtx);
	while ((d->pending > 0 || d->alive > 0) && mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&d->cv, &d->mtx, deadline);
	}
	pthread_mutex_unlock(&d->mtx);
	for (size_t i = 0; i < d->nslots; i++) {
		if (d->slots[i].busy != NULL) {
			dtask_free(d, d->slots[i].busy);
		}
		free(d->slots[i].url);
		free(d->slots[i].base);
	}
	for (dtask *t; (t = q_pop(d)) != NULL;) {
		dtask_free(d, t);
	}
	mirai__outq_clear(&d->up_q);
	free(d->table);
	free(d->slots);
	free(d->client_url);
	free(d->control_url);
	free((void *) d->opts.server.plugins);
	for (size_t i = 0; i < d->nstrings; i++) {
		free(d->strings[i]);
	}
	free(d->strings);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mtx);
	free(d);
}
