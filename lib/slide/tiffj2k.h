/*
 * tiffj2k.h: one JPEG 2000 tile of an Aperio SVS level decoded to RGB,
 * the way OpenSlide 3.4.1 decodes it (lib/slide/tiffjpeg.c reads the tile's raw
 * bytes and calls this).
 *
 * Aperio stores each tile as a bare J2K codestream (no JP2 boxes) in TIFF
 * compression 33003 (components Y, Cb, Cr, the chroma usually subsampled
 * 2:1 across) or 33005 (R, G, B). OpenSlide 3.4.1 decodes the codestream
 * with OpenJPEG's default parameters (every resolution, every layer) and
 * takes each component sample as a byte: for Y'CbCr with a chroma sample
 * to every sub_x x sub_y pixels (sub = tile size / component size,
 * integer division), replicated, not interpolated, and the JFIF equations
 * in its own fixed-point form:
 *
 *   R = Y + round(1.402 (Cr - 128))
 *   G = Y + ((round(65536 (0.5 - 0.34414 (Cb - 128)))
 *             + round(-65536 * 0.71414 (Cr - 128))) >> 16)
 *   B = Y + round(1.772 (Cb - 128))
 *
 * each clamped to 0..255 (round() halves away from zero, >> arithmetic:
 * the 0.5 term rounds the sum of the two G terms). The same tables are
 * built here, so the RGB is the same byte for byte; OpenSlide then stores
 * it as opaque ARGB, which composited on white is that RGB again.
 */
#ifndef EOSIN_TIFFJ2K_H
#define EOSIN_TIFFJ2K_H

#include <stddef.h>
#include <stdint.h>

/* Aperio's TIFF compression values */
#define TIFFJ2K_APERIO_YCBCR 33003
#define TIFFJ2K_APERIO_RGB 33005

/* Decode the codestream data[0..len) of a w x h tile (3 components of
 * 8 bits; ycbcr: Y'CbCr, else RGB) to RGB rows pitch bytes apart at dst.
 * 0, or -1 with eosin_error() saying what is wrong (OpenJPEG's own message
 * where it has one). Holds no state between calls: any thread may call
 * it. */
int tiffj2k_decode(const uint8_t *data, size_t len, int w, int h, int ycbcr, uint8_t *dst,
                   size_t pitch);

#endif
