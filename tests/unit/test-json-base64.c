/*
 * test-json-base64: base64_encode in lib/core/json.c against Python's base64
 * module for pseudo-random buffers of every length 0..300 (and all-zero
 * and all-0xff ones, the ends of the table), and base64_decode taking each
 * back. Skips without python3.
 */
#include "core/json.h"
#include "tap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAXLEN = 300, NBUF = 3 * (MAXLEN + 1) };

static uint64_t rng = 0x2545f4914f6cdd1du;
static unsigned char next_byte(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned char)(rng >> 32);
}

static const char *find_python(void)
{
	static const char *cands[] = {"/usr/bin/python3", "python3"};
	for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
		char cmd[256];
		snprintf(cmd, sizeof cmd, "%s -c 'import base64' >/dev/null 2>&1", cands[i]);
		if (system(cmd) == 0)
			return cands[i];
	}
	return NULL;
}

int main(void)
{
	const char *python = find_python();
	if (!python)
		skip_all("no python3");
	char dir[] = "/tmp/eosin-test-base64.XXXXXX";
	if (!mkdtemp(dir))
		skip_all("cannot make a temporary folder");
	char in_path[256], out_path[256], cmd[1024];
	snprintf(in_path, sizeof in_path, "%s/in.hex", dir);
	snprintf(out_path, sizeof out_path, "%s/out.b64", dir);

	/* buffer k: length k % (MAXLEN + 1); random, then all 0, then all 0xff */
	static unsigned char buf[NBUF][MAXLEN];
	FILE *f = fopen(in_path, "w");
	for (int k = 0; k < NBUF; k++) {
		int n = k % (MAXLEN + 1), kind = k / (MAXLEN + 1);
		for (int i = 0; i < n; i++) {
			buf[k][i] = kind == 0 ? next_byte() : kind == 1 ? 0 : 0xff;
			fprintf(f, "%02x", buf[k][i]);
		}
		fputc('\n', f);
	}
	fclose(f);
	snprintf(cmd, sizeof cmd,
	         "%s -c 'import base64, sys\n"
	         "for line in open(sys.argv[1]):\n"
	         "    print(base64.b64encode(bytes.fromhex(line.strip())).decode())\n' '%s' >'%s'",
	         python, in_path, out_path);
	ok(system(cmd) == 0, "python3 encodes the buffers");

	f = fopen(out_path, "r");
	int lines = 0, enc_bad = 0, dec_bad = 0, len_bad = 0, first_bad = -1;
	char want[2 * MAXLEN], got[2 * MAXLEN];
	unsigned char back[MAXLEN + 3];
	while (f && fgets(want, sizeof want, f) && lines < NBUF) {
		want[strcspn(want, "\n")] = 0;
		int k = lines++, n = k % (MAXLEN + 1);
		memset(got, '#', sizeof got);
		size_t len = base64_encode(buf[k], (size_t)n, got);
		if (len != strlen(want) || got[len] != 0)
			len_bad++;
		if (strcmp(got, want)) {
			if (!enc_bad++)
				first_bad = k;
		}
		long m = base64_decode(want, strlen(want), back);
		if (m != n || memcmp(back, buf[k], (size_t)n))
			dec_bad++;
	}
	if (f)
		fclose(f);
	ok(lines == NBUF, "python3 gave %d lines of %d", lines, NBUF);
	if (!ok(enc_bad == 0, "encode agrees with python's base64 on lengths 0..%d", MAXLEN))
		printf("#   %d differ, the first buffer %d (length %d)\n", enc_bad, first_bad,
		       first_bad % (MAXLEN + 1));
	ok(len_bad == 0, "encode returns the length and ends the string with NUL");
	ok(dec_bad == 0, "decode takes python's base64 back to the bytes");
	unlink(in_path);
	unlink(out_path);
	rmdir(dir);
	return tap_done();
}
