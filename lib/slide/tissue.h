/*
 * tissue.h: where the tissue is, from a low-resolution RGB image of the
 * whole slide, and how much of a level-0 box it covers.
 *
 * Method: saturation S = (max - min) / max of each pixel (HSV), 0..255;
 * glass and background are nearly grey (low S), stained tissue is not;
 * near-black pixels (scanner padding, max < 25) count as S = 0. S is
 * median-filtered over about 12 um, so that fibrous tissue (pale collagen
 * with gaps) reads as the region it is, then thresholded at Otsu's
 * threshold of the filtered histogram, floored at TISSUE_MIN_S so that a
 * blank slide does not turn its noise into tissue. A morphological close
 * and open with a square of about 8 um radius fill small gaps and remove
 * speckle, and connected components smaller than min_area micrometres^2
 * (dust, debris) are dropped.
 *
 * The mask owns its buffers; tissue_mask_release() frees them. Queries are
 * read-only and may run from several threads.
 */
#ifndef EOSIN_TISSUE_H
#define EOSIN_TISSUE_H

#include <stddef.h>
#include <stdint.h>

#define TISSUE_MIN_S 20

struct tissue_mask {
	int w, h;           /* mask size, px */
	double dsx, dsy;    /* level-0 px per mask px */
	uint8_t *mask;      /* (h, w): 1 tissue, 0 not */
	uint32_t *integral; /* (h+1, w+1): tissue pixels above-left */
	int threshold;      /* saturation threshold used, 0..255 */
	double fraction;    /* tissue fraction of the whole image */
};

/* Otsu's threshold of a 256-bin histogram: the t maximising the
 * between-class variance of bins < t and >= t; 0 for an empty or one-valued
 * histogram. */
int otsu_threshold(const uint64_t hist[256]);

/* Saturation 0..255 of one RGB pixel. */
static inline int rgb_saturation(const uint8_t *p)
{
	int mx = p[0], mn = p[0];
	for (int c = 1; c < 3; c++) {
		if (p[c] > mx)
			mx = p[c];
		if (p[c] < mn)
			mn = p[c];
	}
	return mx ? (255 * (mx - mn) + mx / 2) / mx : 0;
}

/* The steps of tissue_detect(), for testing them against plain
 * definitions. tissue_saturation: sat[i] = rgb_saturation() of pixel i of
 * rgb (n, 3), or 0 where its largest component is below 25 (near-black).
 * tissue_median: out = the median of each (2r+1)^2 window of in (h, w),
 * clipped at the border; of an even count, the upper middle value (the
 * smallest v with more than count/2 values <= v). r <= 7. On up to
 * `threads` threads, with the same result for any number. */
void tissue_saturation(const uint8_t *rgb, size_t n, uint8_t *sat);
void tissue_median(const uint8_t *in, int w, int h, int r, uint8_t *out, int threads);

/* Build the mask from rgb (h, w, 3) whose pixels are dsx x dsy level-0
 * pixels of base_mpp um each. min_area_um2 is the smallest component kept.
 * The saturation, median and morphology run on up to `threads` threads
 * (images under 64 Ki pixels on one); the mask is the same for any number. */
int tissue_detect(struct tissue_mask *m, const uint8_t *rgb, int w, int h, double dsx, double dsy,
                  double base_mpp, double min_area_um2, int threads);
void tissue_mask_release(struct tissue_mask *m);

/* Fraction (0..1) of the level-0 box [x, x+extent)^2 covered by tissue:
 * mask pixels whose centre lies in the box; the pixel under the box centre
 * when the box is smaller than one mask pixel. */
double tissue_fraction(const struct tissue_mask *m, int64_t x, int64_t y, int64_t extent);

#endif
