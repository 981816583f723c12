/*
 * test_hostfile.c: unit tests of the host list parsers: lib/hostfile.c
 * (builder, API), lib/hostfile_lines.c and lib/hostfile_slurm.c; and of
 * the launch plan made from a host list (lib/launch.c, nothing started).
 *
 * Table-driven: realistic files of every format with what they must give,
 * bad lines with the exact message (source and line) they must give, then
 * the environment of each batch scheduler, the argument checks and the
 * limits.  A list is compared as one string, "user@name:slots/max#line"
 * per host, so that a failure shows the whole list.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mirai.h"

/* A list as one string: "node01:4 alice@gpu01:2/4#3", lines only when
 * want_lines, so that tables stay readable where lines do not matter. */
static char *
render(const mirai_hostlist *l, int want_lines)
{
	size_t cap = 64, len = 0;
	char *s = malloc(cap);

	assert_non_null(s);
	s[0] = '\0';
	for (size_t i = 0; i < l->n; i++) {
		const mirai_host *h = &l->hosts[i];
		char one[600];
		int k;

		k = snprintf(one, sizeof one, "%s%s%s%s:%d", i > 0 ? " " : "",
		    h->user, h->user[0] != '\0' ? "@" : "", h->name, h->slots);
		if (h->max_slots != 0) {
			k += snprintf(one + k, sizeof one - (size_t) k, "/%d",
			    h->max_slots);
		}
		if (want_lines) {
			k += snprintf(one + k, sizeof one - (size_t) k, "#%d",
			    h->line);
		}
		while (len + (size_t) k + 1 > cap) {
			cap *= 2;
			s = realloc(s, cap);
			assert_non_null(s);
		}
		memcpy(s + len, one, (size_t) k + 1);
		len += (size_t) k;
	}
	return s;
}

/* The list's invariants, whatever it came from. */
static void
check_list(const mirai_hostlist *l)
{
	size_t total = 0;

	assert_true(l->n > 0);
	for (size_t i = 0; i < l->n; i++) {
		assert_non_null(l->hosts[i].user);
		assert_non_null(l->hosts[i].name);
		assert_true(l->hosts[i].name[0] != '\0');
		assert_true(l->hosts[i].slots >= 1);
		assert_true(l->hosts[i].max_slots == 0 ||
		    l->hosts[i].max_slots >= l->hosts[i].slots);
		total += (size_t) l->hosts[i].slots;
	}
	assert_int_equal(l->total_slots, total);
}

static void
expect_list(const mirai_hostlist *l, int format, const char *hosts,
    int want_lines, size_t total)
{
	char *s = render(l, want_lines);

	check_list(l);
	assert_string_equal(s, hosts);
	assert_int_equal(l->total_slots, total);
	assert_int_equal(l->format, format);
	free(s);
}

/* ---- good files ------------------------------------------------------- */

typedef struct good_case {
	const char *what;
	int format; /* given to the parser */
	const char *text;
	int parsed; /* what list->format must say */
	const char *hosts;
	size_t total;
} good_case;

static const good_case good_cases[] = {
	{"Open MPI hostfile with comments, user@, keywords and repeats",
	    MIRAI_HOSTS_AUTO,
	    "# Open MPI hostfile for the lab cluster\n"
	    "# (comments and blank lines are ignored)\n"
	    "\n"
	    "node01.lab.example.org slots=8 max_slots=16   # head node\n"
	    "node02.lab.example.org slots=8\n"
	    "alice@gpu01 slots=4 max-slots=4\n"
	    "node03 count=2\n"
	    "node04   slots = 2\n"
	    "# node05 is down\n"
	    "node02.lab.example.org slots=4\n"
	    "fe80::1 slots=2\n"
	    "localhost\n",
	    MIRAI_HOSTS_OPENMPI,
	    "node01.lab.example.org:8/16#4 node02.lab.example.org:12#5 "
	    "alice@gpu01:4/4#6 node03:2#7 node04:2#8 fe80::1:2#11 "
	    "localhost:1#12",
	    31},
	{"Open MPI: the other max_slots spellings, tabs, CRLF",
	    MIRAI_HOSTS_AUTO,
	    "a\tslots=2\tslots_max=4\r\n"
	    "b slots=1 slots-max=3\r\n"
	    "[::1] max_slots=2\r\n",
	    MIRAI_HOSTS_OPENMPI, "a:2/4#1 b:1/3#2 ::1:1/2#3", 4},
	{"Open MPI: maxima add up, and a repeat without one drops it",
	    MIRAI_HOSTS_AUTO,
	    "a slots=2 max_slots=4\n"
	    "b slots=2 max_slots=4\n"
	    "a slots=1 max_slots=2\n"
	    "b slots=1\n",
	    MIRAI_HOSTS_OPENMPI, "a:3/6#1 b:3#2", 6},
	{"Open MPI: same name, other user, is another host",
	    MIRAI_HOSTS_OPENMPI,
	    "node01\n"
	    "alice@node01 slots=2\n"
	    "node01\n"
	    "alice@node01\n",
	    MIRAI_HOSTS_OPENMPI, "node01:2#1 alice@node01:3#2", 5},
	{"MPICH machine file",
	    MIRAI_HOSTS_AUTO,
	    "# MPICH / Hydra machine file\n"
	    "node01:4\n"
	    "node02:4   # second node\n"
	    "node03\n"
	    "alice@node04:2\n"
	    "[::1]:2\n"
	    "[fe80::1%eth0]:1\n"
	    "node01:2\n",
	    MIRAI_HOSTS_MPICH,
	    "node01:6#2 node02:4#3 node03:1#4 alice@node04:2#5 ::1:2#6 "
	    "fe80::1%eth0:1#7",
	    16},
	{"PBS/Torque PBS_NODEFILE: one line per slot",
	    MIRAI_HOSTS_AUTO,
	    "cn001.hpc.example.edu\n"
	    "cn001.hpc.example.edu\n"
	    "cn001.hpc.example.edu\n"
	    "cn001.hpc.example.edu\n"
	    "cn002.hpc.example.edu\n"
	    "cn002.hpc.example.edu\n"
	    "cn003.hpc.example.edu\n",
	    MIRAI_HOSTS_NODEFILE,
	    "cn001.hpc.example.edu:4#1 cn002.hpc.example.edu:2#5 "
	    "cn003.hpc.example.edu:1#7",
	    7},
	{"node file with interleaved repeats and no final newline",
	    MIRAI_HOSTS_NODEFILE,
	    "n1\nn2\nn1\nn3\nn2\nn1",
	    MIRAI_HOSTS_NODEFILE, "n1:3#1 n2:2#2 n3:1#4", 6},
	{"plain names: bare IPv6 and a node file read as Open MPI",
	    MIRAI_HOSTS_OPENMPI,
	    "::1\nnode_07\n::1\n",
	    MIRAI_HOSTS_OPENMPI, "::1:2#1 node_07:1#2", 3},
	{"SGE PE_HOSTFILE",
	    MIRAI_HOSTS_AUTO,
	    "node01.cluster 4 all.q@node01.cluster UNDEFINED\n"
	    "node02.cluster 4 all.q@node02.cluster UNDEFINED\n"
	    "node03.cluster 2 gpu.q@node03.cluster 0,1\n",
	    MIRAI_HOSTS_SGE,
	    "node01.cluster:4#1 node02.cluster:4#2 node03.cluster:2#3", 10},
	{"SGE: a host in two queues adds up",
	    MIRAI_HOSTS_SGE,
	    "node01 2 all.q@node01 UNDEFINED\n"
	    "node02 1 all.q@node02 UNDEFINED\n"
	    "node01 2 long.q@node01 UNDEFINED\n",
	    MIRAI_HOSTS_SGE, "node01:4#1 node02:1#2", 5},
	{"LSF LSB_MCPU_HOSTS",
	    MIRAI_HOSTS_AUTO, "hostA 4 hostB 2 hostC 8\n",
	    MIRAI_HOSTS_LSF, "hostA:4#1 hostB:2#1 hostC:8#1", 14},
	{"LSF: one pair", MIRAI_HOSTS_AUTO, "ls-node17 16",
	    MIRAI_HOSTS_LSF, "ls-node17:16#1", 16},
	{"LSF forced: pairs on several lines, repeats add",
	    MIRAI_HOSTS_LSF, "hostA 4 hostB 2\nhostA 1\n",
	    MIRAI_HOSTS_LSF, "hostA:5#1 hostB:2#1", 7},
	{"Slurm node list: ranges and single numbers",
	    MIRAI_HOSTS_AUTO, "tux[0-5,12,20-25]\n",
	    MIRAI_HOSTS_SLURM,
	    "tux0:1 tux1:1 tux2:1 tux3:1 tux4:1 tux5:1 tux12:1 tux20:1 "
	    "tux21:1 tux22:1 tux23:1 tux24:1 tux25:1",
	    13},
	{"Slurm: zero padding is kept", MIRAI_HOSTS_AUTO, "n[008-011]",
	    MIRAI_HOSTS_SLURM, "n008:1 n009:1 n010:1 n011:1", 4},
	{"Slurm: two groups in one name", MIRAI_HOSTS_AUTO,
	    "rack[1-2]-node[01-02]", MIRAI_HOSTS_SLURM,
	    "rack1-node01:1 rack1-node02:1 rack2-node01:1 rack2-node02:1", 4},
	{"Slurm: names at top level, one per line too", MIRAI_HOSTS_AUTO,
	    "tux[1-3],login1,gpu[01-02]\n# more\ntux1 io[7]\n",
	    MIRAI_HOSTS_SLURM,
	    "tux1:2#1 tux2:1#1 tux3:1#1 login1:1#1 gpu01:1#1 gpu02:1#1 "
	    "io7:1#3",
	    8},
	{"Slurm forced: a name without brackets", MIRAI_HOSTS_SLURM,
	    "login1,login2", MIRAI_HOSTS_SLURM, "login1:1 login2:1", 2},
};

static void
test_good(void **state)
{
	for (size_t i = 0; i < sizeof good_cases / sizeof good_cases[0];
	     i++) {
		const good_case *c = &good_cases[i];
		mirai_errmsg err   = {{0}};
		mirai_hostlist *l  = NULL;
		int rv, lines = strchr(c->hosts, '#') != NULL;

		char *got;

		rv = mirai_hosts_parse(c->text, strlen(c->text), c->format,
		    "hosts", &l, &err);
		if (rv != 0) {
			fail_msg("%s: %s", c->what, err.text);
		}
		got = render(l, lines);
		if (strcmp(got, c->hosts) != 0) {
			fail_msg("%s: got '%s'", c->what, got);
		}
		free(got);
		expect_list(l, c->parsed, c->hosts, lines, c->total);
		mirai_hostlist_free(l);
	}
}

/* ---- recognising the format ------------------------------------------- */

typedef struct detect_case {
	const char *text;
	int format;
} detect_case;

static const detect_case detect_cases[] = {
	{"node01 slots=4\n", MIRAI_HOSTS_OPENMPI},
	{"node01\nnode02\nnode03 max_slots=2\n", MIRAI_HOSTS_OPENMPI},
	{"node01 slot=4\n", MIRAI_HOSTS_OPENMPI}, /* to say 'slot' is wrong */
	{"node01:4\n", MIRAI_HOSTS_MPICH},
	{"node01\nnode02\nnode03:2\n", MIRAI_HOSTS_MPICH},
	{"[::1]:4\n", MIRAI_HOSTS_MPICH},
	{"bob@node01:2\n", MIRAI_HOSTS_MPICH},
	{"node01\nnode01\nnode02\n", MIRAI_HOSTS_NODEFILE},
	{"::1\n", MIRAI_HOSTS_NODEFILE},
	{"fe80::1\n", MIRAI_HOSTS_NODEFILE},
	{"n01 4 all.q@n01 UNDEFINED\n", MIRAI_HOSTS_SGE},
	{"# SGE\nn01 4 all.q@n01 UNDEFINED\nn02 4 all.q@n02 UNDEFINED\n",
	    MIRAI_HOSTS_SGE},
	{"n01 4 all.q@n01 0\n", MIRAI_HOSTS_SGE}, /* queue@host: not LSF */
	{"hostA 4 hostB 2\n", MIRAI_HOSTS_LSF},
	{"hostA 4\n", MIRAI_HOSTS_LSF},
	{"tux[0-5]\n", MIRAI_HOSTS_SLURM},
	{"login1\ntux[1-2]\n", MIRAI_HOSTS_SLURM},
};

static void
test_detect(void **state)
{
	for (size_t i = 0; i < sizeof detect_cases / sizeof detect_cases[0];
	     i++) {
		const detect_case *c = &detect_cases[i];
		mirai_errmsg err     = {{0}};
		mirai_hostlist *l    = NULL;
		int rv;

		rv = mirai_hosts_parse(c->text, strlen(c->text),
		    MIRAI_HOSTS_AUTO, "hosts", &l, &err);
		if (c->format == MIRAI_HOSTS_OPENMPI && rv != 0) {
			/* Recognised, then refused with Open MPI's words. */
			assert_int_equal(rv, MIRAI_EPARSE);
			assert_string_equal(err.text,
			    "hosts:1: unknown keyword 'slot'");
			continue;
		}
		if (rv != 0) {
			fail_msg("'%s': %s", c->text, err.text);
		}
		if (l->format != c->format) {
			fail_msg("'%s' read as %s, not %s", c->text,
			    mirai_hosts_format_name(l->format),
			    mirai_hosts_format_name(c->format));
		}
		check_list(l);
		mirai_hostlist_free(l);
	}
}

/* ---- bad files -------------------------------------------------------- */

typedef struct bad_case {
	int format;
	const char *text;
	const char *msg;
} bad_case;

static const bad_case bad_cases[] = {
	{MIRAI_HOSTS_AUTO, "node01 slots=4\nnode02 slot=2\n",
	    "hosts:2: unknown keyword 'slot'"},
	{MIRAI_HOSTS_AUTO,
	    "# lines 1 to 11 are fine\n#\n#\n#\n#\n"
	    "node01 slots=2\nnode02 slots=2\nnode03 slots=2\n"
	    "node04 slots=2\n\n\n"
	    "node12 slots=0\n",
	    "hosts:12: slots must be a positive integer"},
	{MIRAI_HOSTS_AUTO,
	    "a\nb\nc\nd\ne\nf slots=1\ng slots=4 max_slots=2\n",
	    "hosts:7: max_slots (2) is less than slots (4)"},
	{MIRAI_HOSTS_AUTO, "a slots=four\n",
	    "hosts:1: slots must be a positive integer"},
	{MIRAI_HOSTS_AUTO, "a slots=-1\n",
	    "hosts:1: slots must be a positive integer"},
	{MIRAI_HOSTS_AUTO, "a slots=\n",
	    "hosts:1: slots must be a positive integer"},
	{MIRAI_HOSTS_AUTO, "a slots=1000001\n",
	    "hosts:1: slots must be at most 1000000"},
	{MIRAI_HOSTS_AUTO, "a slots=99999999999999999999999\n",
	    "hosts:1: slots must be at most 1000000"},
	{MIRAI_HOSTS_AUTO, "a max_slots=0\n",
	    "hosts:1: max_slots must be a positive integer"},
	{MIRAI_HOSTS_AUTO, "a slots=2 count=3\n",
	    "hosts:1: slots given twice"},
	{MIRAI_HOSTS_OPENMPI, "node01 4\n",
	    "hosts:1: unexpected '4' (expected slots=N or max_slots=N)"},
	{MIRAI_HOSTS_OPENMPI, "node01:4\n",
	    "hosts:1: invalid character ':' in host name 'node01:4'"},
	{MIRAI_HOSTS_AUTO, "a slots=1000000\nb\na slots=1\n",
	    "hosts:3: host 'a' has more than 1000000 slots"},
	{MIRAI_HOSTS_MPICH, "node01:0\n",
	    "hosts:1: slots must be a positive integer"},
	{MIRAI_HOSTS_MPICH, "node01:\n",
	    "hosts:1: slots must be a positive integer"},
	{MIRAI_HOSTS_MPICH, "fe80::1:4\n",
	    "hosts:1: IPv6 address 'fe80::1:4' must be in brackets ([::1]:4)"},
	{MIRAI_HOSTS_MPICH, "[::1\n", "hosts:1: unterminated '[' in '[::1'"},
	{MIRAI_HOSTS_MPICH, "[::1]4\n", "hosts:1: unexpected '4' after ']'"},
	{MIRAI_HOSTS_MPICH, "[::g]:2\n",
	    "hosts:1: invalid IPv6 address '::g'"},
	{MIRAI_HOSTS_MPICH, "[node01]:2\n",
	    "hosts:1: invalid IPv6 address 'node01'"},
	{MIRAI_HOSTS_MPICH, "node01:2 node02:2\n",
	    "hosts:1: unexpected 'node02:2' after the host (one host per "
	    "line)"},
	{MIRAI_HOSTS_AUTO, "node_01\nnode$02\n",
	    "hosts:2: invalid character '$' in host name 'node$02'"},
	{MIRAI_HOSTS_AUTO, "node01\nnode\x01x\n",
	    "hosts:2: invalid character 0x01 in host name 'node?x'"},
	{MIRAI_HOSTS_AUTO, "-oProxyCommand\n",
	    "hosts:1: host name '-oProxyCommand' cannot start with '-'"},
	{MIRAI_HOSTS_AUTO, "@node01\n", "hosts:1: empty user name"},
	{MIRAI_HOSTS_AUTO, "bob@\n", "hosts:1: empty host name"},
	{MIRAI_HOSTS_AUTO, "a!b@node01\n",
	    "hosts:1: invalid character '!' in user name 'a!b'"},
	{MIRAI_HOSTS_AUTO, "a@b@node01\n",
	    "hosts:1: invalid character '@' in host name 'b@node01'"},
	{MIRAI_HOSTS_AUTO, "fe80::zz\n",
	    "hosts:1: invalid IPv6 address 'fe80::zz'"},
	{MIRAI_HOSTS_NODEFILE, "node01\nnode02 node03\n",
	    "hosts:2: unexpected 'node03' after the host (one host per line)"},
	{MIRAI_HOSTS_AUTO,
	    "n01 4 all.q@n01 UNDEFINED\nn02 0 all.q@n02 UNDEFINED\n",
	    "hosts:2: slots must be a positive integer"},
	{MIRAI_HOSTS_SGE, "n01\n",
	    "hosts:1: expected 'host slots queue processors'"},
	{MIRAI_HOSTS_SGE, "n01 4 all.q@n01 UNDEFINED extra\n",
	    "hosts:1: unexpected 'extra' after the processor range"},
	{MIRAI_HOSTS_LSF, "hostA 4 hostB\n",
	    "hosts:1: host 'hostB' has no slot count"},
	{MIRAI_HOSTS_LSF, "hostA 4 hostB x\n",
	    "hosts:1: slots must be a positive integer"},
	{MIRAI_HOSTS_AUTO, "tux[5-2]\n",
	    "hosts:1: reversed range '5-2' in 'tux[5-2]'"},
	{MIRAI_HOSTS_AUTO, "login1\ntux[1-3\n",
	    "hosts:2: unterminated '[' in 'tux[1-3'"},
	{MIRAI_HOSTS_SLURM, "tux[]\n", "hosts:1: invalid range '' in 'tux[]'"},
	{MIRAI_HOSTS_SLURM, "tux[1-a]\n",
	    "hosts:1: invalid range '1-a' in 'tux[1-a]'"},
	{MIRAI_HOSTS_SLURM, "tux[1,,2]\n",
	    "hosts:1: invalid range '' in 'tux[1,,2]'"},
	{MIRAI_HOSTS_SLURM, "tux[1234567890]\n",
	    "hosts:1: invalid range '1234567890' in 'tux[1234567890]'"},
	{MIRAI_HOSTS_SLURM, "tux[[1]]\n", "hosts:1: nested '[' in 'tux[[1]]'"},
	{MIRAI_HOSTS_SLURM, "tux1]\n", "hosts:1: unexpected ']' in 'tux1]'"},
	{MIRAI_HOSTS_SLURM, "tux[1-3],,login1\n", "hosts:1: empty host name"},
	{MIRAI_HOSTS_SLURM, "tux[1-3],\n", "hosts:1: empty host name"},
	{MIRAI_HOSTS_SLURM, "tu$x[1-3]\n",
	    "hosts:1: invalid character '$' in host name 'tu$x[1-3]'"},
	{MIRAI_HOSTS_SLURM, "-x[1-2]\n",
	    "hosts:1: host name '-x1' cannot start with '-'"},
	{MIRAI_HOSTS_SLURM, "x[1-1000001]\n",
	    "hosts:1: 'x[1-1000001]' expands to more than 1000000 hosts"},
	{MIRAI_HOSTS_SLURM, "x[0-999][0-999][0-1]\n",
	    "hosts:1: 'x[0-999][0-999][0-1]' expands to more than 1000000 "
	    "hosts"},
	{MIRAI_HOSTS_AUTO, "", "hosts: no hosts"},
	{MIRAI_HOSTS_AUTO, "# nothing here\n\n   \t\n# at all\n",
	    "hosts: no hosts"},
	{MIRAI_HOSTS_SLURM, "# none\n", "hosts: no hosts"},
};

static void
test_bad(void **state)
{
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		const bad_case *c = &bad_cases[i];
		mirai_errmsg err  = {{0}};
		mirai_hostlist *l = (mirai_hostlist *) &err; /* must stay */
		int rv;

		rv = mirai_hosts_parse(c->text, strlen(c->text), c->format,
		    "hosts", &l, &err);
		if (rv != MIRAI_EPARSE || strcmp(err.text, c->msg) != 0) {
			fail_msg("'%s': rv %d, '%s', expected '%s'", c->text,
			    rv, err.text, c->msg);
		}
		assert_ptr_equal(l, (mirai_hostlist *) &err);
		/* The code alone must do without a message buffer. */
		assert_int_equal(mirai_hosts_parse(c->text, strlen(c->text),
		    c->format, "hosts", &l, NULL), MIRAI_EPARSE);
	}
}

/* Text the tables cannot hold: NUL bytes, long lines, many hosts. */
static void
test_bad_limits(void **state)
{
	mirai_errmsg err  = {{0}};
	mirai_hostlist *l = NULL;
	char name[300], line[5000];
	size_t n;
	char *big;

	assert_int_equal(mirai_hosts_parse("a\nb\0c\n", 6, MIRAI_HOSTS_AUTO,
	    "hosts", &l, &err), MIRAI_EPARSE);
	assert_string_equal(err.text, "hosts:2: NUL byte in the line");

	/* 4096 bytes is the longest line, comment included. */
	memset(line, ' ', sizeof line);
	memcpy(line, "node01\n#", 8);
	line[8 + 4095] = '\n';
	assert_int_equal(mirai_hosts_parse(line, 8 + 4096, MIRAI_HOSTS_AUTO,
	    "hosts", &l, &err), 0);
	assert_int_equal(l->n, 1);
	mirai_hostlist_free(l);
	line[8 + 4095] = ' ';
	line[8 + 4096] = '\n';
	assert_int_equal(mirai_hosts_parse(line, 8 + 4097, MIRAI_HOSTS_AUTO,
	    "hosts", &l, &err), MIRAI_EPARSE);
	assert_string_equal(err.text, "hosts:2: line longer than 4096 bytes");

	/* A host name has at most 255 characters. */
	memset(name, 'a', sizeof name);
	assert_int_equal(mirai_hosts_parse(name, 255, MIRAI_HOSTS_NODEFILE,
	    "hosts", &l, &err), 0);
	assert_int_equal(strlen(l->hosts[0].name), 255);
	mirai_hostlist_free(l);
	assert_int_equal(mirai_hosts_parse(name, 256, MIRAI_HOSTS_NODEFILE,
	    "hosts", &l, &err), MIRAI_EPARSE);
	assert_string_equal(err.text, "hosts:1: host name 'aaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is longer "
	    "than 255 characters");

	/* More than a million host names is refused, repeats included. */
	n   = 1000001;
	big = malloc(2 * n);
	assert_non_null(big);
	for (size_t i = 0; i < n; i++) {
		big[2 * i]     = 'a';
		big[2 * i + 1] = '\n';
	}
	assert_int_equal(mirai_hosts_parse(big, 2 * n, MIRAI_HOSTS_NODEFILE,
	    "hosts", &l, &err), MIRAI_EPARSE);
	assert_string_equal(err.text,
	    "hosts:1000001: more than 1000000 hosts");
	assert_int_equal(mirai_hosts_parse(big, 2 * (n - 1),
	    MIRAI_HOSTS_NODEFILE, "hosts", &l, &err), 0);
	assert_int_equal(l->n, 1);
	assert_int_equal(l->hosts[0].slots, 1000000);
	assert_int_equal(l->total_slots, 1000000);
	mirai_hostlist_free(l);
	free(big);
}

/* ---- Slurm variables -------------------------------------------------- */

typedef struct slurm_case {
	const char *nodes;
	const char *tasks;
	int rv;
	const char *want; /* the hosts, or the message */
	size_t total;
} slurm_case;

static const slurm_case slurm_cases[] = {
	{"tux[0-5,12,20-25]", NULL, 0,
	    "tux0:1 tux1:1 tux2:1 tux3:1 tux4:1 tux5:1 tux12:1 tux20:1 "
	    "tux21:1 tux22:1 tux23:1 tux24:1 tux25:1",
	    13},
	{"n[008-011]", "", 0, "n008:1 n009:1 n010:1 n011:1", 4},
	{"n[8-11]", "1(x4)", 0, "n8:1 n9:1 n10:1 n11:1", 4},
	{"rack[1-2]-node[01-02]", "2(x3),1", 0,
	    "rack1-node01:2 rack1-node02:2 rack2-node01:2 rack2-node02:1", 7},
	{"tux[1-3],login1,gpu[01-02]", "4", 0,
	    "tux1:4 tux2:4 tux3:4 login1:4 gpu01:4 gpu02:4", 24},
	{"gpu[01-02],cpu[1-3]", "8(x2),32(x3)", 0,
	    "gpu01:8 gpu02:8 cpu1:32 cpu2:32 cpu3:32", 112},
	{"cn[001-002]", "72(x2)", 0, "cn001:72 cn002:72", 144},
	{" login1\n", " 1 ", 0, "login1:1", 1},
	{"n[1-4]", "2(x3)", MIRAI_EPARSE,
	    "SLURM_TASKS_PER_NODE: 3 counts for 4 nodes", 0},
	{"tux[1-3]", "2(x3),1", MIRAI_EPARSE,
	    "SLURM_TASKS_PER_NODE: 4 counts for 3 nodes", 0},
	{"tux[1-3]", "1,2", MIRAI_EPARSE,
	    "SLURM_TASKS_PER_NODE: 2 counts for 3 nodes", 0},
	{"n[1-4]", "2(x3", MIRAI_EPARSE,
	    "SLURM_TASKS_PER_NODE: invalid count '2(x3' (expected a list "
	    "like 2(x3),1)",
	    0},
	{"n[1-4]", "2(y3)", MIRAI_EPARSE,
	    "SLURM_TASKS_PER_NODE: invalid count '2(y3)' (expected a list "
	    "like 2(x3),1)",
	    0},
	{"n[1-2]", "2,,", MIRAI_EPARSE,
	    "SLURM_TASKS_PER_NODE: invalid count '' (expected a list like "
	    "2(x3),1)",
	    0},
	{"n[1-4]", "0", MIRAI_EPARSE,
	    "SLURM_TASKS_PER_NODE: tasks per node must be a positive integer",
	    0},
	{"n[1-2]", "2(x0)", MIRAI_EPARSE,
	    "SLURM_TASKS_PER_NODE: repeat count must be a positive integer",
	    0},
	{"n[1-2]", "1(x1000001)", MIRAI_EPARSE,
	    "SLURM_TASKS_PER_NODE: repeat count must be at most 1000000", 0},
	{"n[5-2]", NULL, MIRAI_EPARSE,
	    "SLURM_JOB_NODELIST: reversed range '5-2' in 'n[5-2]'", 0},
	{"n[1-2", NULL, MIRAI_EPARSE,
	    "SLURM_JOB_NODELIST: unterminated '[' in 'n[1-2'", 0},
	{"", NULL, MIRAI_EPARSE, "SLURM_JOB_NODELIST: no hosts", 0},
	{"a[0-999][0-999][0-9]", NULL, MIRAI_EPARSE,
	    "SLURM_JOB_NODELIST: 'a[0-999][0-999][0-9]' expands to more than "
	    "1000000 hosts",
	    0},
	{"x[0-999999],y[0-1]", NULL, MIRAI_EPARSE,
	    "SLURM_JOB_NODELIST: more than 1000000 hosts", 0},
	{"n[1-2] n3", NULL, MIRAI_EPARSE,
	    "SLURM_JOB_NODELIST: invalid character ' ' in host name "
	    "'n[1-2] n3'",
	    0},
};

static void
test_slurm(void **state)
{
	for (size_t i = 0; i < sizeof slurm_cases / sizeof slurm_cases[0];
	     i++) {
		const slurm_case *c = &slurm_cases[i];
		mirai_errmsg err    = {{0}};
		mirai_hostlist *l   = NULL;
		int rv;

		rv = mirai_hosts_slurm(c->nodes, c->tasks, &l, &err);
		if (rv != c->rv) {
			fail_msg("'%s' '%s': rv %d (%s)", c->nodes,
			    c->tasks != NULL ? c->tasks : "(null)", rv,
			    err.text);
		}
		if (rv != 0) {
			assert_string_equal(err.text, c->want);
			assert_null(l);
			continue;
		}
		expect_list(l, MIRAI_HOSTS_SLURM, c->want, 0, c->total);
		for (size_t k = 0; k < l->n; k++) {
			assert_int_equal(l->hosts[k].line, 0);
		}
		mirai_hostlist_free(l);
	}
}

/* ---- command-line lists ----------------------------------------------- */

static const slurm_case arg_cases[] = {
	{"a,b:2,user@c:4", NULL, 0, "a:1 b:2 user@c:4", 7},
	{" node01:4 , node02 ", NULL, 0, "node01:4 node02:1", 5},
	{"[::1]:4,localhost:2", NULL, 0, "::1:4 localhost:2", 6},
	{"a,a:3,b,a", NULL, 0, "a:5 b:1", 6},
	{"a,,b", NULL, MIRAI_EPARSE, "host list item '': empty host name",
	    0},
	{"a,b,", NULL, MIRAI_EPARSE, "host list item '': empty host name",
	    0},
	{"a,b:0", NULL, MIRAI_EPARSE,
	    "host list item 'b:0': slots must be a positive integer", 0},
	{"::1:4", NULL, MIRAI_EPARSE,
	    "host list item '::1:4': IPv6 address '::1:4' must be in "
	    "brackets ([::1]:4)",
	    0},
	{"a b", NULL, MIRAI_EPARSE,
	    "host list item 'a b': invalid character ' ' in host name 'a b'",
	    0},
	{"", NULL, MIRAI_EPARSE, "host list: no hosts", 0},
	{"  ", NULL, MIRAI_EPARSE, "host list: no hosts", 0},
};

static void
test_arg(void **state)
{
	for (size_t i = 0; i < sizeof arg_cases / sizeof arg_cases[0]; i++) {
		const slurm_case *c = &arg_cases[i];
		mirai_errmsg err    = {{0}};
		mirai_hostlist *l   = NULL;
		int rv;

		rv = mirai_hosts_from_arg(c->nodes, &l, &err);
		if (rv != c->rv) {
			fail_msg("'%s': rv %d (%s)", c->nodes, rv, err.text);
		}
		if (rv != 0) {
			assert_string_equal(err.text, c->want);
			assert_null(l);
			continue;
		}
		expect_list(l, MIRAI_HOSTS_MPICH, c->want, 0, c->total);
		mirai_hostlist_free(l);
	}
}

/* ---- files and the environment ---------------------------------------- */

/* A file in the temporary directory holding text; its path to path. */
static void
write_temp(char *path, size_t cap, const char *text)
{
	const char *dir = getenv("TMPDIR");
	FILE *f;
	int fd;

	snprintf(path, cap, "%s/hosts-XXXXXX",
	    dir != NULL && *dir != '\0' ? dir : "/tmp");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void
test_load(void **state)
{
	mirai_errmsg err  = {{0}};
	mirai_hostlist *l = NULL;
	char path[512], want[600];

	write_temp(path, sizeof path,
	    "# lab\nnode01 slots=2\nalice@node02 slots=4 max_slots=8\n");
	assert_int_equal(mirai_hosts_load(path, MIRAI_HOSTS_AUTO, &l, &err),
	    0);
	expect_list(l, MIRAI_HOSTS_OPENMPI, "node01:2#2 alice@node02:4/8#3",
	    1, 6);
	mirai_hostlist_free(l);
	assert_int_equal(unlink(path), 0);

	/* Messages name the file by its path. */
	write_temp(path, sizeof path, "node01 slots=2\nnode02 slots=0\n");
	assert_int_equal(mirai_hosts_load(path, MIRAI_HOSTS_AUTO, &l, &err),
	    MIRAI_EPARSE);
	snprintf(want, sizeof want,
	    "%s:2: slots must be a positive integer", path);
	assert_string_equal(err.text, want);

	/* The format given wins over what the content looks like. */
	assert_int_equal(mirai_hosts_load(path, MIRAI_HOSTS_NODEFILE, &l,
	    &err), MIRAI_EPARSE);
	snprintf(want, sizeof want, "%s:1: unexpected 'slots=2' after the "
	    "host (one host per line)", path);
	assert_string_equal(err.text, want);
	assert_int_equal(unlink(path), 0);

	/* Gone now: cannot be read. */
	assert_int_equal(mirai_hosts_load(path, MIRAI_HOSTS_AUTO, &l, &err),
	    MIRAI_ENOENT);
	snprintf(want, sizeof want, "%s: No such file or directory", path);
	assert_string_equal(err.text, want);
}

static const char *const batch_vars[] = {
	"SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_TASKS_PER_NODE",
	"SLURM_JOB_CPUS_PER_NODE", "PBS_NODEFILE", "PE_HOSTFILE",
	"LSB_MCPU_HOSTS",
};

/* The tests may run inside a real batch job: forget its variables. */
static void
clear_batch_env(void)
{
	for (size_t i = 0; i < sizeof batch_vars / sizeof batch_vars[0];
	     i++) {
		assert_int_equal(unsetenv(batch_vars[i]), 0);
	}
}

static void
test_env(void **state)
{
	mirai_errmsg err  = {{0}};
	mirai_hostlist *l = (mirai_hostlist *) &err;
	char pbs[512], sge[512], want[600];
	char *lsf;
	size_t off = 0;

	clear_batch_env();
	assert_int_equal(mirai_hosts_from_env(&l, &err), MIRAI_ENOENT);
	assert_string_equal(err.text, "not inside a batch job: none of "
	    "SLURM_JOB_NODELIST, PBS_NODEFILE, PE_HOSTFILE or LSB_MCPU_HOSTS "
	    "is set");
	assert_ptr_equal(l, (mirai_hostlist *) &err);
	assert_int_equal(mirai_hosts_from_env(&l, NULL), MIRAI_ENOENT);

	/* LSF: the variable is one line, as long as the job is big. */
	setenv("LSB_MCPU_HOSTS", "hostA 4 hostB 2", 1);
	assert_int_equal(mirai_hosts_from_env(&l, &err), 0);
	expect_list(l, MIRAI_HOSTS_LSF, "hostA:4#0 hostB:2#0", 1, 6);
	mirai_hostlist_free(l);
	lsf = malloc(1000 * 16);
	assert_non_null(lsf);
	for (int i = 0; i < 1000; i++) {
		off += (size_t) sprintf(lsf + off, "%shost%04d 2",
		    i > 0 ? " " : "", i);
	}
	assert_true(off > 4096);
	setenv("LSB_MCPU_HOSTS", lsf, 1);
	free(lsf);
	assert_int_equal(mirai_hosts_from_env(&l, &err), 0);
	assert_int_equal(l->n, 1000);
	assert_int_equal(l->total_slots, 2000);
	mirai_hostlist_free(l);
	setenv("LSB_MCPU_HOSTS", "hostA 4 hostB", 1);
	assert_int_equal(mirai_hosts_from_env(&l, &err), MIRAI_EPARSE);
	assert_string_equal(err.text,
	    "LSB_MCPU_HOSTS: host 'hostB' has no slot count");

	/* SGE comes before LSF. */
	write_temp(sge, sizeof sge,
	    "node01.cluster 4 all.q@node01.cluster UNDEFINED\n"
	    "node02.cluster 2 all.q@node02.cluster UNDEFINED\n");
	setenv("PE_HOSTFILE", sge, 1);
	assert_int_equal(mirai_hosts_from_env(&l, &err), 0);
	expect_list(l, MIRAI_HOSTS_SGE,
	    "node01.cluster:4#1 node02.cluster:2#2", 1, 6);
	mirai_hostlist_free(l);

	/* PBS before SGE. */
	write_temp(pbs, sizeof pbs, "cn001\ncn001\ncn002\ncn001\n");
	setenv("PBS_NODEFILE", pbs, 1);
	assert_int_equal(mirai_hosts_from_env(&l, &err), 0);
	expect_list(l, MIRAI_HOSTS_NODEFILE, "cn001:3#1 cn002:1#3", 1, 4);
	mirai_hostlist_free(l);
	/* A node file is read as one, however it looks. */
	setenv("PBS_NODEFILE", sge, 1);
	assert_int_equal(mirai_hosts_from_env(&l, &err), MIRAI_EPARSE);
	snprintf(want, sizeof want, "%s:1: unexpected '4' after the host "
	    "(one host per line)", sge);
	assert_string_equal(err.text, want);
	setenv("PBS_NODEFILE", pbs, 1);

	/* Slurm before everything, with either pair of names. */
	setenv("SLURM_NODELIST", "tux[1-2]", 1);
	setenv("SLURM_JOB_CPUS_PER_NODE", "4", 1);
	assert_int_equal(mirai_hosts_from_env(&l, &err), 0);
	expect_list(l, MIRAI_HOSTS_SLURM, "tux1:4#0 tux2:4#0", 1, 8);
	mirai_hostlist_free(l);
	setenv("SLURM_JOB_NODELIST", "rack[1-2]-node[01-02]", 1);
	setenv("SLURM_TASKS_PER_NODE", "2(x3),1", 1);
	assert_int_equal(mirai_hosts_from_env(&l, &err), 0);
	expect_list(l, MIRAI_HOSTS_SLURM, "rack1-node01:2 rack1-node02:2 "
	    "rack2-node01:2 rack2-node02:1", 0, 7);
	mirai_hostlist_free(l);
	setenv("SLURM_TASKS_PER_NODE", "2(x3)", 1);
	assert_int_equal(mirai_hosts_from_env(&l, &err), MIRAI_EPARSE);
	assert_string_equal(err.text,
	    "SLURM_TASKS_PER_NODE: 3 counts for 4 nodes");
	/* Messages name the variables actually read. */
	unsetenv("SLURM_JOB_NODELIST");
	unsetenv("SLURM_TASKS_PER_NODE");
	setenv("SLURM_JOB_CPUS_PER_NODE", "2(x3)", 1);
	assert_int_equal(mirai_hosts_from_env(&l, &err), MIRAI_EPARSE);
	assert_string_equal(err.text,
	    "SLURM_JOB_CPUS_PER_NODE: 3 counts for 2 nodes");
	setenv("SLURM_NODELIST", "tux[2-1]", 1);
	assert_int_equal(mirai_hosts_from_env(&l, &err), MIRAI_EPARSE);
	assert_string_equal(err.text,
	    "SLURM_NODELIST: reversed range '2-1' in 'tux[2-1]'");
	/* Set but empty counts as not set. */
	setenv("SLURM_NODELIST", "", 1);
	assert_int_equal(mirai_hosts_from_env(&l, &err), 0);
	assert_int_equal(l->format, MIRAI_HOSTS_NODEFILE);
	mirai_hostlist_free(l);

	/* A node file that is gone. */
	assert_int_equal(unlink(pbs), 0);
	assert_int_equal(mirai_hosts_from_env(&l, &err), MIRAI_ENOENT);
	snprintf(want, sizeof want, "%s: No such file or directory", pbs);
	assert_string_equal(err.text, want);

	assert_int_equal(unlink(sge), 0);
	clear_batch_env();
}

/* ---- arguments and names ---------------------------------------------- */

static void
test_args(void **state)
{
	mirai_errmsg err  = {{0}};
	mirai_hostlist *l = (mirai_hostlist *) &err;

	assert_int_equal(mirai_hosts_parse(NULL, 0, 0, "hosts", &l, &err),
	    MIRAI_EINVAL);
	assert_int_equal(mirai_hosts_parse("a", 1, 0, "hosts", NULL, &err),
	    MIRAI_EINVAL);
	assert_int_equal(mirai_hosts_parse("a", 1, 7, "hosts", &l, &err),
	    MIRAI_EINVAL);
	assert_string_equal(err.text, "unknown host list format 7");
	assert_int_equal(mirai_hosts_parse("a", 1, -1, "hosts", &l, NULL),
	    MIRAI_EINVAL);
	assert_int_equal(mirai_hosts_load(NULL, 0, &l, &err), MIRAI_EINVAL);
	assert_int_equal(mirai_hosts_load("hosts", 0, NULL, &err),
	    MIRAI_EINVAL);
	assert_int_equal(mirai_hosts_load("hosts", 42, &l, &err),
	    MIRAI_EINVAL);
	assert_int_equal(mirai_hosts_slurm(NULL, "1", &l, &err), MIRAI_EINVAL);
	assert_int_equal(mirai_hosts_slurm("n1", "1", NULL, &err),
	    MIRAI_EINVAL);
	assert_int_equal(mirai_hosts_from_arg(NULL, &l, &err), MIRAI_EINVAL);
	assert_int_equal(mirai_hosts_from_arg("a", NULL, &err), MIRAI_EINVAL);
	assert_int_equal(mirai_hosts_from_env(NULL, &err), MIRAI_EINVAL);
	assert_ptr_equal(l, (mirai_hostlist *) &err);
	mirai_hostlist_free(NULL);

	/* Without a source, messages say "hosts"; on success the message
	 * is left alone. */
	assert_int_equal(mirai_hosts_parse("a slots=0", 9, 0, NULL, &l, &err),
	    MIRAI_EPARSE);
	assert_string_equal(err.text,
	    "hosts:1: slots must be a positive integer");
	assert_int_equal(mirai_hosts_parse("a slots=2", 9, 0, NULL, &l, &err),
	    0);
	assert_string_equal(err.text,
	    "hosts:1: slots must be a positive integer");
	assert_string_equal(l->hosts[0].user, "");
	mirai_hostlist_free(l);
	/* Only len bytes are read: no NUL needed after them. */
	assert_int_equal(mirai_hosts_parse("node01 slots=2", 6, 0, "h", &l,
	    &err), 0);
	expect_list(l, MIRAI_HOSTS_NODEFILE, "node01:1#1", 1, 1);
	mirai_hostlist_free(l);
}

static void
test_format_names(void **state)
{
	static const char *const names[] = {
		"auto", "openmpi", "mpich", "nodefile", "sge", "lsf", "slurm",
	};
	static const int values[] = {
		MIRAI_HOSTS_AUTO, MIRAI_HOSTS_OPENMPI, MIRAI_HOSTS_MPICH,
		MIRAI_HOSTS_NODEFILE, MIRAI_HOSTS_SGE, MIRAI_HOSTS_LSF,
		MIRAI_HOSTS_SLURM,
	};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		assert_string_equal(mirai_hosts_format_name(values[i]),
		    names[i]);
		assert_int_equal(mirai_hosts_format_parse(names[i]), values[i]);
	}
	assert_null(mirai_hosts_format_name(-1));
	assert_null(mirai_hosts_format_name(7));
	assert_int_equal(mirai_hosts_format_parse("pbs"), -1);
	assert_int_equal(mirai_hosts_format_parse("OpenMPI"), -1);
	assert_int_equal(mirai_hosts_format_parse(""), -1);
	assert_int_equal(mirai_hosts_format_parse(NULL), -1);
}

/* ---- across the split ------------------------------------------------ */

/*
 * Paths that cross from one file of the parser to another: line formats
 * into the builder (repeats merged across lines and words), Slurm lists
 * in a file word by word (a fresh expression each), the builder's
 * messages with the line of the text.
 */
/* A call that failed: its code, no output, the message. */
static void
expect_failure(int rv, int want, const void *out, const mirai_errmsg *err,
    const char *msg)
{
	assert_int_equal(rv, want);
	assert_null(out);
	assert_string_equal(err->text, msg);
}

static const struct {
	int format;
	const char *text;
	const char *hosts; /* NULL: an error */
	const char *msg;
} split_cases[] = {
	{MIRAI_HOSTS_SLURM, "tux[1-2] tux[2-3]\ntux1\n", "tux1:2 tux2:2 tux3:1",
	    NULL},
	{MIRAI_HOSTS_SLURM, "tux[1-2] bad[3-1]\n", NULL,
	    "hosts:1: reversed range '3-1' in 'bad[3-1]'"},
	{MIRAI_HOSTS_SLURM, "a[1-2]-b[1-2] c\n", "a1-b1:1 a1-b2:1 a2-b1:1 "
	    "a2-b2:1 c:1", NULL},
	{MIRAI_HOSTS_OPENMPI, "n1 slots=2\nn1 slots=3 max_slots=4\n", "n1:5",
	    NULL},
	{MIRAI_HOSTS_LSF, "n1 2 n2 1 n1 3\n", "n1:5 n2:1", NULL},
	{MIRAI_HOSTS_MPICH, "n1:2\n-n2:1\n", NULL,
	    "hosts:2: host name '-n2' cannot start with '-'"},
	{MIRAI_HOSTS_SGE, "n1 4 q@n1 UNDEFINED\nn1 x q@n1 UNDEFINED\n", NULL,
	    "hosts:2: slots must be a positive integer"},
};

static void
test_split(void **state)
{
	for (size_t i = 0; i < sizeof split_cases / sizeof split_cases[0];
	     i++) {
		mirai_hostlist *l = NULL;
		mirai_errmsg err  = {{0}};
		int rv = mirai_hosts_parse(split_cases[i].text,
		    strlen(split_cases[i].text), split_cases[i].format, NULL,
		    &l, &err);

		if (split_cases[i].hosts == NULL) {
			expect_failure(rv, MIRAI_EPARSE, l, &err, split_cases[i].msg);
			continue;
		}
		assert_int_equal(rv, 0);
		char *got = render(l, 0);
		assert_string_equal(got, split_cases[i].hosts);
		free(got);
		mirai_hostlist_free(l);
	}
}

/* ---- the launch plan ------------------------------------------------- */

/*
 * Hostfile text and options in, the plan out as one string: a server a
 * word, "host/k@unit" (k-th server of its host, first unit it binds to,
 * '-' for none), or the one-line error.  Host names are not this
 * machine's, so nothing is local; nothing starts.
 */
static const struct {
	const char *hosts;
	int n, cpus, oversub, min;
	const char *bind;
	const char *plan; /* NULL: an error */
	const char *msg;
} plan_cases[] = {
	/* A server a slot, hosts in order; -n fills the first ones. */
	{"a slots=2\nb slots=1\n", 0, 0, 0, 0, NULL, "a/0@0 a/1@1 b/0@0",
	    NULL},
	{"a slots=2\nb slots=2\n", 3, 0, 0, 0, NULL, "a/0@0 a/1@1 b/0@0",
	    NULL},
	{"a slots=2\n", 0, 0, 0, 0, "none", "a/0@- a/1@-", NULL},
	/* Slots are cores: slots / cpus servers, each its cpus units. */
	{"a slots=8\nb slots=8\n", 0, 4, 0, 0, NULL, "a/0@0 a/1@4 b/0@0 b/1@4",
	    NULL},
	{"a slots=10\n", 0, 4, 0, 0, NULL, "a/0@0 a/1@4", NULL},
	{"a slots=8\nb slots=8\n", 3, 4, 0, 0, NULL, "a/0@0 a/1@4 b/0@0",
	    NULL},
	{"a slots=8\n", 0, 4, 0, 0, "none", "a/0@- a/1@-", NULL},
	/* More than the slots hold: an error, unless oversubscribing. */
	{"a slots=2\nb slots=2\n", 5, 0, 0, 0, NULL, NULL,
	    "-n 5 is more than the 4 slots of 2 hosts (--oversubscribe "
	    "places more)"},
	{"a slots=8\n", 3, 4, 0, 0, NULL, NULL,
	    "-n 3 is more than the 8 slots of 1 host hold at "
	    "--cpus-per-server 4 (2 servers; --oversubscribe places more)"},
	{"a slots=2\nb slots=2\n", 7, 0, 1, 0, NULL,
	    "a/0@0 a/1@1 a/2@2 a/3@3 b/0@0 b/1@1 b/2@2", NULL},
	{"a slots=8\nb slots=8\n", 5, 4, 1, 0, NULL,
	    "a/0@0 a/1@4 a/2@8 b/0@0 b/1@4", NULL},
	/* max_slots bounds oversubscription, per host. */
	{"a slots=2 max_slots=2\nb slots=2\n", 6, 0, 1, 0, NULL,
	    "a/0@0 a/1@1 b/0@0 b/1@1 b/2@2 b/3@3", NULL},
	{"a slots=2 max_slots=3\nb slots=2 max_slots=4\n", 7, 0, 1, 0, NULL,
	    "a/0@0 a/1@1 a/2@2 b/0@0 b/1@1 b/2@2 b/3@3", NULL},
	{"a slots=2 max_slots=3\nb slots=2 max_slots=4\n", 8, 0, 1, 0, NULL,
	    NULL, "-n 8 is more than the max_slots of the hosts allow (7 "
	    "servers)"},
	{"a slots=8 max_slots=10\n", 3, 4, 1, 0, NULL, NULL,
	    "-n 3 is more than the max_slots of the hosts allow (2 servers "
	    "at --cpus-per-server)"},
	/* max_slots does nothing without oversubscription. */
	{"a slots=2 max_slots=8\n", 3, 0, 0, 0, NULL, NULL,
	    "-n 3 is more than the 2 slots of 1 host (--oversubscribe "
	    "places more)"},
	/* A host too small for one server. */
	{"a slots=8\nb slots=2\n", 0, 4, 0, 0, NULL, NULL,
	    "host b has 2 slots, fewer than --cpus-per-server 4 "
	    "(--oversubscribe shares them)"},
	/* Round robin from the first host: a, whose slots are full, first. */
	{"a slots=8\nb slots=2\n", 3, 4, 1, 0, NULL, "a/0@0 a/1@4 a/2@8",
	    NULL},
	{"a slots=8\nb slots=2\n", 4, 4, 1, 0, NULL,
	    "a/0@0 a/1@4 a/2@8 b/0@0", NULL},
	{"a slots=2\n", 0, 4, 1, 0, NULL, NULL,
	    "no host has the 4 slots of --cpus-per-server 4: give -n to "
	    "oversubscribe"},
	{"a slots=2\n", 1, 4, 1, 0, NULL, "a/0@0", NULL},
	/* --min-servers against the plan. */
	{"a slots=2\nb slots=2\n", 3, 0, 0, 3, NULL, "a/0@0 a/1@1 b/0@0",
	    NULL},
	{"a slots=2\nb slots=2\n", 3, 0, 0, 4, NULL, NULL,
	    "--min-servers 4 is more than the 3 servers planned"},
	{"a slots=8\n", 0, 4, 0, 3, NULL, NULL,
	    "--min-servers 3 is more than the 2 servers planned"},
	/* Options that do not go together, or out of range. */
	{"a slots=8\n", 0, 2, 0, 0, "numa", NULL,
	    "--cpus-per-server 2 needs --bind-to core or none, not numa"},
	{"a slots=8\n", 0, 4097, 0, 0, NULL, NULL,
	    "--cpus-per-server 4097: at most 4096"},
	{"a slots=8\n", 100001, 0, 1, 0, NULL, NULL,
	    "100001 servers: at most 100000 per launch"},
};

static char *
render_plan(mirai_launch *l)
{
	const mirai_launch_slot *sl;
	size_t n, len = 0;
	char *s;

	mirai_launch_slots(l, &sl, &n);
	s = malloc(n * 32 + 1);
	assert_non_null(s);
	s[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(sl[i].slot, i);
		assert_int_equal(sl[i].state, MIRAI_LAUNCH_PLANNED);
		assert_false(sl[i].local);
		if (sl[i].unit >= 0) {
			len += (size_t) sprintf(s + len, "%s%s/%d@%d",
			    i > 0 ? " " : "", sl[i].host, sl[i].host_slot,
			    sl[i].unit);
		} else {
			len += (size_t) sprintf(s + len, "%s%s/%d@-",
			    i > 0 ? " " : "", sl[i].host, sl[i].host_slot);
		}
	}
	return s;
}

static void
test_plan(void **state)
{
	for (size_t i = 0; i < sizeof plan_cases / sizeof plan_cases[0]; i++) {
		mirai_launch_opts o = MIRAI_LAUNCH_OPTS_INIT;
		mirai_hostlist *hl  = NULL;
		mirai_launch *l     = NULL;
		mirai_errmsg err    = {{0}};
		int rv;

		assert_int_equal(mirai_hosts_parse(plan_cases[i].hosts,
		    strlen(plan_cases[i].hosts), MIRAI_HOSTS_OPENMPI, NULL, &hl,
		    NULL), 0);
		o.hosts           = hl;
		o.max_servers     = plan_cases[i].n;
		o.cpus_per_server = plan_cases[i].cpus;
		o.oversubscribe   = plan_cases[i].oversub;
		o.min_servers     = plan_cases[i].min;
		o.bind_to         = plan_cases[i].bind;
		rv = mirai_launch_create(&l, &o, &err);
		mirai_hostlist_free(hl);
		if (plan_cases[i].plan == NULL) {
			expect_failure(rv, MIRAI_EINVAL, l, &err, plan_cases[i].msg);
			continue;
		}
		assert_int_equal(rv, 0);
		char *got = render_plan(l);
		assert_string_equal(got, plan_cases[i].plan);
		free(got);
		mirai_launch_destroy(l);
	}
}

/* The JSON plan says how many CPUs each server gets. */
static void
test_plan_json(void **state)
{
	mirai_launch_opts o = MIRAI_LAUNCH_OPTS_INIT;
	mirai_hostlist *hl  = NULL;
	mirai_launch *l     = NULL;
	char *json          = NULL;

	assert_int_equal(mirai_hosts_from_arg("n1:8", &hl, NULL), 0);
	o.hosts           = hl;
	o.cpus_per_server = 4;
	o.server_url      = "ws://127.0.0.1:5555"; /* wss: n1 is remote */
	o.no_token        = 1;
	assert_int_equal(mirai_launch_create(&l, &o, NULL), 0);
	mirai_hostlist_free(hl);
	assert_int_equal(mirai_launch_plan_json(l, &json), 0);
	assert_string_equal(json,
	    "{\"slot\":0,\"host\":\"n1\",\"user\":\"\",\"host_slot\":0,"
	    "\"bind\":\"core\",\"core\":0,\"local\":false,"
	    "\"url\":\"wss://127.0.0.1:5555/0\",\"cpus\":4}\n"
	    "{\"slot\":1,\"host\":\"n1\",\"user\":\"\",\"host_slot\":1,"
	    "\"bind\":\"core\",\"core\":4,\"local\":false,"
	    "\"url\":\"wss://127.0.0.1:5555/1\",\"cpus\":4}\n");
	free(json);
	mirai_launch_destroy(l);
	/* Bad options, and no hosts, say so without a plan. */
	assert_int_equal(mirai_launch_create(&l, NULL, NULL), MIRAI_EINVAL);
	o.hosts = NULL;
	assert_int_equal(mirai_launch_create(&l, &o, NULL), MIRAI_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_bad_limits),
		cmocka_unit_test(test_slurm),
		cmocka_unit_test(test_arg),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_args),
		cmocka_unit_test(test_format_names),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_plan),
		cmocka_unit_test(test_plan_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
