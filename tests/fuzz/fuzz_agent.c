/*
 * fuzz_agent.c: hostile bytes against the agent setup decoder (what a
 * host agent reads from its stdin; lib/codec.c).
 *
 * The input goes to the decoder as mirai_agent_read() gives it, once for
 * node "n1" and once for no node.  Beyond "no crash, no read out of
 * bounds" the target checks that the decoder takes no byte past the end
 * record, that every string it returns is what its record held (no NUL
 * inside, env entries VAR=VALUE), within the limits, and that a setup
 * that decodes, encoded again, decodes to the same setup.
 *
 * Seeds in tests/fuzz/corpus/agent/ (binary, made with printf):
 *   one-url.bin     one URL with a bind index, one env entry
 *   nodes.bin       URLs for nodes n1 and n2, env with newlines
 *   no-bind.bin     a URL without bind index, an empty value
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/codec.h"
#include "fuzz.h"
#include "mirai.h"

/* Decode; returns the setup or NULL, *used the bytes taken. */
static mirai_agent_setup *
decode(const uint8_t *data, size_t size, const char *node, size_t *used)
{
	mirai__agent_dec d;
	mirai_errmsg err;
	mirai_agent_setup *s;
	size_t off = 0;
	int rv;

	mirai__agent_dec_init(&d, node);
	do {
		size_t want = mirai__agent_want(&d);
		if (size - off < want) {
			mirai__agent_dec_fini(&d);
			return NULL;
		}
		rv = mirai__agent_feed(&d, data + off, want, &err);
		off += want;
		CHECK(off <= size);
	} while (rv == 0);
	*used = off;
	if (rv != 1) {
		CHECK(rv == MIRAI_EPROTO || rv == MIRAI_ENOMEM);
		CHECK(strncmp(err.text, "agent setup: ", 13) == 0);
		mirai__agent_dec_fini(&d);
		return NULL;
	}
	s = mirai__agent_dec_take(&d);
	mirai__agent_dec_fini(&d);
	CHECK(s != NULL);
	/* The last byte taken ends the end record. */
	CHECK(off >= MIRAI__AGENT_REC_HDR &&
	    data[off - MIRAI__AGENT_REC_HDR] == 'Z');
	return s;
}

static void
check(const uint8_t *data, size_t size, const char *node)
{
	mirai_agent_setup *s, *again;
	mirai__wbuf w = {0};
	size_t used = 0, used2 = 0;

	if ((s = decode(data, size, node, &used)) == NULL) {
		return;
	}
	CHECK(s->nurls <= MIRAI_AGENT_MAX_URLS && s->nenv <= MIRAI_AGENT_MAX_ENV);
	mirai__agent_begin(&w);
	for (size_t i = 0; i < s->nurls; i++) {
		CHECK(s->urls[i][0] != '\0' && s->bind_index[i] >= -1);
		mirai__agent_url(&w, s->urls[i], s->bind_index[i]);
	}
	for (size_t i = 0; i < s->nenv; i++) {
		CHECK(mirai__agent_env_ok(s->env[i]) == 0);
		mirai__agent_env(&w, s->env[i]);
	}
	mirai__agent_end(&w);
	CHECK(!w.failed);
	/* Re-encoded without node records: every URL is kept. */
	again = decode(w.p, w.len, NULL, &used2);
	CHECK(again != NULL && used2 == w.len);
	CHECK(again->nurls == s->nurls && again->nenv == s->nenv);
	for (size_t i = 0; i < s->nurls; i++) {
		CHECK(strcmp(again->urls[i], s->urls[i]) == 0);
		CHECK(again->bind_index[i] == s->bind_index[i]);
	}
	for (size_t i = 0; i < s->nenv; i++) {
		CHECK(strcmp(again->env[i], s->env[i]) == 0);
	}
	mirai_agent_setup_free(again);
	mirai_agent_setup_free(s);
	free(w.p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check(data, size, "n1");
	check(data, size, NULL);
	return 0;
}
