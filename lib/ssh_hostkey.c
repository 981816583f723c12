/*
 * ssh_hostkey.c: a session's host key against known_hosts: accepted,
 * refused, or learnt as the host's policy says.  Learnt host keys are
 * written here when they must be hashed, which libssh cannot do.  Only
 * lib/ssh*.c call libssh (see ssh.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libssh/libssh.h>
#include <mbedtls/base64.h>
#include <mbedtls/md.h>

#include "internal.h"
#include "ssh.h"
#include "ssh_int.h"

/* Hosts learned by different sessions, or modules, go to the same
 * known_hosts file: one at a time, so that none is checked half-written
 * or learned twice. */
static pthread_mutex_t known_hosts_lock = PTHREAD_MUTEX_INITIALIZER;

/* The known_hosts name field for name (len bytes), hashed as ssh-keygen -H
 * does: "|1|salt|HMAC-SHA1(salt, name)", a fresh random salt, base64. */
static int
hash_name(const char *name, size_t len, char *out, size_t out_len)
{
	const mbedtls_md_info_t *sha1 =
	    mbedtls_md_info_from_type(MBEDTLS_MD_SHA1);
	unsigned char salt[20], mac[20], salt64[32], mac64[32];
	size_t n;

	if (sha1 == NULL ||
	    getrandom(salt, sizeof salt, 0) != (ssize_t) sizeof salt ||
	    mbedtls_md_hmac(sha1, salt, sizeof salt,
	        (const unsigned char *) name, len, mac) != 0 ||
	    mbedtls_base64_encode(salt64, sizeof salt64, &n, salt,
	        sizeof salt) != 0 ||
	    mbedtls_base64_encode(mac64, sizeof mac64, &n, mac,
	        sizeof mac) != 0) {
		return -1;
	}
	snprintf(out, out_len, "|1|%s|%s", (char *) salt64, (char *) mac64);
	return 0;
}

/* Open path to append to it (and read its last byte), making its
 * directory (~/.ssh) if missing. */
static int
open_known_hosts(const char *path)
{
	int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	char *dir, *slash;

	if (fd >= 0 || errno != ENOENT || (dir = mirai__strdup(path)) == NULL) {
		return fd;
	}
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) == 0) {
			fd = open(path, O_RDWR | O_APPEND | O_CREAT |
			    O_CLOEXEC, 0600);
		}
	}
	free(dir);
	return fd;
}

/*
 * Add h's host key to known_hosts with its name hashed: libssh writes
 * only plain names.  The line is libssh's own export with the name field
 * replaced, written at once; a file whose last line lacks its newline
 * gets one first.  Under known_hosts_lock.
 */
static int
learn_hashed(host *h, mirai_errmsg *em)
{
	char *entry = NULL, *path = NULL, *line = NULL;
	char field[80], last = '\n';
	const char *rest;
	struct stat st;
	int fd = -1, n, rv = 0;

	if (ssh_session_export_known_hosts_entry(h->ss, &entry) != SSH_OK ||
	    ssh_options_get(h->ss, SSH_OPTIONS_KNOWNHOSTS, &path) != SSH_OK ||
	    (rest = strchr(entry, ' ')) == NULL) {
		rv = mirai__fail(em, MIRAI_ESSH, "%s: cannot add its host key "
		    "to known_hosts: %s", h->name, ssh_get_error(h->ss));
		goto out;
	}
	if (hash_name(entry, (size_t) (rest - entry), field, sizeof field) !=
	    0) {
		rv = mirai__fail(em, MIRAI_ECRYPTO, "%s: cannot hash its name "
		    "for known_hosts", h->name);
		goto out;
	}
	if ((fd = open_known_hosts(path)) < 0) {
		rv = mirai__fail(em, MIRAI_ESSH, "%s: cannot add its host key "
		    "to %s: %s", h->name, path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) == 0 && st.st_size > 0 &&
	    pread(fd, &last, 1, st.st_size - 1) != 1) {
		last = '\n';
	}
	n = asprintf(&line, "%s%s%s%s", last == '\n' ? "" : "\n", field, rest,
	    rest[strlen(rest) - 1] == '\n' ? "" : "\n");
	if (n < 0) {
		line = NULL;
		rv   = mirai__fail(em, MIRAI_ENOMEM, "%s: out of memory",
		      h->name);
	} else if (write(fd, line, (size_t) n) != n) {
		rv = mirai__fail(em, MIRAI_ESSH, "%s: cannot add its host key "
		    "to %s: %s", h->name, path, strerror(errno));
	}
out:
	if (fd >= 0) {
		close(fd);
	}
	free(line);
	ssh_string_free_char(entry);
	ssh_string_free_char(path);
	return rv;
}

int
mirai__ssh_check_host_key(mirai__ssh *s, host *h, mirai_errmsg *em)
{
	int rv = 0;

	pthread_mutex_lock(&known_hosts_lock);
	switch (ssh_session_is_known_server(h->ss)) {
	case SSH_KNOWN_HOSTS_OK:
		break;
	case SSH_KNOWN_HOSTS_CHANGED:
	case SSH_KNOWN_HOSTS_OTHER:
		rv = mirai__fail(em, MIRAI_ECRYPTO, "%s: host key changed "
		    "(possible attack; remove the old key from known_hosts)",
		    h->name);
		break;
	case SSH_KNOWN_HOSTS_UNKNOWN:
	case SSH_KNOWN_HOSTS_NOT_FOUND:
		if (h->hostkey != MIRAI__SSH_ACCEPT_NEW) {
			rv = mirai__fail(em, MIRAI_ECRYPTO, "%s: unknown host "
			    "key (use accept-new to learn it)", h->name);
		} else if (h->hash_known) {
			if ((rv = learn_hashed(h, em)) == 0) {
				MIRAI__LOG(MIRAI_LOG_WARN, "ssh", "%s: host key "
				    "learned and added, hashed, to "
				    "known_hosts", h->name);
			}
		} else if (ssh_session_update_known_hosts(h->ss) != SSH_OK) {
			rv = mirai__fail(em, MIRAI_ESSH, "%s: cannot add its "
			    "host key to known_hosts: %s", h->name,
			    ssh_get_error(h->ss));
		} else {
			MIRAI__LOG(MIRAI_LOG_WARN, "ssh",
			    "%s: host key learned and added to known_hosts",
			    h->name);
		}
		break;
	default:
		rv = mirai__fail(em, MIRAI_ESSH, "%s: cannot check the host "
		    "key: %s", h->name, ssh_get_error(h->ss));
		break;
	}
	pthread_mutex_unlock(&known_hosts_lock);
	return rv;
}
