/*
 * server.c: the server runtime.  A server dials one URL and executes the
 * tasks that arrive there, one at a time, in arrival order.
 *
 * Threads: the caller of mirai_server_run() executes tasks; NNG's callbacks
 * receive messages (queueing tasks, acting on cancel and exit at once, even
 * while a task runs) and send results.  One mutex guards the state.
 *
 * Leaving: when a limit is reached (idle, wall time, max tasks) the server
 * says BYE and returns any task it has not started (BOUNCE), so the client
 * can give it to another server; then it waits, bounded, for the client's
 * EXIT, which says every result arrived and nothing more will be sent.
 * Only then does it close: closing a pipe the peer still sends on can hang
 * NNG 1.5.2 (see client.h).
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"


#define TAG "server"
/* How long a leaving server waits for the client to close the link. */
#define LEAVE_WAIT_MS 10000
/* Not connected yet: a note at -v this often, a warning after this long. */
#define DIAL_NOTE_MS 10000
#define DIAL_WARN_MS 60000

typedef struct fn_entry {
	char *name;
	mirai_fn fn;
	void *arg;
} fn_entry;

/* A task held by the server, from arrival until its result is queued. */
typedef struct stask {
	struct stask *next, *prev;
	uint64_t id;
	uint32_t timeout_ms;
	uint32_t flags;
	uint64_t hook;
	char *fn;
	const uint8_t *data;
	size_t len;
	mirai__msg *msg; /* owns data when the task came alone in a message */
	uint8_t mem[];
} stask;

struct mirai_task {
	mirai_server *srv;
	stask *t;
	const void *in;
	size_t in_len;
	void *in_dec;         /* input decoded by the hook */
	mirai__out *reply;    /* RESULT frame, payload written in place */
	uint8_t *raw;         /* with a hook: reply before encoding */
	size_t raw_len;
	char *errmsg;
	atomic_int cancelled;
	pid_t pgid;
};

struct mirai_server {
	mirai_server_opts opts;
	size_t max_msg;
	fn_entry *fns;
	size_t nfns, capfns;
	mirai_hook hook;
	char *hook_name;
	uint64_t hook_fp;
	void **dls;
	size_t ndls;

	pthread_mutex_t mtx;
	pthread_cond_t cv;
	mirai__link *link;
	stask *qhead, *qtail;
	size_t qlen;
	mirai_task *current;
	mirai__outq outq;
	int sending;
	int ack_pending;
	uint32_t seq_sent;
	uint32_t recv_seq;
	int connected;
	int conn_lost;
	int exit_req;
	int stop_req;
	int leaving;
	int mute;         /* GONE sent: nothing more may go out */
	uint64_t completed;
	int64_t t_start;
	int64_t t_last;
	char dialing[160];         /* the URL dialed, redacted, for logs */
	int64_t next_dial_note;    /* when to say again it is not connected */
	int dial_warned;
	char host[256];
	void *opts_mem;   /* the strings of opts */
	char binding[256];
	int64_t hb;       /* heartbeat interval (ms); 0: off */
	int64_t last_rx, last_tx; /* when a message last came, went */
	mirai__ticker beat;
};

/* ---- registry of functions ----------------------------------------- */

static fn_entry *
find_fn(mirai_server *srv, const char *name)
{
	for (size_t i = 0; i < srv->nfns; i++) {
		if (strcmp(srv->fns[i].name, name) == 0) {
			return &srv->fns[i];
		}
	}
	return NULL;
}

int
mirai_server_register(mirai_server *srv, const char *name, mirai_fn fn,
    void *arg)
{
	fn_entry *e;
	size_t len;

	if (srv == NULL || name == NULL || fn == NULL ||
	    (len = strlen(name)) == 0 || len > 0xffff) {
		return MIRAI_EINVAL;
	}
	if ((e = find_fn(srv, name)) != NULL) {
		e->fn  = fn;
		e->arg = arg;
		return 0;
	}
	if (srv->nfns == srv->capfns) {
		size_t cap = srv->capfns == 0 ? 16 : srv->capfns * 2;
		fn_entry *n = realloc(srv->fns, cap * sizeof *n);
		if (n == NULL) {
			return MIRAI_ENOMEM;
		}
		srv->fns    = n;
		srv->capfns = cap;
	}
	e = &srv->fns[srv->nfns];
	if ((e->name = mirai__strdup(name)) == NULL) {
		return MIRAI_ENOMEM;
	}
	e->fn  = fn;
	e->arg = arg;
	srv->nfns++;
	return 0;
}

int
mirai_server_set_hook(mirai_server *srv, const mirai_hook *hook)
{
	char *name;

	if (srv == NULL || hook == NULL || hook->name == NULL ||
	    *hook->name == '\0' || hook->encode == NULL ||
	    hook->decode == NULL) {
		return MIRAI_EINVAL;
	}
	if ((name = mirai__strdup(hook->name)) == NULL) {
		return MIRAI_ENOMEM;
	}
	free(srv->hook_name);
	srv->hook      = *hook;
	srv->hook_name = name;
	srv->hook.name = name;
	srv->hook_fp   = mirai__hash64(name);
	return 0;
}

static int
server_load_plugin_impl(mirai_server *srv, const char *path,
    mirai_errmsg *err)
{
	void *dl, **dls;
	mirai_plugin_init_fn init;
	int rv;

	if (srv == NULL || path == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "no plugin path");
	}
	if ((dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		return mirai__fail(err, MIRAI_ENOENT, "cannot load plugin %s",
		    dlerror());
	}
	*(void **) (&init) = dlsym(dl, MIRAI_PLUGIN_INIT);
	if (init == NULL) {
		dlclose(dl);
		return mirai__fail(err, MIRAI_ENOENT,
		    "plugin %s has no %s() entry point", path,
		    MIRAI_PLUGIN_INIT);
	}
	if ((dls = realloc(srv->dls, (srv->ndls + 1) * sizeof *dls)) == NULL) {
		dlclose(dl);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	srv->dls              = dls;
	srv->dls[srv->ndls++] = dl;
	if ((rv = init(srv)) != 0) {
		return mirai__fail(err, rv, "plugin %s: %s() returned %d (%s)",
		    path, MIRAI_PLUGIN_INIT, rv, mirai_strerror(rv));
	}
	return 0;
}

int
mirai_server_load_plugin(mirai_server *srv, const char *path,
    mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, server_load_plugin_impl(srv, path, &mine));
}

static int
server_create(mirai_server **out, const mirai_server_opts *opts,
    mirai_errmsg *err)
{
	mirai_server *srv;
	mirai_server_opts def = MIRAI_SERVER_OPTS_INIT;

	if (out == NULL) {
		return MIRAI_EINVAL;
	}
	if (opts == NULL) {
		opts = &def;
	}
	if (opts->idle_ms < MIRAI_FOREVER || opts->walltime_ms < MIRAI_FOREVER ||
	    opts->max_msg > (size_t) UINT32_MAX - 65536) {
		return mirai__fail(err, MIRAI_EINVAL, "invalid server options");
	}
	if ((srv = calloc(1, sizeof *srv)) == NULL) {
		return MIRAI_ENOMEM;
	}
	/* The caller's strings need not outlive this call. */
	if (mirai__sopts_copy(&srv->opts, opts, &srv->opts_mem) != 0) {
		free(srv);
		return MIRAI_ENOMEM;
	}
	srv->max_msg      = opts->max_msg ? opts->max_msg : MIRAI__DEFAULT_MAX_MSG;
	pthread_mutex_init(&srv->mtx, NULL);
	mirai__cond_init(&srv->cv);
	mirai__hostname(srv->host, sizeof srv->host);
	if (mirai__builtin_register(srv) != 0) {
		mirai_server_destroy(srv);
		return MIRAI_ENOMEM;
	}
	for (size_t i = 0; i < opts->nplugins; i++) {
		int rv = mirai_server_load_plugin(srv, opts->plugins[i], err);
		if (rv != 0) {
			mirai_server_destroy(srv);
			return rv;
		}
	}
	*out = srv;
	return 0;
}

int
mirai_server_create(mirai_server **out, const mirai_server_opts *opts,
    mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, server_create(out, opts, &mine));
}

static void
stask_free(stask *t)
{
	if (t != NULL) {
		if (t->msg != NULL) {
			mirai__msg_free(t->msg);
		}
		free(t);
	}
}

void
mirai_server_destroy(mirai_server *srv)
{
	if (srv == NULL) {
		return;
	}
	while (srv->qhead != NULL) {
		stask *t   = srv->qhead;
		srv->qhead = t->next;
		stask_free(t);
	}
	mirai__outq_clear(&srv->outq);
	for (size_t i = 0; i < srv->nfns; i++) {
		free(srv->fns[i].name);
	}
	free(srv->fns);
	for (size_t i = srv->ndls; i > 0; i--) {
		dlclose(srv->dls[i - 1]);
	}
	free(srv->dls);
	free(srv->hook_name);
	free(srv->opts_mem);
	pthread_cond_destroy(&srv->cv);
	pthread_mutex_destroy(&srv->mtx);
	free(srv);
}

void
mirai_server_stop(mirai_server *srv)
{
	if (srv != NULL) {
		pthread_mutex_lock(&srv->mtx);
		srv->stop_req = 1;
		pthread_cond_broadcast(&srv->cv);
		pthread_mutex_unlock(&srv->mtx);
	}
}

/* ---- sending --------------------------------------------------------- */

/* Send what is queued if nothing is in flight.  Called locked. */
static void
kick_send(mirai_server *srv)
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

static void
on_tx(void *arg, int rv)
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
		kick_send(srv);
	}
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mtx);
}

static void
queue_out(mirai_server *srv, mirai__out *o)
{
	if (srv->mute) {
		mirai__out_free(o);
		return;
	}
	mirai__outq_push(&srv->outq, o);
	kick_send(srv);
}

/* An error RESULT with a message.  Called locked or unlocked. */
static mirai__out *
error_result(mirai_server *srv, uint64_t id, int status, const char *text)
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
	queue_out(srv, o);
}

/* ---- receiving -------------------------------------------------------- */

static void
queue_push(mirai_server *srv, stask *t)
{
	t->next = NULL;
	t->prev = srv->qtail;
	if (srv->qtail != NULL) {
		srv->qtail->next = t;
	} else {
		srv->qhead = t;
	}
	srv->qtail = t;
	srv->qlen++;
}

static void
queue_remove(mirai_server *srv, stask *t)
{
	if (t->prev != NULL) {
		t->prev->next = t->next;
	} else {
		srv->qhead = t->next;
	}
	if (t->next != NULL) {
		t->next->prev = t->prev;
	} else {
		srv->qtail = t->prev;
	}
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
	for (stask *t = srv->qhead; t != NULL; t = t->next) {
		if (t->id == id) {
			mirai__out *o;
			queue_remove(srv, t);
			o = error_result(srv, id, MIRAI_ECANCELED,
			    "task cancelled before it started");
			stask_free(t);
			if (o != NULL) {
				queue_out(srv, o);
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
				mirai__out *o = error_result(srv, tv.id,
				    MIRAI_ENOMEM, "server out of memory");
				if (o != NULL) {
					queue_out(srv, o);
				}
				break;
			}
			if (srv->leaving) {
				bounce(srv, t);
				stask_free(t);
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
				mirai__out *o = mirai__out_new(MIRAI__FRAME_HDR_LEN);
				if (o != NULL) {
					mirai__frame_hdr_encode(mirai__out_frame(o),
					    MIRAI__F_GONE, 0);
					queue_out(srv, o);
				}
				srv->mute = 1;
			}
			srv->exit_req = 1;
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
				mirai__out *o = mirai__out_new(MIRAI__U64_FRAME_LEN);
				if (o != NULL) {
					mirai__u64_frame_encode(mirai__out_frame(o),
					    MIRAI__F_PONG, id);
					queue_out(srv, o);
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
	kick_send(srv);
	pthread_mutex_unlock(&srv->mtx);
	/* A single frame may have taken the message; otherwise it is ours. */
	if (h.nframes != 1 || keep != NULL) {
		mirai__msg_free(msg);
	}
}

static void
on_rx(void *arg, mirai__msg *msg)
{
	handle_msg(arg, msg);
}

static int
on_pipe(void *arg, int ev, uint32_t pipe)
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
static void
beat(void *arg)
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
			mirai__out *o = mirai__out_new(MIRAI__U64_FRAME_LEN);
			if (o != NULL) {
				mirai__u64_frame_encode(mirai__out_frame(o),
				    MIRAI__F_PING, (uint64_t) now);
				queue_out(srv, o);
			}
		}
	}
	pthread_mutex_unlock(&srv->mtx);
}

/* ---- executing ------------------------------------------------------- */

const void *
mirai_task_data(const mirai_task *task, size_t *len)
{
	if (task == NULL) {
		if (len != NULL) {
			*len = 0;
		}
		return NULL;
	}
	if (len != NULL) {
		*len = task->in_len;
	}
	return task->in;
}

const char *
mirai_task_function(const mirai_task *task)
{
	return task != NULL ? task->t->fn : NULL;
}

uint64_t
mirai_task_id(const mirai_task *task)
{
	return task != NULL ? task->t->id : 0;
}

int
mirai_task_cancelled(const mirai_task *task)
{
	return task != NULL && atomic_load(&((mirai_task *) task)->cancelled);
}

size_t
mirai__task_max_msg(const mirai_task *task)
{
	return task->srv->max_msg;
}

void *
mirai_task_reply_buf(mirai_task *task, size_t len)
{
	if (task == NULL || len > task->srv->max_msg) {
		return NULL;
	}
	mirai__out_free(task->reply);
	task->reply = NULL;
	free(task->raw);
	task->raw = NULL;
	if (task->srv->hook_fp != 0) {
		/* The hook encodes it afterwards; keep the raw bytes. */
		task->raw     = malloc(len > 0 ? len : 1);
		task->raw_len = len;
		return task->raw;
	}
	if ((task->reply = mirai__out_new(mirai__result_size(len))) == NULL) {
		return NULL;
	}
	return mirai__out_frame(task->reply) + MIRAI__FRAME_HDR_LEN +
	    MIRAI__RESULT_FIXED;
}

void *
mirai_task_reply_inplace(mirai_task *task, size_t len)
{
	stask *t = task != NULL ? task->t : NULL;
	size_t skip;
	uint8_t *p;

	if (t == NULL) {
		return NULL;
	}
	/* In place only when the input is the undecoded payload of a message
	 * of its own, and the result fits where the input was. */
	if (t->msg == NULL || task->srv->hook_fp != 0 || len > t->len ||
	    task->in != t->data) {
		const void *in = task->in;
		size_t n       = len < task->in_len ? len : task->in_len;
		void *tmp      = NULL;
		if (n > 0 && (tmp = malloc(n)) == NULL) {
			return NULL;
		}
		if (n > 0) {
			memcpy(tmp, in, n);
		}
		p = mirai_task_reply_buf(task, len);
		if (p != NULL && n > 0) {
			memcpy(p, tmp, n);
		}
		free(tmp);
		return p;
	}
	mirai__out_free(task->reply);
	free(task->raw);
	task->raw = NULL;
	if ((task->reply = malloc(sizeof *task->reply)) == NULL) {
		return NULL;
	}
	/* The message holds header, TASK frame header and fixed part, the
	 * function name, then the payload.  A RESULT's fixed part is shorter:
	 * trim the front so the payload sits right after it. */
	p    = mirai__msg_body(t->msg);
	skip = (size_t) (t->data - p) -
	    (MIRAI__HDR_LEN + MIRAI__FRAME_HDR_LEN + MIRAI__RESULT_FIXED);
	mirai__msg_trim(t->msg, skip);
	mirai__msg_chop(t->msg, t->len - len);
	memset(task->reply, 0, sizeof *task->reply);
	task->reply->msg = t->msg;
	task->reply->len = mirai__result_size(len);
	t->msg           = NULL; /* the reply owns it now */
	task->in         = NULL;
	task->in_len     = 0;
	return mirai__msg_body(task->reply->msg) + MIRAI__HDR_LEN +
	    MIRAI__FRAME_HDR_LEN + MIRAI__RESULT_FIXED;
}

int
mirai_task_reply(mirai_task *task, const void *data, size_t len)
{
	void *p;

	if (task == NULL || (data == NULL && len > 0)) {
		return MIRAI_EINVAL;
	}
	if (len > task->srv->max_msg) {
		return MIRAI_EMSGSIZE;
	}
	if ((p = mirai_task_reply_buf(task, len)) == NULL) {
		return MIRAI_ENOMEM;
	}
	if (len > 0) {
		memcpy(p, data, len);
	}
	return 0;
}

int
mirai_task_fail(mirai_task *task, const char *fmt, ...)
{
	va_list ap;
	char buf[1024];

	if (task == NULL) {
		return MIRAI_ETASK;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	free(task->errmsg);
	task->errmsg = mirai__strdup(buf);
	return MIRAI_ETASK;
}

int
mirai__task_set_pgid(mirai_task *task, pid_t pgid)
{
	int cancelled;

	pthread_mutex_lock(&task->srv->mtx);
	task->pgid = pgid;
	cancelled  = atomic_load(&task->cancelled);
	pthread_mutex_unlock(&task->srv->mtx);
	return cancelled;
}

int
mirai__task_sleep_until(mirai_task *task, int64_t deadline_ms)
{
	mirai_server *srv = task->srv;
	int cancelled;

	pthread_mutex_lock(&srv->mtx);
	while (!(cancelled = atomic_load(&task->cancelled)) &&
	    mirai__now_ms() < deadline_ms) {
		mirai__cond_wait_until(&srv->cv, &srv->mtx, deadline_ms);
	}
	pthread_mutex_unlock(&srv->mtx);
	return cancelled;
}

const char *
mirai__server_binding(mirai_server *srv)
{
	return srv->binding;
}

void
mirai__server_functions_json(mirai_server *srv, mirai__sb *sb)
{
	mirai__sb_printf(sb, "[");
	for (size_t i = 0; i < srv->nfns; i++) {
		mirai__sb_printf(sb, i > 0 ? "," : "");
		mirai__sb_json_str(sb, srv->fns[i].name);
	}
	mirai__sb_printf(sb, "]");
}

/* Turn the task's outcome into a RESULT frame (unlocked). */
static mirai__out *
finish_task(mirai_server *srv, mirai_task *task, int rv)
{
	mirai__result_view r = {.id = task->t->id, .hook = srv->hook_fp};
	char text[512];
	mirai__out *o;

	if (rv == 0 && atomic_load(&task->cancelled)) {
		rv = MIRAI_ECANCELED;
	}
	if (rv != 0) {
		const char *msg = task->errmsg;
		if (msg == NULL) {
			if (rv == MIRAI_ECANCELED) {
				msg = "task cancelled while running";
			} else {
				snprintf(text, sizeof text,
				    "function '%s' failed: %s (%d)", task->t->fn,
				    mirai_strerror(rv), rv);
				msg = text;
			}
		}
		return error_result(srv, task->t->id,
		    rv == MIRAI_ECANCELED ? rv : MIRAI_ETASK, msg);
	}
	if (srv->hook_fp != 0) {
		void *enc      = NULL;
		size_t enc_len = 0;
		int hrv = srv->hook.encode(srv->hook.arg, task->raw,
		    task->raw != NULL ? task->raw_len : 0, &enc, &enc_len);
		if (hrv != 0) {
			snprintf(text, sizeof text,
			    "serialization hook '%s' failed to encode the "
			    "result: %s",
			    srv->hook_name, mirai_strerror(hrv));
			return error_result(srv, task->t->id, MIRAI_EHOOK, text);
		}
		if (enc_len > srv->max_msg ||
		    (o = mirai__out_new(mirai__result_size(enc_len))) == NULL) {
			if (srv->hook.release != NULL) {
				srv->hook.release(srv->hook.arg, enc);
			} else {
				free(enc);
			}
			return error_result(srv, task->t->id, MIRAI_EMSGSIZE,
			    "encoded result too large");
		}
		r.data = enc;
		r.len  = enc_len;
		mirai__result_encode(mirai__out_frame(o), &r);
		if (srv->hook.release != NULL) {
			srv->hook.release(srv->hook.arg, enc);
		} else {
			free(enc);
		}
		return o;
	}
	if ((o = task->reply) == NULL) {
		/* No reply: an empty result. */
		if ((o = mirai__out_new(mirai__result_size(0))) == NULL) {
			return error_result(srv, task->t->id, MIRAI_ENOMEM,
			    "server out of memory");
		}
		r.len = 0;
	} else {
		task->reply = NULL;
		r.len = o->len - mirai__result_size(0);
		/* The payload is already in place: encode the fixed part. */
		r.data = NULL;
	}
	mirai__result_encode(mirai__out_frame(o), &r);
	return o;
}

static mirai__out *
run_task(mirai_server *srv, mirai_task *task)
{
	stask *t = task->t;
	fn_entry *e;
	char text[512];
	int rv;

	if (t->hook != srv->hook_fp) {
		if (srv->hook_fp == 0) {
			snprintf(text, sizeof text,
			    "serialization hook mismatch: the client encoded the "
			    "task with a hook (fingerprint %016" PRIx64
			    ") but this server has none",
			    t->hook);
		} else if (t->hook == 0) {
			snprintf(text, sizeof text,
			    "serialization hook mismatch: this server uses hook "
			    "'%s' but the client has none",
			    srv->hook_name);
		} else {
			snprintf(text, sizeof text,
			    "serialization hook mismatch: this server uses hook "
			    "'%s', the client another (fingerprint %016" PRIx64
			    ")",
			    srv->hook_name, t->hook);
		}
		return error_result(srv, t->id, MIRAI_EHOOK, text);
	}
	if ((e = find_fn(srv, t->fn)) == NULL) {
		snprintf(text, sizeof text, "no function '%s' on server %s:%ld",
		    t->fn, srv->host, (long) getpid());
		return error_result(srv, t->id, MIRAI_ENOFUNC, text);
	}
	task->in     = t->data;
	task->in_len = t->len;
	if (srv->hook_fp != 0) {
		size_t dec_len = 0;
		rv = srv->hook.decode(srv->hook.arg, t->data, t->len,
		    &task->in_dec, &dec_len);
		if (rv != 0) {
			snprintf(text, sizeof text,
			    "serialization hook '%s' failed to decode the task: %s",
			    srv->hook_name, mirai_strerror(rv));
			return error_result(srv, t->id, MIRAI_EHOOK, text);
		}
		task->in     = task->in_dec;
		task->in_len = dec_len;
	}
	rv = e->fn(task, e->arg);
	return finish_task(srv, task, rv);
}

static void
task_cleanup(mirai_server *srv, mirai_task *task)
{
	if (task->in_dec != NULL) {
		if (srv->hook.release != NULL) {
			srv->hook.release(srv->hook.arg, task->in_dec);
		} else {
			free(task->in_dec);
		}
	}
	mirai__out_free(task->reply);
	free(task->raw);
	free(task->errmsg);
	stask_free(task->t);
}

static void
send_hello(mirai_server *srv)
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
		    ? strlen(srv->hook_name) : 0)};
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

static int
stop_reason(mirai_server *srv, int64_t now, int64_t *deadline)
{
	int64_t d = -1;

	*deadline = -1;
	if (srv->conn_lost || srv->exit_req || srv->stop_req) {
		return MIRAI_EXIT_CLOSED;
	}
	if (srv->opts.max_tasks > 0 && srv->completed >= srv->opts.max_tasks) {
		return MIRAI_EXIT_MAXTASKS;
	}
	if (srv->opts.walltime_ms > 0) {
		d = srv->t_start + srv->opts.walltime_ms;
		if (now >= d) {
			return MIRAI_EXIT_WALLTIME;
		}
	}
	if (srv->opts.idle_ms > 0 && srv->qhead == NULL) {
		int64_t di = srv->t_last + srv->opts.idle_ms;
		if (now >= di) {
			return MIRAI_EXIT_IDLE;
		}
		if (d < 0 || di < d) {
			d = di;
		}
	}
	*deadline = d;
	return -1;
}

static const char *
reason_text(int why)
{
	switch (why) {
	case MIRAI_EXIT_IDLE:
		return "idle time reached";
	case MIRAI_EXIT_WALLTIME:
		return "wall time reached";
	case MIRAI_EXIT_MAXTASKS:
		return "maximum tasks completed";
	default:
		return "connection ended";
	}
}

/* Execute tasks until a reason to stop; called and returns locked. */
/*
 * A server that cannot reach its URL keeps trying (unless --dial-once):
 * it says so at -v every DIAL_NOTE_MS, and once as a warning after
 * DIAL_WARN_MS, so that a wrong URL or port does not fail in silence.
 * Lowers *deadline to the next note.  Called locked.
 */
static void
note_dialing(mirai_server *srv, int64_t now, int64_t *deadline)
{
	int64_t next;

	if (srv->connected || srv->conn_lost) {
		return;
	}
	if (!srv->dial_warned && now - srv->t_start >= DIAL_WARN_MS) {
		srv->dial_warned = 1;
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "not connected to %s after %d s: check the URL and port, "
		    "and that its dispatcher or client runs and is reachable "
		    "from here; still trying",
		    srv->dialing, DIAL_WARN_MS / 1000);
	}
	if (now >= srv->next_dial_note) {
		if (srv->next_dial_note != 0) {
			MIRAI__LOG(MIRAI_LOG_INFO, TAG,
			    "dialing %s: not connected after %" PRId64 " s",
			    srv->dialing, (now - srv->t_start) / 1000);
		}
		srv->next_dial_note = now + DIAL_NOTE_MS;
	}
	next = srv->next_dial_note;
	if (!srv->dial_warned && srv->t_start + DIAL_WARN_MS < next) {
		next = srv->t_start + DIAL_WARN_MS;
	}
	if (*deadline < 0 || next < *deadline) {
		*deadline = next;
	}
}

static int
run_loop(mirai_server *srv)
{
	for (;;) {
		int64_t deadline, now = mirai__now_ms();
		int why = stop_reason(srv, now, &deadline);

		note_dialing(srv, now, &deadline);
		mirai_task task;
		mirai__out *o;

		if (why >= 0) {
			return why;
		}
		if (srv->qhead == NULL) {
			mirai__cond_wait_until(&srv->cv, &srv->mtx, deadline);
			continue;
		}
		memset(&task, 0, sizeof task);
		task.srv = srv;
		task.t   = srv->qhead;
		queue_remove(srv, task.t);
		srv->current = &task;
		pthread_mutex_unlock(&srv->mtx);

		o = run_task(srv, &task);

		pthread_mutex_lock(&srv->mtx);
		srv->current = NULL;
		srv->completed++;
		srv->t_last = mirai__now_ms();
		if (o == NULL) {
			o = error_result(srv, task.t->id, MIRAI_ENOMEM,
			    "server out of memory");
		}
		if (o != NULL) {
			queue_out(srv, o);
		} else {
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG,
			    "out of memory: result of task %" PRIu64 " lost",
			    task.t->id);
		}
		pthread_mutex_unlock(&srv->mtx);
		task_cleanup(srv, &task);
		pthread_mutex_lock(&srv->mtx);
	}
}

/* Say BYE, return unstarted tasks, and wait (bounded) until the results
 * are out and the client closed the link.  Called locked. */
static void
leave(mirai_server *srv, int why)
{
	int64_t deadline = mirai__now_ms() + LEAVE_WAIT_MS;
	mirai__out *o;

	srv->leaving = 1;
	while (srv->qhead != NULL) {
		stask *t = srv->qhead;
		queue_remove(srv, t);
		bounce(srv, t);
		stask_free(t);
	}
	if ((o = mirai__out_new(MIRAI__U32_FRAME_LEN)) != NULL) {
		mirai__u32_frame_encode(
		    mirai__out_frame(o), MIRAI__F_BYE, (uint32_t) why);
		queue_out(srv, o);
	}
	while (!srv->conn_lost && !srv->exit_req &&
	    mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&srv->cv, &srv->mtx, deadline);
	}
}

/*
 * Bind to the CPUs asked for, or describe the binding inherited.  Done
 * before the socket opens: the threads NNG starts then inherit the mask,
 * and tasks never run on a CPU the server was not meant to use.
 */
static int
bind_cpus(mirai_server *srv, mirai_errmsg *err)
{
	const char *kind = srv->opts.bind_to;
	int n = srv->opts.bind_count > 0 ? srv->opts.bind_count : 1;
	int wrapped = 0, count;

	if (kind == NULL || strcmp(kind, "none") == 0) {
		mirai__topo_binding(srv->binding, sizeof srv->binding);
		return 0;
	}
	/* Counted before binding: afterwards only the one unit is usable. */
	count = mirai__topo_count(kind);
	if (mirai__topo_bind_range(kind, srv->opts.bind_index, n,
		srv->binding, sizeof srv->binding, &wrapped, err) != 0) {
		return MIRAI_ETOPO;
	}
	if (wrapped && n == 1) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "bind index %d is past the last of %d usable %s units: "
		    "wrapped round to %s, shared with other servers",
		    srv->opts.bind_index, count, kind, srv->binding);
	} else if (wrapped) {
		MIRAI__LOG(MIRAI_LOG_WARN, TAG,
		    "bind indexes %d to %lld go past the last of %d usable "
		    "%s units: wrapped round to %s, shared with other "
		    "servers",
		    srv->opts.bind_index,
		    (long long) srv->opts.bind_index + n - 1, count, kind,
		    srv->binding);
	}
	MIRAI__LOG(MIRAI_LOG_INFO, TAG, "bound to %s", srv->binding);
	return 0;
}

static int
server_run(mirai_server *srv, const char *url, int *reason, mirai_errmsg *err)
{
	int rv, why, saved_err = -1;

	if (srv == NULL || url == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "no URL to dial");
	}
	if ((rv = bind_cpus(srv, err)) != 0) {
		return rv;
	}
	mirai__link_cfg cfg = {
		.max_msg          = srv->max_msg,
		.reconnect_min_ms = 20,
		.reconnect_max_ms = 2000,
		.events = (1u << MIRAI__PIPE_UP) | (1u << MIRAI__PIPE_GONE),
		.recv   = on_rx,
		.pipe   = on_pipe,
		.sent   = on_tx,
		.arg    = srv,
		/* For tls+tcp:// and wss:// URLs: the CA that signed the
		 * dispatcher's (or client's) certificate, and our own. */
		.tls = {.ca_file = srv->opts.tls_ca,
		    .cert_file   = srv->opts.tls_cert,
		    .key_file    = srv->opts.tls_key},
	};
	if ((rv = mirai__link_open(&srv->link, &cfg, err)) != 0) {
		return rv;
	}
	srv->t_start = srv->t_last = mirai__now_ms();
	mirai__url_redact(url, srv->dialing, sizeof srv->dialing);
	srv->hb = mirai__heartbeat_ms(srv->opts.heartbeat_ms);
	if (srv->hb > 0) {
		mirai__ticker_start(&srv->beat, srv->hb / 3, beat, srv);
	}
	pthread_mutex_lock(&srv->mtx);
	send_hello(srv);
	kick_send(srv);
	pthread_mutex_unlock(&srv->mtx);
	mirai__link_start(srv->link);

	if ((rv = mirai__link_dial(srv->link, url, srv->opts.dial_once, err)) != 0) {
		mirai__ticker_stop(&srv->beat);
		mirai__link_close(srv->link);
		srv->link = NULL;
		return rv;
	}
	if (!srv->opts.output) {
		/* Task output goes nowhere; our own log lines still go to the
		 * stderr we were given. */
		int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
		saved_err   = fcntl(2, F_DUPFD_CLOEXEC, 3);
		if (devnull >= 0 && saved_err >= 0) {
			fflush(stdout);
			fflush(stderr);
			mirai__log_set_fd(saved_err);
			dup2(devnull, 1);
			dup2(devnull, 2);
		}
		if (devnull >= 0) {
			close(devnull);
		}
	}

	pthread_mutex_lock(&srv->mtx);
	why = run_loop(srv);
	if (why != MIRAI_EXIT_CLOSED && srv->connected && !srv->conn_lost) {
		MIRAI__LOG(MIRAI_LOG_INFO, TAG, "leaving: %s", reason_text(why));
		leave(srv, why);
	} else if (why == MIRAI_EXIT_CLOSED && srv->connected &&
	    !srv->conn_lost && !srv->exit_req) {
		/* Stopped by mirai_server_stop(): leave politely too. */
		leave(srv, why);
	}
	pthread_mutex_unlock(&srv->mtx);

	mirai__ticker_stop(&srv->beat);
	mirai__link_close(srv->link);
	srv->link = NULL;
	if (saved_err >= 0) {
		fflush(stderr);
		dup2(saved_err, 2);
		close(saved_err);
		mirai__log_set_fd(2);
	}
	if (reason != NULL) {
		*reason = why;
	}
	return 0;
}

int
mirai_server_run(mirai_server *srv, const char *url, int *reason,
    mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, server_run(srv, url, reason, &mine));
}
