/*
 * ssh_channel.c: one command on one channel: its record, opening the
 * channel, running the command and writing its input (wiped once
 * written), the callbacks that keep the end of its stderr and its exit,
 * and the status and message its end is reported with.  Only lib/ssh*.c
 * call libssh (see ssh.c).
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include "internal.h"
#include "ssh.h"
#include "ssh_int.h"

/* Input is written in pieces of at most this size. */
#define WRITE_MAX (1024 * 1024)

/* ---- commands ------------------------------------------------------ */

cmd *
mirai__ssh_cmd_new(size_t id, const char *command, const void *input,
    size_t len)
{
	cmd *c = calloc(1, sizeof *c);

	if (c == NULL) {
		return NULL;
	}
	c->id     = id;
	c->status = -1;
	if ((c->command = mirai__strdup(command)) == NULL) {
		free(c);
		return NULL;
	}
	if (len > 0) {
		if ((c->input = malloc(len)) == NULL) {
			free(c->command);
			free(c);
			return NULL;
		}
		memcpy(c->input, input, len);
		c->input_len = len;
	}
	return c;
}

/* The input may hold secrets: wipe it as soon as it is written. */
static void
cmd_forget_input(cmd *c)
{
	if (c->input != NULL) {
		explicit_bzero(c->input, c->input_len);
		free(c->input);
		c->input     = NULL;
		c->input_len = 0;
	}
}

/*
 * Close and free the channel: the server sees stdin EOF and the channel
 * close (also one it closed first: that close is answered).  Closed
 * explicitly rather than left to ssh_channel_free, which closes only in
 * some states.  The session is nonblocking, so the close is queued and
 * sent without waiting for a slow host.
 */
static void
cmd_close(cmd *c)
{
	if (c->ch != NULL) {
		ssh_remove_channel_callbacks(c->ch, &c->cbs);
		/* Only a channel that is open: closing one whose open failed
		 * (the session was full) sends EOF and CLOSE for a remote
		 * channel id it never got, which the server reads as another
		 * command's channel (its stdin ends) or as a protocol error
		 * that drops the whole session. */
		if (ssh_is_connected(ssh_channel_get_session(c->ch)) &&
		    ssh_channel_is_open(c->ch)) {
			ssh_channel_close(c->ch);
		}
		ssh_channel_free(c->ch);
		c->ch = NULL;
	}
}

void
mirai__ssh_cmd_free(cmd *c)
{
	cmd_close(c);
	cmd_forget_input(c);
	free(c->command);
	free(c);
}

void
mirai__ssh_cmd_free_list(cmd *c)
{
	while (c != NULL) {
		cmd *next = c->next;
		mirai__ssh_cmd_free(c);
		c = next;
	}
}

static int
on_data(ssh_session ss, ssh_channel ch, void *data, uint32_t len,
    int is_stderr, void *arg)
{
	cmd *c = arg;

	/* stdout is read and dropped, so that the window stays open. */
	if (is_stderr) {
		const char *p = data;
		size_t n      = len;

		if (n >= TAIL_MAX) {
			p += n - TAIL_MAX;
			n            = TAIL_MAX;
			c->tail_len  = 0;
			c->tail_cut  = 1;
		} else if (c->tail_len + n > TAIL_MAX) {
			size_t drop = c->tail_len + n - TAIL_MAX;
			memmove(c->tail, c->tail + drop, c->tail_len - drop);
			c->tail_len -= drop;
			c->tail_cut = 1;
		}
		memcpy(c->tail + c->tail_len, p, n);
		c->tail_len += n;
	}
	return (int) len;
}

static void
on_close(ssh_session ss, ssh_channel ch, void *arg)
{
	((cmd *) arg)->closed = 1;
}

static void
on_exit_status(ssh_session ss, ssh_channel ch, int status, void *arg)
{
	((cmd *) arg)->status = status;
}

static void
on_exit_signal(ssh_session ss, ssh_channel ch, const char *sig, int core,
    const char *errmsg, const char *lang, void *arg)
{
	/* RFC 4254 names these; their numbers are the usual ones. */
	static const struct {
		const char *name;
		int no;
	} known[] = {
		{"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"FPE", SIGFPE},
		{"HUP", SIGHUP}, {"ILL", SIGILL}, {"INT", SIGINT},
		{"KILL", SIGKILL}, {"PIPE", SIGPIPE}, {"QUIT", SIGQUIT},
		{"SEGV", SIGSEGV}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
		{"USR2", SIGUSR2},
	};
	cmd *c = arg;

	snprintf(c->signame, sizeof c->signame, "%s", sig != NULL ? sig : "?");
	c->signo = -1;
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
		if (sig != NULL && strcmp(sig, known[i].name) == 0) {
			c->signo = known[i].no;
		}
	}
}

/* The status and message of a command whose channel the server closed. */
int
mirai__ssh_cmd_exit(const cmd *c, const char *name, char *msg, size_t len)
{
	const char *p = c->tail;
	size_t n      = c->tail_len;
	const char *nl;

	/* A tail that lost its beginning starts at its first whole line. */
	if (c->tail_cut && (nl = memchr(p, '\n', n)) != NULL &&
	    (size_t) (nl - p) + 1 < n) {
		n -= (size_t) (nl - p) + 1;
		p = nl + 1;
	}
	while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r' ||
	                    p[n - 1] == ' ' || p[n - 1] == '\t')) {
		n--;
	}
	if (n > 0) {
		snprintf(msg, len, "%.*s", (int) n, p);
	} else if (c->signo != 0) {
		snprintf(msg, len, "%s: killed by signal %s", name, c->signame);
	} else if (c->status < 0) {
		snprintf(msg, len, "%s: the command ended without an exit "
		    "status", name);
	} else {
		msg[0] = '\0';
	}
	if (c->status >= 0) {
		return c->status;
	}
	return c->signo > 0 ? 128 + c->signo : LOST_STATUS;
}

/*
 * Open a channel on h for c, run its command and write its input.
 * Returns 0 (started), c's own error value with em filled, or one of the
 * START_ values (START_BROKEN fills em and *drop_err).
 */
int
mirai__ssh_start(mirai__ssh *s, host *h, cmd *c, mirai_errmsg *em,
    int *drop_err)
{
	int64_t deadline = mirai__now_ms() + s->timeout_ms;
	ssh_session ss   = h->ss;
	const char *what = "opening a channel";
	size_t off       = 0;
	int rc, rv = 0;

	if ((c->ch = ssh_channel_new(ss)) == NULL) {
		return mirai__fail(em, MIRAI_ENOMEM, "%s: out of memory",
		    h->name);
	}
	while ((rc = ssh_channel_open_session(c->ch)) == SSH_AGAIN) {
		if ((rv = mirai__ssh_wait_io(s, ss, deadline)) != 0) {
			goto wait_failed;
		}
	}
	if (rc != SSH_OK) {
		/* A server that refuses one more channel while others are
		 * open has reached its limit (sshd's MaxSessions). */
		if (!mirai__ssh_session_dead(ss) && h->running != NULL &&
		    ssh_get_error_code(ss) == SSH_REQUEST_DENIED) {
			MIRAI__LOG(MIRAI_LOG_DEBUG, "ssh", "%s: no more "
			    "channels on this session: %s", h->name,
			    ssh_get_error(ss));
			cmd_close(c);
			return START_REFUSED;
		}
		goto failed;
	}
	ssh_callbacks_init(&c->cbs);
	c->cbs.userdata                     = c;
	c->cbs.channel_data_function        = on_data;
	c->cbs.channel_close_function       = on_close;
	c->cbs.channel_exit_status_function = on_exit_status;
	c->cbs.channel_exit_signal_function = on_exit_signal;
	ssh_set_channel_callbacks(c->ch, &c->cbs);
	what = "starting the command";
	while ((rc = ssh_channel_request_exec(c->ch, c->command)) ==
	    SSH_AGAIN) {
		if ((rv = mirai__ssh_wait_io(s, ss, deadline)) != 0) {
			goto wait_failed;
		}
	}
	if (rc != SSH_OK) {
		goto failed;
	}
	/* A command that ended before reading all its input has started all
	 * the same: its end is reported as usual. */
	what = "writing the input";
	while (off < c->input_len && !c->closed) {
		size_t n = c->input_len - off;
		rc       = ssh_channel_write(c->ch, c->input + off,
		          (uint32_t) (n > WRITE_MAX ? WRITE_MAX : n));
		if (rc < 0) {
			if (c->closed || ssh_channel_is_closed(c->ch)) {
				break;
			}
			goto failed;
		}
		off += (size_t) rc;
		if (off < c->input_len &&
		    (rv = mirai__ssh_wait_io(s, ss, deadline)) != 0) {
			goto wait_failed;
		}
	}
	cmd_forget_input(c);
	return 0;

wait_failed:
	cmd_close(c);
	if (rv == MIRAI_ECLOSED) {
		return START_STOPPED;
	}
	/* A server that does not answer in time is not worth more. */
	*drop_err = mirai__ssh_wait_error(h, rv, what, em);
	return START_BROKEN;

failed:
	if (mirai__ssh_session_dead(ss)) {
		*drop_err = MIRAI_ESSH;
		mirai__fail(em, MIRAI_ESSH, "%s: connection lost: %s",
		    h->name, ssh_get_error(ss));
		cmd_close(c);
		return START_BROKEN;
	}
	mirai__fail(em, MIRAI_ESSH, "%s: %s failed: %s", h->name, what,
	    ssh_get_error(ss));
	cmd_close(c);
	return MIRAI_ESSH;
}
