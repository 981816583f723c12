/*
 * hostfile_lines.c: the line formats.  Owns hostfiles read line by line:
 * Open MPI (host slots=N max_slots=M, user@host), MPICH (host:N), node
 * files with a line per slot (PBS/Torque), SGE's PE_HOSTFILE (host nslots
 * queue range), LSF (host N host N ...), Slurm node lists in a file, and
 * the recognition of which of them a text is.  Pure, no I/O: the text
 * comes from hostfile.c.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "hostfile.h"

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

	if ((rv = mirai__hosts_spec(b, w, strlen(w), 0, &h)) != 0) {
		return rv;
	}
	while ((w = next_word(&p)) != NULL) {
		if ((eq = strchr(w, '=')) == NULL) {
			return mirai__hosts_fail(b,
			    "unexpected '%s' (expected slots=N or "
			    "max_slots=N)", mirai__hosts_shown(q, w,
			    strlen(w)));
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
			return mirai__hosts_fail(b, "unknown keyword '%s'",
			    mirai__hosts_shown(q, w, strlen(w)));
		}
		if (*target != 0) {
			return mirai__hosts_fail(b, "%s given twice", key);
		}
		if ((rv = mirai__hosts_count(b, key, eq + 1, strlen(eq + 1),
		    target)) != 0) {
			return rv;
		}
	}
	slots = slots == 0 ? 1 : slots;
	if (max != 0 && max < slots) {
		return mirai__hosts_fail(b,
		    "max_slots (%d) is less than slots (%d)", max,
		    slots);
	}
	return mirai__hosts_add(b, &h, slots, max);
}

/* One host per line: [user@]host for node files, host[:N] for MPICH. */
static int
line_single(builder *b, char *p, int with_count)
{
	char *w = next_word(&p), q[SHOWN + 4];
	spec h;
	int rv;

	if ((rv = mirai__hosts_spec(b, w, strlen(w), with_count, &h)) != 0) {
		return rv;
	}
	if ((w = next_word(&p)) != NULL) {
		return mirai__hosts_fail(b,
		    "unexpected '%s' after the host (one host per "
		    "line)", mirai__hosts_shown(q, w, strlen(w)));
	}
	return mirai__hosts_add(b, &h, h.slots > 0 ? h.slots : 1, 0);
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
		return mirai__hosts_fail(b,
		    "expected 'host slots queue processors'");
	}
	next_word(&p);
	next_word(&p);
	if ((w = next_word(&p)) != NULL) {
		return mirai__hosts_fail(b,
		    "unexpected '%s' after the processor range",
		    mirai__hosts_shown(q, w, strlen(w)));
	}
	if ((rv = mirai__hosts_spec(b, host, strlen(host), 0, &h)) != 0 ||
	    (rv = mirai__hosts_count(b, "slots", count, strlen(count),
	    &slots)) !=
	    0) {
		return rv;
	}
	return mirai__hosts_add(b, &h, slots, 0);
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
			return mirai__hosts_fail(b,
			    "host '%s' has no slot count",
			    mirai__hosts_shown(q, w, strlen(w)));
		}
		if ((rv = mirai__hosts_spec(b, w, strlen(w), 0, &h)) != 0 ||
		    (rv = mirai__hosts_count(b, "slots", count, strlen(count),
		    &slots)) != 0 ||
		    (rv = mirai__hosts_add(b, &h, slots, 0)) != 0) {
			return rv;
		}
	}
	return 0;
}

/* Slurm in a file: node lists separated by blanks, a slot per node. */
static int
line_slurm(builder *b, char *p)
{
	char *w;
	int rv = 0;

	while (rv == 0 && (w = next_word(&p)) != NULL) {
		rv = mirai__hosts_slurm_list(b, w, strlen(w));
	}
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
int
mirai__hosts_text(const char *text, size_t len, int format, const char *source,
    int lines, size_t max_line, mirai_hostlist **out, mirai_errmsg *err)
{
	size_t pos = 0, n, lineno = 0;
	const char *s;
	builder b;
	char *buf;
	int rv = 0;

	mirai__hosts_init(&b, source, err);
	if ((buf = malloc((len < max_line ? len : max_line) + 1)) == NULL) {
		return mirai__hosts_nomem(&b);
	}
	if (format == MIRAI_HOSTS_AUTO) {
		format = detect(text, len, buf, max_line);
	}
	while (rv == 0 && next_line(text, len, &pos, &s, &n)) {
		if (++lineno > INT_MAX) {
			b.line = 0;
			rv     = mirai__hosts_fail(&b, "more than %d lines",
			    INT_MAX);
			break;
		}
		b.line = lines ? (int) lineno : 0;
		if (n > max_line) {
			rv = mirai__hosts_fail(&b, "line longer than %zu bytes",
			    max_line);
		} else if (memchr(s, '\0', n) != NULL) {
			rv = mirai__hosts_fail(&b, "NUL byte in the line");
		} else {
			clean_line(buf, s, n);
			rv = parse_line(&b, format, buf);
		}
	}
	if (rv == 0) {
		rv = mirai__hosts_finish(&b, format, out);
	}
	free(buf);
	mirai__hosts_free(&b);
	return rv;
}
