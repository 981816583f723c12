/*
 * harness.c: helpers for the integration tests (see harness.h).
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int64_t
h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
h_init(void)
{
	const char *lvl = getenv("MIRAI_TEST_LOG");
	int level       = MIRAI_LOG_WARN;

	if (lvl != NULL) {
		level = atoi(lvl);
	}
	mirai_log_set(mirai_log_stderr, "test", level);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGPIPE, SIG_IGN);
}

const char *
h_server(void)
{
	const char *s = getenv("MIRAI_SERVER");

	return s != NULL ? s : "mirai-server";
}

const char *
h_plugin(const char *name)
{
	static char buf[8][4096];
	static int next;
	const char *b = getenv("MIRAI_TEST_BUILD");
	char *out     = buf[next++ % 8];

	snprintf(out, 4096, "%s/tests/%s.so", b != NULL ? b : "build", name);
	return out;
}

/* Every process a test starts, so that a failed assertion cannot leave
 * one behind: a server still retrying its dial would join whatever
 * listener gets its port next, in any later test. */
static pid_t started[512];
static size_t nstarted;

void
h_cleanup(void)
{
	for (size_t i = 0; i < nstarted; i++) {
		if (kill(started[i], SIGKILL) == 0 || errno != ESRCH) {
			waitpid(started[i], NULL, 0);
		}
	}
	nstarted = 0;
}

pid_t
h_spawn(const char *const *argv, int *out_fd)
{
	return h_spawn_log(argv, out_fd, NULL);
}

pid_t
h_spawn_log(const char *const *argv, int *out_fd, const char *err_path)
{
	posix_spawn_file_actions_t fa;
	int fds[2] = {-1, -1};
	pid_t pid;
	int rv;

	posix_spawn_file_actions_init(&fa);
	if (out_fd != NULL) {
		assert_int_equal(pipe(fds), 0);
		posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
		posix_spawn_file_actions_addclose(&fa, fds[0]);
	}
	if (err_path != NULL) {
		posix_spawn_file_actions_addopen(&fa, 2, err_path,
		    O_WRONLY | O_CREAT | O_TRUNC, 0600);
	}
	rv = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *) argv,
	    environ);
	posix_spawn_file_actions_destroy(&fa);
	assert_int_equal(rv, 0);
	if (out_fd != NULL) {
		close(fds[1]);
		*out_fd = fds[0];
	}
	if (nstarted < sizeof started / sizeof started[0]) {
		started[nstarted++] = pid;
	}
	return pid;
}

pid_t
h_spawn_server(const char *url, const char *const *args)
{
	const char *argv[32];
	size_t n = 0;

	argv[n++] = h_server();
	argv[n++] = "--url";
	argv[n++] = url;
	for (size_t i = 0; args != NULL && args[i] != NULL && n < 31; i++) {
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	return h_spawn(argv, NULL);
}

pid_t
h_spawn_dispatcher(const char *const *args, const char *err_path,
    char *client_url, char *control_url, size_t len)
{
	char exe[4096], line[1024];
	const char *argv[32];
	size_t n = 0;
	pid_t pid;
	FILE *f;
	int fd;

	snprintf(exe, sizeof exe, "%s", h_server());
	if (strrchr(exe, '/') != NULL) {
		strcpy(strrchr(exe, '/') + 1, "mirai-dispatcher");
	} else {
		snprintf(exe, sizeof exe, "mirai-dispatcher");
	}
	argv[n++] = exe;
	for (size_t i = 0; args[i] != NULL && n < 31; i++) {
		argv[n++] = args[i];
	}
	argv[n]        = NULL;
	client_url[0]  = '\0';
	control_url[0] = '\0';
	pid            = h_spawn_log(argv, &fd, err_path);
	f              = fdopen(fd, "r");
	while (f != NULL && fgets(line, sizeof line, f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "MIRAI_DISPATCHER_URL=", 21) == 0) {
			snprintf(client_url, len, "%s", line + 21);
		} else if (strncmp(line, "MIRAI_CONTROL_URL=", 18) == 0) {
			snprintf(control_url, len, "%s", line + 18);
			break;
		}
	}
	if (f != NULL) {
		fclose(f);
	} else {
		close(fd);
	}
	return pid;
}

int
h_wait_exit(pid_t pid, int timeout_ms, int *status)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	int st;

	/* Bounded: at most timeout_ms / 5 checks. */
	do {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			if (status != NULL) {
				*status = st;
			}
			return 1;
		}
		if (r < 0 && errno == ECHILD) {
			return 1;
		}
		usleep(5000);
	} while (h_now_ms() < deadline);
	return 0;
}

static int
running(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	int alive = 1;

	if (kill(pid, 0) != 0 && errno == ESRCH) {
		return 0;
	}
	snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
	if ((f = fopen(path, "r")) == NULL) {
		return 0;
	}
	if (fgets(buf, sizeof buf, f) != NULL && (p = strrchr(buf, ')')) != NULL &&
	    (p[2] == 'Z' || p[2] == 'X')) {
		alive = 0;
	}
	fclose(f);
	return alive;
}

int
h_gone(pid_t pid, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;

	do {
		waitpid(pid, NULL, WNOHANG);
		if (!running(pid)) {
			waitpid(pid, NULL, WNOHANG);
			return 1;
		}
		usleep(5000);
	} while (h_now_ms() < deadline);
	return 0;
}

void
h_kill(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

int
h_call(const char *profile, const char *fn, const char *data, char *buf,
    size_t cap)
{
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
	mirai *m;
	int rv;

	o.profile = profile;
	rv = mirai_call(&o, fn, data, data != NULL ? strlen(data) : 0, &m);
	if (rv != 0) {
		return rv;
	}
	rv = mirai_wait(m);
	if (buf != NULL && cap > 0) {
		size_t len;
		const char *d = mirai_data(m, &len);
		if (rv != 0) {
			d   = mirai_errortext(m);
			len = strlen(d);
		}
		if (len > cap - 1) {
			len = cap - 1;
		}
		memcpy(buf, d != NULL ? d : "", len);
		buf[len] = '\0';
	}
	mirai_free(m);
	return rv;
}

int
h_server_pid(const char *profile)
{
	char buf[1024];
	const char *p;

	int rv = h_call(profile, "mirai.info", NULL, buf, sizeof buf);

	if (rv != 0 || (p = strstr(buf, "\"pid\":")) == NULL) {
		/* Say why: a bare -1 leaves a failing test nothing to go on. */
		fprintf(stderr, "h_server_pid(%s): %s: %s\n", profile,
		    mirai_errname(rv), buf);
		return -1;
	}
	return atoi(p + 6);
}

void
h_daemons(const char *profile, int n, int dispatcher)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};
	int rv;

	d.profile    = profile;
	d.n          = n;
	d.dispatcher = dispatcher;
	rv           = mirai_daemons(&d, &err);
	if (rv != 0) {
		fprintf(stderr, "daemons: %s\n", err.text);
	}
	assert_int_equal(rv, 0);
}

int
h_wait_connections(const char *profile, int connections, int timeout_ms)
{
	int64_t deadline = h_now_ms() + timeout_ms;
	int seen         = -1;

	do {
		mirai_status *st;
		if (mirai_status_get(profile, &st) == 0) {
			seen = st->connections;
			mirai_status_free(st);
			if (seen == connections) {
				return seen;
			}
		}
		usleep(10000);
	} while (h_now_ms() < deadline);
	return seen;
}

const char *
h_tmpdir(void)
{
	static char dir[256];

	if (dir[0] == '\0') {
		const char *t = getenv("TMPDIR");
		snprintf(dir, sizeof dir, "%s/mirai-test-XXXXXX",
		    t != NULL ? t : "/tmp");
		assert_non_null(mkdtemp(dir));
	}
	return dir;
}
