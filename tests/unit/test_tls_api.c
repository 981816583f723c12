/*
 * test_tls_api.c: mirai_tls_generate(), the public way to make TLS
 * material.  The files it writes are read back with mbedTLS: owner-only,
 * the certificate signed by the CA and valid for the name dialers verify,
 * the key the certificate's.  A table of refusals (no directory, one
 * others can write to, files already there) checks that nothing is left
 * behind and nothing replaced.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include <mirai.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* The name the library's dialers verify (MIRAI__TLS_NAME). */
#define DIALER_NAME "mirai-dispatcher.invalid"

static const char *const files[] = {"ca.pem", "cert.pem", "key.pem"};
static char root[] = "/tmp/mirai-tls-api-XXXXXX";

static void
path_of(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

/* A fresh owner-only directory under root, with mode. */
static void
make_dir(char *buf, size_t len, const char *name, mode_t mode)
{
	path_of(buf, len, root, name);
	assert_int_equal(mkdir(buf, 0700), 0);
	assert_int_equal(chmod(buf, mode), 0);
}

/* Remove dir's three files (those present) and dir. */
static void
remove_dir(const char *dir)
{
	char p[256];

	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		path_of(p, sizeof p, dir, files[i]);
		unlink(p);
	}
	chmod(dir, 0700);
	rmdir(dir);
}

static int
exists(const char *dir, const char *name)
{
	char p[256];
	struct stat st;

	path_of(p, sizeof p, dir, name);
	return lstat(p, &st) == 0;
}

static int
setup(void **state)
{
	(void) state;
	return mkdtemp(root) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	(void) state;
	return rmdir(root);
}

static void
parse_crt(mbedtls_x509_crt *crt, const char *dir, const char *name)
{
	char p[256];

	path_of(p, sizeof p, dir, name);
	mbedtls_x509_crt_init(crt);
	assert_int_equal(mbedtls_x509_crt_parse_file(crt, p), 0);
}

static void
test_generate(void **state)
{
	char dir[128], dir2[128], p[256];
	mirai_errmsg err;
	mbedtls_x509_crt ca, ca2, leaf;
	mbedtls_pk_context key;
	struct stat st;
	uint32_t flags;

	(void) state;
	make_dir(dir, sizeof dir, "ok", 0700);
	make_dir(dir2, sizeof dir2, "ok2", 0755);
	if (mirai_tls_generate(dir, &err) != 0) {
		fail_msg("generate: %s", err.text);
	}
	assert_int_equal(mirai_tls_generate(dir2, NULL), 0);
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		path_of(p, sizeof p, dir, files[i]);
		assert_int_equal(lstat(p, &st), 0);
		assert_true(S_ISREG(st.st_mode));
		assert_int_equal(st.st_mode & 0777, 0600);
		assert_int_equal(st.st_uid, geteuid());
	}

	parse_crt(&ca, dir, "ca.pem");
	parse_crt(&ca2, dir2, "ca.pem");
	parse_crt(&leaf, dir, "cert.pem");
	assert_int_equal(ca.ca_istrue, 1);
	assert_int_equal(leaf.ca_istrue, 0);
	/* Signed by its CA and valid for the name dialers check ... */
	assert_int_equal(mbedtls_x509_crt_verify(&leaf, &ca, NULL, DIALER_NAME,
			     &flags, NULL, NULL),
	    0);
	/* ... not for another name, and not by another call's CA. */
	assert_int_not_equal(mbedtls_x509_crt_verify(&leaf, &ca, NULL,
				 "mirai-server.invalid", &flags, NULL, NULL),
	    0);
	assert_int_not_equal(mbedtls_x509_crt_verify(&leaf, &ca2, NULL,
				 DIALER_NAME, &flags, NULL, NULL),
	    0);

	/* The key is the certificate's. */
	path_of(p, sizeof p, dir, "key.pem");
	mbedtls_pk_init(&key);
	assert_int_equal(mbedtls_pk_parse_keyfile(&key, p, NULL), 0);
	assert_int_equal(mbedtls_pk_check_pair(&leaf.pk, &key), 0);

	/* A second call into the same directory replaces nothing. */
	assert_int_equal(mirai_tls_generate(dir, &err), MIRAI_EEXIST);
	assert_non_null(strstr(err.text, "ca.pem"));
	assert_int_equal(mbedtls_x509_crt_verify(&leaf, &ca, NULL, DIALER_NAME,
			     &flags, NULL, NULL),
	    0);

	mbedtls_pk_free(&key);
	mbedtls_x509_crt_free(&leaf);
	mbedtls_x509_crt_free(&ca2);
	mbedtls_x509_crt_free(&ca);
	remove_dir(dir);
	remove_dir(dir2);
}

/*
 * Refusals: the error, a word of its message, and that the files this
 * call would write are not there afterwards (a file placed beforehand
 * stays, unchanged).
 */
static void
test_refusals(void **state)
{
	static const struct {
		const char *what;
		const char *dir;     /* NULL: NULL; "" : ""; else under root */
		mode_t mode;         /* 0: do not make the directory */
		const char *present; /* a file made beforehand, or NULL */
		int rv;
		const char *text;
	} cases[] = {
	    {"NULL directory", NULL, 0, NULL, MIRAI_EINVAL, "no directory"},
	    {"empty directory", "", 0, NULL, MIRAI_EINVAL, "no directory"},
	    {"missing directory", "missing", 0, NULL, MIRAI_ENOENT, "missing"},
	    {"group-writable", "gw", 0770, NULL, MIRAI_EPERM, "only its owner"},
	    {"world-writable", "ww", 0777, NULL, MIRAI_EPERM, "only its owner"},
	    {"ca.pem there", "ca", 0700, "ca.pem", MIRAI_EEXIST, "ca.pem"},
	    {"cert.pem there", "cert", 0700, "cert.pem", MIRAI_EEXIST,
		"cert.pem"},
	    {"key.pem there", "key", 0700, "key.pem", MIRAI_EEXIST, "key.pem"},
	};

	(void) state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char dir[128], p[256], buf[16] = "";
		mirai_errmsg err = {{0}};
		const char *arg = cases[i].dir;
		FILE *f;

		if (cases[i].dir != NULL && *cases[i].dir != '\0') {
			path_of(dir, sizeof dir, root, cases[i].dir);
			if (cases[i].mode != 0) {
				make_dir(dir, sizeof dir, cases[i].dir,
				    cases[i].mode);
			}
			arg = dir;
		}
		if (cases[i].present != NULL) {
			path_of(p, sizeof p, dir, cases[i].present);
			assert_non_null(f = fopen(p, "w"));
			fputs("mine", f);
			fclose(f);
		}
		if (mirai_tls_generate(arg, &err) != cases[i].rv) {
			fail_msg("%s: expected %s, got '%s'", cases[i].what,
			    mirai_strerror(cases[i].rv), err.text);
		}
		if (strstr(err.text, cases[i].text) == NULL) {
			fail_msg("%s: '%s' does not say '%s'", cases[i].what,
			    err.text, cases[i].text);
		}
		if (cases[i].mode == 0) {
			continue;
		}
		for (size_t k = 0; k < ARRAY_LEN(files); k++) {
			int mine = cases[i].present != NULL &&
			    strcmp(files[k], cases[i].present) == 0;
			if (exists(dir, files[k]) != mine) {
				fail_msg("%s: %s %s", cases[i].what, files[k],
				    mine ? "removed" : "left behind");
			}
		}
		if (cases[i].present != NULL) {
			assert_non_null(f = fopen(p, "r"));
			assert_non_null(fgets(buf, sizeof buf, f));
			fclose(f);
			assert_string_equal(buf, "mine");
		}
		remove_dir(dir);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
