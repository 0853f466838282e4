/*
 * resample.c: separable Lanczos-3, fixed point. See resample.h.
 *
 * Why not libvips here: vips_resize() on a 257 px region costs about
 * 3 ms, almost all of it building and running a pipeline for one small
 * image, which is more than decoding, resampling and encoding the tile
 * together. The arithmetic itself is a few hundred thousand multiply-adds.
 * Both passes are one kernel over whole rows (pmaddwd, two taps at a time:
 * 32 bytes with AVX2 where the CPU has it, else 16 with SSE2, which every
 * x86-64 has; plain C elsewhere, all giving the same bytes): the horizontal
 * pass runs on the transposed image, as transposing costs less than a
 * per-pixel loop over interleaved RGB taps.
 */
#include "slide/resample.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static double lanczos3(double x)
{
	x = fabs(x);
	if (x < 1e-9)
		return 1;
	if (x >= 3)
		return 0;
	double px = M_PI * x;
	return 3 * sin(px) * sin(px / 3) / (px * px);
}

static void axis_release(struct resample_axis *a)
{
	free(a->first);
	free(a->weight);
	memset(a, 0, sizeof *a);
}

/* Output i's taps weights (fixed point, summing to 1 << RESAMPLE_BITS)
 * into wi, from input pixel first onwards: Lanczos-3 at (j + 0.5 - u) /
 * scale around u = offset + (i + 0.5) ratio, normalised, rounded, the
 * rounding's remainder on the largest. w is taps doubles of scratch. */
static int weights_of(int i, int in_n, double offset, double ratio, double scale, int taps,
                      double *w, int16_t *wi)
{
	double support = 3 * scale;
	double u = offset + (i + 0.5) * ratio;
	int lo = (int)floor(u - support), hi = (int)ceil(u + support);
	lo = lo < 0 ? 0 : lo;
	hi = hi > in_n ? in_n : hi;
	if (hi - lo > taps) /* cannot happen: 2 * support + 2 covers it */
		hi = lo + taps;
	int start = lo + taps > in_n ? in_n - taps : lo;
	double sum = 0;
	for (int k = 0; k < taps; k++) {
		int j = start + k;
		w[k] = j >= lo && j < hi ? lanczos3((j + 0.5 - u) / scale) : 0;
		sum += w[k];
	}
	if (sum == 0) { /* u outside the input: nearest pixel */
		int j = (int)u < in_n ? (int)u : in_n - 1;
		w[j - start] = sum = 1;
	}
	int total = 0, big = 0;
	for (int k = 0; k < taps; k++) {
		wi[k] = (int16_t)lround(w[k] / sum * (1 << RESAMPLE_BITS));
		total += wi[k];
		if (wi[k] > wi[big])
			big = k;
	}
	wi[big] = (int16_t)(wi[big] + (1 << RESAMPLE_BITS) - total); /* exact sum */
	return start;
}

/* taps is a bound; the weights that came out nonzero span fewer (the
 * kernel's ends and the rounding leave zeros at either side): keep only
 * the widest nonzero run, so that the passes do not multiply by zeros.
 * The same nonzero weights on the same pixels: the same sums. The
 * number of taps kept. */
static int axis_narrow(struct resample_axis *a, int in_n, int out_n, int taps)
{
	int used = 1;
	for (int i = 0; i < out_n; i++) {
		const int16_t *wi = a->weight + (size_t)i * taps;
		int lo = 0, hi = taps - 1;
		while (lo < hi && wi[lo] == 0)
			lo++;
		while (hi > lo && wi[hi] == 0)
			hi--;
		used = hi - lo + 1 > used ? hi - lo + 1 : used;
	}
	int16_t *row = used < taps ? malloc((size_t)used * sizeof *row) : NULL;
	if (!row)
		return taps; /* (no memory: the wide tables give the same result) */
	for (int i = 0; i < out_n; i++) {
		const int16_t *wi = a->weight + (size_t)i * taps;
		int lo = 0;
		while (wi[lo] == 0)
			lo++;
		int start = a->first[i] + lo;
		if (start + used > in_n)
			start = in_n - used;
		for (int k = 0; k < used; k++) {
			int from = start - a->first[i] + k;
			row[k] = from >= 0 && from < taps ? wi[from] : 0;
		}
		/* rows move down in place, narrower, first to last: row i's
		 * new place ends before row i+1's old one starts */
		memcpy(a->weight + (size_t)i * used, row, (size_t)used * sizeof *row);
		a->first[i] = start;
	}
	free(row);
	return used;
}

static int axis_build(struct resample_axis *a, int in_n, double offset, double span, int out_n)
{
	double ratio = span / out_n, scale = ratio > 1 ? ratio : 1, support = 3 * scale;
	int taps = (int)ceil(2 * support) + 2;
	if (taps > in_n)
		taps = in_n;
	axis_release(a);
	a->first = malloc((size_t)out_n * sizeof *a->first);
	a->weight = calloc((size_t)out_n * (size_t)taps, sizeof *a->weight);
	double *w = malloc((size_t)taps * sizeof *w);
	if (!a->first || !a->weight || !w) {
		free(w);
		axis_release(a);
		return eosin_error("out of memory");
	}
	for (int i = 0; i < out_n; i++)
		a->first[i] = weights_of(i, in_n, offset, ratio, scale, taps, w,
		                         a->weight + (size_t)i * taps);
	free(w);
	a->taps = axis_narrow(a, in_n, out_n, taps);
	a->in_n = in_n;
	a->out_n = out_n;
	a->offset = offset;
	a->span = span;
	return 0;
}

/* The cached axis for this geometry, built on first use in a slot other
 * than keep's. */
static const struct resample_axis *axis_for(struct resampler *r, int in_n, double offset,
                                            double span, int out_n,
                                            const struct resample_axis *keep)
{
	for (int k = 0; k < RESAMPLE_AXES; k++) {
		struct resample_axis *a = &r->axes[k];
		if (a->first && a->in_n == in_n && a->out_n == out_n && a->span == span &&
		    a->offset == offset)
			return a;
	}
	struct resample_axis *a = &r->axes[r->next];
	if (a == keep)
		a = &r->axes[(r->next = (r->next + 1) % RESAMPLE_AXES)];
	r->next = (r->next + 1) % RESAMPLE_AXES;
	return axis_build(a, in_n, offset, span, out_n) < 0 ? NULL : a;
}

static inline uint8_t clamp_u8(int32_t v)
{
	v >>= RESAMPLE_BITS;
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* out[x] = sum over k < taps of w[k] * row (first + k)[x], for the n bytes
 * of a row: the one kernel both passes use. */
static void filter_rows(const uint8_t *in, size_t stride, int first, const int16_t *w, int taps,
                        size_t n, uint8_t *out)
{
	const int32_t half = 1 << (RESAMPLE_BITS - 1);
	const uint8_t *row0 = in + (size_t)first * stride;
	size_t x = 0;
#ifdef __SSE2__
	/* 16 bytes at a time, two taps per pmaddwd: bytes of rows k and k+1
	 * interleaved to 16-bit pairs, times (w[k], w[k+1]), summed to 32 bits */
	const __m128i zero = _mm_setzero_si128(), round = _mm_set1_epi32(half);
	for (; x + 16 <= n; x += 16) {
		__m128i s0 = round, s1 = round, s2 = round, s3 = round;
		for (int k = 0; k < taps; k += 2) {
			const uint8_t *ra = row0 + (size_t)k * stride + x;
			__m128i a = _mm_loadu_si128((const __m128i *)ra), b = zero;
			uint32_t pair = (uint16_t)w[k];
			if (k + 1 < taps) {
				b = _mm_loadu_si128((const __m128i *)(ra + stride));
				pair |= (uint32_t)(uint16_t)w[k + 1] << 16;
			}
			__m128i wv = _mm_set1_epi32((int)pair);
			__m128i lo = _mm_unpacklo_epi8(a, b), hi = _mm_unpackhi_epi8(a, b);
			s0 = _mm_add_epi32(s0, _mm_madd_epi16(_mm_unpacklo_epi8(lo, zero), wv));
			s1 = _mm_add_epi32(s1, _mm_madd_epi16(_mm_unpackhi_epi8(lo, zero), wv));
			s2 = _mm_add_epi32(s2, _mm_madd_epi16(_mm_unpacklo_epi8(hi, zero), wv));
			s3 = _mm_add_epi32(s3, _mm_madd_epi16(_mm_unpackhi_epi8(hi, zero), wv));
		}
		s0 = _mm_srai_epi32(s0, RESAMPLE_BITS);
		s1 = _mm_srai_epi32(s1, RESAMPLE_BITS);
		s2 = _mm_srai_epi32(s2, RESAMPLE_BITS);
		s3 = _mm_srai_epi32(s3, RESAMPLE_BITS);
		/* saturating packs clamp to 0..255, as clamp_u8 does */
		__m128i o = _mm_packus_epi16(_mm_packs_epi32(s0, s1), _mm_packs_epi32(s2, s3));
		_mm_storeu_si128((__m128i *)(out + x), o);
	}
#endif
	for (; x < n; x++) {
		int32_t acc = half;
		for (int k = 0; k < taps; k++)
			acc += w[k] * row0[(size_t)k * stride + x];
		out[x] = clamp_u8(acc);
	}
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
/* filter_rows with 32 bytes at a time, for CPUs with AVX2 (chosen at run
 * time): the same integer arithmetic, so the same bytes. */
__attribute__((target("avx2"))) static void filter_rows_avx2(const uint8_t *in, size_t stride,
                                                             int first, const int16_t *w,
                                                             int taps, size_t n, uint8_t *out)
{
	const int32_t half = 1 << (RESAMPLE_BITS - 1);
	const uint8_t *row0 = in + (size_t)first * stride;
	const __m256i zero = _mm256_setzero_si256(), round = _mm256_set1_epi32(half);
	size_t x = 0;
	/* unpack, madd and pack all work within 128-bit lanes, so the bytes
	 * come back in their order */
	for (; x + 32 <= n; x += 32) {
		__m256i s0 = round, s1 = round, s2 = round, s3 = round;
		for (int k = 0; k < taps; k += 2) {
			const uint8_t *ra = row0 + (size_t)k * stride + x;
			__m256i a = _mm256_loadu_si256((const __m256i *)ra), b = zero;
			uint32_t pair = (uint16_t)w[k];
			if (k + 1 < taps) {
				b = _mm256_loadu_si256((const __m256i *)(ra + stride));
				pair |= (uint32_t)(uint16_t)w[k + 1] << 16;
			}
			__m256i wv = _mm256_set1_epi32((int)pair);
			__m256i lo = _mm256_unpacklo_epi8(a, b), hi = _mm256_unpackhi_epi8(a, b);
			s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_unpacklo_epi8(lo, zero), wv));
			s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_unpackhi_epi8(lo, zero), wv));
			s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(_mm256_unpacklo_epi8(hi, zero), wv));
			s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(_mm256_unpackhi_epi8(hi, zero), wv));
		}
		s0 = _mm256_srai_epi32(s0, RESAMPLE_BITS);
		s1 = _mm256_srai_epi32(s1, RESAMPLE_BITS);
		s2 = _mm256_srai_epi32(s2, RESAMPLE_BITS);
		s3 = _mm256_srai_epi32(s3, RESAMPLE_BITS);
		__m256i o =
		    _mm256_packus_epi16(_mm256_packs_epi32(s0, s1), _mm256_packs_epi32(s2, s3));
		_mm256_storeu_si256((__m256i *)(out + x), o);
	}
	if (x < n)
		filter_rows(row0 + x, stride, 0, w, taps, n - x, out + x);
}
#endif

/* dst (w rows of h RGB pixels, rows dst_stride bytes) = src (h rows of w
 * pixels) transposed, in 16 x 16 blocks to stay in cache. A pixel moves
 * as one 4-byte load and store where the spare byte stays inside its row:
 * the byte written past a pixel belongs to the next pixel of the dst row,
 * which a later step (this block's next y, or a block later in y0)
 * writes again. */
static void transpose_rgb(const uint8_t *src, int w, int h, size_t src_stride, uint8_t *dst,
                          size_t dst_stride)
{
	for (int y0 = 0; y0 < h; y0 += 16)
		for (int x0 = 0; x0 < w; x0 += 16) {
			int y1 = y0 + 16 < h ? y0 + 16 : h, x1 = x0 + 16 < w ? x0 + 16 : w;
			for (int x = x0; x < x1; x++) {
				uint8_t *d = dst + (size_t)x * dst_stride + (size_t)y0 * 3;
				const uint8_t *s = src + (size_t)y0 * src_stride + (size_t)x * 3;
				int y = y0;
				if (x + 1 < w)
					for (; y < y1 && y < h - 1; y++, d += 3, s += src_stride) {
						uint32_t v;
						memcpy(&v, s, 4);
						memcpy(d, &v, 4);
					}
				for (; y < y1; y++, d += 3, s += src_stride) {
					d[0] = s[0];
					d[1] = s[1];
					d[2] = s[2];
				}
			}
		}
}

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	free(*buf);
	if (!(*buf = malloc(need))) {
		*cap = 0;
		return eosin_error("out of memory");
	}
	*cap = need;
	return 0;
}

int resample_rgb(struct resampler *r, const uint8_t *in, int in_w, int in_h, size_t stride,
                 double off_x, double off_y, double span_x, double span_y, uint8_t *out,
                 int out_w, int out_h)
{
	if (in_w <= 0 || in_h <= 0 || out_w <= 0 || out_h <= 0 || !(span_x > 0) ||
	    !(span_y > 0) || !(off_x >= 0) || !(off_y >= 0) || off_x + span_x > in_w + 1e-6 ||
	    off_y + span_y > in_h + 1e-6)
		return eosin_error("resampling %dx%d (span %gx%g) to %dx%d: bad geometry", in_w,
		                   in_h, span_x, span_y, out_w, out_h);
	if (in_w == out_w && in_h == out_h && span_x == out_w && span_y == out_h && off_x == 0 &&
	    off_y == 0) {
		for (int y = 0; y < out_h; y++)
			memcpy(out + (size_t)y * out_w * 3, in + (size_t)y * stride,
			       (size_t)out_w * 3);
		return 0;
	}
	const struct resample_axis *ax = axis_for(r, in_w, off_x, span_x, out_w, NULL);
	const struct resample_axis *ay = ax ? axis_for(r, in_h, off_y, span_y, out_h, ax) : NULL;
	if (!ay)
		return -1;
	/* vertical: in (in_h, in_w) -> a (out_h, in_w); transpose -> b (in_w,
	 * out_h); the horizontal pass as a vertical one: b -> a (out_w,
	 * out_h); transpose -> out (out_h, out_w) */
	size_t need = (size_t)(in_w > out_w ? in_w : out_w) * (size_t)out_h * 3;
	if (reserve(&r->a, &r->a_cap, need) < 0 || reserve(&r->b, &r->b_cap, need) < 0)
		return -1;
	size_t arow = (size_t)in_w * 3, brow = (size_t)out_h * 3;
	void (*filter)(const uint8_t *, size_t, int, const int16_t *, int, size_t, uint8_t *) =
	    filter_rows;
#ifdef HAVE_AVX2_PATH
	if (__builtin_cpu_supports("avx2"))
		filter = filter_rows_avx2;
#endif
	for (int y = 0; y < out_h; y++)
		filter(in, stride, ay->first[y], ay->weight + (size_t)y * ay->taps, ay->taps,
		            arow, r->a + (size_t)y * arow);
	transpose_rgb(r->a, in_w, out_h, arow, r->b, brow);
	for (int x = 0; x < out_w; x++)
		filter(r->b, brow, ax->first[x], ax->weight + (size_t)x * ax->taps, ax->taps,
		            brow, r->a + (size_t)x * brow);
	transpose_rgb(r->a, out_h, out_w, brow, out, (size_t)out_w * 3);
	return 0;
}

void resampler_release(struct resampler *r)
{
	for (int k = 0; k < RESAMPLE_AXES; k++)
		axis_release(&r->axes[k]);
	free(r->a);
	free(r->b);
	memset(r, 0, sizeof *r);
}
