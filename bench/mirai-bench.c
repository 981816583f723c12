/*
 * mirai-bench: the yardstick.  Runs one workload (DESIGN.md, w1-w4, w6) on
 * local servers and, in the same run, the floor: the same traffic over raw
 * NNG request/reply between processes on the same transport.  Every task
 * carries distinct bytes and every result is checked.  The last line of
 * output is one JSON object; its keys are stable (new ones are only added).
 * With --tls, the same measured over TLS beside the plain figures, round
 * by round (see "plain and TLS legs").
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>

#include <mirai.h>

#include "../cmd/cli.h"

extern char **environ;

#define FLOOR_CTX_PER_SERVER 32
/* Messages in flight per server in the batched floor (the library keeps
 * at most 2 unacknowledged per server on a shared link). */
#define FLOOR_BATCHES_PER_SERVER 4
/* The name in mirai_tls_generate()'s certificate, which mirai's servers
 * verify (README, TLS): the raw floor servers verify it too. */
#define TLS_NAME "mirai-dispatcher.invalid"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static void
die(const char *what, int rv)
{
	fprintf(stderr, "mirai-bench: %s: %s\n", what, mirai_strerror(rv));
	exit(1);
}

static void
die_nng(const char *what, int rv)
{
	fprintf(stderr, "mirai-bench: %s: %s\n", what, nng_strerror(rv));
	exit(1);
}

/* ---- plain and TLS legs ---------------------------------------------- */

/*
 * A run measures one leg, or with --tls two, alternating round by round so
 * that drift hits both: plain (the default profile: local servers started
 * by the library, floors on ipc, exactly as without --tls) and TLS (profile
 * "tls": the library listens on tls+tcp:// without a dispatcher or on
 * wss:// slots with one, with a certificate from mirai_tls_generate(); the
 * bench starts the servers with the CA; the floors listen on the same
 * scheme with the same certificate, and their raw servers verify it as
 * mirai's do).  cur is the leg being measured.
 */
typedef struct leg {
	const char *label;   /* in progress lines: "" alone, " plain", " tls" */
	const char *profile; /* NULL: the default profile */
	const char *scheme;  /* NULL: ipc; "tls+tcp" or "wss" */
	long long checked;   /* mirai results verified */
	pid_t servers[64];   /* the servers the bench started (TLS) */
	int nservers;
} leg;

static leg legs[2] = {{"", NULL, NULL, 0, {0}, 0},
    {" tls", "tls", NULL, 0, {0}, 0}};
static int nlegs = 1;
static leg *cur  = &legs[0];

/* The TLS material, in a private directory removed at exit; the floors'
 * listeners take the certificate and key as text. */
static char tls_dir[1024];
static char tls_ca[1100], tls_cert[1100], tls_key[1100];
static char *tls_cert_pem, *tls_key_pem;

static const char *
transport_of(const leg *l)
{
	return l->scheme != NULL ? l->scheme : "ipc";
}

static void
put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++) {
		p[i] = (uint8_t) (v >> (8 * i));
	}
}

static uint64_t
get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--) {
		v = v << 8 | p[i];
	}
	return v;
}

/* ---- distinct payloads, checked results ------------------------------ */

/*
 * Every task carries bytes of its own: a fixed pattern with the task's
 * index and a checksum of it over its first 16 bytes and another checksum
 * over its last 8, so that a result that belongs to another task, or is
 * shifted, cut short or garbled, differs from what the echo should return.
 * Stamping a task writes those 24 bytes into a buffer that holds the
 * pattern; checking compares them and the pattern around them.
 */
static uint8_t *pattern;   /* pattern_len bytes, made once */
static uint8_t *sendbuf;   /* the pattern, stamped for the task at hand */
static size_t pattern_len;
static long long bad_task = -1; /* --bad-task */
static long long prefetch;      /* --prefetch */

static uint64_t
mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15u;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
	return x ^ (x >> 31);
}

static void
pattern_init(size_t len)
{
	pattern     = malloc(len > 0 ? len : 1);
	sendbuf     = malloc(len > 0 ? len : 1);
	pattern_len = len;
	if (pattern == NULL || sendbuf == NULL) {
		die("payload", MIRAI_ENOMEM);
	}
	for (size_t j = 0; j < len; j++) {
		pattern[j] = (uint8_t) mix64(j);
	}
	memcpy(sendbuf, pattern, len);
}

/* The stamp of task idx: *nh bytes of head at the start, *nt of tail at
 * the end (short payloads get what fits). */
static void
stamp_of(uint64_t idx, uint8_t head[16], uint8_t tail[8], size_t *nh,
    size_t *nt)
{
	put_le(head, idx, 8);
	put_le(head + 8, mix64(idx), 8);
	put_le(tail, mix64(~idx), 8);
	*nh = pattern_len < 16 ? pattern_len : 16;
	*nt = pattern_len >= 24 ? 8 : 0;
}

/* Stamp p (which holds the pattern) as the payload of task idx. */
static void
payload_stamp(uint8_t *p, uint64_t idx)
{
	uint8_t head[16], tail[8];
	size_t nh, nt;

	stamp_of(idx, head, tail, &nh, &nt);
	memcpy(p, head, nh);
	memcpy(p + pattern_len - nt, tail, nt);
}

static void
payload_write(uint8_t *p, uint64_t idx)
{
	memcpy(p, pattern, pattern_len);
	payload_stamp(p, idx);
}

/* 1 if got[0..len) is the payload of task idx. */
static int
payload_ok(const uint8_t *got, size_t len, uint64_t idx)
{
	uint8_t head[16], tail[8];
	size_t nh, nt;

	if (len != pattern_len || (got == NULL && len > 0)) {
		return 0;
	}
	stamp_of(idx, head, tail, &nh, &nt);
	return memcmp(got, head, nh) == 0 &&
	    memcmp(got + nh, pattern + nh, len - nh - nt) == 0 &&
	    memcmp(got + len - nt, tail, nt) == 0;
}

/*
 * m (waited for with result rv) is task idx of what; its result must equal
 * expect[0..len), or with expect NULL the payload of task idx (what
 * mirai.echo returns).  Anything else ends the run with status 1, naming
 * the task.  count: a measured task (counted in "checked", subject to
 * --bad-task), not a warm-up one.
 */
static void
check_result(const char *what, long long idx, mirai *m, int rv,
    const void *expect, size_t len, int count)
{
	const uint8_t *got;
	size_t got_len;
	int ok;

	if (rv != 0) {
		fprintf(stderr, "mirai-bench: %s task %lld: no result: %s\n", what,
		    idx, mirai_errortext(m));
		exit(1);
	}
	got = mirai_data(m, &got_len);
	ok  = expect == NULL ? payload_ok(got, got_len, (uint64_t) idx)
			     : got_len == len && memcmp(got, expect, len) == 0;
	if (!ok || (count && idx == bad_task)) {
		fprintf(stderr,
		    "mirai-bench: %s task %lld: wrong result (%zu bytes): not "
		    "the %zu bytes the task should return\n",
		    what, idx, got_len, expect == NULL ? pattern_len : len);
		exit(1);
	}
	cur->checked += count;
}

/* ---- the library's wire layout, for the batched floor ---------------- */

/*
 * The library packs the frames queued for a peer into one message of at
 * most 64 KiB of frames (MIRAI__PACK_CAP in lib/internal.h; a frame of
 * 64 KiB or more goes alone), in both directions.  The batched floor sends
 * the same bytes: TASK frames laid out as lib/codec.h lays them out (a
 * 16-byte message header; per task an 8-byte frame header, 26 fixed bytes,
 * the function name and the payload), as many to a message as the library
 * packs, and its raw server answers each message with one message of
 * RESULT frames (8 + 24 bytes and the payload each).  A tool does not
 * include the library's internal headers, so the layout is repeated here.
 */
#define WIRE_MAGIC 0x4941524du /* "MRAI" */
#define WIRE_PROTO 1
#define WIRE_HDR 16
#define WIRE_FRAME_HDR 8
#define WIRE_TASK_FIXED 26
#define WIRE_RESULT_FIXED 24
#define WIRE_F_TASK 2
#define WIRE_F_RESULT 3
#define WIRE_PACK_CAP (64u * 1024u)
#define WIRE_BIG_FRAME (64u * 1024u)

static const char echo_fn[] = "mirai.echo";
#define ECHO_FN_LEN (sizeof echo_fn - 1)

static size_t
task_frame_len(size_t size)
{
	return WIRE_FRAME_HDR + WIRE_TASK_FIXED + ECHO_FN_LEN + size;
}

/* Tasks of size bytes the library packs into one message. */
static long
batch_tasks(size_t size)
{
	size_t f = task_frame_len(size);

	return f >= WIRE_BIG_FRAME ? 1 : (long) (WIRE_PACK_CAP / f);
}

static void
wire_hdr(uint8_t *p, uint64_t nframes, uint64_t seq)
{
	put_le(p, WIRE_MAGIC, 4);
	p[4] = WIRE_PROTO;
	p[5] = 0;
	put_le(p + 6, nframes, 2);
	put_le(p + 8, seq, 4);
	put_le(p + 12, 0, 4);
}

static void
wire_frame_hdr(uint8_t *p, uint8_t type, uint64_t body)
{
	p[0] = type;
	p[1] = 0;
	put_le(p + 2, 0, 2);
	put_le(p + 4, body, 4);
}

/* One message of the TASK frames of tasks first .. first+n-1. */
static nng_msg *
batch_msg(size_t size, long first, long n)
{
	size_t flen = task_frame_len(size);
	nng_msg *m;
	uint8_t *p;
	int rv;

	if ((rv = nng_msg_alloc(&m, WIRE_HDR + (size_t) n * flen)) != 0) {
		die_nng("batched floor", rv);
	}
	p = nng_msg_body(m);
	wire_hdr(p, (uint64_t) n, (uint64_t) first);
	p += WIRE_HDR;
	for (long k = 0; k < n; k++, p += flen) {
		uint8_t *b = p + WIRE_FRAME_HDR;
		wire_frame_hdr(p, WIRE_F_TASK, flen - WIRE_FRAME_HDR);
		put_le(b, (uint64_t) (first + k), 8); /* id */
		put_le(b + 8, 0, 4);                  /* timeout */
		put_le(b + 12, 0, 4);                 /* flags */
		put_le(b + 16, 0, 8);                 /* hook */
		put_le(b + 24, ECHO_FN_LEN, 2);
		memcpy(b + WIRE_TASK_FIXED, echo_fn, ECHO_FN_LEN);
		payload_write(b + WIRE_TASK_FIXED + ECHO_FN_LEN,
		    (uint64_t) (first + k));
	}
	return m;
}

/*
 * The raw server's answer to a message of TASK frames: one message of
 * RESULT frames echoing each task's payload.  NULL if in is not such a
 * message (it is then echoed as it is, and the client's check fails).
 */
static nng_msg *
batch_results(nng_msg *in)
{
	const uint8_t *p = nng_msg_body(in);
	size_t left      = nng_msg_len(in), used = WIRE_HDR;
	uint64_t n;
	nng_msg *out;
	uint8_t *q;

	if (left < WIRE_HDR || get_le(p, 4) != WIRE_MAGIC) {
		return NULL;
	}
	n = get_le(p + 6, 2);
	p += WIRE_HDR;
	left -= WIRE_HDR;
	/* A RESULT frame is shorter than its TASK frame. */
	if (nng_msg_alloc(&out, WIRE_HDR + left) != 0) {
		return NULL;
	}
	q = nng_msg_body(out);
	wire_hdr(q, n, get_le(p - WIRE_HDR + 8, 4));
	for (uint64_t k = 0; k < n; k++) {
		uint64_t body, fn_len, len;
		if (left < WIRE_FRAME_HDR + WIRE_TASK_FIXED || p[0] != WIRE_F_TASK ||
		    (body = get_le(p + 4, 4)) > left - WIRE_FRAME_HDR ||
		    body < WIRE_TASK_FIXED ||
		    (fn_len = get_le(p + WIRE_FRAME_HDR + 24, 2)) >
			body - WIRE_TASK_FIXED) {
			nng_msg_free(out);
			return NULL;
		}
		len = body - WIRE_TASK_FIXED - fn_len;
		wire_frame_hdr(q + used, WIRE_F_RESULT, WIRE_RESULT_FIXED + len);
		memcpy(q + used + WIRE_FRAME_HDR, p + WIRE_FRAME_HDR, 8); /* id */
		memset(q + used + WIRE_FRAME_HDR + 8, 0, 16); /* status .. hook */
		memcpy(q + used + WIRE_FRAME_HDR + WIRE_RESULT_FIXED,
		    p + WIRE_FRAME_HDR + WIRE_TASK_FIXED + fn_len, len);
		used += WIRE_FRAME_HDR + WIRE_RESULT_FIXED + len;
		p += WIRE_FRAME_HDR + body;
		left -= WIRE_FRAME_HDR + body;
	}
	nng_msg_chop(out, nng_msg_len(out) - used);
	return out;
}

/* The answer to batch_msg(size, first, n) must hold the n results, in
 * order, each its task's payload. */
static void
batch_check(nng_msg *m, size_t size, long first, long n)
{
	const uint8_t *p = nng_msg_body(m);
	size_t left      = nng_msg_len(m);
	long k           = 0;

	if (left < WIRE_HDR || get_le(p, 4) != WIRE_MAGIC ||
	    get_le(p + 6, 2) != (uint64_t) n) {
		goto bad;
	}
	p += WIRE_HDR;
	left -= WIRE_HDR;
	for (; k < n; k++) {
		uint64_t body;
		if (left < WIRE_FRAME_HDR + WIRE_RESULT_FIXED ||
		    p[0] != WIRE_F_RESULT ||
		    (body = get_le(p + 4, 4)) > left - WIRE_FRAME_HDR ||
		    body != WIRE_RESULT_FIXED + size ||
		    get_le(p + WIRE_FRAME_HDR, 8) != (uint64_t) (first + k) ||
		    get_le(p + WIRE_FRAME_HDR + 8, 4) != 0 ||
		    !payload_ok(p + WIRE_FRAME_HDR + WIRE_RESULT_FIXED, size,
			(uint64_t) (first + k))) {
			goto bad;
		}
		p += WIRE_FRAME_HDR + body;
		left -= WIRE_FRAME_HDR + body;
	}
	if (left == 0) {
		return;
	}
bad:
	fprintf(stderr, "mirai-bench: batched floor task %ld: wrong or missing "
			"result\n",
	    first + (k < n ? k : n - 1));
	exit(1);
}

/* ---- the floor: raw NNG request/reply ------------------------------- */

/*
 * TLS for a floor socket, as mirai sets it up: the listener (the REQ side,
 * where mirai's client or dispatcher is) shows the certificate; a raw
 * server dials with the CA and verifies the name, as mirai-server does.
 */
static nng_tls_config *
floor_tls(int listening, const char *ca_file)
{
	nng_tls_config *c;
	int rv;

	if ((rv = nng_tls_config_alloc(&c, listening ? NNG_TLS_MODE_SERVER
						     : NNG_TLS_MODE_CLIENT)) != 0) {
		die_nng("floor TLS", rv);
	}
	if (listening) {
		rv = nng_tls_config_own_cert(c, tls_cert_pem, tls_key_pem, NULL);
	} else if ((rv = nng_tls_config_ca_file(c, ca_file)) == 0 &&
	    (rv = nng_tls_config_auth_mode(c, NNG_TLS_AUTH_MODE_REQUIRED)) ==
		0) {
		rv = nng_tls_config_server_name(c, TLS_NAME);
	}
	if (rv != 0) {
		die_nng("floor TLS", rv);
	}
	return c;
}

/* A raw REP server: echo every request, or answer a message of TASK
 * frames with one of RESULT frames (the batched floor).  Runs in its own
 * process; ca_file: dial over TLS trusting it (NULL: ipc). */
static int
floor_server(const char *url, const char *ca_file)
{
	nng_socket s;
	nng_dialer d;
	nng_msg *msg, *res;
	int rv;

	if ((rv = nng_rep0_open(&s)) != 0 ||
	    (rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 512u << 20)) != 0) {
		die_nng("floor server", rv);
	}
	if (ca_file == NULL) {
		rv = nng_dial(s, url, NULL, 0);
	} else if ((rv = nng_dialer_create(&d, s, url)) == 0) {
		nng_tls_config *c = floor_tls(0, ca_file);

		if ((rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, c)) == 0) {
			rv = nng_dialer_start(d, 0);
		}
		nng_tls_config_free(c);
	}
	if (rv != 0) {
		die_nng("floor server", rv);
	}
	while (nng_recvmsg(s, &msg, 0) == 0) {
		if ((res = batch_results(msg)) != NULL) {
			nng_msg_free(msg);
			msg = res;
		}
		if (nng_sendmsg(s, msg, 0) != 0) {
			nng_msg_free(msg);
		}
	}
	return 0;
}

typedef struct floor_procs {
	pid_t pids[64];
	int n;
} floor_procs;

static void
floor_spawn(floor_procs *fp, const char *url)
{
	const char *argv[] = {"/proc/self/exe", "--floor-server", url,
	    cur->scheme != NULL ? "--floor-ca" : NULL, tls_ca, NULL};
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	int rv;

	if (n > 0) {
		self[n] = '\0';
		argv[0] = self;
	}
	if ((rv = posix_spawn(&fp->pids[fp->n], argv[0], NULL, NULL,
	         (char *const *) argv, environ)) != 0) {
		fprintf(stderr, "mirai-bench: cannot start a floor server: %s\n",
		    strerror(rv));
		exit(1);
	}
	fp->n++;
}

static void
floor_kill(floor_procs *fp)
{
	for (int i = 0; i < fp->n; i++) {
		kill(fp->pids[i], SIGTERM);
		waitpid(fp->pids[i], NULL, 0);
	}
	fp->n = 0;
}

/*
 * The library links local servers through ipc sockets in an owner-only
 * directory: the floors use the same transport, in a directory of their
 * own, removed at exit.
 */
static char floor_dir[32];

static void
floor_dir_remove(void)
{
	rmdir(floor_dir);
}

/* The TLS leg's floor listener: the leg's scheme on a loopback port of
 * its own; url_out gets the URL with the port. */
static void
req_listen_tls(nng_socket s, char *url_out, size_t len)
{
	const char *path = strcmp(cur->scheme, "wss") == 0 ? "/floor" : "";
	nng_tls_config *c = floor_tls(1, NULL);
	nng_listener l;
	int rv, port = 0;

	snprintf(url_out, len, "%s://127.0.0.1:0%s", cur->scheme, path);
	if ((rv = nng_listener_create(&l, s, url_out)) != 0 ||
	    (rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, c)) != 0 ||
	    (rv = nng_listener_start(l, 0)) != 0 ||
	    (rv = nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port)) != 0) {
		die_nng("floor socket", rv);
	}
	nng_tls_config_free(c);
	snprintf(url_out, len, "%s://127.0.0.1:%d%s", cur->scheme, port, path);
}

static nng_socket
req_listen(char *url_out, size_t len)
{
	static int seq;
	nng_socket s;
	int rv;

	if ((rv = nng_req0_open(&s)) != 0 ||
	    (rv = nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME,
	         NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 512u << 20)) != 0) {
		die_nng("floor socket", rv);
	}
	if (cur->scheme != NULL) {
		req_listen_tls(s, url_out, len);
		return s;
	}
	if (floor_dir[0] == '\0') {
		snprintf(floor_dir, sizeof floor_dir, "/tmp/mirai-bench-XXXXXX");
		if (mkdtemp(floor_dir) == NULL) {
			fprintf(stderr, "mirai-bench: cannot make a directory "
					"in /tmp\n");
			exit(1);
		}
		atexit(floor_dir_remove);
	}
	snprintf(url_out, len, "ipc://%s/%d", floor_dir, seq++);
	if ((rv = nng_listen(s, url_out, NULL, 0)) != 0) {
		die_nng("floor socket", rv);
	}
	return s;
}

static void
wait_pipes(nng_socket s, int n)
{
	/* A round trip per server proves they are all there. */
	(void) n;
	nng_msg *m;
	for (int i = 0; i < 4 * n; i++) {
		nng_msg_alloc(&m, 8);
		if (nng_sendmsg(s, m, 0) != 0 || nng_recvmsg(s, &m, 0) != 0) {
			fprintf(stderr, "mirai-bench: floor warm-up failed\n");
			exit(1);
		}
		nng_msg_free(m);
	}
}

/* Sequential round trips: sorted latencies in us go to lat[0..n). */
static void
floor_latency(size_t size, int n, double *lat)
{
	floor_procs fp = {0};
	char url[64];
	nng_socket s = req_listen(url, sizeof url);

	floor_spawn(&fp, url);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000);
	wait_pipes(s, 1);
	for (int i = -100; i < n; i++) {
		nng_msg *m;
		double t0 = now_s();
		nng_msg_alloc(&m, size);
		memset(nng_msg_body(m), 'x', size);
		if (nng_sendmsg(s, m, 0) != 0 || nng_recvmsg(s, &m, 0) != 0) {
			fprintf(stderr, "mirai-bench: floor round trip failed\n");
			exit(1);
		}
		nng_msg_free(m);
		if (i >= 0) {
			lat[i] = (now_s() - t0) * 1e6;
		}
	}
	nng_close(s);
	floor_kill(&fp);
}

/*
 * Many requests in flight over one REQ socket to nserv servers.  A request
 * is one task of size bytes, or with per > 0 a message of up to per TASK
 * frames (batch_msg) whose answer is checked.
 */
typedef struct fctx {
	nng_ctx ctx;
	nng_aio *aio;
	int sending;
	long first, n; /* the tasks of the request in flight */
	struct fthru *ft;
} fctx;

typedef struct fthru {
	nng_socket s;
	size_t size;
	long per;         /* tasks per request; 0: one, not framed */
	atomic_long next; /* first task not yet sent */
	atomic_long done;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	long total;
} fthru;

static void
fctx_send(fctx *c)
{
	fthru *ft = c->ft;
	long n    = ft->per > 0 ? ft->per : 1;
	long first = atomic_fetch_add(&ft->next, n);
	nng_msg *m;

	if (first >= ft->total) {
		return;
	}
	if (n > ft->total - first) {
		n = ft->total - first;
	}
	if (ft->per > 0) {
		m = batch_msg(ft->size, first, n);
	} else {
		nng_msg_alloc(&m, ft->size);
		memset(nng_msg_body(m), 'x', ft->size);
	}
	c->first   = first;
	c->n       = n;
	c->sending = 1;
	nng_aio_set_msg(c->aio, m);
	nng_ctx_send(c->ctx, c->aio);
}

static void
fctx_cb(void *arg)
{
	fctx *c = arg;
	int rv  = nng_aio_result(c->aio);
	nng_msg *m;

	if (rv != 0) {
		fprintf(stderr, "mirai-bench: floor request failed: %s\n",
		    nng_strerror(rv));
		exit(1);
	}
	if (c->sending) {
		/* Post the receive only once the send completed. */
		c->sending = 0;
		nng_ctx_recv(c->ctx, c->aio);
		return;
	}
	m = nng_aio_get_msg(c->aio);
	if (c->ft->per > 0) {
		batch_check(m, c->ft->size, c->first, c->n);
	}
	nng_msg_free(m);
	if (atomic_fetch_add(&c->ft->done, c->n) + c->n == c->ft->total) {
		pthread_mutex_lock(&c->ft->mtx);
		pthread_cond_signal(&c->ft->cv);
		pthread_mutex_unlock(&c->ft->mtx);
	}
	fctx_send(c);
}

/* Tasks per second of ntasks through nserv raw servers; per as in fthru,
 * with FLOOR_BATCHES_PER_SERVER messages in flight per server. */
static double
floor_throughput(int nserv, long ntasks, size_t size, long per)
{
	floor_procs fp = {0};
	char url[64];
	fthru ft;
	int nctx = nserv *
	    (per > 0 ? FLOOR_BATCHES_PER_SERVER : FLOOR_CTX_PER_SERVER);
	fctx *cs = calloc((size_t) nctx, sizeof *cs);
	double t0, t1;

	if (cs == NULL) {
		die("floor", MIRAI_ENOMEM);
	}
	ft.s = req_listen(url, sizeof url);
	for (int i = 0; i < nserv; i++) {
		floor_spawn(&fp, url);
	}
	wait_pipes(ft.s, nserv);
	ft.size  = size;
	ft.per   = per;
	ft.total = ntasks;
	atomic_init(&ft.next, 0);
	atomic_init(&ft.done, 0);
	pthread_mutex_init(&ft.mtx, NULL);
	pthread_cond_init(&ft.cv, NULL);
	for (int i = 0; i < nctx; i++) {
		cs[i].ft = &ft;
		nng_ctx_open(&cs[i].ctx, ft.s);
		nng_aio_alloc(&cs[i].aio, fctx_cb, &cs[i]);
	}
	t0 = now_s();
	for (int i = 0; i < nctx; i++) {
		fctx_send(&cs[i]);
	}
	pthread_mutex_lock(&ft.mtx);
	while (atomic_load(&ft.done) < ntasks) {
		pthread_cond_wait(&ft.cv, &ft.mtx);
	}
	pthread_mutex_unlock(&ft.mtx);
	t1 = now_s();
	for (int i = 0; i < nctx; i++) {
		nng_aio_free(cs[i].aio);
		nng_ctx_close(cs[i].ctx);
	}
	nng_close(ft.s);
	floor_kill(&fp);
	free(cs);
	return (double) ntasks / (t1 - t0);
}

/* Exactly one request in flight per server: one REQ socket each. */
typedef struct fidle {
	nng_socket s;
	long n;
	size_t size;
} fidle;

static void *
fidle_main(void *arg)
{
	fidle *f = arg;

	for (long i = 0; i < f->n; i++) {
		nng_msg *m;
		nng_msg_alloc(&m, f->size);
		memset(nng_msg_body(m), 'x', f->size);
		if (nng_sendmsg(f->s, m, 0) != 0 || nng_recvmsg(f->s, &m, 0) != 0) {
			fprintf(stderr, "mirai-bench: floor request failed\n");
			exit(1);
		}
		nng_msg_free(m);
	}
	return NULL;
}

static double
floor_idle(int nserv, long ntasks, size_t size)
{
	floor_procs fp = {0};
	fidle f[64];
	pthread_t th[64];
	double t0, t1;

	for (int i = 0; i < nserv; i++) {
		char url[64];
		f[i].s    = req_listen(url, sizeof url);
		f[i].size = size;
		f[i].n    = ntasks / nserv + (i < ntasks % nserv);
		floor_spawn(&fp, url);
		wait_pipes(f[i].s, 1);
	}
	t0 = now_s();
	for (int i = 0; i < nserv; i++) {
		pthread_create(&th[i], NULL, fidle_main, &f[i]);
	}
	for (int i = 0; i < nserv; i++) {
		pthread_join(th[i], NULL);
	}
	t1 = now_s();
	for (int i = 0; i < nserv; i++) {
		nng_close(f[i].s);
	}
	floor_kill(&fp);
	return (double) ntasks / (t1 - t0);
}

/* ---- mirai ------------------------------------------------------------ */

/* The mirai-server the bench starts for the TLS leg: $MIRAI_SERVER, the
 * one beside this program (as the library finds its own), or $PATH's. */
static const char *
server_exe(char *buf, size_t len)
{
	const char *env = getenv("MIRAI_SERVER");
	ssize_t n;
	char *slash;

	if (env != NULL && *env != '\0') {
		return env;
	}
	n = readlink("/proc/self/exe", buf, len - 1);
	if (n > 0) {
		buf[n] = '\0';
		slash  = strrchr(buf, '/');
		if (slash != NULL &&
		    (size_t) (slash - buf) + sizeof "/mirai-server" <= len) {
			memcpy(slash + 1, "mirai-server", sizeof "mirai-server");
			if (access(buf, X_OK) == 0) {
				return buf;
			}
		}
	}
	return "mirai-server";
}

/* Start a server dialing url with the CA; the URL (which may carry a
 * token) travels in MIRAI_URL, as the library passes it, not on the
 * command line that other users can read. */
static void
server_spawn(leg *l, const char *url)
{
	char exe[4096], urlenv[600];
	const char *argv[] = {server_exe(exe, sizeof exe), "--tls-ca", tls_ca,
	    NULL};
	size_t n = 0, k = 0;
	char **env;
	int rv;

	while (environ[n] != NULL) {
		n++;
	}
	if ((env = calloc(n + 2, sizeof *env)) == NULL) {
		die("server", MIRAI_ENOMEM);
	}
	for (size_t i = 0; i < n; i++) {
		if (strncmp(environ[i], "MIRAI_URL=", 10) != 0) {
			env[k++] = environ[i];
		}
	}
	snprintf(urlenv, sizeof urlenv, "MIRAI_URL=%s", url);
	env[k] = urlenv;
	rv = posix_spawnp(&l->servers[l->nservers], argv[0], NULL, NULL,
	    (char *const *) argv, env);
	free(env);
	if (rv != 0) {
		fprintf(stderr, "mirai-bench: cannot start %s: %s\n", argv[0],
		    strerror(rv));
		exit(1);
	}
	l->nservers++;
}

/* The TLS leg's n servers: one per slot URL, or n on the client's URL
 * without a dispatcher; returns once all are connected. */
static void
servers_start(leg *l, int n, int dispatcher)
{
	mirai_status *st;
	int rv, up = 0;

	if ((rv = mirai_status_get(l->profile, &st)) != 0) {
		die("status", rv);
	}
	if (dispatcher && st->nrows < (size_t) n) {
		fprintf(stderr, "mirai-bench: %zu slots for %d servers\n",
		    st->nrows, n);
		exit(1);
	}
	for (int i = 0; i < n; i++) {
		server_spawn(l, dispatcher ? st->rows[i].url : st->url);
	}
	mirai_status_free(st);
	for (int t = 0; t < 3000 && up < n; t++) {
		usleep(10000);
		if (mirai_status_get(l->profile, &st) != 0) {
			continue;
		}
		up = 0;
		if (!dispatcher) {
			up = st->connections;
		}
		for (size_t i = 0; dispatcher && i < st->nrows; i++) {
			up += st->rows[i].online;
		}
		mirai_status_free(st);
	}
	if (up < n) {
		fprintf(stderr, "mirai-bench: %d of %d TLS servers connected in "
				"30 s\n", up, n);
		exit(1);
	}
}

/* Reap the servers the bench started (told to exit by mirai_reset);
 * those still there after 5 s are killed. */
static void
servers_reap(leg *l)
{
	for (int i = 0; i < l->nservers; i++) {
		for (int t = 0; waitpid(l->servers[i], NULL, WNOHANG) == 0; t++) {
			if (t == 500) {
				kill(l->servers[i], SIGKILL);
				waitpid(l->servers[i], NULL, 0);
				break;
			}
			usleep(10000);
		}
	}
	l->nservers = 0;
}

static void
set_daemons(int n, int dispatcher)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err;
	char url[64];
	int rv;

	d.profile    = cur->profile;
	d.n          = n;
	d.dispatcher = dispatcher;
	d.prefetch   = dispatcher == MIRAI_DISPATCHER_OFF ? 0 : (int) prefetch;
	if (cur->scheme != NULL) {
		/* tls+tcp: the client's URL (no dispatcher); wss: n slots on
		 * one port.  The bench starts the servers. */
		snprintf(url, sizeof url, "%s://127.0.0.1:0", cur->scheme);
		d.url      = url;
		d.n        = dispatcher == MIRAI_DISPATCHER_OFF ? 0 : n;
		d.tls_cert = tls_cert;
		d.tls_key  = tls_key;
	}
	if ((rv = mirai_daemons(&d, &err)) != 0) {
		fprintf(stderr, "mirai-bench: daemons: %s\n", err.text);
		exit(1);
	}
	if (cur->scheme != NULL) {
		servers_start(cur, n, dispatcher != MIRAI_DISPATCHER_OFF);
	}
}

static void
reset_daemons(void)
{
	mirai_reset(cur->profile);
	servers_reap(cur);
}

/* mirai_call on the current leg's profile. */
static int
call(const char *fn, const void *buf, size_t len, mirai **out)
{
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;

	o.profile = cur->profile;
	return mirai_call(cur->profile != NULL ? &o : NULL, fn, buf, len, out);
}

/*
 * Run ntasks of mirai.echo at once, tasks first .. first+ntasks-1 with
 * their own payloads, and check every result as it is consumed; returns
 * seconds.  count: measured tasks (see check_result).
 */
static double
run_batch(const char *what, long long first, long ntasks, int count)
{
	mirai **ms = malloc((size_t) ntasks * sizeof *ms);
	double t0, t1;
	int rv;

	if (ms == NULL) {
		die("batch", MIRAI_ENOMEM);
	}
	t0 = now_s();
	for (long i = 0; i < ntasks; i++) {
		payload_stamp(sendbuf, (uint64_t) (first + i));
		if ((rv = call(echo_fn, sendbuf, pattern_len, &ms[i])) != 0) {
			die("submit", rv);
		}
	}
	/* Consume results as they come, as a client streaming them would. */
	for (long i = 0; i < ntasks; i++) {
		rv = mirai_wait(ms[i]);
		check_result(what, first + i, ms[i], rv, NULL, 0, count);
		mirai_free(ms[i]);
	}
	t1 = now_s();
	free(ms);
	return t1 - t0;
}

static void
warm_up(int n)
{
	run_batch("warm-up", 0, 20L * n, 0);
}

/*
 * w3's payloads: mirai.sleep returns its input and ignores trailing
 * blanks, so blanks after the milliseconds spell the task's index in
 * binary (' ' 0, '\n' 1, lowest bit first, ending at the highest 1): each
 * task is distinct and its result must equal it.  At most 20 bits fit in
 * the 31 bytes mirai.sleep takes.
 */
#define W3_MAX_TASKS 1000000

static size_t
sleep_payload(char *buf, const char *ms, long long idx)
{
	size_t n = strlen(ms);

	memcpy(buf, ms, n);
	for (; idx > 0; idx >>= 1) {
		buf[n++] = idx & 1 ? '\n' : ' ';
	}
	return n;
}

static double
w3_run(int daemons, int disp, long long ntasks)
{
	mirai **ms = malloc((size_t) (ntasks + 1) * sizeof *ms);
	char buf[32];
	size_t len;
	double t0, span;
	int rv;

	if (ms == NULL) {
		die("w3", MIRAI_ENOMEM);
	}
	set_daemons(daemons, disp);
	warm_up(daemons);
	t0 = now_s();
	for (long long i = 0; i <= ntasks; i++) {
		len = sleep_payload(buf, i == 0 ? "2000" : "20", i);
		if ((rv = mirai_call(NULL, "mirai.sleep", buf, len, &ms[i])) != 0) {
			die("submit", rv);
		}
	}
	mirai_wait_all(ms, (size_t) ntasks + 1, -1);
	span = now_s() - t0;
	for (long long i = 0; i <= ntasks; i++) {
		len = sleep_payload(buf, i == 0 ? "2000" : "20", i);
		check_result("w3", i, ms[i], mirai_error(ms[i]), buf, len, 1);
		mirai_free(ms[i]);
	}
	free(ms);
	reset_daemons();
	return span;
}

/* Resident memory of a process in bytes (VmRSS), 0 if unknown. */
static double
rss(int pid)
{
	char path[64], line[256];
	double kb = 0;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/status", pid);
	if ((f = fopen(path, "r")) == NULL) {
		return 0;
	}
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = atof(line + 6);
		}
	}
	fclose(f);
	return kb * 1024.0;
}

/* w6: queue ntasks at once; memory of client and dispatcher per task
 * beyond the payload, measured right after submitting (nearly all are
 * still queued), then all must complete. */
static void
w6_run(int daemons, int disp, const char *dname, long long ntasks,
    size_t size, double p50f)
{
	mirai **ms = malloc((size_t) ntasks * sizeof *ms);
	mirai_status *st;
	double c0, c1, d0 = 0, d1 = 0, t0, t1, t2, per, cper, dper;
	int dpid = 0, rv;
	long long done;

	if (ms == NULL) {
		die("w6", MIRAI_ENOMEM);
	}
	/* The handle array is this program's, not the library's: make it
	 * resident before the first reading. */
	memset(ms, 0, (size_t) ntasks * sizeof *ms);
	set_daemons(daemons, disp);
	warm_up(daemons);
	if (mirai_status_get(NULL, &st) == 0) {
		dpid = st->dispatcher_pid;
		mirai_status_free(st);
	}
	/* A dispatcher thread lives in this process: count it once. */
	if (dpid == (int) getpid()) {
		dpid = 0;
	}
	c0 = rss(getpid());
	d0 = dpid > 0 ? rss(dpid) : 0;
	t0 = now_s();
	for (long long i = 0; i < ntasks; i++) {
		payload_stamp(sendbuf, (uint64_t) i);
		if ((rv = mirai_call(NULL, echo_fn, sendbuf, size, &ms[i])) != 0) {
			die("submit", rv);
		}
	}
	t1 = now_s();
	/* Give the dispatcher the tasks still on their way to it. */
	usleep(500000);
	c1 = rss(getpid());
	d1 = dpid > 0 ? rss(dpid) : 0;
	if (mirai_status_get(NULL, &st) == 0) {
		done = (long long) st->completed;
		mirai_status_free(st);
	} else {
		done = 0;
	}
	for (long long i = 0; i < ntasks; i++) {
		rv = mirai_wait(ms[i]);
		check_result("w6", i, ms[i], rv, NULL, 0, 1);
		mirai_free(ms[i]);
	}
	t2 = now_s();
	reset_daemons();
	if (done >= ntasks) {
		fprintf(stderr, "mirai-bench: w6: all %lld tasks were done before "
				"the memory was read: give more --tasks\n",
		    ntasks);
		exit(1);
	}
	/* Memory held for the tasks not yet done when measured. */
	cper = (c1 - c0) / (double) (ntasks - done);
	dper = (d1 - d0) / (double) (ntasks - done);
	per  = cper + dper - (double) size;
	printf("mirai: %lld tasks submitted in %.2f s, all done in %.2f s; "
	       "client %.0f + dispatcher %.0f bytes per queued task, %.0f "
	       "beyond the %zu-byte payload\n",
	    ntasks, t1 - t0, t2 - t0, cper, dper, per, size);
	printf("{\"workload\":\"w6\",\"transport\":\"ipc\",\"daemons\":%d,"
	       "\"dispatcher\":%s,\"tasks\":%lld,\"size\":%zu,"
	       "\"client_bytes_per_task\":%.1f,"
	       "\"dispatcher_bytes_per_task\":%.1f,"
	       "\"bytes_per_task_beyond_payload\":%.1f,\"tasks_per_s\":%.1f,"
	       "\"floor_p50_us\":%.1f,\"ratio_budget\":%.3f,\"checked\":%lld}\n",
	    daemons, dname, ntasks, size, cper, dper, per,
	    (double) ntasks / (t2 - t0), p50f, per / 256.0, cur->checked);
	free(ms);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *) a, y = *(const double *) b;
	return x < y ? -1 : x > y;
}

static double
pct(double *v, int n, double p)
{
	int i = (int) ceil(p / 100.0 * n) - 1;
	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static double
floor_p50(size_t size, double *p99)
{
	int n       = 2000;
	double *lat = malloc((size_t) n * sizeof *lat);
	double p50;

	floor_latency(size, n, lat);
	qsort(lat, (size_t) n, sizeof *lat, cmp_double);
	p50 = pct(lat, n, 50);
	if (p99 != NULL) {
		*p99 = pct(lat, n, 99);
	}
	free(lat);
	return p50;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t) n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAXROUNDS 16

/*
 * The JSON line's figures.  With --tls, the published keys carry the TLS
 * leg's figures, followed by "tls":true and the plain leg's figures of the
 * same run under the same keys prefixed "plain_"; "checked" (last, as
 * always) counts the TLS leg's results, "plain_checked" the plain leg's.
 */
typedef struct fig {
	const char *key;
	double v;
	int prec; /* decimals */
} fig;

#define MAXFIGS 12

static void
put_figs(const char *prefix, const fig *f, int n)
{
	for (int i = 0; i < n; i++) {
		printf(",\"%s%s\":%.*f", prefix, f[i].key, f[i].prec, f[i].v);
	}
}

/* The JSON line from "workload" to "rounds". */
static void
put_head(const char *w, long long daemons, const char *dname,
    long long ntasks, size_t size, int R)
{
	printf("{\"workload\":\"%s\",\"transport\":\"%s\",\"daemons\":%lld,"
	       "\"dispatcher\":%s,\"tasks\":%lld,\"size\":%zu,\"rounds\":%d",
	    w, transport_of(&legs[nlegs - 1]), daemons, dname, ntasks, size, R);
}

/* The rest of the JSON line: fig[leg][0..n). */
static void
put_tail(fig f[2][MAXFIGS], int n)
{
	const leg *last = &legs[nlegs - 1];

	put_figs("", f[nlegs - 1], n);
	if (nlegs == 2) {
		printf(",\"tls\":true,\"plain_transport\":\"%s\"",
		    transport_of(&legs[0]));
		put_figs("plain_", f[0], n);
		printf(",\"plain_checked\":%lld", legs[0].checked);
	}
	printf(",\"checked\":%lld}\n", last->checked);
}

/* A leg's rounds of throughput_run. */
typedef struct thr_rounds {
	double ft[MAXROUNDS], fi[MAXROUNDS], fb[MAXROUNDS], mt[MAXROUNDS],
	    fl[MAXROUNDS];
} thr_rounds;

/* One round of floors and mirai on the current leg. */
static void
throughput_round(const char *w, int daemons, long long ntasks, size_t size,
    long per, int r, thr_rounds *x)
{
	int w1 = strcmp(w, "w1") == 0;

	x->fl[r] = floor_p50(64, NULL);
	x->ft[r] = floor_throughput(daemons, (long) ntasks, size, 0);
	x->fi[r] = floor_idle(daemons, (long) ntasks, size);
	x->fb[r] = w1 ? floor_throughput(daemons, (long) ntasks, size, per) : 0;
	x->mt[r] = (double) ntasks /
	    run_batch(w, (long long) r * ntasks, (long) ntasks, 1);
	printf("round %d%s: floor %.0f tasks/s, idle floor %.0f tasks/s, ",
	    r + 1, cur->label, x->ft[r], x->fi[r]);
	if (w1) {
		printf("batched floor %.0f tasks/s, ", x->fb[r]);
	}
	printf("mirai %.0f tasks/s\n", x->mt[r]);
	fflush(stdout);
}

/* A leg's medians: the summary line, and its figures into f; returns how
 * many. */
static int
throughput_figs(const char *w, size_t size, long per, int R, thr_rounds *x,
    const char *label, fig *f)
{
	double tps = median(x->mt, R), ftm = median(x->ft, R),
	       fim = median(x->fi, R), p50f = median(x->fl, R), fbm;

	if (strcmp(w, "w1") != 0) {
		double mb = 2.0 * (double) size / 1e6;
		double mbps = tps * mb, fmb = ftm * mb, fimb = fim * mb;
		const fig g[] = {{"MBps", mbps, 1}, {"floor_MBps", fmb, 1},
		    {"floor_idle_MBps", fimb, 1}, {"tasks_per_s", tps, 1},
		    {"floor_tasks_per_s", ftm, 1},
		    {"floor_idle_tasks_per_s", fim, 1},
		    {"floor_p50_us", p50f, 1}, {"ratio_floor", mbps / fmb, 3},
		    {"ratio_floor_idle", mbps / fimb, 3},
		    {"ratio_floor_best", mbps / fmax(fmb, fimb), 3}};

		printf("median%s: mirai %.0f MB/s in+out; floor %.0f MB/s, idle "
		       "floor %.0f MB/s; %.3f x the faster floor\n",
		    label, mbps, fmb, fimb, mbps / fmax(fmb, fimb));
		memcpy(f, g, sizeof g);
		return (int) ARRAY_LEN(g);
	}
	fbm = median(x->fb, R);
	printf("median%s: mirai %.0f tasks/s; floor %.0f, idle floor %.0f, "
	       "batched floor %.0f (%ld tasks a message)\n",
	    label, tps, ftm, fim, fbm, per);
	{
		const fig g[] = {{"tasks_per_s", tps, 1},
		    {"floor_tasks_per_s", ftm, 1},
		    {"floor_idle_tasks_per_s", fim, 1},
		    {"floor_p50_us", p50f, 1}, {"ratio_floor", tps / ftm, 3},
		    {"ratio_floor_idle", tps / fim, 3},
		    {"floor_batched_tasks_per_s", fbm, 1},
		    {"floor_batch_tasks", (double) per, 0},
		    {"ratio_floor_batched", tps / fbm, 3}};

		memcpy(f, g, sizeof g);
		return (int) ARRAY_LEN(g);
	}
}

/* w1 and w4: rounds of floors and mirai, on each leg in turn; the JSON
 * line. */
static void
throughput_run(const char *w, long long daemons, int disp, const char *dname,
    long long ntasks, size_t size, int R)
{
	static thr_rounds x[2];
	fig f[2][MAXFIGS];
	long per = batch_tasks(size);
	int nf   = 0;

	for (int k = 0; k < nlegs; k++) {
		cur = &legs[k];
		set_daemons((int) daemons, disp);
		warm_up((int) daemons);
	}
	for (int r = 0; r < R; r++) {
		for (int k = 0; k < nlegs; k++) {
			cur = &legs[k];
			throughput_round(w, (int) daemons, ntasks, size, per, r,
			    &x[k]);
		}
	}
	for (int k = 0; k < nlegs; k++) {
		cur = &legs[k];
		reset_daemons();
		nf = throughput_figs(w, size, per, R, &x[k], cur->label, f[k]);
	}
	put_head(w, daemons, dname, ntasks, size, R);
	put_tail(f, nf);
}

/*
 * w2: sequential round trips, split into rounds; each round measures as
 * many floor round trips, then mirai's, on each leg in turn.
 */
static void
latency_run(long long daemons, int disp, const char *dname,
    long long ntasks, size_t size, int R)
{
	double *lat[2], *flat[2];
	fig f[2][MAXFIGS];
	long long at = 0;

	for (int k = 0; k < nlegs; k++) {
		lat[k]  = malloc((size_t) ntasks * sizeof *lat[k]);
		flat[k] = malloc((size_t) ntasks * sizeof *flat[k]);
		if (lat[k] == NULL || flat[k] == NULL) {
			die("w2", MIRAI_ENOMEM);
		}
		cur = &legs[k];
		set_daemons((int) daemons, disp);
		warm_up((int) daemons);
	}
	for (int r = 0; r < R; r++) {
		long long per = ntasks / R + (r < ntasks % R);

		for (int k = 0; k < nlegs; k++) {
			cur = &legs[k];
			floor_latency(size, (int) per, flat[k] + at);
			for (long long i = 0; i < per; i++) {
				mirai *m;
				double t0;
				int rv;
				payload_stamp(sendbuf, (uint64_t) (at + i));
				t0 = now_s();
				rv = call(echo_fn, sendbuf, size, &m);
				if (rv != 0) {
					die("round trip", rv);
				}
				rv = mirai_wait(m);
				lat[k][at + i] = (now_s() - t0) * 1e6;
				check_result("w2", at + i, m, rv, NULL, 0, 1);
				mirai_free(m);
			}
		}
		at += per;
	}
	for (int k = 0; k < nlegs; k++) {
		double p50, p99, p50f, p99f;

		cur = &legs[k];
		reset_daemons();
		qsort(lat[k], (size_t) ntasks, sizeof *lat[k], cmp_double);
		qsort(flat[k], (size_t) ntasks, sizeof *flat[k], cmp_double);
		p50  = pct(lat[k], (int) ntasks, 50);
		p99  = pct(lat[k], (int) ntasks, 99);
		p50f = pct(flat[k], (int) ntasks, 50);
		p99f = pct(flat[k], (int) ntasks, 99);
		free(lat[k]);
		free(flat[k]);
		printf("mirai%s: round trip p50 %.1f us, p99 %.1f us; floor p50 "
		       "%.1f us, p99 %.1f us\n",
		    cur->label, p50, p99, p50f, p99f);
		{
			const fig g[] = {{"p50_us", p50, 1}, {"p99_us", p99, 1},
			    {"floor_p50_us", p50f, 1}, {"floor_p99_us", p99f, 1},
			    {"ratio_p50", p50 / p50f, 3}};

			memcpy(f[k], g, sizeof g);
		}
	}
	put_head("w2", daemons, dname, ntasks, size, R);
	put_tail(f, 5);
}

/* With --tls: the material in a private directory (removed at exit, with
 * any server still there), and the TLS leg beside the plain one. */
static void
tls_remove(void)
{
	const char *files[] = {tls_ca, tls_cert, tls_key};

	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < legs[k].nservers; i++) {
			kill(legs[k].servers[i], SIGKILL);
			waitpid(legs[k].servers[i], NULL, 0);
		}
	}
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		if (files[i][0] != '\0') {
			unlink(files[i]);
		}
	}
	rmdir(tls_dir);
	free(tls_cert_pem);
	free(tls_key_pem);
}

/* The whole of a small text file, NUL-terminated; exits if it cannot. */
static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || (buf = malloc((size_t) n + 1)) == NULL ||
	    fread(buf, 1, (size_t) n, f) != (size_t) n) {
		fprintf(stderr, "mirai-bench: cannot read %s\n", path);
		exit(1);
	}
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void
tls_setup(int dispatcher)
{
	const char *tmp = getenv("TMPDIR");
	mirai_errmsg err;

	snprintf(tls_dir, sizeof tls_dir, "%s/mirai-bench-tls-XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(tls_dir) == NULL) {
		fprintf(stderr, "mirai-bench: cannot make %s: %s\n", tls_dir,
		    strerror(errno));
		exit(1);
	}
	atexit(tls_remove);
	if (mirai_tls_generate(tls_dir, &err) != 0) {
		fprintf(stderr, "mirai-bench: %s\n", err.text);
		exit(1);
	}
	snprintf(tls_ca, sizeof tls_ca, "%s/ca.pem", tls_dir);
	snprintf(tls_cert, sizeof tls_cert, "%s/cert.pem", tls_dir);
	snprintf(tls_key, sizeof tls_key, "%s/key.pem", tls_dir);
	tls_cert_pem   = slurp(tls_cert);
	tls_key_pem    = slurp(tls_key);
	legs[0].label  = " plain";
	legs[1].scheme = dispatcher ? "wss" : "tls+tcp";
	nlegs          = 2;
}

int
main(int argc, char **argv)
{
	long long daemons = 0, ntasks = 0, rounds = 0;
	size_t size       = 0;
	int dispatcher = 0, no_dispatcher = 0, tls = 0;
	const char *floor_url = NULL, *floor_ca = NULL;
	const cli_opt opts[] = {
	    {"daemons", 'n', CLI_INT, &daemons, "N",
		"local servers (default: 2; w2: 1)"},
	    {"servers", 0, CLI_INT, &daemons, "N",
		"the same as --daemons"},
	    {"dispatcher", 0, CLI_FLAG, &dispatcher, NULL,
		"use a dispatcher (the default)"},
	    {"no-dispatcher", 0, CLI_FLAG, &no_dispatcher, NULL,
		"send tasks straight to the servers (not w6)"},
	    {"tasks", 't', CLI_INT, &ntasks, "N",
		"number of tasks (w1 100000, w2 10000, w3 100 (at most 1M), "
		"w4 500, w6 1M)"},
	    {"size", 's', CLI_SIZE, &size, "BYTES",
		"payload size (w4 1M, else 64)"},
	    {"rounds", 'r', CLI_INT, &rounds, "R",
		"alternate floor and mirai R times (default 3; w3, w6: 1)"},
	    {"tls", 0, CLI_FLAG, &tls, NULL,
		"w1, w2, w4: also over TLS, beside plain, in the same run"},
	    {"prefetch", 0, CLI_INT, &prefetch, "K",
		"the dispatcher lets a server hold K tasks behind its running "
		"one (default 0)"},
	    {"floor-server", 0, CLI_STR, &floor_url, "URL",
		"(internal) run a raw NNG echo server for the floor"},
	    {"floor-ca", 0, CLI_STR, &floor_ca, "FILE",
		"(internal) the floor server dials over TLS trusting FILE"},
	    {"bad-task", 0, CLI_INT, &bad_task, "N",
		"(internal, for tests) take measured task N's result as wrong"},
	    {NULL, 0, 0, NULL, NULL, NULL},
	};
	const cli_tool tool = {"mirai-bench", "[OPTIONS] WORKLOAD",
	    "Measure a workload on local servers, and in the same run its floor:\n"
	    "the same traffic over raw NNG request/reply on the same transport,\n"
	    "alternating floor and mirai in rounds so that drift hits both.\n"
	    "WORKLOAD: w1 (many small tasks at once), w2 (sequential round\n"
	    "trips), w3 (one 2 s task then many 20 ms tasks), w4 (1 MiB in and\n"
	    "out), w6 (a million tasks queued at once: memory per task; needs\n"
	    "the dispatcher).  w1 also measures a batched floor: the library's\n"
	    "frames, as many to a message as it packs.  Every task carries its\n"
	    "own bytes and every result is checked; a wrong or missing one ends\n"
	    "the run.  The last line is one JSON object with the figures, the\n"
	    "floors and their ratios.  MIRAI_BENCH_PROCESS=1 runs the dispatcher\n"
	    "as a separate process instead of a thread.  --tls measures each\n"
	    "round twice, plain and over TLS (tls+tcp without a dispatcher, wss\n"
	    "slots with one; the floors on the same scheme): the JSON keys then\n"
	    "hold the TLS figures, and the plain ones follow as plain_*.",
	    "Exit status: 0 done, 1 a measurement failed or a result was wrong,\n"
	    "2 bad command line (also w6 with --no-dispatcher, and --tls with\n"
	    "w3 or w6).",
	    opts, 0};
	const char *w;
	char dname[128];
	int first, disp, R;
	double p50f, p99f;

	if (cli_parse(&tool, argc, argv, &first) != 0) {
		return 2;
	}
	if (floor_url != NULL) {
		return floor_server(floor_url, floor_ca);
	}
	if (first + 1 != argc) {
		fprintf(stderr, "mirai-bench: give one WORKLOAD (see --help)\n");
		return 2;
	}
	w = argv[first];
	if (strcmp(w, "w1") != 0 && strcmp(w, "w2") != 0 &&
	    strcmp(w, "w3") != 0 && strcmp(w, "w4") != 0 &&
	    strcmp(w, "w6") != 0) {
		fprintf(stderr, "mirai-bench: unknown workload '%s'\n", w);
		return 2;
	}
	if (dispatcher && no_dispatcher) {
		fprintf(stderr, "mirai-bench: --dispatcher or --no-dispatcher\n");
		return 2;
	}
	if (no_dispatcher && strcmp(w, "w6") == 0) {
		/* The queued tasks would wait in the servers, whose memory w6
		 * does not read: the figure would mean nothing. */
		fprintf(stderr, "mirai-bench: w6 needs the dispatcher: without "
				"one the tasks queue in the servers, which w6 does "
				"not measure\n");
		return 2;
	}
	if (tls && (strcmp(w, "w3") == 0 || strcmp(w, "w6") == 0)) {
		/* w3 measures scheduling, w6 memory: TLS changes neither. */
		fprintf(stderr, "mirai-bench: --tls measures w1, w2 and w4\n");
		return 2;
	}
	disp = no_dispatcher ? MIRAI_DISPATCHER_OFF
	    : getenv("MIRAI_BENCH_PROCESS") ? MIRAI_DISPATCHER_PROCESS
					    : MIRAI_DISPATCHER_DEFAULT;
	dispatcher = !no_dispatcher;
	if (prefetch < 0 || prefetch > 1024 || (prefetch > 0 && !dispatcher)) {
		fprintf(stderr, "mirai-bench: --prefetch takes 0-1024 and needs "
				"the dispatcher\n");
		return 2;
	}
	/* "dispatcher" stays a boolean; the mode and the prefetch are keys
	 * of their own. */
	snprintf(dname, sizeof dname, "%s,\"prefetch\":%lld",
	    !dispatcher ? "false,\"dispatcher_mode\":\"off\""
	    : disp == MIRAI_DISPATCHER_PROCESS
	    ? "true,\"dispatcher_mode\":\"process\""
	    : "true,\"dispatcher_mode\":\"thread\"",
	    prefetch);
	if (daemons <= 0) {
		daemons = strcmp(w, "w2") == 0 ? 1 : 2;
	}
	if (daemons > 64) {
		fprintf(stderr, "mirai-bench: at most 64 daemons\n");
		return 2;
	}
	if (ntasks <= 0) {
		ntasks = strcmp(w, "w1") == 0 ? 100000
		    : strcmp(w, "w2") == 0    ? 10000
		    : strcmp(w, "w3") == 0    ? 100
		    : strcmp(w, "w6") == 0    ? 1000000
					      : 500;
	}
	if (strcmp(w, "w3") == 0 && ntasks > W3_MAX_TASKS) {
		fprintf(stderr, "mirai-bench: w3: at most %d tasks\n",
		    W3_MAX_TASKS);
		return 2;
	}
	if (size == 0) {
		size = strcmp(w, "w4") == 0 ? (size_t) 1 << 20 : 64;
	}
	if (rounds <= 0) {
		rounds = strcmp(w, "w3") == 0 || strcmp(w, "w6") == 0 ? 1 : 3;
	}
	if (rounds > MAXROUNDS) {
		fprintf(stderr, "mirai-bench: at most %d rounds\n", MAXROUNDS);
		return 2;
	}
	R = (int) rounds;
	signal(SIGPIPE, SIG_IGN);
	pattern_init(size);
	if (tls) {
		tls_setup(dispatcher);
	}

	printf("mirai-bench %s: %lld daemons, dispatcher %s (prefetch %lld), %lld "
	       "tasks of %zu bytes, %d rounds, transport ipc (owner-only "
	       "sockets)%s%s\n",
	    w, daemons, dispatcher ? (disp == MIRAI_DISPATCHER_PROCESS
					     ? "process" : "thread")
				   : "off",
	    prefetch, ntasks, size, R, tls ? " and, beside it, TLS: " : "",
	    tls ? legs[1].scheme : "");
	fflush(stdout);

	if (strcmp(w, "w1") == 0 || strcmp(w, "w4") == 0) {
		throughput_run(w, daemons, disp, dname, ntasks, size, R);
	} else if (strcmp(w, "w2") == 0) {
		latency_run(daemons, disp, dname, ntasks, size, R);
	} else if (strcmp(w, "w3") == 0) {
		double span, other = 0, optimal;
		p50f = floor_p50(64, &p99f);
		span = w3_run((int) daemons, disp, ntasks);
		/* One server sleeps 2 s while the others share the short tasks. */
		optimal = fmax(2.0, (2.0 + 0.02 * (double) ntasks) / (double) daemons);
		printf("mirai: makespan %.3f s (optimal %.3f s)\n", span, optimal);
		if (dispatcher) {
			/* The same without a dispatcher, to show what it buys. */
			other = w3_run((int) daemons, MIRAI_DISPATCHER_OFF, ntasks);
			printf("mirai without dispatcher: makespan %.3f s\n", other);
		}
		printf("{\"workload\":\"w3\",\"transport\":\"ipc\",\"daemons\":%lld,"
		       "\"dispatcher\":%s,\"tasks\":%lld,\"makespan_s\":%.3f,"
		       "\"optimal_s\":%.3f,\"floor_p50_us\":%.1f,"
		       "\"ratio_optimal\":%.3f",
		    daemons, dname, ntasks + 1, span, optimal, p50f,
		    span / optimal);
		if (dispatcher) {
			printf(",\"makespan_no_dispatcher_s\":%.3f", other);
		}
		printf(",\"checked\":%lld}\n", cur->checked);
	} else {
		p50f = floor_p50(64, &p99f);
		w6_run((int) daemons, disp, dname, ntasks, size, p50f);
	}
	free(pattern);
	free(sendbuf);
	mirai_shutdown();
	return 0;
}
