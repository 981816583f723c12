/*
 * server_link.c: a server's link to its client: sending (the out queue,
 * one message in flight, HELLO first), receiving frames (tasks, cancels,
 * EXIT, pings), pipes coming and going, heartbeats, and leaving: BYE,
 * with every unstarted task bounced back to the client.
 */

#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server_int.h"

/* How long a leaving server waits for the client to close the link. */
#define LEAVE_WAIT_MS 10000

/* ---- sending --------------------------------------------------------- */

/* Send what is queued if nothing is in flight.  Called locked. */
void
mirai__srv_kick_send(mirai_server *srv)
{
	mirai__msghdr h = {0};
	mirai__msg *msg;

	/* Before the link is up, pair1 holds the message until it is. */
	while (!srv->sending && !srv->conn_lost &&
	    (srv->outq.head != NULL || srv->ack_pending)) {
		memset(&h, 0, sizeof h);
		h.seq = ++srv->seq_sent;
		h.ack = srv->recv_seq;
		if (mirai__outq_pack(&srv->outq, &h, &msg, NULL, NULL) != 0) {
			srv->seq_sent--;
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "out of memory sending");
			return;
		}
		srv->ack_pending = 0;
		srv->last_tx     = mirai__now_ms();
		if (!mirai__link_send(srv->link, msg)) {
			srv->sending = 1;
		}
	}
}

void
mirai__srv_on_tx(void *arg, int rv)
{
	mirai_server *srv = arg;

	pthread_mutex_lock(&srv->mtx);
	srv->sending = 0;
	if (rv != 0) {
		if (rv != MIRAI_ECLOSED && rv != MIRAI_ECANCELED) {
			MIRAI__LOG(MIRAI_LOG_WARN, TAG, "send failed: %s",
			    mirai_strerror(rv));
		}
	} else {
		mirai__srv_kick_send(srv);
	}
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mtx);
}

void
mirai__srv_queue_out(mirai_server *srv, mirai__out *o)
{
	if (srv->mute) {
		mirai__out_free(o);
		return;
	}
	mirai__outq_push(&srv->outq, o);
	mirai__srv_kick_send(srv);
}

/* An error RESULT with a message.  Called locked or unlocked. */
mirai__out *
mirai__srv_error_result(mirai_server *srv, uint64_t id, int status,
    const char *text)
{
	size_t len = strlen(text);
	mirai__result_view r = {.id = id, .status = (uint32_t) status,
	    .hook = srv->hook_fp, .data = (const uint8_t *) text, .len = len};
	mirai__out *o = mirai__out_new(mirai__result_size(len));

	if (o != NULL) {
		mirai__result_encode(mirai__out_frame(o), &r);
	}
	return o;
}

/* Return an unstarted task to the client.  Called locked. */
static void
bounce(mirai_server *srv, stask *t)
{
	mirai__task_view v = {.id = t->id, .timeout_ms = t->timeout_ms,
	    .flags = t->flags, .hook = t->hook, .fn = t->fn,
	    .fn_len = (uint16_t) strlen(t->fn), .data = t->data, .len = t->len};
	mirai__out *o = mirai__out_new(mirai__bounce_size(v.fn_len, v.len));

	if (o == NULL) {
		MIRAI__LOG(MIRAI_LOG_ERROR, TAG,
		    "out of memory returning task %" PRIu64, t->id);
		return;
	}
	mirai__bounce_encode(mirai__out_frame(o), &v);
	mirai__srv_queue_out(srv, o);
}

/* ---- receiving -------------------------------------------------------- */

static void
queue_push(mirai_server *srv, stask *t)
{
	MIRAI__LIST_PUSH_BACK(&srv->queue, t, entry);
	srv->qlen++;
}

void
mirai__srv_queue_remove(mirai_server *srv, stask *t)
{
	MIRAI__LIST_REMOVE(&srv->queue, t, entry);
	srv->qlen--;
}

/* A task from a frame.  When it is the message's only frame it keeps the
 * message and points into it; otherwise it copies what it needs. */
static stask *
make_task(const mirai__task_view *v, mirai__msg **keep)
{
	stask *t;

	if (*keep != NULL) {
		if ((t = malloc(sizeof *t + v->fn_len + 1)) == NULL) {
			return NULL;
		}
		t->msg  = *keep;
		t->data = v->data;
		*keep   = NULL;
	} else {
		if ((t = malloc(sizeof *t + v->fn_len + 1 + v->len)) == NULL) {
			return NULL;
		}
		t->msg = NULL;
		memcpy(t->mem + v->fn_len + 1, v->data, v->len);
		t->data = t->mem + v->fn_len + 1;
	}
	t->fn = (char *) t->mem;
	memcpy(t->fn, v->fn, v->fn_len);
	t->fn[v->fn_len] = '\0';
	t->id         = v->id;
	t->timeout_ms = v->timeout_ms;
	t->flags      = v->flags;
	t->hook       = v->hook;
	t->len        = v->len;
	return t;
}

static void
cancel_task(mirai_server *srv, uint64_t id)
{
	for (stask *t = srv->queue.head; t != NULL; t = t->entry.next) {
		if (t->id == id) {
			mirai__out *o;
			mirai__srv_queue_remove(srv, t);
			o = mirai__srv_error_result(srv, id, MIRAI_ECANCELED,
			    "task cancelled before it started");
			mirai__srv_stask_free(t);
			if (o != NULL) {
				mirai__srv_queue_out(srv, o);
			}
			return;
		}
	}
	if (srv->current != NULL && srv->current->t->id == id) {
		atomic_store(&srv->current->cancelled, 1);
		if (srv->current->pgid > 0) {
			kill(-srv->current->pgid, SIGKILL);
		}
		pthread_cond_broadcast(&srv->cv);
	}
}

static void
handle_msg(mirai_server *srv, mirai__msg *msg)
{
	mirai__reader r;
	mirai__msghdr h;
	mirai__frame f;
	mirai__msg *keep = NULL;
	int rv;

	rv = mirai__msg_open(&r, mirai__msg_body(msg), mirai__msg_len(msg), &h);
	if (rv != 0) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "rejected a message of %zu bytes: %s", mirai__msg_len(msg),
		    mirai_strerror(rv));
		mirai__msg_free(msg);
		return;
	}
	if (h.nframes == 1) {
		keep = msg;
	}
	pthread_mutex_lock(&srv->mtx);
	srv->recv_seq = h.seq;
	srv->last_rx  = mirai__now_ms();
	while ((rv = mirai__msg_next(&r, &f)) == 1) {
		mirai__task_view tv;
		uint64_t id;
		stask *t;

		switch (f.type) {
		case MIRAI__F_TASK:
			if (mirai__task_decode(&f, &tv) != 0) {
				MIRAI__LOG(MIRAI_LOG_WARN, TAG,
				    "rejected a garbled task frame");
				break;
			}
			if ((t = make_task(&tv, &keep)) == NULL) {
				mirai__out *o = mirai__srv_error_result(srv,
				    tv.id, MIRAI_ENOMEM, "server out of memory");
				if (o != NULL) {
					mirai__srv_queue_out(srv, o);
				}
				break;
			}
			if (srv->leaving) {
				bounce(srv, t);
				mirai__srv_stask_free(t);
				break;
			}
			queue_push(srv, t);
			pthread_cond_broadcast(&srv->cv);
			break;
		case MIRAI__F_CANCEL:
			if (mirai__u64_frame_decode(&f, &id) == 0) {
				cancel_task(srv, id);
			}
			break;
		case MIRAI__F_EXIT:
			/* Answer at once, even while a task runs, and say
			 * nothing after: the client may then close safely. */
			if (!srv->mute) {
				mirai__out *o = mirai__out_ctrl(MIRAI__F_GONE, 0, 0);
				if (o != NULL) {
					mirai__srv_queue_out(srv, o);
				}
				srv->mute = 1;
			}
			srv->exit_req = 1;
			if (f.len == 4 &&
			    (mirai__get32(f.body) & MIRAI__EXIT_REFUSED)) {
				srv->refused = 1;
			}
			if (f.len == 4 &&
			    (mirai__get32(f.body) & MIRAI__EXIT_CANCEL) &&
			    srv->current != NULL) {
				atomic_store(&srv->current->cancelled, 1);
				if (srv->current->pgid > 0) {
					kill(-srv->current->pgid, SIGKILL);
				}
			}
			pthread_cond_broadcast(&srv->cv);
			break;
		case MIRAI__F_PING:
			if (mirai__u64_frame_decode(&f, &id) == 0) {
				mirai__out *o = mirai__out_ctrl(MIRAI__F_PONG, 8, id);
				if (o != NULL) {
					mirai__srv_queue_out(srv, o);
				}
			}
			break;
		default:
			MIRAI__LOG(MIRAI_LOG_DEBUG, TAG,
			    "ignored a frame of type %d", f.type);
			break;
		}
	}
	if (rv != 0) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "rejected the rest of a garbled message");
	}
	if (h.flags & MIRAI__M_ACKREQ) {
		srv->ack_pending = 1;
	}
	mirai__srv_kick_send(srv);
	pthread_mutex_unlock(&srv->mtx);
	/* A single frame may have taken the message; otherwise it is ours. */
	if (h.nframes != 1 || keep != NULL) {
		mirai__msg_free(msg);
	}
}

void
mirai__srv_on_rx(void *arg, mirai__msg *msg)
{
	handle_msg(arg, msg);
}

int
mirai__srv_on_pipe(void *arg, int ev, uint32_t pipe)
{
	mirai_server *srv = arg;

	(void) pipe;
	pthread_mutex_lock(&srv->mtx);
	if (ev == MIRAI__PIPE_UP && !srv->conn_lost) {
		srv->connected = 1;
		srv->last_rx   = mirai__now_ms();
		MIRAI__LOG(MIRAI_LOG_INFO, TAG, "connected");
	} else if (ev == MIRAI__PIPE_GONE && srv->connected) {
		srv->conn_lost = 1;
		MIRAI__LOG(MIRAI_LOG_INFO, TAG, "connection ended");
	}
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mtx);
	return 0;
}

/*
 * Heartbeat, every third of the interval: a client silent for the whole
 * interval is taken as gone, exactly as if the connection ended (the task
 * in hand is finished, then the server exits); a PING goes when we said
 * nothing for a third of it, so that the client hears from us.
 */
void
mirai__srv_beat(void *arg)
{
	mirai_server *srv = arg;
	int64_t now       = mirai__now_ms();

	pthread_mutex_lock(&srv->mtx);
	if (srv->connected && !srv->conn_lost && !srv->exit_req) {
		if (now - srv->last_rx > srv->hb) {
			MIRAI__LOG(MIRAI_LOG_WARN, TAG,
			    "no word from the client for %lld ms (heartbeat "
			    "%lld ms): taking the connection as ended",
			    (long long) (now - srv->last_rx),
			    (long long) srv->hb);
			srv->conn_lost = 1;
			srv->mute      = 1;
			pthread_cond_broadcast(&srv->cv);
		} else if (now - srv->last_tx >= srv->hb / 3 && !srv->mute) {
			mirai__out *o = mirai__out_ctrl(MIRAI__F_PING, 8,
			    (uint64_t) now);
			if (o != NULL) {
				mirai__srv_queue_out(srv, o);
			}
		}
	}
	pthread_mutex_unlock(&srv->mtx);
}

/* ---- hello and leaving ---------------------------------------------- */

void
mirai__srv_send_hello(mirai_server *srv)
{
	uint64_t left = 0;
	mirai__hello_view h = {.proto = MIRAI__PROTO,
	    .kind = MIRAI__KIND_SERVER, .pid = (uint32_t) getpid(),
	    .hook = srv->hook_fp, .host = srv->host,
	    .host_len = (uint16_t) strlen(srv->host),
	    .version = MIRAI_VERSION_STRING,
	    .version_len = (uint16_t) strlen(MIRAI_VERSION_STRING),
	    .binding = srv->binding,
	    .binding_len = (uint16_t) strlen(srv->binding),
	    .hook_name = srv->hook_name != NULL ? srv->hook_name : "",
	    .hook_name_len = (uint16_t) (srv->hook_name != NULL
		    ? strlen(srv->hook_name) : 0),
	    .slot = srv->slot, .secret = srv->secret,
	    .secret_len = (uint16_t) strlen(srv->secret)};
	mirai__out *o;

	if (srv->opts.max_tasks > 0) {
		left = srv->opts.max_tasks - srv->completed;
	}
	h.max_tasks = left;
	if ((o = mirai__out_new(mirai__hello_size(&h))) != NULL) {
		mirai__hello_encode(mirai__out_frame(o), &h);
		/* First in line: the client must know us before anything else. */
		mirai__outq_push_front(&srv->outq, o);
	}
}
/* Say BYE, return unstarted tasks, and wait (bounded) until the results
 * are out and the client closed the link.  Called locked. */
void
mirai__srv_leave(mirai_server *srv, int why)
{
	int64_t deadline = mirai__now_ms() + LEAVE_WAIT_MS;
	mirai__out *o;

	srv->leaving = 1;
	while (srv->queue.head != NULL) {
		stask *t = srv->queue.head;
		mirai__srv_queue_remove(srv, t);
		bounce(srv, t);
		mirai__srv_stask_free(t);
	}
	if ((o = mirai__out_ctrl(MIRAI__F_BYE, 4, (uint32_t) why)) != NULL) {
		mirai__srv_queue_out(srv, o);
	}
	while (!srv->conn_lost && !srv->exit_req &&
	    mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&srv->cv, &srv->mtx, deadline);
	}
}
