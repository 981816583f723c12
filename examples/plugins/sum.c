/*
 * sum: a plugin with one task function, example.sum, which adds up the
 * whitespace-separated integers of its input and returns the total as text.
 * mirai-server loads it with --plugin (and mirai_daemons through the
 * server options' plugins); sum_server.c links it into a server program of
 * its own instead.
 *   cc -shared -fPIC sum.c -o sum.so $(pkg-config --cflags --libs mirai)
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mirai.h>

/* mirai-server looks up mirai_plugin_init (declared in mirai.h) in the
 * shared object. */

static int
sum(mirai_task *task, void *arg)
{
	size_t len;
	const char *in = mirai_task_data(task, &len); /* belongs to the task */
	char text[4096], *p, *end, out[32];
	long long total = 0;

	(void) arg;
	/* The input is bytes, not a string: copy it to NUL-terminate it. */
	if (len >= sizeof text) {
		return mirai_task_fail(task, "input longer than %zu bytes",
		    sizeof text - 1);
	}
	memcpy(text, in, len);
	text[len] = '\0';
	for (p = text; *(p += strspn(p, " \t\n")) != '\0'; p = end) {
		errno = 0;
		long long v = strtoll(p, &end, 10);
		if (end == p || (*end != '\0' && strchr(" \t\n", *end) == NULL)) {
			/* The client reads this with mirai_errortext(). */
			return mirai_task_fail(task, "not an integer: %.*s",
			    (int) strcspn(p, " \t\n"), p);
		}
		if (errno == ERANGE || (v > 0 && total > LLONG_MAX - v) ||
		    (v < 0 && total < LLONG_MIN - v)) {
			return mirai_task_fail(task, "sum out of range");
		}
		total += v;
	}
	snprintf(out, sizeof out, "%lld", total);
	return mirai_task_reply(task, out, strlen(out)); /* copied */
}

int
mirai_plugin_init(mirai_server *srv)
{
	return mirai_server_register(srv, "example.sum", sum, NULL);
}
