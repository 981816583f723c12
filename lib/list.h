/*
 * list.h: the library's one intrusive doubly linked list, for the queues
 * and sets whose members come and go in O(1) anywhere (queues of frames,
 * of tasks, of servers ready for a task, of pipes, of hosts, of blocks).
 *
 * It is <sys/queue.h>'s TAILQ with two differences the library needs:
 *  - a zeroed head is an empty list, so a head may live in a struct that
 *    calloc() makes (or `= {0}` on the stack) with nothing to set up: the
 *    dispatcher, the client's peers and the frame queues are made so by
 *    files that know nothing of their lists;
 *  - the head's two pointers are plain members, head and tail, which code
 *    may read directly (q->head is the first member, NULL when empty).
 * A removed member's links are NULL again.
 *
 * A head is any struct with members `type *head, *tail` (MIRAI__LIST(type)
 * declares one, or a struct can carry more, as mirai__outq its count); a
 * member holds MIRAI__ENTRY(type) under a name of its own for each list it
 * can be on.  The macros evaluate their arguments more than once.
 */
#ifndef MIRAI_LIST_H
#define MIRAI_LIST_H

#include <stddef.h>

#define MIRAI__LIST(type)                                                   \
	struct {                                                            \
		type *head, *tail;                                          \
	}

#define MIRAI__ENTRY(type)                                                  \
	struct {                                                            \
		type *next, *prev;                                          \
	}

/* Member e of list l at its end (push_back) or its start (push_front);
 * f names e's entry. */
#define MIRAI__LIST_PUSH_BACK(l, e, f)                                      \
	do {                                                                \
		(e)->f.next = NULL;                                         \
		(e)->f.prev = (l)->tail;                                    \
		if ((l)->tail != NULL) {                                    \
			(l)->tail->f.next = (e);                            \
		} else {                                                    \
			(l)->head = (e);                                    \
		}                                                           \
		(l)->tail = (e);                                            \
	} while (0)

#define MIRAI__LIST_PUSH_FRONT(l, e, f)                                     \
	do {                                                                \
		(e)->f.prev = NULL;                                         \
		(e)->f.next = (l)->head;                                    \
		if ((l)->head != NULL) {                                    \
			(l)->head->f.prev = (e);                            \
		} else {                                                    \
			(l)->tail = (e);                                    \
		}                                                           \
		(l)->head = (e);                                            \
	} while (0)

/* Member e of l out of it; its links become NULL. */
#define MIRAI__LIST_REMOVE(l, e, f)                                         \
	do {                                                                \
		if ((e)->f.prev != NULL) {                                  \
			(e)->f.prev->f.next = (e)->f.next;                  \
		} else {                                                    \
			(l)->head = (e)->f.next;                            \
		}                                                           \
		if ((e)->f.next != NULL) {                                  \
			(e)->f.next->f.prev = (e)->f.prev;                  \
		} else {                                                    \
			(l)->tail = (e)->f.prev;                            \
		}                                                           \
		(e)->f.next = (e)->f.prev = NULL;                           \
	} while (0)

/* Every member v of l, first to last; the body may remove v (and only
 * v), because nv already holds the one after it. */
#define MIRAI__LIST_EACH(v, nv, l, f)                                       \
	for ((v) = (l)->head; (v) != NULL && ((nv) = (v)->f.next, 1);       \
	     (v) = (nv))

#endif /* MIRAI_LIST_H */
