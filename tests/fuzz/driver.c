/*
 * driver.c: runs a libFuzzer target (LLVMFuzzerTestOneInput) without
 * libFuzzer, so the normal suite exercises every fuzz target: first the
 * seed files given as arguments or in tests/fuzz/seeds/NAME/, then random
 * mutations of them for FUZZ_ITERATIONS rounds (default 3000) or
 * FUZZ_SECONDS (default 3). Prints TAP. Crashes show up as a failed test
 * (the process dies; under ASan with a report).
 */
#include "tap.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional: a target may provide seeds in code. */
__attribute__((weak)) int fuzz_seeds(void (*add)(const void *, size_t));

static unsigned char **seeds;
static size_t *seedlen, nseeds;

static void add_seed(const void *p, size_t n)
{
	seeds = realloc(seeds, (nseeds + 1) * sizeof *seeds);
	seedlen = realloc(seedlen, (nseeds + 1) * sizeof *seedlen);
	seeds[nseeds] = malloc(n + 1);
	memcpy(seeds[nseeds], p, n);
	seedlen[nseeds++] = n;
}

static void add_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return;
	unsigned char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	add_seed(buf, n);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(int argc, char **argv)
{
	const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	if (!strncmp(name, "test-fuzz-", 10))
		name += 10;
	for (int i = 1; i < argc; i++)
		add_file(argv[i]);
	char dir[512];
	snprintf(dir, sizeof dir, "%s/tests/fuzz/seeds/%s", getenv("ROOT") ? getenv("ROOT") : ".", name);
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char p[1024];
			snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
			add_file(p);
		}
		closedir(d);
	}
	if (fuzz_seeds)
		fuzz_seeds(add_seed);
	if (nseeds == 0)
		add_seed("", 0);
	for (size_t i = 0; i < nseeds; i++)
		LLVMFuzzerTestOneInput(seeds[i], seedlen[i]);
	ok(1, "%s: %zu seeds run", name, nseeds);

	long iters = getenv("FUZZ_ITERATIONS") ? atol(getenv("FUZZ_ITERATIONS")) : 3000;
	double secs = getenv("FUZZ_SECONDS") ? atof(getenv("FUZZ_SECONDS")) : 3.0;
	clock_t start = clock();
	unsigned char *buf = malloc(1 << 17);
	long done = 0;
	for (; done < iters; done++) {
		if ((double)(clock() - start) / CLOCKS_PER_SEC > secs)
			break;
		size_t s = next() % nseeds, n = seedlen[s];
		memcpy(buf, seeds[s], n);
		int muts = 1 + (int)(next() % 8);
		for (int m = 0; m < muts; m++) {
			switch (next() % 5) {
			case 0: /* flip a byte */
				if (n) buf[next() % n] ^= (unsigned char)(1 + next() % 255);
				break;
			case 1: /* truncate */
				if (n) n = next() % n;
				break;
			case 2: /* insert interesting bytes */
				if (n < (1 << 16)) {
					static const unsigned char vals[] = {0x00, 0xff, 0x7f, 0x80, 0xc0, 0xc1, 0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, '{', '}', '"', '\\', '[', ']', ':', ','};
					size_t at = n ? next() % (n + 1) : 0;
					memmove(buf + at + 1, buf + at, n - at);
					buf[at] = vals[next() % sizeof vals];
					n++;
				}
				break;
			case 3: /* duplicate a chunk */
				if (n && n < (1 << 15)) {
					size_t a = next() % n, len = 1 + next() % (n - a);
					memcpy(buf + n, buf + a, len);
					n += len;
				}
				break;
			case 4: /* splice with another seed */
				if (nseeds > 1) {
					size_t o = next() % nseeds, cut = n ? next() % n : 0, take = seedlen[o] ? next() % seedlen[o] : 0;
					if (cut + take < (1 << 17)) {
						memcpy(buf + cut, seeds[o], take);
						n = cut + take;
					}
				}
				break;
			}
		}
		LLVMFuzzerTestOneInput(buf, n);
	}
	ok(done > 0, "%s: %ld mutated inputs without a crash", name, done);
	free(buf);
	for (size_t i = 0; i < nseeds; i++)
		free(seeds[i]);
	free(seeds);
	free(seedlen);
	return tap_done();
}
