/*
 * test_client_pick.c: unit tests of the direct-mode scheduler's choice of
 * a peer: lib/client_pick.c alone, and mirai__cl_dispatch() of
 * lib/client_direct.c on a profile of fake peers.
 *
 * The rule: a task goes to the usable peer (online, not dead, leaving or
 * told to exit, budget left) with the least unfinished work (queued and
 * in flight), and among equals to the first one going round the peers
 * from the one after the last chosen.  Every choice is checked against a
 * plain scan of all peers that states the rule, and small cases against
 * the choices written out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/client.h"

/* ---- the tree alone --------------------------------------------------- */

/* The first slot going round from start holding the least value. */
static size_t
scan_first(const size_t *v, size_t n, size_t start)
{
	size_t best = SIZE_MAX, least = PICK_NONE;

	for (size_t k = 0; k < n; k++) {
		size_t i = (start + k) % n;
		if (v[i] < least) {
			least = v[i];
			best  = i;
		}
	}
	return best;
}

static void
test_tree_empty(void **state)
{
	picktree k = {0};

	(void) state;
	assert_int_equal(mirai__cl_pick_first(&k, 0), SIZE_MAX);
	assert_int_equal(mirai__cl_pick_reserve(&k, 1), 0);
	assert_int_equal(mirai__cl_pick_first(&k, 0), SIZE_MAX);
	mirai__cl_pick_set(&k, 0, 5);
	assert_int_equal(mirai__cl_pick_first(&k, 0), 0);
	mirai__cl_pick_set(&k, 0, PICK_NONE);
	assert_int_equal(mirai__cl_pick_first(&k, 0), SIZE_MAX);
	mirai__cl_pick_fini(&k);
	mirai__cl_pick_fini(&k); /* twice is fine */
}

/* Random values on slots of trees of many sizes, grown as they go. */
static void
test_tree_random(void **state)
{
	static const size_t sizes[] = {1, 2, 3, 5, 8, 9, 31, 64, 100, 1000};

	(void) state;
	srand(1);
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		size_t n    = sizes[s];
		size_t *v   = malloc(n * sizeof *v);
		picktree k = {0};

		assert_non_null(v);
		for (size_t i = 0; i < n; i++) {
			v[i] = PICK_NONE;
		}
		/* Grown in two steps, the second keeping what the first
		 * held. */
		assert_int_equal(mirai__cl_pick_reserve(&k, n / 2 + 1), 0);
		for (size_t i = 0; i <= n / 2 && i < n; i++) {
			v[i] = (size_t) rand() % 4;
			mirai__cl_pick_set(&k, i, v[i]);
		}
		assert_int_equal(mirai__cl_pick_reserve(&k, n), 0);
		for (int op = 0; op < 3000; op++) {
			size_t i     = (size_t) rand() % n;
			size_t start = (size_t) rand() % n;
			/* Few distinct values: many ties. */
			v[i] = rand() % 5 ? (size_t) rand() % 4 : PICK_NONE;
			mirai__cl_pick_set(&k, i, v[i]);
			assert_int_equal(mirai__cl_pick_get(&k, i), v[i]);
			assert_int_equal(mirai__cl_pick_first(&k, start),
			    scan_first(v, n, start));
		}
		mirai__cl_pick_fini(&k);
		free(v);
	}
}

/* ---- the scheduler ---------------------------------------------------- */

static sock fake_sock; /* monogamous: no send window */

typedef struct world {
	profile p;
	peer *peers[1024]; /* every peer made, removed ones too */
	size_t npeers;
	mirai *tasks[4096];
	size_t ntasks;
	uint32_t next_pipe;
} world;

/* A profile with no peers (large: on the heap). */
static world *
world_new(void)
{
	world *w = calloc(1, sizeof *w);

	assert_non_null(w);
	MIRAI__IDMAP_INIT(&w->p.tasks, mirai, id, hnext);
	MIRAI__IDMAP_INIT(&w->p.by_pipe, peer, pipe_id, hnext);
	w->next_pipe = 100;
	return w;
}

/* A peer in the profile's peers; online unless said otherwise.  It is
 * always sending, so nothing is packed and no message goes out. */
static peer *
add_peer(world *w, int online)
{
	peer *pk = calloc(1, sizeof *pk);

	assert_non_null(pk);
	assert_true(w->npeers < sizeof w->peers / sizeof w->peers[0]);
	pk->prof    = &w->p;
	pk->sk      = &fake_sock;
	pk->pipe_id = w->next_pipe++;
	pk->sending = 1;
	pk->online  = online;
	assert_int_equal(mirai__cl_peer_add(&w->p, pk), 0);
	w->peers[w->npeers++] = pk;
	return pk;
}

static int
ref_usable(const peer *pk)
{
	return pk->online && !pk->dead && !pk->leaving && !pk->exit_sent &&
	    (!pk->has_budget || pk->budget > 0);
}

/* The rule, as a scan of every peer (the scheduler's choice before it
 * was a tree): NULL when no peer is usable. */
static peer *
ref_pick(const profile *p)
{
	peer *best  = NULL;
	size_t load = SIZE_MAX;

	for (size_t k = 0; k < p->npeers; k++) {
		peer *pk = p->peers[(p->rr + k) % p->npeers];
		if (ref_usable(pk) && pk->nqueue + pk->ninflight < load) {
			best = pk;
			load = pk->nqueue + pk->ninflight;
		}
	}
	return best;
}

/* Submit one task; returns the peer it went to (NULL: still waiting),
 * after checking that against the rule. */
static peer *
submit_one(world *w)
{
	mirai *m      = calloc(1, sizeof *m);
	mirai *list  = NULL;
	peer *expect = ref_pick(&w->p);

	/* Nothing waits ahead of it: its choice is the next one. */
	assert_null(w->p.unassigned.head);
	assert_non_null(m);
	assert_true(w->ntasks < sizeof w->tasks / sizeof w->tasks[0]);
	assert_non_null(m->out = mirai__out_new(16));
	m->out->owner = m;
	m->prof       = &w->p;
	m->where      = AT_QUEUE;
	w->tasks[w->ntasks++] = m;
	mirai__outq_push(&w->p.unassigned, m->out);
	mirai__cl_dispatch(&w->p, &list);
	assert_null(list);
	assert_ptr_equal(m->peer, expect);
	return m->peer;
}

/* Task i resolves (as a result or a cancel would take it). */
static void
finish(world *w, size_t i)
{
	mirai *list = NULL;
	mirai *m    = w->tasks[i];

	mirai__cl_claim(&w->p, m, 0, &list);
	assert_ptr_equal(list, m);
	free(m);
	w->tasks[i] = w->tasks[--w->ntasks];
}

/* Resolve every task of pk and take it out of the peers. */
static void
drop_peer(world *w, peer *pk)
{
	for (size_t i = w->ntasks; i-- > 0;) {
		if (w->tasks[i]->peer == pk) {
			finish(w, i);
		}
	}
	mirai__cl_peer_remove(&w->p, pk);
	assert_int_equal(pk->slot, SIZE_MAX);
	assert_null(mirai__idmap_get(&w->p.by_pipe, pk->pipe_id));
}

static void
world_free(world *w)
{
	/* Waiting ones too. */
	while (w->ntasks > 0) {
		finish(w, w->ntasks - 1);
	}
	assert_null(w->p.unassigned.head);
	for (size_t i = 0; i < w->npeers; i++) {
		mirai__cl_peer_remove(&w->p, w->peers[i]);
		free(w->peers[i]);
	}
	free(w->p.peers);
	mirai__idmap_fini(&w->p.by_pipe);
	mirai__idmap_fini(&w->p.tasks);
	mirai__cl_pick_fini(&w->p.pick);
	free(w);
}

/* Equal peers take turns; the least loaded comes first. */
static void
test_round_robin_and_least_loaded(void **state)
{
	world *w = world_new();
	peer *a, *b, *c;

	(void) state;
	a = add_peer(w, 1);
	b = add_peer(w, 1);
	c = add_peer(w, 1);
	/* All idle: in turn, twice round. */
	assert_ptr_equal(submit_one(w), a);
	assert_ptr_equal(submit_one(w), b);
	assert_ptr_equal(submit_one(w), c);
	assert_ptr_equal(submit_one(w), a);
	assert_ptr_equal(submit_one(w), b);
	assert_ptr_equal(submit_one(w), c);
	/* b's two tasks resolve: it is the least loaded, twice; then the
	 * turn goes on after b. */
	for (size_t i = w->ntasks; i-- > 0;) {
		if (w->tasks[i]->peer == b) {
			finish(w, i);
		}
	}
	assert_ptr_equal(submit_one(w), b);
	assert_ptr_equal(submit_one(w), b);
	assert_ptr_equal(submit_one(w), c);
	assert_ptr_equal(submit_one(w), a);
	assert_int_equal(a->nqueue, 3);
	assert_int_equal(b->nqueue, 2);
	assert_int_equal(c->nqueue, 3);
	world_free(w);
}

/* Peers that take no task are passed over: not yet online, leaving,
 * told to exit, dead, out of budget; with none usable the task waits. */
static void
test_unusable_skipped(void **state)
{
	world *w = world_new();
	peer *a, *b, *c, *d;

	(void) state;
	a = add_peer(w, 1);
	b = add_peer(w, 0);
	c = add_peer(w, 1);
	d = add_peer(w, 1);
	d->has_budget = 1;
	d->budget     = 1;
	mirai__cl_peer_changed(&w->p, d);
	assert_ptr_equal(submit_one(w), a);
	assert_ptr_equal(submit_one(w), c); /* b is not online */
	assert_ptr_equal(submit_one(w), d);
	assert_int_equal(d->budget, 0);
	assert_ptr_equal(submit_one(w), a); /* d's budget is used up */
	assert_ptr_equal(submit_one(w), c);
	/* b says HELLO: idle, it takes the next two. */
	b->online = 1;
	mirai__cl_peer_changed(&w->p, b);
	assert_ptr_equal(submit_one(w), b);
	assert_ptr_equal(submit_one(w), b);
	c->leaving = 1;
	mirai__cl_peer_changed(&w->p, c);
	a->exit_sent = 1;
	mirai__cl_peer_changed(&w->p, a);
	assert_ptr_equal(submit_one(w), b);
	b->dead = 1;
	mirai__cl_peer_changed(&w->p, b);
	assert_null(submit_one(w));
	assert_non_null(w->p.unassigned.head);
	world_free(w);
}

/* Many random steps (peers come, change and go; tasks come and resolve),
 * each choice checked against the scan.  A task is submitted only when
 * some peer can take it (test_unusable_skipped covers the rest). */
static void
test_random_against_scan(void **state)
{
	world *w = world_new();
	peer *live[64];
	size_t nlive = 0, chosen = 0;

	(void) state;
	srand(2);
	for (int step = 0; step < 20000; step++) {
		int r = rand() % 100;
		if (nlive < 2 || (r < 3 && nlive < 40)) {
			live[nlive++] = add_peer(w, rand() % 4 != 0);
		} else if (r < 5) {
			size_t i = (size_t) rand() % nlive;
			drop_peer(w, live[i]);
			live[i] = live[--nlive];
		} else if (r < 8) {
			peer *pk = live[rand() % nlive];
			switch (rand() % 5) {
			case 0: pk->online = 1; break;
			case 1: pk->leaving = 1; break;
			case 2: pk->exit_sent = 1; break;
			case 3: pk->dead = 1; break;
			default:
				pk->has_budget = 1;
				pk->budget     = (uint64_t) (rand() % 3);
				break;
			}
			mirai__cl_peer_changed(&w->p, pk);
		} else if (r < 55 && w->ntasks > 0) {
			finish(w, (size_t) rand() % w->ntasks);
		} else if (w->ntasks < 4000 && ref_pick(&w->p) != NULL) {
			assert_non_null(submit_one(w));
			chosen++;
		}
	}
	/* The steps did exercise the choice. */
	assert_true(chosen > 5000);
	world_free(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tree_empty),
	    cmocka_unit_test(test_tree_random),
	    cmocka_unit_test(test_round_robin_and_least_loaded),
	    cmocka_unit_test(test_unusable_skipped),
	    cmocka_unit_test(test_random_against_scan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
