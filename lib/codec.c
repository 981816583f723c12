/*
 * codec.c: encoding and decoding of the wire format (see codec.h).
 *
 * Pure functions over byte buffers: no I/O, no global state; only the
 * growable mirai__wbuf allocates.
 * Encoders trust their caller (sizes come from the matching *_size
 * function); decoders trust nothing.
 */
#include "codec.h"

#include <stdlib.h>
#include <string.h>

#include "mirai.h"

#define HELLO_FIXED 32

void
mirai__hdr_encode(uint8_t *dst, const mirai__msghdr *h)
{
	mirai__put32(dst, MIRAI__MAGIC);
	dst[4] = MIRAI__PROTO;
	dst[5] = h->flags;
	mirai__put16(dst + 6, h->nframes);
	mirai__put32(dst + 8, h->seq);
	mirai__put32(dst + 12, h->ack);
}

int
mirai__msg_open(mirai__reader *r, const void *buf, size_t len,
    mirai__msghdr *h)
{
	const uint8_t *p = buf;

	if (p == NULL || len < MIRAI__HDR_LEN ||
	    mirai__get32(p) != MIRAI__MAGIC) {
		return MIRAI_EPROTO;
	}
	if (p[4] != MIRAI__PROTO) {
		return MIRAI_EVERSION;
	}
	h->version = p[4];
	h->flags   = p[5];
	h->nframes = mirai__get16(p + 6);
	h->seq     = mirai__get32(p + 8);
	h->ack     = mirai__get32(p + 12);
	r->p         = p + MIRAI__HDR_LEN;
	r->left      = len - MIRAI__HDR_LEN;
	r->remaining = h->nframes;
	return 0;
}

int
mirai__msg_next(mirai__reader *r, mirai__frame *f)
{
	uint32_t len;

	if (r->remaining == 0) {
		/* Bytes after the announced frames mean a garbled message. */
		return r->left == 0 ? 0 : MIRAI_EPROTO;
	}
	if (r->left < MIRAI__FRAME_HDR_LEN) {
		return MIRAI_EPROTO;
	}
	len = mirai__get32(r->p + 4);
	if (len > r->left - MIRAI__FRAME_HDR_LEN) {
		return MIRAI_EPROTO;
	}
	f->type  = r->p[0];
	f->flags = r->p[1];
	f->body  = r->p + MIRAI__FRAME_HDR_LEN;
	f->len   = len;
	r->p += MIRAI__FRAME_HDR_LEN + len;
	r->left -= MIRAI__FRAME_HDR_LEN + (size_t) len;
	r->remaining--;
	if (f->type == 0 || f->type > MIRAI__F_MAX) {
		return MIRAI_EPROTO;
	}
	return 1;
}

void
mirai__frame_hdr_encode(uint8_t *dst, uint8_t type, uint32_t len)
{
	dst[0] = type;
	dst[1] = 0;
	mirai__put16(dst + 2, 0);
	mirai__put32(dst + 4, len);
}

size_t
mirai__task_size(size_t fn_len, size_t len)
{
	return MIRAI__FRAME_HDR_LEN + MIRAI__TASK_FIXED + fn_len + len;
}

void
mirai__task_encode(uint8_t *dst, const mirai__task_view *t)
{
	size_t body = MIRAI__TASK_FIXED + t->fn_len + t->len;

	mirai__frame_hdr_encode(dst, MIRAI__F_TASK, (uint32_t) body);
	dst += MIRAI__FRAME_HDR_LEN;
	mirai__put64(dst, t->id);
	mirai__put32(dst + 8, t->timeout_ms);
	mirai__put32(dst + 12, t->flags);
	mirai__put64(dst + 16, t->hook);
	mirai__put16(dst + 24, t->fn_len);
	memcpy(dst + MIRAI__TASK_FIXED, t->fn, t->fn_len);
	/* data may be NULL when the caller fills the payload itself. */
	if (t->data != NULL && t->len > 0) {
		memcpy(dst + MIRAI__TASK_FIXED + t->fn_len, t->data, t->len);
	}
}

int
mirai__task_decode(const mirai__frame *f, mirai__task_view *t)
{
	const uint8_t *b = f->body;

	if (f->type != MIRAI__F_TASK || f->len < MIRAI__TASK_FIXED) {
		return MIRAI_EPROTO;
	}
	t->id         = mirai__get64(b);
	t->timeout_ms = mirai__get32(b + 8);
	t->flags      = mirai__get32(b + 12);
	t->hook       = mirai__get64(b + 16);
	t->fn_len     = mirai__get16(b + 24);
	if (t->fn_len == 0 || t->fn_len > f->len - MIRAI__TASK_FIXED) {
		return MIRAI_EPROTO;
	}
	t->fn = (const char *) b + MIRAI__TASK_FIXED;
	if (memchr(t->fn, '\0', t->fn_len) != NULL) {
		return MIRAI_EPROTO;
	}
	t->data = b + MIRAI__TASK_FIXED + t->fn_len;
	t->len  = f->len - MIRAI__TASK_FIXED - t->fn_len;
	return 0;
}

void
mirai__task_set_flags(uint8_t *frame, uint32_t flags)
{
	mirai__put32(frame + MIRAI__FRAME_HDR_LEN + 12, flags);
}

size_t
mirai__bounce_size(size_t fn_len, size_t len)
{
	return MIRAI__FRAME_HDR_LEN + mirai__task_size(fn_len, len);
}

void
mirai__bounce_encode(uint8_t *dst, const mirai__task_view *t)
{
	size_t inner = mirai__task_size(t->fn_len, t->len);

	mirai__frame_hdr_encode(dst, MIRAI__F_BOUNCE, (uint32_t) inner);
	mirai__task_encode(dst + MIRAI__FRAME_HDR_LEN, t);
}

int
mirai__bounce_decode(const mirai__frame *f, mirai__frame *inner)
{
	if (f->type != MIRAI__F_BOUNCE || f->len < MIRAI__FRAME_HDR_LEN ||
	    f->body[0] != MIRAI__F_TASK ||
	    mirai__get32(f->body + 4) != f->len - MIRAI__FRAME_HDR_LEN) {
		return MIRAI_EPROTO;
	}
	inner->type  = MIRAI__F_TASK;
	inner->flags = f->body[1];
	inner->body  = f->body + MIRAI__FRAME_HDR_LEN;
	inner->len   = f->len - MIRAI__FRAME_HDR_LEN;
	return 0;
}

size_t
mirai__result_size(size_t len)
{
	return MIRAI__FRAME_HDR_LEN + MIRAI__RESULT_FIXED + len;
}

void
mirai__result_encode(uint8_t *dst, const mirai__result_view *r)
{
	mirai__frame_hdr_encode(
	    dst, MIRAI__F_RESULT, (uint32_t) (MIRAI__RESULT_FIXED + r->len));
	dst += MIRAI__FRAME_HDR_LEN;
	mirai__put64(dst, r->id);
	mirai__put32(dst + 8, r->status);
	mirai__put32(dst + 12, r->flags);
	mirai__put64(dst + 16, r->hook);
	if (r->data != NULL && r->len > 0) {
		memcpy(dst + MIRAI__RESULT_FIXED, r->data, r->len);
	}
}

int
mirai__result_decode(const mirai__frame *f, mirai__result_view *r)
{
	const uint8_t *b = f->body;

	if (f->type != MIRAI__F_RESULT || f->len < MIRAI__RESULT_FIXED) {
		return MIRAI_EPROTO;
	}
	r->id     = mirai__get64(b);
	r->status = mirai__get32(b + 8);
	r->flags  = mirai__get32(b + 12);
	r->hook   = mirai__get64(b + 16);
	r->data   = b + MIRAI__RESULT_FIXED;
	r->len    = f->len - MIRAI__RESULT_FIXED;
	return 0;
}

static uint8_t *
put_str(uint8_t *p, const char *s, uint16_t len)
{
	mirai__put16(p, len);
	if (len > 0) {
		memcpy(p + 2, s, len);
	}
	return p + 2 + len;
}

/* Reads one string; returns NULL when it does not fit in [p, end). */
static const uint8_t *
get_str(const uint8_t *p, const uint8_t *end, const char **s, uint16_t *len)
{
	if (end - p < 2) {
		return NULL;
	}
	*len = mirai__get16(p);
	if (end - (p + 2) < *len) {
		return NULL;
	}
	*s = (const char *) p + 2;
	return p + 2 + *len;
}

size_t
mirai__hello_size(const mirai__hello_view *h)
{
	return MIRAI__FRAME_HDR_LEN + HELLO_FIXED + 8 + h->host_len +
	    h->version_len + h->binding_len + h->hook_name_len;
}

void
mirai__hello_encode(uint8_t *dst, const mirai__hello_view *h)
{
	uint8_t *p;

	mirai__frame_hdr_encode(dst, MIRAI__F_HELLO,
	    (uint32_t) (mirai__hello_size(h) - MIRAI__FRAME_HDR_LEN));
	p = dst + MIRAI__FRAME_HDR_LEN;
	mirai__put32(p, h->proto);
	mirai__put32(p + 4, h->kind);
	mirai__put32(p + 8, h->pid);
	mirai__put32(p + 12, h->flags);
	mirai__put64(p + 16, h->hook);
	mirai__put64(p + 24, h->max_tasks);
	p += HELLO_FIXED;
	p = put_str(p, h->host, h->host_len);
	p = put_str(p, h->version, h->version_len);
	p = put_str(p, h->binding, h->binding_len);
	put_str(p, h->hook_name, h->hook_name_len);
}

int
mirai__hello_decode(const mirai__frame *f, mirai__hello_view *h)
{
	const uint8_t *p   = f->body;
	const uint8_t *end = f->body + f->len;

	if (f->type != MIRAI__F_HELLO || f->len < HELLO_FIXED) {
		return MIRAI_EPROTO;
	}
	h->proto     = mirai__get32(p);
	h->kind      = mirai__get32(p + 4);
	h->pid       = mirai__get32(p + 8);
	h->flags     = mirai__get32(p + 12);
	h->hook      = mirai__get64(p + 16);
	h->max_tasks = mirai__get64(p + 24);
	p += HELLO_FIXED;
	if ((p = get_str(p, end, &h->host, &h->host_len)) == NULL ||
	    (p = get_str(p, end, &h->version, &h->version_len)) == NULL ||
	    (p = get_str(p, end, &h->binding, &h->binding_len)) == NULL ||
	    (p = get_str(p, end, &h->hook_name, &h->hook_name_len)) == NULL) {
		return MIRAI_EPROTO;
	}
	/* Newer peers may append fields; older fields are all there. */
	return 0;
}

void
mirai__u64_frame_encode(uint8_t *dst, uint8_t type, uint64_t v)
{
	mirai__frame_hdr_encode(dst, type, 8);
	mirai__put64(dst + MIRAI__FRAME_HDR_LEN, v);
}

void
mirai__u32_frame_encode(uint8_t *dst, uint8_t type, uint32_t v)
{
	mirai__frame_hdr_encode(dst, type, 4);
	mirai__put32(dst + MIRAI__FRAME_HDR_LEN, v);
}

int
mirai__u64_frame_decode(const mirai__frame *f, uint64_t *v)
{
	if (f->len != 8) {
		return MIRAI_EPROTO;
	}
	*v = mirai__get64(f->body);
	return 0;
}

int
mirai__u32_frame_decode(const mirai__frame *f, uint32_t *v)
{
	if (f->len != 4) {
		return MIRAI_EPROTO;
	}
	*v = mirai__get32(f->body);
	return 0;
}

void
mirai__req_encode(uint8_t *dst, const mirai__req_view *r)
{
	mirai__frame_hdr_encode(dst, MIRAI__F_REQ, 20);
	dst += MIRAI__FRAME_HDR_LEN;
	mirai__put64(dst, r->req);
	mirai__put32(dst + 8, r->op);
	mirai__put32(dst + 12, r->a);
	mirai__put32(dst + 16, r->b);
}

int
mirai__req_decode(const mirai__frame *f, mirai__req_view *r)
{
	if (f->type != MIRAI__F_REQ || f->len != 20) {
		return MIRAI_EPROTO;
	}
	r->req = mirai__get64(f->body);
	r->op  = mirai__get32(f->body + 8);
	r->a   = mirai__get32(f->body + 12);
	r->b   = mirai__get32(f->body + 16);
	return 0;
}

size_t
mirai__rep_size(size_t len)
{
	return MIRAI__FRAME_HDR_LEN + MIRAI__REP_FIXED + len;
}

void
mirai__rep_encode(uint8_t *dst, const mirai__rep_view *r)
{
	mirai__frame_hdr_encode(
	    dst, MIRAI__F_REP, (uint32_t) (MIRAI__REP_FIXED + r->len));
	dst += MIRAI__FRAME_HDR_LEN;
	mirai__put64(dst, r->req);
	mirai__put32(dst + 8, r->status);
	if (r->len > 0) {
		memcpy(dst + MIRAI__REP_FIXED, r->data, r->len);
	}
}

int
mirai__rep_decode(const mirai__frame *f, mirai__rep_view *r)
{
	if (f->type != MIRAI__F_REP || f->len < MIRAI__REP_FIXED) {
		return MIRAI_EPROTO;
	}
	r->req    = mirai__get64(f->body);
	r->status = mirai__get32(f->body + 8);
	r->data   = f->body + MIRAI__REP_FIXED;
	r->len    = f->len - MIRAI__REP_FIXED;
	return 0;
}

static uint8_t *
w_room(mirai__wbuf *w, size_t n)
{
	if (w->failed) {
		return NULL;
	}
	if (w->len + n > w->cap) {
		size_t cap = w->cap == 0 ? 256 : w->cap;
		uint8_t *p;
		while (cap < w->len + n) {
			cap *= 2;
		}
		if ((p = realloc(w->p, cap)) == NULL) {
			w->failed = 1;
			return NULL;
		}
		w->p   = p;
		w->cap = cap;
	}
	w->len += n;
	return w->p + w->len - n;
}

void
mirai__w_u8(mirai__wbuf *w, uint8_t v)
{
	uint8_t *p = w_room(w, 1);

	if (p != NULL) {
		*p = v;
	}
}

void
mirai__w_u32(mirai__wbuf *w, uint32_t v)
{
	uint8_t *p = w_room(w, 4);

	if (p != NULL) {
		mirai__put32(p, v);
	}
}

void
mirai__w_u64(mirai__wbuf *w, uint64_t v)
{
	uint8_t *p = w_room(w, 8);

	if (p != NULL) {
		mirai__put64(p, v);
	}
}

void
mirai__w_str(mirai__wbuf *w, const char *s)
{
	size_t n   = s != NULL ? strlen(s) : 0;
	uint8_t *p;

	if (n > 0xffff) {
		n = 0xffff;
	}
	if ((p = w_room(w, 2 + n)) != NULL) {
		mirai__put16(p, (uint16_t) n);
		if (n > 0) {
			memcpy(p + 2, s, n);
		}
	}
}

static const uint8_t *
r_take(mirai__rbuf *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->failed || (size_t) (r->end - r->p) < n) {
		r->failed = 1;
		return NULL;
	}
	r->p += n;
	return p;
}

uint8_t
mirai__r_u8(mirai__rbuf *r)
{
	const uint8_t *p = r_take(r, 1);

	return p != NULL ? *p : 0;
}

uint32_t
mirai__r_u32(mirai__rbuf *r)
{
	const uint8_t *p = r_take(r, 4);

	return p != NULL ? mirai__get32(p) : 0;
}

uint64_t
mirai__r_u64(mirai__rbuf *r)
{
	const uint8_t *p = r_take(r, 8);

	return p != NULL ? mirai__get64(p) : 0;
}

void
mirai__r_str(mirai__rbuf *r, char *buf, size_t cap)
{
	const uint8_t *p = r_take(r, 2);
	uint16_t n       = p != NULL ? mirai__get16(p) : 0;
	size_t keep;

	buf[0] = '\0';
	if (p == NULL || (p = r_take(r, n)) == NULL) {
		return;
	}
	keep = n < cap - 1 ? n : cap - 1;
	memcpy(buf, p, keep);
	buf[keep] = '\0';
}

/* A string view: a 16-bit length and its bytes. */
static void
r_view(mirai__rbuf *r, const char **s, uint16_t *len)
{
	const uint8_t *p = r_take(r, 2);
	uint16_t n       = p != NULL ? mirai__get16(p) : 0;

	*s   = "";
	*len = 0;
	if (p != NULL && (p = r_take(r, n)) != NULL) {
		*s   = (const char *) p;
		*len = n;
	}
}

static void
w_view(mirai__wbuf *w, const char *s, uint16_t len)
{
	uint8_t *p = w_room(w, 2 + (size_t) len);

	if (p != NULL) {
		mirai__put16(p, len);
		if (len > 0) {
			memcpy(p + 2, s, len);
		}
	}
}

void
mirai__status_head_encode(mirai__wbuf *w, const mirai__status_head *h)
{
	mirai__w_u64(w, h->queued);
	mirai__w_u64(w, h->running);
	mirai__w_u64(w, h->completed);
	mirai__w_u64(w, h->retried);
	mirai__w_u32(w, h->nrows);
}

void
mirai__status_row_encode(mirai__wbuf *w, const mirai__status_row *r)
{
	w_view(w, r->url, r->url_len);
	mirai__w_u8(w, r->online);
	mirai__w_u64(w, r->instance);
	mirai__w_u64(w, r->assigned);
	mirai__w_u64(w, r->complete);
	mirai__w_u64(w, r->retries);
	mirai__w_u32(w, r->pid);
	w_view(w, r->host, r->host_len);
	w_view(w, r->binding, r->binding_len);
}

int
mirai__status_decode(const uint8_t *data, size_t len, mirai__status_head *h,
    mirai__status_row **rows)
{
	mirai__rbuf rb = {data, data + len, 0};
	mirai__status_row *v = NULL;

	*rows        = NULL;
	h->queued    = mirai__r_u64(&rb);
	h->running   = mirai__r_u64(&rb);
	h->completed = mirai__r_u64(&rb);
	h->retried   = mirai__r_u64(&rb);
	h->nrows     = mirai__r_u32(&rb);
	if (rb.failed || h->nrows > len / MIRAI__STATUS_ROW_MIN) {
		return MIRAI_EPROTO;
	}
	if (h->nrows > 0 && (v = calloc(h->nrows, sizeof *v)) == NULL) {
		return MIRAI_ENOMEM;
	}
	for (uint32_t i = 0; i < h->nrows && !rb.failed; i++) {
		r_view(&rb, &v[i].url, &v[i].url_len);
		v[i].online   = mirai__r_u8(&rb);
		v[i].instance = mirai__r_u64(&rb);
		v[i].assigned = mirai__r_u64(&rb);
		v[i].complete = mirai__r_u64(&rb);
		v[i].retries  = mirai__r_u64(&rb);
		v[i].pid      = mirai__r_u32(&rb);
		r_view(&rb, &v[i].host, &v[i].host_len);
		r_view(&rb, &v[i].binding, &v[i].binding_len);
	}
	if (rb.failed || rb.p != rb.end) {
		free(v);
		return MIRAI_EPROTO;
	}
	*rows = v;
	return 0;
}

uint64_t
mirai__hash64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s != '\0'; s++) {
		h ^= (uint8_t) *s;
		h *= 0x100000001b3ull;
	}
	return h == 0 ? 1 : h;
}

size_t
mirai__exec_size(size_t out_len, size_t err_len)
{
	return 12 + out_len + err_len;
}

void
mirai__exec_encode(uint8_t *dst, int status, const void *out, size_t out_len,
    const void *err, size_t err_len)
{
	mirai__put32(dst, (uint32_t) status);
	mirai__put32(dst + 4, (uint32_t) out_len);
	if (out_len > 0) {
		memcpy(dst + 8, out, out_len);
	}
	mirai__put32(dst + 8 + out_len, (uint32_t) err_len);
	if (err_len > 0) {
		memcpy(dst + 12 + out_len, err, err_len);
	}
}

int
mirai_exec_parse(const void *data, size_t len, mirai_exec_result *res)
{
	const uint8_t *p = data;
	uint32_t n_out, n_err;

	if (p == NULL || res == NULL || len < 12) {
		return MIRAI_EINVAL;
	}
	n_out = mirai__get32(p + 4);
	if (n_out > len - 12) {
		return MIRAI_EPROTO;
	}
	n_err = mirai__get32(p + 8 + n_out);
	if (n_err != len - 12 - n_out) {
		return MIRAI_EPROTO;
	}
	res->status  = (int) mirai__get32(p);
	res->out     = (const char *) p + 8;
	res->out_len = n_out;
	res->err     = (const char *) p + 12 + n_out;
	res->err_len = n_err;
	return 0;
}
