/*
 * rand.h: the small seedable generator and hash every program shares:
 * splitmix64 (Steele, Lea and Flood's SplitMix64 finaliser over a Weyl
 * sequence) and 64-bit FNV-1a. Header-only; the same values everywhere.
 */
#ifndef EOSIN_RAND_H
#define EOSIN_RAND_H

#include <stddef.h>
#include <stdint.h>

#define FNV1A64_INIT 0xcbf29ce484222325ull

/* The next value of the generator whose state is *s */
static inline uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1) from the top 53 bits of the next value */
static inline double splitmix64_uniform(uint64_t *s)
{
	return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* FNV-1a of n bytes at p, from h (FNV1A64_INIT to start) */
static inline uint64_t fnv1a64(const void *p, size_t n, uint64_t h)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

#endif
