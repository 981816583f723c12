/*
 * dispatcher.h: what the dispatcher's files share, and nothing else
 * includes: the structs of the dispatcher, its slots, their sockets and
 * its tasks, and the mirai__d_ functions one dispatcher file calls in
 * another.
 *
 *   dispatcher.c   life cycle and public API, local servers, the control
 *                  socket, answers to status and saisei requests
 *   disp_queue.c   the task table, dtask lifetime, the FIFO, the lists
 *                  of servers ready for a task, the tasks each server
 *                  holds, dispatch
 *   disp_slots.c   sending to servers, frames from servers (cutting off
 *                  forged ones), lost servers, heartbeats, saisei
 *   disp_socks.c   where servers connect: own sockets, shared listeners
 *                  and the admission of their pipes, dsocks, closing
 *   disp_up.c      the link to the client: frames from it, results to
 *                  it, attach and detach
 *
 * The dispatcher sits between one client and a set of server slots, keeps
 * the FIFO queue of tasks and gives a task only to a server that is online
 * and idle.  With prefetch k (an opt-in for farms of short tasks) a server
 * may also hold up to k tasks queued behind the one it runs, so that it
 * never waits a round trip for its next one; idle servers still come
 * first.  A server runs what it holds in the order it was sent.
 *
 * Links: upstream, the dispatcher dials the client like a server does and
 * introduces itself as a dispatcher; or it listens for one client at a
 * time to attach (mirai-launch), and outlives its clients.  A control
 * socket, if asked for, answers status and saisei requests of any
 * process.  Downstream, a local slot listens on an owner-only ipc socket
 * of its own (monogamous PAIR1: NNG refuses a second pipe, and sends skip
 * the thread hops of a shared socket); all other slots share one listener
 * (polyamorous PAIR1), and a server's HELLO names its slot and that slot's
 * secret, checked before anything else is read from the pipe.  Every slot
 * URL ends in "/<secret>/<slot>" (see mirai__url_cred).
 *
 * Scheduling is event driven: a task arrives, a server says HELLO, or a
 * result comes back, and mirai__d_dispatch() pairs the head of the queue
 * with the server that has been idle longest (then, with prefetch, with
 * the one that has had room the longest).  On a result the server gets
 * its next task before the result is forwarded, so the server waits for
 * nothing but the round trip.  Everything runs in NNG callbacks under one
 * mutex; the caller of mirai_dispatcher_run() only waits for the end.
 *
 * Closing follows the rule of client.h: a started pipe is closed only once
 * the peer has gone quiet (EXIT sent, or the link already down), because
 * NNG 1.5.2 can hang closing a pipe that is receiving.
 */
#ifndef MIRAI_DISPATCHER_H
#define MIRAI_DISPATCHER_H

#include <string.h>

#include "internal.h"

#define TAG "dispatcher"

/* A pipe that has not said HELLO with its secret after this is refused. */
#define ADMIT_MS 10000
/* A refused pipe is closed after this, if its peer did not go first. */
#define REFUSE_GRACE_MS 1000
/* A server for a slot whose server is still there waits this long. */
#define WAIT_MS 3000

typedef struct slot slot;
typedef struct dsock dsock;

/*
 * A queued or running task: its TASK frame as it came.  Small, because a
 * million may wait: a big task keeps its message instead, its pointer
 * where a small task's frame starts.
 */
typedef struct dtask {
	struct dtask *next;        /* FIFO while queued; the list of its
	                              server's held tasks while sent */
	struct dtask *hnext;       /* chain in d->tasks */
	uint64_t id;
	uint32_t len;              /* frame length */
	uint8_t retries;
	unsigned queued : 1;
	unsigned orphan : 1;       /* its client left: run out, report nothing */
	unsigned big : 1;          /* in a message of its own: see
	                              mirai__d_msg_of() */
	unsigned dropped : 1;      /* cancelled while queued: freed when
	                              reached, so the FIFO needs one link */
	unsigned cancel_sent : 1;  /* a CANCEL went to the server holding it:
	                              its result may be for a task that never
	                              started */
	unsigned held_at : 19;     /* 1 + the index of the slot holding it
	                              (sent, not answered); 0: none.  With
	                              the flags it fills the 3 bytes after
	                              retries: DTASK_HDR is 32 */
	uint8_t frame[];           /* a small task's frame, without its 8-byte
	                              frame header (rebuilt from len) */
} dtask;

/* A task is allocated to the end of its frame, not to sizeof(dtask): a
 * million queued tasks are a million of these. */
#define DTASK_HDR offsetof(dtask, frame)

/* The most slots a dispatcher has: held_at must number them all. */
#define D_MAX_SLOTS 100000
_Static_assert(D_MAX_SLOTS < (1u << 19), "dtask.held_at is too narrow");

/* The message of a big task (NULL once handed on), kept unaligned where a
 * small task's frame would be. */
static inline mirai__msg *
mirai__d_msg_of(const dtask *t)
{
	mirai__msg *m;

	memcpy(&m, t->frame, sizeof m);
	return m;
}

static inline void
mirai__d_set_msg(dtask *t, mirai__msg *m)
{
	memcpy(t->frame, &m, sizeof m);
}

/*
 * A listener that slots share: servers dial its URL, and their HELLO
 * names the slot and its secret (see mirai__url_cred).  Creating a slot
 * on it costs a secret, not a socket: 100,000 slots listen on one port.
 */
typedef struct dlis {
	mirai_dispatcher *d;
	mirai__link *link;
	char *url;         /* resolved: what servers dial, before the suffix */
} dlis;

/*
 * A pipe on a shared listener.  Its first frame must be a HELLO that names
 * a free slot of this listener with that slot's secret; until then it is
 * pending (and refused after ADMIT_MS), and after that it belongs to the
 * slot's dsock.
 */
typedef struct dpipe {
	uint64_t id;       /* the pipe */
	struct dpipe *hnext;
	MIRAI__ENTRY(struct dpipe) entry; /* in d->pend or d->adm */
	dlis *lis;
	dsock *ds;         /* NULL while pending */
	dsock *waits_for;  /* pending: its slot's server is still there */
	int64_t t_add;
	int refused;       /* nothing more is read from it */
} dpipe;

typedef MIRAI__LIST(dpipe) dpipe_list;

/*
 * One incarnation of a slot: its secret and its pipe.  A local slot has a
 * socket of its own (link owned, monogamous: it saves the thread hops of
 * a shared socket); any other slot is on a shared listener (lis set).
 * saisei replaces a slot's dsock with a new one and a new secret.
 */
struct dsock {
	slot *sl;
	mirai_dispatcher *d;
	mirai__link *link; /* own socket, or the shared listener's */
	dlis *lis;         /* NULL: own socket */
	mirai__tx *tx;     /* sender to the pipe (shared; made on admission) */
	mirai__outq q;
	int sending;
	int has_pipe;
	uint32_t pipe_id;
	int retired;
	int muted;         /* its peer was cut off: nothing more is read */
	uint32_t seq;
	uint32_t seq_acked; /* shared listener: the peer has all up to this */
	int urgent;        /* the next message may pass a full window */
	/* A server with the secret that came while the slot's server is
	 * still there (a restart racing the old one's end): it waits, with
	 * its first message, until that one goes or ADMIT_MS. */
	struct dpipe *waiter;
	mirai__msg *waiter_msg;
	int64_t last_rx, last_tx; /* heartbeat: when a message came, went */
	char secret[MIRAI__SECRET_HEX + 1]; /* "" with no_token */
};

struct slot {
	mirai_dispatcher *d;
	size_t idx;
	dsock *cur;
	char *url;         /* what servers dial */
	int shared;        /* on a shared listener: saisei can regenerate */
	int free_listed;   /* in d->free_slots (no_token) */
	int online;        /* HELLO received on the current pipe */
	int leaving;       /* BYE received, or a bounce: it takes nothing more */
	int exit_sent;
	int gone;          /* GONE received: it sends nothing more */
	/* The tasks sent to the server and not yet answered, oldest first
	 * (linked by next): the one it runs, then up to prefetch more. */
	dtask *held, *held_tail;
	uint32_t nheld;
	uint64_t max_tasks;  /* tasks the server will still run, from its
	                        HELLO; 0: no limit */
	uint64_t unsure;     /* results of this instance for tasks cancelled
	                        while held: they may not count there */
	uint64_t bounce_id;  /* its last bounced task, if bounced: the next
	                        bounce goes back behind it */
	int bounced;
	uint64_t instance, assigned, complete, retries;
	int pid;
	char host[64];
	char binding[96];
	uint64_t hook;     /* the server's hook fingerprint (0: none) */
	char hook_name[64];
	int hook_warned;   /* a task with another hook was logged */
	/* Where dispatch() finds it: 0 nowhere, SLOT_IDLE in d->idle,
	 * SLOT_ROOM in d->room. */
	int ready;
	MIRAI__ENTRY(slot) ready_entry;
};

#define SLOT_IDLE 1 /* online, holds nothing */
#define SLOT_ROOM 2 /* online, holds fewer tasks than it may */

/* Slots ready for a task, in the order they became so. */
typedef MIRAI__LIST(slot) slot_list;

struct mirai_dispatcher {
	mirai_dispatcher_opts opts; /* opts.server points to sopts */
	mirai_server_opts sopts;    /* strings in sopts_mem */
	void *sopts_mem;
	char **strings;    /* copies of the option strings */
	size_t nstrings;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	slot *slots;
	size_t nslots;
	int no_token;
	dlis *lis;         /* shared listeners */
	size_t nlis;
	mirai__idmap pipes;  /* pipe id -> dpipe, shared listeners only */
	dpipe_list pend;   /* pending pipes, oldest first */
	dpipe_list adm;    /* admitted (or refused) pipes */
	size_t *free_slots; /* no_token: shared slots with no server */
	size_t nfree;

	/* upstream */
	int listen;        /* clients attach to us (else we dial one) */
	int listened;      /* sockets bound (mirai_dispatcher_listen) */
	uint32_t up_pipe_id;
	char *client_url;  /* resolved listen URL */
	uint32_t up_slot;  /* from the client URL we dial, for our HELLO */
	int up_mem;        /* that URL is in memory: see
	                      mirai__dispatcher_in_memory() */
	char up_secret[MIRAI__SECRET_HEX + 1];
	/* Listening beyond this machine: what a client's HELLO (attach) and
	 * every control request must hold; "" for ipc and with no_token. */
	char attach_secret[MIRAI__SECRET_HEX + 1];
	char ctl_secret[MIRAI__SECRET_HEX + 1];
	int up_pending;    /* a client's pipe waits for its HELLO */
	int up_refusing;   /* ... and was refused: it is being closed */
	int64_t up_t_add;
	uint64_t refused;  /* clients and askers without the secret */
	mirai__link *ctl;  /* control socket, if any */
	char *control_url;
	mirai__link *up;
	mirai__outq up_q;
	int up_sending;
	uint32_t up_seq;
	uint32_t up_recv_seq;
	int up_connected;
	int up_lost;
	int exit_req;
	uint32_t exit_flags;
	int stop_req;
	int closing;
	int up_mute;       /* GONE sent to the client */

	/* queue */
	dtask *head, *tail;
	size_t qlen;
	mirai__idmap tasks;  /* id -> dtask, queued or held by a server */
	slot_list idle;      /* servers holding nothing: served first */
	slot_list room;      /* servers with room for a prefetched task */
	uint32_t cap;        /* tasks a server may hold: 1 + prefetch */
	uint64_t completed, retried;
	uint64_t forged;    /* peers cut off for frames no server sends */

	void (*watch)(void *arg); /* told of servers coming and going */
	void *watch_arg;
	int alive;         /* local servers not yet reaped */
	pid_t *kids;       /* the local servers started (watched) */
	size_t nkids;
	int pending;       /* deferred jobs holding a reference */
	int64_t hb;        /* heartbeat interval (ms); 0: off */
	int64_t up_last_rx, up_last_tx;
	mirai__ticker beat;
	char last_failure[128];
};

/* ---- disp_queue.c ----------------------------------------------------- */

/* Out of the table, and freed with its message. */
void mirai__d_dtask_free(mirai_dispatcher *d, dtask *t);
/* Queue t at the tail, or at the head (front: a retry or a bounce). */
void mirai__d_q_push(mirai_dispatcher *d, dtask *t, int front);
/* Queue t right behind prev, a queued task (a bounce behind the one the
 * same server bounced before it). */
void mirai__d_q_push_after(mirai_dispatcher *d, dtask *prev, dtask *t);
/* Queue a list of tasks (linked by next, oldest first) at the head, in
 * their order. */
void mirai__d_q_push_list(mirai_dispatcher *d, dtask *list);
dtask *mirai__d_q_pop(mirai_dispatcher *d);
void mirai__d_q_drop(mirai_dispatcher *d, dtask *t);
/* The most tasks sl may hold now: 1 + prefetch, fewer when its server
 * announced it would run fewer (0 once it ran them all). */
uint32_t mirai__d_slot_cap(const mirai_dispatcher *d, const slot *sl);
/* Put sl in d->idle or d->room as its tasks allow (keeping its place when
 * it stays in the same list), or take it out of both. */
void mirai__d_ready(mirai_dispatcher *d, slot *sl);
void mirai__d_unready(mirai_dispatcher *d, slot *sl);
/* sl's held tasks: add the newest; take t out (prev: the one before it,
 * NULL for the oldest); take them all (a list, oldest first).  A task
 * knows the slot holding it (held_at) from push to take. */
void mirai__d_held_push(slot *sl, dtask *t);
void mirai__d_held_take(slot *sl, dtask *prev, dtask *t);
dtask *mirai__d_held_take_all(slot *sl);
/* The slot holding t, or NULL; O(1). */
slot *mirai__d_held_by(mirai_dispatcher *d, const dtask *t);
void mirai__d_dispatch(mirai_dispatcher *d);

/* ---- disp_slots.c ----------------------------------------------------- */

void mirai__d_slot_send(mirai_dispatcher *d, dsock *ds);
/* A control frame (u64: with a 64-bit value) first in sl's line. */
void mirai__d_slot_ctrl(mirai_dispatcher *d, slot *sl, uint8_t type,
    uint64_t v, int u64);
void mirai__d_slot_exit(mirai_dispatcher *d, slot *sl, uint32_t flags);
int mirai__d_send_task(mirai_dispatcher *d, slot *sl, dtask *t);
/* The frames of msg from the server at ds.  Called locked; returns 1 when
 * the caller frees msg, 0 when it was passed on. */
int mirai__d_slot_frames(mirai_dispatcher *d, dsock *ds, mirai__msg *msg);
/* Receive and send callbacks of a slot's dsock (own socket, or sender). */
void mirai__d_slot_rx(void *arg, mirai__msg *msg);
void mirai__d_slot_tx(void *arg, int rv);
/* The server of sl is lost: its tasks retried or reported, sl offline.
 * Called locked. */
void mirai__d_slot_lost(mirai_dispatcher *d, slot *sl);

/* ---- disp_socks.c ----------------------------------------------------- */

/* Close pipe of link on the service thread, after grace_ms.  Called
 * locked. */
void mirai__d_pipe_close_later(mirai_dispatcher *d, mirai__link *link,
    uint32_t pipe, int64_t grace_ms);
/* The same, then then(d, pipe) is called locked. */
void mirai__d_pipe_close_then(mirai_dispatcher *d, mirai__link *link,
    uint32_t pipe, int64_t grace_ms,
    void (*then)(mirai_dispatcher *d, uint32_t pipe));
/* Tell the peer at pipe of link it is refused (EXIT with
 * MIRAI__EXIT_REFUSED), and close the pipe after a grace period.  Called
 * locked. */
void mirai__d_pipe_refuse(mirai_dispatcher *d, mirai__link *link,
    uint32_t pipe);
/* A new dsock of sl (on lis, or NULL for a socket of its own) with a fresh
 * secret; NULL: no memory. */
dsock *mirai__d_dsock_new(mirai_dispatcher *d, slot *sl, dlis *lis);
/* Free a retired dsock on the service thread.  Called locked. */
void mirai__d_dsock_free_later(mirai_dispatcher *d, dsock *ds);
/* sl's URL for ds (malloc'd): base, then the slot suffix. */
char *mirai__d_slot_url(mirai_dispatcher *d, const dsock *ds,
    const char *base);
/* Refuse the pending pipes that said nothing for too long.  Called
 * locked. */
void mirai__d_pipes_sweep(mirai_dispatcher *d, int64_t now);
/* Open a shared listener on url into lis. */
int mirai__d_lis_open(mirai_dispatcher *d, dlis *lis, const char *url,
    mirai_errmsg *err);
/* Give sl its first dsock: a socket of its own listening on own_url
 * (owner-only ipc) when own_url is set, else one on lis; sl->url is set. */
int mirai__d_slot_open(mirai_dispatcher *d, slot *sl, const char *own_url,
    dlis *lis, mirai_errmsg *err);
/* Close every slot socket and listener (destroy; their last callbacks may
 * defer jobs), then, once no job is pending, free pipes and dsocks. */
void mirai__d_slots_close(mirai_dispatcher *d);
void mirai__d_slots_free(mirai_dispatcher *d);
/* Heartbeat of the slots: PING the quiet ones, take the silent ones as
 * lost.  Called locked. */
void mirai__d_slots_beat(mirai_dispatcher *d, int64_t now);
/* A REP frame for request req (0 when nobody asked); the caller owns it. */
mirai__out *mirai__d_saisei(mirai_dispatcher *d, uint64_t req, uint32_t i,
    int force);

/* ---- disp_up.c -------------------------------------------------------- */

void mirai__d_up_send(mirai_dispatcher *d);
/* Queue o (consumed) for the client. */
void mirai__d_up_queue(mirai_dispatcher *d, mirai__out *o);
void mirai__d_up_error(mirai_dispatcher *d, uint64_t id, int status,
    const char *text);
void mirai__d_send_hello(mirai_dispatcher *d);
/* Heartbeat of the client link.  Called locked. */
void mirai__d_up_beat(mirai_dispatcher *d, int64_t now);
/* Open the upstream link (d->up), in memory when mem is set (see
 * mirai__dispatcher_in_memory()); nothing listens or dials yet. */
int mirai__d_open_up(mirai_dispatcher *d, int mem, mirai_errmsg *err);
/* Whether a HELLO frame f names slot 0 and secret (a client's HELLO at
 * an attach or control URL).  Counts and logs (bounded) a refusal. */
int mirai__d_client_ok(mirai_dispatcher *d, const mirai__frame *f,
    const char *secret, const char *where);

/* ---- dispatcher.c ----------------------------------------------------- */

/* The REP frame answering q (the caller owns it; NULL: no memory). */
mirai__out *mirai__d_answer(mirai_dispatcher *d, const mirai__req_view *q);
mirai__out *mirai__d_reply_text(uint64_t req, int status, const char *text);

/* The dispatcher's TLS material, for every link it listens on or dials
 * (tls+tcp:// and wss:// URLs). */
#define D_TLS(d)                                                            \
	((mirai__tls) {.cert_file = (d)->opts.tls_cert,                     \
	    .key_file = (d)->opts.tls_key, .ca_file = (d)->opts.tls_ca})

#endif /* MIRAI_DISPATCHER_H */
