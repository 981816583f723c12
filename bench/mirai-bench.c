/*
 * mirai-bench: the yardstick.  Runs one workload (DESIGN.md, w1-w4) on local
 * servers and, in the same run, the floor: the same traffic over raw NNG
 * request/reply between processes on the same transport.  The last line of
 * output is one JSON object; its keys are stable.
 */
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

#include <mirai.h>

#include "../cmd/cli.h"

extern char **environ;

#define FLOOR_CTX_PER_SERVER 32

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

/* ---- the floor: raw NNG request/reply ------------------------------- */

/* A raw REP server: echo every request.  Runs in its own process. */
static int
floor_server(const char *url)
{
	nng_socket s;
	nng_msg *msg;
	int rv;

	if ((rv = nng_rep0_open(&s)) != 0 ||
	    (rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 512u << 20)) != 0 ||
	    (rv = nng_dial(s, url, NULL, 0)) != 0) {
		die_nng("floor server", rv);
	}
	while (nng_recvmsg(s, &msg, 0) == 0) {
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
	const char *argv[] = {"/proc/self/exe", "--floor-server", url, NULL};
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

static nng_socket
req_listen(char *url_out, size_t len)
{
	nng_socket s;
	nng_listener l;
	int rv, port;

	if ((rv = nng_req0_open(&s)) != 0 ||
	    (rv = nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME,
	         NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 512u << 20)) != 0 ||
	    (rv = nng_listen(s, "tcp://127.0.0.1:0", &l, 0)) != 0 ||
	    (rv = nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port)) != 0) {
		die_nng("floor socket", rv);
	}
	snprintf(url_out, len, "tcp://127.0.0.1:%d", port);
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

/* Many requests in flight over one REQ socket to nserv servers. */
typedef struct fctx {
	nng_ctx ctx;
	nng_aio *aio;
	int sending;
	struct fthru *ft;
} fctx;

typedef struct fthru {
	nng_socket s;
	size_t size;
	atomic_long left;  /* requests still to start */
	atomic_long done;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	long total;
} fthru;

static void
fctx_send(fctx *c)
{
	nng_msg *m;

	if (atomic_fetch_sub(&c->ft->left, 1) <= 0) {
		return;
	}
	nng_msg_alloc(&m, c->ft->size);
	memset(nng_msg_body(m), 'x', c->ft->size);
	c->sending = 1;
	nng_aio_set_msg(c->aio, m);
	nng_ctx_send(c->ctx, c->aio);
}

static void
fctx_cb(void *arg)
{
	fctx *c = arg;
	int rv  = nng_aio_result(c->aio);

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
	nng_msg_free(nng_aio_get_msg(c->aio));
	if (atomic_fetch_add(&c->ft->done, 1) + 1 == c->ft->total) {
		pthread_mutex_lock(&c->ft->mtx);
		pthread_cond_signal(&c->ft->cv);
		pthread_mutex_unlock(&c->ft->mtx);
	}
	fctx_send(c);
}

static double
floor_throughput(int nserv, long ntasks, size_t size)
{
	floor_procs fp = {0};
	char url[64];
	fthru ft;
	int nctx = nserv * FLOOR_CTX_PER_SERVER;
	fctx *cs = calloc((size_t) nctx, sizeof *cs);
	double t0, t1;

	ft.s = req_listen(url, sizeof url);
	for (int i = 0; i < nserv; i++) {
		floor_spawn(&fp, url);
	}
	wait_pipes(ft.s, nserv);
	ft.size  = size;
	ft.total = ntasks;
	atomic_init(&ft.left, ntasks);
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

static void
set_daemons(int n, int dispatcher)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err;
	int rv;

	d.n          = n;
	d.dispatcher = dispatcher;
	if ((rv = mirai_daemons(&d, &err)) != 0) {
		fprintf(stderr, "mirai-bench: daemons: %s\n", err.text);
		exit(1);
	}
}

/* Run ntasks of fn(payload) at once; returns seconds. */
static double
run_batch(const char *fn, const void *payload, size_t size, long ntasks)
{
	mirai **ms = malloc((size_t) ntasks * sizeof *ms);
	double t0, t1;
	int rv;

	if (ms == NULL) {
		die("batch", MIRAI_ENOMEM);
	}
	t0 = now_s();
	for (long i = 0; i < ntasks; i++) {
		if ((rv = mirai_call(NULL, fn, payload, size, &ms[i])) != 0) {
			die("submit", rv);
		}
	}
	/* Consume results as they come, as a client streaming them would. */
	for (long i = 0; i < ntasks; i++) {
		if ((rv = mirai_wait(ms[i])) != 0) {
			fprintf(stderr, "mirai-bench: task failed: %s\n",
			    mirai_errortext(ms[i]));
			exit(1);
		}
		mirai_free(ms[i]);
	}
	t1 = now_s();
	free(ms);
	return t1 - t0;
}

static void
warm_up(int n)
{
	run_batch("mirai.echo", "x", 1, 20L * n);
}

static double
w3_run(int daemons, int disp, long long ntasks)
{
	mirai **ms = malloc((size_t) (ntasks + 1) * sizeof *ms);
	double t0, span;
	int rv;

	set_daemons(daemons, disp);
	warm_up(daemons);
	t0 = now_s();
	if ((rv = mirai_call(NULL, "mirai.sleep", "2000", 4, &ms[0])) != 0) {
		die("submit", rv);
	}
	for (long long i = 1; i <= ntasks; i++) {
		if ((rv = mirai_call(NULL, "mirai.sleep", "20", 2, &ms[i])) != 0) {
			die("submit", rv);
		}
	}
	mirai_wait_all(ms, (size_t) ntasks + 1, -1);
	span = now_s() - t0;
	for (long long i = 0; i <= ntasks; i++) {
		if (mirai_error(ms[i]) != 0) {
			die("w3 task", mirai_error(ms[i]));
		}
		mirai_free(ms[i]);
	}
	free(ms);
	mirai_reset(NULL);
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
	char *payload = malloc(size);
	mirai_status *st;
	double c0, c1, d0 = 0, d1 = 0, t0, t1, t2, per, cper, dper;
	int dpid = 0, rv;
	long long done;

	if (ms == NULL || payload == NULL) {
		die("w6", MIRAI_ENOMEM);
	}
	memset(payload, 'x', size);
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
		if ((rv = mirai_call(NULL, "mirai.echo", payload, size, &ms[i])) != 0) {
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
		if ((rv = mirai_wait(ms[i])) != 0) {
			die("w6 task", rv);
		}
		mirai_free(ms[i]);
	}
	t2 = now_s();
	mirai_reset(NULL);
	/* Memory held for the tasks not yet done when measured. */
	cper = (c1 - c0) / (double) (ntasks - done);
	dper = (d1 - d0) / (double) (ntasks - done);
	per  = cper + dper - (double) size;
	printf("mirai: %lld tasks submitted in %.2f s, all done in %.2f s; "
	       "client %.0f + dispatcher %.0f bytes per queued task, %.0f "
	       "beyond the %zu-byte payload\n",
	    ntasks, t1 - t0, t2 - t0, cper, dper, per, size);
	printf("{\"workload\":\"w6\",\"transport\":\"tcp\",\"daemons\":%d,"
	       "\"dispatcher\":%s,\"tasks\":%lld,\"size\":%zu,"
	       "\"client_bytes_per_task\":%.1f,"
	       "\"dispatcher_bytes_per_task\":%.1f,"
	       "\"bytes_per_task_beyond_payload\":%.1f,\"tasks_per_s\":%.1f,"
	       "\"floor_p50_us\":%.1f,\"ratio_budget\":%.3f}\n",
	    daemons, dname, ntasks, size, cper, dper, per,
	    (double) ntasks / (t2 - t0), p50f, per / 256.0);
	free(ms);
	free(payload);
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

int
main(int argc, char **argv)
{
	long long daemons = 0, ntasks = 0, rounds = 0;
	size_t size       = 0;
	int dispatcher = 0, no_dispatcher = 0;
	const char *floor_url = NULL;
	const cli_opt opts[] = {
	    {"daemons", 'n', CLI_INT, &daemons, "N",
		"local servers (default: 2; w2: 1)"},
	    {"dispatcher", 0, CLI_FLAG, &dispatcher, NULL,
		"use a dispatcher (the default)"},
	    {"no-dispatcher", 0, CLI_FLAG, &no_dispatcher, NULL,
		"send tasks straight to the servers"},
	    {"tasks", 't', CLI_INT, &ntasks, "N",
		"number of tasks (w1 100000, w2 10000, w3 100, w4 500, w6 1M)"},
	    {"size", 's', CLI_SIZE, &size, "BYTES",
		"payload size (w4 1M, else 64)"},
	    {"rounds", 'r', CLI_INT, &rounds, "R",
		"alternate floor and mirai R times (default 3; w3, w6: 1)"},
	    {"floor-server", 0, CLI_STR, &floor_url, "URL",
		"(internal) run a raw NNG echo server for the floor"},
	    {NULL, 0, 0, NULL, NULL, NULL},
	};
	const cli_tool tool = {"mirai-bench", "[OPTIONS] WORKLOAD",
	    "Measure a workload on local servers, and in the same run its floor:\n"
	    "the same traffic over raw NNG request/reply on the same transport,\n"
	    "alternating floor and mirai in rounds so that drift hits both.\n"
	    "WORKLOAD: w1 (many small tasks at once), w2 (sequential round\n"
	    "trips), w3 (one 2 s task then many 20 ms tasks), w4 (1 MiB in and\n"
	    "out), w6 (a million tasks queued at once: memory per task).\n"
	    "The last line is one JSON object with the figures, the floors and\n"
	    "their ratios.  MIRAI_BENCH_PROCESS=1 runs the dispatcher as a\n"
	    "separate process instead of a thread.",
	    "Exit status: 0 done, 1 a measurement failed, 2 bad command line.",
	    opts, 0};
	const char *w;
	char *payload;
	const char *dname;
	int first, disp, R;
	double p50f, p99f;

	if (cli_parse(&tool, argc, argv, &first) != 0) {
		return 2;
	}
	if (floor_url != NULL) {
		return floor_server(floor_url);
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
	disp = no_dispatcher ? MIRAI_DISPATCHER_OFF
	    : getenv("MIRAI_BENCH_PROCESS") ? MIRAI_DISPATCHER_PROCESS
					    : MIRAI_DISPATCHER_DEFAULT;
	dispatcher = !no_dispatcher;
	/* "dispatcher" stays a boolean; the mode is a key of its own. */
	dname = !dispatcher ? "false,\"dispatcher_mode\":\"off\""
	    : disp == MIRAI_DISPATCHER_PROCESS
	    ? "true,\"dispatcher_mode\":\"process\""
	    : "true,\"dispatcher_mode\":\"thread\"";
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
	if ((payload = malloc(size)) == NULL) {
		die("payload", MIRAI_ENOMEM);
	}
	memset(payload, 'x', size);

	printf("mirai-bench %s: %lld daemons, dispatcher %s, %lld tasks of %zu "
	       "bytes, %d rounds, transport tcp loopback\n",
	    w, daemons, dispatcher ? (disp == MIRAI_DISPATCHER_PROCESS
					     ? "process" : "thread")
				   : "off",
	    ntasks, size, R);
	fflush(stdout);

	if (strcmp(w, "w1") == 0 || strcmp(w, "w4") == 0) {
		double ft[MAXROUNDS], fi[MAXROUNDS], mt[MAXROUNDS], fl[MAXROUNDS];
		double tps, ftm, fim, mbps = 0, fmb = 0, fimb = 0;
		set_daemons((int) daemons, disp);
		warm_up((int) daemons);
		for (int r = 0; r < R; r++) {
			fl[r] = floor_p50(64, NULL);
			ft[r] = floor_throughput((int) daemons, ntasks, size);
			fi[r] = floor_idle((int) daemons, ntasks, size);
			mt[r] = (double) ntasks /
			    run_batch("mirai.echo", payload, size, ntasks);
			printf("round %d: floor %.0f tasks/s, idle floor %.0f "
			       "tasks/s, mirai %.0f tasks/s\n",
			    r + 1, ft[r], fi[r], mt[r]);
			fflush(stdout);
		}
		mirai_reset(NULL);
		tps  = median(mt, R);
		ftm  = median(ft, R);
		fim  = median(fi, R);
		p50f = median(fl, R);
		if (strcmp(w, "w4") == 0) {
			double per = 2.0 * (double) size / 1e6;
			mbps = tps * per;
			fmb  = ftm * per;
			fimb = fim * per;
			printf("median: mirai %.0f MB/s in+out; floor %.0f MB/s, "
			       "idle floor %.0f MB/s\n",
			    mbps, fmb, fimb);
			printf("{\"workload\":\"w4\",\"transport\":\"tcp\","
			       "\"daemons\":%lld,\"dispatcher\":%s,\"tasks\":%lld,"
			       "\"size\":%zu,\"rounds\":%d,\"MBps\":%.1f,"
			       "\"floor_MBps\":%.1f,\"floor_idle_MBps\":%.1f,"
			       "\"tasks_per_s\":%.1f,\"floor_tasks_per_s\":%.1f,"
			       "\"floor_idle_tasks_per_s\":%.1f,\"floor_p50_us\":%.1f,"
			       "\"ratio_floor\":%.3f,\"ratio_floor_idle\":%.3f}\n",
			    daemons, dname, ntasks, size, R, mbps, fmb, fimb, tps,
			    ftm, fim, p50f, mbps / fmb, mbps / fimb);
		} else {
			printf("median: mirai %.0f tasks/s; floor %.0f, idle floor "
			       "%.0f\n",
			    tps, ftm, fim);
			printf("{\"workload\":\"w1\",\"transport\":\"tcp\","
			       "\"daemons\":%lld,\"dispatcher\":%s,\"tasks\":%lld,"
			       "\"size\":%zu,\"rounds\":%d,\"tasks_per_s\":%.1f,"
			       "\"floor_tasks_per_s\":%.1f,"
			       "\"floor_idle_tasks_per_s\":%.1f,\"floor_p50_us\":%.1f,"
			       "\"ratio_floor\":%.3f,\"ratio_floor_idle\":%.3f}\n",
			    daemons, dname, ntasks, size, R, tps, ftm, fim, p50f,
			    tps / ftm, tps / fim);
		}
	} else if (strcmp(w, "w2") == 0) {
		double *lat   = malloc((size_t) ntasks * sizeof *lat);
		double *flat  = malloc((size_t) ntasks * sizeof *flat);
		long long at  = 0;
		double p50, p99;
		set_daemons((int) daemons, disp);
		warm_up((int) daemons);
		for (int r = 0; r < R; r++) {
			/* Rounds split the round trips; the floor does as many. */
			long long per = ntasks / R + (r < ntasks % R);
			floor_latency(size, (int) per, flat + at);
			for (long long i = 0; i < per; i++) {
				mirai *m;
				double t0 = now_s();
				int rv = mirai_call(NULL, "mirai.echo", payload, size, &m);
				if (rv != 0 || (rv = mirai_wait(m)) != 0) {
					die("round trip", rv);
				}
				lat[at + i] = (now_s() - t0) * 1e6;
				mirai_free(m);
			}
			at += per;
		}
		mirai_reset(NULL);
		qsort(lat, (size_t) ntasks, sizeof *lat, cmp_double);
		qsort(flat, (size_t) ntasks, sizeof *flat, cmp_double);
		p50  = pct(lat, (int) ntasks, 50);
		p99  = pct(lat, (int) ntasks, 99);
		p50f = pct(flat, (int) ntasks, 50);
		p99f = pct(flat, (int) ntasks, 99);
		free(lat);
		free(flat);
		printf("mirai: round trip p50 %.1f us, p99 %.1f us; floor p50 "
		       "%.1f us, p99 %.1f us\n",
		    p50, p99, p50f, p99f);
		printf("{\"workload\":\"w2\",\"transport\":\"tcp\",\"daemons\":%lld,"
		       "\"dispatcher\":%s,\"tasks\":%lld,\"size\":%zu,\"rounds\":%d,"
		       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"floor_p50_us\":%.1f,"
		       "\"floor_p99_us\":%.1f,\"ratio_p50\":%.3f}\n",
		    daemons, dname, ntasks, size, R, p50, p99, p50f, p99f,
		    p50 / p50f);
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
		printf("{\"workload\":\"w3\",\"transport\":\"tcp\",\"daemons\":%lld,"
		       "\"dispatcher\":%s,\"tasks\":%lld,\"makespan_s\":%.3f,"
		       "\"optimal_s\":%.3f,\"floor_p50_us\":%.1f,"
		       "\"ratio_optimal\":%.3f",
		    daemons, dname, ntasks + 1, span, optimal, p50f,
		    span / optimal);
		if (dispatcher) {
			printf(",\"makespan_no_dispatcher_s\":%.3f", other);
		}
		printf("}\n");
	} else {
		p50f = floor_p50(64, &p99f);
		w6_run((int) daemons, disp, dname, ntasks, size, p50f);
	}
	free(payload);
	mirai_shutdown();
	return 0;
}
