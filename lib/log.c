/*
 * log.c: the library's only way to say something.  Messages go to the
 * handler the application installed, or nowhere.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int mirai__log_level = 0;

static mirai_log_fn log_fn;
static void *log_arg;
static int log_fd = 2;

void
mirai_log_set(mirai_log_fn fn, void *arg, int max_level)
{
	log_fn           = fn;
	log_arg          = arg;
	mirai__log_level = fn == NULL ? 0 : max_level;
}

void
mirai__log_set_fd(int fd)
{
	log_fd = fd;
}

void
mirai__log(int level, const char *tag, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	mirai_log_fn fn = log_fn;

	if (fn == NULL || level > mirai__log_level) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fn(level, tag, msg, log_arg);
}

void
mirai_log_stderr(int level, const char *tag, const char *msg, void *arg)
{
	static const char *names[] = {"", "error", "warn", "info", "debug"};
	const char *prog = arg != NULL ? arg : "mirai";
	char line[1400];
	int n;

	if (level < MIRAI_LOG_ERROR || level > MIRAI_LOG_DEBUG) {
		level = MIRAI_LOG_ERROR;
	}
	/* One write per line, so lines of several processes do not mix. */
	n = snprintf(line, sizeof line, "%s[%ld]: %s: %s: %s\n", prog,
	    (long) getpid(), names[level], tag, msg);
	if (n > (int) sizeof line - 1) {
		n = (int) sizeof line - 1;
		line[n - 1] = '\n';
	}
	if (n > 0 && write(log_fd, line, (size_t) n) < 0) {
		/* Nowhere left to report it. */
	}
}
