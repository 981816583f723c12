/*
 * server_int.h: what the server's files share, and nothing else includes:
 * the structs of a server, its functions, its queued tasks and the task in
 * hand, and the mirai__srv_ functions one server file calls in another.
 *
 *   server.c       create/destroy, the registry of functions, hooks,
 *                  plugins, run/stop and the run loop, CPU binding
 *   server_link.c  the link to the client: sending, receiving frames,
 *                  pipes, heartbeats, HELLO, leaving and bouncing tasks
 *   server_task.c  the task API (accessors, replies, failure,
 *                  cancellation) and executing a task into its result
 *
 * The server runtime.  A server dials one URL and executes the
 * tasks that arrive there, one at a time, in arrival order.
 *
 * Threads: the caller of mirai_server_run() executes tasks; NNG's callbacks
 * receive messages (queueing tasks, acting on cancel and exit at once, even
 * while a task runs) and send results.  One mutex guards the state.
 *
 * Leaving: when a limit is reached (idle, wall time, max tasks) the server
 * says BYE and returns any task it has not started (BOUNCE), so the client
 * can give it to another server; then it waits, bounded, for the client's
 * EXIT, which says every result arrived and nothing more will be sent.
 * Only then does it close: closing a pipe the peer still sends on can hang
 * NNG 1.5.2 (see client.h).
 */
#ifndef MIRAI_SERVER_INT_H
#define MIRAI_SERVER_INT_H

#include <stdatomic.h>

#include "internal.h"

#define TAG "server"

typedef struct fn_entry {
	char *name;
	mirai_fn fn;
	void *arg;
} fn_entry;

/* A task held by the server, from arrival until its result is queued. */
typedef struct stask {
	MIRAI__ENTRY(struct stask) entry; /* in the server's queue */
	uint64_t id;
	uint32_t timeout_ms;
	uint32_t flags;
	uint64_t hook;
	char *fn;
	const uint8_t *data;
	size_t len;
	mirai__msg *msg; /* owns data when the task came alone in a message */
	uint8_t mem[];
} stask;

struct mirai_task {
	mirai_server *srv;
	stask *t;
	const void *in;
	size_t in_len;
	void *in_dec;         /* input decoded by the hook */
	mirai__out *reply;    /* RESULT frame, payload written in place */
	uint8_t *raw;         /* with a hook: reply before encoding */
	size_t raw_len;
	char *errmsg;
	atomic_int cancelled;
	pid_t pgid;
};

struct mirai_server {
	mirai_server_opts opts;
	size_t max_msg;
	fn_entry *fns;
	size_t nfns, capfns;
	mirai_hook hook;
	char *hook_name;
	uint64_t hook_fp;
	void **dls;
	size_t ndls;

	pthread_mutex_t mtx;
	pthread_cond_t cv;
	mirai__link *link;
	MIRAI__LIST(stask) queue; /* tasks not started yet, oldest first */
	size_t qlen;
	mirai_task *current;
	mirai__outq outq;
	int sending;
	int ack_pending;
	uint32_t seq_sent;
	uint32_t recv_seq;
	int connected;
	int conn_lost;
	int exit_req;
	int stop_req;
	int leaving;
	int mute;         /* GONE sent: nothing more may go out */
	uint64_t completed;
	int64_t t_start;
	int64_t t_last;
	char dialing[160];         /* the URL dialed, redacted, for logs */
	char base[1024];           /* the URL dialed, without slot suffix */
	uint32_t slot;             /* from the URL, for the HELLO */
	int refused;               /* EXIT with MIRAI__EXIT_REFUSED came */
	char secret[MIRAI__SECRET_HEX + 1];
	int64_t next_dial_note;    /* when to say again it is not connected */
	int dial_warned;
	char host[256];
	void *opts_mem;   /* the strings of opts */
	char binding[256];
	int64_t hb;       /* heartbeat interval (ms); 0: off */
	int64_t last_rx, last_tx; /* when a message last came, went */
	mirai__ticker beat;
};

/* ---- server.c --------------------------------------------------------- */

fn_entry *mirai__srv_find_fn(mirai_server *srv, const char *name);
void mirai__srv_stask_free(stask *t); /* t may be NULL */

/* ---- server_link.c ---------------------------------------------------- */

/* Send what is queued if nothing is in flight.  Called locked. */
void mirai__srv_kick_send(mirai_server *srv);
void mirai__srv_queue_out(mirai_server *srv, mirai__out *o);
/* An error RESULT with a message.  Called locked or unlocked. */
mirai__out *mirai__srv_error_result(mirai_server *srv, uint64_t id,
    int status, const char *text);
void mirai__srv_queue_remove(mirai_server *srv, stask *t);
/* The link's callbacks, and the heartbeat's. */
void mirai__srv_on_tx(void *arg, int rv);
void mirai__srv_on_rx(void *arg, mirai__msg *msg);
int mirai__srv_on_pipe(void *arg, int ev, uint32_t pipe);
void mirai__srv_beat(void *arg);
void mirai__srv_send_hello(mirai_server *srv);
/* Say BYE, return unstarted tasks, and wait (bounded) until the results
 * are out and the client closed the link.  Called locked. */
void mirai__srv_leave(mirai_server *srv, int why);

/* ---- server_task.c ---------------------------------------------------- */

mirai__out *mirai__srv_run_task(mirai_server *srv, mirai_task *task);
void mirai__srv_task_cleanup(mirai_server *srv, mirai_task *task);

#endif /* MIRAI_SERVER_INT_H */
