/*
 * schema.h: record kinds and their fields, generated from the files in schemas/.
 *
 * The tables are generated (tools/schemagen.awk), so the validator, the
 * field-name macros in schema_fields.h and the section-5 manuals cannot
 * disagree. Field types:
 *   str int num bool bin map array any vec   (num: int or float; vec: an
 *   embedding map, see vec.h), array:T (every element of type T),
 *   enum:a|b|c (a string, one of those).
 */
#ifndef EOSIN_SCHEMA_H
#define EOSIN_SCHEMA_H

#include "core/stream.h"

struct schema_field {
	const char *name;
	const char *type;
	int required;
	const char *unit;
};

struct schema_kind {
	const char *kind;     /* "*": fields any record may carry */
	int version;
	const char *summary;
	const struct schema_field *fields;
	int nfields;
};

extern const struct schema_kind schema_kinds[];
extern const int schema_nkinds;

const struct schema_kind *schema_find(const char *kind, size_t len);

/* Check a record against its kind's schema and the common fields.
 * 0: valid; 1: unknown kind (nothing checked); -1: invalid, the message
 * names record number, id and field. With strict, fields the schema does
 * not list are errors too. */
int schema_check(const struct record *rec, int strict);

#endif
