/*
 * internal.h: names shared between the library's modules (mirai__ tier).
 * Nothing here is exported from libmirai.so.
 */
#ifndef MIRAI_INTERNAL_H
#define MIRAI_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "codec.h"
#include "list.h"
#include "mirai.h"

/* ---- log.c -------------------------------------------------------- */

extern int mirai__log_level;
void mirai__log(int level, const char *tag, const char *fmt, ...)
    MIRAI_PRINTF(3, 4);
/* The descriptor mirai_log_stderr() writes to (a server that discards its
 * output keeps a copy of the original stderr here). */
void mirai__log_set_fd(int fd);

#define MIRAI__LOG(lvl, tag, ...)                                    \
	do {                                                          \
		if ((lvl) <= mirai__log_level) {                      \
			mirai__log((lvl), (tag), __VA_ARGS__);        \
		}                                                     \
	} while (0)

/* Fill err (if not NULL) and return rv. */
int mirai__fail(mirai_errmsg *err, int rv, const char *fmt, ...)
    MIRAI_PRINTF(3, 4);
/*
 * The end of a public call taking an errmsg: the work was done with the
 * private *mine (text[0] set to '\0' before); on failure its text, or the
 * description of rv when it says nothing, goes to err (if not NULL), which
 * a success leaves unchanged.  Returns rv.
 */
int mirai__errmsg_out(mirai_errmsg *err, const mirai_errmsg *mine, int rv);
/* Check a timeout (mirai.h's conventions) and give the one to use: dflt
 * for 0 (which may be MIRAI_FOREVER itself), -1 for MIRAI_FOREVER; -2 for
 * an invalid value. */
int64_t mirai__timeout(int64_t timeout_ms, int64_t dflt);

/* ---- util.c ------------------------------------------------------- */

int64_t mirai__now_ms(void);  /* monotonic */
int64_t mirai__now_ns(void);  /* monotonic */
void mirai__cond_init(pthread_cond_t *cv); /* monotonic clock */
/* Wait on cv until deadline_ms (monotonic; < 0: no deadline).
 * Returns 0, or ETIMEDOUT (the errno value) when the deadline passed. */
int mirai__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mtx,
    int64_t deadline_ms);
char *mirai__strdup(const char *s);
/* A deep copy of src (NULL: MIRAI_SERVER_OPTS_INIT) into *dst: its
 * strings and plugin list go into one block, *mem, released with free().
 * MIRAI_ENOMEM or 0. */
int mirai__sopts_copy(mirai_server_opts *dst, const mirai_server_opts *src,
    void **mem);
void mirai__hostname(char *buf, size_t len);
/*
 * Write len bytes of data to the new file dir/name, mode 0600, synced to
 * disk.  Refuses (MIRAI_EPERM) a dir not owned by this user or writable
 * by group or others, a name with a '/' (MIRAI_EINVAL) and an existing
 * file or link (MIRAI_EEXIST).  *path gets dir/name, malloc'd, owned by
 * the caller.
 */
int mirai__write_private(const char *dir, const char *name, const void *data,
    size_t len, char **path, mirai_errmsg *err);

/* A growable string. */
typedef struct mirai__sb {
	char *buf;
	size_t len, cap;
	int failed; /* out of memory at some point */
} mirai__sb;
void mirai__sb_printf(mirai__sb *sb, const char *fmt, ...) MIRAI_PRINTF(2, 3);
void mirai__sb_json_str(mirai__sb *sb, const char *s); /* quoted, escaped */

/* ---- pool.c: fixed-size objects in blocks ---------------------------- */

/*
 * A pool of zeroed, 8-byte aligned objects of one size, carved from
 * 64 KiB blocks: no per-object malloc header, and short-lived allocations
 * of other sizes cannot take the holes that freed objects leave (see
 * client_handle.c, the task handles).  Thread-safe.  A block is given back
 * once all its objects are free, unless it is the only one with room.
 */
typedef struct mirai__pool {
	pthread_mutex_t mtx;
	size_t size;            /* object size, rounded to 8 */
	MIRAI__LIST(struct mirai__pblock) room; /* blocks with a free object */
	size_t blocks;          /* held, for tests */
	size_t empty;           /* held with no object in use */
} mirai__pool;

/* Emptied blocks a pool keeps for reuse (16 MiB of 64 KiB blocks); beyond
 * them, an emptied block is unmapped.  Mapping a block again costs a page
 * fault a page, and unmapping one interrupts every CPU. */
#define MIRAI__POOL_SPARE 256

#define MIRAI__POOL_INIT(sz)                                                \
	{PTHREAD_MUTEX_INITIALIZER, ((sz) + 7) & ~(size_t) 7, {NULL, NULL}, 0, 0}

void *mirai__pool_get(mirai__pool *p);         /* zeroed; NULL: no memory */
void mirai__pool_put(mirai__pool *p, void *o); /* o may be NULL */
/* Give back every block; every object must have been put back. */
void mirai__pool_fini(mirai__pool *p);

/* ---- idmap.c: entries found by a uint64_t id ------------------------- */

/*
 * An intrusive hash map: an entry is the caller's struct, which holds its
 * id (a uint64_t) and the map's chain pointer (a pointer to its own type)
 * at the offsets given to mirai__idmap_init.  The map owns only its bucket
 * array, which starts at 1024 buckets and doubles when the entries reach
 * the bucket count.  Ids in one map must be distinct.  Not thread-safe:
 * the owner's lock guards it.
 */
typedef struct mirai__idmap {
	void **b;          /* buckets: chains through the entries */
	size_t cap;        /* buckets, a power of two; 0 until the first put */
	size_t count;      /* entries */
	size_t id_off;     /* offsetof the entry's uint64_t id */
	size_t next_off;   /* offsetof the entry's chain pointer */
} mirai__idmap;

/* An empty map of entries of type, keyed by type.id_field and chained
 * through type.next_field. */
#define MIRAI__IDMAP_INIT(m, type, id_field, next_field)                   \
	mirai__idmap_init((m), offsetof(type, id_field),                    \
	    offsetof(type, next_field))

void mirai__idmap_init(mirai__idmap *m, size_t id_off, size_t next_off);
/* Add e (not in the map; its id not either).  The map does not own e.
 * Returns 0 or MIRAI_ENOMEM (the map is then unchanged). */
int mirai__idmap_put(mirai__idmap *m, void *e);
/* The entry with id, or NULL. */
void *mirai__idmap_get(const mirai__idmap *m, uint64_t id);
/* Take e out of the map; an e not in it is left alone. */
void mirai__idmap_del(mirai__idmap *m, void *e);
size_t mirai__idmap_count(const mirai__idmap *m);
/* Free the buckets (the entries are the caller's); the map is then empty
 * and may be used again. */
void mirai__idmap_fini(mirai__idmap *m);

/* ---- transport.c, transport_url.c: the only users of NNG ----------- */

/* A message of the transport (an NNG message under a name of ours). */
typedef struct mirai__msg mirai__msg;

/* Returns 0 or MIRAI_ENOMEM. */
int mirai__msg_alloc(mirai__msg **out, size_t len);
void mirai__msg_free(mirai__msg *m); /* m may be NULL */
int mirai__msg_dup(mirai__msg **out, const mirai__msg *m);
uint8_t *mirai__msg_body(mirai__msg *m);
size_t mirai__msg_len(const mirai__msg *m);
void mirai__msg_trim(mirai__msg *m, size_t n); /* drop n bytes in front */
void mirai__msg_chop(mirai__msg *m, size_t n); /* drop n bytes at the end */
/* The pipe a message came on; a message sent on a link with many peers
 * goes to the pipe set here. */
uint32_t mirai__msg_pipe(const mirai__msg *m);
void mirai__msg_set_pipe(mirai__msg *m, uint32_t pipe);

/* NNG's error number as ours (they share 1..31). */
int mirai__transport_err(int rv);

/*
 * TLS material of a link, for tls+tcp:// and wss:// URLs: PEM text or PEM
 * files (text wins when both are set).  A listener needs its certificate
 * and key (and a CA to require peers' certificates); a dialer needs the CA
 * that signed the listener's certificate, and verifies it by server_name
 * (NULL: MIRAI__TLS_NAME, since mbedTLS 2.28 does not check IP addresses).
 */
typedef struct mirai__tls {
	const char *ca_pem, *cert_pem, *key_pem;
	const char *ca_file, *cert_file, *key_file;
	const char *server_name;
} mirai__tls;

/*
 * Check url before anything listens on or dials it: a known scheme (not
 * mem://, which only in-memory links take), a host to dial, a port written
 * out and in range (0 only when listening), and for a TLS scheme the
 * material tls (may be NULL) must hold.  Returns
 * 0 or MIRAI_EADDRINVAL / MIRAI_ENOTSUP with err naming the URL and the
 * problem.
 */
int mirai__url_check(const char *url, int listening, const mirai__tls *tls,
    mirai_errmsg *err);

/*
 * A fresh URL for a link within this machine: an ipc:// socket in this
 * process's owner-only (0700) directory, made on first use and removed at
 * exit.  Returns 0 or an error value with err filled.
 */
int mirai__local_url(char *buf, size_t len, mirai_errmsg *err);

/* url with its path (which may hold a token or a slot's secret) replaced by
 * "/...", for log lines at the default level. */
void mirai__url_redact(const char *url, char *buf, size_t len);

/*
 * A server slot's URL is the URL its listener is reached at, then
 * "/<secret>/<slot>": 32 lowercase hex digits (128 random bits) and the
 * slot number.  A server dials the listener's URL and gives slot and
 * secret in its HELLO, the first thing it sends; the listener admits the
 * pipe only when they match.  The same holds for every scheme, so one
 * listener serves any number of slots.
 */
#define MIRAI__SECRET_HEX 32

/* Split url: 1 with the listener's URL in base and slot and secret (33
 * bytes) set when it ends in a slot suffix; 0 with base = url, slot
 * MIRAI__NO_SLOT and an empty secret when not. */
int mirai__url_cred(const char *url, char *base, size_t blen, uint32_t *slot,
    char *secret);
/* base + "/<secret>/<slot>" into buf. */
void mirai__url_with_cred(char *buf, size_t len, const char *base,
    const char *secret, uint32_t slot);
/* A fresh secret: MIRAI__SECRET_HEX hex digits and a NUL. */
void mirai__secret_new(char *hex);
/* 1 when b (blen bytes) is the secret a, compared in constant time. */
int mirai__secret_eq(const char *a, const char *b, size_t blen);

/* A PAIR1 socket with its receive loop: one peer, or many (poly). */
typedef struct mirai__link mirai__link;
/* A sender on a link: one message in flight at a time. */
typedef struct mirai__tx mirai__tx;

enum {
	MIRAI__PIPE_ADD  = 1, /* a peer connected; nothing received yet */
	MIRAI__PIPE_UP   = 2, /* the peer's pipe is ready */
	MIRAI__PIPE_GONE = 3, /* the pipe closed (also after a refused ADD) */
};

typedef struct mirai__link_cfg {
	/* Many peers; a message names its pipe (mirai__msg_set_pipe). */
	int poly;
	/* The owner admits a pipe only with a slot's secret in its first
	 * frame (see mirai__url_cred): a plain tcp listener is then not
	 * warned about. */
	int admits;
	/* Largest message received; 0: MIRAI__DEFAULT_MAX_MSG. */
	size_t max_msg;
	/* A dialer retries between these (ms); 0: NNG's defaults. */
	int64_t reconnect_min_ms, reconnect_max_ms;
	/* Blocking sends and receives give up after this (ms); 0: never. */
	int64_t timeout_ms;
	/* Which pipe events reach pipe(): bits 1u << MIRAI__PIPE_*. */
	unsigned events;
	/* A message arrived; the callee owns m.  Runs on an NNG thread. */
	void (*recv)(void *arg, mirai__msg *m);
	/* A pipe event.  For MIRAI__PIPE_ADD a nonzero return refuses the
	 * peer before anything is received from it.  Runs with the socket's
	 * lock held: record state, wake or defer; no transport calls. */
	int (*pipe)(void *arg, int ev, uint32_t pipe);
	/* The link's own sender (mirai__link_send) finished: rv 0 when the
	 * message was taken, else the message was freed. */
	void (*sent)(void *arg, int rv);
	void *arg;
	/* For tls+tcp:// and wss:// URLs (copied pointers: the strings must
	 * outlive the link's listens and dials). */
	mirai__tls tls;
	/* In memory, within this process (memlink.c): the link listens on
	 * or dials a mem:// URL, and has no NNG socket; one peer only.  Its
	 * sends are always taken at once (sent() never runs), its callbacks
	 * run unlocked, and a dial runs the pipe callbacks of both ends. */
	int mem;
} mirai__link_cfg;

/* Open a link (nothing listens, dials or receives yet).  cfg is copied. */
int mirai__link_open(mirai__link **out, const mirai__link_cfg *cfg,
    mirai_errmsg *err);
/* Listen on url (checked first).  *dial (if dial is not NULL) gets the URL
 * peers should dial: port 0 resolved, a wildcard host replaced by this
 * machine's name; malloc'd. */
int mirai__link_listen(mirai__link *l, const char *url, char **dial,
    mirai_errmsg *err);
/* Dial url (checked first).  wait: fail if the first attempt fails; else
 * keep retrying in the background. */
int mirai__link_dial(mirai__link *l, const char *url, int wait,
    mirai_errmsg *err);
/* Start receiving: recv() runs from now on. */
void mirai__link_start(mirai__link *l);
/* Send m (always consumed) with the link's own sender: returns 1 when the
 * socket took it at once, else 0 and sent() runs once it is taken or
 * failed.  One message at a time. */
int mirai__link_send(mirai__link *l, mirai__msg *m);
/* Send m (always consumed) only if the socket takes it at once; returns 0
 * or an error value. */
int mirai__link_try_send(mirai__link *l, mirai__msg *m);
/*
 * Close one pipe of l.  Only for a pipe whose peer said it sends nothing
 * more (GONE) or is gone: NNG 1.5.2 can hang closing a pipe that is
 * receiving.  Not from a pipe callback: it may run them.  A pipe that is
 * already gone is fine.
 */
void mirai__link_pipe_close(mirai__link *l, uint32_t pipe);
/* Stop the callbacks (waiting for running ones: never call it from one of
 * this link's callbacks), close, free.  l may be NULL. */
void mirai__link_close(mirai__link *l);

/* An extra sender on l, e.g. one per peer of a poly entry; done() as
 * sent() above.  Free it before closing the link or after. */
int mirai__tx_open(mirai__tx **out, mirai__link *l,
    void (*done)(void *arg, int rv), void *arg);
int mirai__tx_send(mirai__tx *t, mirai__msg *m); /* as mirai__link_send */
void mirai__tx_free(mirai__tx *t);  /* waits for its callback; NULL ok */

/* Dial url, send req (consumed), wait up to timeout_ms for one message
 * back into *rep, close.  err says which step failed. */
int mirai__request(const char *url, mirai__msg *req, mirai__msg **rep,
    int64_t timeout_ms, mirai_errmsg *err);

/* ---- memlink.c: in-memory links (behind the mirai__link calls) -------- */

/* Whether url names an in-memory link (mem://NAME). */
int mirai__url_is_mem(const char *url);

/*
 * What a thread sends on in-memory links is received on that same thread
 * once it holds no lock: it brackets such work with hold and flush, and
 * the receives run in the flush (call it holding no lock).  Brackets nest;
 * the outermost flush delivers.  A message sent outside any bracket is
 * received on the service thread.
 */
void mirai__link_hold(void);
void mirai__link_flush(void);

/* For transport.c: one end of an in-memory link, and the mirai__link
 * calls on it (cfg copied; pipe() and recv() as in mirai__link_cfg). */
typedef struct mirai__mem mirai__mem;
int mirai__mem_open(mirai__mem **out, const mirai__link_cfg *cfg);
int mirai__mem_listen(mirai__mem *e, const char *url, char **dial,
    mirai_errmsg *err);
int mirai__mem_dial(mirai__mem *e, const char *url, mirai_errmsg *err);
void mirai__mem_start(mirai__mem *e);
void mirai__mem_send(mirai__mem *e, mirai__msg *m); /* m consumed */
void mirai__mem_pipe_close(mirai__mem *e, uint32_t pipe);
void mirai__mem_close(mirai__mem *e); /* e may be NULL */

/* ---- link.c: queues of outgoing frames, packed into messages --------- */

/* Frames at least this big travel in a message of their own, built in
 * place so their payload is copied once. */
#define MIRAI__BIG_FRAME (64u * 1024u)
/* Small frames are packed into messages of at most this many bytes of
 * frames (plus the 16-byte header). */
#define MIRAI__PACK_CAP (64u * 1024u)
#define MIRAI__DEFAULT_MAX_MSG ((size_t) 256 * 1024 * 1024)

/*
 * One encoded frame waiting to be sent.  A small frame's bytes follow the
 * struct; a big frame lives in msg, after MIRAI__HDR_LEN bytes kept free for
 * the message header.  owner is the client's mirai for a TASK frame.
 */
typedef struct mirai__out {
	MIRAI__ENTRY(struct mirai__out) entry; /* in its mirai__outq */
	void *owner;
	mirai__msg *msg;
	size_t len;
	uint8_t data[];
} mirai__out;

/* A list (list.h) of frames, oldest first; zeroed, an empty one. */
typedef struct mirai__outq {
	mirai__out *head, *tail;
	size_t count;
} mirai__outq;

/* A frame of len bytes; write it at mirai__out_frame(). NULL: no memory. */
mirai__out *mirai__out_new(size_t len);
uint8_t *mirai__out_frame(mirai__out *o);
void mirai__out_free(mirai__out *o);
/* A control frame ready to queue: its type alone (vlen 0: GONE, WHO), or
 * with a 4-byte (EXIT, BYE) or 8-byte (PING, PONG) value v.  NULL: no
 * memory. */
mirai__out *mirai__out_ctrl(uint8_t type, size_t vlen, uint64_t v);
/* A HELLO frame f, decoded into *h: 0 when it speaks our protocol and,
 * with secret non-NULL, names slot and holds secret (a peer let in); 1
 * when it speaks our protocol without them; -1, logged as a warning by
 * tag of who (e.g. "slot 3"), when it does not decode or speaks another one: the
 * caller tells the peer to exit. */
int mirai__hello_admit(const mirai__frame *f, mirai__hello_view *h,
    const char *secret, uint32_t slot, const char *tag, const char *who);
void mirai__outq_push(mirai__outq *q, mirai__out *o);
void mirai__outq_push_front(mirai__outq *q, mirai__out *o);
mirai__out *mirai__outq_pop(mirai__outq *q);
void mirai__outq_remove(mirai__outq *q, mirai__out *o);
void mirai__outq_clear(mirai__outq *q);

/*
 * Take frames from the head of q (one big frame, or small ones up to
 * MIRAI__PACK_CAP) and return them as one message with header h (nframes is
 * filled in).  each(ctx, out) runs for every frame taken, before it is
 * freed; it returns nonzero to keep a small frame (the callee then owns
 * out).  A big frame's out is always freed: its msg is the message that
 * goes, so a callee that wants the bytes copies them.  An empty q gives a
 * header-only message.  Returns 0 or MIRAI_ENOMEM (q is then unchanged).
 */
int mirai__outq_pack(mirai__outq *q, mirai__msghdr *h, mirai__msg **msgp,
    int (*each)(void *ctx, mirai__out *o), void *ctx);

/* ---- service.c: the library's one background thread ---------------- */

typedef struct mirai__timer {
	int64_t deadline;  /* monotonic ms */
	size_t heap_idx;   /* 1-based position in the heap; 0: not armed */
	void (*fn)(void *arg);
	void *arg;
} mirai__timer;

int mirai__svc_start(void);
void mirai__svc_stop(void);
/* Arm t (fn and arg set by the caller) to fire at deadline; re-arming an
 * armed timer moves it.  fn runs on the service thread, unlocked. */
int mirai__timer_arm(mirai__timer *t, int64_t deadline);
/* Disarm; returns 1 if it was armed (so fn will not run), else 0. */
int mirai__timer_cancel(mirai__timer *t);
/* A periodic timer (heartbeats): fn(arg) runs every period ms on the
 * service thread, unlocked, until mirai__ticker_stop(), which returns once
 * a run under way has finished (unless called from fn).  A ticker that
 * failed to start (no memory) is stopped safely too. */
typedef struct mirai__ticker {
	mirai__timer timer;
	int64_t period;
	int stopped, running;
	void (*fn)(void *arg);
	void *arg;
} mirai__ticker;
int mirai__ticker_start(mirai__ticker *k, int64_t period, void (*fn)(void *),
    void *arg);
void mirai__ticker_stop(mirai__ticker *k);

/* Heartbeats: the interval for a setting (0: the default, 10 s; < 0: off,
 * returned as 0). */
#define MIRAI__HEARTBEAT_DEFAULT_MS 10000
static inline int64_t
mirai__heartbeat_ms(int64_t setting)
{
	return setting == 0 ? MIRAI__HEARTBEAT_DEFAULT_MS
	     : setting < 0  ? 0
			    : setting;
}

/* Run fn(arg) soon on the service thread. */
int mirai__defer(void (*fn)(void *arg), void *arg);
/* Reap pid when it exits and then call fn(pid, wait status, arg); the
 * status is -1 when unknown (reaped by someone else, or at shutdown). */
int mirai__watch_child(pid_t pid, void (*fn)(pid_t, int, void *), void *arg);
/* Stop watching pid for fn and arg: fn will not be called (the child is
 * still reaped), and a call already running has returned when this does
 * (unless made from fn itself).  Watches that already fired are fine. */
void mirai__watch_cancel(pid_t pid, void (*fn)(pid_t, int, void *),
    void *arg);

/* ---- spawn.c ------------------------------------------------------ */

/* The executable to run for tool name: given, else $env, else the one
 * beside libmirai (LIBDIR/../bin/name), else name (found on $PATH). */
const char *mirai__find_tool(const char *given, const char *env,
    const char *name, char *buf, size_t len);
/* Whether prog can be started (a path, or a name on $PATH). */
int mirai__can_exec(const char *prog);

/* Append the TLS options of mirai-server's and mirai-dispatcher's command
 * lines (--tls-ca, --tls-cert, --tls-key; those not NULL) to argv at *n,
 * at most 6 entries: file paths only, never the contents of a key. */
void mirai__tls_args(const char **argv, size_t *n, const char *ca,
    const char *cert, const char *key);
/* Start a mirai-server dialing url with the options o (one_shot: a single
 * task).  The child gets its own process group.  A binding is passed as
 * planned (--bind-planned): callers place servers unit after unit. */
int mirai__spawn_server(const mirai_server_opts *o, const char *url,
    int one_shot, pid_t *pid, mirai_errmsg *err);
/* Whether a server's wait status says it ended by one of its own rules
 * (told to exit, idle, wall time, task limit: exit 0, 3, 4 or 5), which
 * also means it had connected; -1 (unknown) is not. */
int mirai__server_left_by_rule(int status);
/* posix_spawn argv[0] (searching PATH when it has no '/') with signals
 * reset, its own process group, and the KEY=VALUE strings of extra_env
 * (may be NULL) added to the environment.  fd_in (-1: /dev/null) becomes
 * its stdin, fd_out and fd_err (-1: inherit) its stdout and stderr.
 * Returns an errno. */
int mirai__spawn(const char *const *argv, const char *const *extra_env,
    int fd_in, int fd_out, int fd_err, pid_t *pid);

/* ---- server*.c / builtin.c ---------------------------------------- */

int mirai__builtin_register(mirai_server *srv);
/* For mirai.exec: the process group to kill when the task is cancelled
 * (0: none).  Returns nonzero if the task was already cancelled. */
int mirai__task_set_pgid(mirai_task *task, pid_t pgid);
/* For mirai.sleep: wait until deadline (monotonic ms) or cancellation;
 * returns nonzero if cancelled. */
int mirai__task_sleep_until(mirai_task *task, int64_t deadline_ms);
size_t mirai__task_max_msg(const mirai_task *task);
const char *mirai__server_binding(mirai_server *srv);
void mirai__server_functions_json(mirai_server *srv, mirai__sb *sb);

/* ---- dispatcher.c -------------------------------------------------- */

/* The most tasks a server may hold queued behind the one it runs
 * (mirai_daemons_opts.prefetch). */
#define MIRAI__PREFETCH_MAX 1024

/* Call fn(arg) whenever a server comes online or goes (with the
 * dispatcher's lock held: fn must only note it and wake someone). */
void mirai__dispatcher_watch(mirai_dispatcher *d, void (*fn)(void *),
    void *arg);
/* What slot i knows of its server. */
void mirai__dispatcher_slot(mirai_dispatcher *d, size_t i, int *online,
    int *pid, char *host, size_t hlen, char *binding, size_t blen);
/* d runs on a thread of its client's process: it dials its client URL
 * (mem://) in memory.  Set before mirai_dispatcher_run(); otherwise a
 * mem:// URL is refused as any other dispatcher's would be. */
void mirai__dispatcher_in_memory(mirai_dispatcher *d);

/* ---- topo.c: the only file calling hwloc --------------------------- */

/* Describe the CPUs this process is bound to ("0-3" or "0,2"); "" if
 * unknown. */
void mirai__topo_binding(char *buf, size_t len);

/*
 * Bind this process to unit index (from 0) of the units of kind ("core",
 * "numa", "socket"; "none" or NULL does nothing) among the CPUs it may use.
 * An index past the last unit wraps round and sets *wrapped.  desc (if not
 * NULL) gets what was bound ("core 3: cpus 3"); the binding is read back
 * and verified.  Returns 0 or MIRAI_ETOPO / MIRAI_EINVAL with err filled.
 */
int mirai__topo_bind(const char *kind, int index, char *desc, size_t len,
    int *wrapped, mirai_errmsg *err);
/* The same for n units (n >= 1) from index on: units index .. index + n - 1,
 * each wrapping round on its own; desc reads "core 4-7: cpus 4-7". */
int mirai__topo_bind_range(const char *kind, int index, int n, char *desc,
    size_t len, int *wrapped, mirai_errmsg *err);

/* How many units of kind this process may use (0 on error). */
int mirai__topo_count(const char *kind);

/* ---- tls.c: the per-launch CA and its certificates (mbedTLS) --------- */

/*
 * The DNS name in every certificate a launch issues to the dispatcher, and
 * the name a dialer verifies it by (the transport sets it as the server name): peers are
 * mostly reached by IP address, and mbedTLS 2.28 does not check IP
 * addresses in certificates.  .invalid never resolves (RFC 2606), so the
 * name cannot be mistaken for a real host.
 */
#define MIRAI__TLS_NAME "mirai-dispatcher.invalid"
/* A launch's CA and every certificate it issues are valid from an hour
 * ago (clock drift between nodes) until this many days from its creation. */
#define MIRAI__TLS_DAYS 7

/* A per-launch certificate authority: an EC P-256 key that never leaves
 * this process, and its self-signed certificate. */
typedef struct mirai__tls_ca mirai__tls_ca;

/* A fresh CA whose certificate names cn (1-64 letters, digits, spaces or
 * ._:-).  Returns 0, MIRAI_EINVAL, MIRAI_ENOMEM or MIRAI_ECRYPTO (err names
 * the mbedTLS step and its message). */
int mirai__tls_ca_create(mirai__tls_ca **out, const char *cn,
    mirai_errmsg *err);
/* A leaf certificate for dns_name (subjectAltName and CN; good for TLS
 * servers and clients alike) with a fresh P-256 key, signed by ca.  On
 * success *cert_pem and *key_pem are malloc'd PEM strings owned by the
 * caller: free the key with mirai__tls_secret_free().  Safe to call from
 * several threads on one CA. */
int mirai__tls_cert_issue(const mirai__tls_ca *ca, const char *dns_name,
    char **cert_pem, char **key_pem, mirai_errmsg *err);
/* The CA's certificate in PEM (what peers trust); owned by ca. */
const char *mirai__tls_ca_pem(const mirai__tls_ca *ca);
/* Wipe the CA's key and free it.  ca may be NULL. */
void mirai__tls_ca_destroy(mirai__tls_ca *ca);
/* Wipe and free a string holding a secret (a key's PEM).  s may be NULL. */
void mirai__tls_secret_free(char *s);
/* mirai__write_private (util.c) with pem, a C string, as the contents. */
int mirai__tls_write_private(const char *dir, const char *name,
    const char *pem, char **path, mirai_errmsg *err);

#endif /* MIRAI_INTERNAL_H */
