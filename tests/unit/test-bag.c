/*
 * test-bag.c: lib/bag/bag.c without the program: grid arithmetic, the keyed
 * hash, and a bagger fed records built in memory (a full quadtree in
 * order, then reversed through the spill files, then with a bad tile).
 */
#include "bag/bag.h"
#include "core/error.h"
#include "tap.h"
#include "core/vec.h"

#include <string.h>

#define DIM 4

struct bags {
	char *data[16];
	size_t len[16];
	int n;
	int rejects;
	char last_reject[512];
};

static int collect(void *ctx, struct recb *bag)
{
	struct bags *b = ctx;
	if (b->n == 16 || recb_finish(bag, &b->data[b->n], &b->len[b->n]) < 0)
		return -1;
	b->n++;
	return 0;
}

static int take_reject(void *ctx, const char *raw, size_t len, uint64_t number, const char *msg)
{
	struct bags *b = ctx;
	(void)raw, (void)len, (void)number;
	b->rejects++;
	snprintf(b->last_reject, sizeof b->last_reject, "%s", msg);
	return 0;
}

static void bags_release(struct bags *b)
{
	for (int i = 0; i < b->n; i++)
		free(b->data[i]);
	memset(b, 0, sizeof *b);
}

/* One tile of the tree rooted at 5x (0,0) on a 40x level 0: its records'
 * bytes into *out. dim lets a test break one. */
struct tile_spec {
	char id[64], parent[64];
	int depth, x, y, extent, mag;
};

static int ntiles;
static struct tile_spec tiles[BAG_TREE_SIZE];

static void make_tree(int x, int y, int depth, const char *parent)
{
	struct tile_spec *t = &tiles[ntiles++];
	t->mag = 5 << depth;
	t->extent = 512 * 40 / t->mag;
	t->x = x;
	t->y = y;
	t->depth = depth;
	snprintf(t->id, sizeof t->id, "S/%dx/%d_%d", t->mag, x, y);
	snprintf(t->parent, sizeof t->parent, "%s", parent ? parent : "");
	if (depth == BAG_TREE_DEPTH)
		return;
	char me[64];
	snprintf(me, sizeof me, "%s", t->id);
	int half = t->extent / 2;
	for (int k = 0; k < 4; k++)
		make_tree(x + (k & 1) * half, y + (k >> 1) * half, depth + 1, me);
}

static void pack_tile(struct recb *b, const struct tile_spec *t, uint32_t dim)
{
	float v[DIM + 4];
	for (uint32_t i = 0; i < dim; i++)
		v[i] = (float)(t->x + 3 * t->y + 7 * t->depth) + 0.25f * (float)i;
	recb_begin(b, "tile", 1);
	recb_str(b, "id", t->id);
	recb_str(b, "slide", "S");
	recb_int(b, "mag", t->mag);
	recb_int(b, "x", t->x);
	recb_int(b, "y", t->y);
	recb_int(b, "extent", t->extent);
	recb_int(b, "depth", t->depth);
	recb_str(b, "root", tiles[0].id);
	if (t->parent[0])
		recb_str(b, "parent", t->parent);
	/* an embedding map by hand (dtype, dim, data) */
	recb_key(b, "img_emb");
	msgpack_pack_map(&b->pk, 3);
	msgpack_pack_str_with_body(&b->pk, "dtype", 5);
	msgpack_pack_str_with_body(&b->pk, "f32", 3);
	msgpack_pack_str_with_body(&b->pk, "dim", 3);
	msgpack_pack_uint32(&b->pk, dim);
	msgpack_pack_str_with_body(&b->pk, "data", 4);
	msgpack_pack_bin_with_body(&b->pk, v, dim * sizeof(float));
}

/* Feed tiles in the order given; -1 if the bagger stopped. */
static int feed(struct bagger *g, const int *order, int n, int bad_index)
{
	struct recb b;
	recb_init(&b);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int ret = 0;
	for (int k = 0; k < n && ret == 0; k++) {
		int i = order[k];
		pack_tile(&b, &tiles[i], i == bad_index ? DIM - 1 : DIM);
		char *raw;
		size_t len, off = 0;
		recb_finish(&b, &raw, &len);
		msgpack_unpack_next(&u, raw, len, &off);
		struct record rec = {.raw = raw,
		                     .len = len,
		                     .root = u.data,
		                     .kind = "tile",
		                     .kind_len = 4,
		                     .version = 1,
		                     .number = (uint64_t)k + 1};
		ret = bagger_add(g, &rec);
		free(raw);
	}
	msgpack_unpacked_destroy(&u);
	recb_release(&b);
	return ret;
}

/* Field `key` of a bag as a msgpack object in *u. */
static const msgpack_object *bag_field(msgpack_unpacked *u, const char *bag, size_t len,
                                       const char *key)
{
	size_t off = 0;
	if (msgpack_unpack_next(u, bag, len, &off) != MSGPACK_UNPACK_SUCCESS)
		return NULL;
	return mpo_get(&u->data, key);
}

int main(void)
{
	ok(bag_grid_side(1) == 1 && bag_grid_side(4) == 2 && bag_grid_side(5) == 3 &&
	       bag_grid_side(9) == 3 && bag_grid_side(10) == 4 && bag_grid_side(16) == 4,
	   "grid side is ceil(sqrt(n))");
	ok(bag_grid_cell(0, 0, 0, 0, 100, 100, 2) == 0, "top-left point: cell 0");
	ok(bag_grid_cell(99, 0, 0, 0, 100, 100, 2) == 1, "top-right point: cell 1");
	ok(bag_grid_cell(0, 99, 0, 0, 100, 100, 2) == 2, "bottom-left point: cell 2");
	ok(bag_grid_cell(100, 100, 0, 0, 100, 100, 2) == 3,
	   "the far corner clamps to the last cell");
	ok(bag_grid_cell(-5, 50, 0, 0, 100, 100, 2) == 2, "a point left of the box clamps");
	ok(bag_hash("a", 1, 1) == bag_hash("a", 1, 1), "hash is a function");
	ok(bag_hash("a", 1, 1) != bag_hash("a", 1, 2), "the seed changes the hash");
	ok(bag_hash("a", 1, 1) != bag_hash("b", 1, 1), "the text changes the hash");

	make_tree(0, 0, 0, NULL);
	ok(ntiles == BAG_TREE_SIZE, "the test tree has %d tiles", BAG_TREE_SIZE);
	int fwd[BAG_TREE_SIZE], rev[BAG_TREE_SIZE];
	for (int i = 0; i < ntiles; i++) {
		fwd[i] = i;
		rev[i] = ntiles - 1 - i;
	}

	struct bag_options o;
	bag_options_default(&o, BAG_PARENT);
	struct bags in_order = {0}, spilled = {0}, bad = {0};
	struct bag_sink s1 = {&in_order, collect, take_reject};
	struct bagger *g = bagger_new(&o, &s1);
	ok(g && feed(g, fwd, ntiles, -1) == 0, "a tree in pre-order goes in");
	ok(in_order.n == 1, "its bag is written at the 85th tile, before finish");
	ok(bagger_finish(g) == 0 && in_order.n == 1, "finish adds nothing");
	ok(bagger_stats(g)->complete == 1 && bagger_stats(g)->spilled_records == 0,
	   "counted complete, nothing spilled");
	bagger_free(g);

	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	const msgpack_object *pi =
	    in_order.n ? bag_field(&u, in_order.data[0], in_order.len[0], "parent_index") : NULL;
	int pi_ok = pi && pi->type == MSGPACK_OBJECT_ARRAY && pi->via.array.size == BAG_TREE_SIZE;
	for (uint32_t i = 0; pi_ok && i < pi->via.array.size; i++) {
		int64_t p = pi->via.array.ptr[i].via.i64;
		if (pi->via.array.ptr[i].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
			p = (int64_t)pi->via.array.ptr[i].via.u64;
		pi_ok = i == 0 ? p == -1 : (p >= 0 && p < (int64_t)i);
	}
	ok(pi_ok, "parent_index: -1 for the root, then always an earlier row");
	/* tiles[] was made in pre-order with raster children: rows must match */
	const msgpack_object *ids =
	    in_order.n ? bag_field(&u, in_order.data[0], in_order.len[0], "tile_ids") : NULL;
	int ids_ok = ids && ids->via.array.size == BAG_TREE_SIZE;
	for (int i = 0; ids_ok && i < ntiles; i++)
		ids_ok = mpo_str_eq(&ids->via.array.ptr[i], tiles[i].id);
	ok(ids_ok, "rows are depth-first with children in raster order");

	bag_options_default(&o, BAG_PARENT);
	o.grouped = 0;
	o.memory_limit = 0;
	struct bag_sink s2 = {&spilled, collect, take_reject};
	g = bagger_new(&o, &s2);
	ok(g && feed(g, rev, ntiles, -1) == 0 && bagger_finish(g) == 0, "reversed, all spilled");
	ok(bagger_stats(g)->spilled_records == BAG_TREE_SIZE,
	   "every record went through a spill file");
	ok(spilled.n == 1 && in_order.n == 1 && spilled.len[0] == in_order.len[0] &&
	       !memcmp(spilled.data[0], in_order.data[0], in_order.len[0]),
	   "the same bag, byte for byte");
	bagger_free(g);

	bag_options_default(&o, BAG_PARENT);
	struct bag_sink s3 = {&bad, collect, take_reject};
	g = bagger_new(&o, &s3);
	ok(g && feed(g, fwd, ntiles, 4) == 0 && bagger_finish(g) == 0, "a tile of another dim");
	ok(bad.rejects == 1 &&
	       strstr(bad.last_reject, "record 5 (id 'S/40x/512_0'): field 'img_emb': dim 3"),
	   "is rejected naming record, id and field: %s", bad.last_reject);
	const msgpack_object *c =
	    bad.n == 1 ? bag_field(&u, bad.data[0], bad.len[0], "complete") : NULL;
	ok(c && c->type == MSGPACK_OBJECT_BOOLEAN && !c->via.boolean,
	   "and the tree is written without it, incomplete");
	bagger_free(g);

	msgpack_unpacked_destroy(&u);
	bags_release(&in_order);
	bags_release(&spilled);
	bags_release(&bad);
	return tap_done();
}
