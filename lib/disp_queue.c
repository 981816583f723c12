/*
 * disp_queue.c: the dispatcher's tasks: the lifetime of a dtask (in and
 * out of the task table, d->tasks), the FIFO of queued tasks, the list of
 * idle slots, and dispatch(), which pairs the two.
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

/* ---- the FIFO and the idle list ----------------------------------------- */

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

void
mirai__d_idle_push(mirai_dispatcher *d, slot *sl)
{
	if (sl->idle || !sl->online || sl->leaving || sl->exit_sent) {
		return;
	}
	sl->idle      = 1;
	sl->idle_next = NULL;
	if (d->idle_tail != NULL) {
		d->idle_tail->idle_next = sl;
	} else {
		d->idle_head = sl;
	}
	d->idle_tail = sl;
}

void
mirai__d_idle_remove(mirai_dispatcher *d, slot *sl)
{
	slot **pp = &d->idle_head, *prev = NULL;

	if (!sl->idle) {
		return;
	}
	while (*pp != NULL && *pp != sl) {
		prev = *pp;
		pp   = &(*pp)->idle_next;
	}
	if (*pp == sl) {
		*pp = sl->idle_next;
		if (d->idle_tail == sl) {
			d->idle_tail = prev;
		}
	}
	sl->idle      = 0;
	sl->idle_next = NULL;
}

/* ---- dispatching ------------------------------------------------------- */

/* Pair queued tasks with idle servers.  Called locked. */
void
mirai__d_dispatch(mirai_dispatcher *d)
{
	while (d->qlen > 0 && d->idle_head != NULL && !d->closing) {
		slot *sl = d->idle_head;
		dtask *t = mirai__d_q_pop(d);

		if (t == NULL) {
			break;
		}
		mirai__d_idle_remove(d, sl);
		if (mirai__d_send_task(d, sl, t) != 0) {
			/* Out of memory: put both back and wait for an event. */
			mirai__d_q_push(d, t, 1);
			mirai__d_idle_push(d, sl);
			MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "out of memory dispatching");
			return;
		}
		sl->busy = t;
		sl->assigned++;
	}
}
