/*
 * spawn.c: starting child processes.  NNG is not fork-safe, so children are
 * started with posix_spawn (fork+exec in one step), never fork alone.
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

/* environ with the KEY=VALUE strings of extra added or replacing. */
static char **
make_env(const char *const *extra)
{
	size_t n = 0, k = 0, m = 0;
	char **env;

	while (environ[n] != NULL) {
		n++;
	}
	while (extra != NULL && extra[m] != NULL) {
		m++;
	}
	if ((env = malloc((n + m + 1) * sizeof *env)) == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		int replaced = 0;
		for (size_t j = 0; j < m && !replaced; j++) {
			size_t klen = strcspn(extra[j], "=");
			replaced = strncmp(environ[i], extra[j], klen + 1) == 0;
		}
		if (!replaced) {
			env[k++] = environ[i];
		}
	}
	for (size_t j = 0; j < m; j++) {
		env[k++] = (char *) extra[j];
	}
	env[k] = NULL;
	return env;
}

int
mirai__spawn(const char *const *argv, const char *const *extra_env,
    int fd_in, int fd_out, int fd_err, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, deflt;
	char **env;
	int rv;

	if ((env = make_env(extra_env)) == NULL) {
		return ENOMEM;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	if (fd_in >= 0) {
		posix_spawn_file_actions_adddup2(&fa, fd_in, 0);
	} else {
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY,
		    0);
	}
	if (fd_out >= 0) {
		posix_spawn_file_actions_adddup2(&fa, fd_out, 1);
	}
	if (fd_err >= 0) {
		posix_spawn_file_actions_adddup2(&fa, fd_err, 2);
	}
	/* A fresh signal state and a process group of its own: a Ctrl-C at
	 * the client's terminal is the client's to handle. */
	sigemptyset(&none);
	sigfillset(&deflt);
	sigdelset(&deflt, SIGKILL);
	sigdelset(&deflt, SIGSTOP);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &deflt);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
	        POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
	if (strchr(argv[0], '/') != NULL) {
		rv = posix_spawn(pid, argv[0], &fa, &at, (char *const *) argv,
		    env);
	} else {
		rv = posix_spawnp(pid, argv[0], &fa, &at, (char *const *) argv,
		    env);
	}
	free(env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return rv;
}

static int
is_exec(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	    access(path, X_OK) == 0;
}

/* A tool beside this library: LIBDIR/../bin/NAME, which holds both in the
 * build tree and in an installed PREFIX. */
static int
beside_library(const char *name, char *buf, size_t len)
{
	Dl_info info;
	char *slash;

	if (dladdr((void *) &mirai__find_tool, &info) == 0 ||
	    info.dli_fname == NULL) {
		return 0;
	}
	snprintf(buf, len, "%s", info.dli_fname);
	if ((slash = strrchr(buf, '/')) == NULL) {
		return 0;
	}
	*slash = '\0';
	if (strlen(buf) + strlen(name) + sizeof "/../bin/" > len) {
		return 0;
	}
	strcat(buf, "/../bin/");
	strcat(buf, name);
	return is_exec(buf);
}

/* Whether prog can be started: a path to an executable, or a name found
 * on $PATH.  Checked first so that the error is clear even where
 * posix_spawn cannot report a failed exec. */
int
mirai__can_exec(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[4096];

	if (strchr(prog, '/') != NULL) {
		return is_exec(prog);
	}
	while (path != NULL && *path != '\0') {
		size_t n = strcspn(path, ":");
		snprintf(buf, sizeof buf, "%.*s/%s", (int) n,
		    n > 0 ? path : ".", prog);
		if (is_exec(buf)) {
			return 1;
		}
		path += n + (path[n] == ':');
	}
	return 0;
}

const char *
mirai__find_tool(const char *given, const char *env, const char *name,
    char *buf, size_t len)
{
	const char *exe = given;

	if (exe == NULL) {
		exe = getenv(env);
	}
	if (exe == NULL || *exe == '\0') {
		exe = beside_library(name, buf, len) ? buf : name;
	}
	return exe;
}

void
mirai__tls_args(const char **argv, size_t *n, const char *ca,
    const char *cert, const char *key)
{
	const char *names[3] = {"--tls-ca", "--tls-cert", "--tls-key"};
	const char *paths[3] = {ca, cert, key};

	for (int i = 0; i < 3; i++) {
		if (paths[i] != NULL) {
			argv[(*n)++] = names[i];
			argv[(*n)++] = paths[i];
		}
	}
}

int
mirai__spawn_server(const mirai_server_opts *o, const char *url,
    int one_shot, pid_t *pid, mirai_errmsg *err)
{
	char path[4096];
	const char *exe;
	const char *argv[32 + 2 * 64];
	char nums[6][32], hbuf[32];
	char *env[2] = {NULL, NULL};
	size_t n = 0;
	int rv;

	exe = mirai__find_tool(o->server_path, "MIRAI_SERVER", "mirai-server",
	    path, sizeof path);
	if (o->nplugins > 64) {
		return mirai__fail(err, MIRAI_EINVAL, "at most 64 plugins");
	}
	if (!mirai__can_exec(exe)) {
		return mirai__fail(err, MIRAI_ESPAWN,
		    "cannot start %s: not an executable file (set "
		    "MIRAI_SERVER or the server path)",
		    exe);
	}
	/* The URL travels in the environment, which other users cannot read:
	 * it may hold a token. */
	if ((env[0] = malloc(strlen(url) + sizeof "MIRAI_URL=")) == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	strcpy(env[0], "MIRAI_URL=");
	strcat(env[0], url);
	argv[n++] = exe;
	argv[n++] = "--dial-once";
	if (one_shot) {
		argv[n++] = "--max-tasks";
		argv[n++] = "1";
	} else if (o->max_tasks > 0) {
		snprintf(nums[0], sizeof nums[0], "%" PRIu64, o->max_tasks);
		argv[n++] = "--max-tasks";
		argv[n++] = nums[0];
	}
	if (o->idle_ms > 0) {
		snprintf(nums[1], sizeof nums[1], "%" PRId64, o->idle_ms);
		argv[n++] = "--idle";
		argv[n++] = nums[1];
	}
	if (o->walltime_ms > 0) {
		snprintf(nums[2], sizeof nums[2], "%" PRId64, o->walltime_ms);
		argv[n++] = "--walltime";
		argv[n++] = nums[2];
	}
	if (o->max_msg > 0) {
		snprintf(nums[3], sizeof nums[3], "%zu", o->max_msg);
		argv[n++] = "--max-msg";
		argv[n++] = nums[3];
	}
	if (o->output) {
		argv[n++] = "--output";
	}
	if (o->heartbeat_ms != 0) {
		if (o->heartbeat_ms < 0) {
			snprintf(hbuf, sizeof hbuf, "off");
		} else {
			snprintf(hbuf, sizeof hbuf, "%" PRId64, o->heartbeat_ms);
		}
		argv[n++] = "--heartbeat";
		argv[n++] = hbuf;
	}
	if (o->bind_to != NULL && strcmp(o->bind_to, "none") != 0) {
		snprintf(nums[4], sizeof nums[4], "%d", o->bind_index);
		argv[n++] = "--bind-to";
		argv[n++] = o->bind_to;
		argv[n++] = "--bind-index";
		argv[n++] = nums[4];
		/* Every caller places its servers one unit after another. */
		argv[n++] = "--bind-planned";
		if (o->bind_count > 1) {
			snprintf(nums[5], sizeof nums[5], "%d", o->bind_count);
			argv[n++] = "--bind-count";
			argv[n++] = nums[5];
		}
	}
	for (size_t i = 0; i < o->nplugins; i++) {
		argv[n++] = "--plugin";
		argv[n++] = o->plugins[i];
	}
	mirai__tls_args(argv, &n, o->tls_ca, o->tls_cert, o->tls_key);
	argv[n] = NULL;
	rv = mirai__spawn(argv, (const char *const *) env, -1, -1, -1, pid);
	free(env[0]);
	if (rv != 0) {
		return mirai__fail(err, MIRAI_ESPAWN, "cannot start %s: %s",
		    exe, strerror(rv));
	}
	return 0;
}

int
mirai__server_left_by_rule(int status)
{
	int code;

	if (status == -1 || !WIFEXITED(status)) {
		return 0;
	}
	code = WEXITSTATUS(status);
	return code == MIRAI_EXIT_CLOSED ||
	    (code >= MIRAI_EXIT_IDLE && code <= MIRAI_EXIT_MAXTASKS);
}
