/*
 * json.h: records to JSON and back (jansson), for eosin-cat and tests.
 *
 * Binary fields become {"$bin": N} (their length) by default, or
 * {"$base64": "..."} with JSON_BIN_BASE64; only the second form converts back.
 * With JSON_VEC_FLOATS, embedding maps (see vec.h) get an extra "values"
 * array of floats (rows of dim) for reading, and their data is summarised.
 * Reading back: integers stay integers, reals become float64, and an
 * object {"$base64": S} becomes bin.
 */
#ifndef EOSIN_JSON_H
#define EOSIN_JSON_H

#include "core/stream.h"

#include <jansson.h>

enum { JSON_BIN_BASE64 = 1, JSON_VEC_FLOATS = 2 };

json_t *mpo_to_json(const msgpack_object *o, int flags);
/* Pack a JSON value into b (a whole record when it is an object and the
 * caller uses recb_from_json). */
int json_pack_value(msgpack_packer *pk, const json_t *j);
/* A JSON object into a record builder; requires "k" and "v". */
int recb_from_json(struct recb *b, const json_t *obj);

size_t base64_encode(const unsigned char *in, size_t n, char *out);
/* -1 on a malformed string; out needs (len/4)*3 bytes. */
long base64_decode(const char *in, size_t len, unsigned char *out);

#endif
