/*
 * ssh_config.c: the ssh config, read once by mirai__ssh_create, with
 * OpenSSH's rules rather than libssh's (which matches later Host blocks
 * against a HostName already substituted): each session gets libssh the
 * lines that apply to its host, in order, and libssh keeps the first
 * value of each.  Each host's host key policy (StrictHostKeyChecking,
 * HashKnownHosts) is decided here too.  Only lib/ssh*.c call libssh (see
 * ssh.c).
 */
#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libssh/libssh.h>

#include "internal.h"
#include "ssh.h"
#include "ssh_int.h"

/* Includes nested deeper than this are refused, as by ssh(1). */
#define INCLUDE_DEPTH 16

/* ---- the ssh config ------------------------------------------------ */

/*
 * A Host or Match line: it governs the lines after it in its file, up to
 * the next one.  A file that an Include inside a block reads depends on
 * that block too (up), as in ssh(1): its lines apply only where the block
 * applies.
 */
typedef struct conf_block conf_block;
struct conf_block {
	conf_block *all;      /* every block of the conf, for freeing */
	const conf_block *up; /* the block of the Include; NULL: none */
	int match;            /* a Match block: libssh evaluates it */
	char *args;           /* Host: the patterns, each NUL-ended, then
	                         "" ; Match: the criteria as written */
};

typedef struct conf_line {
	const conf_block *block; /* NULL: before any Host or Match */
	char *key;               /* the keyword, in lower case */
	char *value;             /* the rest, as written, trimmed */
} conf_line;

struct conf {
	conf_line *lines;
	size_t n, cap;
	conf_block *blocks;
	char *home;              /* NULL: unknown */
};

void
mirai__ssh_conf_free(conf *c)
{
	if (c == NULL) {
		return;
	}
	for (size_t i = 0; i < c->n; i++) {
		free(c->lines[i].key);
		free(c->lines[i].value);
	}
	free(c->lines);
	while (c->blocks != NULL) {
		conf_block *b = c->blocks;
		c->blocks     = b->all;
		free(b->args);
		free(b);
	}
	free(c->home);
	free(c);
}

/* Split line, in place, into its keyword and the rest, as ssh(1) reads
 * "Key value", "Key=value" and "Key = value".  0: blank or a comment. */
static int
conf_split(char *line, char **key, char **value)
{
	char *p = line + strspn(line, " \t\r\n");
	char *end;
	size_t n;

	if (*p == '\0' || *p == '#') {
		return 0;
	}
	*key = p;
	p += strcspn(p, " \t\r\n=");
	end = p;
	p += strspn(p, " \t\r\n");
	if (*p == '=') {
		p++;
		p += strspn(p, " \t\r\n");
	}
	*end = '\0';
	for (n = strlen(p); n > 0 && isspace((unsigned char) p[n - 1]); n--) {
		p[n - 1] = '\0';
	}
	*value = p;
	for (char *k = *key; *k != '\0'; k++) {
		*k = (char) tolower((unsigned char) *k);
	}
	return 1;
}

/* The next word of *p, NUL-ended in place (double quotes group words),
 * or NULL at the end. */
static char *
conf_word(char **p)
{
	char *s = *p + strspn(*p, " \t");
	char *w;

	if (*s == '\0') {
		return NULL;
	}
	if (*s == '"') {
		w = ++s;
		s += strcspn(s, "\"");
	} else {
		w = s;
		s += strcspn(s, " \t");
	}
	if (*s != '\0') {
		*s++ = '\0';
	}
	*p = s;
	return w;
}

/* Whether value's first word is w, case aside. */
static int
word_is(const char *value, const char *w)
{
	size_t n = strlen(w);

	if (*value == '"') {
		value++;
	}
	return strncasecmp(value, w, n) == 0 &&
	    (value[n] == '\0' || value[n] == '"' ||
	        isspace((unsigned char) value[n]));
}

/* A new block after up, made the current one (*cur).  value is used up
 * (its words are cut in place). */
static int
conf_block_add(conf *c, const conf_block *up, int match, char *value,
    const conf_block **cur)
{
	conf_block *b = calloc(1, sizeof *b);
	size_t len    = strlen(value);
	char *w, *out;

	if (b == NULL || (b->args = malloc(len + 2)) == NULL) {
		free(b);
		return MIRAI_ENOMEM;
	}
	b->up    = up;
	b->match = match;
	if (match) {
		memcpy(b->args, value, len + 1);
	} else {
		for (out = b->args; (w = conf_word(&value)) != NULL;) {
			size_t wl = strlen(w);
			memcpy(out, w, wl + 1);
			out += wl + 1;
		}
		*out = '\0';
	}
	b->all    = c->blocks;
	c->blocks = b;
	*cur      = b;
	return 0;
}

static int
conf_line_add(conf *c, const conf_block *block, const char *key,
    const char *value)
{
	conf_line *l;

	if (c->n == c->cap) {
		size_t cap = c->cap == 0 ? 32 : 2 * c->cap;
		if ((l = realloc(c->lines, cap * sizeof *l)) == NULL) {
			return MIRAI_ENOMEM;
		}
		c->lines = l;
		c->cap   = cap;
	}
	l        = &c->lines[c->n];
	l->block = block;
	l->key   = mirai__strdup(key);
	l->value = mirai__strdup(value);
	if (l->key == NULL || l->value == NULL) {
		free(l->key);
		free(l->value);
		return MIRAI_ENOMEM;
	}
	c->n++;
	return 0;
}

static int conf_read(conf *c, const char *path, int user,
    const conf_block *up, int depth, mirai_errmsg *err);

/*
 * Read the files an Include names (globs; a relative name is in ~/.ssh
 * for the user's config, /etc/ssh for the system's), their lines
 * depending on block.  Files that are missing are skipped, as by ssh(1).
 */
static int
conf_include(conf *c, char *value, int user, const conf_block *block,
    int depth, const char *from, unsigned lineno, mirai_errmsg *err)
{
	char *w;
	int rv = 0;

	if (depth >= INCLUDE_DEPTH) {
		return mirai__fail(err, MIRAI_EINVAL, "ssh config %s:%u: "
		    "Include nested more than %d deep", from, lineno,
		    INCLUDE_DEPTH);
	}
	while (rv == 0 && (w = conf_word(&value)) != NULL) {
		glob_t g        = {0};
		char *pattern   = NULL;
		const char *dir = user ? c->home : "/etc/ssh";
		int n;

		if (w[0] == '/') {
			n = asprintf(&pattern, "%s", w);
		} else if (dir == NULL) {
			continue; /* no home: no ~/.ssh either */
		} else if (w[0] == '~' && w[1] == '/') {
			n = asprintf(&pattern, "%s%s", c->home, w + 1);
		} else {
			n = asprintf(&pattern, "%s%s/%s", dir,
			    user ? "/.ssh" : "", w);
		}
		if (n < 0) {
			return MIRAI_ENOMEM;
		}
		n = glob(pattern, 0, NULL, &g);
		if (n == GLOB_NOSPACE) {
			rv = MIRAI_ENOMEM;
		}
		for (size_t i = 0; n == 0 && rv == 0 && i < g.gl_pathc; i++) {
			rv = conf_read(c, g.gl_pathv[i], user, block,
			    depth + 1, err);
		}
		globfree(&g);
		free(pattern);
	}
	return rv;
}

/* Add the lines of the config file path, below the block up. */
static int
conf_read(conf *c, const char *path, int user, const conf_block *up,
    int depth, mirai_errmsg *err)
{
	FILE *f                 = fopen(path, "re");
	const conf_block *block = up;
	char *line              = NULL;
	size_t cap              = 0;
	unsigned lineno         = 0;
	int rv                  = 0;

	if (f == NULL) {
		MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "ssh config %s skipped: %s",
		    path, strerror(errno));
		return 0;
	}
	while (rv == 0 && getline(&line, &cap, f) >= 0) {
		char *key, *value;

		lineno++;
		if (!conf_split(line, &key, &value)) {
			continue;
		}
		if (strcmp(key, "host") == 0 || strcmp(key, "match") == 0) {
			rv = conf_block_add(c, up, key[0] == 'm', value,
			    &block);
		} else if (strcmp(key, "include") == 0) {
			rv = conf_include(c, value, user, block, depth, path,
			    lineno, err);
		} else {
			rv = conf_line_add(c, block, key, value);
		}
	}
	free(line);
	fclose(f);
	return rv;
}

/* The home directory, as libssh finds it: the password database, else
 * $HOME.  NULL if neither says. */
static char *
home_dir(void)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	const char *env = getenv("HOME");

	if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) == 0 &&
	    res != NULL && res->pw_dir != NULL && res->pw_dir[0] != '\0') {
		return mirai__strdup(res->pw_dir);
	}
	return env != NULL && *env != '\0' ? mirai__strdup(env) : NULL;
}

/* Read the ssh config as ssh(1) does: path (its -F) alone, else the
 * user's file, then the system's.  *out is the caller's
 * (mirai__ssh_conf_free). */
int
mirai__ssh_conf_load(conf **out, const char *path, mirai_errmsg *err)
{
	conf *c = calloc(1, sizeof *c);
	char *user_file = NULL;
	int rv;

	if (c == NULL) {
		return MIRAI_ENOMEM;
	}
	c->home = home_dir();
	if (path != NULL) {
		rv = conf_read(c, path, 1, NULL, 0, err);
	} else {
		rv = 0;
		if (c->home != NULL) {
			if (asprintf(&user_file, "%s/.ssh/config", c->home) <
			    0) {
				mirai__ssh_conf_free(c);
				return MIRAI_ENOMEM;
			}
			rv = conf_read(c, user_file, 1, NULL, 0, err);
			free(user_file);
		}
		if (rv == 0) {
			rv = conf_read(c, "/etc/ssh/ssh_config", 0, NULL, 0,
			    err);
		}
	}
	if (rv != 0) {
		mirai__ssh_conf_free(c);
		return rv;
	}
	*out = c;
	return 0;
}

/* Whether name matches pattern: '*' any run, '?' any one character; case
 * aside, as ssh(1) compares host names in lower case. */
static int
wild_match(const char *name, const char *p)
{
	for (; *p != '\0'; p++, name++) {
		if (*p == '*') {
			while (p[1] == '*') {
				p++;
			}
			if (p[1] == '\0') {
				return 1;
			}
			for (; *name != '\0'; name++) {
				if (wild_match(name, p + 1)) {
					return 1;
				}
			}
			return 0;
		}
		if (*name == '\0' ||
		    (*p != '?' && tolower((unsigned char) *p) !=
		                      tolower((unsigned char) *name))) {
			return 0;
		}
	}
	return *name == '\0';
}

/* A Host line applies when one of its patterns matches name and none of
 * its negated ones ("!pattern") does. */
static int
host_matches(const char *patterns, const char *name)
{
	int hit = 0;

	for (const char *w = patterns; *w != '\0'; w += strlen(w) + 1) {
		if (*w == '!') {
			if (wild_match(name, w + 1)) {
				return 0;
			}
		} else if (wild_match(name, w)) {
			hit = 1;
		}
	}
	return hit;
}

/* Whether the lines of block apply to name, as far as Host lines say. */
static int
block_applies(const conf_block *b, const char *name)
{
	for (; b != NULL; b = b->up) {
		if (!b->match && !host_matches(b->args, name)) {
			return 0;
		}
	}
	return 1;
}

/* The innermost Match block that b depends on, or NULL. */
static const conf_block *
match_of(const conf_block *b)
{
	while (b != NULL && !b->match) {
		b = b->up;
	}
	return b;
}

/*
 * The config for the host name: into text, the lines for libssh, in
 * order and without Host lines, so that libssh, which keeps the first
 * value of an option, cannot match a Host line against a HostName.  Match
 * blocks go along as such (a "Host *" ends one).  StrictHostKeyChecking
 * and HashKnownHosts, which libssh does not know (or not all of), are
 * kept out of it: their first values outside Match blocks go to *strict
 * and *hash (NULL: none).  They point into c.
 */
static void
conf_for_host(const conf *c, const char *name, mirai__sb *text,
    const char **strict, const char **hash)
{
	const conf_block *open = NULL;

	*strict = *hash = NULL;
	for (size_t i = 0; i < c->n; i++) {
		const conf_line *l   = &c->lines[i];
		const conf_block *m;
		const char **ours = NULL;

		if (!block_applies(l->block, name)) {
			continue;
		}
		m = match_of(l->block);
		if (strcmp(l->key, "stricthostkeychecking") == 0) {
			ours = strict;
		} else if (strcmp(l->key, "hashknownhosts") == 0) {
			ours = hash;
		}
		if (ours != NULL) {
			if (m != NULL) {
				MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "%s: %s in "
				    "a Match block is not honoured", name,
				    l->key);
			} else if (*ours == NULL) {
				*ours = l->value;
			}
			continue;
		}
		if (m != open) {
			if (m == NULL) {
				mirai__sb_printf(text, "Host *\n");
			} else {
				mirai__sb_printf(text, "Match");
				for (const conf_block *b = m; b != NULL;
				     b = match_of(b->up)) {
					mirai__sb_printf(text, " %s", b->args);
				}
				mirai__sb_printf(text, "\n");
			}
			open = m;
		}
		mirai__sb_printf(text, "%s %s\n", l->key, l->value);
	}
}

/*
 * h's host key policy and known_hosts form.  The options' policy beats
 * StrictHostKeyChecking; without either, ssh(1)'s default, ask, is strict
 * here, as nobody can be asked.
 */
static int
host_policy(mirai__ssh *s, host *h, const char *strict, const char *hash,
    mirai_errmsg *em)
{
	h->hostkey = s->hostkey;
	if (h->hostkey == MIRAI__SSH_FROM_CONFIG) {
		if (strict == NULL || word_is(strict, "yes") ||
		    word_is(strict, "true") || word_is(strict, "ask")) {
			h->hostkey = MIRAI__SSH_STRICT;
		} else if (word_is(strict, "accept-new") ||
		    word_is(strict, "no") || word_is(strict, "off") ||
		    word_is(strict, "false")) {
			/* ssh(1) with "no" goes on even when the key has
			 * changed; a launcher that nobody watches does not:
			 * "no" learns unknown keys, as accept-new does, and
			 * still refuses a changed one. */
			h->hostkey = MIRAI__SSH_ACCEPT_NEW;
		} else {
			return mirai__fail(em, MIRAI_EINVAL, "%s: ssh config: "
			    "StrictHostKeyChecking %s: not yes, ask, "
			    "accept-new or no", h->name, strict);
		}
	}
	if (hash == NULL || word_is(hash, "no") || word_is(hash, "false")) {
		h->hash_known = 0;
	} else if (word_is(hash, "yes") || word_is(hash, "true")) {
		h->hash_known = 1;
	} else {
		return mirai__fail(em, MIRAI_EINVAL, "%s: ssh config: "
		    "HashKnownHosts %s: not yes or no", h->name, hash);
	}
	return 0;
}

/*
 * Give h's session the config chosen for it.  libssh reads a config only
 * from a file: the lines go through a memfd, which libssh opens by its
 * /proc name.  libssh also quietly skips a file it cannot open, so the
 * name is checked first.
 */
int
mirai__ssh_apply_config(mirai__ssh *s, host *h, mirai_errmsg *em)
{
	mirai__sb text = {0};
	const char *strict, *hash;
	char path[64];
	size_t off = 0;
	int fd, rv;

	conf_for_host(s->conf, h->name, &text, &strict, &hash);
	if (text.failed) {
		free(text.buf);
		return mirai__fail(em, MIRAI_ENOMEM, "%s: out of memory",
		    h->name);
	}
	if ((rv = host_policy(s, h, strict, hash, em)) != 0) {
		free(text.buf);
		return rv;
	}
	if ((fd = memfd_create("mirai-ssh-config", MFD_CLOEXEC)) < 0) {
		free(text.buf);
		return mirai__fail(em, MIRAI_ENOFILES, "%s: memfd: %s",
		    h->name, strerror(errno));
	}
	while (rv == 0 && off < text.len) {
		ssize_t n = write(fd, text.buf + off, text.len - off);
		if (n >= 0) {
			off += (size_t) n;
		} else if (errno != EINTR) {
			rv = mirai__fail(em, MIRAI_ENOMEM, "%s: writing its "
			    "ssh config: %s", h->name, strerror(errno));
		}
	}
	free(text.buf);
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	if (rv == 0 && access(path, R_OK) != 0) {
		rv = mirai__fail(em, MIRAI_ESSH, "%s: cannot hand the ssh "
		    "config to libssh (%s: %s)", h->name, path,
		    strerror(errno));
	}
	if (rv == 0 && ssh_options_parse_config(h->ss, path) != 0) {
		rv = mirai__fail(em, MIRAI_ESSH, "%s: cannot use the ssh "
		    "config: %s", h->name, ssh_get_error(h->ss));
	}
	close(fd);
	return rv;
}
