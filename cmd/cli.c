/*
 * cli.c: option parsing and --help for the tools, from one table.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int
cli_parse(const cli_tool *tool, int argc, char **argv, int *first)
{
	char **ops = calloc((size_t) argc + 1, sizeof *ops);
	int i, nops = 0;

	if (ops == NULL) {
		fprintf(stderr, "%s: out of memory\n", tool->name);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const cli_opt *o = NULL;
		const char *val  = NULL;

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[0] != '-' || a[1] == '\0') {
			/* An operand: the rest is a command, or options may
			 * still follow it. */
			if (tool->stop_at_operand) {
				break;
			}
			ops[nops++] = argv[i];
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			cli_help(tool);
			exit(0);
		}
		if (strcmp(a, "--version") == 0) {
			printf("%s %s\n", tool->name, MIRAI_VERSION_STRING);
			exit(0);
		}
		if (a[1] == '-') {
			size_t len = strcspn(a + 2, "=");
			for (const cli_opt *c = tool->opts; c->name != NULL; c++) {
				if (strlen(c->name) == len &&
				    strncmp(c->name, a + 2, len) == 0) {
					o = c;
				}
			}
			if (o != NULL && a[2 + len] == '=') {
				val = a + 3 + len;
			}
		} else if (a[2] == '\0') {
			for (const cli_opt *c = tool->opts; c->name != NULL; c++) {
				if (c->short_name == a[1]) {
					o = c;
				}
			}
		}
		if (o == NULL) {
			fprintf(stderr, "%s: unknown option '%s' (see --help)\n",
			    tool->name, a);
			free(ops);
			return 2;
		}
		if (o->type == CLI_FLAG) {
			if (val != NULL) {
				fprintf(stderr, "%s: --%s takes no value\n",
				    tool->name, o->name);
				free(ops);
				return 2;
			}
		} else if (val == NULL) {
			if (i + 1 >= argc) {
				fprintf(stderr, "%s: --%s needs %s\n", tool->name,
				    o->name, o->arg ? o->arg : "a value");
				free(ops);
				return 2;
			}
			val = argv[++i];
		}
		if (set_value(tool, o, val) != 0) {
			free(ops);
			return 2;
		}
	}
	/* Operands met on the way go just before what follows "--" (or the
	 * command), in their order. */
	for (int k = i; k < argc; k++) {
		ops[nops++] = argv[k];
	}
	for (int k = 0; k < nops; k++) {
		argv[argc - nops + k] = ops[k];
	}
	*first = argc - nops;
	free(ops);
	return 0;
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
