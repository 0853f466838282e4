/*
 * test-tokenizer-fuzz.c: the libFuzzer entry point of
 * tests/fuzz/fuzz-tokenizer.c run without libFuzzer, over a few thousand
 * generated inputs (random bytes, CLIP-relevant fragments, mutated
 * captions), so that every `make check` exercises it in bounded time.
 */
#include "tap.h"

#include "../fuzz/fuzz-tokenizer.c"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11) % n;
}

static const char *const fragment[] = {
    "a",
    "Hello",
    "WORLD",
    "tion",
    " ",
    "\t",
    "\r\n",
    "\x1c",
    "\xc2\x85",
    "\xc2\xa0",
    "\xe3\x80\x80",
    "\xe2\x80\x8b",
    "0",
    "40x",
    "\xc3\x97"
    "40",
    "\xc2\xb5m",
    "'s",
    "'S",
    "'\xc5\xbf",
    "'ll",
    "''",
    "!?",
    "...",
    "\xce\xa3",
    "\xce\x91\xce\xa3",
    "\xc4\xb0",
    "\xcd\x85",
    "e\xcc\x81",
    "\xe2\x85\xa3",
    "\xe2\x91\xa0",
    "\xe4\xb8\xad\xe6\x96\x87",
    "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x94\xac",
    "<|endoftext|>",
    "<|startoftext|>",
    "<|\xc5\xbftartoftext|>",
    "&amp;",
    "&amp",
    "&ampx",
    "&AMP;",
    "&lt;",
    "&notit;",
    "&#65;",
    "&#x41",
    "&#0;",
    "&#128;",
    "&#x110000;",
    "&#xD800;",
    "&#99999999999999999999;",
    "&#;",
    "&#x;",
    "&",
    "&amp;amp;",
    "&#38;lt;",
    "&nGt;",
    "&NotNestedGreaterGreater;",
    "\xff",
    "\xe2\x82",
    "\xed\xa0\x80",
    "\xf4\x90\x80\x80",
    "\xc0\xaf",
    "",
};

int main(void)
{
	enum { N = 4000 };
	const char *caption = "Poorly differentiated adenocarcinoma (por2) with signet-ring cells; "
	                      "H&amp;E, x40. Well-differentiated tubular adenocarcinoma.";
	unsigned char buf[2048];
	int i, failed = 0;

	for (i = 0; i < N; i++) {
		size_t len = 0, k, n;
		switch (i % 4) {
		case 0: /* random bytes */
			n = rnd(64);
			for (k = 0; k < n; k++)
				buf[len++] = (unsigned char)rnd(256);
			break;
		case 1: /* fragments */
		case 2:
			n = rnd(24);
			for (k = 0; k < n; k++) {
				const char *f = fragment[rnd(sizeof fragment / sizeof *fragment)];
				size_t fl = strlen(f);
				if (len + fl > sizeof buf)
					break;
				memcpy(buf + len, f, fl);
				len += fl;
			}
			break;
		default: /* a caption with a few bytes changed, inserted or cut */
			len = strlen(caption);
			memcpy(buf, caption, len);
			for (n = rnd(8); n > 0; n--) {
				size_t at = rnd((uint32_t)len + 1);
				switch (rnd(3)) {
				case 0:
					if (at < len)
						buf[at] = (unsigned char)rnd(256);
					break;
				case 1:
					if (len < sizeof buf) {
						memmove(buf + at + 1, buf + at, len - at);
						buf[at] = (unsigned char)rnd(256);
						len++;
					}
					break;
				default: len = at;
				}
			}
		}
		failed += fuzz_check_input(buf, len) < 0;
	}
	ok(failed == 0, "%d inputs through the fuzz checks: %d failed", N, failed);
	/* A long input of the fragments, once. */
	{
		size_t len = 0;
		unsigned char *big = malloc(200000);
		while (len < 190000) {
			const char *f = fragment[rnd(sizeof fragment / sizeof *fragment)];
			memcpy(big + len, f, strlen(f));
			len += strlen(f);
		}
		ok(fuzz_check_input(big, len) == 0, "a %zu-byte input of fragments", len);
		free(big);
	}
	clip_tokenizer_free(fuzz_tokenizer);
	return tap_done();
}
