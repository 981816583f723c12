/*
 * agent.c: reading the agent setup (codec.h decodes it) for a host's
 * agent: from a descriptor (`mirai-server --stdin`), exactly the setup's
 * bytes, record by record, so that whatever follows (the end of file that
 * stops the agent) is left to the caller; or from an owner-only file
 * (`mirai-server --setup-file`), checked as ssh checks a private key.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "internal.h"

/* Read exactly n bytes: 0, or MIRAI_ECLOSED at end of input or on error. */
static int
read_full(int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r <= 0) {
			return MIRAI_ECLOSED;
		}
		p += r;
		n -= (size_t) r;
	}
	return 0;
}

int
mirai_agent_read(int fd, const char *node, mirai_agent_setup **out,
    mirai_errmsg *err)
{
	mirai__agent_dec d;
	mirai_agent_setup *s;
	uint8_t hdr[MIRAI__AGENT_REC_HDR], *body = NULL;
	int rv;

	if (fd < 0 || out == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "agent setup: no input");
	}
	mirai__agent_dec_init(&d, node);
	do {
		size_t want = mirai__agent_want(&d);
		uint8_t *p  = hdr;
		if (d.state == 1 && want > 0) {
			if ((body = malloc(want)) == NULL) {
				mirai__agent_dec_fini(&d);
				return mirai__fail(err, MIRAI_ENOMEM,
				    "out of memory");
			}
			p = body;
		}
		if (read_full(fd, p, want) != 0) {
			free(body);
			mirai__agent_dec_fini(&d);
			return mirai__fail(err, MIRAI_ECLOSED,
			    "agent setup: the input ended before its end "
			    "record");
		}
		rv = mirai__agent_feed(&d, p, want, err);
		free(body);
		body = NULL;
	} while (rv == 0);
	if (rv < 0 || rv > 1) {
		mirai__agent_dec_fini(&d);
		return rv;
	}
	s = mirai__agent_dec_take(&d);
	mirai__agent_dec_fini(&d);
	if (s->nurls == 0) {
		mirai_agent_setup_free(s);
		return mirai__fail(err, MIRAI_ENOENT,
		    "agent setup: no server for node %s",
		    node != NULL ? node : "(unnamed)");
	}
	*out = s;
	return 0;
}

/*
 * The file's checks are made on the descriptor that is then read, so the
 * file cannot be swapped between them; O_NOFOLLOW refuses a link as the
 * last component, O_NONBLOCK keeps a FIFO from holding the open.
 */
int
mirai_agent_read_file(const char *path, const char *node,
    mirai_agent_setup **out, mirai_errmsg *err)
{
	struct stat st;
	int fd, e, rv;

	if (path == NULL || *path == '\0' || out == NULL) {
		return mirai__fail(err, MIRAI_EINVAL, "agent setup: no file");
	}
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) <
	    0) {
		e = errno;
		if (e == ELOOP) {
			return mirai__fail(err, MIRAI_EPERM,
			    "%s: a symbolic link, not the setup file", path);
		}
		return mirai__fail(err,
		    e == ENOENT || e == ENOTDIR ? MIRAI_ENOENT : MIRAI_EPERM,
		    "%s: %s", path, strerror(e));
	}
	if (fstat(fd, &st) != 0) {
		e = errno;
		close(fd);
		return mirai__fail(err, MIRAI_EPERM, "%s: %s", path,
		    strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		rv = mirai__fail(err, MIRAI_EPERM, "%s: not a regular file",
		    path);
	} else if (st.st_uid != geteuid()) {
		rv = mirai__fail(err, MIRAI_EPERM,
		    "%s: owned by uid %ld, not by this user (uid %ld): "
		    "another user could have written it",
		    path, (long) st.st_uid, (long) geteuid());
	} else if ((st.st_mode & 077) != 0) {
		rv = mirai__fail(err, MIRAI_EPERM,
		    "%s: mode %04o: group or others may read or write it "
		    "(it holds secrets: 0600 or stricter)",
		    path, (unsigned) (st.st_mode & 07777));
	} else {
		/* A regular file never blocks; back to plain reads. */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		rv = mirai_agent_read(fd, node, out, err);
	}
	close(fd);
	return rv;
}

void
mirai_agent_setup_free(mirai_agent_setup *s)
{
	if (s == NULL) {
		return;
	}
	for (size_t i = 0; i < s->nurls; i++) {
		free(s->urls[i]);
	}
	for (size_t i = 0; i < s->nenv; i++) {
		free(s->env[i]);
	}
	free(s->urls);
	free(s->bind_index);
	free(s->env);
	free(s->tls_ca);
	free(s);
}
