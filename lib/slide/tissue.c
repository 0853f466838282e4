/*
 * tissue.c: saturation Otsu mask, morphology, small components. See tissue.h.
 */
#include "slide/tissue.h"

#include "core/error.h"
#include "core/parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

int otsu_threshold(const uint64_t hist[256])
{
	double total = 0, sum_all = 0;
	for (int i = 0; i < 256; i++) {
		total += (double)hist[i];
		sum_all += (double)i * (double)hist[i];
	}
	if (total == 0)
		return 0;
	double w0 = 0, sum0 = 0, best = -1;
	int best_t = 0;
	for (int t = 1; t < 256; t++) {
		w0 += (double)hist[t - 1];
		sum0 += (double)(t - 1) * (double)hist[t - 1];
		double w1 = total - w0;
		if (w0 == 0 || w1 == 0)
			continue;
		double mu0 = sum0 / w0, mu1 = (sum_all - sum0) / w1;
		double between = w0 * w1 * (mu0 - mu1) * (mu0 - mu1);
		if (between > best) {
			best = between;
			best_t = t;
		}
	}
	return best_t;
}

/* Summed-area table of a 0/1 image: out is (h+1, w+1). */
static void integrate(const uint8_t *img, int w, int h, uint32_t *out)
{
	memset(out, 0, (size_t)(w + 1) * sizeof *out);
	for (int y = 0; y < h; y++) {
		uint32_t row = 0;
		uint32_t *o = out + (size_t)(y + 1) * (w + 1), *above = o - (w + 1);
		o[0] = 0;
		for (int x = 0; x < w; x++) {
			row += img[(size_t)y * w + x];
			o[x + 1] = above[x + 1] + row;
		}
	}
}

static uint32_t box_count(const uint32_t *ii, int w, int x0, int y0, int x1, int y1)
{
	size_t s = (size_t)w + 1;
	return ii[(size_t)y1 * s + x1] - ii[(size_t)y0 * s + x1] - ii[(size_t)y1 * s + x0] +
	       ii[(size_t)y0 * s + x0];
}

/* Byte-array steps of the morphology, 16 bytes at a time where SSE2 is
 * there: dst[i] = dst[i] OP src[i] for i < n. dst may be src + k for
 * k < 0 or src may be dst + k for k > 0 (a read-ahead of the same
 * array: each block is read before it is written). */
enum byte_op { BYTES_AND, BYTES_OR, BYTES_ADD, BYTES_SUB };

static void bytes_apply(uint8_t *dst, const uint8_t *src, size_t n, enum byte_op op)
{
	size_t i = 0;
#ifdef __SSE2__
	for (; i + 16 <= n; i += 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)(dst + i)),
		        b = _mm_loadu_si128((const __m128i *)(src + i));
		a = op == BYTES_AND  ? _mm_and_si128(a, b)
		    : op == BYTES_OR ? _mm_or_si128(a, b)
		    : op == BYTES_ADD ? _mm_add_epi8(a, b)
		                      : _mm_sub_epi8(a, b);
		_mm_storeu_si128((__m128i *)(dst + i), a);
	}
#endif
	for (; i < n; i++)
		dst[i] = op == BYTES_AND  ? dst[i] & src[i]
		         : op == BYTES_OR ? dst[i] | src[i]
		         : op == BYTES_ADD ? (uint8_t)(dst[i] + src[i])
		                           : (uint8_t)(dst[i] - src[i]);
}

/* out[i] = count[i] == all (want_all) or count[i] > 0, as 0/1. */
static void bytes_test(const uint8_t *count, size_t n, int want_all, uint8_t all, uint8_t *out)
{
	size_t i = 0;
#ifdef __SSE2__
	__m128i one = _mm_set1_epi8(1), zero = _mm_setzero_si128(), target = _mm_set1_epi8((char)all);
	for (; i + 16 <= n; i += 16) {
		__m128i c = _mm_loadu_si128((const __m128i *)(count + i));
		__m128i t = want_all ? _mm_and_si128(_mm_cmpeq_epi8(c, target), one)
		                     : _mm_andnot_si128(_mm_cmpeq_epi8(c, zero), one);
		_mm_storeu_si128((__m128i *)(out + i), t);
	}
#endif
	for (; i < n; i++)
		out[i] = want_all ? count[i] == all : count[i] > 0;
}

/* One pass of a clipped window test along each row: out[x] = 1 when
 * every (want_all) or any input of [x - r, x + r] (clipped to the row)
 * is 1. The row is copied between r bytes of the neutral value (1 for
 * "all", 0 for "any"), so clipping is free, and the window of 2r+1 is
 * built by doubling: windows of 2, 4, 8, ... then two overlapping ones
 * of the largest power of two, as AND and OR do not mind counting a
 * byte twice. pad is w + 2r bytes of scratch, win w + 2r more. */
static void morph_rows(const uint8_t *in, int w, int h, int r, int want_all, uint8_t *out,
                       uint8_t *pad, uint8_t *win)
{
	int n = w + 2 * r, size = 2 * r + 1, span = 1;
	while (span * 2 <= size)
		span *= 2;
	uint8_t neutral = want_all ? 1 : 0;
	enum byte_op op = want_all ? BYTES_AND : BYTES_OR;
	memset(pad, neutral, (size_t)r);
	memset(pad + r + w, neutral, (size_t)r);
	for (int y = 0; y < h; y++) {
		memcpy(pad + r, in + (size_t)y * w, (size_t)w);
		/* win[x]: the op over pad[x, x + k), k doubling up to span */
		memcpy(win, pad, (size_t)n);
		for (int k = 1; k < span; k *= 2)
			bytes_apply(win, win + k, (size_t)(n - k), op);
		/* [x, x + size) = [x, x + span) and [x + size - span, x + size) */
		uint8_t *o = out + (size_t)y * w;
		memcpy(o, win, (size_t)w);
		bytes_apply(o, win + (size - span), (size_t)w, op);
	}
}

/* The same down each column, all columns of a row at once (a count per
 * column, at most 2r+1 <= 33, in bytes): w columns of rows `pitch` bytes
 * apart. count is w bytes of scratch. */
static void morph_columns(const uint8_t *in, int w, int pitch, int h, int r, int want_all,
                          uint8_t *out, uint8_t *count)
{
	memset(count, 0, (size_t)w);
	for (int y = 0; y < r && y < h; y++)
		bytes_apply(count, in + (size_t)y * pitch, (size_t)w, BYTES_ADD);
	for (int y = 0; y < h; y++) {
		if (y + r < h)
			bytes_apply(count, in + (size_t)(y + r) * pitch, (size_t)w, BYTES_ADD);
		if (y - r - 1 >= 0)
			bytes_apply(count, in + (size_t)(y - r - 1) * pitch, (size_t)w, BYTES_SUB);
		int y0 = y - r < 0 ? 0 : y - r, y1 = y + r + 1 > h ? h : y + r + 1;
		bytes_test(count, (size_t)w, want_all, (uint8_t)(y1 - y0), out + (size_t)y * pitch);
	}
}

/* Binary erode (want_all) or dilate with a (2r+1)^2 square, clipped at the
 * image border, in place. A clipped square is a rectangle, so "all" (or
 * "any") over it is "all" over its rows of "all" over its columns: a row
 * pass, then a column pass. On up to `threads` threads: the row pass by
 * bands of rows, the column pass by strips of columns (a column's count
 * depends only on its own column), so the result is the same for any
 * number. tmp is w*h + threads * (2w + 4r) bytes of scratch. */
struct morph_job {
	uint8_t *img, *rows, *scratch;
	int w, h, r, want_all, bands, strip;
};

static void morph_rows_band(void *ctx, int64_t b, int thread)
{
	struct morph_job *j = ctx;
	int y0 = (int)((int64_t)j->h * b / j->bands), y1 = (int)((int64_t)j->h * (b + 1) / j->bands);
	uint8_t *pad = j->scratch + (size_t)thread * (2 * (size_t)j->w + 4 * (size_t)j->r);
	morph_rows(j->img + (size_t)y0 * j->w, j->w, y1 - y0, j->r, j->want_all,
	           j->rows + (size_t)y0 * j->w, pad, pad + j->w + 2 * j->r);
}

static void morph_columns_strip(void *ctx, int64_t b, int thread)
{
	struct morph_job *j = ctx;
	int x0 = (int)b * j->strip, x1 = x0 + j->strip > j->w ? j->w : x0 + j->strip;
	uint8_t *count = j->scratch + (size_t)thread * (2 * (size_t)j->w + 4 * (size_t)j->r);
	morph_columns(j->rows + x0, x1 - x0, j->w, j->h, j->r, j->want_all, j->img + x0, count);
}

static void morph(uint8_t *img, int w, int h, int r, int want_all, uint8_t *tmp, int threads)
{
	struct morph_job j = {.img = img, .rows = tmp, .scratch = tmp + (size_t)w * h, .w = w,
	                      .h = h, .r = r, .want_all = want_all};
	/* small images: one thread, whose start costs more than the pass */
	if ((int64_t)w * h < 65536)
		threads = 1;
	j.bands = threads < h ? threads : h;
	parallel_for(j.bands, threads, morph_rows_band, &j);
	/* strips of whole cache lines, one or two per thread */
	j.strip = (w + 2 * threads - 1) / (2 * threads);
	j.strip = (j.strip + 63) / 64 * 64;
	parallel_for((w + j.strip - 1) / j.strip, threads, morph_columns_strip, &j);
}

/* Drop 8-connected components of fewer than min_px pixels. stack holds
 * w*h entries: pixel positions, as (y << 16 | x) when both fit in 16 bits
 * (no division per pixel: it was most of the fill's time), else as
 * indices. */
static void drop_small(uint8_t *img, int w, int h, int64_t min_px, uint32_t *stack)
{
	size_t n = (size_t)w * h;
	int packed = w <= 65536 && h <= 65536;
	/* 2 marks "visited, kept"; 3 "visited, to drop" */
	for (size_t start = 0; start < n; start++) {
		if (img[start] != 1)
			continue;
		size_t top = 0, count = 0, first = 0;
		int sx = (int)(start % (size_t)w), sy = (int)(start / (size_t)w);
		stack[top++] = packed ? (uint32_t)sy << 16 | (uint32_t)sx : (uint32_t)start;
		img[start] = 2;
		/* flood fill; stack[first..top) is the component so far */
		while (first < top) {
			uint32_t v = stack[first++];
			count++;
			int px = packed ? (int)(v & 0xffff) : (int)(v % (uint32_t)w);
			int py = packed ? (int)(v >> 16) : (int)(v / (uint32_t)w);
			int x0 = px > 0 ? px - 1 : 0, x1 = px < w - 1 ? px + 1 : px;
			int y0 = py > 0 ? py - 1 : 0, y1 = py < h - 1 ? py + 1 : py;
			for (int qy = y0; qy <= y1; qy++) {
				uint8_t *row = img + (size_t)qy * w;
				for (int qx = x0; qx <= x1; qx++)
					if (row[qx] == 1) {
						row[qx] = 2;
						stack[top++] = packed ? (uint32_t)qy << 16 | (uint32_t)qx
						                      : (uint32_t)((size_t)qy * w + qx);
					}
			}
		}
		if ((int64_t)count < min_px)
			for (size_t k = 0; k < top; k++) {
				uint32_t v = stack[k];
				size_t q = packed ? (size_t)(v >> 16) * w + (v & 0xffff) : v;
				img[q] = 3;
			}
	}
	for (size_t i = 0; i < n; i++)
		img[i] = img[i] == 2;
}

static inline unsigned differing_bytewise(const uint8_t *a, const uint8_t *b, int n)
{
	unsigned bits = 0;
	for (int i = 0; i < n; i++)
		bits |= (unsigned)(a[i] != b[i]) << i;
	return bits;
}

/* Bits b < n of `bits` where the n bytes at a and b differ (n <= 16). */
static inline unsigned differing(const uint8_t *a, const uint8_t *b, int n)
{
#ifdef __SSE2__
	__m128i va = _mm_loadu_si128((const __m128i *)a), vb = _mm_loadu_si128((const __m128i *)b);
	unsigned same = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(va, vb));
	return ~same & ((1u << n) - 1);
#else
	return differing_bytewise(a, b, n);
#endif
}


/* The same median by a histogram that slides down each column (the
 * fallback when there is no memory for the column histograms). */
static void tissue_median_plain(const uint8_t *in, int w, int h, int r, uint8_t *out)
{
	/* Each column's window slides down the image: a step adds one row
	 * segment of up to 2r+1 <= 13 bytes and drops another. The two are
	 * compared 16 bytes at a time and only the bytes that differ touch
	 * the histogram (glass: hardly any). The 16-byte reads may run into
	 * the next row, never past the image's last byte. */
	size_t n = (size_t)w * h;
	for (int x = 0; x < w; x++) {
		int x0 = x - r < 0 ? 0 : x - r, x1 = x + r + 1 > w ? w : x + r + 1;
		int cw = x1 - x0;
		uint32_t hist[256] = {0};
		uint32_t count = 0, below = 0; /* below: values < med */
		int med = 0;
		for (int y = -r; y < h; y++) {
			int add = y + r, drop = y - r - 1;
			if (add < h && drop >= 0) {
				const uint8_t *a = in + (size_t)add * w + x0,
				              *d = in + (size_t)drop * w + x0;
				unsigned bits = (size_t)add * w + x0 + 16 <= n
				                    ? differing(a, d, cw)
				                    : differing_bytewise(a, d, cw);
				while (bits) {
					int i = __builtin_ctz(bits);
					bits &= bits - 1;
					hist[a[i]]++;
					hist[d[i]]--;
					below += (uint32_t)(a[i] < med) - (uint32_t)(d[i] < med);
				}
			} else if (add < h) {
				const uint8_t *a = in + (size_t)add * w + x0;
				for (int i = 0; i < cw; i++) {
					hist[a[i]]++;
					below += a[i] < med;
				}
				count += (uint32_t)cw;
			} else if (drop >= 0) {
				const uint8_t *d = in + (size_t)drop * w + x0;
				for (int i = 0; i < cw; i++) {
					hist[d[i]]--;
					below -= d[i] < med;
				}
				count -= (uint32_t)cw;
			}
			if (y < 0)
				continue;
			/* median: the smallest med with below + hist[med] > count / 2 */
			uint32_t half = count / 2;
			while (med > 0 && below > half) {
				med--;
				below -= hist[med];
			}
			while (below + hist[med] <= half) {
				below += hist[med];
				med++;
			}
			out[(size_t)y * w + x] = (uint8_t)med;
		}
	}
}

/* counts[b] = the sum over ncols column histograms (256 bytes apart)
 * from hist of byte b. */
static inline void sum_columns(const uint8_t *hist, int ncols, uint8_t counts[16])
{
#ifdef __SSE2__
	__m128i sum = _mm_setzero_si128();
	for (int c = 0; c < ncols; c++)
		sum = _mm_add_epi8(sum, _mm_loadu_si128((const __m128i *)(hist + (size_t)c * 256)));
	_mm_storeu_si128((__m128i *)counts, sum);
#else
	memset(counts, 0, 16);
	for (int c = 0; c < ncols; c++)
		for (int b = 0; b < 16; b++)
			counts[b] = (uint8_t)(counts[b] + hist[(size_t)c * 256 + b]);
#endif
}

/* The first of the 16 running totals of the byte counts at c (plus
 * base) that exceeds half; 16 if none does. Totals stay below 256. */
static inline int first_total_over(const uint8_t c[16], unsigned base, unsigned half,
                                   unsigned *before)
{
#ifdef __SSE2__
	__m128i v = _mm_loadu_si128((const __m128i *)c);
	v = _mm_add_epi8(v, _mm_slli_si128(v, 1));
	v = _mm_add_epi8(v, _mm_slli_si128(v, 2));
	v = _mm_add_epi8(v, _mm_slli_si128(v, 4));
	v = _mm_add_epi8(v, _mm_slli_si128(v, 8));
	v = _mm_add_epi8(v, _mm_set1_epi8((char)base));
	/* total > half: max(total, half + 1) == total, unsigned */
	__m128i limit = _mm_set1_epi8((char)(half + 1));
	unsigned over = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(v, limit), v));
	if (!over)
		return 16;
	int i = __builtin_ctz(over);
	uint8_t totals[16];
	_mm_storeu_si128((__m128i *)totals, v);
	*before = i > 0 ? totals[i - 1] : base;
	return i;
#else
	unsigned total = base;
	for (int i = 0; i < 16; i++) {
		if (total + c[i] > half) {
			*before = total;
			return i;
		}
		total += c[i];
	}
	return 16;
#endif
}

/* acc[b] += v[b] (bytes_add16) or -= (bytes_sub16) for 16 bytes,
 * wrapping. */
static inline void bytes_add16(uint8_t *acc, const uint8_t *v)
{
#ifdef __SSE2__
	__m128i a = _mm_loadu_si128((const __m128i *)acc), b = _mm_loadu_si128((const __m128i *)v);
	_mm_storeu_si128((__m128i *)acc, _mm_add_epi8(a, b));
#else
	for (int i = 0; i < 16; i++)
		acc[i] = (uint8_t)(acc[i] + v[i]);
#endif
}

static inline void bytes_sub16(uint8_t *acc, const uint8_t *v)
{
#ifdef __SSE2__
	__m128i a = _mm_loadu_si128((const __m128i *)acc), b = _mm_loadu_si128((const __m128i *)v);
	_mm_storeu_si128((__m128i *)acc, _mm_sub_epi8(a, b));
#else
	for (int i = 0; i < 16; i++)
		acc[i] = (uint8_t)(acc[i] - v[i]);
#endif
}

static void median_rows(const uint8_t *in, int w, int h, int r, uint8_t *out, int y0, int y1,
                        uint8_t *fine, uint8_t *coarse)
{
	/* Histograms per column, over the rows of the current window, in
	 * bytes (at most 2r+1 <= 15 each): fine, 256 bins (h, col) = column
	 * col's; coarse, 16 bins of 16 values. Along a row, the window's
	 * coarse histogram slides (a column in, a column out); the median's
	 * coarse bin is the first whose running total passes half the count,
	 * and only that bin's 16 fine counts are summed over the window's
	 * columns. Window counts reach (2r+1)^2 <= 225: bytes still. */
	memset(fine, 0, (size_t)w * 256);
	memset(coarse, 0, (size_t)w * 16);
	/* the window of row y0 but its last row, which the loop adds, and
	 * the row before its first, which the loop drops */
	for (int y = y0 - r - 1 < 0 ? 0 : y0 - r - 1; y < y0 + r && y < h; y++)
		for (int x = 0; x < w; x++) {
			int v = in[(size_t)y * w + x];
			fine[(size_t)x * 256 + v]++;
			coarse[(size_t)x * 16 + (v >> 4)]++;
		}
	for (int y = y0; y < y1; y++) {
		if (y + r < h)
			for (int x = 0; x < w; x++) {
				int v = in[(size_t)(y + r) * w + x];
				fine[(size_t)x * 256 + v]++;
				coarse[(size_t)x * 16 + (v >> 4)]++;
			}
		if (y - r - 1 >= 0)
			for (int x = 0; x < w; x++) {
				int v = in[(size_t)(y - r - 1) * w + x];
				fine[(size_t)x * 256 + v]--;
				coarse[(size_t)x * 16 + (v >> 4)]--;
			}
		int rows = (y + r + 1 > h ? h : y + r + 1) - (y - r < 0 ? 0 : y - r);
		uint8_t window[16] = {0}; /* coarse bins over columns [x0, x1) */
		/* the window's fine counts of each coarse bin, as of column
		 * synced[bin] of this row (-1: never), brought up to date when
		 * the median next falls in that bin: usually one column in and
		 * one out since the last pixel */
		uint8_t segment[16][16];
		int synced[16];
		for (int b = 0; b < 16; b++)
			synced[b] = -1;
		for (int x = 0; x < r && x < w; x++)
			bytes_add16(window, coarse + (size_t)x * 16);
		for (int x = 0; x < w; x++) {
			int x0 = x - r < 0 ? 0 : x - r, x1 = x + r + 1 > w ? w : x + r + 1;
			if (x + r < w)
				bytes_add16(window, coarse + (size_t)(x + r) * 16);
			if (x - r - 1 >= 0)
				bytes_sub16(window, coarse + (size_t)(x - r - 1) * 16);
			unsigned half = (unsigned)(rows * (x1 - x0)) / 2, before = 0;
			int bin = first_total_over(window, 0, half, &before);
			uint8_t *seg = segment[bin];
			if (synced[bin] < 0 || x - synced[bin] > 2 * r + 1) {
				sum_columns(fine + (size_t)x0 * 256 + bin * 16, x1 - x0, seg);
			} else
				for (int xx = synced[bin] + 1; xx <= x; xx++) {
					if (xx + r < w)
						bytes_add16(seg, fine + (size_t)(xx + r) * 256 + bin * 16);
					if (xx - r - 1 >= 0)
						bytes_sub16(seg,
						            fine + (size_t)(xx - r - 1) * 256 + bin * 16);
				}
			synced[bin] = x;
			int v = first_total_over(seg, before, half, &before);
			out[(size_t)y * w + x] = (uint8_t)(bin * 16 + v);
		}
	}
}

struct median_job {
	const uint8_t *in;
	uint8_t *out, *hist; /* hist: (bands) of w * 272 bytes, fine then coarse */
	int w, h, r, bands;
};

static void median_band(void *ctx, int64_t b, int thread)
{
	struct median_job *j = ctx;
	(void)thread;
	int y0 = (int)((int64_t)j->h * b / j->bands), y1 = (int)((int64_t)j->h * (b + 1) / j->bands);
	uint8_t *fine = j->hist + (size_t)b * j->w * 272;
	median_rows(j->in, j->w, j->h, j->r, j->out, y0, y1, fine, fine + (size_t)j->w * 256);
}

void tissue_median(const uint8_t *in, int w, int h, int r, uint8_t *out, int threads)
{
	/* bands of rows, each with its own column histograms started at its
	 * first row: the same values for any number of bands */
	if ((int64_t)w * h < 65536 || threads < 1)
		threads = 1;
	struct median_job j = {.in = in, .out = out, .w = w, .h = h, .r = r};
	j.bands = threads < h ? threads : h;
	j.hist = malloc((size_t)j.bands * w * 272);
	if (!j.hist) {
		tissue_median_plain(in, w, h, r, out);
		return;
	}
	parallel_for(j.bands, threads, median_band, &j);
	free(j.hist);
}

void tissue_saturation(const uint8_t *rgb, size_t n, uint8_t *sat)
{
	/* rgb_saturation()'s (255 (max - min) + max / 2) / max without a
	 * division: the numerator is below 2^16 and max below 2^8, so
	 * multiplying by floor(2^32 / max) + 1 and keeping the top 32 bits
	 * gives the quotient exactly */
	uint64_t inverse[256];
	inverse[0] = 0;
	for (int d = 1; d < 256; d++)
		inverse[d] = ((uint64_t)1 << 32) / (uint64_t)d + 1;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = rgb + 3 * i;
		unsigned mx = p[0] > p[1] ? p[0] : p[1], mn = p[0] < p[1] ? p[0] : p[1];
		mx = mx > p[2] ? mx : p[2];
		mn = mn < p[2] ? mn : p[2];
		uint64_t num = 255 * (mx - mn) + mx / 2;
		/* near-black pixels (padding, pen) count as background */
		sat[i] = mx >= 25 ? (uint8_t)((num * inverse[mx]) >> 32) : 0;
	}
}

struct saturation_job {
	const uint8_t *rgb;
	uint8_t *sat;
	size_t n, chunk;
};

static void saturation_chunk(void *ctx, int64_t b, int thread)
{
	struct saturation_job *j = ctx;
	(void)thread;
	size_t i0 = (size_t)b * j->chunk, i1 = i0 + j->chunk > j->n ? j->n : i0 + j->chunk;
	tissue_saturation(j->rgb + 3 * i0, i1 - i0, j->sat + i0);
}

int tissue_detect(struct tissue_mask *m, const uint8_t *rgb, int w, int h, double dsx, double dsy,
                  double base_mpp, double min_area_um2, int threads)
{
	memset(m, 0, sizeof *m);
	if (w <= 0 || h <= 0 || (int64_t)w * h > ((int64_t)1 << 30))
		return eosin_error("tissue mask size %dx%d is out of range", w, h);
	size_t n = (size_t)w * h;
	m->w = w;
	m->h = h;
	m->dsx = dsx;
	m->dsy = dsy;
	m->mask = malloc(n);
	m->integral = malloc((size_t)(w + 1) * (h + 1) * sizeof *m->integral);
	/* sat is the morphology's scratch later: n + 2w + 4r bytes, r <= 16;
	 * the summed-area table, filled last, is the components' stack
	 * before that (n indices): fresh memory costs a page fault a page,
	 * so the steps share what they can */
	threads = threads < 1 ? 1 : threads;
	uint8_t *sat = malloc(n + (size_t)threads * (2 * (size_t)w + 64));
	if (!m->mask || !m->integral || !sat) {
		free(sat);
		tissue_mask_release(m);
		return eosin_error("out of memory");
	}
	struct saturation_job sj = {.rgb = rgb, .sat = sat, .n = n, .chunk = 1 << 16};
	parallel_for((int64_t)((n + sj.chunk - 1) / sj.chunk), threads, saturation_chunk, &sj);
	/* The median over about 12 um turns fibrous tissue (pale collagen
	 * with gaps, whose pixels alone sit either side of any threshold)
	 * into the region it is, and removes isolated specks. */
	double mask_mpp = base_mpp * sqrt(dsx * dsy);
	int r = (int)lround(12.0 / mask_mpp);
	r = r < 1 ? 1 : r > 6 ? 6 : r; /* 13 x 13 at most */
	uint8_t *smooth = m->mask; /* thresholded in place */
	tissue_median(sat, w, h, r, smooth, threads);
	uint64_t hist[256] = {0};
	for (size_t i = 0; i < n; i++)
		hist[smooth[i]]++;
	int t = otsu_threshold(hist);
	m->threshold = t < TISSUE_MIN_S ? TISSUE_MIN_S : t;
	for (size_t i = 0; i < n; i++)
		m->mask[i] = smooth[i] >= m->threshold;
	/* about 8 um of structuring radius, at least one mask pixel */
	r = (int)lround(8.0 / mask_mpp);
	r = r < 1 ? 1 : r > 16 ? 16 : r;
	morph(m->mask, w, h, r, 0, sat, threads); /* close: dilate, erode */
	morph(m->mask, w, h, r, 1, sat, threads);
	morph(m->mask, w, h, r, 1, sat, threads); /* open: erode, dilate */
	morph(m->mask, w, h, r, 0, sat, threads);
	free(sat);
	drop_small(m->mask, w, h, (int64_t)ceil(min_area_um2 / (mask_mpp * mask_mpp)),
	           m->integral);
	integrate(m->mask, w, h, m->integral);
	m->fraction = (double)m->integral[(size_t)h * (w + 1) + w] / (double)n;
	return 0;
}

void tissue_mask_release(struct tissue_mask *m)
{
	free(m->mask);
	free(m->integral);
	memset(m, 0, sizeof *m);
}

/* First mask index whose pixel centre (i + 0.5) * ds is >= v. */
static int64_t first_centre_at(double v, double ds)
{
	return (int64_t)ceil(v / ds - 0.5);
}

double tissue_fraction(const struct tissue_mask *m, int64_t x, int64_t y, int64_t extent)
{
	if (!m->mask || extent <= 0)
		return 0;
	int64_t x0 = first_centre_at((double)x, m->dsx),
	        x1 = first_centre_at((double)(x + extent), m->dsx);
	int64_t y0 = first_centre_at((double)y, m->dsy),
	        y1 = first_centre_at((double)(y + extent), m->dsy);
	x0 = x0 < 0 ? 0 : x0 > m->w ? m->w : x0;
	x1 = x1 < 0 ? 0 : x1 > m->w ? m->w : x1;
	y0 = y0 < 0 ? 0 : y0 > m->h ? m->h : y0;
	y1 = y1 < 0 ? 0 : y1 > m->h ? m->h : y1;
	if (x1 <= x0 || y1 <= y0) {
		/* smaller than a mask pixel: the one under its centre */
		int64_t cx = (int64_t)((x + extent / 2.0) / m->dsx),
		        cy = (int64_t)((y + extent / 2.0) / m->dsy);
		if (cx < 0 || cy < 0 || cx >= m->w || cy >= m->h)
			return 0;
		return m->mask[cy * m->w + cx];
	}
	uint32_t c = box_count(m->integral, m->w, (int)x0, (int)y0, (int)x1, (int)y1);
	return (double)c / (double)((x1 - x0) * (y1 - y0));
}
