/*
 * memlink.c: in-memory links, between a client and the dispatcher thread
 * of the same process.  The messages are the same as over NNG; they are
 * handed from one end to the other without a socket, a pipe or a thread
 * hop.  transport.c puts them behind the mirai__link interface.
 *
 * A link listens on or dials a mem:// name; a listener pairs with one
 * dialer at a time.  A message sent goes into the other end's inbox and is
 * received (cfg.recv) on the sending thread as soon as that thread holds
 * no lock: both sides send holding their own lock, and each one's receive
 * takes its own, so a receive run inside a send could take the two locks
 * in either order.  A thread that knows such a point brackets its work
 * with mirai__link_hold() and mirai__link_flush(): the receives of what
 * it sent run in the flush.  The transport's NNG callbacks do this, and so
 * does submitting a task; a message sent outside any bracket is received
 * on the service thread.
 *
 * One end's receive never runs on two threads at once, and its messages
 * arrive in the order they were sent, as over an NNG pipe.  Pipe events
 * (ADD and UP when a dialer connects, GONE for the other end when one end
 * closes) run unlocked, on the thread that dials or closes.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Connections are numbered from here: NNG's pipe ids stay below 2^31. */
#define MEM_PIPE_BASE 0x80000000u

/* Messages in order: a ring that grows. */
typedef struct ring {
	mirai__msg **v;
	size_t head, len, cap;
} ring;

struct mirai__mem {
	mirai__link_cfg cfg;
	char *name;         /* the mem:// URL listened on, or NULL */
	struct mirai__mem *next;  /* listeners */
	struct mirai__mem *peer;  /* the other end while connected */
	uint32_t pipe;      /* the connection's id */
	int connected;      /* ever: a send without a peer is dropped */
	int up;             /* its pipe events ran: receives may run */
	int started;        /* mirai__mem_start() was called */
	int closed;
	ring in;            /* received, not yet handed to cfg.recv */
	ring early;         /* sent before the link connected */
	int scheduled;      /* on a thread's pending list or deferred */
	int draining;       /* a thread runs cfg.recv for this end */
	int busy;           /* callbacks of this end running now */
	unsigned refs;      /* the owner's, and one while scheduled */
	struct mirai__mem *pnext; /* a thread's pending list */
};

/*
 * One lock for every in-memory link: it guards the listeners, the rings
 * and the flags, and is never held while a callback runs.  (Its critical
 * sections are a few pointer moves; a process has one such link per
 * profile with a dispatcher thread.)
 */
static pthread_mutex_t mem_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mem_idle = PTHREAD_COND_INITIALIZER; /* busy fell */
static struct mirai__mem *listeners;
static uint32_t last_pipe;

/* What this thread sent inside a bracket: ends whose receives it runs
 * when the bracket closes. */
static _Thread_local unsigned hold_depth;
static _Thread_local struct mirai__mem *pend_head, *pend_tail;

/* ---- rings -------------------------------------------------------------- */

static int
ring_push(ring *r, mirai__msg *m)
{
	if (r->len == r->cap) {
		size_t cap       = r->cap ? 2 * r->cap : 16;
		mirai__msg **v   = malloc(cap * sizeof *v);

		if (v == NULL) {
			return MIRAI_ENOMEM;
		}
		for (size_t i = 0; i < r->len; i++) {
			v[i] = r->v[(r->head + i) % r->cap];
		}
		free(r->v);
		r->v    = v;
		r->cap  = cap;
		r->head = 0;
	}
	r->v[(r->head + r->len) % r->cap] = m;
	r->len++;
	return 0;
}

static mirai__msg *
ring_pop(ring *r)
{
	mirai__msg *m;

	if (r->len == 0) {
		return NULL;
	}
	m       = r->v[r->head];
	r->head = (r->head + 1) % r->cap;
	r->len--;
	return m;
}

/* Take everything out of r into a ring of the caller's (to free after
 * unlocking). */
static ring
ring_take(ring *r)
{
	ring t = *r;

	memset(r, 0, sizeof *r);
	return t;
}

static void
ring_free(ring *r)
{
	mirai__msg *m;

	while ((m = ring_pop(r)) != NULL) {
		mirai__msg_free(m);
	}
	free(r->v);
	memset(r, 0, sizeof *r);
}

/* ---- delivery ------------------------------------------------------------ */

static void drain_job(void *arg);

/* Drop a reference; returns 1 when e is to be freed (after unlocking).
 * Called locked. */
static int
unref_locked(struct mirai__mem *e)
{
	return --e->refs == 0;
}

static void
mem_free(struct mirai__mem *e)
{
	ring_free(&e->in);
	ring_free(&e->early);
	free(e->name);
	free(e);
}

/* See that e's inbox gets received: by this thread when its bracket
 * closes, else on the service thread.  Called locked. */
static void
schedule(struct mirai__mem *e)
{
	if (e->scheduled || e->draining || !e->started || !e->up ||
	    e->closed || e->in.len == 0) {
		/* Nothing to do, or whoever drains e will see it. */
		return;
	}
	e->scheduled = 1;
	e->refs++;
	if (hold_depth > 0) {
		e->pnext = NULL;
		if (pend_tail != NULL) {
			pend_tail->pnext = e;
		} else {
			pend_head = e;
		}
		pend_tail = e;
	} else if (mirai__defer(drain_job, e) != 0) {
		e->scheduled = 0;
		e->refs--;
		MIRAI__LOG(MIRAI_LOG_ERROR, "transport",
		    "out of memory: an in-memory link stalls until its next "
		    "message");
	}
}

/* Hand e's inbox to its cfg.recv, unless another thread does already.
 * Takes the reference scheduling gave.  Called unlocked. */
static void
drain(struct mirai__mem *e)
{
	mirai__msg *m;
	int dead;

	pthread_mutex_lock(&mem_mtx);
	e->scheduled = 0;
	if (!e->draining && e->started && e->up && !e->closed) {
		uint32_t pipe = e->pipe;

		e->draining = 1;
		e->busy++;
		while (!e->closed && (m = ring_pop(&e->in)) != NULL) {
			pthread_mutex_unlock(&mem_mtx);
			mirai__msg_set_pipe(m, pipe);
			if (e->cfg.recv != NULL) {
				e->cfg.recv(e->cfg.arg, m);
			} else {
				mirai__msg_free(m);
			}
			pthread_mutex_lock(&mem_mtx);
		}
		e->draining = 0;
		if (--e->busy == 0) {
			pthread_cond_broadcast(&mem_idle);
		}
	}
	dead = unref_locked(e);
	pthread_mutex_unlock(&mem_mtx);
	if (dead) {
		mem_free(e);
	}
}

static void
drain_job(void *arg)
{
	mirai__link_hold();
	drain(arg);
	mirai__link_flush();
}

void
mirai__link_hold(void)
{
	hold_depth++;
}

void
mirai__link_flush(void)
{
	struct mirai__mem *e;

	if (hold_depth != 1) {
		/* An inner bracket: the outer one delivers. */
		hold_depth -= hold_depth > 0;
		return;
	}
	/* Still held: what the receives send joins the list. */
	while ((e = pend_head) != NULL) {
		if ((pend_head = e->pnext) == NULL) {
			pend_tail = NULL;
		}
		drain(e);
	}
	hold_depth = 0;
}

/* ---- links --------------------------------------------------------------- */

int
mirai__url_is_mem(const char *url)
{
	return url != NULL && strncmp(url, "mem://", 6) == 0;
}

int
mirai__mem_open(mirai__mem **out, const mirai__link_cfg *cfg)
{
	struct mirai__mem *e = calloc(1, sizeof *e);

	if (e == NULL) {
		return MIRAI_ENOMEM;
	}
	e->cfg  = *cfg;
	e->refs = 1;
	*out    = e;
	return 0;
}

static int
name_check(const char *url, mirai_errmsg *err)
{
	if (!mirai__url_is_mem(url) || url[6] == '\0') {
		return mirai__fail(err, MIRAI_EADDRINVAL,
		    "%s: an in-memory link takes a mem://NAME URL",
		    url != NULL ? url : "(none)");
	}
	return 0;
}

int
mirai__mem_listen(mirai__mem *e, const char *url, char **dial,
    mirai_errmsg *err)
{
	char *name = NULL, *copy = NULL;
	int taken  = 0;
	int rv;

	if ((rv = name_check(url, err)) != 0) {
		return rv;
	}
	if ((name = mirai__strdup(url)) == NULL ||
	    (dial != NULL && (copy = mirai__strdup(url)) == NULL)) {
		free(name);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&mem_mtx);
	for (struct mirai__mem *l = listeners; l != NULL; l = l->next) {
		taken |= strcmp(l->name, url) == 0;
	}
	if (!taken && e->name == NULL) {
		e->name   = name;
		e->next   = listeners;
		listeners = e;
		name      = NULL;
	}
	pthread_mutex_unlock(&mem_mtx);
	if (name != NULL) {
		free(name);
		free(copy);
		return taken ? mirai__fail(err, MIRAI_EADDRINUSE,
				   "%s: already listened on", url)
			     : mirai__fail(err, MIRAI_ESTATE,
				   "%s: an in-memory link listens on one name",
				   url);
	}
	if (dial != NULL) {
		*dial = copy;
	}
	return 0;
}

/* Run e's pipe callback for ev if it wants that event.  The caller
 * raised e->busy, so that e cannot close meanwhile.  Called unlocked. */
static int
pipe_event(struct mirai__mem *e, int ev, uint32_t pipe)
{
	if (e->cfg.pipe != NULL && (e->cfg.events & (1u << ev))) {
		return e->cfg.pipe(e->cfg.arg, ev, pipe);
	}
	return 0;
}

/* A callback of e has returned.  Called locked. */
static void
idle_locked(struct mirai__mem *e)
{
	if (--e->busy == 0) {
		pthread_cond_broadcast(&mem_idle);
	}
}

/* e's GONE for pipe, for an e whose busy was raised.  Called unlocked. */
static void
gone(struct mirai__mem *e, uint32_t pipe)
{
	pipe_event(e, MIRAI__PIPE_GONE, pipe);
	pthread_mutex_lock(&mem_mtx);
	idle_locked(e);
	pthread_mutex_unlock(&mem_mtx);
}

/* Part e from its peer; returns the peer, whose GONE the caller runs
 * after unlocking (its busy is raised for that), or NULL.  Called
 * locked. */
static struct mirai__mem *
part_locked(struct mirai__mem *e)
{
	struct mirai__mem *f = e->peer;

	if (f == NULL) {
		return NULL;
	}
	e->peer = NULL;
	f->peer = NULL;
	f->busy++;
	return f;
}

/* Move what from sent before connecting to the inbox of to.  Called
 * locked. */
static void
early_to(struct mirai__mem *from, struct mirai__mem *to)
{
	for (mirai__msg *m; (m = ring_pop(&from->early)) != NULL;) {
		if (ring_push(&to->in, m) != 0) {
			mirai__msg_free(m);
		}
	}
}

int
mirai__mem_dial(mirai__mem *e, const char *url, mirai_errmsg *err)
{
	struct mirai__mem *l;
	uint32_t pipe;
	int refused;
	int rv;

	if ((rv = name_check(url, err)) != 0) {
		return rv;
	}
	pthread_mutex_lock(&mem_mtx);
	for (l = listeners; l != NULL && strcmp(l->name, url) != 0;
	     l = l->next) {
	}
	if (l == NULL || l->peer != NULL || e->connected || e->closed) {
		pthread_mutex_unlock(&mem_mtx);
		return mirai__fail(err, MIRAI_ECONNREFUSED, "%s: %s", url,
		    l == NULL	   ? "nobody listens there"
		    : e->connected ? "this link has dialed once already"
				   : "it has a peer already");
	}
	if (++last_pipe >= MEM_PIPE_BASE) {
		last_pipe = 1;
	}
	pipe         = MEM_PIPE_BASE | last_pipe;
	e->peer      = l;
	l->peer      = e;
	e->pipe      = pipe;
	l->pipe      = pipe;
	e->connected = 1;
	l->connected = 1;
	/* Whatever either end sent before goes first. */
	early_to(e, l);
	early_to(l, e);
	e->busy++;
	l->busy++;
	pthread_mutex_unlock(&mem_mtx);

	/* As NNG does: ADD on both sides (either may refuse), then UP.  The
	 * receives of what the callbacks send run in the flush below. */
	mirai__link_hold();
	refused = pipe_event(l, MIRAI__PIPE_ADD, pipe) != 0 ||
	    pipe_event(e, MIRAI__PIPE_ADD, pipe) != 0;
	if (!refused) {
		pipe_event(l, MIRAI__PIPE_UP, pipe);
		pipe_event(e, MIRAI__PIPE_UP, pipe);
	}
	pthread_mutex_lock(&mem_mtx);
	if (refused) {
		if (e->peer == l) {
			e->peer = NULL;
			l->peer = NULL;
		}
	} else {
		e->up = 1;
		l->up = 1;
		schedule(l);
		schedule(e);
	}
	pthread_mutex_unlock(&mem_mtx);
	if (refused) {
		/* A refused pipe closes, and both sides see it go. */
		gone(l, pipe);
		gone(e, pipe);
	} else {
		pthread_mutex_lock(&mem_mtx);
		idle_locked(l);
		idle_locked(e);
		pthread_mutex_unlock(&mem_mtx);
	}
	mirai__link_flush();
	if (refused) {
		return mirai__fail(err, MIRAI_ECONNREFUSED, "%s: refused", url);
	}
	return 0;
}

void
mirai__mem_start(mirai__mem *e)
{
	pthread_mutex_lock(&mem_mtx);
	e->started = 1;
	schedule(e);
	pthread_mutex_unlock(&mem_mtx);
}

void
mirai__mem_send(mirai__mem *e, mirai__msg *m)
{
	int kept = 0;

	pthread_mutex_lock(&mem_mtx);
	if (e->closed) {
		/* Nothing to send on. */
	} else if (e->peer != NULL) {
		if (ring_push(&e->peer->in, m) == 0) {
			kept = 1;
			schedule(e->peer);
		}
	} else if (!e->connected) {
		/* Goes when the link connects, as NNG holds a message sent
		 * before a pipe is there. */
		kept = ring_push(&e->early, m) == 0;
	}
	/* Else the peer is gone: the message is lost, as on a closed pipe;
	 * its GONE tells the owner. */
	pthread_mutex_unlock(&mem_mtx);
	if (!kept) {
		mirai__msg_free(m);
	}
}

void
mirai__mem_pipe_close(mirai__mem *e, uint32_t pipe)
{
	struct mirai__mem *f = NULL;

	pthread_mutex_lock(&mem_mtx);
	if (e->peer != NULL && e->pipe == pipe && !e->closed) {
		f = part_locked(e);
		e->busy++;
	}
	pthread_mutex_unlock(&mem_mtx);
	if (f != NULL) {
		/* Both sides see the pipe go, as with NNG. */
		gone(f, pipe);
		gone(e, pipe);
	}
}

void
mirai__mem_close(mirai__mem *e)
{
	struct mirai__mem *f;
	ring in, early;
	uint32_t pipe;
	int dead;

	if (e == NULL) {
		return;
	}
	pthread_mutex_lock(&mem_mtx);
	e->closed = 1;
	if (e->name != NULL) {
		for (struct mirai__mem **pp = &listeners; *pp != NULL;
		     pp = &(*pp)->next) {
			if (*pp == e) {
				*pp = e->next;
				break;
			}
		}
	}
	pipe = e->pipe;
	f    = part_locked(e);
	/* Callbacks of ours running on other threads finish first; none
	 * starts now that we are closed. */
	while (e->busy > 0) {
		pthread_cond_wait(&mem_idle, &mem_mtx);
	}
	in    = ring_take(&e->in);
	early = ring_take(&e->early);
	dead  = unref_locked(e);
	pthread_mutex_unlock(&mem_mtx);
	if (f != NULL) {
		gone(f, pipe);
	}
	ring_free(&in);
	ring_free(&early);
	if (dead) {
		mem_free(e);
	}
}
