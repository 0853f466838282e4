/*
 * stream.h: the record stream every eosin program reads and writes.
 *
 * A stream is msgpack maps written back to back, nothing around them, so
 * `cat a.mpk b.mpk` is a stream. Every map has "k" (kind, a string) and "v"
 * (schema version, a positive integer). See eosin-stream(5).
 *
 * Reader: stream_read() hands out one record at a time. The record's
 * msgpack objects and its raw bytes point into the reader's buffer and stay
 * valid only until the next stream_read() on the same reader; copy what must
 * live longer. Records a program does not handle go out again with
 * stream_write_record(), byte for byte.
 *
 * Writer: buffered writes to a file descriptor. Every write error (a full
 * disk, a closed pipe with SIGPIPE ignored, /dev/full) is reported by the
 * call that meets it and by stream_writer_close(), which the program must
 * check before exiting 0.
 *
 * Record builder (recb): packs one map, counting its pairs, then writes it
 * with the pair count in front. Keys are added once each; use
 * recb_copy_fields() with a skip list to carry over an input record's
 * fields while replacing some.
 */
#ifndef EOSIN_STREAM_H
#define EOSIN_STREAM_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define EOSIN_VERSION "0.1.0"

/* Upper bound on one record's size, so that a corrupt length prefix cannot
 * make the reader swallow a whole archive. 1 GiB holds a 10,240 x 1,536
 * float32 bag with room to spare. */
#define STREAM_MAX_RECORD ((size_t)1 << 30)

struct record {
	const char *raw;      /* exact bytes of the record as read */
	size_t len;           /* their count */
	msgpack_object root;  /* the map; strings and bins point into raw */
	const char *kind;     /* "k", not NUL-terminated */
	size_t kind_len;
	int64_t version;      /* "v" */
	uint64_t number;      /* 1-based position in its input */
	uint64_t offset;      /* byte offset of its first byte in its input */
};

struct stream_reader {
	int fd;
	int own_fd;
	char *name;           /* for messages: a path or "<stdin>" */
	char *buf;
	size_t cap, start, end;
	uint64_t base;        /* input offset of buf[0] */
	uint64_t nrecords;    /* records returned so far */
	int eof;
	size_t max_record;
	/* Pre-scan of the record at buf[start]: how far it is checked and how
	 * many objects are still owed, so that a record arriving in pieces is
	 * scanned once, and msgpack-c only sees whole records (its container
	 * allocations are then bounded by the record's real size). */
	size_t scan_pos;
	uint64_t scan_pending;
	msgpack_unpacked unp;
};

/* Read from an open descriptor (not closed by release) or a path; "-" is
 * standard input. */
int stream_reader_init(struct stream_reader *r, int fd, const char *name);
int stream_reader_open(struct stream_reader *r, const char *path);
/* 1: a record; 0: clean end of input; -1: error (malformed or truncated
 * input, a non-map, missing k/v, a read error), message names the input, the
 * byte offset and the last good record. */
int stream_read(struct stream_reader *r, struct record *rec);
void stream_reader_release(struct stream_reader *r);

/* Does the record have kind `kind`? */
int record_is(const struct record *rec, const char *kind);
/* The record's id field as a printable string for messages ("?" if none). */
const char *record_id(const struct record *rec, char *buf, size_t size);

/* Field access. A getter returns 0 when the field is there with the right
 * type, 1 when it is absent (or nil), -1 when it has the wrong type (the
 * error names the record number, its id and the field). Strings are not
 * NUL-terminated unless the getter copies. */
const msgpack_object *record_get(const struct record *rec, const char *key);
const msgpack_object *mpo_get(const msgpack_object *map, const char *key);
int record_get_str(const struct record *rec, const char *key, const char **s, size_t *n);
int record_get_int(const struct record *rec, const char *key, int64_t *v);
int record_get_num(const struct record *rec, const char *key, double *v);
int record_get_bool(const struct record *rec, const char *key, int *v);
int record_get_bin(const struct record *rec, const char *key, const char **p, size_t *n);
/* Copy a string field into buf (NUL-terminated); -1 if it does not fit. */
int record_get_strcpy(const struct record *rec, const char *key, char *buf, size_t size);
/* A malloc'd NUL-terminated copy, or NULL (error set) when absent/wrong. */
char *record_get_strdup(const struct record *rec, const char *key);
int mpo_str_eq(const msgpack_object *o, const char *s);

struct stream_writer {
	int fd;
	int own_fd;
	char *name;
	char *buf;
	size_t cap, len;
	int failed;           /* errno of the first failed write, or 0 */
	uint64_t nrecords;
};

int stream_writer_init(struct stream_writer *w, int fd, const char *name);
/* Create `path` (or "-" for stdout). */
int stream_writer_open(struct stream_writer *w, const char *path);
/* Append one record's bytes (must be one whole msgpack map). */
int stream_write_raw(struct stream_writer *w, const void *p, size_t n);
int stream_write_record(struct stream_writer *w, const struct record *rec);
int stream_writer_flush(struct stream_writer *w);
/* Flush, close if owned, free. Returns -1 if any write failed. */
int stream_writer_close(struct stream_writer *w);

struct recb {
	msgpack_sbuffer body;
	msgpack_packer pk;    /* pack a value after recb_key() with this */
	uint32_t npairs;
	int failed;
};

void recb_init(struct recb *b);
void recb_release(struct recb *b);
/* Start a record: clears the builder, packs k and v. */
void recb_begin(struct recb *b, const char *kind, int version);
/* Pack a key; the caller packs exactly one value next with b->pk. */
void recb_key(struct recb *b, const char *key);
void recb_str(struct recb *b, const char *key, const char *s);
void recb_strn(struct recb *b, const char *key, const char *s, size_t n);
void recb_int(struct recb *b, const char *key, int64_t v);
void recb_f64(struct recb *b, const char *key, double v);
void recb_bool(struct recb *b, const char *key, int v);
void recb_bin(struct recb *b, const char *key, const void *p, size_t n);
void recb_obj(struct recb *b, const char *key, const msgpack_object *o);
/* Copy every pair of rec except k, v and the NULL-terminated list skip. */
void recb_copy_fields(struct recb *b, const struct record *rec, const char *const *skip);
/* Write the record to w; -1 on a packing or write failure. */
int recb_write(struct recb *b, struct stream_writer *w);
/* The finished record's bytes (map header + body) into a malloc'd buffer. */
int recb_finish(struct recb *b, char **out, size_t *outlen);

/* Start an hdr record for this program: prog, version, args, time (now,
 * or SOURCE_DATE_EPOCH when that is set to whole seconds). Add more fields (model, hash, ...) with recb_* before writing. */
void recb_hdr(struct recb *b, const char *prog, int argc, char **argv);

#endif
