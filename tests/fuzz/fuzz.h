/*
 * fuzz.h: the one function every fuzz target defines.
 *
 * The signature is libFuzzer's, so that a target builds unchanged with
 * clang -fsanitize=fuzzer (-DMIRAI_LIBFUZZER) and with driver.c, the
 * standalone driver used where clang is not there.
 */
#ifndef MIRAI_FUZZ_H
#define MIRAI_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A broken invariant is a finding: crash loudly so that the driver or
 * libFuzzer keeps the input. */
#define CHECK(cond)                                                    \
	do {                                                           \
		if (!(cond)) {                                         \
			fprintf(stderr, "%s:%d: check failed: %s\n",   \
			    __FILE__, __LINE__, #cond);                \
			abort();                                       \
		}                                                      \
	} while (0)

/*
 * Run one input.  data[0..size) lives in a buffer of exactly size bytes, so
 * a sanitizer sees any read past its end.  A target reports a broken
 * invariant by crashing (abort()); it returns 0 otherwise.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* MIRAI_FUZZ_H */
