/*
 * client.c: compute profiles, daemons, and the mirai handles of submitted
 * tasks.
 *
 * A profile listens with PAIR1 sockets (see struct sock); servers dial in
 * and announce themselves with HELLO.  Without a dispatcher, a task goes at
 * once to the online server with the fewest unfinished tasks (round robin
 * among equals) and waits in that server's queue until the link may take
 * it.
 *
 * Flow control: PAIR1 in polyamorous mode silently drops a message when the
 * pipe's queue (2 messages) is full, so at most WINDOW messages per server
 * are unacknowledged.  The last one a window allows asks for an immediate
 * acknowledgement; every message from a server carries the sequence number
 * of the last message it received.  Whatever queues up while the window is
 * full goes out packed into the next message (adaptive batching).
 *
 * Closing: in NNG 1.5.2 a started tcp pipe closed while its peer is sending
 * can hang the close (and NNG's reaper) for good.  So the client never
 * closes a started pipe: it tells the server EXIT, sends it nothing more,
 * and the server closes.  Refusing a pipe in ADD_PRE, before NNG receives
 * on it, is safe.
 *
 * Locking: one mutex per profile guards its servers, queues and task table.
 * Results are claimed under it and published outside it (hook decoding,
 * waking waiters, completion callbacks), so user code never runs locked.
 * NNG pipe callbacks only record and defer; the work happens on the
 * service thread (service.c).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

#define TAG "client"
#define WINDOW 2
/* How long a reset waits for the local servers to exit. */
#define RESET_WAIT_MS 2000
/* How long a reset waits for servers to close their links. */
#define EXIT_WAIT_MS 1000
/* How long a control request waits for the dispatcher's reply. */
#define REQUEST_MS 5000
/* How long mirai_daemons() waits for its local servers to connect. */
#define LOCAL_START_MS 10000
/* With a dispatcher, a submitter waits while more than this many bytes of
 * frames are not yet handed to it (see pace()). */
#define PACE_BYTES ((size_t) 16 << 20)

enum { KIND_ONESHOT = 1, KIND_DIRECT = 2 };
enum { AT_NONE = 0, AT_QUEUE, AT_INFLIGHT };

typedef struct profile profile;
typedef struct peer peer;

/*
 * One listening socket of a profile.  A user-given URL that any number of
 * servers dial is a polyamorous socket; each local server gets a
 * monogamous socket of its own on a loopback port, which saves the two
 * thread hops polyamorous sends take (about 20 us a round trip here).
 */
typedef struct sock {
	profile *prof;
	mirai__link *link;
	int poly;
	char *url;
} sock;

/* What few mirais need: a time-out, a completion callback, an error
 * message.  Kept apart so a million queued tasks stay small. */
typedef struct mirai_extra {
	mirai__timer timer;
	mirai_done_fn done;
	void *done_arg;
	char *errtext;
} mirai_extra;

/* What holds a result's bytes. */
enum { OWN_NONE = 0, OWN_MSG, OWN_BUF, OWN_HOOK };

struct mirai {
	uint64_t id;
	profile *prof;
	peer *peer;              /* queued at or in flight to */
	struct mirai *hnext;     /* task table chain */
	struct mirai *prev, *next; /* in flight list of its peer; next also
	                              links a list of claimed mirais */
	/* Never both at once: the encoded TASK frame while queued, then
	 * what holds the result (own says which). */
	union {
		mirai__out *out;
		void *owner;     /* a mirai__msg or a buffer */
	};
	mirai_extra *x;          /* NULL unless needed */
	const void *res;
	struct wnode *waiters;
	uint32_t res_len;
	uint32_t bytes;          /* counted against the profile's queue cap */
	atomic_int state;        /* 1 once resolved and published */
	atomic_int refs;
	int status;
	uint8_t where;
	uint8_t claimed;
	uint8_t own;             /* OWN_* */
};

/* Handles come from a pool, 104 bytes each with no malloc header, and
 * the holes they leave are not taken by frames (w6). */
static mirai__pool handles = MIRAI__POOL_INIT(sizeof(struct mirai));

struct peer {
	profile *prof;
	sock *sk;
	uint32_t pipe_id;
	mirai__tx *tx;
	int online;              /* HELLO received */
	int dead;
	int leaving;             /* BYE received */
	int exit_sent;           /* told to exit: send it nothing more */
	int gone;                /* answered GONE: it sends nothing more */
	int sending;
	uint32_t seq_sent, seq_acked;
	mirai__outq queue;
	mirai *inflight_head, *inflight_tail;
	size_t nqueue, ninflight;
	size_t qbytes;           /* bytes of the frames in queue */
	int has_budget;
	uint64_t budget;
	uint64_t assigned, complete;
	int kind;
	int pid;
	uint64_t hook;
	char host[64];
	char binding[96];
};

typedef struct child {
	struct child *next;
	pid_t pid;
	int hello;
	int dispatcher;          /* the profile's mirai-dispatcher */
} child;

/* A control request to the dispatcher, waiting for its reply. */
typedef struct creq {
	struct creq *next;
	uint64_t id;
	int done;
	int status;
	uint8_t *data;
	size_t len;
} creq;

struct profile {
	char *name;
	atomic_int refs;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	int kind;
	int closing;
	int no_servers;          /* every local server exited */
	const char *no_servers_why;
	int user_url;            /* servers dial in from elsewhere */
	int daemons;
	sock **socks;
	size_t nsocks;
	char *url;               /* the user's URL, resolved; "" if none */
	mirai_hook hook;
	char *hook_name;
	uint64_t hook_fp;
	mirai_server_opts sopts;
	char **plugins;
	char *server_path;
	char *bind_to;
	size_t max_msg;
	peer **peers;
	size_t npeers, cappeers, rr;
	int live_pipes;          /* pipes added and not yet removed */
	int dispatcher;          /* tasks go to one mirai-dispatcher */
	mirai_dispatcher *disp;  /* the dispatcher on a thread of ours */
	pthread_t disp_thread;
	int disp_running;
	int retries;             /* default retries of a task */
	size_t max_queue;        /* cap on queued_bytes */
	size_t queued_bytes;     /* bytes of submitted, unresolved tasks */
	int room_waiters;        /* threads waiting for queued_bytes to drop */
	uint64_t next_req;
	creq *reqs;
	mirai__outq unassigned;
	mirai **table;           /* task table: id -> mirai */
	size_t tcap, tcount;
	uint64_t next_id;
	uint64_t completed;
	child *children;
	int alive;               /* local child processes not yet reaped */
	char last_failure[600];  /* why the last local server failed to start */
	int dead_spawns;         /* one-shot servers that died unconnected and
	                            have not failed a task yet */
	profile *reg_next;
};

/* Registry entry of a profile name: its daemons (if set) and its one-shot
 * profile (created on first use). */
typedef struct pname {
	struct pname *next;
	char *name;
	profile *set;
	profile *oneshot;
} pname;

static pthread_mutex_t reg_mtx = PTHREAD_MUTEX_INITIALIZER;
static pname *reg_head;

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

/* ---- reference counts -------------------------------------------------- */

static void
profile_ref(profile *p)
{
	atomic_fetch_add(&p->refs, 1);
}

static void
profile_free(profile *p)
{
	for (size_t i = 0; i < p->npeers; i++) {
		mirai__tx_free(p->peers[i]->tx);
		mirai__outq_clear(&p->peers[i]->queue);
		free(p->peers[i]);
	}
	free(p->peers);
	mirai__outq_clear(&p->unassigned);
	while (p->children != NULL) {
		child *c    = p->children;
		p->children = c->next;
		free(c);
	}
	for (size_t i = 0; i < p->sopts.nplugins; i++) {
		free(p->plugins[i]);
	}
	free(p->plugins);
	free(p->server_path);
	free(p->bind_to);
	for (size_t i = 0; i < p->nsocks; i++) {
		free(p->socks[i]->url);
		free(p->socks[i]);
	}
	free(p->socks);
	free(p->table);
	free(p->hook_name);
	free(p->url);
	free(p->name);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mtx);
	free(p);
}

/* The socket is closed before the last reference can go (reset, shutdown),
 * so this never runs NNG calls that could wait for a callback. */
static void
profile_unref(profile *p)
{
	if (p != NULL && atomic_fetch_sub(&p->refs, 1) == 1) {
		profile_free(p);
	}
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
	profile_unref(m->prof);
	mirai__pool_put(&handles, m);
}

/* ---- task table ------------------------------------------------------- */

static int
table_insert(profile *p, mirai *m)
{
	if (p->tcount >= p->tcap) {
		size_t cap = p->tcap == 0 ? 1024 : p->tcap * 2;
		mirai **t  = calloc(cap, sizeof *t);
		if (t == NULL) {
			return MIRAI_ENOMEM;
		}
		for (size_t i = 0; i < p->tcap; i++) {
			mirai *e = p->table[i];
			while (e != NULL) {
				mirai *n     = e->hnext;
				size_t b     = e->id & (cap - 1);
				e->hnext     = t[b];
				t[b]         = e;
				e            = n;
			}
		}
		free(p->table);
		p->table = t;
		p->tcap  = cap;
	}
	m->hnext                         = p->table[m->id & (p->tcap - 1)];
	p->table[m->id & (p->tcap - 1)] = m;
	p->tcount++;
	return 0;
}

static mirai *
table_find(profile *p, uint64_t id)
{
	mirai *m;

	if (p->tcap == 0) {
		return NULL;
	}
	for (m = p->table[id & (p->tcap - 1)]; m != NULL && m->id != id;
	     m = m->hnext) {
	}
	return m;
}

static void
table_remove(profile *p, mirai *m)
{
	mirai **pp = &p->table[m->id & (p->tcap - 1)];

	while (*pp != NULL && *pp != m) {
		pp = &(*pp)->hnext;
	}
	if (*pp == m) {
		*pp = m->hnext;
		p->tcount--;
	}
	m->hnext = NULL;
}

/* ---- in-flight lists ---------------------------------------------------- */

static void
inflight_push(peer *pk, mirai *m)
{
	m->next = NULL;
	m->prev = pk->inflight_tail;
	if (pk->inflight_tail != NULL) {
		pk->inflight_tail->next = m;
	} else {
		pk->inflight_head = m;
	}
	pk->inflight_tail = m;
	pk->ninflight++;
	m->where = AT_INFLIGHT;
}

static void
inflight_remove(peer *pk, mirai *m)
{
	if (m->prev != NULL) {
		m->prev->next = m->next;
	} else {
		pk->inflight_head = m->next;
	}
	if (m->next != NULL) {
		m->next->prev = m->prev;
	} else {
		pk->inflight_tail = m->prev;
	}
	m->next = m->prev = NULL;
	pk->ninflight--;
	m->where = AT_NONE;
}

/* ---- claiming and publishing results ----------------------------------- */

/*
 * Take m out of every structure and record its outcome; the caller
 * publishes the list after unlocking.  Called locked.
 */
static void
claim(profile *p, mirai *m, int status, mirai **list)
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
		} else {
			mirai__outq_remove(&p->unassigned, m->out);
		}
		mirai__out_free(m->out);
		m->out = NULL;
	} else if (m->where == AT_INFLIGHT) {
		inflight_remove(m->peer, m);
	}
	m->where = AT_NONE;
	table_remove(p, m);
	p->queued_bytes -= m->bytes;
	if (p->room_waiters > 0) {
		pthread_cond_broadcast(&p->cv);
	}
	if (m->x != NULL && m->x->timer.heap_idx != 0 &&
	    mirai__timer_cancel(&m->x->timer)) {
		/* The timer's reference; the runtime's keeps m alive. */
		atomic_fetch_sub(&m->refs, 1);
	}
	m->status = status;
	m->next   = *list;
	*list     = m;
}

static void
set_errtext(mirai *m, const char *fmt, ...) MIRAI_PRINTF(2, 3);

static void
set_errtext(mirai *m, const char *fmt, ...)
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
			set_errtext(m,
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

static void
publish(mirai *list)
{
	/* The list is newest first; publish in claim order. */
	mirai *rev = NULL;

	while (list != NULL) {
		mirai *n   = list->next;
		list->next = rev;
		rev        = list;
		list       = n;
	}
	while (rev != NULL) {
		mirai *n = rev->next;
		rev->next = NULL;
		publish_one(rev);
		rev = n;
	}
}

/* ---- sending ---------------------------------------------------------- */

typedef struct pack_ctx {
	peer *pk;
	uint32_t seq;
} pack_ctx;

static void
on_packed(void *arg, mirai__out *o)
{
	pack_ctx *c = arg;
	mirai *m    = o->owner;

	if (m != NULL) {
		m->out = NULL;
		c->pk->nqueue--;
		c->pk->qbytes -= m->bytes;
		inflight_push(c->pk, m);
	}
}

/* Send what pk's queue holds, as far as its window allows.  Called
 * locked. */
static void
try_send(profile *p, peer *pk)
{
	mirai__msghdr h;
	pack_ctx c;
	mirai__msg *msg;

	/* A monogamous socket holds a message until the pipe takes it, so
	 * only polyamorous links need the window. */
	while (!pk->sending && !pk->dead && pk->queue.head != NULL &&
	    (!pk->sk->poly ||
		(uint32_t) (pk->seq_sent - pk->seq_acked) < WINDOW)) {
		memset(&h, 0, sizeof h);
		c.pk  = pk;
		c.seq = h.seq = pk->seq_sent + 1;
		if (pk->sk->poly &&
		    (uint32_t) (h.seq - pk->seq_acked) >= WINDOW) {
			h.flags |= MIRAI__M_ACKREQ;
		}
		if (mirai__outq_pack(&pk->queue, &h, &msg, on_packed, &c) != 0) {
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "out of memory sending");
			return;
		}
		pk->seq_sent = h.seq;
		if (pk->sk->poly) {
			mirai__msg_set_pipe(msg, pk->pipe_id);
		}
		if (!mirai__tx_send(pk->tx, msg)) {
			pk->sending = 1;
		}
	}
	if (p->room_waiters > 0 && pk->qbytes <= PACE_BYTES / 2 &&
	    pk->kind == MIRAI__KIND_DISPATCHER) {
		pthread_cond_broadcast(&p->cv);
	}
}

static void
on_tx(void *arg, int rv)
{
	peer *pk   = arg;
	profile *p = pk->prof;

	pthread_mutex_lock(&p->mtx);
	pk->sending = 0;
	/* On failure the tasks it carried are in flight; losing the server
	 * resolves them. */
	if (rv == 0) {
		try_send(p, pk);
	}
	pthread_mutex_unlock(&p->mtx);
}

static void
send_ctrl(profile *p, peer *pk, uint8_t type, uint64_t v)
{
	mirai__out *o;

	if (pk->exit_sent || (o = mirai__out_new(MIRAI__U64_FRAME_LEN)) == NULL) {
		return;
	}
	mirai__u64_frame_encode(mirai__out_frame(o), type, v);
	/* Control frames overtake queued tasks. */
	mirai__outq_push_front(&pk->queue, o);
	try_send(p, pk);
}

/* Tell pk to exit (cancelling its running task with MIRAI__EXIT_CANCEL):
 * the last frame it gets from us; it answers GONE.  Called locked. */
static void
send_exit(profile *p, peer *pk, uint32_t flags)
{
	mirai__out *o;

	if (pk->exit_sent || pk->dead) {
		return;
	}
	if ((o = mirai__out_new(MIRAI__U32_FRAME_LEN)) == NULL) {
		return; /* it will see the link drop instead */
	}
	mirai__u32_frame_encode(mirai__out_frame(o), MIRAI__F_EXIT, flags);
	mirai__outq_push(&pk->queue, o);
	pk->exit_sent = 1;
	try_send(p, pk);
}

/* ---- assignment ------------------------------------------------------- */

static int
usable(const peer *pk)
{
	return pk->online && !pk->dead && !pk->leaving && !pk->exit_sent &&
	    (!pk->has_budget || pk->budget > 0);
}

/* The usable peer with the least unfinished work, round robin among
 * equals.  Called locked. */
static peer *
pick_peer(profile *p)
{
	peer *best  = NULL;
	size_t load = SIZE_MAX, at = 0;

	for (size_t k = 0; k < p->npeers; k++) {
		size_t i = (p->rr + k) % p->npeers;
		peer *pk = p->peers[i];
		if (usable(pk) && pk->nqueue + pk->ninflight < load) {
			best = pk;
			load = pk->nqueue + pk->ninflight;
			at   = i;
		}
	}
	if (best != NULL) {
		p->rr = at + 1;
	}
	return best;
}

static void
assign_to(peer *pk, mirai *m)
{
	m->peer  = pk;
	m->where = AT_QUEUE;
	mirai__outq_push(&pk->queue, m->out);
	pk->nqueue++;
	pk->qbytes += m->bytes;
	pk->assigned++;
	if (pk->has_budget) {
		pk->budget--;
	}
}

/* Give unassigned tasks to usable peers, and fail them when no server can
 * come any more.  Called locked. */
static void
dispatch(profile *p, mirai **list)
{
	mirai__out *o;
	peer *pk;

	while (p->dead_spawns > 0 && (o = p->unassigned.head) != NULL) {
		mirai *m = o->owner;
		claim(p, m, MIRAI_ESPAWN, list);
		set_errtext(m, "%s", p->last_failure);
		p->dead_spawns--;
	}
	if (p->no_servers) {
		while ((o = p->unassigned.head) != NULL) {
			mirai *m = o->owner;
			claim(p, m, MIRAI_ECLOSED, list);
			set_errtext(m, "%s", p->no_servers_why);
		}
		return;
	}
	while ((o = p->unassigned.head) != NULL && (pk = pick_peer(p)) != NULL) {
		mirai__outq_pop(&p->unassigned);
		assign_to(pk, o->owner);
	}
	for (size_t i = 0; i < p->npeers; i++) {
		try_send(p, p->peers[i]);
	}
}

/* ---- receiving -------------------------------------------------------- */

static peer *
find_peer(profile *p, uint32_t pipe_id)
{
	for (size_t i = 0; i < p->npeers; i++) {
		if (p->peers[i]->pipe_id == pipe_id) {
			return p->peers[i];
		}
	}
	return NULL;
}

static void
on_hello(profile *p, peer *pk, const mirai__frame *f)
{
	mirai__hello_view h;

	if (mirai__hello_decode(f, &h) != 0 || h.proto != MIRAI__PROTO) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "profile '%s': a peer sent a bad HELLO; telling it to exit",
		    p->name);
		send_exit(p, pk, 0);
		return;
	}
	pk->online     = 1;
	pk->kind       = (int) h.kind;
	pk->pid        = (int) h.pid;
	pk->hook       = h.hook;
	pk->has_budget = h.max_tasks > 0;
	pk->budget     = h.max_tasks;
	snprintf(pk->host, sizeof pk->host, "%.*s", (int) h.host_len, h.host);
	snprintf(pk->binding, sizeof pk->binding, "%.*s", (int) h.binding_len,
	    h.binding);
	for (child *c = p->children; c != NULL; c = c->next) {
		if (c->pid == pk->pid) {
			c->hello = 1;
		}
	}
	/* mirai_daemons() may be waiting for this one. */
	pthread_cond_broadcast(&p->cv);
	if (h.hook != p->hook_fp) {
		char theirs[128];
		snprintf(theirs, sizeof theirs, "'%.*s'", (int) h.hook_name_len,
		    h.hook_name);
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "profile '%s': server %s:%d uses serialization hook %s "
		    "but the profile uses %s%s%s: its tasks will fail with "
		    "EHOOK",
		    p->name, pk->host, pk->pid,
		    h.hook_name_len ? theirs : "none", p->hook_name ? "'" : "",
		    p->hook_name ? p->hook_name : "none", p->hook_name ? "'" : "");
	}
	MIRAI__LOG(MIRAI_LOG_INFO, TAG, "profile '%s': server %s:%d online",
	    p->name, pk->host, pk->pid);
}

static void
on_result(profile *p, peer *pk, const mirai__frame *f, mirai__msg **keep,
    mirai **list)
{
	mirai__result_view r;
	mirai *m;

	if (mirai__result_decode(f, &r) != 0) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG, "rejected a garbled result");
		return;
	}
	m = table_find(p, r.id);
	if (m == NULL || m->peer != pk || m->where != AT_INFLIGHT) {
		/* Cancelled or timed out already: nobody waits for it. */
		return;
	}
	pk->complete++;
	p->completed++;
	if (r.status == 0 && r.hook != p->hook_fp) {
		claim(p, m, MIRAI_EHOOK, list);
		set_errtext(m,
		    "serialization hook mismatch: server %s:%d encoded the result "
		    "with another hook",
		    pk->host, pk->pid);
		return;
	}
	if (r.status != 0) {
		claim(p, m, (int) r.status, list);
		set_errtext(m, "%.*s", (int) (r.len > 900 ? 900 : r.len),
		    (const char *) r.data);
		return;
	}
	if (*keep != NULL) {
		m->owner = *keep;
		m->own   = OWN_MSG;
		*keep    = NULL;
		m->res   = r.data;
	} else if (r.len > 0) {
		if ((m->owner = malloc(r.len)) == NULL) {
			claim(p, m, MIRAI_ENOMEM, list);
			return;
		}
		memcpy(m->owner, r.data, r.len);
		m->own = OWN_BUF;
		m->res = m->owner;
	}
	m->res_len = (uint32_t) r.len;
	claim(p, m, 0, list);
}

static void
on_bounce(profile *p, peer *pk, const mirai__frame *f)
{
	mirai__frame inner;
	mirai__task_view t;
	mirai__out *o;
	mirai *m;

	inner.type = MIRAI__F_TASK;
	inner.body = f->body + MIRAI__FRAME_HDR_LEN;
	inner.len  = f->len >= MIRAI__FRAME_HDR_LEN
	     ? f->len - MIRAI__FRAME_HDR_LEN : 0;
	if (f->len < MIRAI__FRAME_HDR_LEN || mirai__task_decode(&inner, &t) != 0) {
		return;
	}
	m = table_find(p, t.id);
	if (m == NULL || m->peer != pk || m->where != AT_INFLIGHT) {
		return;
	}
	if ((o = mirai__out_new(f->len)) == NULL) {
		return; /* it stays in flight; losing the server resolves it */
	}
	memcpy(mirai__out_frame(o), f->body, f->len);
	o->owner = m;
	inflight_remove(pk, m);
	m->out   = o;
	m->peer  = NULL;
	m->where = AT_QUEUE;
	/* Unstarted work goes back to the head of the line. */
	mirai__outq_push_front(&p->unassigned, o);
}

static void
on_reply(profile *p, const mirai__frame *f)
{
	mirai__rep_view rep;

	if (mirai__rep_decode(f, &rep) != 0) {
		return;
	}
	for (creq *r = p->reqs; r != NULL; r = r->next) {
		if (r->id == rep.req && !r->done) {
			r->status = (int) rep.status;
			r->len    = rep.len;
			if ((r->data = malloc(rep.len + 1)) == NULL) {
				r->status = MIRAI_ENOMEM;
			} else {
				memcpy(r->data, rep.data, rep.len);
				r->data[rep.len] = '\0';
			}
			r->done = 1;
			pthread_cond_broadcast(&p->cv);
		}
	}
}

static void
requeue_peer_queue(profile *p, peer *pk)
{
	mirai__out *o;

	/* From the tail, so the order at the head of the line is kept. */
	while ((o = pk->queue.tail) != NULL) {
		mirai__outq_remove(&pk->queue, o);
		if (o->owner == NULL) {
			mirai__out_free(o);
			continue;
		}
		((mirai *) o->owner)->peer = NULL;
		pk->nqueue--;
		pk->qbytes -= ((mirai *) o->owner)->bytes;
		mirai__outq_push_front(&p->unassigned, o);
	}
}

static void
dispatcher_leaving(profile *p, peer *pk, mirai **list)
{
	mirai__out *o;

	while ((o = pk->queue.head) != NULL) {
		if (o->owner != NULL) {
			claim(p, o->owner, MIRAI_ECLOSED, list);
			set_errtext(o->owner, "the dispatcher is shutting down");
		} else {
			mirai__outq_remove(&pk->queue, o);
			mirai__out_free(o);
		}
	}
	while (pk->inflight_head != NULL) {
		mirai *m = pk->inflight_head;
		claim(p, m, MIRAI_ECLOSED, list);
		set_errtext(m, "the dispatcher is shutting down");
	}
	p->no_servers     = 1;
	p->no_servers_why = "the dispatcher shut down; reset the profile";
	MIRAI__LOG(MIRAI_LOG_WARN, TAG, "profile '%s': the dispatcher is "
					"shutting down",
	    p->name);
	send_exit(p, pk, 0);
}

static void
handle_msg(profile *p, mirai__msg *msg)
{
	mirai__reader r;
	mirai__msghdr h;
	mirai__frame f;
	mirai__msg *keep = NULL;
	mirai *list   = NULL;
	uint32_t pid  = mirai__msg_pipe(msg);
	peer *pk;
	int rv;

	rv = mirai__msg_open(&r, mirai__msg_body(msg), mirai__msg_len(msg), &h);
	pthread_mutex_lock(&p->mtx);
	pk = find_peer(p, pid);
	/* A peer already marked lost may still have messages on their way:
	 * its results are good until peer_lost() removes it.  While closing
	 * only GONE matters. */
	if (pk == NULL || (p->closing && rv != 0)) {
		pthread_mutex_unlock(&p->mtx);
		mirai__msg_free(msg);
		return;
	}
	if (p->closing) {
		while (mirai__msg_next(&r, &f) == 1) {
			if (f.type == MIRAI__F_GONE) {
				pk->gone = 1;
				pthread_cond_broadcast(&p->cv);
			}
		}
		pthread_mutex_unlock(&p->mtx);
		mirai__msg_free(msg);
		return;
	}
	if (rv != 0) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "profile '%s': rejected a message from %s:%d: %s",
		    p->name, pk->host[0] ? pk->host : "?", pk->pid,
		    mirai_strerror(rv));
		pthread_mutex_unlock(&p->mtx);
		mirai__msg_free(msg);
		return;
	}
	if (h.nframes == 1) {
		keep = msg;
	}
	if ((int32_t) (h.ack - pk->seq_acked) > 0 &&
	    (int32_t) (h.ack - pk->seq_sent) <= 0) {
		pk->seq_acked = h.ack;
	}
	while ((rv = mirai__msg_next(&r, &f)) == 1) {
		uint32_t why;

		if (!pk->online && f.type != MIRAI__F_HELLO &&
		    f.type != MIRAI__F_GONE) {
			continue;
		}
		switch (f.type) {
		case MIRAI__F_HELLO:
			if (!pk->online) {
				on_hello(p, pk, &f);
			}
			break;
		case MIRAI__F_RESULT:
			on_result(p, pk, &f, &keep, &list);
			break;
		case MIRAI__F_BOUNCE:
			on_bounce(p, pk, &f);
			break;
		case MIRAI__F_GONE:
			pk->gone = 1;
			pthread_cond_broadcast(&p->cv);
			break;
		case MIRAI__F_REP:
			on_reply(p, &f);
			break;
		case MIRAI__F_BYE:
			if (mirai__u32_frame_decode(&f, &why) == 0) {
				MIRAI__LOG(MIRAI_LOG_INFO, TAG,
				    "profile '%s': server %s:%d is leaving "
				    "(exit code %u)",
				    p->name, pk->host, pk->pid, why);
			}
			pk->leaving = 1;
			if (pk->kind == MIRAI__KIND_DISPATCHER) {
				/* The dispatcher is stopping: nothing it holds
				 * will come back. */
				dispatcher_leaving(p, pk, &list);
				break;
			}
			requeue_peer_queue(p, pk);
			break;
		default:
			break;
		}
	}
	if (rv < 0) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "profile '%s': garbled frame from %s:%d ignored", p->name,
		    pk->host, pk->pid);
	}
	if (pk->leaving && pk->ninflight == 0 && pk->nqueue == 0) {
		/* Every result is in: let it go. */
		send_exit(p, pk, 0);
	}
	dispatch(p, &list);
	try_send(p, pk);
	pthread_mutex_unlock(&p->mtx);
	/* A single frame may have taken the message; otherwise it is ours. */
	if (h.nframes != 1 || keep != NULL) {
		mirai__msg_free(msg);
	}
	publish(list);
}

static void
on_rx(void *arg, mirai__msg *msg)
{
	sock *sk = arg;

	handle_msg(sk->prof, msg);
}

/* ---- links coming and going ------------------------------------------- */

static void
peer_lost(void *arg)
{
	peer *pk   = arg;
	profile *p = pk->prof;
	mirai *list = NULL;
	size_t lost = 0;

	pthread_mutex_lock(&p->mtx);
	for (size_t i = 0; i < p->npeers; i++) {
		if (p->peers[i] == pk) {
			p->peers[i] = p->peers[--p->npeers];
			break;
		}
	}
	requeue_peer_queue(p, pk);
	while (pk->inflight_head != NULL) {
		mirai *m = pk->inflight_head;
		claim(p, m, MIRAI_ECONNRESET, &list);
		set_errtext(m,
		    "connection to %s %s:%d was lost while it held the task",
		    pk->kind == MIRAI__KIND_DISPATCHER ? "the dispatcher" : "server",
		    pk->host[0] ? pk->host : "?", pk->pid);
		lost++;
	}
	if (pk->kind == MIRAI__KIND_DISPATCHER) {
		for (creq *r = p->reqs; r != NULL; r = r->next) {
			if (!r->done) {
				r->done   = 1;
				r->status = MIRAI_ECONNRESET;
			}
		}
		pthread_cond_broadcast(&p->cv);
	}
	if (!p->closing && pk->online) {
		MIRAI__LOG(lost > 0 ? MIRAI_LOG_WARN : MIRAI_LOG_INFO, TAG,
		    "profile '%s': server %s:%d disconnected%s (tasks lost: %zu)",
		    p->name, pk->host, pk->pid, pk->leaving ? " after BYE" : "",
		    lost);
	}
	if (!p->closing) {
		dispatch(p, &list);
	}
	pthread_mutex_unlock(&p->mtx);
	publish(list);
	mirai__tx_free(pk->tx);
	mirai__outq_clear(&pk->queue);
	free(pk);
	profile_unref(p);
}

static int
on_pipe(void *arg, int ev, uint32_t pipe)
{
	sock *sk   = arg;
	profile *p = sk->prof;
	peer *pk;
	int refuse = 0;

	pthread_mutex_lock(&p->mtx);
	/* ADD_PRE: NNG starts receiving on the pipe before ADD_POST, so the
	 * peer must exist by then or its HELLO would find nobody. */
	if (ev == MIRAI__PIPE_ADD) {
		p->live_pipes++;
		if (p->closing) {
			refuse = 1;
		} else if ((pk = calloc(1, sizeof *pk)) == NULL ||
		    mirai__tx_open(&pk->tx, sk->link, on_tx, pk) != 0 ||
		    (p->npeers == p->cappeers &&
			!(p->peers = realloc(p->peers,
			      (p->cappeers = p->cappeers ? 2 * p->cappeers : 8) *
				  sizeof *p->peers)))) {
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG,
			    "out of memory: refusing a server");
			if (pk != NULL) {
				mirai__tx_free(pk->tx);
			}
			free(pk);
			refuse = 1;
		} else {
			pk->prof              = p;
			pk->sk                = sk;
			pk->pipe_id           = pipe;
			p->peers[p->npeers++] = pk;
		}
	} else if (ev == MIRAI__PIPE_GONE) {
		p->live_pipes--;
		pthread_cond_broadcast(&p->cv);
		pk = find_peer(p, pipe);
		if (pk != NULL && !pk->dead) {
			pk->dead = 1;
			profile_ref(p);
			if (mirai__defer(peer_lost, pk) != 0) {
				profile_unref(p);
				MIRAI__LOG(MIRAI_LOG_ERROR, TAG,
				    "out of memory handling a lost server");
			}
		}
	}
	pthread_mutex_unlock(&p->mtx);
	return refuse;
}

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
	for (child **cp = &p->children; *cp != NULL; cp = &(*cp)->next) {
		if ((*cp)->pid == pid) {
			child *c   = *cp;
			hello      = c->hello;
			is_disp    = c->dispatcher;
			*cp        = c->next;
			free(c);
			break;
		}
	}
	p->alive--;
	if (!p->closing && !hello && p->kind == KIND_ONESHOT) {
		/* Its task may not be queued yet: dispatch() fails one task
		 * for each server that died unconnected, whichever comes
		 * first. */
		snprintf(p->last_failure, sizeof p->last_failure,
		    "one-shot server (pid %d) ended with %s before connecting",
		    (int) pid, how);
		p->dead_spawns++;
		dispatch(p, &list);
	} else if (!p->closing && is_disp) {
		snprintf(p->last_failure, sizeof p->last_failure,
		    "the dispatcher (pid %d) ended with %s", (int) pid, how);
		MIRAI__LOG(MIRAI_LOG_WARN, TAG, "profile '%s': %s", p->name,
		    p->last_failure);
		p->no_servers     = 1;
		p->no_servers_why = "the dispatcher of the profile has exited; "
				    "reset it and set daemons again";
		dispatch(p, &list);
	} else if (!p->closing) {
		if (!hello) {
			snprintf(p->last_failure, sizeof p->last_failure,
			    "local server pid %d ended with %s before connecting",
			    (int) pid, how);
			MIRAI__LOG(MIRAI_LOG_WARN, TAG, "profile '%s': %s",
			    p->name, p->last_failure);
		} else if (status != -1 && (!WIFEXITED(status) ||
		    (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) < 3))) {
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
			dispatch(p, &list);
		}
	}
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mtx);
	publish(list);
	profile_unref(p);
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
	c->next     = p->children;
	p->children = c;
	p->alive++;
	pthread_mutex_unlock(&p->mtx);
	profile_ref(p);
	if ((rv = mirai__watch_child(pid, on_child_exit, p)) != 0) {
		/* Cannot watch it: do not leave it running unwatched. */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		on_child_exit(pid, 0, p);
		return mirai__fail(err, rv, "cannot watch a child process");
	}
	return 0;
}

/* Start local server number k dialing url (it binds to unit bind_index +
 * k when binding is asked for).  Called unlocked. */
static int
start_local(profile *p, const char *url, int k, int one_shot,
    mirai_errmsg *err)
{
	mirai_server_opts so = p->sopts;
	pid_t pid;
	int rv;

	so.bind_index += k;
	if ((rv = mirai__spawn_server(&so, url, one_shot, &pid, err)) != 0) {
		return rv;
	}
	return watch(p, pid, 0, err);
}

/* ---- profiles --------------------------------------------------------- */

static int
copy_opts(profile *p, const mirai_server_opts *o, const mirai_hook *hook)
{
	p->sopts         = *o;
	p->sopts.plugins = NULL;
	p->max_msg       = o->max_msg ? o->max_msg : MIRAI__DEFAULT_MAX_MSG;
	if (o->nplugins > 0) {
		if ((p->plugins = calloc(o->nplugins, sizeof *p->plugins)) == NULL) {
			p->sopts.nplugins = 0;
			return MIRAI_ENOMEM;
		}
		for (size_t i = 0; i < o->nplugins; i++) {
			if ((p->plugins[i] = mirai__strdup(o->plugins[i])) == NULL) {
				return MIRAI_ENOMEM;
			}
		}
		p->sopts.plugins = (const char *const *) p->plugins;
	}
	if (o->server_path != NULL &&
	    (p->server_path = mirai__strdup(o->server_path)) == NULL) {
		return MIRAI_ENOMEM;
	}
	p->sopts.server_path = p->server_path;
	if (o->bind_to != NULL &&
	    (p->bind_to = mirai__strdup(o->bind_to)) == NULL) {
		return MIRAI_ENOMEM;
	}
	p->sopts.bind_to = p->bind_to;
	if (hook != NULL) {
		if ((p->hook_name = mirai__strdup(hook->name)) == NULL) {
			return MIRAI_ENOMEM;
		}
		p->hook      = *hook;
		p->hook.name = p->hook_name;
		p->hook_fp   = mirai__hash64(p->hook_name);
	}
	return 0;
}

static profile *
profile_new(const char *name, int kind)
{
	profile *p = calloc(1, sizeof *p);

	if (p == NULL || (p->name = mirai__strdup(name)) == NULL) {
		free(p);
		return NULL;
	}
	atomic_init(&p->refs, 1);
	pthread_mutex_init(&p->mtx, NULL);
	mirai__cond_init(&p->cv);
	p->kind    = kind;
	p->max_msg = MIRAI__DEFAULT_MAX_MSG;
	return p;
}

/* Open sk's link (a dialer retries between the two bounds, in ms). */
static int
sock_open(profile *p, sock *sk, int64_t retry_min, int64_t retry_max,
    mirai_errmsg *err)
{
	mirai__link_cfg cfg = {
		.poly             = sk->poly,
		.max_msg          = p->max_msg,
		.reconnect_min_ms = retry_min,
		.reconnect_max_ms = retry_max,
		.events = (1u << MIRAI__PIPE_ADD) | (1u << MIRAI__PIPE_GONE),
		.recv   = on_rx,
		.pipe   = on_pipe,
		.arg    = sk,
	};

	return mirai__link_open(&sk->link, &cfg, err);
}

/* Open a socket listening on url and add it to p; *out (may be NULL) gets
 * it.  Called unlocked, before the socket can matter to anyone else. */
static int
profile_listen(profile *p, const char *url, int poly, sock **out,
    mirai_errmsg *err)
{
	sock **socks, *sk;
	int rv;

	if ((socks = realloc(p->socks, (p->nsocks + 1) * sizeof *socks)) == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	p->socks = socks;
	if ((sk = calloc(1, sizeof *sk)) == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	sk->prof = p;
	sk->poly = poly;
	if ((rv = sock_open(p, sk, 0, 0, err)) != 0) {
		free(sk);
		return rv;
	}
	if ((rv = mirai__link_listen(sk->link, url, &sk->url, err)) != 0) {
		mirai__link_close(sk->link);
		free(sk);
		return rv;
	}
	p->socks[p->nsocks++] = sk;
	mirai__link_start(sk->link);
	if (out != NULL) {
		*out = sk;
	}
	return 0;
}

/* Whether every peer is silent: gone, its link already down, or never
 * online (profile_close tells it nothing, so it answers nothing). */
static int
all_quiet(profile *p)
{
	for (size_t i = 0; i < p->npeers; i++) {
		if (!p->peers[i]->gone && !p->peers[i]->dead &&
		    p->peers[i]->online) {
			return 0;
		}
	}
	return 1;
}

/* Close p's socket and resolve everything pending with MIRAI_ECLOSED. */
static void
profile_close(profile *p)
{
	mirai *list = NULL;
	int64_t deadline;

	pthread_mutex_lock(&p->mtx);
	p->closing = 1;
	while (p->unassigned.head != NULL) {
		claim(p, p->unassigned.head->owner, MIRAI_ECLOSED, &list);
	}
	for (size_t i = 0; i < p->npeers; i++) {
		peer *pk = p->peers[i];
		while (pk->queue.head != NULL) {
			mirai__out *o = pk->queue.head;
			if (o->owner != NULL) {
				claim(p, o->owner, MIRAI_ECLOSED, &list);
			} else {
				mirai__outq_remove(&pk->queue, o);
				mirai__out_free(o);
			}
		}
		while (pk->inflight_head != NULL) {
			claim(p, pk->inflight_head, MIRAI_ECLOSED, &list);
		}
		/* Nobody waits for their results: stop the work too.  A peer
		 * not yet online got no task and sees its link close instead:
		 * its pipe may be one the other side is refusing, and in NNG
		 * 1.5.2 a message sent on a pipe closing under it can be lost
		 * without being freed. */
		if (pk->online) {
			send_exit(p, pk, MIRAI__EXIT_CANCEL);
		}
	}
	/* Peers answer GONE at once, even mid-task; after that closing their
	 * links is safe.  Bounded, for peers that are frozen. */
	deadline = mirai__now_ms() + EXIT_WAIT_MS;
	while (!all_quiet(p) && mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&p->cv, &p->mtx, deadline);
	}
	pthread_mutex_unlock(&p->mtx);
	publish(list);
	for (size_t i = 0; i < p->nsocks; i++) {
		mirai__link_close(p->socks[i]->link);
		p->socks[i]->link = NULL;
	}
	if (p->disp_running) {
		/* Its link is closed: the thread returns. */
		pthread_join(p->disp_thread, NULL);
		mirai_dispatcher_destroy(p->disp);
		p->disp         = NULL;
		p->disp_running = 0;
	}
	deadline = mirai__now_ms() + RESET_WAIT_MS;
	pthread_mutex_lock(&p->mtx);
	while (p->alive > 0 && mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&p->cv, &p->mtx, deadline);
	}
	if (p->alive > 0) {
		MIRAI__LOG(MIRAI_LOG_INFO, TAG,
		    "profile '%s': %d local servers still finishing a task",
		    p->name, p->alive);
	}
	pthread_mutex_unlock(&p->mtx);
}

static pname *
pname_find(const char *name)
{
	for (pname *n = reg_head; n != NULL; n = n->next) {
		if (strcmp(n->name, name) == 0) {
			return n;
		}
	}
	return NULL;
}

static pname *
pname_get(const char *name)
{
	pname *n = pname_find(name);

	if (n == NULL && (n = calloc(1, sizeof *n)) != NULL) {
		if ((n->name = mirai__strdup(name)) == NULL) {
			free(n);
			return NULL;
		}
		n->next  = reg_head;
		reg_head = n;
	}
	return n;
}

/* The profile tasks for name go to, with a reference. */
static int
profile_for_call(const char *name, profile **out)
{
	mirai_errmsg err;
	pname *n;
	profile *p;
	int rv = 0;

	pthread_mutex_lock(&reg_mtx);
	if ((n = pname_get(name)) == NULL) {
		pthread_mutex_unlock(&reg_mtx);
		return MIRAI_ENOMEM;
	}
	if ((p = n->set) == NULL) {
		if (n->oneshot == NULL) {
			if ((p = profile_new(name, KIND_ONESHOT)) == NULL) {
				pthread_mutex_unlock(&reg_mtx);
				return MIRAI_ENOMEM;
			}
			if ((rv = profile_listen(p, "tcp://127.0.0.1:0", 1, NULL, &err)) != 0) {
				MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "%s", err.text);
				profile_unref(p);
				pthread_mutex_unlock(&reg_mtx);
				return rv;
			}
			n->oneshot = p;
		}
		p = n->oneshot;
	}
	profile_ref(p);
	pthread_mutex_unlock(&reg_mtx);
	*out = p;
	return 0;
}

/* Wait until every local server said HELLO or died, so the first tasks
 * spread over all of them.  Fails only when none came up. */
static int
wait_local(profile *p, mirai_errmsg *err)
{
	int64_t deadline = mirai__now_ms() + LOCAL_START_MS;
	int waiting, rv = 0;

	pthread_mutex_lock(&p->mtx);
	for (;;) {
		waiting = 0;
		for (child *c = p->children; c != NULL; c = c->next) {
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

/* The peer that is the profile's dispatcher, if online.  Called locked. */
static peer *
dispatcher_peer(profile *p)
{
	for (size_t i = 0; i < p->npeers; i++) {
		peer *pk = p->peers[i];
		if (pk->online && !pk->dead && pk->kind == MIRAI__KIND_DISPATCHER) {
			return pk;
		}
	}
	return NULL;
}

/*
 * Ask the dispatcher (op, a, b) and wait up to timeout_ms for the reply,
 * which fills r.  Returns 0 or an error value (then r->data may hold the
 * dispatcher's message).  Called unlocked.
 */
static int
request(profile *p, uint32_t op, uint32_t a, uint32_t b, creq *r,
    int64_t timeout_ms)
{
	int64_t deadline = mirai__now_ms() + timeout_ms;
	mirai__req_view q = {.op = op, .a = a, .b = b};
	mirai__out *o;
	peer *pk;
	int rv;

	memset(r, 0, sizeof *r);
	pthread_mutex_lock(&p->mtx);
	if (p->closing || (pk = dispatcher_peer(p)) == NULL || pk->exit_sent) {
		pthread_mutex_unlock(&p->mtx);
		return MIRAI_ECLOSED;
	}
	if ((o = mirai__out_new(MIRAI__REQ_LEN)) == NULL) {
		pthread_mutex_unlock(&p->mtx);
		return MIRAI_ENOMEM;
	}
	r->id = q.req = ++p->next_req;
	mirai__req_encode(mirai__out_frame(o), &q);
	r->next = p->reqs;
	p->reqs = r;
	mirai__outq_push_front(&pk->queue, o);
	try_send(p, pk);
	while (!r->done && mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&p->cv, &p->mtx, deadline);
	}
	for (creq **pp = &p->reqs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	rv = r->done ? r->status : MIRAI_ETIMEDOUT;
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
	while (dispatcher_peer(p) == NULL && !p->no_servers &&
	    mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&p->cv, &p->mtx, deadline);
	}
	if (dispatcher_peer(p) == NULL) {
		rv = mirai__fail(err, MIRAI_ESPAWN,
		    "the dispatcher did not come up: %s",
		    p->last_failure[0] ? p->last_failure : "no answer in time");
	}
	pthread_mutex_unlock(&p->mtx);
	return rv;
}

/* Start the profile's mirai-dispatcher, dialing its link at url. */
static int
start_dispatcher(profile *p, const mirai_daemons_opts *o, const char *url,
    mirai_errmsg *err)
{
	const char **argv;
	char nbuf[6][32], path[4096];
	char *joined = NULL;
	const char *exe;
	size_t n = 0, cap = 40 + 2 * o->server.nplugins;
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
		}
		for (size_t i = 0; i < p->sopts.nplugins; i++) {
			argv[n++] = "--plugin";
			argv[n++] = p->sopts.plugins[i];
		}
	}
	if (o->server.max_msg > 0) {
		snprintf(nbuf[4], sizeof nbuf[4], "%zu", o->server.max_msg);
		argv[n++] = "--max-msg";
		argv[n++] = nbuf[4];
	}
	if (o->no_token) {
		argv[n++] = "--no-token";
	}
	if (o->retries > 0) {
		static char rbuf[16];
		snprintf(rbuf, sizeof rbuf, "%d", o->retries);
		argv[n++] = "--retries";
		argv[n++] = rbuf;
	}
	argv[n] = NULL;
	rv      = mirai__spawn(argv, NULL, -1, -1, &pid);
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

/* Dial url for p with a monogamous socket that keeps retrying (the
 * dispatcher may be busy with another client).  Called unlocked. */
static int
profile_dial(profile *p, const char *url, mirai_errmsg *err)
{
	sock **socks, *sk;
	int rv;

	if ((socks = realloc(p->socks, (p->nsocks + 1) * sizeof *socks)) == NULL ||
	    (sk = calloc(1, sizeof *sk)) == NULL) {
		if (socks != NULL) {
			p->socks = socks;
		}
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	p->socks = socks;
	sk->prof = p;
	if ((sk->url = mirai__strdup(url)) == NULL) {
		free(sk);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	if ((rv = sock_open(p, sk, 50, 500, err)) != 0) {
		free(sk->url);
		free(sk);
		return rv;
	}
	p->socks[p->nsocks++] = sk;
	mirai__link_start(sk->link);
	return mirai__link_dial(sk->link, url, 0, err);
}

/* mirai_daemons() with attach set. */
static int
attach(const char *name, const mirai_daemons_opts *o, mirai_errmsg *err)
{
	const char *url = o->url != NULL ? o->url : getenv("MIRAI_DISPATCHER_URL");
	int64_t wait    = o->attach_timeout_ms > 0 ? o->attach_timeout_ms : 30000;
	int64_t deadline;
	profile *p;
	pname *n;
	int rv = 0;

	if (url == NULL || *url == '\0') {
		return mirai__fail(err, MIRAI_EINVAL,
		    "no dispatcher to attach to: give its URL or set "
		    "MIRAI_DISPATCHER_URL (mirai-launch sets it)");
	}
	if (o->retries < 0 || o->retries > 255) {
		return mirai__fail(err, MIRAI_EINVAL, "retries must be 0-255");
	}
	pthread_mutex_lock(&reg_mtx);
	if ((n = pname_get(name)) == NULL) {
		pthread_mutex_unlock(&reg_mtx);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	if (n->set != NULL) {
		pthread_mutex_unlock(&reg_mtx);
		return mirai__fail(err, MIRAI_ESET,
		    "compute profile '%s' is already set: reset it with "
		    "mirai_reset() before changing its settings",
		    name);
	}
	if ((p = profile_new(name, KIND_DIRECT)) == NULL ||
	    copy_opts(p, &o->server, o->hook) != 0 ||
	    (p->url = mirai__strdup(url)) == NULL) {
		pthread_mutex_unlock(&reg_mtx);
		profile_unref(p);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	p->dispatcher = 1;
	p->user_url   = 1;
	p->retries    = o->retries;
	p->max_queue  = o->max_queue > 0 ? o->max_queue : (size_t) 1 << 30;
	if ((rv = profile_dial(p, url, err)) != 0) {
		pthread_mutex_unlock(&reg_mtx);
		profile_close(p);
		profile_unref(p);
		return rv;
	}
	n->set = p;
	pthread_mutex_unlock(&reg_mtx);

	deadline = mirai__now_ms() + wait;
	pthread_mutex_lock(&p->mtx);
	while (dispatcher_peer(p) == NULL && mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&p->cv, &p->mtx, deadline);
	}
	if (dispatcher_peer(p) == NULL) {
		rv = mirai__fail(err, MIRAI_ETIMEDOUT,
		    "no dispatcher answered at %s within %lld ms (it serves one "
		    "client at a time)",
		    url, (long long) wait);
	}
	pthread_mutex_unlock(&p->mtx);
	if (rv != 0) {
		mirai_reset(name);
		return rv;
	}
	MIRAI__LOG(MIRAI_LOG_INFO, TAG, "profile '%s' attached to %s", name, url);
	return 0;
}

int
mirai_attach(const char *name, const char *url, int64_t timeout_ms,
    mirai_errmsg *err)
{
	mirai_daemons_opts o = MIRAI_DAEMONS_OPTS_INIT;

	o.profile           = name;
	o.url               = url;
	o.attach            = 1;
	o.attach_timeout_ms = timeout_ms;
	return mirai_daemons(&o, err);
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
		dispatch(p, &list);
	}
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mtx);
	publish(list);
	return NULL;
}

/* Start the dispatcher engine on a thread of this process, linked to the
 * profile over inproc url: the same code as mirai-dispatcher, without the
 * process hop (about half the latency of a round trip through it). */
static int
start_dispatcher_thread(profile *p, const mirai_daemons_opts *o,
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
	d.server     = p->sopts;
	d.retries    = o->retries;
	if ((rv = mirai_dispatcher_create(&p->disp, &d, err)) != 0) {
		return rv;
	}
	if (pthread_create(&p->disp_thread, NULL, dispatcher_thread, p) != 0) {
		mirai_dispatcher_destroy(p->disp);
		p->disp = NULL;
		return mirai__fail(err, MIRAI_ENOMEM, "cannot start a thread");
	}
	p->disp_running = 1;
	return wait_dispatcher(p, err);
}

int
mirai_daemons(const mirai_daemons_opts *o, mirai_errmsg *err)
{
	const char *name;
	profile *p;
	pname *n;
	int rv, disp;

	if (o == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "no settings given");
	}
	name = o->profile != NULL ? o->profile : "default";
	if (*name == '\0') {
		return mirai__fail(err, MIRAI_EINVAL, "empty profile name");
	}
	if (o->dispatcher != MIRAI_DISPATCHER_DEFAULT &&
	    o->dispatcher != MIRAI_DISPATCHER_OFF &&
	    o->dispatcher != MIRAI_DISPATCHER_THREAD &&
	    o->dispatcher != MIRAI_DISPATCHER_PROCESS) {
		return mirai__fail(err, MIRAI_EINVAL, "unknown dispatcher mode %d",
		    o->dispatcher);
	}
	if (o->attach) {
		return attach(name, o, err);
	}
	disp = o->dispatcher != MIRAI_DISPATCHER_OFF;
	if (o->n < 0 || o->retries < 0 || o->retries > 255) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "n must not be negative and retries must be 0-255");
	}
	if (disp) {
		if (o->nurls > 0 && o->url != NULL) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "give a base URL or a list of URLs, not both");
		}
		if (o->nurls == 0 && o->n == 0) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "give n > 0 (local servers, or server URLs with a "
			    "base URL) or a list of URLs (use mirai_reset to go "
			    "back to one-shot servers)");
		}
	} else {
		if (o->nurls > 0) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "a list of server URLs needs a dispatcher");
		}
		if (o->url == NULL && o->n == 0) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "give n > 0 local servers, or a URL for servers to "
			    "dial into (use mirai_reset to go back to one-shot "
			    "servers)");
		}
		if (o->url != NULL && o->n > 0) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "without a dispatcher the client listens on one URL "
			    "and servers dial in themselves: n must be 0 with a "
			    "URL");
		}
	}
	if (o->hook != NULL &&
	    (o->hook->name == NULL || *o->hook->name == '\0' ||
		o->hook->encode == NULL || o->hook->decode == NULL)) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "a serialization hook needs a name, encode and decode");
	}
	if (o->server.idle_ms < 0 || o->server.walltime_ms < 0 ||
	    o->server.max_msg > (size_t) UINT32_MAX - 65536) {
		return mirai__fail(err, MIRAI_EINVAL, "invalid server options");
	}

	pthread_mutex_lock(&reg_mtx);
	if ((n = pname_get(name)) == NULL) {
		pthread_mutex_unlock(&reg_mtx);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	if (n->set != NULL) {
		pthread_mutex_unlock(&reg_mtx);
		return mirai__fail(err, MIRAI_ESET,
		    "compute profile '%s' is already set: reset it with "
		    "mirai_reset() before changing its settings",
		    name);
	}
	if ((p = profile_new(name, KIND_DIRECT)) == NULL ||
	    copy_opts(p, &o->server, o->hook) != 0) {
		pthread_mutex_unlock(&reg_mtx);
		profile_unref(p);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	p->user_url   = o->url != NULL || o->nurls > 0;
	p->daemons    = o->url == NULL && o->nurls == 0 ? o->n : 0;
	p->dispatcher = disp;
	p->retries    = o->retries;
	p->max_queue  = o->max_queue > 0 ? o->max_queue : (size_t) 1 << 30;
	if (disp || o->url != NULL) {
		/* One link: the dispatcher's (in memory for a thread, loopback
		 * for a process), or the user's URL. */
		static atomic_uint inproc_seq;
		char inproc[64];
		sock *sk;
		const char *lurl = o->url;
		if (disp && o->dispatcher == MIRAI_DISPATCHER_PROCESS) {
			lurl = "tcp://127.0.0.1:0";
		} else if (disp) {
			snprintf(inproc, sizeof inproc, "inproc://mirai-dispatcher-%ld-%u",
			    (long) getpid(), atomic_fetch_add(&inproc_seq, 1));
			lurl = inproc;
		}
		if ((rv = profile_listen(p, lurl, !disp, &sk, err)) != 0 ||
		    (!disp && (p->url = mirai__strdup(sk->url)) == NULL)) {
			pthread_mutex_unlock(&reg_mtx);
			profile_close(p);
			profile_unref(p);
			return rv != 0 ? rv : MIRAI_ENOMEM;
		}
	} else {
		for (int i = 0; i < o->n; i++) {
			if ((rv = profile_listen(p, "tcp://127.0.0.1:0", 0, NULL,
				 err)) != 0) {
				pthread_mutex_unlock(&reg_mtx);
				profile_close(p);
				profile_unref(p);
				return rv;
			}
		}
	}
	n->set = p;
	pthread_mutex_unlock(&reg_mtx);

	if (disp) {
		rv = o->dispatcher == MIRAI_DISPATCHER_PROCESS
		    ? start_dispatcher(p, o, p->socks[0]->url, err)
		    : start_dispatcher_thread(p, o, p->socks[0]->url, err);
		if (rv != 0) {
			mirai_reset(name);
			return rv;
		}
	} else if (o->url == NULL) {
		for (int i = 0; i < o->n; i++) {
			if ((rv = start_local(p, p->socks[i]->url, i, 0, err)) != 0) {
				mirai_reset(name);
				return rv;
			}
		}
		if ((rv = wait_local(p, err)) != 0) {
			mirai_reset(name);
			return rv;
		}
	}
	MIRAI__LOG(MIRAI_LOG_INFO, TAG, "profile '%s' set: %s%s%s", name,
	    disp ? "dispatcher" : "direct", p->url ? ", listening at " : "",
	    p->url ? p->url : "");
	return 0;
}

int
mirai_reset(const char *name)
{
	profile *p = NULL;
	pname *n;

	if (name == NULL) {
		name = "default";
	}
	pthread_mutex_lock(&reg_mtx);
	if ((n = pname_find(name)) != NULL) {
		p      = n->set;
		n->set = NULL;
	}
	pthread_mutex_unlock(&reg_mtx);
	if (p != NULL) {
		profile_close(p);
		profile_unref(p);
	}
	return 0;
}

void
mirai_shutdown(void)
{
	pname *n;

	pthread_mutex_lock(&reg_mtx);
	n        = reg_head;
	reg_head = NULL;
	pthread_mutex_unlock(&reg_mtx);
	while (n != NULL) {
		pname *next = n->next;
		if (n->set != NULL) {
			profile_close(n->set);
			profile_unref(n->set);
		}
		if (n->oneshot != NULL) {
			profile_close(n->oneshot);
			profile_unref(n->oneshot);
		}
		free(n->name);
		free(n);
		n = next;
	}
	mirai__svc_stop();
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
		claim(p, m, MIRAI_ETIMEDOUT, &list);
		if (inflight && pk != NULL && !pk->dead) {
			/* Stop the work too: the server sends no result we
			 * would want, but stays busy until the function ends. */
			send_ctrl(p, pk, MIRAI__F_CANCEL, m->id);
		}
	}
	pthread_mutex_unlock(&p->mtx);
	publish(list);
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
	while (!p->closing && (pk = dispatcher_peer(p)) != NULL &&
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
	int rv, retries, behind;

	if (opts == NULL) {
		opts = &def;
	}
	if (out == NULL || !valid_fn(fn) || (data == NULL && len > 0) ||
	    opts->timeout_ms < 0) {
		return MIRAI_EINVAL;
	}
	pthread_once(&stripes_once, stripes_init);
	if ((rv = profile_for_call(opts->profile ? opts->profile : "default", &p)) != 0) {
		return rv;
	}
	if (p->hook_fp != 0) {
		size_t enc_len = 0;
		if (p->hook.encode(p->hook.arg, data, len, &enc, &enc_len) != 0) {
			profile_unref(p);
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
	t.flags      = 0x100u | (uint32_t) (retries > 255 ? 255 : retries);
	t.timeout_ms = opts->timeout_ms > UINT32_MAX ? UINT32_MAX
						     : (uint32_t) opts->timeout_ms;
	size = mirai__task_size(t.fn_len, len);
	if (size > p->max_msg) {
		rv = MIRAI_EMSGSIZE;
		goto fail;
	}
	/* Room first: nothing is started for a task that cannot be taken. */
	pthread_mutex_lock(&p->mtx);
	rv = reserve(p, size, nowait || in_callback > 0);
	pthread_mutex_unlock(&p->mtx);
	if (rv != 0) {
		goto fail;
	}
	if ((m = mirai__pool_get(&handles)) == NULL ||
	    (m->out = mirai__out_new(size)) == NULL) {
		rv = MIRAI_ENOMEM;
		goto unreserve;
	}
	/* Ids are unique across profiles, which makes logs unambiguous. */
	t.id = m->id = atomic_fetch_add(&next_id, 1);
	mirai__task_encode(mirai__out_frame(m->out), &t);
	release_hook_buf(p, enc);
	enc           = NULL;
	m->out->owner = m;
	m->bytes      = (uint32_t) size;
	if (opts->done != NULL || opts->timeout_ms > 0) {
		if (extra(m) == NULL) {
			rv = MIRAI_ENOMEM;
			goto unreserve;
		}
		m->x->done      = opts->done;
		m->x->done_arg  = opts->done_arg;
		m->x->timer.fn  = on_timeout;
		m->x->timer.arg = m;
	}
	atomic_init(&m->refs, 2); /* the caller's and the runtime's */
	atomic_init(&m->state, 0);

	if (p->kind == KIND_ONESHOT &&
	    (rv = start_local(p, p->socks[0]->url, 0, 1, &err)) != 0) {
		MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "%s", err.text);
		goto unreserve;
	}
	pthread_mutex_lock(&p->mtx);
	if (p->closing || (rv = table_insert(p, m)) != 0) {
		pthread_mutex_unlock(&p->mtx);
		rv = rv != 0 ? rv : MIRAI_ECLOSED;
		goto unreserve;
	}
	m->prof = p; /* takes over our reference */
	if (opts->timeout_ms > 0) {
		atomic_fetch_add(&m->refs, 1);
		if (mirai__timer_arm(&m->x->timer, mirai__now_ms() + opts->timeout_ms) != 0) {
			atomic_fetch_sub(&m->refs, 1);
		}
	}
	m->where = AT_QUEUE;
	mirai__outq_push(&p->unassigned, m->out);
	dispatch(p, &list);
	/* Read here, under the lock we hold anyway: most calls need no
	 * pacing and so take the lock once. */
	behind = p->dispatcher && m->peer != NULL &&
	    m->peer->qbytes > PACE_BYTES;
	pthread_mutex_unlock(&p->mtx);
	publish(list);
	*out = m;
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
	if (m != NULL) {
		mirai__out_free(m->out);
		free(m->x);
		mirai__pool_put(&handles, m);
	}
fail:
	release_hook_buf(p, enc);
	profile_unref(p);
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
		claim(p, m, MIRAI_ECANCELED, &list);
		set_errtext(m, "cancelled");
		if (inflight && pk != NULL && !pk->dead) {
			send_ctrl(p, pk, MIRAI__F_CANCEL, m->id);
		}
	}
	pthread_mutex_unlock(&p->mtx);
	publish(list);
	return rv;
}

int
mirai_saisei(const char *name, size_t i, int force, char **new_url,
    mirai_errmsg *err)
{
	profile *p = NULL;
	pname *n;
	creq r;
	int rv;

	if (name == NULL) {
		name = "default";
	}
	if (i > UINT32_MAX) {
		return mirai__fail(err, MIRAI_EINVAL, "no slot %zu", i);
	}
	pthread_mutex_lock(&reg_mtx);
	if ((n = pname_find(name)) != NULL && (p = n->set) != NULL) {
		profile_ref(p);
	}
	pthread_mutex_unlock(&reg_mtx);
	if (p == NULL || !p->dispatcher) {
		if (p != NULL) {
			profile_unref(p);
		}
		return mirai__fail(err, MIRAI_ESTATE,
		    "profile '%s' has no dispatcher: saisei regenerates a "
		    "dispatcher's server URL",
		    name);
	}
	rv = request(p, MIRAI__OP_SAISEI, (uint32_t) i, force != 0, &r,
	    REQUEST_MS);
	if (rv == 0 && new_url != NULL) {
		*new_url = (char *) r.data;
		r.data   = NULL;
	} else if (rv != 0) {
		mirai__fail(err, rv, "%s",
		    r.data != NULL ? (char *) r.data : mirai_strerror(rv));
	}
	free(r.data);
	profile_unref(p);
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

/* Wait for one (any) or all of ms.  Waiting for all of many mirais goes
 * through mirai_wait_all, one at a time, to stay linear. */
static int
wait_many(mirai *const *ms, size_t n, int64_t timeout_ms, int any,
    size_t *index)
{
	wnode local[16];
	wnode *nodes = n <= 16 ? local : malloc(n * sizeof *nodes);
	int64_t deadline = timeout_ms < 0 ? -1 : mirai__now_ms() + timeout_ms;
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
				rv = MIRAI_ETIMEDOUT;
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
	int rv;

	if (m == NULL) {
		return MIRAI_EINVAL;
	}
	if (!atomic_load(&m->state) &&
	    (rv = wait_many(&m, 1, timeout_ms, 0, NULL)) != 0) {
		return rv;
	}
	return m->status;
}

int
mirai_wait(mirai *m)
{
	return mirai_wait_for(m, -1);
}

int
mirai_wait_all(mirai *const *ms, size_t n, int64_t timeout_ms)
{
	if (ms == NULL && n > 0) {
		return MIRAI_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (ms[i] == NULL) {
			return MIRAI_EINVAL;
		}
	}
	int64_t deadline = timeout_ms < 0 ? -1 : mirai__now_ms() + timeout_ms;
	for (size_t i = 0; i < n; i++) {
		int64_t left = -1;
		if (atomic_load(&ms[i]->state)) {
			continue;
		}
		if (deadline >= 0 && (left = deadline - mirai__now_ms()) < 0) {
			left = 0;
		}
		if (wait_many(&ms[i], 1, left, 0, NULL) != 0) {
			return MIRAI_ETIMEDOUT;
		}
	}
	return 0;
}

int
mirai_wait_any(mirai *const *ms, size_t n, int64_t timeout_ms, size_t *index)
{
	if (ms == NULL || n == 0) {
		return MIRAI_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (ms[i] == NULL) {
			return MIRAI_EINVAL;
		}
	}
	return wait_many(ms, n, timeout_ms, 1, index);
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

/* ---- status ----------------------------------------------------------- */

typedef struct trow {
	char url[512];
	char host[64];
	char binding[96];
	int online, pid;
	uint64_t instance, assigned, complete, retries;
} trow;

/*
 * A status built from a dispatcher's status payload (rv: 0, or the error
 * value of asking for it, which leaves the rows empty).  *out is set, or
 * MIRAI_ENOMEM returned.
 */
static int
status_build(const char *name, const uint8_t *data, size_t len, int rv,
    mirai_status **out)
{
	uint64_t queued = 0, running = 0, completed = 0, retried = 0;
	mirai__rbuf rb;
	mirai_status *st;
	trow *rows = NULL;
	uint32_t nrows = 0;
	size_t strings;
	char *sp;
	creq r;

	r.data = (uint8_t *) data;
	r.len  = len;
	if (rv == 0) {
		rb.p      = r.data;
		rb.end    = r.data + r.len;
		rb.failed = 0;
		queued    = mirai__r_u64(&rb);
		running   = mirai__r_u64(&rb);
		completed = mirai__r_u64(&rb);
		retried   = mirai__r_u64(&rb);
		nrows     = mirai__r_u32(&rb);
		/* Each row takes at least 42 bytes: a bogus count fails here
		 * instead of allocating. */
		if (rb.failed || nrows > r.len / 42 ||
		    (nrows > 0 && (rows = calloc(nrows, sizeof *rows)) == NULL)) {
			rv    = rb.failed || nrows > r.len / 42 ? MIRAI_EPROTO
							   : MIRAI_ENOMEM;
			nrows = 0;
		}
		for (uint32_t i = 0; i < nrows; i++) {
			mirai__r_str(&rb, rows[i].url, sizeof rows[i].url);
			rows[i].online   = mirai__r_u8(&rb);
			rows[i].instance = mirai__r_u64(&rb);
			rows[i].assigned = mirai__r_u64(&rb);
			rows[i].complete = mirai__r_u64(&rb);
			rows[i].retries  = mirai__r_u64(&rb);
			rows[i].pid      = (int) mirai__r_u32(&rb);
			mirai__r_str(&rb, rows[i].host, sizeof rows[i].host);
			mirai__r_str(&rb, rows[i].binding, sizeof rows[i].binding);
		}
		if (rb.failed) {
			rv    = MIRAI_EPROTO;
			nrows = 0;
		}
	}
	strings = strlen(name) + 2;
	for (uint32_t i = 0; i < nrows; i++) {
		strings += strlen(rows[i].url) + strlen(rows[i].host) +
		    strlen(rows[i].binding) + 3;
	}
	st = calloc(1, sizeof *st + nrows * sizeof *st->rows + strings);
	if (st == NULL) {
		free(rows);
		return MIRAI_ENOMEM;
	}
	st->rows    = (mirai_status_row *) (st + 1);
	sp          = (char *) (st->rows + nrows);
	st->profile = strcpy(sp, name);
	sp += strlen(name) + 1;
	st->url = strcpy(sp, "");
	sp += 1;
	for (uint32_t i = 0; i < nrows; i++) {
		mirai_status_row *row = &st->rows[i];
		row->url              = strcpy(sp, rows[i].url);
		sp += strlen(rows[i].url) + 1;
		row->host = strcpy(sp, rows[i].host);
		sp += strlen(rows[i].host) + 1;
		row->binding = strcpy(sp, rows[i].binding);
		sp += strlen(rows[i].binding) + 1;
		row->online   = rows[i].online;
		row->instance = rows[i].instance;
		row->assigned = rows[i].assigned;
		row->complete = rows[i].complete;
		row->retries  = rows[i].retries;
		row->pid      = rows[i].pid;
	}
	free(rows);
	st->set        = 1;
	st->dispatcher = 1;
	st->nrows      = nrows;
	st->queued     = queued;
	st->running    = running;
	st->completed  = completed;
	st->retried    = retried;
	st->error      = rv;
	*out           = st;
	return 0;
}

/* The status matrix, asked of the dispatcher.  Consumes the reference to
 * p.  A dispatcher that does not answer gives a status with error set. */
static int
status_dispatcher(profile *p, const char *name, mirai_status **out)
{
	mirai_status *st;
	creq r;
	int rv, connected;

	rv = request(p, MIRAI__OP_STATUS, 0, 0, &r, REQUEST_MS);
	if (status_build(name, r.data, r.len, rv, &st) != 0) {
		free(r.data);
		profile_unref(p);
		return MIRAI_ENOMEM;
	}
	free(r.data);
	pthread_mutex_lock(&p->mtx);
	connected       = dispatcher_peer(p) != NULL;
	st->dispatcher_pid = connected ? dispatcher_peer(p)->pid : 0;
	st->connections    = connected;
	st->daemons        = p->daemons;
	/* Tasks still here count as queued too. */
	st->queued += p->unassigned.count;
	for (size_t i = 0; i < p->npeers; i++) {
		st->queued += p->peers[i]->nqueue;
	}
	pthread_mutex_unlock(&p->mtx);
	profile_unref(p);
	*out = st;
	return 0;
}

/* One control request to a dispatcher's control URL, synchronously.
 * *data (malloc'd, NUL-terminated) gets the reply's payload. */
static int
control_request(const char *url, uint32_t op, uint32_t a, uint32_t b,
    uint8_t **data, size_t *len, mirai_errmsg *err)
{
	mirai__req_view q = {.req = 1, .op = op, .a = a, .b = b};
	mirai__msghdr h   = {.nframes = 1, .seq = 1};
	mirai__reader r;
	mirai__frame f;
	mirai__rep_view rep;
	mirai__msg *msg;
	int rv;

	*data = NULL;
	*len  = 0;
	if (url == NULL) {
		url = getenv("MIRAI_CONTROL_URL");
	}
	if (url == NULL || *url == '\0') {
		return mirai__fail(err, MIRAI_EINVAL,
		    "no control URL: give one or set MIRAI_CONTROL_URL "
		    "(mirai-launch sets it)");
	}
	if ((rv = mirai__msg_alloc(&msg, MIRAI__HDR_LEN + MIRAI__REQ_LEN)) != 0) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	mirai__hdr_encode(mirai__msg_body(msg), &h);
	mirai__req_encode(mirai__msg_body(msg) + MIRAI__HDR_LEN, &q);
	/* The dispatcher sends one reply and nothing after: closing once it
	 * arrived is safe. */
	if ((rv = mirai__request(url, msg, &msg, REQUEST_MS, err)) != 0) {
		return rv;
	}
	rv = MIRAI_EPROTO;
	if (mirai__msg_open(&r, mirai__msg_body(msg), mirai__msg_len(msg), &h) == 0 &&
	    mirai__msg_next(&r, &f) == 1 && mirai__rep_decode(&f, &rep) == 0 &&
	    (*data = malloc(rep.len + 1)) != NULL) {
		memcpy(*data, rep.data, rep.len);
		(*data)[rep.len] = '\0';
		*len             = rep.len;
		rv               = (int) rep.status;
		if (rv != 0) {
			mirai__fail(err, rv, "%s", (char *) *data);
		}
	} else {
		mirai__fail(err, rv, "a garbled answer from %s", url);
	}
	mirai__msg_free(msg);
	return rv;
}

int
mirai_status_query(const char *url, mirai_status **out, mirai_errmsg *err)
{
	uint8_t *data;
	size_t len;
	int rv;

	if (out == NULL) {
		return MIRAI_EINVAL;
	}
	if ((rv = control_request(url, MIRAI__OP_STATUS, 0, 0, &data, &len, err)) != 0) {
		free(data);
		return rv;
	}
	rv = status_build("dispatcher", data, len, 0, out);
	if (rv == 0) {
		(*out)->connections = 1;
		if ((*out)->error != 0) {
			rv = mirai__fail(err, (*out)->error, "a garbled status");
			mirai_status_free(*out);
		}
	}
	free(data);
	return rv;
}

int
mirai_saisei_query(const char *url, size_t i, int force, char **new_url,
    mirai_errmsg *err)
{
	uint8_t *data;
	size_t len;
	int rv;

	if (i > UINT32_MAX) {
		return mirai__fail(err, MIRAI_EINVAL, "no slot %zu", i);
	}
	rv = control_request(url, MIRAI__OP_SAISEI, (uint32_t) i, force != 0,
	    &data, &len, err);
	if (rv == 0 && new_url != NULL) {
		*new_url = (char *) data;
		data     = NULL;
	}
	free(data);
	return rv;
}

int
mirai_status_get(const char *name, mirai_status **out)
{
	mirai_status *st;
	profile *p = NULL;
	pname *n;
	size_t strings = 0, rows = 0;
	const char *url;
	char *sp;

	if (out == NULL) {
		return MIRAI_EINVAL;
	}
	if (name == NULL) {
		name = "default";
	}
	pthread_mutex_lock(&reg_mtx);
	if ((n = pname_find(name)) != NULL && (p = n->set) != NULL) {
		profile_ref(p);
	}
	pthread_mutex_unlock(&reg_mtx);
	if (p != NULL && p->dispatcher) {
		return status_dispatcher(p, name, out);
	}
	if (p != NULL) {
		pthread_mutex_lock(&p->mtx);
	}
	/* One allocation: the struct, the rows, then the strings. */
	url     = p != NULL && p->url != NULL ? p->url : "";
	strings = strlen(name) + 1 + strlen(url) + 1;
	if (p != NULL) {
		for (size_t i = 0; i < p->npeers; i++) {
			if (p->peers[i]->online) {
				rows++;
				strings += strlen(p->peers[i]->host) + 1 +
				    strlen(p->peers[i]->sk->url) + 1 +
				    strlen(p->peers[i]->binding) + 1;
			}
		}
	}
	st = calloc(1, sizeof *st + rows * sizeof *st->rows + strings);
	if (st == NULL) {
		if (p != NULL) {
			pthread_mutex_unlock(&p->mtx);
			profile_unref(p);
		}
		return MIRAI_ENOMEM;
	}
	st->rows    = (mirai_status_row *) (st + 1);
	sp          = (char *) (st->rows + rows);
	st->profile = strcpy(sp, name);
	sp += strlen(name) + 1;
	st->url = strcpy(sp, url);
	sp += strlen(url) + 1;
	if (p != NULL) {
		st->set     = 1;
		st->daemons = p->daemons;
		st->queued  = p->unassigned.count;
		for (size_t i = 0; i < p->npeers; i++) {
			peer *pk = p->peers[i];
			mirai_status_row *r;
			if (!pk->online) {
				continue;
			}
			st->connections++;
			st->queued += pk->nqueue;
			st->running += pk->ninflight;
			r      = &st->rows[st->nrows++];
			r->url = strcpy(sp, pk->sk->url);
			sp += strlen(pk->sk->url) + 1;
			r->host = strcpy(sp, pk->host);
			sp += strlen(pk->host) + 1;
			r->binding = strcpy(sp, pk->binding);
			sp += strlen(pk->binding) + 1;
			r->online   = 1;
			r->instance = 1;
			r->assigned = pk->assigned;
			r->complete = pk->complete;
			r->pid      = pk->pid;
		}
		st->completed = p->completed;
		pthread_mutex_unlock(&p->mtx);
		profile_unref(p);
	}
	*out = st;
	return 0;
}

void
mirai_status_free(mirai_status *st)
{
	free(st);
}

int
mirai_status_json(const mirai_status *st, char **out)
{
	mirai__sb sb = {0};

	if (st == NULL || out == NULL) {
		return MIRAI_EINVAL;
	}
	mirai__sb_printf(&sb, "{\"profile\":");
	mirai__sb_json_str(&sb, st->profile);
	mirai__sb_printf(&sb,
	    ",\"set\":%s,\"dispatcher\":%s,\"connections\":%d,\"daemons\":%d,"
	    "\"url\":",
	    st->set ? "true" : "false", st->dispatcher ? "true" : "false",
	    st->connections, st->daemons);
	mirai__sb_json_str(&sb, st->url);
	mirai__sb_printf(&sb,
	    ",\"queued\":%" PRIu64 ",\"running\":%" PRIu64
	    ",\"completed\":%" PRIu64 ",\"retried\":%" PRIu64
	    ",\"error\":%d,\"dispatcher_pid\":%d,\"servers\":[",
	    st->queued, st->running, st->completed, st->retried, st->error,
	    st->dispatcher_pid);
	for (size_t i = 0; i < st->nrows; i++) {
		const mirai_status_row *r = &st->rows[i];
		mirai__sb_printf(&sb, "%s{\"url\":", i > 0 ? "," : "");
		mirai__sb_json_str(&sb, r->url);
		mirai__sb_printf(&sb,
		    ",\"online\":%d,\"instance\":%" PRIu64 ",\"assigned\":%" PRIu64
		    ",\"complete\":%" PRIu64 ",\"retries\":%" PRIu64
		    ",\"pid\":%d,\"host\":",
		    r->online, r->instance, r->assigned, r->complete, r->retries,
		    r->pid);
		mirai__sb_json_str(&sb, r->host);
		mirai__sb_printf(&sb, ",\"binding\":");
		mirai__sb_json_str(&sb, r->binding != NULL ? r->binding : "");
		mirai__sb_printf(&sb, "}");
	}
	mirai__sb_printf(&sb, "]}");
	if (sb.failed) {
		free(sb.buf);
		return MIRAI_ENOMEM;
	}
	*out = sb.buf;
	return 0;
}
