#include "core/vec.h"

#include "core/error.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t vec_dtype_size(enum vec_dtype t)
{
	return t == VEC_F32 ? 4 : 2;
}

const char *vec_dtype_name(enum vec_dtype t)
{
	return t == VEC_F32 ? "f32" : t == VEC_F16 ? "f16" : "bf16";
}

int vec_dtype_parse(const char *s, enum vec_dtype *t)
{
	if (!strcmp(s, "f32") || !strcmp(s, "float32"))
		*t = VEC_F32;
	else if (!strcmp(s, "f16") || !strcmp(s, "float16"))
		*t = VEC_F16;
	else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16"))
		*t = VEC_BF16;
	else
		return eosin_error("unknown dtype '%s' (want f32, f16 or bf16)", s);
	return 0;
}

static int u32_field(const msgpack_object *m, const char *key, uint32_t *v, uint32_t dflt,
                     int required)
{
	const msgpack_object *o = mpo_get(m, key);
	if (!o || o->type == MSGPACK_OBJECT_NIL) {
		if (required)
			return eosin_error("'%s' missing", key);
		*v = dflt;
		return 0;
	}
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 == 0 ||
	    o->via.u64 > UINT32_MAX)
		return eosin_error("'%s' is not a positive integer", key);
	*v = (uint32_t)o->via.u64;
	return 0;
}

int mpo_get_vec(const msgpack_object *m, struct vec_view *v)
{
	memset(v, 0, sizeof *v);
	if (m->type != MSGPACK_OBJECT_MAP)
		return eosin_error("not an embedding map");
	const msgpack_object *dt = mpo_get(m, "dtype"), *data = mpo_get(m, "data");
	if (!dt || dt->type != MSGPACK_OBJECT_STR)
		return eosin_error("'dtype' missing or not a string");
	char name[16];
	if (dt->via.str.size >= sizeof name)
		return eosin_error("unknown dtype");
	memcpy(name, dt->via.str.ptr, dt->via.str.size);
	name[dt->via.str.size] = 0;
	if (vec_dtype_parse(name, &v->dtype) < 0)
		return -1;
	if (u32_field(m, "dim", &v->dim, 0, 1) < 0 || u32_field(m, "n", &v->n, 1, 0) < 0)
		return -1;
	if (!data || data->type != MSGPACK_OBJECT_BIN)
		return eosin_error("'data' missing or not binary");
	uint64_t want = (uint64_t)v->n * v->dim * vec_dtype_size(v->dtype);
	if (data->via.bin.size != want)
		return eosin_error("'data' has %" PRIu32 " bytes, n*dim*size is %" PRIu64,
		                   data->via.bin.size, want);
	v->data = data->via.bin.ptr;
	const msgpack_object *model = mpo_get(m, "model"), *hash = mpo_get(m, "hash");
	if (model && model->type == MSGPACK_OBJECT_STR) {
		v->model = model->via.str.ptr;
		v->model_len = model->via.str.size;
	}
	if (hash && hash->type == MSGPACK_OBJECT_STR) {
		v->hash = hash->via.str.ptr;
		v->hash_len = hash->via.str.size;
	}
	return 0;
}

int record_get_vec(const struct record *rec, const char *key, struct vec_view *v)
{
	const msgpack_object *o = record_get(rec, key);
	if (!o)
		return 1;
	if (mpo_get_vec(o, v) < 0) {
		char id[256];
		return eosin_error_prefix("record %" PRIu64 " (id '%s'): field '%s'", rec->number,
		                          record_id(rec, id, sizeof id), key);
	}
	return 0;
}

int vec_to_f32(const struct vec_view *v, float *out)
{
	size_t total = (size_t)v->n * v->dim;
	const unsigned char *p = v->data;
	for (size_t i = 0; i < total; i++) {
		float f;
		if (v->dtype == VEC_F32) {
			memcpy(&f, p + 4 * i, 4);
		} else {
			uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
			f = v->dtype == VEC_F16 ? f16_to_f32(h) : bf16_to_f32(h);
		}
		if (!isfinite(f))
			return eosin_error("row %zu element %zu is %s", i / v->dim, i % v->dim,
			                   isnan(f) ? "NaN" : "infinite");
		out[i] = f;
	}
	return 0;
}

void recb_vec(struct recb *b, const char *key, const float *x, uint32_t n, uint32_t dim,
              enum vec_dtype dtype, const char *model, const char *hash)
{
	recb_key(b, key);
	msgpack_pack_map(&b->pk, 3 + (n != 1) + (model != NULL) + (hash != NULL));
	msgpack_pack_str_with_body(&b->pk, "dtype", 5);
	const char *dn = vec_dtype_name(dtype);
	msgpack_pack_str_with_body(&b->pk, dn, strlen(dn));
	msgpack_pack_str_with_body(&b->pk, "dim", 3);
	msgpack_pack_uint32(&b->pk, dim);
	if (n != 1) {
		msgpack_pack_str_with_body(&b->pk, "n", 1);
		msgpack_pack_uint32(&b->pk, n);
	}
	if (model) {
		msgpack_pack_str_with_body(&b->pk, "model", 5);
		msgpack_pack_str_with_body(&b->pk, model, strlen(model));
	}
	if (hash) {
		msgpack_pack_str_with_body(&b->pk, "hash", 4);
		msgpack_pack_str_with_body(&b->pk, hash, strlen(hash));
	}
	msgpack_pack_str_with_body(&b->pk, "data", 4);
	size_t total = (size_t)n * dim, bytes = total * vec_dtype_size(dtype);
	msgpack_pack_bin(&b->pk, bytes);
	if (dtype == VEC_F32) {
		/* x86-64 and aarch64 are little-endian, as the stream is. */
		msgpack_pack_bin_body(&b->pk, x, bytes);
		return;
	}
	unsigned char tmp[1024];
	size_t done = 0;
	while (done < total) {
		size_t m = total - done < sizeof tmp / 2 ? total - done : sizeof tmp / 2;
		for (size_t i = 0; i < m; i++) {
			uint16_t h = dtype == VEC_F16 ? f32_to_f16(x[done + i]) : f32_to_bf16(x[done + i]);
			tmp[2 * i] = (unsigned char)h;
			tmp[2 * i + 1] = (unsigned char)(h >> 8);
		}
		msgpack_pack_bin_body(&b->pk, tmp, 2 * m);
		done += m;
	}
}

uint16_t f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffff) > 0x7f800000)
		return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

uint16_t f32_to_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t sign = (u >> 16) & 0x8000;
	uint32_t absu = u & 0x7fffffff;
	if (absu > 0x7f800000)
		return (uint16_t)(sign | 0x7e00);
	if (absu >= 0x477ff000) /* rounds to >= 65520: infinity */
		return (uint16_t)(sign | 0x7c00);
	if (absu < 0x38800000) { /* subnormal half or zero */
		if (absu < 0x33000000)
			return (uint16_t)sign;
		uint32_t mant = (absu & 0x7fffff) | 0x800000;
		int shift = 126 - (int)(absu >> 23); /* 14..24 */
		uint32_t half = mant >> shift;
		uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
		if (rem > mid || (rem == mid && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	uint32_t h = ((absu - 0x38000000) >> 13);
	uint32_t rem = absu & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
		h++;
	return (uint16_t)(sign | h);
}

float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
	if (e == 0) {
		if (m == 0) {
			u = sign;
		} else { /* subnormal: normalise */
			int k = -1;
			do {
				k++;
				m <<= 1;
			} while (!(m & 0x400));
			u = sign | ((uint32_t)(112 - k) << 23) | ((m & 0x3ff) << 13);
		}
	} else if (e == 31) {
		u = sign | 0x7f800000 | (m << 13);
	} else {
		u = sign | ((e + 112) << 23) | (m << 13);
	}
	float f;
	memcpy(&f, &u, 4);
	return f;
}
