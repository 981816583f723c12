/*
 * it_control_tls: status, saisei and attaching over TLS, against real
 * mirai-dispatcher processes whose client and control URLs are
 * tls+tcp:// on loopback.  One dispatcher only proves itself with its
 * certificate; the other also requires a client certificate signed by its
 * CA (--tls-ca).  The material comes from mirai_tls_generate(), twice: a
 * second CA stands for an impostor's.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* ours: the dispatchers' material; other: a CA that signed neither. */
static char ours[300], other[300];
static char ca[320], cert[320], key[320], other_ca[320], other_cert[320],
    other_key[320];

typedef struct disp {
	pid_t pid;
	char client_url[512], control_url[512];
} disp;

/* open: proves itself only; strict: requires client certificates. */
static disp open_d, strict_d;

static void
material(char *dir, size_t len, const char *name)
{
	mirai_errmsg err = {{0}};

	snprintf(dir, len, "%s/%s", h_tmpdir(), name);
	assert_int_equal(mkdir(dir, 0700), 0);
	if (mirai_tls_generate(dir, &err) != 0) {
		fail_msg("mirai_tls_generate: %s", err.text);
	}
}

/* Start a dispatcher with one local server on a ws slot, its client and
 * control URLs tls+tcp:// on loopback, and read the URLs it prints. */
static int
start(disp *d, int require_client_cert)
{
	char exe[4096], line[512];
	const char *argv[] = {exe, "--listen", "tls+tcp://127.0.0.1:0",
	    "--control", "tls+tcp://127.0.0.1:0", "--url", "ws://127.0.0.1:0",
	    "--local", "-n", "1", "--tls-cert", cert, "--tls-key", key,
	    require_client_cert ? "--tls-ca" : NULL, ca, NULL};
	FILE *f;
	int fd;

	snprintf(exe, sizeof exe, "%s", h_server());
	strcpy(strrchr(exe, '/') + 1, "mirai-dispatcher");
	d->pid = h_spawn(argv, &fd);
	f      = fdopen(fd, "r");
	while (f != NULL && fgets(line, sizeof line, f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "MIRAI_DISPATCHER_URL=", 21) == 0) {
			snprintf(d->client_url, sizeof d->client_url, "%s",
			    line + 21);
		} else if (strncmp(line, "MIRAI_CONTROL_URL=", 18) == 0) {
			snprintf(d->control_url, sizeof d->control_url, "%s",
			    line + 18);
			break;
		}
	}
	if (f != NULL) {
		fclose(f);
	}
	return d->client_url[0] && d->control_url[0] ? 0 : -1;
}

static int
setup(void **state)
{
	(void) state;
	h_init();
	unsetenv("MIRAI_TLS_CA");
	unsetenv("MIRAI_TLS_CERT");
	unsetenv("MIRAI_TLS_KEY");
	material(ours, sizeof ours, "ours");
	material(other, sizeof other, "other");
	snprintf(ca, sizeof ca, "%s/ca.pem", ours);
	snprintf(cert, sizeof cert, "%s/cert.pem", ours);
	snprintf(key, sizeof key, "%s/key.pem", ours);
	snprintf(other_ca, sizeof other_ca, "%s/ca.pem", other);
	snprintf(other_cert, sizeof other_cert, "%s/cert.pem", other);
	snprintf(other_key, sizeof other_key, "%s/key.pem", other);
	return start(&open_d, 0) == 0 && start(&strict_d, 1) == 0 ? 0 : -1;
}

static int
teardown(void **state)
{
	int status = 0, ok = 1;

	(void) state;
	mirai_shutdown();
	kill(open_d.pid, SIGTERM);
	kill(strict_d.pid, SIGTERM);
	ok &= h_wait_exit(open_d.pid, 10000, &status) && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0;
	ok &= h_wait_exit(strict_d.pid, 10000, &status) && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0;
	h_cleanup();
	return ok ? 0 : -1;
}

static mirai_control_opts
to(const disp *d, const char *ca_file, const char *cert_file,
    const char *key_file)
{
	mirai_control_opts o = MIRAI_CONTROL_OPTS_INIT;

	o.url      = d->control_url;
	o.tls_ca   = ca_file;
	o.tls_cert = cert_file;
	o.tls_key  = key_file;
	return o;
}

/* The status through o once the local server is online (bounded). */
static int
online(const mirai_control_opts *o)
{
	int64_t end      = h_now_ms() + 20000;
	mirai_errmsg err = {{0}};
	mirai_status *st;
	int rv = -1, k = 0;

	while (k == 0 && h_now_ms() < end) {
		if ((rv = mirai_control_status(o, &st, &err)) != 0) {
			print_message("status: %s\n", err.text);
			return rv;
		}
		k = st->nrows == 1 && st->rows[0].online;
		mirai_status_free(st);
		if (k == 0) {
			usleep(20000);
		}
	}
	return k ? 0 : -1;
}

static void
test_status_with_ca(void **state)
{
	mirai_control_opts o = to(&open_d, ca, NULL, NULL);

	(void) state;
	assert_int_equal(strncmp(open_d.control_url, "tls+tcp://", 10), 0);
	assert_int_equal(online(&o), 0);
}

/* No CA: refused before anything is dialed, with a message that says
 * what to give.  The environment's CA serves mirai_status_query(). */
static void
test_status_ca_from_env(void **state)
{
	mirai_control_opts o = to(&open_d, NULL, NULL, NULL);
	mirai_errmsg err     = {{0}};
	mirai_status *st;

	(void) state;
	assert_int_equal(mirai_control_status(&o, &st, &err), MIRAI_ENOTSUP);
	assert_non_null(strstr(err.text, "MIRAI_TLS_CA"));
	assert_int_equal(mirai_status_query(open_d.control_url, &st, &err),
	    MIRAI_ENOTSUP);
	setenv("MIRAI_TLS_CA", ca, 1);
	assert_int_equal(mirai_status_query(open_d.control_url, &st, &err), 0);
	assert_int_equal(st->nrows, 1);
	mirai_status_free(st);
	unsetenv("MIRAI_TLS_CA");
}

/* A dispatcher another CA signed is not believed. */
static void
test_status_wrong_ca(void **state)
{
	mirai_control_opts o = to(&open_d, other_ca, NULL, NULL);
	mirai_errmsg err     = {{0}};
	mirai_status *st;
	char base[512];
	size_t n = strlen(open_d.control_url);

	(void) state;
	assert_int_equal(mirai_control_status(&o, &st, &err), MIRAI_ECRYPTO);
	/* The URL is named, its secret (".../<secret>/0") is not. */
	assert_true(n > 35);
	snprintf(base, sizeof base, "%.*s", (int) (n - 35), open_d.control_url);
	assert_non_null(strstr(err.text, base));
	assert_null(strstr(err.text, open_d.control_url + n - 34));
}

static void
test_saisei_over_tls(void **state)
{
	mirai_control_opts o = to(&open_d, ca, NULL, NULL);
	mirai_errmsg err     = {{0}};
	char *fresh          = NULL;

	(void) state;
	assert_int_equal(online(&o), 0);
	/* The server is connected: refused unless forced, which proves the
	 * request reached the dispatcher and its answer came back. */
	assert_int_equal(mirai_control_saisei(&o, 0, 0, &fresh, &err),
	    MIRAI_EBUSY);
	assert_int_equal(mirai_control_saisei(&o, 0, 1, &fresh, &err), 0);
	assert_non_null(fresh);
	assert_int_equal(strncmp(fresh, "ws://127.0.0.1:", 15), 0);
	free(fresh);
}

/* --tls-ca on the dispatcher: the CA alone no longer gets an answer; a
 * certificate the CA signed does, one another CA signed does not. */
static void
test_client_certificate(void **state)
{
	mirai_control_opts bare  = to(&strict_d, ca, NULL, NULL);
	mirai_control_opts mine  = to(&strict_d, ca, cert, key);
	mirai_control_opts forge = to(&strict_d, ca, other_cert, other_key);
	mirai_errmsg err         = {{0}};
	mirai_status *st;

	(void) state;
	assert_int_not_equal(mirai_control_status(&bare, &st, &err), 0);
	assert_int_not_equal(mirai_control_status(&forge, &st, &err), 0);
	assert_int_equal(online(&mine), 0);
	setenv("MIRAI_TLS_CA", ca, 1);
	setenv("MIRAI_TLS_CERT", cert, 1);
	setenv("MIRAI_TLS_KEY", key, 1);
	assert_int_equal(mirai_status_query(strict_d.control_url, &st, &err), 0);
	mirai_status_free(st);
	unsetenv("MIRAI_TLS_CA");
	unsetenv("MIRAI_TLS_CERT");
	unsetenv("MIRAI_TLS_KEY");
}

/* A client attaches over TLS with the CA, and runs tasks. */
static void
test_attach_over_tls(void **state)
{
	mirai_daemons_opts o = MIRAI_DAEMONS_OPTS_INIT;
	mirai_control_opts c = to(&open_d, ca, NULL, NULL);
	mirai_errmsg err     = {{0}};
	char buf[64];

	(void) state;
	assert_int_equal(online(&c), 0);
	o.url               = open_d.client_url;
	o.attach            = 1;
	o.attach_timeout_ms = 5000;
	assert_int_equal(mirai_daemons(&o, &err), MIRAI_ENOTSUP);
	o.tls_ca = ca;
	if (mirai_daemons(&o, &err) != 0) {
		fail_msg("attach: %s", err.text);
	}
	for (int i = 0; i < 5; i++) {
		assert_int_equal(h_call(NULL, "mirai.echo", "over tls", buf,
				     sizeof buf),
		    0);
		assert_string_equal(buf, "over tls");
	}
	mirai_reset(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_status_with_ca),
	    cmocka_unit_test(test_status_ca_from_env),
	    cmocka_unit_test(test_status_wrong_ca),
	    cmocka_unit_test(test_client_certificate),
	    cmocka_unit_test(test_attach_over_tls),
	    /* Last: it cuts the server off. */
	    cmocka_unit_test(test_saisei_over_tls),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
