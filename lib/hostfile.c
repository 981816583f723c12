/*
 * hostfile.c: host lists, the builder and the API.  Owns adding hosts to a
 * list under construction (repeats merged into the first entry, with their
 * slots and maxima added up), the limits on what the input may ask for,
 * host and user names, addresses and slot counts as written, and the
 * public mirai_hosts_* functions, which hand the text to the line formats
 * (hostfile_lines.c) or the Slurm grammar (hostfile_slurm.c).
 *
 * Pure: the only I/O is reading the file in mirai_hosts_load() and the
 * environment in mirai_hosts_from_env().  The input is untrusted, so every
 * limit becomes an error naming the source and line, never a crash or an
 * allocation the input can inflate at will.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostfile.h"

/* A hostfile is small; a bigger file is not one. */
#define MAX_FILE ((size_t) 256 * 1024 * 1024)

static const char *const format_names[] = {
	"auto", "openmpi", "mpich", "nodefile", "sge", "lsf", "slurm",
};

#define NFORMATS (sizeof format_names / sizeof format_names[0])

int
mirai__hosts_fail(builder *b, const char *fmt, ...)
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

int
mirai__hosts_nomem(builder *b)
{
	return mirai__fail(b->err, MIRAI_ENOMEM, "%s: out of memory",
	    b->source);
}

/*
 * s[0..n) made fit for a message: bytes that do not print become '?' and
 * long text is cut, because the text may be any bytes at all.
 */
const char *
mirai__hosts_shown(char *buf, const char *s, size_t n)
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
const char *
mirai__hosts_shown_char(char *buf, int c)
{
	if (c >= 0x20 && c < 0x7f) {
		snprintf(buf, 8, "'%c'", c);
	} else {
		snprintf(buf, 8, "0x%02x", c & 0xff);
	}
	return buf;
}

/* Room for need elements of size bytes in p; NULL (p intact) if none. */
void *
mirai__hosts_grow(void *p, size_t *cap, size_t need, size_t size)
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
void
mirai__hosts_init(builder *b, const char *source, mirai_errmsg *err)
{
	memset(b, 0, sizeof *b);
	b->source = source;
	b->err    = err;
}

void
mirai__hosts_free(builder *b)
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
	if ((p = mirai__hosts_grow(b->str, &b->scap, b->slen + n + 2,
	    1)) == NULL) {
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
		return mirai__hosts_fail(b, "host '%s' has more than %d slots",
		    mirai__hosts_shown(q, b->str + e->name,
		    strlen(b->str + e->name)),
		    MAX_SLOTS);
	}
	e->slots += slots;
	if (e->max_slots == 0 || max_slots == 0) {
		e->max_slots = 0;
	} else if (max_slots > MAX_SLOTS - e->max_slots) {
		return mirai__hosts_fail(b,
		    "host '%s' has a max_slots above %d",
		    mirai__hosts_shown(q, b->str + e->name,
		    strlen(b->str + e->name)),
		    MAX_SLOTS);
	} else {
		e->max_slots += max_slots;
	}
	return 0;
}

/* Add a host (checked already); a repeat adds to the first entry. */
int
mirai__hosts_add(builder *b, const spec *h, int slots, int max_slots)
{
	uint64_t hash = hash_host(h);
	size_t i, k;
	entry *e;

	if (++b->names > MAX_HOSTS) {
		return mirai__hosts_fail(b, "more than %d hosts", MAX_HOSTS);
	}
	if (b->n + 1 > b->tcap / 2 && table_grow(b) != 0) {
		return mirai__hosts_nomem(b);
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
	if ((e = mirai__hosts_grow(b->v, &b->cap, b->n + 1,
	    sizeof *b->v)) == NULL) {
		return mirai__hosts_nomem(b);
	}
	b->v = e;
	e    = &b->v[b->n];
	if (intern(b, h->user, h->ulen, &e->user) != 0 ||
	    intern(b, h->name, h->nlen, &e->name) != 0) {
		return mirai__hosts_nomem(b);
	}
	e->hash      = hash;
	e->slots     = slots;
	e->max_slots = max_slots;
	e->line      = b->line;
	b->tab[i]    = ++b->n;
	return 0;
}

/* Hand the hosts over as one block, so that free() releases everything. */
int
mirai__hosts_finish(builder *b, int format, mirai_hostlist **out)
{
	size_t hoff, soff, i, total = 0;
	mirai_hostlist *list;
	char *blk, *str;

	if (b->n == 0) {
		b->line = 0;
		return mirai__hosts_fail(b, "no hosts");
	}
	hoff = (sizeof *list + _Alignof(mirai_host) - 1) /
	    _Alignof(mirai_host) * _Alignof(mirai_host);
	soff = hoff + b->n * sizeof(mirai_host);
	if ((blk = malloc(soff + b->slen)) == NULL) {
		return mirai__hosts_nomem(b);
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
int
mirai__hosts_check_word(builder *b, const char *what, const char *s, size_t n)
{
	char q[SHOWN + 4], c[8];
	size_t i;

	if (n == 0) {
		return mirai__hosts_fail(b, "empty %s", what);
	}
	if (n > MAX_NAME) {
		return mirai__hosts_fail(b,
		    "%s '%s' is longer than %d characters", what,
		    mirai__hosts_shown(q, s, n), MAX_NAME);
	}
	for (i = 0; i < n; i++) {
		if (!is_name_char((unsigned char) s[i])) {
			return mirai__hosts_fail(b,
			    "invalid character %s in %s '%s'",
			    mirai__hosts_shown_char(c, (unsigned char) s[i]),
			    what,
			    mirai__hosts_shown(q, s, n));
		}
	}
	/* A leading '-' would read as an option to ssh and its kin. */
	if (s[0] == '-' || s[0] == '.') {
		return mirai__hosts_fail(b, "%s '%s' cannot start with '%c'",
		    what,
		    mirai__hosts_shown(q, s, n), s[0]);
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
	return mirai__hosts_fail(b, "invalid IPv6 address '%s'",
	    mirai__hosts_shown(q, s, n));
}

/* A count of slots: 1 to MAX_SLOTS, digits only. */
int
mirai__hosts_count(builder *b, const char *what, const char *s, size_t n,
    int *out)
{
	unsigned long v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (!is_digit((unsigned char) s[i])) {
			return mirai__hosts_fail(b,
			    "%s must be a positive integer", what);
		}
		if (v <= MAX_SLOTS) {
			v = v * 10 + (unsigned long) (s[i] - '0');
		}
	}
	if (n == 0 || v == 0) {
		return mirai__hosts_fail(b, "%s must be a positive integer",
		    what);
	}
	if (v > MAX_SLOTS) {
		return mirai__hosts_fail(b, "%s must be at most %d", what,
		    MAX_SLOTS);
	}
	*out = (int) v;
	return 0;
}

/*
 * [user@]host, [user@]host:N when with_count, the host maybe an IPv6
 * address: in brackets, or bare where no :N can follow.
 */
int
mirai__hosts_spec(builder *b, const char *s, size_t n, int with_count, spec *h)
{
	const char *end = s + n, *p = s, *at, *close, *colon;
	char q[SHOWN + 4];
	int rv;

	memset(h, 0, sizeof *h);
	h->user = "";
	if ((at = memchr(s, '@', n)) != NULL) {
		h->user = s;
		h->ulen = (size_t) (at - s);
		if ((rv = mirai__hosts_check_word(b, "user name", s,
		    h->ulen)) != 0) {
			return rv;
		}
		p = at + 1;
	}
	if (p < end && *p == '[') {
		if ((close = memchr(p, ']', (size_t) (end - p))) == NULL) {
			return mirai__hosts_fail(b, "unterminated '[' in '%s'",
			    mirai__hosts_shown(q, s, n));
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
			return mirai__hosts_fail(b, "unexpected '%s' after ']'",
			    mirai__hosts_shown(q, p, (size_t) (end - p)));
		}
		return mirai__hosts_count(b, "slots", p + 1,
		    (size_t) (end - p - 1),
		    &h->slots);
	}
	h->name = p;
	h->nlen = (size_t) (end - p);
	if ((colon = memchr(p, ':', (size_t) (end - p))) == NULL) {
		return mirai__hosts_check_word(b, "host name", h->name,
		    h->nlen);
	}
	if (memchr(colon + 1, ':', (size_t) (end - colon - 1)) != NULL) {
		if (with_count) {
			return mirai__hosts_fail(b,
			    "IPv6 address '%s' must be in brackets "
			    "([::1]:4)", mirai__hosts_shown(q, p,
			    (size_t) (end - p)));
		}
		return check_ipv6(b, h->name, h->nlen);
	}
	if (!with_count) {
		return mirai__hosts_check_word(b, "host name", h->name,
		    h->nlen);
	}
	h->nlen = (size_t) (colon - p);
	if ((rv = mirai__hosts_check_word(b, "host name", h->name,
	    h->nlen)) != 0) {
		return rv;
	}
	return mirai__hosts_count(b, "slots", colon + 1,
	    (size_t) (end - colon - 1),
	    &h->slots);
}

const char *
mirai__hosts_trim_n(const char *s, size_t len, size_t *n)
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

const char *
mirai__hosts_trim(const char *s, size_t *n)
{
	return mirai__hosts_trim_n(s, strlen(s), n);
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

static int
hosts_parse_impl(const char *text, size_t len, int format,
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
	return mirai__hosts_text(text, len, format,
	    source != NULL ? source : "hosts", 1, MAX_LINE, out, err);
}

int
mirai_hosts_parse(const char *text, size_t len, int format,
    const char *source, mirai_hostlist **out, mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, hosts_parse_impl(text, len, format, source, out, &mine));
}

static int
hosts_load_impl(const char *path, int format, mirai_hostlist **out,
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
		if ((p = mirai__hosts_grow(buf, &cap, len + 4096, 1)) == NULL) {
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
			rv = mirai__hosts_text(buf, len, format, path, 1,
			    MAX_LINE,
			    out, err);
			break;
		}
	}
	fclose(f);
	free(buf);
	return rv;
}

int
mirai_hosts_load(const char *path, int format, mirai_hostlist **out,
    mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, hosts_load_impl(path, format, out, &mine));
}

static int
hosts_slurm_impl(const char *nodelist, const char *tasks_per_node,
    mirai_hostlist **out, mirai_errmsg *err)
{
	if (nodelist == NULL || out == NULL) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "no Slurm node list or no output");
	}
	return mirai__hosts_slurm_vars(nodelist, "SLURM_JOB_NODELIST",
	    tasks_per_node,
	    "SLURM_TASKS_PER_NODE", out, err);
}

int
mirai_hosts_slurm(const char *nodelist, const char *tasks_per_node,
    mirai_hostlist **out, mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, hosts_slurm_impl(nodelist, tasks_per_node, out, &mine));
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

static int
hosts_from_env_impl(mirai_hostlist **out, mirai_errmsg *err)
{
	const char *v, *t, *vname, *tname;

	if (out == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "no output");
	}
	if ((v = env2("SLURM_JOB_NODELIST", "SLURM_NODELIST", &vname)) !=
	    NULL) {
		t = env2("SLURM_TASKS_PER_NODE", "SLURM_JOB_CPUS_PER_NODE",
		    &tname);
		return mirai__hosts_slurm_vars(v, vname, t, tname, out, err);
	}
	if ((v = env2("PBS_NODEFILE", NULL, &vname)) != NULL) {
		return mirai_hosts_load(v, MIRAI_HOSTS_NODEFILE, out, err);
	}
	if ((v = env2("PE_HOSTFILE", NULL, &vname)) != NULL) {
		return mirai_hosts_load(v, MIRAI_HOSTS_SGE, out, err);
	}
	if ((v = env2("LSB_MCPU_HOSTS", NULL, &vname)) != NULL) {
		return mirai__hosts_text(v, strlen(v), MIRAI_HOSTS_LSF, vname,
		    0,
		    SIZE_MAX, out, err);
	}
	return mirai__fail(err, MIRAI_ENOENT, "not inside a batch job: none "
	    "of SLURM_JOB_NODELIST, PBS_NODEFILE, PE_HOSTFILE or "
	    "LSB_MCPU_HOSTS is set");
}

int
mirai_hosts_from_env(mirai_hostlist **out, mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, hosts_from_env_impl(out, &mine));
}

static int
hosts_from_arg_impl(const char *arg, mirai_hostlist **out,
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
	mirai__hosts_init(&b, "host list", err);
	/* A blank list has no hosts, rather than one empty item. */
	mirai__hosts_trim(arg, &all);
	for (p = arg; all > 0 && rv == 0; p = stop + 1) {
		stop = strchr(p, ',');
		stop = stop != NULL ? stop : p + strlen(p);
		s    = mirai__hosts_trim_n(p, (size_t) (stop - p), &n);
		/* Name the item in messages: a list has no lines. */
		snprintf(source, sizeof source, "host list item '%s'",
		    mirai__hosts_shown(q, s, n));
		b.source = source;
		if ((rv = mirai__hosts_spec(&b, s, n, 1, &h)) == 0) {
			rv = mirai__hosts_add(&b, &h, h.slots > 0 ? h.slots : 1,
			    0);
		}
		if (*stop == '\0') {
			break;
		}
	}
	b.source = "host list";
	if (rv == 0) {
		rv = mirai__hosts_finish(&b, MIRAI_HOSTS_MPICH, out);
	}
	mirai__hosts_free(&b);
	return rv;
}

int
mirai_hosts_from_arg(const char *arg, mirai_hostlist **out,
    mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, hosts_from_arg_impl(arg, out, &mine));
}

void
mirai_hostlist_free(mirai_hostlist *list)
{
	free(list);
}
