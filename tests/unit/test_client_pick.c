/*
 * test_client_pick.c: unit tests of lib/client_pick.c, the tree behind
 * the direct-mode scheduler's choice of a peer: every answer is checked
 * against a plain scan of the slots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/client.h"

/* ---- the tree alone --------------------------------------------------- */

/* The first slot going round from start holding the least value. */
static size_t
scan_first(const size_t *v, size_t n, size_t start)
{
	size_t best = SIZE_MAX, least = PICK_NONE;

	for (size_t k = 0; k < n; k++) {
		size_t i = (start + k) % n;
		if (v[i] < least) {
			least = v[i];
			best  = i;
		}
	}
	return best;
}

static void
test_tree_empty(void **state)
{
	picktree k = {0};

	(void) state;
	assert_int_equal(mirai__cl_pick_first(&k, 0), SIZE_MAX);
	assert_int_equal(mirai__cl_pick_reserve(&k, 1), 0);
	assert_int_equal(mirai__cl_pick_first(&k, 0), SIZE_MAX);
	mirai__cl_pick_set(&k, 0, 5);
	assert_int_equal(mirai__cl_pick_first(&k, 0), 0);
	mirai__cl_pick_set(&k, 0, PICK_NONE);
	assert_int_equal(mirai__cl_pick_first(&k, 0), SIZE_MAX);
	mirai__cl_pick_fini(&k);
	mirai__cl_pick_fini(&k); /* twice is fine */
}

/* Random values on slots of trees of many sizes, grown as they go. */
static void
test_tree_random(void **state)
{
	static const size_t sizes[] = {1, 2, 3, 5, 8, 9, 31, 64, 100, 1000};

	(void) state;
	srand(1);
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		size_t n    = sizes[s];
		size_t *v   = malloc(n * sizeof *v);
		picktree k = {0};

		assert_non_null(v);
		for (size_t i = 0; i < n; i++) {
			v[i] = PICK_NONE;
		}
		/* Grown in two steps, the second keeping what the first
		 * held. */
		assert_int_equal(mirai__cl_pick_reserve(&k, n / 2 + 1), 0);
		for (size_t i = 0; i <= n / 2 && i < n; i++) {
			v[i] = (size_t) rand() % 4;
			mirai__cl_pick_set(&k, i, v[i]);
		}
		assert_int_equal(mirai__cl_pick_reserve(&k, n), 0);
		for (int op = 0; op < 3000; op++) {
			size_t i     = (size_t) rand() % n;
			size_t start = (size_t) rand() % n;
			/* Few distinct values: many ties. */
			v[i] = rand() % 5 ? (size_t) rand() % 4 : PICK_NONE;
			mirai__cl_pick_set(&k, i, v[i]);
			assert_int_equal(mirai__cl_pick_get(&k, i), v[i]);
			assert_int_equal(mirai__cl_pick_first(&k, start),
			    scan_first(v, n, start));
		}
		mirai__cl_pick_fini(&k);
		free(v);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tree_empty),
	    cmocka_unit_test(test_tree_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
