/*
 * test_topo.c: unit tests of lib/topo.c, CPU binding with the real hwloc
 * of the machine running them.
 *
 * Nothing about the machine is assumed beyond one usable CPU: every
 * expectation comes from mirai__topo_count(), from sched_getaffinity() and
 * from the kernel's own description of cores, packages and NUMA nodes in
 * /sys, which hwloc reads too but which these tests parse independently.
 * Binding changes this test process, so the affinity it started with is
 * put back after every test.
 */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/internal.h"

static const char *const kinds[] = {"core", "numa", "socket"};

/* The CPUs this process could use when it started. */
static cpu_set_t original;

static void
get_affinity(cpu_set_t *set)
{
	assert_int_equal(sched_getaffinity(0, sizeof *set, set), 0);
}

static int
save_affinity(void **state)
{
	get_affinity(&original);
	assert_true(CPU_COUNT(&original) >= 1);
	return 0;
}

static int
restore_affinity(void **state)
{
	assert_int_equal(
	    sched_setaffinity(0, sizeof original, &original), 0);
	return 0;
}

static int
lowest_cpu(const cpu_set_t *set)
{
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (CPU_ISSET(c, set)) {
			return c;
		}
	}
	return -1;
}

static int
highest_cpu(const cpu_set_t *set)
{
	for (int c = CPU_SETSIZE - 1; c >= 0; c--) {
		if (CPU_ISSET(c, set)) {
			return c;
		}
	}
	return -1;
}

/* Read a kernel CPU list ("0-3,8") from path; -1 if there is none. */
static int
read_cpulist(const char *path, cpu_set_t *set)
{
	char buf[4096], *p = buf;
	FILE *f = fopen(path, "r");
	size_t n;

	CPU_ZERO(set);
	if (f == NULL) {
		return -1;
	}
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (*p != '\0' && *p != '\n') {
		char *end;
		long a = strtol(p, &end, 10), b = a;

		assert_true(end != p);
		if (*end == '-') {
			p = end + 1;
			b = strtol(p, &end, 10);
		}
		for (long c = a; c <= b && c < CPU_SETSIZE; c++) {
			CPU_SET((int) c, set);
		}
		p = *end == ',' ? end + 1 : end;
	}
	return 0;
}

/*
 * The CPUs of the unit of kind holding cpu, as the kernel tells them; -1
 * if /sys does not say.  A kernel without NUMA nodes in /sys has one node
 * holding every CPU, and so has hwloc's topology.
 */
static int
kernel_unit(const char *kind, int cpu, cpu_set_t *set)
{
	char path[320];
	DIR *d;
	struct dirent *e;

	if (strcmp(kind, "core") == 0 || strcmp(kind, "socket") == 0) {
		snprintf(path, sizeof path,
		    "/sys/devices/system/cpu/cpu%d/topology/%s", cpu,
		    kind[0] == 'c' ? "thread_siblings_list"
				   : "core_siblings_list");
		return read_cpulist(path, set);
	}
	if ((d = opendir("/sys/devices/system/node")) == NULL) {
		CPU_ZERO(set);
		for (int c = 0; c < CPU_SETSIZE; c++) {
			CPU_SET(c, set);
		}
		return 0;
	}
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "node", 4) != 0 ||
		    e->d_name[4] < '0' || e->d_name[4] > '9') {
			continue;
		}
		snprintf(path, sizeof path,
		    "/sys/devices/system/node/%s/cpulist", e->d_name);
		if (read_cpulist(path, set) == 0 && CPU_ISSET(cpu, set)) {
			closedir(d);
			return 0;
		}
	}
	closedir(d);
	return -1;
}

/* Bind to unit index of kind and return the affinity it left; the desc
 * must name the kind and list exactly those CPUs. */
static void
bind_unit(const char *kind, int index, cpu_set_t *got, unsigned *logical,
    int *wrapped)
{
	char desc[256], cpus[256], word[16], want[256];
	mirai_errmsg err = {{0}};
	int rv;

	*wrapped = -1;
	rv = mirai__topo_bind(kind, index, desc, sizeof desc, wrapped, &err);
	if (rv != 0) {
		fail_msg("binding to %s %d: %s (%s)", kind, index,
		    mirai_errname(rv), err.text);
	}
	get_affinity(got);
	assert_true(CPU_COUNT(got) >= 1);
	assert_int_equal(sscanf(desc, "%15s %u: cpus %255s", word, logical,
			     cpus),
	    3);
	assert_string_equal(word, kind);
	mirai__topo_binding(want, sizeof want);
	assert_string_equal(cpus, want);
}

/*
 * Bind to every unit of kind in turn.  Each must give a non-empty part of
 * the original CPUs that is exactly the kernel's unit of that kind within
 * them, the parts must not overlap, must come in hwloc's logical order and
 * must cover every original CPU; the index after the last wraps round to
 * the first.
 */
static void
check_kind(const char *kind)
{
	int n = mirai__topo_count(kind), wrapped;
	cpu_set_t seen, got, first, unit;
	unsigned logical, last_logical = 0;

	assert_true(n >= 1);
	assert_true(n <= CPU_COUNT(&original));
	CPU_ZERO(&seen);
	for (int k = 0; k < n; k++) {
		cpu_set_t both;

		bind_unit(kind, k, &got, &logical, &wrapped);
		assert_int_equal(wrapped, 0);
		if (k == 0) {
			first = got;
		} else {
			assert_true(logical > last_logical);
		}
		last_logical = logical;
		CPU_AND(&both, &got, &original);
		assert_true(CPU_EQUAL(&both, &got));
		CPU_AND(&both, &got, &seen);
		assert_int_equal(CPU_COUNT(&both), 0);
		CPU_OR(&seen, &seen, &got);
		if (kernel_unit(kind, lowest_cpu(&got), &unit) == 0) {
			CPU_AND(&unit, &unit, &original);
			assert_true(CPU_EQUAL(&unit, &got));
		}
		restore_affinity(NULL);
	}
	assert_true(CPU_EQUAL(&seen, &original));

	bind_unit(kind, n, &got, &logical, &wrapped);
	assert_int_equal(wrapped, 1);
	assert_true(CPU_EQUAL(&got, &first));
}

/* ---- tests ------------------------------------------------------------- */

#define NTHREADS 8

static void *
count_cores(void *arg)
{
	*(int *) arg = mirai__topo_count("core");
	return NULL;
}

/* The first use, from many threads at once, loads one topology that all
 * of them see.  Runs first, before anything else loaded it. */
static void
test_first_use_threads(void **state)
{
	pthread_t th[NTHREADS];
	int counts[NTHREADS];
	int64_t t0 = mirai__now_ns();

	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(
		    pthread_create(&th[i], NULL, count_cores, &counts[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
	}
	print_message("first use (topology load) took %.1f ms\n",
	    (double) (mirai__now_ns() - t0) / 1e6);
	assert_true(counts[0] >= 1);
	for (int i = 1; i < NTHREADS; i++) {
		assert_int_equal(counts[i], counts[0]);
	}
}

static void
test_count(void **state)
{
	int cores = mirai__topo_count("core");

	/* Each unit holds at least one usable CPU; sockets and NUMA nodes
	 * hold whole cores. */
	assert_true(cores >= 1 && cores <= CPU_COUNT(&original));
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		int n = mirai__topo_count(kinds[i]);
		assert_true(n >= 1 && n <= cores);
	}
	assert_int_equal(mirai__topo_count("none"), 0);
	assert_int_equal(mirai__topo_count("bogus"), 0);
	assert_int_equal(mirai__topo_count(""), 0);
	assert_int_equal(mirai__topo_count(NULL), 0);
}

static void
test_bind_core(void **state)
{
	check_kind("core");
}

static void
test_bind_numa(void **state)
{
	check_kind("numa");
}

static void
test_bind_socket(void **state)
{
	check_kind("socket");
}

/* Far past the last unit, the index still wraps round to k % count. */
static void
test_wrap(void **state)
{
	int n = mirai__topo_count("core"), wrapped;
	cpu_set_t want, got;
	unsigned logical;

	bind_unit("core", (n + 1) % n, &want, &logical, &wrapped);
	assert_int_equal(wrapped, 0);
	restore_affinity(NULL);
	bind_unit("core", n + 1, &got, &logical, &wrapped);
	assert_int_equal(wrapped, 1);
	assert_true(CPU_EQUAL(&got, &want));
	restore_affinity(NULL);
	bind_unit("core", 7 * n + 1, &got, &logical, &wrapped);
	assert_int_equal(wrapped, 1);
	assert_true(CPU_EQUAL(&got, &want));
}

/* Units are counted among the CPUs of the current affinity only: on one
 * CPU there is one core, and every index lands there. */
static void
test_restricted(void **state)
{
	int cpu = highest_cpu(&original), wrapped;
	cpu_set_t one, got;
	unsigned logical;

	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		assert_int_equal(mirai__topo_count(kinds[i]), 1);
	}
	bind_unit("core", 0, &got, &logical, &wrapped);
	assert_true(CPU_EQUAL(&got, &one));
	assert_int_equal(wrapped, 0);
	bind_unit("socket", 1, &got, &logical, &wrapped);
	assert_true(CPU_EQUAL(&got, &one));
	assert_int_equal(wrapped, 1);
}

/* "none" and NULL leave the affinity as it was, even a narrow one. */
static void
test_none(void **state)
{
	const char *nones[] = {"none", NULL};
	cpu_set_t one, got;

	CPU_ZERO(&one);
	CPU_SET(highest_cpu(&original), &one);
	assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
	for (size_t i = 0; i < 2; i++) {
		char desc[64] = "unchanged";
		int wrapped = -1;

		assert_int_equal(mirai__topo_bind(nones[i], 5, desc,
				     sizeof desc, &wrapped, NULL),
		    0);
		assert_string_equal(desc, "none");
		assert_int_equal(wrapped, 0);
		get_affinity(&got);
		assert_true(CPU_EQUAL(&got, &one));
	}
}

/* Bad arguments are refused with a message, and bind nothing. */
static void
test_invalid(void **state)
{
	static const struct {
		const char *kind;
		int index;
		const char *msg;
	} cases[] = {
	    {"bogus", 0, "core, numa, socket and none"},
	    {"", 0, "core, numa, socket and none"},
	    {"Core", 0, "core, numa, socket and none"},
	    {"core", -1, "index must be 0 or more"},
	    {"socket", -1000, "index must be 0 or more"},
	};
	cpu_set_t one, got;

	/* Narrowed first, so that a binding made by mistake shows. */
	CPU_ZERO(&one);
	CPU_SET(lowest_cpu(&original), &one);
	assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		mirai_errmsg err = {{0}};
		char desc[64] = "unchanged";
		int wrapped = -1;

		assert_int_equal(mirai__topo_bind(cases[i].kind,
				     cases[i].index, desc, sizeof desc,
				     &wrapped, &err),
		    MIRAI_EINVAL);
		if (strstr(err.text, cases[i].msg) == NULL) {
			fail_msg("'%s' %d: message '%s' lacks '%s'",
			    cases[i].kind, cases[i].index, err.text,
			    cases[i].msg);
		}
		assert_string_equal(desc, "");
		assert_int_equal(wrapped, 0);
		get_affinity(&got);
		assert_true(CPU_EQUAL(&got, &one));
	}
	/* Without a message buffer the code alone comes back. */
	assert_int_equal(mirai__topo_bind("bogus", 0, NULL, 0, NULL, NULL),
	    MIRAI_EINVAL);
}

/* desc, wrapped and err are optional. */
static void
test_optional_outputs(void **state)
{
	int n = mirai__topo_count("core"), wrapped;
	cpu_set_t want, got;
	unsigned logical;

	bind_unit("core", 0, &want, &logical, &wrapped);
	restore_affinity(NULL);
	assert_int_equal(
	    mirai__topo_bind("core", n, NULL, 0, NULL, NULL), 0);
	get_affinity(&got);
	assert_true(CPU_EQUAL(&got, &want));
	if (n > 1) {
		assert_false(CPU_EQUAL(&got, &original));
	}
}

/* A description longer than the buffer is cut, never overflowed. */
static void
test_short_desc(void **state)
{
	char desc[8];

	memset(desc, 'x', sizeof desc);
	assert_int_equal(mirai__topo_bind("numa", 0, desc, 6, NULL, NULL), 0);
	assert_string_equal(desc, "numa ");
	assert_int_equal(desc[6], 'x');
}

static pthread_mutex_t park_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cv = PTHREAD_COND_INITIALIZER;
static int park_done;

static void *
park(void *arg)
{
	pthread_mutex_lock(&park_mtx);
	while (!park_done) {
		pthread_cond_wait(&park_cv, &park_mtx);
	}
	pthread_mutex_unlock(&park_mtx);
	return NULL;
}

/* The whole process is bound: a thread already running follows, as NNG's
 * threads must. */
static void
test_binds_other_threads(void **state)
{
	int n = mirai__topo_count("core"), wrapped;
	unsigned logical;
	cpu_set_t got, theirs;
	pthread_t th;

	park_done = 0;
	assert_int_equal(pthread_create(&th, NULL, park, NULL), 0);
	bind_unit("core", n - 1, &got, &logical, &wrapped);
	assert_int_equal(
	    pthread_getaffinity_np(th, sizeof theirs, &theirs), 0);
	pthread_mutex_lock(&park_mtx);
	park_done = 1;
	pthread_cond_signal(&park_cv);
	pthread_mutex_unlock(&park_mtx);
	pthread_join(th, NULL);
	assert_true(CPU_EQUAL(&theirs, &got));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_use_threads),
	    cmocka_unit_test(test_count),
	    cmocka_unit_test_teardown(test_bind_core, restore_affinity),
	    cmocka_unit_test_teardown(test_bind_numa, restore_affinity),
	    cmocka_unit_test_teardown(test_bind_socket, restore_affinity),
	    cmocka_unit_test_teardown(test_wrap, restore_affinity),
	    cmocka_unit_test_teardown(test_restricted, restore_affinity),
	    cmocka_unit_test_teardown(test_none, restore_affinity),
	    cmocka_unit_test_teardown(test_invalid, restore_affinity),
	    cmocka_unit_test_teardown(test_optional_outputs,
		restore_affinity),
	    cmocka_unit_test_teardown(test_short_desc, restore_affinity),
	    cmocka_unit_test_teardown(test_binds_other_threads,
		restore_affinity),
	};

	return cmocka_run_group_tests(tests, save_affinity, NULL);
}
