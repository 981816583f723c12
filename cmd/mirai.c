/*
 * mirai: the command for job scripts.  It talks to a running dispatcher
 * (mirai-launch or mirai-dispatcher --listen/--control), found through
 * MIRAI_DISPATCHER_URL and MIRAI_CONTROL_URL unless --url says otherwise,
 * over TLS with the files of --tls-ca (--tls-cert, --tls-key) or
 * MIRAI_TLS_CA (MIRAI_TLS_CERT, MIRAI_TLS_KEY).
 *
 * `mirai exec` with a list of commands is a task farm for shell users, in
 * the manner of GNU parallel: one mirai.exec task per line, a bounded
 * window of tasks in flight, output in input order (or as tasks finish), a
 * joblog, a progress line and a halt policy.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mirai.h>

#include "cli.h"

static const char epilog[] =
    "Commands:\n"
    "  status             the dispatcher's server slots as a table (--json:\n"
    "                     the whole status as one line of JSON, secrets\n"
    "                     included); asks MIRAI_CONTROL_URL\n"
    "  saisei I           a fresh secret, so a fresh URL, for server slot I\n"
    "                     (--force cuts off a connected server); prints\n"
    "                     the new URL\n"
    "  call FN [DATA]     run FN(DATA) on a server, DATA '-' or absent: stdin;\n"
    "                     writes the result to stdout (attaches to\n"
    "                     MIRAI_DISPATCHER_URL)\n"
    "  exec COMMAND       run COMMAND with sh -c on a server; passes on its\n"
    "                     stdout, stderr and exit status\n"
    "  exec [-a FILE | -] run each line of FILE (no FILE, or '-': stdin) as a\n"
    "                     command, on as many servers as the dispatcher has;\n"
    "                     empty and blank lines are skipped, every other line\n"
    "                     runs ('#...' lines too: sh takes them as comments)\n"
    "\n"
    "A tls+tcp:// or wss:// URL needs the CA that signs the dispatcher's\n"
    "certificate: --tls-ca, else MIRAI_TLS_CA (mirai-launch sets it for its\n"
    "command).  --tls-cert and --tls-key (MIRAI_TLS_CERT, MIRAI_TLS_KEY)\n"
    "give a client certificate to a dispatcher that requires one.\n"
    "\n"
    "Exit status: 0 done (exec COMMAND: the command's status; exec of a\n"
    "list: every command exited 0), 1 the task or the dispatcher failed, or\n"
    "in a list at least one command failed or was cancelled (stderr says\n"
    "how many), 2 bad command line.";

static int
fail(const char *what, int rv, const char *text)
{
	fprintf(stderr, "mirai: %s: %s (%s)\n", what,
	    text != NULL && *text ? text : mirai_strerror(rv), mirai_errname(rv));
	return 1;
}

/* The TLS files of --tls-ca, --tls-cert and --tls-key (NULL: not given). */
static const char *opt_tls_ca, *opt_tls_cert, *opt_tls_key;

/* An option's value, else the environment's; NULL when neither is set. */
static const char *
opt_or_env(const char *opt, const char *var)
{
	const char *v = opt != NULL ? opt : getenv(var);

	return v != NULL && *v != '\0' ? v : NULL;
}

/*
 * Attach the default profile to the dispatcher at url (NULL:
 * MIRAI_DISPATCHER_URL), waiting wait_ms for it.  A tls+tcp:// or wss://
 * URL needs the CA that signs the dispatcher's certificate (--tls-ca or
 * MIRAI_TLS_CA, which mirai-launch sets), and a client certificate when
 * the dispatcher requires one.  Returns 0 or the exit code after saying
 * why.
 */
static int
attach(const char *url, int64_t wait_ms)
{
	mirai_daemons_opts o = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};
	int rv;

	o.url               = opt_or_env(url, "MIRAI_DISPATCHER_URL");
	o.attach            = 1;
	o.attach_timeout_ms = wait_ms;
	o.tls_ca            = opt_or_env(opt_tls_ca, "MIRAI_TLS_CA");
	o.tls_cert          = opt_or_env(opt_tls_cert, "MIRAI_TLS_CERT");
	o.tls_key           = opt_or_env(opt_tls_key, "MIRAI_TLS_KEY");
	if (o.url != NULL && o.tls_ca == NULL &&
	    (strncmp(o.url, "wss://", 6) == 0 || strncmp(o.url, "tls+", 4) == 0)) {
		fprintf(stderr, "mirai: attach: %s: a TLS URL needs the CA that "
				"signs the dispatcher's certificate: give --tls-ca "
				"FILE or set MIRAI_TLS_CA\n", o.url);
		return 1;
	}
	if ((rv = mirai_daemons(&o, &err)) != 0) {
		return fail("attach", rv, err.text);
	}
	return 0;
}

/* Where status and saisei go: url (NULL: MIRAI_CONTROL_URL), with the TLS
 * files of the options (the library reads the environment's). */
static mirai_control_opts
control(const char *url)
{
	mirai_control_opts o = MIRAI_CONTROL_OPTS_INIT;

	o.url      = url;
	o.tls_ca   = opt_tls_ca;
	o.tls_cert = opt_tls_cert;
	o.tls_key  = opt_tls_key;
	return o;
}

/* Read all of stdin. */
static char *
slurp(size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf  = malloc(cap);
	ssize_t r;

	while (buf != NULL && (r = read(0, buf + n, cap - n)) > 0) {
		n += (size_t) r;
		if (n == cap) {
			char *b = realloc(buf, cap *= 2);
			if (b == NULL) {
				free(buf);
				return NULL;
			}
			buf = b;
		}
	}
	*len = n;
	return buf;
}

static int
run_task(const char *url, int64_t attach_ms, int64_t timeout, const char *fn,
    const void *data, size_t len, int exec)
{
	mirai_call_opts o = MIRAI_CALL_OPTS_INIT;
	mirai_exec_result xr;
	const void *out;
	size_t olen;
	mirai *m;
	int rv, code = 0;

	if ((rv = attach(url, attach_ms)) != 0) {
		return rv;
	}
	o.timeout_ms = timeout;
	if ((rv = mirai_call(&o, fn, data, len, &m)) != 0) {
		mirai_shutdown();
		return fail(fn, rv, NULL);
	}
	if ((rv = mirai_wait(m)) != 0) {
		code = fail(fn, rv, mirai_errortext(m));
	} else {
		out = mirai_data(m, &olen);
		if (exec && mirai_exec_parse(out, olen, &xr) == 0) {
			fwrite(xr.out, 1, xr.out_len, stdout);
			fwrite(xr.err, 1, xr.err_len, stderr);
			code = xr.status;
		} else if (exec) {
			code = fail(fn, MIRAI_EPROTO, "a garbled exec result");
		} else {
			fwrite(out, 1, olen, stdout);
		}
	}
	mirai_free(m);
	mirai_shutdown();
	return code;
}

/* ---- status ------------------------------------------------------------ */

/*
 * A slot URL for display: it ends in the slot's secret and number
 * ("tcp://host:P/<32 hex digits>/3"), and the secret must not leak into a
 * table pasted into a ticket: it is shown as "<secret>".
 */
static void
mask_url(const char *url, char *out, size_t cap)
{
	size_t n = strlen(url), d = 0, h = 0;

	while (d < n && url[n - 1 - d] >= '0' && url[n - 1 - d] <= '9') {
		d++;
	}
	while (d > 0 && d + 1 + h < n &&
	    strchr("0123456789abcdef", url[n - 2 - d - h]) != NULL &&
	    url[n - 2 - d - h] != '\0') {
		h++;
	}
	if (d == 0 || h != 32 || d + h + 2 > n || url[n - 1 - d] != '/' ||
	    url[n - 2 - d - h] != '/') {
		snprintf(out, cap, "%s", url);
		return;
	}
	snprintf(out, cap, "%.*s/<secret>/%s", (int) (n - d - h - 2), url,
	    url + n - d);
}

static void
status_table(const mirai_status *st)
{
	char url[512];
	int w = 3;

	for (size_t i = 0; i < st->nrows; i++) {
		mask_url(st->rows[i].url, url, sizeof url);
		w = (int) strlen(url) > w ? (int) strlen(url) : w;
	}
	printf("%-4s  %-*s  %-6s  %8s  %8s  %8s  %7s  %s\n", "SLOT", w, "URL",
	    "ONLINE", "INSTANCE", "ASSIGNED", "COMPLETE", "PID", "HOST");
	for (size_t i = 0; i < st->nrows; i++) {
		const mirai_status_row *r = &st->rows[i];
		char pid[16] = "-";

		if (r->pid > 0) {
			snprintf(pid, sizeof pid, "%d", r->pid);
		}
		mask_url(r->url, url, sizeof url);
		printf("%-4zu  %-*s  %-6s  %8" PRIu64 "  %8" PRIu64 "  %8" PRIu64
		       "  %7s  %s\n",
		    i, w, url, r->online ? "yes" : "no", r->instance, r->assigned,
		    r->complete, pid, *r->host ? r->host : "-");
	}
	printf("tasks: %" PRIu64 " queued, %" PRIu64 " running, %" PRIu64
	       " completed, %" PRIu64 " retried\n",
	    st->queued, st->running, st->completed, st->retried);
}

static int
status(const char *url, int json)
{
	mirai_control_opts c = control(url);
	mirai_errmsg err     = {{0}};
	mirai_status *st;
	char *text;
	int rv;

	if ((rv = mirai_control_status(&c, &st, &err)) != 0) {
		return fail("status", rv, err.text);
	}
	if (!json) {
		status_table(st);
		mirai_status_free(st);
		return 0;
	}
	if ((rv = mirai_status_json(st, &text)) != 0) {
		mirai_status_free(st);
		return fail("status", rv, NULL);
	}
	printf("%s\n", text);
	free(text);
	mirai_status_free(st);
	return 0;
}

/* ---- exec of a list: the task farm --------------------------------------- */

enum halt_when { HALT_NEVER, HALT_SOON, HALT_NOW };

typedef struct farm_opts {
	const char *url;
	int64_t attach_ms, timeout_ms;
	const char *joblog;
	int unordered;
	long long window; /* 0: from the number of servers */
	int halt;         /* enum halt_when */
	long long halt_fail;
} farm_opts;

typedef struct farm farm;

/* One submitted command, from submission until its output is written. */
typedef struct job {
	farm *f;
	mirai *m;
	char *cmd;
	uint64_t seq;      /* 1, 2, ... in input order */
	double t_sub;      /* monotonic seconds */
	double t_start;    /* estimated, see farm_started() */
	double t_done;     /* set by the completion callback */
	int started;
	int finished;      /* processed by the main thread */
	struct job *prev, *next; /* not yet started (FIFO), or the free list */
} job;

struct farm {
	farm_opts o;
	FILE *in, *log;
	size_t W;           /* window: jobs in flight or waiting for output */
	job *jobs;          /* W of them */
	job *free;
	job **ring;         /* ordered output: job of seq s at ring[s % W] */
	job **doneq;        /* resolved, not yet processed (ring of W) */
	size_t dq_head, dq_n;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	size_t slots;       /* servers, for the start time estimate */
	size_t running;     /* jobs believed to be on a server */
	job *wait_head, *wait_tail; /* believed still queued, oldest first */
	char host[256];
	uint64_t submitted, processed, printed, failed, cancelled, total;
	size_t inflight;
	int eof, halting, input_error;
	double t0, epoch0, last_progress;
	int progress, progress_shown;
	char *line;
	size_t line_cap;
};

/* Completion callback, on a library thread: only queue the job. */
static void
on_done(mirai *m, void *arg)
{
	job *j  = arg;
	farm *f = j->f;
	double t = cli_now_s();

	(void) m;
	pthread_mutex_lock(&f->mtx);
	j->t_done = t;
	f->doneq[(f->dq_head + f->dq_n++) % f->W] = j;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mtx);
}

/*
 * Start times.  The API tells when a task was submitted and when it
 * resolved, not when a server took it.  The dispatcher is FIFO and gives
 * a task only to an idle server, so with S servers a task starts when it is
 * submitted if fewer than S are running, else when the S-th running one
 * finishes: that estimate is what the joblog shows.
 */
static void
farm_started(farm *f, job *j, double t)
{
	j->started = 1;
	j->t_start = t;
	f->running++;
}

static void
farm_wait_unlink(farm *f, job *j)
{
	if (j->prev != NULL) {
		j->prev->next = j->next;
	} else {
		f->wait_head = j->next;
	}
	if (j->next != NULL) {
		j->next->prev = j->prev;
	} else {
		f->wait_tail = j->prev;
	}
	j->prev = j->next = NULL;
}

static void
farm_clear_progress(farm *f)
{
	if (f->progress_shown) {
		fputs("\r\033[K", stderr);
		f->progress_shown = 0;
	}
}

static void
farm_progress(farm *f, int force)
{
	double now = cli_now_s(), el = now - f->t0, rate;
	char eta[32] = "";

	if (!f->progress || (!force && now - f->last_progress < 0.1)) {
		return;
	}
	f->last_progress = now;
	rate             = el > 0 ? (double) f->processed / el : 0;
	if (f->total > 0 && rate > 0) {
		double left = (double) (f->total - f->processed) / rate;
		snprintf(eta, sizeof eta, ", ETA %dm%02ds", (int) left / 60,
		    (int) left % 60);
	}
	if (f->total > 0) {
		fprintf(stderr, "\r\033[Kmirai exec: %" PRIu64 "/%" PRIu64
				" done, %" PRIu64 " failed, %.1f tasks/s%s",
		    f->processed, f->total, f->failed, rate, eta);
	} else {
		fprintf(stderr, "\r\033[Kmirai exec: %" PRIu64 " done, %" PRIu64
				" failed, %.1f tasks/s",
		    f->processed, f->failed, rate);
	}
	f->progress_shown = 1;
}

/* Write a finished job's output and release it. */
static void
farm_print(farm *f, job *j)
{
	mirai_exec_result xr;
	const void *out;
	size_t len;
	int rv = mirai_error(j->m);

	if (rv == 0 &&
	    (out = mirai_data(j->m, &len), mirai_exec_parse(out, len, &xr)) == 0) {
		if (xr.out_len + xr.err_len > 0) {
			farm_clear_progress(f);
		}
		fwrite(xr.out, 1, xr.out_len, stdout);
		if (xr.err_len > 0) {
			fflush(stdout);
			fwrite(xr.err, 1, xr.err_len, stderr);
		}
	} else if (!(rv == MIRAI_ECANCELED && f->halting)) {
		farm_clear_progress(f);
		fflush(stdout);
		fprintf(stderr, "mirai: exec: task %" PRIu64 " (%s): %s (%s)\n",
		    j->seq, j->cmd,
		    rv == 0 ? "a garbled exec result" : mirai_errortext(j->m),
		    mirai_errname(rv == 0 ? MIRAI_EPROTO : rv));
	}
	mirai_free(j->m);
	free(j->cmd);
	j->m    = NULL;
	j->cmd  = NULL;
	j->next = f->free;
	f->free = j;
	f->printed++;
}

/* A job has resolved: account for it, log it, maybe print it. */
static void
farm_finish(farm *f, job *j)
{
	mirai_exec_result xr;
	const void *out;
	size_t len;
	int rv = mirai_error(j->m), code = -1, sig = 0, ran = j->started;

	if (j->started) {
		f->running--;
	} else {
		farm_wait_unlink(f, j);
		j->started = 1;
		j->t_start = j->t_done;
	}
	while (f->running < f->slots && f->wait_head != NULL) {
		job *w = f->wait_head;
		farm_wait_unlink(f, w);
		farm_started(f, w, j->t_done);
	}
	if (rv == 0 &&
	    (out = mirai_data(j->m, &len), mirai_exec_parse(out, len, &xr)) == 0) {
		code = xr.status;
		/* sh reports a command killed by signal N as 128 + N. */
		sig = code > 128 && code <= 128 + 64 ? code - 128 : 0;
	}
	if (rv == MIRAI_ECANCELED && f->halting) {
		f->cancelled++;
	} else if (code != 0) {
		f->failed++;
	}
	if (f->log != NULL && (ran || !(rv == MIRAI_ECANCELED && f->halting))) {
		fprintf(f->log, "%" PRIu64 "\t%s\t-\t%.3f\t%.3f\t%d\t%d\t%s\n",
		    j->seq, f->host, f->epoch0 + j->t_start,
		    j->t_done - j->t_start, code, sig, j->cmd);
	}
	j->finished = 1;
	f->inflight--;
	f->processed++;
	if (f->o.unordered) {
		farm_print(f, j);
		return;
	}
	while (f->printed < f->submitted) {
		job *p = f->ring[(f->printed + 1) % f->W];
		if (!p->finished) {
			break;
		}
		farm_print(f, p);
	}
}

/* The next command: a line that is not blank, without its line end. */
static char *
farm_next_line(farm *f)
{
	ssize_t n;

	while ((n = getline(&f->line, &f->line_cap, f->in)) >= 0) {
		while (n > 0 && (f->line[n - 1] == '\n' || f->line[n - 1] == '\r')) {
			f->line[--n] = '\0';
		}
		if (strspn(f->line, " \t\r\f\v") < (size_t) n) {
			return f->line;
		}
	}
	if (ferror(f->in)) {
		f->input_error = 1;
	}
	return NULL;
}

static int
farm_can_submit(const farm *f)
{
	if (f->eof || f->halting) {
		return 0;
	}
	return f->o.unordered ? f->inflight < f->W
			      : f->submitted - f->printed < f->W;
}

static void
farm_submit(farm *f)
{
	mirai_call_opts co = MIRAI_CALL_OPTS_INIT;
	char *line         = farm_next_line(f);
	job *j;
	int rv;

	if (line == NULL) {
		f->eof = 1;
		return;
	}
	j       = f->free;
	f->free = j->next;
	memset(j, 0, sizeof *j);
	j->f   = f;
	j->seq = ++f->submitted;
	if ((j->cmd = strdup(line)) == NULL) {
		j->seq = --f->submitted;
		j->next = f->free;
		f->free = j;
		f->input_error = 1;
		f->eof = 1;
		return;
	}
	f->ring[j->seq % f->W] = j;
	f->inflight++;
	co.timeout_ms = f->o.timeout_ms;
	co.done       = on_done;
	co.done_arg   = j;
	j->t_sub      = cli_now_s();
	if (f->running < f->slots) {
		farm_started(f, j, j->t_sub);
	} else {
		j->prev = f->wait_tail;
		if (f->wait_tail != NULL) {
			f->wait_tail->next = j;
		} else {
			f->wait_head = j;
		}
		f->wait_tail = j;
	}
	if ((rv = mirai_call(&co, "mirai.exec", j->cmd, strlen(j->cmd),
		 &j->m)) != 0) {
		/* Not submitted: stop reading, report what ran. */
		fail("exec", rv, NULL);
		f->ring[j->seq % f->W] = NULL;
		if (j->started) {
			f->running--;
		} else {
			farm_wait_unlink(f, j);
		}
		free(j->cmd);
		j->next = f->free;
		f->free = j;
		f->submitted--;
		f->inflight--;
		f->input_error = 1;
		f->eof         = 1;
	}
}

static int
newest_first(const void *a, const void *b)
{
	const job *x = *(job *const *) a, *y = *(job *const *) b;

	return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

/*
 * --halt now: cancel every task in flight.  --halt soon: cancel only those
 * still queued at the dispatcher, so the running ones finish.  The
 * dispatcher serves this client alone and in FIFO order, so its queue
 * holds our newest unresolved tasks, as many as its status counts (one a
 * server takes in the meantime is cancelled with them).
 */
static void
farm_cancel(farm *f, job **tmp)
{
	mirai_status *st;
	size_t n = 0, queued = f->inflight;

	for (size_t i = 0; i < f->W; i++) {
		job *j = &f->jobs[i];
		if (j->m != NULL && !j->finished) {
			tmp[n++] = j;
		}
	}
	if (f->o.halt == HALT_SOON) {
		queued = 0;
		if (mirai_status_get(NULL, &st) == 0) {
			queued = (size_t) st->queued;
			mirai_status_free(st);
		} else {
			for (job *w = f->wait_head; w != NULL; w = w->next) {
				queued++;
			}
		}
	}
	qsort(tmp, n, sizeof *tmp, newest_first);
	for (size_t i = 0; i < n && i < queued; i++) {
		mirai_cancel(tmp[i]->m);
	}
}

/* How many servers there are, and their host when they all share one. */
static void
farm_servers(farm *f)
{
	mirai_status *st;
	size_t online = 0;
	const char *host = NULL;
	int one_host = 1;

	f->slots = 1;
	snprintf(f->host, sizeof f->host, "-");
	if (mirai_status_get(NULL, &st) != 0) {
		return;
	}
	for (size_t i = 0; i < st->nrows; i++) {
		const mirai_status_row *r = &st->rows[i];
		online += r->online != 0;
		if (*r->host == '\0' || (host != NULL && strcmp(host, r->host) != 0)) {
			one_host = 0;
		}
		host = r->host;
	}
	f->slots = online > 0 ? online : st->nrows > 0 ? st->nrows : 1;
	if (one_host && host != NULL) {
		snprintf(f->host, sizeof f->host, "%s", host);
	}
	mirai_status_free(st);
}

/* Count the commands of a regular file for the progress line, then rewind. */
static void
farm_count(farm *f)
{
	struct stat sb;
	off_t pos = ftello(f->in);

	if (pos < 0 || fstat(fileno(f->in), &sb) != 0 || !S_ISREG(sb.st_mode)) {
		return;
	}
	while (farm_next_line(f) != NULL) {
		f->total++;
	}
	clearerr(f->in);
	if (fseeko(f->in, pos, SEEK_SET) != 0) {
		f->total = 0;
	}
}

static int
farm_run(farm *f)
{
	struct timespec rt;
	job **batch;
	int rv;

	if ((rv = attach(f->o.url, f->o.attach_ms)) != 0) {
		return rv;
	}
	farm_servers(f);
	f->W = f->o.window > 0 ? (size_t) f->o.window
				: (f->slots * 4 > 256 ? f->slots * 4 : 256);
	f->jobs  = calloc(f->W, sizeof *f->jobs);
	f->ring  = calloc(f->W, sizeof *f->ring);
	f->doneq = calloc(f->W, sizeof *f->doneq);
	batch    = calloc(f->W, sizeof *batch);
	if (f->jobs == NULL || f->ring == NULL || f->doneq == NULL || batch == NULL) {
		free(batch);
		mirai_shutdown();
		return fail("exec", MIRAI_ENOMEM, NULL);
	}
	for (size_t i = 0; i < f->W; i++) {
		f->jobs[i].next = f->free;
		f->free         = &f->jobs[i];
	}
	pthread_mutex_init(&f->mtx, NULL);
	pthread_cond_init(&f->cv, NULL);
	clock_gettime(CLOCK_REALTIME, &rt);
	f->t0     = cli_now_s();
	f->epoch0 = (double) rt.tv_sec + (double) rt.tv_nsec * 1e-9 - f->t0;
	if (f->log != NULL) {
		fprintf(f->log, "Seq\tHost\tSlot\tStarttime\tJobRuntime\tExitval"
				"\tSignal\tCommand\n");
	}
	for (;;) {
		size_t n = 0;

		while (farm_can_submit(f)) {
			farm_submit(f);
		}
		if (f->inflight == 0 && (f->eof || f->halting)) {
			break;
		}
		pthread_mutex_lock(&f->mtx);
		if (f->dq_n == 0) {
			if (f->progress) {
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_nsec += 100 * 1000 * 1000;
				if (ts.tv_nsec >= 1000000000L) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000L;
				}
				pthread_cond_timedwait(&f->cv, &f->mtx, &ts);
			} else {
				pthread_cond_wait(&f->cv, &f->mtx);
			}
		}
		while (f->dq_n > 0) {
			batch[n++] = f->doneq[f->dq_head];
			f->dq_head = (f->dq_head + 1) % f->W;
			f->dq_n--;
		}
		pthread_mutex_unlock(&f->mtx);
		for (size_t i = 0; i < n; i++) {
			farm_finish(f, batch[i]);
		}
		if (f->o.halt != HALT_NEVER && !f->halting &&
		    f->failed >= (uint64_t) f->o.halt_fail) {
			f->halting = 1;
			farm_clear_progress(f);
			fprintf(stderr, "mirai: exec: %" PRIu64 " failed: %s\n",
			    f->failed,
			    f->o.halt == HALT_NOW
				? "cancelling the other tasks"
				: "waiting for the running tasks only");
			farm_cancel(f, batch);
		}
		farm_progress(f, 0);
	}
	farm_progress(f, 1);
	farm_clear_progress(f);
	fflush(stdout);
	mirai_shutdown();
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mtx);
	free(batch);
	free(f->doneq);
	free(f->ring);
	free(f->jobs);
	free(f->line);
	if (f->input_error) {
		fprintf(stderr, "mirai: exec: could not read or submit every "
				"command\n");
	}
	if (f->failed > 0 || f->cancelled > 0) {
		fprintf(stderr, "mirai: exec: %" PRIu64 " of %" PRIu64
				" tasks failed, %" PRIu64 " cancelled by --halt\n",
		    f->failed, f->submitted, f->cancelled);
	}
	return f->failed > 0 || f->cancelled > 0 || f->input_error ||
	    f->halting;
}

/* --halt never | soon,fail=N | now,fail=N */
static int
parse_halt(const char *s, farm_opts *o)
{
	char *end;

	if (strcmp(s, "never") == 0) {
		o->halt = HALT_NEVER;
		return 0;
	}
	if (strncmp(s, "soon,fail=", 10) == 0) {
		o->halt = HALT_SOON;
		s += 10;
	} else if (strncmp(s, "now,fail=", 9) == 0) {
		o->halt = HALT_NOW;
		s += 9;
	} else {
		return -1;
	}
	o->halt_fail = strtoll(s, &end, 10);
	return *s >= '0' && *s <= '9' && *end == '\0' && o->halt_fail > 0 ? 0 : -1;
}

static int
exec_list(farm_opts *o, const char *path)
{
	farm f;
	int rv;

	memset(&f, 0, sizeof f);
	f.o  = *o;
	f.in = path == NULL || strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (f.in == NULL) {
		fprintf(stderr, "mirai: exec: cannot read %s\n", path);
		return 1;
	}
	if (f.in == stdin && isatty(0)) {
		fprintf(stderr, "mirai: exec: reading commands from the terminal "
				"(end with Ctrl-D)\n");
	}
	if (o->joblog != NULL && (f.log = fopen(o->joblog, "w")) == NULL) {
		fprintf(stderr, "mirai: exec: cannot write %s\n", o->joblog);
		if (f.in != stdin) {
			fclose(f.in);
		}
		return 1;
	}
	if (f.log != NULL) {
		setvbuf(f.log, NULL, _IOLBF, 0);
	}
	f.progress = isatty(2);
	if (f.progress) {
		farm_count(&f);
	}
	rv = farm_run(&f);
	if (f.in != stdin) {
		fclose(f.in);
	}
	if (f.log != NULL && fclose(f.log) != 0) {
		fprintf(stderr, "mirai: exec: cannot write %s\n", o->joblog);
		rv = 1;
	}
	return rv;
}

int
main(int argc, char **argv)
{
	const char *url = NULL, *argfile = NULL, *joblog = NULL, *halt = NULL;
	int64_t timeout = 0, attach_ms = 0;
	long long window = 0;
	int force = 0, json = 0, unordered = 0;
	const cli_opt opts[] = {
	    {"url", 'u', CLI_STR, &url, "URL",
		"dispatcher URL (status, saisei: its control URL)"},
	    {"timeout", 't', CLI_MS, &timeout, "TIME",
		"call, exec: give up on a task after TIME (error 5; "
		"default and 0: never)"},
	    {"wait", 'w', CLI_MS, &attach_ms, "TIME",
		"call, exec: wait this long for a busy dispatcher "
		"(default and 0: 30s; 'forever')"},
	    {"force", 'f', CLI_FLAG, &force, NULL,
		"saisei: cut off a connected server"},
	    {"json", 0, CLI_FLAG, &json, NULL,
		"status: one line of JSON instead of the table"},
	    {"arg-file", 'a', CLI_STR, &argfile, "FILE",
		"exec: run the commands in FILE, one a line"},
	    {"unordered", 0, CLI_FLAG, &unordered, NULL,
		"exec list: write each output as its task finishes"},
	    {"joblog", 0, CLI_STR, &joblog, "FILE",
		"exec list: a line per task in FILE (as GNU parallel)"},
	    {"halt", 0, CLI_STR, &halt, "WHEN",
		"exec list: never (default), soon,fail=N or now,fail=N"},
	    {"window", 0, CLI_INT, &window, "N",
		"exec list: tasks in flight or buffered (4 x servers, >= 256)"},
	    {"tls-ca", 0, CLI_STR, &opt_tls_ca, "FILE",
		"PEM file of the CA that signs the dispatcher's certificate, "
		"for tls+tcp:// and wss:// URLs (default: $MIRAI_TLS_CA)"},
	    {"tls-cert", 0, CLI_STR, &opt_tls_cert, "FILE",
		"PEM file of a client certificate, for a dispatcher that "
		"requires one (default: $MIRAI_TLS_CERT)"},
	    {"tls-key", 0, CLI_STR, &opt_tls_key, "FILE",
		"PEM file of its key (default: $MIRAI_TLS_KEY)"},
	    {NULL, 0, 0, NULL, NULL, NULL},
	};
	const cli_tool tool = {"mirai", "[OPTIONS] COMMAND [ARGS]",
	    "Talk to a running mirai dispatcher from a shell or job script.",
	    epilog, opts, 0};
	mirai_errmsg err = {{0}};
	const char *cmd;
	int first, rv, nargs;

	if (cli_parse(&tool, argc, argv, &first) != 0) {
		return 2;
	}
	if (first >= argc) {
		fprintf(stderr, "mirai: give a command (see --help)\n");
		return 2;
	}
	cmd   = argv[first];
	nargs = argc - first - 1;
	if (strcmp(cmd, "status") == 0 && nargs == 0) {
		return status(url, json);
	}
	if (strcmp(cmd, "saisei") == 0 && nargs == 1) {
		mirai_control_opts c = control(url);
		char *end, *fresh = NULL;
		long i = strtol(argv[first + 1], &end, 10);
		if (*end != '\0' || i < 0) {
			fprintf(stderr, "mirai: saisei: '%s' is not a slot number\n",
			    argv[first + 1]);
			return 2;
		}
		if ((rv = mirai_control_saisei(&c, (size_t) i, force, &fresh,
			 &err)) != 0) {
			return fail("saisei", rv, err.text);
		}
		printf("%s\n", fresh);
		free(fresh);
		return 0;
	}
	if (strcmp(cmd, "call") == 0 && nargs >= 1 && nargs <= 2) {
		const char *fn = argv[first + 1];
		if (nargs == 2 && strcmp(argv[first + 2], "-") != 0) {
			return run_task(url, attach_ms, timeout, fn, argv[first + 2],
			    strlen(argv[first + 2]), 0);
		}
		size_t len;
		char *in = slurp(&len);
		if (in == NULL) {
			return fail("call", MIRAI_ENOMEM, NULL);
		}
		rv = run_task(url, attach_ms, timeout, fn, in, len, 0);
		free(in);
		return rv;
	}
	if (strcmp(cmd, "exec") == 0 && nargs <= 1) {
		const char *arg = nargs == 1 ? argv[first + 1] : NULL;
		farm_opts fo    = {url, attach_ms, timeout, joblog, unordered,
		       window, HALT_NEVER, 0};

		if (arg != NULL && strcmp(arg, "-") != 0 && argfile == NULL) {
			if (joblog != NULL || halt != NULL || unordered || window) {
				fprintf(stderr, "mirai: exec: --joblog, --halt, "
						"--unordered and --window are for a "
						"list of commands (-a FILE, or -)\n");
				return 2;
			}
			return run_task(url, attach_ms, timeout, "mirai.exec", arg,
			    strlen(arg), 1);
		}
		if (arg != NULL && argfile != NULL) {
			fprintf(stderr, "mirai: exec: give either -a FILE or a "
					"command, not both\n");
			return 2;
		}
		if (halt != NULL && parse_halt(halt, &fo) != 0) {
			fprintf(stderr, "mirai: --halt: '%s' is not never, "
					"soon,fail=N or now,fail=N\n", halt);
			return 2;
		}
		if (window < 0) {
			fprintf(stderr, "mirai: --window: give a positive number\n");
			return 2;
		}
		return exec_list(&fo, argfile != NULL ? argfile : arg);
	}
	fprintf(stderr, "mirai: bad command line (see --help)\n");
	return 2;
}
