/*
 * cache.c: the on-disk text cache (see cache.h), with its own SHA-256
 * (FIPS 180-4), kept static so that it cannot clash with another.
 */
#include "cache.h"

#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- SHA-256 ---- */

struct caption_sha256 {
	uint32_t h[8];
	uint64_t nbytes;
	unsigned char block[64];
	size_t fill;
};

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
};

static uint32_t ror32(uint32_t x, int n)
{
	return x >> n | x << (32 - n);
}

static void caption_sha256_block(struct caption_sha256 *s, const unsigned char *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, h;
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
	e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = h + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) +
		              sha256_k[i] + w[i];
		uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		h = g, g = f, f = e, e = d + t1;
		d = c, c = b, b = a, a = t1 + t2;
	}
	s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d;
	s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void caption_sha256_init(struct caption_sha256 *s)
{
	static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	memcpy(s->h, h0, sizeof h0);
	s->nbytes = 0;
	s->fill = 0;
}

static void caption_sha256_update(struct caption_sha256 *s, const void *data, size_t n)
{
	const unsigned char *p = data;
	s->nbytes += n;
	while (n > 0) {
		if (s->fill == 0 && n >= 64) {
			caption_sha256_block(s, p);
			p += 64, n -= 64;
			continue;
		}
		size_t k = 64 - s->fill < n ? 64 - s->fill : n;
		memcpy(s->block + s->fill, p, k);
		s->fill += k, p += k, n -= k;
		if (s->fill == 64) {
			caption_sha256_block(s, s->block);
			s->fill = 0;
		}
	}
}

static void caption_sha256_hex(struct caption_sha256 *s, char hex[CACHE_KEY_HEX])
{
	uint64_t bits = s->nbytes * 8;
	unsigned char pad[72] = {0x80};
	size_t padlen = (s->fill < 56 ? 56 : 120) - s->fill;
	for (int i = 0; i < 8; i++)
		pad[padlen + (size_t)i] = (unsigned char)(bits >> (56 - 8 * i));
	caption_sha256_update(s, pad, padlen + 8);
	for (int i = 0; i < 8; i++)
		snprintf(hex + 8 * i, 9, "%08x", s->h[i]);
}

void cache_sha256_hex(const void *p, size_t n, char hex[CACHE_KEY_HEX])
{
	struct caption_sha256 s;
	caption_sha256_init(&s);
	caption_sha256_update(&s, p, n);
	caption_sha256_hex(&s, hex);
}

void cache_key(char key[CACHE_KEY_HEX], int n, const void *const *parts, const size_t *lens)
{
	struct caption_sha256 s;
	caption_sha256_init(&s);
	for (int i = 0; i < n; i++) {
		unsigned char len[8];
		for (int b = 0; b < 8; b++)
			len[b] = (unsigned char)((uint64_t)lens[i] >> (56 - 8 * b));
		caption_sha256_update(&s, len, sizeof len);
		caption_sha256_update(&s, parts[i], lens[i]);
	}
	caption_sha256_hex(&s, key);
}

/* ---- the store ---- */

int cache_open(struct cache *c, const char *dir)
{
	c->dir = NULL;
	if (mkdir(dir, 0777) < 0 && errno != EEXIST)
		return eosin_error("cannot create cache directory '%s': %s", dir, strerror(errno));
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return eosin_error("cache '%s' is not a directory", dir);
	if (!(c->dir = strdup(dir)))
		return eosin_error("out of memory");
	return 0;
}

void cache_close(struct cache *c)
{
	free(c->dir);
	c->dir = NULL;
}

static int key_ok(const char *key)
{
	if (strlen(key) != CACHE_KEY_HEX - 1)
		return 0;
	return strspn(key, "0123456789abcdef") == CACHE_KEY_HEX - 1;
}

int cache_get(const struct cache *c, const char *key, char **data, size_t *len)
{
	char path[4096];
	if (!key_ok(key))
		return eosin_error("'%s' is not a cache key", key);
	snprintf(path, sizeof path, "%s/%.2s/%.2s/%s", c->dir, key, key + 2, key);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return eosin_error("cannot open '%s': %s", path, strerror(errno));
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return eosin_error("cannot stat '%s': %s", path, strerror(errno));
	}
	size_t n = (size_t)st.st_size, got = 0;
	char *buf = malloc(n + 1);
	if (!buf) {
		close(fd);
		return eosin_error("out of memory");
	}
	while (got < n) {
		ssize_t k = read(fd, buf + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			int e = k < 0 ? errno : EIO;
			free(buf);
			close(fd);
			return eosin_error("cannot read '%s': %s", path, strerror(e));
		}
		got += (size_t)k;
	}
	close(fd);
	buf[n] = 0;
	*data = buf;
	*len = n;
	return 1;
}

int cache_put(const struct cache *c, const char *key, const void *data, size_t len)
{
	char dir[4096], path[4096 + 80], tmp[4096 + 80];
	if (!key_ok(key))
		return eosin_error("'%s' is not a cache key", key);
	snprintf(dir, sizeof dir, "%s/%.2s", c->dir, key);
	if (mkdir(dir, 0777) < 0 && errno != EEXIST)
		return eosin_error("cannot create '%s': %s", dir, strerror(errno));
	snprintf(dir, sizeof dir, "%s/%.2s/%.2s", c->dir, key, key + 2);
	if (mkdir(dir, 0777) < 0 && errno != EEXIST)
		return eosin_error("cannot create '%s': %s", dir, strerror(errno));
	snprintf(path, sizeof path, "%s/%s", dir, key);
	snprintf(tmp, sizeof tmp, "%s/.tmp.%s.%ld", dir, key, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0)
		return eosin_error("cannot create '%s': %s", tmp, strerror(errno));
	const char *p = data;
	size_t left = len;
	while (left > 0) {
		ssize_t k = write(fd, p, left);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = errno;
			close(fd);
			unlink(tmp);
			return eosin_error("cannot write '%s': %s", tmp, strerror(e));
		}
		p += k;
		left -= (size_t)k;
	}
	if (close(fd) < 0) {
		int e = errno;
		unlink(tmp);
		return eosin_error("cannot write '%s': %s", tmp, strerror(e));
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return eosin_error("cannot rename '%s' to '%s': %s", tmp, path, strerror(e));
	}
	return 0;
}
