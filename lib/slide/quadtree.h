/*
 * quadtree.h: level-0 geometry of tiles, from physical magnification to
 * integer boxes, and the MR-PLIP quadtree rule. Pure arithmetic, no I/O.
 *
 * Magnification is physical: mag M means 10/M micrometres per output pixel
 * (10x = 1.0 um/px, 20x = 0.5, 40x = 0.25). A tile of px output pixels at
 * target mpp covers px * mpp / base_mpp level-0 pixels, which is rarely an
 * integer (0.499 um/px scans). The rule used everywhere:
 *
 *   extent = unit * max(1, round(px * mpp / base_mpp / unit))
 *
 * with unit = 2^depth_max for quadtree parents (so that every descendant's
 * extent extent / 2^d is an exact integer and the 4 children of a box
 * partition it exactly, recursively) and unit = 1 for grid tiles. The
 * physical size actually covered is then extent * base_mpp / px per output
 * pixel, within unit / (2 * extent) of the nominal, relative.
 */
#ifndef EOSIN_QUADTREE_H
#define EOSIN_QUADTREE_H

#include <stdint.h>

/* Deepest quadtree supported: 4^6 tiles under one parent is already more
 * than any bag a trainer takes. */
#define QUADTREE_MAX_DEPTH 6

/* A square box in level-0 pixels: [x, x + extent) x [y, y + extent). */
struct tile_box {
	int64_t x, y, extent;
};

/* Micrometres per pixel of magnification mag (10 / mag); 0 for mag <= 0. */
double mag_to_mpp(double mag);

/* The level-0 extent of px output pixels at target_mpp on a slide whose
 * level 0 has base_mpp, rounded to a multiple of unit as above. Returns -1
 * (error set) when an argument is not positive or the extent overflows. */
int64_t tile_extent(int px, double target_mpp, double base_mpp, int64_t unit);

/* Tiles in a quadtree of depth_max below its parent (parent included):
 * 1 + 4 + ... + 4^depth_max; 85 for depth_max 3. */
int64_t quadtree_size(int depth_max);

/* The descendant (i, j) (column, row, 0 <= i, j < 2^depth) at depth `depth`
 * of parent, whose extent must be divisible by 2^depth. Returns -1 (error
 * set) when it is not or an index is out of range. */
int quadtree_descendant(const struct tile_box *parent, int depth, int i, int j,
                        struct tile_box *out);

/* Check a list of magnifications for quadtree mode: strictly ascending,
 * each exactly twice the one before, at most QUADTREE_MAX_DEPTH + 1. */
int quadtree_check_mags(const double *mags, int n);

/* Parse "5,10,20,40" into mags (at most max); returns the count or -1. */
int parse_mags(const char *s, double *mags, int max);

#endif
