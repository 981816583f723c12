/*
 * transport_url.c: the URLs of the transport layer: the checks every URL
 * goes through before a link listens on or dials it, the slot credentials
 * at the end of a URL ("/<secret>/<slot>") and the secrets themselves,
 * URLs with their secrets taken out for logs, and the owner-only ipc URLs
 * of links within this machine.  transport.c opens the links.
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

#include "internal.h"

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
	if (mirai__url_is_mem(url)) {
		/* Only a profile and its dispatcher thread link so, and they
		 * open in-memory links, which do not come here. */
		return mirai__fail(err, MIRAI_EADDRINVAL,
		    "%s: mem:// is internal (a profile's link to its dispatcher "
		    "thread); use tcp, ws, ipc or inproc",
		    url);
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
