/*
 * fuzz_hostfile.c: hostile text against every host list parser.
 *
 * The input goes to mirai_hosts_parse() in every format (recognition
 * included); split at its first newline, to mirai_hosts_slurm() as a node
 * list and the tasks per node (no newline: no tasks); and whole, as a
 * string, to mirai_hosts_from_arg().  Beyond "no crash, no leak" (the
 * sanitizers' part) every list that comes back must keep the promises of
 * mirai.h: hosts with a name and at least one slot, a maximum of zero or
 * at least the slots, no name twice, the total the sum, the format one
 * that exists; and every failure must leave the output alone and say why.
 *
 * Seeds are in tests/fuzz/corpus/hostfile/: a realistic file of each
 * format, Slurm lists with their tasks, and a command-line list.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mirai.h"

/* Lists longer than this skip the quadratic check for repeats. */
#define DUP_CHECK_MAX 2000

static void
check_list(const mirai_hostlist *l, int format)
{
	size_t total = 0, i, j;

	CHECK(l->n > 0);
	CHECK(mirai_hosts_format_name(l->format) != NULL);
	CHECK(l->format != MIRAI_HOSTS_AUTO);
	CHECK(format == MIRAI_HOSTS_AUTO || l->format == format);
	for (i = 0; i < l->n; i++) {
		const mirai_host *h = &l->hosts[i];

		CHECK(h->user != NULL && h->name != NULL);
		CHECK(h->name[0] != '\0');
		CHECK(strlen(h->name) <= 255 && strlen(h->user) <= 255);
		CHECK(h->slots >= 1 && h->slots <= 1000000);
		CHECK(h->max_slots == 0 || h->max_slots >= h->slots);
		CHECK(h->line >= 0);
		total += (size_t) h->slots;
		for (j = 0; l->n <= DUP_CHECK_MAX && j < i; j++) {
			CHECK(strcmp(l->hosts[j].name, h->name) != 0 ||
			    strcmp(l->hosts[j].user, h->user) != 0);
		}
	}
	CHECK(l->total_slots == total);
}

/* One call's outcome: a list that keeps its promises, or an error with a
 * message and the output untouched. */
static void
check_result(int rv, mirai_hostlist *l, const mirai_errmsg *err,
    int format)
{
	static const char sentinel[] = "untouched";

	if (rv == 0) {
		check_list(l, format);
		mirai_hostlist_free(l);
		return;
	}
	CHECK(rv == MIRAI_EPARSE || rv == MIRAI_ENOMEM);
	CHECK(l == NULL);
	CHECK(err->text[0] != '\0' && strcmp(err->text, sentinel) != 0);
}

static void
reset(mirai_errmsg *err, mirai_hostlist **l)
{
	snprintf(err->text, sizeof err->text, "untouched");
	*l = NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *) data;
	const char *nl   = memchr(text, '\n', size);
	mirai_errmsg err;
	mirai_hostlist *l;
	char *nodes, *tasks = NULL, *whole;
	size_t nlen = nl != NULL ? (size_t) (nl - text) : size;
	int rv;

	for (int f = MIRAI_HOSTS_AUTO; f <= MIRAI_HOSTS_SLURM; f++) {
		reset(&err, &l);
		rv = mirai_hosts_parse(text, size, f, "fuzz", &l, &err);
		check_result(rv, l, &err, f);
	}

	/* The string functions need NUL-terminated copies. */
	nodes = malloc(nlen + 1);
	whole = malloc(size + 1);
	CHECK(nodes != NULL && whole != NULL);
	memcpy(nodes, text, nlen);
	nodes[nlen] = '\0';
	memcpy(whole, text, size);
	whole[size] = '\0';
	if (nl != NULL) {
		tasks = whole + nlen + 1;
	}
	reset(&err, &l);
	rv = mirai_hosts_slurm(nodes, tasks, &l, &err);
	check_result(rv, l, &err, MIRAI_HOSTS_SLURM);
	reset(&err, &l);
	rv = mirai_hosts_from_arg(whole, &l, &err);
	check_result(rv, l, &err, MIRAI_HOSTS_MPICH);
	free(nodes);
	free(whole);
	return 0;
}
