/*
 * service.c: the library's one background thread.  It fires timers (task
 * time-outs), runs work that must not run where it was found (for instance
 * inside an NNG pipe callback), and reaps the child processes the library
 * started, noticing their exit through pidfds: no polling, no sleeps.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

typedef struct defer {
	MIRAI__ENTRY(struct defer) entry;
	void (*fn)(void *);
	void *arg;
} defer;

typedef struct child {
	MIRAI__ENTRY(struct child) entry;
	pid_t pid;
	int pidfd;
	void (*fn)(pid_t, int, void *);
	void *arg;
} child;

static struct {
	pthread_mutex_t mtx;
	pthread_t thread;
	int running;
	int stopping;
	int efd;
	mirai__timer **heap; /* heap[1..n] */
	size_t n, cap;
	MIRAI__LIST(defer) defers; /* jobs to run, oldest first */
	MIRAI__LIST(child) children;
	size_t nchildren;
	child *calling;      /* the child whose fn runs now, unlocked */
	pthread_cond_t called; /* calling went back to NULL */
} svc = {.mtx = PTHREAD_MUTEX_INITIALIZER, .efd = -1,
    .called = PTHREAD_COND_INITIALIZER};

static void
wake(void)
{
	uint64_t one = 1;

	if (svc.efd >= 0 && write(svc.efd, &one, sizeof one) < 0) {
		/* The counter is saturated: the thread is awake anyway. */
	}
}

static void
heap_swap(size_t a, size_t b)
{
	mirai__timer *t = svc.heap[a];

	svc.heap[a]           = svc.heap[b];
	svc.heap[b]           = t;
	svc.heap[a]->heap_idx = a;
	svc.heap[b]->heap_idx = b;
}

static void
heap_up(size_t i)
{
	while (i > 1 && svc.heap[i / 2]->deadline > svc.heap[i]->deadline) {
		heap_swap(i, i / 2);
		i /= 2;
	}
}

static void
heap_down(size_t i)
{
	for (;;) {
		size_t l = 2 * i, r = l + 1, m = i;

		if (l <= svc.n && svc.heap[l]->deadline < svc.heap[m]->deadline) {
			m = l;
		}
		if (r <= svc.n && svc.heap[r]->deadline < svc.heap[m]->deadline) {
			m = r;
		}
		if (m == i) {
			return;
		}
		heap_swap(i, m);
		i = m;
	}
}

static void
heap_remove(mirai__timer *t)
{
	size_t i = t->heap_idx;

	if (i != svc.n) {
		heap_swap(i, svc.n);
	}
	svc.n--;
	t->heap_idx = 0;
	if (i <= svc.n) {
		heap_down(i);
		heap_up(i);
	}
}

static int
pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int) syscall(SYS_pidfd_open, pid, 0);
#else
	(void) pid;
	errno = ENOSYS;
	return -1;
#endif
}

/* Reap children that exited; with fallback (no pidfd), check them all. */
static void
reap(const struct pollfd *fds, size_t nfds)
{
	child *c = svc.children.head;

	while (c != NULL) {
		int ready    = c->pidfd < 0;
		int status   = 0;
		pid_t r;

		for (size_t i = 1; i < nfds && !ready; i++) {
			ready = fds[i].fd == c->pidfd && fds[i].revents != 0;
		}
		if (!ready) {
			c = c->entry.next;
			continue;
		}
		r = waitpid(c->pid, &status, WNOHANG);
		if (r < 0 && errno == ECHILD) {
			/* The application reaped it (waitpid(-1) or a
			 * SIGCHLD handler): gone, with its status unknown. */
			status = -1;
		} else if (r != c->pid) {
			c = c->entry.next;
			continue;
		}
		MIRAI__LIST_REMOVE(&svc.children, c, entry);
		svc.nchildren--;
		if (c->pidfd >= 0) {
			close(c->pidfd);
		}
		svc.calling = c;
		pthread_mutex_unlock(&svc.mtx);
		if (c->fn != NULL) {
			c->fn(c->pid, status, c->arg);
		}
		pthread_mutex_lock(&svc.mtx);
		svc.calling = NULL;
		pthread_cond_broadcast(&svc.called);
		free(c);
		c = svc.children.head; /* the list may have changed */
	}
}

static void *
svc_main(void *unused)
{
	struct pollfd *fds = NULL;
	size_t fcap        = 0;

	(void) unused;
	pthread_mutex_lock(&svc.mtx);
	while (!svc.stopping) {
		int64_t now, timeout = -1;
		size_t nfds = 1;
		int fallback = 0;

		while (svc.defers.head != NULL) {
			defer *d = svc.defers.head;
			MIRAI__LIST_REMOVE(&svc.defers, d, entry);
			pthread_mutex_unlock(&svc.mtx);
			d->fn(d->arg);
			free(d);
			pthread_mutex_lock(&svc.mtx);
		}
		now = mirai__now_ms();
		while (svc.n > 0 && svc.heap[1]->deadline <= now) {
			mirai__timer *t = svc.heap[1];

			heap_remove(t);
			pthread_mutex_unlock(&svc.mtx);
			t->fn(t->arg);
			pthread_mutex_lock(&svc.mtx);
			now = mirai__now_ms();
		}
		if (svc.defers.head != NULL) {
			continue;
		}
		if (svc.n > 0) {
			timeout = svc.heap[1]->deadline - now;
		}
		if (fcap < svc.nchildren + 1) {
			struct pollfd *f =
			    realloc(fds, (svc.nchildren + 1) * sizeof *f);
			if (f != NULL) {
				fds  = f;
				fcap = svc.nchildren + 1;
			}
		}
		if (fds == NULL) {
			/* No memory for even one pollfd: try again shortly. */
			pthread_mutex_unlock(&svc.mtx);
			usleep(10000);
			pthread_mutex_lock(&svc.mtx);
			continue;
		}
		fds[0].fd     = svc.efd;
		fds[0].events = POLLIN;
		for (child *c = svc.children.head; c != NULL;
		     c = c->entry.next) {
			if (c->pidfd < 0 || nfds >= fcap) {
				fallback = 1;
				continue;
			}
			fds[nfds].fd      = c->pidfd;
			fds[nfds].events  = POLLIN;
			fds[nfds].revents = 0;
			nfds++;
		}
		if (fallback && (timeout < 0 || timeout > 100)) {
			/* Only without pidfd support: look again in 100 ms. */
			timeout = 100;
		}
		pthread_mutex_unlock(&svc.mtx);
		fds[0].revents = 0;
		if (poll(fds, nfds, (int) (timeout > 60000 ? 60000 : timeout)) >
		        0 &&
		    (fds[0].revents & POLLIN)) {
			uint64_t v;
			if (read(svc.efd, &v, sizeof v) < 0) {
				/* Nothing to read: fine. */
			}
		}
		pthread_mutex_lock(&svc.mtx);
		reap(fds, nfds);
	}
	pthread_mutex_unlock(&svc.mtx);
	free(fds);
	return NULL;
}

int
mirai__svc_start(void)
{
	int rv = 0;
	sigset_t all, old;

	pthread_mutex_lock(&svc.mtx);
	if (!svc.running) {
		if (svc.efd < 0 &&
		    (svc.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
			pthread_mutex_unlock(&svc.mtx);
			return MIRAI_ENOFILES;
		}
		/* The thread takes no signals: they belong to the application. */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		svc.stopping = 0;
		if (pthread_create(&svc.thread, NULL, svc_main, NULL) != 0) {
			rv = MIRAI_ENOMEM;
		} else {
			svc.running = 1;
		}
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	pthread_mutex_unlock(&svc.mtx);
	return rv;
}

void
mirai__svc_stop(void)
{
	pthread_mutex_lock(&svc.mtx);
	if (!svc.running) {
		pthread_mutex_unlock(&svc.mtx);
		return;
	}
	svc.stopping = 1;
	wake();
	pthread_mutex_unlock(&svc.mtx);
	pthread_join(svc.thread, NULL);
	pthread_mutex_lock(&svc.mtx);
	svc.running = 0;
	/* Work that was still waiting runs now, here. */
	while (svc.defers.head != NULL) {
		defer *d = svc.defers.head;
		MIRAI__LIST_REMOVE(&svc.defers, d, entry);
		pthread_mutex_unlock(&svc.mtx);
		d->fn(d->arg);
		free(d);
		pthread_mutex_lock(&svc.mtx);
	}
	while (svc.n > 0) {
		heap_remove(svc.heap[1]);
	}
	free(svc.heap);
	svc.heap = NULL;
	svc.cap  = 0;
	/* Children still running are left to the system, but their owners
	 * are told, so nothing waits on them for ever. */
	while (svc.children.head != NULL) {
		child *c = svc.children.head;
		MIRAI__LIST_REMOVE(&svc.children, c, entry);
		if (c->pidfd >= 0) {
			close(c->pidfd);
		}
		svc.calling = c;
		pthread_mutex_unlock(&svc.mtx);
		if (c->fn != NULL) {
			c->fn(c->pid, -1, c->arg);
		}
		pthread_mutex_lock(&svc.mtx);
		svc.calling = NULL;
		pthread_cond_broadcast(&svc.called);
		free(c);
	}
	svc.nchildren = 0;
	if (svc.efd >= 0) {
		close(svc.efd);
		svc.efd = -1;
	}
	pthread_mutex_unlock(&svc.mtx);
}

/* Called with svc.mtx held. */
static int
arm_locked(mirai__timer *t, int64_t deadline)
{
	if (t->heap_idx != 0) {
		heap_remove(t);
	}
	if (svc.n + 1 >= svc.cap) {
		size_t cap = svc.cap == 0 ? 64 : svc.cap * 2;
		mirai__timer **h = realloc(svc.heap, cap * sizeof *h);
		if (h == NULL) {
			return MIRAI_ENOMEM;
		}
		svc.heap = h;
		svc.cap  = cap;
	}
	t->deadline      = deadline;
	svc.heap[++svc.n] = t;
	t->heap_idx      = svc.n;
	heap_up(svc.n);
	if (svc.heap[1] == t) {
		wake();
	}
	return 0;
}

int
mirai__timer_arm(mirai__timer *t, int64_t deadline)
{
	int rv;

	if ((rv = mirai__svc_start()) != 0) {
		return rv;
	}
	pthread_mutex_lock(&svc.mtx);
	rv = arm_locked(t, deadline);
	pthread_mutex_unlock(&svc.mtx);
	return rv;
}

static void
ticker_fire(void *arg)
{
	mirai__ticker *k = arg;

	pthread_mutex_lock(&svc.mtx);
	if (k->stopped) {
		pthread_mutex_unlock(&svc.mtx);
		return;
	}
	k->running = 1;
	pthread_mutex_unlock(&svc.mtx);
	k->fn(k->arg);
	pthread_mutex_lock(&svc.mtx);
	k->running = 0;
	if (!k->stopped && svc.running) {
		arm_locked(&k->timer, mirai__now_ms() + k->period);
	}
	pthread_cond_broadcast(&svc.called);
	pthread_mutex_unlock(&svc.mtx);
}

int
mirai__ticker_start(mirai__ticker *k, int64_t period, void (*fn)(void *),
    void *arg)
{
	memset(k, 0, sizeof *k);
	k->period    = period > 0 ? period : 1;
	k->fn        = fn;
	k->arg       = arg;
	k->timer.fn  = ticker_fire;
	k->timer.arg = k;
	return mirai__timer_arm(&k->timer, mirai__now_ms() + k->period);
}

void
mirai__ticker_stop(mirai__ticker *k)
{
	pthread_mutex_lock(&svc.mtx);
	k->stopped = 1;
	if (k->timer.heap_idx != 0) {
		heap_remove(&k->timer);
	}
	while (k->running && !pthread_equal(pthread_self(), svc.thread)) {
		pthread_cond_wait(&svc.called, &svc.mtx);
	}
	pthread_mutex_unlock(&svc.mtx);
}

int
mirai__timer_cancel(mirai__timer *t)
{
	int armed;

	pthread_mutex_lock(&svc.mtx);
	armed = t->heap_idx != 0;
	if (armed) {
		heap_remove(t);
	}
	pthread_mutex_unlock(&svc.mtx);
	return armed;
}

int
mirai__defer(void (*fn)(void *), void *arg)
{
	defer *d;
	int rv;

	if ((rv = mirai__svc_start()) != 0) {
		return rv;
	}
	if ((d = malloc(sizeof *d)) == NULL) {
		return MIRAI_ENOMEM;
	}
	d->fn  = fn;
	d->arg = arg;
	pthread_mutex_lock(&svc.mtx);
	MIRAI__LIST_PUSH_BACK(&svc.defers, d, entry);
	wake();
	pthread_mutex_unlock(&svc.mtx);
	return 0;
}

int
mirai__watch_child(pid_t pid, void (*fn)(pid_t, int, void *), void *arg)
{
	child *c;
	int rv;

	if ((rv = mirai__svc_start()) != 0) {
		return rv;
	}
	if ((c = malloc(sizeof *c)) == NULL) {
		return MIRAI_ENOMEM;
	}
	c->pid   = pid;
	c->pidfd = pidfd_open_(pid);
	c->fn    = fn;
	c->arg   = arg;
	pthread_mutex_lock(&svc.mtx);
	MIRAI__LIST_PUSH_FRONT(&svc.children, c, entry);
	svc.nchildren++;
	wake();
	pthread_mutex_unlock(&svc.mtx);
	return 0;
}

void
mirai__watch_cancel(pid_t pid, void (*fn)(pid_t, int, void *), void *arg)
{
	pthread_mutex_lock(&svc.mtx);
	for (child *c = svc.children.head; c != NULL; c = c->entry.next) {
		if (c->pid == pid && c->fn == fn && c->arg == arg) {
			/* Still reaped when it exits; nobody is told. */
			c->fn = NULL;
		}
	}
	/* A call already under way finishes before arg may go (unless this
	 * is that call, on the service thread). */
	while (svc.calling != NULL && svc.calling->pid == pid &&
	    svc.calling->fn == fn && svc.calling->arg == arg &&
	    !pthread_equal(pthread_self(), svc.thread)) {
		pthread_cond_wait(&svc.called, &svc.mtx);
	}
	pthread_mutex_unlock(&svc.mtx);
}
