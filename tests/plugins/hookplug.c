/*
 * hookplug: a plugin with a serialization hook (XOR with a key byte), for
 * the tests of hook agreement.  The hook's name comes from TEST_HOOK_NAME
 * (default "xor-v1") so one plugin can play matching and mismatching hooks.
 */
#include <stdlib.h>
#include <string.h>

#include <mirai.h>

static int
xor_hook(void *arg, const void *in, size_t len, void **out, size_t *out_len)
{
	const unsigned char *p = in;
	unsigned char *q       = malloc(len > 0 ? len : 1);

	(void) arg;
	if (q == NULL) {
		return MIRAI_ENOMEM;
	}
	for (size_t i = 0; i < len; i++) {
		q[i] = p[i] ^ 0x5a;
	}
	*out     = q;
	*out_len = len;
	return 0;
}

/* Sees decoded bytes: returns them reversed. */
static int
reverse(mirai_task *task, void *arg)
{
	size_t len;
	const char *in = mirai_task_data(task, &len);
	char *out      = mirai_task_reply_buf(task, len);

	(void) arg;
	if (out == NULL) {
		return MIRAI_ENOMEM;
	}
	for (size_t i = 0; i < len; i++) {
		out[i] = in[len - 1 - i];
	}
	return 0;
}

int
mirai_plugin_init(mirai_server *srv)
{
	mirai_hook h = {0};
	const char *name = getenv("TEST_HOOK_NAME");
	int rv;

	h.name   = name != NULL ? name : "xor-v1";
	h.encode = xor_hook;
	h.decode = xor_hook;
	if ((rv = mirai_server_set_hook(srv, &h)) != 0) {
		return rv;
	}
	return mirai_server_register(srv, "test.reverse", reverse, NULL);
}
