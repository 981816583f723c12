/*
 * client_direct.c: the client's own scheduler for direct mode, over the
 * peers of a profile: the set of peers, each peer's queue, in-flight list
 * and send window, and dispatch to the least-loaded usable peer.  What
 * comes from the peers, and their pipes, are client_peer.c's.
 */
#include <stdlib.h>
#include <string.h>

#include "client.h"

#define WINDOW 2

/*
 * A server with this many tasks in flight gets the tasks given to it
 * after them with its next message to us (a result, a bounce, a ping), as
 * one batch, rather than in a message per call: it has work until then,
 * and every message costs both sides a send, a receive and thread
 * wake-ups.  Measured (w1 without a dispatcher, 2 servers): the CPU time
 * per task of client and servers alike halved, with any value from 2 to
 * 64.  A dispatcher is never held back: it needs every task at once to
 * give it to whichever server is idle.
 */
#define HOLD_INFLIGHT 8

/* ---- in-flight lists ---------------------------------------------------- */

static void
inflight_push(peer *pk, mirai *m)
{
	MIRAI__LIST_PUSH_BACK(&pk->inflight, m, entry);
	pk->ninflight++;
	m->where = AT_INFLIGHT;
}

void
mirai__cl_inflight_remove(peer *pk, mirai *m)
{
	MIRAI__LIST_REMOVE(&pk->inflight, m, entry);
	pk->ninflight--;
	m->where = AT_NONE;
	mirai__cl_peer_changed(pk->prof, pk);
}

/* ---- sending ---------------------------------------------------------- */

typedef struct pack_ctx {
	peer *pk;
	uint32_t seq;
} pack_ctx;

/*
 * A task frame went out.  A server's tasks keep their frame while the
 * server holds them: a bounce is checked against it and requeues it, and a
 * lost server's task can be retried.  A dispatcher keeps its own copies.
 */
static int
on_packed(void *arg, mirai__out *o)
{
	pack_ctx *c = arg;
	mirai *m    = o->owner;
	mirai__out *copy;

	if (m == NULL) {
		return 0;
	}
	m->out = NULL;
	/* From the queue to in flight: the peer's load stays. */
	c->pk->nqueue--;
	c->pk->qbytes -= m->bytes;
	inflight_push(c->pk, m);
	if (c->pk->kind != MIRAI__KIND_SERVER) {
		return 0;
	}
	if (o->msg == NULL) {
		m->out = o;
		return 1;
	}
	/* A big frame is the message that goes: keep a copy.  Without one
	 * the task can be neither retried nor bounced. */
	if ((copy = calloc(1, sizeof *copy)) != NULL &&
	    mirai__msg_dup(&copy->msg, o->msg) == 0) {
		copy->len   = o->len;
		copy->owner = m;
		m->out      = copy;
	} else {
		free(copy);
	}
	return 0;
}

/* Send what pk's queue holds, as far as its window allows.  Called
 * locked. */
void
mirai__cl_try_send(profile *p, peer *pk)
{
	mirai__msghdr h;
	pack_ctx c;
	mirai__msg *msg;

	/* A monogamous socket holds a message until the pipe takes it, so
	 * only polyamorous links need the window. */
	while (!pk->sending && !pk->dead && pk->queue.head != NULL &&
	    (!pk->sk->poly || pk->urgent ||
		(uint32_t) (pk->seq_sent - pk->seq_acked) < WINDOW)) {
		pk->urgent = 0;
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
		pk->last_tx  = mirai__now_ms();
		if (pk->sk->poly) {
			mirai__msg_set_pipe(msg, (uint32_t) pk->pipe_id);
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
		mirai__cl_try_send(p, pk);
	}
	pthread_mutex_unlock(&p->mtx);
}

void
mirai__cl_send_ctrl(profile *p, peer *pk, uint8_t type, uint64_t v)
{
	mirai__out *o;

	if (pk->exit_sent || (o = mirai__out_ctrl(type, 8, v)) == NULL) {
		return;
	}
	/* Control frames overtake queued tasks. */
	mirai__outq_push_front(&pk->queue, o);
	mirai__cl_try_send(p, pk);
}

/* Tell pk to exit (cancelling its running task with MIRAI__EXIT_CANCEL):
 * the last frame it gets from us; it answers GONE.  Called locked. */
void
mirai__cl_send_exit(profile *p, peer *pk, uint32_t flags)
{
	mirai__out *o;

	if (pk->exit_sent || pk->dead) {
		return;
	}
	if ((o = mirai__out_ctrl(MIRAI__F_EXIT, 4, flags)) == NULL) {
		return; /* it will see the link drop instead */
	}
	/* First, and past a full window: a server stopped and woken must
	 * find it before its own heartbeat gives up on us. */
	mirai__outq_push_front(&pk->queue, o);
	pk->urgent    = 1;
	pk->exit_sent = 1;
	mirai__cl_peer_changed(p, pk);
	mirai__cl_try_send(p, pk);
}

/* ---- assignment ------------------------------------------------------- */

static int
usable(const peer *pk)
{
	return pk->online && !pk->dead && !pk->leaving && !pk->exit_sent &&
	    (!pk->has_budget || pk->budget > 0);
}

void
mirai__cl_peer_changed(profile *p, peer *pk)
{
	if (pk->slot != SIZE_MAX) {
		mirai__cl_pick_set(&p->pick, pk->slot,
		    usable(pk) ? pk->nqueue + pk->ninflight : PICK_NONE);
	}
}

int
mirai__cl_peer_add(profile *p, peer *pk)
{
	if (p->npeers == p->cappeers) {
		size_t cap = p->cappeers ? 2 * p->cappeers : 8;
		peer **v   = realloc(p->peers, cap * sizeof *v);
		if (v == NULL) {
			return MIRAI_ENOMEM;
		}
		p->peers    = v;
		p->cappeers = cap;
	}
	if (mirai__cl_pick_reserve(&p->pick, p->cappeers) != 0 ||
	    mirai__idmap_put(&p->by_pipe, pk) != 0) {
		return MIRAI_ENOMEM;
	}
	pk->slot              = p->npeers;
	p->peers[p->npeers++] = pk;
	mirai__cl_peer_changed(p, pk);
	return 0;
}

/* The last peer takes pk's slot. */
void
mirai__cl_peer_remove(profile *p, peer *pk)
{
	size_t last = p->npeers - 1;

	if (pk->slot == SIZE_MAX) {
		return;
	}
	mirai__idmap_del(&p->by_pipe, pk);
	if (pk->slot != last) {
		p->peers[pk->slot]       = p->peers[last];
		p->peers[pk->slot]->slot = pk->slot;
		mirai__cl_pick_set(&p->pick, pk->slot,
		    mirai__cl_pick_get(&p->pick, last));
	}
	mirai__cl_pick_set(&p->pick, last, PICK_NONE);
	p->npeers--;
	pk->slot = SIZE_MAX;
}

/* A peer for a new pipe of sk, in p's peers; NULL when out of memory.
 * Called locked. */
peer *
mirai__cl_peer_new(profile *p, sock *sk, uint32_t pipe)
{
	peer *pk = calloc(1, sizeof *pk);

	if (pk == NULL) {
		return NULL;
	}
	pk->prof    = p;
	pk->sk      = sk;
	pk->pipe_id = pipe;
	pk->last_rx = pk->last_tx = mirai__now_ms();
	if (mirai__tx_open(&pk->tx, sk->link, on_tx, pk) != 0 ||
	    mirai__cl_peer_add(p, pk) != 0) {
		mirai__tx_free(pk->tx);
		free(pk);
		return NULL;
	}
	return pk;
}

/* The usable peer with the least unfinished work, round robin among
 * equals: the first such going round the peers from rr.  Called
 * locked. */
static peer *
pick_peer(profile *p)
{
	size_t at;

	if (p->npeers == 0 || (at = mirai__cl_pick_first(&p->pick,
				   p->rr % p->npeers)) == SIZE_MAX) {
		return NULL;
	}
	p->rr = at + 1;
	return p->peers[at];
}

static void
assign_to(profile *p, peer *pk, mirai *m)
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
	mirai__cl_peer_changed(p, pk);
}

/* Whether pk's new tasks wait for its next message (HOLD_INFLIGHT). */
static int
held_back(const peer *pk)
{
	return pk->kind == MIRAI__KIND_SERVER &&
	    pk->ninflight >= HOLD_INFLIGHT && pk->qbytes < MIRAI__PACK_CAP;
}

/* Give unassigned tasks to usable peers, and fail them when no server can
 * come any more; then send what the peers given tasks can take.  Called
 * locked. */
void
mirai__cl_dispatch(profile *p, mirai **list)
{
	mirai__out *o;
	peer *pk, *kicks = NULL;

	while (p->dead_spawns > 0 && (o = p->unassigned.head) != NULL) {
		mirai *m = o->owner;
		mirai__cl_claim(p, m, MIRAI_ESPAWN, list);
		mirai__cl_set_errtext(m, "%s", p->last_failure);
		p->dead_spawns--;
	}
	if (p->no_servers) {
		while ((o = p->unassigned.head) != NULL) {
			mirai *m = o->owner;
			mirai__cl_claim(p, m, MIRAI_ECLOSED, list);
			mirai__cl_set_errtext(m, "%s", p->no_servers_why);
		}
		return;
	}
	while ((o = p->unassigned.head) != NULL && (pk = pick_peer(p)) != NULL) {
		mirai__outq_pop(&p->unassigned);
		assign_to(p, pk, o->owner);
		if (!pk->kick && !held_back(pk)) {
			pk->kick      = 1;
			pk->kick_next = kicks;
			kicks         = pk;
		}
	}
	/* Every other peer sends on its own events (a send done, a message
	 * from it, a control frame queued). */
	while ((pk = kicks) != NULL) {
		kicks    = pk->kick_next;
		pk->kick = 0;
		mirai__cl_try_send(p, pk);
	}
}
