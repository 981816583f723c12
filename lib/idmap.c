/*
 * idmap.c: an intrusive hash map from a uint64_t id to the caller's
 * entries (the client's task handles, the dispatcher's tasks).  Each entry
 * holds its own id and chain pointer, so the map allocates nothing but its
 * bucket array.
 *
 * Ids are taken as they are, low bits for the bucket: the ids in use are
 * handed out in sequence, which spreads them evenly with no hashing.
 * Ids that share their low bits share a chain; that is slower, not wrong.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Buckets of a map's first array; it doubles when the entries reach the
 * bucket count, so chains stay short on average. */
#define IDMAP_FIRST_CAP 1024

/* The entry fields are reached through their offsets with memcpy, which
 * reads them as the caller's own types do whatever the entry type is. */
static uint64_t
id_of(const mirai__idmap *m, const void *e)
{
	uint64_t id;

	memcpy(&id, (const char *) e + m->id_off, sizeof id);
	return id;
}

static void *
next_of(const mirai__idmap *m, const void *e)
{
	void *n;

	memcpy(&n, (const char *) e + m->next_off, sizeof n);
	return n;
}

static void
set_next(const mirai__idmap *m, void *e, void *n)
{
	memcpy((char *) e + m->next_off, &n, sizeof n);
}

void
mirai__idmap_init(mirai__idmap *m, size_t id_off, size_t next_off)
{
	memset(m, 0, sizeof *m);
	m->id_off   = id_off;
	m->next_off = next_off;
}

int
mirai__idmap_put(mirai__idmap *m, void *e)
{
	size_t b;

	if (m->count >= m->cap) {
		size_t cap = m->cap == 0 ? IDMAP_FIRST_CAP : m->cap * 2;
		void **tb  = calloc(cap, sizeof *tb);
		if (tb == NULL) {
			return MIRAI_ENOMEM;
		}
		for (size_t i = 0; i < m->cap; i++) {
			for (void *x = m->b[i], *n; x != NULL; x = n) {
				n = next_of(m, x);
				b = (size_t) (id_of(m, x) & (cap - 1));
				set_next(m, x, tb[b]);
				tb[b] = x;
			}
		}
		free(m->b);
		m->b   = tb;
		m->cap = cap;
	}
	b = (size_t) (id_of(m, e) & (m->cap - 1));
	set_next(m, e, m->b[b]);
	m->b[b] = e;
	m->count++;
	return 0;
}

void *
mirai__idmap_get(const mirai__idmap *m, uint64_t id)
{
	void *e;

	if (m->cap == 0) {
		return NULL;
	}
	for (e = m->b[id & (m->cap - 1)]; e != NULL && id_of(m, e) != id;
	     e = next_of(m, e)) {
	}
	return e;
}

void
mirai__idmap_del(mirai__idmap *m, void *e)
{
	void *prev = NULL, *x;
	size_t b;

	if (m->cap == 0) {
		return;
	}
	b = (size_t) (id_of(m, e) & (m->cap - 1));
	for (x = m->b[b]; x != NULL && x != e; x = next_of(m, x)) {
		prev = x;
	}
	if (x == NULL) {
		return; /* not in the map */
	}
	if (prev == NULL) {
		m->b[b] = next_of(m, e);
	} else {
		set_next(m, prev, next_of(m, e));
	}
	set_next(m, e, NULL);
	m->count--;
}

size_t
mirai__idmap_count(const mirai__idmap *m)
{
	return m->count;
}

void
mirai__idmap_fini(mirai__idmap *m)
{
	free(m->b);
	m->b     = NULL;
	m->cap   = 0;
	m->count = 0;
}
