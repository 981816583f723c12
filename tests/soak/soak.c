/*
 * soak: tasks through 4 servers while a chaos loop works on them, for
 * SECONDS (argv[1], default 20).  A thread dispatcher holds 4 ws slots
 * with a 1 s heartbeat and 5 retries; the servers are started here so the
 * chaos can kill -9 one and start it again, SIGSTOP one past the heartbeat
 * (it is taken as lost, and told to exit when woken), or stop one
 * gracefully (SIGTERM).  The submitter keeps WINDOW echo tasks in flight,
 * each with its own payload (sequence number and checksum), and checks
 * every result against its input.
 *
 * It prints one line: submitted, ok, retried, failed by reason, lost (never
 * resolved), duplicated (a result that is another task's), and the
 * client's RSS (the dispatcher is its thread) after warm-up and at the
 * end.  It fails on a lost or duplicated task, a wrong result, or RSS
 * growth beyond RSS_BOUND_KB.  Every loop is bounded; every server it
 * started is killed at the end.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../integration/harness.h"

#define NSERVERS 4
#define WINDOW 64
#define HB_MS 1000
#define PAYLOAD 96
#define RSS_BOUND_KB (32 * 1024)

static char urls[NSERVERS][512];
static pid_t pids[NSERVERS];
static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop_chaos;
static unsigned long kills, stops, terms;

static long
rss_kb(void)
{
	long pages = 0, rss = 0;
	FILE *f    = fopen("/proc/self/statm", "r");

	if (f != NULL) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2) {
			rss = 0;
		}
		fclose(f);
	}
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static pid_t
start(int i)
{
	static const char *const args[] = {"--heartbeat", "1s", "--quiet",
	    NULL};

	return h_spawn_server(urls[i], args);
}

/* Reap server i if it has gone; start a new one then.  Locked. */
static void
respawn_if_gone(int i)
{
	if (pids[i] > 0 && waitpid(pids[i], NULL, WNOHANG) == pids[i]) {
		pids[i] = 0;
	}
	if (pids[i] == 0) {
		pids[i] = start(i);
	}
}

static void *
chaos(void *arg)
{
	unsigned seed = (unsigned) (uintptr_t) arg;

	while (!stop_chaos) {
		/* 1 to 3 s between actions, in bounded sleeps. */
		int wait = 1000 + (int) (rand_r(&seed) % 2000);
		for (int t = 0; t < wait / 50 && !stop_chaos; t++) {
			usleep(50000);
			pthread_mutex_lock(&mtx);
			for (int i = 0; i < NSERVERS; i++) {
				respawn_if_gone(i);
			}
			pthread_mutex_unlock(&mtx);
		}
		if (stop_chaos) {
			break;
		}
		int i = (int) (rand_r(&seed) % NSERVERS);
		pthread_mutex_lock(&mtx);
		switch (rand_r(&seed) % 3) {
		case 0:
			kill(pids[i], SIGKILL);
			kills++;
			break;
		case 1:
			/* Past the heartbeat: taken as lost; woken, told to
			 * exit. */
			kill(pids[i], SIGSTOP);
			pthread_mutex_unlock(&mtx);
			usleep((HB_MS + HB_MS) * 1000);
			pthread_mutex_lock(&mtx);
			kill(pids[i], SIGCONT);
			stops++;
			break;
		default:
			kill(pids[i], SIGTERM);
			terms++;
			break;
		}
		pthread_mutex_unlock(&mtx);
	}
	return NULL;
}

/* Task k's payload: its number, then bytes made from it, then a sum. */
static void
payload(unsigned long k, char *p)
{
	unsigned sum = 0;

	snprintf(p, 24, "%020lu", k);
	for (int i = 20; i < PAYLOAD - 4; i++) {
		p[i] = (char) ('a' + (k * 31 + (unsigned long) i * 7) % 26);
	}
	for (int i = 0; i < PAYLOAD - 4; i++) {
		sum = sum * 33 + (unsigned char) p[i];
	}
	memcpy(p + PAYLOAD - 4, &sum, 4);
}

int
main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 20;
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};
	mirai *in[WINDOW]    = {NULL};
	unsigned long seq[WINDOW];
	unsigned long next = 0, ok = 0, wrong = 0, lost = 0;
	unsigned long failed[128] = {0};
	char want[PAYLOAD];
	long rss0 = 0, rss1;
	int64_t t_end, warm;
	mirai_status *st;
	pthread_t th;
	uint64_t retried = 0;
	int rv = 0;

	if (seconds <= 0 || seconds > 86400) {
		fprintf(stderr, "soak: SECONDS must be 1 to 86400\n");
		return 2;
	}
	h_init();
	d.url          = "ws://127.0.0.1:0";
	d.n            = NSERVERS;
	d.heartbeat_ms = HB_MS;
	d.retries      = 5;
	if (mirai_daemons(&d, &err) != 0) {
		fprintf(stderr, "soak: daemons: %s\n", err.text);
		return 1;
	}
	if (mirai_status_get(NULL, &st) != 0 || st->nrows != NSERVERS) {
		fprintf(stderr, "soak: no slots\n");
		return 1;
	}
	for (int i = 0; i < NSERVERS; i++) {
		snprintf(urls[i], sizeof urls[i], "%s", st->rows[i].url);
		pids[i] = start(i);
	}
	mirai_status_free(st);
	pthread_create(&th, NULL, chaos, (void *) (uintptr_t) getpid());

	warm  = h_now_ms() + 2000;
	t_end = h_now_ms() + (int64_t) seconds * 1000;
	/* Keep the window full until the time is up, then drain (bounded:
	 * every task resolves, by result or error, within the retries). */
	for (;;) {
		int64_t now = h_now_ms();
		size_t hit, live = 0;

		if (rss0 == 0 && now >= warm) {
			rss0 = rss_kb();
		}
		for (int w = 0; w < WINDOW; w++) {
			if (in[w] == NULL && now < t_end) {
				char p[PAYLOAD];
				payload(next, p);
				if (mirai_call(NULL, "mirai.echo", p, PAYLOAD,
					&in[w]) != 0) {
					in[w] = NULL;
					continue;
				}
				seq[w] = next++;
			}
			live += in[w] != NULL;
		}
		if (live == 0) {
			break;
		}
		if (now > t_end + 120000) {
			/* Two minutes past the end: whatever is left is lost. */
			for (int w = 0; w < WINDOW; w++) {
				if (in[w] != NULL) {
					lost++;
					mirai_free(in[w]);
					in[w] = NULL;
				}
			}
			break;
		}
		mirai *ms[WINDOW];
		int map[WINDOW], n = 0;
		for (int w = 0; w < WINDOW; w++) {
			if (in[w] != NULL) {
				map[n]  = w;
				ms[n++] = in[w];
			}
		}
		if (mirai_wait_any(ms, (size_t) n, 500, &hit) != 0) {
			continue;
		}
		int w = map[hit];
		int e = mirai_error(in[w]);
		if (e == 0) {
			size_t len;
			const void *out = mirai_data(in[w], &len);
			payload(seq[w], want);
			if (len == PAYLOAD && memcmp(out, want, PAYLOAD) == 0) {
				ok++;
			} else {
				wrong++;
			}
		} else {
			failed[e < 128 ? e : 127]++;
		}
		mirai_free(in[w]);
		in[w] = NULL;
	}
	stop_chaos = 1;
	pthread_join(th, NULL);
	rss1 = rss_kb();
	if (mirai_status_get(NULL, &st) == 0) {
		retried = st->retried;
		mirai_status_free(st);
	}
	printf("soak: %d s, chaos %lu kill -9, %lu stopped past the "
	       "heartbeat, %lu SIGTERM; submitted %lu, ok %lu, retried %llu, "
	       "failed",
	    seconds, kills, stops, terms, next, ok, (unsigned long long) retried);
	int any = 0;
	for (int e = 1; e < 128; e++) {
		if (failed[e] > 0) {
			printf(" %s:%lu", mirai_errname(e), failed[e]);
			any = 1;
		}
	}
	printf("%s, lost %lu, duplicated %lu; client RSS %ld KB -> %ld KB\n",
	    any ? "" : " 0", lost, wrong, rss0, rss1);
	if (lost > 0 || wrong > 0) {
		fprintf(stderr, "soak: FAIL: lost or duplicated tasks\n");
		rv = 1;
	}
#ifdef __SANITIZE_ADDRESS__
	/* ASan keeps freed memory in quarantine (256 MB by default): RSS
	 * says nothing about leaks there, LeakSanitizer does. */
	rss0 = 0;
#endif
	if (rss0 > 0 && rss1 - rss0 > RSS_BOUND_KB) {
		fprintf(stderr, "soak: FAIL: RSS grew %ld KB (bound %d KB)\n",
		    rss1 - rss0, RSS_BOUND_KB);
		rv = 1;
	}
	mirai_reset(NULL);
	/* Our servers only (their pids are still ours to reap: no reuse). */
	for (int i = 0; i < NSERVERS; i++) {
		if (pids[i] > 0) {
			kill(pids[i], SIGCONT);
			if (!h_wait_exit(pids[i], 3000, NULL)) {
				kill(pids[i], SIGKILL);
				waitpid(pids[i], NULL, 0);
			}
		}
	}
	mirai_shutdown();
	return rv;
}
