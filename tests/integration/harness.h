/*
 * harness.h: what the integration tests share.  They use only the public
 * API, start real mirai-server processes, and kill whatever they start.
 */
#ifndef MIRAI_TEST_HARNESS_H
#define MIRAI_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <sys/types.h>

#include <cmocka.h>

#include <mirai.h>

/* Install a stderr logger (level from MIRAI_TEST_LOG, default warn) and
 * make this process a subreaper, so servers of a killed client are ours
 * to reap. */
void h_init(void);

/* The mirai-server under test ($MIRAI_SERVER). */
const char *h_server(void);

/* Path of a test plugin built beside the tests: h_plugin("hookplug"). */
const char *h_plugin(const char *name);

/* Start mirai-server dialing url with extra arguments (NULL-terminated
 * list, may be NULL). */
pid_t h_spawn_server(const char *url, const char *const *args);

/* Start any program; its stdout goes to a pipe whose read end is *out_fd
 * (if not NULL). */
pid_t h_spawn(const char *const *argv, int *out_fd);

/* As h_spawn(), with its stderr written to the file err_path (NULL: this
 * process's stderr). */
pid_t h_spawn_log(const char *const *argv, int *out_fd, const char *err_path);

/*
 * Start the mirai-dispatcher beside $MIRAI_SERVER with args
 * (NULL-terminated, --listen and --control among them), its stderr to
 * err_path (NULL: ours), and read the MIRAI_DISPATCHER_URL and
 * MIRAI_CONTROL_URL it prints into client_url and control_url (len bytes
 * each; "" if it printed none).
 */
pid_t h_spawn_dispatcher(const char *const *args, const char *err_path,
    char *client_url, char *control_url, size_t len);

/* Wait up to timeout_ms for pid (our child) to exit; 1 and *status if it
 * did, 0 if not. */
int h_wait_exit(pid_t pid, int timeout_ms, int *status);

/* 1 once pid no longer runs (gone, or a zombie), waiting up to
 * timeout_ms; reaps it if it is our child. */
int h_gone(pid_t pid, int timeout_ms);

/* SIGKILL and reap. */
void h_kill(pid_t pid);

/* SIGKILL and reap every process started with h_spawn*() that is still
 * there: for teardowns, so a failed test leaves nothing running. */
void h_cleanup(void);

/* Submit fn(data) on profile and wait; returns the error value and copies
 * up to cap-1 result bytes into buf (NUL-terminated) when buf is not NULL. */
int h_call(const char *profile, const char *fn, const char *data,
    char *buf, size_t cap);

/* The pid a server reports through mirai.info, or -1. */
int h_server_pid(const char *profile);

/* Set n local servers on profile (dispatcher as given); asserts success. */
void h_daemons(const char *profile, int n, int dispatcher);

/* Wait until the status of profile shows `connections` connections, up to
 * timeout_ms; returns the count seen last. */
int h_wait_connections(const char *profile, int connections, int timeout_ms);

/* A private temporary directory (created once per process). */
const char *h_tmpdir(void);

/* Milliseconds on the monotonic clock. */
int64_t h_now_ms(void);

#endif
