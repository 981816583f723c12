/*
 * topo.c: CPU topology and binding; the only file calling hwloc.  It owns
 * the process's one hwloc topology, loaded on first need and kept for the
 * life of the process, and the binding of the process to a core, NUMA node
 * or socket.  Describing the current binding needs only the affinity mask,
 * so it never pays for loading the topology.
 *
 * Units are counted among the CPUs the process may use: those hwloc allows
 * (it reads the cgroup's cpuset) that are also in the current binding, so a
 * server started by taskset, numactl or a batch scheduler counts only its
 * share of the machine.  A unit counts if it has at least one such CPU, in
 * hwloc's logical order.
 */

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include <hwloc.h>

#include "internal.h"

#define TAG "topo"

static const struct {
	const char *name;
	hwloc_obj_type_t type;
} kinds[] = {
    {"core", HWLOC_OBJ_CORE},
    {"numa", HWLOC_OBJ_NUMANODE},
    {"socket", HWLOC_OBJ_PACKAGE},
};

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
/* The loaded topology, or NULL with load_error saying why. */
static hwloc_topology_t topology;
static char load_error[256];
/* hwloc allows concurrent readers of a loaded topology, but a binding and
 * its read-back must not interleave with another thread's binding, or the
 * check would compare against the other thread's request. */
static pthread_mutex_t topo_mtx = PTHREAD_MUTEX_INITIALIZER;

static void
load(void)
{
	int64_t t0 = mirai__now_ns();
	hwloc_topology_t t;

	if (hwloc_topology_init(&t) != 0) {
		snprintf(load_error, sizeof load_error,
		    "cannot initialise hwloc: %s", strerror(errno));
		return;
	}
	/* Only cores, NUMA nodes and packages are used: skipping the caches
	 * makes the load cheaper on large machines.  I/O devices are left
	 * out by default already. */
	hwloc_topology_set_cache_types_filter(t, HWLOC_TYPE_FILTER_KEEP_NONE);
	hwloc_topology_set_icache_types_filter(t, HWLOC_TYPE_FILTER_KEEP_NONE);
	if (hwloc_topology_load(t) != 0) {
		snprintf(load_error, sizeof load_error,
		    "cannot load the hwloc topology: %s", strerror(errno));
		hwloc_topology_destroy(t);
		return;
	}
	topology = t;
	MIRAI__LOG(MIRAI_LOG_DEBUG, TAG, "hwloc topology loaded in %.1f ms",
	    (double) (mirai__now_ns() - t0) / 1e6);
}

/* The topology, loaded once; NULL with err filled if it cannot be. */
static hwloc_topology_t
get_topology(mirai_errmsg *err)
{
	pthread_once(&load_once, load);
	if (topology == NULL) {
		mirai__fail(err, MIRAI_ETOPO, "%s", load_error);
	}
	return topology;
}

/* The hwloc type of kind; 0 with *type set, or -1 if kind is unknown. */
static int
kind_type(const char *kind, hwloc_obj_type_t *type)
{
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		if (strcmp(kind, kinds[i].name) == 0) {
			*type = kinds[i].type;
			return 0;
		}
	}
	return -1;
}

/* Fill usable with the CPUs this process may use: allowed by hwloc and in
 * the current binding of its threads.  Called locked. */
static int
usable_cpus(hwloc_topology_t t, hwloc_bitmap_t usable, mirai_errmsg *err)
{
	if (hwloc_get_cpubind(t, usable, HWLOC_CPUBIND_PROCESS) != 0) {
		return mirai__fail(err, MIRAI_ETOPO,
		    "cannot read the CPU binding: %s", strerror(errno));
	}
	hwloc_bitmap_and(usable, usable, hwloc_topology_get_allowed_cpuset(t));
	return 0;
}

/*
 * Count the units of type with a usable CPU.  The one numbered want (from
 * 0; -1 for none) gets its usable CPUs in cpus and hwloc's logical index
 * in *logical.  Called locked.
 */
static int
units(hwloc_topology_t t, hwloc_obj_type_t type, hwloc_const_bitmap_t usable,
    int want, hwloc_bitmap_t cpus, unsigned *logical)
{
	int n = hwloc_get_nbobjs_by_type(t, type), count = 0;

	for (int i = 0; i < n; i++) {
		hwloc_obj_t o = hwloc_get_obj_by_type(t, type, (unsigned) i);

		/* NUMA nodes of memory alone (no CPUs) have empty cpusets. */
		if (o == NULL || o->cpuset == NULL ||
		    !hwloc_bitmap_intersects(o->cpuset, usable)) {
			continue;
		}
		if (count == want) {
			hwloc_bitmap_and(cpus, o->cpuset, usable);
			*logical = o->logical_index;
		}
		count++;
	}
	return count;
}

void
mirai__topo_binding(char *buf, size_t len)
{
	cpu_set_t set;
	size_t used = 0;
	int first = 1;

	buf[0] = '\0';
	if (sched_getaffinity(0, sizeof set, &set) != 0) {
		return;
	}
	/* Runs of CPUs as "a-b", separated by commas. */
	for (int c = 0; c < CPU_SETSIZE && used + 24 < len; c++) {
		int e = c;

		if (!CPU_ISSET(c, &set)) {
			continue;
		}
		while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, &set)) {
			e++;
		}
		used += (size_t) snprintf(buf + used, len - used,
		    e > c ? "%s%d-%d" : "%s%d", first ? "" : ",", c, e);
		first = 0;
		c     = e;
	}
}

/* Bind to cpus and check that the binding holds.  Called locked. */
static int
bind_and_check(hwloc_topology_t t, hwloc_const_bitmap_t cpus,
    hwloc_bitmap_t got, const char *what, mirai_errmsg *err)
{
	char want_s[256], got_s[256];

	/* This thread first: threads it starts meanwhile inherit its mask,
	 * then every thread of the process, NNG's included. */
	if (hwloc_set_cpubind(t, cpus, HWLOC_CPUBIND_THREAD) != 0 ||
	    hwloc_set_cpubind(t, cpus, HWLOC_CPUBIND_PROCESS) != 0) {
		return mirai__fail(err, MIRAI_ETOPO, "cannot bind to %s: %s",
		    what, strerror(errno));
	}
	/* STRICT makes the read-back fail unless every thread has the same
	 * binding, so a thread that escaped is caught too. */
	if (hwloc_get_cpubind(t, got,
		HWLOC_CPUBIND_PROCESS | HWLOC_CPUBIND_STRICT) != 0) {
		return mirai__fail(err, MIRAI_ETOPO,
		    "bound to %s but cannot read the binding back: %s", what,
		    errno == EXDEV ? "threads are bound differently"
				   : strerror(errno));
	}
	if (!hwloc_bitmap_isequal(got, cpus)) {
		hwloc_bitmap_list_snprintf(want_s, sizeof want_s, cpus);
		hwloc_bitmap_list_snprintf(got_s, sizeof got_s, got);
		return mirai__fail(err, MIRAI_ETOPO,
		    "binding to %s (cpus %s) did not hold: bound to cpus %s",
		    what, want_s, got_s);
	}
	return 0;
}

int
mirai__topo_bind(const char *kind, int index, char *desc, size_t len,
    int *wrapped, mirai_errmsg *err)
{
	return mirai__topo_bind_range(kind, index, 1, desc, len, wrapped, err);
}

int
mirai__topo_bind_range(const char *kind, int index, int n, char *desc,
    size_t len, int *wrapped, mirai_errmsg *err)
{
	hwloc_bitmap_t usable = NULL, cpus = NULL, got = NULL, one = NULL,
		       logicals = NULL;
	hwloc_obj_type_t type;
	hwloc_topology_t t;
	char what[64], cpus_s[256], units_s[48];
	unsigned logical = 0;
	int count, rv;

	if (wrapped != NULL) {
		*wrapped = 0;
	}
	if (desc != NULL && len > 0) {
		desc[0] = '\0';
	}
	if (kind == NULL || strcmp(kind, "none") == 0) {
		if (desc != NULL && len > 0) {
			snprintf(desc, len, "none");
		}
		return 0;
	}
	if (kind_type(kind, &type) != 0) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "cannot bind to '%s': the kinds are core, numa, socket "
		    "and none",
		    kind);
	}
	if (index < 0 || n < 1) {
		return mirai__fail(err, MIRAI_EINVAL,
		    "cannot bind to %d %s from %d: the index must be 0 or "
		    "more, the count 1 or more", n, kind, index);
	}
	if ((t = get_topology(err)) == NULL) {
		return MIRAI_ETOPO;
	}
	/* A topology read from XML describes another machine: hwloc would
	 * accept the binding and do nothing. */
	if (!hwloc_topology_is_thissystem(t)) {
		return mirai__fail(err, MIRAI_ETOPO,
		    "cannot bind: hwloc describes another machine (is "
		    "HWLOC_XMLFILE or HWLOC_SYNTHETIC set?)");
	}
	if ((usable = hwloc_bitmap_alloc()) == NULL ||
	    (cpus = hwloc_bitmap_alloc()) == NULL ||
	    (got = hwloc_bitmap_alloc()) == NULL ||
	    (one = hwloc_bitmap_alloc()) == NULL ||
	    (logicals = hwloc_bitmap_alloc()) == NULL) {
		rv = mirai__fail(err, MIRAI_ENOMEM, "out of memory");
		goto out;
	}
	pthread_mutex_lock(&topo_mtx);
	if ((rv = usable_cpus(t, usable, err)) != 0) {
		goto unlock;
	}
	if ((count = units(t, type, usable, -1, NULL, NULL)) == 0) {
		rv = mirai__fail(err, MIRAI_ETOPO,
		    "cannot bind to %s %d: no %s has a CPU this process "
		    "may use",
		    kind, index, kind);
		goto unlock;
	}
	/* n units from index on, each wrapping round on its own. */
	for (int j = 0; j < n; j++) {
		units(t, type, usable, (int) (((long long) index + j) % count),
		    one, &logical);
		hwloc_bitmap_or(cpus, cpus, one);
		hwloc_bitmap_set(logicals, logical);
	}
	hwloc_bitmap_list_snprintf(units_s, sizeof units_s, logicals);
	snprintf(what, sizeof what, "%s %s", kind, units_s);
	rv = bind_and_check(t, cpus, got, what, err);
unlock:
	pthread_mutex_unlock(&topo_mtx);
	if (rv == 0) {
		if (wrapped != NULL) {
			*wrapped = (long long) index + n > count;
		}
		if (desc != NULL && len > 0) {
			hwloc_bitmap_list_snprintf(cpus_s, sizeof cpus_s, cpus);
			snprintf(desc, len, "%s: cpus %s", what, cpus_s);
		}
	}
out:
	hwloc_bitmap_free(usable);
	hwloc_bitmap_free(cpus);
	hwloc_bitmap_free(got);
	hwloc_bitmap_free(one);
	hwloc_bitmap_free(logicals);
	return rv;
}

int
mirai__topo_count(const char *kind)
{
	hwloc_bitmap_t usable;
	hwloc_obj_type_t type;
	hwloc_topology_t t;
	int count = 0;

	if (kind == NULL || kind_type(kind, &type) != 0 ||
	    (t = get_topology(NULL)) == NULL ||
	    (usable = hwloc_bitmap_alloc()) == NULL) {
		return 0;
	}
	pthread_mutex_lock(&topo_mtx);
	if (usable_cpus(t, usable, NULL) == 0) {
		count = units(t, type, usable, -1, NULL, NULL);
	}
	pthread_mutex_unlock(&topo_mtx);
	hwloc_bitmap_free(usable);
	return count;
}
