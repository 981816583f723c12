/*
 * disp_up.c: the dispatcher's link to its client: the upstream socket
 * (dialed, or listened on for clients to attach and detach), sending to
 * the client (results, errors, our HELLO), frames from the client (tasks,
 * cancels, EXIT, requests, pings) and the client's pipe coming and going.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatcher.h"

/* ---- sending ---------------------------------------------------------- */

void
mirai__d_up_send(mirai_dispatcher *d)
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
		d->up_last_tx = mirai__now_ms();
		if (!mirai__link_send(d->up, msg)) {
			d->up_sending = 1;
		}
	}
}

void
mirai__d_up_queue(mirai_dispatcher *d, mirai__out *o)
{
	if (d->up_mute) {
		mirai__out_free(o);
		return;
	}
	mirai__outq_push(&d->up_q, o);
	mirai__d_up_send(d);
}

/* An error RESULT for the client. */
void
mirai__d_up_error(mirai_dispatcher *d, uint64_t id, int status,
    const char *text)
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
	mirai__d_up_queue(d, o);
}

/* ---- receiving -------------------------------------------------------- */

/* The client left or detached: its queued tasks go, those servers hold
 * are cancelled and their results dropped (a next client's ids may be the
 * same).  Called locked. */
static void
drop_client_work(mirai_dispatcher *d)
{
	for (dtask *t; (t = mirai__d_q_pop(d)) != NULL;) {
		mirai__d_dtask_free(d, t);
	}
	for (size_t i = 0; i < d->nslots; i++) {
		for (dtask *t = d->slots[i].held; t != NULL; t = t->next) {
			if (!t->orphan) {
				mirai__idmap_del(&d->tasks, t);
				t->orphan      = 1;
				t->cancel_sent = 1;
				mirai__d_slot_ctrl(d, &d->slots[i],
				    MIRAI__F_CANCEL, t->id, 1);
			}
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
	if (mirai__idmap_get(&d->tasks, tv.id) != NULL) {
		mirai__d_up_error(d, tv.id, MIRAI_EPROTO, "duplicate task id");
		return;
	}
	if (*keep != NULL && flen >= MIRAI__BIG_FRAME) {
		if ((t = calloc(1, DTASK_HDR + sizeof(mirai__msg *))) == NULL) {
			goto oom;
		}
		t->big     = 1;
		mirai__d_set_msg(t, *keep);
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
	if (mirai__idmap_put(&d->tasks, t) != 0) {
		if (t->big) {
			*keep = mirai__d_msg_of(t);
		}
		free(t);
		goto oom;
	}
	mirai__d_q_push(d, t, 0);
	return;
oom:
	mirai__d_up_error(d, tv.id, MIRAI_ENOMEM, "dispatcher out of memory");
}

/* The client at pipe detached (EXIT): its pipe was closed a grace
 * period after our GONE, and it is forgotten now if that pipe's GONE
 * event has not come.  NNG 1.5.2 may never give that event for a ws pipe
 * whose peer closed (seen about once in 20 detaches over wss): the next
 * client would be refused for good.  Called locked. */
static void
detached(mirai_dispatcher *d, uint32_t pipe)
{
	if (d->up_connected && d->up_mute && d->up_pipe_id == pipe) {
		d->up_connected = 0;
		d->up_pipe_id   = 0;
		d->up_lost      = 1;
		mirai__outq_clear(&d->up_q);
		MIRAI__LOG(MIRAI_LOG_INFO, TAG, "the client detached");
		pthread_cond_broadcast(&d->cv);
	}
}

static void
up_cancel(mirai_dispatcher *d, uint64_t id)
{
	dtask *t = mirai__idmap_get(&d->tasks, id);

	if (t == NULL) {
		return;
	}
	if (t->queued) {
		/* Never runs. */
		mirai__d_q_drop(d, t);
	} else {
		/* Running, or prefetched: at the slot that holds it, which
		 * answers either way. */
		slot *sl = mirai__d_held_by(d, t);
		if (sl != NULL) {
			t->cancel_sent = 1;
			mirai__d_slot_ctrl(d, sl, MIRAI__F_CANCEL, id, 1);
		}
	}
}

static void attach(mirai_dispatcher *d, uint32_t id);
static void refuse_client(mirai_dispatcher *d, uint32_t id);

static void
up_msg(mirai_dispatcher *d, mirai__msg *msg)
{
	mirai__reader r;
	mirai__msghdr h;
	mirai__frame f;
	mirai__msg *keep = NULL;
	int rv, first;

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
	if (d->listen &&
	    (!d->up_connected || mirai__msg_pipe(msg) != d->up_pipe_id)) {
		/* Only the pending client's HELLO with the secret gets in;
		 * words of a client let go (silent past the heartbeat, or
		 * detached) still on their way must not reach the next. */
		int mine = d->up_pending && !d->up_refusing &&
		    mirai__msg_pipe(msg) == d->up_pipe_id;
		int ok = mine && mirai__msg_next(&r, &f) == 1 &&
		    f.type == MIRAI__F_HELLO &&
		    mirai__d_client_ok(d, &f, d->attach_secret, "client URL");
		if (mine && !ok) {
			refuse_client(d, d->up_pipe_id);
		}
		if (!ok) {
			pthread_mutex_unlock(&d->mtx);
			mirai__msg_free(msg);
			return;
		}
		d->up_pending = 0;
		attach(d, d->up_pipe_id);
	}
	d->up_recv_seq = h.seq;
	d->up_last_rx  = mirai__now_ms();
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
			first = !d->up_mute;
			if (!d->up_mute) {
				mirai__out *o = mirai__out_ctrl(MIRAI__F_GONE, 0, 0);
				if (o != NULL) {
					mirai__d_up_queue(d, o);
				}
				d->up_mute = 1;
			}
			if (d->listen) {
				/* An attached client detaches: its work goes,
				 * the dispatcher stays for the next one. */
				drop_client_work(d);
				if (first) {
					mirai__d_pipe_close_then(d, d->up,
					    d->up_pipe_id, REFUSE_GRACE_MS,
					    detached);
				}
			} else {
				d->exit_req   = 1;
				d->exit_flags = f.len == 4 ? mirai__get32(f.body)
							   : 0;
			}
			pthread_cond_broadcast(&d->cv);
			break;
		case MIRAI__F_REQ:
			if (mirai__req_decode(&f, &q) == 0) {
				mirai__out *o = mirai__d_answer(d, &q);
				if (o != NULL && !d->up_mute) {
					mirai__outq_push_front(&d->up_q, o);
					mirai__d_up_send(d);
				} else {
					mirai__out_free(o);
				}
			}
			break;
		case MIRAI__F_PING:
			if (mirai__u64_frame_decode(&f, &id) == 0) {
				mirai__out *o = mirai__out_ctrl(MIRAI__F_PONG, 8, id);
				if (o != NULL) {
					mirai__d_up_queue(d, o);
				}
			}
			break;
		default:
			break;
		}
	}
	mirai__d_dispatch(d);
	mirai__d_up_send(d);
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
		mirai__d_up_send(d);
	}
	pthread_mutex_unlock(&d->mtx);
}

static void
up_kick(void *arg)
{
	mirai_dispatcher *d = arg;

	pthread_mutex_lock(&d->mtx);
	mirai__d_up_send(d);
	d->pending--;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
}

/* A client is attached at pipe id: it gets our HELLO.  Called locked
 * (from a pipe callback too: the sending is deferred). */
static void
attach(mirai_dispatcher *d, uint32_t id)
{
	d->up_connected = 1;
	d->up_pipe_id   = id;
	d->up_last_rx   = mirai__now_ms();
	d->up_lost      = 0;
	d->up_mute      = 0;
	mirai__outq_clear(&d->up_q);
	mirai__d_send_hello(d);
	d->pending++;
	if (mirai__defer(up_kick, d) != 0) {
		d->pending--;
	}
	MIRAI__LOG(MIRAI_LOG_INFO, TAG, "a client attached");
}

/* The pending client at pipe id did not show the secret.  Called
 * locked. */
static void
refuse_client(mirai_dispatcher *d, uint32_t id)
{
	d->up_refusing = 1;
	mirai__d_pipe_refuse(d, d->up, id);
}

int
mirai__d_client_ok(mirai_dispatcher *d, const mirai__frame *f,
    const char *secret, const char *where)
{
	mirai__hello_view h;

	if (f != NULL && mirai__hello_decode(f, &h) == 0 &&
	    h.proto == MIRAI__PROTO && h.kind == MIRAI__KIND_CLIENT &&
	    h.slot == 0 && mirai__secret_eq(secret, h.secret, h.secret_len)) {
		return 1;
	}
	/* Logged, but not without bound: anyone may connect. */
	d->refused++;
	if (d->refused <= 20 || d->refused % 1000 == 0) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "refused a peer at the %s: no HELLO with its secret (%" PRIu64
		    " refused so far)",
		    where, d->refused);
	}
	return 0;
}

static int
up_pipe(void *arg, int ev, uint32_t id)
{
	mirai_dispatcher *d = arg;
	int refuse          = 0;

	pthread_mutex_lock(&d->mtx);
	if (ev == MIRAI__PIPE_ADD && d->listen) {
		if (d->up_connected || d->up_pending || d->closing) {
			/* One client at a time: refuse before NNG receives
			 * on the pipe, which is safe.  (Quietly while the
			 * attached one is detaching: the newcomer's dialer
			 * tries again.) */
			if (!d->up_mute) {
				MIRAI__LOG(MIRAI_LOG_WARN, TAG,
				    "refused a client: another one is attached");
			}
			refuse = 1;
		} else if (d->up_pipe_id != 0) {
			/* A client taken as gone by the heartbeat still holds
			 * its pipe (see mirai__d_up_beat()), and NNG would
			 * refuse a second one after we took it: refused here,
			 * quietly (it was said once), until that pipe goes. */
			refuse = 1;
		} else if (d->attach_secret[0] != '\0') {
			/* Asked for its HELLO (WHO), attached once that shows
			 * the secret.  (Asked, not expected: a client sends
			 * nothing on a pipe that may be refused, as a second
			 * one is while another is attached; NNG 1.5.2 would
			 * keep the message of such a pipe.) */
			mirai__out *o  = mirai__out_ctrl(MIRAI__F_WHO, 0, 0);
			d->up_pending  = 1;
			d->up_refusing = 0;
			d->up_pipe_id  = id;
			d->up_t_add    = mirai__now_ms();
			d->up_lost     = 0;
			d->up_mute     = 0;
			mirai__outq_clear(&d->up_q);
			if (o != NULL) {
				mirai__outq_push(&d->up_q, o);
			}
			d->pending++;
			if (mirai__defer(up_kick, d) != 0) {
				d->pending--;
			}
		} else {
			attach(d, id);
		}
	} else if (ev == MIRAI__PIPE_GONE && d->up_pending &&
	    id == d->up_pipe_id) {
		d->up_pending = 0;
		d->up_pipe_id = 0;
	} else if (ev == MIRAI__PIPE_UP && !d->listen && !d->up_lost) {
		d->up_connected = 1;
		d->up_pipe_id   = id;
		d->up_last_rx   = mirai__now_ms();
	} else if (ev == MIRAI__PIPE_GONE && !d->up_connected &&
	    id == d->up_pipe_id) {
		/* The pipe of a client let go by the heartbeat closed at
		 * last (it reset its profile, or ended). */
		d->up_pipe_id = 0;
		MIRAI__LOG(MIRAI_LOG_INFO, TAG,
		    "the silent client's connection closed%s",
		    d->listen ? ": the next client may attach" : "");
	} else if (ev == MIRAI__PIPE_GONE && d->up_connected &&
	    id == d->up_pipe_id) {
		d->up_connected = 0;
		d->up_pipe_id   = 0;
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

void
mirai__d_up_beat(mirai_dispatcher *d, int64_t now)
{
	if (d->up_pending && !d->up_refusing && now - d->up_t_add > ADMIT_MS) {
		mirai__d_client_ok(d, NULL, "", "client URL");
		refuse_client(d, d->up_pipe_id);
	}
	if (!d->up_connected || d->up_lost || d->up_mute) {
		return;
	}
	if (now - d->up_last_rx > d->hb) {
		/*
		 * As if its pipe went, but the pipe itself is left alone, as
		 * the slots' heartbeat leaves a silent server's: NNG 1.5.2
		 * can hang closing a pipe that is receiving, and the client
		 * may wake up sending.  It is muted (nothing more is sent to
		 * it, nothing it sends is read) and let go: up_pipe_id stays
		 * set until its pipe closes, when the client resets its
		 * profile or ends.  Listening, the next client is refused
		 * until then (a second pipe NNG itself would refuse, after
		 * our state had been reset for it).
		 */
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "the client was silent for %lld ms (heartbeat %lld ms): "
		    "taken as gone%s",
		    (long long) (now - d->up_last_rx), (long long) d->hb,
		    d->listen ? "; the next client can attach once its "
				"connection closes"
			      : "");
		d->up_connected = 0;
		d->up_lost      = 1;
		d->up_mute      = 1;
		mirai__outq_clear(&d->up_q);
		if (d->listen) {
			drop_client_work(d);
		}
		pthread_cond_broadcast(&d->cv);
	} else if (now - d->up_last_tx >= d->hb / 3) {
		mirai__out *o = mirai__out_ctrl(MIRAI__F_PING, 8, (uint64_t) now);
		if (o != NULL) {
			mirai__d_up_queue(d, o);
		}
	}
}

/* Queue our HELLO first in line.  Called locked. */
void
mirai__d_send_hello(mirai_dispatcher *d)
{
	char host[256];
	mirai__hello_view h = {.proto = MIRAI__PROTO,
	    .kind = MIRAI__KIND_DISPATCHER, .pid = (uint32_t) getpid(),
	    .version = MIRAI_VERSION_STRING,
	    .version_len = (uint16_t) strlen(MIRAI_VERSION_STRING),
	    .slot = d->up_slot, .secret = d->up_secret,
	    .secret_len = (uint16_t) strlen(d->up_secret)};
	mirai__out *o;

	mirai__hostname(host, sizeof host);
	h.host     = host;
	h.host_len = (uint16_t) strlen(host);
	if ((o = mirai__out_new(mirai__hello_size(&h))) != NULL) {
		mirai__hello_encode(mirai__out_frame(o), &h);
		mirai__outq_push_front(&d->up_q, o);
	}
}

int
mirai__d_open_up(mirai_dispatcher *d, int mem, mirai_errmsg *err)
{
	mirai__link_cfg cfg = {
		.max_msg = d->opts.server->max_msg,
		.events  = (1u << MIRAI__PIPE_ADD) | (1u << MIRAI__PIPE_UP) |
		    (1u << MIRAI__PIPE_GONE),
		.recv = up_rx,
		.pipe = up_pipe,
		.sent = up_tx,
		.arg  = d,
		.tls  = D_TLS(d),
		/* A client in this process (our thread is its dispatcher). */
		.mem  = mem,
	};

	return mirai__link_open(&d->up, &cfg, err);
}
