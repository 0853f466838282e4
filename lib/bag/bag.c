/*
 * bag.c: grouping of embedded tiles into bag records, spill and merge.
 * See bag.h for the contract; eosin-bag(1) for the user's view.
 *
 * A patch or doc keeps a private copy of its record's raw bytes; every
 * string and embedding it needs is a span (offset, length) into that copy,
 * so nothing is decoded twice and a spill writes the bytes as they came.
 *
 * Spill frame (native byte order, private to one process):
 *   u64 number   record number in its input; FRAME_COUNT marks a counter
 *   u32 input    index into the bagger's input names
 *   u32 len      payload bytes
 *   payload      the record (or, for a counter: u64 count then the key)
 */
#include "bag/bag.h"

#include "core/error.h"
#include "schema_fields.h"
#include "core/rand.h"
#include "core/vec.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPAN_NONE UINT32_MAX
#define FRAME_COUNT UINT64_MAX
#define DOC_KIND "doc"

struct span {
	uint32_t off, len; /* into the owner's raw bytes; off == SPAN_NONE: absent */
};

/* One embedding field of a record, as read (bit-exact). */
struct emb {
	int have;
	enum vec_dtype dtype;
	uint32_t dim, n;
	uint32_t data; /* offset of n*dim elements in raw */
	struct span model, hash;
};

struct patch {
	char *raw;
	size_t len;
	uint64_t number;
	uint32_t input;
	struct span id, slide, parent, part;
	double mag;
	int64_t x, y, extent, depth;
	uint64_t sample_key;
	struct emb img, txt, kw;
	uint32_t nkeywords;
	struct span *keywords;
};

struct doc {
	char *raw;
	size_t len;
	uint64_t number;
	uint32_t input;
	struct span id, part, caption, label, split;
	struct emb txt, sent;
	uint32_t nsentences;
	struct span *sentences;
	int has_pos;     /* sent_pos given */
	double *sent_xy; /* nsentences x 2, NAN where a sentence has no place */
};

/* What the first record of a group fixed for an embedding field. */
struct emb_ref {
	int set;
	enum vec_dtype dtype;
	uint32_t dim;
	char *model, *hash; /* NULL: absent */
};

struct group {
	char *key;
	struct patch **patches; /* slide, region: a max-heap on (sample_key, id) */
	size_t npatches, cap;
	struct doc **docs;
	size_t ndocs, doccap;
	uint64_t seen; /* valid patches added (before sampling) */
	size_t bytes;
	struct emb_ref img, txt, kw;
	struct group *prev, *next; /* open list, oldest first */
};

/* String-keyed hash map with chaining; values are opaque. */
struct map_node {
	char *key;
	void *val;
	struct map_node *next;
};
struct strmap {
	struct map_node **b;
	size_t cap, n;
};

struct bagger {
	struct bag_options o;
	struct bag_sink sink;
	struct bag_stats st;
	struct strmap open; /* key -> group */
	struct group *head, *tail;
	size_t nopen, held;
	struct strmap written; /* keys whose bag is out */
	struct strmap spilled; /* keys routed to spill files */
	struct strmap closed;  /* grouped: slides already finished */
	char *cur_slide;
	FILE *part[BAG_PARTITIONS];
	int in_partition;
	char **inputs; /* input names for messages */
	uint32_t ninputs, cur_input;
	float *scratch;
	size_t scratch_cap;
	struct recb b;
};

/* ---- small helpers ---- */

uint64_t bag_hash(const char *s, size_t n, uint64_t seed)
{
	/* FNV-1a, then a splitmix64 finaliser so that nearby seeds and ids
	 * give unrelated values. */
	uint64_t h = fnv1a64(s, n, FNV1A64_INIT ^ seed);
	return splitmix64(&h);
}

uint32_t bag_grid_side(uint32_t nregions)
{
	uint32_t g = 1;
	while ((uint64_t)g * g < nregions)
		g++;
	return g;
}

uint32_t bag_grid_cell(double px, double py, double x0, double y0, double x1, double y1,
                       uint32_t side)
{
	double w = x1 - x0 > 0 ? x1 - x0 : 1, h = y1 - y0 > 0 ? y1 - y0 : 1;
	double cx = floor((px - x0) * side / w), cy = floor((py - y0) * side / h);
	uint32_t col = cx < 0 ? 0 : cx >= side ? side - 1 : (uint32_t)cx;
	uint32_t row = cy < 0 ? 0 : cy >= side ? side - 1 : (uint32_t)cy;
	return row * side + col;
}

static const char *sp(const char *raw, struct span s)
{
	return raw + s.off;
}

static int span_eq(const char *ra, struct span a, const char *rb, struct span b)
{
	if (a.off == SPAN_NONE || b.off == SPAN_NONE)
		return a.off == b.off;
	return a.len == b.len && memcmp(ra + a.off, rb + b.off, a.len) == 0;
}

static int span_cmp(const char *ra, struct span a, const char *rb, struct span b)
{
	size_t n = a.len < b.len ? a.len : b.len;
	int c = memcmp(ra + a.off, rb + b.off, n);
	return c ? c : (a.len > b.len) - (a.len < b.len);
}

static char *span_dup(const char *raw, struct span s)
{
	char *c = s.off == SPAN_NONE ? NULL : strndup(raw + s.off, s.len);
	return c;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		eosin_error("out of memory");
	return q;
}

static int map_init(struct strmap *m)
{
	m->cap = 64;
	m->n = 0;
	m->b = calloc(m->cap, sizeof *m->b);
	return m->b ? 0 : eosin_error("out of memory");
}

static void map_release(struct strmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		for (struct map_node *x = m->b[i], *nx; x; x = nx) {
			nx = x->next;
			free(x->key);
			free(x);
		}
	free(m->b);
	memset(m, 0, sizeof *m);
}

static struct map_node **map_slot(struct strmap *m, const char *key)
{
	struct map_node **x = &m->b[bag_hash(key, strlen(key), 0) & (m->cap - 1)];
	while (*x && strcmp((*x)->key, key))
		x = &(*x)->next;
	return x;
}

static void *map_get(struct strmap *m, const char *key)
{
	struct map_node *x = *map_slot(m, key);
	return x ? x->val : NULL;
}

static int map_has(struct strmap *m, const char *key)
{
	return *map_slot(m, key) != NULL;
}

/* Insert or replace; val must not be NULL for map_get to see it. */
static int map_put(struct strmap *m, const char *key, void *val)
{
	struct map_node **x = map_slot(m, key);
	if (*x) {
		(*x)->val = val;
		return 0;
	}
	if (m->n + 1 > 2 * m->cap) {
		size_t ncap = m->cap * 4;
		struct map_node **nb = calloc(ncap, sizeof *nb);
		if (!nb)
			return eosin_error("out of memory");
		for (size_t i = 0; i < m->cap; i++)
			for (struct map_node *y = m->b[i], *ny; y; y = ny) {
				ny = y->next;
				size_t h = bag_hash(y->key, strlen(y->key), 0) & (ncap - 1);
				y->next = nb[h];
				nb[h] = y;
			}
		free(m->b);
		m->b = nb;
		m->cap = ncap;
		x = map_slot(m, key);
	}
	struct map_node *node = malloc(sizeof *node);
	char *k = strdup(key);
	if (!node || !k) {
		free(node);
		free(k);
		return eosin_error("out of memory");
	}
	node->key = k;
	node->val = val;
	node->next = NULL;
	*x = node;
	m->n++;
	return 0;
}

static void map_del(struct strmap *m, const char *key)
{
	struct map_node **x = map_slot(m, key), *d = *x;
	if (!d)
		return;
	*x = d->next;
	free(d->key);
	free(d);
	m->n--;
}

/* ---- parsing records into patches and docs ---- */

static const char *input_name(const struct bagger *g, uint32_t input)
{
	return input < g->ninputs ? g->inputs[input] : "<stdin>";
}

/* "INPUT: record N (id 'X'): " in front of the current message. */
static int where_error(const struct bagger *g, uint32_t input, const struct record *rec)
{
	char id[256];
	return eosin_error_prefix("%s: record %" PRIu64 " (id '%s')", input_name(g, input),
	                          rec->number, record_id(rec, id, sizeof id));
}

static int field_missing(const char *field)
{
	return eosin_error("field '%s' is missing", field);
}

/* A field error already naming record and id (from stream.c/vec.c) gets
 * only the input name in front. */
static int lib_error(const struct bagger *g, uint32_t input)
{
	return eosin_error_prefix("%s", input_name(g, input));
}

static int get_span(const struct record *rec, const char *key, struct span *s, int required)
{
	const char *p;
	size_t n;
	int r = record_get_str(rec, key, &p, &n);
	if (r < 0)
		return -1;
	if (r == 1) {
		s->off = SPAN_NONE;
		s->len = 0;
		return required ? 1 : 0;
	}
	s->off = (uint32_t)(p - rec->raw);
	s->len = (uint32_t)n;
	return 0;
}

/* Parse embedding `key`; refuse NaN and Inf. 1 if absent. */
static int get_emb(struct bagger *g, const struct record *rec, const char *key, struct emb *e)
{
	struct vec_view v;
	int r = record_get_vec(rec, key, &v);
	memset(e, 0, sizeof *e);
	e->model.off = e->hash.off = SPAN_NONE;
	if (r)
		return r;
	size_t total = (size_t)v.n * v.dim;
	if (total > g->scratch_cap) {
		float *s = xrealloc(g->scratch, total * sizeof *s);
		if (!s)
			return -1;
		g->scratch = s;
		g->scratch_cap = total;
	}
	if (vec_to_f32(&v, g->scratch) < 0) {
		char id[256];
		return eosin_error_prefix("record %" PRIu64 " (id '%s'): field '%s'", rec->number,
		                          record_id(rec, id, sizeof id), key);
	}
	e->have = 1;
	e->dtype = v.dtype;
	e->dim = v.dim;
	e->n = v.n;
	e->data = (uint32_t)((const char *)v.data - rec->raw);
	if (v.model) {
		e->model.off = (uint32_t)(v.model - rec->raw);
		e->model.len = (uint32_t)v.model_len;
	}
	if (v.hash) {
		e->hash.off = (uint32_t)(v.hash - rec->raw);
		e->hash.len = (uint32_t)v.hash_len;
	}
	return 0;
}

/* An array of strings as spans; 1 if absent. */
static int get_str_array(const struct record *rec, const char *key, struct span **out, uint32_t *n)
{
	const msgpack_object *o = record_get(rec, key);
	*out = NULL;
	*n = 0;
	if (!o)
		return 1;
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return eosin_error("field '%s' is not an array of strings", key);
	uint32_t k = o->via.array.size;
	struct span *s = calloc(k ? k : 1, sizeof *s);
	if (!s)
		return eosin_error("out of memory");
	for (uint32_t i = 0; i < k; i++) {
		const msgpack_object *e = &o->via.array.ptr[i];
		if (e->type != MSGPACK_OBJECT_STR) {
			free(s);
			return eosin_error("field '%s' element %" PRIu32 " is not a string", key,
			                   i);
		}
		s[i].off = (uint32_t)(e->via.str.ptr - rec->raw);
		s[i].len = e->via.str.size;
	}
	*out = s;
	*n = k;
	return 0;
}

/* 0 ok; 1 missing (message says so); -1 wrong type (message names record). */
static int get_req_int(const struct record *rec, const char *key, int64_t *v)
{
	int r = record_get_int(rec, key, v);
	if (r == 1)
		field_missing(key);
	return r;
}

static void patch_free(struct patch *p)
{
	if (!p)
		return;
	free(p->raw);
	free(p->keywords);
	free(p);
}

static void doc_free(struct doc *d)
{
	if (!d)
		return;
	free(d->raw);
	free(d->sentences);
	free(d->sent_xy);
	free(d);
}

/* How a part of a tile parsed: well, a bad field (the message says which),
 * or an error of the library's (its message). */
enum { PARSE_OK = 0, PARSE_FIELD = 1, PARSE_LIB = -1 };

/* id, slide, root (required in trees), parent and part; a missing required
 * one is named. */
static int patch_spans(const struct record *rec, struct patch *p, struct span *slide,
                       struct span *root, int quad)
{
	int r;
	/* Messages from record_get_* already name record and id. */
	if ((r = get_span(rec, F_TILE_ID, &p->id, 1)) ||
	    (r = get_span(rec, F_TILE_SLIDE, slide, 1)) ||
	    (r = get_span(rec, F_TILE_ROOT, root, quad)) ||
	    (r = get_span(rec, F_TILE_PARENT, &p->parent, 0)) ||
	    (r = get_span(rec, F_COMMON_PART, &p->part, 0))) {
		if (r != 1)
			return PARSE_LIB;
		field_missing(p->id.off == SPAN_NONE    ? F_TILE_ID
		              : slide->off == SPAN_NONE ? F_TILE_SLIDE
		                                        : F_TILE_ROOT);
		return PARSE_FIELD;
	}
	return PARSE_OK;
}

/* mag, x, y and a positive extent. */
static int patch_position(const struct record *rec, struct patch *p)
{
	double d;
	int r;
	if ((r = record_get_num(rec, F_TILE_MAG, &d)) != 0) {
		if (r != 1)
			return PARSE_LIB;
		field_missing(F_TILE_MAG);
		return PARSE_FIELD;
	}
	p->mag = d;
	if ((r = get_req_int(rec, F_TILE_X, &p->x)) || (r = get_req_int(rec, F_TILE_Y, &p->y)) ||
	    (r = get_req_int(rec, F_TILE_EXTENT, &p->extent)))
		return r < 0 ? PARSE_LIB : PARSE_FIELD;
	if (p->extent <= 0) {
		eosin_error("field '%s' is %" PRId64 ", not positive", F_TILE_EXTENT, p->extent);
		return PARSE_FIELD;
	}
	return PARSE_OK;
}

/* A quadtree tile's depth, with its root and parent consistent with it. */
static int patch_tree(const struct record *rec, struct patch *p, struct span root)
{
	int r;
	if ((r = get_req_int(rec, F_TILE_DEPTH, &p->depth)))
		return r < 0 ? PARSE_LIB : PARSE_FIELD;
	if (p->depth < 0 || p->depth > BAG_TREE_DEPTH) {
		eosin_error("field '%s' is %" PRId64 ", not 0..%d", F_TILE_DEPTH, p->depth,
		            BAG_TREE_DEPTH);
		return PARSE_FIELD;
	}
	int self = span_eq(rec->raw, root, rec->raw, p->id);
	if (p->depth == 0 && !self) {
		eosin_error("field '%s' is not the tile's own id at depth 0", F_TILE_ROOT);
		return PARSE_FIELD;
	}
	if (p->depth > 0 && self) {
		eosin_error("field '%s' is the tile's own id at depth %" PRId64, F_TILE_ROOT,
		            p->depth);
		return PARSE_FIELD;
	}
	if (p->depth > 0 && p->parent.off == SPAN_NONE) {
		field_missing(F_TILE_PARENT);
		return PARSE_FIELD;
	}
	return PARSE_OK;
}

/* The text side of a tile or doc: txt_emb (one row, if there), a list of
 * strings (keywords, sentences) and their embeddings (a row each, if
 * there); what names the strings in the message. */
static int text_fields(struct bagger *g, const struct record *rec, struct emb *txt,
                       const char *rows_key, struct emb *rows, const char *list_key,
                       struct span **list, uint32_t *nlist, const char *what)
{
	if (get_emb(g, rec, F_COMMON_TXT_EMB, txt) < 0 || get_emb(g, rec, rows_key, rows) < 0)
		return PARSE_LIB;
	if (txt->have && txt->n != 1) {
		eosin_error("field '%s' has %" PRIu32 " rows, want 1", F_COMMON_TXT_EMB, txt->n);
		return PARSE_FIELD;
	}
	if (get_str_array(rec, list_key, list, nlist) < 0)
		return PARSE_FIELD;
	if (rows->have && rows->n != *nlist) {
		eosin_error("field '%s' has %" PRIu32 " rows for %" PRIu32 " %s", rows_key, rows->n,
		            *nlist, what);
		return PARSE_FIELD;
	}
	return PARSE_OK;
}

/* img_emb, one row; in trees also txt_emb (one row), keywords and kw_emb
 * (a row per keyword) where present. */
static int patch_embeddings(struct bagger *g, const struct record *rec, struct patch *p, int quad)
{
	int r = get_emb(g, rec, F_COMMON_IMG_EMB, &p->img);
	if (r == 1) {
		field_missing(F_COMMON_IMG_EMB);
		return PARSE_FIELD;
	}
	if (r < 0)
		return PARSE_LIB;
	if (p->img.n != 1) {
		eosin_error("field '%s' has %" PRIu32 " rows, want 1", F_COMMON_IMG_EMB, p->img.n);
		return PARSE_FIELD;
	}
	if (!quad)
		return PARSE_OK;
	return text_fields(g, rec, &p->txt, F_COMMON_KW_EMB, &p->kw, F_COMMON_KEYWORDS,
	                   &p->keywords, &p->nkeywords, "keywords");
}

/* Parse a tile into a patch that owns a copy of the record. On a bad
 * field: NULL with the message naming input, record, id and field. */
static struct patch *patch_parse(struct bagger *g, const struct record *rec, struct span *key,
                                 struct span *slide)
{
	struct patch *p = calloc(1, sizeof *p);
	if (!p) {
		eosin_error("out of memory");
		return NULL;
	}
	p->number = rec->number;
	p->input = g->cur_input;
	int quad = g->o.method == BAG_PARENT;
	struct span root;
	int r = patch_spans(rec, p, slide, &root, quad);
	if (r == PARSE_OK)
		r = patch_position(rec, p);
	if (r == PARSE_OK && quad)
		r = patch_tree(rec, p, root);
	if (r == PARSE_OK) {
		*key = quad ? root : *slide;
		r = patch_embeddings(g, rec, p, quad);
	}
	if (r == PARSE_FIELD)
		where_error(g, g->cur_input, rec);
	else if (r == PARSE_LIB)
		lib_error(g, g->cur_input);
	if (r == PARSE_OK) {
		p->slide = *slide;
		p->sample_key = bag_hash(sp(rec->raw, p->id), p->id.len,
		                         g->o.seed ^ bag_hash(sp(rec->raw, *slide), slide->len, 0));
		if ((p->raw = malloc(rec->len))) {
			memcpy(p->raw, rec->raw, rec->len);
			p->len = rec->len;
			return p;
		}
		eosin_error("out of memory");
	}
	patch_free(p);
	return NULL;
}

/* sent_pos: one entry per sentence, nil or [x, y] (level-0 px). */
static int get_sent_pos(struct doc *d, const struct record *rec)
{
	const msgpack_object *o = record_get(rec, "sent_pos");
	if (!o)
		return 0;
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != d->nsentences)
		return eosin_error("field 'sent_pos' is not an array of %" PRIu32 " entries",
		                   d->nsentences);
	d->sent_xy = malloc(2 * sizeof(double) * (d->nsentences ? d->nsentences : 1));
	if (!d->sent_xy)
		return eosin_error("out of memory");
	d->has_pos = 1;
	for (uint32_t i = 0; i < d->nsentences; i++) {
		const msgpack_object *e = &o->via.array.ptr[i];
		d->sent_xy[2 * i] = d->sent_xy[2 * i + 1] = NAN;
		if (e->type == MSGPACK_OBJECT_NIL)
			continue;
		if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2)
			return eosin_error(
			    "field 'sent_pos' element %" PRIu32 " is not nil or [x, y]", i);
		for (int k = 0; k < 2; k++) {
			const msgpack_object *c = &e->via.array.ptr[k];
			double v;
			if (c->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
				v = (double)c->via.u64;
			else if (c->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
				v = (double)c->via.i64;
			else if (c->type == MSGPACK_OBJECT_FLOAT32 ||
			         c->type == MSGPACK_OBJECT_FLOAT64)
				v = c->via.f64;
			else
				return eosin_error(
				    "field 'sent_pos' element %" PRIu32 " is not nil or [x, y]", i);
			if (!isfinite(v))
				return eosin_error(
				    "field 'sent_pos' element %" PRIu32 " is not finite", i);
			d->sent_xy[2 * i + k] = v;
		}
	}
	return 0;
}

static struct doc *doc_parse(struct bagger *g, const struct record *rec, struct span *slide)
{
	struct doc *d = calloc(1, sizeof *d);
	if (!d) {
		eosin_error("out of memory");
		return NULL;
	}
	d->number = rec->number;
	d->input = g->cur_input;
	int r;
	if ((r = get_span(rec, F_TILE_SLIDE, slide, 1)) != 0) {
		if (r == 1) {
			field_missing(F_TILE_SLIDE);
			goto bad_field;
		}
		goto bad_lib;
	}
	if (get_span(rec, F_TILE_ID, &d->id, 0) || get_span(rec, F_COMMON_PART, &d->part, 0) ||
	    get_span(rec, F_COMMON_CAPTION, &d->caption, 0) ||
	    get_span(rec, F_COMMON_LABEL, &d->label, 0) ||
	    get_span(rec, F_COMMON_SPLIT, &d->split, 0))
		goto bad_lib;
	switch (text_fields(g, rec, &d->txt, F_COMMON_SENT_EMB, &d->sent, F_COMMON_SENTENCES,
	                    &d->sentences, &d->nsentences, "sentences")) {
	case PARSE_LIB: goto bad_lib;
	case PARSE_FIELD: goto bad_field;
	}
	if (get_sent_pos(d, rec) < 0)
		goto bad_field;
	d->raw = malloc(rec->len);
	if (!d->raw) {
		eosin_error("out of memory");
		goto fail;
	}
	memcpy(d->raw, rec->raw, rec->len);
	d->len = rec->len;
	return d;
bad_field:
	where_error(g, g->cur_input, rec);
	goto fail;
bad_lib:
	lib_error(g, g->cur_input);
fail:
	doc_free(d);
	return NULL;
}

/* ---- groups ---- */

static void emb_ref_release(struct emb_ref *r)
{
	free(r->model);
	free(r->hash);
	memset(r, 0, sizeof *r);
}

static void group_free(struct group *gr)
{
	if (!gr)
		return;
	for (size_t i = 0; i < gr->npatches; i++)
		patch_free(gr->patches[i]);
	for (size_t i = 0; i < gr->ndocs; i++)
		doc_free(gr->docs[i]);
	free(gr->patches);
	free(gr->docs);
	emb_ref_release(&gr->img);
	emb_ref_release(&gr->txt);
	emb_ref_release(&gr->kw);
	free(gr->key);
	free(gr);
}

static void open_unlink(struct bagger *g, struct group *gr)
{
	if (gr->prev)
		gr->prev->next = gr->next;
	else
		g->head = gr->next;
	if (gr->next)
		gr->next->prev = gr->prev;
	else
		g->tail = gr->prev;
	gr->prev = gr->next = NULL;
	map_del(&g->open, gr->key);
	g->nopen--;
	g->held -= gr->bytes;
}

static struct group *group_get(struct bagger *g, const char *key)
{
	struct group *gr = map_get(&g->open, key);
	if (gr)
		return gr;
	gr = calloc(1, sizeof *gr);
	if (!gr || !(gr->key = strdup(key))) {
		free(gr);
		eosin_error("out of memory");
		return NULL;
	}
	if (map_put(&g->open, key, gr) < 0) {
		group_free(gr);
		return NULL;
	}
	gr->prev = g->tail;
	if (g->tail)
		g->tail->next = gr;
	else
		g->head = gr;
	g->tail = gr;
	g->nopen++;
	return gr;
}

/* Does embedding e of patch p agree with what the group fixed? Sets the
 * reference from the first patch that has the field. */
static int emb_check(struct emb_ref *ref, const char *raw, const struct emb *e, const char *field,
                     const char *key)
{
	if (!e->have)
		return 0;
	if (!ref->set) {
		ref->set = 1;
		ref->dtype = e->dtype;
		ref->dim = e->dim;
		ref->model = span_dup(raw, e->model);
		ref->hash = span_dup(raw, e->hash);
		if ((e->model.off != SPAN_NONE && !ref->model) ||
		    (e->hash.off != SPAN_NONE && !ref->hash))
			return eosin_error("out of memory");
		return 0;
	}
	if (e->dim != ref->dim)
		return eosin_error("field '%s': dim %" PRIu32 " differs from %" PRIu32
		                   " in the rest of bag '%s'",
		                   field, e->dim, ref->dim, key);
	if (e->dtype != ref->dtype)
		return eosin_error("field '%s': dtype %s differs from %s in the rest of bag '%s'",
		                   field, vec_dtype_name(e->dtype), vec_dtype_name(ref->dtype),
		                   key);
	struct {
		const char *what, *want;
		struct span got;
	} mh[2] = {{"model", ref->model, e->model}, {"hash", ref->hash, e->hash}};
	for (int i = 0; i < 2; i++) {
		int same = mh[i].got.off == SPAN_NONE
		               ? mh[i].want == NULL
		               : mh[i].want && strlen(mh[i].want) == mh[i].got.len &&
		                     !memcmp(mh[i].want, raw + mh[i].got.off, mh[i].got.len);
		if (!same)
			return eosin_error(
			    "field '%s': %s '%.*s' differs from '%s' in the rest of bag '%s'",
			    field, mh[i].what, mh[i].got.off == SPAN_NONE ? 0 : (int)mh[i].got.len,
			    mh[i].got.off == SPAN_NONE ? "" : raw + mh[i].got.off,
			    mh[i].want ? mh[i].want : "", key);
	}
	return 0;
}

static int reject_raw(struct bagger *g, const char *raw, size_t len, uint64_t number)
{
	if (!g->sink.reject || g->sink.reject(g->sink.ctx, raw, len, number, eosin_errmsg()) < 0)
		return -1;
	g->st.rejected++;
	return 0;
}

/* (sample_key, id) order for the sampling heap: larger is dropped first. */
static int sample_cmp(const struct patch *a, const struct patch *b)
{
	if (a->sample_key != b->sample_key)
		return a->sample_key < b->sample_key ? -1 : 1;
	return span_cmp(a->raw, a->id, b->raw, b->id);
}

static void heap_down(struct patch **h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && sample_cmp(h[l], h[m]) > 0)
			m = l;
		if (r < n && sample_cmp(h[r], h[m]) > 0)
			m = r;
		if (m == i)
			return;
		struct patch *t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void heap_up(struct patch **h, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (sample_cmp(h[i], h[p]) <= 0)
			return;
		struct patch *t = h[i];
		h[i] = h[p];
		h[p] = t;
		i = p;
	}
}

/* Put p into gr (taking it), sampling down to max_patches where the
 * method asks for it. */
static int group_take_patch(struct bagger *g, struct group *gr, struct patch *p)
{
	gr->seen++;
	int sampled = g->o.method != BAG_PARENT;
	if (sampled && gr->npatches >= g->o.max_patches) {
		if (sample_cmp(p, gr->patches[0]) >= 0) {
			patch_free(p);
			return 0;
		}
		gr->bytes -= gr->patches[0]->len;
		g->held -= gr->patches[0]->len;
		patch_free(gr->patches[0]);
		gr->patches[0] = p;
		heap_down(gr->patches, gr->npatches, 0);
	} else {
		if (gr->npatches == gr->cap) {
			size_t ncap = gr->cap ? 2 * gr->cap : 16;
			struct patch **np = xrealloc(gr->patches, ncap * sizeof *np);
			if (!np) {
				patch_free(p);
				return -1;
			}
			gr->patches = np;
			gr->cap = ncap;
		}
		gr->patches[gr->npatches++] = p;
		if (sampled)
			heap_up(gr->patches, gr->npatches - 1);
	}
	gr->bytes += p->len;
	g->held += p->len;
	return 0;
}

/* ---- spilling ---- */

static int frame_write(struct bagger *g, const char *key, uint64_t number, uint32_t input,
                       const void *payload, size_t len)
{
	size_t pidx = bag_hash(key, strlen(key), 0x5b1a) % BAG_PARTITIONS;
	if (!g->part[pidx]) {
		const char *dir = g->o.tmpdir ? g->o.tmpdir : getenv("TMPDIR");
		if (!dir || !*dir)
			dir = "/tmp";
		char path[4096];
		snprintf(path, sizeof path, "%s/eosin-bag.XXXXXX", dir);
		int fd = mkstemp(path);
		if (fd < 0)
			return eosin_error("cannot create a spill file in '%s': %s", dir,
			                   strerror(errno));
		unlink(path);
		g->part[pidx] = fdopen(fd, "w+");
		if (!g->part[pidx]) {
			close(fd);
			return eosin_error("cannot open a spill file in '%s': %s", dir,
			                   strerror(errno));
		}
	}
	FILE *f = g->part[pidx];
	uint32_t l32 = (uint32_t)len;
	if (fwrite(&number, sizeof number, 1, f) != 1 || fwrite(&input, sizeof input, 1, f) != 1 ||
	    fwrite(&l32, sizeof l32, 1, f) != 1 || (len && fwrite(payload, len, 1, f) != 1))
		return eosin_error("write error on a spill file: %s", strerror(errno));
	return 0;
}

static int spill_group(struct bagger *g, struct group *gr)
{
	open_unlink(g, gr);
	int ret = map_put(&g->spilled, gr->key, g); /* the value only marks presence */
	for (size_t i = 0; ret == 0 && i < gr->npatches; i++) {
		struct patch *p = gr->patches[i];
		ret = frame_write(g, gr->key, p->number, p->input, p->raw, p->len);
		g->st.spilled_records++;
	}
	for (size_t i = 0; ret == 0 && i < gr->ndocs; i++) {
		struct doc *d = gr->docs[i];
		ret = frame_write(g, gr->key, d->number, d->input, d->raw, d->len);
		g->st.spilled_records++;
	}
	uint64_t dropped = gr->seen - gr->npatches;
	if (ret == 0 && dropped > 0) {
		/* Patches the sample already left out still count in sampled_from. */
		size_t kl = strlen(gr->key);
		char *buf = malloc(8 + kl);
		if (!buf)
			ret = eosin_error("out of memory");
		else {
			memcpy(buf, &dropped, 8);
			memcpy(buf + 8, gr->key, kl);
			ret = frame_write(g, gr->key, FRAME_COUNT, 0, buf, 8 + kl);
			free(buf);
		}
	}
	g->st.spilled_groups++;
	group_free(gr);
	return ret;
}

static int enforce_limits(struct bagger *g)
{
	if (g->in_partition)
		return 0;
	while (g->head && (g->held > g->o.memory_limit || g->nopen > g->o.max_open))
		if (spill_group(g, g->head) < 0)
			return -1;
	return 0;
}

/* ---- building and writing bags ---- */

static void pack_str_span(msgpack_packer *pk, const char *raw, struct span s)
{
	msgpack_pack_str_with_body(pk, raw + s.off, s.len);
}

/* An embedding map of rows taken from the records, bit-exact. row(i) gives
 * the record raw bytes and emb of row i; each contributes e->n rows, or only
 * row `sub` when sub >= 0. */
struct emb_row {
	const char *raw;
	const struct emb *e;
	int64_t sub; /* -1: all of e's rows */
};

static void pack_emb(struct recb *b, const char *key, const struct emb_row *rows, size_t nrows)
{
	if (nrows == 0)
		return;
	const struct emb *e0 = rows[0].e;
	const char *r0 = rows[0].raw;
	size_t es = vec_dtype_size(e0->dtype), rowbytes = es * e0->dim;
	uint64_t n = 0;
	for (size_t i = 0; i < nrows; i++)
		n += rows[i].sub >= 0 ? 1 : rows[i].e->n;
	int has_model = e0->model.off != SPAN_NONE, has_hash = e0->hash.off != SPAN_NONE;
	recb_key(b, key);
	msgpack_pack_map(&b->pk, 4 + has_model + has_hash);
	msgpack_pack_str_with_body(&b->pk, "dtype", 5);
	const char *dn = vec_dtype_name(e0->dtype);
	msgpack_pack_str_with_body(&b->pk, dn, strlen(dn));
	msgpack_pack_str_with_body(&b->pk, "dim", 3);
	msgpack_pack_uint32(&b->pk, e0->dim);
	msgpack_pack_str_with_body(&b->pk, "n", 1);
	msgpack_pack_uint64(&b->pk, n);
	if (has_model) {
		msgpack_pack_str_with_body(&b->pk, "model", 5);
		pack_str_span(&b->pk, r0, e0->model);
	}
	if (has_hash) {
		msgpack_pack_str_with_body(&b->pk, "hash", 4);
		pack_str_span(&b->pk, r0, e0->hash);
	}
	msgpack_pack_str_with_body(&b->pk, "data", 4);
	msgpack_pack_bin(&b->pk, n * rowbytes);
	for (size_t i = 0; i < nrows; i++) {
		const struct emb *e = rows[i].e;
		const char *d = rows[i].raw + e->data;
		if (rows[i].sub >= 0)
			msgpack_pack_bin_body(&b->pk, d + (size_t)rows[i].sub * rowbytes, rowbytes);
		else
			msgpack_pack_bin_body(&b->pk, d, (size_t)e->n * rowbytes);
	}
}

/* The columns every method writes: ids, img_emb, pos, tile_mag. */
static int pack_patch_columns(struct bagger *g, struct patch **rows, size_t n)
{
	struct recb *b = &g->b;
	if (n == 0)
		return eosin_error("internal: an empty bag");
	struct emb_row *er = malloc(n * sizeof *er);
	float *pos = malloc(2 * n * sizeof *pos);
	if (!er || !pos) {
		free(er);
		free(pos);
		return eosin_error("out of memory");
	}
	recb_int(b, F_BAG_N, (int64_t)n);
	for (size_t i = 0; i < n; i++) {
		er[i] = (struct emb_row){rows[i]->raw, &rows[i]->img, -1};
		pos[2 * i] = (float)rows[i]->x;
		pos[2 * i + 1] = (float)rows[i]->y;
	}
	pack_emb(b, F_BAG_IMG_EMB, er, n);
	recb_key(b, F_BAG_TILE_IDS);
	msgpack_pack_array(&b->pk, n);
	for (size_t i = 0; i < n; i++)
		pack_str_span(&b->pk, rows[i]->raw, rows[i]->id);
	/* pos: n rows of (x, y), f32 little-endian (exact below 2^24 px). */
	recb_key(b, F_BAG_POS);
	msgpack_pack_map(&b->pk, 4);
	msgpack_pack_str_with_body(&b->pk, "dtype", 5);
	msgpack_pack_str_with_body(&b->pk, "f32", 3);
	msgpack_pack_str_with_body(&b->pk, "dim", 3);
	msgpack_pack_uint32(&b->pk, 2);
	msgpack_pack_str_with_body(&b->pk, "n", 1);
	msgpack_pack_uint64(&b->pk, n);
	msgpack_pack_str_with_body(&b->pk, "data", 4);
	msgpack_pack_bin_with_body(&b->pk, pos, 2 * n * sizeof *pos);
	recb_key(b, F_BAG_TILE_MAG);
	msgpack_pack_array(&b->pk, n);
	for (size_t i = 0; i < n; i++)
		msgpack_pack_double(&b->pk, rows[i]->mag);
	free(er);
	free(pos);
	return 0;
}

static int emit(struct bagger *g)
{
	int ret = g->sink.emit(g->sink.ctx, &g->b);
	if (ret == 0)
		g->st.bags++;
	return ret;
}

static int id_cmp(const void *a, const void *b)
{
	const struct patch *p = *(struct patch *const *)a, *q = *(struct patch *const *)b;
	int c = span_cmp(p->raw, p->id, q->raw, q->id);
	if (c)
		return c;
	return (p->number > q->number) - (p->number < q->number);
}

/* Reject patches whose id repeats an earlier one (by id, then record number);
 * compacts the array. */
static int drop_duplicates(struct bagger *g, struct group *gr)
{
	qsort(gr->patches, gr->npatches, sizeof *gr->patches, id_cmp);
	size_t w = 0;
	for (size_t i = 0; i < gr->npatches; i++) {
		struct patch *p = gr->patches[i];
		if (w > 0 &&
		    span_eq(p->raw, p->id, gr->patches[w - 1]->raw, gr->patches[w - 1]->id)) {
			eosin_error("%s: record %" PRIu64
			            " (id '%.*s'): field 'id': duplicate in bag '%s'",
			            input_name(g, p->input), p->number, (int)p->id.len,
			            sp(p->raw, p->id), gr->key);
			int r = reject_raw(g, p->raw, p->len, p->number);
			patch_free(p);
			gr->patches[i] = NULL;
			if (r < 0) {
				/* keep the array consistent for group_free */
				for (size_t j = i + 1; j < gr->npatches; j++)
					gr->patches[w++] = gr->patches[j];
				gr->npatches = w;
				return -1;
			}
			continue;
		}
		gr->patches[w++] = p;
	}
	gr->npatches = w;
	return 0;
}

/* Binary search of an id among patches sorted by id; -1 if absent. */
static long find_id(struct patch **sorted, size_t n, const char *raw, struct span id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = span_cmp(sorted[mid]->raw, sorted[mid]->id, raw, id);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static struct patch **sort_base;
static const long *sort_parent;

/* Children order: by parent, then raster position, then id. */
static int child_cmp(const void *a, const void *b)
{
	long i = *(const long *)a, j = *(const long *)b;
	if (sort_parent[i] != sort_parent[j])
		return sort_parent[i] < sort_parent[j] ? -1 : 1;
	const struct patch *p = sort_base[i], *q = sort_base[j];
	if (p->y != q->y)
		return p->y < q->y ? -1 : 1;
	if (p->x != q->x)
		return p->x < q->x ? -1 : 1;
	return span_cmp(p->raw, p->id, q->raw, q->id);
}

static int reject_patch(struct bagger *g, struct group *gr, struct patch *p, const char *fmt,
                        const char *arg, size_t arglen)
{
	char msg[512];
	snprintf(msg, sizeof msg, fmt, (int)arglen, arg, gr->key);
	eosin_error("%s: record %" PRIu64 " (id '%.*s'): %s", input_name(g, p->input), p->number,
	            (int)p->id.len, sp(p->raw, p->id), msg);
	return reject_raw(g, p->raw, p->len, p->number);
}

/* One group's quadtree: each patch's parent and children, and the bag's
 * rows in depth-first pre-order. Indices are into the group's patches
 * unless they say row. */
struct tree {
	long *parent; /* the parent's index; -1: a root, or not in the group */
	long *order;  /* indices sorted by parent, then raster, then id */
	long *first;  /* where a patch's children start in order; -1: none */
	long *count;  /* how many children a patch has in order */
	long *row;    /* a patch's row in the bag; -1: not reached */
	long *stack;
	long *pidx;   /* the row of a patch's parent */
	long *rowpar; /* by row: the parent's row, -1 for the root */
	struct patch **rows;
	size_t nrows;
	long root;
};

static void tree_free(struct tree *t)
{
	free(t->parent);
	free(t->order);
	free(t->first);
	free(t->count);
	free(t->row);
	free(t->stack);
	free(t->rows);
	free(t->pidx);
	free(t->rowpar);
}

static int tree_alloc(struct tree *t, size_t n)
{
	*t = (struct tree){.root = -1};
	t->parent = malloc(n * sizeof *t->parent);
	t->order = malloc(n * sizeof *t->order);
	t->first = malloc(n * sizeof *t->first);
	t->count = calloc(n, sizeof *t->count);
	t->row = malloc(n * sizeof *t->row);
	t->stack = malloc(n * sizeof *t->stack);
	t->rows = malloc(n * sizeof *t->rows);
	t->pidx = malloc(n * sizeof *t->pidx);
	t->rowpar = malloc(n * sizeof *t->rowpar);
	if (!t->parent || !t->order || !t->first || !t->count || !t->row || !t->stack || !t->rows ||
	    !t->pidx || !t->rowpar)
		return eosin_error("out of memory");
	return 0;
}

/* Parents found by id (pt is sorted by id), children in order under them. */
static void tree_link(struct tree *t, struct patch **pt, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		t->row[i] = -1;
		t->parent[i] = pt[i]->depth == 0 ? -1 : find_id(pt, n, pt[i]->raw, pt[i]->parent);
		if (pt[i]->depth == 0)
			t->root = (long)i;
		t->order[i] = (long)i;
	}
	sort_base = pt;
	sort_parent = t->parent;
	qsort(t->order, n, sizeof *t->order, child_cmp);
	for (size_t i = 0; i < n; i++)
		t->first[i] = -1;
	for (size_t k = 0; k < n; k++) {
		long c = t->order[k];
		if (t->parent[c] >= 0 && t->first[t->parent[c]] < 0)
			t->first[t->parent[c]] = (long)k;
		if (t->parent[c] >= 0)
			t->count[t->parent[c]]++;
	}
}

/* Depth-first pre-order from the root; children must sit one level below
 * their parent, at most 4 of them. */
static void tree_walk(struct tree *t, struct patch **pt)
{
	size_t sp_ = 0;
	if (t->root >= 0) {
		t->stack[sp_++] = t->root;
		t->pidx[t->root] = -1;
	}
	while (sp_ > 0) {
		long v = t->stack[--sp_];
		t->row[v] = (long)t->nrows;
		t->rowpar[t->nrows] = t->pidx[v];
		t->rows[t->nrows] = pt[v];
		t->nrows++;
		if (t->first[v] < 0)
			continue;
		/* Push children in reverse so the first is visited first. */
		for (long k = t->count[v] - 1; k >= 0; k--) {
			long c = t->order[t->first[v] + k];
			if (pt[c]->depth != pt[v]->depth + 1 || k >= 4)
				continue;
			t->pidx[c] = t->row[v];
			t->stack[sp_++] = c;
		}
	}
}

/* Everything the walk did not reach is an orphan or misplaced: rejected,
 * saying which. */
static int tree_reject_unreached(struct bagger *g, struct group *gr, const struct tree *t)
{
	struct patch **pt = gr->patches;
	for (size_t i = 0; i < gr->npatches; i++) {
		if (t->row[i] >= 0)
			continue;
		struct patch *p = pt[i];
		long up = t->parent[i];
		int r;
		if (up < 0)
			r = reject_patch(g, gr, p,
			                 "field 'parent': tile '%.*s' never appears in tree '%s'",
			                 sp(p->raw, p->parent), p->parent.len);
		else if (t->row[up] >= 0 && p->depth != pt[up]->depth + 1)
			r = reject_patch(
			    g, gr, p, "field 'depth': not one below its parent '%.*s' in tree '%s'",
			    sp(p->raw, p->parent), p->parent.len);
		else if (t->row[up] >= 0)
			r = reject_patch(
			    g, gr, p, "field 'parent': '%.*s' already has 4 children in tree '%s'",
			    sp(p->raw, p->parent), p->parent.len);
		else
			r = reject_patch(g, gr, p,
			                 "field 'parent': '%.*s' is not part of tree '%s'",
			                 sp(p->raw, p->parent), p->parent.len);
		if (r < 0)
			return -1;
	}
	return 0;
}

/* txt_emb: one per row when every row has one; counted when only some do. */
static int pack_rows_txt(struct bagger *g, struct patch **rows, size_t nrows)
{
	size_t ntxt = 0;
	for (size_t i = 0; i < nrows; i++)
		ntxt += rows[i]->txt.have;
	struct emb_row *er = malloc(nrows * sizeof *er);
	if (!er)
		return eosin_error("out of memory");
	if (ntxt == nrows) {
		for (size_t i = 0; i < nrows; i++)
			er[i] = (struct emb_row){rows[i]->raw, &rows[i]->txt, -1};
		pack_emb(&g->b, F_COMMON_TXT_EMB, er, nrows);
	} else if (ntxt > 0) {
		g->st.no_txt_emb++;
	}
	free(er);
	return 0;
}

/* The union of the rows' keywords, first occurrence in row order. */
struct kwunion {
	struct strmap seen;
	size_t n, cap;
	struct emb_row *emb;
	const char **raw;
	struct span *span;
};

/* Room for one more; -1 when memory ran out (what is there is kept). */
static int kwunion_grow(struct kwunion *u)
{
	if (u->n < u->cap)
		return 0;
	u->cap = u->cap ? 2 * u->cap : 64;
	struct emb_row *a = xrealloc(u->emb, u->cap * sizeof *a);
	const char **c = a ? xrealloc(u->raw, u->cap * sizeof *c) : NULL;
	struct span *d = c ? xrealloc(u->span, u->cap * sizeof *d) : NULL;
	if (a)
		u->emb = a;
	if (c)
		u->raw = c;
	if (d)
		u->span = d;
	return a && c && d ? 0 : -1;
}

/* Keyword j of p, unless already there; -1 when memory ran out. */
static int kwunion_add(struct kwunion *u, struct patch *p, uint32_t j)
{
	struct span s = p->keywords[j];
	char *t = span_dup(p->raw, s);
	if (!t)
		return -1;
	int bad = 0;
	if (!map_has(&u->seen, t)) {
		if (map_put(&u->seen, t, &u->seen) < 0)
			bad = 1;
		if (kwunion_grow(u) < 0)
			bad = 1;
		if (!bad) {
			u->emb[u->n] = (struct emb_row){p->raw, &p->kw, j};
			u->raw[u->n] = p->raw;
			u->span[u->n] = s;
			u->n++;
		}
	}
	free(t);
	return bad ? -1 : 0;
}

/* keywords, and kw_emb when every row with keywords has their embeddings. */
static int pack_rows_keywords(struct bagger *g, struct patch **rows, size_t nrows)
{
	size_t nkwp = 0, nkwe = 0;
	for (size_t i = 0; i < nrows; i++) {
		nkwp += rows[i]->nkeywords > 0;
		nkwe += rows[i]->nkeywords > 0 && rows[i]->kw.have;
	}
	if (nkwp == 0)
		return 0;
	struct kwunion u = {.n = 0};
	if (map_init(&u.seen) < 0)
		return -1;
	int bad = 0;
	for (size_t i = 0; i < nrows && !bad; i++)
		for (uint32_t j = 0; j < rows[i]->nkeywords && !bad; j++)
			bad = kwunion_add(&u, rows[i], j) < 0;
	map_release(&u.seen);
	if (!bad) {
		struct recb *b = &g->b;
		recb_key(b, F_COMMON_KEYWORDS);
		msgpack_pack_array(&b->pk, u.n);
		for (size_t k = 0; k < u.n; k++)
			pack_str_span(&b->pk, u.raw[k], u.span[k]);
		if (nkwe == nkwp)
			pack_emb(b, F_COMMON_KW_EMB, u.emb, u.n);
		else
			g->st.no_kw_emb++;
	}
	free(u.emb);
	free(u.raw);
	free(u.span);
	return bad ? eosin_error("out of memory") : 0;
}

/* The tree's bag: its rows, each row's parent row, their text and keywords.
 * Depth <= 3, one level per edge, <= 4 children each: 85 rows is exactly
 * the full quadtree. */
static int tree_emit(struct bagger *g, struct group *gr, const struct tree *t)
{
	struct patch **rows = t->rows;
	size_t nrows = t->nrows;
	int complete = nrows == BAG_TREE_SIZE;
	if (!complete && g->o.complete_only) {
		g->st.dropped++;
		return 0;
	}
	struct recb *b = &g->b;
	recb_begin(b, BAG_KIND, BAG_VERSION);
	recb_str(b, F_BAG_ID, gr->key);
	recb_strn(b, F_BAG_SLIDE, sp(rows[0]->raw, rows[0]->slide), rows[0]->slide.len);
	recb_str(b, F_BAG_METHOD, "mrplip");
	if (pack_patch_columns(g, rows, nrows) < 0)
		return -1;
	recb_key(b, F_BAG_PARENT_INDEX);
	msgpack_pack_array(&b->pk, nrows);
	for (size_t i = 0; i < nrows; i++)
		msgpack_pack_int64(&b->pk, t->rowpar[i]);
	recb_bool(b, F_BAG_COMPLETE, complete);
	if (pack_rows_txt(g, rows, nrows) < 0 || pack_rows_keywords(g, rows, nrows) < 0 ||
	    emit(g) < 0)
		return -1;
	if (complete)
		g->st.complete++;
	else
		g->st.incomplete++;
	return 0;
}

static int build_tree(struct bagger *g, struct group *gr)
{
	if (drop_duplicates(g, gr) < 0)
		return -1;
	if (gr->npatches == 0)
		return 0;
	struct tree t;
	int ret = tree_alloc(&t, gr->npatches);
	if (ret == 0) {
		tree_link(&t, gr->patches, gr->npatches);
		tree_walk(&t, gr->patches);
		ret = tree_reject_unreached(g, gr, &t);
	}
	if (ret == 0 && t.nrows > 0)
		ret = tree_emit(g, gr, &t);
	tree_free(&t);
	return ret;
}

static int raster_cmp(const void *a, const void *b)
{
	const struct patch *p = *(struct patch *const *)a, *q = *(struct patch *const *)b;
	if (p->y != q->y)
		return p->y < q->y ? -1 : 1;
	if (p->x != q->x)
		return p->x < q->x ? -1 : 1;
	if (p->mag != q->mag)
		return p->mag < q->mag ? -1 : 1;
	return span_cmp(p->raw, p->id, q->raw, q->id);
}

/* The doc that gives the slide its text, or NULL (counted). */
static struct doc *choose_doc(struct bagger *g, struct group *gr, int *err)
{
	*err = 0;
	if (gr->ndocs == 0) {
		g->st.no_text++;
		return NULL;
	}
	/* Docs of one part must not repeat. */
	for (size_t i = 0; i < gr->ndocs; i++)
		for (size_t j = 0; j < gr->ndocs; j++) {
			struct doc *a = gr->docs[i], *d = gr->docs[j];
			if (i == j || !d || !a || !span_eq(a->raw, a->part, d->raw, d->part) ||
			    d->number < a->number || (d->number == a->number && j < i))
				continue;
			eosin_error("%s: record %" PRIu64
			            " (id '%.*s'): field 'part': a second doc for "
			            "part '%.*s' of slide '%s'",
			            input_name(g, d->input), d->number,
			            d->id.off == SPAN_NONE ? 1 : (int)d->id.len,
			            d->id.off == SPAN_NONE ? "?" : sp(d->raw, d->id),
			            d->part.off == SPAN_NONE ? 0 : (int)d->part.len,
			            d->part.off == SPAN_NONE ? "" : sp(d->raw, d->part), gr->key);
			if (reject_raw(g, d->raw, d->len, d->number) < 0) {
				*err = 1;
				return NULL;
			}
			doc_free(d);
			gr->docs[j] = NULL;
		}
	size_t w = 0;
	for (size_t i = 0; i < gr->ndocs; i++)
		if (gr->docs[i])
			gr->docs[w++] = gr->docs[i];
	gr->ndocs = w;
	/* The slide's part: from its patches (raster order, first that has one). */
	struct patch *pp = NULL;
	for (size_t i = 0; i < gr->npatches && !pp; i++)
		if (gr->patches[i]->part.off != SPAN_NONE)
			pp = gr->patches[i];
	struct doc *pick = NULL, *whole = NULL;
	for (size_t i = 0; i < gr->ndocs; i++) {
		struct doc *d = gr->docs[i];
		if (pp && d->part.off != SPAN_NONE && span_eq(pp->raw, pp->part, d->raw, d->part))
			pick = d;
		if (d->part.off == SPAN_NONE)
			whole = d;
	}
	if (!pick && !pp) {
		if (gr->ndocs == 1)
			pick = gr->docs[0];
		else if (whole)
			pick = whole;
		else {
			g->st.ambiguous_text++;
			g->st.unused_docs += gr->ndocs;
			return NULL;
		}
	}
	if (!pick)
		g->st.no_text++;
	g->st.unused_docs += gr->ndocs - (pick != NULL);
	return pick;
}

/* PathFLIP's regions: a grid over the patches' bounding box; a patch falls
 * in the cell of its centre; non-empty cells are numbered in row-major
 * order; the doc's sentences go to the region of their position. */
static int pack_regions(struct bagger *g, struct patch **pt, size_t n, const struct doc *d)
{
	struct recb *b = &g->b;
	double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
	for (size_t i = 0; i < n; i++) {
		x0 = fmin(x0, (double)pt[i]->x);
		y0 = fmin(y0, (double)pt[i]->y);
		x1 = fmax(x1, (double)(pt[i]->x + pt[i]->extent));
		y1 = fmax(y1, (double)(pt[i]->y + pt[i]->extent));
	}
	uint32_t side = bag_grid_side(g->o.nregions), ncell = side * side;
	int64_t *remap = malloc(ncell * sizeof *remap);
	uint32_t *cell = malloc(n * sizeof *cell);
	if (!remap || !cell) {
		free(remap);
		free(cell);
		return eosin_error("out of memory");
	}
	for (uint32_t c = 0; c < ncell; c++)
		remap[c] = -1;
	for (size_t i = 0; i < n; i++) {
		cell[i] = bag_grid_cell(pt[i]->x + pt[i]->extent / 2.0,
		                        pt[i]->y + pt[i]->extent / 2.0, x0, y0, x1, y1, side);
		remap[cell[i]] = 0;
	}
	int64_t nreg = 0;
	for (uint32_t c = 0; c < ncell; c++)
		if (remap[c] == 0)
			remap[c] = nreg++;
	recb_key(b, F_BAG_REGION);
	msgpack_pack_array(&b->pk, n);
	for (size_t i = 0; i < n; i++)
		msgpack_pack_int64(&b->pk, remap[cell[i]]);
	recb_int(b, F_BAG_NREGIONS, nreg);
	if (d && d->nsentences > 0) {
		recb_key(b, F_COMMON_SENTENCES);
		msgpack_pack_array(&b->pk, d->nsentences);
		for (uint32_t j = 0; j < d->nsentences; j++)
			pack_str_span(&b->pk, d->raw, d->sentences[j]);
		if (d->sent.have) {
			struct emb_row r = {d->raw, &d->sent, -1};
			pack_emb(b, F_COMMON_SENT_EMB, &r, 1);
		}
		recb_key(b, F_BAG_SENT_REGION);
		msgpack_pack_array(&b->pk, d->nsentences);
		for (uint32_t j = 0; j < d->nsentences; j++) {
			int64_t reg = -1;
			if (d->has_pos && !isnan(d->sent_xy[2 * j])) {
				double px = d->sent_xy[2 * j], py = d->sent_xy[2 * j + 1];
				if (px >= x0 && px < x1 && py >= y0 && py < y1)
					reg = remap[bag_grid_cell(px, py, x0, y0, x1, y1, side)];
			}
			msgpack_pack_int64(&b->pk, reg);
		}
	}
	free(remap);
	free(cell);
	return 0;
}

static int build_slide(struct bagger *g, struct group *gr)
{
	if (drop_duplicates(g, gr) < 0)
		return -1;
	size_t n = gr->npatches;
	if (n == 0) {
		g->st.unused_docs += gr->ndocs;
		return 0;
	}
	qsort(gr->patches, n, sizeof *gr->patches, raster_cmp);
	struct patch **pt = gr->patches;
	int err;
	struct doc *d = choose_doc(g, gr, &err);
	if (err)
		return -1;
	if (!d && g->o.require_text) {
		g->st.dropped++;
		return 0;
	}
	struct recb *b = &g->b;
	recb_begin(b, BAG_KIND, BAG_VERSION);
	recb_str(b, F_BAG_ID, gr->key);
	recb_str(b, F_BAG_SLIDE, gr->key);
	recb_str(b, F_BAG_METHOD, g->o.method == BAG_REGION ? "region" : "slide");
	if (pack_patch_columns(g, pt, n) < 0)
		return -1;
	int same_extent = 1;
	for (size_t i = 1; i < n; i++)
		same_extent &= pt[i]->extent == pt[0]->extent;
	if (same_extent)
		recb_int(b, F_BAG_EXTENT, pt[0]->extent);
	if (gr->seen > n) {
		recb_int(b, F_BAG_SAMPLED_FROM, (int64_t)gr->seen);
		g->st.sampled++;
	}
	if (d) {
		if (d->caption.off != SPAN_NONE)
			recb_strn(b, F_COMMON_CAPTION, sp(d->raw, d->caption), d->caption.len);
		if (d->txt.have) {
			struct emb_row r = {d->raw, &d->txt, -1};
			pack_emb(b, F_COMMON_TXT_EMB, &r, 1);
		}
		if (d->part.off != SPAN_NONE)
			recb_strn(b, F_COMMON_PART, sp(d->raw, d->part), d->part.len);
		if (d->label.off != SPAN_NONE)
			recb_strn(b, F_COMMON_LABEL, sp(d->raw, d->label), d->label.len);
		if (d->split.off != SPAN_NONE)
			recb_strn(b, F_COMMON_SPLIT, sp(d->raw, d->split), d->split.len);
	}
	if (g->o.method == BAG_REGION && pack_regions(g, pt, n, d) < 0)
		return -1;
	return emit(g);
}

/* Write the group's bag (or count why not) and free it; it must already be
 * off the open list. */
static int group_write(struct bagger *g, struct group *gr)
{
	int ret = g->o.method == BAG_PARENT ? build_tree(g, gr) : build_slide(g, gr);
	if (ret == 0 && map_put(&g->written, gr->key, gr) < 0)
		ret = -1;
	group_free(gr);
	return ret;
}

static int close_all_open(struct bagger *g)
{
	while (g->head) {
		struct group *gr = g->head;
		open_unlink(g, gr);
		if (group_write(g, gr) < 0) {
			return -1;
		}
	}
	return 0;
}

/* ---- public ---- */

void bag_options_default(struct bag_options *o, enum bag_method m)
{
	memset(o, 0, sizeof *o);
	o->method = m;
	o->max_patches = 10240;
	o->nregions = 16;
	o->memory_limit = (size_t)1 << 30;
	o->max_open = 64;
}

struct bagger *bagger_new(const struct bag_options *o, const struct bag_sink *sink)
{
	struct bagger *g = calloc(1, sizeof *g);
	if (!g) {
		eosin_error("out of memory");
		return NULL;
	}
	g->o = *o;
	g->sink = *sink;
	if (g->o.max_patches == 0)
		g->o.max_patches = 1;
	if (g->o.nregions == 0)
		g->o.nregions = 1;
	recb_init(&g->b);
	if (map_init(&g->open) < 0 || map_init(&g->written) < 0 || map_init(&g->spilled) < 0 ||
	    map_init(&g->closed) < 0) {
		bagger_free(g);
		return NULL;
	}
	return g;
}

const struct bag_stats *bagger_stats(const struct bagger *g)
{
	return &g->st;
}

static int set_input(struct bagger *g, const char *name)
{
	if (g->ninputs > 0 && !strcmp(g->inputs[g->ninputs - 1], name)) {
		g->cur_input = g->ninputs - 1;
		return 0;
	}
	char **ni = xrealloc(g->inputs, (g->ninputs + 1) * sizeof *ni);
	if (!ni)
		return -1;
	g->inputs = ni;
	if (!(ni[g->ninputs] = strdup(name)))
		return eosin_error("out of memory");
	g->cur_input = g->ninputs++;
	return 0;
}

/* Input grouped by slide: a slide that comes back after its bags were
 * written is rejected; a new slide closes the bags of the one before and
 * takes *s as g->cur_slide. 1: go on, 0: rejected, -1: error. */
static int follow_slide(struct bagger *g, const struct record *rec, char **s)
{
	if (map_has(&g->closed, *s)) {
		char id[256];
		eosin_error("%s: record %" PRIu64 " (id '%s'): field 'slide': slide '%s' comes "
		            "back after its bags were written (input not grouped by slide; use "
		            "--unsorted)",
		            input_name(g, g->cur_input), rec->number, record_id(rec, id, sizeof id),
		            *s);
		return reject_raw(g, rec->raw, rec->len, rec->number);
	}
	if (g->cur_slide && strcmp(g->cur_slide, *s)) {
		if (map_put(&g->closed, g->cur_slide, g) < 0 || close_all_open(g) < 0)
			return -1;
	}
	if (!g->cur_slide || strcmp(g->cur_slide, *s)) {
		free(g->cur_slide);
		g->cur_slide = *s;
		*s = NULL;
	}
	return 1;
}

/* A tile into its group (taking *pp): its embeddings must match the
 * group's, or it is rejected and a group it alone would have started is
 * dropped; a full tree is written at once. 1: added, 0: rejected, -1: error. */
static int group_add_patch(struct bagger *g, struct group *gr, const struct record *rec,
                           const char *k, struct patch **pp)
{
	struct patch *p = *pp;
	if (emb_check(&gr->img, p->raw, &p->img, F_COMMON_IMG_EMB, k) < 0 ||
	    emb_check(&gr->txt, p->raw, &p->txt, F_COMMON_TXT_EMB, k) < 0 ||
	    emb_check(&gr->kw, p->raw, &p->kw, F_COMMON_KW_EMB, k) < 0) {
		where_error(g, g->cur_input, rec);
		int ret = reject_raw(g, rec->raw, rec->len, rec->number);
		if (gr->npatches == 0 && gr->ndocs == 0) {
			open_unlink(g, gr);
			group_free(gr);
		}
		return ret;
	}
	*pp = NULL;
	if (group_take_patch(g, gr, p) < 0)
		return -1;
	if (g->o.method == BAG_PARENT && gr->npatches == BAG_TREE_SIZE) {
		/* A full tree cannot grow: write it now. */
		open_unlink(g, gr);
		if (group_write(g, gr) < 0)
			return -1;
	}
	return 1;
}

/* A doc into its slide's group (taking *dp). */
static int group_add_doc(struct bagger *g, struct group *gr, struct doc **dp)
{
	if (gr->ndocs == gr->doccap) {
		size_t ncap = gr->doccap ? 2 * gr->doccap : 4;
		struct doc **nd = xrealloc(gr->docs, ncap * sizeof *nd);
		if (!nd)
			return -1;
		gr->docs = nd;
		gr->doccap = ncap;
	}
	struct doc *d = *dp;
	gr->docs[gr->ndocs++] = d;
	gr->bytes += d->len;
	g->held += d->len;
	*dp = NULL;
	return 1;
}

/* Whether a bag key may still take records: not one already written
 * (rejected), nor one spilled to disk (the record follows it there).
 * 1: go on, 0: handled, -1: error. */
static int key_open(struct bagger *g, const struct record *rec, const char *k)
{
	if (map_has(&g->written, k)) {
		char id[256];
		eosin_error("%s: record %" PRIu64 " (id '%s'): field '%s': bag '%s' was already "
		            "written%s",
		            input_name(g, g->cur_input), rec->number, record_id(rec, id, sizeof id),
		            g->o.method == BAG_PARENT ? F_TILE_ROOT : F_TILE_SLIDE, k,
		            g->o.method == BAG_PARENT ? " complete" : "");
		return reject_raw(g, rec->raw, rec->len, rec->number);
	}
	if (!g->in_partition && map_has(&g->spilled, k)) {
		int ret = frame_write(g, k, rec->number, g->cur_input, rec->raw, rec->len);
		g->st.spilled_records++;
		return ret < 0 ? -1 : 0;
	}
	return 1;
}

/* A parsed tile (*p) or doc (*d) under its bag key k, with its slide *s. */
static int add_keyed(struct bagger *g, const struct record *rec, const char *k, char **s,
                     struct patch **p, struct doc **d)
{
	int st = g->o.grouped && !g->in_partition ? follow_slide(g, rec, s) : 1;
	if (st == 1)
		st = key_open(g, rec, k);
	if (st != 1)
		return st;
	struct group *gr = group_get(g, k);
	if (!gr)
		return -1;
	st = *p ? group_add_patch(g, gr, rec, k, p) : group_add_doc(g, gr, d);
	return st == 1 ? enforce_limits(g) : st;
}

static int add_record(struct bagger *g, const struct record *rec)
{
	int is_doc = record_is(rec, DOC_KIND);
	int is_tile = record_is(rec, TILE_KIND);
	if (!is_tile && !(is_doc && g->o.method != BAG_PARENT))
		return eosin_error("internal: record %" PRIu64 " is not a tile or doc",
		                   rec->number);
	if (is_tile)
		g->st.tiles++;
	else
		g->st.docs++;
	struct span key, slide;
	struct patch *p = NULL;
	struct doc *d = NULL;
	if (is_tile)
		p = patch_parse(g, rec, &key, &slide);
	else {
		d = doc_parse(g, rec, &slide);
		key = slide;
	}
	if (!p && !d)
		return reject_raw(g, rec->raw, rec->len, rec->number);
	char *k = strndup(rec->raw + key.off, key.len);
	char *s = strndup(rec->raw + slide.off, slide.len);
	int ret = -1;
	if (!k || !s) {
		eosin_error("out of memory");
	} else if (p && g->o.mag > 0 && fabs(p->mag - g->o.mag) > 1e-6 * g->o.mag) {
		g->st.other_mag++;
		ret = 0;
	} else {
		ret = add_keyed(g, rec, k, &s, &p, &d);
	}
	patch_free(p);
	doc_free(d);
	free(k);
	free(s);
	return ret;
}

int bagger_add_from(struct bagger *g, const struct record *rec, const char *input)
{
	if (set_input(g, input ? input : "<stdin>") < 0)
		return -1;
	return add_record(g, rec);
}

int bagger_add(struct bagger *g, const struct record *rec)
{
	return bagger_add_from(g, rec, NULL);
}

/* Read one partition back and write its groups. */
static int run_partition(struct bagger *g, FILE *f)
{
	if (fflush(f) == EOF || fseek(f, 0, SEEK_SET) < 0)
		return eosin_error("cannot rewind a spill file: %s", strerror(errno));
	char *buf = NULL;
	size_t cap = 0;
	int ret = -1;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	for (;;) {
		uint64_t number;
		uint32_t input, len;
		if (fread(&number, sizeof number, 1, f) != 1) {
			if (ferror(f)) {
				eosin_error("read error on a spill file: %s", strerror(errno));
				goto out;
			}
			break;
		}
		if (fread(&input, sizeof input, 1, f) != 1 || fread(&len, sizeof len, 1, f) != 1) {
			eosin_error("spill file truncated");
			goto out;
		}
		if (len > cap) {
			char *nb = xrealloc(buf, len);
			if (!nb)
				goto out;
			buf = nb;
			cap = len;
		}
		if (len && fread(buf, len, 1, f) != 1) {
			eosin_error("spill file truncated");
			goto out;
		}
		if (number == FRAME_COUNT) {
			uint64_t dropped;
			memcpy(&dropped, buf, 8);
			char *k = strndup(buf + 8, len - 8);
			struct group *gr = k ? group_get(g, k) : NULL;
			free(k);
			if (!gr) {
				eosin_error("out of memory");
				goto out;
			}
			gr->seen += dropped;
			continue;
		}
		size_t off = 0;
		if (msgpack_unpack_next(&u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS) {
			eosin_error("spill file corrupt");
			goto out;
		}
		struct record rec;
		memset(&rec, 0, sizeof rec);
		rec.raw = buf;
		rec.len = len;
		rec.root = u.data;
		rec.number = number;
		const msgpack_object *k = mpo_get(&rec.root, "k");
		rec.kind = k->via.str.ptr;
		rec.kind_len = k->via.str.size;
		g->cur_input = input;
		if (record_is(&rec, TILE_KIND))
			g->st.tiles--;
		else
			g->st.docs--;
		if (add_record(g, &rec) < 0)
			goto out;
	}
	ret = close_all_open(g);
out:
	msgpack_unpacked_destroy(&u);
	free(buf);
	return ret;
}

int bagger_finish(struct bagger *g)
{
	if (close_all_open(g) < 0)
		return -1;
	g->in_partition = 1;
	for (int i = 0; i < BAG_PARTITIONS; i++) {
		if (!g->part[i])
			continue;
		int r = run_partition(g, g->part[i]);
		fclose(g->part[i]);
		g->part[i] = NULL;
		if (r < 0)
			return -1;
	}
	return 0;
}

void bagger_free(struct bagger *g)
{
	if (!g)
		return;
	while (g->head) {
		struct group *gr = g->head;
		open_unlink(g, gr);
		group_free(gr);
	}
	map_release(&g->open);
	map_release(&g->written);
	map_release(&g->spilled);
	map_release(&g->closed);
	for (int i = 0; i < BAG_PARTITIONS; i++)
		if (g->part[i])
			fclose(g->part[i]);
	for (uint32_t i = 0; i < g->ninputs; i++)
		free(g->inputs[i]);
	free(g->inputs);
	free(g->cur_slide);
	free(g->scratch);
	recb_release(&g->b);
	free(g);
}

/* ---- reading bag records back ---- */

int bag_get_index_array(const struct record *rec, const char *key, int n, int lo, int hi,
                        int **out)
{
	const msgpack_object *o = record_get(rec, key);
	if (!o)
		return 1;
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return eosin_error("field '%s' is not an array", key);
	if ((int)o->via.array.size != n)
		return eosin_error("field '%s' has %u entries, want n = %d", key, o->via.array.size, n);
	*out = malloc(sizeof(int) * (n > 0 ? n : 1));
	for (int i = 0; i < n; i++) {
		const msgpack_object *e = &o->via.array.ptr[i];
		int64_t v = e->type == MSGPACK_OBJECT_POSITIVE_INTEGER   ? (int64_t)e->via.u64
		            : e->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? e->via.i64
		                                                         : INT64_MIN;
		if (v < lo || v > hi) {
			free(*out);
			*out = NULL;
			return eosin_error("field '%s' entry %d is not in [%d, %d]", key, i, lo, hi);
		}
		(*out)[i] = (int)v;
	}
	return 0;
}

int bag_get_regions(const struct record *rec, int n, int *nregions, int **region)
{
	int64_t nreg = 0;
	if (!record_get(rec, F_BAG_REGION))
		return 1;
	if (record_get_int(rec, F_BAG_NREGIONS, &nreg) < 0)
		return -1;
	if (nreg < 1 || nreg > n)
		return eosin_error("field 'nregions' is %" PRId64 ", want 1 to n = %d", nreg, n);
	if (bag_get_index_array(rec, F_BAG_REGION, n, 0, (int)nreg - 1, region) < 0)
		return -1;
	char *seen = calloc((size_t)nreg, 1);
	for (int i = 0; i < n; i++)
		seen[(*region)[i]] = 1;
	for (int q = 0; q < nreg; q++)
		if (!seen[q]) {
			free(seen), free(*region);
			*region = NULL;
			return eosin_error("field 'region' leaves region %d of %" PRId64 " empty", q, nreg);
		}
	free(seen);
	*nregions = (int)nreg;
	return 0;
}
