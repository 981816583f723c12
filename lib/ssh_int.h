/*
 * ssh_int.h: what the files of the ssh module share; included by
 * lib/ssh*.c only, the only files that call libssh.  ssh.h is the
 * module's face to the rest of the library.
 *
 * The short type and macro names here (cmd, host, TAIL_MAX, ...) stay
 * inside those files; the functions they share carry the mirai__ssh_
 * prefix, and everything else in them is static.
 */
#ifndef MIRAI_SSH_INT_H
#define MIRAI_SSH_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include "internal.h"
#include "ssh.h"

/* How much of a command's stderr is kept for its exit report. */
#define TAIL_MAX 480
/* The exit status reported when a command's end is unknown (the
 * connection was lost, or the server sent no status): ssh(1)'s. */
#define LOST_STATUS 255

/* What mirai__ssh_start() returns besides 0 and a command's own error
 * value. */
#define START_STOPPED (-1) /* the module is stopping */
#define START_BROKEN  (-2) /* the session is unusable */
#define START_REFUSED (-3) /* the server wants no more channels on it */

enum owner {
	OWN_QUEUE,  /* waits in the queue for a worker */
	OWN_WORKER, /* a worker sets it up or opens channels on it */
	OWN_HANDED, /* on its way to the keeper */
	OWN_KEEPER, /* the keeper watches its channels */
};

typedef struct cmd cmd;
typedef struct host host;
typedef struct conf conf; /* ssh_config.c's */
typedef MIRAI__LIST(host) host_list;

struct cmd {
	cmd *next;
	size_t id;
	char *command;
	unsigned char *input;
	size_t input_len;
	ssh_channel ch;
	struct ssh_channel_callbacks_struct cbs;
	/* Written by the channel callbacks, in the session's thread. */
	int status;          /* exit status; -1 until one arrives */
	int signo;           /* signal that ended it; 0: none */
	char signame[16];
	int closed;          /* the server closed the channel */
	int tail_cut;        /* the tail lost its beginning */
	size_t tail_len;
	char tail[TAIL_MAX]; /* the end of its stderr */
};

struct host {
	MIRAI__ENTRY(host) entry;  /* in s->hosts */
	host *tnext;     /* in its s->table bucket, while it takes commands */
	uint32_t hash;   /* of name, user and port */
	int in_table;    /* 0 once it refused a channel, or is gone */
	MIRAI__ENTRY(host) qentry; /* in s->queue or s->handed */
	MIRAI__ENTRY(host) kentry; /* in s->kept */
	char *name;      /* as the caller wrote it: messages name it */
	char *user;      /* NULL: from the ssh config, else the local user */
	int port;        /* 0: from the ssh config, else 22 */
	int owner;       /* enum owner; under s->mtx */
	cmd *pending;    /* waiting for a channel; under s->mtx */
	cmd *pending_tail;
	/* The owner's alone. */
	ssh_session ss;
	int hostkey;     /* enum mirai__ssh_hostkey, never FROM_CONFIG */
	int hash_known;  /* learnt keys are written hashed */
	int ready;       /* connected and authenticated */
	int in_event;    /* in the keeper's ssh_event */
	cmd *running;    /* channel open */
};

struct mirai__ssh {
	pthread_mutex_t mtx;
	pthread_cond_t work; /* a host was queued, or stop */
	mirai__ssh_cb cb;
	void *arg;
	int max_parallel;
	int port;
	int hostkey;
	int timeout_ms;
	char *user;
	char *identity;
	char *known_hosts;
	conf *conf;     /* read once by create; read-only after */
	/* Under mtx. */
	host_list hosts; /* every host, also the full ones */
	host **table;   /* hosts that take commands, by hash; NULL: none yet */
	size_t nbuckets;
	size_t ntable;
	host_list queue; /* for a worker */
	size_t queued;
	host_list handed; /* by the workers, for the keeper */
	pthread_t *workers;
	int nworkers;
	int nidle;
	/* Threads and their wake-ups. */
	pthread_t keeper;
	ssh_event ev;   /* the keeper's */
	host_list kept; /* the keeper's */
	int wake_fd;    /* wakes the keeper; drained by it */
	int stop_fd;    /* written once by destroy, never drained */
	atomic_int stopping;
};

/* ssh.c: the module, its host table and the keeper. */
void mirai__ssh_report(mirai__ssh *s, size_t id, int event, int status,
    const char *msg);
void mirai__ssh_poke(int fd);
void mirai__ssh_pending_push_front(mirai__ssh *s, host *h, cmd *c,
    cmd *last);
void mirai__ssh_host_drop(mirai__ssh *s, host *h, int err, const char *msg);
void mirai__ssh_reroute(mirai__ssh *s, host *h, cmd *c);

/* ssh_worker.c: the workers, which set sessions up and start commands. */
void *mirai__ssh_worker_main(void *arg);
int mirai__ssh_session_dead(ssh_session ss);
int mirai__ssh_wait_io(mirai__ssh *s, ssh_session ss, int64_t deadline);
int mirai__ssh_wait_error(host *h, int rv, const char *what,
    mirai_errmsg *em);

/* ssh_channel.c: a command and its channel. */
cmd *mirai__ssh_cmd_new(size_t id, const char *command, const void *input,
    size_t len);
void mirai__ssh_cmd_free(cmd *c);
void mirai__ssh_cmd_free_list(cmd *c);
int mirai__ssh_cmd_exit(const cmd *c, const char *name, char *msg,
    size_t len);
int mirai__ssh_start(mirai__ssh *s, host *h, cmd *c, mirai_errmsg *em,
    int *drop_err);

/* ssh_config.c: the ssh config. */
int mirai__ssh_conf_load(conf **out, const char *path, mirai_errmsg *err);
void mirai__ssh_conf_free(conf *c);
int mirai__ssh_apply_config(mirai__ssh *s, host *h, mirai_errmsg *em);

/* ssh_hostkey.c: known_hosts. */
int mirai__ssh_check_host_key(mirai__ssh *s, host *h, mirai_errmsg *em);

#endif /* MIRAI_SSH_INT_H */
