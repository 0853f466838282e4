/*
 * tokenizer.c: micro-benchmark of lib/model/tokenizer.c (run by bench/tokenizer.sh).
 *
 *   tokenizer MERGES TEXTS ROUNDS
 *
 * TEXTS holds the captions, each ended by a NUL byte. Prints one line per
 * round: seconds, captions, ids; then the load time of MERGES.
 */
#include "model/tokenizer.h"
#include "core/error.h"

#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	struct clip_tokenizer *t;
	FILE *f;
	char *texts;
	long size;
	int rounds, r;
	double t0, load;
	static int32_t ids[65536];

	if (argc != 4) {
		fprintf(stderr, "usage: tokenizer MERGES TEXTS ROUNDS\n");
		return 2;
	}
	rounds = atoi(argv[3]);
	t0 = now();
	t = clip_tokenizer_load(argv[1]);
	load = now() - t0;
	if (!t)
		errx(1, "%s", eosin_errmsg());
	if (!(f = fopen(argv[2], "rb")))
		err(1, "%s", argv[2]);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	texts = malloc((size_t)size + 1);
	if (!texts || fread(texts, 1, (size_t)size, f) != (size_t)size)
		errx(1, "%s: cannot read", argv[2]);
	fclose(f);
	for (r = 0; r < rounds; r++) {
		long pos = 0, ncap = 0, nids = 0;
		t0 = now();
		while (pos < size) {
			size_t len = strlen(texts + pos);
			int n = clip_tokenize(t, texts + pos, len, ids, 65536);
			if (n < 0)
				errx(1, "%s", eosin_errmsg());
			nids += n;
			ncap++;
			pos += (long)len + 1;
		}
		printf("%.6f %ld %ld\n", now() - t0, ncap, nids);
	}
	printf("load %.6f\n", load);
	clip_tokenizer_free(t);
	free(texts);
	return 0;
}
