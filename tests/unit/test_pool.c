/*
 * test_pool.c: unit tests of lib/pool.c, the fixed-size object pool that
 * holds the client's task handles.
 *
 * Every object handed out is filled with a pattern of its own and checked
 * again before it goes back, so two live objects that overlap fail the
 * test.  Block counts are checked only when the pool is not built as
 * plain calloc/free (under AddressSanitizer).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define PLAIN 1
#else
#define PLAIN 0
#endif

#define OBJ 104
#define N 5000 /* several 64 KiB blocks of 104-byte objects */

static void
fill(uint8_t *o, size_t size, uint32_t tag)
{
	for (size_t i = 0; i < size; i++) {
		o[i] = (uint8_t) (tag * 31u + i);
	}
}

static int
intact(const uint8_t *o, size_t size, uint32_t tag)
{
	for (size_t i = 0; i < size; i++) {
		if (o[i] != (uint8_t) (tag * 31u + i)) {
			return 0;
		}
	}
	return 1;
}

static int
zeroed(const uint8_t *o, size_t size)
{
	for (size_t i = 0; i < size; i++) {
		if (o[i] != 0) {
			return 0;
		}
	}
	return 1;
}

/* Objects are zeroed, aligned, distinct; blocks come and go. */
static void
test_get_put(void **state)
{
	static mirai__pool pool = MIRAI__POOL_INIT(OBJ);
	uint8_t **o             = calloc(N, sizeof *o);
	size_t peak;

	(void) state;
	assert_non_null(o);
	assert_int_equal(pool.size, OBJ);
	for (int i = 0; i < N; i++) {
		o[i] = mirai__pool_get(&pool);
		assert_non_null(o[i]);
		assert_true(((uintptr_t) o[i] & 7u) == 0);
		assert_true(zeroed(o[i], OBJ));
		fill(o[i], OBJ, (uint32_t) i);
	}
	peak = pool.blocks;
	if (!PLAIN) {
		/* 64 KiB blocks hold about 600 of them. */
		assert_in_range(peak, N / 640, N / 500 + 1);
	}
	for (int i = 0; i < N; i++) {
		assert_true(intact(o[i], OBJ, (uint32_t) i));
	}
	/* Every other one back, then taken again: reused and zeroed. */
	for (int i = 0; i < N; i += 2) {
		mirai__pool_put(&pool, o[i]);
	}
	for (int i = 0; i < N; i += 2) {
		o[i] = mirai__pool_get(&pool);
		assert_true(zeroed(o[i], OBJ));
		fill(o[i], OBJ, (uint32_t) i);
	}
	assert_int_equal(pool.blocks, peak);
	for (int i = 0; i < N; i++) {
		assert_true(intact(o[i], OBJ, (uint32_t) i));
		mirai__pool_put(&pool, o[i]);
	}
	/* All back: the blocks stay for the next gets (fewer than
	 * MIRAI__POOL_SPARE). */
	assert_int_equal(pool.blocks, PLAIN ? 0 : peak);
	assert_int_equal(pool.empty, PLAIN ? 0 : peak);
	mirai__pool_put(&pool, NULL);
	mirai__pool_fini(&pool);
	assert_int_equal(pool.blocks, 0);
	assert_null(pool.room.head);
	free(o);
}

/* A pool that goes empty, one, empty keeps one block, not a new one each
 * time; emptied blocks are kept up to MIRAI__POOL_SPARE and used again
 * before any new one, and those beyond are given back. */
static void
test_blocks_given_back(void **state)
{
	/* More objects than the kept blocks hold (about 630 a block). */
	enum { M = (MIRAI__POOL_SPARE + 40) * 640 };
	static mirai__pool pool = MIRAI__POOL_INIT(OBJ);
	uint8_t **o             = calloc(M, sizeof *o);

	(void) state;
	assert_non_null(o);
	for (int round = 0; round < 100; round++) {
		void *x = mirai__pool_get(&pool);
		assert_non_null(x);
		mirai__pool_put(&pool, x);
		assert_int_equal(pool.blocks, PLAIN ? 0 : 1);
	}
	for (int i = 0; i < M; i++) {
		assert_non_null(o[i] = mirai__pool_get(&pool));
	}
	if (!PLAIN) {
		assert_true(pool.blocks > MIRAI__POOL_SPARE);
		assert_int_equal(pool.empty, 0);
	}
	/* First in, first out, as tasks mostly finish. */
	for (int i = 0; i < M; i++) {
		mirai__pool_put(&pool, o[i]);
	}
	assert_int_equal(pool.blocks, PLAIN ? 0 : MIRAI__POOL_SPARE);
	assert_int_equal(pool.empty, PLAIN ? 0 : MIRAI__POOL_SPARE);
	/* Taken again: from the kept blocks, zeroed, no new one. */
	for (int i = 0; i < M / 2; i++) {
		assert_non_null(o[i] = mirai__pool_get(&pool));
		assert_true(zeroed(o[i], OBJ));
	}
	assert_int_equal(pool.blocks, PLAIN ? 0 : MIRAI__POOL_SPARE);
	for (int i = 0; i < M / 2; i++) {
		mirai__pool_put(&pool, o[i]);
	}
	assert_int_equal(pool.empty, PLAIN ? 0 : MIRAI__POOL_SPARE);
	mirai__pool_fini(&pool);
	assert_int_equal(pool.blocks, 0);
	assert_int_equal(pool.empty, 0);
	free(o);
}

/* Two threads getting and putting at once never share an object. */
static mirai__pool shared = MIRAI__POOL_INIT(OBJ);

static void *
churn(void *arg)
{
	uint32_t tag = (uint32_t) (uintptr_t) arg;
	uint8_t *o[64];
	int bad = 0;

	for (int round = 0; round < 2000; round++) {
		for (int i = 0; i < 64; i++) {
			if ((o[i] = mirai__pool_get(&shared)) == NULL) {
				return (void *) 1;
			}
			fill(o[i], OBJ, tag + (uint32_t) i);
		}
		for (int i = 0; i < 64; i++) {
			bad |= !intact(o[i], OBJ, tag + (uint32_t) i);
			mirai__pool_put(&shared, o[i]);
		}
	}
	return (void *) (uintptr_t) bad;
}

static void
test_threads(void **state)
{
	pthread_t t[4];
	void *rv;

	(void) state;
	for (uintptr_t i = 0; i < 4; i++) {
		assert_int_equal(pthread_create(&t[i], NULL, churn, (void *) (i * 1000)), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], &rv), 0);
		assert_null(rv);
	}
	assert_int_equal(shared.blocks, PLAIN ? 0 : 1);
	mirai__pool_fini(&shared);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_get_put),
	    cmocka_unit_test(test_blocks_given_back),
	    cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
