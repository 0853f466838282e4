/*
 * tissue.h: where the tissue is, from a low-resolution RGB image of the
 * whole slide, and how much of a level-0 box it covers.
 *
 * Method. The glass is found from the image itself: its brightness V_g is
 * the mode of V = max(R, G, B) over unsaturated (HSV saturation S < 24 of
 * 255), bright (128 <= V < 254; pure white is padding) pixels; the glass's
 * noise ends where the histogram falls below a fiftieth of that mode,
 * below (V_lo) and above, and its saturation's likewise above the mode of
 * the glass's S (S_hi). Tissue is a pixel with S >= S_hi + TISSUE_S_MARGIN (never below
 * TISSUE_MIN_S, nor above 40) or V <= min(V_lo - TISSUE_V_MARGIN,
 * V_g - TISSUE_MIN_DARK). So pale tissue (fat's membranes, mucin, loose stroma,
 * lymphocytes) counts with dense tumour: the threshold separates tissue
 * from glass, never tissue from tissue.
 * Near-black pixels (V < 25: scanner padding) are never tissue. Pen ink
 * is taken out first: saturated (S >= TISSUE_INK_MIN_S) green to blue
 * (hue about 75 to 245 degrees, which haematoxylin and eosin do not
 * reach) or dark grey (V < TISSUE_INK_DARK, S < 90), opened by one pixel
 * so that strokes count and stray pixels do not. Then a morphological
 * close with a square of radius TISSUE_CLOSE_UM joins fat's membranes,
 * fibres' gaps and the cut cells at tissue edges (glass narrower than
 * about twice that between tissue becomes tissue: a crack, not a
 * margin), holes (4-connected glass not touching the border) of up to
 * TISSUE_MAX_HOLE_UM2 are filled (fat's lumens, small glands), the ink
 * is cut out again, an open over TISSUE_OPEN_UM removes speckle, and
 * 8-connected pieces smaller than min_area micrometres^2 (dust, debris)
 * are dropped.
 *
 * The mask owns its buffers; tissue_mask_release() frees them. Queries are
 * read-only and may run from several threads.
 */
#ifndef EOSIN_TISSUE_H
#define EOSIN_TISSUE_H

#include <stddef.h>
#include <stdint.h>

#define TISSUE_MIN_S 8            /* saturation floor, 0..255 */
#define TISSUE_S_MARGIN 1         /* saturation above the glass's noise */
#define TISSUE_V_MARGIN 4         /* brightness below the glass's noise */
#define TISSUE_MIN_DARK 16        /* brightness floor below the glass, 0..255 */
#define TISSUE_INK_MIN_S 64       /* saturation of coloured ink, 0..255 */
#define TISSUE_INK_DARK 64        /* brightness under which grey is ink */
#define TISSUE_CLOSE_UM 16.0     /* close radius, um */
#define TISSUE_OPEN_UM 8.0        /* open radius, um */
#define TISSUE_MAX_HOLE_UM2 1e5   /* largest hole filled, um^2 (0.1 mm^2) */

struct tissue_mask {
	int w, h;           /* mask size, px */
	double dsx, dsy;    /* level-0 px per mask px */
	uint8_t *mask;      /* (h, w): 1 tissue, 0 not */
	uint8_t *ink;       /* (h, w): 1 pen ink (rejected), 0 not */
	uint32_t *integral; /* (h+1, w+1): tissue pixels above-left */
	int glass_v;        /* brightness of the glass, 0..255 */
	int threshold;      /* saturation threshold used: S >= it is tissue, 0..255 */
	int v_threshold;    /* brightness threshold used: V <= it is tissue */
	double fraction;    /* tissue fraction of the whole image */
	double glass_fraction; /* fraction of the image taken as glass */
	double ink_fraction;   /* fraction of the image that is ink */
};

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

/* tissue_saturation: sat[i] = rgb_saturation() of pixel i of rgb (n, 3),
 * or 0 where its largest component is below 25 (near-black). */
void tissue_saturation(const uint8_t *rgb, size_t n, uint8_t *sat);

/* Build the mask from rgb (h, w, 3) whose pixels are dsx x dsy level-0
 * pixels of base_mpp um each. min_area_um2 is the smallest component kept.
 * The saturation and morphology run on up to `threads` threads
 * (images under 64 Ki pixels on one); the mask is the same for any number. */
int tissue_detect(struct tissue_mask *m, const uint8_t *rgb, int w, int h, double dsx, double dsy,
                  double base_mpp, double min_area_um2, int threads);
void tissue_mask_release(struct tissue_mask *m);

/* Fraction (0..1) of the level-0 box [x, x+extent)^2 covered by tissue:
 * mask pixels whose centre lies in the box; the pixel under the box centre
 * when the box is smaller than one mask pixel. */
double tissue_fraction(const struct tissue_mask *m, int64_t x, int64_t y, int64_t extent);

#endif
