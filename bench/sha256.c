/*
 * bench/sha256.c: driver for bench/sha256.sh. Hashes a 16384-byte buffer
 * over and over with each SHA-256 block function this CPU has, and
 * base64-encodes an 18432-byte buffer (a tile's JPEG) with base64_encode
 * and with a plain four-look-ups-per-three-bytes encoder for comparison;
 * prints "NAME MB/s" per line, MB = 1e6 bytes of input, by CPU time
 * (as `openssl speed` counts it), each for about SECONDS.
 * Usage: sha256 SECONDS
 */
#include "core/json.h"
#include "core/sha256.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Base64 with one look-up per output character, for comparison. */
static size_t base64_simple(const unsigned char *in, size_t n, char *out)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0, i = 0;
	for (; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64[v >> 18];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = b64[(v >> 6) & 63];
		out[o++] = b64[v & 63];
	}
	if (i < n) {
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
		out[o++] = b64[v >> 18];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = 0;
	return o;
}

static volatile unsigned sink;

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 1;
	enum { SHA_BYTES = 16384, B64_BYTES = 18432 };
	unsigned char *buf = malloc(B64_BYTES);
	char *text = malloc(B64_BYTES / 3 * 4 + 8);
	for (int i = 0; i < B64_BYTES; i++)
		buf[i] = (unsigned char)(i * 2654435761u >> 13);

	static const char *impls[] = {"portable", "sha-ni"};
	for (int k = 0; k < 2; k++) {
		if (sha256_use(impls[k]) < 0)
			continue;
		double t0 = cpu_seconds(), t;
		long n = 0;
		char hex[65];
		do {
			for (int r = 0; r < 16; r++, n++) {
				sha256_hex(buf, SHA_BYTES, hex);
				sink += (unsigned char)hex[0];
			}
		} while ((t = cpu_seconds() - t0) < seconds);
		printf("sha256-%s %.1f\n", impls[k], n * (double)SHA_BYTES / t / 1e6);
	}
	for (int k = 0; k < 2; k++) {
		double t0 = cpu_seconds(), t;
		long n = 0;
		do {
			for (int r = 0; r < 64; r++, n++) {
				size_t len = k ? base64_encode(buf, B64_BYTES, text)
				               : base64_simple(buf, B64_BYTES, text);
				sink += (unsigned char)text[len - 1];
			}
		} while ((t = cpu_seconds() - t0) < seconds);
		printf("base64-%s %.1f\n", k ? "ours" : "simple", n * (double)B64_BYTES / t / 1e6);
	}
	free(buf);
	free(text);
	return 0;
}
