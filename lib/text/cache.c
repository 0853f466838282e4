/*
 * cache.c: the on-disk text cache (see cache.h), with its own SHA-256
 * (FIPS 180-4), kept static so that it cannot clash with another.
 */
#include "text/cache.h"
#include "core/sha256.h"

#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- SHA-256 ---- */

/* Finish s and write its digest as lower-case hex. */
static void caption_sha256_hex(struct sha256 *s, char hex[CACHE_KEY_HEX])
{
	unsigned char d[32];
	sha256_final(s, d);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

void cache_sha256_hex(const void *p, size_t n, char hex[CACHE_KEY_HEX])
{
	struct sha256 s;
	sha256_init(&s);
	sha256_update(&s, p, n);
	caption_sha256_hex(&s, hex);
}

void cache_key(char key[CACHE_KEY_HEX], int n, const void *const *parts, const size_t *lens)
{
	struct sha256 s;
	sha256_init(&s);
	for (int i = 0; i < n; i++) {
		unsigned char len[8];
		for (int b = 0; b < 8; b++)
			len[b] = (unsigned char)((uint64_t)lens[i] >> (56 - 8 * b));
		sha256_update(&s, len, sizeof len);
		sha256_update(&s, parts[i], lens[i]);
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
