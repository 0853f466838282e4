/*
 * image.c: JPEG decoding (libturbojpeg), Pillow-exact resampling, centre
 * crop and normalisation. See image.h.
 */
#include "model/image.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

int image_decode_jpeg(const void *jpeg, size_t n, uint8_t **rgb, int *w, int *h)
{
	*rgb = NULL;
	if (n < 4)
		return eosin_error("not a JPEG (%zu bytes)", n);
	tjhandle tj = tjInitDecompress();
	if (!tj)
		return eosin_error("cannot start the JPEG decoder");
	int sub, cs;
	if (tjDecompressHeader3(tj, jpeg, (unsigned long)n, w, h, &sub, &cs) < 0) {
		eosin_error("corrupt JPEG: %s", tjGetErrorStr2(tj));
		tjDestroy(tj);
		return -1;
	}
	if (*w <= 0 || *h <= 0 || (size_t)*w * (size_t)*h > ((size_t)1 << 28)) {
		tjDestroy(tj);
		return eosin_error("JPEG of %dx%d pixels refused", *w, *h);
	}
	uint8_t *buf = malloc((size_t)*w * *h * 3);
	if (!buf) {
		tjDestroy(tj);
		return eosin_error("out of memory for a %dx%d image", *w, *h);
	}
	if (tjDecompress2(tj, jpeg, (unsigned long)n, buf, *w, 0, *h, TJPF_RGB, 0) < 0) {
		eosin_error("corrupt JPEG: %s", tjGetErrorStr2(tj));
		free(buf);
		tjDestroy(tj);
		return -1;
	}
	tjDestroy(tj);
	*rgb = buf;
	return 0;
}

int resample_filter_parse(const char *name, enum resample_filter *f)
{
	if (!strcmp(name, "bicubic"))
		*f = RESAMPLE_BICUBIC;
	else if (!strcmp(name, "bilinear"))
		*f = RESAMPLE_BILINEAR;
	else
		return eosin_error("unknown interpolation '%s' (want bicubic or bilinear)", name);
	return 0;
}

/* ---- Pillow's resampling ---- */

#define PRECISION_BITS (32 - 8 - 2)

static double filter_bicubic(double x)
{
	const double a = -0.5;
	if (x < 0.0)
		x = -x;
	if (x < 1.0)
		return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
	if (x < 2.0)
		return (((x - 5) * x + 8) * x - 4) * a;
	return 0.0;
}

static double filter_bilinear(double x)
{
	if (x < 0.0)
		x = -x;
	return x < 1.0 ? 1.0 - x : 0.0;
}

/* Fixed-point coefficients for in -> out samples: bounds (out,2) = first
 * source index and count; kk (out, ksize). Returns ksize, -1 on ENOMEM. */
static int coeffs(int in, int out, enum resample_filter f, int **bounds_out, int32_t **kk_out)
{
	double support0 = f == RESAMPLE_BICUBIC ? 2.0 : 1.0;
	double (*filter)(double) = f == RESAMPLE_BICUBIC ? filter_bicubic : filter_bilinear;
	double scale = (double)in / out, filterscale = scale < 1.0 ? 1.0 : scale;
	double support = support0 * filterscale;
	int ksize = (int)ceil(support) * 2 + 1;
	double *k = malloc((size_t)ksize * sizeof *k);
	int *bounds = malloc((size_t)out * 2 * sizeof *bounds);
	int32_t *kk = calloc((size_t)out * ksize, sizeof *kk);
	if (!k || !bounds || !kk) {
		free(k);
		free(bounds);
		free(kk);
		return -1;
	}
	for (int xx = 0; xx < out; xx++) {
		double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
		int xmin = (int)(center - support + 0.5);
		if (xmin < 0)
			xmin = 0;
		int xmax = (int)(center + support + 0.5);
		if (xmax > in)
			xmax = in;
		xmax -= xmin;
		for (int x = 0; x < xmax; x++) {
			k[x] = filter((x + xmin - center + 0.5) * ss);
			ww += k[x];
		}
		for (int x = 0; x < xmax; x++) {
			double v = ww != 0.0 ? k[x] / ww : k[x];
			kk[xx * ksize + x] =
			    (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
		}
		bounds[2 * xx] = xmin;
		bounds[2 * xx + 1] = xmax;
	}
	free(k);
	*bounds_out = bounds;
	*kk_out = kk;
	return ksize;
}

static inline uint8_t clip8(int32_t v)
{
	v >>= PRECISION_BITS;
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int image_resize(const uint8_t *in, int w, int h, uint8_t *out, int ow, int oh,
                 enum resample_filter filter)
{
	if (ow == w && oh == h) {
		memcpy(out, in, (size_t)w * h * 3);
		return 0;
	}
	int *bh = NULL, *bv = NULL;
	int32_t *kh = NULL, *kv = NULL;
	int kszh = coeffs(w, ow, filter, &bh, &kh);
	int kszv = coeffs(h, oh, filter, &bv, &kv);
	if (kszh < 0 || kszv < 0) {
		free(bh), free(kh), free(bv), free(kv);
		return eosin_error("out of memory resizing %dx%d", w, h);
	}
	int need_h = ow != w, need_v = oh != h;
	/* Source rows the vertical pass reads. */
	int yfirst = bv[0], ylast = bv[2 * (oh - 1)] + bv[2 * (oh - 1) + 1];
	const uint8_t *src = in;
	uint8_t *tmp = NULL;
	int th = h;
	if (need_h) {
		th = need_v ? ylast - yfirst : h;
		int y0 = need_v ? yfirst : 0;
		tmp = malloc((size_t)ow * th * 3);
		if (!tmp) {
			free(bh), free(kh), free(bv), free(kv);
			return eosin_error("out of memory resizing %dx%d", w, h);
		}
		for (int y = 0; y < th; y++) {
			const uint8_t *row = in + (size_t)(y + y0) * w * 3;
			uint8_t *dst = (need_v ? tmp : out) + (size_t)y * ow * 3;
			for (int xx = 0; xx < ow; xx++) {
				int xmin = bh[2 * xx], xmax = bh[2 * xx + 1];
				const int32_t *k = kh + (size_t)xx * kszh;
				for (int c = 0; c < 3; c++) {
					int32_t ss = 1 << (PRECISION_BITS - 1);
					for (int x = 0; x < xmax; x++)
						ss += row[(x + xmin) * 3 + c] * k[x];
					dst[xx * 3 + c] = clip8(ss);
				}
			}
		}
		src = tmp;
		if (need_v)
			for (int i = 0; i < oh; i++)
				bv[2 * i] -= yfirst;
	}
	if (need_v) {
		int sw = need_h ? ow : w;
		for (int yy = 0; yy < oh; yy++) {
			int ymin = bv[2 * yy], ymax = bv[2 * yy + 1];
			const int32_t *k = kv + (size_t)yy * kszv;
			uint8_t *dst = out + (size_t)yy * sw * 3;
			for (int xx = 0; xx < sw * 3; xx++) {
				int32_t ss = 1 << (PRECISION_BITS - 1);
				for (int y = 0; y < ymax; y++)
					ss += src[(size_t)(y + ymin) * sw * 3 + xx] * k[y];
				dst[xx] = clip8(ss);
			}
		}
	}
	free(tmp);
	free(bh);
	free(kh);
	free(bv);
	free(kv);
	return 0;
}

/* Python's round() of d/2 for an integer d (half to even). */
static int half_round_even(int d)
{
	int q = d / 2;
	if (d % 2 == 0)
		return q;
	return q % 2 == 0 ? q : q + 1;
}

static void resized_size(const struct preprocess *pp, int w, int h, int *rw, int *rh)
{
	*rw = w;
	*rh = h;
	if (pp->resize <= 0)
		return;
	if (w <= h) {
		*rw = pp->resize;
		*rh = (int)((long long)pp->resize * h / w);
	} else {
		*rh = pp->resize;
		*rw = (int)((long long)pp->resize * w / h);
	}
}

void preprocess_output_size(const struct preprocess *pp, int w, int h, int *ow, int *oh)
{
	resized_size(pp, w, h, ow, oh);
	if (pp->crop > 0) {
		*ow = pp->crop;
		*oh = pp->crop;
	}
}

int image_preprocess(const uint8_t *rgb, int w, int h, const struct preprocess *pp, float *out)
{
	int rw, rh;
	resized_size(pp, w, h, &rw, &rh);
	const uint8_t *img = rgb;
	uint8_t *resized = NULL;
	if (rw != w || rh != h) {
		resized = malloc((size_t)rw * rh * 3);
		if (!resized)
			return eosin_error("out of memory");
		if (image_resize(rgb, w, h, resized, rw, rh, pp->filter) < 0) {
			free(resized);
			return -1;
		}
		img = resized;
	}
	int cw = rw, ch = rh, top = 0, left = 0;
	if (pp->crop > 0) {
		if (rw < pp->crop || rh < pp->crop) {
			free(resized);
			return eosin_error("image %dx%d is smaller than the crop %d", rw, rh, pp->crop);
		}
		cw = ch = pp->crop;
		top = half_round_even(rh - ch);
		left = half_round_even(rw - cw);
	}
	for (int c = 0; c < 3; c++) {
		float m = pp->mean[c], s = pp->std[c];
		float *o = out + (size_t)c * ch * cw;
		for (int y = 0; y < ch; y++) {
			const uint8_t *row = img + ((size_t)(y + top) * rw + left) * 3 + c;
			for (int x = 0; x < cw; x++)
				o[(size_t)y * cw + x] = ((float)row[x * 3] / 255.0f - m) / s;
		}
	}
	free(resized);
	return 0;
}
