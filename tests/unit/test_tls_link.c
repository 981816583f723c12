/*
 * test_tls_link.c: TLS end to end through the public API.  A per-launch CA
 * and a certificate for MIRAI__TLS_NAME are made with lib/tls.c and
 * written to owner-only files; a client listens on tls+tcp:// (no
 * dispatcher) and on wss:// slots (thread dispatcher); real mirai-server
 * processes dial with --tls-ca.  A server trusting another CA cannot
 * connect and gets no task; a TLS URL without a certificate is refused at
 * setup.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../lib/internal.h"

static char dir[] = "/tmp/mirai-tls-link-XXXXXX";
static char *ca_file, *other_file, *cert_file, *key_file;

static pid_t
server(const char *url, const char *ca, int once)
{
	const char *exe    = getenv("MIRAI_SERVER");
	const char *argv[] = {exe, "--tls-ca", ca, "--url", url,
	    once ? "--dial-once" : NULL, NULL};
	pid_t pid;

	assert_int_equal(mirai__spawn(argv, NULL, -1, -1, -1, &pid), 0);
	return pid;
}

/* Wait up to ms for pid; its exit status, or -1 if it still runs. */
static int
reap(pid_t pid, int ms)
{
	int status;

	for (int i = 0; i < ms / 10; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
		}
		usleep(10000);
	}
	return -1;
}

static void
kill_reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static int
setup(void **state)
{
	mirai__tls_ca *ca, *other;
	char *cert, *key;

	(void) state;
	if (getenv("MIRAI_SERVER") == NULL) {
		return 0;
	}
	assert_non_null(mkdtemp(dir));
	assert_int_equal(mirai__tls_ca_create(&ca, "launch CA", NULL), 0);
	assert_int_equal(mirai__tls_ca_create(&other, "other CA", NULL), 0);
	assert_int_equal(
	    mirai__tls_cert_issue(ca, MIRAI__TLS_NAME, &cert, &key, NULL), 0);
	assert_int_equal(mirai__tls_write_private(dir, "ca.pem",
			     mirai__tls_ca_pem(ca), &ca_file, NULL),
	    0);
	assert_int_equal(mirai__tls_write_private(dir, "other.pem",
			     mirai__tls_ca_pem(other), &other_file, NULL),
	    0);
	assert_int_equal(
	    mirai__tls_write_private(dir, "cert.pem", cert, &cert_file, NULL), 0);
	assert_int_equal(
	    mirai__tls_write_private(dir, "key.pem", key, &key_file, NULL), 0);
	free(cert);
	mirai__tls_secret_free(key);
	mirai__tls_ca_destroy(ca);
	mirai__tls_ca_destroy(other);
	return 0;
}

static int
teardown(void **state)
{
	char *files[] = {ca_file, other_file, cert_file, key_file};

	(void) state;
	mirai_shutdown();
	for (size_t i = 0; i < 4; i++) {
		if (files[i] != NULL) {
			unlink(files[i]);
			free(files[i]);
		}
	}
	rmdir(dir);
	return 0;
}

static void
echo(const char *profile, const char *text)
{
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
	const void *out;
	size_t len;
	mirai *m;

	o.profile = profile;
	assert_int_equal(mirai_call(&o, "mirai.echo", text, strlen(text), &m), 0);
	assert_int_equal(mirai_wait_for(m, 20000), 0);
	out = mirai_data(m, &len);
	assert_int_equal(len, strlen(text));
	assert_memory_equal(out, text, len);
	mirai_free(m);
}

/* One profile listening at url (TLS), served by a server trusting the CA,
 * refusing one trusting another CA. */
static void
run(const char *profile, const char *url, int dispatcher)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_status *st;
	mirai_errmsg err;
	char surl[512];
	pid_t bad, good;

	if (getenv("MIRAI_SERVER") == NULL) {
		skip();
	}
	d.profile    = profile;
	d.url        = url;
	d.dispatcher = dispatcher;
	d.n          = dispatcher == MIRAI_DISPATCHER_OFF ? 0 : 1;
	/* Without a certificate: refused at setup, saying what is missing. */
	assert_int_equal(mirai_daemons(&d, &err), MIRAI_ENOTSUP);
	assert_non_null(strstr(err.text, "certificate"));
	d.tls_cert = cert_file;
	d.tls_key  = key_file;
	if (mirai_daemons(&d, &err) != 0) {
		fail_msg("daemons: %s", err.text);
	}
	assert_int_equal(mirai_status_get(profile, &st), 0);
	snprintf(surl, sizeof surl, "%s",
	    dispatcher == MIRAI_DISPATCHER_OFF ? st->url : st->rows[0].url);
	mirai_status_free(st);
	assert_int_equal(strncmp(surl, url, 6), 0);

	/* A server that trusts another CA cannot connect: its first dial
	 * fails, and it gets nothing. */
	bad = server(surl, other_file, 1);
	assert_int_equal(reap(bad, 10000), 1);
	good = server(surl, ca_file, 0);
	echo(profile, "over TLS, checked by the CA");
	assert_int_equal(mirai_reset(profile), 0);
	if (reap(good, 5000) < 0) {
		kill_reap(good);
	}
}

static void
test_direct_tls_tcp(void **state)
{
	(void) state;
	run("tls-direct", "tls+tcp://127.0.0.1:0", MIRAI_DISPATCHER_OFF);
}

static void
test_dispatcher_wss(void **state)
{
	(void) state;
	run("tls-wss", "wss://127.0.0.1:0", MIRAI_DISPATCHER_THREAD);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_direct_tls_tcp),
		cmocka_unit_test(test_dispatcher_wss),
	};

	if (getenv("MIRAI_TEST_LOG") != NULL) {
		mirai_log_set(mirai_log_stderr, "test_tls_link", MIRAI_LOG_DEBUG);
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
