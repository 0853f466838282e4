/*
 * cache.h: a content-addressed text cache on disk, so that a rerun (after a
 * crash, a Ctrl-C or on purpose) asks a server nothing it already answered.
 *
 * A key is the SHA-256 of everything that decides an answer (endpoint,
 * model, prompt, image bytes or URL), each part length-prefixed so that
 * parts cannot run into each other; it is 64 hex digits. The value for key
 * K lives in DIR/K[0..1]/K[2..3]/K: two levels of fan-out keep directories
 * small at millions of entries. A value is written to a temporary file in
 * the same directory and renamed into place, so a reader sees either the
 * whole value or none, and concurrent writers of one key are harmless.
 * Values are the answer's bytes as they are; nothing else (no request, no
 * credentials) is stored.
 *
 * struct cache owns its dir string; cache_close() frees it.
 */
#ifndef EOSIN_CACHE_H
#define EOSIN_CACHE_H

#include <stddef.h>

#define CACHE_KEY_HEX 65  /* 64 hex digits and a NUL */

struct cache {
	char *dir;
};

/* Create DIR if needed (one level, as mkdir -p for the last part). */
int cache_open(struct cache *c, const char *dir);
void cache_close(struct cache *c);

/* SHA-256 of (len, bytes) for each of n parts, as hex. */
void cache_key(char key[CACHE_KEY_HEX], int n, const void *const *parts, const size_t *lens);
/* Plain SHA-256 of one buffer, as hex (for tests and other uses). */
void cache_sha256_hex(const void *p, size_t n, char hex[CACHE_KEY_HEX]);

/* 1: found, *data (malloc'd, NUL-terminated) and *len set; 0: absent;
 * -1: error (unreadable file). */
int cache_get(const struct cache *c, const char *key, char **data, size_t *len);
/* Store atomically; -1 on error (message names the file). */
int cache_put(const struct cache *c, const char *key, const void *data, size_t len);

#endif
