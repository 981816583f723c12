/*
 * link.c: what client, dispatcher and server share on top of NNG: queues of
 * encoded frames, packing them into messages (adaptive batching: whatever
 * queued up while the previous message was in flight goes out as one), the
 * socket options every link has, and the URL peers should dial.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

mirai__out *
mirai__out_new(size_t len)
{
	mirai__out *o;

	if (len >= MIRAI__BIG_FRAME) {
		if ((o = malloc(sizeof *o)) == NULL) {
			return NULL;
		}
		if (nng_msg_alloc(&o->msg, MIRAI__HDR_LEN + len) != 0) {
			free(o);
			return NULL;
		}
	} else {
		if ((o = malloc(sizeof *o + len)) == NULL) {
			return NULL;
		}
		o->msg = NULL;
	}
	o->next  = NULL;
	o->prev  = NULL;
	o->owner = NULL;
	o->len   = len;
	return o;
}

uint8_t *
mirai__out_frame(mirai__out *o)
{
	if (o->msg != NULL) {
		return (uint8_t *) nng_msg_body(o->msg) + MIRAI__HDR_LEN;
	}
	return o->data;
}

void
mirai__out_free(mirai__out *o)
{
	if (o != NULL) {
		if (o->msg != NULL) {
			nng_msg_free(o->msg);
		}
		free(o);
	}
}

void
mirai__outq_push(mirai__outq *q, mirai__out *o)
{
	o->next = NULL;
	o->prev = q->tail;
	if (q->tail != NULL) {
		q->tail->next = o;
	} else {
		q->head = o;
	}
	q->tail = o;
	q->count++;
}

void
mirai__outq_push_front(mirai__outq *q, mirai__out *o)
{
	o->prev = NULL;
	o->next = q->head;
	if (q->head != NULL) {
		q->head->prev = o;
	} else {
		q->tail = o;
	}
	q->head = o;
	q->count++;
}

void
mirai__outq_remove(mirai__outq *q, mirai__out *o)
{
	if (o->prev != NULL) {
		o->prev->next = o->next;
	} else {
		q->head = o->next;
	}
	if (o->next != NULL) {
		o->next->prev = o->prev;
	} else {
		q->tail = o->prev;
	}
	o->next = o->prev = NULL;
	q->count--;
}

mirai__out *
mirai__outq_pop(mirai__outq *q)
{
	mirai__out *o = q->head;

	if (o != NULL) {
		mirai__outq_remove(q, o);
	}
	return o;
}

void
mirai__outq_clear(mirai__outq *q)
{
	mirai__out *o;

	while ((o = mirai__outq_pop(q)) != NULL) {
		mirai__out_free(o);
	}
}

int
mirai__outq_pack(mirai__outq *q, mirai__msghdr *h, nng_msg **msgp,
    void (*each)(void *ctx, mirai__out *o), void *ctx)
{
	nng_msg *msg;
	mirai__out *o;
	size_t total = 0, n = 0;
	uint8_t *p;

	if (q->head != NULL && q->head->msg != NULL) {
		o          = mirai__outq_pop(q);
		msg        = o->msg;
		h->nframes = 1;
		mirai__hdr_encode(nng_msg_body(msg), h);
		/* The callback may still read the frame: it lives in msg. */
		if (each != NULL) {
			each(ctx, o);
		}
		o->msg = NULL;
		mirai__out_free(o);
		*msgp = msg;
		return 0;
	}
	/* The byte cap also keeps the count within the 16-bit nframes;
	 * the n bound stays in case the cap ever grows. */
	_Static_assert(MIRAI__PACK_CAP / MIRAI__FRAME_HDR_LEN <= 0xffff,
	    "a full message fits the 16-bit frame count");
	for (o = q->head; o != NULL && o->msg == NULL && n < 0xffff;
	     o = o->next) {
		if (n > 0 && total + o->len > MIRAI__PACK_CAP) {
			break;
		}
		total += o->len;
		n++;
	}
	if (nng_msg_alloc(&msg, MIRAI__HDR_LEN + total) != 0) {
		return MIRAI_ENOMEM;
	}
	h->nframes = (uint16_t) n;
	p          = nng_msg_body(msg);
	mirai__hdr_encode(p, h);
	p += MIRAI__HDR_LEN;
	while (n-- > 0) {
		o = mirai__outq_pop(q);
		memcpy(p, o->data, o->len);
		p += o->len;
		if (each != NULL) {
			each(ctx, o);
		}
		mirai__out_free(o);
	}
	*msgp = msg;
	return 0;
}

int
mirai__send(nng_socket s, nng_aio *aio, nng_msg *msg)
{
	/* Taken at once: no completion callback, so no thread hop. */
	if (nng_sendmsg(s, msg, NNG_FLAG_NONBLOCK) == 0) {
		return 1;
	}
	nng_aio_set_msg(aio, msg);
	nng_send_aio(s, aio);
	return 0;
}

void
mirai__sock_close(nng_socket s, nng_aio *rx, nng_aio *tx)
{
	/* Stopped first: a callback can no longer post another receive on a
	 * socket being closed, which in NNG 1.5.2 leaves the aio tied to the
	 * freed queue of the socket. */
	nng_aio_stop(rx);
	nng_aio_stop(tx);
	nng_close(s);
	nng_aio_free(rx);
	nng_aio_free(tx);
}

int
mirai__sock_setup(nng_socket s, size_t max_msg)
{
	int rv;

	if (max_msg == 0) {
		max_msg = MIRAI__DEFAULT_MAX_MSG;
	}
	/* Room for the headers around the largest payload. */
	rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, max_msg + 4096);
	return mirai__nng_err(rv);
}

int
mirai__listener_url(nng_listener l, const char *url, char **out)
{
	const char *sep = strstr(url, "://");
	const char *host, *hend, *path;
	char hostbuf[256];
	int port = 0;
	size_t need;
	char *res;

	if (sep == NULL) {
		return MIRAI_EADDRINVAL;
	}
	host = sep + 3;
	if (strncmp(url, "ipc://", 6) == 0 || strncmp(url, "inproc://", 9) == 0) {
		*out = mirai__strdup(url);
		return *out == NULL ? MIRAI_ENOMEM : 0;
	}
	/* host[:port][/path]; a bracketed IPv6 host keeps its brackets. */
	if (*host == '[') {
		hend = strchr(host, ']');
		if (hend == NULL) {
			return MIRAI_EADDRINVAL;
		}
		hend++;
	} else {
		hend = host + strcspn(host, ":/");
	}
	path = hend + strcspn(hend, "/");
	if (nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) != 0) {
		port = -1;
	}
	if (hend == host || (hend - host == 1 && *host == '*')) {
		mirai__hostname(hostbuf, sizeof hostbuf);
	} else {
		snprintf(hostbuf, sizeof hostbuf, "%.*s", (int) (hend - host),
		    host);
	}
	need = (size_t) (host - url) + strlen(hostbuf) + 16 + strlen(path);
	if ((res = malloc(need)) == NULL) {
		return MIRAI_ENOMEM;
	}
	if (port >= 0) {
		snprintf(res, need, "%.*s%s:%d%s", (int) (host - url), url,
		    hostbuf, port, path);
	} else {
		snprintf(res, need, "%.*s%s%s", (int) (host - url), url,
		    hostbuf, hend);
	}
	*out = res;
	return 0;
}
