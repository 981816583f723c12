/*
 * sum_server: a server program of its own, with the task functions of
 * plugins/sum.c linked in rather than loaded, and the built-in ones.  It
 * dials a URL (the argument, or MIRAI_URL) and runs tasks until the link
 * ends; its exit status is mirai-server's.
 *   MIRAI_URL=tcp://127.0.0.1:5555 sum_server
 */
#include <stdio.h>
#include <stdlib.h>

#include <mirai.h>

/* plugins/sum.c: its entry point, mirai_plugin_init() (declared in
 * mirai.h), is an ordinary function. */

int
main(int argc, char **argv)
{
	const char *url  = argc > 1 ? argv[1] : getenv("MIRAI_URL");
	mirai_errmsg err = {{0}};
	mirai_server *srv;
	int rv, why = MIRAI_EXIT_ERROR;

	if (url == NULL) {
		fprintf(stderr, "usage: sum_server URL (or MIRAI_URL=URL)\n");
		return MIRAI_EXIT_USAGE;
	}
	mirai_log_set(mirai_log_stderr, "sum_server", MIRAI_LOG_WARN);
	if ((rv = mirai_server_create(&srv, NULL, &err)) != 0) {
		fprintf(stderr, "sum_server: %s\n", err.text);
		return MIRAI_EXIT_ERROR;
	}
	if ((rv = mirai_plugin_init(srv)) != 0) {
		fprintf(stderr, "sum_server: registering: %s\n",
		    mirai_strerror(rv));
		mirai_server_destroy(srv);
		return MIRAI_EXIT_ERROR;
	}
	/* why gets the reason it stopped, a mirai_server_exit value. */
	if ((rv = mirai_server_run(srv, url, &why, &err)) != 0) {
		fprintf(stderr, "sum_server: %s\n", err.text);
		why = MIRAI_EXIT_ERROR;
	}
	mirai_server_destroy(srv);
	return why;
}
