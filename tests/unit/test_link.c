/*
 * test_link.c: unit tests of the outgoing frame queue in lib/link.c:
 * frames, queue order, and packing frames into messages.
 *
 * Packed messages are read back with the codec's own reader and every
 * frame is compared with a fresh copy of what was queued, so a test fails
 * when a frame is lost, cut, reordered or miscounted in the header.
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <nng/nng.h>

#include "../../lib/internal.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define BIG MIRAI__BIG_FRAME
#define CAP MIRAI__PACK_CAP

/* ---- allocation failures ---------------------------------------------- */

/*
 * The library objects are linked into this program, so the transport's
 * calls to nng_msg_alloc() come here first; setting fail_msg_alloc makes the next
 * ones fail as if memory ran out.  Otherwise NNG's own function runs.
 */
static int fail_msg_alloc;

int
nng_msg_alloc(nng_msg **msgp, size_t size)
{
	static int (*real)(nng_msg **, size_t);

	if (fail_msg_alloc) {
		return NNG_ENOMEM;
	}
	if (real == NULL) {
		real = (int (*)(nng_msg **, size_t)) dlsym(
		    RTLD_NEXT, "nng_msg_alloc");
		if (real == NULL) {
			abort();
		}
	}
	return real(msgp, size);
}

/* ---- frames with known contents --------------------------------------- */

/*
 * Frame i of size bytes: a TASK with id i and a payload made from i when
 * the size allows one, else an EXIT frame whose body is made from i (the
 * reader takes any body length; only the bytes matter here).  size must be
 * at least a frame header.
 */
static void
write_frame(uint8_t *dst, size_t i, size_t size)
{
	size_t fixed = mirai__task_size(1, 0);
	uint8_t *body;
	size_t n;

	assert_true(size >= MIRAI__FRAME_HDR_LEN);
	if (size >= fixed) {
		mirai__task_view t = {.id = i, .fn = "f", .fn_len = 1,
		    .data = NULL, .len = size - fixed};
		mirai__task_encode(dst, &t);
		body = dst + fixed;
		n    = size - fixed;
	} else {
		mirai__frame_hdr_encode(dst, MIRAI__F_EXIT,
		    (uint32_t) (size - MIRAI__FRAME_HDR_LEN));
		body = dst + MIRAI__FRAME_HDR_LEN;
		n    = size - MIRAI__FRAME_HDR_LEN;
	}
	for (size_t k = 0; k < n; k++) {
		body[k] = (uint8_t) (i * 31u + k * 7u + (k >> 8));
	}
}

/* A queued frame: frame i of size bytes, owner i + 1 (never NULL). */
static mirai__out *
make_out(size_t i, size_t size)
{
	mirai__out *o = mirai__out_new(size);

	assert_non_null(o);
	write_frame(mirai__out_frame(o), i, size);
	o->owner = (void *) (uintptr_t) (i + 1);
	return o;
}

/* f must be frame i of size bytes, byte for byte. */
static void
check_frame(const mirai__frame *f, size_t i, size_t size)
{
	uint8_t *want = malloc(size);

	assert_non_null(want);
	write_frame(want, i, size);
	assert_int_equal(f->len + MIRAI__FRAME_HDR_LEN, size);
	assert_int_equal(f->type, want[0]);
	assert_memory_equal(f->body, want + MIRAI__FRAME_HDR_LEN, f->len);
	if (f->type == MIRAI__F_TASK) {
		mirai__task_view t;
		assert_int_equal(mirai__task_decode(f, &t), 0);
		assert_int_equal(t.id, i);
	}
	free(want);
}

/* Head to tail and back again must give want[0..n), and count must be n. */
static void
check_queue(const mirai__outq *q, const mirai__out *const *want, size_t n)
{
	const mirai__out *o = q->head;
	size_t k;

	assert_int_equal(q->count, n);
	for (k = 0; k < n; k++, o = o->entry.next) {
		assert_ptr_equal(o, want[k]);
		assert_ptr_equal(o->entry.prev, k == 0 ? NULL : want[k - 1]);
	}
	assert_null(o);
	assert_ptr_equal(q->tail, n == 0 ? NULL : want[n - 1]);
	if (n == 0) {
		assert_null(q->head);
	}
}

/* ---- frames ----------------------------------------------------------- */

static void
test_out_new(void **state)
{
	static const size_t sizes[] = {0, 1, MIRAI__FRAME_HDR_LEN, 1000,
	    BIG - 1, BIG, BIG + 1, 4 * 1024 * 1024};

	for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
		mirai__out *o = mirai__out_new(sizes[i]);
		uint8_t *p;

		assert_non_null(o);
		assert_int_equal(o->len, sizes[i]);
		assert_null(o->entry.next);
		assert_null(o->entry.prev);
		assert_null(o->owner);
		p = mirai__out_frame(o);
		assert_non_null(p);
		if (sizes[i] < BIG) {
			/* Small frames follow the struct. */
			assert_null(o->msg);
			assert_ptr_equal(p, o->data);
		} else {
			/* Big frames are built in their own message, behind
			 * room for its header. */
			assert_non_null(o->msg);
			assert_int_equal(mirai__msg_len(o->msg),
			    MIRAI__HDR_LEN + sizes[i]);
			assert_ptr_equal(p,
			    mirai__msg_body(o->msg) + MIRAI__HDR_LEN);
		}
		/* All of it must be writable (the sanitizers check). */
		memset(p, 0xab, sizes[i]);
		mirai__out_free(o);
	}
	/* Freeing nothing is allowed, as for every *_free. */
	mirai__out_free(NULL);
}

/*
 * Queue operations written as a string: "P3" pushes frame 3, "F3" pushes
 * it at the front, "R3" removes it, "O3" pops and must get frame 3 ("O0":
 * must get NULL).  want is the queue from head to tail afterwards.
 */
static void
test_outq_ops(void **state)
{
	static const struct {
		const char *name;
		const char *ops;
		const char *want;
	} rows[] = {
		{"push keeps order", "P1 P2 P3", "123"},
		{"push_front reverses", "F1 F2 F3", "321"},
		{"push and push_front", "P1 F2 P3 F4", "4213"},
		{"remove the head", "P1 P2 P3 R1", "23"},
		{"remove the middle", "P1 P2 P3 R2", "13"},
		{"remove the tail", "P1 P2 P3 R3", "12"},
		{"remove the only one", "P1 R1", ""},
		{"remove all, tail first", "P1 P2 R2 R1", ""},
		{"pop takes the head", "P1 P2 O1", "2"},
		{"pop until empty", "P1 F2 O2 O1 O0", ""},
		{"pop from empty", "O0 O0", ""},
		{"reuse after emptying", "P1 O1 P2 F3", "32"},
		{"remove, then push both ends", "P1 P2 R1 P3 F4", "423"},
		{"push_front after remove of tail", "P1 P2 R2 F3 P4", "314"},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai__outq q = {NULL, NULL, 0};
		mirai__out *outs[10], *order[10];
		const char *s;
		size_t n = 0, k;

		for (k = 0; k < ARRAY_LEN(outs); k++) {
			outs[k] = make_out(k, MIRAI__FRAME_HDR_LEN);
		}
		for (s = rows[i].ops; *s != '\0'; s++) {
			mirai__out *o;
			if (*s == ' ') {
				continue;
			}
			k = (size_t) (s[1] - '0');
			switch (s[0]) {
			case 'P':
				mirai__outq_push(&q, outs[k]);
				break;
			case 'F':
				mirai__outq_push_front(&q, outs[k]);
				break;
			case 'R':
				mirai__outq_remove(&q, outs[k]);
				assert_null(outs[k]->entry.next);
				assert_null(outs[k]->entry.prev);
				break;
			default:
				o = mirai__outq_pop(&q);
				if (o != (k == 0 ? NULL : outs[k])) {
					fail_msg("%s: popped the wrong frame",
					    rows[i].name);
				}
				if (o != NULL) {
					assert_null(o->entry.next);
					assert_null(o->entry.prev);
				}
				break;
			}
			s++;
		}
		for (s = rows[i].want; *s != '\0'; s++) {
			order[n++] = outs[*s - '0'];
		}
		check_queue(&q, (const mirai__out *const *) order, n);
		/* The frames belong to this test, not to the queue. */
		while (mirai__outq_pop(&q) != NULL) {
		}
		for (k = 0; k < ARRAY_LEN(outs); k++) {
			mirai__out_free(outs[k]);
		}
	}
}

/* Clearing frees every frame, small and big (the leak checkers see). */
static void
test_outq_clear(void **state)
{
	mirai__outq q = {NULL, NULL, 0};

	mirai__outq_clear(&q);
	check_queue(&q, NULL, 0);
	mirai__outq_push(&q, make_out(0, 100));
	mirai__outq_push(&q, make_out(1, BIG));
	mirai__outq_push_front(&q, make_out(2, 8));
	assert_int_equal(q.count, 3);
	mirai__outq_clear(&q);
	check_queue(&q, NULL, 0);
}

/* ---- packing ---------------------------------------------------------- */

/* What the each() callback saw. */
typedef struct seen {
	const size_t *sizes;
	size_t next;    /* index of the frame it must see next */
	size_t calls;
	mirai__out *kept[8]; /* with keep set: the frames it kept */
	int keep;
} seen;

static int
on_each(void *ctx, mirai__out *o)
{
	seen *s = ctx;

	/* Each frame once, in queue order, out of the queue already. */
	assert_ptr_equal(o->owner, (void *) (uintptr_t) (s->next + 1));
	assert_int_equal(o->len, s->sizes[s->next]);
	assert_null(o->entry.next);
	assert_null(o->entry.prev);
	s->next++;
	s->calls++;
	if (s->keep && o->msg == NULL && s->calls <= 8) {
		s->kept[s->calls - 1] = o;
		return 1;
	}
	return 0;
}

/* mirai__outq_pack(), checking that h comes back as it went but for
 * nframes: the caller's seq and ack must reach the wire as given. */
static int
pack(mirai__outq *q, mirai__msghdr *h, mirai__msg **msgp,
    int (*each)(void *ctx, mirai__out *o), void *ctx)
{
	mirai__msghdr before = *h;
	int rv = mirai__outq_pack(q, h, msgp, each, ctx);

	assert_int_equal(h->flags, before.flags);
	assert_int_equal(h->seq, before.seq);
	assert_int_equal(h->ack, before.ack);
	return rv;
}

/*
 * Read msg back: a header with h's flags, seq and ack and want frames,
 * which must be frames first, first + 1, ... of the given sizes.
 */
static void
check_packed(mirai__msg *msg, const mirai__msghdr *h, size_t want,
    size_t first, const size_t *sizes)
{
	mirai__reader r;
	mirai__msghdr got;
	mirai__frame f;
	size_t total = 0, k;

	for (k = 0; k < want; k++) {
		total += sizes[first + k];
	}
	assert_int_equal(mirai__msg_len(msg), MIRAI__HDR_LEN + total);
	assert_int_equal(mirai__msg_open(&r, mirai__msg_body(msg),
	    mirai__msg_len(msg), &got), 0);
	assert_int_equal(got.nframes, want);
	assert_int_equal(got.flags, h->flags);
	assert_int_equal(got.seq, h->seq);
	assert_int_equal(got.ack, h->ack);
	for (k = 0; k < want; k++) {
		assert_int_equal(mirai__msg_next(&r, &f), 1);
		check_frame(&f, first + k, sizes[first + k]);
	}
	assert_int_equal(mirai__msg_next(&r, &f), 0);
}

/*
 * Queues given as runs of frames of one size, packed until empty; msgs is
 * how many frames each message must carry.  Small frames share a message
 * up to MIRAI__PACK_CAP bytes of frames; a big frame travels alone.
 */
static void
test_pack(void **state)
{
	static const struct {
		const char *name;
		struct {
			size_t count, size;
		} runs[4];
		size_t msgs[6]; /* 0 ends the list */
	} rows[] = {
		{"one small frame", {{1, 16}}, {1}},
		{"small frames of all sizes", {{1, 8}, {1, 16}, {1, 35},
		    {1, 1000}}, {4}},
		{"exactly the cap", {{16, CAP / 16}}, {16}},
		{"one over the cap", {{17, CAP / 16}}, {16, 1}},
		{"largest small frames", {{3, BIG - 1}}, {1, 1, 1}},
		{"many tiny frames", {{CAP / 8 + 5, 8}}, {CAP / 8, 5}},
		{"small, big, small", {{2, 100}, {1, BIG}, {1, 100}},
		    {2, 1, 1}},
		{"big first", {{1, BIG}, {3, 50}}, {1, 3}},
		{"big frames in a row", {{3, BIG + 1}}, {1, 1, 1}},
		{"big after a full message", {{17, CAP / 16}, {1, 2 * BIG}},
		    {16, 1, 1}},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai__outq q = {NULL, NULL, 0};
		size_t total = 0, k, idx = 0, m = 0;
		seen s = {.sizes = NULL};
		size_t *sizes;

		for (k = 0; k < ARRAY_LEN(rows[i].runs); k++) {
			total += rows[i].runs[k].count;
		}
		sizes = malloc(total * sizeof *sizes);
		assert_non_null(sizes);
		for (k = 0; k < ARRAY_LEN(rows[i].runs); k++) {
			for (size_t c = 0; c < rows[i].runs[k].count; c++) {
				sizes[idx] = rows[i].runs[k].size;
				mirai__outq_push(&q, make_out(idx, sizes[idx]));
				idx++;
			}
		}
		s.sizes = sizes;
		while (q.count > 0) {
			mirai__msghdr h = {.flags = MIRAI__M_ACKREQ,
			    .nframes = 0xbeef, .seq = (uint32_t) m + 1,
			    .ack = 99};
			size_t first = s.next;
			mirai__msg *msg = NULL;

			assert_true(m < ARRAY_LEN(rows[i].msgs));
			assert_int_equal(pack(&q, &h, &msg, on_each, &s), 0);
			if (h.nframes != rows[i].msgs[m] ||
			    s.next - first != rows[i].msgs[m]) {
				fail_msg("%s: message %zu has %u frames, "
				         "not %zu",
				    rows[i].name, m, (unsigned) h.nframes,
				    rows[i].msgs[m]);
			}
			check_packed(msg, &h, h.nframes, first, sizes);
			assert_int_equal(q.count, total - s.next);
			mirai__msg_free(msg);
			m++;
		}
		/* No message fewer or more than the row says. */
		assert_true(m == ARRAY_LEN(rows[i].msgs) ||
		    rows[i].msgs[m] == 0);
		assert_int_equal(s.calls, total);
		check_queue(&q, NULL, 0);
		free(sizes);
	}
}

/* An empty queue gives a header-only message and no callback. */
static void
test_pack_empty(void **state)
{
	mirai__outq q = {NULL, NULL, 0};
	mirai__msghdr h = {.flags = 0, .nframes = 7, .seq = 5, .ack = 4};
	seen s = {.sizes = NULL};
	mirai__msg *msg = NULL;

	assert_int_equal(pack(&q, &h, &msg, on_each, &s), 0);
	assert_non_null(msg);
	assert_int_equal(h.nframes, 0);
	assert_int_equal(s.calls, 0);
	check_packed(msg, &h, 0, 0, NULL);
	mirai__msg_free(msg);
}

/* A big frame leaves in the very message it was built in: no copy. */
static void
test_pack_big_in_place(void **state)
{
	static const size_t sizes[] = {BIG, 3 * BIG + 5};

	for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
		mirai__outq q = {NULL, NULL, 0};
		mirai__msghdr h = {.seq = 1};
		mirai__out *o = make_out(0, sizes[i]);
		mirai__msg *built = o->msg, *msg = NULL;

		mirai__outq_push(&q, o);
		mirai__outq_push(&q, make_out(1, 40));
		assert_int_equal(pack(&q, &h, &msg, NULL, NULL), 0);
		assert_ptr_equal(msg, built);
		assert_int_equal(h.nframes, 1);
		check_packed(msg, &h, 1, 0, sizes + i);
		mirai__msg_free(msg);
		assert_int_equal(q.count, 1);
		mirai__outq_clear(&q);
	}
}

/* The server packs without a callback. */
static void
test_pack_no_callback(void **state)
{
	static const size_t sizes[] = {20, 30, BIG};
	mirai__outq q = {NULL, NULL, 0};
	mirai__msghdr h = {.seq = 3};
	mirai__msg *msg;

	for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
		mirai__outq_push(&q, make_out(i, sizes[i]));
	}
	assert_int_equal(pack(&q, &h, &msg, NULL, NULL), 0);
	check_packed(msg, &h, 2, 0, sizes);
	mirai__msg_free(msg);
	assert_int_equal(pack(&q, &h, &msg, NULL, NULL), 0);
	check_packed(msg, &h, 1, 2, sizes);
	mirai__msg_free(msg);
	check_queue(&q, NULL, 0);
}

/*
 * Out of memory: pack returns MIRAI_ENOMEM with the queue as it was and no
 * callback run, so that the caller can try again later.  A big frame at
 * the head needs no allocation and still goes; a new big frame cannot be
 * made.
 */
static void
test_pack_enomem(void **state)
{
	mirai__outq q = {NULL, NULL, 0};
	mirai__msghdr h = {.seq = 1};
	mirai__out *order[3], *big;
	seen s = {.sizes = NULL};
	size_t sizes[4] = {10, 20, 30, BIG};
	mirai__msg *msg, *sentinel = (mirai__msg *) &h;

	big = make_out(3, BIG);
	for (size_t i = 0; i < 3; i++) {
		order[i] = make_out(i, sizes[i]);
		mirai__outq_push(&q, order[i]);
	}
	s.sizes = sizes;

	fail_msg_alloc = 1;
	msg            = sentinel;
	assert_int_equal(pack(&q, &h, &msg, on_each, &s), MIRAI_ENOMEM);
	assert_ptr_equal(msg, sentinel);
	assert_int_equal(s.calls, 0);
	check_queue(&q, (const mirai__out *const *) order, 3);
	assert_null(mirai__out_new(BIG));
	assert_null(mirai__out_new(4 * BIG));

	/* The queued big frame went out all the same. */
	mirai__outq_push_front(&q, big);
	s.next = 3;
	assert_int_equal(pack(&q, &h, &msg, on_each, &s), 0);
	fail_msg_alloc = 0;
	check_packed(msg, &h, 1, 3, sizes);
	mirai__msg_free(msg);
	check_queue(&q, (const mirai__out *const *) order, 3);

	s.next = 0;
	assert_int_equal(pack(&q, &h, &msg, on_each, &s), 0);
	check_packed(msg, &h, 3, 0, sizes);
	mirai__msg_free(msg);
	assert_int_equal(s.calls, 4);
	check_queue(&q, NULL, 0);
}

/* A callback may keep small frames: they outlive the pack, intact. */
static void
test_pack_keep(void **state)
{
	static const size_t sizes[] = {20, 30, 40};
	mirai__outq q = {NULL, NULL, 0};
	mirai__msghdr h = {.seq = 5};
	seen s = {.sizes = sizes, .keep = 1};
	mirai__msg *msg;

	for (size_t i = 0; i < 3; i++) {
		mirai__outq_push(&q, make_out(i, sizes[i]));
	}
	assert_int_equal(pack(&q, &h, &msg, on_each, &s), 0);
	check_packed(msg, &h, 3, 0, sizes);
	mirai__msg_free(msg);
	check_queue(&q, NULL, 0);
	for (size_t i = 0; i < 3; i++) {
		mirai__out *want = make_out(i, sizes[i]);
		assert_non_null(s.kept[i]);
		assert_int_equal(s.kept[i]->len, sizes[i]);
		assert_memory_equal(mirai__out_frame(s.kept[i]),
		    mirai__out_frame(want), sizes[i]);
		mirai__out_free(want);
		mirai__out_free(s.kept[i]);
	}
}

static int
reset_failures(void **state)
{
	fail_msg_alloc = 0;
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_out_new),
		cmocka_unit_test(test_outq_ops),
		cmocka_unit_test(test_outq_clear),
		cmocka_unit_test(test_pack),
		cmocka_unit_test(test_pack_empty),
		cmocka_unit_test(test_pack_big_in_place),
		cmocka_unit_test(test_pack_no_callback),
		cmocka_unit_test(test_pack_keep),
		cmocka_unit_test_teardown(test_pack_enomem, reset_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
