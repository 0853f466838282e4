/*
 * openslide_ref.h: what OpenSlide itself reads, the reference the direct
 * decoders (lib/slide/tiffjpeg.c, lib/slide/tiffj2k.c) are held to.
 */
#ifndef EOSIN_TEST_OPENSLIDE_REF_H
#define EOSIN_TEST_OPENSLIDE_REF_H

#include <openslide.h>
#include <stdint.h>
#include <stdlib.h>

/* OpenSlide's region at a level (x, y: level-0 px), premultiplied ARGB
 * composited on white, into rgb (h, w, 3). 0, or -1 when OpenSlide says
 * it failed. */
static int openslide_rgb(openslide_t *osr, int level, int64_t x, int64_t y, int64_t w, int64_t h,
                         uint8_t *rgb)
{
	uint32_t *argb = malloc((size_t)(w * h) * 4);
	if (!argb)
		return -1;
	openslide_read_region(osr, argb, x, y, level, w, h);
	for (int64_t i = 0; i < w * h; i++) {
		uint32_t p = argb[i];
		unsigned white = 255 - (p >> 24);
		unsigned c[3] = {((p >> 16) & 255) + white, ((p >> 8) & 255) + white,
		                 (p & 255) + white};
		for (int k = 0; k < 3; k++)
			rgb[3 * i + k] = (uint8_t)(c[k] > 255 ? 255 : c[k]);
	}
	free(argb);
	return openslide_get_error(osr) ? -1 : 0;
}

#endif
