#include "core/schema.h"

#include "core/error.h"
#include "core/vec.h"

#include <inttypes.h>
#include <string.h>

const struct schema_kind *schema_find(const char *kind, size_t len)
{
	for (int i = 0; i < schema_nkinds; i++)
		if (strlen(schema_kinds[i].kind) == len && !memcmp(schema_kinds[i].kind, kind, len))
			return &schema_kinds[i];
	return NULL;
}

/* Does o have type `type`? On no, *why says what was wanted. */
static int type_ok(const msgpack_object *o, const char *type, const char **why)
{
	*why = type;
	if (!strcmp(type, "any"))
		return 1;
	if (!strcmp(type, "str"))
		return o->type == MSGPACK_OBJECT_STR;
	if (!strcmp(type, "int"))
		return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
		       o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
	if (!strcmp(type, "num"))
		return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
		       o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
		       o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64;
	if (!strcmp(type, "bool"))
		return o->type == MSGPACK_OBJECT_BOOLEAN;
	if (!strcmp(type, "bin"))
		return o->type == MSGPACK_OBJECT_BIN;
	if (!strcmp(type, "map"))
		return o->type == MSGPACK_OBJECT_MAP;
	if (!strcmp(type, "array"))
		return o->type == MSGPACK_OBJECT_ARRAY;
	if (!strcmp(type, "vec")) {
		struct vec_view v;
		if (mpo_get_vec(o, &v) < 0) {
			*why = eosin_errmsg();
			return 0;
		}
		return 1;
	}
	if (!strncmp(type, "array:", 6)) {
		if (o->type != MSGPACK_OBJECT_ARRAY)
			return 0;
		for (uint32_t i = 0; i < o->via.array.size; i++)
			if (!type_ok(&o->via.array.ptr[i], type + 6, why))
				return 0;
		*why = type;
		return 1;
	}
	if (!strncmp(type, "enum:", 5)) {
		if (o->type != MSGPACK_OBJECT_STR)
			return 0;
		const char *p = type + 5;
		while (*p) {
			const char *bar = strchr(p, '|');
			size_t n = bar ? (size_t)(bar - p) : strlen(p);
			if (n == o->via.str.size && !memcmp(p, o->via.str.ptr, n))
				return 1;
			p += n + (bar != NULL);
		}
		return 0;
	}
	*why = "a known type (schema error)";
	return 0;
}

static const struct schema_field *kind_field(const struct schema_kind *k, const char *name,
                                             size_t len)
{
	for (int i = 0; k && i < k->nfields; i++)
		if (strlen(k->fields[i].name) == len && !memcmp(k->fields[i].name, name, len))
			return &k->fields[i];
	return NULL;
}

int schema_check(const struct record *rec, int strict)
{
	char id[256];
	const struct schema_kind *k = schema_find(rec->kind, rec->kind_len);
	const struct schema_kind *common = schema_find("*", 1);
	if (!k)
		return 1;
	if (rec->version > k->version)
		return eosin_error("record %" PRIu64 " (id '%s'): kind '%s' version %" PRId64
		                   " is newer than this program knows (%d)",
		                   rec->number, record_id(rec, id, sizeof id), k->kind, rec->version,
		                   k->version);
	for (int i = 0; i < k->nfields; i++)
		if (k->fields[i].required && !record_get(rec, k->fields[i].name))
			return eosin_error("record %" PRIu64 " (id '%s'): kind '%s' requires field '%s'",
			                   rec->number, record_id(rec, id, sizeof id), k->kind,
			                   k->fields[i].name);
	const msgpack_object *m = &rec->root;
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *key = &m->via.map.ptr[i].key, *val = &m->via.map.ptr[i].val;
		if (key->type != MSGPACK_OBJECT_STR)
			return eosin_error("record %" PRIu64 " (id '%s'): a key is not a string",
			                   rec->number, record_id(rec, id, sizeof id));
		if (mpo_str_eq(key, "k") || mpo_str_eq(key, "v"))
			continue;
		const struct schema_field *f = kind_field(k, key->via.str.ptr, key->via.str.size);
		if (!f)
			f = kind_field(common, key->via.str.ptr, key->via.str.size);
		if (!f) {
			if (strict)
				return eosin_error("record %" PRIu64 " (id '%s'): field '%.*s' is not in "
				                   "the schema of kind '%s'",
				                   rec->number, record_id(rec, id, sizeof id),
				                   (int)key->via.str.size, key->via.str.ptr, k->kind);
			continue;
		}
		if (val->type == MSGPACK_OBJECT_NIL && !f->required)
			continue;
		const char *why;
		char whybuf[512];
		if (!type_ok(val, f->type, &why)) {
			/* why may be the error buffer itself: copy it first. */
			snprintf(whybuf, sizeof whybuf, "%s", why);
			return eosin_error("record %" PRIu64 " (id '%s'): field '%s' is not %s%s",
			                   rec->number, record_id(rec, id, sizeof id), f->name,
			                   why == f->type ? "of type " : "a valid embedding: ", whybuf);
		}
	}
	return 0;
}
