#include "core/json.h"

#include "core/error.h"
#include "core/vec.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/*
 * Base64 by twelve bits at a time: b64_pair[v] is the two characters for
 * the 12-bit value v (v >> 6, then v & 63), so three bytes are two look-ups
 * in an 8 KB table and two 2-byte stores, with no branch per byte. The table
 * is spelled out by the preprocessor, 4096 entries from one line.
 */
#define B64_CHAR(x) ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(x)])
#define B64_PAIR(v) {B64_CHAR((v) >> 6), B64_CHAR((v) & 63)}
#define B64_PAIRS4(v) B64_PAIR(v), B64_PAIR((v) + 1), B64_PAIR((v) + 2), B64_PAIR((v) + 3)
#define B64_PAIRS16(v) B64_PAIRS4(v), B64_PAIRS4((v) + 4), B64_PAIRS4((v) + 8), B64_PAIRS4((v) + 12)
#define B64_PAIRS64(v)                                                                      \
	B64_PAIRS16(v), B64_PAIRS16((v) + 16), B64_PAIRS16((v) + 32), B64_PAIRS16((v) + 48)
#define B64_PAIRS256(v)                                                                     \
	B64_PAIRS64(v), B64_PAIRS64((v) + 64), B64_PAIRS64((v) + 128), B64_PAIRS64((v) + 192)
#define B64_PAIRS1024(v)                                                                    \
	B64_PAIRS256(v), B64_PAIRS256((v) + 256), B64_PAIRS256((v) + 512),                  \
	    B64_PAIRS256((v) + 768)
static const char b64_pair[4096][2] = {B64_PAIRS1024(0), B64_PAIRS1024(1024),
                                       B64_PAIRS1024(2048), B64_PAIRS1024(3072)};

size_t base64_encode(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0, i = 0;
	/* six bytes at a time: one 8-byte big-endian load while 8 bytes remain */
	for (; i + 8 <= n; i += 6, o += 8) {
		uint64_t v;
		memcpy(&v, in + i, 8);
		v = __builtin_bswap64(v) >> 16; /* in[i..i+5], in[i] highest */
		memcpy(out + o, b64_pair[v >> 36], 2);
		memcpy(out + o + 2, b64_pair[(v >> 24) & 4095], 2);
		memcpy(out + o + 4, b64_pair[(v >> 12) & 4095], 2);
		memcpy(out + o + 6, b64_pair[v & 4095], 2);
	}
	for (; i + 3 <= n; i += 3, o += 4) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		memcpy(out + o, b64_pair[v >> 12], 2);
		memcpy(out + o + 2, b64_pair[v & 4095], 2);
	}
	if (i < n) { /* one or two bytes left: pad to four characters with '=' */
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
		out[o++] = b64[v >> 18];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = 0;
	return o;
}

static int b64val(int c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

long base64_decode(const char *in, size_t len, unsigned char *out)
{
	if (len % 4)
		return -1;
	long o = 0;
	for (size_t i = 0; i < len; i += 4) {
		int pad = (in[i + 3] == '=') + (in[i + 2] == '=');
		if (pad && i + 4 != len)
			return -1;
		int a = b64val(in[i]), b = b64val(in[i + 1]);
		int c = pad >= 2 ? 0 : b64val(in[i + 2]), d = pad >= 1 ? 0 : b64val(in[i + 3]);
		if (a < 0 || b < 0 || c < 0 || d < 0)
			return -1;
		unsigned v = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)c << 6 | (unsigned)d;
		out[o++] = (unsigned char)(v >> 16);
		if (pad < 2)
			out[o++] = (unsigned char)(v >> 8);
		if (pad < 1)
			out[o++] = (unsigned char)v;
	}
	return o;
}

static json_t *vec_values(const msgpack_object *o)
{
	struct vec_view v;
	if (mpo_get_vec(o, &v) < 0)
		return NULL;
	/* Show NaN/Inf as null rather than refuse: this is for looking. */
	const unsigned char *p = v.data;
	json_t *rows = json_array();
	for (uint32_t r = 0; r < v.n; r++) {
		json_t *row = json_array();
		for (uint32_t c = 0; c < v.dim; c++) {
			size_t i = (size_t)r * v.dim + c;
			float x;
			if (v.dtype == VEC_F32)
				memcpy(&x, p + 4 * i, 4);
			else {
				uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
				x = v.dtype == VEC_F16 ? f16_to_f32(h) : bf16_to_f32(h);
			}
			json_array_append_new(row, isfinite(x) ? json_real(x) : json_null());
		}
		json_array_append_new(rows, row);
	}
	if (v.n == 1) {
		json_t *one = json_incref(json_array_get(rows, 0));
		json_decref(rows);
		return one;
	}
	return rows;
}

json_t *mpo_to_json(const msgpack_object *o, int flags)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: return json_null();
	case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX)
			return json_real((double)o->via.u64);
		return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return isfinite(o->via.f64) ? json_real(o->via.f64) : json_null();
	case MSGPACK_OBJECT_STR: return json_stringn_nocheck(o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_BIN: {
		json_t *obj = json_object();
		if (flags & JSON_BIN_BASE64) {
			char *s = malloc(4 * ((size_t)o->via.bin.size / 3 + 1) + 1);
			if (!s)
				return NULL;
			base64_encode((const unsigned char *)o->via.bin.ptr, o->via.bin.size, s);
			json_object_set_new(obj, "$base64", json_string(s));
			free(s);
		} else {
			json_object_set_new(obj, "$bin", json_integer(o->via.bin.size));
		}
		return obj;
	}
	case MSGPACK_OBJECT_ARRAY: {
		json_t *a = json_array();
		for (uint32_t i = 0; i < o->via.array.size; i++)
			json_array_append_new(a, mpo_to_json(&o->via.array.ptr[i], flags));
		return a;
	}
	case MSGPACK_OBJECT_MAP: {
		json_t *m = json_object();
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;
			char kb[256];
			if (k->type == MSGPACK_OBJECT_STR)
				snprintf(kb, sizeof kb, "%.*s", (int)k->via.str.size, k->via.str.ptr);
			else
				snprintf(kb, sizeof kb, "$key%u", i);
			json_object_set_new(m, kb, mpo_to_json(&o->via.map.ptr[i].val, flags));
		}
		if ((flags & JSON_VEC_FLOATS) && mpo_get(o, "dtype") && mpo_get(o, "data")) {
			json_t *vals = vec_values(o);
			if (vals)
				json_object_set_new(m, "values", vals);
		}
		return m;
	}
	default: {
		json_t *obj = json_object();
		json_object_set_new(obj, "$ext", json_integer(o->via.ext.type));
		return obj;
	}
	}
}

int json_pack_value(msgpack_packer *pk, const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_NULL: return msgpack_pack_nil(pk);
	case JSON_TRUE: return msgpack_pack_true(pk);
	case JSON_FALSE: return msgpack_pack_false(pk);
	case JSON_INTEGER: return msgpack_pack_int64(pk, json_integer_value(j));
	case JSON_REAL: return msgpack_pack_double(pk, json_real_value(j));
	case JSON_STRING: {
		size_t n = json_string_length(j);
		msgpack_pack_str(pk, n);
		return msgpack_pack_str_body(pk, json_string_value(j), n);
	}
	case JSON_ARRAY: {
		size_t n = json_array_size(j);
		msgpack_pack_array(pk, n);
		for (size_t i = 0; i < n; i++)
			if (json_pack_value(pk, json_array_get(j, i)) < 0)
				return -1;
		return 0;
	}
	case JSON_OBJECT: {
		json_t *b = json_object_get(j, "$base64");
		if (b && json_object_size(j) == 1) {
			if (!json_is_string(b))
				return eosin_error("\"$base64\" is not a string");
			size_t n = json_string_length(b);
			unsigned char *buf = malloc(n / 4 * 3 + 3);
			if (!buf)
				return eosin_error("out of memory");
			long m = base64_decode(json_string_value(b), n, buf);
			if (m < 0) {
				free(buf);
				return eosin_error("\"$base64\" is not valid base64");
			}
			msgpack_pack_bin(pk, (size_t)m);
			msgpack_pack_bin_body(pk, buf, (size_t)m);
			free(buf);
			return 0;
		}
		if (json_object_get(j, "$bin") && json_object_size(j) == 1)
			return eosin_error("binary field was summarised as {\"$bin\": N}; "
			                   "make the JSON with eosin-cat --base64 to convert it back");
		msgpack_pack_map(pk, json_object_size(j));
		const char *key;
		json_t *val;
		json_object_foreach((json_t *)j, key, val)
		{
			size_t n = strlen(key);
			msgpack_pack_str(pk, n);
			msgpack_pack_str_body(pk, key, n);
			if (json_pack_value(pk, val) < 0)
				return -1;
		}
		return 0;
	}
	}
	return eosin_error("unknown JSON type");
}

int recb_from_json(struct recb *b, const json_t *obj)
{
	if (!json_is_object(obj))
		return eosin_error("line is not a JSON object");
	json_t *k = json_object_get(obj, "k"), *v = json_object_get(obj, "v");
	if (!json_is_string(k) || json_string_length(k) == 0)
		return eosin_error("field 'k' missing or not a string");
	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		return eosin_error("field 'v' missing or not a positive integer");
	recb_begin(b, json_string_value(k), (int)json_integer_value(v));
	const char *key;
	json_t *val;
	json_object_foreach((json_t *)obj, key, val)
	{
		if (!strcmp(key, "k") || !strcmp(key, "v"))
			continue;
		recb_key(b, key);
		if (json_pack_value(&b->pk, val) < 0)
			return eosin_error_prefix("field '%s'", key);
	}
	return 0;
}
