/*
 * ssh.c: running commands on remote hosts over ssh; the only file that
 * calls libssh.  It owns the ssh sessions of a mirai__ssh and the channels
 * on them: one session per (host, user, port), one channel per command.
 *
 * libssh sessions are not thread-safe, so each session belongs to one
 * thread at a time:
 *  - up to max_parallel workers, started as hosts are queued, connect,
 *    check the host key, authenticate, then open channels, start the
 *    commands and write their input;
 *  - the keeper, one thread, then holds the session and waits in
 *    ssh_event_dopoll() on every session it holds plus an eventfd that
 *    wakes it, and reports each command's end.  A command for a session
 *    the keeper holds makes it hand the session back to a worker.
 * Workers use libssh in nonblocking mode and wait in their own poll(),
 * which also watches a stop eventfd: destroy never waits for a slow host.
 *
 * Events are reported from these threads with no lock held, and not at
 * all once destroy has begun.
 *
 * The ssh config is read here, once, with OpenSSH's rules rather than
 * libssh's (which matches later Host blocks against a HostName already
 * substituted): each session gets libssh the lines that apply to its host,
 * in order, and libssh keeps the first value of each.  Learnt host keys
 * are written here too when they must be hashed, which libssh cannot do.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <mbedtls/base64.h>
#include <mbedtls/md.h>

#include "internal.h"
#include "ssh.h"

#define DEFAULT_PARALLEL 16
#define DEFAULT_TIMEOUT_MS 10000
/* How much of a command's stderr is kept for its exit report. */
#define TAIL_MAX 480
/* The exit status reported when a command's end is unknown (the
 * connection was lost, or the server sent no status): ssh(1)'s. */
#define LOST_STATUS 255
/* Input is written in pieces of at most this size. */
#define WRITE_MAX (1024 * 1024)
/* Includes nested deeper than this are refused, as by ssh(1). */
#define INCLUDE_DEPTH 16
/* The host table's first size; it doubles as hosts come. */
#define TABLE_MIN 16

/* What start() returns besides 0 and a command's own error value. */
#define START_STOPPED (-1) /* the module is stopping */
#define START_BROKEN  (-2) /* the session is unusable */
#define START_REFUSED (-3) /* the server wants no more channels on it */

enum owner {
	OWN_QUEUE,  /* waits in the queue for a worker */
	OWN_WORKER, /* a worker sets it up or opens channels on it */
	OWN_HANDED, /* on its way to the keeper */
	OWN_KEEPER, /* the keeper watches its channels */
};

typedef struct cmd cmd;
typedef struct host host;
typedef struct conf conf;

struct cmd {
	cmd *next;
	size_t id;
	char *command;
	unsigned char *input;
	size_t input_len;
	ssh_channel ch;
	struct ssh_channel_callbacks_struct cbs;
	/* Written by the channel callbacks, in the session's thread. */
	int status;          /* exit status; -1 until one arrives */
	int signo;           /* signal that ended it; 0: none */
	char signame[16];
	int closed;          /* the server closed the channel */
	int tail_cut;        /* the tail lost its beginning */
	size_t tail_len;
	char tail[TAIL_MAX]; /* the end of its stderr */
};

struct host {
	host *next;      /* in s->hosts */
	host *prev;
	host *tnext;     /* in its s->table bucket, while it takes commands */
	uint32_t hash;   /* of name, user and port */
	int in_table;    /* 0 once it refused a channel, or is gone */
	host *qnext;     /* in the worker queue or the handed list */
	host *knext;     /* in the keeper's list */
	char *name;      /* as the caller wrote it: messages name it */
	char *user;      /* NULL: from the ssh config, else the local user */
	int port;        /* 0: from the ssh config, else 22 */
	int owner;       /* enum owner; under s->mtx */
	cmd *pending;    /* waiting for a channel; under s->mtx */
	cmd *pending_tail;
	/* The owner's alone. */
	ssh_session ss;
	int hostkey;     /* enum mirai__ssh_hostkey, never FROM_CONFIG */
	int hash_known;  /* learnt keys are written hashed */
	int ready;       /* connected and authenticated */
	int in_event;    /* in the keeper's ssh_event */
	cmd *running;    /* channel open */
};

struct mirai__ssh {
	pthread_mutex_t mtx;
	pthread_cond_t work; /* a host was queued, or stop */
	mirai__ssh_cb cb;
	void *arg;
	int max_parallel;
	int port;
	int hostkey;
	int timeout_ms;
	char *user;
	char *identity;
	char *known_hosts;
	conf *conf;     /* read once by create; read-only after */
	/* Under mtx. */
	host *hosts;    /* every host, also the full ones */
	host **table;   /* hosts that take commands, by hash; NULL: none yet */
	size_t nbuckets;
	size_t ntable;
	host *queue, *queue_tail;
	size_t queued;
	host *handed;
	pthread_t *workers;
	int nworkers;
	int nidle;
	/* Threads and their wake-ups. */
	pthread_t keeper;
	ssh_event ev;   /* the keeper's */
	host *kept;     /* the keeper's */
	int wake_fd;    /* wakes the keeper; drained by it */
	int stop_fd;    /* written once by destroy, never drained */
	atomic_int stopping;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rv;

/* Hosts learned by different sessions, or modules, go to the same
 * known_hosts file: one at a time, so that none is checked half-written
 * or learned twice. */
static pthread_mutex_t known_hosts_lock = PTHREAD_MUTEX_INITIALIZER;

static void
init_libssh(void)
{
	init_rv = ssh_init();
}

static void
report(mirai__ssh *s, size_t id, int event, int status, const char *msg)
{
	if (!atomic_load(&s->stopping)) {
		s->cb(s->arg, id, event, status, msg != NULL ? msg : "");
	}
}

static void
poke(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof one) < 0) {
		/* The counter is far from full: nothing to do. */
	}
}

/* ---- commands ------------------------------------------------------ */

static cmd *
cmd_new(size_t id, const char *command, const void *input, size_t len)
{
	cmd *c = calloc(1, sizeof *c);

	if (c == NULL) {
		return NULL;
	}
	c->id     = id;
	c->status = -1;
	if ((c->command = mirai__strdup(command)) == NULL) {
		free(c);
		return NULL;
	}
	if (len > 0) {
		if ((c->input = malloc(len)) == NULL) {
			free(c->command);
			free(c);
			return NULL;
		}
		memcpy(c->input, input, len);
		c->input_len = len;
	}
	return c;
}

/* The input may hold secrets: wipe it as soon as it is written. */
static void
cmd_forget_input(cmd *c)
{
	if (c->input != NULL) {
		explicit_bzero(c->input, c->input_len);
		free(c->input);
		c->input     = NULL;
		c->input_len = 0;
	}
}

/*
 * Close and free the channel: the server sees stdin EOF and the channel
 * close (also one it closed first: that close is answered).  Closed
 * explicitly rather than left to ssh_channel_free, which closes only in
 * some states.  The session is nonblocking, so the close is queued and
 * sent without waiting for a slow host.
 */
static void
cmd_close(cmd *c)
{
	if (c->ch != NULL) {
		ssh_remove_channel_callbacks(c->ch, &c->cbs);
		if (ssh_is_connected(ssh_channel_get_session(c->ch))) {
			ssh_channel_close(c->ch);
		}
		ssh_channel_free(c->ch);
		c->ch = NULL;
	}
}

static void
cmd_free(cmd *c)
{
	cmd_close(c);
	cmd_forget_input(c);
	free(c->command);
	free(c);
}

static void
cmd_free_list(cmd *c)
{
	while (c != NULL) {
		cmd *next = c->next;
		cmd_free(c);
		c = next;
	}
}

static int
on_data(ssh_session ss, ssh_channel ch, void *data, uint32_t len,
    int is_stderr, void *arg)
{
	cmd *c = arg;

	/* stdout is read and dropped, so that the window stays open. */
	if (is_stderr) {
		const char *p = data;
		size_t n      = len;

		if (n >= TAIL_MAX) {
			p += n - TAIL_MAX;
			n            = TAIL_MAX;
			c->tail_len  = 0;
			c->tail_cut  = 1;
		} else if (c->tail_len + n > TAIL_MAX) {
			size_t drop = c->tail_len + n - TAIL_MAX;
			memmove(c->tail, c->tail + drop, c->tail_len - drop);
			c->tail_len -= drop;
			c->tail_cut = 1;
		}
		memcpy(c->tail + c->tail_len, p, n);
		c->tail_len += n;
	}
	return (int) len;
}

static void
on_close(ssh_session ss, ssh_channel ch, void *arg)
{
	((cmd *) arg)->closed = 1;
}

static void
on_exit_status(ssh_session ss, ssh_channel ch, int status, void *arg)
{
	((cmd *) arg)->status = status;
}

static void
on_exit_signal(ssh_session ss, ssh_channel ch, const char *sig, int core,
    const char *errmsg, const char *lang, void *arg)
{
	/* RFC 4254 names these; their numbers are the usual ones. */
	static const struct {
		const char *name;
		int no;
	} known[] = {
		{"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"FPE", SIGFPE},
		{"HUP", SIGHUP}, {"ILL", SIGILL}, {"INT", SIGINT},
		{"KILL", SIGKILL}, {"PIPE", SIGPIPE}, {"QUIT", SIGQUIT},
		{"SEGV", SIGSEGV}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
		{"USR2", SIGUSR2},
	};
	cmd *c = arg;

	snprintf(c->signame, sizeof c->signame, "%s", sig != NULL ? sig : "?");
	c->signo = -1;
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
		if (sig != NULL && strcmp(sig, known[i].name) == 0) {
			c->signo = known[i].no;
		}
	}
}

/* The status and message of a command whose channel the server closed. */
static int
cmd_exit(const cmd *c, const char *name, char *msg, size_t len)
{
	const char *p = c->tail;
	size_t n      = c->tail_len;
	const char *nl;

	/* A tail that lost its beginning starts at its first whole line. */
	if (c->tail_cut && (nl = memchr(p, '\n', n)) != NULL &&
	    (size_t) (nl - p) + 1 < n) {
		n -= (size_t) (nl - p) + 1;
		p = nl + 1;
	}
	while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r' ||
	                    p[n - 1] == ' ' || p[n - 1] == '\t')) {
		n--;
	}
	if (n > 0) {
		snprintf(msg, len, "%.*s", (int) n, p);
	} else if (c->signo != 0) {
		snprintf(msg, len, "%s: killed by signal %s", name, c->signame);
	} else if (c->status < 0) {
		snprintf(msg, len, "%s: the command ended without an exit "
		    "status", name);
	} else {
		msg[0] = '\0';
	}
	if (c->status >= 0) {
		return c->status;
	}
	return c->signo > 0 ? 128 + c->signo : LOST_STATUS;
}

/* ---- hosts and the worker queue (under s->mtx) --------------------- */

static void *worker_main(void *arg);

static void
host_free(mirai__ssh *s, host *h)
{
	cmd_free_list(h->running);
	cmd_free_list(h->pending);
	if (h->ss != NULL) {
		if (h->in_event) {
			ssh_event_remove_session(s->ev, h->ss);
		}
		if (h->ready) {
			ssh_disconnect(h->ss);
		}
		ssh_free(h->ss);
	}
	free(h->name);
	free(h->user);
	free(h);
}

static int
same(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* FNV-1a over name, user and port: the key of the host table. */
static uint32_t
host_hash(const char *name, const char *user, int port)
{
	uint32_t x = 2166136261u;

	for (const char *p = name; *p != '\0'; p++) {
		x = (x ^ (unsigned char) *p) * 16777619u;
	}
	x = (x ^ 0xffu) * 16777619u; /* no byte of a name: ends it */
	for (const char *p = user != NULL ? user : ""; *p != '\0'; p++) {
		x = (x ^ (unsigned char) *p) * 16777619u;
	}
	x = (x ^ (user != NULL ? 0xfeu : 0xfdu)) * 16777619u;
	return (x ^ (uint32_t) port) * 16777619u;
}

/* Thousands of hosts each get a session: finding one must not walk them
 * all.  A table that cannot grow still works, with longer chains. */
static void
table_grow(mirai__ssh *s)
{
	size_t n = s->nbuckets == 0 ? TABLE_MIN : 2 * s->nbuckets;
	host **t;

	if (s->ntable < s->nbuckets || (t = calloc(n, sizeof *t)) == NULL) {
		return;
	}
	for (size_t i = 0; i < s->nbuckets; i++) {
		host *h, *next;
		for (h = s->table[i]; h != NULL; h = next) {
			next         = h->tnext;
			h->tnext     = t[h->hash & (n - 1)];
			t[h->hash & (n - 1)] = h;
		}
	}
	free(s->table);
	s->table    = t;
	s->nbuckets = n;
}

/* h takes no more commands (it is full, or gone): later ones for its
 * host make a new session. */
static void
table_remove(mirai__ssh *s, host *h)
{
	host **hp;

	if (!h->in_table) {
		return;
	}
	for (hp = &s->table[h->hash & (s->nbuckets - 1)]; *hp != h;
	     hp = &(*hp)->tnext) {
	}
	*hp         = h->tnext;
	h->in_table = 0;
	s->ntable--;
}

static void
unlink_host(mirai__ssh *s, host *h)
{
	table_remove(s, h);
	if (h->prev != NULL) {
		h->prev->next = h->next;
	} else if (s->hosts == h) {
		s->hosts = h->next;
	}
	if (h->next != NULL) {
		h->next->prev = h->prev;
	}
	h->next = h->prev = NULL;
}

/* Queue h for a worker, starting one when every worker is busy.  Fails
 * only when no worker exists and none can be started. */
static int
queue_host(mirai__ssh *s, host *h)
{
	if (s->queued >= (size_t) s->nidle && s->nworkers < s->max_parallel &&
	    !atomic_load(&s->stopping)) {
		if (pthread_create(&s->workers[s->nworkers], NULL, worker_main,
		        s) == 0) {
			s->nworkers++;
		} else if (s->nworkers == 0) {
			return MIRAI_ENOMEM;
		} else {
			MIRAI__LOG(MIRAI_LOG_WARN, "ssh",
			    "cannot start another worker thread");
		}
	}
	h->owner = OWN_QUEUE;
	h->qnext = NULL;
	if (s->queue_tail != NULL) {
		s->queue_tail->qnext = h;
	} else {
		s->queue = h;
	}
	s->queue_tail = h;
	s->queued++;
	pthread_cond_signal(&s->work);
	return 0;
}

/* The session for name, user and port that takes new commands, made and
 * queued if there is none.  NULL: out of memory. */
static host *
host_get(mirai__ssh *s, const char *name, const char *user, int port)
{
	uint32_t hash = host_hash(name, user, port);
	host *h;

	if (s->nbuckets > 0) {
		for (h = s->table[hash & (s->nbuckets - 1)]; h != NULL;
		     h = h->tnext) {
			if (h->hash == hash && h->port == port &&
			    same(h->user, user) && strcmp(h->name, name) == 0) {
				return h;
			}
		}
	}
	table_grow(s);
	if (s->nbuckets == 0 || (h = calloc(1, sizeof *h)) == NULL) {
		return NULL;
	}
	h->hash = hash;
	h->port = port;
	h->name = mirai__strdup(name);
	h->user = mirai__strdup(user);
	if (h->name == NULL || (user != NULL && h->user == NULL)) {
		free(h->name);
		free(h->user);
		free(h);
		return NULL;
	}
	h->next = s->hosts;
	if (s->hosts != NULL) {
		s->hosts->prev = h;
	}
	s->hosts    = h;
	h->tnext    = s->table[hash & (s->nbuckets - 1)];
	s->table[hash & (s->nbuckets - 1)] = h;
	h->in_table = 1;
	s->ntable++;
	if (queue_host(s, h) != 0) {
		unlink_host(s, h);
		free(h->name);
		free(h->user);
		free(h);
		return NULL;
	}
	return h;
}

/* Add the list c (ending at last) to the front of h's pending commands,
 * and get h to a worker if the keeper holds it. */
static void
pending_push_front(mirai__ssh *s, host *h, cmd *c, cmd *last)
{
	last->next = h->pending;
	if (h->pending == NULL) {
		h->pending_tail = last;
	}
	h->pending = c;
	if (h->owner == OWN_KEEPER) {
		poke(s->wake_fd);
	}
}

/*
 * h's session is unusable (its setup failed, or it broke): forget h, so
 * that later commands get a new session, and report its commands, the
 * running ones as ended with LOST_STATUS and the waiting ones as failed
 * with err.  Called by h's owner, unlocked.
 */
static void
host_drop(mirai__ssh *s, host *h, int err, const char *msg)
{
	cmd *pending;

	MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "%s", msg);
	pthread_mutex_lock(&s->mtx);
	unlink_host(s, h);
	pending    = h->pending;
	h->pending = h->pending_tail = NULL;
	pthread_mutex_unlock(&s->mtx);
	for (cmd *c = h->running; c != NULL; c = c->next) {
		report(s, c->id, MIRAI__SSH_EXITED, LOST_STATUS, msg);
	}
	for (cmd *c = pending; c != NULL; c = c->next) {
		report(s, c->id, MIRAI__SSH_FAILED, err, msg);
	}
	cmd_free_list(pending);
	host_free(s, h);
}

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

static void
conf_free(conf *c)
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
 * user's file, then the system's.  *out is the caller's (conf_free). */
static int
conf_load(conf **out, const char *path, mirai_errmsg *err)
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
				conf_free(c);
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
		conf_free(c);
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
static int
apply_config(mirai__ssh *s, host *h, mirai_errmsg *em)
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

/* ---- workers -------------------------------------------------------- */

static int
session_dead(ssh_session ss)
{
	return !ssh_is_connected(ss) ||
	    (ssh_get_status(ss) & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0;
}

/*
 * Wait until the session has something to do.  Returns 0, MIRAI_ETIMEDOUT
 * once deadline (monotonic ms) has passed, MIRAI_ECLOSED when the module
 * stops, or MIRAI_ENOMEM when poll() cannot wait.
 */
static int
wait_io(mirai__ssh *s, ssh_session ss, int64_t deadline)
{
	struct pollfd p[2];
	int flags = ssh_get_poll_flags(ss);
	int64_t left;

	p[0].fd     = ssh_get_fd(ss);
	p[0].events = 0;
	if ((flags & SSH_READ_PENDING) != 0) {
		p[0].events |= POLLIN;
	}
	if ((flags & SSH_WRITE_PENDING) != 0) {
		p[0].events |= POLLOUT;
	}
	if (p[0].events == 0) {
		p[0].events = POLLIN;
	}
	p[1].fd     = s->stop_fd;
	p[1].events = POLLIN;
	for (;;) {
		if ((left = deadline - mirai__now_ms()) <= 0) {
			return MIRAI_ETIMEDOUT;
		}
		if (poll(p, 2, left > INT_MAX ? INT_MAX : (int) left) >= 0) {
			break;
		}
		if (errno != EINTR) {
			return MIRAI_ENOMEM;
		}
	}
	if (p[1].revents != 0 || atomic_load(&s->stopping)) {
		return MIRAI_ECLOSED;
	}
	return 0;
}

/* A wait that ended with rv while doing what, as rv and a message
 * (none for MIRAI_ECLOSED: the module stops, nobody reads it). */
static int
wait_error(host *h, int rv, const char *what, mirai_errmsg *em)
{
	if (rv == MIRAI_ECLOSED) {
		return rv;
	}
	return mirai__fail(em, rv, "%s: %s %s", h->name,
	    rv == MIRAI_ETIMEDOUT ? "timed out" : "out of memory", what);
}

/* Why ssh_connect() failed, as an error value and a message. */
static int
connect_failed(host *h, mirai_errmsg *em)
{
	const char *e = ssh_get_error(h->ss);
	const char *prefix = "Failed to connect: ";
	char rbuf[128], tbuf[128];
	const char *refused = strerror_r(ECONNREFUSED, rbuf, sizeof rbuf);
	const char *timeout = strerror_r(ETIMEDOUT, tbuf, sizeof tbuf);

	/* A server that sent its banner was reached: what failed is ssh. */
	if (ssh_get_serverbanner(h->ss) != NULL) {
		return mirai__fail(em, MIRAI_ESSH, "%s: ssh: %s", h->name, e);
	}
	if (strstr(e, refused) != NULL) {
		return mirai__fail(em, MIRAI_ECONNREFUSED,
		    "%s: unreachable: %s", h->name, refused);
	}
	if (strncmp(e, prefix, strlen(prefix)) == 0) {
		e += strlen(prefix);
	}
	if (strstr(e, timeout) != NULL || strncmp(e, "Timeout", 7) == 0) {
		return mirai__fail(em, MIRAI_ETIMEDOUT, "%s: unreachable: %s",
		    h->name, e);
	}
	return mirai__fail(em, MIRAI_EUNREACHABLE, "%s: unreachable: %s",
	    h->name, e);
}

/* The known_hosts name field for name (len bytes), hashed as ssh-keygen -H
 * does: "|1|salt|HMAC-SHA1(salt, name)", a fresh random salt, base64. */
static int
hash_name(const char *name, size_t len, char *out, size_t out_len)
{
	const mbedtls_md_info_t *sha1 =
	    mbedtls_md_info_from_type(MBEDTLS_MD_SHA1);
	unsigned char salt[20], mac[20], salt64[32], mac64[32];
	size_t n;

	if (sha1 == NULL ||
	    getrandom(salt, sizeof salt, 0) != (ssize_t) sizeof salt ||
	    mbedtls_md_hmac(sha1, salt, sizeof salt,
	        (const unsigned char *) name, len, mac) != 0 ||
	    mbedtls_base64_encode(salt64, sizeof salt64, &n, salt,
	        sizeof salt) != 0 ||
	    mbedtls_base64_encode(mac64, sizeof mac64, &n, mac,
	        sizeof mac) != 0) {
		return -1;
	}
	snprintf(out, out_len, "|1|%s|%s", (char *) salt64, (char *) mac64);
	return 0;
}

/* Open path to append to it (and read its last byte), making its
 * directory (~/.ssh) if missing. */
static int
open_known_hosts(const char *path)
{
	int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	char *dir, *slash;

	if (fd >= 0 || errno != ENOENT || (dir = mirai__strdup(path)) == NULL) {
		return fd;
	}
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) == 0) {
			fd = open(path, O_RDWR | O_APPEND | O_CREAT |
			    O_CLOEXEC, 0600);
		}
	}
	free(dir);
	return fd;
}

/*
 * Add h's host key to known_hosts with its name hashed: libssh writes
 * only plain names.  The line is libssh's own export with the name field
 * replaced, written at once; a file whose last line lacks its newline
 * gets one first.  Under known_hosts_lock.
 */
static int
learn_hashed(host *h, mirai_errmsg *em)
{
	char *entry = NULL, *path = NULL, *line = NULL;
	char field[80], last = '\n';
	const char *rest;
	struct stat st;
	int fd = -1, n, rv = 0;

	if (ssh_session_export_known_hosts_entry(h->ss, &entry) != SSH_OK ||
	    ssh_options_get(h->ss, SSH_OPTIONS_KNOWNHOSTS, &path) != SSH_OK ||
	    (rest = strchr(entry, ' ')) == NULL) {
		rv = mirai__fail(em, MIRAI_ESSH, "%s: cannot add its host key "
		    "to known_hosts: %s", h->name, ssh_get_error(h->ss));
		goto out;
	}
	if (hash_name(entry, (size_t) (rest - entry), field, sizeof field) !=
	    0) {
		rv = mirai__fail(em, MIRAI_ECRYPTO, "%s: cannot hash its name "
		    "for known_hosts", h->name);
		goto out;
	}
	if ((fd = open_known_hosts(path)) < 0) {
		rv = mirai__fail(em, MIRAI_ESSH, "%s: cannot add its host key "
		    "to %s: %s", h->name, path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) == 0 && st.st_size > 0 &&
	    pread(fd, &last, 1, st.st_size - 1) != 1) {
		last = '\n';
	}
	n = asprintf(&line, "%s%s%s%s", last == '\n' ? "" : "\n", field, rest,
	    rest[strlen(rest) - 1] == '\n' ? "" : "\n");
	if (n < 0) {
		line = NULL;
		rv   = mirai__fail(em, MIRAI_ENOMEM, "%s: out of memory",
		      h->name);
	} else if (write(fd, line, (size_t) n) != n) {
		rv = mirai__fail(em, MIRAI_ESSH, "%s: cannot add its host key "
		    "to %s: %s", h->name, path, strerror(errno));
	}
out:
	if (fd >= 0) {
		close(fd);
	}
	free(line);
	ssh_string_free_char(entry);
	ssh_string_free_char(path);
	return rv;
}

static int
check_host_key(mirai__ssh *s, host *h, mirai_errmsg *em)
{
	int rv = 0;

	pthread_mutex_lock(&known_hosts_lock);
	switch (ssh_session_is_known_server(h->ss)) {
	case SSH_KNOWN_HOSTS_OK:
		break;
	case SSH_KNOWN_HOSTS_CHANGED:
	case SSH_KNOWN_HOSTS_OTHER:
		rv = mirai__fail(em, MIRAI_ECRYPTO, "%s: host key changed "
		    "(possible attack; remove the old key from known_hosts)",
		    h->name);
		break;
	case SSH_KNOWN_HOSTS_UNKNOWN:
	case SSH_KNOWN_HOSTS_NOT_FOUND:
		if (h->hostkey != MIRAI__SSH_ACCEPT_NEW) {
			rv = mirai__fail(em, MIRAI_ECRYPTO, "%s: unknown host "
			    "key (use accept-new to learn it)", h->name);
		} else if (h->hash_known) {
			if ((rv = learn_hashed(h, em)) == 0) {
				MIRAI__LOG(MIRAI_LOG_WARN, "ssh", "%s: host key "
				    "learned and added, hashed, to "
				    "known_hosts", h->name);
			}
		} else if (ssh_session_update_known_hosts(h->ss) != SSH_OK) {
			rv = mirai__fail(em, MIRAI_ESSH, "%s: cannot add its "
			    "host key to known_hosts: %s", h->name,
			    ssh_get_error(h->ss));
		} else {
			MIRAI__LOG(MIRAI_LOG_WARN, "ssh",
			    "%s: host key learned and added to known_hosts",
			    h->name);
		}
		break;
	default:
		rv = mirai__fail(em, MIRAI_ESSH, "%s: cannot check the host "
		    "key: %s", h->name, ssh_get_error(h->ss));
		break;
	}
	pthread_mutex_unlock(&known_hosts_lock);
	return rv;
}

static int
authenticate(mirai__ssh *s, host *h, int64_t deadline, mirai_errmsg *em)
{
	ssh_key key = NULL;
	char *user  = NULL;
	int rc, rv;

	/* An identity file is the only key tried; without one, the agent's
	 * keys and the default and configured key files are. */
	if (s->identity != NULL &&
	    ssh_pki_import_privkey_file(s->identity, NULL, NULL, NULL,
	        &key) != SSH_OK) {
		return mirai__fail(em, MIRAI_EINVAL,
		    "%s: cannot load the identity file %s", h->name,
		    s->identity);
	}
	for (;;) {
		if (key != NULL) {
			rc = ssh_userauth_publickey(h->ss, NULL, key);
		} else {
			rc = ssh_userauth_publickey_auto(h->ss, NULL, NULL);
		}
		if (rc != SSH_AUTH_AGAIN) {
			break;
		}
		if ((rv = wait_io(s, h->ss, deadline)) != 0) {
			ssh_key_free(key);
			return wait_error(h, rv, "authenticating", em);
		}
	}
	ssh_key_free(key);
	if (rc == SSH_AUTH_SUCCESS) {
		return 0;
	}
	if (rc == SSH_AUTH_ERROR) {
		return mirai__fail(em, MIRAI_ESSH, "%s: authentication "
		    "failed: %s", h->name, ssh_get_error(h->ss));
	}
	if (ssh_options_get(h->ss, SSH_OPTIONS_USER, &user) != SSH_OK) {
		user = NULL;
	}
	rv = mirai__fail(em, MIRAI_EPEERAUTH, "%s: authentication refused "
	    "for user %s", h->name, user != NULL ? user : "?");
	ssh_string_free_char(user);
	return rv;
}

/* Connect h's session, check the host key, authenticate.  Returns 0, an
 * error value with em filled, or MIRAI_ECLOSED when stopping. */
static int
setup(mirai__ssh *s, host *h, mirai_errmsg *em)
{
	int64_t deadline = mirai__now_ms() + s->timeout_ms;
	long secs        = (s->timeout_ms + 999) / 1000;
	int nodelay      = 1;
	int rc, rv;

	if ((h->ss = ssh_new()) == NULL) {
		return mirai__fail(em, MIRAI_ENOMEM, "%s: out of memory",
		    h->name);
	}
	/* The user is set before the config is read, so that the config's
	 * User applies only when none was given; Port and UserKnownHostsFile
	 * from the config are overridden after it. */
	if (ssh_options_set(h->ss, SSH_OPTIONS_HOST, h->name) != 0 ||
	    (h->user != NULL &&
	        ssh_options_set(h->ss, SSH_OPTIONS_USER, h->user) != 0)) {
		return mirai__fail(em, MIRAI_EINVAL, "%s: invalid host or "
		    "user name", h->name);
	}
	if ((rv = apply_config(s, h, em)) != 0) {
		return rv;
	}
	/* Without TCP_NODELAY each request waits for the peer's delayed ACK
	 * (40 ms on Linux): opening a channel took 45 ms instead of 2. */
	if ((h->port != 0 &&
	        ssh_options_set(h->ss, SSH_OPTIONS_PORT, &h->port) != 0) ||
	    (s->known_hosts != NULL &&
	        ssh_options_set(h->ss, SSH_OPTIONS_KNOWNHOSTS,
	            s->known_hosts) != 0) ||
	    ssh_options_set(h->ss, SSH_OPTIONS_TIMEOUT, &secs) != 0 ||
	    ssh_options_set(h->ss, SSH_OPTIONS_NODELAY, &nodelay) != 0) {
		return mirai__fail(em, MIRAI_ESSH, "%s: %s", h->name,
		    ssh_get_error(h->ss));
	}
	ssh_set_blocking(h->ss, 0);
	while ((rc = ssh_connect(h->ss)) == SSH_AGAIN) {
		if ((rv = wait_io(s, h->ss, deadline)) != 0) {
			return wait_error(h, rv, "connecting", em);
		}
	}
	if (rc != SSH_OK) {
		return connect_failed(h, em);
	}
	if ((rv = check_host_key(s, h, em)) != 0 ||
	    (rv = authenticate(s, h, deadline, em)) != 0) {
		return rv;
	}
	h->ready = 1;
	MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "%s: session ready", h->name);
	return 0;
}

/*
 * Open a channel on h for c, run its command and write its input.
 * Returns 0 (started), c's own error value with em filled, or one of the
 * START_ values (START_BROKEN fills em and *drop_err).
 */
static int
start(mirai__ssh *s, host *h, cmd *c, mirai_errmsg *em, int *drop_err)
{
	int64_t deadline = mirai__now_ms() + s->timeout_ms;
	ssh_session ss   = h->ss;
	const char *what = "opening a channel";
	size_t off       = 0;
	int rc, rv = 0;

	if ((c->ch = ssh_channel_new(ss)) == NULL) {
		return mirai__fail(em, MIRAI_ENOMEM, "%s: out of memory",
		    h->name);
	}
	while ((rc = ssh_channel_open_session(c->ch)) == SSH_AGAIN) {
		if ((rv = wait_io(s, ss, deadline)) != 0) {
			goto wait_failed;
		}
	}
	if (rc != SSH_OK) {
		/* A server that refuses one more channel while others are
		 * open has reached its limit (sshd's MaxSessions). */
		if (!session_dead(ss) && h->running != NULL &&
		    ssh_get_error_code(ss) == SSH_REQUEST_DENIED) {
			MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "%s: no more "
			    "channels on this session: %s", h->name,
			    ssh_get_error(ss));
			cmd_close(c);
			return START_REFUSED;
		}
		goto failed;
	}
	ssh_callbacks_init(&c->cbs);
	c->cbs.userdata                     = c;
	c->cbs.channel_data_function        = on_data;
	c->cbs.channel_close_function       = on_close;
	c->cbs.channel_exit_status_function = on_exit_status;
	c->cbs.channel_exit_signal_function = on_exit_signal;
	ssh_set_channel_callbacks(c->ch, &c->cbs);
	what = "starting the command";
	while ((rc = ssh_channel_request_exec(c->ch, c->command)) ==
	    SSH_AGAIN) {
		if ((rv = wait_io(s, ss, deadline)) != 0) {
			goto wait_failed;
		}
	}
	if (rc != SSH_OK) {
		goto failed;
	}
	/* A command that ended before reading all its input has started all
	 * the same: its end is reported as usual. */
	what = "writing the input";
	while (off < c->input_len && !c->closed) {
		size_t n = c->input_len - off;
		rc       = ssh_channel_write(c->ch, c->input + off,
		          (uint32_t) (n > WRITE_MAX ? WRITE_MAX : n));
		if (rc < 0) {
			if (c->closed || ssh_channel_is_closed(c->ch)) {
				break;
			}
			goto failed;
		}
		off += (size_t) rc;
		if (off < c->input_len &&
		    (rv = wait_io(s, ss, deadline)) != 0) {
			goto wait_failed;
		}
	}
	cmd_forget_input(c);
	return 0;

wait_failed:
	cmd_close(c);
	if (rv == MIRAI_ECLOSED) {
		return START_STOPPED;
	}
	/* A server that does not answer in time is not worth more. */
	*drop_err = wait_error(h, rv, what, em);
	return START_BROKEN;

failed:
	if (session_dead(ss)) {
		*drop_err = MIRAI_ESSH;
		mirai__fail(em, MIRAI_ESSH, "%s: connection lost: %s",
		    h->name, ssh_get_error(ss));
		cmd_close(c);
		return START_BROKEN;
	}
	mirai__fail(em, MIRAI_ESSH, "%s: %s failed: %s", h->name, what,
	    ssh_get_error(ss));
	cmd_close(c);
	return MIRAI_ESSH;
}

/* The server refused c a channel on h: h takes no new commands, and c,
 * the rest and what waits for h go to another session for the host. */
static void
reroute(mirai__ssh *s, host *h, cmd *c)
{
	cmd *last = c;
	host *nh;

	while (last->next != NULL) {
		last = last->next;
	}
	pthread_mutex_lock(&s->mtx);
	/* Out of the table: new commands go elsewhere. */
	table_remove(s, h);
	if (h->pending != NULL) {
		last->next = h->pending;
		last       = h->pending_tail;
		h->pending = h->pending_tail = NULL;
	}
	if ((nh = host_get(s, h->name, h->user, h->port)) != NULL) {
		pending_push_front(s, nh, c, last);
		c = NULL;
	}
	pthread_mutex_unlock(&s->mtx);
	for (cmd *p = c; p != NULL; p = p->next) {
		report(s, p->id, MIRAI__SSH_FAILED, MIRAI_ENOMEM, "out of "
		    "memory");
	}
	cmd_free_list(c);
}

/* Set up h if needed, then start its pending commands until none are
 * left, and hand it to the keeper. */
static void
serve(mirai__ssh *s, host *h)
{
	mirai_errmsg em;
	int rv, drop_err = 0;

	if (!h->ready) {
		rv = setup(s, h, &em);
		if (rv == MIRAI_ECLOSED) {
			return; /* destroy frees h */
		}
		if (rv != 0) {
			host_drop(s, h, rv, em.text);
			return;
		}
	}
	for (;;) {
		cmd *take;

		pthread_mutex_lock(&s->mtx);
		take       = h->pending;
		h->pending = h->pending_tail = NULL;
		if (take == NULL) {
			h->owner = OWN_HANDED;
			h->qnext  = s->handed;
			s->handed = h;
			pthread_mutex_unlock(&s->mtx);
			poke(s->wake_fd);
			return;
		}
		pthread_mutex_unlock(&s->mtx);
		while (take != NULL) {
			cmd *c = take;

			rv = start(s, h, c, &em, &drop_err);
			if (rv == START_REFUSED) {
				reroute(s, h, take);
				break;
			}
			take    = c->next;
			c->next = NULL;
			if (rv == 0) {
				c->next    = h->running;
				h->running = c;
				MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh",
				    "%s: command %zu started", h->name, c->id);
				report(s, c->id, MIRAI__SSH_STARTED, 0, "");
			} else if (rv > 0) {
				MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "%s",
				    em.text);
				report(s, c->id, MIRAI__SSH_FAILED, rv,
				    em.text);
				cmd_free(c);
			} else {
				/* Stopped or broken: c and the rest wait
				 * with h again, for destroy or host_drop. */
				cmd *last = c;
				c->next   = take;
				while (last->next != NULL) {
					last = last->next;
				}
				pthread_mutex_lock(&s->mtx);
				pending_push_front(s, h, c, last);
				pthread_mutex_unlock(&s->mtx);
				if (rv == START_BROKEN) {
					host_drop(s, h, drop_err, em.text);
				}
				return;
			}
		}
	}
}

static void *
worker_main(void *arg)
{
	mirai__ssh *s = arg;

	pthread_mutex_lock(&s->mtx);
	for (;;) {
		host *h;

		while (!atomic_load(&s->stopping) && s->queue == NULL) {
			s->nidle++;
			pthread_cond_wait(&s->work, &s->mtx);
			s->nidle--;
		}
		if (atomic_load(&s->stopping)) {
			break;
		}
		h        = s->queue;
		s->queue = h->qnext;
		if (s->queue == NULL) {
			s->queue_tail = NULL;
		}
		s->queued--;
		h->owner = OWN_WORKER;
		pthread_mutex_unlock(&s->mtx);
		serve(s, h);
		pthread_mutex_lock(&s->mtx);
	}
	pthread_mutex_unlock(&s->mtx);
	return NULL;
}

/* ---- the keeper ------------------------------------------------------ */

static int
on_wake(socket_t fd, int revents, void *arg)
{
	uint64_t n;

	if (read(fd, &n, sizeof n) < 0) {
		/* Already drained. */
	}
	return 0;
}

/* Take the sessions the workers handed over. */
static void
adopt(mirai__ssh *s)
{
	host *h, *next;

	pthread_mutex_lock(&s->mtx);
	h         = s->handed;
	s->handed = NULL;
	for (host *p = h; p != NULL; p = p->qnext) {
		p->owner = OWN_KEEPER;
	}
	pthread_mutex_unlock(&s->mtx);
	for (; h != NULL; h = next) {
		next     = h->qnext;
		h->knext = s->kept;
		s->kept  = h;
		h->in_event = ssh_event_add_session(s->ev, h->ss) == SSH_OK;
		if (!h->in_event) {
			MIRAI__LOG(MIRAI_LOG_WARN, "ssh", "%s: cannot watch "
			    "the session", h->name);
		}
	}
}

/* Report the commands of h whose channel the server closed. */
static void
reap(mirai__ssh *s, host *h)
{
	cmd **cp = &h->running;
	cmd *c;

	while ((c = *cp) != NULL) {
		char msg[TAIL_MAX + 64];
		size_t id;
		int status;

		if (!c->closed) {
			cp = &c->next;
			continue;
		}
		*cp    = c->next;
		id     = c->id;
		status = cmd_exit(c, h->name, msg, sizeof msg);
		cmd_free(c);
		MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "%s: command %zu exited "
		    "with status %d", h->name, id, status);
		report(s, id, MIRAI__SSH_EXITED, status, msg);
	}
}

/* After a wait: report ended commands, drop lost sessions, and give
 * sessions with new commands back to a worker. */
static void
keep_check(mirai__ssh *s)
{
	host **hp = &s->kept;
	host *h;

	while ((h = *hp) != NULL) {
		mirai_errmsg em;

		reap(s, h);
		if (h->in_event && !session_dead(h->ss)) {
			hp = &h->knext;
			continue;
		}
		*hp = h->knext;
		mirai__fail(&em, MIRAI_ESSH, "%s: connection lost: %s",
		    h->name, ssh_get_error(h->ss));
		host_drop(s, h, MIRAI_ESSH, em.text);
	}
	/* Removing a session from the event is bookkeeping in memory, no
	 * I/O: it is done with the lock held so that no command slips in
	 * between the look at pending and the hand-over. */
	pthread_mutex_lock(&s->mtx);
	for (hp = &s->kept; (h = *hp) != NULL;) {
		if (h->pending == NULL) {
			hp = &h->knext;
			continue;
		}
		*hp = h->knext;
		ssh_event_remove_session(s->ev, h->ss);
		h->in_event = 0;
		if (queue_host(s, h) != 0) {
			/* Not reached: the worker that set h up exists. */
			MIRAI__LOG(MIRAI_LOG_WARN, "ssh", "%s: no worker",
			    h->name);
		}
	}
	pthread_mutex_unlock(&s->mtx);
}

static void *
keeper_main(void *arg)
{
	mirai__ssh *s = arg;

	while (!atomic_load(&s->stopping)) {
		adopt(s);
		keep_check(s);
		if (atomic_load(&s->stopping)) {
			break;
		}
		/* Every session and the wake-up eventfd: the wait ends when
		 * one of them has something. */
		if (ssh_event_dopoll(s->ev, -1) == SSH_ERROR) {
			MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "a session failed "
			    "while watched");
		}
	}
	return NULL;
}

/* ---- the API ----------------------------------------------------------- */

static void
free_module(mirai__ssh *s)
{
	host *h;

	while ((h = s->hosts) != NULL) {
		s->hosts = h->next;
		host_free(s, h);
	}
	free(s->table);
	conf_free(s->conf);
	if (s->ev != NULL) {
		if (s->wake_fd >= 0) {
			ssh_event_remove_fd(s->ev, s->wake_fd);
		}
		ssh_event_free(s->ev);
	}
	if (s->wake_fd >= 0) {
		close(s->wake_fd);
	}
	if (s->stop_fd >= 0) {
		close(s->stop_fd);
	}
	pthread_cond_destroy(&s->work);
	pthread_mutex_destroy(&s->mtx);
	free(s->workers);
	free(s->user);
	free(s->identity);
	free(s->known_hosts);
	free(s);
}

static int
check_opts(const mirai__ssh_opts *o, mirai_errmsg *err)
{
	ssh_key key = NULL;

	if (o->max_parallel < 0 || o->timeout_ms < 0 || o->port < 0 ||
	    o->port > 65535) {
		return mirai__fail(err, MIRAI_EINVAL, "ssh: max_parallel, "
		    "timeout and port must be positive (port at most 65535)");
	}
	if (o->hostkey != MIRAI__SSH_FROM_CONFIG &&
	    o->hostkey != MIRAI__SSH_STRICT &&
	    o->hostkey != MIRAI__SSH_ACCEPT_NEW) {
		return mirai__fail(err, MIRAI_EINVAL, "ssh: the host key "
		    "policy must be from the config, strict or accept-new");
	}
	/* libssh quietly skips a config file it cannot read: a typo in its
	 * name would go unnoticed. */
	if (o->config != NULL && access(o->config, R_OK) != 0) {
		return mirai__fail(err, MIRAI_EINVAL, "ssh: cannot read the "
		    "ssh config %s: %s", o->config, strerror(errno));
	}
	if (o->identity != NULL) {
		if (ssh_pki_import_privkey_file(o->identity, NULL, NULL, NULL,
		        &key) != SSH_OK) {
			return mirai__fail(err, MIRAI_EINVAL, "ssh: cannot "
			    "load the identity file %s (missing, unreadable "
			    "or protected by a passphrase)", o->identity);
		}
		ssh_key_free(key);
	}
	return 0;
}

int
mirai__ssh_create(mirai__ssh **out, const mirai__ssh_opts *opts,
    mirai__ssh_cb cb, void *arg, mirai_errmsg *err)
{
	static const mirai__ssh_opts defaults;
	const mirai__ssh_opts *o = opts != NULL ? opts : &defaults;
	mirai__ssh *s;
	int rv;

	if (out == NULL || cb == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "ssh: no %s",
		    out == NULL ? "output" : "callback");
	}
	pthread_once(&init_once, init_libssh);
	if (init_rv != SSH_OK) {
		return mirai__fail(err, MIRAI_ESSH, "ssh: libssh could not "
		    "initialise");
	}
	if ((rv = check_opts(o, err)) != 0) {
		return rv;
	}
	if ((s = calloc(1, sizeof *s)) == NULL) {
		return MIRAI_ENOMEM;
	}
	if ((rv = conf_load(&s->conf, o->config, err)) != 0) {
		free(s);
		return rv;
	}
	pthread_mutex_init(&s->mtx, NULL);
	pthread_cond_init(&s->work, NULL);
	atomic_init(&s->stopping, 0);
	s->cb           = cb;
	s->arg          = arg;
	s->max_parallel = o->max_parallel > 0 ? o->max_parallel
	                                      : DEFAULT_PARALLEL;
	s->port         = o->port;
	s->hostkey      = o->hostkey;
	s->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	s->user        = mirai__strdup(o->user);
	s->identity    = mirai__strdup(o->identity);
	s->known_hosts = mirai__strdup(o->known_hosts);
	s->workers     = calloc((size_t) s->max_parallel, sizeof *s->workers);
	s->wake_fd     = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->stop_fd     = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->wake_fd < 0 || s->stop_fd < 0) {
		rv = mirai__fail(err, MIRAI_ENOFILES, "ssh: eventfd: %s",
		    strerror(errno));
		free_module(s);
		return rv;
	}
	if (s->workers == NULL || (o->user != NULL && s->user == NULL) ||
	    (o->identity != NULL && s->identity == NULL) ||
	    (o->known_hosts != NULL && s->known_hosts == NULL) ||
	    (s->ev = ssh_event_new()) == NULL ||
	    ssh_event_add_fd(s->ev, s->wake_fd, POLLIN, on_wake, s) !=
	        SSH_OK) {
		free_module(s);
		return MIRAI_ENOMEM;
	}
	if (pthread_create(&s->keeper, NULL, keeper_main, s) != 0) {
		free_module(s);
		return mirai__fail(err, MIRAI_ENOMEM, "ssh: cannot start a "
		    "thread");
	}
	*out = s;
	return 0;
}

int
mirai__ssh_run(mirai__ssh *s, size_t id, const char *dest, const char *user,
    int port, const char *command, const void *input, size_t input_len)
{
	const char *name = dest;
	const char *at;
	char *at_user = NULL;
	cmd *c;
	host *h;
	int rv = 0;

	if (s == NULL || dest == NULL || command == NULL || port < 0 ||
	    port > 65535 || (input == NULL && input_len > 0)) {
		return MIRAI_EINVAL;
	}
	/* "user@host": the last '@' ends the user name, as in ssh(1). */
	if ((at = strrchr(dest, '@')) != NULL) {
		name = at + 1;
		if (user == NULL) {
			if (at == dest) {
				return MIRAI_EINVAL;
			}
			if ((at_user = strndup(dest, (size_t) (at - dest))) ==
			    NULL) {
				return MIRAI_ENOMEM;
			}
			user = at_user;
		}
	}
	if (*name == '\0' || (user != NULL && *user == '\0')) {
		free(at_user);
		return MIRAI_EINVAL;
	}
	if (user == NULL) {
		user = s->user;
	}
	if (port == 0) {
		port = s->port;
	}
	if ((c = cmd_new(id, command, input, input_len)) == NULL) {
		free(at_user);
		return MIRAI_ENOMEM;
	}
	pthread_mutex_lock(&s->mtx);
	if (atomic_load(&s->stopping)) {
		rv = MIRAI_ECLOSED;
	} else if ((h = host_get(s, name, user, port)) == NULL) {
		rv = MIRAI_ENOMEM;
	} else {
		c->next = NULL;
		if (h->pending_tail != NULL) {
			h->pending_tail->next = c;
		} else {
			h->pending = c;
		}
		h->pending_tail = c;
		if (h->owner == OWN_KEEPER) {
			poke(s->wake_fd);
		}
	}
	pthread_mutex_unlock(&s->mtx);
	free(at_user);
	if (rv != 0) {
		cmd_free(c);
	}
	return rv;
}

void
mirai__ssh_destroy(mirai__ssh *s)
{
	if (s == NULL) {
		return;
	}
	pthread_mutex_lock(&s->mtx);
	atomic_store(&s->stopping, 1);
	pthread_cond_broadcast(&s->work);
	pthread_mutex_unlock(&s->mtx);
	poke(s->stop_fd);
	poke(s->wake_fd);
	pthread_join(s->keeper, NULL);
	/* No worker starts once stopping is set (queue_host checks it under
	 * the lock), so nworkers is final. */
	for (int i = 0; i < s->nworkers; i++) {
		pthread_join(s->workers[i], NULL);
	}
	/* Every thread is gone: what they held is ours to close. */
	free_module(s);
}
