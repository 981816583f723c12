/*
 * soak: tasks through 4 servers while a chaos loop works on them, for
 * SECONDS (argv[1], default 20).  A thread dispatcher holds 4 ws slots
 * with a 1 s heartbeat and 5 retries; with --process (argv[2]) it is a
 * mirai-dispatcher process instead; with --direct there is no
 * dispatcher, and the 4 servers dial the client's own tcp listener (its
 * scheduler, in-flight tracking and retries are then the ones under
 * test).  The servers are started here so the
 * chaos can kill -9 one and start it again, SIGSTOP one past the heartbeat
 * (it is taken as lost, and told to exit when woken), or stop one
 * gracefully (SIGTERM).  The submitter keeps WINDOW echo tasks in flight,
 * each with its own payload (sequence number and checksum), and checks
 * every result against its input.
 *
 * The network is cut too.  The soak runs in a network namespace of its
 * own (unshare(2); where that is not permitted, inside a user namespace
 * of its own; else the cuts are skipped, and the line says why), where
 * its servers, children, are too: loopback only, which links the servers
 * to the dispatcher (the client reaches its thread dispatcher in memory).
 * Every CUT_EVERY_MS a cut takes loopback down, in turn for CUT_SHORT_MS
 * (under the heartbeat: TCP carries on after it) and CUT_LONG_MS (past it:
 * every server is taken as lost, its task retried, and new servers dial
 * in once it is back).  Tasks in flight across a cut are counted apart.
 *
 * It prints one line: submitted, ok, retried, failed by reason, lost (never
 * resolved), duplicated (a result that is another task's), the cuts and
 * the tasks across them, and the client's RSS (the dispatcher is its
 * thread) after warm-up and at the end.  It fails on a lost or duplicated
 * task, a wrong result, cuts that no task crossed, or RSS growth beyond
 * RSS_BOUND_KB.  Every loop is bounded; every server it started is killed
 * at the end, and the namespace goes with the last of its processes.  A
 * watchdog fails a soak that hangs (a call that never returns), naming
 * the step it hung in, and kills the servers.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../integration/harness.h"

#define NSERVERS 4
#define WINDOW 64
#define HB_MS 1000
#define PAYLOAD 96
#define RSS_BOUND_KB (32 * 1024)
#define CUT_EVERY_MS 4000
#define CUT_SHORT_MS 300
#define CUT_LONG_MS 2500

static char urls[NSERVERS][512];
static pid_t pids[NSERVERS];
static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static atomic_int stop_chaos;
static unsigned long kills, stops, terms;
/* Cuts begun (odd while one lasts: begun, then ended), short and long. */
static atomic_uint cut_seq;
static atomic_int stop_cuts;
static unsigned long cuts_short, cuts_long;
static char cut_error[160];

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

	while (!atomic_load(&stop_chaos)) {
		/* 1 to 3 s between actions, in bounded sleeps. */
		int wait = 1000 + (int) (rand_r(&seed) % 2000);
		for (int t = 0; t < wait / 50 && !atomic_load(&stop_chaos);
		     t++) {
			usleep(50000);
			pthread_mutex_lock(&mtx);
			for (int i = 0; i < NSERVERS; i++) {
				respawn_if_gone(i);
			}
			pthread_mutex_unlock(&mtx);
		}
		if (atomic_load(&stop_chaos)) {
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

/* Loopback up or down (IFF_UP), with ioctl(2) rather than ip(8). */
static int
loopback(int up, char *why, size_t len)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rv = -1;

	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
	if (fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		if (up) {
			ifr.ifr_flags |= IFF_UP;
		} else {
			ifr.ifr_flags &= ~IFF_UP;
		}
		rv = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	if (rv != 0) {
		snprintf(why, len, "cannot take loopback %s: %s",
		    up ? "up" : "down", strerror(errno));
	}
	if (fd >= 0) {
		close(fd);
	}
	return rv;
}

static int
write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ok;

	if (fd < 0) {
		return -1;
	}
	ok = write(fd, text, strlen(text)) == (ssize_t) strlen(text);
	close(fd);
	return ok ? 0 : -1;
}

/*
 * A network namespace of our own, loopback up, before any thread starts
 * (the servers inherit it).  Without the right to make one (not root, or
 * a container), a user namespace of our own gives it, our ids mapped to
 * themselves so that files and servers are as before.  Returns 0; -1 with
 * the reason in why when there is none (we go on without cuts); -2 when
 * we are in one but cannot use it (ids unmapped, loopback down).
 */
static int
netns_enter(char *why, size_t len)
{
	char map[64];
	unsigned uid = (unsigned) geteuid(), gid = (unsigned) getegid();
	int e;

	if (unshare(CLONE_NEWNET) != 0) {
		e = errno;
		if (e != EPERM || unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
			snprintf(why, len, "no network namespace: unshare: %s%s",
			    strerror(e),
			    e == EPERM ? " (needs root, or user namespaces)"
				       : "");
			return -1;
		}
		snprintf(map, sizeof map, "%u %u 1", uid, uid);
		if (write_file("/proc/self/uid_map", map) != 0 ||
		    write_file("/proc/self/setgroups", "deny") != 0 ||
		    (snprintf(map, sizeof map, "%u %u 1", gid, gid),
			write_file("/proc/self/gid_map", map) != 0)) {
			snprintf(why, len, "cannot map ids in a user namespace: "
					   "%s",
			    strerror(errno));
			return -2;
		}
	}
	return loopback(1, why, len) == 0 ? 0 : -2;
}

/* Where the main thread is, for the watchdog; and when it must be done. */
static _Atomic(const char *) stage = "start";
static atomic_llong deadline_ms;

/* A soak that hangs names where, and fails, rather than running into the
 * test runner's time limit with nothing said. */
static void *
watchdog(void *arg)
{
	(void) arg;
	for (;;) {
		usleep(200000);
		if (h_now_ms() > atomic_load(&deadline_ms)) {
			fprintf(stderr, "soak: FAIL: hung in %s\n",
			    atomic_load(&stage));
			fflush(stdout);
			for (int i = 0; i < NSERVERS; i++) {
				if (pids[i] > 0) {
					kill(pids[i], SIGKILL);
				}
			}
			_exit(1);
		}
	}
	return NULL;
}

/* Sleep ms in bounded steps, returning early once *stop is set. */
static void
nap(int ms, atomic_int *stop)
{
	for (int t = 0; t < ms && !atomic_load(stop); t += 50) {
		usleep(50000);
	}
}

/* Every CUT_EVERY_MS, loopback goes down, short and long in turn. */
static void *
cutter(void *arg)
{
	int n = 0;

	(void) arg;
	for (;;) {
		int ms = n++ % 2 == 0 ? CUT_SHORT_MS : CUT_LONG_MS;
		nap(CUT_EVERY_MS, &stop_cuts);
		if (atomic_load(&stop_cuts) ||
		    loopback(0, cut_error, sizeof cut_error) != 0) {
			break;
		}
		atomic_fetch_add(&cut_seq, 1);
		usleep((useconds_t) ms * 1000);
		if (loopback(1, cut_error, sizeof cut_error) != 0) {
			/* The servers cannot come back: the drain's bound
			 * ends the soak, which reports this. */
			break;
		}
		atomic_fetch_add(&cut_seq, 1);
		if (ms == CUT_SHORT_MS) {
			cuts_short++;
		} else {
			cuts_long++;
		}
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
	int direct  = argc > 2 && strcmp(argv[2], "--direct") == 0;
	int process = argc > 2 && strcmp(argv[2], "--process") == 0;
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};
	mirai *in[WINDOW]    = {NULL};
	unsigned long seq[WINDOW];
	unsigned cut_at[WINDOW];
	unsigned long next = 0, ok = 0, wrong = 0, lost = 0;
	unsigned long across = 0, across_ok = 0, across_failed = 0;
	char netns_why[200] = "";
	int cutting = 0;
	pthread_t cut_th;
	unsigned long failed[128] = {0};
	char want[PAYLOAD];
	long rss0 = 0, rss1;
	int64_t t_end, warm;
	mirai_status *st;
	pthread_t th, wd;
	uint64_t retried = 0;
	int rv = 0;

	if (seconds <= 0 || seconds > 86400 || (argc > 2 && !direct &&
	    !process) || argc > 3) {
		fprintf(stderr, "usage: soak [SECONDS (1-86400)] "
				"[--direct | --process]\n");
		return 2;
	}
	/* First: the namespace is the process's, threads or not. */
	if ((rv = netns_enter(netns_why, sizeof netns_why)) == -2) {
		fprintf(stderr, "soak: %s\n", netns_why);
		return 1;
	}
	cutting = rv == 0;
	rv      = 0;
	h_init();
	d.url          = direct ? "tcp://127.0.0.1:0" : "ws://127.0.0.1:0";
	d.n            = direct ? 0 : NSERVERS; /* direct: they dial in */
	d.heartbeat_ms = HB_MS;
	d.retries      = 5;
	if (process) {
		d.dispatcher = MIRAI_DISPATCHER_PROCESS;
	} else if (direct) {
		d.dispatcher = MIRAI_DISPATCHER_OFF;
	}
	if (mirai_daemons(&d, &err) != 0) {
		fprintf(stderr, "soak: daemons: %s\n", err.text);
		return 1;
	}
	if (mirai_status_get(NULL, &st) != 0 ||
	    (direct ? st->url[0] == '\0' : st->nrows != NSERVERS)) {
		fprintf(stderr, "soak: no slots\n");
		return 1;
	}
	for (int i = 0; i < NSERVERS; i++) {
		snprintf(urls[i], sizeof urls[i], "%s",
		    direct ? st->url : st->rows[i].url);
		pids[i] = start(i);
	}
	mirai_status_free(st);
	/* The drain's own bound is 120 s past the end; teardown a few
	 * seconds more. */
	atomic_store(&deadline_ms, h_now_ms() + (int64_t) seconds * 1000 + 150000);
	pthread_create(&wd, NULL, watchdog, NULL);
	pthread_detach(wd);
	atomic_store(&stage, "the submit loop");
	pthread_create(&th, NULL, chaos, (void *) (uintptr_t) getpid());
	if (cutting && pthread_create(&cut_th, NULL, cutter, NULL) != 0) {
		snprintf(netns_why, sizeof netns_why, "no thread for the cuts");
		cutting = 0;
	}

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
		if (cutting && now >= t_end && !atomic_load(&stop_cuts)) {
			/* The drain runs on a whole network. */
			atomic_store(&stop_cuts, 1);
			pthread_join(cut_th, NULL);
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
				seq[w]    = next++;
				cut_at[w] = atomic_load(&cut_seq);
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
		/* In flight while a cut began or lasted: the cut count moved
		 * since it was submitted, or a cut was on then. */
		unsigned c = atomic_load(&cut_seq);
		int crossed = c != cut_at[w] || cut_at[w] % 2 == 1;
		across += crossed;
		across_ok += crossed && e == 0;
		across_failed += crossed && e != 0;
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
	atomic_store(&stage, "joining the chaos thread");
	atomic_store(&stop_chaos, 1);
	pthread_join(th, NULL);
	if (cutting && !atomic_load(&stop_cuts)) {
		atomic_store(&stage, "joining the cutter");
		atomic_store(&stop_cuts, 1);
		pthread_join(cut_th, NULL);
	}
	rss1  = rss_kb();
	atomic_store(&stage, "mirai_status_get");
	if (mirai_status_get(NULL, &st) == 0) {
		retried = st->retried;
		mirai_status_free(st);
	}
	printf("soak: %d s, %s, chaos %lu kill -9, %lu stopped past the "
	       "heartbeat, %lu SIGTERM; submitted %lu, ok %lu, retried %llu, "
	       "failed",
	    seconds,
	    direct    ? "no dispatcher"
	    : process ? "dispatcher process"
		      : "thread dispatcher",
	    kills,
	    stops, terms, next, ok, (unsigned long long) retried);
	int any = 0;
	for (int e = 1; e < 128; e++) {
		if (failed[e] > 0) {
			printf(" %s:%lu", mirai_errname(e), failed[e]);
			any = 1;
		}
	}
	printf("%s, lost %lu, duplicated %lu; ", any ? "" : " 0", lost, wrong);
	if (cutting) {
		printf("network cut %lu x %d ms, %lu x %d ms (loopback down): "
		       "%lu tasks across a cut, ok %lu, failed %lu; ",
		    cuts_short, CUT_SHORT_MS, cuts_long, CUT_LONG_MS, across,
		    across_ok, across_failed);
	} else {
		printf("network cuts skipped: %s; ", netns_why);
	}
	printf("client RSS %ld KB -> %ld KB\n", rss0, rss1);
	/* Out now: a hang in the teardown below must not take the line
	 * with it (stdout is a file under the test runner). */
	fflush(stdout);
	if (lost > 0 || wrong > 0) {
		fprintf(stderr, "soak: FAIL: lost or duplicated tasks\n");
		rv = 1;
	}
	if (cut_error[0] != '\0') {
		fprintf(stderr, "soak: FAIL: %s\n", cut_error);
		rv = 1;
	} else if (cutting && cuts_short + cuts_long > 0 && across == 0) {
		fprintf(stderr, "soak: FAIL: no task was in flight across a "
				"cut\n");
		rv = 1;
	}
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	/* ASan keeps freed memory in quarantine (256 MB by default), TSan
	 * grows its shadow and history: RSS says nothing about leaks there,
	 * LeakSanitizer does. */
	rss0 = 0;
#endif
	if (rss0 > 0 && rss1 - rss0 > RSS_BOUND_KB) {
		fprintf(stderr, "soak: FAIL: RSS grew %ld KB (bound %d KB)\n",
		    rss1 - rss0, RSS_BOUND_KB);
		rv = 1;
	}
	atomic_store(&stage, "mirai_reset");
	atomic_store(&deadline_ms, h_now_ms() + 30000);
	mirai_reset(NULL);
	atomic_store(&stage, "stopping the servers");
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
	atomic_store(&stage, "mirai_shutdown");
	mirai_shutdown();
	return rv;
}
