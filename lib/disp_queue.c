/*
 * disp_queue.c: the dispatcher's tasks: the lifetime of a dtask (in and
 * out of the task table, d->tasks), the FIFO of queued tasks, the lists
 * of slots ready for a task (idle, and with prefetch those with room), the
 * tasks each slot holds, and dispatch(), which pairs queue and slots.
 */
#include <stdlib.h>
#include <string.h>

#include "dispatcher.h"

/* ---- dtask lifetime ----------------------------------------------------- */

void
mirai__d_dtask_free(mirai_dispatcher *d, dtask *t)
{
	mirai__idmap_del(&d->tasks, t);
	if (t->big && mirai__d_msg_of(t) != NULL) {
		mirai__msg_free(mirai__d_msg_of(t));
	}
	free(t);
}

/* ---- the FIFO ----------------------------------------------------------- */

void
mirai__d_q_push(mirai_dispatcher *d, dtask *t, int front)
{
	t->queued = 1;
	if (front) {
		t->next = d->head;
		d->head = t;
		if (d->tail == NULL) {
			d->tail = t;
		}
	} else {
		t->next = NULL;
		if (d->tail != NULL) {
			d->tail->next = t;
		} else {
			d->head = t;
		}
		d->tail = t;
	}
	d->qlen++;
}

/* The head of the FIFO, freeing tasks dropped while they waited. */
dtask *
mirai__d_q_pop(mirai_dispatcher *d)
{
	dtask *t;

	while ((t = d->head) != NULL) {
		d->head = t->next;
		if (d->head == NULL) {
			d->tail = NULL;
		}
		t->next   = NULL;
		t->queued = 0;
		if (!t->dropped) {
			d->qlen--;
			return t;
		}
		free(t);
	}
	return NULL;
}

/* Drop a queued task: out of the table and the count now, out of the
 * FIFO when reached. */
void
mirai__d_q_drop(mirai_dispatcher *d, dtask *t)
{
	mirai__idmap_del(&d->tasks, t);
	if (t->big && mirai__d_msg_of(t) != NULL) {
		mirai__msg_free(mirai__d_msg_of(t));
		mirai__d_set_msg(t, NULL);
	}
	t->dropped = 1;
	d->qlen--;
}

/* Queue t right behind prev, a queued task. */
void
mirai__d_q_push_after(mirai_dispatcher *d, dtask *prev, dtask *t)
{
	t->queued  = 1;
	t->next    = prev->next;
	prev->next = t;
	if (d->tail == prev) {
		d->tail = t;
	}
	d->qlen++;
}

/* Queue list (linked by next, oldest first) at the head, in its order. */
void
mirai__d_q_push_list(mirai_dispatcher *d, dtask *list)
{
	dtask *last = NULL;

	if (list == NULL) {
		return;
	}
	for (dtask *t = list; t != NULL; t = t->next) {
		t->queued = 1;
		d->qlen++;
		last = t;
	}
	last->next = d->head;
	d->head    = list;
	if (d->tail == NULL) {
		d->tail = last;
	}
}

/* ---- servers ready for a task ------------------------------------------- */

uint32_t
mirai__d_slot_cap(const mirai_dispatcher *d, const slot *sl)
{
	uint64_t done, left;

	if (sl->max_tasks == 0) {
		return d->cap;
	}
	/* The server counts the tasks it ran; each result here is one of
	 * those, but for a task cancelled before it started, which it does
	 * not count.  When only such results stand between the count and
	 * the limit, one task goes: if the server is done, it bounces it. */
	done = sl->complete;
	left = sl->max_tasks > done ? sl->max_tasks - done : 0;
	if (left == 0) {
		return done - sl->unsure < sl->max_tasks ? 1 : 0;
	}
	return left < d->cap ? (uint32_t) left : d->cap;
}

void
mirai__d_unready(mirai_dispatcher *d, slot *sl)
{
	if (sl->ready == SLOT_IDLE) {
		MIRAI__LIST_REMOVE(&d->idle, sl, ready_entry);
	} else if (sl->ready == SLOT_ROOM) {
		MIRAI__LIST_REMOVE(&d->room, sl, ready_entry);
	}
	sl->ready = 0;
}

void
mirai__d_ready(mirai_dispatcher *d, slot *sl)
{
	int want = 0;

	if (sl->online && !sl->leaving && !sl->exit_sent &&
	    sl->nheld < mirai__d_slot_cap(d, sl)) {
		want = sl->nheld == 0 ? SLOT_IDLE : SLOT_ROOM;
	}
	if (want == sl->ready) {
		return;
	}
	mirai__d_unready(d, sl);
	if (want == SLOT_IDLE) {
		MIRAI__LIST_PUSH_BACK(&d->idle, sl, ready_entry);
	} else if (want == SLOT_ROOM) {
		MIRAI__LIST_PUSH_BACK(&d->room, sl, ready_entry);
	}
	sl->ready = want;
}

/* ---- the tasks a server holds ------------------------------------------- */

void
mirai__d_held_push(slot *sl, dtask *t)
{
	t->next = NULL;
	if (sl->held_tail != NULL) {
		sl->held_tail->next = t;
	} else {
		sl->held = t;
	}
	sl->held_tail = t;
	sl->nheld++;
	t->held_at = (unsigned) sl->idx + 1;
}

void
mirai__d_held_take(slot *sl, dtask *prev, dtask *t)
{
	if (prev != NULL) {
		prev->next = t->next;
	} else {
		sl->held = t->next;
	}
	if (sl->held_tail == t) {
		sl->held_tail = prev;
	}
	t->next    = NULL;
	t->held_at = 0;
	sl->nheld--;
}

dtask *
mirai__d_held_take_all(slot *sl)
{
	dtask *list = sl->held;

	/* At most 1 + prefetch of them. */
	for (dtask *t = list; t != NULL; t = t->next) {
		t->held_at = 0;
	}
	sl->held = sl->held_tail = NULL;
	sl->nheld = 0;
	return list;
}

slot *
mirai__d_held_by(mirai_dispatcher *d, const dtask *t)
{
	return t->held_at != 0 ? &d->slots[t->held_at - 1] : NULL;
}

/* ---- dispatching ------------------------------------------------------- */

/* Pair queued tasks with servers: idle ones first, the longest idle
 * first; then, with prefetch, those with room, in turn.  Called locked. */
void
mirai__d_dispatch(mirai_dispatcher *d)
{
	while (d->qlen > 0 && !d->closing) {
		slot *sl = d->idle.head != NULL ? d->idle.head : d->room.head;
		dtask *t;

		if (sl == NULL || (t = mirai__d_q_pop(d)) == NULL) {
			break;
		}
		mirai__d_unready(d, sl);
		if (mirai__d_send_task(d, sl, t) != 0) {
			/* Out of memory: put both back and wait for an event. */
			mirai__d_q_push(d, t, 1);
			mirai__d_ready(d, sl);
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "out of memory dispatching");
			return;
		}
		mirai__d_held_push(sl, t);
		sl->assigned++;
		/* To the back of its list, if it has room left. */
		mirai__d_ready(d, sl);
	}
}
