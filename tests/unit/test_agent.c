/*
 * test_agent.c: the agent setup (lib/codec.c encodes and decodes it,
 * lib/agent.c reads it from a descriptor or an owner-only file): what
 * mirai-launch writes to a host agent's stdin, or to a file under pbsdsh.
 * Values must arrive whole whatever bytes they hold (long ones, newlines,
 * text that looks like a record), the reader must take exactly the
 * setup's bytes, an agent keeps only its node's URLs, a setup file open
 * to others or not the user's is refused, and every malformed setup is
 * an error, never a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../lib/codec.h"
#include "mirai.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Decode buf[0..len) as mirai_agent_read() does, without a descriptor:
 * 0 and *out, or the error; *used: the bytes taken. */
static int
decode(const uint8_t *buf, size_t len, const char *node,
    mirai_agent_setup **out, size_t *used)
{
	mirai__agent_dec d;
	mirai_errmsg err;
	size_t off = 0;
	int rv;

	mirai__agent_dec_init(&d, node);
	do {
		size_t want = mirai__agent_want(&d);
		uint8_t *copy;
		if (len - off < want) {
			mirai__agent_dec_fini(&d);
			return MIRAI_ECLOSED;
		}
		/* An exact copy: a read past the record is a sanitizer error. */
		copy = malloc(want > 0 ? want : 1);
		assert_non_null(copy);
		memcpy(copy, buf + off, want);
		rv = mirai__agent_feed(&d, copy, want, &err);
		free(copy);
		off += want;
	} while (rv == 0);
	if (used != NULL) {
		*used = off;
	}
	if (rv != 1) {
		mirai__agent_dec_fini(&d);
		return rv;
	}
	*out = mirai__agent_dec_take(&d);
	mirai__agent_dec_fini(&d);
	assert_non_null(*out);
	return 0;
}

static char *
value_of(size_t n, char c)
{
	char *v = malloc(n + 1);

	assert_non_null(v);
	memset(v, c, n);
	v[n] = '\0';
	return v;
}

/* ---- values arrive whole -------------------------------------------- */

static void
test_env_roundtrip(void **state)
{
	char *big = value_of(100 * 1024, 'x'), *bigvar;
	/* The old line protocol's end, and this one's end record, as text. */
	static const char endish[] = {'Z', 1, 1, 1, 1, 0};
	char withend[64];
	struct {
		const char *entry;
	} rows[] = {
	    {"EMPTY="},
	    {"A=b=c=d"},
	    {"NL=line one\nline two\n\nend\nenv X=1\nurl ws://evil/1\n"},
	    {"TRAIL=ends in a newline\n"},
	    {"CR=a\r\nb"},
	    {NULL}, /* 100 KB */
	    {NULL}, /* holds an end-record look-alike */
	};
	mirai__wbuf w = {0};
	mirai_agent_setup *s;
	size_t used;

	(void) state;
	bigvar = malloc(strlen(big) + 5);
	assert_non_null(bigvar);
	sprintf(bigvar, "BIG=%s", big);
	rows[5].entry = bigvar;
	snprintf(withend, sizeof withend, "ODD=%s|end", endish);
	rows[6].entry = withend;
	mirai__agent_begin(&w);
	mirai__agent_url(&w, "ws://h:1/t/0", 3);
	mirai__agent_url(&w, "ws://h:1/t/1", -1);
	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		assert_int_equal(mirai__agent_env_ok(rows[i].entry), 0);
		mirai__agent_env(&w, rows[i].entry);
	}
	mirai__agent_end(&w);
	assert_false(w.failed);
	assert_int_equal(decode(w.p, w.len, NULL, &s, &used), 0);
	assert_int_equal(used, w.len);
	assert_int_equal(s->nurls, 2);
	assert_string_equal(s->urls[0], "ws://h:1/t/0");
	assert_int_equal(s->bind_index[0], 3);
	assert_string_equal(s->urls[1], "ws://h:1/t/1");
	assert_int_equal(s->bind_index[1], -1);
	assert_int_equal(s->nenv, ARRAY_LEN(rows));
	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		assert_string_equal(s->env[i], rows[i].entry);
	}
	mirai_agent_setup_free(s);
	free(w.p);
	free(bigvar);
	free(big);
}

static void
test_many_records(void **state)
{
	mirai__wbuf w = {0};
	mirai_agent_setup *s;
	char e[32], u[32];

	(void) state;
	mirai__agent_begin(&w);
	for (int i = 0; i < MIRAI_AGENT_MAX_URLS; i++) {
		snprintf(u, sizeof u, "tcp://h:%d", 1000 + i);
		mirai__agent_url(&w, u, i);
	}
	for (int i = 0; i < MIRAI_AGENT_MAX_ENV; i++) {
		snprintf(e, sizeof e, "V%d=%d", i, i * 7);
		mirai__agent_env(&w, e);
	}
	mirai__agent_end(&w);
	assert_int_equal(decode(w.p, w.len, NULL, &s, NULL), 0);
	assert_int_equal(s->nurls, MIRAI_AGENT_MAX_URLS);
	assert_int_equal(s->nenv, MIRAI_AGENT_MAX_ENV);
	assert_string_equal(s->urls[4095], "tcp://h:5095");
	assert_int_equal(s->bind_index[4095], 4095);
	assert_string_equal(s->env[4095], "V4095=28665");
	mirai_agent_setup_free(s);
	/* One more of either is refused. */
	w.len -= MIRAI__AGENT_REC_HDR;
	mirai__agent_env(&w, "ONE=more");
	mirai__agent_end(&w);
	assert_int_equal(decode(w.p, w.len, NULL, &s, NULL), MIRAI_EPROTO);
	free(w.p);
}

/* ---- the reader takes exactly its bytes ----------------------------- */

static void
test_read_exact(void **state)
{
	mirai__wbuf w = {0};
	mirai_agent_setup *s = NULL;
	mirai_errmsg err;
	char rest[16] = {0};
	int fds[2];
	pid_t pid;

	(void) state;
	mirai__agent_begin(&w);
	mirai__agent_url(&w, "ws://h:1/t/0", 0);
	mirai__agent_env(&w, "A=1\nend\n");
	mirai__agent_end(&w);
	assert_int_equal(pipe(fds), 0);
	/* A writer of its own: the setup plus what follows, in pieces. */
	if ((pid = fork()) == 0) {
		close(fds[0]);
		for (size_t i = 0; i < w.len; i += 3) {
			size_t n = w.len - i < 3 ? w.len - i : 3;
			if (write(fds[1], w.p + i, n) != (ssize_t) n) {
				_exit(1);
			}
		}
		_exit(write(fds[1], "after", 5) == 5 ? 0 : 1);
	}
	assert_true(pid > 0);
	close(fds[1]);
	assert_int_equal(mirai_agent_read(fds[0], NULL, &s, &err), 0);
	assert_string_equal(s->env[0], "A=1\nend\n");
	assert_int_equal(read(fds[0], rest, sizeof rest), 5);
	assert_string_equal(rest, "after");
	close(fds[0]);
	mirai_agent_setup_free(s);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
	}
	free(w.p);
}

static void
test_read_errors(void **state)
{
	mirai_agent_setup *s = (mirai_agent_setup *) &s;
	mirai_errmsg err;
	int fds[2];

	(void) state;
	/* Input that ends early; *out untouched. */
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], "\x48\x0d\x00", 3), 3);
	close(fds[1]);
	assert_int_equal(mirai_agent_read(fds[0], NULL, &s, &err),
	    MIRAI_ECLOSED);
	assert_ptr_equal(s, (mirai_agent_setup *) &s);
	assert_non_null(strstr(err.text, "ended"));
	close(fds[0]);
	assert_int_equal(mirai_agent_read(-1, NULL, &s, NULL), MIRAI_EINVAL);
	assert_int_equal(mirai_agent_read(0, NULL, NULL, NULL), MIRAI_EINVAL);
	mirai_agent_setup_free(NULL);
}

/* ---- from a file: only an owner-only one ------------------------------ */

static void
test_read_file(void **state)
{
	const struct {
		mode_t mode;
		int rv;
	} rows[] = {
	    {0600, 0},
	    {0400, 0},
	    {0640, MIRAI_EPERM},
	    {0604, MIRAI_EPERM},
	    {0620, MIRAI_EPERM},
	    {0602, MIRAI_EPERM},
	    {0644, MIRAI_EPERM},
	    {0601, MIRAI_EPERM},
	};
	const struct {
		const char *name; /* in the directory */
		int rv;
		const char *why;
	} odd[] = {
	    {"link", MIRAI_EPERM, "symbolic link"},
	    {"fifo", MIRAI_EPERM, "not a regular file"},
	    {".", MIRAI_EPERM, "not a regular file"},
	    {"absent", MIRAI_ENOENT, "No such file"},
	};
	const char *tmp = getenv("TMPDIR");
	char dir[512], path[600], other[600];
	mirai__wbuf w = {0};
	mirai_agent_setup *s = NULL;
	mirai_errmsg err;
	int fd;

	(void) state;
	snprintf(dir, sizeof dir, "%s/mirai-agent-XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/setup", dir);
	mirai__agent_begin(&w);
	mirai__agent_node(&w, "n1");
	mirai__agent_url(&w, "ws://a/0", 2);
	mirai__agent_end(&w);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, w.p, w.len), (ssize_t) w.len);
	close(fd);
	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		assert_int_equal(chmod(path, rows[i].mode), 0);
		assert_int_equal(mirai_agent_read_file(path, "n1", &s, &err),
		    rows[i].rv);
		if (rows[i].rv != 0) {
			assert_non_null(strstr(err.text, path));
			assert_non_null(strstr(err.text, "mode"));
			continue;
		}
		assert_int_equal(s->nurls, 1);
		assert_string_equal(s->urls[0], "ws://a/0");
		assert_int_equal(s->bind_index[0], 2);
		mirai_agent_setup_free(s);
		s = NULL;
	}
	assert_int_equal(chmod(path, 0600), 0);
	/* Another node's URLs only. */
	assert_int_equal(mirai_agent_read_file(path, "n2", &s, &err),
	    MIRAI_ENOENT);
	/* A link to it, a directory, a FIFO, nothing: refused or absent. */
	snprintf(other, sizeof other, "%s/link", dir);
	assert_int_equal(symlink(path, other), 0);
	snprintf(other, sizeof other, "%s/fifo", dir);
	assert_int_equal(mkfifo(other, 0600), 0);
	for (size_t i = 0; i < ARRAY_LEN(odd); i++) {
		snprintf(other, sizeof other, "%s/%s", dir, odd[i].name);
		assert_int_equal(mirai_agent_read_file(other, "n1", &s, &err),
		    odd[i].rv);
		assert_non_null(strstr(err.text, odd[i].why));
		unlink(other);
	}
	/* Another user's file (only root can make one). */
	if (geteuid() == 0) {
		assert_int_equal(chown(path, 65534, (gid_t) -1), 0);
		assert_int_equal(mirai_agent_read_file(path, "n1", &s, &err),
		    MIRAI_EPERM);
		assert_non_null(strstr(err.text, "owned by uid 65534"));
	}
	assert_null(s);
	assert_int_equal(mirai_agent_read_file(NULL, "n1", &s, &err),
	    MIRAI_EINVAL);
	assert_int_equal(mirai_agent_read_file("", "n1", &s, &err),
	    MIRAI_EINVAL);
	assert_int_equal(mirai_agent_read_file(path, "n1", NULL, &err),
	    MIRAI_EINVAL);
	unlink(path);
	rmdir(dir);
	free(w.p);
}

/* ---- each agent keeps its node's URLs -------------------------------- */

static void
test_nodes(void **state)
{
	const struct {
		const char *node;
		int rv;
		size_t n;
		const char *first;
	} rows[] = {
	    {"n1", 0, 2, "ws://a/0"},
	    {"n2", 0, 1, "ws://a/2"},
	    {"n2.cluster.example", 0, 1, "ws://a/2"},
	    {"n3", 0, 1, "ws://a/3"},
	    {"n3.x", 0, 1, "ws://a/3"},
	    {"n4", MIRAI_ENOENT, 0, NULL},
	    {"n", MIRAI_ENOENT, 0, NULL},
	    {NULL, MIRAI_ENOENT, 0, NULL},
	};
	mirai__wbuf w = {0};
	mirai_errmsg err;

	(void) state;
	mirai__agent_begin(&w);
	mirai__agent_node(&w, "n1");
	mirai__agent_url(&w, "ws://a/0", 0);
	mirai__agent_url(&w, "ws://a/1", 1);
	mirai__agent_node(&w, "n2");
	mirai__agent_url(&w, "ws://a/2", 0);
	mirai__agent_node(&w, "n3.x");
	mirai__agent_url(&w, "ws://a/3", 0);
	mirai__agent_env(&w, "E=1");
	mirai__agent_end(&w);
	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai_agent_setup *s = NULL;
		int fds[2];
		assert_int_equal(pipe(fds), 0);
		assert_int_equal(write(fds[1], w.p, w.len), (ssize_t) w.len);
		close(fds[1]);
		assert_int_equal(mirai_agent_read(fds[0], rows[i].node, &s,
				     &err), rows[i].rv);
		close(fds[0]);
		if (rows[i].rv != 0) {
			continue;
		}
		assert_int_equal(s->nurls, rows[i].n);
		assert_string_equal(s->urls[0], rows[i].first);
		assert_int_equal(s->nenv, 1);
		mirai_agent_setup_free(s);
	}
	free(w.p);
}

/* ---- malformed setups --------------------------------------------- */

static void
test_rejects(void **state)
{
	static const struct {
		const char *what;
		const char *bytes;
		size_t len;
		int rv;
	} rows[] = {
#define R(what, lit, rv) {what, lit, sizeof lit - 1, rv}
	    R("nothing", "", MIRAI_ECLOSED),
	    R("no hello", "Z\0\0\0\0", MIRAI_EPROTO),
	    R("old line protocol", "url ws://h/1\nend\n", MIRAI_EPROTO),
	    R("wrong hello", "H\x0d\0\0\0mirai-agent/2Z\0\0\0\0", MIRAI_EPROTO),
	    R("second hello",
		"H\x0d\0\0\0mirai-agent/1H\x0d\0\0\0mirai-agent/1",
		MIRAI_EPROTO),
	    R("over the limit", "H\x0d\0\0\0mirai-agent/1E\0\0\x20\0",
		MIRAI_EPROTO),
	    R("huge length", "H\x0d\0\0\0mirai-agent/1E\xff\xff\xff\xff",
		MIRAI_EPROTO),
	    R("unknown type", "H\x0d\0\0\0mirai-agent/1Q\0\0\0\0", MIRAI_EPROTO),
	    R("end with a body", "H\x0d\0\0\0mirai-agent/1Z\1\0\0\0x",
		MIRAI_EPROTO),
	    R("NUL in env", "H\x0d\0\0\0mirai-agent/1E\3\0\0\0A=\0Z\0\0\0\0",
		MIRAI_EPROTO),
	    R("env without =", "H\x0d\0\0\0mirai-agent/1E\1\0\0\0AZ\0\0\0\0",
		MIRAI_EPROTO),
	    R("env without name", "H\x0d\0\0\0mirai-agent/1E\2\0\0\0=aZ\0\0\0\0",
		MIRAI_EPROTO),
	    R("empty env", "H\x0d\0\0\0mirai-agent/1E\0\0\0\0Z\0\0\0\0",
		MIRAI_EPROTO),
	    R("url without url", "H\x0d\0\0\0mirai-agent/1U\4\0\0\0\0\0\0\0",
		MIRAI_EPROTO),
	    R("bind below -1",
		"H\x0d\0\0\0mirai-agent/1U\5\0\0\0\xfe\xff\xff\xffxZ\0\0\0\0",
		MIRAI_EPROTO),
	    R("NUL in url", "H\x0d\0\0\0mirai-agent/1U\6\0\0\0\0\0\0\0a\0",
		MIRAI_EPROTO),
	    R("no end", "H\x0d\0\0\0mirai-agent/1U\5\0\0\0\0\0\0\0a",
		MIRAI_ECLOSED),
	    R("no url", "H\x0d\0\0\0mirai-agent/1Z\0\0\0\0", MIRAI_ENOENT),
	    R("good", "H\x0d\0\0\0mirai-agent/1U\5\0\0\0\0\0\0\0aZ\0\0\0\0", 0),
#undef R
	};

	(void) state;
	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		mirai_agent_setup *s = NULL;
		int rv = decode((const uint8_t *) rows[i].bytes, rows[i].len,
		    NULL, &s, NULL);
		if (rv == 0 && s->nurls == 0) {
			/* mirai_agent_read() says ENOENT for this. */
			rv = MIRAI_ENOENT;
		}
		if (rv != rows[i].rv) {
			fail_msg("%s: %d, not %d", rows[i].what, rv, rows[i].rv);
		}
		mirai_agent_setup_free(s);
	}
}

/* Every cut of a good setup is an early end, never a setup. */
static void
test_every_cut(void **state)
{
	mirai__wbuf w = {0};

	(void) state;
	mirai__agent_begin(&w);
	mirai__agent_node(&w, "n1");
	mirai__agent_url(&w, "ws://a/0", 0);
	mirai__agent_env(&w, "A=b\nc");
	mirai__agent_end(&w);
	for (size_t cut = 0; cut < w.len; cut++) {
		mirai_agent_setup *s = NULL;
		assert_int_equal(decode(w.p, cut, "n1", &s, NULL), MIRAI_ECLOSED);
	}
	free(w.p);
}

static void
test_env_ok(void **state)
{
	char *big = value_of(MIRAI_AGENT_MAX_RECORD + 1, 'v');

	(void) state;
	big[0] = 'V';
	big[1] = '=';
	assert_int_equal(mirai__agent_env_ok(NULL), -1);
	assert_int_equal(mirai__agent_env_ok(""), -1);
	assert_int_equal(mirai__agent_env_ok("A"), -1);
	assert_int_equal(mirai__agent_env_ok("=A"), -1);
	assert_int_equal(mirai__agent_env_ok("A="), 0);
	assert_int_equal(mirai__agent_env_ok(big), -1);
	big[MIRAI_AGENT_MAX_RECORD] = '\0';
	assert_int_equal(mirai__agent_env_ok(big), 0);
	free(big);
	assert_true(mirai__agent_node_match("n1", "n1", 2));
	assert_true(mirai__agent_node_match("n1", "n1.a", 4));
	assert_true(mirai__agent_node_match("n1.a", "n1", 2));
	assert_false(mirai__agent_node_match("n1.a", "n1.b", 4));
	assert_false(mirai__agent_node_match("n1", "n12", 3));
	assert_false(mirai__agent_node_match("n", "n1", 2));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_env_roundtrip),
	    cmocka_unit_test(test_many_records),
	    cmocka_unit_test(test_read_exact),
	    cmocka_unit_test(test_read_errors),
	    cmocka_unit_test(test_read_file),
	    cmocka_unit_test(test_nodes),
	    cmocka_unit_test(test_rejects),
	    cmocka_unit_test(test_every_cut),
	    cmocka_unit_test(test_env_ok),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
