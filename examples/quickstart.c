/* quickstart: start 4 local servers, run a task there, print its result.
 *   cc quickstart.c $(pkg-config --cflags --libs mirai) */
#include <stdio.h>

#include <mirai.h>

int
main(void)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};
	mirai *m;
	int rv;

	d.n = 4; /* 4 local servers, dispatcher on */
	if ((rv = mirai_daemons(&d, &err)) != 0) {
		fprintf(stderr, "quickstart: daemons: %s\n",
		    err.text[0] ? err.text : mirai_strerror(rv));
		return 1;
	}
	if ((rv = mirai_call(NULL, "mirai.echo", "hello", 5, &m)) != 0) {
		fprintf(stderr, "quickstart: call: %s\n", mirai_strerror(rv));
		mirai_shutdown();
		return 1;
	}
	if ((rv = mirai_wait(m)) == 0) {
		size_t len;
		const char *out = mirai_data(m, &len); /* belongs to m */
		printf("%.*s\n", (int) len, out);
	} else {
		/* For a failed task, the server's message. */
		fprintf(stderr, "quickstart: task: %s\n", mirai_errortext(m));
	}
	mirai_free(m);
	mirai_shutdown(); /* resets every profile: its servers exit */
	return rv == 0 ? 0 : 1;
}
