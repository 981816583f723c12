/*
 * test_idmap.c: unit tests of lib/idmap.c, the intrusive id map that holds
 * the client's task handles and the dispatcher's tasks.
 *
 * Entries put their id and chain pointer at other offsets than the start
 * of the struct, as the real ones do, and every check is made against a
 * plain array of what should be in the map.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/internal.h"

typedef struct ent {
	uint32_t tag;
	struct ent *chain;
	char pad[3];
	uint64_t key;
	int in;              /* whether the test put it in the map */
} ent;

static void
map_init(mirai__idmap *m)
{
	MIRAI__IDMAP_INIT(m, ent, key, chain);
}

/* Every entry of v is found if it is in the map and not otherwise, and the
 * count agrees. */
static void
check_all(const mirai__idmap *m, const ent *v, size_t n)
{
	size_t in = 0;

	for (size_t i = 0; i < n; i++) {
		ent *e = mirai__idmap_get(m, v[i].key);
		if (v[i].in) {
			assert_ptr_equal(e, &v[i]);
			in++;
		} else {
			assert_null(e);
		}
	}
	assert_int_equal(mirai__idmap_count(m), in);
}

static void
test_empty(void **state)
{
	mirai__idmap m;
	ent e = {.key = 7};

	(void) state;
	map_init(&m);
	assert_null(mirai__idmap_get(&m, 0));
	assert_null(mirai__idmap_get(&m, 7));
	mirai__idmap_del(&m, &e); /* nothing to take out, nothing allocated */
	assert_int_equal(mirai__idmap_count(&m), 0);
	mirai__idmap_fini(&m);
	mirai__idmap_fini(&m); /* twice is fine */
}

/* A sequence of operations on ids of a given shape. */
static const struct {
	const char *name;
	uint64_t first, step; /* ids: first + i * step */
	size_t n;
} shapes[] = {
	{"sequential from 1", 1, 1, 5000},
	{"sequential from 0", 0, 1, 3000},
	{"same low 10 bits", 5, 1024, 4000},
	{"same low 32 bits", 9, (uint64_t) 1 << 32, 3000},
	{"only the top bit differs", 3, (uint64_t) 1 << 63, 2},
	{"near UINT64_MAX", UINT64_MAX - 2999, 1, 3000},
	{"odd stride", 1, 2654435761u, 5000},
};

static void
test_shapes(void **state)
{
	(void) state;
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
		size_t n = shapes[s].n;
		ent *v   = calloc(n, sizeof *v);
		mirai__idmap m;

		print_message("%s\n", shapes[s].name);
		assert_non_null(v);
		map_init(&m);
		for (size_t i = 0; i < n; i++) {
			v[i].key = shapes[s].first + i * shapes[s].step;
			v[i].tag = (uint32_t) i;
		}
		/* Insert all, then find all. */
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(mirai__idmap_put(&m, &v[i]), 0);
			v[i].in = 1;
		}
		check_all(&m, v, n);
		/* Remove every third, again (absent now), then the rest
		 * backwards, checking as we go. */
		for (size_t i = 0; i < n; i += 3) {
			mirai__idmap_del(&m, &v[i]);
			v[i].in = 0;
			assert_null(v[i].chain);
		}
		for (size_t i = 0; i < n; i += 3) {
			mirai__idmap_del(&m, &v[i]);
		}
		check_all(&m, v, n);
		for (size_t i = n; i-- > 0;) {
			mirai__idmap_del(&m, &v[i]);
			v[i].in = 0;
			if (i % 97 == 0) {
				check_all(&m, v, n);
			}
		}
		check_all(&m, v, n);
		/* Put back in again after emptying. */
		for (size_t i = 0; i < n; i += 2) {
			assert_int_equal(mirai__idmap_put(&m, &v[i]), 0);
			v[i].in = 1;
		}
		check_all(&m, v, n);
		mirai__idmap_fini(&m);
		free(v);
	}
}

/* 100k ids: the buckets double from 1024 several times (7 doublings),
 * with entries taken out and put back between the doublings. */
static void
test_growth(void **state)
{
	enum { N = 100000 };
	ent *v = calloc(N, sizeof *v);
	mirai__idmap m;

	(void) state;
	assert_non_null(v);
	map_init(&m);
	for (size_t i = 0; i < N; i++) {
		v[i].key = 1000 + i;
		assert_int_equal(mirai__idmap_put(&m, &v[i]), 0);
		v[i].in = 1;
		if (i % 1500 == 0 && i > 0) {
			/* An entry goes and comes back mid-growth. */
			mirai__idmap_del(&m, &v[i / 2]);
			assert_null(mirai__idmap_get(&m, v[i / 2].key));
			assert_int_equal(mirai__idmap_put(&m, &v[i / 2]), 0);
		}
	}
	assert_true(m.cap >= N);
	assert_int_equal(m.cap & (m.cap - 1), 0);
	check_all(&m, v, N);
	assert_null(mirai__idmap_get(&m, 999));
	assert_null(mirai__idmap_get(&m, 1000 + N));
	/* Absent entries (never put, or taken out) leave the map alone. */
	ent stranger = {.key = 1000 + 5};
	mirai__idmap_del(&m, &stranger); /* its id is there, it is not */
	assert_ptr_equal(mirai__idmap_get(&m, 1005), &v[5]);
	for (size_t i = 0; i < N; i += 2) {
		mirai__idmap_del(&m, &v[i]);
		v[i].in = 0;
	}
	for (size_t i = 0; i < N; i += 2) {
		mirai__idmap_del(&m, &v[i]);
	}
	check_all(&m, v, N);
	mirai__idmap_fini(&m);
	assert_int_equal(mirai__idmap_count(&m), 0);
	assert_null(mirai__idmap_get(&m, 1001));
	free(v);
}

/* Ids that share their low bits share a chain: taking one out from the
 * head, the middle or the tail of the chain leaves the others. */
static void
test_collisions(void **state)
{
	enum { N = 64 };
	ent v[N];
	mirai__idmap m;
	static const size_t order[] = {N - 1, 0, N / 2, 1, N - 2, 17};

	(void) state;
	memset(v, 0, sizeof v);
	map_init(&m);
	for (size_t i = 0; i < N; i++) {
		v[i].key = ((uint64_t) i << 40) | 0x2a;
		assert_int_equal(mirai__idmap_put(&m, &v[i]), 0);
		v[i].in = 1;
	}
	check_all(&m, v, N);
	for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
		mirai__idmap_del(&m, &v[order[k]]);
		v[order[k]].in = 0;
		check_all(&m, v, N);
	}
	/* An id in the chain's bucket that is not there. */
	assert_null(mirai__idmap_get(&m, ((uint64_t) N << 40) | 0x2a));
	mirai__idmap_fini(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_shapes),
	    cmocka_unit_test(test_growth),
	    cmocka_unit_test(test_collisions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
