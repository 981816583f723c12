/*
 * it_hook: the serialization hook must agree between client and servers;
 * a mismatch is reported, never decoded wrongly.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int
xor_hook(void *arg, const void *in, size_t len, void **out, size_t *out_len)
{
	const unsigned char *p = in;
	unsigned char *q       = malloc(len > 0 ? len : 1);

	(void) arg;
	if (q == NULL) {
		return MIRAI_ENOMEM;
	}
	for (size_t i = 0; i < len; i++) {
		q[i] = p[i] ^ 0x5a;
	}
	*out     = q;
	*out_len = len;
	return 0;
}

static const mirai_hook hook_v1 = {"xor-v1", xor_hook, xor_hook, NULL, NULL};
static const mirai_hook hook_v2 = {"xor-v2", xor_hook, xor_hook, NULL, NULL};

/* Warnings are kept, so that tests can check what was reported. */
static pthread_mutex_t log_mtx = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[16384];
static size_t log_len;

static void
capture(int level, const char *tag, const char *msg, void *arg)
{
	pthread_mutex_lock(&log_mtx);
	if (level <= MIRAI_LOG_WARN && log_len < sizeof log_buf) {
		log_len += (size_t) snprintf(log_buf + log_len,
		    sizeof log_buf - log_len, "%s: %s\n", tag, msg);
	}
	pthread_mutex_unlock(&log_mtx);
	mirai_log_stderr(level, tag, msg, arg);
}

static int
logged(const char *a, const char *b)
{
	const char *p;
	int found = 0;

	pthread_mutex_lock(&log_mtx);
	for (p = log_buf; !found && (p = strstr(p, a)) != NULL; p++) {
		const char *eol = strchr(p, '\n');
		const char *q   = b != NULL ? strstr(p, b) : p;
		found = q != NULL && (eol == NULL || q < eol);
	}
	pthread_mutex_unlock(&log_mtx);
	return found;
}

static void
log_clear(void)
{
	pthread_mutex_lock(&log_mtx);
	log_len    = 0;
	log_buf[0] = '\0';
	pthread_mutex_unlock(&log_mtx);
}

static int
setup(void **state)
{
	(void) state;
	h_init();
	mirai_log_set(capture, "test", MIRAI_LOG_WARN);
	return 0;
}

static void
set_with(const char *profile, const mirai_hook *hook, int with_plugin,
    int dispatcher)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_server_opts so = MIRAI_SERVER_OPTS_INIT;
	const char *plugins[1];

	plugins[0]   = h_plugin("hookplug");
	d.profile    = profile;
	d.n          = 1;
	d.dispatcher = dispatcher;
	d.hook       = hook;
	if (with_plugin) {
		so.plugins  = plugins;
		so.nplugins = 1;
	}
	d.server = &so;
	assert_int_equal(mirai_daemons(&d, NULL), 0);
}

static void
set(const char *profile, const mirai_hook *hook, int with_plugin)
{
	set_with(profile, hook, with_plugin, MIRAI_DISPATCHER_OFF);
}

/*
 * With a dispatcher: the client must not warn that the dispatcher (which
 * has no hook) mismatches; the dispatcher warns once per server that is
 * given tasks encoded with another hook, naming its hook.
 */
static void
test_dispatcher_logs(void **state)
{
	char buf[512];

	(void) state;
	setenv("TEST_HOOK_NAME", "xor-v1", 1);
	log_clear();
	set_with("d-same", &hook_v1, 1, MIRAI_DISPATCHER_THREAD);
	assert_int_equal(h_call("d-same", "test.reverse", "abc", buf,
			     sizeof buf),
	    0);
	assert_string_equal(buf, "cba");
	mirai_reset("d-same");
	assert_false(logged("serialization hook", NULL));

	log_clear();
	set_with("d-differ", &hook_v2, 1, MIRAI_DISPATCHER_THREAD);
	assert_int_equal(h_call("d-differ", "mirai.echo", "x", buf, sizeof buf),
	    MIRAI_EHOOK);
	assert_int_equal(h_call("d-differ", "mirai.echo", "y", buf, sizeof buf),
	    MIRAI_EHOOK);
	mirai_reset("d-differ");
	assert_true(logged("dispatcher: slot 0: server", "'xor-v1'"));
	assert_false(logged("client:", "serialization hook"));
	/* Once per server instance. */
	pthread_mutex_lock(&log_mtx);
	{
		const char *p = strstr(log_buf, "'xor-v1'");
		assert_non_null(p);
		assert_null(strstr(p + 1, "'xor-v1'"));
	}
	pthread_mutex_unlock(&log_mtx);
	unsetenv("TEST_HOOK_NAME");
}

static void
test_same_hook(void **state)
{
	char buf[64];

	(void) state;
	unsetenv("TEST_HOOK_NAME");
	set("same", &hook_v1, 1);
	/* The server's function sees decoded bytes; the client decodes the
	 * result: end to end it is plain text. */
	assert_int_equal(h_call("same", "test.reverse", "abc", buf, sizeof buf), 0);
	assert_string_equal(buf, "cba");
	assert_int_equal(h_call("same", "mirai.echo", "plain", buf, sizeof buf), 0);
	assert_string_equal(buf, "plain");
	mirai_reset("same");
}

static void
test_mismatches(void **state)
{
	char buf[512];

	(void) state;
	/* Hook on the client only. */
	set("c-only", &hook_v1, 0);
	assert_int_equal(h_call("c-only", "mirai.echo", "x", buf, sizeof buf),
	    MIRAI_EHOOK);
	assert_non_null(strstr(buf, "hook mismatch"));
	mirai_reset("c-only");

	/* Hook on the server only. */
	unsetenv("TEST_HOOK_NAME");
	set("s-only", NULL, 1);
	assert_int_equal(h_call("s-only", "mirai.echo", "x", buf, sizeof buf),
	    MIRAI_EHOOK);
	assert_non_null(strstr(buf, "xor-v1"));
	mirai_reset("s-only");

	/* Different hooks. */
	setenv("TEST_HOOK_NAME", "xor-v1", 1);
	set("differ", &hook_v2, 1);
	assert_int_equal(h_call("differ", "mirai.echo", "x", buf, sizeof buf),
	    MIRAI_EHOOK);
	assert_non_null(strstr(buf, "xor-v1"));
	mirai_reset("differ");
	unsetenv("TEST_HOOK_NAME");
}

static void
test_bad_hook_settings(void **state)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_hook nameless  = {NULL, xor_hook, xor_hook, NULL, NULL};
	mirai_errmsg err     = {{0}};

	(void) state;
	d.n          = 1;
	d.dispatcher = MIRAI_DISPATCHER_OFF;
	d.hook       = &nameless;
	assert_int_equal(mirai_daemons(&d, &err), MIRAI_EINVAL);
	assert_non_null(strstr(err.text, "hook"));
}

static int
reset_all(void **state)
{
	(void) state;
	h_cleanup();
	mirai_reset("same");
	mirai_reset("c-only");
	mirai_reset("s-only");
	mirai_reset("differ");
	mirai_reset("d-same");
	mirai_reset("d-differ");
	return 0;
}

static int
teardown(void **state)
{
	(void) state;
	h_cleanup();
	mirai_shutdown();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_same_hook, reset_all),
	    cmocka_unit_test_teardown(test_mismatches, reset_all),
	    cmocka_unit_test_teardown(test_bad_hook_settings, reset_all),
	    cmocka_unit_test_teardown(test_dispatcher_logs, reset_all),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
