/*
 * transport.c: with transport_url.c (the URL checks, slot credentials and
 * local URLs), the only file that calls NNG.  It owns the sockets (PAIR1,
 * one peer or many), their receive loops, the senders, pipe events, the
 * TLS configuration of listeners and dialers, the URL peers should dial
 * to reach a listener, a blocking request/reply for control queries, and
 * the mapping of NNG's error numbers onto the library's.  A link opened in
 * memory (cfg.mem: the client and its dispatcher thread) has no socket:
 * its calls go to memlink.c, so that their owners have one code path for
 * both kinds.
 *
 * The rules of NNG 1.5.2 that the rest of the library must not have to
 * know are written here once:
 *  - close order: stop the aios first (a callback must not post another
 *    receive on a socket being closed: in 1.5.2 that leaves the aio tied
 *    to the socket's freed queue), then close the socket, then free;
 *  - a receive that fails with anything but "closed" or "cancelled" is
 *    posted again, so one bad message cannot stop a link;
 *  - a pipe is refused in ADD_PRE, before NNG receives anything on it (the
 *    one socket call that is safe inside a pipe callback);
 *  - a send the socket takes at once skips the completion callback and so
 *    one thread hop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#include <nng/supplemental/tls/tls.h>

#include "internal.h"

struct mirai__link {
	mirai__mem *mem; /* an in-memory link (memlink.c): no socket */
	nng_socket s;
	nng_aio *rx;
	mirai__tx *tx;  /* the link's own sender (NULL without cfg.sent) */
	mirai__link_cfg cfg;
};

struct mirai__tx {
	mirai__mem *mem; /* on an in-memory link: sends go there */
	nng_socket s;
	nng_aio *aio;
	void (*done)(void *arg, int rv);
	void *arg;
};

/* NNG messages pass through the library as mirai__msg: the same object
 * under a name of ours, so that nothing outside this file sees nng.h. */
#define NMSG(m) ((nng_msg *) (m))
#define MMSG(m) ((mirai__msg *) (m))

int
mirai__transport_err(int rv)
{
	if (rv == 0) {
		return 0;
	}
	/* NNG's numbers 1..31 and ours are the same on purpose. */
	if ((rv >= 1 && rv <= 27) || rv == MIRAI_EINTERNAL) {
		return rv;
	}
	if (rv & NNG_ESYSERR) {
		return (rv & ~NNG_ESYSERR) == ENOMEM ? MIRAI_ENOMEM
						     : MIRAI_EINTERNAL;
	}
	if (rv & NNG_ETRANERR) {
		return MIRAI_EPROTO;
	}
	return MIRAI_EINTERNAL;
}

/* ---- messages ---------------------------------------------------------- */

int
mirai__msg_alloc(mirai__msg **out, size_t len)
{
	nng_msg *m;
	int rv;

	if ((rv = nng_msg_alloc(&m, len)) != 0) {
		return mirai__transport_err(rv);
	}
	*out = MMSG(m);
	return 0;
}

void
mirai__msg_free(mirai__msg *m)
{
	if (m != NULL) {
		nng_msg_free(NMSG(m));
	}
}

int
mirai__msg_dup(mirai__msg **out, const mirai__msg *m)
{
	nng_msg *d;
	int rv;

	if ((rv = nng_msg_dup(&d, (const nng_msg *) m)) != 0) {
		return mirai__transport_err(rv);
	}
	*out = MMSG(d);
	return 0;
}

uint8_t *
mirai__msg_body(mirai__msg *m)
{
	return nng_msg_body(NMSG(m));
}

size_t
mirai__msg_len(const mirai__msg *m)
{
	return nng_msg_len((const nng_msg *) m);
}

void
mirai__msg_trim(mirai__msg *m, size_t n)
{
	nng_msg_trim(NMSG(m), n);
}

void
mirai__msg_chop(mirai__msg *m, size_t n)
{
	nng_msg_chop(NMSG(m), n);
}

uint32_t
mirai__msg_pipe(const mirai__msg *m)
{
	/* The id itself: nng_pipe_id() gives -1 for the ids of in-memory
	 * links, which have the top bit set (NNG's own stay below). */
	return nng_msg_get_pipe((const nng_msg *) m).id;
}

void
mirai__msg_set_pipe(mirai__msg *m, uint32_t pipe)
{
	nng_pipe p = NNG_PIPE_INITIALIZER;

	p.id = pipe;
	nng_msg_set_pipe(NMSG(m), p);
}

/*
 * The URL peers should dial to reach listener l that was started from url:
 * port 0 becomes the bound port, and a wildcard host ("tcp://:0",
 * "ws://[*]:5555/x" style) becomes this machine's host name.  *out is malloc'd.
 */
static int
dial_url(nng_listener l, const char *url, char **out)
{
	const char *sep = strstr(url, "://");
	const char *host, *hend, *path;
	char hostbuf[256];
	int port = 0;
	size_t need;
	char *res;

	if (sep == NULL) {
		return MIRAI_EADDRINVAL;
	}
	host = sep + 3;
	if (strncmp(url, "ipc://", 6) == 0 || strncmp(url, "inproc://", 9) == 0) {
		*out = mirai__strdup(url);
		return *out == NULL ? MIRAI_ENOMEM : 0;
	}
	/* host[:port][/path]; a bracketed IPv6 host keeps its brackets. */
	if (*host == '[') {
		hend = strchr(host, ']');
		if (hend == NULL) {
			return MIRAI_EADDRINVAL;
		}
		hend++;
	} else {
		hend = host + strcspn(host, ":/");
	}
	path = hend + strcspn(hend, "/");
	if (nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) != 0) {
		port = -1;
	}
	if (hend == host || (hend - host == 1 && *host == '*')) {
		mirai__hostname(hostbuf, sizeof hostbuf);
	} else {
		snprintf(hostbuf, sizeof hostbuf, "%.*s", (int) (hend - host),
		    host);
	}
	need = (size_t) (host - url) + strlen(hostbuf) + 16 + strlen(path);
	if ((res = malloc(need)) == NULL) {
		return MIRAI_ENOMEM;
	}
	if (port >= 0) {
		snprintf(res, need, "%.*s%s:%d%s", (int) (host - url), url,
		    hostbuf, port, path);
	} else {
		snprintf(res, need, "%.*s%s%s", (int) (host - url), url,
		    hostbuf, hend);
	}
	*out = res;
	return 0;
}

/* ---- TLS -------------------------------------------------------------------- */

/*
 * A TLS configuration from t: a listener presents its certificate (and
 * requires peers' certificates signed by the CA when one is given); a
 * dialer requires the listener's certificate signed by the CA, verified
 * by name.  *out is released with nng_tls_config_free once attached.
 */
/* The whole of a PEM file (at most 1 MiB), NUL-terminated; NULL when it
 * cannot be read. */
static char *
read_pem(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	if (f == NULL) {
		return NULL;
	}
	if ((buf = malloc((1u << 20) + 1)) != NULL) {
		n = fread(buf, 1, 1u << 20, f);
		if (ferror(f) || !feof(f)) {
			free(buf);
			buf = NULL;
		} else {
			buf[n] = '\0';
		}
	}
	fclose(f);
	return buf;
}

static int
tls_config(const mirai__tls *t, int listening, nng_tls_config **out,
    const char *url, mirai_errmsg *err)
{
	nng_tls_config *c;
	const char *step = "setting up";
	int rv;

	if ((rv = nng_tls_config_alloc(&c, listening ? NNG_TLS_MODE_SERVER
						     : NNG_TLS_MODE_CLIENT)) !=
	    0) {
		return mirai__fail(err, mirai__transport_err(rv),
		    "%s: cannot set up TLS: %s", url, nng_strerror(rv));
	}
	if (t->cert_pem != NULL && t->key_pem != NULL) {
		step = "the certificate";
		rv   = nng_tls_config_own_cert(c, t->cert_pem, t->key_pem, NULL);
	} else if (t->cert_file != NULL && t->key_file != NULL) {
		char *cert = NULL, *key = NULL;
		step       = "reading the certificate or key file";
		rv         = NNG_EINVAL;
		if ((cert = read_pem(t->cert_file)) != NULL &&
		    (key = read_pem(t->key_file)) != NULL) {
			step = "the certificate";
			rv   = nng_tls_config_own_cert(c, cert, key, NULL);
		}
		free(cert);
		if (key != NULL) {
			mirai__tls_secret_free(key);
		}
	}
	if (rv == 0 && (t->ca_pem != NULL || t->ca_file != NULL)) {
		step = "the CA";
		rv   = t->ca_pem != NULL
		      ? nng_tls_config_ca_chain(c, t->ca_pem, NULL)
		      : nng_tls_config_ca_file(c, t->ca_file);
		if (rv == 0) {
			rv = nng_tls_config_auth_mode(c,
			    NNG_TLS_AUTH_MODE_REQUIRED);
		}
	} else if (rv == 0) {
		rv = nng_tls_config_auth_mode(c, NNG_TLS_AUTH_MODE_NONE);
	}
	if (rv == 0 && !listening) {
		step = "the server name";
		rv   = nng_tls_config_server_name(c,
                    t->server_name != NULL ? t->server_name : MIRAI__TLS_NAME);
	}
	if (rv != 0) {
		nng_tls_config_free(c);
		return mirai__fail(err, rv == NNG_ENOMEM ? MIRAI_ENOMEM
							 : MIRAI_ECRYPTO,
		    "%s: TLS: %s: %s", url, step, nng_strerror(rv));
	}
	*out = c;
	return 0;
}

static int
url_is_tls(const char *url)
{
	return strncmp(url, "wss", 3) == 0 || strncmp(url, "tls+", 4) == 0;
}

/* ---- links ---------------------------------------------------------------- */

static void
link_rx(void *arg)
{
	mirai__link *l = arg;
	int rv         = nng_aio_result(l->rx);

	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
		return;
	}
	/* No lock is held here: what the callee sends on in-memory links is
	 * received on this thread, without a hop. */
	mirai__link_hold();
	if (rv == 0) {
		nng_msg *m = nng_aio_get_msg(l->rx);
		nng_aio_set_msg(l->rx, NULL);
		l->cfg.recv(l->cfg.arg, MMSG(m));
	}
	nng_recv_aio(l->s, l->rx);
	mirai__link_flush();
}

static void
link_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	mirai__link *l = arg;
	int mine       = ev == NNG_PIPE_EV_ADD_PRE    ? MIRAI__PIPE_ADD
		       : ev == NNG_PIPE_EV_ADD_POST ? MIRAI__PIPE_UP
						    : MIRAI__PIPE_GONE;

	if (l->cfg.pipe(l->cfg.arg, mine, nng_pipe_id(p)) != 0 &&
	    mine == MIRAI__PIPE_ADD) {
		nng_pipe_close(p);
	}
}

int
mirai__link_open(mirai__link **out, const mirai__link_cfg *cfg,
    mirai_errmsg *err)
{
	mirai__link *l = calloc(1, sizeof *l);
	size_t max_msg = cfg->max_msg ? cfg->max_msg : MIRAI__DEFAULT_MAX_MSG;
	int rv;

	if (l == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	l->cfg = *cfg;
	if (cfg->mem) {
		if (cfg->poly || mirai__mem_open(&l->mem, cfg) != 0 ||
		    (cfg->sent != NULL &&
			mirai__tx_open(&l->tx, l, cfg->sent, cfg->arg) != 0)) {
			rv = cfg->poly ? MIRAI_ENOTSUP : MIRAI_ENOMEM;
			mirai__mem_close(l->mem);
			free(l);
			return mirai__fail(err, rv, "cannot open an in-memory link: %s",
			    mirai_strerror(rv));
		}
		*out = l;
		return 0;
	}
	rv = cfg->poly ? nng_pair1_open_poly(&l->s) : nng_pair1_open(&l->s);
	if (rv != 0) {
		free(l);
		return mirai__fail(err, mirai__transport_err(rv),
		    "cannot open a socket: %s", nng_strerror(rv));
	}
	/* Room for the headers around the largest payload. */
	if ((rv = nng_socket_set_size(l->s, NNG_OPT_RECVMAXSZ, max_msg + 4096)) !=
		0 ||
	    (cfg->recv != NULL &&
		(rv = nng_aio_alloc(&l->rx, link_rx, l)) != 0)) {
		nng_close(l->s);
		free(l);
		return mirai__fail(err, mirai__transport_err(rv),
		    "cannot set up a socket: %s", nng_strerror(rv));
	}
	if (cfg->sent != NULL &&
	    (rv = mirai__tx_open(&l->tx, l, cfg->sent, cfg->arg)) != 0) {
		nng_aio_free(l->rx);
		nng_close(l->s);
		free(l);
		return mirai__fail(err, rv, "out of memory");
	}
	if (cfg->reconnect_min_ms > 0) {
		nng_socket_set_ms(l->s, NNG_OPT_RECONNMINT,
		    (nng_duration) cfg->reconnect_min_ms);
	}
	if (cfg->reconnect_max_ms > 0) {
		nng_socket_set_ms(l->s, NNG_OPT_RECONNMAXT,
		    (nng_duration) cfg->reconnect_max_ms);
	}
	if (cfg->timeout_ms > 0) {
		nng_socket_set_ms(l->s, NNG_OPT_RECVTIMEO,
		    (nng_duration) cfg->timeout_ms);
		nng_socket_set_ms(l->s, NNG_OPT_SENDTIMEO,
		    (nng_duration) cfg->timeout_ms);
	}
	if (cfg->pipe != NULL) {
		if (cfg->events & (1u << MIRAI__PIPE_ADD)) {
			nng_pipe_notify(l->s, NNG_PIPE_EV_ADD_PRE, link_pipe, l);
		}
		if (cfg->events & (1u << MIRAI__PIPE_UP)) {
			nng_pipe_notify(l->s, NNG_PIPE_EV_ADD_POST, link_pipe, l);
		}
		if (cfg->events & (1u << MIRAI__PIPE_GONE)) {
			nng_pipe_notify(l->s, NNG_PIPE_EV_REM_POST, link_pipe, l);
		}
	}
	*out = l;
	return 0;
}

int
mirai__link_listen(mirai__link *l, const char *url, char **dial,
    mirai_errmsg *err)
{
	nng_listener lst;
	int rv;

	if (l->mem != NULL) {
		return mirai__mem_listen(l->mem, url, dial, err);
	}
	if ((rv = mirai__url_check(url, 1, &l->cfg.tls, err)) != 0) {
		return rv;
	}
	if ((rv = nng_listener_create(&lst, l->s, url)) != 0) {
		return mirai__fail(err, mirai__transport_err(rv),
		    "cannot listen on %s: %s", url, nng_strerror(rv));
	}
	if (url_is_tls(url)) {
		nng_tls_config *c;
		if ((rv = tls_config(&l->cfg.tls, 1, &c, url, err)) != 0) {
			nng_listener_close(lst);
			return rv;
		}
		rv = nng_listener_set_ptr(lst, NNG_OPT_TLS_CONFIG, c);
		nng_tls_config_free(c);
		if (rv != 0) {
			nng_listener_close(lst);
			return mirai__fail(err, MIRAI_ECRYPTO,
			    "%s: TLS: %s", url, nng_strerror(rv));
		}
	}
	if (strncmp(url, "ipc://", 6) == 0) {
		/* Owner only, beside the directory's own check. */
		nng_listener_set_int(lst, NNG_OPT_IPC_PERMISSIONS, 0600);
	} else if (strncmp(url, "tcp", 3) == 0 && !l->cfg.admits) {
		/* Nothing but the address guards this tcp listener. */
		MIRAI__LOG(MIRAI_LOG_WARN, "transport",
		    "%s: a tcp listener without slot secrets: anyone who can "
		    "reach it can connect (dispatcher slots have secrets; "
		    "links within this machine default to owner-only ipc "
		    "sockets)",
		    url);
	}
	if ((rv = nng_listener_start(lst, 0)) != 0) {
		nng_listener_close(lst);
		return mirai__fail(err, mirai__transport_err(rv),
		    "cannot listen on %s: %s", url, nng_strerror(rv));
	}
	if (dial != NULL && (rv = dial_url(lst, url, dial)) != 0) {
		nng_listener_close(lst);
		return mirai__fail(err, rv, "cannot listen on %s: %s", url,
		    mirai_strerror(rv));
	}
	return 0;
}

int
mirai__link_dial(mirai__link *l, const char *url, int wait, mirai_errmsg *err)
{
	nng_dialer d;
	int rv;

	if (l->mem != NULL) {
		return mirai__mem_dial(l->mem, url, err);
	}
	if ((rv = mirai__url_check(url, 0, &l->cfg.tls, err)) != 0) {
		return rv;
	}
	if ((rv = nng_dialer_create(&d, l->s, url)) != 0) {
		return mirai__fail(err, mirai__transport_err(rv),
		    "cannot dial %s: %s", url, nng_strerror(rv));
	}
	if (url_is_tls(url)) {
		nng_tls_config *c;
		if ((rv = tls_config(&l->cfg.tls, 0, &c, url, err)) != 0) {
			nng_dialer_close(d);
			return rv;
		}
		rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, c);
		nng_tls_config_free(c);
		if (rv != 0) {
			nng_dialer_close(d);
			return mirai__fail(err, MIRAI_ECRYPTO, "%s: TLS: %s",
			    url, nng_strerror(rv));
		}
	}
	/* Without wait the dialer keeps retrying in the background until
	 * the first connection is made.  With TLS, a peer that cannot prove
	 * itself fails the first attempt with a cryptographic error. */
	if ((rv = nng_dialer_start(d, wait ? 0 : NNG_FLAG_NONBLOCK)) != 0) {
		nng_dialer_close(d);
		return mirai__fail(err, mirai__transport_err(rv),
		    "cannot dial %s: %s", url, nng_strerror(rv));
	}
	return 0;
}

void
mirai__link_start(mirai__link *l)
{
	if (l->mem != NULL) {
		mirai__mem_start(l->mem);
	} else if (l->rx != NULL) {
		nng_recv_aio(l->s, l->rx);
	}
}

int
mirai__link_send(mirai__link *l, mirai__msg *m)
{
	return mirai__tx_send(l->tx, m);
}

int
mirai__link_try_send(mirai__link *l, mirai__msg *m)
{
	int rv;

	if (l->mem != NULL) {
		mirai__mem_send(l->mem, m);
		return 0;
	}
	rv = nng_sendmsg(l->s, NMSG(m), NNG_FLAG_NONBLOCK);

	if (rv != 0) {
		nng_msg_free(NMSG(m));
	}
	return mirai__transport_err(rv);
}

void
mirai__link_close(mirai__link *l)
{
	if (l == NULL) {
		return;
	}
	if (l->mem != NULL) {
		mirai__mem_close(l->mem);
		mirai__tx_free(l->tx);
		free(l);
		return;
	}
	nng_aio_stop(l->rx);
	if (l->tx != NULL) {
		nng_aio_stop(l->tx->aio);
	}
	nng_close(l->s);
	nng_aio_free(l->rx);
	mirai__tx_free(l->tx);
	free(l);
}

/* ---- senders ------------------------------------------------------------- */

static void
tx_done(void *arg)
{
	mirai__tx *t = arg;
	int rv       = nng_aio_result(t->aio);

	if (rv != 0) {
		nng_msg_free(nng_aio_get_msg(t->aio));
		nng_aio_set_msg(t->aio, NULL);
	}
	mirai__link_hold();
	t->done(t->arg, mirai__transport_err(rv));
	mirai__link_flush();
}

int
mirai__tx_open(mirai__tx **out, mirai__link *l,
    void (*done)(void *arg, int rv), void *arg)
{
	mirai__tx *t = calloc(1, sizeof *t);

	if (t == NULL) {
		return MIRAI_ENOMEM;
	}
	if (l->mem != NULL) {
		t->mem = l->mem;
		*out   = t;
		return 0;
	}
	if (nng_aio_alloc(&t->aio, tx_done, t) != 0) {
		free(t);
		return MIRAI_ENOMEM;
	}
	t->s    = l->s;
	t->done = done;
	t->arg  = arg;
	*out    = t;
	return 0;
}

int
mirai__tx_send(mirai__tx *t, mirai__msg *m)
{
	if (t->mem != NULL) {
		/* The other end's inbox takes it at once. */
		mirai__mem_send(t->mem, m);
		return 1;
	}
	/* Taken at once: no completion callback, so no thread hop. */
	if (nng_sendmsg(t->s, NMSG(m), NNG_FLAG_NONBLOCK) == 0) {
		return 1;
	}
	nng_aio_set_msg(t->aio, NMSG(m));
	nng_send_aio(t->s, t->aio);
	return 0;
}

void
mirai__tx_free(mirai__tx *t)
{
	if (t != NULL) {
		nng_aio_free(t->aio);
		free(t);
	}
}

/* ---- one request, one reply ------------------------------------------ */

int
mirai__request(const char *url, mirai__msg *req, mirai__msg **rep,
    int64_t timeout_ms, mirai_errmsg *err)
{
	mirai__link_cfg cfg = {.timeout_ms = timeout_ms};
	mirai__link *l;
	nng_msg *m;
	int rv;

	if ((rv = mirai__link_open(&l, &cfg, err)) != 0) {
		mirai__msg_free(req);
		return rv;
	}
	if ((rv = mirai__url_check(url, 0, NULL, err)) != 0) {
		mirai__link_close(l);
		mirai__msg_free(req);
		return rv;
	}
	if ((rv = nng_dial(l->s, url, NULL, 0)) != 0) {
		mirai__link_close(l);
		mirai__msg_free(req);
		return mirai__fail(err, mirai__transport_err(rv),
		    "cannot reach %s: %s", url, nng_strerror(rv));
	}
	if ((rv = nng_sendmsg(l->s, NMSG(req), 0)) != 0) {
		mirai__msg_free(req);
		mirai__link_close(l);
		return mirai__fail(err, mirai__transport_err(rv),
		    "cannot ask %s: %s", url, nng_strerror(rv));
	}
	if ((rv = nng_recvmsg(l->s, &m, 0)) != 0) {
		mirai__link_close(l);
		return mirai__fail(err, mirai__transport_err(rv),
		    "no answer from %s: %s", url, nng_strerror(rv));
	}
	mirai__link_close(l);
	*rep = MMSG(m);
	return 0;
}

/* ---- closing one pipe (reliability) -------------------------------------- */

void
mirai__link_pipe_close(mirai__link *l, uint32_t pipe)
{
	nng_pipe p = NNG_PIPE_INITIALIZER;

	if (l->mem != NULL) {
		mirai__mem_pipe_close(l->mem, pipe);
		return;
	}
	p.id = pipe;
	nng_pipe_close(p);
}
