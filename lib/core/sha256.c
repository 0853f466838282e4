/*
 * sha256.c: SHA-256 as FIPS 180-4 specifies it. See sha256.h.
 *
 * The work is in a block function, blocks(h, p, n): fold n 64-byte blocks
 * at p into the state h[8] (A..H). sha256_update() hands it every whole
 * block straight from the caller's memory and buffers only the ragged
 * ends. Two block functions:
 *  - portable: plain C, rounds unrolled eight at a time so the working
 *    variables rotate by name rather than by copying, the message schedule
 *    kept as a 16-word ring;
 *  - sha-ni: the x86 SHA extensions (SHA256RNDS2 does two rounds,
 *    SHA256MSG1/MSG2 the schedule), compiled for those instructions alone
 *    (target attribute) and used only where cpuid says the CPU has them.
 */
#include "core/sha256.h"

#include "core/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

typedef void block_fn(uint32_t h[8], const unsigned char *p, size_t nblocks);

/* ---- portable ---- */

static inline uint32_t ror(uint32_t x, int n)
{
	return x >> n | x << (32 - n);
}

static inline uint32_t load_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#define BSIG0(x) (ror(x, 2) ^ ror(x, 13) ^ ror(x, 22))
#define BSIG1(x) (ror(x, 6) ^ ror(x, 11) ^ ror(x, 25))
#define SSIG0(x) (ror(x, 7) ^ ror(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ror(x, 17) ^ ror(x, 19) ^ ((x) >> 10))
#define CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))

/* w[i & 15] becomes W[i] (i >= 16) from W[i-16], W[i-15], W[i-7], W[i-2]. */
#define SCHEDULE(i)                                                                          \
	(w[(i) & 15] += SSIG1(w[((i) - 2) & 15]) + w[((i) - 7) & 15] + SSIG0(w[((i) - 15) & 15]))

/* Round i, the eight working variables named in their current roles. */
#define ROUND(a, b, c, d, e, f, g, h, i, wi)                                                 \
	do {                                                                                 \
		uint32_t t1 = h + BSIG1(e) + CH(e, f, g) + K[i] + (wi);                      \
		d += t1;                                                                     \
		h = t1 + BSIG0(a) + MAJ(a, b, c);                                            \
	} while (0)

#define EIGHT_ROUNDS(i, W)                                                                   \
	do {                                                                                 \
		ROUND(a, b, c, d, e, f, g, h, (i) + 0, W((i) + 0));                          \
		ROUND(h, a, b, c, d, e, f, g, (i) + 1, W((i) + 1));                          \
		ROUND(g, h, a, b, c, d, e, f, (i) + 2, W((i) + 2));                          \
		ROUND(f, g, h, a, b, c, d, e, (i) + 3, W((i) + 3));                          \
		ROUND(e, f, g, h, a, b, c, d, (i) + 4, W((i) + 4));                          \
		ROUND(d, e, f, g, h, a, b, c, (i) + 5, W((i) + 5));                          \
		ROUND(c, d, e, f, g, h, a, b, (i) + 6, W((i) + 6));                          \
		ROUND(b, c, d, e, f, g, h, a, (i) + 7, W((i) + 7));                          \
	} while (0)

#define W_FIRST(i) w[i]
#define W_LATER(i) SCHEDULE(i)

static void blocks_portable(uint32_t st[8], const unsigned char *p, size_t nblocks)
{
	for (; nblocks; nblocks--, p += 64) {
		uint32_t w[16]; /* W[i] for the last 16 i, at w[i & 15] */
		for (int i = 0; i < 16; i++)
			w[i] = load_be32(p + 4 * i);
		uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
		uint32_t e = st[4], f = st[5], g = st[6], h = st[7];
		EIGHT_ROUNDS(0, W_FIRST);
		EIGHT_ROUNDS(8, W_FIRST);
		for (int i = 16; i < 64; i += 8)
			EIGHT_ROUNDS(i, W_LATER);
		st[0] += a;
		st[1] += b;
		st[2] += c;
		st[3] += d;
		st[4] += e;
		st[5] += f;
		st[6] += g;
		st[7] += h;
	}
}

/* ---- SHA extensions ---- */

#ifdef HAVE_SHA_NI
/*
 * SHA256RNDS2 keeps the state in two registers, ABEF and CDGH (A in the
 * top dword), and does two rounds with the two low dwords of its third
 * operand as W[i] + K[i]; after two rounds the old ABEF is the new CDGH,
 * so the two registers swap roles each call and are back in place after
 * four rounds. The schedule goes four words at a time: for group g
 * (W[4g..4g+3], g >= 4), MSG1 adds sigma0 of the next word to each of
 * W[4g-16..4g-13], the sum gains W[4g-7..4g-4], and MSG2 adds sigma1 of the
 * words two back, taking them from W[4g-4..4g-1] and from its own results.
 */
__attribute__((target("sha,sse4.1"))) static void blocks_sha_ni(uint32_t st[8],
                                                                 const unsigned char *p,
                                                                 size_t nblocks)
{
	/* bytes of each dword reversed: the message is big-endian */
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
	__m128i abcd = _mm_loadu_si128((const __m128i *)&st[0]);
	__m128i efgh = _mm_loadu_si128((const __m128i *)&st[4]);
	__m128i badc = _mm_shuffle_epi32(abcd, 0xb1);         /* dwords B A D C (low first) */
	__m128i hgfe = _mm_shuffle_epi32(efgh, 0x1b);         /* H G F E */
	__m128i abef = _mm_alignr_epi8(badc, hgfe, 8);        /* F E B A */
	__m128i cdgh = _mm_blend_epi16(hgfe, badc, 0xf0);     /* H G D C */

	for (; nblocks; nblocks--, p += 64) {
		__m128i abef0 = abef, cdgh0 = cdgh;
		__m128i m[4]; /* W[4g..4g+3] at m[g & 3] */
		for (int g = 0; g < 4; g++)
			m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), bswap);
#pragma GCC unroll 16
		for (int g = 0; g < 16; g++) {
			if (g >= 4) {
				__m128i t = _mm_sha256msg1_epu32(m[g & 3], m[(g + 1) & 3]);
				t = _mm_add_epi32(t, _mm_alignr_epi8(m[(g + 3) & 3], m[(g + 2) & 3], 4));
				m[g & 3] = _mm_sha256msg2_epu32(t, m[(g + 3) & 3]);
			}
			__m128i wk = _mm_add_epi32(m[g & 3], _mm_loadu_si128((const __m128i *)&K[4 * g]));
			cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
			wk = _mm_shuffle_epi32(wk, 0x0e);
			abef = _mm_sha256rnds2_epu32(abef, cdgh, wk);
		}
		abef = _mm_add_epi32(abef, abef0);
		cdgh = _mm_add_epi32(cdgh, cdgh0);
	}

	__m128i feba = _mm_shuffle_epi32(abef, 0x1b);         /* A B E F */
	__m128i dchg = _mm_shuffle_epi32(cdgh, 0xb1);         /* G H C D */
	_mm_storeu_si128((__m128i *)&st[0], _mm_blend_epi16(feba, dchg, 0xf0));
	_mm_storeu_si128((__m128i *)&st[4], _mm_alignr_epi8(dchg, feba, 8));
}

static int cpu_has_sha_ni(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3))
		return 0;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return 0;
	return (b & bit_SHA) != 0;
}
#endif

/* ---- choosing one ---- */

struct impl {
	const char *name;
	block_fn *fn;
	int (*available)(void);
};

static int always(void)
{
	return 1;
}

static const struct impl impls[] = {
#ifdef HAVE_SHA_NI
    {"sha-ni", blocks_sha_ni, cpu_has_sha_ni},
#endif
    {"portable", blocks_portable, always},
};
#define NIMPLS (sizeof impls / sizeof impls[0])

static const struct impl *chosen;
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;

/* The first available in impls[] (fastest first) unless EOSIN_SHA256 names one. */
static void choose(void)
{
	const char *want = getenv("EOSIN_SHA256");
	for (size_t i = 0; i < NIMPLS && !chosen; i++)
		if (impls[i].available() && (!want || !*want || !strcmp(want, impls[i].name)))
			chosen = &impls[i];
	if (!chosen) /* an unknown or unavailable name: the one that always works */
		chosen = &impls[NIMPLS - 1];
}

static const struct impl *impl(void)
{
	pthread_once(&choose_once, choose);
	return chosen;
}

const char *sha256_impl(void)
{
	return impl()->name;
}

int sha256_use(const char *name)
{
	impl();
	for (size_t i = 0; i < NIMPLS; i++) {
		if (strcmp(name, impls[i].name))
			continue;
		if (!impls[i].available())
			return eosin_error("sha256 '%s': not supported by this cpu", name);
		chosen = &impls[i];
		return 0;
	}
	return eosin_error("sha256 '%s': no such implementation", name);
}

/* ---- the hash ---- */

void sha256_init(struct sha256 *s)
{
	static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	memcpy(s->h, h0, sizeof h0);
	s->len = 0;
	s->nbuf = 0;
}

void sha256_update(struct sha256 *s, const void *data, size_t n)
{
	const unsigned char *p = data;
	block_fn *blocks = impl()->fn;
	s->len += n;
	if (s->nbuf) {
		size_t take = 64 - s->nbuf < n ? 64 - s->nbuf : n;
		memcpy(s->buf + s->nbuf, p, take);
		s->nbuf += take;
		p += take;
		n -= take;
		if (s->nbuf < 64)
			return;
		blocks(s->h, s->buf, 1);
		s->nbuf = 0;
	}
	if (n >= 64) {
		blocks(s->h, p, n / 64);
		p += n / 64 * 64;
		n %= 64;
	}
	if (n)
		memcpy(s->buf, p, n);
	s->nbuf = n;
}

void sha256_final(struct sha256 *s, unsigned char out[32])
{
	block_fn *blocks = impl()->fn;
	uint64_t bits = s->len * 8;
	s->buf[s->nbuf++] = 0x80;
	if (s->nbuf > 56) { /* no room for the length: it goes in one more block */
		memset(s->buf + s->nbuf, 0, 64 - s->nbuf);
		blocks(s->h, s->buf, 1);
		s->nbuf = 0;
	}
	memset(s->buf + s->nbuf, 0, 56 - s->nbuf);
	for (int i = 0; i < 8; i++)
		s->buf[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
	blocks(s->h, s->buf, 1);
	s->nbuf = 0;
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (unsigned char)(s->h[i] >> 24);
		out[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
		out[4 * i + 2] = (unsigned char)(s->h[i] >> 8);
		out[4 * i + 3] = (unsigned char)s->h[i];
	}
}

static void to_hex(const unsigned char d[32], char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[64] = 0;
}

void sha256_hex(const void *p, size_t n, char hex[65])
{
	struct sha256 s;
	unsigned char d[32];
	sha256_init(&s);
	sha256_update(&s, p, n);
	sha256_final(&s, d);
	to_hex(d, hex);
}

int sha256_file_hex(const char *path, char hex[65])
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return eosin_error("cannot open '%s': %s", path, strerror(errno));
	struct sha256 s;
	unsigned char buf[1 << 16], d[32];
	size_t n;
	sha256_init(&s);
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		sha256_update(&s, buf, n);
	int bad = ferror(f);
	fclose(f);
	if (bad)
		return eosin_error("cannot read '%s'", path);
	sha256_final(&s, d);
	to_hex(d, hex);
	return 0;
}
