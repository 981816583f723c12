/*
 * test_hostile.c: a peer that holds a valid URL and lies.  A real
 * dispatcher (the client's thread) owns two tcp slots, or a client without
 * a dispatcher listens; a hand-written peer takes slot 1 (or dials the
 * client), says HELLO, and answers every task it is given with a
 * forged frame: a result for another task, a bounce with other bytes of the
 * same length, a short bounce, a bounce whose inner length lies, a frame
 * before HELLO, a frame type servers never send, a message whose header
 * announces frames that are not there, a frame longer than its message.
 * Each time the dispatcher (or client) must refuse it, cut the peer off
 * (EXIT), and give the next peer its own copy of the task, byte for byte.
 * At the end a real mirai-server takes over and every task completes with its own
 * input echoed back (checked by content).  With prefetch the liar holds
 * several tasks: an answer for one it holds, out of turn, is its own to
 * give; one for a task it does not hold, or a bounce of other bytes, cuts
 * it off and everything it held goes back.  ASan and valgrind run this
 * too.
 */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../lib/internal.h"

#define NSMALL 4
#define BIGLEN (100u * 1024u) /* above MIRAI__BIG_FRAME */

/* ---- the lying peer ------------------------------------------------- */

typedef struct liar {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	mirai__link *link;
	mirai__msg *inbox[64];
	int n;
	int up, gone;
	int sending;  /* a message not yet taken by the link's sender */
	uint32_t ack; /* last message seq received, acknowledged as servers do */
	uint32_t slot; /* slot and secret from the URL, for the HELLO */
	char secret[MIRAI__SECRET_HEX + 1];
} liar;

static void
liar_recv(void *arg, mirai__msg *m)
{
	liar *l = arg;
	mirai__reader r;
	mirai__msghdr h;

	pthread_mutex_lock(&l->mtx);
	if (mirai__msg_open(&r, mirai__msg_body(m), mirai__msg_len(m), &h) == 0) {
		l->ack = h.seq;
	}
	if (l->n < 64) {
		l->inbox[l->n++] = m;
		m                = NULL;
	}
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mtx);
	mirai__msg_free(m);
}

static int
liar_pipe(void *arg, int ev, uint32_t pipe)
{
	liar *l = arg;

	(void) pipe;
	pthread_mutex_lock(&l->mtx);
	if (ev == MIRAI__PIPE_UP) {
		l->up++;
	} else if (ev == MIRAI__PIPE_GONE) {
		l->gone++;
	}
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mtx);
	return 0;
}

static void
liar_sent(void *arg, int rv)
{
	liar *l = arg;

	(void) rv;
	pthread_mutex_lock(&l->mtx);
	l->sending = 0;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mtx);
}

static void
liar_open(liar *l, const char *url)
{
	mirai__link_cfg cfg = {
		.events = (1u << MIRAI__PIPE_UP) | (1u << MIRAI__PIPE_GONE),
		.recv   = liar_recv,
		.pipe   = liar_pipe,
		.sent   = liar_sent,
		.arg    = l,
	};

	char base[256];

	memset(l, 0, sizeof *l);
	pthread_mutex_init(&l->mtx, NULL);
	mirai__cond_init(&l->cv);
	/* The liar holds the slot's secret: it lies after its HELLO. */
	mirai__url_cred(url, base, sizeof base, &l->slot, l->secret);
	assert_int_equal(mirai__link_open(&l->link, &cfg, NULL), 0);
	mirai__link_start(l->link);
	assert_int_equal(mirai__link_dial(l->link, base, 1, NULL), 0);
}

static void
liar_close(liar *l)
{
	mirai__link_close(l->link);
	for (int i = 0; i < l->n; i++) {
		mirai__msg_free(l->inbox[i]);
	}
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mtx);
}

/* Send raw message bytes. */
static void
liar_send(liar *l, const void *p, size_t len)
{
	mirai__msg *m;

	int64_t deadline = mirai__now_ms() + 10000;

	assert_int_equal(mirai__msg_alloc(&m, len), 0);
	memcpy(mirai__msg_body(m), p, len);
	/* The link's sender takes one message at a time: wait (bounded) for
	 * the one before, which a busy socket may still hold. */
	pthread_mutex_lock(&l->mtx);
	while (l->sending && mirai__cond_wait_until(&l->cv, &l->mtx,
				 deadline) == 0) {
	}
	assert_false(l->sending);
	l->sending = 1;
	pthread_mutex_unlock(&l->mtx);
	if (mirai__link_send(l->link, m)) {
		pthread_mutex_lock(&l->mtx);
		l->sending = 0;
		pthread_mutex_unlock(&l->mtx);
	}
}

/* Send one frame (already encoded, header included) in a message. */
static void
liar_frame(liar *l, const uint8_t *frame, size_t len)
{
	uint8_t *buf      = malloc(MIRAI__HDR_LEN + len);
	mirai__msghdr h   = {.nframes = 1, .seq = 1};

	assert_non_null(buf);
	pthread_mutex_lock(&l->mtx);
	h.ack = l->ack;
	pthread_mutex_unlock(&l->mtx);
	mirai__hdr_encode(buf, &h);
	memcpy(buf + MIRAI__HDR_LEN, frame, len);
	liar_send(l, buf, MIRAI__HDR_LEN + len);
	free(buf);
}

static void
liar_hello(liar *l)
{
	mirai__hello_view h = {.proto = MIRAI__PROTO,
	    .kind = MIRAI__KIND_SERVER, .pid = 4242, .host = "liar",
	    .host_len = 4, .version = MIRAI_VERSION_STRING,
	    .version_len = (uint16_t) strlen(MIRAI_VERSION_STRING),
	    .binding = "", .hook_name = "", .slot = l->slot,
	    .secret = l->secret, .secret_len = (uint16_t) strlen(l->secret)};
	size_t len  = mirai__hello_size(&h);
	uint8_t *fr = malloc(len);

	assert_non_null(fr);
	mirai__hello_encode(fr, &h);
	liar_frame(l, fr, len);
	free(fr);
}

/*
 * Wait (bounded) for a frame of type want from the dispatcher; a TASK is
 * copied to *task (malloc'd frame with header, *tlen its length).
 */
static int
liar_wait_ms(liar *l, uint8_t want, uint8_t **task, size_t *tlen, int ms)
{
	int64_t deadline = mirai__now_ms() + ms;
	int seen         = 0, found = 0;

	pthread_mutex_lock(&l->mtx);
	while (!found && mirai__now_ms() < deadline) {
		while (seen < l->n && !found) {
			mirai__msg *m = l->inbox[seen++];
			mirai__reader r;
			mirai__msghdr h;
			mirai__frame f;

			if (mirai__msg_open(&r, mirai__msg_body(m),
				mirai__msg_len(m), &h) != 0) {
				continue;
			}
			while (!found && mirai__msg_next(&r, &f) == 1) {
				if (f.type != want) {
					continue;
				}
				found = 1;
				if (task != NULL) {
					*tlen = MIRAI__FRAME_HDR_LEN + f.len;
					*task = malloc(*tlen);
					memcpy(*task, f.body - MIRAI__FRAME_HDR_LEN,
					    *tlen);
				}
			}
		}
		if (!found) {
			mirai__cond_wait_until(&l->cv, &l->mtx, deadline);
		}
	}
	pthread_mutex_unlock(&l->mtx);
	return found;
}

static int
liar_wait(liar *l, uint8_t want, uint8_t **task, size_t *tlen)
{
	return liar_wait_ms(l, want, task, tlen, 30000);
}

/* Wait (bounded) until the liar is told to exit or its pipe is closed. */
static int
liar_cut(liar *l)
{
	int64_t deadline = mirai__now_ms() + 30000;

	while (mirai__now_ms() < deadline) {
		int gone;
		if (liar_wait_ms(l, MIRAI__F_EXIT, NULL, NULL, 100)) {
			return 1;
		}
		pthread_mutex_lock(&l->mtx);
		gone = l->gone;
		pthread_mutex_unlock(&l->mtx);
		if (gone > 0) {
			return 1;
		}
	}
	return 0;
}

/*
 * Say HELLO and wait for a TASK.  The slot may still hold the previous
 * liar's pipe for a moment (its GONE not yet handled, slow under
 * valgrind): the new pipe is then refused and the HELLO with it, so a
 * HELLO goes again after every pipe the liar lost.  Bounded: 30 s.
 */
static int
liar_serve(liar *l, uint8_t **task, size_t *tlen)
{
	int64_t deadline = mirai__now_ms() + 30000;
	int gone;

	do {
		pthread_mutex_lock(&l->mtx);
		gone = l->gone;
		pthread_mutex_unlock(&l->mtx);
		liar_hello(l);
		for (int k = 0; k < 20; k++) {
			int lost;
			if (liar_wait_ms(l, MIRAI__F_TASK, task, tlen, 100)) {
				return 1;
			}
			pthread_mutex_lock(&l->mtx);
			lost = l->gone != gone;
			pthread_mutex_unlock(&l->mtx);
			if (lost) {
				break;
			}
		}
	} while (mirai__now_ms() < deadline);
	return 0;
}

/* An empty message acknowledging the last one received, as a server
 * sends when asked: the dispatcher sends a slot on a shared listener no
 * more than 2 messages ahead of its acknowledgements. */
static void
liar_ack(liar *l)
{
	uint8_t buf[MIRAI__HDR_LEN];
	mirai__msghdr h = {.nframes = 0, .seq = 1};

	pthread_mutex_lock(&l->mtx);
	h.ack = l->ack;
	pthread_mutex_unlock(&l->mtx);
	mirai__hdr_encode(buf, &h);
	liar_send(l, buf, sizeof buf);
}

/*
 * Wait (bounded) until the liar was given want TASK frames in all,
 * acknowledging what it gets; copies them (malloc'd, header included) to
 * tasks[] and their lengths to lens[].  Returns how many it has.
 */
static int
liar_tasks(liar *l, int want, uint8_t **tasks, size_t *lens)
{
	int64_t deadline = mirai__now_ms() + 30000;
	int n            = 0;

	for (;;) {
		pthread_mutex_lock(&l->mtx);
		n = 0;
		for (int i = 0; i < l->n && n < want; i++) {
			mirai__reader r;
			mirai__msghdr h;
			mirai__frame f;

			if (mirai__msg_open(&r, mirai__msg_body(l->inbox[i]),
				mirai__msg_len(l->inbox[i]), &h) != 0) {
				continue;
			}
			while (n < want && mirai__msg_next(&r, &f) == 1) {
				if (f.type != MIRAI__F_TASK) {
					continue;
				}
				free(tasks[n]);
				lens[n]  = MIRAI__FRAME_HDR_LEN + f.len;
				tasks[n] = malloc(lens[n]);
				memcpy(tasks[n], f.body - MIRAI__FRAME_HDR_LEN,
				    lens[n]);
				n++;
			}
		}
		if (n < want && mirai__now_ms() < deadline) {
			mirai__cond_wait_until(&l->cv, &l->mtx,
			    mirai__now_ms() + 100);
		}
		pthread_mutex_unlock(&l->mtx);
		if (n == want || mirai__now_ms() >= deadline) {
			return n;
		}
		liar_ack(l);
	}
}

/* ---- the attacks ---------------------------------------------------- */

/* Each gets the TASK frame the liar was given and sends its lie. */
typedef void (*attack_fn)(liar *l, const uint8_t *task, size_t tlen);

static void
task_view(const uint8_t *task, size_t tlen, mirai__task_view *v)
{
	mirai__frame f = {.type = task[0], .body = task + MIRAI__FRAME_HDR_LEN,
	    .len = (uint32_t) (tlen - MIRAI__FRAME_HDR_LEN)};

	assert_int_equal(mirai__task_decode(&f, v), 0);
}

static void
forge_result(liar *l, const uint8_t *task, size_t tlen, uint64_t delta)
{
	mirai__task_view v;
	mirai__result_view r = {.data = (const uint8_t *) "forged", .len = 6};
	uint8_t fr[128];

	task_view(task, tlen, &v);
	r.id = v.id + delta;
	mirai__result_encode(fr, &r);
	liar_frame(l, fr, mirai__result_size(r.len));
}

static void
attack_result_other(liar *l, const uint8_t *task, size_t tlen)
{
	forge_result(l, task, tlen, 1);
}

/* A bounce of the same length with other bytes: the old dispatcher
 * requeued them, and the next server ran them. */
static void
attack_bounce_swap(liar *l, const uint8_t *task, size_t tlen)
{
	uint8_t *fr = malloc(MIRAI__FRAME_HDR_LEN + tlen);

	mirai__frame_hdr_encode(fr, MIRAI__F_BOUNCE, (uint32_t) tlen);
	memcpy(fr + MIRAI__FRAME_HDR_LEN, task, tlen);
	/* Flip the last payload byte. */
	fr[MIRAI__FRAME_HDR_LEN + tlen - 1] ^= 0x5a;
	liar_frame(l, fr, MIRAI__FRAME_HDR_LEN + tlen);
	free(fr);
}

/* A bounce of the right task cut short, its inner length consistent: the
 * old dispatcher copied the task's full length out of it. */
static void
attack_bounce_short(liar *l, const uint8_t *task, size_t tlen)
{
	size_t cut  = tlen / 2;
	uint8_t *fr = malloc(MIRAI__FRAME_HDR_LEN + cut);

	mirai__frame_hdr_encode(fr, MIRAI__F_BOUNCE, (uint32_t) cut);
	memcpy(fr + MIRAI__FRAME_HDR_LEN, task, cut);
	mirai__frame_hdr_encode(fr + MIRAI__FRAME_HDR_LEN, MIRAI__F_TASK,
	    (uint32_t) (cut - MIRAI__FRAME_HDR_LEN));
	liar_frame(l, fr, MIRAI__FRAME_HDR_LEN + cut);
	free(fr);
}

/* A bounce whose inner frame claims more than the bounce holds. */
static void
attack_bounce_inner_lies(liar *l, const uint8_t *task, size_t tlen)
{
	uint8_t fr[64];

	mirai__frame_hdr_encode(fr, MIRAI__F_BOUNCE, 40);
	memcpy(fr + MIRAI__FRAME_HDR_LEN, task, 40);
	mirai__frame_hdr_encode(fr + MIRAI__FRAME_HDR_LEN, MIRAI__F_TASK,
	    (uint32_t) tlen);
	liar_frame(l, fr, MIRAI__FRAME_HDR_LEN + 40);
}

static void
attack_wrong_type(liar *l, const uint8_t *task, size_t tlen)
{
	uint8_t fr[MIRAI__REQ_LEN];
	mirai__req_view q = {.req = 1, .op = 1};

	(void) task;
	(void) tlen;
	mirai__req_encode(fr, &q);
	liar_frame(l, fr, sizeof fr);
}

/* The header announces three frames; one follows. */
static void
attack_missing_frames(liar *l, const uint8_t *task, size_t tlen)
{
	uint8_t buf[MIRAI__HDR_LEN + MIRAI__U32_FRAME_LEN];
	mirai__msghdr h = {.nframes = 3, .seq = 2, .ack = l->ack};

	(void) task;
	(void) tlen;
	mirai__hdr_encode(buf, &h);
	mirai__u32_frame_encode(buf + MIRAI__HDR_LEN, MIRAI__F_BYE, 0);
	liar_send(l, buf, sizeof buf);
}

/* A frame whose length runs past the message. */
static void
attack_long_frame(liar *l, const uint8_t *task, size_t tlen)
{
	uint8_t buf[MIRAI__HDR_LEN + MIRAI__FRAME_HDR_LEN + 8];
	mirai__msghdr h = {.nframes = 1, .seq = 2, .ack = l->ack};

	(void) task;
	(void) tlen;
	memset(buf, 0, sizeof buf);
	mirai__hdr_encode(buf, &h);
	mirai__frame_hdr_encode(buf + MIRAI__HDR_LEN, MIRAI__F_RESULT,
	    0x7fffffff);
	liar_send(l, buf, sizeof buf);
}

/* A second RESULT for the task after a correct one: the dispatcher's
 * record says the liar holds nothing any more. */
static void
attack_result_twice(liar *l, const uint8_t *task, size_t tlen)
{
	mirai__task_view v;
	size_t rlen;
	uint8_t *fr;
	mirai__result_view r = {0};

	task_view(task, tlen, &v);
	r.id   = v.id;
	r.data = v.data;
	r.len  = v.len;
	rlen   = mirai__result_size(r.len);
	fr     = malloc(rlen);
	mirai__result_encode(fr, &r);
	/* The honest answer (echo) first, so the task completes... */
	liar_frame(l, fr, rlen);
	free(fr);
	/* ...then a lie about the same id. */
	forge_result(l, task, tlen, 0);
}

/* ---- the test -------------------------------------------------------- */

static char *
payload(int i, size_t *len)
{
	size_t n = i < NSMALL ? 48 : BIGLEN;
	char *p  = malloc(n);

	for (size_t k = 0; k < n; k++) {
		p[k] = (char) ('a' + (k * 7 + (size_t) i * 13) % 26);
	}
	snprintf(p, 16, "task-%02d:", i);
	*len = n;
	return p;
}

static pid_t
spawn_server(const char *url)
{
	const char *server = getenv("MIRAI_SERVER");
	const char *argv[] = {server, "--url", url, NULL};
	pid_t pid;

	if (server == NULL) {
		return -1;
	}
	assert_int_equal(mirai__spawn(argv, NULL, -1, -1, -1, &pid), 0);
	return pid;
}

/* The honest server, told to exit by the reset, gets 5 s to do so. */
static void
reap_server(pid_t pid)
{
	int status;
	int64_t deadline = mirai__now_ms() + 5000;

	if (pid <= 0) {
		return;
	}
	while (waitpid(pid, &status, WNOHANG) == 0 &&
	    mirai__now_ms() < deadline) {
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
}

/*
 * direct: no dispatcher, the liar and then an honest server dial the
 * client; else a thread dispatcher with the liar at slot 1.
 */
static void
forged_frames(int direct)
{
	static const attack_fn with_dispatcher[] = {attack_result_other,
	    attack_bounce_swap, attack_bounce_short, attack_bounce_inner_lies,
	    NULL, attack_missing_frames, attack_long_frame,
	    attack_bounce_swap, attack_wrong_type, attack_result_twice};
	/* Without a dispatcher the liar holds every task at once: a result
	 * for another of them is its own to give, and a second result is
	 * one the client no longer waits for (as after a cancel). */
	static const attack_fn without[] = {attack_bounce_swap,
	    attack_bounce_short, attack_bounce_inner_lies, NULL,
	    attack_missing_frames, attack_long_frame, attack_wrong_type,
	    attack_bounce_swap};
	const attack_fn *attacks = direct ? without : with_dispatcher;
	const size_t nattacks    = direct ? sizeof without / sizeof without[0]
					  : sizeof with_dispatcher /
		    sizeof with_dispatcher[0];
	const char *profile      = direct ? "hostile-direct" : "hostile";
	mirai_call_opts co       = {.profile = profile};
	mirai_daemons_opts d     = MIRAI_DAEMONS_OPTS_INIT;
	mirai_status *st;
	mirai_errmsg err;
	mirai *m[NSMALL + 2];
	char *in[NSMALL + 2];
	size_t inlen[NSMALL + 2], ntasks = NSMALL + 2;
	uint8_t *first[NSMALL + 2] = {0};
	size_t firstlen[NSMALL + 2] = {0};
	char url0[256], url1[256];
	int completed_by_liar = 0;
	pid_t pid;

	if (getenv("MIRAI_SERVER") == NULL) {
		skip();
	}
	d.profile = profile;
	d.url     = "tcp://127.0.0.1:0";
	/* The liar never says PING: without this, a slow run (valgrind)
	 * takes it for silent and lost before it can lie. */
	d.heartbeat_ms = MIRAI_FOREVER;
	if (direct) {
		d.dispatcher = MIRAI_DISPATCHER_OFF;
	} else {
		d.n = 2;
	}
	assert_int_equal(mirai_daemons(&d, &err), 0);
	assert_int_equal(mirai_status_get(profile, &st), 0);
	if (direct) {
		snprintf(url0, sizeof url0, "%s", st->url);
		snprintf(url1, sizeof url1, "%s", st->url);
	} else {
		assert_int_equal(st->nrows, 2);
		snprintf(url0, sizeof url0, "%s", st->rows[0].url);
		snprintf(url1, sizeof url1, "%s", st->rows[1].url);
	}
	mirai_status_free(st);

	/* Big tasks last: the liar sees small and big ones. */
	for (size_t i = 0; i < ntasks; i++) {
		in[i] = payload((int) i, &inlen[i]);
		assert_int_equal(
		    mirai_call(&co, "mirai.echo", in[i], inlen[i], &m[i]), 0);
	}

	for (size_t a = 0; a < nattacks; a++) {
		liar l;
		uint8_t *task = NULL;
		size_t tlen   = 0;
		mirai__task_view v;

		if (!direct) {
			/* A slot that cut off a liar has a fresh secret. */
			assert_int_equal(mirai_status_get(profile, &st), 0);
			snprintf(url1, sizeof url1, "%s", st->rows[1].url);
			mirai_status_free(st);
		}
		liar_open(&l, url1);
		if (attacks[a] == NULL) {
			/* A frame before HELLO: cut off at once (a shared
			 * listener closes the pipe before it has a slot). */
			attack_wrong_type(&l, NULL, 0);
			assert_true(liar_cut(&l));
			liar_close(&l);
			continue;
		}
		assert_true(liar_serve(&l, &task, &tlen));
		task_view(task, tlen, &v);
		/* Whatever an earlier liar did to this task, the client or
		 * the dispatcher sends its own bytes. */
		for (size_t i = 0; i < ntasks; i++) {
			if (mirai_id(m[i]) != v.id) {
				continue;
			}
			assert_int_equal(v.len, inlen[i]);
			assert_memory_equal(v.data, in[i], inlen[i]);
			if (first[i] == NULL) {
				first[i] = malloc(tlen);
				memcpy(first[i], task, tlen);
				firstlen[i] = tlen;
			} else {
				assert_int_equal(firstlen[i], tlen);
				assert_memory_equal(first[i], task, tlen);
			}
		}
		attacks[a](&l, task, tlen);
		if (attacks[a] == attack_result_twice) {
			completed_by_liar++;
		}
		/* Refused: the liar is told to exit. */
		assert_true(liar_wait(&l, MIRAI__F_EXIT, NULL, NULL));
		free(task);
		liar_close(&l);
	}

	/* An honest server takes over: every task completes with its own
	 * input. */
	pid = spawn_server(url0);
	for (size_t i = 0; i < ntasks; i++) {
		const void *out;
		size_t len;

		assert_int_equal(mirai_wait_for(m[i], 20000), 0);
		assert_int_equal(mirai_error(m[i]), 0);
		out = mirai_data(m[i], &len);
		assert_int_equal(len, inlen[i]);
		assert_memory_equal(out, in[i], inlen[i]);
		mirai_free(m[i]);
		free(in[i]);
		free(first[i]);
	}
	assert_int_equal(completed_by_liar, direct ? 0 : 1);
	/* The client (and dispatcher) still answers. */
	assert_int_equal(mirai_status_get(profile, &st), 0);
	assert_int_equal(st->error, 0);
	if (!direct) {
		assert_int_equal(st->rows[0].online, 1);
		assert_int_equal(st->rows[1].online, 0);
	}
	mirai_status_free(st);
	mirai_reset(profile);
	reap_server(pid);
}

/* The honest answer to a task: mirai.echo gives its input back. */
static void
echo_result(liar *l, const uint8_t *task, size_t tlen)
{
	mirai__task_view v;
	mirai__result_view r = {0};
	uint8_t *fr;

	task_view(task, tlen, &v);
	r.id   = v.id;
	r.data = v.data;
	r.len  = v.len;
	fr     = malloc(mirai__result_size(r.len));
	mirai__result_encode(fr, &r);
	liar_frame(l, fr, mirai__result_size(r.len));
	free(fr);
}

/*
 * A dispatcher with prefetch 2: the liar at slot 1 is given 3 of the 5
 * tasks (slot 0 has no server yet).  It answers the second one honestly,
 * out of turn (as a server does for a task cancelled before it started),
 * which is accepted, and is given the 4th; then it answers the 5th, which
 * it was never given, and is cut off.  The next liar gets the 3 tasks the
 * first one still held, in order, byte for byte, and bounces one of them
 * with other bytes: cut off too.  An honest server then completes every
 * task with its own input.
 */
static void
test_forged_frames_prefetch(void **state)
{
	const char *profile  = "hostile-prefetch";
	mirai_call_opts co   = {.profile = profile};
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	enum { NT = NSMALL + 1 };
	uint8_t *held[4]     = {0};
	size_t heldlen[4]    = {0};
	mirai__result_view r = {.data = (const uint8_t *) "forged", .len = 6};
	uint8_t fr[128];
	mirai *m[NT];
	char *in[NT];
	size_t inlen[NT];
	mirai__task_view v, w;
	mirai_status *st;
	char url0[256], url1[256];
	liar l;
	pid_t pid;

	(void) state;
	if (getenv("MIRAI_SERVER") == NULL) {
		skip();
	}
	d.profile      = profile;
	d.url          = "tcp://127.0.0.1:0";
	d.n            = 2;
	d.prefetch     = 2;
	d.heartbeat_ms = MIRAI_FOREVER;
	assert_int_equal(mirai_daemons(&d, NULL), 0);
	assert_int_equal(mirai_status_get(profile, &st), 0);
	snprintf(url0, sizeof url0, "%s", st->rows[0].url);
	snprintf(url1, sizeof url1, "%s", st->rows[1].url);
	mirai_status_free(st);
	for (size_t i = 0; i < NT; i++) {
		in[i] = payload((int) i, &inlen[i]);
		assert_int_equal(
		    mirai_call(&co, "mirai.echo", in[i], inlen[i], &m[i]), 0);
	}

	/* The first liar holds 3 tasks: the first 3, in order. */
	liar_open(&l, url1);
	assert_true(liar_serve(&l, &held[0], &heldlen[0]));
	assert_int_equal(liar_tasks(&l, 3, held, heldlen), 3);
	for (int k = 0; k < 3; k++) {
		task_view(held[k], heldlen[k], &v);
		assert_int_equal(v.id, mirai_id(m[k]));
	}
	/* Out of turn, but its own to give. */
	echo_result(&l, held[1], heldlen[1]);
	assert_int_equal(mirai_wait_for(m[1], 20000), 0);
	/* The dispatcher gave it the 4th task in its place: an answer for
	 * the 5th, which it does not hold, is forged. */
	assert_int_equal(liar_tasks(&l, 4, held, heldlen), 4);
	task_view(held[3], heldlen[3], &v);
	assert_int_equal(v.id, mirai_id(m[3]));
	r.id = mirai_id(m[4]);
	mirai__result_encode(fr, &r);
	liar_frame(&l, fr, mirai__result_size(r.len));
	assert_true(liar_wait(&l, MIRAI__F_EXIT, NULL, NULL));
	liar_close(&l);

	/* The next liar is given what the first held, in order: its own
	 * copies of tasks 0, 2 and 3. */
	assert_int_equal(mirai_status_get(profile, &st), 0);
	snprintf(url1, sizeof url1, "%s", st->rows[1].url);
	mirai_status_free(st);
	for (int k = 0; k < 4; k++) {
		free(held[k]);
		held[k] = NULL;
	}
	liar_open(&l, url1);
	assert_true(liar_serve(&l, &held[0], &heldlen[0]));
	assert_int_equal(liar_tasks(&l, 3, held, heldlen), 3);
	task_view(held[0], heldlen[0], &v);
	task_view(held[1], heldlen[1], &w);
	assert_int_equal(v.id, mirai_id(m[0]));
	assert_int_equal(w.id, mirai_id(m[2]));
	assert_memory_equal(v.data, in[0], inlen[0]);
	assert_memory_equal(w.data, in[2], inlen[2]);
	task_view(held[2], heldlen[2], &v);
	assert_int_equal(v.id, mirai_id(m[3]));
	/* A bounce of a task it holds, not the oldest, with other bytes. */
	attack_bounce_swap(&l, held[1], heldlen[1]);
	assert_true(liar_wait(&l, MIRAI__F_EXIT, NULL, NULL));
	liar_close(&l);

	pid = spawn_server(url0);
	for (size_t i = 0; i < NT; i++) {
		const void *out;
		size_t len;

		assert_int_equal(mirai_wait_for(m[i], 20000), 0);
		out = mirai_data(m[i], &len);
		assert_int_equal(len, inlen[i]);
		assert_memory_equal(out, in[i], inlen[i]);
		mirai_free(m[i]);
		free(in[i]);
	}
	for (int k = 0; k < 4; k++) {
		free(held[k]);
	}
	assert_int_equal(mirai_status_get(profile, &st), 0);
	assert_int_equal(st->error, 0);
	assert_int_equal(st->running, 0);
	assert_int_equal(st->rows[1].online, 0);
	mirai_status_free(st);
	mirai_reset(profile);
	reap_server(pid);
}

static void
test_forged_frames_dispatcher(void **state)
{
	(void) state;
	forged_frames(0);
}

static void
test_forged_frames_direct(void **state)
{
	(void) state;
	forged_frames(1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forged_frames_dispatcher),
		cmocka_unit_test(test_forged_frames_direct),
		cmocka_unit_test(test_forged_frames_prefetch),
	};

	if (getenv("MIRAI_TEST_LOG") != NULL) {
		mirai_log_set(mirai_log_stderr, "test_hostile", MIRAI_LOG_DEBUG);
	}
	signal(SIGPIPE, SIG_IGN);
	int rv = cmocka_run_group_tests(tests, NULL, NULL);
	mirai_shutdown();
	return rv;
}
