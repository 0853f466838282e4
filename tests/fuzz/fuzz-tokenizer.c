/*
 * fuzz-tokenizer.c: libFuzzer target for lib/model/tokenizer.c.
 *
 *   make fuzz && build-fuzz/bin/fuzz-tokenizer -max_total_time=60 CORPUS/
 *
 * Any byte string is valid input. Checked for every input: no crash or
 * sanitizer report; the count is the same with and without room; every id is
 * in the vocabulary; clip_tokenize_context agrees with clip_tokenize
 * (SOT, the ids, EOT, zero padding, or the truncated form). The tokenizer
 * is CLIP's real merges file when it can be found (EOSIN_CLIP_MERGES, else
 * $EOSIN_SHARED or ../shared/data, /tokenizers/bpe_simple_vocab_16e6.txt.gz),
 * else a small
 * merges file written to /tmp, so that the target runs anywhere.
 * tests/unit/test-tokenizer-fuzz.c runs the same entry point without
 * libFuzzer.
 */
#include "model/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct clip_tokenizer *fuzz_tokenizer;

/* A few merges over the letters of "hello world" and friends. */
static const char fuzz_small_merges[] = "#version: 0.2\n"
                                        "h e\nl l\nl o</w>\nhe ll\nw o\nr l\nrl d</w>\nwo rl\n"
                                        "e r</w>\nt h\nth e</w>\ni n\nin g</w>\nĠ Ġ\n";

static int fuzz_setup(void)
{
	const char *path = getenv("EOSIN_CLIP_MERGES"), *shared = getenv("EOSIN_SHARED");
	char tmp[] = "/tmp/eosin-fuzz-merges-XXXXXX", buf[4096];
	int fd;

	if (fuzz_tokenizer)
		return 0;
	if (!path) {
		snprintf(buf, sizeof buf, "%s/tokenizers/bpe_simple_vocab_16e6.txt.gz",
		         shared ? shared : "../shared/data");
		path = buf;
	}
	fuzz_tokenizer = clip_tokenizer_load(path);
	if (fuzz_tokenizer)
		return 0;
	fd = mkstemp(tmp);
	if (fd < 0)
		return -1;
	if (write(fd, fuzz_small_merges, sizeof fuzz_small_merges - 1) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	fuzz_tokenizer = clip_tokenizer_load(tmp);
	unlink(tmp);
	return fuzz_tokenizer ? 0 : -1;
}

/* Tokenize one input and check the invariants; 0 or -1. */
static int fuzz_check_input(const uint8_t *data, size_t size)
{
	enum { CTX = 77 };
	const struct clip_tokenizer *t;
	int32_t *ids, ctx[CTX], small[4];
	int n, i, cap, nctx, truncated, vocab, bad = 0;

	if (fuzz_setup() < 0)
		return -1;
	t = fuzz_tokenizer;
	vocab = clip_tokenizer_vocab_size(t);
	cap = (int)(3 * size + 8); /* at most 3 ids a byte: U+0130 */
	ids = malloc((size_t)cap * sizeof *ids);
	if (!ids)
		return -1;
	n = clip_tokenize(t, (const char *)data, size, ids, cap);
	if (n < 0 || n > cap) {
		free(ids);
		return -1;
	}
	for (i = 0; i < n; i++)
		bad |= ids[i] < 0 || ids[i] >= vocab;
	bad |= clip_tokenize(t, (const char *)data, size, small, 4) != n;
	bad |= memcmp(small, ids, (size_t)(n < 4 ? n : 4) * sizeof *ids) != 0;
	nctx = clip_tokenize_context(t, (const char *)data, size, ctx, CTX, &truncated);
	bad |= nctx != (n + 2 > CTX ? CTX : n + 2) || truncated != (n + 2 > CTX);
	if (!bad) {
		bad |= ctx[0] != clip_tokenizer_sot(t) || ctx[nctx - 1] != clip_tokenizer_eot(t);
		for (i = 1; i < nctx - 1; i++)
			bad |= ctx[i] != ids[i - 1];
		for (i = nctx; i < CTX; i++)
			bad |= ctx[i] != 0;
	}
	free(ids);
	return bad ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fuzz_check_input(data, size) < 0)
		abort();
	return 0;
}
