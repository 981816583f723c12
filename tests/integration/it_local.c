/*
 * it_local: local daemons without a dispatcher, end to end with real
 * mirai-server processes (and, for their options, with a dispatcher
 * process).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define OFF MIRAI_DISPATCHER_OFF

static int
setup(void **state)
{
	(void) state;
	h_init();
	return 0;
}

static void
test_status_and_reset(void **state)
{
	mirai_status *st;
	int pids[2];

	(void) state;
	h_daemons(NULL, 2, OFF);
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	assert_int_equal(st->set, 1);
	assert_int_equal(st->dispatcher, 0);
	assert_int_equal(st->connections, 2);
	assert_int_equal(st->daemons, 2);
	assert_int_equal(st->nrows, 2);
	/* Each local server has a link, and a URL, of its own. */
	assert_string_not_equal(st->rows[0].url, st->rows[1].url);
	assert_int_not_equal(st->rows[0].pid, st->rows[1].pid);
	pids[0] = st->rows[0].pid;
	pids[1] = st->rows[1].pid;
	assert_true(pids[0] > 0 && pids[1] > 0);
	mirai_status_free(st);

	assert_int_equal(mirai_reset(NULL), 0);
	assert_true(h_gone(pids[0], 5000));
	assert_true(h_gone(pids[1], 5000));
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	assert_int_equal(st->set, 0);
	assert_int_equal(st->connections, 0);
	mirai_status_free(st);
}

static void
test_echo_sizes(void **state)
{
	static const size_t sizes[] = {0, 1, 63, 4096, 65535, 65536, 65537,
	    (1u << 20) + 1, 3u << 20};
	mirai *ms[sizeof sizes / sizeof sizes[0]];
	unsigned char *buf = malloc(3u << 20);

	(void) state;
	for (size_t i = 0; i < (3u << 20); i++) {
		buf[i] = (unsigned char) (i * 7 + 3);
	}
	h_daemons(NULL, 2, OFF);
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		assert_int_equal(
		    mirai_call(NULL, "mirai.echo", buf, sizes[i], &ms[i]), 0);
	}
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t len;
		const void *d;
		assert_int_equal(mirai_wait(ms[i]), 0);
		d = mirai_data(ms[i], &len);
		assert_non_null(d);
		assert_int_equal(len, sizes[i]);
		assert_memory_equal(d, buf, sizes[i] > 0 ? sizes[i] : 0);
		mirai_free(ms[i]);
	}
	free(buf);
	mirai_reset(NULL);
}

static void
test_builtins(void **state)
{
	char buf[4096];
	mirai *m;
	mirai_exec_result xr;
	const char *cmd = "printf out; printf err >&2; exit 7";
	size_t len;
	const void *d;

	(void) state;
	h_daemons(NULL, 1, OFF);
	assert_int_equal(h_call(NULL, "mirai.info", NULL, buf, sizeof buf), 0);
	assert_non_null(strstr(buf, "\"pid\":"));
	assert_non_null(strstr(buf, "\"version\":\"" MIRAI_VERSION_STRING "\""));
	assert_non_null(strstr(buf, "mirai.exec"));

	assert_int_equal(mirai_call(NULL, "mirai.exec", cmd, strlen(cmd), &m), 0);
	assert_int_equal(mirai_wait(m), 0);
	d = mirai_data(m, &len);
	assert_int_equal(mirai_exec_parse(d, len, &xr), 0);
	assert_int_equal(xr.status, 7);
	assert_int_equal(xr.out_len, 3);
	assert_memory_equal(xr.out, "out", 3);
	assert_int_equal(xr.err_len, 3);
	assert_memory_equal(xr.err, "err", 3);
	mirai_free(m);

	/* A signal shows as 128 + its number. */
	cmd = "kill -TERM $$";
	assert_int_equal(mirai_call(NULL, "mirai.exec", cmd, strlen(cmd), &m), 0);
	assert_int_equal(mirai_wait(m), 0);
	d = mirai_data(m, &len);
	assert_int_equal(mirai_exec_parse(d, len, &xr), 0);
	assert_int_equal(xr.status, 128 + SIGTERM);
	mirai_free(m);

	assert_int_equal(h_call(NULL, "mirai.sleep", "20", buf, sizeof buf), 0);
	assert_string_equal(buf, "20");
	assert_int_equal(h_call(NULL, "mirai.sleep", "soon", buf, sizeof buf),
	    MIRAI_ETASK);
	assert_non_null(strstr(buf, "not a number"));

	assert_int_equal(h_call(NULL, "no.such.fn", "x", buf, sizeof buf),
	    MIRAI_ENOFUNC);
	assert_non_null(strstr(buf, "no.such.fn"));
	mirai_reset(NULL);
}

static void
test_plugin_functions(void **state)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_server_opts so = MIRAI_SERVER_OPTS_INIT;
	const char *plugins[1];
	char buf[256];

	(void) state;
	plugins[0]         = h_plugin("testplug");
	d.n                = 1;
	d.dispatcher       = OFF;
	so.plugins   = plugins;
	so.nplugins  = 1;
	d.server = &so;
	assert_int_equal(mirai_daemons(&d, NULL), 0);
	assert_int_equal(h_call(NULL, "test.upper", "abc", buf, sizeof buf), 0);
	assert_string_equal(buf, "ABC");
	assert_int_equal(h_call(NULL, "test.fail", "why", buf, sizeof buf),
	    MIRAI_ETASK);
	assert_string_equal(buf, "deliberate failure: why");
	mirai_reset(NULL);
}

static void
test_timeout_cancels(void **state)
{
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
	int64_t t0;
	mirai *m;
	char buf[64];

	(void) state;
	h_daemons(NULL, 1, OFF);
	o.timeout_ms = 100;
	t0           = h_now_ms();
	assert_int_equal(mirai_call(&o, "mirai.sleep", "10000", 5, &m), 0);
	assert_int_equal(mirai_wait(m), MIRAI_ETIMEDOUT);
	assert_int_equal(mirai_error(m), 5);
	assert_true(h_now_ms() - t0 < 2000);
	assert_string_equal(mirai_errortext(m), "timed out");
	mirai_free(m);
	/* The timed-out task was cancelled on the server, which is free
	 * again long before its 10 s were up. */
	t0 = h_now_ms();
	assert_int_equal(h_call(NULL, "mirai.echo", "next", buf, sizeof buf), 0);
	assert_true(h_now_ms() - t0 < 3000);
	mirai_reset(NULL);
}

static void
test_server_dies_mid_task(void **state)
{
	mirai *m;
	int pid;

	(void) state;
	h_daemons(NULL, 1, OFF);
	pid = h_server_pid(NULL);
	assert_true(pid > 0);
	assert_int_equal(mirai_call(NULL, "mirai.sleep", "10000", 5, &m), 0);
	usleep(200000);
	kill(pid, SIGKILL);
	assert_int_equal(mirai_wait_for(m, 5000), MIRAI_ECONNRESET);
	assert_int_equal(mirai_error(m), 19);
	assert_non_null(strstr(mirai_errortext(m), "lost"));
	mirai_free(m);
	assert_true(h_gone(pid, 5000));
	/* The only local server is gone: new tasks fail at once, clearly. */
	assert_int_equal(mirai_call(NULL, "mirai.echo", "x", 1, &m), 0);
	assert_int_equal(mirai_wait_for(m, 5000), MIRAI_ECLOSED);
	assert_non_null(strstr(mirai_errortext(m), "reset"));
	mirai_free(m);
	mirai_reset(NULL);
}

static void
test_reset_with_pending(void **state)
{
	enum { N = 50 };
	mirai *ms[N];

	(void) state;
	h_daemons(NULL, 2, OFF);
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_call(NULL, "mirai.sleep", "100", 3, &ms[i]), 0);
	}
	assert_int_equal(mirai_reset(NULL), 0);
	for (int i = 0; i < N; i++) {
		/* Every one resolves, none hangs. */
		assert_int_equal(mirai_wait_for(ms[i], 5000), MIRAI_ECLOSED);
		mirai_free(ms[i]);
	}
}

static void
test_set_twice(void **state)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};

	(void) state;
	h_daemons("twice", 1, OFF);
	d.profile    = "twice";
	d.n          = 2;
	d.dispatcher = OFF;
	assert_int_equal(mirai_daemons(&d, &err), MIRAI_ESET);
	assert_non_null(strstr(err.text, "reset"));
	assert_non_null(strstr(err.text, "twice"));
	mirai_reset("twice");
	/* After a reset the new settings take. */
	assert_int_equal(mirai_daemons(&d, &err), 0);
	assert_int_equal(h_wait_connections("twice", 2, 5000), 2);
	mirai_reset("twice");
}

static void
test_bad_settings(void **state)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};

	(void) state;
	assert_int_equal(mirai_daemons(NULL, &err), MIRAI_EINVAL);
	d.n = 0;
	assert_int_equal(mirai_daemons(&d, &err), MIRAI_EINVAL);
	d.n = -1;
	assert_int_equal(mirai_daemons(&d, &err), MIRAI_EINVAL);
	d.n          = 2;
	d.url        = "tcp://127.0.0.1:0";
	d.dispatcher = OFF;
	assert_int_equal(mirai_daemons(&d, &err), MIRAI_EINVAL);
	assert_non_null(strstr(err.text, "n must be 0"));
	d.n   = 0;
	d.url = "bogus://x";
	assert_int_not_equal(mirai_daemons(&d, &err), 0);
	assert_non_null(strstr(err.text, "bogus://x"));
}

static void
test_profiles_independent(void **state)
{
	int a, b;

	(void) state;
	h_daemons("a", 1, OFF);
	h_daemons("b", 1, OFF);
	a = h_server_pid("a");
	b = h_server_pid("b");
	assert_true(a > 0 && b > 0);
	assert_int_not_equal(a, b);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(h_server_pid("a"), a);
		assert_int_equal(h_server_pid("b"), b);
	}
	mirai_reset("a");
	assert_true(h_gone(a, 5000));
	/* b is untouched by a's reset. */
	assert_int_equal(h_server_pid("b"), b);
	mirai_reset("b");
	assert_true(h_gone(b, 5000));
}

static void
test_even_spread(void **state)
{
	enum { N = 200 };
	mirai *ms[N];
	mirai_status *st;

	(void) state;
	h_daemons(NULL, 2, OFF);
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_call(NULL, "mirai.echo", "x", 1, &ms[i]), 0);
	}
	assert_int_equal(mirai_wait_all(ms, N, 10000), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_error(ms[i]), 0);
		mirai_free(ms[i]);
	}
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	assert_int_equal(st->nrows, 2);
	assert_int_equal(st->rows[0].complete + st->rows[1].complete, N);
	/* Both take a fair share; the one that finishes faster may take
	 * more, as the least loaded gets the next task. */
	assert_true(st->rows[0].assigned >= N / 4);
	assert_true(st->rows[1].assigned >= N / 4);
	assert_int_equal(st->completed, N);
	mirai_status_free(st);
	mirai_reset(NULL);
}

typedef struct thr_arg {
	int id;
	atomic_int *bad;
} thr_arg;

static void *
submitter(void *arg)
{
	thr_arg *t = arg;
	enum { N = 300 };
	mirai *ms[N];
	char msg[N][32];

	for (int i = 0; i < N; i++) {
		snprintf(msg[i], sizeof msg[i], "t%d-%d", t->id, i);
		if (mirai_call(NULL, "mirai.echo", msg[i], strlen(msg[i]), &ms[i]) != 0) {
			atomic_fetch_add(t->bad, 1);
			ms[i] = NULL;
		}
	}
	for (int i = 0; i < N; i++) {
		size_t len;
		const char *d;
		if (ms[i] == NULL) {
			continue;
		}
		if (mirai_wait(ms[i]) != 0 ||
		    (d = mirai_data(ms[i], &len)) == NULL ||
		    len != strlen(msg[i]) || memcmp(d, msg[i], len) != 0) {
			atomic_fetch_add(t->bad, 1);
		}
		mirai_free(ms[i]);
	}
	return NULL;
}

static void
test_threads(void **state)
{
	pthread_t th[4];
	thr_arg args[4];
	atomic_int bad = 0;

	(void) state;
	h_daemons(NULL, 2, OFF);
	for (int i = 0; i < 4; i++) {
		args[i].id  = i;
		args[i].bad = &bad;
		pthread_create(&th[i], NULL, submitter, &args[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
	}
	assert_int_equal(atomic_load(&bad), 0);
	mirai_reset(NULL);
}

typedef struct cb_state {
	atomic_int calls;
	atomic_int chained_ok;
	mirai *chained;
} cb_state;

static void
on_done(mirai *m, void *arg)
{
	cb_state *s = arg;

	atomic_fetch_add(&s->calls, 1);
	/* A callback may submit more work (but not wait). */
	if (mirai_error(m) == 0 &&
	    mirai_call(NULL, "mirai.echo", "chain", 5, &s->chained) == 0) {
		atomic_store(&s->chained_ok, 1);
	}
}

static void
test_waits_and_callback(void **state)
{
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
	cb_state cs       = {0};
	mirai *ms[3];
	size_t idx = 99;

	(void) state;
	h_daemons(NULL, 2, OFF);
	assert_int_equal(mirai_call(NULL, "mirai.sleep", "3000", 4, &ms[0]), 0);
	assert_int_equal(mirai_call(NULL, "mirai.sleep", "50", 2, &ms[1]), 0);
	assert_int_equal(mirai_resolved(ms[0]), 0);
	assert_int_equal(mirai_error(ms[0]), MIRAI_EBUSY);
	assert_null(mirai_data(ms[0], NULL));
	assert_string_equal(mirai_errortext(ms[0]), "");
	assert_int_equal(mirai_wait_for(ms[0], 10), MIRAI_EPENDING);
	assert_int_equal(mirai_wait_any(ms, 2, 5000, &idx), 0);
	assert_int_equal(idx, 1);
	assert_int_equal(mirai_wait_all(ms, 2, 20), MIRAI_EPENDING);

	o.done     = on_done;
	o.done_arg = &cs;
	assert_int_equal(mirai_call(&o, "mirai.echo", "cb", 2, &ms[2]), 0);
	assert_int_equal(mirai_wait(ms[2]), 0);
	/* The callback ran once, before or just after the wait returned. */
	for (int i = 0; i < 200 && atomic_load(&cs.chained_ok) == 0; i++) {
		usleep(5000);
	}
	assert_int_equal(atomic_load(&cs.calls), 1);
	assert_int_equal(atomic_load(&cs.chained_ok), 1);
	assert_int_equal(mirai_wait(cs.chained), 0);
	mirai_free(cs.chained);
	for (int i = 0; i < 3; i++) {
		mirai_free(ms[i]);
	}
	mirai_reset(NULL);
}

static void
test_free_unresolved(void **state)
{
	mirai *m;

	(void) state;
	h_daemons(NULL, 1, OFF);
	assert_int_equal(mirai_call(NULL, "mirai.sleep", "100", 3, &m), 0);
	mirai_free(m);
	/* The task still ran and the server serves the next one. */
	assert_int_equal(h_call(NULL, "mirai.echo", "after", NULL, 0), 0);
	mirai_reset(NULL);
}

static void
test_invalid_calls(void **state)
{
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
	mirai *m          = NULL;
	char fn[70000];

	(void) state;
	assert_int_equal(mirai_call(NULL, NULL, "x", 1, &m), MIRAI_EINVAL);
	assert_int_equal(mirai_call(NULL, "", "x", 1, &m), MIRAI_EINVAL);
	assert_int_equal(mirai_call(NULL, "mirai.echo", NULL, 1, &m), MIRAI_EINVAL);
	assert_int_equal(mirai_call(NULL, "mirai.echo", "x", 1, NULL), MIRAI_EINVAL);
	o.timeout_ms = -2; /* -1 is MIRAI_FOREVER */
	assert_int_equal(mirai_call(&o, "mirai.echo", "x", 1, &m), MIRAI_EINVAL);
	memset(fn, 'f', sizeof fn - 1);
	fn[sizeof fn - 1] = '\0';
	assert_int_equal(mirai_call(NULL, fn, "x", 1, &m), MIRAI_EINVAL);
	assert_null(m);
	assert_int_equal(mirai_wait(NULL), MIRAI_EINVAL);
	assert_int_equal(mirai_resolved(NULL), 0);
	mirai_free(NULL);
	mirai_status_free(NULL);
	assert_int_equal(mirai_status_get(NULL, NULL), MIRAI_EINVAL);
	assert_int_equal(mirai_reset("never-set"), 0);
}

static void
test_message_limit(void **state)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_server_opts so = MIRAI_SERVER_OPTS_INIT;
	char *big            = calloc(1, 200000);
	char buf[256];
	mirai *m;

	(void) state;
	d.n              = 1;
	d.dispatcher     = OFF;
	so.max_msg = 100000;
	d.server = &so;
	assert_int_equal(mirai_daemons(&d, NULL), 0);
	assert_int_equal(mirai_call(NULL, "mirai.echo", big, 200000, &m),
	    MIRAI_EMSGSIZE);
	/* A result over the limit is an error value, not a dropped link. */
	assert_int_equal(h_call(NULL, "mirai.exec", "head -c 150000 /dev/zero",
	                     buf, sizeof buf),
	    MIRAI_ETASK);
	assert_non_null(strstr(buf, "limit"));
	assert_int_equal(h_call(NULL, "mirai.echo", "still fine", NULL, 0), 0);
	free(big);
	mirai_reset(NULL);
}

/* After each test, whatever it left set: a failed assertion must not
 * cascade into the next test. */
static int
reset_all(void **state)
{
	(void) state;
	h_cleanup();
	mirai_reset(NULL);
	mirai_reset("twice");
	mirai_reset("a");
	mirai_reset("b");
	return 0;
}

/* The command line of process pid, its arguments joined by spaces. */
static void
cmdline_of(int pid, char *buf, size_t len)
{
	char path[64];
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
	buf[0] = '\0';
	if ((f = fopen(path, "r")) != NULL) {
		n = fread(buf, 1, len - 1, f);
		fclose(f);
	}
	for (size_t i = 0; i < n; i++) {
		buf[i] = buf[i] == '\0' ? ' ' : buf[i];
	}
	buf[n] = '\0';
}

/* Local servers of bind_count 2 are started with --bind-count 2; without
 * a dispatcher the client starts them 2 units apart. */
static void
bind_count_run(int dispatcher)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_server_opts so = MIRAI_SERVER_OPTS_INIT;
	mirai_errmsg err     = {{0}};
	mirai_status *st     = NULL;
	char cmd[2][1024];
	int64_t t0;
	int on = 0;

	so.bind_to     = "core";
	so.bind_count  = 2;
	d.n            = 2;
	d.dispatcher   = dispatcher;
	d.server       = &so;
	if (mirai_daemons(&d, &err) != 0) {
		fail_msg("daemons: %s", err.text);
	}
	t0 = h_now_ms();
	while (on < 2 && h_now_ms() - t0 < 10000) {
		mirai_status_free(st);
		st = NULL;
		assert_int_equal(mirai_status_get(NULL, &st), 0);
		on = 0;
		for (size_t i = 0; i < st->nrows; i++) {
			on += st->rows[i].online && st->rows[i].pid > 0;
		}
		if (on < 2) {
			usleep(20000);
		}
	}
	assert_int_equal(on, 2);
	assert_int_equal(st->nrows, 2);
	for (int i = 0; i < 2; i++) {
		cmdline_of(st->rows[i].pid, cmd[i], sizeof cmd[i]);
		assert_non_null(strstr(cmd[i], " --bind-to core "));
		assert_non_null(strstr(cmd[i], " --bind-count 2"));
	}
	if (dispatcher == OFF) {
		int a = strstr(cmd[0], "--bind-index 0 ") != NULL;
		int b = strstr(cmd[1], "--bind-index 0 ") != NULL;
		assert_true(a != b);
		assert_non_null(strstr(a ? cmd[1] : cmd[0], "--bind-index 2 "));
	}
	mirai_status_free(st);
	assert_int_equal(mirai_reset(NULL), 0);
}

static void
test_bind_count(void **state)
{
	(void) state;
	bind_count_run(OFF);
	bind_count_run(MIRAI_DISPATCHER_PROCESS);
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
	    cmocka_unit_test_teardown(test_status_and_reset, reset_all),
	    cmocka_unit_test_teardown(test_echo_sizes, reset_all),
	    cmocka_unit_test_teardown(test_builtins, reset_all),
	    cmocka_unit_test_teardown(test_plugin_functions, reset_all),
	    cmocka_unit_test_teardown(test_timeout_cancels, reset_all),
	    cmocka_unit_test_teardown(test_server_dies_mid_task, reset_all),
	    cmocka_unit_test_teardown(test_reset_with_pending, reset_all),
	    cmocka_unit_test_teardown(test_set_twice, reset_all),
	    cmocka_unit_test_teardown(test_bad_settings, reset_all),
	    cmocka_unit_test_teardown(test_profiles_independent, reset_all),
	    cmocka_unit_test_teardown(test_even_spread, reset_all),
	    cmocka_unit_test_teardown(test_threads, reset_all),
	    cmocka_unit_test_teardown(test_waits_and_callback, reset_all),
	    cmocka_unit_test_teardown(test_free_unresolved, reset_all),
	    cmocka_unit_test_teardown(test_invalid_calls, reset_all),
	    cmocka_unit_test_teardown(test_message_limit, reset_all),
	    cmocka_unit_test_teardown(test_bind_count, reset_all),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
