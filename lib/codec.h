/*
 * codec.h: the wire format shared by client, dispatcher and server.
 *
 * A message is a 16-byte header followed by frames:
 *
 *   header  u32 magic "MRAI" | u8 version | u8 flags | u16 nframes
 *           u32 seq (sender's message number) | u32 ack (highest peer seq
 *           received)
 *   frame   u8 type | u8 flags | u16 reserved | u32 body length | body
 *
 * All integers are little-endian.  Strings are u16 length + bytes, no NUL.
 * Decoding never trusts a length: every one is checked against what is left
 * of the message, and a bad frame is an error value, never a crash.
 */
#ifndef MIRAI_CODEC_H
#define MIRAI_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define MIRAI__MAGIC 0x4941524du /* bytes 'M' 'R' 'A' 'I' */
#define MIRAI__PROTO 2
#define MIRAI__HDR_LEN 16
#define MIRAI__FRAME_HDR_LEN 8

/* Message flags. */
#define MIRAI__M_ACKREQ 0x01 /* receiver: acknowledge this message now */

enum mirai__ftype {
	MIRAI__F_HELLO  = 1,  /* server -> client: who I am */
	MIRAI__F_TASK   = 2,  /* client -> server */
	MIRAI__F_RESULT = 3,  /* server -> client */
	MIRAI__F_CANCEL = 4,  /* client -> server: cancel task id */
	MIRAI__F_EXIT   = 5,  /* client -> server: exit (u32 flags, optional) */
	MIRAI__F_BYE    = 6,  /* server -> client: I am leaving (reason) */
	MIRAI__F_BOUNCE = 7,  /* server -> client: a task returned unstarted */
	MIRAI__F_PING   = 8,
	MIRAI__F_PONG   = 9,
	MIRAI__F_REQ    = 10, /* client -> dispatcher: a control request */
	MIRAI__F_REP    = 11, /* dispatcher -> client: its reply */
	MIRAI__F_GONE   = 12, /* answer to EXIT: nothing more comes from me */
	MIRAI__F_WHO    = 13, /* dispatcher -> attaching client: say HELLO */
	MIRAI__F_MAX    = 13,
};

/* Control requests (REQ frames). */
enum mirai__op {
	MIRAI__OP_STATUS = 1, /* reply: the status payload below */
	MIRAI__OP_SAISEI = 2, /* a: slot, b: force; reply: the new URL */
};

/* EXIT flags: cancel the running task instead of finishing it. */
#define MIRAI__EXIT_CANCEL 0x1u
/* The pipe was refused: no slot's secret in its HELLO, or the slot is taken. */
#define MIRAI__EXIT_REFUSED 0x2u

/* TASK flags: the low byte is the number of retries left; RETRIES_SET says
 * the task chose it (else the dispatcher's default applies). */
#define MIRAI__TF_RETRIES 0xffu
#define MIRAI__TF_RETRIES_SET 0x100u

/* Kinds of peer announced in HELLO. */
enum mirai__kind {
	MIRAI__KIND_SERVER     = 1,
	MIRAI__KIND_DISPATCHER = 2,
	MIRAI__KIND_CLIENT     = 3, /* attaching, or asking the control URL */
};

typedef struct mirai__msghdr {
	uint8_t version;
	uint8_t flags;
	uint16_t nframes;
	uint32_t seq;
	uint32_t ack;
} mirai__msghdr;

typedef struct mirai__frame {
	uint8_t type;
	uint8_t flags;
	const uint8_t *body; /* points into the message */
	uint32_t len;
} mirai__frame;

typedef struct mirai__reader {
	const uint8_t *p;
	size_t left;
	uint16_t remaining; /* frames still announced by the header */
} mirai__reader;

typedef struct mirai__task_view {
	uint64_t id;
	uint32_t timeout_ms;
	uint32_t flags;
	uint64_t hook;
	const char *fn; /* not NUL-terminated */
	uint16_t fn_len;
	const uint8_t *data;
	size_t len;
} mirai__task_view;

typedef struct mirai__result_view {
	uint64_t id;
	uint32_t status;     /* 0 or a mirai error value */
	uint32_t flags;
	uint64_t hook;
	const uint8_t *data; /* result bytes, or the error message */
	size_t len;
} mirai__result_view;

typedef struct mirai__hello_view {
	uint32_t proto;
	uint32_t kind;
	uint32_t pid;
	uint32_t flags;
	uint64_t hook;
	uint64_t max_tasks;   /* tasks it will still accept; 0: no limit */
	const char *host;
	uint16_t host_len;
	const char *version;
	uint16_t version_len;
	const char *binding;
	uint16_t binding_len;
	const char *hook_name;
	uint16_t hook_name_len;
	/* The slot and its secret, from the URL the server dialed (see
	 * mirai__url_cred): MIRAI__NO_SLOT and "" when it had none. */
	uint32_t slot;
	const char *secret;
	uint16_t secret_len;
} mirai__hello_view;

#define MIRAI__NO_SLOT UINT32_MAX

/* A control request and its reply. */
typedef struct mirai__req_view {
	uint64_t req;
	uint32_t op;
	uint32_t a, b;
} mirai__req_view;

typedef struct mirai__rep_view {
	uint64_t req;
	uint32_t status; /* 0, or an error value with a message as data */
	const uint8_t *data;
	size_t len;
} mirai__rep_view;

#define MIRAI__REQ_LEN (MIRAI__FRAME_HDR_LEN + 20)
#define MIRAI__REP_FIXED 12

/* Fixed part of a TASK body before the function name. */
#define MIRAI__TASK_FIXED 26
/* Fixed part of a RESULT body before the payload. */
#define MIRAI__RESULT_FIXED 24

/* Header. */
void mirai__hdr_encode(uint8_t *dst, const mirai__msghdr *h);
int mirai__msg_open(mirai__reader *r, const void *buf, size_t len,
    mirai__msghdr *h);
/* Next frame: 1 and *f filled, 0 at the end, or MIRAI_EPROTO (garbled). */
int mirai__msg_next(mirai__reader *r, mirai__frame *f);

/* Frames.  *_size gives the whole frame length including its header;
 * *_encode writes exactly that many bytes to dst. */
size_t mirai__task_size(size_t fn_len, size_t len);
void mirai__task_encode(uint8_t *dst, const mirai__task_view *t);
int mirai__task_decode(const mirai__frame *f, mirai__task_view *t);

/*
 * A BOUNCE (a server gives a task back unstarted) carries the whole TASK
 * frame.  decode checks that the inner frame is a TASK whose length fills
 * the BOUNCE exactly, and gives it as *inner.
 */
size_t mirai__bounce_size(size_t fn_len, size_t len);
void mirai__bounce_encode(uint8_t *dst, const mirai__task_view *t);
int mirai__bounce_decode(const mirai__frame *f, mirai__frame *inner);

/* Rewrite the flags of the encoded TASK frame at frame (header included). */
void mirai__task_set_flags(uint8_t *frame, uint32_t flags);

size_t mirai__result_size(size_t len);
void mirai__result_encode(uint8_t *dst, const mirai__result_view *r);
int mirai__result_decode(const mirai__frame *f, mirai__result_view *r);

size_t mirai__hello_size(const mirai__hello_view *h);
void mirai__hello_encode(uint8_t *dst, const mirai__hello_view *h);
int mirai__hello_decode(const mirai__frame *f, mirai__hello_view *h);

/* Frames carrying one u64 (CANCEL id, PING/PONG token), one u32 (BYE
 * reason), nothing (EXIT), or another whole frame (BOUNCE). */
#define MIRAI__U64_FRAME_LEN (MIRAI__FRAME_HDR_LEN + 8)
#define MIRAI__U32_FRAME_LEN (MIRAI__FRAME_HDR_LEN + 4)
void mirai__u64_frame_encode(uint8_t *dst, uint8_t type, uint64_t v);
void mirai__u32_frame_encode(uint8_t *dst, uint8_t type, uint32_t v);
int mirai__u64_frame_decode(const mirai__frame *f, uint64_t *v);
int mirai__u32_frame_decode(const mirai__frame *f, uint32_t *v);
void mirai__frame_hdr_encode(uint8_t *dst, uint8_t type, uint32_t len);

void mirai__req_encode(uint8_t *dst, const mirai__req_view *r);
int mirai__req_decode(const mirai__frame *f, mirai__req_view *r);
size_t mirai__rep_size(size_t len);
void mirai__rep_encode(uint8_t *dst, const mirai__rep_view *r);
int mirai__rep_decode(const mirai__frame *f, mirai__rep_view *r);

/*
 * A growable buffer for variable payloads (the status matrix), and a
 * bounds-checked reader for them.  Readers set failed instead of reading
 * past the end; the caller checks it once at the end.
 */
typedef struct mirai__wbuf {
	uint8_t *p;
	size_t len, cap;
	int failed;
} mirai__wbuf;

void mirai__w_u8(mirai__wbuf *w, uint8_t v);
void mirai__w_u32(mirai__wbuf *w, uint32_t v);
void mirai__w_u64(mirai__wbuf *w, uint64_t v);
void mirai__w_str(mirai__wbuf *w, const char *s);

/*
 * The status payload a dispatcher answers OP_STATUS with: the counts, then
 * one row per slot.  Strings are views into the payload (not terminated).
 */
typedef struct mirai__status_head {
	uint64_t queued, running, completed, retried;
	uint32_t nrows;
} mirai__status_head;

typedef struct mirai__status_row {
	const char *url, *host, *binding;
	uint16_t url_len, host_len, binding_len;
	uint8_t online;
	uint64_t instance, assigned, complete, retries;
	uint32_t pid;
} mirai__status_row;

/* Smallest encoded row: a bogus row count fails before anything is
 * allocated for it. */
#define MIRAI__STATUS_ROW_MIN (3 * 2 + 1 + 4 * 8 + 4)

typedef struct mirai__rbuf {
	const uint8_t *p, *end;
	int failed;
} mirai__rbuf;

uint8_t mirai__r_u8(mirai__rbuf *r);
uint32_t mirai__r_u32(mirai__rbuf *r);
uint64_t mirai__r_u64(mirai__rbuf *r);
/* A string, copied NUL-terminated into buf (truncated to cap-1). */
void mirai__r_str(mirai__rbuf *r, char *buf, size_t cap);

/* Little-endian helpers. */
static inline void
mirai__put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
}

static inline void
mirai__put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
}

static inline void
mirai__put64(uint8_t *p, uint64_t v)
{
	mirai__put32(p, (uint32_t) v);
	mirai__put32(p + 4, (uint32_t) (v >> 32));
}

static inline uint16_t
mirai__get16(const uint8_t *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

static inline uint32_t
mirai__get32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) |
	    ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static inline uint64_t
mirai__get64(const uint8_t *p)
{
	return (uint64_t) mirai__get32(p) | ((uint64_t) mirai__get32(p + 4) << 32);
}

/* FNV-1a 64 of a NUL-terminated string; never 0 (0 means "no hook"). */
uint64_t mirai__hash64(const char *s);

/* Write the status head, then each row (w records running out of room). */
void mirai__status_head_encode(mirai__wbuf *w, const mirai__status_head *h);
void mirai__status_row_encode(mirai__wbuf *w, const mirai__status_row *r);
/*
 * Read a status payload: the head into *h, then each row (pointing into
 * data) into rows[0..h->nrows), an array decode allocates (*rows, freed by
 * the caller; NULL when there are none).  Every length is checked against
 * the payload; nothing may follow the last row.  Returns 0, MIRAI_EPROTO
 * or MIRAI_ENOMEM.
 */
int mirai__status_decode(const uint8_t *data, size_t len,
    mirai__status_head *h, mirai__status_row **rows);

/* The mirai.exec result layout: i32 status | u32 n | out | u32 n | err. */
size_t mirai__exec_size(size_t out_len, size_t err_len);
void mirai__exec_encode(uint8_t *dst, int status, const void *out,
    size_t out_len, const void *err, size_t err_len);

/*
 * The agent setup (mirai_agent_read() in mirai.h) that the launcher writes
 * to a host agent's stdin.  A run of records, each
 *
 *   u8 type | u32 body length | body
 *
 *   'H'  "mirai-agent/1"        first, once: what follows and its version
 *   'N'  node name              the 'U' records after it are for that
 *                               node only; an empty name: for every agent
 *   'U'  i32 bind index | URL   a server (bind index -1: none)
 *   'E'  VAR=VALUE              environment for the servers
 *   'C'  PEM text               the CA that signs the dispatcher's TLS
 *                               certificate (at most once)
 *   'Z'  (empty)                the end: nothing after it is the setup's
 *
 * Lengths, not separators, delimit: a body holds any bytes, NUL excepted
 * (names, URLs and environment are C strings), up to MIRAI_AGENT_MAX_RECORD;
 * a setup is at most MIRAI_AGENT_MAX_TOTAL bytes.  The encoder trusts its
 * caller (the launcher checks -x values first); the decoder trusts nothing.
 */
#define MIRAI__AGENT_REC_HDR 5
#define MIRAI__AGENT_HELLO "mirai-agent/1"

void mirai__agent_begin(mirai__wbuf *w);
void mirai__agent_node(mirai__wbuf *w, const char *node);
void mirai__agent_url(mirai__wbuf *w, const char *url, int bind_index);
void mirai__agent_env(mirai__wbuf *w, const char *var_value);
void mirai__agent_ca(mirai__wbuf *w, const char *pem);
void mirai__agent_end(mirai__wbuf *w);
/* 0 if s can travel as an 'E' record ("VAR=VALUE", VAR not empty, within
 * the record limit), else -1. */
int mirai__agent_env_ok(const char *s);

/*
 * An incremental decoder, so that a reader takes exactly the setup's bytes
 * from a stream: ask mirai__agent_want() how many bytes come next (0 is
 * possible: an empty body), and give exactly those to mirai__agent_feed(),
 * which returns 0 (more to come), 1 (the end record: done) or an error
 * (MIRAI_EPROTO, MIRAI_ENOMEM) with err filled.  The setup being built
 * belongs to the decoder until mirai__agent_dec_take().
 */
struct mirai_agent_setup;
struct mirai_errmsg;
typedef struct mirai__agent_dec {
	const char *node;  /* whose 'U' records to keep; NULL: nobody's */
	int state;         /* 0 header, 1 body, 2 done, -1 failed */
	uint8_t hdr[MIRAI__AGENT_REC_HDR];
	uint8_t type;
	uint32_t len;
	int hello;         /* the 'H' record was seen */
	int mine;          /* the current 'N' group is for this node */
	size_t total;      /* bytes so far */
	size_t urls_seen;  /* 'U' records, anybody's */
	struct mirai_agent_setup *s;
} mirai__agent_dec;

void mirai__agent_dec_init(mirai__agent_dec *d, const char *node);
size_t mirai__agent_want(const mirai__agent_dec *d);
int mirai__agent_feed(mirai__agent_dec *d, const uint8_t *p, size_t n,
    struct mirai_errmsg *err);
/* The decoded setup (after feed returned 1), now the caller's. */
struct mirai_agent_setup *mirai__agent_dec_take(mirai__agent_dec *d);
void mirai__agent_dec_fini(mirai__agent_dec *d);
/* Whether node name a is b, or the short form of one is the other. */
int mirai__agent_node_match(const char *a, const char *b, size_t blen);

#endif /* MIRAI_CODEC_H */
