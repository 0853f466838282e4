/*
 * quadtree.c: tile extents and quadtree boxes. See quadtree.h for the
 * rounding rule.
 */
#include "slide/quadtree.h"

#include "core/error.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

double mag_to_mpp(double mag)
{
	return mag > 0 ? 10.0 / mag : 0;
}

int64_t tile_extent(int px, double target_mpp, double base_mpp, int64_t unit)
{
	if (px <= 0 || !(target_mpp > 0) || !(base_mpp > 0) || unit <= 0)
		return eosin_error(
		    "tile extent: px %d, mpp %g, base mpp %g, unit %lld must be positive", px,
		    target_mpp, base_mpp, (long long)unit);
	double exact = (double)px * target_mpp / base_mpp; /* level-0 px */
	double units = floor(exact / (double)unit + 0.5);
	if (units < 1)
		units = 1;
	if (!(units * (double)unit < 1e15))
		return eosin_error("tile extent: %g level-0 pixels is too large", exact);
	return (int64_t)units * unit;
}

int64_t quadtree_size(int depth_max)
{
	int64_t n = 0, level = 1;
	for (int d = 0; d <= depth_max; d++, level *= 4)
		n += level;
	return n;
}

int quadtree_descendant(const struct tile_box *parent, int depth, int i, int j,
                        struct tile_box *out)
{
	if (depth < 0 || depth > QUADTREE_MAX_DEPTH)
		return eosin_error("quadtree depth %d is outside [0, %d]", depth,
		                   QUADTREE_MAX_DEPTH);
	int64_t side = (int64_t)1 << depth;
	if (i < 0 || j < 0 || i >= side || j >= side)
		return eosin_error("quadtree index (%d, %d) is outside a %lld x %lld grid", i, j,
		                   (long long)side, (long long)side);
	if (parent->extent <= 0 || parent->extent % side)
		return eosin_error("parent extent %lld is not divisible by %lld",
		                   (long long)parent->extent, (long long)side);
	out->extent = parent->extent / side;
	out->x = parent->x + i * out->extent;
	out->y = parent->y + j * out->extent;
	return 0;
}

int quadtree_check_mags(const double *mags, int n)
{
	if (n < 1)
		return eosin_error("no magnification given");
	if (n > QUADTREE_MAX_DEPTH + 1)
		return eosin_error("%d magnifications make a quadtree deeper than %d", n,
		                   QUADTREE_MAX_DEPTH);
	for (int k = 1; k < n; k++)
		if (fabs(mags[k] - 2 * mags[k - 1]) > 1e-9 * mags[k])
			return eosin_error(
			    "magnification %g is not twice %g: a quadtree needs each "
			    "magnification to double the one before (e.g. 5,10,20,40)",
			    mags[k], mags[k - 1]);
	return 0;
}

int parse_mags(const char *s, double *mags, int max)
{
	int n = 0;
	const char *p = s;
	for (;;) {
		char *end;
		errno = 0;
		double m = strtod(p, &end);
		if (end == p || errno || !(m > 0) || !(m <= 1000))
			return eosin_error(
			    "magnification list '%s': '%.*s' is not a magnification in (0, 1000]",
			    s, (int)strcspn(p, ","), p);
		if (n == max)
			return eosin_error("magnification list '%s': more than %d entries", s, max);
		for (int k = 0; k < n; k++)
			if (mags[k] == m)
				return eosin_error("magnification list '%s': %g twice", s, m);
		mags[n++] = m;
		if (*end == 0)
			break;
		if (*end != ',')
			return eosin_error("magnification list '%s': unexpected '%c'", s, *end);
		p = end + 1;
	}
	/* ascending order (insertion sort: a handful of entries) */
	for (int a = 1; a < n; a++)
		for (int b = a; b > 0 && mags[b - 1] > mags[b]; b--) {
			double t = mags[b];
			mags[b] = mags[b - 1];
			mags[b - 1] = t;
		}
	return n;
}
