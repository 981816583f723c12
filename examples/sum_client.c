/*
 * sum_client: start 2 local servers that load the plugin sum.so, and call
 * its function example.sum on them.
 *   sum_client path/to/sum.so
 */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mirai.h>

int
main(int argc, char **argv)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_server_opts so = MIRAI_SERVER_OPTS_INIT;
	mirai_errmsg err     = {{0}};
	const char *inputs[] = {"1 2 3", "40 2", "7 eleven"};
	mirai *ms[3];
	char plugin[PATH_MAX];
	const char *plugins[1] = {plugin};
	int rv, failed = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: sum_client PLUGIN.so\n");
		return 2;
	}
	/* The servers dlopen() the path: a bare name would be searched for
	 * in the library directories, not here. */
	if (realpath(argv[1], plugin) == NULL) {
		perror(argv[1]);
		return 1;
	}
	mirai_log_set(mirai_log_stderr, "sum_client", MIRAI_LOG_WARN);
	so.plugins  = plugins; /* each server loads these */
	so.nplugins = 1;
	d.n         = 2;
	d.server    = &so;
	if ((rv = mirai_daemons(&d, &err)) != 0) {
		fprintf(stderr, "sum_client: daemons: %s\n", err.text);
		return 1;
	}
	for (int i = 0; i < 3; i++) {
		rv = mirai_call(NULL, "example.sum", inputs[i], strlen(inputs[i]),
		    &ms[i]);
		if (rv != 0) {
			fprintf(stderr, "sum_client: call: %s\n", mirai_strerror(rv));
			while (i > 0) {
				mirai_free(ms[--i]);
			}
			mirai_shutdown();
			return 1;
		}
	}
	for (int i = 0; i < 3; i++) {
		if ((rv = mirai_wait(ms[i])) == 0) {
			size_t len;
			const char *out = mirai_data(ms[i], &len);
			printf("sum of %s = %.*s\n", inputs[i], (int) len, out);
		} else {
			/* A task the function failed: MIRAI_ETASK, with its
			 * message. */
			printf("sum of %s failed: %s: %s\n", inputs[i],
			    mirai_errname(rv), mirai_errortext(ms[i]));
			failed++;
		}
		mirai_free(ms[i]);
	}
	mirai_shutdown();
	/* The last input is not a sum of integers: one failure is expected. */
	return failed == 1 ? 0 : 1;
}
