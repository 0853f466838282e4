/*
 * vec.h: embeddings in the stream.
 *
 * An embedding field is a map (see eosin-common(5)):
 *   dtype  "f32" | "f16" | "bf16"   element type, little-endian
 *   dim    int > 0                  vector length
 *   n      int >= 1 (default 1)     number of vectors (rows), row-major
 *   data   bin, n*dim*size bytes
 *   model  str (optional)           encoder or head that made it
 *   hash   str (optional)           hex digest of that model's weights
 * Standard names: img_emb (patch/slide encoder), txt_emb (text encoder),
 * joint_emb (after eosin-align --apply).
 *
 * A vec_view points into the record; it lives as long as the record does.
 */
#ifndef EOSIN_VEC_H
#define EOSIN_VEC_H

#include "core/stream.h"

#include <stdint.h>

enum vec_dtype { VEC_F32 = 0, VEC_F16 = 1, VEC_BF16 = 2 };

struct vec_view {
	enum vec_dtype dtype;
	uint32_t dim, n;
	const void *data;     /* n*dim elements of dtype, maybe unaligned */
	const char *model;    /* not NUL-terminated; NULL if absent */
	size_t model_len;
	const char *hash;
	size_t hash_len;
};

size_t vec_dtype_size(enum vec_dtype t);
const char *vec_dtype_name(enum vec_dtype t);
int vec_dtype_parse(const char *s, enum vec_dtype *t);

/* Parse an embedding map. 0 ok, 1 field absent, -1 malformed (error names
 * record, id, field and what is wrong). */
int record_get_vec(const struct record *rec, const char *key, struct vec_view *v);
int mpo_get_vec(const msgpack_object *o, struct vec_view *v);
/* Convert all n*dim elements to float32. Fails (-1) on NaN or Inf, naming
 * the row, so that bad numbers never reach an index or a loss. */
int vec_to_f32(const struct vec_view *v, float *out);

/* Pack an embedding map as field `key`: x is (n, dim) float32, stored as
 * dtype. model and hash may be NULL. */
void recb_vec(struct recb *b, const char *key, const float *x, uint32_t n, uint32_t dim,
              enum vec_dtype dtype, const char *model, const char *hash);

/* IEEE binary16 and bfloat16 conversions, round to nearest even. */
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
float bf16_to_f32(uint16_t h);

#endif
