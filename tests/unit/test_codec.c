/*
 * test_codec.c: unit tests of the wire format (lib/codec.c) and of
 * mirai_exec_parse().
 *
 * Every encoder writes into, and every decoder reads from, a heap block of
 * exactly the size in question (see exact()), so that under ASan or
 * valgrind one byte too far is an error and not a silent pass.  Most tests
 * are tables: one row per case with the outcome it must have.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/codec.h"
#include "mirai.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIB ((size_t) 1024 * 1024)
#define SECRET "0123456789abcdef0123456789abcdef"

/* ---- helpers ---------------------------------------------------------- */

/* A copy of p[0..n) in a block of exactly n bytes (1 when n is 0, as
 * malloc(0) may return NULL). */
static uint8_t *
exact(const void *p, size_t n)
{
	uint8_t *b = malloc(n > 0 ? n : 1);

	assert_non_null(b);
	if (n > 0) {
		memcpy(b, p, n);
	}
	return b;
}

static uint8_t *
xmalloc(size_t n)
{
	uint8_t *b = malloc(n > 0 ? n : 1);

	assert_non_null(b);
	return b;
}

/* A pattern that differs with seed and position, so that a shifted or
 * swapped byte shows. */
static void
fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		p[i] = (uint8_t) (seed * 131u + i * 7u + (i >> 8));
	}
}

/* A function name of n bytes without NUL bytes. */
static char *
make_name(size_t n)
{
	char *s = (char *) xmalloc(n);

	for (size_t i = 0; i < n; i++) {
		s[i] = (char) ('a' + i % 26);
	}
	return s;
}

/* Whether p[0..n) lies in buf[0..len): a decoder may only point into the
 * message it was given. */
static int
inside(const void *p, size_t n, const uint8_t *buf, size_t len)
{
	const uint8_t *b = p;

	return b >= buf && b <= buf + len && n <= (size_t) (buf + len - b);
}

/* Frames encoded one by one, each into a block of exactly its size, then
 * joined behind a header. */
typedef struct msgbuf {
	uint8_t *p;
	size_t len;
	uint16_t nframes;
	size_t ends[16]; /* where each frame ends in the message */
} msgbuf;

static void
mb_init(msgbuf *m)
{
	m->p       = xmalloc(MIRAI__HDR_LEN);
	m->len     = MIRAI__HDR_LEN;
	m->nframes = 0;
}

/* Append frame[0..n) and free it. */
static void
mb_put(msgbuf *m, uint8_t *frame, size_t n)
{
	m->p = realloc(m->p, m->len + n);
	assert_non_null(m->p);
	memcpy(m->p + m->len, frame, n);
	m->len += n;
	if (m->nframes < ARRAY_LEN(m->ends)) {
		m->ends[m->nframes] = m->len;
	}
	m->nframes++;
	free(frame);
}

/* Write the header (nframes as counted unless h says otherwise) and return
 * the message in a block of exactly its size; m is spent. */
static uint8_t *
mb_finish(msgbuf *m, const mirai__msghdr *h, size_t *len)
{
	mirai__msghdr hh = {0};
	uint8_t *out;

	if (h != NULL) {
		hh = *h;
	} else {
		hh.nframes = m->nframes;
	}
	mirai__hdr_encode(m->p, &hh);
	out  = exact(m->p, m->len);
	*len = m->len;
	free(m->p);
	m->p = NULL;
	return out;
}

static uint8_t *
enc_task(const mirai__task_view *t, size_t *n)
{
	uint8_t *b;

	*n = mirai__task_size(t->fn_len, t->len);
	b  = xmalloc(*n);
	mirai__task_encode(b, t);
	return b;
}

static uint8_t *
enc_result(const mirai__result_view *r, size_t *n)
{
	uint8_t *b;

	*n = mirai__result_size(r->len);
	b  = xmalloc(*n);
	mirai__result_encode(b, r);
	return b;
}

static uint8_t *
enc_hello(const mirai__hello_view *h, size_t *n)
{
	uint8_t *b;

	*n = mirai__hello_size(h);
	b  = xmalloc(*n);
	mirai__hello_encode(b, h);
	return b;
}

static uint8_t *
enc_u64(uint8_t type, uint64_t v, size_t *n)
{
	uint8_t *b = xmalloc(MIRAI__U64_FRAME_LEN);

	mirai__u64_frame_encode(b, type, v);
	*n = MIRAI__U64_FRAME_LEN;
	return b;
}

static uint8_t *
enc_u32(uint8_t type, uint32_t v, size_t *n)
{
	uint8_t *b = xmalloc(MIRAI__U32_FRAME_LEN);

	mirai__u32_frame_encode(b, type, v);
	*n = MIRAI__U32_FRAME_LEN;
	return b;
}

static uint8_t *
enc_empty(uint8_t type, size_t *n)
{
	uint8_t *b = xmalloc(MIRAI__FRAME_HDR_LEN);

	mirai__frame_hdr_encode(b, type, 0);
	*n = MIRAI__FRAME_HDR_LEN;
	return b;
}

/* A BOUNCE frame as the server builds it: a frame header around a whole
 * TASK frame. */
static uint8_t *
enc_bounce(const mirai__task_view *t, size_t *n)
{
	size_t inner = mirai__task_size(t->fn_len, t->len);
	uint8_t *b   = xmalloc(MIRAI__FRAME_HDR_LEN + inner);

	mirai__frame_hdr_encode(b, MIRAI__F_BOUNCE, (uint32_t) inner);
	mirai__task_encode(b + MIRAI__FRAME_HDR_LEN, t);
	*n = MIRAI__FRAME_HDR_LEN + inner;
	return b;
}

/* The TASK inside a BOUNCE frame, read the way the client reads it. */
static mirai__frame
bounce_inner(const mirai__frame *f)
{
	mirai__frame in = {.type = MIRAI__F_TASK};

	assert_true(f->len >= MIRAI__FRAME_HDR_LEN);
	in.body = f->body + MIRAI__FRAME_HDR_LEN;
	in.len  = f->len - MIRAI__FRAME_HDR_LEN;
	return in;
}

/* Wrap one encoded frame (freed) in a message, open it and read the frame,
 * checking that nothing follows.  Returns the message; f points into it. */
static uint8_t *
one_frame(uint8_t *frame, size_t n, mirai__frame *f, size_t *msg_len)
{
	mirai__reader r;
	mirai__msghdr h;
	mirai__frame end;
	uint8_t *msg;
	msgbuf m;
	size_t len;

	mb_init(&m);
	mb_put(&m, frame, n);
	msg = mb_finish(&m, NULL, &len);
	assert_int_equal(mirai__msg_open(&r, msg, len, &h), 0);
	assert_int_equal(h.nframes, 1);
	assert_int_equal(mirai__msg_next(&r, f), 1);
	assert_int_equal(mirai__msg_next(&r, &end), 0);
	if (msg_len != NULL) {
		*msg_len = len;
	}
	return msg;
}

/* ---- message header --------------------------------------------------- */

/* Pins the byte layout: a round trip alone would not see both sides
 * swapping bytes the same wrong way. */
static void
test_hdr_golden(void **state)
{
	static const uint8_t want[MIRAI__HDR_LEN] = {'M', 'R', 'A', 'I', 2,
	    0x01, 0x03, 0x02, 0x07, 0x06, 0x05, 0x04, 0x0b, 0x0a, 0x09, 0x08};
	/* version is not taken from h: a sender speaks only its own. */
	mirai__msghdr h = {.version = 99, .flags = MIRAI__M_ACKREQ,
	    .nframes = 0x0203, .seq = 0x04050607, .ack = 0x08090a0b};
	uint8_t *b = xmalloc(MIRAI__HDR_LEN);

	mirai__hdr_encode(b, &h);
	assert_memory_equal(b, want, sizeof want);
	assert_int_equal(mirai__get32(b), MIRAI__MAGIC);
	free(b);
}

static void
test_hdr_roundtrip(void **state)
{
	static const mirai__msghdr rows[] = {
		{.flags = 0, .nframes = 0, .seq = 0, .ack = 0},
		{.flags = MIRAI__M_ACKREQ, .nframes = 1, .seq = 1, .ack = 0},
		{.flags = 0xff, .nframes = 0xffff, .seq = UINT32_MAX,
		    .ack = UINT32_MAX},
		{.flags = 0x80, .nframes = 0x8000, .seq = 0x80000000u,
		    .ack = 0x7fffffffu},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		uint8_t *b = xmalloc(MIRAI__HDR_LEN);
		mirai__reader r;
		mirai__msghdr h;

		mirai__hdr_encode(b, &rows[i]);
		assert_int_equal(mirai__msg_open(&r, b, MIRAI__HDR_LEN, &h), 0);
		assert_int_equal(h.version, MIRAI__PROTO);
		assert_int_equal(h.flags, rows[i].flags);
		assert_int_equal(h.nframes, rows[i].nframes);
		assert_int_equal(h.seq, rows[i].seq);
		assert_int_equal(h.ack, rows[i].ack);
		assert_int_equal(r.left, 0);
		assert_int_equal(r.remaining, rows[i].nframes);
		assert_ptr_equal(r.p, b + MIRAI__HDR_LEN);
		free(b);
	}
}

static void
test_msg_open_rejects(void **state)
{
	static const struct {
		const char *name;
		size_t len;       /* bytes of the header passed */
		size_t off;       /* where to patch */
		size_t npatch;
		uint8_t patch[4];
		int want;
	} rows[] = {
		{"no bytes", 0, 0, 0, {0}, MIRAI_EPROTO},
		{"1 byte", 1, 0, 0, {0}, MIRAI_EPROTO},
		{"magic only", 4, 0, 0, {0}, MIRAI_EPROTO},
		{"15 bytes", 15, 0, 0, {0}, MIRAI_EPROTO},
		{"15 bytes, bad version too", 15, 4, 1, {2}, MIRAI_EPROTO},
		{"magic byte 0", 16, 0, 1, {'m'}, MIRAI_EPROTO},
		{"magic byte 1", 16, 1, 1, {'r'}, MIRAI_EPROTO},
		{"magic byte 2", 16, 2, 1, {'a'}, MIRAI_EPROTO},
		{"magic byte 3", 16, 3, 1, {'i'}, MIRAI_EPROTO},
		{"magic big-endian", 16, 0, 4, {'I', 'A', 'R', 'M'},
		    MIRAI_EPROTO},
		{"magic zero", 16, 0, 4, {0, 0, 0, 0}, MIRAI_EPROTO},
		{"bad magic and version", 16, 3, 2, {0, 2}, MIRAI_EPROTO},
		{"version 0", 16, 4, 1, {0}, MIRAI_EVERSION},
		{"version 1 (before HELLO had a secret)", 16, 4, 1, {1},
		    MIRAI_EVERSION},
		{"version 3", 16, 4, 1, {3}, MIRAI_EVERSION},
		{"version 255", 16, 4, 1, {255}, MIRAI_EVERSION},
		{"all flags set", 16, 5, 1, {0xff}, 0},
		{"valid", 16, 0, 0, {0}, 0},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai__msghdr h0 = {.nframes = 0};
		uint8_t hdr[MIRAI__HDR_LEN], *b;
		mirai__reader r;
		mirai__msghdr h;

		mirai__hdr_encode(hdr, &h0);
		memcpy(hdr + rows[i].off, rows[i].patch, rows[i].npatch);
		b = exact(hdr, rows[i].len);
		if (mirai__msg_open(&r, b, rows[i].len, &h) != rows[i].want) {
			fail_msg("%s: not %d", rows[i].name, rows[i].want);
		}
		free(b);
	}
}

static void
test_msg_open_null(void **state)
{
	mirai__reader r;
	mirai__msghdr h;

	assert_int_equal(mirai__msg_open(&r, NULL, 0, &h), MIRAI_EPROTO);
	assert_int_equal(mirai__msg_open(&r, NULL, 64, &h), MIRAI_EPROTO);
}

/* ---- frames in a message ---------------------------------------------- */

/* Every type byte: 1..MIRAI__F_MAX pass, 0 and above the maximum do not. */
static void
test_msg_next_types(void **state)
{
	for (unsigned type = 0; type <= 255; type++) {
		uint8_t *frame = xmalloc(MIRAI__FRAME_HDR_LEN + 3);
		mirai__frame f;
		mirai__reader r;
		mirai__msghdr h;
		uint8_t *msg;
		size_t len;
		msgbuf m;
		int rv;

		mirai__frame_hdr_encode(frame, (uint8_t) type, 3);
		/* Flags pass through; reserved bytes are not checked. */
		frame[1] = 0x5a;
		frame[2] = 0xff;
		frame[3] = 0xff;
		memcpy(frame + MIRAI__FRAME_HDR_LEN, "abc", 3);
		mb_init(&m);
		mb_put(&m, frame, MIRAI__FRAME_HDR_LEN + 3);
		msg = mb_finish(&m, NULL, &len);
		assert_int_equal(mirai__msg_open(&r, msg, len, &h), 0);
		rv = mirai__msg_next(&r, &f);
		if (type == 0 || type > MIRAI__F_MAX) {
			if (rv != MIRAI_EPROTO) {
				fail_msg("type %u: %d, not EPROTO", type, rv);
			}
		} else {
			if (rv != 1) {
				fail_msg("type %u: %d, not 1", type, rv);
			}
			assert_int_equal(f.type, type);
			assert_int_equal(f.flags, 0x5a);
			assert_int_equal(f.len, 3);
			assert_ptr_equal(f.body, msg + MIRAI__HDR_LEN +
			    MIRAI__FRAME_HDR_LEN);
			assert_int_equal(mirai__msg_next(&r, &f), 0);
		}
		free(msg);
	}
}

/* Three real frames under every sort of announced count. */
static void
test_msg_next_nframes(void **state)
{
	static const struct {
		uint16_t announced;
		int got;  /* frames returned */
		int last; /* what follows them */
	} rows[] = {
		{0, 0, MIRAI_EPROTO},
		{1, 1, MIRAI_EPROTO},
		{2, 2, MIRAI_EPROTO},
		{3, 3, 0},
		{4, 3, MIRAI_EPROTO},
		{5, 3, MIRAI_EPROTO},
		{0xffff, 3, MIRAI_EPROTO},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai__msghdr h = {.nframes = rows[i].announced};
		mirai__frame f;
		mirai__reader r;
		uint8_t *msg, *fr;
		size_t len, n;
		msgbuf m;
		int got = 0, rv;

		mb_init(&m);
		fr = enc_u64(MIRAI__F_PING, 1, &n);
		mb_put(&m, fr, n);
		fr = enc_empty(MIRAI__F_EXIT, &n);
		mb_put(&m, fr, n);
		fr = enc_u32(MIRAI__F_BYE, 2, &n);
		mb_put(&m, fr, n);
		msg = mb_finish(&m, &h, &len);
		assert_int_equal(mirai__msg_open(&r, msg, len, &h), 0);
		while ((rv = mirai__msg_next(&r, &f)) == 1) {
			got++;
		}
		if (got != rows[i].got || rv != rows[i].last) {
			fail_msg("nframes %u: %d frames then %d",
			    rows[i].announced, got, rv);
		}
		free(msg);
	}
}

/* A header-only message ends at once, and stays ended. */
static void
test_msg_next_empty(void **state)
{
	mirai__frame f;
	mirai__reader r;
	mirai__msghdr h;
	uint8_t *msg;
	size_t len;
	msgbuf m;

	mb_init(&m);
	msg = mb_finish(&m, NULL, &len);
	assert_int_equal(len, MIRAI__HDR_LEN);
	assert_int_equal(mirai__msg_open(&r, msg, len, &h), 0);
	assert_int_equal(h.nframes, 0);
	assert_int_equal(mirai__msg_next(&r, &f), 0);
	assert_int_equal(mirai__msg_next(&r, &f), 0);
	free(msg);
}

/*
 * The body length of the first of two frames (a RESULT with a 24-byte
 * body, then an EXIT), set to every kind of wrong value.  32 bytes follow
 * the first frame's header.
 */
static void
test_msg_next_length_field(void **state)
{
	static const struct {
		const char *name;
		uint32_t len;
		int first, second;
	} rows[] = {
		{"right", 24, 1, 1},
		{"one more: EXIT misaligned", 25, 1, MIRAI_EPROTO},
		{"swallows the EXIT", 32, 1, MIRAI_EPROTO},
		{"one past the message", 33, MIRAI_EPROTO, 0},
		{"64 KiB", 0x10000, MIRAI_EPROTO, 0},
		{"0x7fffffff", 0x7fffffffu, MIRAI_EPROTO, 0},
		{"0x80000000", 0x80000000u, MIRAI_EPROTO, 0},
		{"wraps with the header", 0xfffffff8u, MIRAI_EPROTO, 0},
		{"0xfffffff9", 0xfffffff9u, MIRAI_EPROTO, 0},
		{"0xffffffff", 0xffffffffu, MIRAI_EPROTO, 0},
		/* The EXIT is then read from the RESULT's id, which is 0:
		 * type 0. */
		{"zero", 0, 1, MIRAI_EPROTO},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai__result_view rv0 = {.id = 0};
		mirai__frame f;
		mirai__reader r;
		mirai__msghdr h;
		uint8_t *msg, *fr;
		size_t len, n;
		msgbuf m;
		int rv;

		mb_init(&m);
		fr = enc_result(&rv0, &n);
		mb_put(&m, fr, n);
		fr = enc_empty(MIRAI__F_EXIT, &n);
		mb_put(&m, fr, n);
		msg = mb_finish(&m, NULL, &len);
		assert_int_equal(len, MIRAI__HDR_LEN + 40);
		mirai__put32(msg + MIRAI__HDR_LEN + 4, rows[i].len);
		assert_int_equal(mirai__msg_open(&r, msg, len, &h), 0);
		rv = mirai__msg_next(&r, &f);
		if (rv != rows[i].first) {
			fail_msg("%s: first frame %d", rows[i].name, rv);
		}
		if (rv == 1) {
			assert_int_equal(f.len, rows[i].len);
			rv = mirai__msg_next(&r, &f);
			if (rv != rows[i].second) {
				fail_msg("%s: second frame %d", rows[i].name,
				    rv);
			}
		}
		free(msg);
	}
}

/* Fewer than 8 bytes where a frame header should be. */
static void
test_msg_next_short_frame_header(void **state)
{
	for (size_t k = 0; k <= MIRAI__FRAME_HDR_LEN; k++) {
		uint8_t raw[MIRAI__HDR_LEN + MIRAI__FRAME_HDR_LEN] = {0};
		mirai__msghdr h0 = {.nframes = 1};
		mirai__frame f;
		mirai__reader r;
		mirai__msghdr h;
		uint8_t *msg;
		int rv;

		mirai__hdr_encode(raw, &h0);
		mirai__frame_hdr_encode(raw + MIRAI__HDR_LEN, MIRAI__F_EXIT, 0);
		msg = exact(raw, MIRAI__HDR_LEN + k);
		assert_int_equal(
		    mirai__msg_open(&r, msg, MIRAI__HDR_LEN + k, &h), 0);
		rv = mirai__msg_next(&r, &f);
		if (k < MIRAI__FRAME_HDR_LEN) {
			assert_int_equal(rv, MIRAI_EPROTO);
		} else {
			assert_int_equal(rv, 1);
			assert_int_equal(f.type, MIRAI__F_EXIT);
			assert_int_equal(f.len, 0);
		}
		free(msg);
	}
}

/* ---- a message with every frame type, cut everywhere ------------------ */

static const mirai__hello_view all_hello = {.proto = MIRAI__PROTO,
    .kind = MIRAI__KIND_SERVER, .pid = 4242, .flags = 3, .hook = 99,
    .max_tasks = 10, .host = "node01", .host_len = 6, .version = "0.1.0",
    .version_len = 5, .binding = "0-3", .binding_len = 3,
    .hook_name = "hook.v1", .hook_name_len = 7};
static const mirai__task_view all_task = {.id = 5, .timeout_ms = 1000,
    .flags = 1, .hook = 99, .fn = "mirai.echo", .fn_len = 10,
    .data = (const uint8_t *) "hello", .len = 5};
static const mirai__result_view all_result = {.id = 5, .status = 0,
    .flags = 0, .hook = 99, .data = (const uint8_t *) "hello", .len = 5};
static const mirai__task_view all_bounced = {.id = 7, .timeout_ms = 0,
    .flags = 0, .hook = 0, .fn = "f", .fn_len = 1,
    .data = (const uint8_t *) "xyz", .len = 3};

static uint8_t *
all_frames(size_t *len, size_t ends[], size_t *nframes)
{
	uint8_t *msg, *fr;
	msgbuf m;
	size_t n;

	mb_init(&m);
	fr = enc_hello(&all_hello, &n);
	mb_put(&m, fr, n);
	fr = enc_task(&all_task, &n);
	mb_put(&m, fr, n);
	fr = enc_result(&all_result, &n);
	mb_put(&m, fr, n);
	fr = enc_u64(MIRAI__F_CANCEL, 6, &n);
	mb_put(&m, fr, n);
	fr = enc_empty(MIRAI__F_EXIT, &n);
	mb_put(&m, fr, n);
	fr = enc_u32(MIRAI__F_BYE, 3, &n);
	mb_put(&m, fr, n);
	fr = enc_bounce(&all_bounced, &n);
	mb_put(&m, fr, n);
	fr = enc_u64(MIRAI__F_PING, 0x1122334455667788ull, &n);
	mb_put(&m, fr, n);
	fr = enc_u64(MIRAI__F_PONG, 0x1122334455667788ull, &n);
	mb_put(&m, fr, n);
	*nframes = m.nframes;
	memcpy(ends, m.ends, m.nframes * sizeof ends[0]);
	msg = mb_finish(&m, NULL, len);
	return msg;
}

/* Decode f with the decoder of its type and check the values sent. */
static void
check_all_frame(const mirai__frame *f, size_t i)
{
	static const uint8_t types[] = {MIRAI__F_HELLO, MIRAI__F_TASK,
	    MIRAI__F_RESULT, MIRAI__F_CANCEL, MIRAI__F_EXIT, MIRAI__F_BYE,
	    MIRAI__F_BOUNCE, MIRAI__F_PING, MIRAI__F_PONG};
	mirai__hello_view hv;
	mirai__task_view tv;
	mirai__result_view rv;
	mirai__frame in;
	uint64_t v64;
	uint32_t v32;

	assert_true(i < ARRAY_LEN(types));
	assert_int_equal(f->type, types[i]);
	switch (f->type) {
	case MIRAI__F_HELLO:
		assert_int_equal(mirai__hello_decode(f, &hv), 0);
		assert_int_equal(hv.pid, 4242);
		assert_int_equal(hv.hook_name_len, 7);
		assert_memory_equal(hv.hook_name, "hook.v1", 7);
		break;
	case MIRAI__F_TASK:
		assert_int_equal(mirai__task_decode(f, &tv), 0);
		assert_int_equal(tv.id, 5);
		assert_int_equal(tv.len, 5);
		assert_memory_equal(tv.data, "hello", 5);
		break;
	case MIRAI__F_RESULT:
		assert_int_equal(mirai__result_decode(f, &rv), 0);
		assert_int_equal(rv.id, 5);
		assert_memory_equal(rv.data, "hello", 5);
		break;
	case MIRAI__F_CANCEL:
		assert_int_equal(mirai__u64_frame_decode(f, &v64), 0);
		assert_int_equal(v64, 6);
		break;
	case MIRAI__F_EXIT:
		assert_int_equal(f->len, 0);
		break;
	case MIRAI__F_BYE:
		assert_int_equal(mirai__u32_frame_decode(f, &v32), 0);
		assert_int_equal(v32, 3);
		break;
	case MIRAI__F_BOUNCE:
		in = bounce_inner(f);
		assert_int_equal(mirai__task_decode(&in, &tv), 0);
		assert_int_equal(tv.id, 7);
		assert_memory_equal(tv.data, "xyz", 3);
		break;
	default:
		assert_int_equal(mirai__u64_frame_decode(f, &v64), 0);
		assert_int_equal(v64, 0x1122334455667788ull);
		break;
	}
}

/*
 * The message cut after every byte.  Frames wholly before the cut still
 * decode; the walk then ends in EPROTO, never in a clean end, and never
 * reads past the cut (each prefix lives in a block of its own size).
 */
static void
test_truncate_every_cut(void **state)
{
	size_t len, ends[16], nframes;
	uint8_t *full = all_frames(&len, ends, &nframes);

	assert_int_equal(nframes, 9);
	for (size_t cut = 0; cut <= len; cut++) {
		uint8_t *b = exact(full, cut);
		size_t whole = 0, got = 0;
		mirai__frame f;
		mirai__reader r;
		mirai__msghdr h;
		int rv;

		while (whole < nframes && ends[whole] <= cut) {
			whole++;
		}
		rv = mirai__msg_open(&r, b, cut, &h);
		if (cut < MIRAI__HDR_LEN) {
			if (rv != MIRAI_EPROTO) {
				fail_msg("cut %zu: open gave %d", cut, rv);
			}
			free(b);
			continue;
		}
		assert_int_equal(rv, 0);
		while ((rv = mirai__msg_next(&r, &f)) == 1) {
			assert_true(inside(f.body, f.len, b, cut));
			check_all_frame(&f, got);
			got++;
		}
		if (got != whole || rv != (cut == len ? 0 : MIRAI_EPROTO)) {
			fail_msg("cut %zu of %zu: %zu frames (want %zu), "
			         "then %d",
			    cut, len, got, whole, rv);
		}
		free(b);
	}
	free(full);
}

/* ---- TASK ------------------------------------------------------------- */

/* Pins the TASK layout byte by byte. */
static void
test_task_golden(void **state)
{
	static const uint8_t want[] = {
		MIRAI__F_TASK, 0, 0, 0, 29, 0, 0, 0,     /* frame header */
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* id */
		0x44, 0x33, 0x22, 0x11,                  /* timeout_ms */
		0x88, 0x77, 0x66, 0x55,                  /* flags */
		0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, /* hook */
		1, 0, 'f',                               /* fn */
		'x', 'y',                                /* data */
	};
	mirai__task_view t = {.id = 0x0102030405060708ull,
	    .timeout_ms = 0x11223344u, .flags = 0x55667788u,
	    .hook = 0x99aabbccddeeff00ull, .fn = "f", .fn_len = 1,
	    .data = (const uint8_t *) "xy", .len = 2};
	size_t n;
	uint8_t *b = enc_task(&t, &n);

	assert_int_equal(n, sizeof want);
	assert_memory_equal(b, want, sizeof want);
	free(b);
}

static void
test_task_roundtrip(void **state)
{
	static const struct {
		const char *name;
		size_t fn_len, len;
		uint64_t id, hook;
		uint32_t timeout_ms, flags;
		int data_null;
	} rows[] = {
		{"1-byte fn, empty payload", 1, 0, 0, 0, 0, 0, 0},
		{"1-byte fn, NULL payload", 1, 0, 1, 0, 0, 0, 1},
		{"1-byte fn, 1-byte payload", 1, 1, 2, 1, 1, 1, 0},
		{"typical", 10, 5, 42, 7, 5000, 0, 0},
		{"all ones", 3, 17, UINT64_MAX, UINT64_MAX, UINT32_MAX,
		    UINT32_MAX, 0},
		{"65535-byte fn, empty payload", 65535, 0, 3, 0, 0, 0, 0},
		{"65535-byte fn, 1 MiB payload", 65535, MIB, 4, 9, 0, 0, 0},
		{"large payload", 1, 4 * MIB + 3, 5, 0, 0, 0, 0},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		char *fn      = make_name(rows[i].fn_len);
		uint8_t *data = xmalloc(rows[i].len);
		mirai__task_view t = {.id = rows[i].id,
		    .timeout_ms = rows[i].timeout_ms, .flags = rows[i].flags,
		    .hook = rows[i].hook, .fn = fn,
		    .fn_len = (uint16_t) rows[i].fn_len,
		    .data = rows[i].data_null ? NULL : data,
		    .len = rows[i].len};
		mirai__task_view d;
		mirai__frame f;
		uint8_t *frame, *msg;
		size_t n, mlen;

		fill(data, rows[i].len, (unsigned) i);
		frame = enc_task(&t, &n);
		assert_int_equal(n, MIRAI__FRAME_HDR_LEN + MIRAI__TASK_FIXED +
		    rows[i].fn_len + rows[i].len);
		msg = one_frame(frame, n, &f, &mlen);
		assert_int_equal(f.type, MIRAI__F_TASK);
		if (mirai__task_decode(&f, &d) != 0) {
			fail_msg("%s: does not decode", rows[i].name);
		}
		assert_int_equal(d.id, rows[i].id);
		assert_int_equal(d.timeout_ms, rows[i].timeout_ms);
		assert_int_equal(d.flags, rows[i].flags);
		assert_int_equal(d.hook, rows[i].hook);
		assert_int_equal(d.fn_len, rows[i].fn_len);
		assert_memory_equal(d.fn, fn, rows[i].fn_len);
		assert_int_equal(d.len, rows[i].len);
		if (!rows[i].data_null && rows[i].len > 0) {
			assert_memory_equal(d.data, data, rows[i].len);
		}
		assert_true(inside(d.fn, d.fn_len, msg, mlen));
		assert_ptr_equal(d.data, (const uint8_t *) d.fn + d.fn_len);
		assert_true(inside(d.data, d.len, msg, mlen));
		free(msg);
		free(data);
		free(fn);
	}
}

/* "data may be NULL when the caller fills the payload itself": the payload
 * bytes are then left as they were. */
static void
test_task_encode_null_data(void **state)
{
	mirai__task_view t = {.id = 9, .fn = "fn", .fn_len = 2, .data = NULL,
	    .len = 4};
	size_t n = mirai__task_size(2, 4);
	uint8_t *b = xmalloc(n);
	mirai__task_view d;
	mirai__frame f;

	memset(b, 0xee, n);
	mirai__task_encode(b, &t);
	assert_memory_equal(b + n - 4, "\xee\xee\xee\xee", 4);
	f.type  = b[0];
	f.flags = b[1];
	f.body  = b + MIRAI__FRAME_HDR_LEN;
	f.len   = mirai__get32(b + 4);
	assert_int_equal(f.len, n - MIRAI__FRAME_HDR_LEN);
	assert_int_equal(mirai__task_decode(&f, &d), 0);
	assert_int_equal(d.id, 9);
	assert_int_equal(d.len, 4);
	free(b);
}

/*
 * Hand-made TASK bodies.  A body is the fixed part with the given fn_len
 * field (when the body is long enough to hold it), then bytes 'x' up to
 * body_len, with a NUL at nul_at bytes after the fixed part (-1: none).
 */
static void
test_task_decode_rejects(void **state)
{
	static const struct {
		const char *name;
		uint8_t type;
		size_t body_len;
		uint16_t fn_len;
		int nul_at;
		int want;
		size_t want_len; /* payload length when it decodes */
	} rows[] = {
		{"type RESULT", MIRAI__F_RESULT, 30, 2, -1, MIRAI_EPROTO, 0},
		{"type HELLO", MIRAI__F_HELLO, 30, 2, -1, MIRAI_EPROTO, 0},
		{"type BOUNCE", MIRAI__F_BOUNCE, 30, 2, -1, MIRAI_EPROTO, 0},
		{"type 0", 0, 30, 2, -1, MIRAI_EPROTO, 0},
		{"empty body", MIRAI__F_TASK, 0, 0, -1, MIRAI_EPROTO, 0},
		{"fixed part cut", MIRAI__F_TASK, 25, 0, -1, MIRAI_EPROTO, 0},
		{"fn_len 0, no fn", MIRAI__F_TASK, 26, 0, -1, MIRAI_EPROTO, 0},
		{"fn_len 0, data", MIRAI__F_TASK, 30, 0, -1, MIRAI_EPROTO, 0},
		{"fn_len 1, no fn", MIRAI__F_TASK, 26, 1, -1, MIRAI_EPROTO, 0},
		{"fn_len one past the body", MIRAI__F_TASK, 30, 5, -1,
		    MIRAI_EPROTO, 0},
		{"fn_len 0xffff", MIRAI__F_TASK, 30, 0xffff, -1, MIRAI_EPROTO,
		    0},
		{"NUL first in fn", MIRAI__F_TASK, 30, 4, 0, MIRAI_EPROTO, 0},
		{"NUL inside fn", MIRAI__F_TASK, 30, 4, 2, MIRAI_EPROTO, 0},
		{"NUL last in fn", MIRAI__F_TASK, 30, 4, 3, MIRAI_EPROTO, 0},
		{"fn fills the body", MIRAI__F_TASK, 30, 4, -1, 0, 0},
		{"1-byte fn, 3 bytes data", MIRAI__F_TASK, 30, 1, -1, 0, 3},
		{"NUL in the data is data", MIRAI__F_TASK, 30, 2, 3, 0, 2},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		uint8_t raw[64];
		mirai__task_view t;
		mirai__frame f;
		int rv;

		assert_true(rows[i].body_len <= sizeof raw);
		memset(raw, 'x', sizeof raw);
		memset(raw, 0, MIRAI__TASK_FIXED);
		mirai__put16(raw + 24, rows[i].fn_len);
		if (rows[i].nul_at >= 0) {
			raw[MIRAI__TASK_FIXED + rows[i].nul_at] = '\0';
		}
		f.type  = rows[i].type;
		f.flags = 0;
		f.body  = exact(raw, rows[i].body_len);
		f.len   = (uint32_t) rows[i].body_len;
		rv      = mirai__task_decode(&f, &t);
		if (rv != rows[i].want) {
			fail_msg("%s: %d, not %d", rows[i].name, rv,
			    rows[i].want);
		}
		if (rv == 0) {
			assert_int_equal(t.fn_len, rows[i].fn_len);
			assert_int_equal(t.len, rows[i].want_len);
			assert_ptr_equal(t.data, f.body + f.len - t.len);
		}
		free((void *) f.body);
	}
}

/* A TASK body cut after every byte: until the whole name is there it is
 * refused; after that the payload is whatever is left. */
static void
test_task_decode_cut_body(void **state)
{
	size_t n, body_len;
	uint8_t *frame = enc_task(&all_task, &n);

	body_len = n - MIRAI__FRAME_HDR_LEN;
	for (size_t cut = 0; cut <= body_len; cut++) {
		mirai__frame f = {.type = MIRAI__F_TASK};
		mirai__task_view t;
		int rv;

		f.body = exact(frame + MIRAI__FRAME_HDR_LEN, cut);
		f.len  = (uint32_t) cut;
		rv     = mirai__task_decode(&f, &t);
		if (cut < (size_t) MIRAI__TASK_FIXED + all_task.fn_len) {
			assert_int_equal(rv, MIRAI_EPROTO);
		} else {
			assert_int_equal(rv, 0);
			assert_int_equal(
			    t.len, cut - MIRAI__TASK_FIXED - all_task.fn_len);
			assert_memory_equal(t.data, all_task.data, t.len);
		}
		free((void *) f.body);
	}
	free(frame);
}

/* ---- RESULT ----------------------------------------------------------- */

static void
test_result_golden(void **state)
{
	static const uint8_t want[] = {
		MIRAI__F_RESULT, 0, 0, 0, 26, 0, 0, 0,
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* id */
		100, 0, 0, 0,                            /* status */
		0x88, 0x77, 0x66, 0x55,                  /* flags */
		0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, /* hook */
		'o', 'k',
	};
	mirai__result_view r = {.id = 0x0102030405060708ull,
	    .status = MIRAI_ETASK, .flags = 0x55667788u,
	    .hook = 0x99aabbccddeeff00ull, .data = (const uint8_t *) "ok",
	    .len = 2};
	size_t n;
	uint8_t *b = enc_result(&r, &n);

	assert_int_equal(n, sizeof want);
	assert_memory_equal(b, want, sizeof want);
	free(b);
}

static void
test_result_roundtrip(void **state)
{
	static const struct {
		const char *name;
		size_t len;
		uint64_t id, hook;
		uint32_t status, flags;
		int data_null;
	} rows[] = {
		{"empty payload", 0, 1, 0, 0, 0, 0},
		{"NULL payload", 0, 2, 0, 0, 0, 1},
		{"1 byte", 1, 3, 0, 0, 0, 0},
		{"task error text", 40, 4, 0, MIRAI_ETASK, 0, 0},
		{"all ones", 7, UINT64_MAX, UINT64_MAX, UINT32_MAX, UINT32_MAX,
		    0},
		{"just under a big frame", 65535, 5, 1, 0, 0, 0},
		{"large payload", 8 * MIB + 1, 6, 2, 0, 0, 0},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		uint8_t *data = xmalloc(rows[i].len);
		mirai__result_view r = {.id = rows[i].id,
		    .status = rows[i].status, .flags = rows[i].flags,
		    .hook = rows[i].hook,
		    .data = rows[i].data_null ? NULL : data,
		    .len = rows[i].len};
		mirai__result_view d;
		mirai__frame f;
		uint8_t *frame, *msg;
		size_t n, mlen;

		fill(data, rows[i].len, (unsigned) i);
		frame = enc_result(&r, &n);
		assert_int_equal(n, mirai__result_size(rows[i].len));
		assert_int_equal(n, MIRAI__FRAME_HDR_LEN + MIRAI__RESULT_FIXED +
		    rows[i].len);
		msg = one_frame(frame, n, &f, &mlen);
		if (mirai__result_decode(&f, &d) != 0) {
			fail_msg("%s: does not decode", rows[i].name);
		}
		assert_int_equal(d.id, rows[i].id);
		assert_int_equal(d.status, rows[i].status);
		assert_int_equal(d.flags, rows[i].flags);
		assert_int_equal(d.hook, rows[i].hook);
		assert_int_equal(d.len, rows[i].len);
		if (rows[i].len > 0) {
			assert_memory_equal(d.data, data, rows[i].len);
		}
		assert_true(inside(d.data, d.len, msg, mlen));
		free(msg);
		free(data);
	}
}

static void
test_result_decode_rejects(void **state)
{
	static const struct {
		const char *name;
		uint8_t type;
		size_t body_len;
		int want;
	} rows[] = {
		{"type TASK", MIRAI__F_TASK, 30, MIRAI_EPROTO},
		{"type HELLO", MIRAI__F_HELLO, 30, MIRAI_EPROTO},
		{"type BOUNCE", MIRAI__F_BOUNCE, 30, MIRAI_EPROTO},
		{"type PONG", MIRAI__F_PONG, 30, MIRAI_EPROTO},
		{"empty body", MIRAI__F_RESULT, 0, MIRAI_EPROTO},
		{"1 byte", MIRAI__F_RESULT, 1, MIRAI_EPROTO},
		{"fixed part cut", MIRAI__F_RESULT, 23, MIRAI_EPROTO},
		{"fixed part only", MIRAI__F_RESULT, 24, 0},
		{"fixed part and data", MIRAI__F_RESULT, 30, 0},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		uint8_t raw[32] = {0};
		mirai__result_view r;
		mirai__frame f = {.type = rows[i].type};
		int rv;

		f.body = exact(raw, rows[i].body_len);
		f.len  = (uint32_t) rows[i].body_len;
		rv     = mirai__result_decode(&f, &r);
		if (rv != rows[i].want) {
			fail_msg("%s: %d, not %d", rows[i].name, rv,
			    rows[i].want);
		}
		if (rv == 0) {
			assert_int_equal(r.len, rows[i].body_len - 24);
			assert_ptr_equal(r.data, f.body + 24);
		}
		free((void *) f.body);
	}
}

/* ---- HELLO ------------------------------------------------------------ */

static void
test_hello_golden(void **state)
{
	static const uint8_t want[] = {
		MIRAI__F_HELLO, 0, 0, 0, 53, 0, 0, 0,
		1, 0, 0, 0,                              /* proto */
		2, 0, 0, 0,                              /* kind */
		0x44, 0x33, 0x22, 0x11,                  /* pid */
		0x88, 0x77, 0x66, 0x55,                  /* flags */
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* hook */
		0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, /* max_tasks */
		1, 0, 'h',                               /* host */
		2, 0, 'v', '1',                          /* version */
		0, 0,                                    /* binding */
		0, 0,                                    /* hook_name */
		0x0d, 0x0c, 0x0b, 0x0a,                  /* slot */
		4, 0, 's', 'e', 'c', 'r',                /* secret */
	};
	mirai__hello_view h = {.proto = 1, .kind = MIRAI__KIND_DISPATCHER,
	    .pid = 0x11223344u, .flags = 0x55667788u,
	    .hook = 0x0102030405060708ull, .max_tasks = 0x99aabbccddeeff00ull,
	    .host = "h", .host_len = 1, .version = "v1", .version_len = 2,
	    .slot = 0x0a0b0c0du, .secret = "secr", .secret_len = 4};
	size_t n;
	uint8_t *b = enc_hello(&h, &n);

	assert_int_equal(n, sizeof want);
	assert_memory_equal(b, want, sizeof want);
	free(b);
}

static void
test_hello_roundtrip(void **state)
{
	static const struct {
		const char *name;
		size_t lens[4]; /* host, version, binding, hook_name */
		int with_nul;   /* strings are length-prefixed: NUL is data */
		uint64_t big;   /* hook and max_tasks */
	} rows[] = {
		{"all strings empty", {0, 0, 0, 0}, 0, 0},
		{"typical", {6, 5, 3, 7}, 0, 10},
		{"1 byte each", {1, 1, 1, 1}, 0, 1},
		{"65535-byte host", {65535, 0, 0, 0}, 0, 2},
		{"65535-byte hook name", {0, 0, 0, 65535}, 0, 3},
		{"all four 65535 bytes", {65535, 65535, 65535, 65535}, 0,
		    UINT64_MAX},
		{"NUL bytes inside", {4, 4, 4, 4}, 1, 5},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		const char *s[4];
		char *buf[4];
		mirai__hello_view h, d;
		mirai__frame f;
		uint8_t *frame, *msg;
		size_t n, mlen, sum = 0;

		for (int k = 0; k < 4; k++) {
			buf[k] = make_name(rows[i].lens[k]);
			if (rows[i].with_nul) {
				buf[k][k % rows[i].lens[k]] = '\0';
			}
			/* An empty string may come as NULL. */
			s[k] = rows[i].lens[k] > 0 ? buf[k] : NULL;
			sum += rows[i].lens[k];
		}
		h = (mirai__hello_view){.proto = MIRAI__PROTO,
		    .kind = MIRAI__KIND_SERVER, .pid = (uint32_t) i + 100,
		    .flags = (uint32_t) i, .hook = rows[i].big,
		    .max_tasks = rows[i].big, .host = s[0],
		    .host_len = (uint16_t) rows[i].lens[0], .version = s[1],
		    .version_len = (uint16_t) rows[i].lens[1], .binding = s[2],
		    .binding_len = (uint16_t) rows[i].lens[2],
		    .hook_name = s[3],
		    .hook_name_len = (uint16_t) rows[i].lens[3],
		    .slot = (uint32_t) rows[i].big, .secret = i % 2 ? SECRET : NULL,
		    .secret_len = i % 2 ? 32 : 0};
		frame = enc_hello(&h, &n);
		assert_int_equal(n, MIRAI__FRAME_HDR_LEN + 32 + 8 + sum + 6 +
		    h.secret_len);
		msg = one_frame(frame, n, &f, &mlen);
		if (mirai__hello_decode(&f, &d) != 0) {
			fail_msg("%s: does not decode", rows[i].name);
		}
		assert_int_equal(d.proto, h.proto);
		assert_int_equal(d.kind, h.kind);
		assert_int_equal(d.pid, h.pid);
		assert_int_equal(d.flags, h.flags);
		assert_int_equal(d.hook, h.hook);
		assert_int_equal(d.max_tasks, h.max_tasks);
		assert_int_equal(d.host_len, h.host_len);
		assert_int_equal(d.version_len, h.version_len);
		assert_int_equal(d.binding_len, h.binding_len);
		assert_int_equal(d.hook_name_len, h.hook_name_len);
		assert_int_equal(d.slot, h.slot);
		assert_int_equal(d.secret_len, h.secret_len);
		if (h.secret_len > 0) {
			assert_memory_equal(d.secret, SECRET, 32);
		}
		assert_memory_equal(d.host, buf[0], d.host_len);
		assert_memory_equal(d.version, buf[1], d.version_len);
		assert_memory_equal(d.binding, buf[2], d.binding_len);
		assert_memory_equal(d.hook_name, buf[3], d.hook_name_len);
		assert_true(inside(d.host, d.host_len, msg, mlen));
		assert_true(inside(d.hook_name, d.hook_name_len, msg, mlen));
		for (int k = 0; k < 4; k++) {
			free(buf[k]);
		}
		free(msg);
	}
}

/*
 * Hand-made HELLO bodies: the 32-byte fixed part, then whatever the row
 * gives.  Lengths are little-endian u16 as on the wire.
 */
static void
test_hello_decode_rejects(void **state)
{
	static const struct {
		const char *name;
		uint8_t type;
		size_t fixed; /* bytes of the fixed part present */
		size_t ntail;
		uint8_t tail[24];
		int want;
	} rows[] = {
		{"type TASK", MIRAI__F_TASK, 32, 8, {0}, MIRAI_EPROTO},
		{"type RESULT", MIRAI__F_RESULT, 32, 8, {0}, MIRAI_EPROTO},
		{"empty body", MIRAI__F_HELLO, 0, 0, {0}, MIRAI_EPROTO},
		{"fixed part cut", MIRAI__F_HELLO, 31, 0, {0}, MIRAI_EPROTO},
		{"no strings", MIRAI__F_HELLO, 32, 0, {0}, MIRAI_EPROTO},
		{"half a length", MIRAI__F_HELLO, 32, 1, {0}, MIRAI_EPROTO},
		{"three strings", MIRAI__F_HELLO, 32, 6, {0}, MIRAI_EPROTO},
		{"last length cut", MIRAI__F_HELLO, 32, 7, {0}, MIRAI_EPROTO},
		{"four empty strings, no slot", MIRAI__F_HELLO, 32, 8, {0},
		    MIRAI_EPROTO},
		{"slot cut", MIRAI__F_HELLO, 32, 11, {0}, MIRAI_EPROTO},
		{"no secret length", MIRAI__F_HELLO, 32, 12, {0}, MIRAI_EPROTO},
		{"empty strings, slot, empty secret", MIRAI__F_HELLO, 32, 14,
		    {0}, 0},
		{"secret one byte short", MIRAI__F_HELLO, 32, 15,
		    {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 's'},
		    MIRAI_EPROTO},
		{"host_len 0xffff", MIRAI__F_HELLO, 32, 8, {0xff, 0xff},
		    MIRAI_EPROTO},
		{"host_len one past", MIRAI__F_HELLO, 32, 8, {7, 0},
		    MIRAI_EPROTO},
		/* host_len 6 takes the other three lengths as its bytes. */
		{"host swallows the rest", MIRAI__F_HELLO, 32, 8, {6, 0},
		    MIRAI_EPROTO},
		{"hook_name one byte short", MIRAI__F_HELLO, 32, 9,
		    {0, 0, 0, 0, 0, 0, 2, 0, 'h'}, MIRAI_EPROTO},
		{"hook_name 0xffff", MIRAI__F_HELLO, 32, 9,
		    {0, 0, 0, 0, 0, 0, 0xff, 0xff, 'h'}, MIRAI_EPROTO},
		{"bytes after the secret", MIRAI__F_HELLO, 32, 18,
		    {1, 0, 'h', 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 's', 'x', 'y'},
		    0},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		uint8_t raw[64] = {0};
		mirai__hello_view h;
		mirai__frame f = {.type = rows[i].type};
		size_t len = rows[i].fixed + rows[i].ntail;
		int rv;

		memcpy(raw + rows[i].fixed, rows[i].tail, rows[i].ntail);
		f.body = exact(raw, len);
		f.len  = (uint32_t) len;
		rv     = mirai__hello_decode(&f, &h);
		if (rv != rows[i].want) {
			fail_msg("%s: %d, not %d", rows[i].name, rv,
			    rows[i].want);
		}
		free((void *) f.body);
	}
}

/* A HELLO body with its strings cut after every byte: refused until the
 * last string is whole; bytes after it (a newer peer's fields) are fine. */
static void
test_hello_truncated_strings(void **state)
{
	size_t n, body_len;
	uint8_t *frame = enc_hello(&all_hello, &n);
	uint8_t *longer;

	body_len = n - MIRAI__FRAME_HDR_LEN;
	for (size_t cut = 0; cut <= body_len + 3; cut++) {
		mirai__frame f = {.type = MIRAI__F_HELLO};
		mirai__hello_view h;
		int rv;

		longer = xmalloc(body_len + 3);
		memcpy(longer, frame + MIRAI__FRAME_HDR_LEN, body_len);
		memcpy(longer + body_len, "new", 3);
		f.body = exact(longer, cut);
		f.len  = (uint32_t) cut;
		free(longer);
		rv = mirai__hello_decode(&f, &h);
		if (cut < body_len) {
			if (rv != MIRAI_EPROTO) {
				fail_msg("cut %zu of %zu: %d", cut, body_len,
				    rv);
			}
		} else {
			assert_int_equal(rv, 0);
			assert_int_equal(h.host_len, 6);
			assert_memory_equal(h.host, "node01", 6);
			assert_int_equal(h.hook_name_len, 7);
			assert_memory_equal(h.hook_name, "hook.v1", 7);
		}
		free((void *) f.body);
	}
	free(frame);
}

/* ---- small frames ----------------------------------------------------- */

static void
test_frame_hdr_encode(void **state)
{
	static const struct {
		uint8_t type;
		uint32_t len;
		uint8_t want[MIRAI__FRAME_HDR_LEN];
	} rows[] = {
		{MIRAI__F_EXIT, 0, {5, 0, 0, 0, 0, 0, 0, 0}},
		{MIRAI__F_HELLO, 1, {1, 0, 0, 0, 1, 0, 0, 0}},
		{MIRAI__F_BOUNCE, 0x01020304u, {7, 0, 0, 0, 4, 3, 2, 1}},
		{MIRAI__F_TASK, 0xffffffffu, {2, 0, 0, 0, 0xff, 0xff, 0xff,
		    0xff}},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		uint8_t b[MIRAI__FRAME_HDR_LEN + 1];

		/* Flags and reserved bytes must be cleared, and the byte
		 * after the header left alone. */
		memset(b, 0xaa, sizeof b);
		mirai__frame_hdr_encode(b, rows[i].type, rows[i].len);
		assert_memory_equal(b, rows[i].want, MIRAI__FRAME_HDR_LEN);
		assert_int_equal(b[MIRAI__FRAME_HDR_LEN], 0xaa);
	}
}

static void
test_u64_frames(void **state)
{
	static const struct {
		uint8_t type;
		uint64_t v;
	} rows[] = {
		{MIRAI__F_CANCEL, 0},
		{MIRAI__F_CANCEL, UINT64_MAX},
		{MIRAI__F_PING, 0x0102030405060708ull},
		{MIRAI__F_PONG, 1},
		{MIRAI__F_PONG, 0x8000000000000000ull},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai__frame f;
		uint8_t *frame, *msg;
		uint64_t v = 0;
		size_t n;

		frame = enc_u64(rows[i].type, rows[i].v, &n);
		assert_int_equal(frame[0], rows[i].type);
		assert_int_equal(mirai__get32(frame + 4), 8);
		assert_int_equal(mirai__get64(frame + 8), rows[i].v);
		msg = one_frame(frame, n, &f, NULL);
		assert_int_equal(f.type, rows[i].type);
		assert_int_equal(mirai__u64_frame_decode(&f, &v), 0);
		assert_int_equal(v, rows[i].v);
		free(msg);
	}
}

static void
test_u32_frames(void **state)
{
	static const uint32_t rows[] = {0, 1, 3, 0x01020304u, UINT32_MAX};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai__frame f;
		uint8_t *frame, *msg;
		uint32_t v = 0;
		size_t n;

		frame = enc_u32(MIRAI__F_BYE, rows[i], &n);
		assert_int_equal(mirai__get32(frame + 4), 4);
		assert_int_equal(mirai__get32(frame + 8), rows[i]);
		msg = one_frame(frame, n, &f, NULL);
		assert_int_equal(f.type, MIRAI__F_BYE);
		assert_int_equal(mirai__u32_frame_decode(&f, &v), 0);
		assert_int_equal(v, rows[i]);
		free(msg);
	}
}

/* The u64 and u32 decoders take exactly 8 and 4 bytes. */
static void
test_u64_u32_lengths(void **state)
{
	static const struct {
		uint32_t len;
		int want64, want32;
	} rows[] = {
		{0, MIRAI_EPROTO, MIRAI_EPROTO},
		{1, MIRAI_EPROTO, MIRAI_EPROTO},
		{3, MIRAI_EPROTO, MIRAI_EPROTO},
		{4, MIRAI_EPROTO, 0},
		{5, MIRAI_EPROTO, MIRAI_EPROTO},
		{7, MIRAI_EPROTO, MIRAI_EPROTO},
		{8, 0, MIRAI_EPROTO},
		{9, MIRAI_EPROTO, MIRAI_EPROTO},
		{16, MIRAI_EPROTO, MIRAI_EPROTO},
	};
	static const uint8_t raw[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai__frame f = {.type = MIRAI__F_PING};
		uint64_t v64;
		uint32_t v32;

		f.body = exact(raw, rows[i].len);
		f.len  = rows[i].len;
		assert_int_equal(mirai__u64_frame_decode(&f, &v64),
		    rows[i].want64);
		assert_int_equal(mirai__u32_frame_decode(&f, &v32),
		    rows[i].want32);
		if (rows[i].want64 == 0) {
			assert_int_equal(v64, 0x0807060504030201ull);
		}
		if (rows[i].want32 == 0) {
			assert_int_equal(v32, 0x04030201u);
		}
		free((void *) f.body);
	}
}

/* BOUNCE as the server builds it and the client unwraps it. */
static void
test_bounce_roundtrip(void **state)
{
	static const size_t lens[] = {0, 1, 100, 70000};

	for (size_t i = 0; i < ARRAY_LEN(lens); i++) {
		uint8_t *data = xmalloc(lens[i]);
		mirai__task_view t = {.id = 1000 + i, .timeout_ms = 5,
		    .flags = 2, .hook = 77, .fn = "mirai.sleep", .fn_len = 11,
		    .data = data, .len = lens[i]};
		mirai__task_view d;
		mirai__frame f, in;
		uint8_t *frame, *msg;
		size_t n;

		fill(data, lens[i], (unsigned) i);
		frame = enc_bounce(&t, &n);
		msg   = one_frame(frame, n, &f, NULL);
		assert_int_equal(f.type, MIRAI__F_BOUNCE);
		assert_int_equal(f.len, mirai__task_size(11, lens[i]));
		/* The inner header is a TASK header of its own. */
		assert_int_equal(f.body[0], MIRAI__F_TASK);
		assert_int_equal(mirai__get32(f.body + 4),
		    f.len - MIRAI__FRAME_HDR_LEN);
		/* Not a TASK until unwrapped. */
		assert_int_equal(mirai__task_decode(&f, &d), MIRAI_EPROTO);
		in = bounce_inner(&f);
		assert_int_equal(mirai__task_decode(&in, &d), 0);
		assert_int_equal(d.id, 1000 + i);
		assert_int_equal(d.hook, 77);
		assert_memory_equal(d.fn, "mirai.sleep", 11);
		assert_int_equal(d.len, lens[i]);
		if (lens[i] > 0) {
			assert_memory_equal(d.data, data, lens[i]);
		}
		free(msg);
		free(data);
	}
}

/* ---- control frames: REQ and REP ------------------------------------- */

static void
test_req_roundtrip(void **state)
{
	static const uint8_t golden[MIRAI__REQ_LEN] = {
		MIRAI__F_REQ, 0, 0, 0, 20, 0, 0, 0,
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* req */
		2, 0, 0, 0,                              /* op */
		0x44, 0x33, 0x22, 0x11,                  /* a */
		1, 0, 0, 0,                              /* b */
	};
	static const mirai__req_view rows[] = {
		{0x0102030405060708ull, MIRAI__OP_SAISEI, 0x11223344u, 1},
		{0, 0, 0, 0},
		{1, MIRAI__OP_STATUS, 0, 0},
		{UINT64_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		uint8_t *frame = xmalloc(MIRAI__REQ_LEN), *msg;
		mirai__req_view d;
		mirai__frame f;

		mirai__req_encode(frame, &rows[i]);
		if (i == 0) {
			assert_memory_equal(frame, golden, sizeof golden);
		}
		msg = one_frame(frame, MIRAI__REQ_LEN, &f, NULL);
		assert_int_equal(f.type, MIRAI__F_REQ);
		assert_int_equal(mirai__req_decode(&f, &d), 0);
		assert_int_equal(d.req, rows[i].req);
		assert_int_equal(d.op, rows[i].op);
		assert_int_equal(d.a, rows[i].a);
		assert_int_equal(d.b, rows[i].b);
		free(msg);
	}
}

/* A REQ body is exactly 20 bytes: anything else is refused. */
static void
test_req_decode_rejects(void **state)
{
	static const struct {
		const char *name;
		uint8_t type;
		uint32_t len;
		int want;
	} rows[] = {
		{"type REP", MIRAI__F_REP, 20, MIRAI_EPROTO},
		{"type TASK", MIRAI__F_TASK, 20, MIRAI_EPROTO},
		{"empty body", MIRAI__F_REQ, 0, MIRAI_EPROTO},
		{"one byte short", MIRAI__F_REQ, 19, MIRAI_EPROTO},
		{"one byte over", MIRAI__F_REQ, 21, MIRAI_EPROTO},
		{"twice the size", MIRAI__F_REQ, 40, MIRAI_EPROTO},
		{"right", MIRAI__F_REQ, 20, 0},
	};
	static const uint8_t raw[40] = {1};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai__frame f = {.type = rows[i].type};
		mirai__req_view r;
		int rv;

		f.body = exact(raw, rows[i].len);
		f.len  = rows[i].len;
		rv     = mirai__req_decode(&f, &r);
		if (rv != rows[i].want) {
			fail_msg("%s: %d, not %d", rows[i].name, rv,
			    rows[i].want);
		}
		if (rv == 0) {
			assert_int_equal(r.req, 1);
		}
		free((void *) f.body);
	}
}

static void
test_rep_roundtrip(void **state)
{
	static const struct {
		const char *name;
		uint64_t req;
		uint32_t status;
		size_t len;
	} rows[] = {
		{"empty reply", 1, 0, 0},
		{"error with a message", 2, MIRAI_EINVAL, 30},
		{"all ones", UINT64_MAX, UINT32_MAX, 1},
		{"large status", 3, 0, 2 * MIB},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		uint8_t *data = xmalloc(rows[i].len), *frame, *msg;
		mirai__rep_view r = {.req = rows[i].req,
		    .status = rows[i].status, .data = data, .len = rows[i].len};
		size_t n = mirai__rep_size(rows[i].len), mlen;
		mirai__rep_view d;
		mirai__frame f;

		assert_int_equal(n, MIRAI__FRAME_HDR_LEN + MIRAI__REP_FIXED +
		    rows[i].len);
		fill(data, rows[i].len, (unsigned) i);
		frame = xmalloc(n);
		mirai__rep_encode(frame, &r);
		assert_int_equal(mirai__get64(frame + 8), rows[i].req);
		msg = one_frame(frame, n, &f, &mlen);
		if (mirai__rep_decode(&f, &d) != 0) {
			fail_msg("%s: does not decode", rows[i].name);
		}
		assert_int_equal(d.req, rows[i].req);
		assert_int_equal(d.status, rows[i].status);
		assert_int_equal(d.len, rows[i].len);
		assert_memory_equal(d.data, data, rows[i].len);
		assert_true(inside(d.data, d.len, msg, mlen));
		free(msg);
		free(data);
	}
}

static void
test_rep_decode_rejects(void **state)
{
	static const struct {
		const char *name;
		uint8_t type;
		uint32_t len;
		int want;
	} rows[] = {
		{"type REQ", MIRAI__F_REQ, 20, MIRAI_EPROTO},
		{"type RESULT", MIRAI__F_RESULT, 30, MIRAI_EPROTO},
		{"empty body", MIRAI__F_REP, 0, MIRAI_EPROTO},
		{"fixed part cut", MIRAI__F_REP, 11, MIRAI_EPROTO},
		{"fixed part only", MIRAI__F_REP, 12, 0},
		{"with data", MIRAI__F_REP, 30, 0},
	};
	static const uint8_t raw[32] = {0};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai__frame f = {.type = rows[i].type};
		mirai__rep_view r;
		int rv;

		f.body = exact(raw, rows[i].len);
		f.len  = rows[i].len;
		rv     = mirai__rep_decode(&f, &r);
		if (rv != rows[i].want) {
			fail_msg("%s: %d, not %d", rows[i].name, rv,
			    rows[i].want);
		}
		if (rv == 0) {
			assert_int_equal(r.len, rows[i].len - MIRAI__REP_FIXED);
			assert_ptr_equal(r.data, f.body + MIRAI__REP_FIXED);
		}
		free((void *) f.body);
	}
}

/* ---- status payloads: mirai__wbuf and mirai__rbuf -------------------- */

/* Everything written reads back, in order, to the last byte. */
static void
test_wbuf_rbuf_roundtrip(void **state)
{
	mirai__wbuf w = {NULL, 0, 0, 0};
	char *longs = make_name(70000);
	char *got   = (char *) xmalloc(70000);
	mirai__rbuf r;
	char small[8];

	longs[69999] = '\0';
	mirai__w_u8(&w, 0xab);
	mirai__w_u32(&w, 0x01020304u);
	mirai__w_u64(&w, 0x0102030405060708ull);
	mirai__w_str(&w, NULL);
	mirai__w_str(&w, "");
	mirai__w_str(&w, "tcp://node01:5555");
	/* Longer than a u16 length: cut to 65535 bytes. */
	mirai__w_str(&w, longs);
	/* Enough writes to grow the buffer several times. */
	for (uint32_t i = 0; i < 1000; i++) {
		mirai__w_u32(&w, i);
	}
	assert_int_equal(w.failed, 0);
	assert_int_equal(w.len, 1 + 4 + 8 + 2 + 2 + 19 + 2 + 65535 + 4000);
	assert_true(w.cap >= w.len);
	/* Byte layout: little-endian, strings as u16 length + bytes. */
	assert_memory_equal(w.p, "\xab\x04\x03\x02\x01", 5);

	r.p      = exact(w.p, w.len);
	r.end    = r.p + w.len;
	r.failed = 0;
	assert_int_equal(mirai__r_u8(&r), 0xab);
	assert_int_equal(mirai__r_u32(&r), 0x01020304u);
	assert_int_equal(mirai__r_u64(&r), 0x0102030405060708ull);
	mirai__r_str(&r, small, sizeof small);
	assert_string_equal(small, "");
	mirai__r_str(&r, small, sizeof small);
	assert_string_equal(small, "");
	/* Cut to fit the caller's buffer, NUL included. */
	mirai__r_str(&r, small, sizeof small);
	assert_string_equal(small, "tcp://n");
	mirai__r_str(&r, got, 70000);
	assert_int_equal(strlen(got), 65535);
	assert_memory_equal(got, longs, 65535);
	for (uint32_t i = 0; i < 1000; i++) {
		assert_int_equal(mirai__r_u32(&r), i);
	}
	assert_int_equal(r.failed, 0);
	assert_ptr_equal(r.p, r.end);
	free((void *) (r.end - w.len));
	free(got);
	free(longs);
	free(w.p);
}

/* Once a write failed, the buffer takes nothing more. */
static void
test_wbuf_failed_is_sticky(void **state)
{
	mirai__wbuf w = {NULL, 0, 0, 0};

	mirai__w_u32(&w, 1);
	w.failed = 1;
	mirai__w_u8(&w, 2);
	mirai__w_u32(&w, 3);
	mirai__w_u64(&w, 4);
	mirai__w_str(&w, "five");
	assert_int_equal(w.len, 4);
	assert_int_equal(w.failed, 1);
	free(w.p);
}

/*
 * Each reader on too few bytes: it returns 0 (or ""), sets failed and
 * moves nothing; and once failed, even a read that would fit gives 0.
 */
static void
test_rbuf_bounds(void **state)
{
	enum { U8, U32, U64, STR };
	static const struct {
		const char *name;
		int what;
		size_t len;
		uint8_t bytes[8];
		int fails;
	} rows[] = {
		{"u8 from nothing", U8, 0, {0}, 1},
		{"u8", U8, 1, {7}, 0},
		{"u32 from 3 bytes", U32, 3, {1, 2, 3}, 1},
		{"u32", U32, 4, {1, 0, 0, 0}, 0},
		{"u64 from 7 bytes", U64, 7, {1, 2, 3, 4, 5, 6, 7}, 1},
		{"u64", U64, 8, {1}, 0},
		{"string length cut", STR, 1, {3}, 1},
		{"string cut", STR, 4, {3, 0, 'a', 'b'}, 1},
		{"string length 0xffff", STR, 4, {0xff, 0xff, 'a', 'b'}, 1},
		{"string", STR, 5, {3, 0, 'a', 'b', 'c'}, 0},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		uint8_t *b = exact(rows[i].bytes, rows[i].len);
		mirai__rbuf r = {b, b + rows[i].len, 0};
		char s[8] = "junk";
		uint64_t v = 0;

		switch (rows[i].what) {
		case U8:
			v = mirai__r_u8(&r);
			break;
		case U32:
			v = mirai__r_u32(&r);
			break;
		case U64:
			v = mirai__r_u64(&r);
			break;
		default:
			mirai__r_str(&r, s, sizeof s);
			break;
		}
		if (r.failed != rows[i].fails) {
			fail_msg("%s: failed is %d", rows[i].name, r.failed);
		}
		if (rows[i].fails) {
			assert_int_equal(v, 0);
			/* Only the string reader touches s. */
			assert_string_equal(
			    s, rows[i].what == STR ? "" : "junk");
		} else {
			assert_ptr_equal(r.p, r.end);
			assert_int_equal(v, rows[i].what == STR ? 0 :
			    rows[i].bytes[0]);
			if (rows[i].what == STR) {
				assert_string_equal(s, "abc");
			}
		}
		/* A failed reader stays failed. */
		r.p = b;
		v   = mirai__r_u8(&r);
		if (rows[i].fails) {
			assert_int_equal(v, 0);
			assert_int_equal(r.failed, 1);
		}
		free(b);
	}
}

/* ---- hash ------------------------------------------------------------- */

/* Published FNV-1a 64 values: the hook hash must match other
 * implementations, not just itself. */
static void
test_hash64(void **state)
{
	static const struct {
		const char *s;
		uint64_t want;
	} rows[] = {
		{"", 0xcbf29ce484222325ull},
		{"a", 0xaf63dc4c8601ec8cull},
		{"foobar", 0x85944171f73967e8ull},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		assert_int_equal(mirai__hash64(rows[i].s), rows[i].want);
	}
	assert_int_not_equal(mirai__hash64("hook.v1"),
	    mirai__hash64("hook.v2"));
}

/* ---- mirai.exec results ----------------------------------------------- */

static void
test_exec_roundtrip(void **state)
{
	static const struct {
		const char *name;
		int status;
		size_t out_len, err_len;
	} rows[] = {
		{"nothing", 0, 0, 0},
		{"stdout only", 1, 6, 0},
		{"stderr only", 2, 0, 5},
		{"both", 137, 3, 4},
		{"negative status", -1, 1, 1},
		{"INT_MIN status", INT_MIN, 0, 0},
		{"INT_MAX status", INT_MAX, 0, 0},
		{"large output", 0, MIB, 64 * 1024},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		size_t out_len = rows[i].out_len, err_len = rows[i].err_len;
		size_t n       = mirai__exec_size(out_len, err_len);
		uint8_t *out   = xmalloc(out_len);
		uint8_t *err   = xmalloc(err_len);
		uint8_t *b     = xmalloc(n);
		mirai_exec_result res;

		/* Output is bytes: NUL among them must survive. */
		fill(out, out_len, (unsigned) i);
		fill(err, err_len, (unsigned) i + 50);
		assert_int_equal(n, 12 + out_len + err_len);
		mirai__exec_encode(
		    b, rows[i].status, out, out_len, err, err_len);
		if (mirai_exec_parse(b, n, &res) != 0) {
			fail_msg("%s: does not parse", rows[i].name);
		}
		assert_int_equal(res.status, rows[i].status);
		assert_int_equal(res.out_len, out_len);
		assert_int_equal(res.err_len, err_len);
		assert_memory_equal(res.out, out, out_len);
		assert_memory_equal(res.err, err, err_len);
		assert_true(inside(res.out, res.out_len, b, n));
		assert_true(inside(res.err, res.err_len, b, n));
		free(b);
		free(err);
		free(out);
	}
}

/*
 * A valid result (status 2, out "abc", err "de": 17 bytes) with one u32
 * field patched, cut or lengthened.  Public API: a failed parse leaves
 * *res as it was.
 */
static void
test_exec_parse_rejects(void **state)
{
	enum { FULL = 17, NONE = -1 };
	static const struct {
		const char *name;
		size_t len;
		int off; /* u32 to patch, NONE: none */
		uint32_t v;
		int want;
	} rows[] = {
		{"empty", 0, NONE, 0, MIRAI_EINVAL},
		{"1 byte", 1, NONE, 0, MIRAI_EINVAL},
		{"11 bytes", 11, NONE, 0, MIRAI_EINVAL},
		{"12 bytes: out cut", 12, NONE, 0, MIRAI_EPROTO},
		{"err length cut", 13, NONE, 0, MIRAI_EPROTO},
		{"err cut", 16, NONE, 0, MIRAI_EPROTO},
		{"one extra byte", 18, NONE, 0, MIRAI_EPROTO},
		{"n_out one past", FULL, 4, 6, MIRAI_EPROTO},
		{"n_out up to the end", FULL, 4, 5, MIRAI_EPROTO},
		{"n_out 0xffffffff", FULL, 4, 0xffffffffu, MIRAI_EPROTO},
		{"n_out 0x80000000", FULL, 4, 0x80000000u, MIRAI_EPROTO},
		{"n_out 0xfffffff4", FULL, 4, 0xfffffff4u, MIRAI_EPROTO},
		{"n_err too big", FULL, 11, 3, MIRAI_EPROTO},
		{"n_err too small", FULL, 11, 1, MIRAI_EPROTO},
		{"n_err 0xffffffff", FULL, 11, 0xffffffffu, MIRAI_EPROTO},
		{"valid", FULL, NONE, 0, 0},
		{"any status", FULL, 0, 0xffffffffu, 0},
	};
	uint8_t good[FULL + 1];

	mirai__exec_encode(good, 2, "abc", 3, "de", 2);
	good[FULL] = 'z';
	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai_exec_result res, before;
		uint8_t raw[FULL + 1], *b;
		int rv;

		memcpy(raw, good, sizeof raw);
		if (rows[i].off != NONE) {
			mirai__put32(raw + rows[i].off, rows[i].v);
		}
		b = exact(raw, rows[i].len);
		memset(&res, 0x5c, sizeof res);
		before = res;
		rv     = mirai_exec_parse(b, rows[i].len, &res);
		if (rv != rows[i].want) {
			fail_msg("%s: %d, not %d", rows[i].name, rv,
			    rows[i].want);
		}
		if (rv != 0) {
			assert_memory_equal(&res, &before, sizeof res);
		} else {
			assert_int_equal(res.out_len, 3);
			assert_memory_equal(res.out, "abc", 3);
			assert_int_equal(res.err_len, 2);
			assert_memory_equal(res.err, "de", 2);
		}
		free(b);
	}
}

static void
test_exec_parse_null(void **state)
{
	uint8_t b[12] = {0};
	mirai_exec_result res;

	assert_int_equal(mirai_exec_parse(NULL, 12, &res), MIRAI_EINVAL);
	assert_int_equal(mirai_exec_parse(NULL, 0, &res), MIRAI_EINVAL);
	assert_int_equal(mirai_exec_parse(b, sizeof b, NULL), MIRAI_EINVAL);
	/* The smallest valid result: status 0 and two empty streams. */
	assert_int_equal(mirai_exec_parse(b, sizeof b, &res), 0);
	assert_int_equal(res.status, 0);
	assert_int_equal(res.out_len, 0);
	assert_int_equal(res.err_len, 0);
}

/* Every cut of a valid result is refused, never read past. */
static void
test_exec_parse_every_cut(void **state)
{
	size_t n   = mirai__exec_size(5, 4);
	uint8_t *b = xmalloc(n);

	mirai__exec_encode(b, 0, "hello", 5, "oops", 4);
	for (size_t cut = 0; cut < n; cut++) {
		uint8_t *p = exact(b, cut);
		mirai_exec_result res;
		int rv = mirai_exec_parse(p, cut, &res);

		if (rv != (cut < 12 ? MIRAI_EINVAL : MIRAI_EPROTO)) {
			fail_msg("cut %zu: %d", cut, rv);
		}
		free(p);
	}
	free(b);
}

/* The status payload: what is written reads back; a cut, a bogus count,
 * trailing bytes and a string running past the end are refused. */
static void
test_status_payload(void **state)
{
	static const mirai__status_row in[2] = {
	    {.url = "ws://node01:5555/abc/0", .url_len = 22, .host = "node01",
		.host_len = 6, .binding = "0-3", .binding_len = 3, .online = 1,
		.instance = 2, .assigned = 7, .complete = 6, .retries = 1,
		.pid = 4242},
	    {.url = "ipc:///tmp/x/1", .url_len = 14, .host = "", .binding = ""},
	};
	mirai__status_head h = {.queued = 5, .running = 1, .completed = 99,
	    .retried = 3, .nrows = 2}, got;
	mirai__status_row *rows;
	mirai__wbuf w = {0};

	(void) state;
	mirai__status_head_encode(&w, &h);
	mirai__status_row_encode(&w, &in[0]);
	mirai__status_row_encode(&w, &in[1]);
	assert_false(w.failed);
	assert_int_equal(mirai__status_decode(w.p, w.len, &got, &rows), 0);
	assert_int_equal(got.queued, 5);
	assert_int_equal(got.completed, 99);
	assert_int_equal(got.nrows, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(rows[i].url_len, in[i].url_len);
		assert_memory_equal(rows[i].url, in[i].url, in[i].url_len);
		assert_int_equal(rows[i].host_len, in[i].host_len);
		assert_int_equal(rows[i].pid, in[i].pid);
		assert_int_equal(rows[i].instance, in[i].instance);
		/* Views into the payload. */
		assert_true((const uint8_t *) rows[i].url >= w.p &&
		    (const uint8_t *) rows[i].url + rows[i].url_len <= w.p + w.len);
	}
	free(rows);
	/* Every cut of the payload is refused. */
	for (size_t cut = 0; cut < w.len; cut++) {
		assert_int_equal(mirai__status_decode(w.p, cut, &got, &rows),
		    MIRAI_EPROTO);
		assert_null(rows);
	}
	/* A byte too many. */
	{
		uint8_t *more = malloc(w.len + 1);
		memcpy(more, w.p, w.len);
		more[w.len] = 0;
		assert_int_equal(mirai__status_decode(more, w.len + 1, &got, &rows),
		    MIRAI_EPROTO);
		free(more);
	}
	/* A row count no payload of this size can hold. */
	mirai__put32(w.p + 32, 0xffffffffu);
	assert_int_equal(mirai__status_decode(w.p, w.len, &got, &rows),
	    MIRAI_EPROTO);
	free(w.p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_golden),
		cmocka_unit_test(test_hdr_roundtrip),
		cmocka_unit_test(test_msg_open_rejects),
		cmocka_unit_test(test_msg_open_null),
		cmocka_unit_test(test_msg_next_types),
		cmocka_unit_test(test_msg_next_nframes),
		cmocka_unit_test(test_msg_next_empty),
		cmocka_unit_test(test_msg_next_length_field),
		cmocka_unit_test(test_msg_next_short_frame_header),
		cmocka_unit_test(test_truncate_every_cut),
		cmocka_unit_test(test_task_golden),
		cmocka_unit_test(test_task_roundtrip),
		cmocka_unit_test(test_task_encode_null_data),
		cmocka_unit_test(test_task_decode_rejects),
		cmocka_unit_test(test_task_decode_cut_body),
		cmocka_unit_test(test_result_golden),
		cmocka_unit_test(test_result_roundtrip),
		cmocka_unit_test(test_result_decode_rejects),
		cmocka_unit_test(test_hello_golden),
		cmocka_unit_test(test_hello_roundtrip),
		cmocka_unit_test(test_hello_decode_rejects),
		cmocka_unit_test(test_hello_truncated_strings),
		cmocka_unit_test(test_frame_hdr_encode),
		cmocka_unit_test(test_u64_frames),
		cmocka_unit_test(test_u32_frames),
		cmocka_unit_test(test_u64_u32_lengths),
		cmocka_unit_test(test_bounce_roundtrip),
		cmocka_unit_test(test_req_roundtrip),
		cmocka_unit_test(test_req_decode_rejects),
		cmocka_unit_test(test_rep_roundtrip),
		cmocka_unit_test(test_rep_decode_rejects),
		cmocka_unit_test(test_wbuf_rbuf_roundtrip),
		cmocka_unit_test(test_wbuf_failed_is_sticky),
		cmocka_unit_test(test_rbuf_bounds),
		cmocka_unit_test(test_hash64),
		cmocka_unit_test(test_exec_roundtrip),
		cmocka_unit_test(test_exec_parse_rejects),
		cmocka_unit_test(test_exec_parse_null),
		cmocka_unit_test(test_exec_parse_every_cut),
		cmocka_unit_test(test_status_payload),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
