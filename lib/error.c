/*
 * error.c: the error list (mirai.h's MIRAI_ERRORS) turned into text, the
 * helpers that fill an optional mirai_errmsg and check timeouts, and the
 * runtime version.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *
mirai_strerror(int err)
{
	switch (err) {
#define MIRAI_X_TEXT(name, value, text) \
	case value:                      \
		return text;
		MIRAI_ERRORS(MIRAI_X_TEXT)
#undef MIRAI_X_TEXT
	default:
		return "unknown error";
	}
}

const char *
mirai_errname(int err)
{
	switch (err) {
#define MIRAI_X_NAME(name, value, text) \
	case value:                      \
		return #name;
		MIRAI_ERRORS(MIRAI_X_NAME)
#undef MIRAI_X_NAME
	default:
		return "UNKNOWN";
	}
}

int
mirai__fail(mirai_errmsg *err, int rv, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL) {
		va_start(ap, fmt);
		vsnprintf(err->text, sizeof err->text, fmt, ap);
		va_end(ap);
	}
	return rv;
}

int
mirai__errmsg_out(mirai_errmsg *err, const mirai_errmsg *mine, int rv)
{
	if (rv != 0 && err != NULL) {
		if (mine->text[0] != '\0') {
			memcpy(err->text, mine->text, sizeof err->text);
			err->text[sizeof err->text - 1] = '\0';
		} else {
			snprintf(err->text, sizeof err->text, "%s", mirai_strerror(rv));
		}
	}
	return rv;
}

int64_t
mirai__timeout(int64_t timeout_ms, int64_t dflt)
{
	if (timeout_ms < MIRAI_FOREVER) {
		return -2;
	}
	return timeout_ms == 0 ? dflt : timeout_ms;
}

const char *
mirai_version(int *major, int *minor, int *patch)
{
	if (major != NULL) {
		*major = MIRAI_VERSION_MAJOR;
	}
	if (minor != NULL) {
		*minor = MIRAI_VERSION_MINOR;
	}
	if (patch != NULL) {
		*patch = MIRAI_VERSION_PATCH;
	}
	return MIRAI_VERSION_STRING;
}
