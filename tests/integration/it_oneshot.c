/*
 * it_oneshot: with no daemons set, each task runs in a fresh one-shot
 * server process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static int
setup(void **state)
{
	(void) state;
	h_init();
	return 0;
}

static void
test_fresh_process_per_task(void **state)
{
	int pids[3];
	mirai_status *st;

	(void) state;
	for (int i = 0; i < 3; i++) {
		pids[i] = h_server_pid("solo");
		assert_true(pids[i] > 0);
		/* A one-shot server is gone once its task is done. */
		assert_true(h_gone(pids[i], 5000));
	}
	assert_int_not_equal(pids[0], pids[1]);
	assert_int_not_equal(pids[1], pids[2]);
	assert_int_not_equal(pids[0], pids[2]);
	assert_int_equal(mirai_status_get("solo", &st), 0);
	assert_int_equal(st->set, 0);
	mirai_status_free(st);
}

/*
 * One-shot tasks run at once up to the limit (MIRAI_ONESHOT_MAX, read when
 * a profile is first used; default the cores), each resolving as it ends.
 */
static void
test_concurrent_oneshots(void **state)
{
	enum { N = 4 };
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
	mirai *ms[N], *quick, *slow;
	int64_t t0;

	(void) state;
	setenv("MIRAI_ONESHOT_MAX", "4", 1);
	o.profile = "para";
	t0        = h_now_ms();
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_call(&o, "mirai.sleep", "1000", 4, &ms[i]), 0);
	}
	/* The calls do not wait for each other's servers. */
	assert_true(h_now_ms() - t0 < 900);
	assert_int_equal(mirai_wait_all(ms, N, 20000), 0);
	/* Together about one task's time (one after the other: 4 s). */
	assert_true(h_now_ms() - t0 < 3000);
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_error(ms[i]), 0);
		mirai_free(ms[i]);
	}
	/* A short task resolves while a long one still runs. */
	assert_int_equal(mirai_call(&o, "mirai.sleep", "3000", 4, &slow), 0);
	assert_int_equal(mirai_call(&o, "mirai.sleep", "200", 3, &quick), 0);
	assert_int_equal(mirai_wait_for(quick, 2500), 0);
	assert_int_equal(mirai_resolved(slow), 0);
	mirai_free(quick);
	assert_int_equal(mirai_wait_for(slow, 10000), 0);
	mirai_free(slow);

	/* The limit holds: one at a time here. */
	setenv("MIRAI_ONESHOT_MAX", "1", 1);
	o.profile = "serial";
	t0        = h_now_ms();
	for (int i = 0; i < 3; i++) {
		assert_int_equal(mirai_call(&o, "mirai.sleep", "300", 3, &ms[i]), 0);
	}
	assert_int_equal(mirai_wait_for(ms[0], 10000), 0);
	/* The first resolved before the others ran. */
	assert_int_equal(mirai_resolved(ms[2]), 0);
	assert_int_equal(mirai_wait_all(ms, 3, 20000), 0);
	assert_true(h_now_ms() - t0 >= 900);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(mirai_error(ms[i]), 0);
		mirai_free(ms[i]);
	}
	unsetenv("MIRAI_ONESHOT_MAX");
}

static void
test_after_reset(void **state)
{
	(void) state;
	h_daemons("back", 1, MIRAI_DISPATCHER_OFF);
	/* (reset below even if an assertion fails: see main) */
	int set_pid = h_server_pid("back");
	mirai_reset("back");
	/* Back to one-shot processes. */
	int a = h_server_pid("back");
	int b = h_server_pid("back");
	assert_true(a > 0 && b > 0);
	assert_int_not_equal(a, set_pid);
	assert_int_not_equal(a, b);
}

static void
test_server_that_cannot_start(void **state)
{
	mirai *m;
	char *old = getenv("MIRAI_SERVER") ? strdup(getenv("MIRAI_SERVER")) : NULL;

	(void) state;
	/* No such program: the call itself fails. */
	setenv("MIRAI_SERVER", "/nonexistent/mirai-server", 1);
	assert_int_equal(mirai_call(NULL, "mirai.echo", "x", 1, &m), MIRAI_ESPAWN);
	/* A program that exits at once: the task fails, it does not hang. */
	setenv("MIRAI_SERVER", "/bin/false", 1);
	assert_int_equal(mirai_call(NULL, "mirai.echo", "x", 1, &m), 0);
	assert_int_equal(mirai_wait_for(m, 10000), MIRAI_ESPAWN);
	assert_non_null(strstr(mirai_errortext(m), "before connecting"));
	mirai_free(m);
	if (old != NULL) {
		setenv("MIRAI_SERVER", old, 1);
		free(old);
	} else {
		unsetenv("MIRAI_SERVER");
	}
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
	    cmocka_unit_test(test_fresh_process_per_task),
	    cmocka_unit_test(test_concurrent_oneshots),
	    cmocka_unit_test(test_after_reset),
	    cmocka_unit_test(test_server_that_cannot_start),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
