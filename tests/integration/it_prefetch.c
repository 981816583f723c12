/*
 * it_prefetch: the dispatcher's opt-in prefetch with real servers.  With
 * the default (0) a task goes only to an idle server: a long task holds up
 * none of the short ones queued after it.  With prefetch k a server holds
 * up to k + 1 tasks (never more than its max_tasks allow); the status
 * counts them as running; a server killed while holding them has every one
 * retried or reported (none lost, none run twice without a retry); a
 * leaving server's unstarted ones go back in their order; a prefetched
 * task can be cancelled.  Tasks are mirai.exec commands that log "start
 * <task> <server pid>" to a file when they start.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

enum { MAXT = 16 };

static char logpath[256];

static int
setup(void **state)
{
	(void) state;
	h_init();
	snprintf(logpath, sizeof logpath, "%s/starts", h_tmpdir());
	return 0;
}

static int
reset_all(void **state)
{
	(void) state;
	h_cleanup();
	mirai_reset(NULL);
	unlink(logpath);
	return 0;
}

static int
teardown(void **state)
{
	(void) state;
	h_cleanup();
	mirai_shutdown();
	unlink(logpath);
	rmdir(h_tmpdir());
	return 0;
}

/* n local servers (max_tasks each, 0: no limit) behind a dispatcher in
 * mode with this prefetch. */
static void
local(int n, int mode, int prefetch, int retries, uint64_t max_tasks)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_server_opts so = MIRAI_SERVER_OPTS_INIT;
	mirai_errmsg err     = {{0}};

	so.max_tasks = max_tasks;
	d.n          = n;
	d.dispatcher = mode;
	d.prefetch   = prefetch;
	d.retries    = retries;
	d.server     = &so;
	if (mirai_daemons(&d, &err) != 0) {
		fail_msg("daemons: %s", err.text);
	}
}

/* Task i: log its start and its server, sleep, print the server. */
static mirai *
task(int i, const char *sleep_s)
{
	char cmd[512];
	mirai *m;

	snprintf(cmd, sizeof cmd, "echo start %d $PPID >> '%s'; sleep %s; "
				  "echo $PPID",
	    i, logpath, sleep_s);
	assert_int_equal(mirai_call(NULL, "mirai.exec", cmd, strlen(cmd), &m),
	    0);
	return m;
}

/* The starts logged so far: task order[k] started k-th, on pids[k];
 * returns how many. */
static int
starts(int *order, int *pids)
{
	char line[128];
	FILE *f = fopen(logpath, "r");
	int n   = 0, t, p;

	if (f == NULL) {
		return 0;
	}
	while (n < 4 * MAXT && fgets(line, sizeof line, f) != NULL) {
		if (sscanf(line, "start %d %d", &t, &p) == 2) {
			if (order != NULL) {
				order[n] = t;
			}
			if (pids != NULL) {
				pids[n] = p;
			}
			n++;
		}
	}
	fclose(f);
	return n;
}

/* How many times task i started. */
static int
started(int i)
{
	int order[4 * MAXT], n = starts(order, NULL), k = 0;

	for (int j = 0; j < n; j++) {
		k += order[j] == i;
	}
	return k;
}

/* The pid of the server that ran m (its output). */
static int
ran_on(mirai *m)
{
	mirai_exec_result xr;
	const void *d;
	size_t len;

	d = mirai_data(m, &len);
	assert_int_equal(mirai_exec_parse(d, len, &xr), 0);
	return atoi(xr.out);
}

/* Wait (bounded) until the status says running == running and, unless
 * queued is -1, queued == queued; returns the status (the caller frees
 * it). */
static mirai_status *
wait_status(uint64_t running, int queued)
{
	for (int k = 0; k < 1000; k++) {
		mirai_status *st = NULL;
		if (mirai_status_get(NULL, &st) == 0 && st->running == running &&
		    (queued < 0 || st->queued == (uint64_t) queued)) {
			return st;
		}
		mirai_status_free(st);
		usleep(10000);
	}
	fail_msg("the status never showed %llu running, %d queued",
	    (unsigned long long) running, queued);
	return NULL;
}

static mirai_status *
wait_running(uint64_t want)
{
	return wait_status(want, -1);
}

/*
 * w3 in small, both ways.  Prefetch 0: the short tasks all run on the
 * other server and are done before the long one.  Prefetch 1: the
 * second short task is held behind the long one, on its server, and runs
 * after it: the price of prefetch, and why it is not the default.
 */
static void
long_then_short(int prefetch)
{
	enum { N = 6 };
	mirai *lm, *ms[N];
	int long_pid, behind = 0;

	local(2, MIRAI_DISPATCHER_DEFAULT, prefetch, 0, 0);
	lm = task(0, "4");
	for (int k = 0; k < N; k++) {
		ms[k] = task(k + 1, "0.1");
	}
	assert_int_equal(mirai_wait_all(ms, N, 20000), 0);
	if (prefetch == 0) {
		/* N x 0.1 s on one server, before the 4 s task ends (with
		 * room for a loaded machine). */
		assert_int_equal(mirai_resolved(lm), 0);
	}
	assert_int_equal(mirai_wait(lm), 0);
	long_pid = ran_on(lm);
	for (int k = 0; k < N; k++) {
		assert_int_equal(mirai_error(ms[k]), 0);
		behind += ran_on(ms[k]) == long_pid;
		mirai_free(ms[k]);
	}
	mirai_free(lm);
	if (prefetch == 0) {
		assert_int_equal(behind, 0);
	} else {
		assert_true(behind >= 1);
	}
}

static void
test_default_is_idle_only(void **state)
{
	(void) state;
	long_then_short(0);
}

static void
test_prefetch_holds_behind_long(void **state)
{
	(void) state;
	long_then_short(1);
}

/* One server, prefetch 2: it holds 3 tasks, the status counts them as
 * running, the rest wait; all run in submission order.  In both dispatcher
 * modes (the process gets the setting on its command line). */
static void
test_holds_k_plus_1(void **state)
{
	static const int modes[] = {MIRAI_DISPATCHER_THREAD,
	    MIRAI_DISPATCHER_PROCESS};
	enum { N = 6 };

	(void) state;
	for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
		mirai *ms[N];
		mirai_status *st;
		int order[4 * MAXT];

		unlink(logpath);
		local(1, modes[mi], 2, 0, 0);
		for (int k = 0; k < N; k++) {
			ms[k] = task(k, "0.3");
		}
		st = wait_status(3, N - 3);
		assert_int_equal(st->rows[0].assigned, 3);
		mirai_status_free(st);
		assert_int_equal(mirai_wait_all(ms, N, 20000), 0);
		for (int k = 0; k < N; k++) {
			assert_int_equal(mirai_error(ms[k]), 0);
			mirai_free(ms[k]);
		}
		assert_int_equal(starts(order, NULL), N);
		for (int k = 0; k < N; k++) {
			assert_int_equal(order[k], k);
		}
		assert_int_equal(mirai_status_get(NULL, &st), 0);
		assert_int_equal(st->running, 0);
		assert_int_equal(st->rows[0].assigned, N);
		mirai_status_free(st);
		mirai_reset(NULL);
	}
}

/* A server that will run only 2 more tasks (its HELLO says so) is sent no
 * more than 2, whatever the prefetch: nothing has to be bounced. */
static void
test_max_tasks_respected(void **state)
{
	enum { N = 6 };
	mirai *ms[N];
	mirai_status *st;
	int ok = 0, pending = 0;

	(void) state;
	local(2, MIRAI_DISPATCHER_DEFAULT, 4, 0, 2);
	for (int k = 0; k < N; k++) {
		ms[k] = task(k, "0.2");
	}
	for (int k = 0; k < 300; k++) {
		assert_int_equal(mirai_status_get(NULL, &st), 0);
		assert_true(st->rows[0].assigned <= 2);
		assert_true(st->rows[1].assigned <= 2);
		ok = (int) st->completed;
		mirai_status_free(st);
		if (ok == 4) {
			break;
		}
		usleep(10000);
	}
	assert_int_equal(ok, 4);
	/* Both servers left after their 2; 2 tasks wait for a server. */
	for (int k = 0; k < 300; k++) {
		assert_int_equal(mirai_status_get(NULL, &st), 0);
		ok = !st->rows[0].online && !st->rows[1].online;
		if (ok) {
			assert_int_equal(st->rows[0].assigned, 2);
			assert_int_equal(st->rows[1].assigned, 2);
			assert_int_equal(st->queued, 2);
			assert_int_equal(st->running, 0);
		}
		mirai_status_free(st);
		if (ok) {
			break;
		}
		usleep(10000);
	}
	assert_true(ok);
	for (int k = 0; k < N; k++) {
		pending += !mirai_resolved(ms[k]);
	}
	assert_int_equal(pending, 2);
	mirai_reset(NULL);
	for (int k = 0; k < N; k++) {
		mirai_wait(ms[k]);
		mirai_free(ms[k]);
	}
	assert_int_equal(starts(NULL, NULL), 4);
}

/*
 * Two servers, prefetch 2: each holds 3 of 6 tasks.  The server of the
 * first task to start is killed while it runs it: all 3 it held are
 * retried (retries 1: every task completes, the killed one started twice,
 * the two prefetched behind it once) or reported (retries 0: those 3 fail
 * with ECONNRESET, the two prefetched ones never started).  Nothing is
 * lost and nothing runs twice without a retry.
 */
static void
killed_holding(int retries)
{
	enum { N = 6 };
	int order[4 * MAXT], pids[4 * MAXT];
	mirai *ms[N];
	mirai_status *st;
	int victim, first, failed = 0;

	unlink(logpath);
	local(2, MIRAI_DISPATCHER_DEFAULT, 2, retries, 0);
	for (int k = 0; k < N; k++) {
		ms[k] = task(k, "0.5");
	}
	st = wait_running(N);
	mirai_status_free(st);
	for (int k = 0; k < 500 && starts(NULL, NULL) == 0; k++) {
		usleep(10000);
	}
	assert_true(starts(order, pids) >= 1);
	first  = order[0];
	victim = pids[0];
	kill(victim, SIGKILL);
	assert_int_equal(mirai_wait_all(ms, N, 30000), 0);
	for (int k = 0; k < N; k++) {
		int rv = mirai_error(ms[k]);

		if (retries > 0) {
			assert_int_equal(rv, 0);
			assert_int_not_equal(ran_on(ms[k]), victim);
			assert_int_equal(started(k), k == first ? 2 : 1);
		} else if (rv != 0) {
			assert_int_equal(rv, MIRAI_ECONNRESET);
			assert_int_equal(started(k), k == first ? 1 : 0);
			failed++;
		} else {
			assert_int_equal(started(k), 1);
			assert_int_not_equal(ran_on(ms[k]), victim);
		}
		mirai_free(ms[k]);
	}
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	assert_int_equal(st->retried, retries > 0 ? 3 : 0);
	assert_int_equal(st->running, 0);
	assert_int_equal(st->queued, 0);
	mirai_status_free(st);
	if (retries == 0) {
		assert_int_equal(failed, 3);
	}
	mirai_reset(NULL);
}

static void
test_killed_holding(void **state)
{
	(void) state;
	killed_holding(1);
	killed_holding(0);
}

/* Slot i online (bounded wait). */
static void
wait_online(size_t i)
{
	for (int k = 0; k < 1000; k++) {
		mirai_status *st = NULL;
		int on = 0;
		if (mirai_status_get(NULL, &st) == 0 && i < st->nrows) {
			on = st->rows[i].online;
		}
		mirai_status_free(st);
		if (on) {
			return;
		}
		usleep(10000);
	}
	fail_msg("slot %zu never came online", i);
}

/*
 * A server that reaches its wall time after its first task leaves with 3
 * prefetched tasks unstarted: it bounces them, and they go back to the
 * head of the queue in their order, where the next server finds them.
 */
static void
test_bounce_in_order(void **state)
{
	mirai_daemons_opts d   = MIRAI_DAEMONS_OPTS_INIT;
	const char *const wt[] = {"--walltime", "2000", NULL};
	enum { N = 4 };
	int order[4 * MAXT];
	mirai_status *st;
	mirai *ms[N];
	char *url0, *url1;
	pid_t a, b;

	(void) state;
	d.url      = "ws://127.0.0.1:0";
	d.n        = 2;
	d.prefetch = 3;
	assert_int_equal(mirai_daemons(&d, NULL), 0);
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	url0 = strdup(st->rows[0].url);
	url1 = strdup(st->rows[1].url);
	mirai_status_free(st);
	a = h_spawn_server(url0, wt);
	wait_online(0);
	ms[0] = task(0, "2.5");
	for (int k = 1; k < N; k++) {
		ms[k] = task(k, "0");
	}
	st = wait_running(N);
	assert_int_equal(st->rows[0].assigned, N);
	mirai_status_free(st);
	/* It leaves after the first; the other three wait for a server. */
	assert_int_equal(mirai_wait_for(ms[0], 20000), 0);
	assert_true(h_wait_exit(a, 10000, NULL));
	st = wait_status(0, N - 1);
	mirai_status_free(st);
	assert_int_equal(starts(NULL, NULL), 1);
	b = h_spawn_server(url1, NULL);
	assert_int_equal(mirai_wait_all(ms, N, 20000), 0);
	for (int k = 0; k < N; k++) {
		assert_int_equal(mirai_error(ms[k]), 0);
		assert_int_equal(ran_on(ms[k]), k == 0 ? a : b);
		mirai_free(ms[k]);
	}
	assert_int_equal(starts(order, NULL), N);
	for (int k = 0; k < N; k++) {
		assert_int_equal(order[k], k);
	}
	mirai_reset(NULL);
	assert_true(h_wait_exit(b, 10000, NULL));
	free(url0);
	free(url1);
}

/* A prefetched task cancelled while it waits at the server never runs;
 * the server answers for it at once, out of turn, and takes another. */
static void
test_cancel_prefetched(void **state)
{
	char marker[256], cmd[512];
	mirai *hold, *victim, *after, *more;
	mirai_status *st;
	struct stat sb;

	(void) state;
	snprintf(marker, sizeof marker, "%s/never", h_tmpdir());
	unlink(marker);
	local(1, MIRAI_DISPATCHER_DEFAULT, 2, 0, 0);
	hold = task(0, "3");
	snprintf(cmd, sizeof cmd, "touch '%s'", marker);
	assert_int_equal(
	    mirai_call(NULL, "mirai.exec", cmd, strlen(cmd), &victim), 0);
	after = task(2, "0");
	more  = task(3, "0");
	st    = wait_status(3, 1);
	mirai_status_free(st);
	assert_int_equal(mirai_cancel(victim), 0);
	assert_int_equal(mirai_wait(victim), MIRAI_ECANCELED);
	/* The server's answer freed its place: the fourth task took it
	 * while the first still runs. */
	st = wait_status(3, 0);
	mirai_status_free(st);
	assert_int_equal(mirai_resolved(hold), 0);
	assert_int_equal(mirai_wait(hold), 0);
	assert_int_equal(mirai_wait(after), 0);
	assert_int_equal(mirai_wait(more), 0);
	assert_int_not_equal(stat(marker, &sb), 0);
	st = wait_running(0);
	mirai_status_free(st);
	mirai_free(hold);
	mirai_free(victim);
	mirai_free(after);
	mirai_free(more);
}

static void
test_bad_prefetch(void **state)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};

	(void) state;
	d.n        = 1;
	d.prefetch = -1;
	assert_int_equal(mirai_daemons(&d, &err), MIRAI_EINVAL);
	assert_non_null(strstr(err.text, "prefetch"));
	d.prefetch = 1025;
	assert_int_equal(mirai_daemons(&d, &err), MIRAI_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_default_is_idle_only, reset_all),
	    cmocka_unit_test_teardown(test_prefetch_holds_behind_long,
		reset_all),
	    cmocka_unit_test_teardown(test_holds_k_plus_1, reset_all),
	    cmocka_unit_test_teardown(test_max_tasks_respected, reset_all),
	    cmocka_unit_test_teardown(test_killed_holding, reset_all),
	    cmocka_unit_test_teardown(test_bounce_in_order, reset_all),
	    cmocka_unit_test_teardown(test_cancel_prefetched, reset_all),
	    cmocka_unit_test_teardown(test_bad_prefetch, reset_all),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
