/*
 * test-text-cache: lib/text/cache.c, the answer cache of eosin-caption-fetch:
 * its SHA-256 against the FIPS 180-4 example vectors, key framing, and the
 * store (fan-out paths, atomic replace, misses, bad keys).
 */
#include "text/cache.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
	char hex[CACHE_KEY_HEX];
	cache_sha256_hex("abc", 3, hex);
	ok(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
	   "sha256: abc");
	cache_sha256_hex("", 0, hex);
	ok(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
	   "sha256: empty");
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	cache_sha256_hex(m, strlen(m), hex);
	ok(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
	   "sha256: 448-bit message (two blocks of padding)");
	char *million = malloc(1000000);
	memset(million, 'a', 1000000);
	cache_sha256_hex(million, 1000000, hex);
	ok(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
	   "sha256: one million a");
	free(million);

	char k1[CACHE_KEY_HEX], k2[CACHE_KEY_HEX];
	const void *p1[] = {"ab", "c"}, *p2[] = {"a", "bc"};
	size_t l1[] = {2, 1}, l2[] = {1, 2};
	cache_key(k1, 2, p1, l1);
	cache_key(k2, 2, p2, l2);
	ok(strcmp(k1, k2) != 0, "key: parts cannot run into each other");
	ok(strlen(k1) == 64 && strspn(k1, "0123456789abcdef") == 64, "key: 64 hex digits");

	char dir[] = "/tmp/eosin-cache-test.XXXXXX";
	if (!mkdtemp(dir))
		skip_all("cannot make a temporary directory");
	char root[sizeof dir + 8];
	snprintf(root, sizeof root, "%s/c", dir);
	struct cache c;
	ok(cache_open(&c, root) == 0, "open creates the directory");
	char *data = NULL;
	size_t len = 0;
	ok(cache_get(&c, k1, &data, &len) == 0, "miss before put");
	ok(cache_put(&c, k1, "first", 5) == 0 && cache_put(&c, k1, "second answer", 13) == 0,
	   "put twice");
	ok(cache_get(&c, k1, &data, &len) == 1 && len == 13 && !strcmp(data, "second answer"),
	   "get returns the last value whole");
	free(data);
	char path[256];
	snprintf(path, sizeof path, "%s/%.2s/%.2s/%s", root, k1, k1 + 2, k1);
	struct stat st;
	ok(stat(path, &st) == 0 && st.st_size == 13, "value at DIR/ab/cd/KEY");
	ok(cache_put(&c, "../../etc/passwd", "x", 1) < 0, "a non-key is refused");
	ok(cache_put(&c, k2, "", 0) == 0 && cache_get(&c, k2, &data, &len) == 1 && len == 0,
	   "empty value round trip");
	free(data);
	cache_close(&c);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	ok(system(cmd) == 0, "clean up");
	return tap_done();
}
