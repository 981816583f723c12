/*
 * link.c: what client, dispatcher and server share above the transport:
 * queues of encoded frames, and packing them into messages (adaptive
 * batching: whatever queued up while the previous message was in flight
 * goes out as one).
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
		if (mirai__msg_alloc(&o->msg, MIRAI__HDR_LEN + len) != 0) {
			free(o);
			return NULL;
		}
	} else {
		if ((o = malloc(sizeof *o + len)) == NULL) {
			return NULL;
		}
		o->msg = NULL;
	}
	o->entry.next = NULL;
	o->entry.prev = NULL;
	o->owner      = NULL;
	o->len        = len;
	return o;
}

uint8_t *
mirai__out_frame(mirai__out *o)
{
	if (o->msg != NULL) {
		return mirai__msg_body(o->msg) + MIRAI__HDR_LEN;
	}
	return o->data;
}

void
mirai__out_free(mirai__out *o)
{
	if (o != NULL) {
		if (o->msg != NULL) {
			mirai__msg_free(o->msg);
		}
		free(o);
	}
}

mirai__out *
mirai__out_ctrl(uint8_t type, size_t vlen, uint64_t v)
{
	mirai__out *o = mirai__out_new(MIRAI__FRAME_HDR_LEN + vlen);

	if (o == NULL) {
		return NULL;
	}
	if (vlen == 8) {
		mirai__u64_frame_encode(mirai__out_frame(o), type, v);
	} else if (vlen == 4) {
		mirai__u32_frame_encode(mirai__out_frame(o), type, (uint32_t) v);
	} else {
		mirai__frame_hdr_encode(mirai__out_frame(o), type, 0);
	}
	return o;
}

void
mirai__outq_push(mirai__outq *q, mirai__out *o)
{
	MIRAI__LIST_PUSH_BACK(q, o, entry);
	q->count++;
}

void
mirai__outq_push_front(mirai__outq *q, mirai__out *o)
{
	MIRAI__LIST_PUSH_FRONT(q, o, entry);
	q->count++;
}

void
mirai__outq_remove(mirai__outq *q, mirai__out *o)
{
	MIRAI__LIST_REMOVE(q, o, entry);
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
mirai__outq_pack(mirai__outq *q, mirai__msghdr *h, mirai__msg **msgp,
    int (*each)(void *ctx, mirai__out *o), void *ctx)
{
	mirai__msg *msg;
	mirai__out *o;
	size_t total = 0, n = 0;
	uint8_t *p;

	if (q->head != NULL && q->head->msg != NULL) {
		o          = mirai__outq_pop(q);
		msg        = o->msg;
		h->nframes = 1;
		mirai__hdr_encode(mirai__msg_body(msg), h);
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
	     o = o->entry.next) {
		if (n > 0 && total + o->len > MIRAI__PACK_CAP) {
			break;
		}
		total += o->len;
		n++;
	}
	if (mirai__msg_alloc(&msg, MIRAI__HDR_LEN + total) != 0) {
		return MIRAI_ENOMEM;
	}
	h->nframes = (uint16_t) n;
	p          = mirai__msg_body(msg);
	mirai__hdr_encode(p, h);
	p += MIRAI__HDR_LEN;
	while (n-- > 0) {
		o = mirai__outq_pop(q);
		memcpy(p, o->data, o->len);
		p += o->len;
		if (each == NULL || !each(ctx, o)) {
			mirai__out_free(o);
		}
	}
	*msgp = msg;
	return 0;
}

int
mirai__hello_admit(const mirai__frame *f, mirai__hello_view *h,
    const char *secret, uint32_t slot, const char *tag, const char *who)
{
	if (mirai__hello_decode(f, h) != 0 || h->proto != MIRAI__PROTO) {
		MIRAI__LOG(MIRAI_LOG_WARN, tag, "%s: a peer sent a bad HELLO "
		    "(another version of mirai?); telling it to exit", who);
		return -1;
	}
	if (secret != NULL && (h->slot != slot ||
				  !mirai__secret_eq(secret, h->secret,
				      h->secret_len))) {
		return 1;
	}
	return 0;
}
