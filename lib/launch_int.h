/*
 * launch_int.h: what the launch's files share, and nothing else includes:
 * struct mirai_launch and the mirai__ln_ functions one launch file calls
 * in another.
 *
 *   launch.c         create (options, the plan of slots), the public
 *                    getters and the plan's JSON, destroy
 *   launch_start.c   start: the dispatcher, local servers, events from
 *                    children and ssh, progress until enough are online
 *   launch_remote.c  remote starts: the agent's argv and setup, over ssh,
 *                    one srun step or one pbsdsh, and this launch's TLS
 *                    material
 *
 * Starting a dispatcher and one server per slot of a host list,
 * MPI style.  It owns the plan (which server goes where, bound to what),
 * the start (local servers directly, remote ones over ssh, many at once),
 * watching them come online, and the teardown.
 *
 * A remote host gets one ssh exec, `mirai-server --stdin ...`, whatever its
 * number of slots: the servers' URLs (with their tokens) and the forwarded
 * environment travel over the channel's stdin, never on a command line
 * another user could read with ps, and that process starts the host's
 * servers (like Open MPI's orted: an exec costs the remote login shell's
 * start-up, tens to hundreds of milliseconds).  stdin then stays open; its
 * EOF (the launcher or its ssh channel gone) stops the servers: a second
 * tie besides their dispatcher links.  pbsdsh gives its tasks no stdin:
 * there the setup goes to an owner-only file on a file system the nodes
 * share, removed as soon as the start is over, and the dispatcher links
 * are the only tie.
 */
#ifndef MIRAI_LAUNCH_INT_H
#define MIRAI_LAUNCH_INT_H

#include "codec.h"
#include "internal.h"
#include "ssh.h"

#define TAG "launch"

struct mirai_launch {
	mirai_launch_opts o;
	char **strs;           /* strings owned by the launch */
	size_t nstrs;
	mirai_server_opts sopts; /* o.server points here; strings in sopts_mem */
	void *sopts_mem;
	const char **env;      /* o.env, owned */
	mirai_launch_slot *slots;
	size_t n;
	char (*errors)[256];   /* per slot */
	char (*urls)[512];     /* per slot */
	char (*bindings)[96];  /* per slot */
	int *snap_online;      /* refresh(): what the dispatcher said */
	int *snap_pid;
	char (*snap_binding)[96];
	pid_t *pids;           /* local children, 0 if none */
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	unsigned changes;
	int alive;             /* local children not yet reaped */
	mirai_dispatcher *d;
	pthread_t thr;
	int running;
	int cancelled;         /* mirai_launch_cancel: the start gives up */
	mirai__ssh *ssh;
	char myhost[256];
	int launcher;          /* MIRAI_LAUNCHER_SSH, _SRUN, _LOCAL or _PBS */
	int srun_cpus;         /* --cpus-per-task of the srun step */
	pid_t step_pid;        /* the srun or pbsdsh that started every
	                          agent, 0 if none (or it ended) */
	int srun_sock;         /* its stdin, our end; -1 if none */
	mirai__wbuf srun_in;   /* the setup all its agents read */
	int tls;               /* the slots are wss:// */
	int tls_links;         /* the client or control URL is TLS */
	int bind_advertised;   /* the default slots of a launch with remote
	                          servers: bind the advertised host's address */
	mirai__tls_ca *ca;     /* this launch's CA, once started */
	char tls_dir[96];      /* its files (owner-only), "" if none */
	char *tls_files[3];    /* ca.pem, cert.pem, key.pem in tls_dir */
	char *setup_tmpdir;    /* pbs: the setup file's directory (0700) */
	char *setup_file;      /* and the file (0600); NULL if none */
	pthread_t writer;
	int writing;           /* writer started */
};

/* ---- launch_start.c --------------------------------------------------- */

void mirai__ln_changed(mirai_launch *l);
/*
 * A child of the launch, just started: note pid in *at (under l->mtx),
 * count it alive and watch it, on_exit(pid, status, l) reaping it.  If it
 * cannot be watched it is killed and reaped at once, on_exit called with
 * status -1, and the call fails naming it by what.
 */
int mirai__ln_adopt(mirai_launch *l, pid_t pid, pid_t *at,
    void (*on_exit)(pid_t, int, void *), const char *what, mirai_errmsg *err);
/*
 * Fail servers [first, end) (of one host) with one reason, logged once:
 * a dead host with 50 slots is one line, not 50.  The caller's message
 * is complete; a server online already or failed already is left alone.
 * Logged at INFO: the launch's error, or mirai-launch's summary once it
 * goes on without them, reports each host once.
 */
void mirai__ln_fail_range(mirai_launch *l, size_t first, size_t end,
    const char *fmt, ...) MIRAI_PRINTF(4, 5);

/* ---- launch_remote.c -------------------------------------------------- */

int mirai__ln_tls_setup(mirai_launch *l, mirai_dispatcher_opts *dopts,
    mirai_errmsg *err);
int mirai__ln_start_remote(mirai_launch *l, size_t first, size_t count,
    mirai_errmsg *err);
int mirai__ln_start_srun(mirai_launch *l, mirai_errmsg *err);
int mirai__ln_start_pbs(mirai_launch *l, mirai_errmsg *err);
/* Remove the pbs agents' setup file and its directory, if any: once every
 * agent read it, or none will. */
void mirai__ln_setup_remove(mirai_launch *l);

#endif /* MIRAI_LAUNCH_INT_H */
