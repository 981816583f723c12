/*
 * cli.c: option parsing and --help for the tools, from one table: the
 * parsing is getopt_long's, on an option array and a short-option string
 * made from the table.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mirai.h>

int64_t
cli_parse_ms(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v     = strtod(s, &end);
	if (errno != 0 || end == s || v < 0) {
		return -1;
	}
	if (*end == '\0' || strcmp(end, "ms") == 0) {
		/* milliseconds */
	} else if (strcmp(end, "s") == 0) {
		v *= 1e3;
	} else if (strcmp(end, "m") == 0) {
		v *= 60e3;
	} else if (strcmp(end, "h") == 0) {
		v *= 3600e3;
	} else {
		return -1;
	}
	return v > 9e15 ? -1 : (int64_t) v;
}

static int
parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v     = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *s == '-') {
		return -1;
	}
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		v <<= 10;
		end++;
		break;
	case 'M':
		v <<= 20;
		end++;
		break;
	case 'G':
		v <<= 30;
		end++;
		break;
	default:
		return -1;
	}
	if (*end != '\0') {
		return -1;
	}
	*out = (size_t) v;
	return 0;
}

static int
set_value(const cli_tool *tool, const cli_opt *o, const char *v)
{
	char *end;

	switch (o->type) {
	case CLI_FLAG:
		*(int *) o->target = 1;
		return 0;
	case CLI_STR:
		*(const char **) o->target = v;
		return 0;
	case CLI_LIST: {
		cli_list *l = o->target;
		if (l->n == l->cap) {
			size_t cap = l->cap ? 2 * l->cap : 8;
			const char **p = realloc(l->items, cap * sizeof *p);
			if (p == NULL) {
				fprintf(stderr, "%s: out of memory\n", tool->name);
				return -1;
			}
			l->items = p;
			l->cap   = cap;
		}
		l->items[l->n++] = v;
		return 0;
	}
	case CLI_INT:
		errno = 0;
		*(long long *) o->target = strtoll(v, &end, 10);
		if (errno == 0 && end != v && *end == '\0') {
			return 0;
		}
		break;
	case CLI_SIZE:
		if (parse_size(v, o->target) == 0) {
			return 0;
		}
		break;
	case CLI_MS:
		/* The library's MIRAI_FOREVER (-1): no limit. */
		if (strcmp(v, "forever") == 0) {
			*(int64_t *) o->target = -1;
			return 0;
		}
		if ((*(int64_t *) o->target = cli_parse_ms(v)) >= 0) {
			return 0;
		}
		break;
	}
	fprintf(stderr, "%s: --%s: '%s' is not a valid %s\n", tool->name,
	    o->name, v, o->arg != NULL ? o->arg : "value");
	return -1;
}

void
cli_help(const cli_tool *tool)
{
	printf("Usage: %s %s\n\n%s\n\nOptions:\n", tool->name, tool->usage,
	    tool->summary);
	for (const cli_opt *o = tool->opts; o->name != NULL; o++) {
		char left[64];

		if (o->short_name) {
			snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name,
			    o->name, o->arg ? " " : "", o->arg ? o->arg : "");
		} else {
			snprintf(left, sizeof left, "    --%s%s%s", o->name,
			    o->arg ? " " : "", o->arg ? o->arg : "");
		}
		printf("  %-26s %s\n", left, o->help);
	}
	printf("  %-26s %s\n", "-h, --help", "show this help and exit");
	printf("  %-26s %s\n", "    --version", "show the version and exit");
	if (tool->epilog != NULL) {
		printf("\n%s\n", tool->epilog);
	}
}

/* The code getopt_long returns for the long form of the table's entry
 * i is LONG_BASE + i: above every char, so that no short option meets
 * it; --help and --version follow the table's entries. */
#define LONG_BASE 256

/* The table's entry for the short option c, or NULL. */
static const cli_opt *
by_short(const cli_tool *tool, int c)
{
	for (const cli_opt *o = tool->opts; o->name != NULL; o++) {
		if (o->short_name != 0 && o->short_name == c) {
			return o;
		}
	}
	return NULL;
}

/*
 * Whether the argv element el ("--name" or "--name=value") spells name
 * out.  getopt_long also takes an unambiguous prefix; the tools do not:
 * an abbreviation that works today would become ambiguous, or another
 * option, as the tables grow.
 */
static int
spelt_out(const char *el, const char *name)
{
	size_t len = strlen(name);

	return strncmp(el, "--", 2) == 0 && strncmp(el + 2, name, len) == 0 &&
	    (el[2 + len] == '\0' || el[2 + len] == '=');
}

int
cli_parse(const cli_tool *tool, int argc, char **argv, int *first)
{
	struct option *longs = NULL;
	char *shorts = NULL, *p;
	char **ops   = NULL;
	size_t n;
	int c, nops = 0, rv = 0, asked = 0;

	for (n = 0; tool->opts[n].name != NULL; n++) {
	}
	longs  = calloc(n + 3, sizeof *longs);
	shorts = malloc(2 * n + 4);
	ops    = calloc((size_t) argc + 1, sizeof *ops);
	if (longs == NULL || shorts == NULL || ops == NULL) {
		fprintf(stderr, "%s: out of memory\n", tool->name);
		rv = 2;
		goto out;
	}
	/* '-': operands come back in their place (as code 1), so that they
	 * mix with options whatever POSIXLY_CORRECT says; '+': the first
	 * operand ends the options.  ':' tells a missing argument from an
	 * unknown option; the messages are ours (opterr is 0). */
	p    = shorts;
	*p++ = tool->stop_at_operand ? '+' : '-';
	*p++ = ':';
	for (size_t i = 0; i < n; i++) {
		const cli_opt *o = &tool->opts[i];

		longs[i].name    = o->name;
		longs[i].has_arg = o->type == CLI_FLAG ? no_argument
		                                       : required_argument;
		longs[i].val     = LONG_BASE + (int) i;
		if (o->short_name != 0) {
			*p++ = o->short_name;
			if (o->type != CLI_FLAG) {
				*p++ = ':';
			}
		}
	}
	if (by_short(tool, 'h') == NULL) {
		*p++ = 'h';
	}
	*p = '\0';
	longs[n]     = (struct option){"help", no_argument, NULL,
	    LONG_BASE + (int) n};
	longs[n + 1] = (struct option){"version", no_argument, NULL,
	    LONG_BASE + (int) n + 1};

	/* 0, not 1: getopt starts afresh, forgetting what a previous parse
	 * left (a half-read "-abc", the ordering). */
	optind = 0;
	opterr = 0;
	while (rv == 0 &&
	    (c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
		const cli_opt *o = NULL;
		const char *val  = optarg;

		if (c == 1) {
			/* An operand: options may still follow it. */
			ops[nops++] = optarg;
			continue;
		}
		if (c >= LONG_BASE) {
			/* A long option has used up its element, and its
			 * value's when that came apart ("--name value"). */
			size_t i       = (size_t) (c - LONG_BASE);
			const char *el = argv[optind - 1];

			if (longs[i].has_arg && optarg == argv[optind - 1]) {
				el = argv[optind - 2];
			}
			if (!spelt_out(el, longs[i].name)) {
				fprintf(stderr, "%s: unknown option '%s' (see "
				    "--help)\n", tool->name, el);
				rv = 2;
				break;
			}
			if (i >= n) {
				asked = c; /* --help or --version */
				break;
			}
			o = &tool->opts[i];
		} else if (c == '?') {
			/* optopt: 0 for an unknown long option, the code of a
			 * long one given a value it takes none of, or the
			 * unknown short option. */
			if (optopt == 0) {
				fprintf(stderr, "%s: unknown option '%s' (see "
				    "--help)\n", tool->name, argv[optind - 1]);
			} else if (optopt >= LONG_BASE) {
				fprintf(stderr, "%s: --%s takes no value\n",
				    tool->name, longs[optopt - LONG_BASE].name);
			} else {
				fprintf(stderr, "%s: unknown option '-%c' (see "
				    "--help)\n", tool->name, optopt);
			}
			rv = 2;
			break;
		} else if (c == ':') {
			/* optopt: the code of the long option that lacks its
			 * value (never --help or --version, which take none),
			 * or the short one. */
			o = optopt >= LONG_BASE
			    ? &tool->opts[optopt - LONG_BASE]
			    : by_short(tool, optopt);
			fprintf(stderr, "%s: --%s needs %s\n", tool->name,
			    o->name, o->arg ? o->arg : "a value");
			rv = 2;
			break;
		} else if ((o = by_short(tool, c)) == NULL) {
			asked = LONG_BASE + (int) n; /* -h */
			break;
		}
		if (set_value(tool, o, val) != 0) {
			rv = 2;
		}
	}
	if (asked != 0) {
		free(longs);
		free(shorts);
		free(ops);
		if (asked == LONG_BASE + (int) n) {
			cli_help(tool);
		} else {
			printf("%s %s\n", tool->name, MIRAI_VERSION_STRING);
		}
		exit(0);
	}
	if (rv == 0) {
		/* Operands met on the way go just before what follows "--"
		 * (or the command), in their order. */
		for (int k = optind; k < argc; k++) {
			ops[nops++] = argv[k];
		}
		for (int k = 0; k < nops; k++) {
			argv[argc - nops + k] = ops[k];
		}
		*first = argc - nops;
	}
out:
	free(longs);
	free(shorts);
	free(ops);
	return rv;
}

int
cli_parse_heartbeat(const char *s, int64_t *out)
{
	if (s == NULL) {
		*out = 0;
		return 0;
	}
	if (strcmp(s, "off") == 0) {
		*out = MIRAI_FOREVER;
		return 0;
	}
	if ((*out = cli_parse_ms(s)) <= 0) {
		return -1;
	}
	return 0;
}

double
cli_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}
