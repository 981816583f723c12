/*
 * client_profile.c: the registry of compute profiles and their lifetime:
 * reference counts, listening and dialing sockets, closing, and the
 * public setup calls (mirai_daemons, mirai_attach, mirai_reset,
 * mirai_shutdown).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"

/* How long a reset waits for the local servers to exit. */
#define RESET_WAIT_MS 2000
/* How long a reset waits for servers to close their links. */
#define EXIT_WAIT_MS 1000
/* How long attaching waits for a busy dispatcher by default. */
#define ATTACH_WAIT_MS 30000

pthread_mutex_t mirai__cl_reg_mtx = PTHREAD_MUTEX_INITIALIZER;
static MIRAI__LIST(pname) reg; /* every name used */

/* ---- reference counts -------------------------------------------------- */

void
mirai__cl_profile_ref(profile *p)
{
	atomic_fetch_add(&p->refs, 1);
}

static void
profile_free(profile *p)
{
	for (size_t i = 0; i < p->npeers; i++) {
		mirai__tx_free(p->peers[i]->tx);
		mirai__outq_clear(&p->peers[i]->queue);
		free(p->peers[i]);
	}
	free(p->peers);
	mirai__idmap_fini(&p->by_pipe);
	mirai__cl_pick_fini(&p->pick);
	mirai__outq_clear(&p->unassigned);
	while (p->children.head != NULL) {
		child *c = p->children.head;
		MIRAI__LIST_REMOVE(&p->children, c, entry);
		free(c);
	}
	free(p->sopts_mem);
	free(p->tls_cert);
	free(p->tls_key);
	free(p->tls_ca);
	for (size_t i = 0; i < p->nsocks; i++) {
		free(p->socks[i]->url);
		free(p->socks[i]);
	}
	free(p->socks);
	mirai__idmap_fini(&p->tasks);
	free(p->hook_name);
	free(p->url);
	free(p->name);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mtx);
	free(p);
}

/* The socket is closed before the last reference can go (reset, shutdown),
 * so this never runs NNG calls that could wait for a callback. */
void
mirai__cl_profile_unref(profile *p)
{
	if (p != NULL && atomic_fetch_sub(&p->refs, 1) == 1) {
		profile_free(p);
	}
}

/* ---- profiles --------------------------------------------------------- */

/* Copy the settings of o that the profile keeps. */
static int
copy_opts(profile *p, const mirai_daemons_opts *o)
{
	const mirai_hook *hook = o->hook;

	if (mirai__sopts_copy(&p->sopts, o->server, &p->sopts_mem) != 0) {
		return MIRAI_ENOMEM;
	}
	p->max_msg = p->sopts.max_msg ? p->sopts.max_msg : MIRAI__DEFAULT_MAX_MSG;
	if ((o->tls_cert != NULL &&
		(p->tls_cert = mirai__strdup(o->tls_cert)) == NULL) ||
	    (o->tls_key != NULL &&
		(p->tls_key = mirai__strdup(o->tls_key)) == NULL) ||
	    (o->tls_ca != NULL && (p->tls_ca = mirai__strdup(o->tls_ca)) == NULL)) {
		return MIRAI_ENOMEM;
	}
	if (hook != NULL) {
		if ((p->hook_name = mirai__strdup(hook->name)) == NULL) {
			return MIRAI_ENOMEM;
		}
		p->hook      = *hook;
		p->hook.name = p->hook_name;
		p->hook_fp   = mirai__hash64(p->hook_name);
	}
	return 0;
}

/* How many one-shot servers may run at once: MIRAI_ONESHOT_MAX, else the
 * cores this process may use. */
static int
oneshot_default(void)
{
	const char *e = getenv("MIRAI_ONESHOT_MAX");
	long n        = e != NULL ? strtol(e, NULL, 10) : 0;

	if (n <= 0 || n > 100000) {
		n = mirai__topo_count("core");
	}
	if (n <= 0) {
		n = sysconf(_SC_NPROCESSORS_ONLN);
	}
	return n > 0 ? (int) n : 1;
}

static profile *
profile_new(const char *name, int kind)
{
	profile *p = calloc(1, sizeof *p);

	if (p == NULL || (p->name = mirai__strdup(name)) == NULL) {
		free(p);
		return NULL;
	}
	atomic_init(&p->refs, 1);
	pthread_mutex_init(&p->mtx, NULL);
	mirai__cond_init(&p->cv);
	MIRAI__IDMAP_INIT(&p->tasks, mirai, id, hnext);
	MIRAI__IDMAP_INIT(&p->by_pipe, peer, pipe_id, hnext);
	p->kind      = kind;
	p->max_msg   = MIRAI__DEFAULT_MAX_MSG;
	p->max_queue = (size_t) 1 << 30;
	if (kind == KIND_ONESHOT) {
		p->oneshot_max = oneshot_default();
	}
	return p;
}

/* What servers dial to reach p at url (malloc'd): url and, with a secret,
 * the slot suffix. */
static char *
profile_url(const profile *p, const char *url)
{
	char buf[1100];

	if (p->secret[0] == '\0') {
		return mirai__strdup(url);
	}
	mirai__url_with_cred(buf, sizeof buf, url, p->secret, 0);
	return mirai__strdup(buf);
}

/* Open a socket listening on url (in memory with mem: the link to a
 * dispatcher thread) and add it to p; *out (may be NULL) gets it.  Called
 * unlocked, before the socket can matter to anyone else. */
static int
profile_listen(profile *p, const char *url, int mem, int poly, int admits,
    sock **out, mirai_errmsg *err)
{
	sock **socks, *sk;
	int rv;

	if ((socks = realloc(p->socks, (p->nsocks + 1) * sizeof *socks)) == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	p->socks = socks;
	if ((sk = calloc(1, sizeof *sk)) == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	sk->prof   = p;
	sk->poly   = poly;
	sk->admits = admits;
	sk->mem    = mem;
	if ((rv = mirai__cl_sock_open(p, sk, 0, 0, err)) != 0) {
		free(sk);
		return rv;
	}
	if ((rv = mirai__link_listen(sk->link, url, &sk->url, err)) != 0) {
		mirai__link_close(sk->link);
		free(sk);
		return rv;
	}
	p->socks[p->nsocks++] = sk;
	mirai__link_start(sk->link);
	if (out != NULL) {
		*out = sk;
	}
	return 0;
}

/* Whether every peer is silent: gone, its link already down, or never
 * online (profile_close tells it nothing, so it answers nothing). */
static int
all_quiet(profile *p)
{
	for (size_t i = 0; i < p->npeers; i++) {
		if (!p->peers[i]->gone && !p->peers[i]->dead &&
		    p->peers[i]->online) {
			return 0;
		}
	}
	return 1;
}

/* Close p's socket and resolve everything pending with MIRAI_ECLOSED. */
static void
profile_close(profile *p)
{
	mirai *list = NULL;
	int64_t deadline;

	pthread_mutex_lock(&p->mtx);
	p->closing = 1;
	while (p->unassigned.head != NULL) {
		mirai__cl_claim(p, p->unassigned.head->owner, MIRAI_ECLOSED, &list);
	}
	for (size_t i = 0; i < p->npeers; i++) {
		peer *pk = p->peers[i];
		while (pk->queue.head != NULL) {
			mirai__out *o = pk->queue.head;
			if (o->owner != NULL) {
				mirai__cl_claim(p, o->owner, MIRAI_ECLOSED, &list);
			} else {
				mirai__outq_remove(&pk->queue, o);
				mirai__out_free(o);
			}
		}
		while (pk->inflight.head != NULL) {
			mirai__cl_claim(p, pk->inflight.head, MIRAI_ECLOSED, &list);
		}
		/* Nobody waits for their results: stop the work too.  A peer
		 * not yet online got no task and sees its link close instead:
		 * its pipe may be one the other side is refusing, and in NNG
		 * 1.5.2 a message sent on a pipe closing under it can be lost
		 * without being freed. */
		if (pk->online) {
			mirai__cl_send_exit(p, pk, MIRAI__EXIT_CANCEL);
		}
	}
	/* Peers answer GONE at once, even mid-task; after that closing their
	 * links is safe.  Bounded, for peers that are frozen. */
	deadline = mirai__now_ms() + EXIT_WAIT_MS;
	while (!all_quiet(p) && mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&p->cv, &p->mtx, deadline);
	}
	pthread_mutex_unlock(&p->mtx);
	mirai__cl_publish(list);
	mirai__cl_beat_stop(p);
	for (size_t i = 0; i < p->nsocks; i++) {
		mirai__link_close(p->socks[i]->link);
		p->socks[i]->link = NULL;
	}
	if (p->disp_running) {
		/* Its link is closed: the thread returns. */
		pthread_join(p->disp_thread, NULL);
		mirai_dispatcher_destroy(p->disp);
		p->disp         = NULL;
		p->disp_running = 0;
	}
	deadline = mirai__now_ms() + RESET_WAIT_MS;
	pthread_mutex_lock(&p->mtx);
	while (p->alive > 0 && mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&p->cv, &p->mtx, deadline);
	}
	if (p->alive > 0) {
		MIRAI__LOG(MIRAI_LOG_INFO, TAG,
		    "profile '%s': %d local servers still finishing a task",
		    p->name, p->alive);
	}
	pthread_mutex_unlock(&p->mtx);
}

/* A profile whose set-up failed with rv, its name claimed under the
 * registry lock: let the name go, close and drop p.  Returns rv. */
static int
setup_failed(profile *p, int rv)
{
	pthread_mutex_unlock(&mirai__cl_reg_mtx);
	profile_close(p);
	mirai__cl_profile_unref(p);
	return rv;
}

pname *
mirai__cl_pname_find(const char *name)
{
	for (pname *n = reg.head; n != NULL; n = n->entry.next) {
		if (strcmp(n->name, name) == 0) {
			return n;
		}
	}
	return NULL;
}

static pname *
pname_get(const char *name)
{
	pname *n = mirai__cl_pname_find(name);

	if (n == NULL && (n = calloc(1, sizeof *n)) != NULL) {
		if ((n->name = mirai__strdup(name)) == NULL) {
			free(n);
			return NULL;
		}
		MIRAI__LIST_PUSH_FRONT(&reg, n, entry);
	}
	return n;
}

/* The profile tasks for name go to, with a reference. */
int
mirai__cl_profile_for_call(const char *name, profile **out)
{
	mirai_errmsg err;
	pname *n;
	profile *p;
	int rv = 0;

	pthread_mutex_lock(&mirai__cl_reg_mtx);
	if ((n = pname_get(name)) == NULL) {
		pthread_mutex_unlock(&mirai__cl_reg_mtx);
		return MIRAI_ENOMEM;
	}
	if ((p = n->set) == NULL) {
		if (n->oneshot == NULL) {
			if ((p = profile_new(name, KIND_ONESHOT)) == NULL) {
				pthread_mutex_unlock(&mirai__cl_reg_mtx);
				return MIRAI_ENOMEM;
			}
			char local[128];
			if ((rv = mirai__local_url(local, sizeof local, &err)) != 0 ||
			    (rv = profile_listen(p, local, 0, 1, 0, NULL, &err)) != 0) {
				MIRAI__LOG(MIRAI_LOG_ERROR, TAG, "%s", err.text);
				mirai__cl_profile_unref(p);
				pthread_mutex_unlock(&mirai__cl_reg_mtx);
				return rv;
			}
			n->oneshot = p;
		}
		p = n->oneshot;
	}
	mirai__cl_profile_ref(p);
	pthread_mutex_unlock(&mirai__cl_reg_mtx);
	*out = p;
	return 0;
}

/* Dial url for p with a monogamous socket that keeps retrying (the
 * dispatcher may be busy with another client).  Called unlocked. */
static int
profile_dial(profile *p, const char *url, mirai_errmsg *err)
{
	sock **socks, *sk;
	char base[1024];
	int rv;

	if ((socks = realloc(p->socks, (p->nsocks + 1) * sizeof *socks)) == NULL ||
	    (sk = calloc(1, sizeof *sk)) == NULL) {
		if (socks != NULL) {
			p->socks = socks;
		}
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	p->socks  = socks;
	sk->prof  = p;
	sk->dials = 1;
	if (strlen(url) >= sizeof base || (sk->url = mirai__strdup(url)) == NULL) {
		free(sk);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	/* A URL with a secret: the dispatcher wants it in our HELLO. */
	mirai__url_cred(url, base, sizeof base, &sk->slot, sk->secret);
	if ((rv = mirai__cl_sock_open(p, sk, 50, 500, err)) != 0) {
		free(sk->url);
		free(sk);
		return rv;
	}
	p->socks[p->nsocks++] = sk;
	mirai__link_start(sk->link);
	return mirai__link_dial(sk->link, base, 0, err);
}

mirai__out *
mirai__cl_hello(uint32_t slot, const char *secret)
{
	mirai__hello_view h = {.proto = MIRAI__PROTO,
	    .kind = MIRAI__KIND_CLIENT, .pid = (uint32_t) getpid(),
	    .version = MIRAI_VERSION_STRING,
	    .version_len = (uint16_t) strlen(MIRAI_VERSION_STRING),
	    .slot = slot, .secret = secret,
	    .secret_len = (uint16_t) strlen(secret)};
	mirai__out *o = mirai__out_new(mirai__hello_size(&h));

	if (o != NULL) {
		mirai__hello_encode(mirai__out_frame(o), &h);
	}
	return o;
}

/*
 * Check the settings of mirai_daemons(), attaching or not, before anything
 * is made: attach() and the rest of mirai_daemons() take them as valid.
 * Attaching ignores n, the URL list and the dispatcher mode (the
 * dispatcher it attaches to has its own); the hook, the retries and the
 * server options it does use.
 */
static int
daemons_check(const mirai_daemons_opts *o, mirai_errmsg *err)
{
	int disp;

	if (o == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "no settings given");
	}
	if (o->profile != NULL && *o->profile == '\0') {
		return mirai__fail(err, MIRAI_EINVAL, "empty profile name");
	}
	if (o->dispatcher != MIRAI_DISPATCHER_DEFAULT &&
	    o->dispatcher != MIRAI_DISPATCHER_OFF &&
	    o->dispatcher != MIRAI_DISPATCHER_THREAD &&
	    o->dispatcher != MIRAI_DISPATCHER_PROCESS) {
		return mirai__fail(err, MIRAI_EINVAL, "unknown dispatcher mode %d",
		    o->dispatcher);
	}
	if (o->hook != NULL &&
	    (o->hook->name == NULL || *o->hook->name == '\0' ||
		o->hook->encode == NULL || o->hook->decode == NULL)) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "a serialization hook needs a name, encode and decode");
	}
	if (o->server != NULL &&
	    (o->server->idle_ms < MIRAI_FOREVER ||
		o->server->walltime_ms < MIRAI_FOREVER ||
		o->server->max_msg > (size_t) UINT32_MAX - 65536)) {
		return mirai__fail(err, MIRAI_EINVAL, "invalid server options");
	}
	if (mirai__timeout(o->attach_timeout_ms, 0) < MIRAI_FOREVER) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "attach_timeout_ms must be 0, MIRAI_FOREVER or positive");
	}
	if (o->attach) {
		if (o->retries < 0 || o->retries > 255) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "retries must be 0-255");
		}
		return 0;
	}
	disp = o->dispatcher != MIRAI_DISPATCHER_OFF;
	if (o->n < 0 || o->retries < 0 || o->retries > 255) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "n must not be negative and retries must be 0-255");
	}
	if (o->prefetch < 0 || o->prefetch > MIRAI__PREFETCH_MAX) {
		return mirai__fail(err, MIRAI_EINVAL, "prefetch must be 0-%d",
		    MIRAI__PREFETCH_MAX);
	}
	if (disp) {
		if (o->nurls > 0 && o->url != NULL) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "give a base URL or a list of URLs, not both");
		}
		if (o->nurls == 0 && o->n == 0) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "give n > 0 (local servers, or server URLs with a "
			    "base URL) or a list of URLs (use mirai_reset to go "
			    "back to one-shot servers)");
		}
	} else {
		if (o->nurls > 0) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "a list of server URLs needs a dispatcher");
		}
		if (o->url == NULL && o->n == 0) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "give n > 0 local servers, or a URL for servers to "
			    "dial into (use mirai_reset to go back to one-shot "
			    "servers)");
		}
		if (o->url != NULL && o->n > 0) {
			return mirai__fail(err, MIRAI_EINVAL,
			    "without a dispatcher the client listens on one URL "
			    "and servers dial in themselves: n must be 0 with a "
			    "URL");
		}
	}
	return 0;
}

/*
 * Take the registry lock and the entry of name, which must not be set:
 * on success the lock is held (the caller sets the profile, then
 * unlocks); on failure it is not.
 */
static int
name_claim(const char *name, pname **out, mirai_errmsg *err)
{
	pname *n;

	pthread_mutex_lock(&mirai__cl_reg_mtx);
	if ((n = pname_get(name)) == NULL) {
		pthread_mutex_unlock(&mirai__cl_reg_mtx);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	if (n->set != NULL) {
		pthread_mutex_unlock(&mirai__cl_reg_mtx);
		return mirai__fail(err, MIRAI_ESET,
		    "compute profile '%s' is already set: reset it with "
		    "mirai_reset() before changing its settings",
		    name);
	}
	*out = n;
	return 0;
}

/* mirai_daemons() with attach set; daemons_check() passed. */
static int
attach(const char *name, const mirai_daemons_opts *o, mirai_errmsg *err)
{
	const char *url = o->url != NULL ? o->url : getenv("MIRAI_DISPATCHER_URL");
	int64_t wait    = mirai__timeout(o->attach_timeout_ms, ATTACH_WAIT_MS);
	int64_t deadline;
	profile *p;
	pname *n;
	int rv = 0;

	if (url == NULL || *url == '\0') {
		return mirai__fail(err, MIRAI_EINVAL,
		    "no dispatcher to attach to: give its URL or set "
		    "MIRAI_DISPATCHER_URL (mirai-launch sets it)");
	}
	if ((rv = name_claim(name, &n, err)) != 0) {
		return rv;
	}
	if ((p = profile_new(name, KIND_DIRECT)) == NULL ||
	    copy_opts(p, o) != 0 || (p->url = mirai__strdup(url)) == NULL) {
		pthread_mutex_unlock(&mirai__cl_reg_mtx);
		mirai__cl_profile_unref(p);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	p->dispatcher = 1;
	p->user_url   = 1;
	p->retries    = o->retries;
	p->hb         = mirai__heartbeat_ms(o->heartbeat_ms);
	p->max_queue  = o->max_queue > 0 ? o->max_queue : (size_t) 1 << 30;
	if ((rv = profile_dial(p, url, err)) != 0) {
		return setup_failed(p, rv);
	}
	n->set = p;
	pthread_mutex_unlock(&mirai__cl_reg_mtx);

	deadline = wait < 0 ? -1 : mirai__now_ms() + wait;
	pthread_mutex_lock(&p->mtx);
	while (mirai__cl_dispatcher_peer(p) == NULL && !p->attach_refused &&
	    (deadline < 0 || mirai__now_ms() < deadline)) {
		mirai__cond_wait_until(&p->cv, &p->mtx, deadline);
	}
	if (p->attach_refused) {
		char shown[512];
		mirai__url_redact(url, shown, sizeof shown);
		rv = mirai__fail(err, MIRAI_EPERM,
		    "the dispatcher at %s refused us: the URL lacks its secret "
		    "(use MIRAI_DISPATCHER_URL as the dispatcher printed it)",
		    shown);
	} else if (mirai__cl_dispatcher_peer(p) == NULL) {
		rv = mirai__fail(err, MIRAI_ETIMEDOUT,
		    "no dispatcher answered at %s within %lld ms (it serves one "
		    "client at a time)",
		    url, (long long) wait);
	}
	pthread_mutex_unlock(&p->mtx);
	if (rv != 0) {
		mirai_reset(name);
		return rv;
	}
	MIRAI__LOG(MIRAI_LOG_INFO, TAG, "profile '%s' attached to %s", name, url);
	return 0;
}

int
mirai_attach(const char *name, const char *url, int64_t timeout_ms,
    mirai_errmsg *err)
{
	mirai_daemons_opts o = MIRAI_DAEMONS_OPTS_INIT;

	o.profile           = name;
	o.url               = url;
	o.attach            = 1;
	o.attach_timeout_ms = timeout_ms;
	return mirai_daemons(&o, err);
}

static int daemons(const mirai_daemons_opts *o, mirai_errmsg *err);

int
mirai_daemons(const mirai_daemons_opts *o, mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, daemons(o, &mine));
}

static int
daemons(const mirai_daemons_opts *o, mirai_errmsg *err)
{
	const char *name;
	profile *p;
	pname *n;
	int rv, disp;

	/* One check for both paths: an attach with half a hook must fail
	 * here, not call a NULL encode or decode at the first task. */
	if ((rv = daemons_check(o, err)) != 0) {
		return rv;
	}
	name = o->profile != NULL ? o->profile : "default";
	if (o->attach) {
		return attach(name, o, err);
	}
	disp = o->dispatcher != MIRAI_DISPATCHER_OFF;

	if ((rv = name_claim(name, &n, err)) != 0) {
		return rv;
	}
	if ((p = profile_new(name, KIND_DIRECT)) == NULL || copy_opts(p, o) != 0) {
		pthread_mutex_unlock(&mirai__cl_reg_mtx);
		mirai__cl_profile_unref(p);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	p->user_url   = o->url != NULL || o->nurls > 0;
	p->daemons    = o->url == NULL && o->nurls == 0 ? o->n : 0;
	p->dispatcher = disp;
	p->retries    = o->retries;
	p->hb         = mirai__heartbeat_ms(o->heartbeat_ms);
	if (p->sopts.heartbeat_ms == 0) {
		p->sopts.heartbeat_ms = o->heartbeat_ms;
	}
	p->max_queue  = o->max_queue > 0 ? o->max_queue : (size_t) 1 << 30;
	if (disp || o->url != NULL) {
		/* One link: the dispatcher's (in memory for a thread, an ipc
		 * socket for a process), or the user's URL. */
		static atomic_uint mem_seq;
		char local[128];
		sock *sk;
		const char *lurl = o->url;
		int mem          = 0;
		rv               = 0;
		if (disp && o->dispatcher == MIRAI_DISPATCHER_PROCESS) {
			rv   = mirai__local_url(local, sizeof local, err);
			lurl = local;
		} else if (disp) {
			snprintf(local, sizeof local, "mem://mirai-dispatcher-%u",
			    atomic_fetch_add(&mem_seq, 1));
			lurl = local;
			mem  = 1;
		}
		/* Servers dialing the user's URL present the profile's
		 * secret, the end of the URL they are given. */
		if (!disp && !o->no_token) {
			mirai__secret_new(p->secret);
		}
		if (rv != 0 ||
		    (rv = profile_listen(p, lurl, mem, !disp,
			 !disp && !o->no_token, &sk, err)) != 0 ||
		    (!disp && (p->url = profile_url(p, sk->url)) == NULL)) {
			if (rv == 0) {
				rv = mirai__fail(err, MIRAI_ENOMEM,
				    "out of memory");
			}
			return setup_failed(p, rv);
		}
	} else {
		for (int i = 0; i < o->n; i++) {
			char local[128];
			if ((rv = mirai__local_url(local, sizeof local, err)) != 0 ||
			    (rv = profile_listen(p, local, 0, 0, 0, NULL, err)) != 0) {
				return setup_failed(p, rv);
			}
		}
	}
	n->set = p;
	pthread_mutex_unlock(&mirai__cl_reg_mtx);

	if (disp) {
		rv = o->dispatcher == MIRAI_DISPATCHER_PROCESS
		    ? mirai__cl_start_dispatcher(p, o, p->socks[0]->url, err)
		    : mirai__cl_start_dispatcher_thread(p, o, p->socks[0]->url, err);
		if (rv != 0) {
			mirai_reset(name);
			return rv;
		}
	} else if (o->url == NULL) {
		for (int i = 0; i < o->n; i++) {
			if ((rv = mirai__cl_start_local(p, p->socks[i]->url, i, 0, err)) != 0) {
				mirai_reset(name);
				return rv;
			}
		}
		if ((rv = mirai__cl_wait_local(p, err)) != 0) {
			mirai_reset(name);
			return rv;
		}
	}
	{
		char shown[512];
		mirai__url_redact(p->url != NULL ? p->url : "", shown, sizeof shown);
		MIRAI__LOG(MIRAI_LOG_INFO, TAG, "profile '%s' set: %s%s%s", name,
		    disp ? "dispatcher" : "direct", p->url ? ", listening at " : "",
		    p->url ? shown : "");
	}
	return 0;
}

int
mirai_reset(const char *name)
{
	profile *p = NULL;
	pname *n;

	if (name == NULL) {
		name = "default";
	}
	pthread_mutex_lock(&mirai__cl_reg_mtx);
	if ((n = mirai__cl_pname_find(name)) != NULL) {
		p      = n->set;
		n->set = NULL;
	}
	pthread_mutex_unlock(&mirai__cl_reg_mtx);
	if (p != NULL) {
		profile_close(p);
		mirai__cl_profile_unref(p);
	}
	return 0;
}

void
mirai_shutdown(void)
{
	pname *n;

	pthread_mutex_lock(&mirai__cl_reg_mtx);
	n        = reg.head;
	reg.head = reg.tail = NULL;
	pthread_mutex_unlock(&mirai__cl_reg_mtx);
	while (n != NULL) {
		pname *next = n->entry.next;
		if (n->set != NULL) {
			profile_close(n->set);
			mirai__cl_profile_unref(n->set);
		}
		if (n->oneshot != NULL) {
			profile_close(n->oneshot);
			mirai__cl_profile_unref(n->oneshot);
		}
		free(n->name);
		free(n);
		n = next;
	}
	mirai__svc_stop();
}
