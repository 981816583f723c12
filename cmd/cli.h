/*
 * cli.h: one option table per tool gives both the parsing and --help.
 * Shared by the tools only; the library knows nothing of it.
 */
#ifndef MIRAI_CLI_H
#define MIRAI_CLI_H

#include <stddef.h>
#include <stdint.h>

enum cli_type {
	CLI_FLAG,     /* int, set to 1 */
	CLI_STR,      /* const char * */
	CLI_LIST,     /* cli_list: repeatable string */
	CLI_INT,      /* long long, a plain integer */
	CLI_SIZE,     /* size_t, bytes with optional k/M/G suffix */
	CLI_MS,       /* int64_t milliseconds, with optional ms/s/m/h suffix;
	                 "forever" gives -1 (MIRAI_FOREVER) */
};

typedef struct cli_list {
	const char **items;
	size_t n, cap;
} cli_list;

typedef struct cli_opt {
	const char *name;  /* long name without "--" */
	char short_name;   /* 0 if none */
	enum cli_type type;
	void *target;
	const char *arg;   /* name of the argument in --help */
	const char *help;
} cli_opt;

typedef struct cli_tool {
	const char *name;
	const char *usage;    /* after the tool name */
	const char *summary;  /* one paragraph */
	const char *epilog;   /* exit codes, environment; may be NULL */
	const cli_opt *opts;  /* ends with a {NULL} entry */
	int stop_at_operand;  /* the first operand starts a command */
} cli_tool;

/*
 * Parse argv by the table, with getopt_long: "--name=value", "--name
 * value", "-x value", "-xvalue" and bundled flags ("-vq").  Long names
 * are spelt out (no abbreviations).  Options and operands may mix
 * (unless stop_at_operand; POSIXLY_CORRECT does not matter); "--" ends
 * the options.  --help and --version are handled here (print and exit
 * 0).  Operands are left in argv[*first..argc), in their order; the
 * elements before are left in no particular order.  Values point into
 * argv; CLI_LIST's items array is the caller's (free).  May be called
 * again (getopt is reset); not thread-safe, as getopt is not.  On error
 * prints a message naming the option and returns 2 (the usage exit
 * code); 0 on success.
 */
int cli_parse(const cli_tool *tool, int argc, char **argv, int *first);
void cli_help(const cli_tool *tool);
/* Parse a duration ("250", "250ms", "2s", "5m", "1h") into ms; -1 if bad. */
int64_t cli_parse_ms(const char *s);
/* A --heartbeat value: a TIME, or "off" (MIRAI_FOREVER); NULL: 0 (the
 * default).  Returns 0, or -1 when s is neither. */
int cli_parse_heartbeat(const char *s, int64_t *out);
/* Seconds on the monotonic clock, for progress lines and timings. */
double cli_now_s(void);

#endif /* MIRAI_CLI_H */
