/*
 * it_direct: a client listening on a URL, servers started by hand that
 * dial in, come and go; the server's limits and exit codes.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define OFF MIRAI_DISPATCHER_OFF

static char url[256];

static int
setup(void **state)
{
	(void) state;
	h_init();
	return 0;
}

/* Listen on a fresh loopback port for profile; url gets the real URL. */
static void
listen_hb(const char *profile, int64_t heartbeat_ms)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};
	mirai_status *st;

	d.profile      = profile;
	d.heartbeat_ms = heartbeat_ms;
	d.url        = "tcp://127.0.0.1:0";
	d.dispatcher = OFF;
	assert_int_equal(mirai_daemons(&d, &err), 0);
	assert_int_equal(mirai_status_get(profile, &st), 0);
	snprintf(url, sizeof url, "%s", st->url);
	assert_int_equal(st->connections, 0);
	mirai_status_free(st);
	/* Port 0 was resolved. */
	assert_non_null(strstr(url, "tcp://127.0.0.1:"));
	assert_null(strstr(url, ":0"));
}

static void
listen_on(const char *profile)
{
	listen_hb(profile, 0);
}

static void
test_servers_come_and_go(void **state)
{
	enum { N = 40 };
	mirai *ms[N], *q;
	pid_t a, b, c;
	mirai_status *st;

	(void) state;
	listen_on(NULL);
	/* Tasks submitted before any server is there wait for one. */
	assert_int_equal(mirai_call(NULL, "mirai.echo", "early", 5, &q), 0);
	assert_int_equal(mirai_wait_for(q, 200), MIRAI_EPENDING);
	a = h_spawn_server(url, NULL);
	b = h_spawn_server(url, NULL);
	assert_int_equal(mirai_wait_for(q, 5000), 0);
	mirai_free(q);
	assert_int_equal(h_wait_connections(NULL, 2, 5000), 2);
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_call(NULL, "mirai.echo", "x", 1, &ms[i]), 0);
	}
	assert_int_equal(mirai_wait_all(ms, N, 10000), 0);
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	assert_int_equal(st->nrows, 2);
	assert_true(st->rows[0].complete > 0 && st->rows[1].complete > 0);
	assert_string_equal(st->rows[0].url, url);
	mirai_status_free(st);
	for (int i = 0; i < N; i++) {
		mirai_free(ms[i]);
	}

	/* One goes away mid-task: its task is lost with 19, the rest goes
	 * on with the other one, and a newcomer is used at once. */
	assert_int_equal(mirai_call(NULL, "mirai.sleep", "10000", 5, &q), 0);
	usleep(100000);
	h_kill(a);
	h_kill(b);
	assert_int_equal(mirai_wait_for(q, 5000), MIRAI_ECONNRESET);
	mirai_free(q);
	/* Both seen gone first: under load the other one's drop can come
	 * after the newcomer's HELLO, and the next call would go to it. */
	assert_int_equal(h_wait_connections(NULL, 0, 5000), 0);
	c = h_spawn_server(url, NULL);
	assert_int_equal(h_wait_connections(NULL, 1, 5000), 1);
	assert_int_equal(h_call(NULL, "mirai.echo", "later", NULL, 0), 0);
	mirai_reset(NULL);
	/* Reset tells the server to go; it exits with code 0. */
	int status;
	assert_true(h_wait_exit(c, 5000, &status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), MIRAI_EXIT_CLOSED);
}

/*
 * A server with 8 tasks in flight gets later ones with its next message
 * back.  With heartbeats off on both sides nothing else comes from it, so
 * a task held back must go out with a result, or with the CANCEL frames
 * of cancelled tasks ahead of it, and never be stuck.
 */
static void
test_held_tasks_go_out(void **state)
{
	enum { N = 12, AHEAD = 8 };
	const char *quiet[] = {"--heartbeat", "off", NULL};
	mirai *ms[N], *q;
	int64_t t0;
	pid_t s;

	(void) state;
	listen_hb(NULL, MIRAI_FOREVER);
	s = h_spawn_server(url, quiet);
	assert_int_equal(h_wait_connections(NULL, 1, 5000), 1);
	/* 8 go out at once, the rest with the first result (100 ms). */
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_call(NULL, "mirai.sleep", "100", 3, &ms[i]), 0);
	}
	assert_int_equal(mirai_wait_all(ms, N, 10000), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_error(ms[i]), 0);
		mirai_free(ms[i]);
	}
	/* 8 long ones in flight and one held behind them: cancelling the 8
	 * sends it, and it is done long before the 8 would have been. */
	for (int i = 0; i < AHEAD; i++) {
		assert_int_equal(mirai_call(NULL, "mirai.sleep", "3000", 4, &ms[i]), 0);
	}
	assert_int_equal(mirai_call(NULL, "mirai.echo", "held", 4, &q), 0);
	assert_int_equal(mirai_wait_for(q, 300), MIRAI_EPENDING);
	t0 = h_now_ms();
	for (int i = 0; i < AHEAD; i++) {
		assert_int_equal(mirai_cancel(ms[i]), 0);
	}
	assert_int_equal(mirai_wait_for(q, 2500), 0);
	assert_true(h_now_ms() - t0 < 2500);
	assert_memory_equal(mirai_data(q, NULL), "held", 4);
	mirai_free(q);
	for (int i = 0; i < AHEAD; i++) {
		assert_int_equal(mirai_error(ms[i]), MIRAI_ECANCELED);
		mirai_free(ms[i]);
	}
	mirai_reset(NULL);
	assert_true(h_wait_exit(s, 5000, NULL));
}

static void
test_max_tasks_requeues(void **state)
{
	enum { N = 60 };
	const char *limit[] = {"--max-tasks", "4", NULL};
	mirai *ms[N];
	pid_t s1, s2, s3;
	int status;

	(void) state;
	listen_on(NULL);
	s1 = h_spawn_server(url, limit);
	s2 = h_spawn_server(url, limit);
	assert_int_equal(h_wait_connections(NULL, 2, 5000), 2);
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_call(NULL, "mirai.sleep", "5", 1, &ms[i]), 0);
	}
	/* The limited servers leave after 4 tasks each (exit code 5); what
	 * they held comes back and waits for a server that can take it. */
	assert_true(h_wait_exit(s1, 10000, &status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), MIRAI_EXIT_MAXTASKS);
	assert_true(h_wait_exit(s2, 10000, &status));
	assert_int_equal(WEXITSTATUS(status), MIRAI_EXIT_MAXTASKS);
	s3 = h_spawn_server(url, NULL);
	assert_int_equal(mirai_wait_all(ms, N, 20000), 0);
	for (int i = 0; i < N; i++) {
		/* None lost. */
		assert_int_equal(mirai_error(ms[i]), 0);
		mirai_free(ms[i]);
	}
	mirai_reset(NULL);
	assert_true(h_wait_exit(s3, 5000, NULL));
}

static void
test_exit_codes(void **state)
{
	const char *idle[]   = {"--idle", "300ms", NULL};
	const char *wall[]   = {"--walltime", "400ms", NULL};
	pid_t p;
	int status;
	int64_t t0;

	(void) state;
	listen_on(NULL);
	t0 = h_now_ms();
	p  = h_spawn_server(url, idle);
	assert_true(h_wait_exit(p, 10000, &status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), MIRAI_EXIT_IDLE);
	assert_true(h_now_ms() - t0 >= 300);

	p = h_spawn_server(url, wall);
	assert_int_equal(h_wait_connections(NULL, 1, 5000), 1);
	/* A task running past the wall time is finished first. */
	assert_int_equal(h_call(NULL, "mirai.sleep", "600", NULL, 0), 0);
	assert_true(h_wait_exit(p, 10000, &status));
	assert_int_equal(WEXITSTATUS(status), MIRAI_EXIT_WALLTIME);
	mirai_reset(NULL);
}

static void
test_dial_once_fails(void **state)
{
	const char *once[] = {"--dial-once", NULL};
	pid_t p;
	int status;

	(void) state;
	/* Nobody listens on port 1. */
	p = h_spawn_server("tcp://127.0.0.1:1", once);
	assert_true(h_wait_exit(p, 10000, &status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), MIRAI_EXIT_ERROR);
}

static void
test_server_waits_for_client(void **state)
{
	char listen_url[64];
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	pid_t p;
	int port;

	(void) state;
	/* Keep retrying is the default: a server started before the client
	 * connects once the client listens. */
	listen_on("probe");
	port = atoi(strrchr(url, ':') + 1);
	mirai_reset("probe");
	snprintf(listen_url, sizeof listen_url, "tcp://127.0.0.1:%d", port);
	p = h_spawn_server(listen_url, NULL);
	usleep(300000);
	d.url        = listen_url;
	d.dispatcher = OFF;
	/* Without secrets: a server that came first cannot know one. */
	d.no_token = 1;
	assert_int_equal(mirai_daemons(&d, NULL), 0);
	assert_int_equal(h_wait_connections(NULL, 1, 10000), 1);
	assert_int_equal(h_call(NULL, "mirai.echo", "hi", NULL, 0), 0);
	mirai_reset(NULL);
	assert_true(h_wait_exit(p, 5000, NULL));
}

static void
test_garbage_peer(void **state)
{
	(void) state;
	listen_on(NULL);
	/* A program that speaks no mirai (here: a raw TCP client writing junk)
	 * is rejected without harm to the client. */
	int port = atoi(strrchr(url, ':') + 1);
	char cmd[256];
	snprintf(cmd, sizeof cmd,
	    "exec 3<>/dev/tcp/127.0.0.1/%d; printf 'GET / HTTP/1.0\\r\\n\\r\\n' "
	    ">&3; sleep 0.2",
	    port);
	const char *argv[] = {"bash", "-c", cmd, NULL};
	pid_t p            = h_spawn(argv, NULL);
	assert_true(h_wait_exit(p, 5000, NULL));
	pid_t s = h_spawn_server(url, NULL);
	assert_int_equal(h_wait_connections(NULL, 1, 5000), 1);
	assert_int_equal(h_call(NULL, "mirai.echo", "fine", NULL, 0), 0);
	mirai_reset(NULL);
	assert_true(h_wait_exit(s, 5000, NULL));
}

/* The URL a client listens on ends in its secret: a server without it is
 * refused, says why and exits with an error; one with it serves. */
static void
test_secret_refused(void **state)
{
	char base[256];
	size_t n;
	int status;
	pid_t p, s;

	(void) state;
	listen_on(NULL);
	n = strlen(url);
	/* tcp://127.0.0.1:P/<32 hex digits>/0 */
	assert_true(n > 35 && url[n - 2] == '/' && url[n - 1] == '0' &&
	    url[n - 35] == '/');
	snprintf(base, sizeof base, "%.*s", (int) (n - 35), url);
	p = h_spawn_server(base, NULL);
	assert_true(h_wait_exit(p, 10000, &status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), MIRAI_EXIT_ERROR);
	/* One digit off is no better. */
	snprintf(base, sizeof base, "%s", url);
	base[n - 3] = base[n - 3] == 'a' ? 'b' : 'a';
	p           = h_spawn_server(base, NULL);
	assert_true(h_wait_exit(p, 10000, &status));
	assert_int_equal(WEXITSTATUS(status), MIRAI_EXIT_ERROR);
	s = h_spawn_server(url, NULL);
	assert_int_equal(h_call(NULL, "mirai.echo", "fine", NULL, 0), 0);
	mirai_reset(NULL);
	assert_true(h_wait_exit(s, 5000, &status));
	assert_int_equal(WEXITSTATUS(status), MIRAI_EXIT_CLOSED);
}

static int
reset_all(void **state)
{
	(void) state;
	h_cleanup();
	mirai_reset(NULL);
	mirai_reset("probe");
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
	    cmocka_unit_test_teardown(test_servers_come_and_go, reset_all),
	    cmocka_unit_test_teardown(test_held_tasks_go_out, reset_all),
	    cmocka_unit_test_teardown(test_max_tasks_requeues, reset_all),
	    cmocka_unit_test_teardown(test_exit_codes, reset_all),
	    cmocka_unit_test_teardown(test_dial_once_fails, reset_all),
	    cmocka_unit_test_teardown(test_server_waits_for_client, reset_all),
	    cmocka_unit_test_teardown(test_garbage_peer, reset_all),
	    cmocka_unit_test_teardown(test_secret_refused, reset_all),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
