/*
 * util.c: small helpers with no better home: clocks, condition variables on
 * the monotonic clock, host name, error mapping, a growable string.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
