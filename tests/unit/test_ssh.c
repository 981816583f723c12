/*
 * test_ssh.c: tests of lib/ssh.c against a real sshd, which
 * tests/sshd/sshd.sh starts on 127.0.0.1 and 127.0.0.2 in a private
 * directory for the whole group.  Every command really goes through ssh:
 * the remote side writes files in that directory, which the tests read.
 *
 * Where sshd cannot run (not installed, ...) the harness exits 77 and
 * every test that needs it is skipped, saying why.  Every wait has a
 * deadline, and each test destroys what it made even when it fails.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../lib/internal.h"
#include "../../lib/ssh.h"

/* Long enough for a loaded machine, short enough to fail fast. */
#define WAIT_MS 10000
#define MAX_EVENTS 300

/* ---- the sshd --------------------------------------------------------- */

static struct {
	char harness[PATH_MAX + 32];
	char dir[1024];
	char skip[512]; /* why the tests needing sshd are skipped; "" if not */
	char said[400]; /* the harness's last message */
	int port;
	char key[PATH_MAX];
	char other_key[PATH_MAX]; /* a key sshd does not accept */
	char known_hosts[PATH_MAX];
	char config[PATH_MAX];
	char empty_config[PATH_MAX]; /* keeps ~/.ssh/config and the
	                                system's out of the tests */
	char user[256];
} env;

#define NEED_SSHD()                                                 \
	do {                                                        \
		if (env.skip[0] != '\0') {                          \
			print_message("skipped: %s\n", env.skip);   \
			skip();                                     \
		}                                                   \
	} while (0)

/* The harness beside the sources: $MIRAI_SSHD_SH, else found from this
 * program (BUILD/tests/test_ssh), else from the current directory. */
static int
find_harness(void)
{
	const char *given = getenv("MIRAI_SSHD_SH");
	char exe[PATH_MAX];
	ssize_t n;

	if (given != NULL && *given != '\0') {
		snprintf(env.harness, sizeof env.harness, "%s", given);
		return access(env.harness, R_OK) == 0 ? 0 : -1;
	}
	if ((n = readlink("/proc/self/exe", exe, sizeof exe - 1)) > 0) {
		char *slash;
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL) {
			*slash = '\0';
			snprintf(env.harness, sizeof env.harness,
			    "%s/../../tests/sshd/sshd.sh", exe);
			if (access(env.harness, R_OK) == 0) {
				return 0;
			}
		}
	}
	snprintf(env.harness, sizeof env.harness, "tests/sshd/sshd.sh");
	return access(env.harness, R_OK) == 0 ? 0 : -1;
}

/* Run the harness with verb; its output lines go to parse (may be NULL).
 * Returns its exit status, or -1. */
static int
harness(const char *verb, void (*parse)(const char *line))
{
	char cmd[2 * PATH_MAX + 128], line[PATH_MAX + 64];
	FILE *f;
	int st;

	if (strchr(env.harness, '\'') != NULL) {
		return -1;
	}
	snprintf(cmd, sizeof cmd, "bash '%s' %s '%s' %ld 2>&1", env.harness,
	    verb, env.dir, (long) getpid());
	if ((f = popen(cmd, "r")) == NULL) {
		return -1;
	}
	while (fgets(line, sizeof line, f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (parse != NULL) {
			parse(line);
		}
	}
	st = pclose(f);
	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Takes SSHD_*= lines; any other line is the harness's message. */
static void
parse_assignment(const char *line)
{
	const char *v = strchr(line, '=');
	size_t k;

	if (v == NULL || strncmp(line, "SSHD_", 5) != 0) {
		snprintf(env.said, sizeof env.said, "%s", line);
		return;
	}
	k = (size_t) (v++ - line);
	if (k == 9 && strncmp(line, "SSHD_PORT", k) == 0) {
		env.port = atoi(v);
	} else if (k == 8 && strncmp(line, "SSHD_KEY", k) == 0) {
		snprintf(env.key, sizeof env.key, "%s", v);
	} else if (k == 16 && strncmp(line, "SSHD_KNOWN_HOSTS", k) == 0) {
		snprintf(env.known_hosts, sizeof env.known_hosts, "%s", v);
	} else if (k == 11 && strncmp(line, "SSHD_CONFIG", k) == 0) {
		snprintf(env.config, sizeof env.config, "%s", v);
	}
}

static int
remove_entry(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	return remove(path);
}

static int
group_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	struct passwd *pw = getpwuid(geteuid());
	char cmd[2 * PATH_MAX];
	FILE *f;
	int rv;

	if (find_harness() != 0) {
		print_error("tests/sshd/sshd.sh not found (set "
		            "MIRAI_SSHD_SH)\n");
		return -1;
	}
	if (snprintf(env.dir, sizeof env.dir, "%s/mirai-ssh-XXXXXX",
	        tmp != NULL && *tmp != '\0' ? tmp : "/tmp") >=
	        (int) sizeof env.dir ||
	    mkdtemp(env.dir) == NULL) {
		print_error("mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	snprintf(env.user, sizeof env.user, "%s",
	    pw != NULL ? pw->pw_name : "root");
	rv = harness("start", parse_assignment);
	if (rv == 77) {
		snprintf(env.skip, sizeof env.skip, "no test sshd: %s",
		    env.said);
		print_message("%s\n", env.said);
		return 0;
	}
	if (rv != 0 || env.port <= 0 || env.key[0] == '\0' ||
	    env.known_hosts[0] == '\0' || env.config[0] == '\0') {
		print_error("tests/sshd/sshd.sh start failed (%d): %s\n", rv,
		    env.said);
		harness("stop", NULL);
		return -1;
	}
	snprintf(env.other_key, sizeof env.other_key, "%s/other_key",
	    env.dir);
	snprintf(env.empty_config, sizeof env.empty_config,
	    "%s/empty_config", env.dir);
	if ((f = fopen(env.empty_config, "w")) == NULL || fclose(f) != 0) {
		print_error("cannot write %s\n", env.empty_config);
		harness("stop", NULL);
		return -1;
	}
	snprintf(cmd, sizeof cmd, "ssh-keygen -q -t ed25519 -N '' -f '%s' "
	    "</dev/null >/dev/null", env.other_key);
	if (system(cmd) != 0) {
		print_error("ssh-keygen failed\n");
		harness("stop", NULL);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	if (env.skip[0] == '\0' && harness("stop", NULL) != 0) {
		print_error("tests/sshd/sshd.sh stop failed\n");
	}
	if (env.dir[0] != '\0') {
		nftw(env.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	}
	return 0;
}

/* ---- files -------------------------------------------------------- */

static void
path_in_dir(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", env.dir, name);
}

/* The contents of path (NUL-terminated; "" if missing) in a malloc'd
 * buffer, and its length in *len. */
static char *
slurp(const char *path, size_t *len)
{
	FILE *f   = fopen(path, "rb");
	size_t n  = 0, cap = 4096;
	char *buf = malloc(cap + 1);

	assert_non_null(buf);
	while (f != NULL) {
		size_t got;
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			assert_non_null(buf);
		}
		if ((got = fread(buf + n, 1, cap - n, f)) == 0) {
			break;
		}
		n += got;
	}
	if (f != NULL) {
		fclose(f);
	}
	buf[n] = '\0';
	if (len != NULL) {
		*len = n;
	}
	return buf;
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* Whether path comes to hold exactly want within ms.  Polled: the file
 * is written by a remote command, which nothing here can wait on. */
static int
wait_file(const char *path, const char *want, int ms)
{
	int64_t deadline = mirai__now_ms() + ms;

	for (;;) {
		char *got = slurp(path, NULL);
		int ok    = strcmp(got, want) == 0;
		free(got);
		if (ok) {
			return 1;
		}
		if (mirai__now_ms() >= deadline) {
			return 0;
		}
		sleep_ms(10);
	}
}

/* How many logins sshd has accepted so far: one per ssh session. */
static int
logins(void)
{
	char path[PATH_MAX];
	char *log, *p;
	int n = 0;

	path_in_dir(path, sizeof path, "sshd.log");
	log = slurp(path, NULL);
	for (p = log; (p = strstr(p, "Accepted publickey for")) != NULL;
	     p++) {
		n++;
	}
	free(log);
	return n;
}

/* A port on 127.0.0.1 where nothing listens (free a moment ago). */
static int
closed_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len        = sizeof a;
	int fd               = socket(AF_INET, SOCK_STREAM, 0);
	int port;

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* A listener on 127.0.0.1 that takes connections (the kernel does) but
 * never says a word: an ssh client waits there for the banner. */
static int
silent_listener(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len        = sizeof a;
	int fd               = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof a), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* ---- events ----------------------------------------------------------- */

typedef struct event {
	size_t id;
	int event;
	int status;
	char msg[512];
} event;

static struct {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	event ev[MAX_EVENTS];
	size_t n;
	size_t calls; /* every call, also past MAX_EVENTS */
} rec = {.mtx = PTHREAD_MUTEX_INITIALIZER};

/* The module under test; destroyed after each test, passed or failed. */
static mirai__ssh *cur;

static void
on_event(void *arg, size_t id, int ev, int status, const char *msg)
{
	pthread_mutex_lock(&rec.mtx);
	if (rec.n < MAX_EVENTS) {
		event *e  = &rec.ev[rec.n++];
		e->id     = id;
		e->event  = ev;
		e->status = status;
		snprintf(e->msg, sizeof e->msg, "%s", msg != NULL ? msg
		                                                  : "(null)");
	}
	rec.calls++;
	pthread_cond_broadcast(&rec.cv);
	pthread_mutex_unlock(&rec.mtx);
}

static size_t
calls(void)
{
	size_t n;

	pthread_mutex_lock(&rec.mtx);
	n = rec.calls;
	pthread_mutex_unlock(&rec.mtx);
	return n;
}

static const event *
find(size_t id, int ev)
{
	for (size_t i = 0; i < rec.n; i++) {
		if (rec.ev[i].id == id && rec.ev[i].event == ev) {
			return &rec.ev[i];
		}
	}
	return NULL;
}

static void
dump_events(void)
{
	for (size_t i = 0; i < rec.n; i++) {
		print_message("  event: id %zu, %d, status %d, \"%s\"\n",
		    rec.ev[i].id, rec.ev[i].event, rec.ev[i].status,
		    rec.ev[i].msg);
	}
}

/* Wait up to ms for event ev of command id; fails the test without it.
 * A FAILED command is never STARTED and never EXITED. */
static event
wait_event(size_t id, int ev, int ms)
{
	int64_t deadline = mirai__now_ms() + ms;
	const event *e;
	event copy;

	pthread_mutex_lock(&rec.mtx);
	while ((e = find(id, ev)) == NULL &&
	    (ev == MIRAI__SSH_FAILED || find(id, MIRAI__SSH_FAILED) == NULL) &&
	    mirai__cond_wait_until(&rec.cv, &rec.mtx, deadline) == 0) {
	}
	if (e == NULL) {
		e = find(id, ev);
	}
	if (e == NULL) {
		print_message("no event %d for command %zu in %d ms\n", ev, id,
		    ms);
		dump_events();
		pthread_mutex_unlock(&rec.mtx);
		fail();
	}
	copy = *e;
	pthread_mutex_unlock(&rec.mtx);
	return copy;
}

/* Whether command id had any event. */
static int
had_event(size_t id)
{
	int any = 0;

	pthread_mutex_lock(&rec.mtx);
	for (size_t i = 0; i < rec.n; i++) {
		any |= rec.ev[i].id == id;
	}
	pthread_mutex_unlock(&rec.mtx);
	return any;
}

static event
wait_exit(size_t id)
{
	wait_event(id, MIRAI__SSH_STARTED, WAIT_MS);
	return wait_event(id, MIRAI__SSH_EXITED, WAIT_MS);
}

static event
wait_failed(size_t id)
{
	event e = wait_event(id, MIRAI__SSH_FAILED, WAIT_MS);
	int started;

	pthread_mutex_lock(&rec.mtx);
	started = find(id, MIRAI__SSH_STARTED) != NULL;
	pthread_mutex_unlock(&rec.mtx);
	assert_false(started);
	return e;
}

static int
test_setup(void **state)
{
	pthread_mutex_lock(&rec.mtx);
	rec.n     = 0;
	rec.calls = 0;
	pthread_mutex_unlock(&rec.mtx);
	return 0;
}

static int
test_teardown(void **state)
{
	mirai__ssh_destroy(cur);
	cur = NULL;
	return 0;
}

/* Options that reach the test sshd without any ssh config. */
static mirai__ssh_opts
opts(void)
{
	mirai__ssh_opts o = {0};

	o.config      = env.empty_config;
	o.identity    = env.key;
	o.known_hosts = env.known_hosts;
	o.port        = env.port;
	o.timeout_ms  = WAIT_MS;
	return o;
}

static void
create(const mirai__ssh_opts *o)
{
	mirai_errmsg err = {{0}};
	int rv           = mirai__ssh_create(&cur, o, on_event, NULL, &err);

	if (rv != 0) {
		print_message("create: %d: %s\n", rv, err.text);
	}
	assert_int_equal(rv, 0);
	assert_non_null(cur);
}

static void
run(size_t id, const char *host, const char *command)
{
	assert_int_equal(mirai__ssh_run(cur, id, host, NULL, 0, command,
	                     NULL, 0),
	    0);
}

/* ---- tests ---------------------------------------------------------- */

/* One command on each address: both really go through sshd (the remote
 * side sees SSH_CONNECTION), with their exit status and stderr tail. */
static void
test_two_hosts(void **state)
{
	mirai__ssh_opts o = opts();
	char want[64];
	event e;

	NEED_SSHD();
	create(&o);
	run(1, "127.0.0.1", "echo out; echo \"$SSH_CONNECTION\" >&2; exit 3");
	run(2, "127.0.0.2", "echo first >&2; echo \"$SSH_CONNECTION\" >&2");
	e = wait_exit(1);
	assert_int_equal(e.status, 3);
	snprintf(want, sizeof want, " 127.0.0.1 %d", env.port);
	assert_non_null(strstr(e.msg, want));
	assert_true(strlen(e.msg) >= strlen(want));
	assert_string_equal(e.msg + strlen(e.msg) - strlen(want), want);
	e = wait_exit(2);
	assert_int_equal(e.status, 0);
	snprintf(want, sizeof want, " 127.0.0.2 %d", env.port);
	assert_string_equal(e.msg + strlen(e.msg) - strlen(want), want);
	/* The whole tail, not just the last line. */
	assert_memory_equal(e.msg, "first\n", 6);
}

/*
 * Everything from the ssh config (Port, IdentityFile, UserKnownHostsFile);
 * a user in "user@host" overrides the options' user, which overrides the
 * config's.
 */
static void
test_config_and_user(void **state)
{
	mirai__ssh_opts o = {0};
	char dest[320], want[400];
	event e;

	NEED_SSHD();
	o.config     = env.config;
	o.user       = "nosuchuser-mirai";
	o.timeout_ms = WAIT_MS;
	create(&o);
	snprintf(dest, sizeof dest, "%s@127.0.0.2", env.user);
	run(1, dest, "exit 5");
	e = wait_exit(1);
	assert_int_equal(e.status, 5);
	assert_int_equal(mirai__ssh_run(cur, 2, "127.0.0.2", env.user, 0,
	                     "exit 6", NULL, 0),
	    0);
	e = wait_exit(2);
	assert_int_equal(e.status, 6);
	run(3, "127.0.0.2", "exit 7");
	e = wait_failed(3);
	assert_int_equal(e.status, MIRAI_EPEERAUTH);
	assert_string_equal(e.msg, "127.0.0.2: authentication refused for "
	                           "user nosuchuser-mirai");
	/* A command-level port beats the config's. */
	snprintf(want, sizeof want, "%d", closed_port());
	assert_int_equal(mirai__ssh_run(cur, 4, dest, NULL, atoi(want),
	                     "exit 0", NULL, 0),
	    0);
	e = wait_failed(4);
	assert_true(e.status == MIRAI_ECONNREFUSED ||
	    e.status == MIRAI_EUNREACHABLE);
}

/* The input arrives on stdin, small and big (beyond the channel
 * window, so it is written in several rounds). */
static void
test_input(void **state)
{
	static const char token[] = "token-0123456789\n";
	mirai__ssh_opts o         = opts();
	size_t big_len            = 3u << 20, got_len;
	char small[PATH_MAX], big[PATH_MAX], cmd[3 * PATH_MAX];
	unsigned char *data = malloc(big_len);
	char *got;
	event e;

	NEED_SSHD();
	assert_non_null(data);
	for (size_t i = 0; i < big_len; i++) {
		data[i] = (unsigned char) (i * 7u + (i >> 11));
	}
	path_in_dir(small, sizeof small, "input-small");
	path_in_dir(big, sizeof big, "input-big");
	create(&o);
	snprintf(cmd, sizeof cmd, "head -c %zu > '%s'; echo read >&2",
	    sizeof token - 1, small);
	assert_int_equal(mirai__ssh_run(cur, 1, "127.0.0.1", NULL, 0, cmd,
	                     token, sizeof token - 1),
	    0);
	snprintf(cmd, sizeof cmd, "head -c %zu > '%s'", big_len, big);
	assert_int_equal(mirai__ssh_run(cur, 2, "127.0.0.2", NULL, 0, cmd,
	                     data, big_len),
	    0);
	e = wait_exit(1);
	assert_int_equal(e.status, 0);
	assert_string_equal(e.msg, "read");
	got = slurp(small, NULL);
	assert_string_equal(got, token);
	free(got);
	e = wait_exit(2);
	assert_int_equal(e.status, 0);
	got = slurp(big, &got_len);
	assert_int_equal(got_len, big_len);
	assert_memory_equal(got, data, big_len);
	free(got);
	free(data);
}

/* stdin stays open after the input: the command sees EOF only when
 * destroy closes the channel, and goes on then. */
static void
test_stdin_open_until_destroy(void **state)
{
	mirai__ssh_opts o = opts();
	char file[PATH_MAX], cmd[3 * PATH_MAX];
	int64_t t0, took;
	size_t before;
	char *got;

	NEED_SSHD();
	path_in_dir(file, sizeof file, "open-stdin");
	create(&o);
	snprintf(cmd, sizeof cmd, "cat > '%s'; echo done >> '%s'", file,
	    file);
	assert_int_equal(mirai__ssh_run(cur, 1, "127.0.0.1", NULL, 0, cmd,
	                     "abc\n", 4),
	    0);
	wait_event(1, MIRAI__SSH_STARTED, WAIT_MS);
	assert_true(wait_file(file, "abc\n", WAIT_MS));
	/* Still reading: nothing ends, nothing more is written. */
	sleep_ms(300);
	assert_null(find(1, MIRAI__SSH_EXITED));
	got = slurp(file, NULL);
	assert_string_equal(got, "abc\n");
	free(got);
	before = calls();
	t0     = mirai__now_ms();
	mirai__ssh_destroy(cur);
	cur  = NULL;
	took = mirai__now_ms() - t0;
	assert_true(took < 3000);
	assert_true(wait_file(file, "abc\ndone\n", WAIT_MS));
	assert_int_equal(calls(), before);
}

/* 8 commands on 2 hosts at once, 2 workers: one ssh session per host,
 * and a later command reuses the session the keeper holds. */
static void
test_many_share_sessions(void **state)
{
	mirai__ssh_opts o = opts();
	int logins0       = logins();
	char input[16], want[32];
	event e;

	NEED_SSHD();
	o.max_parallel = 2;
	create(&o);
	for (size_t i = 0; i < 8; i++) {
		snprintf(input, sizeof input, "%zu\n", 10 + i);
		assert_int_equal(mirai__ssh_run(cur, i, i % 2 ? "127.0.0.2"
		                                             : "127.0.0.1",
		                     NULL, 0,
		                     "read x; echo \"got-$x\" >&2; exit $x",
		                     input, strlen(input)),
		    0);
	}
	for (size_t i = 0; i < 8; i++) {
		e = wait_exit(i);
		assert_int_equal(e.status, 10 + (int) i);
		snprintf(want, sizeof want, "got-%zu", 10 + i);
		assert_string_equal(e.msg, want);
	}
	assert_int_equal(logins() - logins0, 2);
	run(8, "127.0.0.1", "exit 9");
	e = wait_exit(8);
	assert_int_equal(e.status, 9);
	assert_int_equal(logins() - logins0, 2);
}

/* More commands than sshd allows channels on one session (MaxSessions,
 * 10 by default): the rest go to a second session, none fails. */
static void
test_beyond_max_sessions(void **state)
{
	mirai__ssh_opts o = opts();
	int logins0       = logins();
	size_t n;

	NEED_SSHD();
	create(&o);
	for (size_t i = 0; i < 12; i++) {
		run(i, "127.0.0.1", "cat > /dev/null");
	}
	for (size_t i = 0; i < 12; i++) {
		wait_event(i, MIRAI__SSH_STARTED, WAIT_MS);
	}
	assert_int_equal(logins() - logins0, 2);
	/* And they keep running: a channel whose open failed (the first
	 * session was full) once closed another command's stdin and got
	 * the whole session dropped, a moment later. */
	usleep(1000000);
	pthread_mutex_lock(&rec.mtx);
	n = rec.n;
	if (n != 12) {
		dump_events();
	}
	/* (Asserted unlocked: a failed assertion must not leave the event
	 * lock held for the next test.) */
	pthread_mutex_unlock(&rec.mtx);
	assert_int_equal(n, 12);
}

static void
test_unreachable(void **state)
{
	mirai__ssh_opts o = opts();
	event e;

	NEED_SSHD();
	o.port = closed_port();
	create(&o);
	run(1, "127.0.0.1", "exit 0");
	e = wait_failed(1);
	assert_true(e.status == MIRAI_ECONNREFUSED ||
	    e.status == MIRAI_EUNREACHABLE);
	assert_non_null(strstr(e.msg, "127.0.0.1: unreachable: "));
	assert_string_equal(e.msg, "127.0.0.1: unreachable: Connection "
	                           "refused");
}

static void
test_wrong_key(void **state)
{
	mirai__ssh_opts o = opts();
	char want[400];
	event e;

	NEED_SSHD();
	o.identity = env.other_key;
	create(&o);
	run(1, "127.0.0.1", "exit 0");
	e = wait_failed(1);
	assert_int_equal(e.status, MIRAI_EPEERAUTH);
	snprintf(want, sizeof want, "127.0.0.1: authentication refused for "
	    "user %s", env.user);
	assert_string_equal(e.msg, want);
}

/* Strict: an unknown host key is refused and not learned. */
static void
test_unknown_host_strict(void **state)
{
	mirai__ssh_opts o = opts();
	char kh[PATH_MAX];
	char *got;
	event e;

	NEED_SSHD();
	path_in_dir(kh, sizeof kh, "kh-empty");
	write_file(kh, "");
	o.known_hosts = kh;
	create(&o);
	run(1, "127.0.0.1", "exit 0");
	e = wait_failed(1);
	assert_int_equal(e.status, MIRAI_ECRYPTO);
	assert_string_equal(e.msg, "127.0.0.1: unknown host key (use "
	                           "accept-new to learn it)");
	got = slurp(kh, NULL);
	assert_string_equal(got, "");
	free(got);
}

/* Create a module with o, run command on dest as id and destroy the
 * module once the command has ended: the command's exit status. */
static int
run_once(const mirai__ssh_opts *o, size_t id, const char *dest,
    const char *command)
{
	event e;

	create(o);
	run(id, dest, command);
	e = wait_exit(id);
	mirai__ssh_destroy(cur);
	cur = NULL;
	return e.status;
}

/* accept-new learns the key; strict then accepts it. */
static void
test_accept_new(void **state)
{
	mirai__ssh_opts o = opts();
	char kh[PATH_MAX], want[64];
	char *got;

	NEED_SSHD();
	path_in_dir(kh, sizeof kh, "kh-new");
	write_file(kh, "");
	o.known_hosts = kh;
	o.hostkey     = MIRAI__SSH_ACCEPT_NEW;
	assert_int_equal(run_once(&o, 1, "127.0.0.1", "exit 0"), 0);
	got = slurp(kh, NULL);
	snprintf(want, sizeof want, "[127.0.0.1]:%d ssh-ed25519 ", env.port);
	assert_non_null(strstr(got, want));
	free(got);
	o.hostkey = MIRAI__SSH_STRICT;
	assert_int_equal(run_once(&o, 2, "127.0.0.1", "exit 4"), 4);
}

/* A line of known_hosts for 127.0.0.2 with the key sshd does not have. */
static void
changed_line(char *line, size_t len)
{
	char pub[PATH_MAX + 8];
	char *other;

	snprintf(pub, sizeof pub, "%s.pub", env.other_key);
	other                       = slurp(pub, NULL);
	other[strcspn(other, "\n")] = '\0';
	snprintf(line, len, "[127.0.0.2]:%d %s\n", env.port, other);
	free(other);
}

/* A host whose key differs from known_hosts is refused, also with
 * accept-new, and known_hosts is left as it was. */
static void
test_changed_key(void **state)
{
	mirai__ssh_opts o = opts();
	char kh[PATH_MAX], line[1024];
	char *got;
	event e;

	NEED_SSHD();
	changed_line(line, sizeof line);
	path_in_dir(kh, sizeof kh, "kh-changed");
	write_file(kh, line);
	o.known_hosts = kh;
	o.hostkey     = MIRAI__SSH_ACCEPT_NEW;
	create(&o);
	run(1, "127.0.0.2", "exit 0");
	e = wait_failed(1);
	assert_int_equal(e.status, MIRAI_ECRYPTO);
	assert_string_equal(e.msg, "127.0.0.2: host key changed (possible "
	                           "attack; remove the old key from "
	                           "known_hosts)");
	got = slurp(kh, NULL);
	assert_string_equal(got, line);
	free(got);
}

/* ---- the ssh config, with OpenSSH's rules ----------------------------- */

/*
 * Write the config tmpl to dir/name, with {port}, {key}, {other}, {kh},
 * {user}, {dir} and {closed} replaced; its path goes to path.
 */
static void
write_config(char *path, size_t len, const char *name, const char *tmpl,
    int closed)
{
	static const char *const names[] = {"{port}", "{key}", "{other}",
		"{kh}", "{user}", "{dir}", "{closed}"};
	char port[16], closed_s[16], text[4096];
	const char *vals[] = {port, env.key, env.other_key, env.known_hosts,
		env.user, env.dir, closed_s};
	size_t n = 0;

	snprintf(port, sizeof port, "%d", env.port);
	snprintf(closed_s, sizeof closed_s, "%d", closed);
	while (*tmpl != '\0') {
		size_t i, k = sizeof names / sizeof names[0];
		for (i = 0; i < k; i++) {
			if (strncmp(tmpl, names[i], strlen(names[i])) == 0) {
				break;
			}
		}
		if (i < k) {
			n += (size_t) snprintf(text + n, sizeof text - n, "%s",
			    vals[i]);
			tmpl += strlen(names[i]);
		} else {
			text[n++] = *tmpl++;
		}
		assert_true(n < sizeof text);
	}
	text[n] = '\0';
	path_in_dir(path, len, name);
	write_file(path, text);
}

/* Where the test sshd is, for any host: the tail of the configs below. */
#define REACH_SSHD                                                          \
	"Host *\n    Port {port}\n    UserKnownHostsFile {kh}\n"            \
	"    IdentityFile {key}\n    User {user}\n"

/*
 * Host blocks as ssh(1) reads them, each case against the real sshd: the
 * user it logs in as (or is refused as) shows which values applied.
 */
static void
test_config_rules(void **state)
{
	static const struct {
		const char *what;
		const char *config;
		const char *dest;
		int status;       /* 0: the command ran; else the failure */
		const char *user; /* the user refused; NULL: any message */
	} cases[] = {
		/* The issue: a block for the HostName must not apply to an
		 * alias that maps to it. */
		{"alias, not its HostName",
		    "Host alias\n    HostName 127.0.0.2\n"
		    "Host 127.0.0.2\n    User nosuch-hostname\n" REACH_SSHD,
		    "alias", 0, NULL},
		{"the HostName's own block",
		    "Host alias\n    HostName 127.0.0.2\n"
		    "Host 127.0.0.2\n    User nosuch-hostname\n" REACH_SSHD,
		    "127.0.0.2", MIRAI_EPEERAUTH, "nosuch-hostname"},
		/* The key of the HostName's block is not the alias's: it
		 * is refused where ssh(1) is. */
		{"no IdentityFile from the HostName's block",
		    "Host alias\n    HostName 127.0.0.2\n"
		    "Host 127.0.0.2\n    IdentityFile {key}\n"
		    "Host *\n    Port {port}\n    UserKnownHostsFile {kh}\n"
		    "    IdentityFile {other}\n    User {user}\n",
		    "alias", MIRAI_EPEERAUTH, NULL},
		{"IdentityFile of the name's block",
		    "Host alias\n    HostName 127.0.0.2\n"
		    "Host 127.0.0.2\n    IdentityFile {key}\n"
		    "Host *\n    Port {port}\n    UserKnownHostsFile {kh}\n"
		    "    IdentityFile {other}\n    User {user}\n",
		    "127.0.0.2", 0, NULL},
		{"first value wins: Host * first",
		    "Host *\n    User nosuch-first\n"
		    "Host 127.0.0.1\n    User {user}\n" REACH_SSHD,
		    "127.0.0.1", MIRAI_EPEERAUTH, "nosuch-first"},
		{"first value wins: the host's block first",
		    "Host 127.0.0.1\n    User {user}\n"
		    "Host *\n    User nosuch-first\n" REACH_SSHD,
		    "127.0.0.1", 0, NULL},
		{"first value wins: before any Host",
		    "Port {port}\nHost *\n    Port {closed}\n" REACH_SSHD,
		    "127.0.0.1", 0, NULL},
		{"negation excludes",
		    "Host 127.0.0.* !127.0.0.2\n    User nosuch-negated\n"
		    REACH_SSHD,
		    "127.0.0.2", 0, NULL},
		{"negation leaves the others",
		    "Host 127.0.0.* !127.0.0.2\n    User nosuch-negated\n"
		    REACH_SSHD,
		    "127.0.0.1", MIRAI_EPEERAUTH, "nosuch-negated"},
		{"a negation alone matches nothing",
		    "Host !127.0.0.2\n    User nosuch-negated\n" REACH_SSHD,
		    "127.0.0.1", 0, NULL},
		{"several patterns, '?', case, '='",
		    "HOST nothere Alias-? other\n    hostname=127.0.0.1\n"
		    REACH_SSHD,
		    "alias-7", 0, NULL},
		{"'?' is one character",
		    "Host alias-?\n    HostName 127.0.0.1\n" REACH_SSHD,
		    "alias-77", MIRAI_EUNREACHABLE, NULL},
		{"Include inside a block that does not apply",
		    "Host 127.0.0.3\n    Include {dir}/inc-rules.conf\n"
		    REACH_SSHD,
		    "127.0.0.1", 0, NULL},
		{"Include inside a block that applies",
		    "Host 127.0.0.3\n    Include {dir}/inc-rules.conf\n"
		    REACH_SSHD,
		    "127.0.0.3", MIRAI_EPEERAUTH, "nosuch-included"},
	};
	char path[PATH_MAX], inc[PATH_MAX];

	NEED_SSHD();
	write_config(inc, sizeof inc, "inc-rules.conf",
	    "# no Host line: the block of the Include governs\n"
	    "User nosuch-included\n",
	    0);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		mirai__ssh_opts o = {0};
		event e;

		print_message("case: %s\n", cases[i].what);
		write_config(path, sizeof path, "config-rules", cases[i].config,
		    closed_port());
		o.config     = path;
		o.timeout_ms = WAIT_MS;
		create(&o);
		run(i, cases[i].dest, "exit 0");
		if (cases[i].status == 0) {
			e = wait_exit(i);
			assert_int_equal(e.status, 0);
		} else {
			char want[128];
			e = wait_failed(i);
			if (cases[i].status == MIRAI_EUNREACHABLE) {
				/* A name that does not resolve. */
				assert_non_null(strstr(e.msg, "unreachable"));
			} else {
				assert_int_equal(e.status, cases[i].status);
			}
			snprintf(want, sizeof want, "refused for user %s",
			    cases[i].user != NULL ? cases[i].user : "");
			if (cases[i].user != NULL) {
				assert_non_null(strstr(e.msg, want));
			}
		}
		mirai__ssh_destroy(cur);
		cur = NULL;
	}
}

/*
 * StrictHostKeyChecking from the config, and the options' policy over it:
 * whether an unknown key is learnt or refused, and that a changed key is
 * refused under every policy, "no" included.
 */
static void
test_config_hostkey(void **state)
{
	enum { EMPTY, CHANGED };
	static const struct {
		const char *config; /* before REACH_SSHD's lines */
		int hostkey;        /* the options' policy */
		int kh;             /* what known_hosts holds first */
		int status;         /* 0: the command ran */
		const char *msg;    /* in the failure */
	} cases[] = {
		{"StrictHostKeyChecking accept-new\n", MIRAI__SSH_FROM_CONFIG,
		    EMPTY, 0, NULL},
		{"StrictHostKeyChecking=no\n", MIRAI__SSH_FROM_CONFIG, EMPTY, 0,
		    NULL},
		{"StrictHostKeyChecking yes\n", MIRAI__SSH_FROM_CONFIG, EMPTY,
		    MIRAI_ECRYPTO, "unknown host key"},
		{"StrictHostKeyChecking ask\n", MIRAI__SSH_FROM_CONFIG, EMPTY,
		    MIRAI_ECRYPTO, "unknown host key"},
		{"", MIRAI__SSH_FROM_CONFIG, EMPTY, MIRAI_ECRYPTO,
		    "unknown host key"},
		{"Host 127.0.0.2\n    StrictHostKeyChecking yes\n"
		 "Host *\n    StrictHostKeyChecking accept-new\n",
		    MIRAI__SSH_FROM_CONFIG, EMPTY, MIRAI_ECRYPTO,
		    "unknown host key"},
		{"Host !127.0.0.2\n    StrictHostKeyChecking yes\n"
		 "Host *\n    StrictHostKeyChecking accept-new\n",
		    MIRAI__SSH_FROM_CONFIG, EMPTY, 0, NULL},
		{"StrictHostKeyChecking yes\n", MIRAI__SSH_ACCEPT_NEW, EMPTY, 0,
		    NULL},
		{"StrictHostKeyChecking accept-new\n", MIRAI__SSH_STRICT, EMPTY,
		    MIRAI_ECRYPTO, "unknown host key"},
		{"StrictHostKeyChecking no\n", MIRAI__SSH_FROM_CONFIG, CHANGED,
		    MIRAI_ECRYPTO, "host key changed"},
		{"StrictHostKeyChecking accept-new\n", MIRAI__SSH_FROM_CONFIG,
		    CHANGED, MIRAI_ECRYPTO, "host key changed"},
		{"StrictHostKeyChecking maybe\n", MIRAI__SSH_FROM_CONFIG, EMPTY,
		    MIRAI_EINVAL, "StrictHostKeyChecking maybe"},
		{"HashKnownHosts perhaps\n", MIRAI__SSH_ACCEPT_NEW, EMPTY,
		    MIRAI_EINVAL, "HashKnownHosts perhaps"},
	};
	char kh[PATH_MAX], path[PATH_MAX], changed[1024], want[64];
	char tmpl[1024];

	NEED_SSHD();
	changed_line(changed, sizeof changed);
	path_in_dir(kh, sizeof kh, "kh-policy");
	snprintf(want, sizeof want, "[127.0.0.2]:%d ssh-ed25519 ", env.port);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		mirai__ssh_opts o = {0};
		char *got;
		event e;

		print_message("case %zu: %s", i, cases[i].config);
		write_file(kh, cases[i].kh == CHANGED ? changed : "");
		snprintf(tmpl, sizeof tmpl, "%sHost *\n    Port {port}\n"
		    "    IdentityFile {key}\n    HashKnownHosts no\n",
		    cases[i].config);
		write_config(path, sizeof path, "config-policy", tmpl, 0);
		o.config      = path;
		o.known_hosts = kh;
		o.hostkey     = cases[i].hostkey;
		o.timeout_ms  = WAIT_MS;
		create(&o);
		run(i, "127.0.0.2", "exit 0");
		got = NULL;
		if (cases[i].status == 0) {
			e = wait_exit(i);
			assert_int_equal(e.status, 0);
			got = slurp(kh, NULL);
			assert_non_null(strstr(got, want));
		} else {
			e = wait_failed(i);
			assert_int_equal(e.status, cases[i].status);
			assert_non_null(strstr(e.msg, cases[i].msg));
			got = slurp(kh, NULL);
			assert_string_equal(got, cases[i].kh == CHANGED
			                             ? changed
			                             : "");
		}
		free(got);
		mirai__ssh_destroy(cur);
		cur = NULL;
	}
}

/* Whether OpenSSH's ssh-keygen finds name in the known_hosts file kh. */
static int
keygen_finds(const char *kh, const char *name)
{
	char cmd[2 * PATH_MAX];

	snprintf(cmd, sizeof cmd, "ssh-keygen -F '%s' -f '%s' >/dev/null "
	    "2>&1", name, kh);
	return system(cmd) == 0;
}

/*
 * HashKnownHosts yes: a learnt key is written hashed, as OpenSSH writes
 * it (its ssh-keygen finds it; the name is nowhere in the file), then
 * accepted on the next connection, strict, and not learnt twice.  A
 * hashed entry with another key is a changed key.
 */
static void
test_hashed_known_hosts(void **state)
{
	mirai__ssh_opts o = {0};
	char kh[PATH_MAX], kh2[PATH_MAX], path[PATH_MAX], name[64];
	char changed[1024], cmd[2 * PATH_MAX];
	char *got, *again;
	event e;

	NEED_SSHD();
	path_in_dir(kh, sizeof kh, "kh-hashed");
	/* A last line without its newline gets one before the new entry. */
	write_file(kh, "# mine");
	write_config(path, sizeof path, "config-hashed",
	    "Host *\n    Port {port}\n    IdentityFile {key}\n"
	    "    StrictHostKeyChecking accept-new\n"
	    "Host *\n    HashKnownHosts yes\n",
	    0);
	o.config      = path;
	o.known_hosts = kh;
	o.timeout_ms  = WAIT_MS;
	assert_int_equal(run_once(&o, 1, "127.0.0.1", "exit 0"), 0);
	got = slurp(kh, NULL);
	print_message("known_hosts: %s", got);
	assert_memory_equal(got, "# mine\n|1|", 10);
	assert_null(strstr(got, "127.0.0.1"));
	assert_non_null(strstr(got, " ssh-ed25519 "));
	/* One line added, whole. */
	assert_ptr_equal(strchr(got + 7, '\n'), got + strlen(got) - 1);
	snprintf(name, sizeof name, "[127.0.0.1]:%d", env.port);
	assert_true(keygen_finds(kh, name));
	snprintf(name, sizeof name, "[127.0.0.2]:%d", env.port);
	assert_false(keygen_finds(kh, name));

	/* The hashed entry is read back: strict accepts the host, and
	 * accept-new learns nothing more. */
	o.hostkey = MIRAI__SSH_STRICT;
	assert_int_equal(run_once(&o, 2, "127.0.0.1", "exit 2"), 2);
	o.hostkey = MIRAI__SSH_ACCEPT_NEW;
	assert_int_equal(run_once(&o, 3, "127.0.0.1", "exit 3"), 3);
	again = slurp(kh, NULL);
	assert_string_equal(again, got);
	free(again);
	free(got);

	/* A changed key behind a hashed name (ssh-keygen -H hashes it). */
	changed_line(changed, sizeof changed);
	path_in_dir(kh2, sizeof kh2, "kh-hashed-changed");
	write_file(kh2, changed);
	snprintf(cmd, sizeof cmd, "ssh-keygen -H -f '%s' >/dev/null 2>&1",
	    kh2);
	assert_int_equal(system(cmd), 0);
	got = slurp(kh2, NULL);
	assert_memory_equal(got, "|1|", 3);
	o.known_hosts = kh2;
	create(&o);
	run(4, "127.0.0.2", "exit 0");
	e = wait_failed(4);
	assert_int_equal(e.status, MIRAI_ECRYPTO);
	assert_non_null(strstr(e.msg, "host key changed"));
	again = slurp(kh2, NULL);
	assert_string_equal(again, got);
	free(again);
	free(got);
}

/*
 * More hosts than the host table's first size (16), each its own
 * session: a
 * second command finds its host's session (no new login), and hosts that
 * fail leave the table for a new session on the next command.
 */
static void
test_many_hosts(void **state)
{
	enum { HOSTS = 20 };
	mirai__ssh_opts o = {0};
	char path[PATH_MAX], name[32];
	int logins0 = logins();
	event e;

	NEED_SSHD();
	write_config(path, sizeof path, "config-many",
	    "Host n-*\n    HostName 127.0.0.1\n" REACH_SSHD, 0);
	o.config       = path;
	o.timeout_ms   = WAIT_MS;
	o.max_parallel = 4;
	create(&o);
	for (size_t i = 0; i < HOSTS; i++) {
		snprintf(name, sizeof name, "n-%zu", i);
		run(i, name, "exit 0");
	}
	for (size_t i = 0; i < HOSTS; i++) {
		e = wait_exit(i);
		assert_int_equal(e.status, 0);
	}
	assert_int_equal(logins() - logins0, HOSTS);
	for (size_t i = 0; i < HOSTS; i++) {
		char cmd[32];
		snprintf(name, sizeof name, "n-%zu", i);
		snprintf(cmd, sizeof cmd, "exit %zu", i % 100);
		run(HOSTS + i, name, cmd);
	}
	for (size_t i = 0; i < HOSTS; i++) {
		e = wait_exit(HOSTS + i);
		assert_int_equal(e.status, (int) (i % 100));
	}
	assert_int_equal(logins() - logins0, HOSTS);
}

/* A binary that is not there: the remote shell's 127 and its words. */
static void
test_missing_binary(void **state)
{
	mirai__ssh_opts o = opts();
	char bin[PATH_MAX];
	event e;

	NEED_SSHD();
	path_in_dir(bin, sizeof bin, "no-such-dir/mirai-server");
	create(&o);
	run(1, "127.0.0.1", bin);
	e = wait_exit(1);
	assert_int_equal(e.status, 127);
	assert_non_null(strstr(e.msg, bin));
	assert_true(strstr(e.msg, "not found") != NULL ||
	    strstr(e.msg, "No such file") != NULL);
}

static void
test_killed_by_signal(void **state)
{
	mirai__ssh_opts o = opts();
	event e;

	NEED_SSHD();
	create(&o);
	run(1, "127.0.0.1", "kill -TERM $$");
	e = wait_exit(1);
	assert_int_equal(e.status, 128 + 15);
	assert_string_equal(e.msg, "127.0.0.1: killed by signal TERM");
}

/* destroy with commands running and one host still connecting: prompt,
 * and no event after it returns. */
static void
test_destroy_while_running(void **state)
{
	mirai__ssh_opts o = opts();
	int port, fd      = silent_listener(&port);
	int64_t t0, took;
	size_t before;

	NEED_SSHD();
	create(&o);
	for (size_t i = 0; i < 4; i++) {
		run(i, i % 2 ? "127.0.0.2" : "127.0.0.1", "cat > /dev/null");
	}
	assert_int_equal(mirai__ssh_run(cur, 9, "127.0.0.1", NULL, port,
	                     "exit 0", NULL, 0),
	    0);
	for (size_t i = 0; i < 4; i++) {
		wait_event(i, MIRAI__SSH_STARTED, WAIT_MS);
	}
	sleep_ms(100);
	assert_false(had_event(9));
	t0 = mirai__now_ms();
	mirai__ssh_destroy(cur);
	cur  = NULL;
	took = mirai__now_ms() - t0;
	before = calls();
	print_message("destroy took %lld ms\n", (long long) took);
	assert_true(took < 2000);
	sleep_ms(200);
	assert_int_equal(calls(), before);
	assert_int_equal(before, 4);
	close(fd);
}

/* The connection drops under running commands (the remote side kills
 * its sshd): they end with 255, and a later command gets a new session. */
static void
test_connection_lost(void **state)
{
	mirai__ssh_opts o = opts();
	int logins0       = logins();
	event e;

	NEED_SSHD();
	create(&o);
	run(1, "127.0.0.1", "cat > /dev/null");
	wait_event(1, MIRAI__SSH_STARTED, WAIT_MS);
	run(2, "127.0.0.1", "sleep 0.2; kill -KILL $PPID");
	e = wait_exit(2);
	assert_int_equal(e.status, 255);
	assert_non_null(strstr(e.msg, "127.0.0.1: connection lost"));
	e = wait_event(1, MIRAI__SSH_EXITED, WAIT_MS);
	assert_int_equal(e.status, 255);
	assert_non_null(strstr(e.msg, "127.0.0.1: connection lost"));
	run(3, "127.0.0.1", "exit 2");
	e = wait_exit(3);
	assert_int_equal(e.status, 2);
	assert_int_equal(logins() - logins0, 2);
}

/* A callback may start commands: it runs with no lock of the module. */
static void
on_event_chain(void *arg, size_t id, int ev, int status, const char *msg)
{
	on_event(arg, id, ev, status, msg);
	if (ev == MIRAI__SSH_EXITED && id < 3) {
		char cmd[32];
		snprintf(cmd, sizeof cmd, "exit %zu", 20 + id + 1);
		assert_int_equal(mirai__ssh_run(cur, id + 1, "127.0.0.2", NULL,
		                     0, cmd, NULL, 0),
		    0);
	}
}

static void
test_run_from_callback(void **state)
{
	mirai__ssh_opts o = opts();
	event e;

	NEED_SSHD();
	assert_int_equal(mirai__ssh_create(&cur, &o, on_event_chain, NULL,
	                     NULL),
	    0);
	run(1, "127.0.0.2", "exit 21");
	for (size_t id = 1; id <= 3; id++) {
		e = wait_exit(id);
		assert_int_equal(e.status, 20 + (int) id);
	}
}

/* A server that never answers: the connection times out. */
static void
test_timeout(void **state)
{
	mirai__ssh_opts o = opts();
	int port, fd      = silent_listener(&port);
	int64_t t0, took;
	event e;

	NEED_SSHD();
	o.port       = port;
	o.timeout_ms = 500;
	create(&o);
	t0 = mirai__now_ms();
	run(1, "127.0.0.1", "exit 0");
	e    = wait_failed(1);
	took = mirai__now_ms() - t0;
	assert_int_equal(e.status, MIRAI_ETIMEDOUT);
	assert_string_equal(e.msg, "127.0.0.1: timed out connecting");
	assert_true(took >= 450 && took < 3000);
	close(fd);
}

/* Bad arguments are refused at once, with no sshd needed. */
static void
test_invalid(void **state)
{
	mirai__ssh_opts o = {0};
	mirai_errmsg err  = {{0}};
	mirai__ssh *s     = NULL;

	assert_int_equal(mirai__ssh_create(NULL, &o, on_event, NULL, NULL),
	    MIRAI_EINVAL);
	assert_int_equal(mirai__ssh_create(&s, &o, NULL, NULL, NULL),
	    MIRAI_EINVAL);
	o.hostkey = 7;
	assert_int_equal(mirai__ssh_create(&s, &o, on_event, NULL, &err),
	    MIRAI_EINVAL);
	assert_non_null(strstr(err.text, "accept-new"));
	o.hostkey  = 0;
	o.identity = "/nonexistent/mirai-test-key";
	assert_int_equal(mirai__ssh_create(&s, &o, on_event, NULL, &err),
	    MIRAI_EINVAL);
	assert_non_null(strstr(err.text, "/nonexistent/mirai-test-key"));
	o.identity = NULL;
	o.config   = "/nonexistent/mirai-test-config";
	assert_int_equal(mirai__ssh_create(&s, &o, on_event, NULL, &err),
	    MIRAI_EINVAL);
	assert_non_null(strstr(err.text, "/nonexistent/mirai-test-config"));
	o.config = NULL;
	o.port   = 70000;
	assert_int_equal(mirai__ssh_create(&s, &o, on_event, NULL, NULL),
	    MIRAI_EINVAL);
	assert_null(s);
	o.port = 0;
	assert_int_equal(mirai__ssh_create(&cur, &o, on_event, NULL, NULL), 0);
	assert_int_equal(mirai__ssh_run(cur, 1, NULL, NULL, 0, "true", NULL,
	                     0),
	    MIRAI_EINVAL);
	assert_int_equal(mirai__ssh_run(cur, 1, "h", NULL, 0, NULL, NULL, 0),
	    MIRAI_EINVAL);
	assert_int_equal(mirai__ssh_run(cur, 1, "", NULL, 0, "true", NULL, 0),
	    MIRAI_EINVAL);
	assert_int_equal(mirai__ssh_run(cur, 1, "@h", NULL, 0, "true", NULL,
	                     0),
	    MIRAI_EINVAL);
	assert_int_equal(mirai__ssh_run(cur, 1, "u@", NULL, 0, "true", NULL,
	                     0),
	    MIRAI_EINVAL);
	assert_int_equal(mirai__ssh_run(cur, 1, "h", NULL, -1, "true", NULL,
	                     0),
	    MIRAI_EINVAL);
	assert_int_equal(mirai__ssh_run(cur, 1, "h", NULL, 0, "true", NULL,
	                     3),
	    MIRAI_EINVAL);
	assert_int_equal(mirai__ssh_run(NULL, 1, "h", NULL, 0, "true", NULL,
	                     0),
	    MIRAI_EINVAL);
	mirai__ssh_destroy(NULL);
	assert_int_equal(calls(), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_invalid),
		T(test_two_hosts),
		T(test_config_and_user),
		T(test_input),
		T(test_stdin_open_until_destroy),
		T(test_many_share_sessions),
		T(test_beyond_max_sessions),
		T(test_unreachable),
		T(test_wrong_key),
		T(test_unknown_host_strict),
		T(test_accept_new),
		T(test_changed_key),
		T(test_config_rules),
		T(test_config_hostkey),
		T(test_hashed_known_hosts),
		T(test_many_hosts),
		T(test_missing_binary),
		T(test_killed_by_signal),
		T(test_destroy_while_running),
		T(test_connection_lost),
		T(test_run_from_callback),
		T(test_timeout),
	};

	/* MIRAI_TEST_LOG=4 shows the module's debug log. */
	if (getenv("MIRAI_TEST_LOG") != NULL) {
		mirai_log_set(mirai_log_stderr, "test_ssh",
		    atoi(getenv("MIRAI_TEST_LOG")));
	}
	mirai__cond_init(&rec.cv);
	if (getenv("MIRAI_TEST_FILTER") != NULL) {
		cmocka_set_test_filter(getenv("MIRAI_TEST_FILTER"));
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
