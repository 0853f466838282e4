/*
 * resample.h: fast separable Lanczos-3 resampling of 8-bit RGB, the one
 * eosin-tile uses to bring a level region to exactly px x px.
 *
 * The filter: output pixel i (centre i + 0.5) samples the input at
 * u = offset + (i + 0.5) * span / out_n, where [offset, offset + span)
 * (input pixels, may be fractional) is the part of the input the out_n
 * pixels cover. Weights are lanczos3((j + 0.5 - u) / s) for the input
 * pixels j within 3 s of u, where s = max(1, span / out_n) (the kernel is
 * widened when shrinking, so it also low-passes), clipped at the input's
 * edges and normalised to sum 1. They are held in 14-bit fixed point:
 * each rounded to nearest, and what the rounding lost added to the
 * largest (the first of equals), so that they sum to exactly 1 << 14.
 * Vertical pass first (8-bit intermediate), then horizontal, each summed
 * in 32-bit integers, rounded (+ 1 << 13, shifted down) and clamped to
 * 0..255: the same inputs give the same bytes on every machine and for
 * any thread count. Only the weights' nonzero span is multiplied.
 *
 * struct resampler caches the weight tables of the last geometry (a tile
 * run has only a few) and its scratch rows; one per thread, zeroed to
 * start, resampler_release() frees it.
 */
#ifndef EOSIN_RESAMPLE_H
#define EOSIN_RESAMPLE_H

#include <stddef.h>
#include <stdint.h>

/* Weights along one axis: out_n outputs, each `taps` weights starting at
 * input index first[i] (first[i] + taps <= in_n). */
struct resample_axis {
	int in_n, out_n;
	double offset, span;
	int taps;
	int *first;        /* (out_n) */
	int16_t *weight;   /* (out_n, taps), sum 1 << RESAMPLE_BITS each */
};

#define RESAMPLE_BITS 14
#define RESAMPLE_AXES 4

struct resampler {
	struct resample_axis axes[RESAMPLE_AXES]; /* recently used geometries */
	int next;                                 /* slot the next new one replaces */
	uint8_t *a, *b;                           /* pass outputs */
	size_t a_cap, b_cap;
};

/* Resample the in_w x in_h RGB image at `in` (rows stride bytes apart),
 * of which the span_x x span_y pixels from (off_x, off_y) are the area
 * wanted, to out_w x out_h RGB at `out` (rows out_w * 3 bytes).
 * off + span <= the input size on both axes. */
int resample_rgb(struct resampler *r, const uint8_t *in, int in_w, int in_h, size_t stride,
                 double off_x, double off_y, double span_x, double span_y, uint8_t *out,
                 int out_w, int out_h);

void resampler_release(struct resampler *r);

#endif
