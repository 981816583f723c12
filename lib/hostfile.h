/*
 * hostfile.h: what the host list files share (hostfile.c, the builder and
 * the API; hostfile_slurm.c, Slurm's node list grammar; hostfile_lines.c,
 * the line formats).  Private to those three files.
 */
#ifndef MIRAI_HOSTFILE_H
#define MIRAI_HOSTFILE_H

#include <stddef.h>
#include <stdint.h>

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
/* Longest piece of the input quoted in a message. */
#define SHOWN 64

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

/* Character classes by hand: <ctype.h> would follow the locale. */
static inline int
is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static inline int
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static inline int
is_name_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    is_digit(c) || c == '-' || c == '.' || c == '_';
}

/* ---- hostfile.c: the builder ------------------------------------------ */

/* Fail with an EPARSE message naming the source (and line, if any). */
int mirai__hosts_fail(builder *b, const char *fmt, ...) MIRAI_PRINTF(2, 3);
int mirai__hosts_nomem(builder *b);
/* s[0..n) fit for a message in buf (SHOWN + 4 bytes); c in buf[8]. */
const char *mirai__hosts_shown(char *buf, const char *s, size_t n);
const char *mirai__hosts_shown_char(char *buf, int c);
void *mirai__hosts_grow(void *p, size_t *cap, size_t need, size_t size);
void mirai__hosts_init(builder *b, const char *source, mirai_errmsg *err);
void mirai__hosts_free(builder *b);
int mirai__hosts_add(builder *b, const spec *h, int slots, int max_slots);
int mirai__hosts_finish(builder *b, int format, mirai_hostlist **out);
int mirai__hosts_check_word(builder *b, const char *what, const char *s,
    size_t n);
int mirai__hosts_count(builder *b, const char *what, const char *s,
    size_t n, int *out);
int mirai__hosts_spec(builder *b, const char *s, size_t n, int with_count,
    spec *h);
const char *mirai__hosts_trim_n(const char *s, size_t len, size_t *n);
const char *mirai__hosts_trim(const char *s, size_t *n);

/* ---- hostfile_slurm.c ------------------------------------------------- */

int mirai__hosts_slurm_vars(const char *nodelist, const char *nsrc,
    const char *tpn, const char *tsrc, mirai_hostlist **out,
    mirai_errmsg *err);
int mirai__hosts_slurm_list(builder *b, const char *s, size_t n);

/* ---- hostfile_lines.c ------------------------------------------------- */

int mirai__hosts_text(const char *text, size_t len, int format,
    const char *source, int lines, size_t max_line, mirai_hostlist **out,
    mirai_errmsg *err);

#endif /* MIRAI_HOSTFILE_H */
