/*
 * test-stream.c: the stream reader, writer and record builder; embedding
 * maps and the float16/bfloat16 conversions.
 */
#include "core/error.h"
#include "core/stream.h"
#include "tap.h"
#include "core/vec.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* A stream in a memory file, for the reader. */
static int memstream(const void *p, size_t n)
{
	int fd = memfd_create("t", 0);
	if (write(fd, p, n) != (ssize_t)n)
		return -1;
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static size_t build_tile(struct recb *b, const char *id, size_t binbytes, char **out)
{
	recb_begin(b, "tile", 1);
	recb_str(b, "id", id);
	recb_f64(b, "mag", 20);
	recb_int(b, "x", -5);
	char *blob = calloc(1, binbytes + 1);
	for (size_t i = 0; i < binbytes; i++)
		blob[i] = (char)(i * 7);
	recb_bin(b, "jpeg", blob, binbytes);
	free(blob);
	size_t n;
	recb_finish(b, out, &n);
	return n;
}

static void test_roundtrip(void)
{
	struct recb b;
	recb_init(&b);
	char *r1, *r2, *r3;
	size_t n1 = build_tile(&b, "a/20x/0_0", 10, &r1);
	size_t n2 = build_tile(&b, "a/20x/1_0", 3 << 20, &r2); /* larger than the read buffer */
	recb_begin(&b, "other", 7);
	recb_str(&b, "id", "o");
	size_t n3;
	recb_finish(&b, &r3, &n3);
	char *all = malloc(n1 + n2 + n3);
	memcpy(all, r1, n1);
	memcpy(all + n1, r2, n2);
	memcpy(all + n1 + n2, r3, n3);

	struct stream_reader r;
	struct record rec;
	stream_reader_init(&r, memstream(all, n1 + n2 + n3), "mem");
	ok(stream_read(&r, &rec) == 1, "first record read");
	ok(record_is(&rec, "tile") && rec.version == 1 && rec.number == 1 && rec.offset == 0,
	   "kind, version, number, offset of record 1");
	int64_t x;
	double mag;
	const char *s;
	size_t sn;
	ok(record_get_int(&rec, "x", &x) == 0 && x == -5, "negative int field");
	ok(record_get_num(&rec, "mag", &mag) == 0 && mag == 20, "float field");
	ok(record_get_str(&rec, "id", &s, &sn) == 0 && sn == 9 && !memcmp(s, "a/20x/0_0", 9),
	   "string field");
	ok(record_get_int(&rec, "nope", &x) == 1, "absent field says 1");
	ok(record_get_int(&rec, "id", &x) == -1 &&
	       strstr(eosin_errmsg(), "record 1 (id 'a/20x/0_0'): field 'id' is not an integer"),
	   "wrong type names record, id, field: %s", eosin_errmsg());
	ok(rec.len == n1 && !memcmp(rec.raw, r1, n1), "raw bytes of record 1 are exact");
	ok(stream_read(&r, &rec) == 1 && rec.offset == n1 && rec.len == n2 &&
	       !memcmp(rec.raw, r2, n2),
	   "3 MiB record read whole, offset %zu", n1);
	const char *p;
	size_t pn;
	ok(record_get_bin(&rec, "jpeg", &p, &pn) == 0 && pn == (3u << 20) && p[100] == (char)700,
	   "bin field contents");
	ok(stream_read(&r, &rec) == 1 && record_is(&rec, "other") && rec.version == 7 &&
	       rec.number == 3,
	   "unknown kind read as a record");
	ok(stream_read(&r, &rec) == 0, "clean end of stream");
	stream_reader_release(&r);

	/* Truncation at every byte of record 1: never a record, always a message. */
	int good = 1;
	for (size_t cut = 1; cut < n1; cut++) {
		stream_reader_init(&r, memstream(all, cut), "cut");
		if (stream_read(&r, &rec) != -1 || !strstr(eosin_errmsg(), "truncated record at byte offset 0"))
			good = 0;
		stream_reader_release(&r);
	}
	ok(good, "every truncation of a record is reported as truncated at offset 0");
	stream_reader_init(&r, memstream(all, n1 + 5), "cut2");
	stream_read(&r, &rec);
	ok(stream_read(&r, &rec) == -1 &&
	       strstr(eosin_errmsg(), "cut2: truncated record at byte offset") &&
	       strstr(eosin_errmsg(), "after record 1"),
	   "truncation after a good record names it: %s", eosin_errmsg());
	stream_reader_release(&r);
	free(all);
	free(r1);
	free(r2);
	free(r3);
	recb_release(&b);
}

static void expect_error(const char *bytes, size_t n, const char *want, const char *what)
{
	struct stream_reader r;
	struct record rec;
	stream_reader_init(&r, memstream(bytes, n), "bad");
	int ret = stream_read(&r, &rec);
	ok(ret == -1 && strstr(eosin_errmsg(), want), "%s: %s", what, eosin_errmsg());
	stream_reader_release(&r);
}

static void test_bad_input(void)
{
	expect_error("\xc1", 1, "malformed msgpack at byte offset 0", "reserved byte 0xc1");
	expect_error("\x93\x01\x02\x03", 4, "is not a map", "array at top level");
	expect_error("\x81\xa1x\x01", 4, "field 'k' missing", "map without k");
	expect_error("\x82\xa1k\xa1t\xa1v\xa1x", 9, "field 'v' missing or not a positive integer",
	             "v is a string");
	expect_error("\x82\xa1k\xa1t\xa1v\x00", 8, "'v' missing or not a positive integer", "v is 0");
	/* A bin claiming 4 GiB: refused by size, not read to the end of memory. */
	expect_error("\x82\xa1k\xa1t\xa1v\xc6\xff\xff\xff\xff", 12, "is larger than 1073741824 bytes",
	             "huge bin length");
	/* Nor does a huge declared array make anyone allocate for it. */
	expect_error("\x82\xa1k\xa1t\xa1v\xdd\xff\xff\xff\xff", 12, "is larger than 1073741824 bytes",
	             "huge array count");
	expect_error("\x82\xa1k\xa1t\xa1v\xdd\x00\x10\x00\x00", 12, "truncated record at byte offset 0",
	             "array of a million missing elements");
}

static void test_writer(void)
{
	struct stream_writer w;
	ok(stream_writer_open(&w, "/dev/full") == 0, "open /dev/full");
	char buf[100] = {(char)0x80};
	int failed = 0;
	for (int i = 0; i < 20000; i++)
		if (stream_write_raw(&w, buf, sizeof buf) < 0)
			failed = 1;
	int ret = stream_writer_close(&w);
	ok((failed || ret < 0) && strstr(eosin_errmsg(), "No space left on device"),
	   "a write error is reported: %s", eosin_errmsg());

	/* Pass-through through a pipe is byte for byte; the reader copes with a
	 * writer that delivers one byte at a time. */
	struct recb b;
	recb_init(&b);
	char *r1;
	size_t n1 = build_tile(&b, "p/5x/0_0", 300, &r1);
	int fds[2];
	if (pipe(fds) < 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		for (int k = 0; k < 3; k++)
			for (size_t i = 0; i < n1; i++)
				if (write(fds[1], r1 + i, 1) != 1)
					_exit(1);
		_exit(0);
	}
	close(fds[1]);
	struct stream_reader r;
	struct record rec;
	stream_reader_init(&r, fds[0], "pipe");
	int count = 0, same = 1;
	while (stream_read(&r, &rec) == 1) {
		count++;
		same &= rec.len == n1 && !memcmp(rec.raw, r1, n1);
	}
	waitpid(pid, NULL, 0);
	ok(count == 3 && same, "records trickled byte by byte through a pipe read exactly");
	stream_reader_release(&r);
	close(fds[0]);
	free(r1);
	recb_release(&b);
}

static void test_copy_fields(void)
{
	struct recb b, c;
	recb_init(&b);
	recb_init(&c);
	char *r1;
	size_t n1 = build_tile(&b, "c/5x/0_0", 4, &r1);
	struct stream_reader r;
	struct record rec;
	stream_reader_init(&r, memstream(r1, n1), "m");
	stream_read(&r, &rec);
	recb_begin(&c, "tile", 1);
	static const char *const skip[] = {"jpeg", NULL};
	recb_copy_fields(&c, &rec, skip);
	recb_str(&c, "caption", "tumour");
	char *out;
	size_t nout;
	recb_finish(&c, &out, &nout);
	stream_reader_release(&r);
	stream_reader_init(&r, memstream(out, nout), "m2");
	stream_read(&r, &rec);
	const char *s;
	size_t sn;
	const char *p;
	size_t pn;
	ok(rec.root.via.map.size == 6 && record_get_bin(&rec, "jpeg", &p, &pn) == 1 &&
	       record_get_str(&rec, "caption", &s, &sn) == 0 &&
	       record_get_str(&rec, "id", &s, &sn) == 0,
	   "copy_fields skips, keeps k/v once, adds a field");
	stream_reader_release(&r);
	free(out);
	free(r1);
	recb_release(&b);
	recb_release(&c);
}

static void test_vec(void)
{
	/* f16: every half value converts to float and back unchanged. */
	int bad = 0;
	for (unsigned h = 0; h < 65536; h++) {
		float f = f16_to_f32((uint16_t)h);
		if (f != f) /* NaN */
			continue;
		if (f32_to_f16(f) != h)
			bad++;
	}
	ok(bad == 0, "all 63,488 non-NaN halves round-trip (%d bad)", bad);
	/* float -> half against the compiler's own _Float16 conversion, which
	 * rounds to nearest even in hardware (F16C) or libgcc. */
	bad = 0;
	uint64_t s = 1;
	for (int i = 0; i < 2000000; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		uint32_t u = (uint32_t)(s >> 32);
		float f;
		memcpy(&f, &u, 4);
		if (f != f)
			continue;
		_Float16 ref = (_Float16)f;
		uint16_t rh;
		memcpy(&rh, &ref, 2);
		if (f32_to_f16(f) != rh)
			bad++;
	}
	ok(bad == 0, "f32_to_f16 agrees with _Float16 on 2M random floats (%d differ)", bad);
	ok(f32_to_bf16(1.0f) == 0x3f80 && f32_to_bf16(1.00390625f) == 0x3f80 &&
	       f32_to_bf16(1.01171875f) == 0x3f82 && bf16_to_f32(0x3f82) == 1.015625f,
	   "bf16 rounds to nearest even");

	struct recb b;
	recb_init(&b);
	float x[6] = {0.5f, -1, 2, 3.25f, 1e-3f, 65504};
	for (int dt = 0; dt < 3; dt++) {
		recb_begin(&b, "tile", 1);
		recb_vec(&b, "img_emb", x, 2, 3, (enum vec_dtype)dt, "vit", "abc123");
		char *out;
		size_t n;
		recb_finish(&b, &out, &n);
		struct stream_reader r;
		struct record rec;
		stream_reader_init(&r, memstream(out, n), "v");
		stream_read(&r, &rec);
		struct vec_view v;
		float y[6];
		int got = record_get_vec(&rec, "img_emb", &v);
		ok(got == 0 && v.n == 2 && v.dim == 3 && v.dtype == (enum vec_dtype)dt &&
		       v.model_len == 3 && vec_to_f32(&v, y) == 0,
		   "%s embedding map parses", vec_dtype_name((enum vec_dtype)dt));
		double maxerr = 0;
		for (int i = 0; i < 6; i++) {
			double e = fabs(y[i] - x[i]) / (fabs(x[i]) + 1e-30);
			maxerr = e > maxerr ? e : maxerr;
		}
		ok(maxerr <= (dt == 0 ? 0 : dt == 1 ? 1.0 / 2048 : 1.0 / 256),
		   "%s values within the dtype's rounding (rel %.3g)", vec_dtype_name((enum vec_dtype)dt), maxerr);
		stream_reader_release(&r);
		free(out);
	}
	/* NaN is refused, naming the row. */
	float nan_row[4] = {1, 2, 0, 0};
	nan_row[3] = nanf("");
	recb_begin(&b, "tile", 1);
	recb_str(&b, "id", "n/5x/0_0");
	recb_vec(&b, "img_emb", nan_row, 2, 2, VEC_F32, NULL, NULL);
	char *out;
	size_t n;
	recb_finish(&b, &out, &n);
	struct stream_reader r;
	struct record rec;
	stream_reader_init(&r, memstream(out, n), "nan");
	stream_read(&r, &rec);
	struct vec_view v;
	float y[4];
	ok(record_get_vec(&rec, "img_emb", &v) == 0 && vec_to_f32(&v, y) == -1 &&
	       strstr(eosin_errmsg(), "row 1 element 1 is NaN"),
	   "NaN refused: %s", eosin_errmsg());
	stream_reader_release(&r);
	free(out);
	/* Wrong data size. */
	recb_begin(&b, "tile", 1);
	recb_str(&b, "id", "w");
	recb_key(&b, "img_emb");
	msgpack_pack_map(&b.pk, 3);
	msgpack_pack_str_with_body(&b.pk, "dtype", 5);
	msgpack_pack_str_with_body(&b.pk, "f32", 3);
	msgpack_pack_str_with_body(&b.pk, "dim", 3);
	msgpack_pack_uint32(&b.pk, 4);
	msgpack_pack_str_with_body(&b.pk, "data", 4);
	msgpack_pack_bin_with_body(&b.pk, "12345678", 8);
	recb_finish(&b, &out, &n);
	stream_reader_init(&r, memstream(out, n), "size");
	stream_read(&r, &rec);
	ok(record_get_vec(&rec, "img_emb", &v) == -1 &&
	       strstr(eosin_errmsg(), "record 1 (id 'w'): field 'img_emb': 'data' has 8 bytes, n*dim*size is 16"),
	   "size mismatch named: %s", eosin_errmsg());
	stream_reader_release(&r);
	free(out);
	recb_release(&b);
}

int main(void)
{
	test_roundtrip();
	test_bad_input();
	test_writer();
	test_copy_fields();
	test_vec();
	return tap_done();
}
