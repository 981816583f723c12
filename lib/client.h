/*
 * client.h: what the client_*.c files share, and nothing else includes:
 * the structs of a compute profile, its sockets and peers, the mirai
 * handle, and the mirai__cl_ functions one client file calls in another.
 *
 *   client_profile.c  the registry, profile lifetime, daemons/attach/reset
 *   client_handle.c   mirai handles: table, claim/publish, submit, waits
 *   client_direct.c   peers: queues, send windows, dispatch
 *   client_peer.c     peers: frames from them, heartbeat, pipes
 *   client_pick.c     the least-loaded choice of a peer, in O(log n)
 *   client_proc.c     local servers and the dispatcher process or thread
 *   client_status.c   status and its JSON, control requests, saisei
 *
 * A profile listens with PAIR1 sockets (see struct sock); servers dial in
 * and announce themselves with HELLO.  Without a dispatcher, a task goes at
 * once to the online server with the fewest unfinished tasks (round robin
 * among equals) and waits in that server's queue until the link may take
 * it.
 *
 * Flow control: PAIR1 in polyamorous mode silently drops a message when the
 * pipe's queue (2 messages) is full, so at most WINDOW messages per server
 * are unacknowledged.  The last one a window allows asks for an immediate
 * acknowledgement; every message from a server carries the sequence number
 * of the last message it received.  Whatever queues up while the window is
 * full goes out packed into the next message (adaptive batching).
 *
 * Closing: in NNG 1.5.2 a started tcp pipe closed while its peer is sending
 * can hang the close (and NNG's reaper) for good.  So the client never
 * closes a started pipe: it tells the server EXIT, sends it nothing more,
 * and the server closes.  Refusing a pipe in ADD_PRE, before NNG receives
 * on it, is safe.
 *
 * Locking: one mutex per profile guards its servers, queues and task table.
 * Results are claimed under it and published outside it (hook decoding,
 * waking waiters, completion callbacks), so user code never runs locked.
 * NNG pipe callbacks only record and defer; the work happens on the
 * service thread (service.c).
 */
#ifndef MIRAI_CLIENT_H
#define MIRAI_CLIENT_H

#include <stdatomic.h>

#include "internal.h"

#define TAG "client"
/* With a dispatcher, a submitter waits while more than this many bytes of
 * frames are not yet handed to it (see pace()). */
#define PACE_BYTES ((size_t) 16 << 20)

enum { KIND_ONESHOT = 1, KIND_DIRECT = 2 };
enum { AT_NONE = 0, AT_QUEUE, AT_INFLIGHT };

typedef struct profile profile;
typedef struct peer peer;

/* What client_pick.c keeps: a tree of minimums over slots (see there). */
typedef struct picktree {
	size_t *t;               /* 2 * size nodes; t[0] unused */
	size_t size;             /* leaves, a power of two; 0 until reserved */
} picktree;
/* A slot's value when its peer takes no task. */
#define PICK_NONE SIZE_MAX

/*
 * One listening socket of a profile.  A user-given URL that any number of
 * servers dial is a polyamorous socket; each local server gets a
 * monogamous socket of its own on a loopback port, which saves the two
 * thread hops polyamorous sends take (about 20 us a round trip here).
 */
typedef struct sock {
	profile *prof;
	mirai__link *link;
	int poly;
	int admits;      /* a server's HELLO must hold the profile's secret */
	int mem;         /* in memory: the dispatcher thread's link */
	char *url;
	/* Dialing a dispatcher's client URL (attach): asked (WHO), we say
	 * HELLO with the secret the URL ends in (see mirai__url_cred), if
	 * any. */
	int dials;
	uint32_t slot;
	char secret[MIRAI__SECRET_HEX + 1];
} sock;

/* What few mirais need: a time-out, a completion callback, an error
 * message.  Kept apart so a million queued tasks stay small. */
typedef struct mirai_extra {
	mirai__timer timer;
	mirai_done_fn done;
	void *done_arg;
	char *errtext;
} mirai_extra;

/* What holds a result's bytes. */
enum { OWN_NONE = 0, OWN_MSG, OWN_BUF, OWN_HOOK };

struct mirai {
	uint64_t id;
	profile *prof;
	peer *peer;              /* queued at or in flight to */
	struct mirai *hnext;     /* chain in the profile's tasks */
	MIRAI__ENTRY(struct mirai) entry; /* in its peer's in-flight list;
	                              entry.next also links a list of
	                              claimed mirais */
	/* Never both at once: the encoded TASK frame while queued, then
	 * what holds the result (own says which). */
	union {
		mirai__out *out;
		void *owner;     /* a mirai__msg or a buffer */
	};
	mirai_extra *x;          /* NULL unless needed */
	const void *res;
	struct wnode *waiters;
	uint32_t res_len;
	uint32_t bytes;          /* counted against the profile's queue cap */
	atomic_int state;        /* 1 once resolved and published */
	atomic_int refs;
	int status;
	uint8_t where;
	uint8_t claimed;
	uint8_t own;             /* OWN_* */
};

struct peer {
	profile *prof;
	sock *sk;
	uint64_t pipe_id;        /* NNG's (32 bits), the key of p->by_pipe */
	struct peer *hnext;      /* chain in p->by_pipe */
	size_t slot;             /* index in p->peers and p->pick; SIZE_MAX
	                            once removed */
	struct peer *kick_next;  /* list of peers a dispatch gave tasks */
	int kick;                /* on that list */
	mirai__tx *tx;
	int online;              /* HELLO received */
	int dead;
	int leaving;             /* BYE received */
	int exit_sent;           /* told to exit: send it nothing more */
	int gone;                /* answered GONE: it sends nothing more */
	int muted;               /* cut off for a forged frame: ignored */
	int hello_sent;          /* our HELLO, asked for by WHO */
	int urgent;              /* the next message may pass a full window */
	int sending;
	uint32_t seq_sent, seq_acked;
	mirai__outq queue;
	MIRAI__LIST(mirai) inflight;
	size_t nqueue, ninflight;
	size_t qbytes;           /* bytes of the frames in queue */
	int has_budget;
	uint64_t budget;
	uint64_t assigned, complete;
	int kind;
	int pid;
	uint64_t hook;
	char host[64];
	char binding[96];
	int64_t last_rx, last_tx; /* heartbeat: when a message came, went */
};

typedef struct child {
	MIRAI__ENTRY(struct child) entry; /* in p->children */
	pid_t pid;
	int hello;
	int dispatcher;          /* the profile's mirai-dispatcher */
} child;

/* A control request to the dispatcher, waiting for its reply. */
typedef struct creq {
	MIRAI__ENTRY(struct creq) entry; /* in p->reqs */
	uint64_t id;
	int done;
	int status;
	uint8_t *data;
	size_t len;
} creq;

struct profile {
	char *name;
	atomic_int refs;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	int kind;
	int closing;
	int no_servers;          /* every local server exited */
	const char *no_servers_why;
	int user_url;            /* servers dial in from elsewhere */
	uint64_t refused;        /* peers without the secret */
	int attach_refused;      /* the dispatcher refused our secret */
	int daemons;
	sock **socks;
	size_t nsocks;
	char *url;               /* the user's URL, resolved, with the slot
	                            suffix of secret; NULL if none */
	char secret[MIRAI__SECRET_HEX + 1]; /* what servers at url present */
	mirai_hook hook;
	char *hook_name;
	uint64_t hook_fp;
	mirai_server_opts sopts; /* strings in sopts_mem */
	void *sopts_mem;
	/* TLS of the listening side (mirai_daemons_opts), owned. */
	char *tls_cert, *tls_key, *tls_ca;
	size_t max_msg;
	/* Peers in no order.  A peer's slot is its index here and in pick;
	 * the choice of a peer goes round the slots from rr. */
	peer **peers;
	size_t npeers, cappeers, rr;
	mirai__idmap by_pipe;    /* pipe id -> peer */
	picktree pick;           /* each slot's load if its peer takes tasks */
	int live_pipes;          /* pipes added and not yet removed */
	int dispatcher;          /* tasks go to one mirai-dispatcher */
	mirai_dispatcher *disp;  /* the dispatcher on a thread of ours */
	pthread_t disp_thread;
	int disp_running;
	int retries;             /* default retries of a task */
	size_t max_queue;        /* cap on queued_bytes */
	size_t queued_bytes;     /* bytes of submitted, unresolved tasks */
	int room_waiters;        /* threads waiting for queued_bytes to drop */
	uint64_t next_req;
	MIRAI__LIST(creq) reqs;
	mirai__outq unassigned;
	mirai__idmap tasks;      /* task table: id -> mirai */
	uint64_t next_id;
	uint64_t completed;
	uint64_t retried;         /* direct mode: tasks requeued after their server was lost */
	MIRAI__LIST(child) children; /* local child processes */
	int alive;               /* local child processes not yet reaped */
	char last_failure[600];  /* why the last local server failed to start */
	int dead_spawns;         /* one-shot servers that died unconnected and
	                            have not failed a task yet */
	int oneshot_max;         /* one-shot servers running at once */
	int spawning;            /* one-shot servers being started */
	profile *reg_next;
	int64_t hb;              /* heartbeat interval (ms); 0: off */
	mirai__ticker beat;
	int beat_on;
};

/* Registry entry of a profile name: its daemons (if set) and its one-shot
 * profile (created on first use). */
typedef struct pname {
	MIRAI__ENTRY(struct pname) entry; /* in the registry */
	char *name;
	profile *set;
	profile *oneshot;
} pname;

/* ---- client_profile.c ------------------------------------------------- */

extern pthread_mutex_t mirai__cl_reg_mtx; /* guards the registry */
pname *mirai__cl_pname_find(const char *name); /* called with it held */
void mirai__cl_profile_ref(profile *p);
void mirai__cl_profile_unref(profile *p); /* p may be NULL */
int mirai__cl_profile_for_call(const char *name, profile **out);

/* ---- client_handle.c -------------------------------------------------- */

void mirai__cl_claim(profile *p, mirai *m, int status, mirai **list);
void mirai__cl_set_errtext(mirai *m, const char *fmt, ...) MIRAI_PRINTF(2, 3);
void mirai__cl_publish(mirai *list);

/* ---- client_direct.c -------------------------------------------------- */

void mirai__cl_inflight_remove(peer *pk, mirai *m);
/* Add pk to p's peers (pk->pipe_id set) or take it out; add returns 0 or
 * MIRAI_ENOMEM.  Called locked. */
int mirai__cl_peer_add(profile *p, peer *pk);
void mirai__cl_peer_remove(profile *p, peer *pk);
/* A new peer for a pipe of sk, added to p's peers; NULL when out of
 * memory.  Called locked. */
peer *mirai__cl_peer_new(profile *p, sock *sk, uint32_t pipe);
/* pk's load or whether it takes tasks may have changed: tell the choice.
 * Called locked, wherever nqueue, ninflight, online, dead, leaving,
 * exit_sent or budget change. */
void mirai__cl_peer_changed(profile *p, peer *pk);
void mirai__cl_try_send(profile *p, peer *pk);
void mirai__cl_send_ctrl(profile *p, peer *pk, uint8_t type, uint64_t v);
/* A client's HELLO holding slot and secret (for a dispatcher's client or
 * control URL); NULL: no memory. */
mirai__out *mirai__cl_hello(uint32_t slot, const char *secret);
void mirai__cl_send_exit(profile *p, peer *pk, uint32_t flags);
void mirai__cl_dispatch(profile *p, mirai **list);

/* ---- client_peer.c ---------------------------------------------------- */

peer *mirai__cl_dispatcher_peer(profile *p);
int mirai__cl_sock_open(profile *p, sock *sk, int64_t retry_min,
    int64_t retry_max, mirai_errmsg *err);
/* Stop the heartbeat (unlocked; before the links close). */
void mirai__cl_beat_stop(profile *p);

/* ---- client_pick.c ---------------------------------------------------- */

/* Room for slots 0 .. n-1 (new ones hold PICK_NONE); 0 or
 * MIRAI_ENOMEM (k unchanged). */
int mirai__cl_pick_reserve(picktree *k, size_t n);
void mirai__cl_pick_set(picktree *k, size_t slot, size_t v);
size_t mirai__cl_pick_get(const picktree *k, size_t slot);
/* The first slot going round from start holding the least value other
 * than PICK_NONE; SIZE_MAX when every slot holds that. */
size_t mirai__cl_pick_first(const picktree *k, size_t start);
void mirai__cl_pick_fini(picktree *k);

/* ---- client_proc.c ---------------------------------------------------- */

/* One-shot profile: start servers for waiting tasks while fewer than
 * oneshot_max run.  Called unlocked. */
void mirai__cl_oneshot_more(profile *p);
int mirai__cl_start_local(profile *p, const char *url, int k, int one_shot,
    mirai_errmsg *err);
int mirai__cl_wait_local(profile *p, mirai_errmsg *err);
int mirai__cl_start_dispatcher(profile *p, const mirai_daemons_opts *o,
    const char *url, mirai_errmsg *err);
int mirai__cl_start_dispatcher_thread(profile *p, const mirai_daemons_opts *o,
    const char *url, mirai_errmsg *err);

#endif /* MIRAI_CLIENT_H */
