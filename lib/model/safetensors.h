/*
 * safetensors.h: read (mmap) and write safetensors weight files.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then
 * the data section. The JSON maps tensor names to {dtype, shape,
 * data_offsets: [begin, end)} (offsets from the start of the data section)
 * and may hold "__metadata__", a map of strings to strings.
 *
 * The reader validates everything before handing out a tensor: header
 * length inside the file, JSON an object, dtype one of F32/F16/BF16 (other
 * safetensors dtypes are refused by name), shape non-negative with at most
 * ST_MAX_DIMS dims, offsets in order, inside the data section and not
 * overlapping, size = prod(shape) * dtype size, metadata values strings.
 * A malformed file is an error naming the file and the tensor, never a
 * crash (tests/fuzz/fuzz-safetensors.c).
 *
 * Ownership: struct safetensors owns its mapping, names and metadata;
 * tensor data pointers point into the mapping and live until
 * safetensors_close(). safetensors_parse() works on a caller's buffer and
 * does not own it.
 */
#ifndef EOSIN_SAFETENSORS_H
#define EOSIN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
/* Refuse headers larger than this: no real model needs more. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

enum st_dtype { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2 };

struct st_tensor {
	char *name;
	enum st_dtype dtype;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	int64_t numel;
	const void *data;     /* numel elements of dtype, little-endian, maybe unaligned */
	size_t nbytes;
};

struct st_meta {
	char *key, *value;
};

struct safetensors {
	char *path;           /* for messages */
	void *map;            /* whole file (NULL when parsed from a caller's buffer) */
	size_t map_size;
	struct st_tensor *tensors;  /* in header order */
	size_t ntensors;
	struct st_meta *meta; /* __metadata__ pairs in header order */
	size_t nmeta;
};

size_t st_dtype_size(enum st_dtype t);
const char *st_dtype_name(enum st_dtype t);

/* Map and validate `path`. 0 ok, -1 error (message names the file and,
 * where it applies, the tensor). */
int safetensors_open(struct safetensors *st, const char *path);
/* As safetensors_open, but a tensor of a dtype eosin does not read (I64 and
 * the like) whose name ends in one of skip_suffixes (NULL-terminated) is
 * left out and counted in *nskipped: the integer buffers that exports of
 * other libraries persist (position_ids). Any other such tensor is still
 * an error. */
int safetensors_open_skipping(struct safetensors *st, const char *path,
                              const char *const *skip_suffixes, size_t *nskipped);
/* Validate a whole file image already in memory (buf stays the caller's). */
int safetensors_parse(struct safetensors *st, const void *buf, size_t size, const char *name);
void safetensors_close(struct safetensors *st);

const struct st_tensor *safetensors_find(const struct safetensors *st, const char *name);
/* A __metadata__ value, or NULL. */
const char *safetensors_meta(const struct safetensors *st, const char *key);

/* Convert a tensor to float32 (n = t->numel elements into out). */
void st_tensor_to_f32(const struct st_tensor *t, float *out);
/* A malloc'd float32 copy of tensor `name`, checked to have the given shape
 * (ndim dims; a -1 entry matches any size). NULL with an error naming the
 * file and tensor when absent or of another shape. */
float *safetensors_load_f32(const struct safetensors *st, const char *name, int ndim,
                            const int64_t *shape);

/* One tensor to write: data holds prod(shape) elements of dtype. */
struct st_write_tensor {
	const char *name;
	enum st_dtype dtype;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	const void *data;
};

/* Write a safetensors file atomically (PATH.tmp.PID, fsync, rename).
 * metadata: NULL or a NULL-terminated list of key, value, key, value...
 * Tensors are stored in the order given. 0 ok, -1 error. */
int safetensors_write(const char *path, const struct st_write_tensor *tensors, size_t n,
                      const char *const *metadata);

#endif
