/*
 * test-tile-resample.c: lib/slide/resample.c against libvips' lanczos3
 * (vips_resize), the reference it replaces in eosin-tile, on a band-limited
 * RGB picture (sums of slow sinusoids: where both filters should agree),
 * shrinking by 2, by 513/256 and by 256.5/256, and enlarging 5/2. The
 * stated tolerance: mean absolute difference at most 0.5 (1.0 when
 * enlarging, which vips_resize does by another route) and every byte
 * within 4 (8-bit values), away from a 6 px border where the two treat
 * the image's edge differently (clipped and renormalised weights here,
 * edge copies in libvips). Also: exact identity, offsets, bad geometry
 * refused, and the exact bytes against a plain transcription of the
 * arithmetic resample.h states (every weight of the window, no SIMD).
 */
#include "core/error.h"
#include "slide/resample.h"
#include "tap.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

static uint8_t *picture(int w, int h)
{
	uint8_t *p = malloc((size_t)w * h * 3);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int c = 0; c < 3; c++) {
				double v = 128 + 60 * sin(x * 0.07 + c) * cos(y * 0.05 - c) +
				           40 * sin((x + 2 * y) * 0.031 + 2 * c);
				p[((size_t)y * w + x) * 3 + c] = (uint8_t)lround(v);
			}
	return p;
}

/* libvips' lanczos3 to out x out from in x in. */
static uint8_t *reference(const uint8_t *img, int in, int out)
{
	VipsImage *v = vips_image_new_from_memory(img, (size_t)in * in * 3, in, in, 3,
	                                          VIPS_FORMAT_UCHAR),
	          *r = NULL, *c = NULL;
	uint8_t *ret = NULL;
	if (v && !vips_resize(v, &r, (double)out / in, "kernel", VIPS_KERNEL_LANCZOS3, NULL) &&
	    !vips_crop(r, &c, 0, 0, out, out, NULL)) {
		size_t n;
		void *m = vips_image_write_to_memory(c, &n);
		if (m && n == (size_t)out * out * 3) {
			ret = malloc(n);
			memcpy(ret, m, n);
		}
		g_free(m);
	}
	if (c)
		g_object_unref(c);
	if (r)
		g_object_unref(r);
	if (v)
		g_object_unref(v);
	return ret;
}

static void against_vips(struct resampler *rs, int in, double span, int out, double mean_tol)
{
	uint8_t *img = picture(in, in), *ours = malloc((size_t)out * out * 3);
	uint8_t *ref = reference(img, in, out);
	int r = resample_rgb(rs, img, in, in, (size_t)in * 3, 0, 0, span, span, ours, out, out);
	double sum = 0;
	int worst = 0;
	long n = 0;
	for (int y = 6; ref && y < out - 6; y++)
		for (int x = 6; x < out - 6; x++)
			for (int c = 0; c < 3; c++) {
				size_t i = ((size_t)y * out + x) * 3 + c;
				int d = abs((int)ours[i] - (int)ref[i]);
				sum += d;
				worst = d > worst ? d : worst;
				n++;
			}
	ok(r == 0 && ref && n > 0 && sum / n <= mean_tol && worst <= 4,
	   "%d px (span %g) to %d: mean |diff| %.3f, max %d against vips lanczos3", in, span, out,
	   n ? sum / n : -1.0, worst);
	free(img);
	free(ours);
	free(ref);
}

/* ---- the arithmetic of resample.h, written out plainly ---- */

static double ref_lanczos3(double x)
{
	x = fabs(x);
	if (x < 1e-9)
		return 1;
	if (x >= 3)
		return 0;
	double px = M_PI * x;
	return 3 * sin(px) * sin(px / 3) / (px * px);
}

/* The 14-bit weights of output i: for input j in [*lo, *hi), w[j - lo]. */
static void ref_weights(int in_n, double offset, double span, int out_n, int i, int *lo,
                        int *hi, int32_t *w)
{
	double ratio = span / out_n, s = ratio > 1 ? ratio : 1;
	double u = offset + (i + 0.5) * ratio, d[4096], sum = 0;
	*lo = (int)floor(u - 3 * s);
	*hi = (int)ceil(u + 3 * s);
	*lo = *lo < 0 ? 0 : *lo;
	*hi = *hi > in_n ? in_n : *hi;
	for (int j = *lo; j < *hi; j++)
		sum += d[j - *lo] = ref_lanczos3((j + 0.5 - u) / s);
	/* each rounded, and what the rounding lost given to the largest
	 * (the first of equals) so that they sum to exactly 1 << 14 */
	int total = 0, big = 0;
	for (int j = 0; j < *hi - *lo; j++) {
		w[j] = (int32_t)lround(d[j] / sum * (1 << RESAMPLE_BITS));
		total += w[j];
		if (w[j] > w[big])
			big = j;
	}
	w[big] += (1 << RESAMPLE_BITS) - total;
}

static uint8_t ref_round(int64_t acc)
{
	acc = (acc + (1 << (RESAMPLE_BITS - 1))) >> RESAMPLE_BITS;
	return (uint8_t)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
}

/* Vertical pass to 8 bits, then horizontal. */
static void ref_resample(const uint8_t *in, int in_w, int in_h, double ox, double oy, double sx,
                         double sy, uint8_t *out, int out_w, int out_h)
{
	uint8_t *mid = malloc((size_t)in_w * out_h * 3);
	int32_t w[4096];
	int lo, hi;
	for (int y = 0; y < out_h; y++) {
		ref_weights(in_h, oy, sy, out_h, y, &lo, &hi, w);
		for (int x = 0; x < in_w * 3; x++) {
			int64_t acc = 0;
			for (int j = lo; j < hi; j++)
				acc += (int64_t)w[j - lo] * in[(size_t)j * in_w * 3 + x];
			mid[(size_t)y * in_w * 3 + x] = ref_round(acc);
		}
	}
	for (int x = 0; x < out_w; x++) {
		ref_weights(in_w, ox, sx, out_w, x, &lo, &hi, w);
		for (int y = 0; y < out_h; y++)
			for (int c = 0; c < 3; c++) {
				int64_t acc = 0;
				for (int j = lo; j < hi; j++)
					acc += (int64_t)w[j - lo] * mid[((size_t)y * in_w + j) * 3 + c];
				out[((size_t)y * out_w + x) * 3 + c] = ref_round(acc);
			}
	}
	free(mid);
}

/* resample_rgb against the plain transcription, byte for byte, on a
 * picture with noise (every tap matters). */
static void exact(struct resampler *rs, int in_w, int in_h, double ox, double oy, double sx,
                  double sy, int out_w, int out_h)
{
	uint8_t *in = picture(in_w, in_h);
	uint64_t state = 12345;
	for (size_t i = 0; i < (size_t)in_w * in_h * 3; i++) {
		state = state * 6364136223846793005ULL + 1442695040888963407ULL;
		int v = in[i] + (int)((state >> 60) & 15) - 8;
		in[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
	}
	uint8_t *got = malloc((size_t)out_w * out_h * 3), *want = malloc((size_t)out_w * out_h * 3);
	int r = resample_rgb(rs, in, in_w, in_h, (size_t)in_w * 3, ox, oy, sx, sy, got, out_w,
	                     out_h);
	ref_resample(in, in_w, in_h, ox, oy, sx, sy, want, out_w, out_h);
	ok(r == 0 && !memcmp(got, want, (size_t)out_w * out_h * 3),
	   "%dx%d (from %g,%g, span %gx%g) to %dx%d: the bytes resample.h's arithmetic gives",
	   in_w, in_h, ox, oy, sx, sy, out_w, out_h);
	free(in);
	free(got);
	free(want);
}

int main(int argc, char **argv)
{
	(void)argc;
	if (VIPS_INIT(argv[0]))
		skip_all("libvips does not start");
	vips_concurrency_set(1);
	struct resampler rs = {0};
	/* vips_resize's own geometry: the whole input maps to the output */
	against_vips(&rs, 512, 512, 256, 0.5);
	against_vips(&rs, 513, 513, 256, 0.5);
	against_vips(&rs, 257, 257, 256, 0.5);
	against_vips(&rs, 100, 100, 250, 1.0); /* vips enlarges by another route */

	exact(&rs, 257, 257, 0, 0, 257, 257, 256, 256);
	exact(&rs, 513, 513, 0, 0, 513, 513, 256, 256);
	exact(&rs, 258, 260, 0.37, 0.81, 256.9, 256.9, 256, 256);
	exact(&rs, 300, 97, 3.5, 0.25, 290, 90.5, 64, 33);
	exact(&rs, 40, 30, 0, 0, 40, 30, 100, 75); /* enlarging */
	exact(&rs, 1030, 20, 1, 0, 1027, 20, 4, 20); /* wide kernel, one axis 1:1 */

	uint8_t *img = picture(64, 64), *out = malloc(64 * 64 * 3);
	ok(resample_rgb(&rs, img, 64, 64, 64 * 3, 0, 0, 64, 64, out, 64, 64) == 0 &&
	       !memcmp(img, out, 64 * 64 * 3),
	   "same size, no offset: a copy");
	/* a whole-pixel offset of 8 and span 32 at 1:1 is the crop, since the
	 * lanczos3 weights at integer distances are 0 but at 0 */
	ok(resample_rgb(&rs, img, 64, 64, 64 * 3, 8, 16, 32, 32, out, 32, 32) == 0, "offset crop");
	int same = 1;
	for (int y = 0; y < 32; y++)
		same &= !memcmp(out + y * 32 * 3, img + ((y + 16) * 64 + 8) * 3, 32 * 3);
	ok(same, "an integer offset at 1:1 gives the input's pixels");
	ok(resample_rgb(&rs, img, 64, 64, 64 * 3, 40, 0, 32, 32, out, 32, 32) < 0 &&
	       strstr(eosin_errmsg(), "bad geometry"),
	   "offset + span past the input is refused");
	free(img);
	free(out);
	resampler_release(&rs);
	vips_shutdown();
	return tap_done();
}
