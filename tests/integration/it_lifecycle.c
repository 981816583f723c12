/*
 * it_lifecycle: when the client goes away for any reason, its servers go
 * too, finishing a task in progress first.  The client here is this same
 * program started again with --client.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static const char *self;

/* Client mode: n local servers (mode: off, thread or process), print
 * their pids (and the dispatcher's), optionally start a task that writes
 * a file after a while, then wait to be killed. */
static int
client_main(int n, const char *marker, const char *mode)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_status *st;
	mirai *m = NULL;

	d.n          = n;
	d.dispatcher = strcmp(mode, "process") == 0 ? MIRAI_DISPATCHER_PROCESS
	    : strcmp(mode, "thread") == 0         ? MIRAI_DISPATCHER_THREAD
						  : MIRAI_DISPATCHER_OFF;
	if (mirai_daemons(&d, NULL) != 0 || mirai_status_get(NULL, &st) != 0) {
		return 1;
	}
	if (marker != NULL) {
		char cmd[512];
		snprintf(cmd, sizeof cmd, "sleep 1; touch '%s'", marker);
		if (mirai_call(NULL, "mirai.exec", cmd, strlen(cmd), &m) != 0) {
			return 1;
		}
		usleep(200000);
	}
	for (size_t i = 0; i < st->nrows; i++) {
		printf("%d\n", st->rows[i].pid);
	}
	if (st->dispatcher_pid > 0 && st->dispatcher_pid != (int) getpid()) {
		printf("%d\n", st->dispatcher_pid);
	}
	printf("ready\n");
	fflush(stdout);
	mirai_status_free(st);
	sleep(60);
	return 0;
}

static int
read_pids(int fd, int *pids, int max)
{
	FILE *f = fdopen(fd, "r");
	char line[64];
	int n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "ready", 5) == 0) {
			break;
		}
		if (n < max) {
			pids[n++] = atoi(line);
		}
	}
	fclose(f);
	return n;
}

static void
kill9_client(const char *mode, int want)
{
	const char *argv[] = {self, "--client", "3", "-", mode, NULL};
	int pids[8], fd, n;
	pid_t c;

	c = h_spawn(argv, &fd);
	n = read_pids(fd, pids, 8);
	assert_int_equal(n, want);
	h_kill(c);
	for (int i = 0; i < n; i++) {
		assert_true(pids[i] > 0);
		assert_true(h_gone(pids[i], 5000));
	}
}

static void
test_kill9_client(void **state)
{
	(void) state;
	kill9_client("off", 3);
	kill9_client("thread", 3);
	/* The three servers and the dispatcher process. */
	kill9_client("process", 4);
}

/* kill -9 of the dispatcher process: every pending task resolves with 19
 * promptly, new tasks fail clearly, and the servers exit. */
static void
test_kill9_dispatcher(void **state)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	enum { N = 6 };
	mirai *ms[N], *m;
	mirai_status *st;
	int disp, spid[2];
	int64_t t0;

	(void) state;
	d.n          = 2;
	d.dispatcher = MIRAI_DISPATCHER_PROCESS;
	assert_int_equal(mirai_daemons(&d, NULL), 0);
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	disp    = st->dispatcher_pid;
	spid[0] = st->rows[0].pid;
	spid[1] = st->rows[1].pid;
	mirai_status_free(st);
	assert_true(disp > 0 && disp != (int) getpid());
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_call(NULL, "mirai.sleep", "1000", 4, &ms[i]), 0);
	}
	usleep(200000);
	t0 = h_now_ms();
	kill(disp, SIGKILL);
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_wait_for(ms[i], 3000), MIRAI_ECONNRESET);
		mirai_free(ms[i]);
	}
	assert_true(h_now_ms() - t0 < 3000);
	assert_true(h_gone(disp, 5000));
	assert_true(h_gone(spid[0], 5000));
	assert_true(h_gone(spid[1], 5000));
	assert_int_equal(mirai_call(NULL, "mirai.echo", "x", 1, &m), 0);
	assert_int_equal(mirai_wait_for(m, 3000), MIRAI_ECLOSED);
	assert_non_null(strstr(mirai_errortext(m), "dispatcher"));
	mirai_free(m);
	mirai_reset(NULL);
}

static void
test_task_finishes_first(void **state)
{
	char marker[512];
	const char *argv[] = {self, "--client", "1", marker, "off", NULL};
	struct stat sb;
	int pids[2], fd, n;
	pid_t c;

	(void) state;
	snprintf(marker, sizeof marker, "%s/finished", h_tmpdir());
	unlink(marker);
	c = h_spawn(argv, &fd);
	n = read_pids(fd, pids, 2);
	assert_int_equal(n, 1);
	h_kill(c);
	/* The server outlives its client only to finish the task. */
	assert_true(h_gone(pids[0], 5000));
	assert_int_equal(stat(marker, &sb), 0);
	unlink(marker);
	rmdir(h_tmpdir());
}

/*
 * A reset under a task that ignores cancellation: the dispatcher thread's
 * engine is freed after a bounded wait while its local server still runs;
 * the server's exit must then touch nothing of it (run under ASan).
 */
static void
test_reset_under_busy_task(void **state)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	const char *plugins[1];
	mirai_server_opts so = MIRAI_SERVER_OPTS_INIT;
	mirai_errmsg err = {{0}};
	mirai *m;
	int64_t t0;

	(void) state;
	plugins[0]    = h_plugin("testplug");
	so.plugins    = plugins;
	so.nplugins   = 1;
	d.n           = 1;
	d.dispatcher  = MIRAI_DISPATCHER_THREAD;
	d.server      = &so;
	if (mirai_daemons(&d, &err) != 0) {
		fail_msg("daemons: %s", err.text);
	}
	/* 7 s: past the 5 s the dispatcher waits for its servers. */
	assert_int_equal(mirai_call(NULL, "test.busy", "7000", 4, &m), 0);
	usleep(300000);
	t0 = h_now_ms();
	assert_int_equal(mirai_reset(NULL), 0);
	assert_int_equal(mirai_wait(m), MIRAI_ECLOSED);
	mirai_free(m);
	/* The server ends its task and exits with the engine long gone;
	 * its reaping must not reach freed memory. */
	while (h_now_ms() - t0 < 8000) {
		usleep(100000);
	}
}

static int
cleanup(void **state)
{
	(void) state;
	h_cleanup();
	mirai_shutdown();
	return 0;
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kill9_client),
	    cmocka_unit_test(test_task_finishes_first),
	    cmocka_unit_test(test_kill9_dispatcher),
	    cmocka_unit_test(test_reset_under_busy_task),
	};

	self = argv[0];
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 5 && strcmp(argv[1], "--client") == 0) {
		return client_main(atoi(argv[2]),
		    strcmp(argv[3], "-") != 0 ? argv[3] : NULL, argv[4]);
	}
	h_init();
	return cmocka_run_group_tests(tests, NULL, cleanup);
}
