/*
 * pool.c: fixed-size objects carved from 64 KiB blocks.
 *
 * A block is mapped on its own (not malloc'ed: memalign leaves gaps
 * around it) and aligned to its size, so an object finds its block by
 * masking its address; a block is resident only as far as it was used.
 * Each block keeps a free list of its own objects and a count of those in
 * use; blocks with a free object are on a list (list.h) that any of them
 * leaves in O(1).  Emptied blocks are kept for reuse up to
 * MIRAI__POOL_SPARE, then unmapped.  Under AddressSanitizer every object
 * is a calloc of its own, so use after free is still caught.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define BLOCK ((size_t) 64 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#define POOL_PLAIN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_PLAIN 1
#endif
#endif

#ifdef POOL_PLAIN

void *
mirai__pool_get(mirai__pool *p)
{
	return calloc(1, p->size);
}

void
mirai__pool_put(mirai__pool *p, void *o)
{
	(void) p;
	free(o);
}

void
mirai__pool_fini(mirai__pool *p)
{
	(void) p;
}

#else

typedef struct pfree {
	struct pfree *next;
} pfree;

typedef struct mirai__pblock {
	MIRAI__ENTRY(struct mirai__pblock) entry; /* on the pool's room list */
	pfree *free;    /* free objects of this block */
	size_t used;    /* objects handed out */
	size_t carved;  /* objects ever carved (a bump) */
	int on_room;
} pblock;

/* Objects start after the header, 16-byte aligned. */
#define FIRST ((sizeof(pblock) + 15) & ~(size_t) 15)

/* A fresh block: map twice its size and unmap what lies outside the
 * aligned middle. */
static pblock *
block_new(void)
{
	uint8_t *m = mmap(NULL, 2 * BLOCK, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t a;
	size_t head;

	if (m == MAP_FAILED) {
		return NULL;
	}
	a    = ((uintptr_t) m + BLOCK - 1) & ~(uintptr_t) (BLOCK - 1);
	head = (size_t) (a - (uintptr_t) m);
	if (head > 0) {
		munmap(m, head);
	}
	munmap((uint8_t *) a + BLOCK, BLOCK - head);
	return (pblock *) a; /* zero-filled */
}

static void
block_free(pblock *b)
{
	munmap(b, BLOCK);
}

static size_t
per_block(const mirai__pool *p)
{
	return (BLOCK - FIRST) / p->size;
}

static void
room_add(mirai__pool *p, pblock *b)
{
	MIRAI__LIST_PUSH_FRONT(&p->room, b, entry);
	b->on_room = 1;
}

static void
room_remove(mirai__pool *p, pblock *b)
{
	MIRAI__LIST_REMOVE(&p->room, b, entry);
	b->on_room = 0;
}

void *
mirai__pool_get(mirai__pool *p)
{
	pblock *b;
	void *o;

	if (p->size == 0 || p->size > BLOCK - FIRST) {
		return NULL;
	}
	pthread_mutex_lock(&p->mtx);
	if ((b = p->room.head) == NULL) {
		if ((b = block_new()) == NULL) {
			pthread_mutex_unlock(&p->mtx);
			return NULL;
		}
		room_add(p, b);
		p->blocks++;
	} else if (b->used == 0) {
		p->empty--; /* a kept block in use again */
	}
	if (b->free != NULL) {
		o       = b->free;
		b->free = b->free->next;
	} else {
		/* Never-used objects are carved in order, so a new block is
		 * touched only as far as it is used. */
		o = (char *) b + FIRST + b->carved * p->size;
		b->carved++;
	}
	b->used++;
	if (b->free == NULL && b->carved == per_block(p)) {
		room_remove(p, b);
	}
	pthread_mutex_unlock(&p->mtx);
	memset(o, 0, p->size);
	return o;
}

void
mirai__pool_put(mirai__pool *p, void *o)
{
	pblock *b;
	pfree *f = o;

	if (o == NULL) {
		return;
	}
	b = (pblock *) ((uintptr_t) o & ~(uintptr_t) (BLOCK - 1));
	pthread_mutex_lock(&p->mtx);
	f->next = b->free;
	b->free = f;
	b->used--;
	if (!b->on_room) {
		room_add(p, b);
	}
	/* An emptied block stays on the room list for reuse, up to
	 * MIRAI__POOL_SPARE of them; beyond, it goes back. */
	if (b->used == 0) {
		if (p->empty < MIRAI__POOL_SPARE) {
			p->empty++;
		} else {
			room_remove(p, b);
			p->blocks--;
			block_free(b);
		}
	}
	pthread_mutex_unlock(&p->mtx);
}

void
mirai__pool_fini(mirai__pool *p)
{
	pthread_mutex_lock(&p->mtx);
	while (p->room.head != NULL) {
		pblock *b = p->room.head;
		room_remove(p, b);
		p->blocks--;
		block_free(b);
	}
	p->empty = 0;
	pthread_mutex_unlock(&p->mtx);
}

#endif /* POOL_PLAIN */
