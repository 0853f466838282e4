/*
 * tissue.c: saturation Otsu mask, morphology, small components. See tissue.h.
 */
#include "tissue.h"

#include "error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* Binary erode (want_all) or dilate with a (2r+1)^2 square, clipped at the
 * image border; tmp is (h+1, w+1) scratch. */
static void morph(uint8_t *img, int w, int h, int r, int want_all, uint32_t *tmp)
{
	integrate(img, w, h, tmp);
	for (int y = 0; y < h; y++) {
		int y0 = y - r < 0 ? 0 : y - r, y1 = y + r + 1 > h ? h : y + r + 1;
		for (int x = 0; x < w; x++) {
			int x0 = x - r < 0 ? 0 : x - r, x1 = x + r + 1 > w ? w : x + r + 1;
			uint32_t c = box_count(tmp, w, x0, y0, x1, y1);
			uint32_t all = (uint32_t)((x1 - x0) * (y1 - y0));
			img[(size_t)y * w + x] = want_all ? c == all : c > 0;
		}
	}
}

/* Drop 8-connected components of fewer than min_px pixels. stack holds
 * w*h indices. */
static void drop_small(uint8_t *img, int w, int h, int64_t min_px, uint32_t *stack)
{
	size_t n = (size_t)w * h;
	/* 2 marks "visited, kept"; 3 "visited, to drop" */
	for (size_t start = 0; start < n; start++) {
		if (img[start] != 1)
			continue;
		size_t top = 0, count = 0, first = 0;
		stack[top++] = (uint32_t)start;
		img[start] = 2;
		/* flood fill; stack[first..top) is the component so far */
		while (first < top) {
			uint32_t p = stack[first++];
			count++;
			int px = (int)(p % (uint32_t)w), py = (int)(p / (uint32_t)w);
			for (int dy = -1; dy <= 1; dy++)
				for (int dx = -1; dx <= 1; dx++) {
					int qx = px + dx, qy = py + dy;
					if (qx < 0 || qy < 0 || qx >= w || qy >= h)
						continue;
					size_t q = (size_t)qy * w + qx;
					if (img[q] == 1) {
						img[q] = 2;
						stack[top++] = (uint32_t)q;
					}
				}
		}
		if ((int64_t)count < min_px)
			for (size_t k = 0; k < top; k++)
				img[stack[k]] = 3;
	}
	for (size_t i = 0; i < n; i++)
		img[i] = img[i] == 2;
}

/* Median of each (2r+1)^2 window (clipped at the border) of a 0..255
 * image, by a sliding histogram whose median moves a step at a time. */
static void median_filter(const uint8_t *in, int w, int h, int r, uint8_t *out)
{
	for (int y = 0; y < h; y++) {
		int y0 = y - r < 0 ? 0 : y - r, y1 = y + r + 1 > h ? h : y + r + 1;
		uint32_t hist[256] = {0};
		uint32_t count = 0, below = 0; /* below: values < med */
		int med = 0;
		for (int x = -r; x < w; x++) {
			int add = x + r, drop = x - r - 1;
			if (add < w && drop >= 0) {
				/* a value in, a value out, row by row: equal pairs
				 * (most of the glass) change nothing, and skipping
				 * them spares a chain of updates to one bin */
				for (int yy = y0; yy < y1; yy++) {
					int a = in[(size_t)yy * w + add], d = in[(size_t)yy * w + drop];
					if (a != d) {
						hist[a]++;
						hist[d]--;
						below += (uint32_t)(a < med) - (uint32_t)(d < med);
					}
				}
			} else if (add < w) {
				for (int yy = y0; yy < y1; yy++) {
					int v = in[(size_t)yy * w + add];
					hist[v]++;
					count++;
					below += v < med;
				}
			} else if (drop >= 0) {
				for (int yy = y0; yy < y1; yy++) {
					int v = in[(size_t)yy * w + drop];
					hist[v]--;
					count--;
					below -= v < med;
				}
			}
			if (x < 0)
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

int tissue_detect(struct tissue_mask *m, const uint8_t *rgb, int w, int h, double dsx, double dsy,
                  double base_mpp, double min_area_um2)
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
	uint32_t *stack = malloc(n * sizeof *stack);
	uint8_t *sat = malloc(n), *smooth = malloc(n);
	if (!m->mask || !m->integral || !stack || !sat || !smooth) {
		free(stack);
		free(sat);
		free(smooth);
		tissue_mask_release(m);
		return eosin_error("out of memory");
	}
	/* near-black pixels (padding, pen) count as background */
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = rgb + 3 * i;
		int mx = p[0] > p[1] ? p[0] : p[1];
		mx = mx > p[2] ? mx : p[2];
		sat[i] = mx >= 25 ? (uint8_t)rgb_saturation(p) : 0;
	}
	/* The median over about 12 um turns fibrous tissue (pale collagen
	 * with gaps, whose pixels alone sit either side of any threshold)
	 * into the region it is, and removes isolated specks. */
	double mask_mpp = base_mpp * sqrt(dsx * dsy);
	int r = (int)lround(12.0 / mask_mpp);
	r = r < 1 ? 1 : r > 6 ? 6 : r; /* 13 x 13 at most: cost is w*h*(2r+1) */
	median_filter(sat, w, h, r, smooth);
	uint64_t hist[256] = {0};
	for (size_t i = 0; i < n; i++)
		hist[smooth[i]]++;
	int t = otsu_threshold(hist);
	m->threshold = t < TISSUE_MIN_S ? TISSUE_MIN_S : t;
	for (size_t i = 0; i < n; i++)
		m->mask[i] = smooth[i] >= m->threshold;
	free(sat);
	free(smooth);
	/* about 8 um of structuring radius, at least one mask pixel */
	r = (int)lround(8.0 / mask_mpp);
	r = r < 1 ? 1 : r > 16 ? 16 : r;
	morph(m->mask, w, h, r, 0, m->integral); /* close: dilate, erode */
	morph(m->mask, w, h, r, 1, m->integral);
	morph(m->mask, w, h, r, 1, m->integral); /* open: erode, dilate */
	morph(m->mask, w, h, r, 0, m->integral);
	drop_small(m->mask, w, h, (int64_t)ceil(min_area_um2 / (mask_mpp * mask_mpp)), stack);
	free(stack);
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
