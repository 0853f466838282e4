/*
 * test-tile-mpp.c: base resolution from slide properties (lib/slide/slide.c),
 * Otsu's threshold and tissue fractions (lib/slide/tissue.c), on inputs whose
 * answers are worked out by hand.
 */
#include "core/error.h"
#include "slide/slide.h"
#include "tap.h"
#include "slide/tissue.h"

#include <stdlib.h>
#include <string.h>

int main(void)
{
	double mpp;
	enum mpp_source src;

	/* order: override, openslide.mpp-x, tiff resolution, objective power */
	ok(slide_resolve_mpp("0.499", "20000", "centimeter", "20", 0, &mpp, &src) == 0 &&
	       src == MPP_OPENSLIDE && mpp == 0.499,
	   "mpp-x first");
	ok(slide_resolve_mpp("0.499", NULL, NULL, "20", 0.25, &mpp, &src) == 0 &&
	       src == MPP_OVERRIDE && mpp == 0.25,
	   "an override wins over mpp-x");
	ok(slide_resolve_mpp(NULL, "20000", "centimeter", "40", 0, &mpp, &src) == 0 &&
	       src == MPP_TIFF,
	   "tiff tags before objective power");
	ok_near(mpp, 0.5, 1e-12, "20000 px/cm is 0.5 um/px");
	ok(slide_resolve_mpp(NULL, "101600", "inch", NULL, 0, &mpp, &src) == 0 && src == MPP_TIFF,
	   "inch");
	ok_near(mpp, 0.25, 1e-12, "101600 px/inch is 0.25 um/px");
	ok(slide_resolve_mpp(NULL, "72", "inch", "20", 0, &mpp, &src) == 0 &&
	       src == MPP_OBJECTIVE && mpp == 0.5,
	   "72 dpi is no scan: objective power 20 gives 0.5");
	ok(slide_resolve_mpp(NULL, "10", "centimeter", NULL, 0, &mpp, &src) < 0 && src == MPP_NONE,
	   "1 px/mm (1000 um/px) is no scan either");
	ok(strstr(eosin_errmsg(), "--mpp UM or --base-mag M") != NULL, "the refusal names the fix");
	ok(slide_resolve_mpp(NULL, "20000", "none", NULL, 0, &mpp, &src) < 0,
	   "resolution unit none is not a length");
	ok(slide_resolve_mpp("", "", NULL, "x20", 0, &mpp, &src) < 0, "garbage is not a number");
	ok(slide_resolve_mpp("0", NULL, NULL, "0", 0, &mpp, &src) < 0, "zeros are not resolutions");
	ok(slide_resolve_mpp(NULL, NULL, NULL, "40", 0, &mpp, &src) == 0 && mpp == 0.25,
	   "objective 40 is 0.25 um/px");
	ok(!strcmp(mpp_source_name(MPP_TIFF), "tiff") &&
	       !strcmp(mpp_source_name(MPP_OVERRIDE), "override"),
	   "source names match the schema");

	/* level choice: levels at ds 1, 4, 16 of a 0.25 um/px scan */
	int64_t wd[3] = {40000, 10000, 2500};
	double ds[3] = {1, 4.0001, 16.0004};
	struct slide s = {.nlevels = 3, .width = wd, .height = wd, .ds = ds, .base_mpp = 0.25};
	ok(slide_level_for(&s, 0.25, 0.01) == 0, "40x from level 0");
	ok(slide_level_for(&s, 0.5, 0.01) == 0, "20x from level 0 (level 1 is 1.0 um/px)");
	ok(slide_level_for(&s, 1.0, 0.01) == 1, "10x from level 1, ds 4.0001 within tolerance");
	ok(slide_level_for(&s, 2.0, 0.01) == 1, "5x from level 1");
	ok(slide_level_for(&s, 4.0, 0.01) == 2, "2.5x from level 2");
	ok(slide_level_for(&s, 0.1, 0.01) == 0, "finer than the scan: level 0");

	ok(rgb_saturation((const uint8_t[]){255, 255, 255}) == 0, "white has no saturation");
	ok(rgb_saturation((const uint8_t[]){200, 100, 200}) == 128, "(200,100,200) has S 128");
	ok(rgb_saturation((const uint8_t[]){0, 0, 0}) == 0, "black has S 0");

	/* a 100x100 thumbnail, 4 level-0 px per pixel, 1 um/px at level 0:
	 * white, with a pink square over pixels [20, 60) x [30, 90) */
	int w = 100, h = 100;
	uint8_t *rgb = malloc((size_t)w * h * 3);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t *p = rgb + 3 * (y * w + x);
			int in = x >= 20 && x < 60 && y >= 30 && y < 90;
			p[0] = in ? 225 : 245;
			p[1] = in ? 150 : 245;
			p[2] = in ? 195 : 246;
		}
	/* and a 2x2 pink speck (64 um^2): dust */
	for (int y = 5; y < 7; y++)
		for (int x = 90; x < 92; x++)
			memcpy(rgb + 3 * (y * w + x), (const uint8_t[]){225, 150, 195}, 3);
	struct tissue_mask m;
	ok(tissue_detect(&m, rgb, w, h, 4, 4, 1.0, 5000, 1) == 0, "tissue_detect runs");
	ok_near(m.fraction, 40.0 * 60 / (w * h), 0.01, "tissue is the square: 24%% of the image");
	ok(m.mask[5 * w + 90] == 0, "the speck is dropped");
	ok(tissue_fraction(&m, 120, 160, 80) == 1, "a box inside the square: 1");
	ok(tissue_fraction(&m, 0, 0, 40) == 0, "a box on glass: 0");
	/* level-0 [160, 560) x [0, 400): mask columns 40..99 of which 40..59
	 * are tissue, rows 0..99 of which 30..89: 20*60 / (60*100); the
	 * median rounds the square's corners a little */
	ok_near(tissue_fraction(&m, 160, 0, 400), 20.0 * 60 / (60 * 100), 0.01,
	        "a box over the square's right edge");
	ok(tissue_fraction(&m, 100, 140, 2) == 1, "a box smaller than a mask pixel: its pixel");
	tissue_mask_release(&m);
	free(rgb);
	return tap_done();
}
