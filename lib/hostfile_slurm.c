/*
 * hostfile_slurm.c: Slurm's grammar.  Owns compressed node lists
 * (tux[01-03,12],login1, several bracket groups in one name) and the tasks
 * per node that go with them (SLURM_TASKS_PER_NODE: 2(x3),1), expanded
 * into the builder of hostfile.c name by name, never into a list the input
 * could make as large as it likes first.  Pure, no I/O.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostfile.h"

/* Digits of a number in a Slurm range: keeps the arithmetic exact. */
#define MAX_DIGITS 9

/* A Slurm range lo-hi, printed with width digits (zero padded). */
typedef struct range {
	unsigned long lo, hi;
	int width;
} range;

/*
 * A piece of a Slurm node name: literal text, then a bracket group made of
 * the ranges r[r0 .. r0 + nr) (none for the last piece).  ri and v are the
 * position of the enumeration in the group.
 */
typedef struct piece {
	const char *lit;
	size_t litlen;
	size_t r0, nr;
	size_t ri;
	unsigned long v;
} piece;

/* One name of a Slurm node list, parsed: rack[1-2]-node[01-02]. */
typedef struct expr {
	const char *text; /* the name as written, for messages */
	size_t len;
	piece *pc;
	size_t npc, pccap;
	range *r;
	size_t nr, rcap;
} expr;

/* Slurm tasks per node, run-length encoded: 2(x3),1. */
typedef struct run {
	int count;
	size_t reps;
} run;

typedef struct tasks {
	run *run;
	size_t nrun, cap;
	size_t total; /* counts, repeats expanded */
	int all;      /* a single value, for every node */
	size_t cur;   /* enumeration: current run and how much of it is used */
	size_t used;
} tasks;

/* ---- Slurm node lists ------------------------------------------------- */

/* A number of a range: 1 to MAX_DIGITS digits; *width is how many. */
static const char *
range_number(const char *p, const char *end, unsigned long *v, int *width)
{
	int d = 0;

	*v = 0;
	while (p < end && is_digit((unsigned char) *p) && d <= MAX_DIGITS) {
		*v = *v * 10 + (unsigned long) (*p - '0');
		p++;
		d++;
	}
	*width = d;
	return d == 0 || d > MAX_DIGITS ? NULL : p;
}

/* The ranges between '[' and ']': 0-5,12,20-25; their size to *count. */
static int
parse_group(builder *b, expr *e, const char *s, const char *end,
    const char *name, size_t nlen, size_t *count)
{
	char q[SHOWN + 4], q2[SHOWN + 4];
	const char *p = s, *item;
	unsigned long lo, hi;
	int width, w2;
	range *r;

	*count = 0;
	for (;;) {
		item = p;
		p    = range_number(p, end, &lo, &width);
		hi   = lo;
		if (p != NULL && p < end && *p == '-') {
			p = range_number(p + 1, end, &hi, &w2);
		}
		if (p == NULL || (p < end && *p != ',')) {
			const char *stop = memchr(item, ',',
			    (size_t) (end - item));
			stop = stop != NULL ? stop : end;
			return mirai__hosts_fail(b,
			    "invalid range '%s' in '%s'",
			    mirai__hosts_shown(q, item, (size_t) (stop - item)),
			    mirai__hosts_shown(q2, name, nlen));
		}
		if (lo > hi) {
			return mirai__hosts_fail(b,
			    "reversed range '%s' in '%s'",
			    mirai__hosts_shown(q, item, (size_t) (p - item)),
			    mirai__hosts_shown(q2, name, nlen));
		}
		if ((r = mirai__hosts_grow(e->r, &e->rcap, e->nr + 1,
		    sizeof *r)) == NULL) {
			return mirai__hosts_nomem(b);
		}
		e->r                = r;
		e->r[e->nr].lo      = lo;
		e->r[e->nr].hi      = hi;
		e->r[e->nr++].width = width;
		*count += hi - lo + 1;
		if (*count > MAX_HOSTS) {
			return mirai__hosts_fail(b,
			    "'%s' expands to more than %d hosts",
			    mirai__hosts_shown(q, name, nlen), MAX_HOSTS);
		}
		if (p == end) {
			return 0;
		}
		p++;
	}
}

/* One name of a node list, brackets matched already; its size to *count. */
static int
parse_expr(builder *b, expr *e, const char *s, size_t n, size_t *count)
{
	const char *end = s + n, *p = s, *open, *close;
	char q[SHOWN + 4], c[8];
	size_t i, gcount;
	piece *pc;
	int rv;

	e->text = s;
	e->len  = n;
	e->npc  = 0;
	e->nr   = 0;
	*count  = 1;
	if (n == 0) {
		return mirai__hosts_fail(b, "empty host name");
	}
	for (;;) {
		if ((pc = mirai__hosts_grow(e->pc, &e->pccap, e->npc + 1,
		    sizeof *pc)) ==
		    NULL) {
			return mirai__hosts_nomem(b);
		}
		e->pc      = pc;
		pc         = &e->pc[e->npc++];
		open       = memchr(p, '[', (size_t) (end - p));
		pc->lit    = p;
		pc->litlen = (size_t) ((open != NULL ? open : end) - p);
		pc->nr     = 0;
		for (i = 0; i < pc->litlen; i++) {
			if (!is_name_char((unsigned char) p[i])) {
				return mirai__hosts_fail(b,
				    "invalid character %s in host "
				    "name '%s'", mirai__hosts_shown_char(c,
				    (unsigned char) p[i]), mirai__hosts_shown(q,
				    s, n));
			}
		}
		if (open == NULL) {
			return 0;
		}
		close  = memchr(open, ']', (size_t) (end - open));
		pc->r0 = e->nr;
		if ((rv = parse_group(b, e, open + 1, close, s, n, &gcount)) !=
		    0) {
			return rv;
		}
		pc->nr = e->nr - pc->r0;
		if (gcount > MAX_HOSTS / *count) {
			return mirai__hosts_fail(b,
			    "'%s' expands to more than %d hosts",
			    mirai__hosts_shown(q, s, n), MAX_HOSTS);
		}
		*count *= gcount;
		p = close + 1;
	}
}

/* The slots of the next node: from the tasks per node, or 1. */
static int
tasks_next(tasks *t)
{
	int v;

	if (t == NULL || t->nrun == 0) {
		return 1;
	}
	if (t->all) {
		return t->run[0].count;
	}
	v = t->run[t->cur].count;
	if (++t->used == t->run[t->cur].reps) {
		t->cur++;
		t->used = 0;
	}
	return v;
}

/*
 * Move e to its next name, stepping the groups like an odometer with the
 * last one fastest; 0 once every name was seen.
 */
static int
step(expr *e)
{
	size_t i;
	piece *pc;

	for (i = e->npc; i-- > 0;) {
		pc = &e->pc[i];
		if (pc->nr == 0) {
			continue;
		}
		if (pc->v < e->r[pc->ri].hi) {
			pc->v++;
			return 1;
		}
		if (pc->ri + 1 < pc->r0 + pc->nr) {
			pc->v = e->r[++pc->ri].lo;
			return 1;
		}
		pc->ri = pc->r0;
		pc->v  = e->r[pc->r0].lo;
	}
	return 0;
}

/* Every name e stands for, in order (the leftmost group varies slowest). */
static int
expand(builder *b, expr *e, tasks *t)
{
	char name[MAX_NAME + 1], num[16], q[SHOWN + 4];
	size_t i, len, k;
	spec h = {"", 0, name, 0, 0};
	piece *pc;
	int rv;

	for (i = 0; i < e->npc; i++) {
		e->pc[i].ri = e->pc[i].r0;
		e->pc[i].v  = e->pc[i].nr > 0 ? e->r[e->pc[i].r0].lo : 0;
	}
	for (;;) {
		len = 0;
		for (i = 0; i < e->npc; i++) {
			pc = &e->pc[i];
			k  = 0;
			if (pc->nr > 0) {
				k = (size_t) snprintf(num, sizeof num, "%0*lu",
				    e->r[pc->ri].width, pc->v);
			}
			if (pc->litlen + k > MAX_NAME - len) {
				return mirai__hosts_fail(b,
				    "'%s' makes host names longer "
				    "than %d characters", mirai__hosts_shown(q,
				    e->text,
				    e->len), MAX_NAME);
			}
			memcpy(name + len, pc->lit, pc->litlen);
			memcpy(name + len + pc->litlen, num, k);
			len += pc->litlen + k;
		}
		h.nlen = len;
		if ((rv = mirai__hosts_check_word(b, "host name", name,
		    len)) != 0 ||
		    (rv = mirai__hosts_add(b, &h, tasks_next(t), 0)) != 0) {
			return rv;
		}
		if (!step(e)) {
			return 0;
		}
	}
}

/*
 * Walk the names of node list s[0..n) (tux[1-3],login1): count them into
 * *nodes when nodes is not NULL, else add them with slots from t.
 */
static int
slurm_walk(builder *b, expr *e, const char *s, size_t n, tasks *t,
    size_t *nodes)
{
	char q[SHOWN + 4];
	size_t i, start = 0, count;
	int depth = 0, rv;

	for (i = 0; i <= n; i++) {
		if (i < n && s[i] == '[') {
			if (depth) {
				return mirai__hosts_fail(b,
				    "nested '[' in '%s'",
				    mirai__hosts_shown(q, s, n));
			}
			depth = 1;
			continue;
		}
		if (i < n && s[i] == ']') {
			if (!depth) {
				return mirai__hosts_fail(b,
				    "unexpected ']' in '%s'",
				    mirai__hosts_shown(q, s, n));
			}
			depth = 0;
			continue;
		}
		if (i < n && (s[i] != ',' || depth)) {
			continue;
		}
		if (depth) {
			return mirai__hosts_fail(b, "unterminated '[' in '%s'",
			    mirai__hosts_shown(q, s, n));
		}
		if ((rv = parse_expr(b, e, s + start, i - start, &count)) !=
		    0) {
			return rv;
		}
		if (nodes != NULL) {
			*nodes += count;
			if (*nodes > MAX_HOSTS) {
				return mirai__hosts_fail(b,
				    "more than %d hosts",
				    MAX_HOSTS);
			}
		} else if ((rv = expand(b, e, t)) != 0) {
			return rv;
		}
		start = i + 1;
	}
	return 0;
}

/* SLURM_TASKS_PER_NODE: 2(x3),1; a single value is for every node. */
static int
parse_tasks(builder *b, tasks *t, const char *s, size_t n)
{
	const char *end = s + n, *p = s, *item, *stop;
	char q[SHOWN + 4];
	int rv, count, reps;
	run *r;

	for (;;) {
		item = p;
		stop = memchr(p, ',', (size_t) (end - p));
		stop = stop != NULL ? stop : end;
		while (p < stop && is_digit((unsigned char) *p)) {
			p++;
		}
		if (p == item || (p < stop && (stop - p < 4 ||
		    memcmp(p, "(x", 2) != 0 || stop[-1] != ')'))) {
			return mirai__hosts_fail(b,
			    "invalid count '%s' (expected a list "
			    "like 2(x3),1)", mirai__hosts_shown(q, item,
			    (size_t) (stop - item)));
		}
		reps = 1;
		if ((rv = mirai__hosts_count(b, "tasks per node", item,
		    (size_t) (p - item), &count)) != 0 ||
		    (p < stop && (rv = mirai__hosts_count(b, "repeat count",
		    p + 2,
		    (size_t) (stop - p - 3), &reps)) != 0)) {
			return rv;
		}
		if ((r = mirai__hosts_grow(t->run, &t->cap, t->nrun + 1,
		    sizeof *r)) ==
		    NULL) {
			return mirai__hosts_nomem(b);
		}
		t->run                 = r;
		t->run[t->nrun].count  = count;
		t->run[t->nrun++].reps = (size_t) reps;
		t->total += (size_t) reps;
		if (t->total > MAX_HOSTS) {
			return mirai__hosts_fail(b, "more than %d counts",
			    MAX_HOSTS);
		}
		if (stop == end) {
			t->all = t->nrun == 1 && p == stop;
			return 0;
		}
		p = stop + 1;
	}
}


int
mirai__hosts_slurm_vars(const char *nodelist, const char *nsrc, const char *tpn,
    const char *tsrc, mirai_hostlist **out, mirai_errmsg *err)
{
	size_t n, tn = 0, nodes = 0;
	const char *s, *ts = NULL;
	tasks t = {0};
	expr e  = {0};
	builder b;
	int rv;

	s = mirai__hosts_trim(nodelist, &n);
	if (tpn != NULL) {
		ts = mirai__hosts_trim(tpn, &tn);
	}
	mirai__hosts_init(&b, nsrc, err);
	if (n == 0) {
		rv = mirai__hosts_fail(&b, "no hosts");
		goto done;
	}
	if (tn > 0) {
		b.source = tsrc;
		if ((rv = parse_tasks(&b, &t, ts, tn)) != 0) {
			goto done;
		}
		b.source = nsrc;
	}
	if ((rv = slurm_walk(&b, &e, s, n, NULL, &nodes)) != 0) {
		goto done;
	}
	if (t.nrun > 0 && !t.all && t.total != nodes) {
		b.source = tsrc;
		rv = mirai__hosts_fail(&b, "%zu count%s for %zu node%s",
		    t.total,
		    t.total == 1 ? "" : "s", nodes, nodes == 1 ? "" : "s");
		goto done;
	}
	if ((rv = slurm_walk(&b, &e, s, n, &t, NULL)) == 0) {
		rv = mirai__hosts_finish(&b, MIRAI_HOSTS_SLURM, out);
	}
done:
	free(t.run);
	free(e.pc);
	free(e.r);
	mirai__hosts_free(&b);
	return rv;
}

/* One node list of a hostfile line (tux[1-3],login1): a slot per node. */
int
mirai__hosts_slurm_list(builder *b, const char *s, size_t n)
{
	expr e = {0};
	int rv = slurm_walk(b, &e, s, n, NULL, NULL);

	free(e.pc);
	free(e.r);
	return rv;
}
