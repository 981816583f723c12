/*
 * builtin.c: the functions every server has.
 *
 *   mirai.echo   returns its input
 *   mirai.sleep  sleeps for the number of milliseconds in its input (ASCII
 *                decimal), cancellable; returns its input
 *   mirai.exec   runs its input with sh -c; returns status, stdout, stderr
 *                (see mirai_exec_parse); cancelling kills its process group
 *   mirai.info   returns JSON: host, pid, version, binding, functions
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

static int
fn_echo(mirai_task *task, void *arg)
{
	size_t len;

	(void) arg;
	mirai_task_data(task, &len);
	return mirai_task_reply_inplace(task, len) != NULL || len == 0
	    ? 0 : MIRAI_ENOMEM;
}

static int
fn_sleep(mirai_task *task, void *arg)
{
	size_t len;
	const char *in = mirai_task_data(task, &len);
	char buf[32];
	char *end;
	long long ms;

	(void) arg;
	if (len == 0 || len >= sizeof buf) {
		return mirai_task_fail(task,
		    "mirai.sleep: the input must be a number of milliseconds");
	}
	memcpy(buf, in, len);
	buf[len] = '\0';
	errno    = 0;
	ms       = strtoll(buf, &end, 10);
	while (*end == ' ' || *end == '\n') {
		end++;
	}
	if (errno != 0 || *end != '\0' || end == buf || ms < 0) {
		return mirai_task_fail(task,
		    "mirai.sleep: '%s' is not a number of milliseconds", buf);
	}
	if (mirai__task_sleep_until(task, mirai__now_ms() + ms)) {
		return MIRAI_ECANCELED;
	}
	return mirai_task_reply(task, in, len);
}

static int
fn_info(mirai_task *task, void *arg)
{
	mirai_server *srv = arg;
	char host[256];
	mirai__sb sb = {0};
	int rv;

	mirai__hostname(host, sizeof host);
	mirai__sb_printf(&sb, "{\"host\":");
	mirai__sb_json_str(&sb, host);
	mirai__sb_printf(&sb, ",\"pid\":%ld,\"version\":", (long) getpid());
	mirai__sb_json_str(&sb, MIRAI_VERSION_STRING);
	mirai__sb_printf(&sb, ",\"binding\":");
	mirai__sb_json_str(&sb, mirai__server_binding(srv));
	mirai__sb_printf(&sb, ",\"functions\":");
	mirai__server_functions_json(srv, &sb);
	mirai__sb_printf(&sb, "}");
	if (sb.failed) {
		free(sb.buf);
		return MIRAI_ENOMEM;
	}
	rv = mirai_task_reply(task, sb.buf, sb.len);
	free(sb.buf);
	return rv;
}

/* Output collected from one pipe of the child. */
typedef struct stream {
	int fd;
	char *buf;
	size_t len, cap;
} stream;

static int
stream_read(stream *s, size_t limit)
{
	char tmp[65536];
	ssize_t n = read(s->fd, tmp, sizeof tmp);

	if (n <= 0) {
		if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
			return 1;
		}
		close(s->fd);
		s->fd = -1;
		return 0;
	}
	if (s->len + (size_t) n > limit) {
		return -1;
	}
	if (s->len + (size_t) n > s->cap) {
		size_t cap = s->cap == 0 ? 4096 : s->cap;
		while (cap < s->len + (size_t) n) {
			cap *= 2;
		}
		char *p = realloc(s->buf, cap);
		if (p == NULL) {
			return -1;
		}
		s->buf = p;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, tmp, (size_t) n);
	s->len += (size_t) n;
	return 1;
}

static int
fn_exec(mirai_task *task, void *arg)
{
	size_t len;
	const char *in = mirai_task_data(task, &len);
	size_t limit   = mirai__task_max_msg(task) - 64;
	int po[2] = {-1, -1}, pe[2] = {-1, -1};
	stream s[2] = {{-1, NULL, 0, 0}, {-1, NULL, 0, 0}};
	char *cmd;
	const char *argv[4];
	pid_t pid;
	int rv, status = 0, pidfd = -1, exited = 0, too_big = 0;

	(void) arg;
	if ((cmd = malloc(len + 1)) == NULL) {
		return MIRAI_ENOMEM;
	}
	memcpy(cmd, in, len);
	cmd[len] = '\0';
	if (strlen(cmd) != len) {
		free(cmd);
		return mirai_task_fail(task, "mirai.exec: the command has a NUL byte");
	}
	if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
		rv = errno;
		free(cmd);
		if (po[0] >= 0) {
			close(po[0]);
			close(po[1]);
		}
		return mirai_task_fail(task, "mirai.exec: pipe: %s", strerror(rv));
	}
	argv[0] = "/bin/sh";
	argv[1] = "-c";
	argv[2] = cmd;
	argv[3] = NULL;
	rv      = mirai__spawn(argv, NULL, -1, po[1], pe[1], &pid);
	free(cmd);
	close(po[1]);
	close(pe[1]);
	if (rv != 0) {
		close(po[0]);
		close(pe[0]);
		return mirai_task_fail(task, "mirai.exec: cannot start /bin/sh: %s",
		    strerror(rv));
	}
	if (mirai__task_set_pgid(task, pid)) {
		kill(-pid, SIGKILL);
	}
	s[0].fd = po[0];
	s[1].fd = pe[0];
#ifdef SYS_pidfd_open
	pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
#endif
	/* Read both streams until the shell exits and they are drained; a
	 * background process holding the pipes open does not keep us. */
	while (!too_big) {
		struct pollfd fds[3];
		nfds_t n = 0;
		int idx[3];

		for (int i = 0; i < 2; i++) {
			if (s[i].fd >= 0) {
				fds[n].fd     = s[i].fd;
				fds[n].events = POLLIN;
				idx[n++]      = i;
			}
		}
		if (pidfd >= 0 && !exited) {
			fds[n].fd     = pidfd;
			fds[n].events = POLLIN;
			idx[n++]      = 2;
		}
		if (n == 0) {
			break;
		}
		if (exited && n > 0) {
			/* Drain what is there without waiting for EOF. */
			if (poll(fds, n, 0) <= 0) {
				break;
			}
		} else if (poll(fds, n, pidfd >= 0 ? -1 : 200) < 0) {
			if (errno == EINTR) {
				continue;
			}
			break;
		}
		for (nfds_t i = 0; i < n; i++) {
			if (fds[i].revents == 0) {
				continue;
			}
			if (idx[i] == 2) {
				exited = 1;
			} else if (stream_read(&s[idx[i]], limit) < 0) {
				too_big = 1;
			}
		}
		if (pidfd < 0 && !exited &&
		    waitpid(pid, &status, WNOHANG) == pid) {
			exited = 2; /* already reaped */
		}
	}
	if (too_big) {
		kill(-pid, SIGKILL);
	}
	if (exited != 2) {
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
		}
	}
	mirai__task_set_pgid(task, 0);
	for (int i = 0; i < 2; i++) {
		if (s[i].fd >= 0) {
			close(s[i].fd);
		}
	}
	if (pidfd >= 0) {
		close(pidfd);
	}
	if (mirai_task_cancelled(task)) {
		rv = MIRAI_ECANCELED;
	} else if (too_big || s[0].len + s[1].len > limit) {
		rv = mirai_task_fail(task,
		    "mirai.exec: output exceeds the message limit of %zu bytes",
		    limit);
	} else {
		int code = WIFEXITED(status) ? WEXITSTATUS(status)
		    : WIFSIGNALED(status)    ? 128 + WTERMSIG(status)
					     : 255;
		uint8_t *out = mirai_task_reply_buf(
		    task, mirai__exec_size(s[0].len, s[1].len));
		if (out == NULL) {
			rv = MIRAI_ENOMEM;
		} else {
			mirai__exec_encode(out, code, s[0].buf, s[0].len,
			    s[1].buf, s[1].len);
			rv = 0;
		}
	}
	free(s[0].buf);
	free(s[1].buf);
	return rv;
}

int
mirai__builtin_register(mirai_server *srv)
{
	int rv;

	if ((rv = mirai_server_register(srv, "mirai.echo", fn_echo, NULL)) != 0 ||
	    (rv = mirai_server_register(srv, "mirai.sleep", fn_sleep, NULL)) != 0 ||
	    (rv = mirai_server_register(srv, "mirai.exec", fn_exec, NULL)) != 0 ||
	    (rv = mirai_server_register(srv, "mirai.info", fn_info, srv)) != 0) {
		return rv;
	}
	return 0;
}
