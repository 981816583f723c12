/*
 * testplug: a plugin with functions the integration tests need.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mirai.h>

static int
upper(mirai_task *task, void *arg)
{
	size_t len;
	const char *in = mirai_task_data(task, &len);
	char *out      = mirai_task_reply_buf(task, len);

	(void) arg;
	if (out == NULL) {
		return MIRAI_ENOMEM;
	}
	for (size_t i = 0; i < len; i++) {
		out[i] = (char) toupper((unsigned char) in[i]);
	}
	return 0;
}

/* Runs until cancelled, polling the flag as a long C function should;
 * gives up after 30 s so a broken cancel cannot hang the tests. */
static int
cancelwait(mirai_task *task, void *arg)
{
	(void) arg;
	for (int i = 0; i < 6000; i++) {
		if (mirai_task_cancelled(task)) {
			return MIRAI_ECANCELED;
		}
		usleep(5000);
	}
	return mirai_task_fail(task, "never cancelled");
}

/* Sleeps for the milliseconds in its input and ignores cancellation, like
 * a C function that never checks: the server stays busy throughout. */
static int
busy(mirai_task *task, void *arg)
{
	size_t len;
	const char *in = mirai_task_data(task, &len);
	char buf[32];

	(void) arg;
	snprintf(buf, sizeof buf, "%.*s", (int) (len < 31 ? len : 31), in);
	usleep((useconds_t) atoi(buf) * 1000);
	return mirai_task_reply(task, in, len);
}

static int
crash(mirai_task *task, void *arg)
{
	(void) task;
	(void) arg;
	abort();
}

static int
fail(mirai_task *task, void *arg)
{
	size_t len;
	const char *in = mirai_task_data(task, &len);

	(void) arg;
	return mirai_task_fail(task, "deliberate failure: %.*s", (int) len, in);
}

int
mirai_plugin_init(mirai_server *srv)
{
	int rv;

	if ((rv = mirai_server_register(srv, "test.upper", upper, NULL)) != 0 ||
	    (rv = mirai_server_register(srv, "test.cancelwait", cancelwait,
		 NULL)) != 0 ||
	    (rv = mirai_server_register(srv, "test.crash", crash, NULL)) != 0 ||
	    (rv = mirai_server_register(srv, "test.busy", busy, NULL)) != 0 ||
	    (rv = mirai_server_register(srv, "test.fail", fail, NULL)) != 0) {
		return rv;
	}
	return 0;
}
