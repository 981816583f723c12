/*
 * it_dispatcher: the dispatcher with real servers: FIFO to idle servers
 * only, one server per URL, the status matrix, saisei, cancellation,
 * timeouts, retries and back-pressure.  The dispatcher runs on a thread of
 * this client (the default); it_lifecycle covers the process.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

/* Log lines are kept so tests can check what was reported. */
static pthread_mutex_t log_mtx = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[65536];
static size_t log_len;

static void
capture(int level, const char *tag, const char *msg, void *arg)
{
	pthread_mutex_lock(&log_mtx);
	log_len += (size_t) snprintf(log_buf + log_len,
	    log_len < sizeof log_buf ? sizeof log_buf - log_len : 0, "%s: %s\n",
	    tag, msg);
	if (log_len >= sizeof log_buf) {
		log_len = 0;
	}
	pthread_mutex_unlock(&log_mtx);
	mirai_log_stderr(level, tag, msg, arg);
}

static int
logged(const char *text)
{
	int found;

	pthread_mutex_lock(&log_mtx);
	found = strstr(log_buf, text) != NULL;
	pthread_mutex_unlock(&log_mtx);
	return found;
}

static int
setup(void **state)
{
	(void) state;
	h_init();
	mirai_log_set(capture, "test", MIRAI_LOG_INFO);
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

static int mode; /* the dispatcher setting local() uses */

static void
local(int n, const char *plugin, int retries)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_server_opts so = MIRAI_SERVER_OPTS_INIT;
	const char *plugins[1];
	mirai_errmsg err = {{0}};

	d.n          = n;
	d.retries    = retries;
	d.dispatcher = mode;
	if (plugin != NULL) {
		plugins[0]        = h_plugin(plugin);
		so.plugins  = plugins;
		so.nplugins = 1;
	}
	d.server = &so;
	if (mirai_daemons(&d, &err) != 0) {
		fail_msg("daemons: %s", err.text);
	}
}

/* Slots on ws paths of one port, for servers started by hand. */
static void
ws_slots(int n, int no_token)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};

	d.url      = "ws://127.0.0.1:0";
	d.n        = n;
	d.no_token = no_token;
	if (mirai_daemons(&d, &err) != 0) {
		fail_msg("daemons: %s", err.text);
	}
}

static char *
slot_url(size_t i)
{
	mirai_status *st;
	char *u;

	assert_int_equal(mirai_status_get(NULL, &st), 0);
	assert_true(i < st->nrows);
	u = strdup(st->rows[i].url);
	mirai_status_free(st);
	return u;
}

/* Wait until slot i shows online == want; returns the row's instance. */
static long
wait_slot(size_t i, int want)
{
	for (int k = 0; k < 500; k++) {
		mirai_status *st;
		long inst = -1;
		if (mirai_status_get(NULL, &st) == 0 && i < st->nrows &&
		    st->rows[i].online == want) {
			inst = (long) st->rows[i].instance;
		}
		mirai_status_free(st);
		if (inst >= 0) {
			return inst;
		}
		usleep(10000);
	}
	fail_msg("slot %zu never became %s", i, want ? "online" : "offline");
	return -1;
}

static void
test_matrix(void **state)
{
	mirai_status *st;
	char *json;

	(void) state;
	local(3, NULL, 0);
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	assert_int_equal(st->set, 1);
	assert_int_equal(st->dispatcher, 1);
	assert_int_equal(st->connections, 1);
	assert_int_equal(st->error, 0);
	assert_int_equal(st->nrows, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(st->rows[i].online, 1);
		assert_int_equal(st->rows[i].instance, 1);
		assert_int_equal(st->rows[i].assigned, 0);
		assert_true(st->rows[i].pid > 0);
		for (size_t j = 0; j < i; j++) {
			assert_string_not_equal(st->rows[i].url, st->rows[j].url);
		}
	}
	assert_int_equal(mirai_status_json(st, &json), 0);
	assert_non_null(strstr(json, "\"dispatcher\":true"));
	assert_non_null(strstr(json, "\"instance\":1"));
	free(json);
	mirai_status_free(st);
	for (int i = 0; i < 30; i++) {
		assert_int_equal(h_call(NULL, "mirai.echo", "x", NULL, 0), 0);
	}
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	assert_int_equal(st->completed, 30);
	assert_int_equal(st->rows[0].complete + st->rows[1].complete +
	        st->rows[2].complete, 30);
	mirai_status_free(st);
}

/* Each task records its start in a file: with one server the order of
 * the file is the order of submission. */
static void
test_fifo_order(void **state)
{
	enum { N = 25 };
	char path[256], cmd[512], line[64];
	mirai *ms[N];
	FILE *f;
	int i = 0, v;

	(void) state;
	snprintf(path, sizeof path, "%s/fifo", h_tmpdir());
	unlink(path);
	local(1, NULL, 0);
	for (int k = 0; k < N; k++) {
		snprintf(cmd, sizeof cmd, "echo %d >> '%s'", k, path);
		assert_int_equal(mirai_call(NULL, "mirai.exec", cmd, strlen(cmd), &ms[k]), 0);
	}
	assert_int_equal(mirai_wait_all(ms, N, 20000), 0);
	for (int k = 0; k < N; k++) {
		mirai_free(ms[k]);
	}
	assert_non_null(f = fopen(path, "r"));
	while (fgets(line, sizeof line, f) != NULL && sscanf(line, "%d", &v) == 1) {
		assert_int_equal(v, i);
		i++;
	}
	fclose(f);
	assert_int_equal(i, N);
	unlink(path);
}

/* The w3 shape: a long task first, then short ones.  None of the short
 * ones may go to the busy server. */
static void
test_idle_only(void **state)
{
	enum { N = 15 };
	const char *lcmd = "sleep 1.5; echo $PPID";
	const char *scmd = "sleep 0.02; echo $PPID";
	mirai *lm, *ms[N];
	mirai_exec_result xr;
	const void *d;
	size_t len;
	int long_pid;

	(void) state;
	local(2, NULL, 0);
	assert_int_equal(mirai_call(NULL, "mirai.exec", lcmd, strlen(lcmd), &lm), 0);
	for (int k = 0; k < N; k++) {
		assert_int_equal(mirai_call(NULL, "mirai.exec", scmd, strlen(scmd), &ms[k]), 0);
	}
	assert_int_equal(mirai_wait_all(ms, N, 20000), 0);
	assert_int_equal(mirai_wait(lm), 0);
	d = mirai_data(lm, &len);
	assert_int_equal(mirai_exec_parse(d, len, &xr), 0);
	long_pid = atoi(xr.out);
	assert_true(long_pid > 0);
	for (int k = 0; k < N; k++) {
		d = mirai_data(ms[k], &len);
		assert_int_equal(mirai_exec_parse(d, len, &xr), 0);
		assert_int_not_equal(atoi(xr.out), long_pid);
		mirai_free(ms[k]);
	}
	mirai_free(lm);
}

static void
test_duplicate_refused(void **state)
{
	pid_t a, b;
	char *url;
	int apid;

	(void) state;
	ws_slots(1, 0);
	url = slot_url(0);
	/* A path holds a 128-bit token: 32 hex digits, then the slot. */
	assert_non_null(strstr(url, "ws://127.0.0.1:"));
	assert_true(strlen(strrchr(url, '/')) == 2);
	a = h_spawn_server(url, NULL);
	assert_int_equal(wait_slot(0, 1), 1);
	apid = h_server_pid(NULL);
	assert_int_equal(apid, a);
	b = h_spawn_server(url, NULL);
	/* (It waits 3 s for the first one to go, then it is refused.) */
	for (int k = 0; k < 1000 && !logged("slot 0 has a server"); k++) {
		usleep(10000);
	}
	assert_true(logged("slot 0 has a server"));
	/* The first keeps working. */
	for (int k = 0; k < 5; k++) {
		assert_int_equal(h_server_pid(NULL), a);
	}
	h_kill(b);
	mirai_reset(NULL);
	assert_true(h_wait_exit(a, 5000, NULL));
	free(url);
}

/* Slots on one tcp listener: a server gets in only with its slot's secret,
 * and saisei gives a slot a fresh one. */
static void
test_slot_secret(void **state)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};
	char *url, *bad, *fresh = NULL;
	size_t n;
	pid_t a, b, c, e;

	(void) state;
	d.url = "tcp://127.0.0.1:0";
	d.n   = 2;
	assert_int_equal(mirai_daemons(&d, &err), 0);
	url = slot_url(1);
	n   = strlen(url);
	/* tcp://127.0.0.1:P/<32 hex digits>/1 */
	assert_int_equal(strncmp(url, "tcp://127.0.0.1:", 16), 0);
	assert_true(n > 50 && url[n - 2] == '/' && url[n - 1] == '1' &&
	    url[n - 35] == '/');
	bad = strdup(url);

	/* One hex digit off: refused, and the server, cut off, exits. */
	bad[n - 3] = bad[n - 3] == '0' ? '1' : '0';
	a          = h_spawn_server(bad, NULL);
	assert_true(h_wait_exit(a, 10000, NULL));
	assert_true(logged("lacks a slot's secret"));
	/* Slot 1's secret does not open slot 0. */
	memcpy(bad, url, n);
	bad[n - 1] = '0';
	b          = h_spawn_server(bad, NULL);
	assert_true(h_wait_exit(b, 10000, NULL));
	/* No secret at all: the listener's own URL. */
	bad[n - 35] = '\0';
	e           = h_spawn_server(bad, NULL);
	assert_true(h_wait_exit(e, 10000, NULL));
	assert_int_equal(wait_slot(0, 0), 0);
	assert_int_equal(wait_slot(1, 0), 0);

	/* The right one is served. */
	c = h_spawn_server(url, NULL);
	assert_int_equal(wait_slot(1, 1), 1);
	assert_int_equal(h_call(NULL, "mirai.echo", "ok", NULL, 0), 0);
	/* saisei on tcp: a fresh secret; the server holding the old one is
	 * cut off and told to exit. */
	assert_int_equal(mirai_saisei(NULL, 1, 1, &fresh, &err), 0);
	assert_true(h_wait_exit(c, 5000, NULL));
	assert_non_null(fresh);
	assert_int_equal(strncmp(fresh, url, n - 34), 0);
	assert_string_not_equal(fresh, url);
	mirai_reset(NULL);
	free(url);
	free(bad);
	free(fresh);
}

static void
test_saisei(void **state)
{
	mirai_errmsg err = {{0}};
	char *url, *fresh = NULL;
	mirai *m;
	pid_t a, b;
	int64_t t0;

	(void) state;
	ws_slots(2, 0);
	url = slot_url(1);
	a   = h_spawn_server(url, NULL);
	assert_int_equal(wait_slot(1, 1), 1);
	/* A connected server holds the URL unless forced. */
	assert_int_equal(mirai_saisei(NULL, 1, 0, &fresh, &err), MIRAI_EBUSY);
	assert_non_null(strstr(err.text, "force"));
	assert_int_equal(mirai_saisei(NULL, 7, 0, &fresh, &err), MIRAI_EINVAL);

	/* Force: its running task resolves with "closed" at once. */
	assert_int_equal(mirai_call(NULL, "mirai.sleep", "20000", 5, &m), 0);
	usleep(200000);
	t0 = h_now_ms();
	assert_int_equal(mirai_saisei(NULL, 1, 1, &fresh, &err), 0);
	assert_int_equal(mirai_wait_for(m, 5000), MIRAI_ECLOSED);
	assert_true(h_now_ms() - t0 < 3000);
	mirai_free(m);
	assert_non_null(fresh);
	assert_string_not_equal(fresh, url);
	/* The cut-off server was told to exit. */
	assert_true(h_wait_exit(a, 5000, NULL));
	/* The old URL is dead; the new one works, from instance 0. */
	assert_int_equal(wait_slot(1, 0), 0);
	b = h_spawn_server(fresh, NULL);
	assert_int_equal(wait_slot(1, 1), 1);
	assert_int_equal(h_call(NULL, "mirai.echo", "ok", NULL, 0), 0);
	mirai_reset(NULL);
	assert_true(h_wait_exit(b, 5000, NULL));
	free(url);
	free(fresh);
}

static void
test_saisei_local(void **state)
{
	mirai_errmsg err = {{0}};
	char *fresh      = NULL;

	(void) state;
	local(1, NULL, 0);
	assert_int_equal(mirai_saisei(NULL, 0, 0, &fresh, &err), MIRAI_ENOTSUP);
	assert_non_null(strstr(err.text, "local slot"));
	assert_null(fresh);
	mirai_reset(NULL);
	assert_int_equal(mirai_saisei(NULL, 0, 0, &fresh, &err), MIRAI_ESTATE);
}

static void
test_cancel(void **state)
{
	char marker[256], cmd[512];
	mirai *hold, *queued, *running;
	struct stat sb;
	int64_t t0;

	(void) state;
	local(1, "testplug", 0);
	/* Queued behind a busy server: removed, never runs. */
	snprintf(marker, sizeof marker, "%s/never", h_tmpdir());
	unlink(marker);
	snprintf(cmd, sizeof cmd, "touch '%s'", marker);
	assert_int_equal(mirai_call(NULL, "mirai.sleep", "500", 3, &hold), 0);
	assert_int_equal(mirai_call(NULL, "mirai.exec", cmd, strlen(cmd), &queued), 0);
	usleep(100000);
	assert_int_equal(mirai_cancel(queued), 0);
	assert_int_equal(mirai_wait(queued), MIRAI_ECANCELED);
	assert_int_equal(mirai_error(queued), 20);
	assert_int_equal(mirai_cancel(queued), MIRAI_ESTATE);
	assert_int_equal(mirai_wait(hold), 0);
	assert_int_equal(h_call(NULL, "mirai.echo", "after", NULL, 0), 0);
	assert_int_not_equal(stat(marker, &sb), 0);
	mirai_free(queued);
	mirai_free(hold);

	/* A running command: its process group is killed. */
	snprintf(cmd, sizeof cmd, "sleep 30; touch '%s'", marker);
	assert_int_equal(mirai_call(NULL, "mirai.exec", cmd, strlen(cmd), &running), 0);
	usleep(300000);
	t0 = h_now_ms();
	assert_int_equal(mirai_cancel(running), 0);
	assert_int_equal(mirai_wait(running), MIRAI_ECANCELED);
	mirai_free(running);
	/* The server is free again at once. */
	assert_int_equal(h_call(NULL, "mirai.echo", "free", NULL, 0), 0);
	assert_true(h_now_ms() - t0 < 3000);
	assert_int_not_equal(stat(marker, &sb), 0);

	/* A C function that polls the flag. */
	assert_int_equal(mirai_call(NULL, "test.cancelwait", NULL, 0, &running), 0);
	usleep(200000);
	t0 = h_now_ms();
	assert_int_equal(mirai_cancel(running), 0);
	assert_int_equal(mirai_wait(running), MIRAI_ECANCELED);
	mirai_free(running);
	assert_int_equal(h_call(NULL, "mirai.echo", "free", NULL, 0), 0);
	assert_true(h_now_ms() - t0 < 3000);
}

/* A timed-out task whose function ignores cancellation keeps its server
 * busy: the next task waits for it rather than going there. */
static void
test_timeout_busy_server(void **state)
{
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
	mirai *a, *b;
	int64_t t0;

	(void) state;
	local(1, "testplug", 0);
	o.timeout_ms = 100;
	t0           = h_now_ms();
	assert_int_equal(mirai_call(&o, "test.busy", "1000", 4, &a), 0);
	assert_int_equal(mirai_call(NULL, "mirai.echo", "b", 1, &b), 0);
	assert_int_equal(mirai_wait(a), MIRAI_ETIMEDOUT);
	assert_true(h_now_ms() - t0 < 900);
	assert_int_equal(mirai_wait(b), 0);
	assert_true(h_now_ms() - t0 >= 950);
	mirai_free(a);
	mirai_free(b);
}

static void
run_and_kill(int retries, int want)
{
	char pidfile[256], cmd[1024], buf[32];
	mirai_status *st;
	mirai *m;
	FILE *f = NULL;
	int pid = 0;

	snprintf(pidfile, sizeof pidfile, "%s/pid", h_tmpdir());
	unlink(pidfile);
	local(2, NULL, retries);
	/* The first run writes its server's pid and takes long; a rerun
	 * finds the file and ends at once. */
	snprintf(cmd, sizeof cmd,
	    "if [ -e '%s' ]; then echo rerun; else echo $PPID > '%s'; sleep 10; "
	    "fi",
	    pidfile, pidfile);
	assert_int_equal(mirai_call(NULL, "mirai.exec", cmd, strlen(cmd), &m), 0);
	for (int k = 0; k < 500 && (f = fopen(pidfile, "r")) == NULL; k++) {
		usleep(10000);
	}
	assert_non_null(f);
	for (int k = 0; k < 100 && pid == 0; k++) {
		rewind(f);
		if (fgets(buf, sizeof buf, f) != NULL) {
			pid = atoi(buf);
		}
		if (pid == 0) {
			usleep(10000);
		}
	}
	fclose(f);
	assert_true(pid > 0);
	kill(pid, SIGKILL);
	assert_int_equal(mirai_wait_for(m, 10000), want);
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	assert_int_equal(st->retried, retries > 0 ? 1 : 0);
	mirai_status_free(st);
	mirai_free(m);
	unlink(pidfile);
	mirai_reset(NULL);
}

/* Retries mean the same with the dispatcher (thread or process) and
 * without: the task goes back to the head of the line and runs again on
 * the server that is left. */
static void
test_server_dies(void **state)
{
	static const int modes[] = {MIRAI_DISPATCHER_THREAD,
	    MIRAI_DISPATCHER_PROCESS, MIRAI_DISPATCHER_OFF};

	(void) state;
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		mode = modes[i];
		run_and_kill(0, MIRAI_ECONNRESET);
		run_and_kill(1, 0);
	}
	mode = 0;
}

static void
test_per_task_retries(void **state)
{
	static const int modes[] = {MIRAI_DISPATCHER_THREAD,
	    MIRAI_DISPATCHER_OFF};
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
	mirai *m;

	(void) state;
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		mode = modes[i];
		local(1, "testplug", 3);
		/* The profile allows 3 retries; this task asks for none. */
		o.retries = -1;
		assert_int_equal(mirai_call(&o, "test.crash", NULL, 0, &m), 0);
		assert_int_equal(mirai_wait_for(m, 10000), MIRAI_ECONNRESET);
		mirai_free(m);
		mirai_reset(NULL);
	}
	mode = 0;
}

typedef struct blocker {
	mirai *m;
	int rv;
	int64_t at;
} blocker;

static void *
blocked_call(void *arg)
{
	static const char data[1000];
	blocker *b = arg;

	b->rv = mirai_call(NULL, "mirai.echo", data, sizeof data, &b->m);
	b->at = h_now_ms();
	return NULL;
}

static void
test_backpressure(void **state)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	enum { MAX = 64 };
	mirai *ms[MAX], *hold;
	char data[1000] = {0};
	blocker b       = {0};
	pthread_t th;
	int n = 0, rv;
	int64_t t0;

	(void) state;
	d.n         = 1;
	d.max_queue = 8000;
	assert_int_equal(mirai_daemons(&d, NULL), 0);
	assert_int_equal(mirai_call(NULL, "mirai.sleep", "800", 3, &hold), 0);
	t0 = h_now_ms();
	while (n < MAX && (rv = mirai_try_call(NULL, "mirai.echo", data,
			       sizeof data, &ms[n])) == 0) {
		n++;
	}
	assert_int_equal(rv, MIRAI_EAGAIN);
	assert_true(n >= 5 && n <= 8);
	/* A blocking call waits for room. */
	pthread_create(&th, NULL, blocked_call, &b);
	pthread_join(th, NULL);
	assert_int_equal(b.rv, 0);
	assert_true(b.at - t0 >= 500);
	assert_int_equal(mirai_wait(b.m), 0);
	mirai_free(b.m);
	for (int k = 0; k < n; k++) {
		assert_int_equal(mirai_wait(ms[k]), 0);
		mirai_free(ms[k]);
	}
	mirai_free(hold);
}

static void
test_many_servers_one_port(void **state)
{
	enum { S = 64, N = 640 };
	pid_t pids[S];
	mirai *ms[N];
	mirai_status *st;
	char port[16];

	(void) state;
	ws_slots(S, 1);
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	assert_int_equal(st->nrows, S);
	/* ":PORT" of the first URL. */
	snprintf(port, sizeof port, "%s", strrchr(st->rows[0].url, ':'));
	for (int i = 0; i < S; i++) {
		/* Without secrets every slot's URL is the listener's: one
		 * port for all, and servers take the free slots. */
		assert_string_equal(st->rows[i].url, st->rows[0].url);
		assert_null(strchr(port, '/'));
		pids[i] = h_spawn_server(st->rows[i].url, NULL);
	}
	mirai_status_free(st);
	for (int i = 0; i < S; i++) {
		assert_int_equal(wait_slot((size_t) i, 1), 1);
	}
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_call(NULL, "mirai.sleep", "20", 2, &ms[i]), 0);
	}
	assert_int_equal(mirai_wait_all(ms, N, 60000), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(mirai_error(ms[i]), 0);
		mirai_free(ms[i]);
	}
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	for (int i = 0; i < S; i++) {
		/* All used. */
		assert_true(st->rows[i].complete > 0);
	}
	mirai_status_free(st);
	mirai_reset(NULL);
	for (int i = 0; i < S; i++) {
		assert_true(h_wait_exit(pids[i], 10000, NULL));
	}
}

static void
test_dispatcher_into_direct_client(void **state)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_status *st;
	char url[256], disp[4096];
	const char *argv[] = {disp, "--client", url, "--local", "-n", "2", NULL};
	pid_t p;
	int status;

	(void) state;
	d.url        = "tcp://127.0.0.1:0";
	d.dispatcher = MIRAI_DISPATCHER_OFF;
	assert_int_equal(mirai_daemons(&d, NULL), 0);
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	snprintf(url, sizeof url, "%s", st->url);
	mirai_status_free(st);
	snprintf(disp, sizeof disp, "%s", h_server());
	strcpy(strrchr(disp, '/') + 1, "mirai-dispatcher");
	p = h_spawn(argv, NULL);
	assert_int_equal(h_wait_connections(NULL, 1, 10000), 1);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(h_call(NULL, "mirai.echo", "via", NULL, 0), 0);
	}
	mirai_reset(NULL);
	assert_true(h_wait_exit(p, 10000, &status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static int
teardown(void **state)
{
	(void) state;
	h_cleanup();
	mirai_shutdown();
	rmdir(h_tmpdir());
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_matrix, reset_all),
	    cmocka_unit_test_teardown(test_fifo_order, reset_all),
	    cmocka_unit_test_teardown(test_idle_only, reset_all),
	    cmocka_unit_test_teardown(test_duplicate_refused, reset_all),
	    cmocka_unit_test_teardown(test_saisei, reset_all),
	    cmocka_unit_test_teardown(test_saisei_local, reset_all),
	    cmocka_unit_test_teardown(test_slot_secret, reset_all),
	    cmocka_unit_test_teardown(test_cancel, reset_all),
	    cmocka_unit_test_teardown(test_timeout_busy_server, reset_all),
	    cmocka_unit_test_teardown(test_server_dies, reset_all),
	    cmocka_unit_test_teardown(test_per_task_retries, reset_all),
	    cmocka_unit_test_teardown(test_backpressure, reset_all),
	    cmocka_unit_test_teardown(test_many_servers_one_port, reset_all),
	    cmocka_unit_test_teardown(test_dispatcher_into_direct_client,
		reset_all),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
