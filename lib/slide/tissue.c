/*
 * tissue.c: glass found from the slide, tissue as what departs from it,
 * close, hole fill, ink removed, open, small components. See tissue.h.
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

/* Hue class of one pixel for pen ink: green, cyan or blue (HSV hue from
 * about 75 to 245 degrees), which neither haematoxylin (blue-purple,
 * above 250) nor eosin (pink-red) reaches; or near-black grey. */
static int is_ink(const uint8_t *p, int s)
{
	int r = p[0], g = p[1], b = p[2];
	int mx = r > g ? r : g, mn = r < g ? r : g;
	mx = mx > b ? mx : b;
	mn = mn < b ? mn : b;
	int d = mx - mn;
	if (mx >= 25 && mx < TISSUE_INK_DARK && s < 90)
		return 1; /* black or dark grey ink */
	if (s < TISSUE_INK_MIN_S || d == 0)
		return 0;
	if (mx == g && mx != r) /* hue 60..180: >= 75 when 4 (b - r) >= -3d */
		return 4 * (b - r) >= -3 * d;
	if (mx == b && mx != r) /* hue 180..300: < 245 when 12 (r - g) < d */
		return 12 * (r - g) < d;
	return 0;
}

static inline int rgb_max(const uint8_t *p)
{
	int v = p[0] > p[1] ? p[0] : p[1];
	return v > p[2] ? v : p[2];
}

/* The first bin from `from` in direction `step` whose count falls below
 * a fiftieth of the count at `from`: where a mode's noise ends. */
static int falloff(const uint64_t hist[256], int from, int step)
{
	int v = from;
	while (v + step >= 0 && v + step <= 255 && hist[v] * 50 >= hist[from])
		v += step;
	return v;
}

/* The glass of the slide, from the thumbnail itself: its brightness is
 * the mode of V = max(R, G, B) over unsaturated (S < 24), bright
 * (128 <= V < 254: pure white is padding, not glass) pixels, and its
 * noise ends where that mode falls below a fiftieth of its peak, below
 * (v_lo) and above; the glass is the unsaturated pixels in that range,
 * and its saturation ends the same way above the mode of theirs. Without
 * glass (under 1% of the image), the floors alone decide. */
static void find_glass(struct tissue_mask *m, const uint8_t *rgb, const uint8_t *sat, size_t n)
{
	uint64_t hv[256] = {0}, hs[256] = {0}, count = 0, glass = 0;
	for (size_t i = 0; i < n; i++) {
		int v = rgb_max(rgb + 3 * i);
		if (sat[i] < 24 && v >= 128 && v < 254) {
			hv[v]++;
			count++;
		}
	}
	int vbg = 254, v_lo = 254, s_hi = 0;
	if (count * 100 >= n && count > 0) {
		vbg = 128;
		for (int v = 129; v < 254; v++)
			if (hv[v] > hv[vbg])
				vbg = v;
		v_lo = falloff(hv, vbg, -1);
		int v_hi = falloff(hv, vbg, 1);
		for (size_t i = 0; i < n; i++) {
			int v = rgb_max(rgb + 3 * i);
			if (sat[i] < 24 && v >= v_lo && v <= v_hi) {
				hs[sat[i]]++;
				glass++;
			}
		}
		int smode = 0;
		for (int v = 1; v < 24; v++)
			if (hs[v] > hs[smode])
				smode = v;
		s_hi = falloff(hs, smode, 1);
	}
	int ts = s_hi + TISSUE_S_MARGIN;
	m->glass_v = vbg;
	m->threshold = ts < TISSUE_MIN_S ? TISSUE_MIN_S : ts > 40 ? 40 : ts;
	int tv = v_lo - TISSUE_V_MARGIN < vbg - TISSUE_MIN_DARK ? v_lo - TISSUE_V_MARGIN : vbg - TISSUE_MIN_DARK;
	m->v_threshold = tv < 0 ? 0 : tv;
	m->glass_fraction = n ? (double)glass / (double)n : 0;
}

/* Fill the 4-connected background components that do not touch the image
 * border and have at most max_px pixels. stack holds w*h indices. */
static void fill_holes(uint8_t *img, int w, int h, int64_t max_px, uint32_t *stack)
{
	size_t n = (size_t)w * h;
	/* 0 background not yet seen; 4 background kept; 5 to fill */
	for (size_t start = 0; start < n; start++) {
		if (img[start] != 0)
			continue;
		size_t top = 0, first = 0;
		int border = 0;
		stack[top++] = (uint32_t)start;
		img[start] = 4;
		while (first < top) {
			size_t v = stack[first++];
			int px = (int)(v % (size_t)w), py = (int)(v / (size_t)w);
			border |= px == 0 || py == 0 || px == w - 1 || py == h - 1;
			size_t nb[4];
			int k = 0;
			if (px > 0)
				nb[k++] = v - 1;
			if (px < w - 1)
				nb[k++] = v + 1;
			if (py > 0)
				nb[k++] = v - (size_t)w;
			if (py < h - 1)
				nb[k++] = v + (size_t)w;
			for (int j = 0; j < k; j++)
				if (img[nb[j]] == 0) {
					img[nb[j]] = 4;
					stack[top++] = (uint32_t)nb[j];
				}
		}
		if (!border && (int64_t)top <= max_px)
			for (size_t k = 0; k < top; k++)
				img[stack[k]] = 5;
	}
	for (size_t i = 0; i < n; i++)
		img[i] = img[i] == 1 || img[i] == 5;
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
	m->ink = malloc(n);
	m->integral = malloc((size_t)(w + 1) * (h + 1) * sizeof *m->integral);
	/* sat is the morphology's scratch later: n + 2w + 4r bytes, r <= 16;
	 * the summed-area table, filled last, is the flood fills' stack
	 * before that (n indices) */
	threads = threads < 1 ? 1 : threads;
	uint8_t *sat = malloc(n + (size_t)threads * (2 * (size_t)w + 64));
	if (!m->mask || !m->ink || !m->integral || !sat) {
		free(sat);
		tissue_mask_release(m);
		return eosin_error("out of memory");
	}
	struct saturation_job sj = {.rgb = rgb, .sat = sat, .n = n, .chunk = 1 << 16};
	parallel_for((int64_t)((n + sj.chunk - 1) / sj.chunk), threads, saturation_chunk, &sj);
	find_glass(m, rgb, sat, n);
	/* tissue: away from the glass in saturation or in brightness, and
	 * not ink; near-black (scanner padding) is neither */
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = rgb + 3 * i;
		int v = rgb_max(p);
		m->ink[i] = (uint8_t)is_ink(p, sat[i]);
		m->mask[i] = v >= 25 && !m->ink[i] && (sat[i] >= m->threshold || v <= m->v_threshold);
	}
	double mask_mpp = base_mpp * sqrt(dsx * dsy);
	/* ink: strokes, not stray pixels (an open of one pixel) */
	morph(m->ink, w, h, 1, 1, sat, threads);
	morph(m->ink, w, h, 1, 0, sat, threads);
	/* close: fat's membranes and fibres' gaps join */
	int r = (int)lround(TISSUE_CLOSE_UM / mask_mpp);
	r = r < 1 ? 1 : r > 16 ? 16 : r;
	morph(m->mask, w, h, r, 0, sat, threads);
	morph(m->mask, w, h, r, 1, sat, threads);
	fill_holes(m->mask, w, h, (int64_t)floor(TISSUE_MAX_HOLE_UM2 / (mask_mpp * mask_mpp)),
	           m->integral);
	size_t ink = 0;
	for (size_t i = 0; i < n; i++) {
		ink += m->ink[i];
		m->mask[i] &= (uint8_t)!m->ink[i];
	}
	m->ink_fraction = (double)ink / (double)n;
	/* open over about 8 um: speckle and ink fringes go */
	r = (int)lround(TISSUE_OPEN_UM / mask_mpp);
	r = r < 1 ? 1 : r > 16 ? 16 : r;
	morph(m->mask, w, h, r, 1, sat, threads);
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
	free(m->ink);
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
