/*
 * heatmap.h: paint per-tile scores over a slide's thumbnail.
 *
 * The thumbnail comes from libvips (OpenSlide for slide formats, any image
 * libvips reads otherwise), at most max_side pixels on its longer side.
 * Each tile is a level-0 square (x, y, extent); its score is mapped to a
 * viridis-like colour (lowest score dark blue, highest yellow, scaled
 * between the smallest and largest score given) and alpha-blended over the
 * thumbnail; where tiles overlap the higher score wins. A colour bar with
 * the score range runs down the right side. The result is an RGB PNG.
 */
#ifndef EOSIN_HEATMAP_H
#define EOSIN_HEATMAP_H

#include <stddef.h>

struct heat_tile {
	double x, y;     /* level-0 top-left corner, px */
	double extent;   /* level-0 side, px */
	double score;
};

struct heatmap_opts {
	int max_side;    /* thumbnail's longer side, px (e.g. 1024) */
	double alpha;    /* colour weight over the thumbnail, 0..1 */
	const char *title;  /* drawn above the colour bar when fonts allow; may be NULL */
};

/* Render tiles over slide's thumbnail into out_png. Level-0 size comes from
 * the slide (OpenSlide) or the image itself. */
int heatmap_render(const char *slide, const struct heat_tile *tiles, size_t n,
                   const struct heatmap_opts *opts, const char *out_png);

/* The colour map at t in [0, 1] (clamped) as 8-bit RGB. */
void heatmap_colour(double t, unsigned char rgb[3]);

#endif
