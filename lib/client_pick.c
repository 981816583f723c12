/*
 * client_pick.c: the direct scheduler's choice of a peer in O(log n): a
 * tree of minimums over the slots of a profile's peers array, each slot
 * holding its peer's unfinished work, or PICK_NONE when the peer
 * takes no task.  It answers "the first slot at or after this one, going
 * round, that holds the least value": the least-loaded peer, round robin
 * among equals, the same choice a scan of every peer would make.
 *
 * The tree is an array: node 1 is the root, node k has children 2k and
 * 2k + 1, and slot i is the leaf size + i.  Slots past the peers in use
 * hold PICK_NONE.
 */
#include <stdlib.h>

#include "client.h"

static size_t
min2(size_t a, size_t b)
{
	return a < b ? a : b;
}

int
mirai__cl_pick_reserve(picktree *k, size_t n)
{
	size_t size = k->size > 0 ? k->size : 1;
	size_t *t;

	if (n <= k->size) {
		return 0;
	}
	while (size < n) {
		size *= 2;
	}
	if ((t = malloc(2 * size * sizeof *t)) == NULL) {
		return MIRAI_ENOMEM;
	}
	for (size_t i = 0; i < size; i++) {
		t[size + i] = i < k->size ? k->t[k->size + i] : PICK_NONE;
	}
	for (size_t i = size - 1; i >= 1; i--) {
		t[i] = min2(t[2 * i], t[2 * i + 1]);
	}
	free(k->t);
	k->t    = t;
	k->size = size;
	return 0;
}

void
mirai__cl_pick_set(picktree *k, size_t slot, size_t v)
{
	size_t i = k->size + slot;

	if (k->t[i] == v) {
		return;
	}
	k->t[i] = v;
	for (i /= 2; i >= 1; i /= 2) {
		size_t m = min2(k->t[2 * i], k->t[2 * i + 1]);
		if (k->t[i] == m) {
			break; /* nothing above changes */
		}
		k->t[i] = m;
	}
}

size_t
mirai__cl_pick_get(const picktree *k, size_t slot)
{
	return k->t[k->size + slot];
}

/* The first slot at or after start holding v or less, or SIZE_MAX. */
static size_t
first_from(const picktree *k, size_t start, size_t v)
{
	size_t i = k->size + start;

	if (k->t[i] <= v) {
		return start;
	}
	/* Up until a subtree to the right of the path holds v... */
	for (;;) {
		while (i % 2 == 1) {
			i /= 2;
			if (i <= 1) {
				return SIZE_MAX;
			}
		}
		i++;
		if (k->t[i] <= v) {
			break;
		}
	}
	/* ... then down to its leftmost leaf that does. */
	while (i < k->size) {
		i *= 2;
		if (k->t[i] > v) {
			i++;
		}
	}
	return i - k->size;
}

size_t
mirai__cl_pick_first(const picktree *k, size_t start)
{
	size_t least, slot;

	if (k->size == 0 || (least = k->t[1]) == PICK_NONE) {
		return SIZE_MAX;
	}
	if (start < k->size &&
	    (slot = first_from(k, start, least)) != SIZE_MAX) {
		return slot;
	}
	return first_from(k, 0, least);
}

void
mirai__cl_pick_fini(picktree *k)
{
	free(k->t);
	k->t    = NULL;
	k->size = 0;
}
