/*
 * test-safetensors: the safetensors writer and reader round trip (F32,
 * F16, BF16, metadata, atomic rename), the reference weight files, and
 * every class of malformed header refused with a message that names the
 * file and the tensor.
 */
#include "core/error.h"
#include "model/safetensors.h"
#include "tap.h"
#include "core/vec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A file image: u64 length, header, then `data` bytes of pattern. */
static unsigned char *image(const char *header, size_t data, size_t *n)
{
	size_t hl = strlen(header);
	*n = 8 + hl + data;
	unsigned char *buf = calloc(1, *n);
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(buf + 8, header, hl);
	return buf;
}

static void refuse(const char *header, size_t data, const char *want, const char *what)
{
	size_t n;
	unsigned char *buf = image(header, data, &n);
	struct safetensors st;
	memset(&st, 0, sizeof st);
	int r = safetensors_parse(&st, buf, n, "bad.safetensors");
	ok(r < 0 && strstr(eosin_errmsg(), want) && strstr(eosin_errmsg(), "bad.safetensors"),
	   "%s: %s", what, eosin_errmsg());
	if (r == 0)
		safetensors_close(&st);
	free(buf);
}

int main(void)
{
	char path[] = "/tmp/eosin-st-XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	float a[6] = {1, -2, 3.5f, 0.25f, -0.125f, 1024};
	uint16_t h[6], bf[6];
	for (int i = 0; i < 6; i++) {
		h[i] = f32_to_f16(a[i]);
		bf[i] = f32_to_bf16(a[i]);
	}
	struct st_write_tensor t[3] = {
	    {"w.f32", ST_F32, 2, {2, 3}, a},
	    {"w.f16", ST_F16, 1, {6}, h},
	    {"w.bf16", ST_BF16, 3, {1, 2, 3}, bf},
	};
	const char *meta[] = {"name", "tiny", "config", "{\"depth\": 2}", NULL};
	ok(safetensors_write(path, t, 3, meta) == 0, "write 3 tensors");
	char tmp[64];
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	ok(access(tmp, F_OK) != 0, "no temporary file left behind");
	struct safetensors st;
	ok(safetensors_open(&st, path) == 0, "read it back");
	ok(st.ntensors == 3 && !strcmp(st.tensors[0].name, "w.f32") &&
	       !strcmp(st.tensors[2].name, "w.bf16"),
	   "tensors in written order");
	ok(safetensors_meta(&st, "name") && !strcmp(safetensors_meta(&st, "name"), "tiny") &&
	       !strcmp(safetensors_meta(&st, "config"), "{\"depth\": 2}"),
	   "metadata strings");
	int same = 1;
	for (int k = 0; k < 3; k++) {
		float back[6];
		st_tensor_to_f32(&st.tensors[k], back);
		for (int i = 0; i < 6; i++)
			same &= back[i] == a[i];
	}
	ok(same, "F32, F16 and BF16 values read back exactly");
	int64_t want[2] = {3, 2};
	ok(safetensors_load_f32(&st, "w.f32", 2, want) == NULL &&
	       strstr(eosin_errmsg(), "has shape [2,3], want [3,2]"),
	   "shape check: %s", eosin_errmsg());
	ok(safetensors_load_f32(&st, "nope", 2, want) == NULL &&
	       strstr(eosin_errmsg(), "no tensor 'nope'"),
	   "missing tensor: %s", eosin_errmsg());
	safetensors_close(&st);
	FILE *f = fopen(path, "rb");
	unsigned char len8[8];
	ok(fread(len8, 1, 8, f) == 8 && len8[0] % 8 == 0, "header padded to 8 bytes");
	fclose(f);
	unlink(path);

	ok(safetensors_open(&st, "/nonexistent/x.safetensors") < 0 &&
	       strstr(eosin_errmsg(), "/nonexistent/x.safetensors"),
	   "missing file: %s", eosin_errmsg());

	const char *shared = getenv("SHARED") ? getenv("SHARED") : "../shared/data";
	char ref[1024];
	snprintf(ref, sizeof ref, "%s/reference/vit_weights.safetensors", shared);
	if (access(ref, R_OK) == 0) {
		ok(safetensors_open(&st, ref) == 0 && st.ntensors == 63 &&
		       safetensors_meta(&st, "timm_config") && st.tensors[0].dtype == ST_BF16,
		   "reference ViT file: 63 BF16 tensors and timm_config");
		safetensors_close(&st);
		snprintf(ref, sizeof ref, "%s/reference/clip_weights.safetensors", shared);
		ok(safetensors_open(&st, ref) == 0 && st.ntensors == 62 &&
		       safetensors_meta(&st, "clip_config"),
		   "reference CLIP file: 62 tensors and clip_config");
		safetensors_close(&st);
	}

	/* Malformed headers. */
	size_t n;
	unsigned char *buf = image("{}", 0, &n);
	buf[0] = 200; /* header length beyond the file */
	ok(safetensors_parse(&st, buf, n, "bad.safetensors") < 0 &&
	       strstr(eosin_errmsg(), "not inside the file"),
	   "header length beyond the file: %s", eosin_errmsg());
	ok(safetensors_parse(&st, buf, 5, "bad.safetensors") < 0, "5-byte file refused");
	free(buf);
	refuse("{\"a\": [", 0, "not valid JSON", "broken JSON");
	refuse("[1, 2]", 0, "not a JSON object", "JSON array");
	refuse("{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
	       "tensor 'a': dtype 'I64' is not supported", "I64 refused by name");
	{
		/* an I64 position_ids is left out when asked; any other I64 is not */
		const char *hdr = "{\"m.position_ids\":{\"dtype\":\"I64\",\"shape\":[1],"
		                  "\"data_offsets\":[0,8]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],"
		                  "\"data_offsets\":[8,12]}}";
		const char *hdr2 = "{\"m.ids\":{\"dtype\":\"I64\",\"shape\":[1],"
		                   "\"data_offsets\":[0,8]}}";
		static const char *const skip[] = {".position_ids", NULL};
		char p2[] = "/tmp/eosin-st-XXXXXX";
		for (int k = 0; k < 2; k++) {
			unsigned char *b = image(k ? hdr2 : hdr, k ? 8 : 12, &n);
			int fd2 = mkstemp(p2);
			ok(fd2 >= 0 && write(fd2, b, n) == (ssize_t)n, "skip file %d written", k);
			close(fd2);
			size_t ns = 99;
			int r = safetensors_open_skipping(&st, p2, skip, &ns);
			if (!k)
				ok(r == 0 && ns == 1 && st.ntensors == 1 && safetensors_find(&st, "w") &&
				       !safetensors_find(&st, "m.position_ids"),
				   "I64 position_ids left out, counted, the F32 tensor kept");
			else
				ok(r < 0 && strstr(eosin_errmsg(), "'m.ids'") &&
				       strstr(eosin_errmsg(), "I64"),
				   "an I64 not named by a suffix still refused: %s", eosin_errmsg());
			if (r == 0)
				safetensors_close(&st);
			unlink(p2);
			memcpy(p2 + strlen(p2) - 6, "XXXXXX", 6);
			free(b);
		}
	}
	refuse("{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'Q4'",
	       "unknown dtype");
	refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
	       "tensor 'a': shape[0]", "negative dimension");
	refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
	       "9 dims", "too many dims");
	refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "out of order",
	       "offsets out of order");
	refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
	       "beyond the data section", "offsets beyond the data");
	refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "want 12",
	       "size not prod(shape)*4");
	refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
	       12, "overlaps", "overlapping tensors");
	refuse("{\"__metadata__\":{\"k\":3}}", 0, "'k' is not a string", "non-string metadata");
	refuse("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a': missing", "no dtype");
	refuse("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
	       "\"data_offsets\":[0,4]}}", 4, "overflows", "shape overflow");
	refuse("{\"a\":1,\"a\":2}", 0, "not valid JSON", "duplicate keys");
	return tap_done();
}
