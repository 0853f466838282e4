/*
 * test-sha256: lib/core/sha256.c on every block function this CPU has
 * (portable always, sha-ni where the CPU has the SHA extensions): the
 * FIPS 180-4 example messages, the two functions against each other for
 * every length 0..4096 fed in random pieces, files against sha256sum, and
 * EOSIN_SHA256=portable choosing the portable one.
 */
#include "core/sha256.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *impls[] = {"portable", "sha-ni"};
#define NIMPLS 2

/* The digests published with FIPS 180-4's examples (and in every SHA-2 test suite). */
static const struct {
	const char *what, *msg, *hex;
	size_t repeat; /* msg is repeated this many times (0: once) */
} vectors[] = {
    {"empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0},
    {"abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 0},
    {"448-bit message", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", 0},
    {"896-bit message",
     "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmno"
     "pqrsmnopqrstnopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1", 0},
    {"one million a", "a", "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
     1000000},
};

/* xorshift64: the same pseudo-random bytes on every run */
static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Digest of p[0..n) fed to sha256_update in random pieces (0..130 bytes). */
static void hex_in_pieces(const unsigned char *p, size_t n, char hex[65])
{
	struct sha256 s;
	unsigned char d[32];
	sha256_init(&s);
	for (size_t i = 0; i < n;) {
		size_t take = next() % 131;
		if (take > n - i)
			take = n - i;
		sha256_update(&s, p + i, take);
		i += take;
	}
	sha256_final(&s, d);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", d[i]);
}

static void check_vectors(const char *impl)
{
	for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
		char hex[65];
		if (!vectors[v].repeat) {
			sha256_hex(vectors[v].msg, strlen(vectors[v].msg), hex);
		} else {
			/* fed a few bytes at a time, to go through the buffering too */
			struct sha256 s;
			unsigned char d[32];
			sha256_init(&s);
			for (size_t i = 0; i < vectors[v].repeat; i += 1000) {
				char chunk[1000];
				memset(chunk, vectors[v].msg[0], sizeof chunk);
				sha256_update(&s, chunk, 7);
				sha256_update(&s, chunk, 993);
			}
			sha256_final(&s, d);
			for (int i = 0; i < 32; i++)
				sprintf(hex + 2 * i, "%02x", d[i]);
		}
		if (!ok(!strcmp(hex, vectors[v].hex), "%s: %s", impl, vectors[v].what))
			printf("#   got %s\n#  want %s\n", hex, vectors[v].hex);
	}
}

/* sha256sum's digest of a file, or "" when it cannot be run. */
static void sha256sum_of(const char *path, char hex[65])
{
	char cmd[4200];
	hex[0] = 0;
	snprintf(cmd, sizeof cmd, "sha256sum '%s' 2>/dev/null", path);
	FILE *f = popen(cmd, "r");
	if (!f)
		return;
	if (!fgets(hex, 65, f) || strlen(hex) != 64)
		hex[0] = 0;
	pclose(f);
}

/* What a fresh copy of this program, run with EOSIN_SHA256=env, picks. */
static void impl_under_env(const char *env, char name[32])
{
	char self[4096], cmd[4400];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	name[0] = 0;
	if (n <= 0)
		return;
	self[n] = 0;
	snprintf(cmd, sizeof cmd, "EOSIN_SHA256='%s' '%s' --impl", env, self);
	FILE *f = popen(cmd, "r");
	if (!f)
		return;
	if (fgets(name, 32, f))
		name[strcspn(name, "\n")] = 0;
	pclose(f);
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--impl")) {
		puts(sha256_impl());
		return 0;
	}
	int have[NIMPLS];
	for (int i = 0; i < NIMPLS; i++) {
		have[i] = sha256_use(impls[i]) == 0;
		if (!have[i])
			ok(1, "%s # SKIP this cpu lacks it", impls[i]);
	}
	ok(have[0], "portable is always there");
	ok(sha256_use("no-such") < 0, "an unknown name is refused");
	ok(!strcmp(sha256_impl(), impls[have[1] ? 1 : 0]), "a refused name changes nothing");

	char name[32];
	impl_under_env("portable", name);
	ok(!strcmp(name, "portable"), "EOSIN_SHA256=portable: portable (got '%s')", name);
	impl_under_env("", name);
	ok(!strcmp(name, impls[have[1] ? 1 : 0]), "EOSIN_SHA256 empty: the fastest (got '%s')", name);

	for (int i = 0; i < NIMPLS; i++)
		if (have[i]) {
			sha256_use(impls[i]);
			ok(!strcmp(sha256_impl(), impls[i]), "%s: in use when asked for", impls[i]);
			check_vectors(impls[i]);
		}

	/* the two against each other: every length 0..4096, random bytes and pieces */
	enum { MAXLEN = 4096 };
	unsigned char *buf = malloc(MAXLEN);
	for (size_t i = 0; i < MAXLEN; i++)
		buf[i] = (unsigned char)next();
	if (have[1]) {
		size_t bad = 0, first_bad = 0;
		for (size_t n = 0; n <= MAXLEN; n++) {
			char a[65], b[65], c[65];
			sha256_use("portable");
			sha256_hex(buf + (MAXLEN - n), n, a);
			sha256_use("sha-ni");
			sha256_hex(buf + (MAXLEN - n), n, b);
			hex_in_pieces(buf + (MAXLEN - n), n, c);
			if ((strcmp(a, b) || strcmp(a, c)) && !bad++)
				first_bad = n;
		}
		if (!ok(bad == 0, "portable and sha-ni agree on every length 0..%d", MAXLEN))
			printf("#   %zu lengths differ, the first %zu\n", bad, first_bad);
	}

	/* files of a few lengths against sha256sum, on each */
	char dir[] = "/tmp/eosin-test-sha256.XXXXXX";
	if (!mkdtemp(dir)) {
		ok(0, "cannot make a temporary folder");
		free(buf);
		return tap_done();
	}
	static const size_t lens[] = {0, 55, 56, 64, 1000, 4096};
	for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
		char path[4096], want[65], got[65];
		snprintf(path, sizeof path, "%s/f%zu", dir, lens[l]);
		FILE *f = fopen(path, "wb");
		fwrite(buf, 1, lens[l], f);
		fclose(f);
		sha256sum_of(path, want);
		for (int i = 0; i < NIMPLS; i++) {
			if (!have[i])
				continue;
			if (!want[0]) {
				ok(1, "%s: %zu-byte file # SKIP no sha256sum", impls[i], lens[l]);
				continue;
			}
			sha256_use(impls[i]);
			ok(sha256_file_hex(path, got) == 0 && !strcmp(got, want),
			   "%s: %zu-byte file agrees with sha256sum", impls[i], lens[l]);
		}
		unlink(path);
	}
	rmdir(dir);
	free(buf);
	return tap_done();
}
