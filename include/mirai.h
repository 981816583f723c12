/*
 * mirai.h: the whole public API of libmirai.
 *
 * libmirai runs tasks (a function name plus a payload of bytes) on persistent
 * server processes.  A client submits tasks to a compute profile; each
 * profile has its own servers (local processes, or remote ones that dial in),
 * with or without a dispatcher in between.  A submitted task is a mirai: a
 * handle that always resolves, to a result or to an error value.
 *
 * Conventions:
 *  - Functions return 0 on success or a MIRAI_E* error value.
 *  - Output parameters are written only on success.
 *  - A function taking a mirai_errmsg fills it on every failure (with the
 *    description of the error value when there is nothing more to say).
 *  - Every *_destroy / *_free function accepts NULL.
 *  - Ownership of every buffer is stated above the function.
 *  - Options structs have a designated-initializer macro (..._INIT); 0
 *    always means "default".  New fields are only ever added at the end.
 *  - Timeouts, in parameters and in fields alike, are milliseconds:
 *    MIRAI_FOREVER (-1) waits without end; 0 takes the call's documented
 *    default; any other negative value is MIRAI_EINVAL.  No call treats 0
 *    as "poll": mirai_resolved() is the poll.
 *  - Each function says whether it is thread-safe.
 *  - The library never prints; see mirai_log_set().
 */
#ifndef MIRAI_H
#define MIRAI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The one version source: the Makefile takes the soname from here. */
#define MIRAI_VERSION_MAJOR 0
#define MIRAI_VERSION_MINOR 2
#define MIRAI_VERSION_PATCH 0
#define MIRAI_VERSION_STRING "0.2.0"

/* Default visibility also outside the library: a plugin built with
 * -fvisibility=hidden still exports its mirai_plugin_init(). */
#if defined(__GNUC__)
#define MIRAI_API __attribute__((visibility("default")))
#else
#define MIRAI_API
#endif

/* A timeout that never ends (see the conventions above). */
#define MIRAI_FOREVER (-1)

#if defined(__GNUC__)
#define MIRAI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MIRAI_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                               */
/* ------------------------------------------------------------------ */

/*
 * X(NAME, value, description).  Values 1-31 are NNG's own numbers for the
 * same meaning, so that users of NNG and of the R package recognise them:
 * a timed-out task resolves with 5, a closed profile with 7, a lost server
 * with 19 and a cancelled task with 20.  mirai's own errors start at 100.
 */
#define MIRAI_ERRORS(X)                                                     \
	X(OK, 0, "success")                                                 \
	X(EINTR, 1, "interrupted")                                          \
	X(ENOMEM, 2, "out of memory")                                       \
	X(EINVAL, 3, "invalid argument")                                    \
	X(EBUSY, 4, "resource busy")                                        \
	X(ETIMEDOUT, 5, "timed out")                                        \
	X(ECONNREFUSED, 6, "connection refused")                            \
	X(ECLOSED, 7, "closed")                                             \
	X(EAGAIN, 8, "try again")                                           \
	X(ENOTSUP, 9, "not supported")                                      \
	X(EADDRINUSE, 10, "address in use")                                 \
	X(ESTATE, 11, "incorrect state")                                    \
	X(ENOENT, 12, "not found")                                          \
	X(EPROTO, 13, "protocol error")                                     \
	X(EUNREACHABLE, 14, "destination unreachable")                      \
	X(EADDRINVAL, 15, "invalid address")                                \
	X(EPERM, 16, "permission denied")                                   \
	X(EMSGSIZE, 17, "message too large")                                \
	X(ECONNABORTED, 18, "connection aborted")                           \
	X(ECONNRESET, 19, "connection reset")                               \
	X(ECANCELED, 20, "canceled")                                        \
	X(ENOFILES, 21, "out of files")                                     \
	X(ENOSPC, 22, "out of space")                                       \
	X(EEXIST, 23, "already exists")                                     \
	X(ECRYPTO, 26, "cryptographic error")                               \
	X(EPEERAUTH, 27, "peer could not be authenticated")                 \
	X(ETASK, 100, "task failed")                                        \
	X(ENOFUNC, 101, "no such function on the server")                   \
	X(EHOOK, 102, "serialization hook mismatch")                        \
	X(ESET, 103, "compute profile already set: reset it first")         \
	X(EVERSION, 104, "protocol version mismatch")                       \
	X(ESPAWN, 105, "could not start a process")                         \
	X(EPARSE, 106, "parse error")                                       \
	X(ESSH, 107, "ssh error")                                           \
	X(ETOPO, 108, "topology or binding error")                          \
	X(EPENDING, 109, "still pending: the wait gave up")                 \
	X(EINTERNAL, 1000, "internal error")

enum mirai_error {
#define MIRAI_X_ENUM(name, value, text) MIRAI_##name = value,
	MIRAI_ERRORS(MIRAI_X_ENUM)
#undef MIRAI_X_ENUM
};

/* A static description of err; never NULL, also for unknown values.
 * Thread-safe. */
MIRAI_API const char *mirai_strerror(int err);

/* The symbolic name of err ("ETIMEDOUT"), or "UNKNOWN".  Thread-safe. */
MIRAI_API const char *mirai_errname(int err);

/*
 * The version of the library linked at run time ("0.2.0", static), its
 * parts written to the pointers that are not NULL.  Compare with the
 * MIRAI_VERSION_* macros to check that a program runs with the library it
 * was compiled against.  Thread-safe.
 */
MIRAI_API const char *mirai_version(int *major, int *minor, int *patch);

/*
 * A text buffer that functions with more to say than a number fill in
 * ("hosts:12: slots must be a positive integer").  Always optional: pass
 * NULL when the number is enough.  Every failure fills it (at least with
 * mirai_strerror()'s text); on success the text is left unchanged.
 */
typedef struct mirai_errmsg {
	char text[512];
} mirai_errmsg;

/* ------------------------------------------------------------------ */
/* Logging                                                              */
/* ------------------------------------------------------------------ */

enum mirai_log_level {
	MIRAI_LOG_ERROR = 1,
	MIRAI_LOG_WARN  = 2,
	MIRAI_LOG_INFO  = 3,
	MIRAI_LOG_DEBUG = 4,
};

/*
 * A log handler receives one complete line (no newline) with its level and
 * a stable tag naming the module ("client", "server", "dispatcher", ...).
 * It may be called from any library thread and must not call back into
 * libmirai.
 */
typedef void (*mirai_log_fn)(int level, const char *tag, const char *msg,
    void *arg);

/*
 * Install fn as the log handler for messages at level <= max_level.  NULL
 * (the default) discards everything.  Not thread-safe: call it before
 * other threads use the library.
 */
MIRAI_API void mirai_log_set(mirai_log_fn fn, void *arg, int max_level);

/*
 * A ready-made handler writing "PROGRAM[pid]: LEVEL: tag: msg" lines to
 * stderr; arg is the program name (const char *) or NULL.  Thread-safe.
 */
MIRAI_API void mirai_log_stderr(int level, const char *tag, const char *msg,
    void *arg);

/* ------------------------------------------------------------------ */
/* Serialization hook                                                   */
/* ------------------------------------------------------------------ */

/*
 * A serialization hook converts payloads to and from the bytes that travel:
 * encode runs on the client for each task payload and on the server for each
 * result; decode runs on the server for each task payload and on the client
 * for each result.  It must be the same on the client and on every server of
 * the profile; the name identifies it (put a version in the name when the
 * encoding changes).  A task meeting a server with another hook, or none,
 * resolves with MIRAI_EHOOK instead of being decoded wrongly.
 *
 * Both functions write a buffer they allocated to *out, which the library
 * releases with release (or free() when release is NULL).  They return 0 or
 * an error value.
 */
typedef struct mirai_hook {
	const char *name;
	int (*encode)(void *arg, const void *in, size_t len, void **out,
	    size_t *out_len);
	int (*decode)(void *arg, const void *in, size_t len, void **out,
	    size_t *out_len);
	void (*release)(void *arg, void *buf);
	void *arg;
} mirai_hook;

/* ------------------------------------------------------------------ */
/* Servers                                                              */
/* ------------------------------------------------------------------ */

/* Why a server stopped (mirai_server_run()'s reason); mirai-server exits
 * with this value. */
enum mirai_server_exit {
	MIRAI_EXIT_CLOSED   = 0, /* connection ended, or told to exit */
	MIRAI_EXIT_ERROR    = 1, /* could not start, dial, or run */
	MIRAI_EXIT_USAGE    = 2, /* bad command line (tools only) */
	MIRAI_EXIT_IDLE     = 3, /* idle time reached */
	MIRAI_EXIT_WALLTIME = 4, /* wall time reached */
	MIRAI_EXIT_MAXTASKS = 5, /* maximum number of tasks completed */
};

/*
 * Options of a server; also used by mirai_daemons() for the local servers it
 * starts.  Durations are milliseconds; 0 and MIRAI_FOREVER mean no limit.
 */
typedef struct mirai_server_opts {
	/* Exit after this long without a task. */
	int64_t idle_ms;
	/* Exit, between tasks, once this long has passed since the start. */
	int64_t walltime_ms;
	/* Exit after completing this many tasks. */
	uint64_t max_tasks;
	/* 1: keep the server's stdout and stderr; 0: send them to /dev/null
	 * (the server's own log lines still reach the original stderr). */
	int output;
	/* 1: fail at once when the first dial fails; 0: keep retrying until
	 * the first connection is made. */
	int dial_once;
	/* Largest message accepted or sent, in bytes; 0: 256 MiB.  Client and
	 * servers should agree; a larger task or result is an error value. */
	size_t max_msg;
	/* Plugins to load: shared objects with mirai_plugin_init(). */
	const char *const *plugins;
	size_t nplugins;
	/* mirai-server executable for local servers; NULL: $MIRAI_SERVER, then
	 * the mirai-server installed beside libmirai, then $PATH. */
	const char *server_path;
	/* CPU binding before the server dials: "core", "numa", "socket" or
	 * "none" (NULL: none).  The server binds to unit bind_index (from 0)
	 * of the units of that kind it may use, as hwloc reports them
	 * (cgroup-aware); past the last one it wraps round, with a warning. */
	const char *bind_to;
	int bind_index;
	/* How many units from bind_index on the server binds to (each past
	 * the last wrapping round); 0: 1. */
	int bind_count;
	/* Set where servers are placed one unit after another (the library's
	 * local servers, mirai-launch): a wrap round is then the plan, and
	 * only the first server past the last unit warns of it (its range
	 * holds the unit numbered as many as there are units); the others
	 * note it at info level.  0: every server past the last unit warns. */
	int bind_planned;
	/* TLS (see the README): PEM file of the CA that signs the
	 * dispatcher's or the client's certificate; required to dial
	 * tls+tcp:// or wss://.  Local servers get the path, never the
	 * contents, on their command line. */
	const char *tls_ca;
	/* PEM files of an optional client certificate and its key, for a
	 * listening side that requires one. */
	const char *tls_cert;
	const char *tls_key;
	/* Heartbeat: a client or dispatcher silent this long is taken as
	 * gone (the task in hand is finished, then the server exits); the
	 * server says PING when it has said nothing for a third of it.
	 * 0: 10 s; MIRAI_FOREVER (-1): off. */
	int64_t heartbeat_ms;
} mirai_server_opts;

#define MIRAI_SERVER_OPTS_INIT {.idle_ms = 0}

typedef struct mirai_server mirai_server;
typedef struct mirai_task   mirai_task;

/*
 * A server function.  It reads its input with mirai_task_data() and writes
 * its result with mirai_task_reply() or mirai_task_reply_buf().  Return 0 on
 * success; anything else fails the task (MIRAI_ETASK) with the message set by
 * mirai_task_fail(), or a generic one.  It runs on the server's task thread,
 * one task at a time; long functions should poll mirai_task_cancelled().
 */
typedef int (*mirai_fn)(mirai_task *task, void *arg);

/*
 * Create a server with the built-in functions (mirai.echo, mirai.sleep,
 * mirai.exec, mirai.info) registered, and the plugins of opts loaded.
 * opts (copied) may be NULL for defaults.  err, if not NULL, says what
 * failed (a plugin that did not load says why).  Thread-safe.
 */
MIRAI_API int mirai_server_create(mirai_server **out,
    const mirai_server_opts *opts, mirai_errmsg *err);
/* Not thread-safe: no other call on srv may run or follow. */
MIRAI_API void mirai_server_destroy(mirai_server *srv);

/* Register fn under name (copied); replaces an earlier one of that name.
 * Call from one thread at a time per handle, before mirai_server_run(). */
MIRAI_API int mirai_server_register(mirai_server *srv, const char *name,
    mirai_fn fn, void *arg);

/* Use hook (copied; the functions and arg must outlive the server).  Call
 * from one thread at a time per handle, before mirai_server_run(). */
MIRAI_API int mirai_server_set_hook(mirai_server *srv, const mirai_hook *hook);

/*
 * Load a plugin: a shared object exporting mirai_plugin_init() (below),
 * which registers its functions (and hook) and returns 0.  The object stays
 * loaded until the server is destroyed.  err, if not NULL, says what failed.
 * Call from one thread at a time per handle, before mirai_server_run().
 */
#define MIRAI_PLUGIN_INIT "mirai_plugin_init"
typedef int (*mirai_plugin_init_fn)(mirai_server *srv);
MIRAI_API int mirai_server_load_plugin(mirai_server *srv, const char *path,
    mirai_errmsg *err);

/*
 * What a plugin defines (the library never does): register the plugin's
 * functions on srv and return 0, or an error value.  Declared here so that
 * plugins get the prototype; MIRAI_API exports it even from a plugin built
 * with -fvisibility=hidden.
 */
MIRAI_API int mirai_plugin_init(mirai_server *srv);

/*
 * Dial url (tcp://, ws://, ipc://) and execute tasks until the connection
 * ends or a limit in the options is reached; then *reason (if not NULL)
 * gets why, as an enum mirai_server_exit value, and the call returns 0.
 * Returns a MIRAI_E* error, with err filled, when the server could not
 * start, dial or run (*reason is then left unchanged).  When the connection
 * drops mid-task the task is finished first.  Call from one thread at a
 * time per handle.
 */
MIRAI_API int mirai_server_run(mirai_server *srv, const char *url,
    int *reason, mirai_errmsg *err);

/* Ask a running server to stop after its current task: from another
 * thread (not from a signal handler).  Thread-safe. */
MIRAI_API void mirai_server_stop(mirai_server *srv);

/*
 * Task accessors, valid only inside the function running the task (and,
 * as for every mirai_task_* call, only on that thread).
 * The input buffer belongs to the task and lives until the function returns.
 */
MIRAI_API const void *mirai_task_data(const mirai_task *task, size_t *len);
MIRAI_API const char *mirai_task_function(const mirai_task *task);
MIRAI_API uint64_t mirai_task_id(const mirai_task *task);

/* Set the result to a copy of data[0..len).  Replaces an earlier reply. */
MIRAI_API int mirai_task_reply(mirai_task *task, const void *data,
    size_t len);

/*
 * Reserve len bytes for the result and return them for the function to fill
 * (no copy).  The buffer belongs to the task; NULL when out of memory.
 */
MIRAI_API void *mirai_task_reply_buf(mirai_task *task, size_t len);

/*
 * Reserve len bytes for the result in the memory of the input, for
 * functions that transform their input in place: the first min(len, input
 * length) bytes hold the input, and the input must not be read through
 * mirai_task_data() afterwards.  No copy is made when the input came in a
 * message of its own (large inputs); otherwise this is mirai_task_reply_buf()
 * with the input copied in.  The buffer belongs to the task; NULL when out of
 * memory.
 */
MIRAI_API void *mirai_task_reply_inplace(mirai_task *task, size_t len);

/* Fail the task with a message; returns MIRAI_ETASK for `return`. */
MIRAI_API int mirai_task_fail(mirai_task *task, const char *fmt, ...)
    MIRAI_PRINTF(2, 3);

/* Nonzero once the client cancelled the task or it timed out.
 * Thread-safe (the function may poll it from threads of its own). */
MIRAI_API int mirai_task_cancelled(const mirai_task *task);

/* ------------------------------------------------------------------ */
/* Daemons: compute profiles                                             */
/* ------------------------------------------------------------------ */

enum mirai_dispatcher_mode {
	MIRAI_DISPATCHER_DEFAULT = 0, /* on: a thread of the client (THREAD) */
	MIRAI_DISPATCHER_OFF     = 1, /* tasks go out at once, evenly */
	MIRAI_DISPATCHER_THREAD  = 2, /* the dispatcher runs on a thread of the
	                                 client, linked in memory */
	MIRAI_DISPATCHER_PROCESS = 3, /* a mirai-dispatcher process */
};

/*
 * Settings of one compute profile (the reference's daemons()).
 *
 * With a dispatcher (the default: a thread of the client; a
 * mirai-dispatcher process with MIRAI_DISPATCHER_PROCESS) the dispatcher
 * keeps the FIFO queue and gives a task only to a server that is online and
 * idle (or, with prefetch, holds fewer than it may).  Each server slot has
 * a URL of its own:
 *  - n > 0, no url: n local servers, each on a loopback port of its own.
 *  - url "ws://host:P" and n: n paths on port P, each with a random token
 *    and the slot number ("ws://host:P/<token>/3"); port 0 is resolved.
 *  - url "tcp://host:P" and n: ports P .. P+n-1 (P = 0: any free ports).
 *  - urls: one slot per URL, as given.
 * Servers started by hand dial those URLs (see mirai_status_get).
 *
 * Without a dispatcher:
 *  - n > 0, no url: n local servers connected over loopback.
 *  - url: listen on url ("tcp://127.0.0.1:0" resolves the port); servers
 *    started by hand dial in, come and go.  n must be 0.
 */
typedef struct mirai_daemons_opts {
	/* Profile name; NULL: "default". */
	const char *profile;
	/* Number of local servers to start. */
	int n;
	/* Client URL to listen on for servers to dial into. */
	const char *url;
	/* One of enum mirai_dispatcher_mode. */
	int dispatcher;
	/* Serialization hook (copied; functions and arg must outlive the
	 * profile), or NULL. */
	const mirai_hook *hook;
	/* Options passed to the local servers this profile starts (copied);
	 * NULL: defaults. */
	const mirai_server_opts *server;
	/* Dispatcher: explicit server URLs, one slot each (n may be 0). */
	const char *const *urls;
	size_t nurls;
	/* No slot secrets: servers dial the listener's URL as it is and take
	 * any free slot (with a dispatcher) or simply connect (without).
	 * Anyone who can reach the port can then serve: only for networks
	 * where every user is trusted. */
	int no_token;
	/* How many times a task whose server died goes back to the head of
	 * the queue before it resolves with MIRAI_ECONNRESET; 0: never. */
	int retries;
	/* Cap on the bytes of submitted, unfinished tasks of the profile:
	 * mirai_call() blocks past it, mirai_try_call() returns MIRAI_EAGAIN.
	 * 0: 1 GiB. */
	size_t max_queue;
	/* mirai-dispatcher executable; NULL: $MIRAI_DISPATCHER, then the one
	 * installed beside libmirai, then $PATH. */
	const char *dispatcher_path;
	/* Attach to a dispatcher already running (mirai-launch) instead of
	 * starting servers: url is its client URL (NULL: the environment
	 * variable MIRAI_DISPATCHER_URL).  n, urls and server are unused. */
	int attach;
	/* How long attaching waits for the dispatcher, which serves one
	 * client at a time, in ms; 0: 30 s; MIRAI_FOREVER: no limit. */
	int64_t attach_timeout_ms;
	/* TLS (see the README), for the listening side (the dispatcher's
	 * server slots, or the client's URL without a dispatcher): PEM files
	 * of its certificate and key, and of a CA to require client
	 * certificates signed by it (NULL: none required). */
	const char *tls_cert;
	const char *tls_key;
	const char *tls_ca;
	/* Heartbeat on the profile's links: a server or dispatcher silent
	 * this long is taken as lost (its tasks retried or resolved with
	 * MIRAI_ECONNRESET, as when its connection drops); also the setting
	 * of the dispatcher and of local servers whose server.heartbeat_ms is
	 * 0.  0: 10 s; MIRAI_FOREVER (-1): off. */
	int64_t heartbeat_ms;
	/* With a dispatcher: how many tasks a server may hold queued behind
	 * the one it runs (0-1024).  0 (the default): a task goes only to an
	 * idle server, so a long task never holds up the ones after it.  k
	 * suits farms of short tasks: a server finds its next task waiting
	 * instead of idling a round trip, but a task may wait behind a long
	 * one, and a lost server's held tasks each spend a retry (or fail
	 * with MIRAI_ECONNRESET). */
	int prefetch;
} mirai_daemons_opts;

#define MIRAI_DAEMONS_OPTS_INIT {.profile = NULL}

/*
 * Set daemons for opts->profile.  Fails with MIRAI_ESET when the profile is
 * already set (reset it first).  err, if not NULL, explains any failure.
 * Thread-safe.
 */
MIRAI_API int mirai_daemons(const mirai_daemons_opts *opts,
    mirai_errmsg *err);

/*
 * Reset a profile (NULL: "default"): every server it started or that dialed
 * in is told to exit, pending mirais resolve with MIRAI_ECLOSED, and the
 * profile returns to one-shot server processes.  Resetting an unset profile
 * is not an error.  Thread-safe.
 */
MIRAI_API int mirai_reset(const char *profile);

/*
 * Attach profile (NULL: "default") to a running dispatcher that listens for
 * clients at url (NULL: the environment variable MIRAI_DISPATCHER_URL, set by
 * mirai-launch for its client command).  Tasks, status and saisei then go
 * through it; mirai_reset() detaches and leaves it running.  A dispatcher
 * serves one client at a time: this waits up to timeout_ms (0: 30 s;
 * MIRAI_FOREVER: no limit) for it to be free, then fails with
 * MIRAI_ETIMEDOUT.  Thread-safe.
 */
MIRAI_API int mirai_attach(const char *profile, const char *url,
    int64_t timeout_ms, mirai_errmsg *err);

/* Reset every profile and stop the library's threads (optional, at exit).
 * Not thread-safe: no other thread may use the library during or after
 * it. */
MIRAI_API void mirai_shutdown(void);

/*
 * One row of the status: with a dispatcher, one server URL (the status
 * matrix); without, one connected server.
 */
typedef struct mirai_status_row {
	const char *url;      /* URL the server dialed */
	int online;           /* 1 while a server is connected */
	uint64_t instance;    /* connections seen at this URL (saisei resets) */
	uint64_t assigned;    /* tasks given to this instance */
	uint64_t complete;    /* tasks it completed */
	int pid;              /* server process id, 0 if unknown */
	const char *host;     /* server host name, "" if unknown */
	uint64_t retries;     /* tasks requeued because a server here died */
	const char *binding;  /* CPUs the server is bound to, "" if unknown */
} mirai_status_row;

typedef struct mirai_status {
	const char *profile;
	int set;              /* 1 if daemons are set */
	int dispatcher;       /* 1 if a dispatcher is used */
	int connections;      /* active connections at the client (1 with a
	                         dispatcher) */
	int daemons;          /* local servers started (n) */
	const char *url;      /* URL the client listens on ("" if none) */
	uint64_t queued;      /* tasks waiting for a server */
	uint64_t running;     /* tasks at a server, not yet resolved */
	uint64_t completed;   /* tasks resolved by a result */
	size_t nrows;
	mirai_status_row *rows;
	uint64_t retried;     /* tasks requeued after their server died */
	int error;            /* with a dispatcher: 0, or the error value of
	                         asking it (rows are then empty) */
	int dispatcher_pid;   /* with a dispatcher: its process id */
} mirai_status;

/*
 * Status of a profile (NULL: "default").  *out is allocated by the library
 * and released with mirai_status_free().  Thread-safe.
 */
MIRAI_API int mirai_status_get(const char *profile, mirai_status **out);
/* Thread-safe (st belongs to the caller). */
MIRAI_API void mirai_status_free(mirai_status *st);

/*
 * Render st as one line of JSON into *out, a NUL-terminated string the
 * caller releases with free().  Thread-safe.
 */
MIRAI_API int mirai_status_json(const mirai_status *st, char **out);

/*
 * Regenerate the URL of dispatcher slot i (from 0) of a profile with a
 * fresh random secret; its instance count starts again from 0.  A server
 * still connected there makes this fail with MIRAI_EBUSY unless force is
 * set: then it is cut off and its running task resolves with MIRAI_ECLOSED.
 * A local slot (an ipc socket of its own) and a slot without a secret
 * (no_token) cannot be regenerated: MIRAI_ENOTSUP.  On
 * success *new_url (if not NULL) gets the new URL, released with free().
 * Thread-safe.
 */
MIRAI_API int mirai_saisei(const char *profile, size_t i, int force,
    char **new_url, mirai_errmsg *err);

/*
 * The status of a dispatcher, asked at its control URL (NULL: the
 * environment variable MIRAI_CONTROL_URL) by any process.  *out as for
 * mirai_status_get().  A tls+tcp:// or wss:// URL takes its TLS files from
 * the environment, as mirai_control_status() does.  Thread-safe.
 */
MIRAI_API int mirai_status_query(const char *control_url, mirai_status **out,
    mirai_errmsg *err);

/* saisei through a dispatcher's control URL (see mirai_saisei()), TLS
 * files as above.  Thread-safe. */
MIRAI_API int mirai_saisei_query(const char *control_url, size_t i, int force,
    char **new_url, mirai_errmsg *err);

/* Where a control request goes, and what it proves the dispatcher with
 * (the strings are read during the call only). */
typedef struct mirai_control_opts {
	/* The dispatcher's control URL; NULL: $MIRAI_CONTROL_URL. */
	const char *url;
	/* For a tls+tcp:// or wss:// URL: PEM file of the CA that signs the
	 * dispatcher's certificate, required (mirai-launch gives its client
	 * command this launch's CA in MIRAI_TLS_CA); NULL: $MIRAI_TLS_CA. */
	const char *tls_ca;
	/* PEM files of a client certificate and its key, for a dispatcher
	 * that requires one (mirai-dispatcher --tls-ca); NULL:
	 * $MIRAI_TLS_CERT and $MIRAI_TLS_KEY, or none. */
	const char *tls_cert;
	const char *tls_key;
} mirai_control_opts;

#define MIRAI_CONTROL_OPTS_INIT {.url = NULL}

/*
 * mirai_status_query() and mirai_saisei_query() with the options o (NULL:
 * all defaults).  A TLS URL without a CA, given or in the environment,
 * fails with MIRAI_ENOTSUP before anything is dialed; a dispatcher the CA
 * did not sign, with MIRAI_ECRYPTO.  Thread-safe.
 */
MIRAI_API int mirai_control_status(const mirai_control_opts *o,
    mirai_status **out, mirai_errmsg *err);
MIRAI_API int mirai_control_saisei(const mirai_control_opts *o, size_t i,
    int force, char **new_url, mirai_errmsg *err);


/* ------------------------------------------------------------------ */
/* Tasks: mirai handles                                                 */
/* ------------------------------------------------------------------ */

typedef struct mirai mirai;

/*
 * Called once when m resolves, from a library thread: it must not block
 * (no mirai_wait*); it may submit new tasks.  m stays valid until freed.
 */
typedef void (*mirai_done_fn)(mirai *m, void *arg);

typedef struct mirai_call_opts {
	/* Profile name; NULL: "default". */
	const char *profile;
	/* Resolve with MIRAI_ETIMEDOUT after this many ms (the server is told
	 * to stop the task); 0 and MIRAI_FOREVER: no limit. */
	int64_t timeout_ms;
	/* Optional completion callback and its argument. */
	mirai_done_fn done;
	void *done_arg;
	/* Retries when the server dies mid-task: 0: the profile's setting;
	 * < 0: none; > 0: that many (at most 255). */
	int retries;
} mirai_call_opts;

#define MIRAI_CALL_OPTS_INIT {.profile = NULL}

/*
 * Submit fn(data[0..len)) and write its handle to *out.  The data is copied
 * before the call returns.  opts may be NULL.  The handle must be released
 * with mirai_free().  MIRAI_EINVAL for a timeout_ms below MIRAI_FOREVER.
 * Thread-safe.  With a dispatcher, the call also waits
 * while more than 16 MiB of tasks are not yet handed over to it, so that a
 * burst of submissions moves at the pace of the link (the dispatcher holds
 * the queue); mirai_try_call() and calls in a completion callback do not.
 */
MIRAI_API int mirai_call(const mirai_call_opts *opts, const char *fn,
    const void *data, size_t len, mirai **out);

/*
 * As mirai_call(), but when the profile's queue cap (max_queue) is reached
 * return MIRAI_EAGAIN at once instead of waiting for room.  mirai_call()
 * itself never blocks in a completion callback: it returns MIRAI_EAGAIN
 * there too.  Thread-safe.
 */
MIRAI_API int mirai_try_call(const mirai_call_opts *opts, const char *fn,
    const void *data, size_t len, mirai **out);

/*
 * Cancel m: a task still queued is removed and never runs; a running one
 * is stopped (mirai.exec kills its process group; a C function sees
 * mirai_task_cancelled()).  m resolves with MIRAI_ECANCELED at once.
 * Returns MIRAI_ESTATE if m was already resolved.  Thread-safe (m must
 * not be freed meanwhile).
 */
MIRAI_API int mirai_cancel(mirai *m);

/*
 * The waits below are thread-safe: any number of threads may wait on the
 * same mirais at once (m must not be freed meanwhile).  Never call them
 * from a completion callback.
 */

/* Block until m resolves; returns its error value (0 for a result), which
 * is MIRAI_ETIMEDOUT when the task timed out (mirai_call_opts.timeout_ms). */
MIRAI_API int mirai_wait(mirai *m);

/* As mirai_wait(), giving up after timeout_ms (0 and MIRAI_FOREVER: no
 * limit) with MIRAI_EPENDING: the mirai itself stays pending. */
MIRAI_API int mirai_wait_for(mirai *m, int64_t timeout_ms);

/* Wait until all of ms[0..n) resolve, or timeout_ms passes (0 and
 * MIRAI_FOREVER: no limit).  Returns 0 or MIRAI_EPENDING; each mirai's own
 * error is read with mirai_error(). */
MIRAI_API int mirai_wait_all(mirai *const *ms, size_t n, int64_t timeout_ms);

/* Wait until one of ms[0..n) resolves, or timeout_ms passes (0 and
 * MIRAI_FOREVER: no limit); its index goes to *index (may be NULL).
 * Returns 0 or MIRAI_EPENDING. */
MIRAI_API int mirai_wait_any(mirai *const *ms, size_t n, int64_t timeout_ms,
    size_t *index);

/* 1 if m is resolved, else 0: the poll.  Thread-safe. */
MIRAI_API int mirai_resolved(const mirai *m);

/* Error value of a resolved mirai (0: the task returned a result);
 * MIRAI_EBUSY while pending.  Thread-safe. */
MIRAI_API int mirai_error(const mirai *m);

/*
 * The result bytes of a resolved mirai.  The buffer belongs to m and lives
 * until mirai_free(m).  NULL with *len 0 when pending or failed.
 * Thread-safe.
 */
MIRAI_API const void *mirai_data(const mirai *m, size_t *len);

/*
 * The error message of a failed mirai: the server's message for a task
 * error, else the description of the error value.  Belongs to m; "" when
 * the mirai is pending or succeeded.  Thread-safe.
 */
MIRAI_API const char *mirai_errortext(const mirai *m);

/* The task id (unique per profile).  Thread-safe. */
MIRAI_API uint64_t mirai_id(const mirai *m);

/*
 * Release a handle.  An unresolved task still runs; its result is dropped.
 * Thread-safe, but no other call may use m during or after it.
 */
MIRAI_API void mirai_free(mirai *m);

/* ------------------------------------------------------------------ */
/* The dispatcher (what mirai-dispatcher runs)                          */
/* ------------------------------------------------------------------ */

typedef struct mirai_dispatcher mirai_dispatcher;

typedef struct mirai_dispatcher_opts {
	/* The client to serve: dial this URL (a client's dispatcher link, or
	 * a client URL in direct mode, where the dispatcher acts as one big
	 * server).  Required by mirai_dispatcher_run(). */
	const char *client_url;
	/* Server slots: one listener at url for n slots, one listener per
	 * URL of urls, or neither: n owner-only ipc sockets.  Slot i's URL is
	 * its listener's with "/<secret>/<i>" (mirai_dispatcher_url). */
	const char *url;
	const char *const *urls;
	size_t nurls;
	int n;
	/* No slot secrets (see mirai_daemons_opts). */
	int no_token;
	/* Start one local mirai-server per slot (with the options below). */
	int local;
	/* Options of the local servers (copied); NULL: defaults. */
	const mirai_server_opts *server;
	/* Retries of a task whose server died, when the task says none. */
	int retries;
	/* Instead of dialing client_url, listen here for a client to attach
	 * (mirai_attach()), one at a time; the dispatcher then outlives its
	 * clients until mirai_dispatcher_stop(). */
	const char *listen_url;
	/* Also answer status and saisei requests of other processes here
	 * (mirai_status_query(), `mirai status`). */
	const char *control_url;
	/* TLS (see the README), for the server slots: PEM files of the
	 * dispatcher's certificate and key, and of a CA to require client
	 * certificates signed by it (NULL: none required). */
	const char *tls_cert;
	const char *tls_key;
	const char *tls_ca;
	/* Heartbeat on every link (client and servers): a peer silent this
	 * long is taken as lost, as if its connection dropped; also the
	 * setting of local servers whose server.heartbeat_ms is 0.  0: 10 s;
	 * MIRAI_FOREVER (-1): off. */
	int64_t heartbeat_ms;
	/* Tasks a server may hold queued behind the one it runs (see
	 * mirai_daemons_opts); 0: idle servers only. */
	int prefetch;
} mirai_dispatcher_opts;

#define MIRAI_DISPATCHER_OPTS_INIT {.client_url = NULL}

/*
 * Create a dispatcher: bind every slot's URL (port 0 resolved) and start
 * the local servers if asked.  err, if not NULL, explains a failure.
 * Thread-safe.
 */
MIRAI_API int mirai_dispatcher_create(mirai_dispatcher **out,
    const mirai_dispatcher_opts *opts, mirai_errmsg *err);

/*
 * Bind listen_url and control_url if set (port 0 resolved) without waiting
 * for a client: afterwards mirai_dispatcher_client_url() and
 * mirai_dispatcher_control_url() give the URLs to hand out.  Done by
 * mirai_dispatcher_run() when not called before.  Call from one thread at
 * a time per handle, before mirai_dispatcher_run(); the URL getters
 * afterwards from any thread (the strings belong to d).
 */
MIRAI_API int mirai_dispatcher_listen(mirai_dispatcher *d, mirai_errmsg *err);
MIRAI_API const char *mirai_dispatcher_client_url(const mirai_dispatcher *d);
MIRAI_API const char *mirai_dispatcher_control_url(const mirai_dispatcher *d);

/* How many slots have a server online.  Thread-safe. */
MIRAI_API size_t mirai_dispatcher_online(mirai_dispatcher *d);

/* Number of slots, and the URL of slot i (owned by the dispatcher; valid
 * until the next saisei of that slot).  Not thread-safe against a saisei
 * of slot i, which replaces its URL. */
MIRAI_API size_t mirai_dispatcher_slots(const mirai_dispatcher *d);
MIRAI_API const char *mirai_dispatcher_url(const mirai_dispatcher *d,
    size_t i);

/*
 * Dial the client and dispatch until the client goes away, tells the
 * dispatcher to exit, or mirai_dispatcher_stop() is called; then tell every
 * server to exit.  Returns 0, or an error value with err filled.  Call
 * from one thread at a time per handle.
 */
MIRAI_API int mirai_dispatcher_run(mirai_dispatcher *d, mirai_errmsg *err);

/* Make mirai_dispatcher_run() return (from another thread).  Thread-safe. */
MIRAI_API void mirai_dispatcher_stop(mirai_dispatcher *d);
/* Not thread-safe: after mirai_dispatcher_run() has returned, and no other
 * call on d may run or follow. */
MIRAI_API void mirai_dispatcher_destroy(mirai_dispatcher *d);

/* ------------------------------------------------------------------ */
/* Results of the built-in function mirai.exec                          */
/* ------------------------------------------------------------------ */

/*
 * mirai.exec runs its payload with `sh -c` and returns the exit status (the
 * exit code, or 128 + signal number), stdout and stderr.  This decodes its
 * result; the pointers point into data.  Thread-safe.
 */
typedef struct mirai_exec_result {
	int status;
	const char *out;
	size_t out_len;
	const char *err;
	size_t err_len;
} mirai_exec_result;

MIRAI_API int mirai_exec_parse(const void *data, size_t len,
    mirai_exec_result *res);

/* ------------------------------------------------------------------ */
/* Host lists (hostfiles and batch schedulers)                           */
/* ------------------------------------------------------------------ */

typedef struct mirai_host {
	const char *user;     /* "" when the file names none (user@host) */
	const char *name;     /* host name or address */
	int slots;            /* >= 1 */
	int max_slots;        /* 0: no maximum given */
	int line;             /* line of the file it was first seen on; 0 when
	                         the source has no lines (environment
	                         variables, command-line lists) */
} mirai_host;

typedef struct mirai_hostlist {
	mirai_host *hosts;    /* in order of first appearance */
	size_t n;
	size_t total_slots;
	int format;           /* enum mirai_hosts_format actually parsed */
} mirai_hostlist;

enum mirai_hosts_format {
	MIRAI_HOSTS_AUTO     = 0, /* recognise the format from the content */
	MIRAI_HOSTS_OPENMPI  = 1, /* host [slots=N] [max_slots=M], user@host */
	MIRAI_HOSTS_MPICH    = 2, /* host[:N] */
	MIRAI_HOSTS_NODEFILE = 3, /* one host per line, repeats add slots */
	MIRAI_HOSTS_SGE      = 4, /* host nslots queue range */
	MIRAI_HOSTS_LSF      = 5, /* hostA 4 hostB 2 (LSB_MCPU_HOSTS) */
	MIRAI_HOSTS_SLURM    = 6, /* tux[0-5,12],login1 (SLURM_JOB_NODELIST) */
};

/* "openmpi", "mpich", ... ; NULL for an unknown value.  Thread-safe. */
MIRAI_API const char *mirai_hosts_format_name(int format);
/* The format named by name, or -1.  Thread-safe. */
MIRAI_API int mirai_hosts_format_parse(const char *name);

/*
 * Parse text[0..len) in format (MIRAI_HOSTS_AUTO: recognised from the
 * content).  A host named again adds its slots to the first entry.  source
 * names the text in error messages ("hosts:12: slots must be a positive
 * integer"); NULL means "hosts".  Limits: lines of 4096 bytes, 1 to
 * 1,000,000 slots a host, 1,000,000 host names, names of 255 characters.  *out is allocated and released with mirai_hostlist_free().
 * Returns 0, MIRAI_EPARSE (err says file and line), MIRAI_EINVAL or
 * MIRAI_ENOMEM.  Thread-safe (as are all the host list functions).
 */
MIRAI_API int mirai_hosts_parse(const char *text, size_t len, int format,
    const char *source, mirai_hostlist **out, mirai_errmsg *err);

/* Read and parse the file at path (MIRAI_ENOENT if it cannot be read). */
MIRAI_API int mirai_hosts_load(const char *path, int format,
    mirai_hostlist **out, mirai_errmsg *err);

/*
 * A Slurm node list in its compressed form (tux[0-5,12,020-025],login1)
 * with the tasks per node (2(x3),1; NULL or "" means one slot each).
 * Messages name SLURM_JOB_NODELIST and SLURM_TASKS_PER_NODE.
 */
MIRAI_API int mirai_hosts_slurm(const char *nodelist,
    const char *tasks_per_node, mirai_hostlist **out, mirai_errmsg *err);

/*
 * The hosts of the batch job this process runs in, from the scheduler's
 * environment, tried in this order: Slurm (SLURM_JOB_NODELIST or
 * SLURM_NODELIST, with SLURM_TASKS_PER_NODE or SLURM_JOB_CPUS_PER_NODE),
 * PBS/Torque (PBS_NODEFILE), SGE (PE_HOSTFILE), LSF (LSB_MCPU_HOSTS).  Empty
 * variables count as unset.  MIRAI_ENOENT when not inside a batch job.
 * Thread-safe as long as no thread changes the environment meanwhile.
 */
MIRAI_API int mirai_hosts_from_env(mirai_hostlist **out, mirai_errmsg *err);

/* A command-line list: "a,b:2,user@c:4" (MPICH style, comma separated);
 * the list's format is MIRAI_HOSTS_MPICH. */
MIRAI_API int mirai_hosts_from_arg(const char *spec, mirai_hostlist **out,
    mirai_errmsg *err);

MIRAI_API void mirai_hostlist_free(mirai_hostlist *list);

/* ------------------------------------------------------------------ */
/* Launching servers on a host list (what mirai-launch runs)           */
/* ------------------------------------------------------------------ */

typedef struct mirai_launch mirai_launch;

typedef struct mirai_launch_opts {
	/* Where servers go: one per slot, or per cpus_per_server slots
	 * (copied). */
	const mirai_hostlist *hosts;
	/* How many servers; 0: as many as the slots hold.  More than the
	 * slots hold is an error unless oversubscribe is set. */
	int max_servers;
	/* Base URL of the server slots; NULL: ws on port 0 (one port; a path
	 * with a random token per server) of 127.0.0.1 when every host is
	 * local, else of the address the advertised host resolves to here
	 * (mirai_launch_start fails with MIRAI_EADDRINVAL when it does not
	 * resolve, or when this machine's name resolves to a loopback
	 * address).  A URL given here with the wildcard host * listens on
	 * every interface. */
	const char *server_url;
	/* The host name servers dial (replacing the host of the slots'
	 * URLs); NULL: this machine's host name for a wildcard or default
	 * server_url. */
	const char *advertise;
	int no_token;
	/* Where clients attach and where status requests go; NULL: an ipc
	 * socket each in an owner-only directory.  A ws:// or wss:// URL
	 * without a path gets a random token for one (the URL is the
	 * secret); a tls+tcp:// or wss:// one is served with the launch's
	 * certificate (see mirai_launch_tls_ca). */
	const char *client_url;
	const char *control_url;
	/* "core" (NULL), "numa", "socket" or "none": the k-th server on a
	 * host binds to the k-th unit of that kind it may use (units k*c to
	 * k*c + c - 1 with c cpus_per_server). */
	const char *bind_to;
	/* Environment for the servers: "VAR" (its value here) or
	 * "VAR=value".  Sent over the ssh channel, never on a command line. */
	const char *const *env;
	size_t nenv;
	/* Options of the servers (copied; NULL: defaults); server_path is the
	 * mirai-server to run on remote hosts too (NULL: the one here for
	 * local hosts, "mirai-server" from the remote PATH otherwise). */
	const mirai_server_opts *server;
	/* ssh: parallel connection setups (0: 16), port, user, identity
	 * file, config file, known_hosts file, and what to do with unknown
	 * host keys: 0 lets the ssh config's StrictHostKeyChecking decide
	 * (refuse when it says nothing), 1 learns them (accept-new), -1
	 * refuses them.  A changed key is always refused. */
	int max_ssh;
	int ssh_port;
	const char *ssh_user;
	const char *ssh_identity;
	const char *ssh_config;
	const char *known_hosts;
	int accept_new;
	/* Start servers on local hosts (localhost, this host's name) through
	 * ssh too, instead of directly. */
	int ssh_local;
	/* Fewest servers online for the launch to go on; 0: all of them. */
	int min_servers;
	/* How long servers have to come online, in ms; 0: 60 s;
	 * MIRAI_FOREVER: no limit. */
	int64_t timeout_ms;
	/* Retries of a task whose server died. */
	int retries;
	/* Cores per server (0: 1): slots count cores, a host with S slots
	 * holds S / cpus_per_server servers (the rest of its slots stay
	 * idle), each bound to that many cores.  Needs bind_to "core" or
	 * "none"; at most 4096. */
	int cpus_per_server;
	/* 1: more servers than the slots hold are placed round robin over
	 * the hosts, a host taking at most max_slots / cpus_per_server
	 * servers when its max_slots is given (no limit otherwise); 0: that
	 * is an error. */
	int oversubscribe;
	/* How remote servers start: MIRAI_LAUNCHER_AUTO (0: srun inside a
	 * Slurm job when srun is on the PATH, else ssh; never pbs), _SSH,
	 * _SRUN (one job step, one agent a node, every host through it),
	 * _LOCAL (every server on this machine, whatever the host names) or
	 * _PBS (one `pbsdsh -u`, one agent a node, which reads its setup
	 * from an owner-only file in setup_dir). */
	int launcher;
	/* TLS on the server slots: 0 (default) when any server is remote,
	 * 1 always, -1 never.  On, ws:// slots become wss://: a CA and a
	 * certificate made for this launch (files in an owner-only
	 * directory, removed at the end), the CA sent to every server with
	 * its setup, and servers refuse a dispatcher it did not sign. */
	int tls;
	/* Heartbeat of the dispatcher (on its links to the servers and to
	 * attached clients) and of the servers whose server->heartbeat_ms is
	 * 0: a peer silent this long is taken as lost.  0: 10 s;
	 * MIRAI_FOREVER (-1): off.  An attached client must speak within it:
	 * a client pings every third of its own heartbeat when quiet. */
	int64_t heartbeat_ms;
	/* MIRAI_LAUNCHER_PBS: a directory every node sees under the same
	 * path, in which the launch makes an owner-only directory (0700)
	 * holding the agents' setup file (0600), removed once the start is
	 * over and at the latest by mirai_launch_destroy; NULL:
	 * $MIRAI_SETUP_DIR, else $PBS_O_WORKDIR, else $HOME. */
	const char *setup_dir;
} mirai_launch_opts;

enum mirai_launcher {
	MIRAI_LAUNCHER_AUTO  = 0,
	MIRAI_LAUNCHER_SSH   = 1,
	MIRAI_LAUNCHER_SRUN  = 2,
	MIRAI_LAUNCHER_LOCAL = 3,
	MIRAI_LAUNCHER_PBS   = 4,
};

#define MIRAI_LAUNCH_OPTS_INIT {.hosts = NULL}

enum mirai_launch_state {
	MIRAI_LAUNCH_PLANNED  = 0,
	MIRAI_LAUNCH_STARTING = 1,
	MIRAI_LAUNCH_ONLINE   = 2,
	MIRAI_LAUNCH_FAILED   = 3,
	MIRAI_LAUNCH_GONE     = 4, /* was online, went away */
};

/* One server of the plan.  Strings belong to the launch. */
typedef struct mirai_launch_slot {
	size_t slot;         /* global slot number, also the URL's */
	const char *host;
	const char *user;    /* "" if none given */
	int host_slot;       /* k-th server on its host */
	int unit;            /* the unit it binds to (-1: none) */
	int local;           /* started here without ssh */
	int state;           /* enum mirai_launch_state */
	const char *url;     /* "" before mirai_launch_start */
	int pid;             /* once online */
	const char *binding; /* as the server verified it, once online */
	const char *error;   /* why it failed, "" otherwise */
} mirai_launch_slot;

/* Progress: online, failed (including gone) and total servers. */
typedef void (*mirai_launch_progress_fn)(void *arg, size_t online,
    size_t failed, size_t total);

/*
 * Plan a launch (nothing starts): servers on the hosts in order, one per
 * slot (or per cpus_per_server slots), a host's servers numbered one after
 * the other; bindings counted per host.  MIRAI_EINVAL when the options
 * cannot be met: more servers than the slots hold without oversubscribe,
 * or than max_slots allow with it, min_servers above the servers planned.
 * err explains a failure in one line, naming mirai-launch's options.
 * Thread-safe.
 */
MIRAI_API int mirai_launch_create(mirai_launch **out,
    const mirai_launch_opts *opts, mirai_errmsg *err);

/* The plan, or its state once started: *slots[0..*n), owned by l, valid
 * until the next call on l.  The mirai_launch_* calls: from one thread at
 * a time per handle. */
MIRAI_API void mirai_launch_slots(mirai_launch *l,
    const mirai_launch_slot **slots, size_t *n);

/* The plan as lines of JSON, one object per server, into a NUL-terminated
 * string the caller frees. */
MIRAI_API int mirai_launch_plan_json(mirai_launch *l, char **out);

/*
 * Start the dispatcher, then every server (local ones directly, remote
 * ones over ssh, many at once), and wait until all are online or failed or
 * the time is up, calling progress (may be NULL) on each change.  Fails
 * with MIRAI_ESPAWN when fewer than min_servers came online (err says which
 * failed and why).  timeout_ms of the options bounds the wait.
 */
MIRAI_API int mirai_launch_start(mirai_launch *l,
    mirai_launch_progress_fn progress, void *arg, mirai_errmsg *err);

/* Where clients attach (MIRAI_DISPATCHER_URL) and where status requests
 * go (MIRAI_CONTROL_URL); NULL before mirai_launch_start. */
MIRAI_API const char *mirai_launch_client_url(const mirai_launch *l);
MIRAI_API const char *mirai_launch_control_url(const mirai_launch *l);

/* The PEM file of this launch's CA, which signs the dispatcher's
 * certificate (MIRAI_TLS_CA for a client of a tls+tcp:// or wss:// client
 * or control URL), in an owner-only directory; NULL when the launch uses
 * no TLS or before mirai_launch_start.  Removed by mirai_launch_destroy. */
MIRAI_API const char *mirai_launch_tls_ca(const mirai_launch *l);

/* Make a mirai_launch_start running on another thread give up at once:
 * it returns MIRAI_ECANCELED, and mirai_launch_destroy then tears down
 * what it started (e.g. on a signal during a long start).  Thread-safe;
 * not async-signal-safe.  Accepts NULL. */
MIRAI_API void mirai_launch_cancel(mirai_launch *l);

/* Tear down: every server and the dispatcher are told to exit, ssh
 * channels close, local servers are reaped; then free.  Accepts NULL. */
MIRAI_API void mirai_launch_destroy(mirai_launch *l);

/* ------------------------------------------------------------------ */
/* The agent setup: what mirai-launch sends a host's agent              */
/* ------------------------------------------------------------------ */

/*
 * A host's agent (`mirai-server --stdin`) gets its servers' URLs, which
 * hold secrets, and the forwarded environment on standard input, never on
 * a command line.  The setup is a run of length-prefixed records ending in
 * an end record, so a value may hold any bytes but NUL (newlines, text
 * that looks like a record), up to the limits below.  Under srun every
 * agent reads the same stream, under pbsdsh the same file: URL records
 * are addressed to a node, and an agent keeps only its own.
 */
#define MIRAI_AGENT_MAX_RECORD (1u << 20) /* bytes in one record */
#define MIRAI_AGENT_MAX_TOTAL (64u << 20) /* bytes in one setup */
#define MIRAI_AGENT_MAX_URLS 4096         /* servers for one agent */
#define MIRAI_AGENT_MAX_ENV 4096          /* variables */

typedef struct mirai_agent_setup {
	size_t nurls;
	char **urls;     /* the servers this agent starts, in order */
	int *bind_index; /* per URL: the unit to bind to; -1: none given */
	size_t nenv;
	char **env;      /* "VAR=VALUE", in order; VAR is not empty */
	char *tls_ca;    /* PEM text of the CA that signs the dispatcher's
	                    certificate (servers dial wss://), or NULL */
} mirai_agent_setup;

/*
 * Read one setup from fd: exactly its bytes, nothing past the end record
 * (the descriptor stays usable, e.g. to wait for its end of file).  node
 * names this agent: URLs addressed to another node are skipped; NULL
 * keeps only URLs addressed to nobody.  A name matches its short form
 * ("n1" and "n1.cluster").  On success *out (free it with
 * mirai_agent_setup_free) holds at least one URL.  Fails with
 * MIRAI_ECLOSED when the input ends early, MIRAI_EPROTO when a record is
 * malformed or beyond a limit (err says which), MIRAI_ENOENT when no URL
 * is for this node.
 */
MIRAI_API int mirai_agent_read(int fd, const char *node,
    mirai_agent_setup **out, mirai_errmsg *err);

/*
 * Read one setup, as mirai_agent_read() does, from the file at path:
 * what mirai-launch --launcher pbs writes, where the agents have no
 * standard input.  The file holds secrets, so, like ssh with a private
 * key, this refuses (MIRAI_EPERM, err says why) a file that is a symbolic
 * link, not a regular file, not owned by this process's effective user,
 * or open to group or others in any way (mode bits 077).  MIRAI_ENOENT
 * when it does not exist; otherwise as mirai_agent_read().
 */
MIRAI_API int mirai_agent_read_file(const char *path, const char *node,
    mirai_agent_setup **out, mirai_errmsg *err);

/* Free a setup from mirai_agent_read.  Accepts NULL. */
MIRAI_API void mirai_agent_setup_free(mirai_agent_setup *s);

/* ------------------------------------------------------------------ */
/* TLS material                                                         */

/*
 * Make TLS material without openssl: a fresh CA (an EC P-256 key; valid
 * from an hour ago for 7 days) and, signed by it, a certificate and its key
 * for the DNS name "mirai-dispatcher.invalid", written into dir as three
 * owner-only (0600) PEM files:
 *   dir/ca.pem    the CA's certificate, for the dialing side: servers
 *                 (mirai_server_opts.tls_ca, mirai-server --tls-ca);
 *   dir/cert.pem  the certificate and its key, for the listening side:
 *   dir/key.pem   mirai_daemons_opts and mirai_dispatcher_opts tls_cert
 *                 and tls_key, mirai-dispatcher --tls-cert --tls-key.
 * Dialers verify the listener by that fixed name, not by the address they
 * dial (see the README, TLS), so the certificate serves any address.  The
 * CA's key is not kept: nothing else can be signed by it; call again for
 * new material.
 *
 * dir must exist, belong to the caller and be writable by nobody else
 * (MIRAI_EPERM otherwise), and none of the three files may exist
 * (MIRAI_EEXIST): nothing is ever replaced, and on any failure the files
 * this call wrote are removed.  The files then belong to the caller, who
 * removes them.  Errors: MIRAI_EINVAL (dir NULL or empty), MIRAI_ENOENT,
 * MIRAI_EPERM, MIRAI_EEXIST, MIRAI_ENOSPC, MIRAI_ENOMEM, MIRAI_ECRYPTO; err
 * names the file or the step.  Thread-safe (each call has its own CA).
 */
MIRAI_API int mirai_tls_generate(const char *dir, mirai_errmsg *err);

#ifdef __cplusplus
}
#endif

#endif /* MIRAI_H */
