/*
 * fuzz_codec.c: hostile bytes against every decoder of the wire format.
 *
 * The input is taken as a message, and every frame in it goes to every
 * frame decoder: TASK, RESULT, HELLO, REQ and REP must refuse a type not
 * their own; the u64 and u32 decoders go by length only (the caller picks
 * them by type) and must refuse any other length.  The body of a BOUNCE
 * frame, after its own frame header, goes to the TASK decoder as the
 * client reads it, and to the codec's bounce reader; a REP payload is
 * read with mirai__rbuf and as a status payload.  The raw input and every RESULT payload also go to
 * mirai_exec_parse().  Beyond "no crash, no read out of bounds" (the
 * sanitizers' part) the target checks that every pointer a decoder returns
 * lies inside the input and that whatever decodes re-encodes to the same
 * bytes, so that a decoder cannot quietly misread a field either.
 *
 * Seeds are in tests/fuzz/corpus/codec/, made once with the library's own
 * encoders and kept as binary files, so that the driver and libFuzzer read
 * the same directory and a seed never changes under a failure being
 * chased:
 *
 *   empty.bin        header only, no frames
 *   hello.bin        one HELLO with all four strings set
 *   task.bin         one TASK (mirai.echo, 5-byte payload)
 *   result.bin       one RESULT with a payload
 *   result-exec.bin  one RESULT whose payload is a mirai.exec result
 *   bounce.bin       one BOUNCE carrying a TASK
 *   all-frames.bin   every frame type in one message, ACKREQ set
 *   control.bin      REQ, REP with a two-row status payload, EXIT with
 *                    flags, GONE
 *   exec.bin         a bare mirai.exec result (for mirai_exec_parse)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/codec.h"
#include "fuzz.h"
#include "mirai.h"

/* The input's bounds, for checking returned pointers. */
static const uint8_t *in_lo, *in_hi;

/* Read every byte of [p, p + n) so that a sanitizer sees a bad range. */
static unsigned
touch(const void *p, size_t n)
{
	const volatile uint8_t *b = p;
	unsigned sum = 0;

	for (size_t i = 0; i < n; i++) {
		sum += b[i];
	}
	return sum;
}

static void
check_range(const void *p, size_t n)
{
	const uint8_t *b = p;

	CHECK(b >= in_lo && b <= in_hi && n <= (size_t) (in_hi - b));
	touch(p, n);
}

static void
check_exec(const uint8_t *data, size_t len)
{
	mirai_exec_result res;
	uint8_t *again;

	if (mirai_exec_parse(data, len, &res) != 0) {
		return;
	}
	check_range(res.out, res.out_len);
	check_range(res.err, res.err_len);
	CHECK(mirai__exec_size(res.out_len, res.err_len) == len);
	again = malloc(len);
	CHECK(again != NULL);
	mirai__exec_encode(again, res.status, res.out, res.out_len, res.err,
	    res.err_len);
	CHECK(memcmp(again, data, len) == 0);
	free(again);
}

/* Re-encode what was decoded and compare with the frame's body: what the
 * decoder skipped (frame flags, reserved bytes) is not compared. */
static void
check_reencode(const mirai__frame *f, uint8_t *frame, size_t size)
{
	CHECK(size >= MIRAI__FRAME_HDR_LEN);
	CHECK(frame[0] == f->type);
	CHECK(mirai__get32(frame + 4) == size - MIRAI__FRAME_HDR_LEN);
	CHECK(size - MIRAI__FRAME_HDR_LEN <= f->len);
	CHECK(memcmp(frame + MIRAI__FRAME_HDR_LEN, f->body,
	          size - MIRAI__FRAME_HDR_LEN) == 0);
	free(frame);
}

static void
check_task(const mirai__frame *f)
{
	mirai__task_view t;
	uint8_t *again;
	size_t size;

	if (mirai__task_decode(f, &t) != 0) {
		return;
	}
	CHECK(f->type == MIRAI__F_TASK);
	CHECK(t.fn_len > 0 && memchr(t.fn, '\0', t.fn_len) == NULL);
	check_range(t.fn, t.fn_len);
	check_range(t.data, t.len);
	CHECK(t.data + t.len == f->body + f->len);
	size  = mirai__task_size(t.fn_len, t.len);
	again = malloc(size);
	CHECK(again != NULL);
	mirai__task_encode(again, &t);
	CHECK(size - MIRAI__FRAME_HDR_LEN == f->len);
	check_reencode(f, again, size);
}

static void
check_result(const mirai__frame *f)
{
	mirai__result_view r;
	uint8_t *again;
	size_t size;

	if (mirai__result_decode(f, &r) != 0) {
		return;
	}
	CHECK(f->type == MIRAI__F_RESULT);
	check_range(r.data, r.len);
	size  = mirai__result_size(r.len);
	again = malloc(size);
	CHECK(again != NULL);
	mirai__result_encode(again, &r);
	CHECK(size - MIRAI__FRAME_HDR_LEN == f->len);
	check_reencode(f, again, size);
	/* The client parses the result of mirai.exec from here. */
	check_exec(r.data, r.len);
}

static void
check_hello(const mirai__frame *f)
{
	mirai__hello_view h;
	uint8_t *again;
	size_t size;

	if (mirai__hello_decode(f, &h) != 0) {
		return;
	}
	CHECK(f->type == MIRAI__F_HELLO);
	check_range(h.host, h.host_len);
	check_range(h.version, h.version_len);
	check_range(h.binding, h.binding_len);
	check_range(h.hook_name, h.hook_name_len);
	/* Bytes after the four strings are allowed (newer peers), so only
	 * the part this version knows is compared. */
	size  = mirai__hello_size(&h);
	again = malloc(size);
	CHECK(again != NULL);
	mirai__hello_encode(again, &h);
	check_reencode(f, again, size);
}

static void
check_u64(const mirai__frame *f)
{
	uint8_t *again;
	uint64_t v;

	if (mirai__u64_frame_decode(f, &v) != 0) {
		CHECK(f->len != 8);
		return;
	}
	CHECK(f->len == 8);
	again = malloc(MIRAI__U64_FRAME_LEN);
	CHECK(again != NULL);
	mirai__u64_frame_encode(again, f->type, v);
	check_reencode(f, again, MIRAI__U64_FRAME_LEN);
}

static void
check_u32(const mirai__frame *f)
{
	uint8_t *again;
	uint32_t v;

	if (mirai__u32_frame_decode(f, &v) != 0) {
		CHECK(f->len != 4);
		return;
	}
	CHECK(f->len == 4);
	again = malloc(MIRAI__U32_FRAME_LEN);
	CHECK(again != NULL);
	mirai__u32_frame_encode(again, f->type, v);
	check_reencode(f, again, MIRAI__U32_FRAME_LEN);
}

static void
check_req(const mirai__frame *f)
{
	mirai__req_view r;
	uint8_t *again;

	if (mirai__req_decode(f, &r) != 0) {
		CHECK(f->type != MIRAI__F_REQ || f->len != 20);
		return;
	}
	CHECK(f->type == MIRAI__F_REQ && f->len == 20);
	again = malloc(MIRAI__REQ_LEN);
	CHECK(again != NULL);
	mirai__req_encode(again, &r);
	check_reencode(f, again, MIRAI__REQ_LEN);
}

/* Read a payload with mirai__rbuf, the kind of each read picked by the
 * payload's own bytes: no read may pass the end, every string comes back
 * NUL-terminated inside its buffer, and a failed reader stays failed. */
static void
walk_rbuf(const uint8_t *p, size_t len)
{
	static const size_t caps[] = {1, 2, 8, 300};
	mirai__rbuf r = {p, p + len, 0};
	char s[300];

	while (!r.failed) {
		const uint8_t *before = r.p;
		unsigned kind         = mirai__r_u8(&r);
		size_t cap;

		switch (kind % 7) {
		case 0:
			mirai__r_u32(&r);
			break;
		case 1:
			mirai__r_u64(&r);
			break;
		case 2:
			mirai__r_u8(&r);
			break;
		default:
			cap = caps[kind % 7 - 3];
			mirai__r_str(&r, s, cap);
			CHECK(strlen(s) < cap);
			break;
		}
		CHECK(r.p >= before && r.p <= r.end);
	}
	CHECK(mirai__r_u64(&r) == 0 && r.failed && r.p <= r.end);
}

/* A REP payload as a status: every view inside the input, and what
 * decodes re-encodes to the same bytes. */
static void
check_status(const uint8_t *p, size_t len)
{
	mirai__status_head h;
	mirai__status_row *rows;
	mirai__wbuf w = {0};

	if (mirai__status_decode(p, len, &h, &rows) != 0) {
		return;
	}
	CHECK(h.nrows <= len / MIRAI__STATUS_ROW_MIN);
	mirai__status_head_encode(&w, &h);
	for (uint32_t i = 0; i < h.nrows; i++) {
		check_range(rows[i].url, rows[i].url_len);
		check_range(rows[i].host, rows[i].host_len);
		check_range(rows[i].binding, rows[i].binding_len);
		mirai__status_row_encode(&w, &rows[i]);
	}
	CHECK(!w.failed && w.len == len && memcmp(w.p, p, len) == 0);
	free(w.p);
	free(rows);
}

static void
check_rep(const mirai__frame *f)
{
	mirai__rep_view r;
	uint8_t *again;
	size_t size;

	if (mirai__rep_decode(f, &r) != 0) {
		return;
	}
	CHECK(f->type == MIRAI__F_REP);
	check_range(r.data, r.len);
	size  = mirai__rep_size(r.len);
	again = malloc(size);
	CHECK(again != NULL);
	mirai__rep_encode(again, &r);
	CHECK(size - MIRAI__FRAME_HDR_LEN == f->len);
	check_reencode(f, again, size);
	walk_rbuf(r.data, r.len);
	check_status(r.data, r.len);
}

/*
 * A BOUNCE body is a whole TASK frame.  The client decodes it as a TASK of
 * the body's length less the inner header, whatever that header says; the
 * inner header's own type and length are tried too, when they fit.
 */
static void
check_bounce(const mirai__frame *f)
{
	mirai__frame inner;
	mirai__task_view t;

	if (f->len < MIRAI__FRAME_HDR_LEN) {
		return;
	}
	inner.type  = MIRAI__F_TASK;
	inner.flags = 0;
	inner.body  = f->body + MIRAI__FRAME_HDR_LEN;
	inner.len   = f->len - MIRAI__FRAME_HDR_LEN;
	if (mirai__task_decode(&inner, &t) == 0) {
		check_range(t.fn, t.fn_len);
		check_range(t.data, t.len);
	}
	/* The codec's own bounce reader: its inner frame fills the bounce
	 * exactly and re-encodes to it. */
	if (mirai__bounce_decode(f, &inner) == 0) {
		CHECK(inner.type == MIRAI__F_TASK &&
		    inner.len == f->len - MIRAI__FRAME_HDR_LEN);
		check_range(inner.body, inner.len);
		if (mirai__task_decode(&inner, &t) == 0) {
			size_t size   = mirai__bounce_size(t.fn_len, t.len);
			uint8_t *again = malloc(size);
			CHECK(again != NULL);
			mirai__bounce_encode(again, &t);
			CHECK(size == MIRAI__FRAME_HDR_LEN + f->len);
			CHECK(memcmp(again + MIRAI__FRAME_HDR_LEN, f->body,
				  f->len) == 0 ||
			    f->body[1] != 0 || f->body[2] != 0 || f->body[3] != 0);
			free(again);
		}
	}
	inner.type = f->body[0];
	inner.len  = mirai__get32(f->body + 4);
	if (inner.len <= f->len - MIRAI__FRAME_HDR_LEN) {
		check_task(&inner);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mirai__reader r;
	mirai__msghdr h;
	mirai__frame f;
	size_t nframes = 0;
	int rv;

	in_lo = data;
	in_hi = data + size;
	check_exec(data, size);

	if ((rv = mirai__msg_open(&r, data, size, &h)) != 0) {
		CHECK(rv == MIRAI_EPROTO || rv == MIRAI_EVERSION);
		return 0;
	}
	CHECK(h.version == MIRAI__PROTO);
	CHECK(r.left == size - MIRAI__HDR_LEN && r.remaining == h.nframes);
	while ((rv = mirai__msg_next(&r, &f)) == 1) {
		nframes++;
		CHECK(nframes <= h.nframes);
		CHECK(f.type >= MIRAI__F_HELLO && f.type <= MIRAI__F_MAX);
		check_range(f.body, f.len);
		/* Every decoder sees every frame; the wrong ones say no. */
		check_task(&f);
		check_result(&f);
		check_hello(&f);
		check_req(&f);
		check_rep(&f);
		check_u64(&f);
		check_u32(&f);
		if (f.type == MIRAI__F_BOUNCE) {
			check_bounce(&f);
		}
	}
	CHECK(rv == 0 || rv == MIRAI_EPROTO);
	if (rv == 0) {
		CHECK(nframes == h.nframes && r.left == 0);
	}
	return 0;
}
