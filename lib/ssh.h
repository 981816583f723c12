/*
 * ssh.h: running commands on remote hosts over ssh, many at once.  The
 * launcher starts its servers through this; lib/ssh*.c are the only files
 * that call libssh (ssh.c tells which does what; ssh_int.h is what they
 * share).
 */
#ifndef MIRAI_SSH_H
#define MIRAI_SSH_H

#include <stddef.h>

#include "mirai.h"

typedef struct mirai__ssh mirai__ssh;

/*
 * What is done with a host key that known_hosts lacks or contradicts.  A
 * changed key is refused under every policy: the launcher cannot ask
 * anyone, and a changed key is what an attack looks like.
 */
enum mirai__ssh_hostkey {
	MIRAI__SSH_FROM_CONFIG = 0, /* StrictHostKeyChecking of the ssh
	                               config decides; strict without one */
	MIRAI__SSH_STRICT      = 1, /* unknown or changed host key: refuse */
	MIRAI__SSH_ACCEPT_NEW  = 2, /* learn unknown keys; refuse changed ones */
};

/*
 * The ssh config is read with OpenSSH's rules (ssh_config(5)): Host
 * patterns are matched once, against the host name as given (the alias,
 * never the HostName it maps to), and the first value found for an option
 * wins.  Match blocks are left to libssh.  StrictHostKeyChecking (when
 * hostkey is MIRAI__SSH_FROM_CONFIG) and HashKnownHosts (learnt keys are
 * written hashed) are honoured outside Match blocks.
 */
typedef struct mirai__ssh_opts {
	int max_parallel;        /* connection setups at once; 0: 16 */
	int port;                /* 0: from the ssh config, else 22 */
	const char *user;        /* NULL: from the ssh config, else local user */
	const char *identity;    /* a private key file; NULL: the agent and
	                            the default keys */
	const char *config;      /* ssh config file; NULL: ~/.ssh/config, then
	                            /etc/ssh/ssh_config (as ssh(1) without -F) */
	const char *known_hosts; /* NULL: from the ssh config, else
	                            ~/.ssh/known_hosts */
	int hostkey;             /* enum mirai__ssh_hostkey */
	int timeout_ms;          /* connect and authentication; 0: 10000 */
} mirai__ssh_opts;

enum mirai__ssh_event {
	MIRAI__SSH_STARTED = 1, /* the command runs; its input was written */
	MIRAI__SSH_FAILED  = 2, /* it could not be started: status is an error
	                           value, msg names the host and the reason */
	MIRAI__SSH_EXITED  = 3, /* it ended: status is its exit status (or
	                           128 + signal), msg the end of its stderr */
};

/* Reports what happens to command id; called from the module's threads,
 * never with one of its locks held. */
typedef void (*mirai__ssh_cb)(void *arg, size_t id, int event, int status,
    const char *msg);

int mirai__ssh_create(mirai__ssh **out, const mirai__ssh_opts *opts,
    mirai__ssh_cb cb, void *arg, mirai_errmsg *err);

/*
 * Start command on host ("host" or "user@host"; user and port 0 fall back
 * to the options, then the ssh config) under id, in the background.  input
 * (may be NULL) is written to the command's stdin, which then stays open:
 * the command sees EOF only when the channel closes (mirai__ssh_destroy,
 * or this process dies), a second tie to the launcher besides its own
 * network link.  Secrets travel there, never on the command line.
 * Commands on one host share one ssh session.
 */
int mirai__ssh_run(mirai__ssh *s, size_t id, const char *host,
    const char *user, int port, const char *command, const void *input,
    size_t input_len);

/* Close every channel and session (remote stdins see EOF), stop the
 * threads, free.  Accepts NULL. */
void mirai__ssh_destroy(mirai__ssh *s);

#endif /* MIRAI_SSH_H */
