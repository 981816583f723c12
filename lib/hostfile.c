/*
 * hostfile.c: host lists.  Owns the parsing of Open MPI and MPICH
 * hostfiles, one-line-per-slot node files (PBS/Torque), SGE's PE_HOSTFILE,
 * LSF's LSB_MCPU_HOSTS, Slurm's compressed node lists with their tasks per
 * node, and command-line host lists, into one mirai_hostlist.
 *
 * Pure parsing: the only I/O is reading the file in mirai_hosts_load() and
 * the environment in mirai_hosts_from_env().  The input is untrusted, so
 * every limit below becomes an error naming the source and line, never a
 * crash or an allocation the input can inflate at will.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Longest line of a hostfile.  Scheduler variables are exempt: a large LSF
 * job has a LSB_MCPU_HOSTS far longer than any line a person writes. */
#define MAX_LINE 4096
/* More slots on one host, or more host names in one list, is a mistake (or
 * an attack), not a cluster. */
#define MAX_SLOTS 1000000
#define MAX_HOSTS 1000000
/* DNS names have at most 253 characters; a final dot and slack fit. */
#define MAX_NAME 255
/* A hostfile is small; a bigger file is not one. */
#define MAX_FILE ((size_t) 256 * 1024 * 1024)
/* Digits of a number in a Slurm range: keeps the arithmetic exact. */
#define MAX_DIGITS 9
/* Longest piece of the input quoted in a message. */
#define SHOWN 64

static const char *const format_names[] = {
	"auto", "openmpi", "mpich", "nodefile", "sge", "lsf", "slurm",
};

#define NFORMATS (sizeof format_names / sizeof format_names[0])

/* One distinct host; its strings live in the builder's arena. */
typedef struct entry {
	size_t user;  /* offset of the user name ("" at offset 0) */
	size_t name;  /* offset of the host name */
	uint64_t hash;
	int slots;
	int max_slots;
	int line;
} entry;

/*
 * A list under construction.  A hash table finds repeats, because a node
 * file of a big job names each host once per slot and a linear search
 * would make reading it quadratic.
 */
typedef struct builder {
	const char *source; /* names the input in messages */
	mirai_errmsg *err;
	int line;           /* current line; 0: the input has no lines */
	entry *v;
	size_t n, cap;
	char *str;          /* NUL-terminated strings, "" at offset 0 */
	size_t slen, scap;
	size_t *tab;        /* index into v plus 1; 0 is an empty cell */
	size_t tcap;        /* a power of two */
	size_t names;       /* names added, repeats included */
} builder;

/* A host as written: [user@]name[:slots], the name maybe in brackets. */
typedef struct spec {
	const char *user;
	size_t ulen;
	const char *name;
	size_t nlen;
	int slots; /* the :N of host:N; 0 when not given */
} spec;

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

static int fail(builder *b, const char *fmt, ...) MIRAI_PRINTF(2, 3);

static int
fail(builder *b, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	if (b->err == NULL) {
		return MIRAI_EPARSE;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (b->line > 0) {
		return mirai__fail(b->err, MIRAI_EPARSE, "%s:%d: %s",
		    b->source, b->line, msg);
	}
	return mirai__fail(b->err, MIRAI_EPARSE, "%s: %s", b->source, msg);
}

static int
nomem(builder *b)
{
	return mirai__fail(b->err, MIRAI_ENOMEM, "%s: out of memory",
	    b->source);
}

/*
 * s[0..n) made fit for a message: bytes that do not print become '?' and
 * long text is cut, because the text may be any bytes at all.
 */
static const char *
shown(char *buf, const char *s, size_t n)
{
	size_t i, k = n > SHOWN ? SHOWN : n;

	for (i = 0; i < k; i++) {
		unsigned char c = (unsigned char) s[i];
		buf[i] = c >= 0x20 && c < 0x7f ? (char) c : '?';
	}
	if (k < n) {
		memcpy(buf + k, "...", 3);
		k += 3;
	}
	buf[k] = '\0';
	return buf;
}

/* One character for a message: 'c', or its code when it does not print. */
static const char *
shown_char(char *buf, int c)
{
	if (c >= 0x20 && c < 0x7f) {
		snprintf(buf, 8, "'%c'", c);
	} else {
		snprintf(buf, 8, "0x%02x", c & 0xff);
	}
	return buf;
}

/* Character classes by hand: <ctype.h> would follow the locale. */
static int
is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int
is_name_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    is_digit(c) || c == '-' || c == '.' || c == '_';
}

static int
is_number(const char *s)
{
	if (*s == '\0') {
		return 0;
	}
	for (; *s != '\0'; s++) {
		if (!is_digit((unsigned char) *s)) {
			return 0;
		}
	}
	return 1;
}

/* Room for need elements of size bytes in p; NULL (p intact) if none. */
static void *
grow(void *p, size_t *cap, size_t need, size_t size)
{
	size_t c = *cap == 0 ? 16 : *cap;
	void *q;

	if (need <= *cap) {
		return p;
	}
	while (c < need) {
		if (c > SIZE_MAX / 2 / size) {
			return NULL;
		}
		c *= 2;
	}
	if ((q = realloc(p, c * size)) != NULL) {
		*cap = c;
	}
	return q;
}

static void
builder_init(builder *b, const char *source, mirai_errmsg *err)
{
	memset(b, 0, sizeof *b);
	b->source = source;
	b->err    = err;
}

static void
builder_free(builder *b)
{
	free(b->v);
	free(b->str);
	free(b->tab);
}

/* FNV-1a over user, a NUL (which neither can hold) and name. */
static uint64_t
hash_host(const spec *h)
{
	uint64_t x = 14695981039346656037u;
	size_t i;

	for (i = 0; i < h->ulen; i++) {
		x = (x ^ (unsigned char) h->user[i]) * 1099511628211u;
	}
	x *= 1099511628211u;
	for (i = 0; i < h->nlen; i++) {
		x = (x ^ (unsigned char) h->name[i]) * 1099511628211u;
	}
	return x;
}

/* Whether the arena string z is s[0..n). */
static int
same(const char *z, const char *s, size_t n)
{
	return strncmp(z, s, n) == 0 && z[n] == '\0';
}

static int
table_grow(builder *b)
{
	size_t cap = b->tcap == 0 ? 64 : b->tcap * 2;
	size_t *tab, i, j;

	if ((tab = calloc(cap, sizeof *tab)) == NULL) {
		return -1;
	}
	for (i = 0; i < b->n; i++) {
		j = (size_t) b->v[i].hash & (cap - 1);
		while (tab[j] != 0) {
			j = (j + 1) & (cap - 1);
		}
		tab[j] = i + 1;
	}
	free(b->tab);
	b->tab  = tab;
	b->tcap = cap;
	return 0;
}

/* Copy s[0..n) into the arena; its offset goes to *off. */
static int
intern(builder *b, const char *s, size_t n, size_t *off)
{
	char *p;

	/* The arena opens with the empty string, for hosts without a user. */
	if ((p = grow(b->str, &b->scap, b->slen + n + 2, 1)) == NULL) {
		return -1;
	}
	b->str = p;
	if (b->slen == 0) {
		b->str[b->slen++] = '\0';
	}
	if (n == 0) {
		*off = 0;
		return 0;
	}
	memcpy(b->str + b->slen, s, n);
	b->str[b->slen + n] = '\0';
	*off = b->slen;
	b->slen += n + 1;
	return 0;
}

/*
 * Merge a repeat into e.  A maximum is kept only when every mention gives
 * one (then they add up): a mention without one means no maximum, and
 * keeping the other would leave max_slots below slots.
 */
static int
merge(builder *b, entry *e, int slots, int max_slots)
{
	char q[SHOWN + 4];

	if (slots > MAX_SLOTS - e->slots) {
		return fail(b, "host '%s' has more than %d slots",
		    shown(q, b->str + e->name, strlen(b->str + e->name)),
		    MAX_SLOTS);
	}
	e->slots += slots;
	if (e->max_slots == 0 || max_slots == 0) {
		e->max_slots = 0;
	} else if (max_slots > MAX_SLOTS - e->max_slots) {
		return fail(b, "host '%s' has a max_slots above %d",
		    shown(q, b->str + e->name, strlen(b->str + e->name)),
		    MAX_SLOTS);
	} else {
		e->max_slots += max_slots;
	}
	return 0;
}

/* Add a host (checked already); a repeat adds to the first entry. */
static int
add(builder *b, const spec *h, int slots, int max_slots)
{
	uint64_t hash = hash_host(h);
	size_t i, k;
	entry *e;

	if (++b->names > MAX_HOSTS) {
		return fail(b, "more than %d hosts", MAX_HOSTS);
	}
	if (b->n + 1 > b->tcap / 2 && table_grow(b) != 0) {
		return nomem(b);
	}
	i = (size_t) hash & (b->tcap - 1);
	while ((k = b->tab[i]) != 0) {
		e = &b->v[k - 1];
		if (e->hash == hash &&
		    same(b->str + e->user, h->user, h->ulen) &&
		    same(b->str + e->name, h->name, h->nlen)) {
			return merge(b, e, slots, max_slots);
		}
		i = (i + 1) & (b->tcap - 1);
	}
	if ((e = grow(b->v, &b->cap, b->n + 1, sizeof *b->v)) == NULL) {
		return nomem(b);
	}
	b->v = e;
	e    = &b->v[b->n];
	if (intern(b, h->user, h->ulen, &e->user) != 0 ||
	    intern(b, h->name, h->nlen, &e->name) != 0) {
		return nomem(b);
	}
	e->hash      = hash;
	e->slots     = slots;
	e->max_slots = max_slots;
	e->line      = b->line;
	b->tab[i]    = ++b->n;
	return 0;
}

/* Hand the hosts over as one block, so that free() releases everything. */
static int
finish(builder *b, int format, mirai_hostlist **out)
{
	size_t hoff, soff, i, total = 0;
	mirai_hostlist *list;
	char *blk, *str;

	if (b->n == 0) {
		b->line = 0;
		return fail(b, "no hosts");
	}
	hoff = (sizeof *list + _Alignof(mirai_host) - 1) /
	    _Alignof(mirai_host) * _Alignof(mirai_host);
	soff = hoff + b->n * sizeof(mirai_host);
	if ((blk = malloc(soff + b->slen)) == NULL) {
		return nomem(b);
	}
	list        = (mirai_hostlist *) (void *) blk;
	list->hosts = (mirai_host *) (void *) (blk + hoff);
	str         = blk + soff;
	memcpy(str, b->str, b->slen);
	for (i = 0; i < b->n; i++) {
		mirai_host *h = &list->hosts[i];

		h->user      = str + b->v[i].user;
		h->name      = str + b->v[i].name;
		h->slots     = b->v[i].slots;
		h->max_slots = b->v[i].max_slots;
		h->line      = b->v[i].line;
		total += (size_t) h->slots;
	}
	list->n           = b->n;
	list->total_slots = total;
	list->format      = format;
	*out              = list;
	return 0;
}

/* ---- names, addresses, counts ---------------------------------------- */

/* A host or user name: letters, digits, '-', '.', '_'. */
static int
check_word(builder *b, const char *what, const char *s, size_t n)
{
	char q[SHOWN + 4], c[8];
	size_t i;

	if (n == 0) {
		return fail(b, "empty %s", what);
	}
	if (n > MAX_NAME) {
		return fail(b, "%s '%s' is longer than %d characters", what,
		    shown(q, s, n), MAX_NAME);
	}
	for (i = 0; i < n; i++) {
		if (!is_name_char((unsigned char) s[i])) {
			return fail(b, "invalid character %s in %s '%s'",
			    shown_char(c, (unsigned char) s[i]), what,
			    shown(q, s, n));
		}
	}
	/* A leading '-' would read as an option to ssh and its kin. */
	if (s[0] == '-' || s[0] == '.') {
		return fail(b, "%s '%s' cannot start with '%c'", what,
		    shown(q, s, n), s[0]);
	}
	return 0;
}

/* An IPv6 address, with an optional %zone. */
static int
check_ipv6(builder *b, const char *s, size_t n)
{
	char a[64], q[SHOWN + 4];
	struct in6_addr addr;
	const char *pct = memchr(s, '%', n);
	size_t z        = pct != NULL ? (size_t) (pct - s) : n;
	size_t i;

	if (z > 0 && z < sizeof a && n <= MAX_NAME) {
		memcpy(a, s, z);
		a[z] = '\0';
		if (inet_pton(AF_INET6, a, &addr) == 1) {
			for (i = z + 1;
			    i < n && is_name_char((unsigned char) s[i]); i++) {
			}
			if (pct == NULL || (z + 1 < n && i == n)) {
				return 0;
			}
		}
	}
	return fail(b, "invalid IPv6 address '%s'", shown(q, s, n));
}

/* A count of slots: 1 to MAX_SLOTS, digits only. */
static int
parse_count(builder *b, const char *what, const char *s, size_t n, int *out)
{
	unsigned long v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (!is_digit((unsigned char) s[i])) {
			return fail(b, "%s must be a positive integer", what);
		}
		if (v <= MAX_SLOTS) {
			v = v * 10 + (unsigned long) (s[i] - '0');
		}
	}
	if (n == 0 || v == 0) {
		return fail(b, "%s must be a positive integer", what);
	}
	if (v > MAX_SLOTS) {
		return fail(b, "%s must be at most %d", what, MAX_SLOTS);
	}
	*out = (int) v;
	return 0;
}

/*
 * [user@]host, [user@]host:N when with_count, the host maybe an IPv6
 * address: in brackets, or bare where no :N can follow.
 */
static int
parse_spec(builder *b, const char *s, size_t n, int with_count, spec *h)
{
	const char *end = s + n, *p = s, *at, *close, *colon;
	char q[SHOWN + 4];
	int rv;

	memset(h, 0, sizeof *h);
	h->user = "";
	if ((at = memchr(s, '@', n)) != NULL) {
		h->user = s;
		h->ulen = (size_t) (at - s);
		if ((rv = check_word(b, "user name", s, h->ulen)) != 0) {
			return rv;
		}
		p = at + 1;
	}
	if (p < end && *p == '[') {
		if ((close = memchr(p, ']', (size_t) (end - p))) == NULL) {
			return fail(b, "unterminated '[' in '%s'",
			    shown(q, s, n));
		}
		h->name = p + 1;
		h->nlen = (size_t) (close - p - 1);
		if ((rv = check_ipv6(b, h->name, h->nlen)) != 0) {
			return rv;
		}
		p = close + 1;
		if (p == end) {
			return 0;
		}
		if (*p != ':' || !with_count) {
			return fail(b, "unexpected '%s' after ']'",
			    shown(q, p, (size_t) (end - p)));
		}
		return parse_count(b, "slots", p + 1, (size_t) (end - p - 1),
		    &h->slots);
	}
	h->name = p;
	h->nlen = (size_t) (end - p);
	if ((colon = memchr(p, ':', (size_t) (end - p))) == NULL) {
		return check_word(b, "host name", h->name, h->nlen);
	}
	if (memchr(colon + 1, ':', (size_t) (end - colon - 1)) != NULL) {
		if (with_count) {
			return fail(b, "IPv6 address '%s' must be in brackets "
			    "([::1]:4)", shown(q, p, (size_t) (end - p)));
		}
		return check_ipv6(b, h->name, h->nlen);
	}
	if (!with_count) {
		return check_word(b, "host name", h->name, h->nlen);
	}
	h->nlen = (size_t) (colon - p);
	if ((rv = check_word(b, "host name", h->name, h->nlen)) != 0) {
		return rv;
	}
	return parse_count(b, "slots", colon + 1, (size_t) (end - colon - 1),
	    &h->slots);
}

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
			return fail(b, "invalid range '%s' in '%s'",
			    shown(q, item, (size_t) (stop - item)),
			    shown(q2, name, nlen));
		}
		if (lo > hi) {
			return fail(b, "reversed range '%s' in '%s'",
			    shown(q, item, (size_t) (p - item)),
			    shown(q2, name, nlen));
		}
		if ((r = grow(e->r, &e->rcap, e->nr + 1, sizeof *r)) == NULL) {
			return nomem(b);
		}
		e->r                = r;
		e->r[e->nr].lo      = lo;
		e->r[e->nr].hi      = hi;
		e->r[e->nr++].width = width;
		*count += hi - lo + 1;
		if (*count > MAX_HOSTS) {
			return fail(b, "'%s' expands to more than %d hosts",
			    shown(q, name, nlen), MAX_HOSTS);
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
		return fail(b, "empty host name");
	}
	for (;;) {
		if ((pc = grow(e->pc, &e->pccap, e->npc + 1, sizeof *pc)) ==
		    NULL) {
			return nomem(b);
		}
		e->pc      = pc;
		pc         = &e->pc[e->npc++];
		open       = memchr(p, '[', (size_t) (end - p));
		pc->lit    = p;
		pc->litlen = (size_t) ((open != NULL ? open : end) - p);
		pc->nr     = 0;
		for (i = 0; i < pc->litlen; i++) {
			if (!is_name_char((unsigned char) p[i])) {
				return fail(b, "invalid character %s in host "
				    "name '%s'", shown_char(c,
				    (unsigned char) p[i]), shown(q, s, n));
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
			return fail(b, "'%s' expands to more than %d hosts",
			    shown(q, s, n), MAX_HOSTS);
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
				return fail(b, "'%s' makes host names longer "
				    "than %d characters", shown(q, e->text,
				    e->len), MAX_NAME);
			}
			memcpy(name + len, pc->lit, pc->litlen);
			memcpy(name + len + pc->litlen, num, k);
			len += pc->litlen + k;
		}
		h.nlen = len;
		if ((rv = check_word(b, "host name", name, len)) != 0 ||
		    (rv = add(b, &h, tasks_next(t), 0)) != 0) {
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
				return fail(b, "nested '[' in '%s'",
				    shown(q, s, n));
			}
			depth = 1;
			continue;
		}
		if (i < n && s[i] == ']') {
			if (!depth) {
				return fail(b, "unexpected ']' in '%s'",
				    shown(q, s, n));
			}
			depth = 0;
			continue;
		}
		if (i < n && (s[i] != ',' || depth)) {
			continue;
		}
		if (depth) {
			return fail(b, "unterminated '[' in '%s'",
			    shown(q, s, n));
		}
		if ((rv = parse_expr(b, e, s + start, i - start, &count)) !=
		    0) {
			return rv;
		}
		if (nodes != NULL) {
			*nodes += count;
			if (*nodes > MAX_HOSTS) {
				return fail(b, "more than %d hosts",
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
			return fail(b, "invalid count '%s' (expected a list "
			    "like 2(x3),1)", shown(q, item,
			    (size_t) (stop - item)));
		}
		reps = 1;
		if ((rv = parse_count(b, "tasks per node", item,
		    (size_t) (p - item), &count)) != 0 ||
		    (p < stop && (rv = parse_count(b, "repeat count", p + 2,
		    (size_t) (stop - p - 3), &reps)) != 0)) {
			return rv;
		}
		if ((r = grow(t->run, &t->cap, t->nrun + 1, sizeof *r)) ==
		    NULL) {
			return nomem(b);
		}
		t->run                 = r;
		t->run[t->nrun].count  = count;
		t->run[t->nrun++].reps = (size_t) reps;
		t->total += (size_t) reps;
		if (t->total > MAX_HOSTS) {
			return fail(b, "more than %d counts", MAX_HOSTS);
		}
		if (stop == end) {
			t->all = t->nrun == 1 && p == stop;
			return 0;
		}
		p = stop + 1;
	}
}

/* s[0..len) without the blanks around it, as the result[0..*n). */
static const char *
trim_n(const char *s, size_t len, size_t *n)
{
	while (len > 0 && (is_space((unsigned char) *s) || *s == '\n')) {
		s++;
		len--;
	}
	while (len > 0 && (is_space((unsigned char) s[len - 1]) ||
	    s[len - 1] == '\n')) {
		len--;
	}
	*n = len;
	return s;
}

static const char *
trim(const char *s, size_t *n)
{
	return trim_n(s, strlen(s), n);
}

static int
slurm(const char *nodelist, const char *nsrc, const char *tpn,
    const char *tsrc, mirai_hostlist **out, mirai_errmsg *err)
{
	size_t n, tn = 0, nodes = 0;
	const char *s, *ts = NULL;
	tasks t = {0};
	expr e  = {0};
	builder b;
	int rv;

	s = trim(nodelist, &n);
	if (tpn != NULL) {
		ts = trim(tpn, &tn);
	}
	builder_init(&b, nsrc, err);
	if (n == 0) {
		rv = fail(&b, "no hosts");
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
		rv = fail(&b, "%zu count%s for %zu node%s", t.total,
		    t.total == 1 ? "" : "s", nodes, nodes == 1 ? "" : "s");
		goto done;
	}
	if ((rv = slurm_walk(&b, &e, s, n, &t, NULL)) == 0) {
		rv = finish(&b, MIRAI_HOSTS_SLURM, out);
	}
done:
	free(t.run);
	free(e.pc);
	free(e.r);
	builder_free(&b);
	return rv;
}

/* ---- lines ------------------------------------------------------------ */

/* The next line of text[0..len) at *pos, without its newline. */
static int
next_line(const char *text, size_t len, size_t *pos, const char **s,
    size_t *n)
{
	const char *nl;

	if (*pos >= len) {
		return 0;
	}
	*s   = text + *pos;
	nl   = memchr(*s, '\n', len - *pos);
	*n   = nl != NULL ? (size_t) (nl - *s) : len - *pos;
	*pos += *n + 1;
	return 1;
}

/*
 * Copy line s[0..n) into buf without its comment, and without the blanks
 * around '=', so that "slots = 4" reads as "slots=4".
 */
static void
clean_line(char *buf, const char *s, size_t n)
{
	const char *hash = memchr(s, '#', n);
	size_t i, j = 0;

	if (hash != NULL) {
		n = (size_t) (hash - s);
	}
	for (i = 0; i < n; i++) {
		if (s[i] == '=') {
			while (j > 0 && is_space((unsigned char) buf[j - 1])) {
				j--;
			}
			while (i + 1 < n &&
			    is_space((unsigned char) s[i + 1])) {
				i++;
			}
			buf[j++] = '=';
			continue;
		}
		buf[j++] = s[i];
	}
	buf[j] = '\0';
}

/* Cut the next blank-separated word from *p; NULL when none is left. */
static char *
next_word(char **p)
{
	char *s = *p, *w;

	while (is_space((unsigned char) *s)) {
		s++;
	}
	if (*s == '\0') {
		*p = s;
		return NULL;
	}
	w = s;
	while (*s != '\0' && !is_space((unsigned char) *s)) {
		s++;
	}
	if (*s != '\0') {
		*s++ = '\0';
	}
	*p = s;
	return w;
}

/* Whether w reads as MPICH's host:N or [address]:N. */
static int
is_host_count(const char *w)
{
	const char *at = strchr(w, '@'), *colon;

	w = at != NULL ? at + 1 : w;
	if (*w == '[') {
		if ((w = strchr(w, ']')) == NULL || w[1] != ':') {
			return 0;
		}
		return is_number(w + 2);
	}
	colon = strchr(w, ':');
	return colon != NULL && strchr(colon + 1, ':') == NULL &&
	    is_number(colon + 1);
}

/* Whether w holds a Slurm range: a '[' then a digit, and no IPv6 ':'. */
static int
is_slurm_range(const char *w)
{
	const char *open = strchr(w, '[');

	return open != NULL && is_digit((unsigned char) open[1]) &&
	    strchr(w, ':') == NULL;
}

/*
 * Recognise the format of text.  Open MPI keywords and MPICH counts may
 * first appear on any line; SGE and LSF show in the first line already.
 * An LSF line (host 4 host 2) can also have SGE's four fields with a
 * number second; SGE's third field is a queue@host, which no LSF host name
 * holds, and that tells them apart.
 */
static int
detect(const char *text, size_t len, char *buf, size_t max_line)
{
	int kw = 0, colon = 0, ranges = 0, lsf = 0, sge = 0, lines = 0;
	int alternating, second_num;
	size_t pos = 0, n, i;
	const char *s;
	char *p, *w;

	while (next_line(text, len, &pos, &s, &n)) {
		if (n > max_line) {
			continue;
		}
		clean_line(buf, s, n);
		kw |= strchr(buf, '=') != NULL;
		p           = buf;
		alternating = 1;
		second_num  = 0;
		for (i = 0; (w = next_word(&p)) != NULL; i++) {
			colon  |= i == 0 && is_host_count(w);
			ranges |= is_slurm_range(w);
			if ((i % 2 == 1) != is_number(w) ||
			    (i % 2 == 0 && strchr(w, '@') != NULL)) {
				alternating = 0;
			}
			if (i == 1) {
				second_num = is_number(w);
			}
		}
		if (i == 0) {
			continue;
		}
		if (++lines == 1) {
			lsf = alternating && i % 2 == 0;
			sge = i == 4 && second_num;
		} else {
			lsf = 0;
		}
	}
	if (kw) {
		return MIRAI_HOSTS_OPENMPI;
	}
	if (colon) {
		return MIRAI_HOSTS_MPICH;
	}
	if (lsf) {
		return MIRAI_HOSTS_LSF;
	}
	if (sge) {
		return MIRAI_HOSTS_SGE;
	}
	return ranges ? MIRAI_HOSTS_SLURM : MIRAI_HOSTS_NODEFILE;
}

/* host [slots=N] [max_slots=M], with the older spellings too. */
static int
line_openmpi(builder *b, char *p)
{
	char *w = next_word(&p), *eq, q[SHOWN + 4];
	int slots = 0, max = 0, *target, rv;
	const char *key;
	spec h;

	if ((rv = parse_spec(b, w, strlen(w), 0, &h)) != 0) {
		return rv;
	}
	while ((w = next_word(&p)) != NULL) {
		if ((eq = strchr(w, '=')) == NULL) {
			return fail(b, "unexpected '%s' (expected slots=N or "
			    "max_slots=N)", shown(q, w, strlen(w)));
		}
		*eq = '\0';
		if (strcmp(w, "slots") == 0 || strcmp(w, "count") == 0) {
			key    = "slots";
			target = &slots;
		} else if (strcmp(w, "max_slots") == 0 ||
		    strcmp(w, "max-slots") == 0 ||
		    strcmp(w, "slots_max") == 0 ||
		    strcmp(w, "slots-max") == 0) {
			key    = "max_slots";
			target = &max;
		} else {
			return fail(b, "unknown keyword '%s'",
			    shown(q, w, strlen(w)));
		}
		if (*target != 0) {
			return fail(b, "%s given twice", key);
		}
		if ((rv = parse_count(b, key, eq + 1, strlen(eq + 1),
		    target)) != 0) {
			return rv;
		}
	}
	slots = slots == 0 ? 1 : slots;
	if (max != 0 && max < slots) {
		return fail(b, "max_slots (%d) is less than slots (%d)", max,
		    slots);
	}
	return add(b, &h, slots, max);
}

/* One host per line: [user@]host for node files, host[:N] for MPICH. */
static int
line_single(builder *b, char *p, int with_count)
{
	char *w = next_word(&p), q[SHOWN + 4];
	spec h;
	int rv;

	if ((rv = parse_spec(b, w, strlen(w), with_count, &h)) != 0) {
		return rv;
	}
	if ((w = next_word(&p)) != NULL) {
		return fail(b, "unexpected '%s' after the host (one host per "
		    "line)", shown(q, w, strlen(w)));
	}
	return add(b, &h, h.slots > 0 ? h.slots : 1, 0);
}

/* SGE: host nslots queue processor-range (the last two are not used). */
static int
line_sge(builder *b, char *p)
{
	char *host = next_word(&p), *count = next_word(&p), *w;
	char q[SHOWN + 4];
	int slots, rv;
	spec h;

	if (count == NULL) {
		return fail(b, "expected 'host slots queue processors'");
	}
	next_word(&p);
	next_word(&p);
	if ((w = next_word(&p)) != NULL) {
		return fail(b, "unexpected '%s' after the processor range",
		    shown(q, w, strlen(w)));
	}
	if ((rv = parse_spec(b, host, strlen(host), 0, &h)) != 0 ||
	    (rv = parse_count(b, "slots", count, strlen(count), &slots)) !=
	    0) {
		return rv;
	}
	return add(b, &h, slots, 0);
}

/* LSF: pairs of host and slots, any number of them on a line. */
static int
line_lsf(builder *b, char *p)
{
	char *w, *count, q[SHOWN + 4];
	int slots, rv;
	spec h;

	while ((w = next_word(&p)) != NULL) {
		if ((count = next_word(&p)) == NULL) {
			return fail(b, "host '%s' has no slot count",
			    shown(q, w, strlen(w)));
		}
		if ((rv = parse_spec(b, w, strlen(w), 0, &h)) != 0 ||
		    (rv = parse_count(b, "slots", count, strlen(count),
		    &slots)) != 0 ||
		    (rv = add(b, &h, slots, 0)) != 0) {
			return rv;
		}
	}
	return 0;
}

/* Slurm in a file: node lists separated by blanks, a slot per node. */
static int
line_slurm(builder *b, char *p)
{
	expr e = {0};
	char *w;
	int rv = 0;

	while (rv == 0 && (w = next_word(&p)) != NULL) {
		rv = slurm_walk(b, &e, w, strlen(w), NULL, NULL);
	}
	free(e.pc);
	free(e.r);
	return rv;
}

static int
parse_line(builder *b, int format, char *p)
{
	char *w = p;

	while (is_space((unsigned char) *w)) {
		w++;
	}
	if (*w == '\0') {
		return 0;
	}
	switch (format) {
	case MIRAI_HOSTS_OPENMPI:
		return line_openmpi(b, p);
	case MIRAI_HOSTS_MPICH:
		return line_single(b, p, 1);
	case MIRAI_HOSTS_SGE:
		return line_sge(b, p);
	case MIRAI_HOSTS_LSF:
		return line_lsf(b, p);
	case MIRAI_HOSTS_SLURM:
		return line_slurm(b, p);
	default:
		return line_single(b, p, 0);
	}
}

/*
 * The parser behind the public functions.  lines: whether messages and
 * hosts carry line numbers (not for a variable's value); max_line: the
 * longest line accepted.
 */
static int
parse_text(const char *text, size_t len, int format, const char *source,
    int lines, size_t max_line, mirai_hostlist **out, mirai_errmsg *err)
{
	size_t pos = 0, n, lineno = 0;
	const char *s;
	builder b;
	char *buf;
	int rv = 0;

	builder_init(&b, source, err);
	if ((buf = malloc((len < max_line ? len : max_line) + 1)) == NULL) {
		return nomem(&b);
	}
	if (format == MIRAI_HOSTS_AUTO) {
		format = detect(text, len, buf, max_line);
	}
	while (rv == 0 && next_line(text, len, &pos, &s, &n)) {
		if (++lineno > INT_MAX) {
			b.line = 0;
			rv     = fail(&b, "more than %d lines", INT_MAX);
			break;
		}
		b.line = lines ? (int) lineno : 0;
		if (n > max_line) {
			rv = fail(&b, "line longer than %zu bytes", max_line);
		} else if (memchr(s, '\0', n) != NULL) {
			rv = fail(&b, "NUL byte in the line");
		} else {
			clean_line(buf, s, n);
			rv = parse_line(&b, format, buf);
		}
	}
	if (rv == 0) {
		rv = finish(&b, format, out);
	}
	free(buf);
	builder_free(&b);
	return rv;
}

/* ---- the API ---------------------------------------------------------- */

const char *
mirai_hosts_format_name(int format)
{
	if (format < 0 || (size_t) format >= NFORMATS) {
		return NULL;
	}
	return format_names[format];
}

int
mirai_hosts_format_parse(const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < NFORMATS; i++) {
		if (strcmp(name, format_names[i]) == 0) {
			return (int) i;
		}
	}
	return -1;
}

static int
check_format(int format, mirai_errmsg *err)
{
	if (mirai_hosts_format_name(format) == NULL) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "unknown host list format %d", format);
	}
	return 0;
}

int
mirai_hosts_parse(const char *text, size_t len, int format,
    const char *source, mirai_hostlist **out, mirai_errmsg *err)
{
	int rv;

	if (text == NULL || out == NULL) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "no host list text or no output");
	}
	if ((rv = check_format(format, err)) != 0) {
		return rv;
	}
	return parse_text(text, len, format,
	    source != NULL ? source : "hosts", 1, MAX_LINE, out, err);
}

int
mirai_hosts_load(const char *path, int format, mirai_hostlist **out,
    mirai_errmsg *err)
{
	char *buf = NULL, *p;
	size_t len = 0, cap = 0, got;
	FILE *f;
	int rv;

	if (path == NULL || out == NULL) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "no hostfile or no output");
	}
	if ((rv = check_format(format, err)) != 0) {
		return rv;
	}
	if ((f = fopen(path, "rb")) == NULL) {
		return mirai__fail(err, MIRAI_ENOENT, "%s: %s", path,
		    strerror(errno));
	}
	for (;;) {
		if ((p = grow(buf, &cap, len + 4096, 1)) == NULL) {
			rv = mirai__fail(err, MIRAI_ENOMEM, "%s: out of memory",
			    path);
			break;
		}
		buf = p;
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (ferror(f)) {
			rv = mirai__fail(err, MIRAI_ENOENT, "%s: %s", path,
			    strerror(errno));
			break;
		}
		if (len > MAX_FILE) {
			rv = mirai__fail(err, MIRAI_EPARSE,
			    "%s: larger than %zu MiB, not a hostfile", path,
			    MAX_FILE >> 20);
			break;
		}
		if (got == 0 || feof(f)) {
			rv = parse_text(buf, len, format, path, 1, MAX_LINE,
			    out, err);
			break;
		}
	}
	fclose(f);
	free(buf);
	return rv;
}

int
mirai_hosts_slurm(const char *nodelist, const char *tasks_per_node,
    mirai_hostlist **out, mirai_errmsg *err)
{
	if (nodelist == NULL || out == NULL) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "no Slurm node list or no output");
	}
	return slurm(nodelist, "SLURM_JOB_NODELIST", tasks_per_node,
	    "SLURM_TASKS_PER_NODE", out, err);
}

/* The first of two variables that is set and not empty. */
static const char *
env2(const char *a, const char *b, const char **which)
{
	const char *v;

	*which = a;
	if ((v = getenv(a)) != NULL && *v != '\0') {
		return v;
	}
	*which = b;
	if (b != NULL && (v = getenv(b)) != NULL && *v != '\0') {
		return v;
	}
	return NULL;
}

int
mirai_hosts_from_env(mirai_hostlist **out, mirai_errmsg *err)
{
	const char *v, *t, *vname, *tname;

	if (out == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "no output");
	}
	if ((v = env2("SLURM_JOB_NODELIST", "SLURM_NODELIST", &vname)) !=
	    NULL) {
		t = env2("SLURM_TASKS_PER_NODE", "SLURM_JOB_CPUS_PER_NODE",
		    &tname);
		return slurm(v, vname, t, tname, out, err);
	}
	if ((v = env2("PBS_NODEFILE", NULL, &vname)) != NULL) {
		return mirai_hosts_load(v, MIRAI_HOSTS_NODEFILE, out, err);
	}
	if ((v = env2("PE_HOSTFILE", NULL, &vname)) != NULL) {
		return mirai_hosts_load(v, MIRAI_HOSTS_SGE, out, err);
	}
	if ((v = env2("LSB_MCPU_HOSTS", NULL, &vname)) != NULL) {
		return parse_text(v, strlen(v), MIRAI_HOSTS_LSF, vname, 0,
		    SIZE_MAX, out, err);
	}
	return mirai__fail(err, MIRAI_ENOENT, "not inside a batch job: none "
	    "of SLURM_JOB_NODELIST, PBS_NODEFILE, PE_HOSTFILE or "
	    "LSB_MCPU_HOSTS is set");
}

int
mirai_hosts_from_arg(const char *arg, mirai_hostlist **out,
    mirai_errmsg *err)
{
	char source[SHOWN + 32], q[SHOWN + 4];
	const char *p, *stop, *s;
	size_t n, all;
	builder b;
	spec h;
	int rv = 0;

	if (arg == NULL || out == NULL) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "no host list or no output");
	}
	builder_init(&b, "host list", err);
	/* A blank list has no hosts, rather than one empty item. */
	trim(arg, &all);
	for (p = arg; all > 0 && rv == 0; p = stop + 1) {
		stop = strchr(p, ',');
		stop = stop != NULL ? stop : p + strlen(p);
		s    = trim_n(p, (size_t) (stop - p), &n);
		/* Name the item in messages: a list has no lines. */
		snprintf(source, sizeof source, "host list item '%s'",
		    shown(q, s, n));
		b.source = source;
		if ((rv = parse_spec(&b, s, n, 1, &h)) == 0) {
			rv = add(&b, &h, h.slots > 0 ? h.slots : 1, 0);
		}
		if (*stop == '\0') {
			break;
		}
	}
	b.source = "host list";
	if (rv == 0) {
		rv = finish(&b, MIRAI_HOSTS_MPICH, out);
	}
	builder_free(&b);
	return rv;
}

void
mirai_hostlist_free(mirai_hostlist *list)
{
	free(list);
}
