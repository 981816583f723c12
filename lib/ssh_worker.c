/*
 * ssh_worker.c: the workers.  A worker takes a host from the queue,
 * connects its session, has its host key checked, authenticates, starts
 * the host's pending commands on channels, then hands the session to the
 * keeper.  It waits for the session in its own poll(), which destroy
 * interrupts.  Only lib/ssh*.c call libssh (see ssh.c).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <libssh/libssh.h>

#include "internal.h"
#include "ssh.h"
#include "ssh_int.h"

/* ---- workers -------------------------------------------------------- */

int
mirai__ssh_session_dead(ssh_session ss)
{
	return !ssh_is_connected(ss) ||
	    (ssh_get_status(ss) & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0;
}

/*
 * Wait until the session has something to do.  Returns 0, MIRAI_ETIMEDOUT
 * once deadline (monotonic ms) has passed, MIRAI_ECLOSED when the module
 * stops, or MIRAI_ENOMEM when poll() cannot wait.
 */
int
mirai__ssh_wait_io(mirai__ssh *s, ssh_session ss, int64_t deadline)
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
int
mirai__ssh_wait_error(host *h, int rv, const char *what, mirai_errmsg *em)
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
		if ((rv = mirai__ssh_wait_io(s, h->ss, deadline)) != 0) {
			ssh_key_free(key);
			return mirai__ssh_wait_error(h, rv, "authenticating",
			    em);
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
	if ((rv = mirai__ssh_apply_config(s, h, em)) != 0) {
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
		if ((rv = mirai__ssh_wait_io(s, h->ss, deadline)) != 0) {
			return mirai__ssh_wait_error(h, rv, "connecting", em);
		}
	}
	if (rc != SSH_OK) {
		return connect_failed(h, em);
	}
	if ((rv = mirai__ssh_check_host_key(s, h, em)) != 0 ||
	    (rv = authenticate(s, h, deadline, em)) != 0) {
		return rv;
	}
	h->ready = 1;
	MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "%s: session ready", h->name);
	return 0;
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
			mirai__ssh_host_drop(s, h, rv, em.text);
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
			MIRAI__LIST_PUSH_FRONT(&s->handed, h, qentry);
			pthread_mutex_unlock(&s->mtx);
			mirai__ssh_poke(s->wake_fd);
			return;
		}
		pthread_mutex_unlock(&s->mtx);
		while (take != NULL) {
			cmd *c = take;

			rv = mirai__ssh_start(s, h, c, &em, &drop_err);
			if (rv == START_REFUSED) {
				mirai__ssh_reroute(s, h, take);
				break;
			}
			take    = c->next;
			c->next = NULL;
			if (rv == 0) {
				c->next    = h->running;
				h->running = c;
				MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh",
				    "%s: command %zu started", h->name, c->id);
				mirai__ssh_report(s, c->id, MIRAI__SSH_STARTED,
				    0, "");
			} else if (rv > 0) {
				MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "%s",
				    em.text);
				mirai__ssh_report(s, c->id, MIRAI__SSH_FAILED,
				    rv, em.text);
				mirai__ssh_cmd_free(c);
			} else {
				/* Stopped or broken: c and the rest wait
				 * with h again, for destroy or
				 * mirai__ssh_host_drop. */
				cmd *last = c;
				c->next   = take;
				while (last->next != NULL) {
					last = last->next;
				}
				pthread_mutex_lock(&s->mtx);
				mirai__ssh_pending_push_front(s, h, c, last);
				pthread_mutex_unlock(&s->mtx);
				if (rv == START_BROKEN) {
					mirai__ssh_host_drop(s, h, drop_err,
					    em.text);
				}
				return;
			}
		}
	}
}

void *
mirai__ssh_worker_main(void *arg)
{
	mirai__ssh *s = arg;

	pthread_mutex_lock(&s->mtx);
	for (;;) {
		host *h;

		while (!atomic_load(&s->stopping) && s->queue.head == NULL) {
			s->nidle++;
			pthread_cond_wait(&s->work, &s->mtx);
			s->nidle--;
		}
		if (atomic_load(&s->stopping)) {
			break;
		}
		h = s->queue.head;
		MIRAI__LIST_REMOVE(&s->queue, h, qentry);
		s->queued--;
		h->owner = OWN_WORKER;
		pthread_mutex_unlock(&s->mtx);
		serve(s, h);
		pthread_mutex_lock(&s->mtx);
	}
	pthread_mutex_unlock(&s->mtx);
	return NULL;
}
