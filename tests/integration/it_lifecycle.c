/*
 * it_lifecycle: when the client goes away for any reason, its servers go
 * too, finishing a task in progress first.  The client here is this same
 * program started again with --client.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static const char *self;

/* Client mode: n local servers, print their pids, optionally start a task
 * that writes a file after a while, then wait to be killed. */
static int
client_main(int n, const char *marker)
{
	mirai_daemons_opts d = MIRAI_DAEMONS_OPTS_INIT;
	mirai_status *st;
	mirai *m = NULL;

	d.n          = n;
	d.dispatcher = MIRAI_DISPATCHER_OFF;
	if (mirai_daemons(&d, NULL) != 0 || mirai_status_get(NULL, &st) != 0) {
		return 1;
	}
	if (marker != NULL) {
		char cmd[512];
		snprintf(cmd, sizeof cmd, "sleep 1; touch '%s'", marker);
		if (mirai_call(NULL, "mirai.exec", cmd, strlen(cmd), &m) != 0) {
			return 1;
		}
		usleep(200000);
	}
	for (size_t i = 0; i < st->nrows; i++) {
		printf("%d\n", st->rows[i].pid);
	}
	printf("ready\n");
	fflush(stdout);
	mirai_status_free(st);
	sleep(60);
	return 0;
}

static int
read_pids(int fd, int *pids, int max)
{
	FILE *f = fdopen(fd, "r");
	char line[64];
	int n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "ready", 5) == 0) {
			break;
		}
		if (n < max) {
			pids[n++] = atoi(line);
		}
	}
	fclose(f);
	return n;
}

static void
test_kill9_client(void **state)
{
	const char *argv[] = {self, "--client", "3", NULL};
	int pids[8], fd, n;
	pid_t c;

	(void) state;
	c = h_spawn(argv, &fd);
	n = read_pids(fd, pids, 8);
	assert_int_equal(n, 3);
	h_kill(c);
	for (int i = 0; i < n; i++) {
		assert_true(pids[i] > 0);
		assert_true(h_gone(pids[i], 5000));
	}
}

static void
test_task_finishes_first(void **state)
{
	char marker[512];
	const char *argv[] = {self, "--client", "1", marker, NULL};
	struct stat sb;
	int pids[2], fd, n;
	pid_t c;

	(void) state;
	snprintf(marker, sizeof marker, "%s/finished", h_tmpdir());
	unlink(marker);
	c = h_spawn(argv, &fd);
	n = read_pids(fd, pids, 2);
	assert_int_equal(n, 1);
	h_kill(c);
	/* The server outlives its client only to finish the task. */
	assert_true(h_gone(pids[0], 5000));
	assert_int_equal(stat(marker, &sb), 0);
	unlink(marker);
	rmdir(h_tmpdir());
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kill9_client),
	    cmocka_unit_test(test_task_finishes_first),
	};

	self = argv[0];
	if (argc >= 3 && strcmp(argv[1], "--client") == 0) {
		return client_main(atoi(argv[2]), argc > 3 ? argv[3] : NULL);
	}
	h_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
