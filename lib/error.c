/*
 * error.c: the error list (mirai.h's MIRAI_ERRORS) turned into text, and
 * the helper that fills an optional mirai_errmsg.
 */
#include <stdarg.h>
#include <stdio.h>

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
