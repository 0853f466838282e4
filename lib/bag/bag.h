/*
 * bag.h: grouping embedded patches into `bag` records (eosin-bag(1),
 * eosin-bag(5)) for the three training methods, in bounded memory.
 *
 *   BAG_PARENT (method "mrplip"): one bag per quadtree, keyed by the tile's
 *     `root`: the depth-0 tile and its descendants. Rows in depth-first
 *     pre-order, root first, siblings in raster order of their level-0
 *     position (y, then x, then id). parent_index[i] < i for i > 0.
 *   BAG_SLIDE (method "slide"): one bag per slide, keyed by `slide`: up to
 *     max_patches patches, rows in raster order (y, x, mag, id), with the
 *     slide's report part (a `doc` record) as caption and txt_emb.
 *   BAG_REGION (method "region"): as BAG_SLIDE, plus a grid of regions over
 *     the patches' bounding box and the doc's sentences.
 *
 * Sampling (slide, region): when a slide has more than max_patches patches,
 * the bag keeps the max_patches with the smallest keyed hash of
 * (seed, slide, tile id). The sample is a function of the seed and the ids
 * only, never of input order, and needs at most max_patches patches in
 * memory.
 *
 * Memory: a bagger holds the records of its open groups (raw bytes, copied).
 * A group is written as soon as it is known to be finished: an MR-PLIP tree
 * with all 85 patches; with `grouped` input, every open group of a slide when
 * the next slide starts. When the held bytes exceed memory_limit or more than
 * max_open groups are open, the oldest open group is spilled: its records,
 * and every later record of its key, go to one of BAG_PARTITIONS anonymous
 * temporary files chosen by a hash of the key. bagger_finish() writes the
 * groups still open (in order of first appearance), then reads back each
 * partition in turn and writes its groups (partition order, then first
 * appearance within it), so memory is bounded by one partition.
 *
 * Bad records (a missing or mistyped field, an embedding whose dim, dtype or
 * model differs from the rest of its bag, a child whose parent never
 * appears, a duplicate id) are handed to sink->reject with the message; when
 * that returns 0 the bagger carries on without them, else the bagger stops
 * and returns -1 with the message set.
 *
 * Ownership: the bagger copies what it keeps; records passed to bagger_add
 * need live only for the call. Bags reach sink->emit in a record builder,
 * valid only during the call.
 */
#ifndef EOSIN_BAG_H
#define EOSIN_BAG_H

#include "core/stream.h"

#include <stddef.h>
#include <stdint.h>

enum bag_method { BAG_PARENT, BAG_SLIDE, BAG_REGION };

#define BAG_TREE_SIZE 85  /* 1 + 4 + 16 + 64: a full MR-PLIP quadtree */
#define BAG_TREE_DEPTH 3  /* depth of its leaves */
#define BAG_PARTITIONS 64 /* spill files */

struct bag_options {
	enum bag_method method;
	uint32_t max_patches; /* slide, region: patches per bag (>= 1) */
	uint64_t seed;        /* slide, region: sampling seed */
	uint32_t nregions;    /* region: wanted regions; the grid is g x g, g = ceil(sqrt) */
	double mag;           /* slide, region: keep only patches of this mag (0: all) */
	int complete_only;    /* parent: drop incomplete trees */
	int require_text;     /* slide, region: drop slides without a doc */
	int grouped;          /* input comes slide after slide: close groups on a slide change */
	size_t memory_limit;  /* bytes of held records before spilling */
	size_t max_open;      /* open groups before spilling */
	const char *tmpdir;   /* for spill files; NULL: $TMPDIR or /tmp */
};

void bag_options_default(struct bag_options *o, enum bag_method m);

struct bag_stats {
	uint64_t tiles;           /* tile records read */
	uint64_t docs;            /* doc records read (slide, region) */
	uint64_t bags;            /* bags written */
	uint64_t complete;        /* parent: complete trees written */
	uint64_t incomplete;      /* parent: incomplete trees written */
	uint64_t dropped;         /* bags not written (--complete-only, --require-text) */
	uint64_t no_text;         /* slide, region: bags without a doc */
	uint64_t ambiguous_text;  /* slide, region: several docs, no part to choose */
	uint64_t no_txt_emb;      /* parent: bags where some patch lacks txt_emb */
	uint64_t no_kw_emb;       /* parent: bags where some keywords lack kw_emb */
	uint64_t sampled;         /* slide, region: bags that were sampled */
	uint64_t other_mag;       /* slide, region: patches skipped by mag */
	uint64_t unused_docs;     /* slide, region: docs of slides without patches, or unmatched */
	uint64_t rejected;        /* records handed to reject */
	uint64_t spilled_records; /* records written to spill files */
	uint64_t spilled_groups;  /* groups spilled */
};

struct bag_sink {
	void *ctx;
	/* A finished bag record in a builder: write it with recb_write() (no
	 * copy of a bag that may be hundreds of MB) or take its bytes with
	 * recb_finish(). 0 ok, -1 stop (error set). */
	int (*emit)(void *ctx, struct recb *bag);
	/* A bad record: its raw bytes, 1-based record number in the input and
	 * the message (names record, id, field). 0: carry on without it; -1: stop. */
	int (*reject)(void *ctx, const char *raw, size_t len, uint64_t number, const char *msg);
};

struct bagger;

struct bagger *bagger_new(const struct bag_options *o, const struct bag_sink *sink);
/* Add a `tile` record, or a `doc` record (slide and region methods).
 * 0 ok (also when the record was rejected and the sink said carry on),
 * -1 stop. */
int bagger_add(struct bagger *g, const struct record *rec);
/* The same, naming the input the record came from in messages (default
 * "<stdin>"). */
int bagger_add_from(struct bagger *g, const struct record *rec, const char *input);
/* Write every group still held or spilled. 0 ok, -1 error. */
int bagger_finish(struct bagger *g);
const struct bag_stats *bagger_stats(const struct bagger *g);
void bagger_free(struct bagger *g);

/* Reading bag records back (eosin-align, eosin-generate). An array field
 * key of n integers in [lo, hi] as malloc'd ints; 1 absent, -1 bad (error
 * set, naming the field). */
int bag_get_index_array(const struct record *rec, const char *key, int n, int lo, int hi,
                        int **out);
/* A bag's regions: nregions and each patch's region (malloc'd), every
 * region holding a patch (eosin-bag numbers only non-empty cells); 1
 * absent, -1 bad (error set, naming the field). */
int bag_get_regions(const struct record *rec, int n, int *nregions, int **region);

/* Building blocks, exposed for tests. */
uint64_t bag_hash(const char *s, size_t n, uint64_t seed);
/* The region grid's side for nregions wanted: ceil(sqrt(nregions)). */
uint32_t bag_grid_side(uint32_t nregions);
/* Cell (row-major, 0..side*side-1) of the point (px, py) in the box
 * [x0, x1) x [y0, y1); points outside clamp to the nearest cell. */
uint32_t bag_grid_cell(double px, double py, double x0, double y0, double x1, double y1,
                       uint32_t side);

#endif
