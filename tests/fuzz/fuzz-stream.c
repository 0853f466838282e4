/*
 * fuzz-stream.c: the stream reader, the schema validator, the embedding
 * parser and msgpack-to-JSON on arbitrary bytes. Every outcome must be a
 * record or a clean error, never a crash, a hang or a leak.
 */
#include "core/json.h"
#include "core/schema.h"
#include "core/stream.h"
#include "core/vec.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-stream", 0);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	lseek(fd, 0, SEEK_SET);
	struct stream_reader r;
	if (stream_reader_init(&r, fd, "fuzz") < 0) {
		close(fd);
		return 0;
	}
	struct record rec;
	struct recb b;
	recb_init(&b);
	while (stream_read(&r, &rec) == 1) {
		schema_check(&rec, 0);
		struct vec_view v;
		if (record_get_vec(&rec, "img_emb", &v) == 0) {
			float *f = malloc((size_t)v.n * v.dim * sizeof *f);
			if (f)
				vec_to_f32(&v, f);
			free(f);
		}
		json_t *j = mpo_to_json(&rec.root, JSON_BIN_BASE64 | JSON_VEC_FLOATS);
		json_decref(j);
		recb_begin(&b, "x", 1);
		recb_copy_fields(&b, &rec, NULL);
	}
	recb_release(&b);
	stream_reader_release(&r);
	close(fd);
	return 0;
}

static void seed_record(void (*add)(const void *, size_t), int with_vec)
{
	struct recb b;
	recb_init(&b);
	recb_begin(&b, "tile", 1);
	recb_str(&b, "id", "s/5x/0_0");
	recb_f64(&b, "mag", 5);
	recb_bin(&b, "jpeg", "\xff\xd8\xff", 3);
	if (with_vec) {
		float x[4] = {1, -2, 0.5f, 3};
		recb_vec(&b, "img_emb", x, 2, 2, VEC_F16, "m", "abcd");
	}
	char *p;
	size_t n;
	if (recb_finish(&b, &p, &n) == 0) {
		add(p, n);
		free(p);
	}
	recb_release(&b);
}

int fuzz_seeds(void (*add)(const void *, size_t))
{
	seed_record(add, 0);
	seed_record(add, 1);
	return 0;
}
