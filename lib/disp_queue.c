/*
 * disp_queue.c: the dispatcher's tasks: the task table (id -> dtask),
 * the lifetime of a dtask, the FIFO of queued tasks, the list of idle
 * slots, and dispatch(), which pairs the two.
 */
#include <stdlib.h>
#include <string.h>

#include "dispatcher.h"

/* ---- the task table --------------------------------------------------- */

int
mirai__d_table_put(mirai_dispatcher *d, dtask *t)
{
	if (d->tcount >= d->tcap) {
		size_t cap = d->tcap == 0 ? 1024 : d->tcap * 2;
		dtask **tb = calloc(cap, sizeof *tb);
		if (tb == NULL) {
			return MIRAI_ENOMEM;
		}
		for (size_t i = 0; i < d->tcap; i++) {
			for (dtask *e = d->table[i], *n; e != NULL; e = n) {
				n        = e->hnext;
				e->hnext = tb[e->id & (cap - 1)];
				tb[e->id & (cap - 1)] = e;
			}
		}
		free(d->table);
		d->table = tb;
		d->tcap  = cap;
	}
	t->hnext                        = d->table[t->id & (d->tcap - 1)];
	d->table[t->id & (d->tcap - 1)] = t;
	d->tcount++;
	return 0;
}

dtask *
mirai__d_table_get(mirai_dispatcher *d, uint64_t id)
{
	dtask *t;

	if (d->tcap == 0) {
		return NULL;
	}
	for (t = d->table[id & (d->tcap - 1)]; t != NULL && t->id != id;
	     t = t->hnext) {
	}
	return t;
}

void
mirai__d_table_del(mirai_dispatcher *d, dtask *t)
{
	dtask **pp = &d->table[t->id & (d->tcap - 1)];

	while (*pp != NULL && *pp != t) {
		pp = &(*pp)->hnext;
	}
	if (*pp == t) {
		*pp = t->hnext;
		d->tcount--;
	}
}

void
mirai__d_dtask_free(mirai_dispatcher *d, dtask *t)
{
	mirai__d_table_del(d, t);
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
	mirai__d_table_del(d, t);
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
