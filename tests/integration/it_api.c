/*
 * it_api: the conventions of mirai.h that hold across calls: what a
 * timeout means (MIRAI_FOREVER, 0 for the default, negative values
 * rejected), a wait giving up (MIRAI_EPENDING) against a task timing out
 * (MIRAI_ETIMEDOUT), mirai_server_run()'s reason, the runtime version, the
 * designated INIT macros, and error messages filled on every failure.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The INIT macros must leave no field out, whatever fields come later. */
#if defined(__GNUC__)
#pragma GCC diagnostic error "-Wmissing-field-initializers"
#endif

#define OFF MIRAI_DISPATCHER_OFF

static int
setup(void **state)
{
	(void) state;
	h_init();
	return 0;
}

static int
teardown(void **state)
{
	(void) state;
	mirai_reset(NULL);
	h_cleanup();
	return 0;
}

static void
test_version(void **state)
{
	int major = -1, minor = -1, patch = -1;

	(void) state;
	assert_string_equal(mirai_version(&major, &minor, &patch),
	    MIRAI_VERSION_STRING);
	assert_int_equal(major, MIRAI_VERSION_MAJOR);
	assert_int_equal(minor, MIRAI_VERSION_MINOR);
	assert_int_equal(patch, MIRAI_VERSION_PATCH);
	assert_string_equal(mirai_version(NULL, NULL, NULL), MIRAI_VERSION_STRING);
}

static void
test_init_macros(void **state)
{
	mirai_server_opts so     = MIRAI_SERVER_OPTS_INIT;
	mirai_daemons_opts d     = MIRAI_DAEMONS_OPTS_INIT;
	mirai_call_opts c        = MIRAI_CALL_OPTS_INIT;
	mirai_dispatcher_opts dp = MIRAI_DISPATCHER_OPTS_INIT;
	mirai_launch_opts l      = MIRAI_LAUNCH_OPTS_INIT;

	(void) state;
	/* Every field is 0, so every one means its default. */
	assert_int_equal(so.idle_ms, 0);
	assert_null(so.tls_key);
	assert_null(d.server);
	assert_null(d.tls_ca);
	assert_int_equal(d.attach_timeout_ms, 0);
	assert_int_equal(c.timeout_ms, 0);
	assert_int_equal(c.retries, 0);
	assert_null(dp.server);
	assert_null(dp.tls_ca);
	assert_null(l.server);
	assert_int_equal(l.oversubscribe, 0);
	assert_int_equal(MIRAI_FOREVER, -1);
	assert_string_equal(mirai_errname(MIRAI_EPENDING), "EPENDING");
	assert_string_equal(mirai_strerror(MIRAI_EPENDING),
	    "still pending: the wait gave up");
}

/* A task timing out resolves with ETIMEDOUT; a wait giving up returns
 * EPENDING and leaves the mirai pending. */
static void
test_pending_vs_timedout(void **state)
{
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
	mirai *t, *slow;
	size_t idx = 99;

	(void) state;
	h_daemons(NULL, 2, OFF);
	o.timeout_ms = 100;
	assert_int_equal(mirai_call(&o, "mirai.sleep", "5000", 4, &t), 0);
	assert_int_equal(mirai_call(NULL, "mirai.sleep", "5000", 4, &slow), 0);

	assert_int_equal(mirai_wait_for(slow, 20), MIRAI_EPENDING);
	assert_int_equal(mirai_wait_all(&slow, 1, 20), MIRAI_EPENDING);
	assert_int_equal(mirai_wait_any(&slow, 1, 20, &idx), MIRAI_EPENDING);
	assert_int_equal(idx, 99);
	assert_int_equal(mirai_resolved(slow), 0);
	assert_int_equal(mirai_error(slow), MIRAI_EBUSY);

	assert_int_equal(mirai_wait_for(t, 10000), MIRAI_ETIMEDOUT);
	assert_int_equal(mirai_error(t), MIRAI_ETIMEDOUT);
	assert_int_equal(mirai_cancel(slow), 0);
	assert_int_equal(mirai_wait(slow), MIRAI_ECANCELED);
	mirai_free(t);
	mirai_free(slow);
}

/* 0 takes the default, which for the waits and a task is no limit: never
 * a poll.  MIRAI_FOREVER is no limit too. */
static void
test_zero_and_forever(void **state)
{
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
	mirai *m[2];
	size_t idx = 99;

	(void) state;
	h_daemons(NULL, 2, OFF);
	o.timeout_ms = MIRAI_FOREVER;
	assert_int_equal(mirai_call(&o, "mirai.sleep", "200", 3, &m[0]), 0);
	o.timeout_ms = 0;
	assert_int_equal(mirai_call(&o, "mirai.sleep", "300", 3, &m[1]), 0);
	assert_int_equal(mirai_wait_for(m[0], 0), 0);
	assert_int_equal(mirai_wait_any(&m[1], 1, 0, &idx), 0);
	assert_int_equal(idx, 0);
	assert_int_equal(mirai_wait_all(m, 2, 0), 0);
	mirai_free(m[0]);
	mirai_free(m[1]);

	assert_int_equal(mirai_call(NULL, "mirai.sleep", "200", 3, &m[0]), 0);
	assert_int_equal(mirai_wait_for(m[0], MIRAI_FOREVER), 0);
	assert_int_equal(mirai_wait_all(m, 1, MIRAI_FOREVER), 0);
	assert_int_equal(mirai_wait_any(m, 1, MIRAI_FOREVER, NULL), 0);
	mirai_free(m[0]);
}

static void
test_negative_timeouts(void **state)
{
	mirai_call_opts o        = MIRAI_CALL_OPTS_INIT;
	mirai_daemons_opts d     = MIRAI_DAEMONS_OPTS_INIT;
	mirai_server_opts so     = MIRAI_SERVER_OPTS_INIT;
	mirai_launch_opts lo     = MIRAI_LAUNCH_OPTS_INIT;
	mirai_errmsg err         = {{0}};
	mirai_hostlist *hosts    = NULL;
	mirai_launch *l          = NULL;
	mirai_server *srv        = NULL;
	mirai *m                 = NULL;

	(void) state;
	o.timeout_ms = -2;
	assert_int_equal(mirai_call(&o, "mirai.echo", "x", 1, &m), MIRAI_EINVAL);
	assert_null(m);

	h_daemons(NULL, 1, OFF);
	assert_int_equal(mirai_call(NULL, "mirai.echo", "x", 1, &m), 0);
	assert_int_equal(mirai_wait_for(m, -2), MIRAI_EINVAL);
	assert_int_equal(mirai_wait_all(&m, 1, -1000), MIRAI_EINVAL);
	assert_int_equal(mirai_wait_any(&m, 1, -2, NULL), MIRAI_EINVAL);
	assert_int_equal(mirai_wait(m), 0);
	mirai_free(m);

	assert_int_equal(mirai_attach("neg", "tcp://127.0.0.1:1", -2, &err),
	    MIRAI_EINVAL);
	assert_true(err.text[0] != '\0');
	d.profile           = "neg";
	d.attach            = 1;
	d.url               = "tcp://127.0.0.1:1";
	d.attach_timeout_ms = -5;
	assert_int_equal(mirai_daemons(&d, NULL), MIRAI_EINVAL);

	so.idle_ms = -2;
	assert_int_equal(mirai_server_create(&srv, &so, NULL), MIRAI_EINVAL);
	so.idle_ms     = MIRAI_FOREVER;
	so.walltime_ms = MIRAI_FOREVER;
	assert_int_equal(mirai_server_create(&srv, &so, NULL), 0);
	mirai_server_destroy(srv);

	assert_int_equal(mirai_hosts_from_arg("localhost", &hosts, NULL), 0);
	lo.hosts      = hosts;
	lo.timeout_ms = -2;
	assert_int_equal(mirai_launch_create(&l, &lo, &err), MIRAI_EINVAL);
	lo.timeout_ms = MIRAI_FOREVER;
	assert_int_equal(mirai_launch_create(&l, &lo, &err), 0);
	mirai_launch_destroy(l);
	mirai_hostlist_free(hosts);
}

typedef struct run_arg {
	mirai_server *srv;
	const char *url;
	int rv, reason;
} run_arg;

static void *
run_server(void *arg)
{
	run_arg *a = arg;

	a->rv = mirai_server_run(a->srv, a->url, &a->reason, NULL);
	return NULL;
}

/* Run a server of this process on the profile's URL until it stops by
 * itself; returns its reason. */
static int
run_until_stop(const char *url, const mirai_server_opts *so, int tasks)
{
	run_arg a = {NULL, url, -1, -1};
	pthread_t th;
	char buf[64];

	assert_int_equal(mirai_server_create(&a.srv, so, NULL), 0);
	assert_int_equal(pthread_create(&th, NULL, run_server, &a), 0);
	for (int i = 0; i < tasks; i++) {
		assert_int_equal(h_call(NULL, "mirai.echo", "hi", buf, sizeof buf), 0);
	}
	pthread_join(th, NULL);
	mirai_server_destroy(a.srv);
	assert_int_equal(a.rv, 0);
	return a.reason;
}

static void
test_server_run_reason(void **state)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_server_opts so = MIRAI_SERVER_OPTS_INIT;
	mirai_errmsg err     = {{0}};
	mirai_status *st;
	mirai_server *srv;
	char url[256];
	int reason = 99;

	(void) state;
	d.dispatcher = OFF;
	d.url        = "tcp://127.0.0.1:0";
	assert_int_equal(mirai_daemons(&d, &err), 0);
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	snprintf(url, sizeof url, "%s", st->url);
	mirai_status_free(st);

	so.output    = 1; /* keep this test's own output */
	so.max_tasks = 1;
	assert_int_equal(run_until_stop(url, &so, 1), MIRAI_EXIT_MAXTASKS);
	so.max_tasks = 0;
	so.idle_ms   = 100;
	assert_int_equal(run_until_stop(url, &so, 0), MIRAI_EXIT_IDLE);

	/* A failure is an error value with a message, not an exit code. */
	so.idle_ms   = 0;
	so.dial_once = 1;
	assert_int_equal(mirai_server_create(&srv, &so, NULL), 0);
	err.text[0] = '\0';
	int rv = mirai_server_run(srv, "tcp://127.0.0.1:1", &reason, &err);
	assert_true(rv != 0);
	assert_true(rv != MIRAI_EXIT_ERROR);
	assert_int_equal(reason, 99);
	assert_true(err.text[0] != '\0');
	mirai_server_destroy(srv);
}

/* Every failure fills the message, also where the code had only a
 * number to give. */
static void
test_errmsg_filled(void **state)
{
	mirai_server_opts so     = MIRAI_SERVER_OPTS_INIT;
	mirai_dispatcher_opts dp = MIRAI_DISPATCHER_OPTS_INIT;
	const char *bad[1]       = {"/nonexistent/plugin.so"};
	mirai_hostlist *hl       = NULL;
	mirai_dispatcher *dd     = NULL;
	mirai_launch *l          = NULL;
	mirai_server *srv        = NULL;
	mirai_errmsg err;
	int reason = 0;

	(void) state;
#define FAILS(call)                                                  \
	do {                                                         \
		err.text[0] = '\0';                                  \
		assert_int_not_equal((call), 0);                     \
		if (err.text[0] == '\0') {                           \
			fail_msg("no message from %s", #call);       \
		}                                                    \
	} while (0)
	FAILS(mirai_server_create(NULL, NULL, &err));
	so.plugins  = bad;
	so.nplugins = 1;
	FAILS(mirai_server_create(&srv, &so, &err));
	assert_non_null(strstr(err.text, "plugin"));
	assert_null(srv);
	FAILS(mirai_server_run(NULL, "tcp://127.0.0.1:1", &reason, &err));
	FAILS(mirai_daemons(NULL, &err));
	FAILS(mirai_attach(NULL, NULL, -7, &err));
	FAILS(mirai_saisei("never-set", 0, 0, NULL, &err));
	FAILS(mirai_dispatcher_create(NULL, &dp, &err));
	FAILS(mirai_dispatcher_create(&dd, NULL, &err));
	FAILS(mirai_launch_create(&l, NULL, &err));
	FAILS(mirai_hosts_parse(NULL, 0, 0, NULL, &hl, &err));
	FAILS(mirai_hosts_from_arg(NULL, &hl, &err));
	FAILS(mirai_hosts_load("/nonexistent/hosts", 0, &hl, &err));
#undef FAILS

	/* A success leaves the text alone. */
	snprintf(err.text, sizeof err.text, "untouched");
	assert_int_equal(mirai_hosts_from_arg("a,b:2", &hl, &err), 0);
	assert_string_equal(err.text, "untouched");
	mirai_hostlist_free(hl);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_version),
	    cmocka_unit_test(test_init_macros),
	    cmocka_unit_test_teardown(test_pending_vs_timedout, teardown),
	    cmocka_unit_test_teardown(test_zero_and_forever, teardown),
	    cmocka_unit_test_teardown(test_negative_timeouts, teardown),
	    cmocka_unit_test_teardown(test_server_run_reason, teardown),
	    cmocka_unit_test(test_errmsg_filled),
	};
	int rv = cmocka_run_group_tests(tests, setup, NULL);

	mirai_shutdown();
	return rv;
}
