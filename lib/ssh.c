/*
 * ssh.c: running commands on remote hosts over ssh.  It owns the module,
 * a mirai__ssh: its API, its table of hosts, the queue that feeds the
 * workers, and the keeper; one session per (host, user, port), one
 * channel per command.  Only lib/ssh*.c call libssh, and they share
 * ssh_int.h: ssh_worker.c (the workers), ssh_channel.c (a command on its
 * channel), ssh_config.c (the ssh config), ssh_hostkey.c (known_hosts).
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
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libssh/libssh.h>

#include "internal.h"
#include "ssh.h"
#include "ssh_int.h"

#define DEFAULT_PARALLEL 16
#define DEFAULT_TIMEOUT_MS 10000
/* The host table's first size; it doubles as hosts come. */
#define TABLE_MIN 16

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rv;

static void
init_libssh(void)
{
	init_rv = ssh_init();
}

void
mirai__ssh_report(mirai__ssh *s, size_t id, int event, int status,
    const char *msg)
{
	if (!atomic_load(&s->stopping)) {
		s->cb(s->arg, id, event, status, msg != NULL ? msg : "");
	}
}

void
mirai__ssh_poke(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof one) < 0) {
		/* The counter is far from full: nothing to do. */
	}
}

/* ---- hosts and the worker queue (under s->mtx) --------------------- */

static void
host_free(mirai__ssh *s, host *h)
{
	mirai__ssh_cmd_free_list(h->running);
	mirai__ssh_cmd_free_list(h->pending);
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
	MIRAI__LIST_REMOVE(&s->hosts, h, entry);
}

/* Queue h for a worker, starting one when every worker is busy.  Fails
 * only when no worker exists and none can be started. */
static int
queue_host(mirai__ssh *s, host *h)
{
	if (s->queued >= (size_t) s->nidle && s->nworkers < s->max_parallel &&
	    !atomic_load(&s->stopping)) {
		if (pthread_create(&s->workers[s->nworkers], NULL,
		        mirai__ssh_worker_main, s) == 0) {
			s->nworkers++;
		} else if (s->nworkers == 0) {
			return MIRAI_ENOMEM;
		} else {
			MIRAI__LOG(MIRAI_LOG_WARN, "ssh",
			    "cannot start another worker thread");
		}
	}
	h->owner = OWN_QUEUE;
	MIRAI__LIST_PUSH_BACK(&s->queue, h, qentry);
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
	MIRAI__LIST_PUSH_FRONT(&s->hosts, h, entry);
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
void
mirai__ssh_pending_push_front(mirai__ssh *s, host *h, cmd *c, cmd *last)
{
	last->next = h->pending;
	if (h->pending == NULL) {
		h->pending_tail = last;
	}
	h->pending = c;
	if (h->owner == OWN_KEEPER) {
		mirai__ssh_poke(s->wake_fd);
	}
}

/*
 * h's session is unusable (its setup failed, or it broke): forget h, so
 * that later commands get a new session, and report its commands, the
 * running ones as ended with LOST_STATUS and the waiting ones as failed
 * with err.  Called by h's owner, unlocked.
 */
void
mirai__ssh_host_drop(mirai__ssh *s, host *h, int err, const char *msg)
{
	cmd *pending;

	MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "%s", msg);
	pthread_mutex_lock(&s->mtx);
	unlink_host(s, h);
	pending    = h->pending;
	h->pending = h->pending_tail = NULL;
	pthread_mutex_unlock(&s->mtx);
	for (cmd *c = h->running; c != NULL; c = c->next) {
		mirai__ssh_report(s, c->id, MIRAI__SSH_EXITED, LOST_STATUS,
		    msg);
	}
	for (cmd *c = pending; c != NULL; c = c->next) {
		mirai__ssh_report(s, c->id, MIRAI__SSH_FAILED, err, msg);
	}
	mirai__ssh_cmd_free_list(pending);
	host_free(s, h);
}

/* The server refused c a channel on h: h takes no new commands, and c,
 * the rest and what waits for h go to another session for the host. */
void
mirai__ssh_reroute(mirai__ssh *s, host *h, cmd *c)
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
		mirai__ssh_pending_push_front(s, nh, c, last);
		c = NULL;
	}
	pthread_mutex_unlock(&s->mtx);
	for (cmd *p = c; p != NULL; p = p->next) {
		mirai__ssh_report(s, p->id, MIRAI__SSH_FAILED, MIRAI_ENOMEM,
		    "out of memory");
	}
	mirai__ssh_cmd_free_list(c);
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
	host_list handed;
	host *h, *next;

	pthread_mutex_lock(&s->mtx);
	handed         = s->handed;
	s->handed.head = s->handed.tail = NULL;
	for (h = handed.head; h != NULL; h = h->qentry.next) {
		h->owner = OWN_KEEPER;
	}
	pthread_mutex_unlock(&s->mtx);
	MIRAI__LIST_EACH(h, next, &handed, qentry) {
		MIRAI__LIST_REMOVE(&handed, h, qentry);
		MIRAI__LIST_PUSH_FRONT(&s->kept, h, kentry);
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
		status = mirai__ssh_cmd_exit(c, h->name, msg, sizeof msg);
		mirai__ssh_cmd_free(c);
		MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "%s: command %zu exited "
		    "with status %d", h->name, id, status);
		mirai__ssh_report(s, id, MIRAI__SSH_EXITED, status, msg);
	}
}

/* After a wait: report ended commands, drop lost sessions, and give
 * sessions with new commands back to a worker. */
static void
keep_check(mirai__ssh *s)
{
	host *h, *next;

	MIRAI__LIST_EACH(h, next, &s->kept, kentry) {
		mirai_errmsg em;

		reap(s, h);
		if (h->in_event && !mirai__ssh_session_dead(h->ss)) {
			continue;
		}
		MIRAI__LIST_REMOVE(&s->kept, h, kentry);
		mirai__fail(&em, MIRAI_ESSH, "%s: connection lost: %s",
		    h->name, ssh_get_error(h->ss));
		mirai__ssh_host_drop(s, h, MIRAI_ESSH, em.text);
	}
	/* Removing a session from the event is bookkeeping in memory, no
	 * I/O: it is done with the lock held so that no command slips in
	 * between the look at pending and the hand-over. */
	pthread_mutex_lock(&s->mtx);
	MIRAI__LIST_EACH(h, next, &s->kept, kentry) {
		if (h->pending == NULL) {
			continue;
		}
		MIRAI__LIST_REMOVE(&s->kept, h, kentry);
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

	while ((h = s->hosts.head) != NULL) {
		MIRAI__LIST_REMOVE(&s->hosts, h, entry);
		host_free(s, h);
	}
	free(s->table);
	mirai__ssh_conf_free(s->conf);
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
	if ((rv = mirai__ssh_conf_load(&s->conf, o->config, err)) != 0) {
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
	if ((c = mirai__ssh_cmd_new(id, command, input, input_len)) == NULL) {
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
			mirai__ssh_poke(s->wake_fd);
		}
	}
	pthread_mutex_unlock(&s->mtx);
	free(at_user);
	if (rv != 0) {
		mirai__ssh_cmd_free(c);
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
	mirai__ssh_poke(s->stop_fd);
	mirai__ssh_poke(s->wake_fd);
	pthread_join(s->keeper, NULL);
	/* No worker starts once stopping is set (queue_host checks it under
	 * the lock), so nworkers is final. */
	for (int i = 0; i < s->nworkers; i++) {
		pthread_join(s->workers[i], NULL);
	}
	/* Every thread is gone: what they held is ours to close. */
	free_module(s);
}
