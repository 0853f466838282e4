/*
 * test-safetensors-fuzz: the fuzz target tests/fuzz/fuzz-safetensors.c
 * run without libFuzzer over its seeds, the reference weight files' headers
 * and FUZZ_ITERATIONS (default 20000) random mutations of them: byte flips,
 * truncations, digit changes inside the JSON. Passing means no crash (a
 * crash kills the process, which prove reports); under ASan no bad access.
 */
#include "tap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/fuzz-safetensors.c"

static unsigned char *seed[16];
static size_t seedlen[16], nseed;

static void add(const void *p, size_t n)
{
	if (nseed == 16)
		return;
	seed[nseed] = malloc(n);
	memcpy(seed[nseed], p, n);
	seedlen[nseed++] = n;
}

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(void)
{
	fuzz_seeds(add);
	/* The first 64 KiB of the reference files: header plus some data. */
	const char *shared = getenv("SHARED") ? getenv("SHARED") : "../shared/data";
	const char *files[] = {"vit_weights.safetensors", "clip_weights.safetensors"};
	for (int i = 0; i < 2; i++) {
		char path[1024];
		snprintf(path, sizeof path, "%s/reference/%s", shared, files[i]);
		FILE *f = fopen(path, "rb");
		if (!f)
			continue;
		unsigned char *buf = malloc(1 << 16);
		size_t n = fread(buf, 1, 1 << 16, f);
		fclose(f);
		add(buf, n);
		free(buf);
	}
	for (size_t i = 0; i < nseed; i++)
		LLVMFuzzerTestOneInput(seed[i], seedlen[i]);
	ok(1, "%zu seeds parsed or refused without a crash", nseed);
	long iters = getenv("FUZZ_ITERATIONS") ? atol(getenv("FUZZ_ITERATIONS")) : 20000;
	for (long it = 0; it < iters; it++) {
		size_t s = next() % nseed, n = seedlen[s];
		unsigned char *buf = malloc(n + 1);
		memcpy(buf, seed[s], n);
		int nmut = 1 + (int)(next() % 4);
		for (int m = 0; m < nmut; m++) {
			size_t at = next() % (n < 600 ? n : 600); /* mostly the header */
			switch (next() % 5) {
			case 0: buf[at] ^= (unsigned char)(1u << (next() % 8)); break;
			case 1: buf[at] = (unsigned char)"0123456789[]{},:\"-eE."[next() % 21]; break;
			case 2: n = at + 1; break;                      /* truncate */
			case 3: buf[next() % 8] = (unsigned char)next(); break; /* header length */
			default: buf[at] = (unsigned char)next(); break;
			}
		}
		LLVMFuzzerTestOneInput(buf, n);
		free(buf);
	}
	ok(1, "%ld random mutations parsed or refused without a crash", iters);
	for (size_t i = 0; i < nseed; i++)
		free(seed[i]);
	return tap_done();
}
