/*
 * it_attach: a dispatcher started on its own (as mirai-launch does) that
 * clients attach to, one at a time, and that answers status requests of
 * any process on its control URL.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static pid_t disp;
static char client_url[512], control_url[512];

/* Start mirai-dispatcher --listen --control with 2 local servers and read
 * the URLs it prints. */
static int
setup(void **state)
{
	const char *args[] = {"--listen", "tcp://127.0.0.1:0", "--control",
	    "tcp://127.0.0.1:0", "--local", "-n", "2", NULL};

	(void) state;
	h_init();
	disp = h_spawn_dispatcher(args, NULL, client_url, control_url,
	    sizeof client_url);
	return client_url[0] && control_url[0] ? 0 : -1;
}

static int
teardown(void **state)
{
	int status = 0;

	(void) state;
	mirai_shutdown();
	kill(disp, SIGTERM);
	/* SIGTERM stops it; exit code 0. */
	if (!h_wait_exit(disp, 10000, &status)) {
		h_cleanup();
		return -1;
	}
	h_cleanup();
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Reset every profile a test may have left set, so that one failure does
 * not fail the tests after it. */
static int
reset_all(void **state)
{
	(void) state;
	mirai_reset(NULL);
	mirai_reset("first");
	mirai_reset("second");
	return 0;
}

/* The dispatcher listens for clients before its local servers are up;
 * wait (bounded) until the control URL shows n of them online. */
static int
online_within(int n, int64_t ms)
{
	int64_t end = h_now_ms() + ms;
	mirai_errmsg err = {{0}};
	mirai_status *st;
	int k = -1;

	while (h_now_ms() < end) {
		if (mirai_status_query(control_url, &st, &err) == 0) {
			k = 0;
			for (size_t i = 0; i < st->nrows; i++) {
				k += st->rows[i].online;
			}
			mirai_status_free(st);
			if (k >= n) {
				break;
			}
		}
		usleep(20000);
	}
	return k;
}

static void
test_attach_and_status(void **state)
{
	mirai_errmsg err = {{0}};
	mirai_status *st;
	char buf[64];

	(void) state;
	assert_int_equal(mirai_attach(NULL, client_url, 5000, &err), 0);
	assert_int_equal(online_within(2, 20000), 2);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(h_call(NULL, "mirai.echo", "hi", buf, sizeof buf), 0);
		assert_string_equal(buf, "hi");
	}
	/* The attached client sees the matrix... */
	assert_int_equal(mirai_status_get(NULL, &st), 0);
	assert_int_equal(st->dispatcher, 1);
	assert_int_equal(st->connections, 1);
	assert_int_equal(st->nrows, 2);
	assert_int_equal(st->completed, 20);
	mirai_status_free(st);
	/* ...and so does anyone at the control URL, at the same time. */
	assert_int_equal(mirai_status_query(control_url, &st, &err), 0);
	assert_int_equal(st->nrows, 2);
	assert_int_equal(st->rows[0].online + st->rows[1].online, 2);
	assert_int_equal(st->completed, 20);
	mirai_status_free(st);
	assert_int_equal(mirai_saisei_query(control_url, 0, 0, NULL, &err),
	    MIRAI_ENOTSUP);
	/* Detach: the dispatcher stays for the next client. */
	assert_int_equal(mirai_reset(NULL), 0);
	assert_int_equal(mirai_attach(NULL, client_url, 5000, &err), 0);
	assert_int_equal(h_call(NULL, "mirai.echo", "again", buf, sizeof buf), 0);
	assert_int_equal(mirai_reset(NULL), 0);
}

static void *
attach_waiting(void *arg)
{
	mirai_errmsg err = {{0}};

	*(int *) arg = mirai_attach("second", client_url, 10000, &err);
	return NULL;
}

static void
test_one_client_at_a_time(void **state)
{
	mirai_errmsg err = {{0}};
	int64_t t0;

	(void) state;
	assert_int_equal(mirai_attach("first", client_url, 5000, &err), 0);
	t0 = h_now_ms();
	assert_int_equal(mirai_attach("second", client_url, 500, &err),
	    MIRAI_ETIMEDOUT);
	assert_true(h_now_ms() - t0 >= 450);
	assert_non_null(strstr(err.text, "one client at a time"));
	assert_int_equal(h_call("first", "mirai.echo", "x", NULL, 0), 0);
	mirai_reset("first");
	assert_int_equal(mirai_attach("second", client_url, 5000, &err), 0);
	assert_int_equal(h_call("second", "mirai.echo", "x", NULL, 0), 0);
	mirai_reset("second");

	/* A client dialing while another is attached waits in line and is
	 * attached as soon as the first detaches. */
	{
		pthread_t th;
		int rv = -1;
		assert_int_equal(mirai_attach("first", client_url, 5000, &err), 0);
		assert_int_equal(pthread_create(&th, NULL, attach_waiting, &rv), 0);
		usleep(300000);
		t0 = h_now_ms();
		mirai_reset("first");
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(rv, 0);
		assert_true(h_now_ms() - t0 < 5000);
		assert_int_equal(h_call("second", "mirai.echo", "y", NULL, 0), 0);
		mirai_reset("second");
	}
}

/* A detaching client's queued work is dropped and its running task
 * cancelled; the next client (whose ids start over) is not confused by
 * late results. */
static void
test_detach_drops_work(void **state)
{
	mirai_errmsg err = {{0}};
	mirai *ms[6];
	char buf[64];

	(void) state;
	assert_int_equal(mirai_attach(NULL, client_url, 5000, &err), 0);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(mirai_call(NULL, "mirai.sleep", "3000", 4, &ms[i]), 0);
	}
	usleep(200000);
	assert_int_equal(mirai_reset(NULL), 0);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(mirai_wait_for(ms[i], 2000), MIRAI_ECLOSED);
		mirai_free(ms[i]);
	}
	assert_int_equal(mirai_attach(NULL, client_url, 5000, &err), 0);
	int64_t t0 = h_now_ms();
	for (int i = 0; i < 4; i++) {
		assert_int_equal(h_call(NULL, "mirai.echo", "new", buf, sizeof buf), 0);
		assert_string_equal(buf, "new");
	}
	/* The old sleeps were cancelled: no 3 s wait for a free server. */
	assert_true(h_now_ms() - t0 < 2000);
	mirai_reset(NULL);
}

/* 32 tasks of 4 MiB submitted by a thread of their own. */
typedef struct pacer {
	atomic_int submitted;
	atomic_int stop; /* set before the reset: later calls would go to
	                    one-shot servers */
	int rv;
	mirai *ms[32];
} pacer;

static void *
pace_thread(void *arg)
{
	pacer *pc  = arg;
	size_t len = (size_t) 4 << 20;
	char *buf  = calloc(1, len);

	pc->rv = buf == NULL ? MIRAI_ENOMEM : 0;
	for (int i = 0; i < 32 && pc->rv == 0 && !atomic_load(&pc->stop); i++) {
		if ((pc->rv = mirai_call(NULL, "mirai.echo", buf, len, &pc->ms[i])) == 0) {
			atomic_fetch_add(&pc->submitted, 1);
		}
	}
	free(buf);
	return NULL;
}

/* With its dispatcher stopped, a submitter waits once more than 16 MiB of
 * tasks cannot be handed over; mirai_try_call() does not; a reset lets
 * the waiting submitter go. */
static void
test_submit_paced(void **state)
{
	mirai_errmsg err = {{0}};
	pacer pc         = {0};
	struct timespec ts;
	pthread_t th;
	mirai *t;
	int k;

	(void) state;
	assert_int_equal(mirai_attach(NULL, client_url, 5000, &err), 0);
	assert_int_equal(online_within(2, 20000), 2);
	assert_int_equal(kill(disp, SIGSTOP), 0);
	assert_int_equal(pthread_create(&th, NULL, pace_thread, &pc), 0);
	usleep(1000000);
	k = atomic_load(&pc.submitted);
	/* Loopback buffers take a few MiB, the pace 16: not 128. */
	assert_true(k >= 1 && k < 32);
	assert_int_equal(mirai_try_call(NULL, "mirai.echo", "x", 1, &t), 0);
	atomic_store(&pc.stop, 1);
	assert_int_equal(mirai_reset(NULL), 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	k = pthread_timedjoin_np(th, NULL, &ts);
	kill(disp, SIGCONT);
	assert_int_equal(k, 0);
	/* The call waiting went in before the reset or was refused by it;
	 * either way nothing ran. */
	assert_true(pc.rv == 0 || pc.rv == MIRAI_ECLOSED);
	for (int i = 0; i < atomic_load(&pc.submitted); i++) {
		assert_int_equal(mirai_wait_for(pc.ms[i], 5000), MIRAI_ECLOSED);
		mirai_free(pc.ms[i]);
	}
	assert_int_equal(mirai_wait_for(t, 5000), MIRAI_ECLOSED);
	mirai_free(t);
	/* The dispatcher serves the next client. */
	assert_int_equal(mirai_attach(NULL, client_url, 5000, &err), 0);
	assert_int_equal(h_call(NULL, "mirai.echo", "after", NULL, 0), 0);
	mirai_reset(NULL);
}

static void
test_attach_errors(void **state)
{
	mirai_errmsg err = {{0}};

	(void) state;
	unsetenv("MIRAI_DISPATCHER_URL");
	assert_int_equal(mirai_attach(NULL, NULL, 100, &err), MIRAI_EINVAL);
	assert_non_null(strstr(err.text, "MIRAI_DISPATCHER_URL"));
	setenv("MIRAI_DISPATCHER_URL", client_url, 1);
	assert_int_equal(mirai_attach(NULL, NULL, 5000, &err), 0);
	assert_int_equal(h_call(NULL, "mirai.echo", "env", NULL, 0), 0);
	mirai_reset(NULL);
	unsetenv("MIRAI_CONTROL_URL");
	mirai_status *st;
	assert_int_equal(mirai_status_query(NULL, &st, &err), MIRAI_EINVAL);
	assert_int_not_equal(mirai_status_query("tcp://127.0.0.1:1", &st, &err),
	    0);
	assert_non_null(strstr(err.text, "127.0.0.1:1"));
}

/* The client and control URLs are tcp: each ends in a secret, and a
 * client or asker without it is refused at its HELLO. */
static void
test_secrets(void **state)
{
	mirai_errmsg err = {{0}};
	mirai_status *st;
	char base[512], off[512];
	size_t n = strlen(client_url), m = strlen(control_url);

	(void) state;
	assert_true(n > 35 && strcmp(client_url + n - 2, "/0") == 0 &&
	    client_url[n - 35] == '/');
	assert_true(m > 35 && strcmp(control_url + m - 2, "/0") == 0);
	assert_int_not_equal(strcmp(client_url + n - 34, control_url + m - 34),
	    0);
	/* Attach: no secret, then one digit off. */
	snprintf(base, sizeof base, "%.*s", (int) (n - 35), client_url);
	assert_int_equal(mirai_attach(NULL, base, 5000, &err), MIRAI_EPERM);
	assert_non_null(strstr(err.text, "refused"));
	snprintf(off, sizeof off, "%s", client_url);
	off[n - 3] = off[n - 3] == 'a' ? 'b' : 'a';
	assert_int_equal(mirai_attach(NULL, off, 5000, &err), MIRAI_EPERM);
	/* Status and saisei: the same. */
	snprintf(base, sizeof base, "%.*s", (int) (m - 35), control_url);
	assert_int_equal(mirai_status_query(base, &st, &err), MIRAI_EPERM);
	assert_non_null(strstr(err.text, "lacks its secret"));
	assert_int_equal(mirai_saisei_query(base, 0, 1, NULL, &err),
	    MIRAI_EPERM);
	/* The dispatcher took no harm: the right URLs work. */
	assert_int_equal(mirai_attach(NULL, client_url, 5000, &err), 0);
	assert_int_equal(h_call(NULL, "mirai.echo", "ok", NULL, 0), 0);
	assert_int_equal(mirai_status_query(control_url, &st, &err), 0);
	assert_int_equal(st->nrows, 2);
	mirai_status_free(st);
	mirai_reset(NULL);
}

static int
copy_hook(void *arg, const void *in, size_t len, void **out, size_t *out_len)
{
	(void) arg;
	if ((*out = malloc(len > 0 ? len : 1)) == NULL) {
		return MIRAI_ENOMEM;
	}
	memcpy(*out, in, len);
	*out_len = len;
	return 0;
}

/* Attaching checks its settings as mirai_daemons() does: half a hook is
 * refused with a message, before anything is set (it used to attach and
 * then call the missing function at the first task). */
static void
test_attach_bad_hook(void **state)
{
	static const mirai_hook no_decode = {"half", copy_hook, NULL, NULL, NULL};
	static const mirai_hook no_encode = {"half", NULL, copy_hook, NULL, NULL};
	static const mirai_hook no_name   = {NULL, copy_hook, copy_hook, NULL,
	    NULL};
	const mirai_hook *bad[] = {&no_decode, &no_encode, &no_name};
	mirai_daemons_opts o    = MIRAI_DAEMONS_OPTS_INIT;
	mirai_status *st;

	(void) state;
	o.url               = client_url;
	o.attach            = 1;
	o.attach_timeout_ms = 5000;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		mirai_errmsg err = {{0}};
		o.hook           = bad[i];
		assert_int_equal(mirai_daemons(&o, &err), MIRAI_EINVAL);
		assert_non_null(strstr(err.text, "serialization hook"));
		assert_int_equal(mirai_status_get(NULL, &st), 0);
		assert_int_equal(st->set, 0);
		mirai_status_free(st);
	}
	/* The same attach with a whole hook works, and the dispatcher was
	 * not taken by the refused ones. */
	static const mirai_hook whole = {"whole", copy_hook, copy_hook, NULL,
	    NULL};
	mirai_errmsg err = {{0}};
	o.hook           = &whole;
	assert_int_equal(mirai_daemons(&o, &err), 0);
	mirai_reset(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_attach_and_status, reset_all),
	    cmocka_unit_test_teardown(test_one_client_at_a_time, reset_all),
	    cmocka_unit_test_teardown(test_detach_drops_work, reset_all),
	    cmocka_unit_test_teardown(test_submit_paced, reset_all),
	    cmocka_unit_test_teardown(test_attach_errors, reset_all),
	    cmocka_unit_test_teardown(test_secrets, reset_all),
	    cmocka_unit_test_teardown(test_attach_bad_hook, reset_all),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
