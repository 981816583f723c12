/*
 * driver.c: runs a libFuzzer-style target where libFuzzer is not there.
 *
 *   fuzz_X [-seconds N] [-seed S] [-runs N] [-max_len N]
 *          [-artifact_prefix P] [FILE_OR_DIR ...]
 *
 * Every file named, and every regular file in each directory named, runs
 * once first: these are the seeds and any inputs kept from earlier
 * failures.  Then random inputs and mutations of those files run until N
 * seconds have passed or N runs were made, whichever comes first.  The
 * time limit is -seconds, else $FUZZ_SECONDS, else 5; the run limit is
 * -runs (default 100000000; negative: none).  One summary line goes to
 * stdout at the end.
 *
 * The inputs depend only on the seed and the files, never on the clock, so
 * a failure comes back with the -seed printed in the summary or in the
 * failure message.  When the process dies (a signal, a failed check, or a
 * sanitizer report) the input that was running is written to
 * PREFIX crash-SEED-RUN first.
 *
 * This is no coverage-guided fuzzer: it finds what random damage to good
 * messages finds.  The same targets build with clang -fsanitize=fuzzer
 * -DMIRAI_LIBFUZZER, which leaves this main out, for the deeper search.
 */
#ifndef MIRAI_LIBFUZZER

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

#define DEFAULT_SECONDS 5.0
#define DEFAULT_RUNS 100000000LL
#define DEFAULT_MAX_LEN 4096
/* Room for insertions beyond the largest seed. */
#define GROW_SLACK 64

/*
 * Sanitizers call this hook before they end the process, which a signal
 * handler would never see.  Weak, so that a build without sanitizers links.
 */
extern void __sanitizer_set_death_callback(void (*cb)(void))
    __attribute__((weak));

typedef struct input {
	uint8_t *data;
	size_t len;
} input;

typedef struct corpus {
	input *in;
	size_t n, cap;
} corpus;

static const char *progname = "fuzz";

/* What the crash handlers write out: set before every run. */
static const uint8_t *volatile cur_data;
static volatile size_t cur_len;
static volatile long long cur_run;
static uint64_t seed;
static const char *artifact_prefix = "";

static uint64_t rng_state;

/* splitmix64: tiny, fast and good enough to pick mutations. */
static uint64_t
rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A number in [0, n); n must be positive. */
static size_t
below(size_t n)
{
	return (size_t) (rng() % n);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Decimal digits of v into buf (at least 21 bytes); returns their count.
 * Hand-made because snprintf is not safe in a signal handler. */
static size_t
fmt_u64(char *buf, uint64_t v)
{
	char tmp[21];
	size_t n = 0, i;

	do {
		tmp[n++] = (char) ('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++) {
		buf[i] = tmp[n - 1 - i];
	}
	return n;
}

static void
put_err(const char *s)
{
	ssize_t rv = write(STDERR_FILENO, s, strlen(s));

	(void) rv;
}

/* The driver has no use for running on without memory. */
static void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n > 0 ? n : 1)) == NULL) {
		fprintf(stderr, "%s: out of memory\n", progname);
		exit(1);
	}
	return p;
}

static void
no_file(const char *path)
{
	fprintf(stderr, "%s: %s: %s\n", progname, path, strerror(errno));
}

/*
 * Write the running input to PREFIX crash-SEED-RUN.  Called while the
 * process dies, so only async-signal-safe calls are used.
 */
static void
save_crash(void)
{
	char path[4096];
	size_t n = 0, plen = strlen(artifact_prefix);
	const uint8_t *p = cur_data;
	size_t left      = cur_len;
	int fd;

	if (p == NULL || plen > sizeof path - 64) {
		return;
	}
	memcpy(path, artifact_prefix, plen);
	n = plen;
	memcpy(path + n, "crash-", 6);
	n += 6;
	n += fmt_u64(path + n, seed);
	path[n++] = '-';
	n += fmt_u64(path + n, (uint64_t) cur_run);
	path[n] = '\0';
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		return;
	}
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w <= 0) {
			break;
		}
		p += w;
		left -= (size_t) w;
	}
	close(fd);
	put_err(progname);
	put_err(": the failing input is in ");
	put_err(path);
	put_err("\n");
	/* Only the first death writes: a handler may run twice. */
	cur_data = NULL;
}

static void
on_fatal_signal(int sig)
{
	save_crash();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
install_crash_handlers(void)
{
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
	size_t i;

	/* abort() from a failed check reaches no sanitizer hook. */
	signal(SIGABRT, on_fatal_signal);
	if (__sanitizer_set_death_callback != NULL) {
		/* Leave SIGSEGV and friends to the sanitizer: its report
		 * says far more than ours would. */
		__sanitizer_set_death_callback(save_crash);
		return;
	}
	for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		signal(sigs[i], on_fatal_signal);
	}
}

/* Run one input from a buffer of exactly its size, so that a sanitizer
 * catches a read one byte past the end. */
static void
run_one(const uint8_t *data, size_t len, long long run)
{
	uint8_t *copy = xrealloc(NULL, len);

	if (len > 0) {
		memcpy(copy, data, len);
	}
	cur_data = copy;
	cur_len  = len;
	cur_run  = run;
	LLVMFuzzerTestOneInput(copy, len);
	cur_data = NULL;
	free(copy);
}

static void
corpus_add(corpus *c, uint8_t *data, size_t len)
{
	if (c->n == c->cap) {
		c->cap = c->cap == 0 ? 16 : 2 * c->cap;
		c->in  = xrealloc(c->in, c->cap * sizeof *c->in);
	}
	c->in[c->n].data = data;
	c->in[c->n].len  = len;
	c->n++;
}

static int
load_file(corpus *c, const char *path)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, got;

	if (fp == NULL) {
		no_file(path);
		return -1;
	}
	do {
		if (len == cap) {
			cap = cap == 0 ? 4096 : 2 * cap;
			buf = xrealloc(buf, cap);
		}
		got = fread(buf + len, 1, cap - len, fp);
		len += got;
	} while (got > 0);
	if (ferror(fp)) {
		fprintf(stderr, "%s: %s: read error\n", progname, path);
		fclose(fp);
		free(buf);
		return -1;
	}
	fclose(fp);
	corpus_add(c, buf, len);
	return 0;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Every regular file directly in dir, in name order so that a seed means
 * the same inputs on every machine. */
static int
load_dir(corpus *c, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0, i;
	int rv = 0;

	if (d == NULL) {
		no_file(dir);
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.') {
			continue;
		}
		if (n == cap) {
			cap   = cap == 0 ? 16 : 2 * cap;
			names = xrealloc(names, cap * sizeof *names);
		}
		names[n] = xrealloc(NULL, strlen(dir) + strlen(e->d_name) + 2);
		sprintf(names[n], "%s/%s", dir, e->d_name);
		n++;
	}
	closedir(d);
	if (n > 0) {
		qsort(names, n, sizeof *names, cmp_names);
	}
	for (i = 0; i < n; i++) {
		struct stat st;
		if (rv == 0 && stat(names[i], &st) == 0 &&
		    S_ISREG(st.st_mode)) {
			rv = load_file(c, names[i]);
		}
		free(names[i]);
	}
	free(names);
	return rv;
}

static int
load_path(corpus *c, const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		no_file(path);
		return -1;
	}
	return S_ISDIR(st.st_mode) ? load_dir(c, path) : load_file(c, path);
}

/* Values that find off-by-one and overflow mistakes in length checks. */
static uint32_t
odd_u32(size_t len, size_t off)
{
	switch (below(7)) {
	case 0:
		return 0;
	case 1:
		return 0xffffffffu;
	case 2:
		return 0x80000000u;
	case 3:
		return (uint32_t) below(64);
	case 4:
		/* Just past what is left after the field. */
		return (uint32_t) (len - off - 4 + 1);
	case 5:
		return (uint32_t) (len - off - 4);
	default:
		return (uint32_t) rng();
	}
}

static uint16_t
odd_u16(void)
{
	static const uint16_t v[] = {0, 1, 2, 0x7fff, 0x8000, 0xfffe, 0xffff};

	return below(2) == 0 ? v[below(sizeof v / sizeof v[0])] :
	    (uint16_t) rng();
}

/*
 * Damage buf[0..len) in one to four ways; cap is the size of buf.  Returns
 * the new length.  The length-field mutations matter most: every decoder
 * here is a length check away from reading past its buffer.
 */
static size_t
mutate(uint8_t *buf, size_t len, size_t cap, const corpus *c)
{
	static const uint8_t odd_bytes[] = {0, 1, 0x7f, 0x80, 0xfe, 0xff};
	size_t steps = 1 + below(4);

	while (steps-- > 0) {
		size_t off, n, i;

		switch (below(10)) {
		case 0: /* flip one bit */
			if (len > 0) {
				buf[below(len)] ^= (uint8_t) (1u << below(8));
			}
			break;
		case 1: /* set one byte */
			if (len > 0) {
				buf[below(len)] = below(2) == 0 ?
				    odd_bytes[below(sizeof odd_bytes)] :
				    (uint8_t) rng();
			}
			break;
		case 2: /* insert random bytes */
			n   = 1 + below(8);
			off = below(len + 1);
			if (len + n <= cap) {
				memmove(buf + off + n, buf + off, len - off);
				for (i = 0; i < n; i++) {
					buf[off + i] = (uint8_t) rng();
				}
				len += n;
			}
			break;
		case 3: /* delete bytes */
			if (len > 0) {
				off = below(len);
				n   = 1 + below(len - off < 8 ? len - off : 8);
				memmove(buf + off, buf + off + n,
				    len - off - n);
				len -= n;
			}
			break;
		case 4: /* truncate */
			len = below(len + 1);
			break;
		case 5: /* a 32-bit length field */
		case 6:
			if (len >= 4) {
				uint32_t v;
				off          = below(len - 3);
				v            = odd_u32(len, off);
				buf[off]     = (uint8_t) v;
				buf[off + 1] = (uint8_t) (v >> 8);
				buf[off + 2] = (uint8_t) (v >> 16);
				buf[off + 3] = (uint8_t) (v >> 24);
			}
			break;
		case 7: /* a 16-bit length or count field */
			if (len >= 2) {
				uint16_t v = odd_u16();
				off          = below(len - 1);
				buf[off]     = (uint8_t) v;
				buf[off + 1] = (uint8_t) (v >> 8);
			}
			break;
		case 8: /* copy a piece of the input over another place */
			if (len > 1) {
				size_t from = below(len), last;
				off  = below(len);
				last = from > off ? from : off;
				n    = 1 + below(len - last);
				memmove(buf + off, buf + from, n);
			}
			break;
		default: /* splice in a piece of another input */
			if (c->n > 0) {
				const input *o = &c->in[below(c->n)];
				size_t from;
				if (o->len == 0) {
					break;
				}
				from = below(o->len);
				n    = 1 + below(o->len - from);
				off  = below(len + 1);
				if (off + n > cap) {
					n = cap - off;
				}
				memcpy(buf + off, o->data + from, n);
				if (off + n > len) {
					len = off + n;
				}
			}
			break;
		}
	}
	return len;
}

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: %s [-seconds N] [-seed S] [-runs N] [-max_len N]\n"
	    "       [-artifact_prefix P] [FILE_OR_DIR ...]\n"
	    "Runs each file (each file in each directory), then random and\n"
	    "mutated inputs for N seconds (-seconds, else $FUZZ_SECONDS,\n"
	    "else 5) or N runs (default %lld; negative: no limit).\n",
	    progname, DEFAULT_RUNS);
}

/* "-name VALUE" or libFuzzer's "-name=VALUE"; returns the value or NULL. */
static const char *
opt(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);

	if (strncmp(argv[*i], name, n) != 0) {
		return NULL;
	}
	if (argv[*i][n] == '=') {
		return argv[*i] + n + 1;
	}
	if (argv[*i][n] == '\0' && *i + 1 < argc) {
		return argv[++*i];
	}
	return NULL;
}

static int
parse_num(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out  = strtod(s, &end);
	return errno == 0 && end != s && *end == '\0' ? 0 : -1;
}

int
main(int argc, char **argv)
{
	double seconds = DEFAULT_SECONDS, start, elapsed, v;
	long long max_runs = DEFAULT_RUNS, runs = 0;
	size_t max_len = DEFAULT_MAX_LEN, cap, i;
	int have_seed = 0, have_seconds = 0;
	const char *env, *val, *slash;
	corpus c = {NULL, 0, 0};
	uint8_t *buf;

	slash    = strrchr(argv[0], '/');
	progname = slash != NULL ? slash + 1 : argv[0];
	for (int a = 1; a < argc; a++) {
		if (argv[a][0] != '-' || argv[a][1] == '\0') {
			if (load_path(&c, argv[a]) != 0) {
				return 1;
			}
		} else if ((val = opt(argc, argv, &a, "-seconds")) != NULL) {
			if (parse_num(val, &seconds) != 0 || seconds < 0) {
				usage(stderr);
				return 2;
			}
			have_seconds = 1;
		} else if ((val = opt(argc, argv, &a, "-seed")) != NULL) {
			char *end;
			errno = 0;
			seed  = strtoull(val, &end, 0);
			if (errno != 0 || end == val || *end != '\0') {
				usage(stderr);
				return 2;
			}
			have_seed = 1;
		} else if ((val = opt(argc, argv, &a, "-runs")) != NULL) {
			if (parse_num(val, &v) != 0) {
				usage(stderr);
				return 2;
			}
			max_runs = v < 0 ? -1 : (long long) v;
		} else if ((val = opt(argc, argv, &a, "-max_len")) != NULL) {
			if (parse_num(val, &v) != 0 || v < 1) {
				usage(stderr);
				return 2;
			}
			max_len = (size_t) v;
		} else if ((val = opt(argc, argv, &a, "-artifact_prefix")) !=
		    NULL) {
			artifact_prefix = val;
		} else if (strcmp(argv[a], "-help") == 0 ||
		    strcmp(argv[a], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!have_seconds && (env = getenv("FUZZ_SECONDS")) != NULL &&
	    *env != '\0') {
		if (parse_num(env, &seconds) != 0 || seconds < 0) {
			fprintf(stderr, "%s: bad FUZZ_SECONDS '%s'\n", progname,
			    env);
			return 2;
		}
	}
	if (!have_seed) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = ((uint64_t) ts.tv_sec * 1000000007u) ^
		    (uint64_t) ts.tv_nsec ^ ((uint64_t) getpid() << 32);
	}
	rng_state = seed;
	install_crash_handlers();

	/* Mutations may grow an input a little past the largest seed. */
	cap = max_len;
	for (i = 0; i < c.n; i++) {
		if (c.in[i].len > cap) {
			cap = c.in[i].len;
		}
	}
	cap += GROW_SLACK;
	buf = xrealloc(NULL, cap);

	start = now_s();
	for (i = 0; i < c.n; i++) {
		run_one(c.in[i].data, c.in[i].len, runs++);
	}
	while ((max_runs < 0 || runs < max_runs) &&
	    now_s() - start < seconds) {
		size_t len;

		if (c.n == 0 || below(8) == 0) {
			/* Short inputs are the likelier to hit edge cases. */
			len = below(below(max_len) + 1);
			for (i = 0; i < len; i++) {
				buf[i] = (uint8_t) rng();
			}
		} else {
			const input *in = &c.in[below(c.n)];
			memcpy(buf, in->data, in->len);
			len = mutate(buf, in->len, cap, &c);
		}
		run_one(buf, len, runs++);
	}
	elapsed = now_s() - start;

	printf("%s: %lld runs in %.1f seconds (%zu files, seed %" PRIu64
	       ")\n",
	    progname, runs, elapsed, c.n, seed);
	free(buf);
	for (i = 0; i < c.n; i++) {
		free(c.in[i].data);
	}
	free(c.in);
	return 0;
}

#endif /* MIRAI_LIBFUZZER */
