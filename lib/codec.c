/*
 * codec.c: encoding and decoding of the wire format (see codec.h).
 *
 * Pure functions over byte buffers: no I/O, no global state; only the
 * growable mirai__wbuf allocates.
 * Encoders trust their caller (sizes come from the matching *_size
 * function); decoders trust nothing.
 */
#include "codec.h"

#include <stdio.h>
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
	    h->version_len + h->binding_len + h->hook_name_len + 4 + 2 +
	    h->secret_len;
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
	p = put_str(p, h->hook_name, h->hook_name_len);
	mirai__put32(p, h->slot);
	put_str(p + 4, h->secret, h->secret_len);
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
	    (p = get_str(p, end, &h->hook_name, &h->hook_name_len)) == NULL ||
	    end - p < 4 ||
	    get_str(p + 4, end, &h->secret, &h->secret_len) == NULL) {
		return MIRAI_EPROTO;
	}
	h->slot = mirai__get32(p);
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

/* ---- the agent setup ------------------------------------------------ */

static void
agent_rec(mirai__wbuf *w, uint8_t type, const void *a, size_t alen,
    const void *b, size_t blen)
{
	uint8_t *p = w_room(w, MIRAI__AGENT_REC_HDR + alen + blen);

	if (p == NULL) {
		return;
	}
	if (alen + blen > UINT32_MAX) {
		w->failed = 1;
		return;
	}
	p[0] = type;
	mirai__put32(p + 1, (uint32_t) (alen + blen));
	if (alen > 0) {
		memcpy(p + MIRAI__AGENT_REC_HDR, a, alen);
	}
	if (blen > 0) {
		memcpy(p + MIRAI__AGENT_REC_HDR + alen, b, blen);
	}
}

void
mirai__agent_begin(mirai__wbuf *w)
{
	agent_rec(w, 'H', MIRAI__AGENT_HELLO, strlen(MIRAI__AGENT_HELLO), NULL,
	    0);
}

void
mirai__agent_node(mirai__wbuf *w, const char *node)
{
	agent_rec(w, 'N', node, node != NULL ? strlen(node) : 0, NULL, 0);
}

void
mirai__agent_url(mirai__wbuf *w, const char *url, int bind_index)
{
	uint8_t b[4];

	mirai__put32(b, (uint32_t) (bind_index < 0 ? -1 : bind_index));
	agent_rec(w, 'U', b, 4, url, strlen(url));
}

void
mirai__agent_ca(mirai__wbuf *w, const char *pem)
{
	agent_rec(w, 'C', pem, strlen(pem), NULL, 0);
}

void
mirai__agent_env(mirai__wbuf *w, const char *var_value)
{
	agent_rec(w, 'E', var_value, strlen(var_value), NULL, 0);
}

void
mirai__agent_end(mirai__wbuf *w)
{
	agent_rec(w, 'Z', NULL, 0, NULL, 0);
}

int
mirai__agent_env_ok(const char *s)
{
	const char *eq = s != NULL ? strchr(s, '=') : NULL;

	return eq != NULL && eq != s &&
		   strlen(s) <= MIRAI_AGENT_MAX_RECORD ? 0 : -1;
}

int
mirai__agent_node_match(const char *a, const char *b, size_t blen)
{
	size_t alen = strlen(a), as = strcspn(a, "."), bs;

	for (bs = 0; bs < blen && b[bs] != '.'; bs++) {
	}
	if (alen == blen && memcmp(a, b, blen) == 0) {
		return 1;
	}
	/* One of them is the other's short form: "n1" and "n1.cluster". */
	return (as == alen && as == bs && memcmp(a, b, as) == 0) ||
	    (bs == blen && bs == as && memcmp(a, b, bs) == 0);
}

void
mirai__agent_dec_init(mirai__agent_dec *d, const char *node)
{
	memset(d, 0, sizeof *d);
	d->node = node;
	/* Records before any 'N' are for every agent. */
	d->mine = 1;
}

size_t
mirai__agent_want(const mirai__agent_dec *d)
{
	switch (d->state) {
	case 0:
		return MIRAI__AGENT_REC_HDR;
	case 1:
		return d->len;
	default:
		return 0;
	}
}

static int
agent_bad(mirai__agent_dec *d, mirai_errmsg *err, int rv, const char *why)
{
	d->state = -1;
	if (err != NULL) {
		snprintf(err->text, sizeof err->text, "agent setup: %s", why);
	}
	return rv;
}

/* A copy of n bytes as a C string. */
static char *
agent_str(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s != NULL) {
		if (n > 0) {
			memcpy(s, p, n);
		}
		s[n] = '\0';
	}
	return s;
}

static int
agent_push(char ***v, size_t n, char *s)
{
	char **nv;

	if (s == NULL || (nv = realloc(*v, (n + 1) * sizeof *nv)) == NULL) {
		free(s);
		return -1;
	}
	nv[n] = s;
	*v    = nv;
	return 0;
}

static int
agent_body(mirai__agent_dec *d, const uint8_t *p, size_t n,
    mirai_errmsg *err)
{
	mirai_agent_setup *s = d->s;

	/* Names, URLs and environment are C strings: a NUL would cut one
	 * short without a word (a 'U' record's string follows its index). */
	size_t from = d->type == 'U' ? 4 : 0;

	if (n > from && memchr(p + from, '\0', n - from) != NULL) {
		return agent_bad(d, err, MIRAI_EPROTO, "a record holds a NUL");
	}
	switch (d->type) {
	case 'N':
		d->mine = n == 0 || (d->node != NULL &&
		    mirai__agent_node_match(d->node, (const char *) p, n));
		return 0;
	case 'U': {
		int bind, *nb;
		if (n < 5 || (bind = (int) mirai__get32(p)) < -1) {
			return agent_bad(d, err, MIRAI_EPROTO, "bad url record");
		}
		if (++d->urls_seen > 100000) {
			return agent_bad(d, err, MIRAI_EPROTO, "too many urls");
		}
		if (!d->mine) {
			return 0;
		}
		if (s->nurls == MIRAI_AGENT_MAX_URLS) {
			return agent_bad(d, err, MIRAI_EPROTO,
			    "more urls for one agent than it starts");
		}
		/* bind_index first: a failed push then leaves only room. */
		if ((nb = realloc(s->bind_index,
			 (s->nurls + 1) * sizeof *nb)) == NULL) {
			return agent_bad(d, err, MIRAI_ENOMEM, "out of memory");
		}
		s->bind_index = nb;
		if (agent_push(&s->urls, s->nurls, agent_str(p + 4, n - 4)) != 0) {
			return agent_bad(d, err, MIRAI_ENOMEM, "out of memory");
		}
		s->bind_index[s->nurls] = bind;
		s->nurls++;
		return 0;
	}
	case 'C':
		if (s->tls_ca != NULL || n == 0) {
			return agent_bad(d, err, MIRAI_EPROTO,
			    "a second or empty CA record");
		}
		if ((s->tls_ca = agent_str(p, n)) == NULL) {
			return agent_bad(d, err, MIRAI_ENOMEM, "out of memory");
		}
		return 0;
	case 'E':
		if (n == 0 || p[0] == '=' || memchr(p, '=', n) == NULL) {
			return agent_bad(d, err, MIRAI_EPROTO,
			    "an env record is not VAR=VALUE");
		}
		if (s->nenv == MIRAI_AGENT_MAX_ENV) {
			return agent_bad(d, err, MIRAI_EPROTO,
			    "too many env records");
		}
		if (agent_push(&s->env, s->nenv, agent_str(p, n)) != 0) {
			return agent_bad(d, err, MIRAI_ENOMEM, "out of memory");
		}
		s->nenv++;
		return 0;
	default:
		return agent_bad(d, err, MIRAI_EPROTO, "unknown record");
	}
}

int
mirai__agent_feed(mirai__agent_dec *d, const uint8_t *p, size_t n,
    mirai_errmsg *err)
{
	if (d->state < 0 || d->state > 1 || n != mirai__agent_want(d) ||
	    (n > 0 && p == NULL)) {
		return agent_bad(d, err, MIRAI_EINVAL, "misused decoder");
	}
	if (d->s == NULL && (d->s = calloc(1, sizeof *d->s)) == NULL) {
		return agent_bad(d, err, MIRAI_ENOMEM, "out of memory");
	}
	d->total += n;
	if (d->total > MIRAI_AGENT_MAX_TOTAL) {
		return agent_bad(d, err, MIRAI_EPROTO, "longer than its limit");
	}
	if (d->state == 0) {
		d->type = p[0];
		d->len  = mirai__get32(p + 1);
		if (d->len > MIRAI_AGENT_MAX_RECORD) {
			return agent_bad(d, err, MIRAI_EPROTO,
			    "a record is longer than its limit");
		}
		if (!d->hello && d->type != 'H') {
			return agent_bad(d, err, MIRAI_EPROTO,
			    "not a mirai agent setup");
		}
		if (d->hello && d->type == 'H') {
			return agent_bad(d, err, MIRAI_EPROTO, "a second hello");
		}
		if (d->type == 'Z') {
			if (d->len != 0) {
				return agent_bad(d, err, MIRAI_EPROTO,
				    "bad end record");
			}
			d->state = 2;
			return 1;
		}
		d->state = 1;
		return 0;
	}
	d->state = 0;
	if (d->type == 'H') {
		if (n != strlen(MIRAI__AGENT_HELLO) ||
		    memcmp(p, MIRAI__AGENT_HELLO, n) != 0) {
			return agent_bad(d, err, MIRAI_EPROTO,
			    "not a mirai agent setup of this version");
		}
		d->hello = 1;
		return 0;
	}
	return agent_body(d, p, n, err);
}

mirai_agent_setup *
mirai__agent_dec_take(mirai__agent_dec *d)
{
	mirai_agent_setup *s = d->state == 2 ? d->s : NULL;

	if (s != NULL) {
		d->s = NULL;
	}
	return s;
}

void
mirai__agent_dec_fini(mirai__agent_dec *d)
{
	mirai_agent_setup_free(d->s);
	d->s = NULL;
}
