/*
 * client_direct.c: the peers of a profile, the client's own scheduler
 * for direct mode: each peer's send window and queue, dispatch to the
 * least-loaded usable peer, frames from servers (and from a dispatcher),
 * and pipes coming and going.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

#define WINDOW 2

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

void
mirai__cl_inflight_remove(peer *pk, mirai *m)
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
void
mirai__cl_try_send(profile *p, peer *pk)
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
		mirai__cl_try_send(p, pk);
	}
	pthread_mutex_unlock(&p->mtx);
}

void
mirai__cl_send_ctrl(profile *p, peer *pk, uint8_t type, uint64_t v)
{
	mirai__out *o;

	if (pk->exit_sent || (o = mirai__out_new(MIRAI__U64_FRAME_LEN)) == NULL) {
		return;
	}
	mirai__u64_frame_encode(mirai__out_frame(o), type, v);
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
	if ((o = mirai__out_new(MIRAI__U32_FRAME_LEN)) == NULL) {
		return; /* it will see the link drop instead */
	}
	mirai__u32_frame_encode(mirai__out_frame(o), MIRAI__F_EXIT, flags);
	mirai__outq_push(&pk->queue, o);
	pk->exit_sent = 1;
	mirai__cl_try_send(p, pk);
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
void
mirai__cl_dispatch(profile *p, mirai **list)
{
	mirai__out *o;
	peer *pk;

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
		assign_to(pk, o->owner);
	}
	for (size_t i = 0; i < p->npeers; i++) {
		mirai__cl_try_send(p, p->peers[i]);
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
		mirai__cl_send_exit(p, pk, 0);
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
	m = mirai__idmap_get(&p->tasks, r.id);
	if (m == NULL || m->peer != pk || m->where != AT_INFLIGHT) {
		/* Cancelled or timed out already: nobody waits for it. */
		return;
	}
	pk->complete++;
	p->completed++;
	if (r.status == 0 && r.hook != p->hook_fp) {
		mirai__cl_claim(p, m, MIRAI_EHOOK, list);
		mirai__cl_set_errtext(m,
		    "serialization hook mismatch: server %s:%d encoded the result "
		    "with another hook",
		    pk->host, pk->pid);
		return;
	}
	if (r.status != 0) {
		mirai__cl_claim(p, m, (int) r.status, list);
		mirai__cl_set_errtext(m, "%.*s", (int) (r.len > 900 ? 900 : r.len),
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
			mirai__cl_claim(p, m, MIRAI_ENOMEM, list);
			return;
		}
		memcpy(m->owner, r.data, r.len);
		m->own = OWN_BUF;
		m->res = m->owner;
	}
	m->res_len = (uint32_t) r.len;
	mirai__cl_claim(p, m, 0, list);
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
	m = mirai__idmap_get(&p->tasks, t.id);
	if (m == NULL || m->peer != pk || m->where != AT_INFLIGHT) {
		return;
	}
	if ((o = mirai__out_new(f->len)) == NULL) {
		return; /* it stays in flight; losing the server resolves it */
	}
	memcpy(mirai__out_frame(o), f->body, f->len);
	o->owner = m;
	mirai__cl_inflight_remove(pk, m);
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
			mirai__cl_claim(p, o->owner, MIRAI_ECLOSED, list);
			mirai__cl_set_errtext(o->owner, "the dispatcher is shutting down");
		} else {
			mirai__outq_remove(&pk->queue, o);
			mirai__out_free(o);
		}
	}
	while (pk->inflight_head != NULL) {
		mirai *m = pk->inflight_head;
		mirai__cl_claim(p, m, MIRAI_ECLOSED, list);
		mirai__cl_set_errtext(m, "the dispatcher is shutting down");
	}
	p->no_servers     = 1;
	p->no_servers_why = "the dispatcher shut down; reset the profile";
	MIRAI__LOG(MIRAI_LOG_WARN, TAG, "profile '%s': the dispatcher is "
					"shutting down",
	    p->name);
	mirai__cl_send_exit(p, pk, 0);
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
		mirai__cl_send_exit(p, pk, 0);
	}
	mirai__cl_dispatch(p, &list);
	mirai__cl_try_send(p, pk);
	pthread_mutex_unlock(&p->mtx);
	/* A single frame may have taken the message; otherwise it is ours. */
	if (h.nframes != 1 || keep != NULL) {
		mirai__msg_free(msg);
	}
	mirai__cl_publish(list);
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
		mirai__cl_claim(p, m, MIRAI_ECONNRESET, &list);
		mirai__cl_set_errtext(m,
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
		mirai__cl_dispatch(p, &list);
	}
	pthread_mutex_unlock(&p->mtx);
	mirai__cl_publish(list);
	mirai__tx_free(pk->tx);
	mirai__outq_clear(&pk->queue);
	free(pk);
	mirai__cl_profile_unref(p);
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
			mirai__cl_profile_ref(p);
			if (mirai__defer(peer_lost, pk) != 0) {
				mirai__cl_profile_unref(p);
				MIRAI__LOG(MIRAI_LOG_ERROR, TAG,
				    "out of memory handling a lost server");
			}
		}
	}
	pthread_mutex_unlock(&p->mtx);
	return refuse;
}

/* Open sk's link (a dialer retries between the two bounds, in ms). */
int
mirai__cl_sock_open(profile *p, sock *sk, int64_t retry_min, int64_t retry_max,
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

/* The peer that is the profile's dispatcher, if online.  Called locked. */
peer *
mirai__cl_dispatcher_peer(profile *p)
{
	for (size_t i = 0; i < p->npeers; i++) {
		peer *pk = p->peers[i];
		if (pk->online && !pk->dead && pk->kind == MIRAI__KIND_DISPATCHER) {
			return pk;
		}
	}
	return NULL;
}
