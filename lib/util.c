/*
 * util.c: small helpers with no better home: clocks, condition variables on
 * the monotonic clock, host name, error mapping, a growable string, and
 * owner-only files (the launch's TLS material and its agents' setup).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int64_t
mirai__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
mirai__now_ms(void)
{
	return mirai__now_ns() / 1000000;
}

void
mirai__cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
}

int
mirai__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mtx,
    int64_t deadline_ms)
{
	struct timespec ts;

	if (deadline_ms < 0) {
		pthread_cond_wait(cv, mtx);
		return 0;
	}
	ts.tv_sec  = deadline_ms / 1000;
	ts.tv_nsec = (deadline_ms % 1000) * 1000000;
	return pthread_cond_timedwait(cv, mtx, &ts) == ETIMEDOUT ? ETIMEDOUT
								 : 0;
}

char *
mirai__strdup(const char *s)
{
	size_t n;
	char *p;

	if (s == NULL) {
		return NULL;
	}
	n = strlen(s) + 1;
	if ((p = malloc(n)) != NULL) {
		memcpy(p, s, n);
	}
	return p;
}

void
mirai__hostname(char *buf, size_t len)
{
	if (gethostname(buf, len) != 0) {
		snprintf(buf, len, "localhost");
	}
	buf[len - 1] = '\0';
}

void
mirai__sb_printf(mirai__sb *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (sb->failed) {
		return;
	}
	for (;;) {
		size_t room = sb->cap - sb->len;

		va_start(ap, fmt);
		n = vsnprintf(sb->buf == NULL ? NULL : sb->buf + sb->len,
		    room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			sb->failed = 1;
			return;
		}
		if ((size_t) n < room) {
			sb->len += (size_t) n;
			return;
		}
		size_t cap = sb->cap == 0 ? 256 : sb->cap;
		while (cap - sb->len <= (size_t) n) {
			cap *= 2;
		}
		char *p = realloc(sb->buf, cap);
		if (p == NULL) {
			sb->failed = 1;
			return;
		}
		sb->buf = p;
		sb->cap = cap;
	}
}

void
mirai__sb_json_str(mirai__sb *sb, const char *s)
{
	mirai__sb_printf(sb, "\"");
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\') {
			mirai__sb_printf(sb, "\\%c", c);
		} else if (c < 0x20) {
			mirai__sb_printf(sb, "\\u%04x", c);
		} else {
			mirai__sb_printf(sb, "%c", c);
		}
	}
	mirai__sb_printf(sb, "\"");
}

/* The strings of a mirai_server_opts, for mirai__sopts_copy(). */
static const char **
sopts_str(mirai_server_opts *o, int i)
{
	switch (i) {
	case 0: return &o->server_path;
	case 1: return &o->bind_to;
	case 2: return &o->tls_ca;
	case 3: return &o->tls_cert;
	case 4: return &o->tls_key;
	default: return NULL;
	}
}

int
mirai__sopts_copy(mirai_server_opts *dst, const mirai_server_opts *src,
    void **mem)
{
	static const mirai_server_opts def = MIRAI_SERVER_OPTS_INIT;
	mirai_server_opts o = src != NULL ? *src : def;
	size_t size = o.nplugins * sizeof(char *), used;
	const char **s;
	char *block, *at;

	for (int i = 0; (s = sopts_str(&o, i)) != NULL; i++) {
		size += *s != NULL ? strlen(*s) + 1 : 0;
	}
	for (size_t i = 0; i < o.nplugins; i++) {
		size += strlen(o.plugins[i]) + 1;
	}
	if ((block = malloc(size > 0 ? size : 1)) == NULL) {
		return MIRAI_ENOMEM;
	}
	used = o.nplugins * sizeof(char *);
	at   = block + used;
	for (int i = 0; (s = sopts_str(&o, i)) != NULL; i++) {
		if (*s != NULL) {
			size_t len = strlen(*s) + 1;
			memcpy(at, *s, len);
			*s = at;
			at += len;
		}
	}
	if (o.nplugins > 0) {
		const char **pl = (const char **) (void *) block;
		for (size_t i = 0; i < o.nplugins; i++) {
			size_t len = strlen(o.plugins[i]) + 1;
			memcpy(at, o.plugins[i], len);
			pl[i] = at;
			at += len;
		}
		o.plugins = pl;
	} else {
		o.plugins = NULL;
	}
	*dst = o;
	*mem = block;
	return 0;
}

/* ---- owner-only files ---------------------------------------------------- */

static int
errno_err(int e)
{
	switch (e) {
	case EEXIST:
		return MIRAI_EEXIST;
	case ENOENT:
	case ENOTDIR:
		return MIRAI_ENOENT;
	case EACCES:
	case EPERM:
	case ELOOP:
	case EROFS:
		return MIRAI_EPERM;
	case ENOSPC:
	case EDQUOT:
		return MIRAI_ENOSPC;
	case EMFILE:
	case ENFILE:
		return MIRAI_ENOFILES;
	case ENOMEM:
		return MIRAI_ENOMEM;
	default:
		return MIRAI_EINTERNAL;
	}
}

static int
write_all(int fd, const void *data, size_t n)
{
	const char *p = data;

	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -1;
		}
		p += w;
		n -= (size_t) w;
	}
	return 0;
}

int
mirai__write_private(const char *dir, const char *name, const void *data,
    size_t len, char **path, mirai_errmsg *err)
{
	struct stat st;
	char *full = NULL;
	size_t flen;
	int dfd, fd, rv, e;

	if (dir == NULL || *dir == '\0' || name == NULL ||
	    (data == NULL && len > 0) || path == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "no directory, name, "
						      "contents or path");
	}
	if (*name == '\0' || strchr(name, '/') != NULL ||
	    strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "'%s' is not a plain file name", name);
	}
	/* The checks are made on the directory as opened, and the file is
	 * created relative to it, so the directory cannot be swapped in
	 * between. */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		e = errno;
		return mirai__fail(err, errno_err(e), "%s: %s", dir,
		    strerror(e));
	}
	if (fstat(dfd, &st) != 0) {
		e = errno;
		close(dfd);
		return mirai__fail(err, errno_err(e), "%s: %s", dir,
		    strerror(e));
	}
	if (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		close(dfd);
		return mirai__fail(err, MIRAI_EPERM,
		    "%s: a private file needs a directory that only its "
		    "owner can write to, owned by us (owner %ld, mode %03o)",
		    dir, (long) st.st_uid, (unsigned) (st.st_mode & 0777));
	}
	flen = strlen(dir) + 1 + strlen(name) + 1;
	if ((full = malloc(flen)) == NULL) {
		close(dfd);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	snprintf(full, flen, "%s%s%s", dir,
	    dir[strlen(dir) - 1] == '/' ? "" : "/", name);

	fd = openat(dfd, name,
	    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		e = errno;
		close(dfd);
		rv = mirai__fail(err, errno_err(e), "%s: %s", full,
		    strerror(e));
		free(full);
		return rv;
	}
	/* A umask could have taken the owner's bits away.  close() is
	 * checked too: some file systems report write errors only there. */
	e = 0;
	if (fchmod(fd, 0600) != 0 || write_all(fd, data, len) != 0 ||
	    fsync(fd) != 0) {
		e = errno;
	}
	if (close(fd) != 0 && e == 0) {
		e = errno;
	}
	if (e != 0) {
		unlinkat(dfd, name, 0);
		close(dfd);
		rv = mirai__fail(err, errno_err(e), "writing %s: %s", full,
		    strerror(e));
		free(full);
		return rv;
	}
	close(dfd);
	*path = full;
	return 0;
}

