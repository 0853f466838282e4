/*
 * test-quadtree.c: the extent arithmetic and the quadtree rule of
 * lib/slide/quadtree.c, checked against values worked out by hand and against
 * the partition property for many parents.
 */
#include "core/error.h"
#include "slide/quadtree.h"
#include "tap.h"

#include <stdint.h>
#include <string.h>

/* Do the 4 children of box b at depth 1 (recursively to depth d) cover it
 * exactly: inside, pairwise disjoint, areas adding up? */
static int partitions(const struct tile_box *b, int depth)
{
	if (depth == 0)
		return 1;
	struct tile_box c[4];
	int64_t area = 0;
	for (int k = 0; k < 4; k++) {
		if (quadtree_descendant(b, 1, k % 2, k / 2, &c[k]) < 0)
			return 0;
		if (c[k].x < b->x || c[k].y < b->y || c[k].x + c[k].extent > b->x + b->extent ||
		    c[k].y + c[k].extent > b->y + b->extent)
			return 0;
		area += c[k].extent * c[k].extent;
	}
	for (int p = 0; p < 4; p++)
		for (int q = p + 1; q < 4; q++)
			if (c[p].x < c[q].x + c[q].extent && c[q].x < c[p].x + c[p].extent &&
			    c[p].y < c[q].y + c[q].extent && c[q].y < c[p].y + c[p].extent)
				return 0;
	if (area != b->extent * b->extent)
		return 0;
	for (int k = 0; k < 4; k++)
		if (!partitions(&c[k], depth - 1))
			return 0;
	return 1;
}

int main(void)
{
	/* magnification is physical */
	ok_near(mag_to_mpp(10), 1.0, 1e-12, "10x is 1 um/px");
	ok_near(mag_to_mpp(20), 0.5, 1e-12, "20x is 0.5 um/px");
	ok_near(mag_to_mpp(40), 0.25, 1e-12, "40x is 0.25 um/px");
	ok_near(mag_to_mpp(5), 2.0, 1e-12, "5x is 2 um/px");

	/* exact cases: 512 px at 5x on 0.25 um/px is 4096 level-0 px */
	ok(tile_extent(512, 2.0, 0.25, 8) == 4096, "5x on a 40x scan: 4096");
	ok(tile_extent(512, 0.25, 0.25, 1) == 512, "40x on a 40x scan: 512");
	ok(tile_extent(256, 1.0, 0.5, 1) == 512, "10x on a 20x scan: 512");
	/* 512 * 2 / 0.499 = 2052.1: nearest multiple of 8 is 2056, of 1 is 2052 */
	ok(tile_extent(512, 2.0, 0.499, 8) == 2056, "5x parent on 0.499: 2056 (unit 8)");
	ok(tile_extent(512, 2.0, 0.499, 1) == 2052, "5x grid tile on 0.499: 2052");
	/* 512 * 0.5 / 0.499 = 513.03 -> 513 */
	ok(tile_extent(512, 0.5, 0.499, 1) == 513, "20x grid tile on 0.499: 513");
	/* 0.6 level-0 px rounds up to one unit, never to 0 */
	ok(tile_extent(16, 0.01, 0.25, 1) == 1, "tiny extents are at least one unit");
	ok(tile_extent(16, 0.01, 0.25, 8) == 8, "... one unit of 8");
	ok(tile_extent(0, 1, 1, 1) < 0 && strstr(eosin_errmsg(), "positive"), "px 0 refused");
	ok(tile_extent(64, 1, 0, 1) < 0, "base mpp 0 refused");

	ok(quadtree_size(0) == 1 && quadtree_size(1) == 5 && quadtree_size(2) == 21 &&
	       quadtree_size(3) == 85,
	   "tree sizes 1, 5, 21, 85");

	struct tile_box p = {1000, 3000, 2056}, c;
	ok(quadtree_descendant(&p, 1, 1, 0, &c) == 0 && c.x == 2028 && c.y == 3000 &&
	       c.extent == 1028,
	   "child (1,0) of (1000,3000,2056) is (2028,3000,1028)");
	ok(quadtree_descendant(&p, 3, 7, 7, &c) == 0 && c.x == 1000 + 7 * 257 &&
	       c.y == 3000 + 7 * 257 && c.extent == 257,
	   "last 40x grandchild ends at the parent's corner");
	ok(c.x + c.extent == p.x + p.extent, "... exactly");
	ok(quadtree_descendant(&p, 1, 2, 0, &c) < 0, "index 2 at depth 1 refused");
	struct tile_box odd = {0, 0, 2052};
	ok(quadtree_descendant(&odd, 3, 0, 0, &c) < 0 && strstr(eosin_errmsg(), "divisible"),
	   "an extent not divisible by 8 has no depth-3 boxes");

	/* the partition property, for the extents real scans give */
	const double bases[] = {0.2325, 0.25, 0.2528, 0.263, 0.275, 0.4942, 0.499, 0.5, 1.0};
	const int pxs[] = {224, 256, 384, 512};
	int all = 1, n = 0;
	for (size_t i = 0; i < sizeof bases / sizeof *bases; i++)
		for (size_t k = 0; k < sizeof pxs / sizeof *pxs; k++) {
			int64_t e = tile_extent(pxs[k], 2.0, bases[i], 8);
			struct tile_box b = {(int64_t)(i * 7919), (int64_t)(k * 104729), e};
			all &= e % 8 == 0 && partitions(&b, 3);
			/* the rounding error is within half a unit */
			double exact = pxs[k] * 2.0 / bases[i];
			all &= e - exact <= 4 && exact - e <= 4;
			n++;
		}
	ok(all, "%d parents: children partition them exactly to depth 3, extents within 4 px", n);

	/* magnification lists */
	double m[8];
	ok(parse_mags("5,10,20,40", m, 8) == 4 && m[0] == 5 && m[3] == 40, "parse 5,10,20,40");
	ok(parse_mags("40,5,20,10", m, 8) == 4 && m[0] == 5 && m[1] == 10 && m[3] == 40,
	   "parse sorts ascending");
	ok(parse_mags("2.5", m, 8) == 1 && m[0] == 2.5, "parse 2.5");
	ok(parse_mags("5,,10", m, 8) < 0, "empty entry refused");
	ok(parse_mags("5,-10", m, 8) < 0, "negative refused");
	ok(parse_mags("10,10", m, 8) < 0, "duplicate refused");
	ok(parse_mags("1,2,3", m, 2) < 0, "too many refused");
	double good[] = {5, 10, 20, 40}, bad[] = {5, 10, 30};
	ok(quadtree_check_mags(good, 4) == 0, "5,10,20,40 is a quadtree");
	ok(quadtree_check_mags(bad, 3) < 0 && strstr(eosin_errmsg(), "30 is not twice 10"),
	   "5,10,30 is not");
	double deep[] = {1, 2, 4, 8, 16, 32, 64, 128};
	ok(quadtree_check_mags(deep, 8) < 0, "8 levels are too deep");
	return tap_done();
}
