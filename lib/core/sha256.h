/*
 * sha256.h: SHA-256 (FIPS 180-4), for naming model weights in hdr records
 * and embeddings (the first 16 hex digits of the weights file's digest),
 * and for the caption cache's keys.
 *
 * Two block functions compute the same thing: a portable one in C and,
 * on x86-64 CPUs with the SHA extensions, one built on them (several
 * times faster). The faster one available is chosen on first use; the
 * environment variable EOSIN_SHA256=portable forces the portable one.
 * A struct sha256 is one caller's; the functions keep no other state but
 * that choice.
 */
#ifndef EOSIN_SHA256_H
#define EOSIN_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
	uint32_t h[8];
	uint64_t len;         /* bytes hashed so far */
	unsigned char buf[64];
	size_t nbuf;          /* bytes waiting in buf, < 64 between calls */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *p, size_t n);
void sha256_final(struct sha256 *s, unsigned char out[32]);
/* Digest of a memory block as 64 lower-case hex digits + NUL. */
void sha256_hex(const void *p, size_t n, char hex[65]);
/* Digest of a file's contents as hex; -1 (error names the file) if unreadable. */
int sha256_file_hex(const char *path, char hex[65]);

/*
 * The block function in use: "portable" or "sha-ni". sha256_use() picks
 * one by name (for tests and benchmarks; not while another thread hashes);
 * -1 (error names it) if unknown or this CPU lacks it.
 */
const char *sha256_impl(void);
int sha256_use(const char *name);

#endif
