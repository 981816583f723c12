/*
 * hello: an example client.  Under mirai-launch it attaches to the
 * launcher's dispatcher (MIRAI_DISPATCHER_URL); on its own it starts local
 * servers.  It submits a few kinds of task, prints the results and the
 * status of the profile.
 *
 *   mirai-launch --hostfile hosts.example -- hello
 *   hello [N]   on its own: N local servers (default 2)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mirai.h>

#define NTASKS 8

static int
check(int rv, const char *what, const mirai_errmsg *err)
{
	if (rv != 0) {
		fprintf(stderr, "hello: %s: %s\n", what,
		    err != NULL && err->text[0] ? err->text : mirai_strerror(rv));
		exit(1);
	}
	return rv;
}

int
main(int argc, char **argv)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_errmsg err     = {{0}};
	mirai *ms[NTASKS];
	mirai *info, *ex, *late;
	mirai_call_opts co = MIRAI_CALL_OPTS_INIT;
	mirai_exec_result xr;
	mirai_status *st;
	char *json;
	size_t len;

	d.n = argc > 1 ? atoi(argv[1]) : 2;
	mirai_log_set(mirai_log_stderr, "hello", MIRAI_LOG_WARN);
	if (getenv("MIRAI_DISPATCHER_URL") != NULL) {
		check(mirai_attach(NULL, NULL, 0, &err), "attaching", &err);
		printf("attached to the launcher's dispatcher\n");
	} else {
		check(mirai_daemons(&d, &err), "setting daemons", &err);
		printf("daemons: %d local servers\n", d.n);
	}

	/* Many small tasks at once, spread over the servers. */
	for (int i = 0; i < NTASKS; i++) {
		char msg[32];
		snprintf(msg, sizeof msg, "task %d", i);
		check(mirai_call(NULL, "mirai.echo", msg, strlen(msg), &ms[i]),
		    "submitting", NULL);
	}
	check(mirai_call(NULL, "mirai.info", NULL, 0, &info), "submitting", NULL);
	const char *cmd = "echo \"hello from $(hostname)\"; echo oops >&2; exit 3";
	check(mirai_call(NULL, "mirai.exec", cmd, strlen(cmd), &ex), "submitting",
	    NULL);
	/* A task that cannot finish in time resolves with error value 5. */
	co.timeout_ms = 100;
	check(mirai_call(&co, "mirai.sleep", "5000", 4, &late), "submitting",
	    NULL);

	mirai_wait_all(ms, NTASKS, MIRAI_FOREVER);
	for (int i = 0; i < NTASKS; i++) {
		const char *data = mirai_data(ms[i], &len);
		printf("echo %d -> %.*s\n", i, (int) len, data ? data : "");
	}
	if (mirai_wait(info) == 0) {
		const char *data = mirai_data(info, &len);
		printf("info -> %.*s\n", (int) len, data);
	}
	if (mirai_wait(ex) == 0) {
		const void *data = mirai_data(ex, &len);
		if (mirai_exec_parse(data, len, &xr) == 0) {
			printf("exec -> status %d, stdout %.*s", xr.status,
			    (int) xr.out_len, xr.out);
			printf("        stderr %.*s", (int) xr.err_len, xr.err);
		}
	}
	int rv = mirai_wait(late);
	printf("sleep with timeout -> error %d (%s)\n", rv,
	    mirai_errortext(late));

	check(mirai_status_get(NULL, &st), "status", NULL);
	check(mirai_status_json(st, &json), "status", NULL);
	printf("status: %s\n", json);
	free(json);
	mirai_status_free(st);

	for (int i = 0; i < NTASKS; i++) {
		mirai_free(ms[i]);
	}
	mirai_free(info);
	mirai_free(ex);
	mirai_free(late);
	mirai_reset(NULL);
	mirai_shutdown();
	return 0;
}
