/*
 * transport.c: the only file that calls NNG.  It owns the sockets (PAIR1,
 * one peer or many), their receive loops, the senders, pipe events, the
 * checks every URL goes through before it is used, the URL peers should
 * dial to reach a listener, a blocking request/reply for control queries,
 * and the mapping of NNG's error numbers onto the library's.  A link
 * opened in memory (cfg.mem: the client and its dispatcher thread) has no
 * socket: its calls go to memlink.c, so that their owners have one code
 * path for both kinds.
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
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* ---- URLs --------------------------------------------------------------- */

static const char *const schemes[] = {"tcp", "tcp4", "tcp6", "ws", "ws4",
    "ws6", "ipc", "inproc", "wss", "wss4", "wss6", "tls+tcp", "tls+tcp4",
    "tls+tcp6", NULL};

static int
is_tls(const char *scheme)
{
	return strncmp(scheme, "wss", 3) == 0 || strncmp(scheme, "tls+", 4) == 0;
}

static int
tls_ready(const mirai__tls *t, int listening)
{
	if (t == NULL) {
		return 0;
	}
	if (listening) {
		return (t->cert_pem != NULL && t->key_pem != NULL) ||
		    (t->cert_file != NULL && t->key_file != NULL);
	}
	return t->ca_pem != NULL || t->ca_file != NULL;
}

int
mirai__url_check(const char *url, int listening, const mirai__tls *tls,
    mirai_errmsg *err)
{
	nng_url *u;
	const char *p;
	size_t i;
	int rv = 0;

	if (url == NULL || *url == '\0') {
		return mirai__fail(err, MIRAI_EADDRINVAL, "no URL given");
	}
	if (strstr(url, "://") == NULL) {
		return mirai__fail(err, MIRAI_EADDRINVAL,
		    "%s: not a URL (scheme://address)", url);
	}
	if (nng_url_parse(&u, url) != 0) {
		return mirai__fail(err, MIRAI_EADDRINVAL, "%s: malformed URL",
		    url);
	}
	for (i = 0; schemes[i] != NULL; i++) {
		if (strcmp(schemes[i], u->u_scheme) == 0) {
			break;
		}
	}
	if (schemes[i] == NULL) {
		rv = mirai__fail(err, MIRAI_EADDRINVAL,
		    "%s: unknown scheme '%s' (tcp, ws, ipc or inproc)", url,
		    u->u_scheme);
	} else if (is_tls(u->u_scheme) && !tls_ready(tls, listening)) {
		/* Without certificates NNG would bind, and every peer would
		 * fail its handshake in silence. */
		rv = mirai__fail(err, MIRAI_ENOTSUP,
		    listening ? "%s: TLS needs a certificate and its key to "
				"listen (tls_cert, tls_key)"
			      : "%s: TLS needs the CA that signed the other "
				"side's certificate (tls_ca)",
		    url);
	} else if (strcmp(u->u_scheme, "ipc") == 0 ||
	    strcmp(u->u_scheme, "inproc") == 0) {
		if (u->u_path[0] == '\0' && u->u_host[0] == '\0') {
			rv = mirai__fail(err, MIRAI_EADDRINVAL,
			    "%s: no path", url);
		}
	} else if (!listening && (u->u_hostname[0] == '\0' ||
				      strchr(u->u_host, '*') != NULL)) {
		/* NNG reads "*" as no host at all. */
		rv = mirai__fail(err, MIRAI_EADDRINVAL,
		    "%s: no host to reach (an empty or wildcard host can only "
		    "listen)",
		    url);
	} else {
		/* NNG takes a missing port as 80 for ws: a port is always
		 * written out, so that nothing binds where nobody asked. */
		const char *auth = strstr(url, "://") + 3;
		const char *end  = auth + strcspn(auth, "/");
		const char *colon = NULL;

		for (p = auth; p < end; p++) {
			if (*p == ']') {
				colon = NULL;
			} else if (*p == ':') {
				colon = p;
			}
		}
		if (colon == NULL || colon + 1 == end) {
			rv = mirai__fail(err, MIRAI_EADDRINVAL,
			    "%s: no port", url);
		} else {
			long port = 0;
			for (p = colon + 1; p < end; p++) {
				if (*p < '0' || *p > '9' || port > 65535) {
					port = -1;
					break;
				}
				port = port * 10 + (*p - '0');
			}
			if (port < 0 || port > 65535 ||
			    (port == 0 && !listening)) {
				rv = mirai__fail(err, MIRAI_EADDRINVAL,
				    "%s: port must be %s", url,
				    listening ? "0 to 65535" : "1 to 65535");
			}
		}
	}
	nng_url_free(u);
	return rv;
}

/* ---- slot credentials in URLs --------------------------------------- */

/* Where the "/<secret>/<slot>" suffix of url starts, or NULL. */
static const char *
cred_at(const char *url)
{
	size_t n = strlen(url), d = 0, h = 0;

	while (d < n && d < 10 && url[n - 1 - d] >= '0' &&
	    url[n - 1 - d] <= '9') {
		d++;
	}
	if (d == 0 || d == n || url[n - 1 - d] != '/') {
		return NULL;
	}
	n -= d + 1;
	while (h < n && isxdigit((unsigned char) url[n - 1 - h]) &&
	    !isupper((unsigned char) url[n - 1 - h])) {
		h++;
	}
	if (h != MIRAI__SECRET_HEX || h == n || url[n - 1 - h] != '/' ||
	    strstr(url, "://") == NULL ||
	    strstr(url, "://") + 3 > url + n - 1 - h) {
		return NULL;
	}
	return url + n - 1 - h;
}

int
mirai__url_cred(const char *url, char *base, size_t blen, uint32_t *slot,
    char *secret)
{
	const char *at = cred_at(url);
	unsigned long v;

	*slot     = MIRAI__NO_SLOT;
	secret[0] = '\0';
	if (at == NULL || (v = strtoul(at + 2 + MIRAI__SECRET_HEX, NULL, 10)) >=
			      MIRAI__NO_SLOT) {
		snprintf(base, blen, "%s", url);
		return 0;
	}
	*slot = (uint32_t) v;
	memcpy(secret, at + 1, MIRAI__SECRET_HEX);
	secret[MIRAI__SECRET_HEX] = '\0';
	snprintf(base, blen, "%.*s", (int) (at - url), url);
	return 1;
}

void
mirai__url_with_cred(char *buf, size_t len, const char *base,
    const char *secret, uint32_t slot)
{
	size_t n = strlen(base);

	if (n > 0 && base[n - 1] == '/') {
		n--;
	}
	snprintf(buf, len, "%.*s/%s/%" PRIu32, (int) n, base, secret, slot);
}

void
mirai__secret_new(char *hex)
{
	unsigned char b[MIRAI__SECRET_HEX / 2];
	size_t got = 0;

	while (got < sizeof b) {
		ssize_t n = getrandom(b + got, sizeof b - got, 0);
		if (n > 0) {
			got += (size_t) n;
		}
	}
	for (size_t i = 0; i < sizeof b; i++) {
		snprintf(hex + 2 * i, 3, "%02x", b[i]);
	}
	explicit_bzero(b, sizeof b);
}

int
mirai__secret_eq(const char *a, const char *b, size_t blen)
{
	unsigned char diff = blen != MIRAI__SECRET_HEX;

	/* Time independent of where they differ. */
	for (size_t i = 0; i < MIRAI__SECRET_HEX; i++) {
		diff |= (unsigned char) (a[i] ^ (i < blen ? b[i] : 0));
	}
	return diff == 0;
}

void
mirai__url_redact(const char *url, char *buf, size_t len)
{
	const char *sep = strstr(url, "://");
	const char *path;

	if (cred_at(url) != NULL) {
		snprintf(buf, len, "%.*s/...", (int) (cred_at(url) - url), url);
		return;
	}
	if (sep == NULL || strncmp(url, "ipc://", 6) == 0 ||
	    strncmp(url, "inproc://", 9) == 0 ||
	    (path = strchr(sep + 3, '/')) == NULL) {
		snprintf(buf, len, "%s", url);
		return;
	}
	snprintf(buf, len, "%.*s/...", (int) (path - url), url);
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

/* ---- local links: ipc sockets in an owner-only directory ---------------- */

/*
 * Links within this machine listen on ipc:// sockets in a directory only
 * this user can enter (0700): the kernel refuses every other user before
 * NNG sees a connection, so a local link needs no secret of its own, and
 * nothing of ours shows as a loopback port other users could dial.  The
 * directory is made once per process and removed at exit.
 */
static pthread_once_t dir_once = PTHREAD_ONCE_INIT;
static char dir_path[96];
static int dir_err;

static void
dir_remove(void)
{
	/* NNG removes each socket file when its listener closes; what is
	 * left at exit belongs to listeners never closed. */
	char path[128];

	for (unsigned k = 0; k < 4096; k++) {
		snprintf(path, sizeof path, "%s/%u", dir_path, k);
		if (unlink(path) != 0 && errno == ENOENT && k > 64) {
			break;
		}
	}
	rmdir(dir_path);
}

static void
dir_make(void)
{
	const char *bases[] = {getenv("XDG_RUNTIME_DIR"), getenv("TMPDIR"),
	    "/tmp"};
	struct stat st;

	dir_err = MIRAI_EPERM;
	for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
		const char *b = bases[i];
		/* A socket path must fit sun_path (108 bytes) with room for
		 * the name. */
		if (b == NULL || *b != '/' || strlen(b) > 60) {
			continue;
		}
		snprintf(dir_path, sizeof dir_path, "%s/mirai-XXXXXX", b);
		if (mkdtemp(dir_path) == NULL) {
			continue;
		}
		/* mkdtemp makes it 0700; check, in case of an odd umask or
		 * filesystem. */
		if (stat(dir_path, &st) != 0 || st.st_uid != geteuid() ||
		    (st.st_mode & 077) != 0) {
			rmdir(dir_path);
			continue;
		}
		dir_err = 0;
		atexit(dir_remove);
		return;
	}
	dir_path[0] = '\0';
}

int
mirai__local_url(char *buf, size_t len, mirai_errmsg *err)
{
	static atomic_uint seq;

	pthread_once(&dir_once, dir_make);
	if (dir_err != 0) {
		return mirai__fail(err, dir_err,
		    "cannot make a private directory for local links in "
		    "$XDG_RUNTIME_DIR, $TMPDIR or /tmp");
	}
	if ((size_t) snprintf(buf, len, "ipc://%s/%u", dir_path,
		atomic_fetch_add(&seq, 1)) >= len) {
		return mirai__fail(err, MIRAI_EINVAL, "local URL too long");
	}
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
