#include "core/stream.h"

#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK ((size_t)1 << 16) /* first buffer; grows by doubling */

int stream_reader_init(struct stream_reader *r, int fd, const char *name)
{
	memset(r, 0, sizeof *r);
	r->fd = fd;
	r->name = strdup(name ? name : "<stdin>");
	r->cap = READ_CHUNK;
	r->buf = malloc(r->cap);
	r->max_record = STREAM_MAX_RECORD;
	msgpack_unpacked_init(&r->unp);
	if (!r->name || !r->buf) {
		stream_reader_release(r);
		return eosin_error("out of memory");
	}
	return 0;
}

int stream_reader_open(struct stream_reader *r, const char *path)
{
	if (!strcmp(path, "-"))
		return stream_reader_init(r, 0, "<stdin>");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return eosin_error("cannot open '%s': %s", path, strerror(errno));
	if (stream_reader_init(r, fd, path) < 0) {
		close(fd);
		return -1;
	}
	r->own_fd = 1;
	return 0;
}

void stream_reader_release(struct stream_reader *r)
{
	if (r->own_fd)
		close(r->fd);
	msgpack_unpacked_destroy(&r->unp);
	free(r->buf);
	free(r->name);
	memset(r, 0, sizeof *r);
	r->fd = -1;
}

/* Make room and read more bytes; 0 on data or EOF (r->eof set), -1 error. */
static int reader_fill(struct stream_reader *r)
{
	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->base += r->start;
		r->end -= r->start;
		r->start = 0;
	}
	if (r->end == r->cap) {
		size_t ncap = r->cap * 2;
		if (ncap > r->max_record + READ_CHUNK)
			return eosin_error("%s: record at byte offset %" PRIu64
			                   " (after record %" PRIu64 ") is larger than %zu bytes",
			                   r->name, r->base, r->nrecords, r->max_record);
		char *nb = realloc(r->buf, ncap);
		if (!nb)
			return eosin_error("out of memory");
		r->buf = nb;
		r->cap = ncap;
	}
	for (;;) {
		ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return eosin_error("%s: read error: %s", r->name, strerror(errno));
		if (n == 0)
			r->eof = 1;
		r->end += (size_t)n;
		return 0;
	}
}

/* Big-endian length of k bytes at p. */
static uint64_t be(const unsigned char *p, int k)
{
	uint64_t v = 0;
	for (int i = 0; i < k; i++)
		v = v << 8 | p[i];
	return v;
}

/* Advance the pre-scan of the record at r->buf + r->start over the bytes
 * read so far. 1: the record is complete and *len is its size; 0: more
 * bytes are needed; -1: malformed (0xc1) or larger than max_record. No
 * allocation, no recursion: one counter of objects still owed. */
static int record_scan(struct stream_reader *r, size_t *len)
{
	const unsigned char *p = (const unsigned char *)r->buf + r->start;
	size_t n = r->end - r->start, i = r->scan_pos;
	uint64_t pending = r->scan_pending ? r->scan_pending : 1;
	while (pending > 0) {
		if (i >= n)
			goto more;
		unsigned c = p[i];
		uint64_t head = 1, body = 0, items = 0;
		if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
		} else if (c <= 0x8f) {
			items = 2 * (uint64_t)(c & 0x0f);
		} else if (c <= 0x9f) {
			items = c & 0x0f;
		} else if (c <= 0xbf) {
			body = c & 0x1f;
		} else if (c == 0xc1) {
			return eosin_error("%s: malformed msgpack at byte offset %" PRIu64
			                   " (after record %" PRIu64 ")",
			                   r->name, r->base + r->start + i, r->nrecords);
		} else {
			/* c4..df: a length or count follows the type byte. */
			static const unsigned char lenbytes[] = {
			    1, 2, 4, 1, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* c4..d3 */
			    0, 0, 0, 0, 0, 1, 2, 4, 2, 4, 2, 4};             /* d4..df */
			static const unsigned char fixed[] = {
			    0, 0, 0, 1, 1, 1, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8, /* c4..d3 */
			    2, 3, 5, 9, 17, 0, 0, 0, 0, 0, 0, 0};           /* d4..df */
			int k = lenbytes[c - 0xc4];
			head = 1 + (uint64_t)k;
			if (i + head > n)
				goto more;
			uint64_t v = k ? be(p + i + 1, k) : 0;
			if (c >= 0xdc)
				items = c >= 0xde ? 2 * v : v;
			else
				body = (c >= 0xc7 && c <= 0xc9) ? v + 1 : v + fixed[c - 0xc4];
		}
		if (i + head + body > r->max_record || pending - 1 + items > r->max_record)
			return eosin_error("%s: record at byte offset %" PRIu64 " (after record %" PRIu64
			                   ") is larger than %zu bytes",
			                   r->name, r->base + r->start, r->nrecords, r->max_record);
		if (i + head + body > n)
			goto more;
		i += head + body;
		pending = pending - 1 + items;
	}
	*len = i;
	r->scan_pos = 0;
	r->scan_pending = 0;
	return 1;
more:
	r->scan_pos = i;
	r->scan_pending = pending;
	return 0;
}

static int record_check_shape(struct stream_reader *r, struct record *rec)
{
	const msgpack_object *o = &rec->root;
	if (o->type != MSGPACK_OBJECT_MAP)
		return eosin_error("%s: record %" PRIu64 " at byte offset %" PRIu64
		                   " is not a map", r->name, rec->number, rec->offset);
	const msgpack_object *k = mpo_get(o, "k"), *v = mpo_get(o, "v");
	if (!k || k->type != MSGPACK_OBJECT_STR || k->via.str.size == 0)
		return eosin_error("%s: record %" PRIu64 " at byte offset %" PRIu64
		                   ": field 'k' missing or not a string",
		                   r->name, rec->number, rec->offset);
	if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 == 0 ||
	    v->via.u64 > INT32_MAX)
		return eosin_error("%s: record %" PRIu64 " at byte offset %" PRIu64
		                   ": field 'v' missing or not a positive integer",
		                   r->name, rec->number, rec->offset);
	rec->kind = k->via.str.ptr;
	rec->kind_len = k->via.str.size;
	rec->version = (int64_t)v->via.u64;
	return 0;
}

int stream_read(struct stream_reader *r, struct record *rec)
{
	for (;;) {
		size_t avail = r->end - r->start, len = 0;
		int scan = avail > 0 ? record_scan(r, &len) : 0;
		if (scan < 0)
			return -1;
		if (scan == 1) {
			size_t off = 0;
			msgpack_unpack_return ret =
			    msgpack_unpack_next(&r->unp, r->buf + r->start, len, &off);
			if (ret == MSGPACK_UNPACK_NOMEM_ERROR)
				return eosin_error("%s: out of memory decoding record at byte offset %" PRIu64,
				                   r->name, r->base + r->start);
			if ((ret != MSGPACK_UNPACK_SUCCESS && ret != MSGPACK_UNPACK_EXTRA_BYTES) ||
			    off != len)
				return eosin_error("%s: malformed msgpack at byte offset %" PRIu64
				                   " (after record %" PRIu64 ")",
				                   r->name, r->base + r->start, r->nrecords);
			memset(rec, 0, sizeof *rec);
			rec->raw = r->buf + r->start;
			rec->len = len;
			rec->root = r->unp.data;
			rec->offset = r->base + r->start;
			rec->number = r->nrecords + 1;
			r->start += len;
			if (record_check_shape(r, rec) < 0)
				return -1;
			r->nrecords++;
			return 1;
		}
		if (r->eof) {
			if (avail == 0)
				return 0;
			return eosin_error("%s: truncated record at byte offset %" PRIu64
			                   " (%zu bytes, after record %" PRIu64 ")",
			                   r->name, r->base + r->start, avail, r->nrecords);
		}
		if (reader_fill(r) < 0)
			return -1;
	}
}

int mpo_str_eq(const msgpack_object *o, const char *s)
{
	size_t n = strlen(s);
	return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
	       memcmp(o->via.str.ptr, s, n) == 0;
}

const msgpack_object *mpo_get(const msgpack_object *map, const char *key)
{
	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	size_t n = strlen(key);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
		    memcmp(k->via.str.ptr, key, n) == 0)
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

const msgpack_object *record_get(const struct record *rec, const char *key)
{
	const msgpack_object *o = mpo_get(&rec->root, key);
	return o && o->type != MSGPACK_OBJECT_NIL ? o : NULL;
}

int record_is(const struct record *rec, const char *kind)
{
	size_t n = strlen(kind);
	return rec->kind_len == n && memcmp(rec->kind, kind, n) == 0;
}

const char *record_id(const struct record *rec, char *buf, size_t size)
{
	const msgpack_object *o = record_get(rec, "id");
	if (!o || o->type != MSGPACK_OBJECT_STR) {
		snprintf(buf, size, "?");
		return buf;
	}
	snprintf(buf, size, "%.*s", (int)o->via.str.size, o->via.str.ptr);
	return buf;
}

static int field_error(const struct record *rec, const char *key, const char *want)
{
	char id[256];
	return eosin_error("record %" PRIu64 " (id '%s'): field '%s' is not %s", rec->number,
	                   record_id(rec, id, sizeof id), key, want);
}

int record_get_str(const struct record *rec, const char *key, const char **s, size_t *n)
{
	const msgpack_object *o = record_get(rec, key);
	if (!o)
		return 1;
	if (o->type != MSGPACK_OBJECT_STR)
		return field_error(rec, key, "a string");
	*s = o->via.str.ptr;
	if (n)
		*n = o->via.str.size;
	return 0;
}

int record_get_int(const struct record *rec, const char *key, int64_t *v)
{
	const msgpack_object *o = record_get(rec, key);
	if (!o)
		return 1;
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
		*v = (int64_t)o->via.u64;
	else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		*v = o->via.i64;
	else
		return field_error(rec, key, "an integer");
	return 0;
}

int record_get_num(const struct record *rec, const char *key, double *v)
{
	const msgpack_object *o = record_get(rec, key);
	if (!o)
		return 1;
	switch (o->type) {
	case MSGPACK_OBJECT_POSITIVE_INTEGER: *v = (double)o->via.u64; return 0;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: *v = (double)o->via.i64; return 0;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: *v = o->via.f64; return 0;
	default: return field_error(rec, key, "a number");
	}
}

int record_get_bool(const struct record *rec, const char *key, int *v)
{
	const msgpack_object *o = record_get(rec, key);
	if (!o)
		return 1;
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return field_error(rec, key, "a boolean");
	*v = o->via.boolean;
	return 0;
}

int record_get_bin(const struct record *rec, const char *key, const char **p, size_t *n)
{
	const msgpack_object *o = record_get(rec, key);
	if (!o)
		return 1;
	if (o->type != MSGPACK_OBJECT_BIN)
		return field_error(rec, key, "binary");
	*p = o->via.bin.ptr;
	*n = o->via.bin.size;
	return 0;
}

int record_get_strcpy(const struct record *rec, const char *key, char *buf, size_t size)
{
	const char *s = NULL;
	size_t n = 0;
	int ret = record_get_str(rec, key, &s, &n);
	if (ret)
		return ret;
	if (n >= size) {
		char id[256];
		return eosin_error("record %" PRIu64 " (id '%s'): field '%s' is longer than %zu bytes",
		                   rec->number, record_id(rec, id, sizeof id), key, size - 1);
	}
	memcpy(buf, s, n);
	buf[n] = 0;
	return 0;
}

char *record_get_strdup(const struct record *rec, const char *key)
{
	const char *s = NULL;
	size_t n = 0;
	int ret = record_get_str(rec, key, &s, &n);
	if (ret == 1) {
		char id[256];
		eosin_error("record %" PRIu64 " (id '%s'): field '%s' is missing", rec->number,
		            record_id(rec, id, sizeof id), key);
	}
	if (ret)
		return NULL;
	char *c = strndup(s, n);
	if (!c)
		eosin_error("out of memory");
	return c;
}

/* ---- writer ---- */

#define WRITE_BUF ((size_t)1 << 20)

int stream_writer_init(struct stream_writer *w, int fd, const char *name)
{
	memset(w, 0, sizeof *w);
	w->fd = fd;
	w->name = strdup(name ? name : "<stdout>");
	w->cap = WRITE_BUF;
	w->buf = malloc(w->cap);
	if (!w->name || !w->buf) {
		free(w->name);
		free(w->buf);
		return eosin_error("out of memory");
	}
	return 0;
}

int stream_writer_open(struct stream_writer *w, const char *path)
{
	if (!strcmp(path, "-"))
		return stream_writer_init(w, 1, "<stdout>");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0)
		return eosin_error("cannot create '%s': %s", path, strerror(errno));
	if (stream_writer_init(w, fd, path) < 0) {
		close(fd);
		return -1;
	}
	w->own_fd = 1;
	return 0;
}

static int write_all(struct stream_writer *w, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(w->fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			w->failed = errno ? errno : EIO;
			return eosin_error("write error on %s: %s", w->name, strerror(errno));
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

int stream_writer_flush(struct stream_writer *w)
{
	if (w->failed)
		return eosin_error("write error on %s: %s", w->name, strerror(w->failed));
	if (w->len == 0)
		return 0;
	int ret = write_all(w, w->buf, w->len);
	w->len = 0;
	return ret;
}

int stream_write_raw(struct stream_writer *w, const void *p, size_t n)
{
	if (w->failed)
		return eosin_error("write error on %s: %s", w->name, strerror(w->failed));
	if (w->len + n > w->cap && stream_writer_flush(w) < 0)
		return -1;
	if (n >= w->cap) {
		if (write_all(w, p, n) < 0)
			return -1;
		w->nrecords++;
		return 0;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
	w->nrecords++;
	return 0;
}

int stream_write_record(struct stream_writer *w, const struct record *rec)
{
	return stream_write_raw(w, rec->raw, rec->len);
}

int stream_writer_close(struct stream_writer *w)
{
	int ret = stream_writer_flush(w);
	if (w->own_fd && close(w->fd) < 0 && ret == 0)
		ret = eosin_error("close error on %s: %s", w->name, strerror(errno));
	free(w->buf);
	free(w->name);
	w->buf = NULL;
	w->name = NULL;
	return ret;
}

/* ---- record builder ---- */

static int recb_write_cb(void *data, const char *buf, size_t len)
{
	struct recb *b = data;
	if (msgpack_sbuffer_write(&b->body, buf, len) != 0) {
		b->failed = 1;
		return -1;
	}
	return 0;
}

void recb_init(struct recb *b)
{
	memset(b, 0, sizeof *b);
	msgpack_sbuffer_init(&b->body);
	msgpack_packer_init(&b->pk, b, recb_write_cb);
}

void recb_release(struct recb *b)
{
	msgpack_sbuffer_destroy(&b->body);
	memset(b, 0, sizeof *b);
}

void recb_begin(struct recb *b, const char *kind, int version)
{
	b->body.size = 0;
	b->npairs = 0;
	b->failed = 0;
	recb_str(b, "k", kind);
	recb_int(b, "v", version);
}

void recb_key(struct recb *b, const char *key)
{
	size_t n = strlen(key);
	msgpack_pack_str(&b->pk, n);
	msgpack_pack_str_body(&b->pk, key, n);
	b->npairs++;
}

void recb_strn(struct recb *b, const char *key, const char *s, size_t n)
{
	recb_key(b, key);
	msgpack_pack_str(&b->pk, n);
	msgpack_pack_str_body(&b->pk, s, n);
}

void recb_str(struct recb *b, const char *key, const char *s)
{
	recb_strn(b, key, s, strlen(s));
}

void recb_int(struct recb *b, const char *key, int64_t v)
{
	recb_key(b, key);
	msgpack_pack_int64(&b->pk, v);
}

void recb_f64(struct recb *b, const char *key, double v)
{
	recb_key(b, key);
	msgpack_pack_double(&b->pk, v);
}

void recb_bool(struct recb *b, const char *key, int v)
{
	recb_key(b, key);
	if (v)
		msgpack_pack_true(&b->pk);
	else
		msgpack_pack_false(&b->pk);
}

void recb_bin(struct recb *b, const char *key, const void *p, size_t n)
{
	recb_key(b, key);
	msgpack_pack_bin(&b->pk, n);
	msgpack_pack_bin_body(&b->pk, p, n);
}

void recb_obj(struct recb *b, const char *key, const msgpack_object *o)
{
	recb_key(b, key);
	msgpack_pack_object(&b->pk, *o);
}

void recb_copy_fields(struct recb *b, const struct record *rec, const char *const *skip)
{
	const msgpack_object *m = &rec->root;
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;
		if (mpo_str_eq(k, "k") || mpo_str_eq(k, "v"))
			continue;
		int skipped = 0;
		for (const char *const *s = skip; s && *s; s++)
			if (mpo_str_eq(k, *s)) {
				skipped = 1;
				break;
			}
		if (skipped)
			continue;
		msgpack_pack_object(&b->pk, *k);
		msgpack_pack_object(&b->pk, m->via.map.ptr[i].val);
		b->npairs++;
	}
}

/* The map header for npairs, packed into hdr (at most 5 bytes). */
static size_t map_header(uint32_t npairs, unsigned char *hdr)
{
	if (npairs < 16) {
		hdr[0] = (unsigned char)(0x80 | npairs);
		return 1;
	}
	if (npairs < 65536) {
		hdr[0] = 0xde;
		hdr[1] = (unsigned char)(npairs >> 8);
		hdr[2] = (unsigned char)npairs;
		return 3;
	}
	hdr[0] = 0xdf;
	hdr[1] = (unsigned char)(npairs >> 24);
	hdr[2] = (unsigned char)(npairs >> 16);
	hdr[3] = (unsigned char)(npairs >> 8);
	hdr[4] = (unsigned char)npairs;
	return 5;
}

int recb_write(struct recb *b, struct stream_writer *w)
{
	if (b->failed)
		return eosin_error("out of memory packing a record");
	unsigned char hdr[5];
	size_t h = map_header(b->npairs, hdr);
	size_t n = h + b->body.size;
	if (w->failed)
		return eosin_error("write error on %s: %s", w->name, strerror(w->failed));
	if (w->len + n > w->cap && stream_writer_flush(w) < 0)
		return -1;
	if (n >= w->cap) {
		if (write_all(w, (char *)hdr, h) < 0 || write_all(w, b->body.data, b->body.size) < 0)
			return -1;
	} else {
		memcpy(w->buf + w->len, hdr, h);
		memcpy(w->buf + w->len + h, b->body.data, b->body.size);
		w->len += n;
	}
	w->nrecords++;
	return 0;
}

int recb_finish(struct recb *b, char **out, size_t *outlen)
{
	if (b->failed)
		return eosin_error("out of memory packing a record");
	unsigned char hdr[5];
	size_t h = map_header(b->npairs, hdr);
	char *p = malloc(h + b->body.size);
	if (!p)
		return eosin_error("out of memory");
	memcpy(p, hdr, h);
	memcpy(p + h, b->body.data, b->body.size);
	*out = p;
	*outlen = h + b->body.size;
	return 0;
}

void recb_hdr(struct recb *b, const char *prog, int argc, char **argv)
{
	char when[32];
	time_t now = time(NULL);
	/* Reproducible outputs (https://reproducible-builds.org): a build that
	 * sets SOURCE_DATE_EPOCH gets that time in every hdr, so the same
	 * inputs give byte-identical files. */
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	if (sde && *sde) {
		char *end;
		errno = 0;
		long long t = strtoll(sde, &end, 10);
		if (!*end && !errno && t >= 0)
			now = (time_t)t;
	}
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	recb_begin(b, "hdr", 1);
	recb_str(b, "prog", prog);
	recb_str(b, "version", EOSIN_VERSION);
	recb_key(b, "args");
	msgpack_pack_array(&b->pk, argc > 0 ? (size_t)argc - 1 : 0);
	for (int i = 1; i < argc; i++) {
		size_t n = strlen(argv[i]);
		msgpack_pack_str(&b->pk, n);
		msgpack_pack_str_body(&b->pk, argv[i], n);
	}
	recb_str(b, "time", when);
}
