/*
 * topo.c: CPU topology and binding.  The only file that will call hwloc;
 * reading the current binding needs only the affinity mask.
 */

#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

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
