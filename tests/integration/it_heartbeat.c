/*
 * it_heartbeat: a server that falls silent (SIGSTOP) is taken as lost
 * within the heartbeat interval and a third: its slot goes offline and its
 * task resolves with MIRAI_ECONNRESET; after SIGCONT it is told to exit
 * and does.  Idle peers with heartbeats on stay connected.  A client
 * attached to a mirai-dispatcher that falls silent is taken as gone: its
 * work is dropped, and the dispatcher serves the next client.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define HB_MS 1000

static int
setup(void **state)
{
	(void) state;
	h_init();
	return 0;
}

static int
reset_all(void **state)
{
	(void) state;
	h_cleanup();
	mirai_reset(NULL);
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

static int
slot_online(int with_disp)
{
	mirai_status *st;
	int on = 0;

	if (mirai_status_get(NULL, &st) != 0) {
		return -1;
	}
	for (size_t i = 0; i < st->nrows; i++) {
		on += with_disp ? st->rows[i].online : 1;
	}
	mirai_status_free(st);
	return on;
}

static void
run(int dispatcher)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_call_opts co   = MIRAI_CALL_OPTS_INIT;
	const char *args[]   = {"--heartbeat", "1s", NULL};
	mirai_errmsg err     = {{0}};
	int with_disp        = dispatcher != MIRAI_DISPATCHER_OFF;
	int64_t t0, t_lost;
	mirai_status *st;
	char *url;
	pid_t pid;
	mirai *m;
	int k;

	d.dispatcher   = dispatcher;
	d.heartbeat_ms = HB_MS;
	d.url          = with_disp ? "ws://127.0.0.1:0" : "tcp://127.0.0.1:0";
	d.n            = with_disp ? 1 : 0;
	if (mirai_daemons(&d, &err) != 0) {
		fail_msg("daemons: %s", err.text);
	}
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	url = strdup(with_disp ? st->rows[0].url : st->url);
	mirai_status_free(st);
	pid = h_spawn_server(url, args);
	free(url);
	t0 = h_now_ms();
	while (slot_online(with_disp) != 1 && h_now_ms() - t0 < 10000) {
		usleep(10000);
	}
	assert_int_equal(slot_online(with_disp), 1);

	/* Idle for 3 intervals: pings keep everyone connected. */
	usleep(3 * HB_MS * 1000);
	assert_int_equal(slot_online(with_disp), 1);
	assert_int_equal(kill(pid, 0), 0);

	co.retries = -1;
	assert_int_equal(mirai_call(&co, "mirai.sleep", "60000", 5, &m), 0);
	usleep(200000);
	kill(pid, SIGSTOP);
	t0 = h_now_ms();
	while ((k = slot_online(with_disp)) != 0 && h_now_ms() - t0 < 5000) {
		usleep(10000);
	}
	t_lost = h_now_ms() - t0;
	fprintf(stderr, "mode %d: stopped server taken as lost after %lld ms "
			"(heartbeat %d ms)\n",
	    dispatcher, (long long) t_lost, HB_MS);
	assert_int_equal(k, 0);
	/* Within interval + interval/3, with room for a loaded machine. */
	assert_true(t_lost <= HB_MS + HB_MS / 3 + 700);
	assert_int_equal(mirai_wait_for(m, 2000), MIRAI_ECONNRESET);
	mirai_free(m);

	/* Woken up, it is told to exit (its running task cancelled) and
	 * does, in every mode: the EXIT passes a full send window. */
	kill(pid, SIGCONT);
	assert_true(h_wait_exit(pid, 5000, NULL));
	mirai_reset(NULL);
}

static void
test_thread(void **state)
{
	(void) state;
	run(MIRAI_DISPATCHER_THREAD);
}

static void
test_process(void **state)
{
	(void) state;
	run(MIRAI_DISPATCHER_PROCESS);
}

static void
test_direct(void **state)
{
	(void) state;
	run(MIRAI_DISPATCHER_OFF);
}

/*
 * The client that test_client_silent stops: this program run again with
 * --client URL.  It attaches with a short heartbeat, submits a long task,
 * says "ready" once a server runs it, then waits (bounded) and prints the
 * task's error value.
 */
static int
client_main(const char *url)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};
	mirai_status *st;
	int64_t t0;
	int running = 0, e;
	mirai *m;

	mirai_log_set(mirai_log_stderr, "client", MIRAI_LOG_WARN);
	d.attach            = 1;
	d.url               = url;
	d.attach_timeout_ms = 5000;
	d.heartbeat_ms      = 300;
	if (mirai_daemons(&d, &err) != 0 ||
	    mirai_call(NULL, "mirai.sleep", "30000", 5, &m) != 0) {
		fprintf(stderr, "client: %s\n", err.text);
		return 1;
	}
	t0 = h_now_ms();
	while (!running && h_now_ms() - t0 < 10000) {
		if (mirai_status_get(NULL, &st) == 0) {
			running = st->running > 0 && st->rows != NULL &&
			    st->rows[0].assigned > 0;
			mirai_status_free(st);
		}
		usleep(20000);
	}
	printf("ready\n");
	fflush(stdout);
	e = mirai_wait_for(m, 60000);
	printf("%d\n", e);
	fflush(stdout);
	mirai_free(m);
	mirai_shutdown();
	return 0;
}

/* Wait up to ms for a line containing what in the file path. */
static int
log_has(const char *path, const char *what, int ms)
{
	int64_t end = h_now_ms() + ms;
	char line[1024];

	do {
		FILE *f = fopen(path, "r");
		int found = 0;
		while (f != NULL && !found && fgets(line, sizeof line, f) != NULL) {
			found = strstr(line, what) != NULL;
		}
		if (f != NULL) {
			fclose(f);
		}
		if (found) {
			return 1;
		}
		usleep(20000);
	} while (h_now_ms() < end);
	return 0;
}

/* A line from fd (bounded by ms), without its newline; "" if none. */
static void
read_line(int fd, char *buf, size_t len, int ms)
{
	int64_t end = h_now_ms() + ms;
	size_t n    = 0;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	while (n + 1 < len && h_now_ms() < end) {
		ssize_t r = read(fd, buf + n, 1);
		if (r == 1 && buf[n] == '\n') {
			break;
		} else if (r == 1) {
			n++;
		} else if (r == 0) {
			break;
		} else {
			usleep(10000);
		}
	}
	buf[n] = '\0';
}

/* Established tcp connections on loopback port port (both ends count). */
static int
tcp_established(int port)
{
	char line[512];
	int n = 0;
	FILE *f = fopen("/proc/net/tcp", "r");

	while (f != NULL && fgets(line, sizeof line, f) != NULL) {
		unsigned lport, rport, st;
		if (sscanf(line, " %*d: %*x:%x %*x:%x %x", &lport, &rport,
			&st) == 3 &&
		    st == 1 && ((int) lport == port || (int) rport == port)) {
			n++;
		}
	}
	if (f != NULL) {
		fclose(f);
	}
	return n;
}

/* tcp_established(port) once it is n, or after ms have passed: a refused
 * dialer's connection is closed by NNG's reaper a moment after the call
 * that refused it returned. */
static int
tcp_established_within(int port, int n, int64_t ms)
{
	int64_t t0 = h_now_ms();
	int k;

	while ((k = tcp_established(port)) != n && h_now_ms() - t0 < ms) {
		usleep(20000);
	}
	return k;
}

/* Lines of the file path that contain what. */
static int
log_count(const char *path, const char *what)
{
	char line[1024];
	int n   = 0;
	FILE *f = fopen(path, "r");

	while (f != NULL && fgets(line, sizeof line, f) != NULL) {
		n += strstr(line, what) != NULL;
	}
	if (f != NULL) {
		fclose(f);
	}
	return n;
}

/*
 * A client attached to a mirai-dispatcher (1 s heartbeat) and stopped
 * while its task runs is taken as gone within the interval and a third.
 * The dispatcher does not close its connection (NNG 1.5.2 can hang
 * closing a pipe that is receiving), answers status meanwhile, cancels
 * the gone client's task, and refuses a new client (without taking it in
 * and dropping it again) until that client, woken, has left; then it
 * serves the new one at once.
 */
static void
test_client_silent(void **state)
{
	char self[4096], line[512], log[4200];
	char client_url[512], control_url[512];
	const char *dargs[] = {"--listen", "tcp://127.0.0.1:0", "--control",
	    "tcp://127.0.0.1:0", "--local", "-n", "1", "--heartbeat", "1s",
	    "-v", NULL};
	const char *cargv[] = {self, "--client", client_url, NULL};
	mirai_errmsg err = {{0}};
	mirai_status *st;
	int64_t t0, t_lost;
	pid_t disp, cl;
	int cfd, port, status = 0;
	char buf[64];
	ssize_t len;

	(void) state;
	snprintf(log, sizeof log, "%s/client-silent.log", h_tmpdir());
	disp = h_spawn_dispatcher(dargs, log, client_url, control_url,
	    sizeof client_url);
	assert_true(client_url[0] != '\0' && control_url[0] != '\0');

	len = readlink("/proc/self/exe", self, sizeof self - 1);
	assert_true(len > 0);
	self[len] = '\0';
	cl        = h_spawn(cargv, &cfd);
	read_line(cfd, line, sizeof line, 20000);
	assert_string_equal(line, "ready");

	kill(cl, SIGSTOP);
	t0 = h_now_ms();
	assert_true(log_has(log, "the client was silent for", 5000));
	t_lost = h_now_ms() - t0;
	fprintf(stderr, "stopped client taken as gone after %lld ms (heartbeat "
			"%d ms)\n",
	    (long long) t_lost, HB_MS);
	assert_true(t_lost <= HB_MS + HB_MS / 3 + 700);
	/* Not hung: status is answered, the server stays online, and the
	 * gone client's task was cancelled (nothing runs). */
	t0 = h_now_ms();
	for (;;) {
		assert_int_equal(mirai_status_query(control_url, &st, &err), 0);
		int quiet = st->nrows == 1 && st->rows[0].online &&
		    st->running == 0;
		mirai_status_free(st);
		if (quiet || h_now_ms() - t0 > 5000) {
			assert_true(quiet);
			break;
		}
		usleep(20000);
	}
	/* Its connection is still there, and another client waits. */
	port = atoi(strrchr(client_url, ':') + 1);
	assert_int_equal(tcp_established(port), 2);
	assert_int_equal(mirai_attach("other", client_url, 1000, &err),
	    MIRAI_ETIMEDOUT);
	assert_int_equal(log_count(log, "a client attached"), 1);
	assert_int_equal(tcp_established_within(port, 2, 3000), 2);

	/* Woken, the client finds itself dropped and leaves. */
	kill(cl, SIGCONT);
	read_line(cfd, line, sizeof line, 10000);
	assert_int_equal(atoi(line), MIRAI_ECONNRESET);
	assert_true(h_wait_exit(cl, 10000, &status));
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(cfd);
	assert_true(log_has(log, "the silent client's connection closed", 5000));

	/* The next client is served at once: the server is free. */
	assert_int_equal(mirai_attach(NULL, client_url, 10000, &err), 0);
	t0 = h_now_ms();
	assert_int_equal(h_call(NULL, "mirai.echo", "next", buf, sizeof buf), 0);
	assert_string_equal(buf, "next");
	assert_true(h_now_ms() - t0 < 2000);
	assert_int_equal(mirai_reset(NULL), 0);

	kill(disp, SIGTERM);
	assert_true(h_wait_exit(disp, 10000, &status));
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_thread, reset_all),
	    cmocka_unit_test_teardown(test_process, reset_all),
	    cmocka_unit_test_teardown(test_direct, reset_all),
	    cmocka_unit_test_teardown(test_client_silent, reset_all),
	};

	if (argc == 3 && strcmp(argv[1], "--client") == 0) {
		return client_main(argv[2]);
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
