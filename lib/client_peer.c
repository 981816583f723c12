/*
 * client_peer.c: what comes from a profile's peers (its servers, or its
 * dispatcher): their frames (HELLO, results, bounces, replies, BYE,
 * pings; a peer that sends what no honest server sends is cut off), the
 * heartbeat that takes a silent peer as lost, and pipes coming and going,
 * with what a lost peer held given back or failed.  client_direct.c
 * gives the peers their tasks.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

/* ---- receiving -------------------------------------------------------- */

static peer *
find_peer(profile *p, uint32_t pipe_id)
{
	return mirai__idmap_get(&p->by_pipe, pipe_id);
}

/* A HELLO from pk: 0 when pk is online now, 1 when it lacks the secret of
 * the URL it dialed (refused), -1 when it does not decode. */
static int
on_hello(profile *p, peer *pk, const mirai__frame *f)
{
	mirai__hello_view h;
	char who[96];
	int rv;

	snprintf(who, sizeof who, "profile '%s'", p->name);
	rv = mirai__hello_admit(f, &h, pk->sk->admits ? p->secret : NULL, 0, TAG,
	    who);
	if (rv != 0) {
		if (rv < 0) {
			mirai__cl_send_exit(p, pk, 0);
		}
		return rv;
	}
	pk->online     = 1;
	pk->kind       = (int) h.kind;
	pk->pid        = (int) h.pid;
	pk->hook       = h.hook;
	pk->has_budget = h.max_tasks > 0;
	pk->budget     = h.max_tasks;
	mirai__cl_peer_changed(p, pk);
	snprintf(pk->host, sizeof pk->host, "%.*s", (int) h.host_len, h.host);
	snprintf(pk->binding, sizeof pk->binding, "%.*s", (int) h.binding_len,
	    h.binding);
	for (child *c = p->children.head; c != NULL; c = c->entry.next) {
		if (c->pid == pk->pid) {
			c->hello = 1;
		}
	}
	/* mirai_daemons() may be waiting for this one. */
	pthread_cond_broadcast(&p->cv);
	/* A dispatcher has no hook of its own: its servers' hooks are
	 * checked where it gives them tasks. */
	if (h.hook != p->hook_fp && h.kind != MIRAI__KIND_DISPATCHER) {
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
	return 0;
}

/* Returns 0, or -1 for a result the peer could not have: garbled, or for
 * a task it was never given. */
static int
on_result(profile *p, peer *pk, const mirai__frame *f, mirai__msg **keep,
    mirai **list)
{
	mirai__result_view r;
	mirai *m;

	if (mirai__result_decode(f, &r) != 0) {
		return -1;
	}
	m = mirai__idmap_get(&p->tasks, r.id);
	if (m == NULL) {
		/* Cancelled or timed out already: nobody waits for it. */
		return 0;
	}
	if (m->peer != pk || m->where != AT_INFLIGHT) {
		return -1;
	}
	/* The copy kept while the server held it shares room with the
	 * result's owner. */
	mirai__out_free(m->out);
	m->out = NULL;
	pk->complete++;
	p->completed++;
	if (r.status == 0 && r.hook != p->hook_fp) {
		mirai__cl_claim(p, m, MIRAI_EHOOK, list);
		mirai__cl_set_errtext(m,
		    "serialization hook mismatch: server %s:%d encoded the result "
		    "with another hook",
		    pk->host, pk->pid);
		return 0;
	}
	if (r.status != 0) {
		mirai__cl_claim(p, m, (int) r.status, list);
		mirai__cl_set_errtext(m, "%.*s", (int) (r.len > 900 ? 900 : r.len),
		    (const char *) r.data);
		return 0;
	}
	if (*keep != NULL) {
		m->owner = *keep;
		m->own   = OWN_MSG;
		*keep    = NULL;
		m->res   = r.data;
	} else if (r.len > 0) {
		if ((m->owner = malloc(r.len)) == NULL) {
			mirai__cl_claim(p, m, MIRAI_ENOMEM, list);
			return 0;
		}
		memcpy(m->owner, r.data, r.len);
		m->own = OWN_BUF;
		m->res = m->owner;
	}
	m->res_len = (uint32_t) r.len;
	mirai__cl_claim(p, m, 0, list);
	return 0;
}

/* In-flight task m of pk goes back to the head of the line, its kept
 * frame with it.  Called locked. */
static void
requeue_inflight(profile *p, peer *pk, mirai *m)
{
	mirai__cl_inflight_remove(pk, m);
	m->peer  = NULL;
	m->where = AT_QUEUE;
	mirai__outq_push_front(&p->unassigned, m->out);
}

/* A BOUNCE: a leaving server gives back a task unstarted.  It must be
 * byte for byte the frame pk was given; the kept copy goes back to the
 * queue.  Returns 0, or -1 when it is not. */
static int
on_bounce(profile *p, peer *pk, const mirai__frame *f)
{
	mirai__frame inner;
	mirai__task_view t;
	mirai *m;

	if (mirai__bounce_decode(f, &inner) != 0 ||
	    mirai__task_decode(&inner, &t) != 0) {
		return -1;
	}
	m = mirai__idmap_get(&p->tasks, t.id);
	if (m == NULL) {
		return 0; /* cancelled meanwhile */
	}
	if (m->peer != pk || m->where != AT_INFLIGHT) {
		return -1;
	}
	if (m->out == NULL) {
		/* No copy (out of memory when it went): it stays in flight
		 * and resolves when the server goes. */
		return 0;
	}
	if (m->out->len != MIRAI__FRAME_HDR_LEN + (size_t) inner.len ||
	    memcmp(mirai__out_frame(m->out) + MIRAI__FRAME_HDR_LEN, inner.body,
		inner.len) != 0) {
		return -1;
	}
	/* Unstarted work goes back to the head of the line. */
	requeue_inflight(p, pk, m);
	return 0;
}

/* Whether in-flight task m may run again after its server was lost: it
 * has a kept frame and retries left (one is used up).  Called locked. */
static int
retry(profile *p, mirai *m)
{
	mirai__frame f;
	mirai__task_view t;
	uint8_t *frame;

	if (m->out == NULL || p->closing) {
		return 0;
	}
	frame  = mirai__out_frame(m->out);
	f.type = frame[0];
	f.body = frame + MIRAI__FRAME_HDR_LEN;
	f.len  = (uint32_t) (m->out->len - MIRAI__FRAME_HDR_LEN);
	if (mirai__task_decode(&f, &t) != 0 ||
	    (t.flags & MIRAI__TF_RETRIES) == 0) {
		return 0;
	}
	mirai__task_set_flags(frame, t.flags - 1);
	p->retried++;
	return 1;
}

static void
on_reply(profile *p, const mirai__frame *f)
{
	mirai__rep_view rep;

	if (mirai__rep_decode(f, &rep) != 0) {
		return;
	}
	for (creq *r = p->reqs.head; r != NULL; r = r->entry.next) {
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
	mirai__cl_peer_changed(p, pk);
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
	while (pk->inflight.head != NULL) {
		mirai *m = pk->inflight.head;
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

/*
 * Server pk sent what no honest server sends: nothing more is read from it,
 * the tasks it holds go back to the head of the line (their kept frames;
 * without one a task resolves with ECONNRESET), and it is told to exit.
 * Called locked.
 */
static void
peer_cut(profile *p, peer *pk, const char *what, mirai **list)
{
	if (pk->online) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "profile '%s': refused %s from %s %s:%d; cutting it off",
		    p->name, what,
		    pk->kind == MIRAI__KIND_DISPATCHER ? "the dispatcher"
						       : "server",
		    pk->host, pk->pid);
	} else {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "profile '%s': refused %s from a peer; cutting it off",
		    p->name, what);
	}
	pk->muted   = 1;
	pk->leaving = 1;
	mirai__cl_peer_changed(p, pk);
	requeue_peer_queue(p, pk);
	while (pk->inflight.tail != NULL) {
		mirai *m = pk->inflight.tail;
		if (m->out != NULL) {
			requeue_inflight(p, pk, m);
		} else {
			mirai__cl_claim(p, m, MIRAI_ECONNRESET, list);
			mirai__cl_set_errtext(m,
			    "server %s:%d was cut off for a forged frame while it "
			    "held the task",
			    pk->host[0] ? pk->host : "?", pk->pid);
		}
	}
	mirai__cl_send_exit(p, pk, MIRAI__EXIT_CANCEL);
}

static void
handle_msg(profile *p, mirai__msg *msg)
{
	mirai__reader r;
	mirai__msghdr h;
	mirai__frame f;
	mirai__msg *keep   = NULL;
	mirai *list        = NULL;
	uint32_t pid       = mirai__msg_pipe(msg);
	const char *forged = NULL;
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
	pk->last_rx = mirai__now_ms();
	if (p->closing || pk->muted) {
		while (mirai__msg_next(&r, &f) == 1) {
			if (f.type == MIRAI__F_GONE) {
				pk->gone = 1;
				pthread_cond_broadcast(&p->cv);
			}
		}
		/* Its acknowledgements still open the window, so that the
		 * EXIT queued for it goes out. */
		if (rv == 0 && (int32_t) (h.ack - pk->seq_acked) > 0 &&
		    (int32_t) (h.ack - pk->seq_sent) <= 0) {
			pk->seq_acked = h.ack;
			mirai__cl_try_send(p, pk);
		}
		pthread_mutex_unlock(&p->mtx);
		mirai__msg_free(msg);
		return;
	}
	if (rv != 0) {
		peer_cut(p, pk, "a malformed message", &list);
		mirai__cl_dispatch(p, &list);
		pthread_mutex_unlock(&p->mtx);
		mirai__msg_free(msg);
		mirai__cl_publish(list);
		return;
	}
	if (h.nframes == 1) {
		keep = msg;
	}
	if ((int32_t) (h.ack - pk->seq_acked) > 0 &&
	    (int32_t) (h.ack - pk->seq_sent) <= 0) {
		pk->seq_acked = h.ack;
	}
	while (forged == NULL && (rv = mirai__msg_next(&r, &f)) == 1) {
		uint32_t why;
		uint64_t v64;

		if (!pk->online && f.type != MIRAI__F_HELLO &&
		    f.type != MIRAI__F_GONE && f.type != MIRAI__F_EXIT &&
		    f.type != MIRAI__F_WHO) {
			forged = "a frame before HELLO";
			break;
		}
		switch (f.type) {
		case MIRAI__F_HELLO:
			if (!pk->online && on_hello(p, pk, &f) > 0) {
				/* Nothing more is read from it; an honest
				 * server learns why and exits. */
				p->refused++;
				if (p->refused <= 20 || p->refused % 1000 == 0) {
					MIRAI__LOG(MIRAI_LOG_WARN, TAG,
					    "profile '%s': refused a peer: its "
					    "HELLO lacks the secret of the URL "
					    "(%" PRIu64 " refused so far)",
					    p->name, p->refused);
				}
				pk->muted   = 1;
				pk->leaving = 1;
				mirai__cl_peer_changed(p, pk);
				mirai__cl_send_exit(p, pk, MIRAI__EXIT_REFUSED);
			}
			break;
		case MIRAI__F_RESULT:
			if (on_result(p, pk, &f, &keep, &list) != 0) {
				forged = "a result for a task it does not hold";
			}
			break;
		case MIRAI__F_BOUNCE:
			if (on_bounce(p, pk, &f) != 0) {
				forged = "a bounce that does not match a task it holds";
			}
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
			mirai__cl_peer_changed(p, pk);
			if (pk->kind == MIRAI__KIND_DISPATCHER) {
				/* The dispatcher is stopping: nothing it holds
				 * will come back. */
				dispatcher_leaving(p, pk, &list);
				break;
			}
			requeue_peer_queue(p, pk);
			break;
		case MIRAI__F_PING:
			/* Answered, so that a peer with a shorter heartbeat
			 * than ours does not take us for gone. */
			if (mirai__u64_frame_decode(&f, &v64) == 0) {
				mirai__cl_send_ctrl(p, pk, MIRAI__F_PONG, v64);
			}
			break;
		case MIRAI__F_PONG:
			break;
		case MIRAI__F_WHO:
			/* A dispatcher we attach to asks for our HELLO, with
			 * the secret of its URL. */
			if (pk->sk->dials && !pk->online && !pk->hello_sent) {
				mirai__out *o =
				    mirai__cl_hello(pk->sk->slot, pk->sk->secret);
				if (o != NULL) {
					mirai__outq_push_front(&pk->queue, o);
					pk->hello_sent = 1;
				}
				break;
			}
			forged = "a frame a server never sends";
			break;
		case MIRAI__F_EXIT:
			/* A dispatcher we dialed refused our secret. */
			if (pk->sk->dials && !pk->online &&
			    mirai__u32_frame_decode(&f, &why) == 0 &&
			    (why & MIRAI__EXIT_REFUSED)) {
				p->attach_refused = 1;
				pk->muted         = 1;
				pthread_cond_broadcast(&p->cv);
				break;
			}
			forged = "a frame a server never sends";
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
		peer_cut(p, pk, forged, &list);
	} else if (pk->leaving && pk->ninflight == 0 && pk->nqueue == 0) {
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

/* What pk holds goes back or fails, as when its link drops: queued tasks
 * back to the line, tasks in flight retried or resolved with
 * MIRAI_ECONNRESET, a dispatcher's pending requests failed.  Called
 * locked. */
static void
give_back(profile *p, peer *pk, mirai **list, size_t *lost, size_t *retried)
{
	requeue_peer_queue(p, pk);
	/* From the tail, so that retried tasks keep their order at the head
	 * of the line. */
	while (pk->inflight.tail != NULL) {
		mirai *m = pk->inflight.tail;
		if (retry(p, m)) {
			requeue_inflight(p, pk, m);
			(*retried)++;
			continue;
		}
		mirai__cl_claim(p, m, MIRAI_ECONNRESET, list);
		mirai__cl_set_errtext(m,
		    "connection to %s %s:%d was lost while it held the task",
		    pk->kind == MIRAI__KIND_DISPATCHER ? "the dispatcher" : "server",
		    pk->host[0] ? pk->host : "?", pk->pid);
		(*lost)++;
	}
	if (pk->kind == MIRAI__KIND_DISPATCHER) {
		for (creq *r = p->reqs.head; r != NULL; r = r->entry.next) {
			if (!r->done) {
				r->done   = 1;
				r->status = MIRAI_ECONNRESET;
			}
		}
		pthread_cond_broadcast(&p->cv);
	}
}

/*
 * Heartbeat, every third of the interval: a peer silent for the whole
 * interval is taken as lost, as if its pipe dropped (closing the pipe is
 * unsafe: the peer may wake up sending): what it held goes back or fails,
 * it leaves the status, is muted and told to exit in case it comes back;
 * its pipe's GONE cleans up later.  A quiet peer gets a PING.
 */
static void
beat(void *arg)
{
	profile *p  = arg;
	mirai *list = NULL;
	int64_t now = mirai__now_ms();

	pthread_mutex_lock(&p->mtx);
	for (size_t i = 0; i < p->npeers && !p->closing; i++) {
		peer *pk = p->peers[i];
		size_t lost = 0, retried = 0;

		if (pk->dead || pk->muted || pk->gone) {
			continue;
		}
		if (now - pk->last_rx > p->hb) {
			MIRAI__LOG(MIRAI_LOG_WARN, TAG,
			    "profile '%s': %s %s:%d silent for %lld ms "
			    "(heartbeat %lld ms): taken as lost",
			    p->name,
			    pk->kind == MIRAI__KIND_DISPATCHER ? "the dispatcher"
							       : "server",
			    pk->host[0] ? pk->host : "?", pk->pid,
			    (long long) (now - pk->last_rx), (long long) p->hb);
			give_back(p, pk, &list, &lost, &retried);
			pk->muted   = 1;
			pk->leaving = 1;
			pk->online  = 0;
			mirai__cl_peer_changed(p, pk);
			mirai__cl_send_exit(p, pk, MIRAI__EXIT_CANCEL);
		} else if (now - pk->last_tx >= p->hb / 3 && !pk->exit_sent) {
			mirai__cl_send_ctrl(p, pk, MIRAI__F_PING, (uint64_t) now);
		}
	}
	if (!p->closing) {
		mirai__cl_dispatch(p, &list);
	}
	pthread_mutex_unlock(&p->mtx);
	mirai__cl_publish(list);
}

void
mirai__cl_beat_stop(profile *p)
{
	if (p->beat_on) {
		mirai__ticker_stop(&p->beat);
		p->beat_on = 0;
	}
}

static void
peer_lost(void *arg)
{
	peer *pk   = arg;
	profile *p = pk->prof;
	mirai *list = NULL;
	size_t lost = 0, retried = 0;

	pthread_mutex_lock(&p->mtx);
	mirai__cl_peer_remove(p, pk);
	give_back(p, pk, &list, &lost, &retried);
	if (!p->closing && pk->online) {
		MIRAI__LOG(lost + retried > 0 ? MIRAI_LOG_WARN : MIRAI_LOG_INFO, TAG,
		    "profile '%s': server %s:%d disconnected%s (tasks lost: "
		    "%zu, retried: %zu)",
		    p->name, pk->host, pk->pid, pk->leaving ? " after BYE" : "",
		    lost, retried);
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
		} else if (mirai__cl_peer_new(p, sk, pipe) == NULL) {
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG,
			    "out of memory: refusing a server");
			refuse = 1;
		}
	} else if (ev == MIRAI__PIPE_GONE) {
		p->live_pipes--;
		pthread_cond_broadcast(&p->cv);
		pk = find_peer(p, pipe);
		if (pk != NULL && !pk->dead) {
			pk->dead = 1;
			mirai__cl_peer_changed(p, pk);
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
		.admits           = sk->admits,
		.max_msg          = p->max_msg,
		.reconnect_min_ms = retry_min,
		.reconnect_max_ms = retry_max,
		.events = (1u << MIRAI__PIPE_ADD) | (1u << MIRAI__PIPE_GONE),
		.recv   = on_rx,
		.pipe   = on_pipe,
		.arg    = sk,
		/* Listening: our certificate (and a CA to require servers'
		 * certificates); dialing a dispatcher: the CA that signed
		 * its certificate. */
		.tls = {.cert_file = p->tls_cert, .key_file = p->tls_key,
		    .ca_file = p->tls_ca},
		.mem = sk->mem,
	};

	if (p->hb > 0 && !p->beat_on &&
	    mirai__ticker_start(&p->beat, p->hb / 3, beat, p) == 0) {
		p->beat_on = 1;
	}
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
