/*
 * client_status.c: what a profile reports and the requests it sends its
 * dispatcher: the status (built here, or from a dispatcher's payload),
 * its JSON form, control requests to a dispatcher's link or control URL
 * (with the TLS files a tls+tcp:// or wss:// one needs), and saisei.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

/* How long a control request waits for the dispatcher's reply. */
#define REQUEST_MS 5000

/*
 * Ask the dispatcher (op, a, b) and wait up to timeout_ms for the reply,
 * which fills r.  Returns 0 or an error value (then r->data may hold the
 * dispatcher's message).  Called unlocked.
 */
static int
request(profile *p, uint32_t op, uint32_t a, uint32_t b, creq *r,
    int64_t timeout_ms)
{
	int64_t deadline = mirai__now_ms() + timeout_ms;
	mirai__req_view q = {.op = op, .a = a, .b = b};
	mirai__out *o;
	peer *pk;
	int rv;

	memset(r, 0, sizeof *r);
	pthread_mutex_lock(&p->mtx);
	if (p->closing || (pk = mirai__cl_dispatcher_peer(p)) == NULL || pk->exit_sent) {
		pthread_mutex_unlock(&p->mtx);
		return MIRAI_ECLOSED;
	}
	if ((o = mirai__out_new(MIRAI__REQ_LEN)) == NULL) {
		pthread_mutex_unlock(&p->mtx);
		return MIRAI_ENOMEM;
	}
	r->id = q.req = ++p->next_req;
	mirai__req_encode(mirai__out_frame(o), &q);
	MIRAI__LIST_PUSH_FRONT(&p->reqs, r, entry);
	mirai__outq_push_front(&pk->queue, o);
	mirai__cl_try_send(p, pk);
	while (!r->done && mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&p->cv, &p->mtx, deadline);
	}
	MIRAI__LIST_REMOVE(&p->reqs, r, entry);
	rv = r->done ? r->status : MIRAI_ETIMEDOUT;
	pthread_mutex_unlock(&p->mtx);
	return rv;
}

static int
saisei_impl(const char *name, size_t i, int force, char **new_url,
    mirai_errmsg *err)
{
	profile *p = NULL;
	pname *n;
	creq r;
	int rv;

	if (name == NULL) {
		name = "default";
	}
	if (i > UINT32_MAX) {
		return mirai__fail(err, MIRAI_EINVAL, "no slot %zu", i);
	}
	pthread_mutex_lock(&mirai__cl_reg_mtx);
	if ((n = mirai__cl_pname_find(name)) != NULL && (p = n->set) != NULL) {
		mirai__cl_profile_ref(p);
	}
	pthread_mutex_unlock(&mirai__cl_reg_mtx);
	if (p == NULL || !p->dispatcher) {
		if (p != NULL) {
			mirai__cl_profile_unref(p);
		}
		return mirai__fail(err, MIRAI_ESTATE,
		    "profile '%s' has no dispatcher: saisei regenerates a "
		    "dispatcher's server URL",
		    name);
	}
	rv = request(p, MIRAI__OP_SAISEI, (uint32_t) i, force != 0, &r,
	    REQUEST_MS);
	if (rv == 0 && new_url != NULL) {
		*new_url = (char *) r.data;
		r.data   = NULL;
	} else if (rv != 0) {
		mirai__fail(err, rv, "%s",
		    r.data != NULL ? (char *) r.data : mirai_strerror(rv));
	}
	free(r.data);
	mirai__cl_profile_unref(p);
	return rv;
}

int
mirai_saisei(const char *name, size_t i, int force, char **new_url,
    mirai_errmsg *err)
{
	mirai_errmsg mine = {{0}};

	return mirai__errmsg_out(err, &mine, saisei_impl(name, i, force, new_url, &mine));
}

/* ---- status ----------------------------------------------------------- */

/*
 * A status built from a dispatcher's status payload (rv: 0, or the error
 * value of asking for it, which leaves the rows empty).  *out is set, or
 * MIRAI_ENOMEM returned.
 */
static int
status_build(const char *name, const uint8_t *data, size_t len, int rv,
    mirai_status **out)
{
	mirai__status_head h = {0};
	mirai__status_row *rows = NULL;
	mirai_status *st;
	size_t strings;
	char *sp;

	if (rv == 0 && (rv = mirai__status_decode(data, len, &h, &rows)) != 0) {
		h = (mirai__status_head) {0};
	}
	strings = strlen(name) + 2;
	for (uint32_t i = 0; i < h.nrows; i++) {
		strings += (size_t) rows[i].url_len + rows[i].host_len +
		    rows[i].binding_len + 3;
	}
	st = calloc(1, sizeof *st + h.nrows * sizeof *st->rows + strings);
	if (st == NULL) {
		free(rows);
		return MIRAI_ENOMEM;
	}
	st->rows    = (mirai_status_row *) (st + 1);
	sp          = (char *) (st->rows + h.nrows);
	st->profile = strcpy(sp, name);
	sp += strlen(name) + 1;
	st->url = strcpy(sp, "");
	sp += 1;
	for (uint32_t i = 0; i < h.nrows; i++) {
		mirai_status_row *row = &st->rows[i];
		row->url              = sp;
		sp = (char *) memcpy(sp, rows[i].url, rows[i].url_len) +
		    rows[i].url_len;
		*sp++     = '\0';
		row->host = sp;
		sp = (char *) memcpy(sp, rows[i].host, rows[i].host_len) +
		    rows[i].host_len;
		*sp++        = '\0';
		row->binding = sp;
		sp = (char *) memcpy(sp, rows[i].binding, rows[i].binding_len) +
		    rows[i].binding_len;
		*sp++         = '\0';
		row->online   = rows[i].online;
		row->instance = rows[i].instance;
		row->assigned = rows[i].assigned;
		row->complete = rows[i].complete;
		row->retries  = rows[i].retries;
		row->pid      = (int) rows[i].pid;
	}
	free(rows);
	st->set        = 1;
	st->dispatcher = 1;
	st->nrows      = h.nrows;
	st->queued     = h.queued;
	st->running    = h.running;
	st->completed  = h.completed;
	st->retried    = h.retried;
	st->error      = rv;
	*out           = st;
	return 0;
}

/* The status matrix, asked of the dispatcher.  Consumes the reference to
 * p.  A dispatcher that does not answer gives a status with error set. */
static int
status_dispatcher(profile *p, const char *name, mirai_status **out)
{
	mirai_status *st;
	creq r;
	int rv, connected;

	rv = request(p, MIRAI__OP_STATUS, 0, 0, &r, REQUEST_MS);
	if (status_build(name, r.data, r.len, rv, &st) != 0) {
		free(r.data);
		mirai__cl_profile_unref(p);
		return MIRAI_ENOMEM;
	}
	free(r.data);
	pthread_mutex_lock(&p->mtx);
	connected       = mirai__cl_dispatcher_peer(p) != NULL;
	st->dispatcher_pid = connected ? mirai__cl_dispatcher_peer(p)->pid : 0;
	st->connections    = connected;
	st->daemons        = p->daemons;
	/* Tasks still here count as queued too. */
	st->queued += p->unassigned.count;
	for (size_t i = 0; i < p->npeers; i++) {
		st->queued += p->peers[i]->nqueue;
	}
	pthread_mutex_unlock(&p->mtx);
	mirai__cl_profile_unref(p);
	*out = st;
	return 0;
}

/* ---- control requests: any process, at a dispatcher's control URL ----- */

/* The reply of one control request, or why none will come. */
typedef struct ctl_wait {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	mirai__msg *rep;
	int rv; /* the request could not be sent */
} ctl_wait;

static void
ctl_recv(void *arg, mirai__msg *m)
{
	ctl_wait *w = arg;

	pthread_mutex_lock(&w->mtx);
	if (w->rep == NULL) {
		w->rep = m;
		m      = NULL;
	}
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mtx);
	mirai__msg_free(m);
}

static void
ctl_sent(void *arg, int rv)
{
	ctl_wait *w = arg;

	pthread_mutex_lock(&w->mtx);
	w->rv = rv;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mtx);
}

static int
is_tls_url(const char *url)
{
	return strncmp(url, "wss://", 6) == 0 || strncmp(url, "tls+", 4) == 0;
}

/*
 * Dial url with the TLS files of o (or the environment's), send req
 * (consumed) and wait for one message back into *rep.  The dial waits for
 * the first attempt: with TLS, a dispatcher the CA did not sign fails it.
 */
static int
ctl_roundtrip(const char *url, const mirai_control_opts *o, mirai__msg *req,
    mirai__msg **rep, mirai_errmsg *err)
{
	ctl_wait w = {.rep = NULL};
	mirai__link_cfg cfg = {.recv = ctl_recv, .sent = ctl_sent, .arg = &w};
	int64_t deadline;
	mirai__link *l;
	int rv;

	cfg.tls.ca_file   = o->tls_ca != NULL ? o->tls_ca : getenv("MIRAI_TLS_CA");
	cfg.tls.cert_file = o->tls_cert != NULL ? o->tls_cert
						: getenv("MIRAI_TLS_CERT");
	cfg.tls.key_file  = o->tls_key != NULL ? o->tls_key
					       : getenv("MIRAI_TLS_KEY");
	if (is_tls_url(url) &&
	    (cfg.tls.ca_file == NULL || *cfg.tls.ca_file == '\0')) {
		mirai__msg_free(req);
		return mirai__fail(err, MIRAI_ENOTSUP,
		    "%s: a TLS control URL needs the CA that signs the "
		    "dispatcher's certificate: set MIRAI_TLS_CA to its PEM file "
		    "(mirai --tls-ca, mirai_control_opts.tls_ca)",
		    url);
	}
	pthread_mutex_init(&w.mtx, NULL);
	mirai__cond_init(&w.cv);
	if ((rv = mirai__link_open(&l, &cfg, err)) != 0) {
		mirai__msg_free(req);
		goto out;
	}
	if ((rv = mirai__link_dial(l, url, 1, err)) != 0) {
		mirai__msg_free(req);
		mirai__link_close(l);
		goto out;
	}
	mirai__link_start(l);
	/* sent() runs only when the socket did not take it at once. */
	mirai__link_send(l, req);
	deadline = mirai__now_ms() + REQUEST_MS;
	pthread_mutex_lock(&w.mtx);
	while (w.rep == NULL && w.rv == 0 && mirai__now_ms() < deadline) {
		mirai__cond_wait_until(&w.cv, &w.mtx, deadline);
	}
	pthread_mutex_unlock(&w.mtx);
	/* Closing waits for the callbacks: w is ours again after it. */
	mirai__link_close(l);
	if (w.rep != NULL) {
		*rep = w.rep;
		rv   = 0;
	} else if (w.rv != 0) {
		rv = mirai__fail(err, w.rv, "cannot ask %s: %s", url,
		    mirai_strerror(w.rv));
	} else {
		rv = mirai__fail(err, MIRAI_ETIMEDOUT, "no answer from %s within "
		    "%d ms", url, REQUEST_MS);
	}
out:
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mtx);
	return rv;
}

/* One control request (op, a, b) to a dispatcher's control URL,
 * synchronously.  *data (malloc'd, NUL-terminated) gets the reply's
 * payload. */
static int
control_request(const mirai_control_opts *o, uint32_t op, uint32_t a,
    uint32_t b, uint8_t **data, size_t *len, mirai_errmsg *err)
{
	mirai__req_view q = {.req = 1, .op = op, .a = a, .b = b};
	mirai__msghdr h   = {.nframes = 1, .seq = 1};
	const char *url   = o->url;
	mirai__out *hello = NULL;
	char base[1024], secret[MIRAI__SECRET_HEX + 1];
	uint32_t slot;
	mirai__reader r;
	mirai__frame f;
	mirai__rep_view rep;
	mirai__msg *msg;
	int rv;

	*data = NULL;
	*len  = 0;
	if (url == NULL) {
		url = getenv("MIRAI_CONTROL_URL");
	}
	if (url == NULL || *url == '\0') {
		return mirai__fail(err, MIRAI_EINVAL,
		    "no control URL: give one or set MIRAI_CONTROL_URL "
		    "(mirai-launch sets it)");
	}
	/* A control URL that ends in a secret: our HELLO holding it goes
	 * first in the request. */
	if (strlen(url) >= sizeof base) {
		return mirai__fail(err, MIRAI_EADDRINVAL, "URL too long");
	}
	if (mirai__url_cred(url, base, sizeof base, &slot, secret) &&
	    (hello = mirai__cl_hello(slot, secret)) == NULL) {
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	if ((rv = mirai__msg_alloc(&msg, MIRAI__HDR_LEN + MIRAI__REQ_LEN +
			(hello != NULL ? hello->len : 0))) != 0) {
		mirai__out_free(hello);
		return mirai__fail(err, MIRAI_ENOMEM, "out of memory");
	}
	{
		uint8_t *w = mirai__msg_body(msg);
		h.nframes  = hello != NULL ? 2 : 1;
		mirai__hdr_encode(w, &h);
		w += MIRAI__HDR_LEN;
		if (hello != NULL) {
			memcpy(w, mirai__out_frame(hello), hello->len);
			w += hello->len;
			mirai__out_free(hello);
		}
		mirai__req_encode(w, &q);
	}
	explicit_bzero(secret, sizeof secret);
	/* The dispatcher sends one reply and nothing after: closing once it
	 * arrived is safe. */
	if ((rv = ctl_roundtrip(base, o, msg, &msg, err)) != 0) {
		return rv;
	}
	rv = MIRAI_EPROTO;
	if (mirai__msg_open(&r, mirai__msg_body(msg), mirai__msg_len(msg), &h) == 0 &&
	    mirai__msg_next(&r, &f) == 1 && mirai__rep_decode(&f, &rep) == 0 &&
	    (*data = malloc(rep.len + 1)) != NULL) {
		memcpy(*data, rep.data, rep.len);
		(*data)[rep.len] = '\0';
		*len             = rep.len;
		rv               = (int) rep.status;
		if (rv != 0) {
			mirai__fail(err, rv, "%s", (char *) *data);
		}
	} else {
		mirai__fail(err, rv, "a garbled answer from %s", url);
	}
	mirai__msg_free(msg);
	return rv;
}

static int
control_status_impl(const mirai_control_opts *o, mirai_status **out,
    mirai_errmsg *err)
{
	uint8_t *data;
	size_t len;
	int rv;

	if (out == NULL) {
		return MIRAI_EINVAL;
	}
	if ((rv = control_request(o, MIRAI__OP_STATUS, 0, 0, &data, &len, err)) != 0) {
		free(data);
		return rv;
	}
	rv = status_build("dispatcher", data, len, 0, out);
	if (rv == 0) {
		(*out)->connections = 1;
		if ((*out)->error != 0) {
			rv = mirai__fail(err, (*out)->error, "a garbled status");
			mirai_status_free(*out);
		}
	}
	free(data);
	return rv;
}

int
mirai_control_status(const mirai_control_opts *o, mirai_status **out,
    mirai_errmsg *err)
{
	mirai_control_opts none = MIRAI_CONTROL_OPTS_INIT;
	mirai_errmsg mine       = {{0}};

	return mirai__errmsg_out(err, &mine,
	    control_status_impl(o != NULL ? o : &none, out, &mine));
}

int
mirai_status_query(const char *url, mirai_status **out, mirai_errmsg *err)
{
	mirai_control_opts o = MIRAI_CONTROL_OPTS_INIT;

	o.url = url;
	return mirai_control_status(&o, out, err);
}

static int
control_saisei_impl(const mirai_control_opts *o, size_t i, int force,
    char **new_url, mirai_errmsg *err)
{
	uint8_t *data;
	size_t len;
	int rv;

	if (i > UINT32_MAX) {
		return mirai__fail(err, MIRAI_EINVAL, "no slot %zu", i);
	}
	rv = control_request(o, MIRAI__OP_SAISEI, (uint32_t) i, force != 0,
	    &data, &len, err);
	if (rv == 0 && new_url != NULL) {
		*new_url = (char *) data;
		data     = NULL;
	}
	free(data);
	return rv;
}

int
mirai_control_saisei(const mirai_control_opts *o, size_t i, int force,
    char **new_url, mirai_errmsg *err)
{
	mirai_control_opts none = MIRAI_CONTROL_OPTS_INIT;
	mirai_errmsg mine       = {{0}};

	return mirai__errmsg_out(err, &mine, control_saisei_impl(o != NULL ? o : &none,
	    i, force, new_url, &mine));
}

int
mirai_saisei_query(const char *url, size_t i, int force, char **new_url,
    mirai_errmsg *err)
{
	mirai_control_opts o = MIRAI_CONTROL_OPTS_INIT;

	o.url = url;
	return mirai_control_saisei(&o, i, force, new_url, err);
}

/* The URL pk dialed: with the profile's secret at a URL it gives out. */
static const char *
peer_url(const profile *p, const peer *pk)
{
	return pk->sk->admits && p->url != NULL ? p->url : pk->sk->url;
}

int
mirai_status_get(const char *name, mirai_status **out)
{
	mirai_status *st;
	profile *p = NULL;
	pname *n;
	size_t strings = 0, rows = 0;
	const char *url;
	char *sp;

	if (out == NULL) {
		return MIRAI_EINVAL;
	}
	if (name == NULL) {
		name = "default";
	}
	pthread_mutex_lock(&mirai__cl_reg_mtx);
	if ((n = mirai__cl_pname_find(name)) != NULL && (p = n->set) != NULL) {
		mirai__cl_profile_ref(p);
	}
	pthread_mutex_unlock(&mirai__cl_reg_mtx);
	if (p != NULL && p->dispatcher) {
		return status_dispatcher(p, name, out);
	}
	if (p != NULL) {
		pthread_mutex_lock(&p->mtx);
	}
	/* One allocation: the struct, the rows, then the strings. */
	url     = p != NULL && p->url != NULL ? p->url : "";
	strings = strlen(name) + 1 + strlen(url) + 1;
	if (p != NULL) {
		for (size_t i = 0; i < p->npeers; i++) {
			if (p->peers[i]->online) {
				rows++;
				strings += strlen(p->peers[i]->host) + 1 +
				    strlen(peer_url(p, p->peers[i])) + 1 +
				    strlen(p->peers[i]->binding) + 1;
			}
		}
	}
	st = calloc(1, sizeof *st + rows * sizeof *st->rows + strings);
	if (st == NULL) {
		if (p != NULL) {
			pthread_mutex_unlock(&p->mtx);
			mirai__cl_profile_unref(p);
		}
		return MIRAI_ENOMEM;
	}
	st->rows    = (mirai_status_row *) (st + 1);
	sp          = (char *) (st->rows + rows);
	st->profile = strcpy(sp, name);
	sp += strlen(name) + 1;
	st->url = strcpy(sp, url);
	sp += strlen(url) + 1;
	if (p != NULL) {
		st->set     = 1;
		st->daemons = p->daemons;
		st->queued  = p->unassigned.count;
		for (size_t i = 0; i < p->npeers; i++) {
			peer *pk = p->peers[i];
			mirai_status_row *r;
			if (!pk->online) {
				continue;
			}
			st->connections++;
			st->queued += pk->nqueue;
			st->running += pk->ninflight;
			r      = &st->rows[st->nrows++];
			r->url = strcpy(sp, peer_url(p, pk));
			sp += strlen(r->url) + 1;
			r->host = strcpy(sp, pk->host);
			sp += strlen(pk->host) + 1;
			r->binding = strcpy(sp, pk->binding);
			sp += strlen(pk->binding) + 1;
			r->online   = 1;
			r->instance = 1;
			r->assigned = pk->assigned;
			r->complete = pk->complete;
			r->pid      = pk->pid;
		}
		st->completed = p->completed;
		st->retried   = p->retried;
		pthread_mutex_unlock(&p->mtx);
		mirai__cl_profile_unref(p);
	}
	*out = st;
	return 0;
}

void
mirai_status_free(mirai_status *st)
{
	free(st);
}

int
mirai_status_json(const mirai_status *st, char **out)
{
	mirai__sb sb = {0};

	if (st == NULL || out == NULL) {
		return MIRAI_EINVAL;
	}
	mirai__sb_printf(&sb, "{\"profile\":");
	mirai__sb_json_str(&sb, st->profile);
	mirai__sb_printf(&sb,
	    ",\"set\":%s,\"dispatcher\":%s,\"connections\":%d,\"daemons\":%d,"
	    "\"url\":",
	    st->set ? "true" : "false", st->dispatcher ? "true" : "false",
	    st->connections, st->daemons);
	mirai__sb_json_str(&sb, st->url);
	mirai__sb_printf(&sb,
	    ",\"queued\":%" PRIu64 ",\"running\":%" PRIu64
	    ",\"completed\":%" PRIu64 ",\"retried\":%" PRIu64
	    ",\"error\":%d,\"dispatcher_pid\":%d,\"servers\":[",
	    st->queued, st->running, st->completed, st->retried, st->error,
	    st->dispatcher_pid);
	for (size_t i = 0; i < st->nrows; i++) {
		const mirai_status_row *r = &st->rows[i];
		mirai__sb_printf(&sb, "%s{\"url\":", i > 0 ? "," : "");
		mirai__sb_json_str(&sb, r->url);
		mirai__sb_printf(&sb,
		    ",\"online\":%d,\"instance\":%" PRIu64 ",\"assigned\":%" PRIu64
		    ",\"complete\":%" PRIu64 ",\"retries\":%" PRIu64
		    ",\"pid\":%d,\"host\":",
		    r->online, r->instance, r->assigned, r->complete, r->retries,
		    r->pid);
		mirai__sb_json_str(&sb, r->host);
		mirai__sb_printf(&sb, ",\"binding\":");
		mirai__sb_json_str(&sb, r->binding != NULL ? r->binding : "");
		mirai__sb_printf(&sb, "}");
	}
	mirai__sb_printf(&sb, "]}");
	if (sb.failed) {
		free(sb.buf);
		return MIRAI_ENOMEM;
	}
	*out = sb.buf;
	return 0;
}
