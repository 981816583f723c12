/*
 * server_task.c: the task in hand: the task API a function sees (input,
 * name, id, cancellation, replies in a buffer or in place, failure), the
 * internal helpers for subprocesses and sleeping, and executing a task:
 * checking its hook, finding its function, decoding its input and turning
 * the outcome into a RESULT frame.
 */

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server_int.h"

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
		return mirai__srv_error_result(srv, task->t->id,
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
			return mirai__srv_error_result(srv, task->t->id,
			    MIRAI_EHOOK, text);
		}
		if (enc_len > srv->max_msg ||
		    (o = mirai__out_new(mirai__result_size(enc_len))) == NULL) {
			if (srv->hook.release != NULL) {
				srv->hook.release(srv->hook.arg, enc);
			} else {
				free(enc);
			}
			return mirai__srv_error_result(srv, task->t->id,
			    MIRAI_EMSGSIZE, "encoded result too large");
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
			return mirai__srv_error_result(srv, task->t->id,
			    MIRAI_ENOMEM, "server out of memory");
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

mirai__out *
mirai__srv_run_task(mirai_server *srv, mirai_task *task)
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
		return mirai__srv_error_result(srv, t->id, MIRAI_EHOOK, text);
	}
	if ((e = mirai__srv_find_fn(srv, t->fn)) == NULL) {
		snprintf(text, sizeof text, "no function '%s' on server %s:%ld",
		    t->fn, srv->host, (long) getpid());
		return mirai__srv_error_result(srv, t->id, MIRAI_ENOFUNC, text);
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
			return mirai__srv_error_result(srv, t->id, MIRAI_EHOOK,
			    text);
		}
		task->in     = task->in_dec;
		task->in_len = dec_len;
	}
	rv = e->fn(task, e->arg);
	return finish_task(srv, task, rv);
}

void
mirai__srv_task_cleanup(mirai_server *srv, mirai_task *task)
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
	mirai__srv_stask_free(task->t);
}
