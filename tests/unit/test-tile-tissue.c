/*
 * test-tile-tissue.c: the tissue mask (lib/slide/tissue.c) against a plain,
 * slow transcription of the method tissue.h describes: saturation by
 * rgb_saturation(), the glass's modes and their ends by plain counting,
 * ink by HSV hue in degrees (floating point), erosion and dilation by
 * looking at every pixel of the clipped square, holes and components by
 * labelling sweeps. The fast mask must be the same bytes, on
 * made-up images of every window radius and on the thumbnail of a real
 * slide (../shared/data/slides, SHARED names another data directory;
 * that part is skipped without it). Also lib/core/parallel.c's loop, and the
 * thumbnail (lib/slide/slide.c) against a plain box average of what OpenSlide
 * reads, from the slide and from the level-0 copy, on 1 and 3 threads.
 */
#include "core/parallel.h"
#include "slide/slide.h"
#include "tap.h"
#include "slide/tissue.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the reference ---- */

static void ref_morph(uint8_t *img, int w, int h, int r, int want_all)
{
	uint8_t *out = malloc((size_t)w * h);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			int all = 1, any = 0;
			for (int yy = y - r; yy <= y + r; yy++)
				for (int xx = x - r; xx <= x + r; xx++)
					if (xx >= 0 && yy >= 0 && xx < w && yy < h) {
						all &= img[(size_t)yy * w + xx];
						any |= img[(size_t)yy * w + xx];
					}
			out[(size_t)y * w + x] = (uint8_t)(want_all ? all : any);
		}
	memcpy(img, out, (size_t)w * h);
	free(out);
}

/* Label 8-connected components by repeated sweeps of "take the smallest
 * neighbouring label" until nothing changes (slow, obviously right),
 * then drop those under min_px. */
static void ref_drop_small(uint8_t *img, int w, int h, int64_t min_px)
{
	size_t n = (size_t)w * h;
	uint32_t *label = malloc(n * sizeof *label);
	for (size_t i = 0; i < n; i++)
		label[i] = img[i] ? (uint32_t)i + 1 : 0;
	for (int changed = 1; changed;) {
		changed = 0;
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++) {
				uint32_t *l = &label[(size_t)y * w + x];
				if (!*l)
					continue;
				for (int dy = -1; dy <= 1; dy++)
					for (int dx = -1; dx <= 1; dx++) {
						int qx = x + dx, qy = y + dy;
						if (qx < 0 || qy < 0 || qx >= w || qy >= h)
							continue;
						uint32_t q = label[(size_t)qy * w + qx];
						if (q && q < *l) {
							*l = q;
							changed = 1;
						}
					}
			}
	}
	int64_t *size = calloc(n + 1, sizeof *size);
	for (size_t i = 0; i < n; i++)
		size[label[i]]++;
	for (size_t i = 0; i < n; i++)
		img[i] = label[i] && size[label[i]] >= min_px;
	free(size);
	free(label);
}

/* Label 4-connected background (0) components by sweeps; fill those that
 * touch no border pixel and have at most max_px pixels. */
static void ref_fill_holes(uint8_t *img, int w, int h, int64_t max_px)
{
	size_t n = (size_t)w * h;
	uint32_t *label = malloc(n * sizeof *label);
	for (size_t i = 0; i < n; i++)
		label[i] = img[i] ? 0 : (uint32_t)i + 1;
	for (int changed = 1; changed;) {
		changed = 0;
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++) {
				uint32_t *l = &label[(size_t)y * w + x];
				if (!*l)
					continue;
				static const int d[4][2] = {{1, 0}, {-1, 0}, {0, 1}, {0, -1}};
				for (int k = 0; k < 4; k++) {
					int qx = x + d[k][0], qy = y + d[k][1];
					if (qx < 0 || qy < 0 || qx >= w || qy >= h)
						continue;
					uint32_t q = label[(size_t)qy * w + qx];
					if (q && q < *l) {
						*l = q;
						changed = 1;
					}
				}
			}
	}
	int64_t *size = calloc(n + 1, sizeof *size);
	uint8_t *border = calloc(n + 1, 1);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint32_t l = label[(size_t)y * w + x];
			size[l]++;
			if (x == 0 || y == 0 || x == w - 1 || y == h - 1)
				border[l] = 1;
		}
	for (size_t i = 0; i < n; i++)
		if (label[i] && !border[label[i]] && size[label[i]] <= max_px)
			img[i] = 1;
	free(size);
	free(border);
	free(label);
}

static int ref_ink(const uint8_t *p)
{
	double r = p[0] / 255.0, g = p[1] / 255.0, b = p[2] / 255.0;
	double mx = fmax(r, fmax(g, b)), mn = fmin(r, fmin(g, b)), d = mx - mn;
	int s = rgb_saturation(p), v = (int)lround(mx * 255);
	if (v >= 25 && v < TISSUE_INK_DARK && s < 90)
		return 1;
	if (s < TISSUE_INK_MIN_S || d == 0 || mx == r)
		return 0;
	double hue = mx == g ? 120 + 60 * (b - r) / d : 240 + 60 * (r - g) / d;
	return hue >= 75 - 1e-9 && hue < 245 - 1e-9;
}

/* The first bin from the mode m, stepping by `step`, whose count is below
 * a fiftieth of the mode's. */
static int ref_end(const uint64_t *hist, int m, int step)
{
	int v = m;
	while (v + step >= 0 && v + step <= 255 && 50 * hist[v] >= hist[m])
		v += step;
	return v;
}

static uint8_t *ref_mask(const uint8_t *rgb, int w, int h, double ds, double base_mpp,
                         double min_area)
{
	size_t n = (size_t)w * h;
	uint8_t *sat = calloc(n, 1), *val = calloc(n, 1), *ink = calloc(n, 1),
	        *mask = calloc(n, 1);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = rgb + 3 * i;
		int mx = p[0] > p[1] ? p[0] : p[1];
		mx = mx > p[2] ? mx : p[2];
		sat[i] = mx >= 25 ? (uint8_t)rgb_saturation(p) : 0;
		val[i] = (uint8_t)mx;
		ink[i] = (uint8_t)ref_ink(p);
	}
	/* the glass */
	uint64_t hv[256] = {0}, hs[256] = {0}, count = 0;
	for (size_t i = 0; i < n; i++)
		if (sat[i] < 24 && val[i] >= 128 && val[i] <= 253) {
			hv[val[i]]++;
			count++;
		}
	int vg = 254, vlo = 254, shi = 0;
	if (count > 0 && count * 100 >= n) {
		vg = 128;
		for (int v = 128; v <= 253; v++)
			if (hv[v] > hv[vg])
				vg = v;
		vlo = ref_end(hv, vg, -1);
		int vhi = ref_end(hv, vg, 1);
		for (size_t i = 0; i < n; i++)
			if (sat[i] < 24 && val[i] >= vlo && val[i] <= vhi)
				hs[sat[i]]++;
		int sm = 0;
		for (int v = 0; v < 24; v++)
			if (hs[v] > hs[sm])
				sm = v;
		shi = ref_end(hs, sm, 1);
	}
	int ts = shi + TISSUE_S_MARGIN;
	ts = ts < TISSUE_MIN_S ? TISSUE_MIN_S : ts > 40 ? 40 : ts;
	int tv = vlo - TISSUE_V_MARGIN < vg - TISSUE_MIN_DARK ? vlo - TISSUE_V_MARGIN : vg - TISSUE_MIN_DARK;
	for (size_t i = 0; i < n; i++)
		mask[i] = val[i] >= 25 && !ink[i] && (sat[i] >= ts || val[i] <= tv);
	double mpp = base_mpp * ds;
	ref_morph(ink, w, h, 1, 1);
	ref_morph(ink, w, h, 1, 0);
	int r = (int)lround(TISSUE_CLOSE_UM / mpp);
	r = r < 1 ? 1 : r > 16 ? 16 : r;
	ref_morph(mask, w, h, r, 0);
	ref_morph(mask, w, h, r, 1);
	ref_fill_holes(mask, w, h, (int64_t)floor(TISSUE_MAX_HOLE_UM2 / (mpp * mpp)));
	for (size_t i = 0; i < n; i++)
		mask[i] = mask[i] && !ink[i];
	r = (int)lround(TISSUE_OPEN_UM / mpp);
	r = r < 1 ? 1 : r > 16 ? 16 : r;
	ref_morph(mask, w, h, r, 1);
	ref_morph(mask, w, h, r, 0);
	ref_drop_small(mask, w, h, (int64_t)ceil(min_area / (mpp * mpp)));
	free(sat);
	free(val);
	free(ink);
	return mask;
}

/* ---- made-up slides ---- */

static uint64_t rng = 88172645463325252ULL;
static uint32_t next_u32(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 32);
}

/* Pale glass with noise, a few stained blobs of mixed saturation,
 * stripes of pale fibres, a stroke of pen ink and dark specks. */
static uint8_t *made_up(int w, int h)
{
	uint8_t *rgb = malloc((size_t)w * h * 3);
	int nblobs = 1 + (int)(next_u32() % 5);
	double bx[5], by[5], br[5];
	for (int b = 0; b < nblobs; b++) {
		bx[b] = next_u32() % (unsigned)w;
		by[b] = next_u32() % (unsigned)h;
		br[b] = 3 + next_u32() % (unsigned)(w / 3 + 1);
	}
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t *p = rgb + 3 * ((size_t)y * w + x);
			int in = 0;
			for (int b = 0; b < nblobs; b++)
				in |= (x - bx[b]) * (x - bx[b]) + (y - by[b]) * (y - by[b]) <
				      br[b] * br[b];
			int noise = (int)(next_u32() % 9) - 4;
			if (in && next_u32() % 4) {
				p[0] = (uint8_t)(200 + noise);
				p[1] = (uint8_t)(90 + next_u32() % 80);
				p[2] = (uint8_t)(170 + noise);
			} else if ((x / 3 + y) % 17 == 0) { /* fibre */
				p[0] = (uint8_t)(235 + noise);
				p[1] = (uint8_t)(200 + noise);
				p[2] = (uint8_t)(225 + noise);
			} else {
				p[0] = (uint8_t)(240 + noise);
				p[1] = (uint8_t)(241 + noise);
				p[2] = (uint8_t)(243 + noise);
			}
			if (abs(x - (2 * y) % (w + 1)) < 2) { /* a stroke of green or blue ink */
				int blue = (x + y) % 2;
				p[0] = (uint8_t)(30 + noise);
				p[1] = (uint8_t)(blue ? 60 : 140 + noise);
				p[2] = (uint8_t)(blue ? 170 + noise : 70);
			}
			if (next_u32() % 500 == 0)
				p[0] = p[1] = p[2] = (uint8_t)(next_u32() % 40);
		}
	return rgb;
}

static int same_mask(const uint8_t *rgb, int w, int h, double ds, double base_mpp,
                     double min_area, int threads, const char *what)
{
	struct tissue_mask m;
	if (tissue_detect(&m, rgb, w, h, ds, ds, base_mpp, min_area, threads) < 0)
		return ok(0, "%s: tissue_detect", what);
	uint8_t *want = ref_mask(rgb, w, h, ds, base_mpp, min_area);
	size_t n = (size_t)w * h, differ = 0, tissue = 0;
	for (size_t i = 0; i < n; i++) {
		differ += m.mask[i] != want[i];
		tissue += want[i];
	}
	int good = ok(differ == 0 && m.fraction == (double)tissue / (double)n,
	              "%s: the mask as the method says (%zu of %zu pixels tissue)", what,
	              tissue, n);
	if (!good)
		printf("#   %zu pixels differ\n", differ);
	free(want);
	tissue_mask_release(&m);
	return good;
}

/* ---- parallel_for ---- */

struct count_ctx {
	int *seen;
	int threads;
	int bad_thread;
	pthread_mutex_t lock;
};

static void count_item(void *ctx, int64_t i, int thread)
{
	struct count_ctx *c = ctx;
	pthread_mutex_lock(&c->lock);
	c->seen[i]++;
	if (thread < 0 || thread >= c->threads)
		c->bad_thread = 1;
	pthread_mutex_unlock(&c->lock);
}

int main(void)
{
	/* saturation: every (max, min) pair, through the fast path */
	{
		int bad = 0;
		uint8_t rgb[3 * 256], sat[256];
		for (int mx = 0; mx < 256; mx++) {
			for (int mn = 0; mn < 256; mn++) {
				uint8_t *p = rgb + 3 * mn;
				p[0] = (uint8_t)(mn <= mx ? mx : mn);
				p[1] = (uint8_t)(mn <= mx ? mn : mx);
				p[2] = (uint8_t)(mn <= mx ? (mx + mn) / 2 : mn);
			}
			tissue_saturation(rgb, 256, sat);
			for (int mn = 0; mn < 256; mn++) {
				const uint8_t *p = rgb + 3 * mn;
				int top = p[0] > p[1] ? p[0] : p[1];
				top = top > p[2] ? top : p[2];
				bad += sat[mn] != (top >= 25 ? rgb_saturation(p) : 0);
			}
		}
		ok(bad == 0, "saturation without division: all 65536 (max, min) pairs agree");
	}

	/* on several threads (strips of columns for the morphology):
	 * images past the size where threads start, heights that do not
	 * divide evenly */
	{
		static const double mpps[] = {9, 3, 0.6};
		for (size_t k = 0; k < sizeof mpps / sizeof *mpps; k++)
			for (int threads = 1; threads <= 3; threads++) {
				int w = 380 + (int)(next_u32() % 200), h = 250 + (int)(next_u32() % 150);
				uint8_t *rgb = made_up(w, h);
				char what[80];
				snprintf(what, sizeof what, "made-up %dx%d at %g um/px, %d thread%s", w,
				         h, mpps[k], threads, threads > 1 ? "s" : "");
				same_mask(rgb, w, h, mpps[k] / 0.5, 0.5, mpps[k] < 1 ? 50 : 5000, threads,
				          what);
				free(rgb);
			}
	}

	/* the whole mask: radii of the morphology 1..16 come from the
	 * mask's resolution */
	{
		static const double mpps[] = {24, 9, 6, 4, 3, 2.2, 1.5, 0.6};
		for (size_t k = 0; k < sizeof mpps / sizeof *mpps; k++) {
			int w = 40 + (int)(next_u32() % 120), h = 30 + (int)(next_u32() % 90);
			uint8_t *rgb = made_up(w, h);
			char what[64];
			snprintf(what, sizeof what, "made-up %dx%d at %g um/px", w, h, mpps[k]);
			same_mask(rgb, w, h, mpps[k] / 0.5, 0.5, mpps[k] < 1 ? 50 : 5000, 1, what);
			free(rgb);
		}
	}

	/* images smaller than the windows: the widest morphology (16) over
	 * a few pixels */
	{
		static const int tiny[][2] = {{1, 1}, {2, 3}, {5, 1}, {1, 7}, {9, 4}};
		int bad = 0;
		for (size_t k = 0; k < sizeof tiny / sizeof *tiny; k++) {
			int w = tiny[k][0], h = tiny[k][1];
			uint8_t *rgb = made_up(w, h);
			for (size_t i = 0; i < (size_t)w * h; i += 2) /* some tissue */
				memcpy(rgb + 3 * i, (const uint8_t[]){200, 90, 170}, 3);
			struct tissue_mask m;
			uint8_t *want = ref_mask(rgb, w, h, 1, 0.5, 0);
			bad += tissue_detect(&m, rgb, w, h, 1, 1, 0.5, 0, 2) < 0 ||
			       memcmp(m.mask, want, (size_t)w * h) != 0;
			tissue_mask_release(&m);
			free(want);
			free(rgb);
		}
		ok(bad == 0, "images of 1x1 to 9x4 pixels: the mask as the method says");
	}

	/* a real slide's thumbnail, as eosin-tile makes it */
	{
		const char *shared = getenv("SHARED") ? getenv("SHARED") : "../shared/data";
		char path[1024];
		snprintf(path, sizeof path, "%s/slides/cmu-1-small-region.svs", shared);
		struct slide s;
		uint8_t *thumb = NULL;
		int tw, th;
		double dsx, dsy;
		if (access(path, R_OK) != 0) {
			printf("ok %d # skip no %s (SHARED)\n", ++tap_n, path);
		} else if (slide_open(&s, path, 0) == 0) {
			ok(slide_thumbnail(&s, 6.0, 2, &thumb, &tw, &th, &dsx, &dsy) == 0,
			   "a thumbnail of the real slide");
			if (thumb)
				same_mask(thumb, tw, th, dsx, s.base_mpp, 5000, 2, "real slide");
			free(thumb);
			/* 5 x 5 boxes of level 0 as OpenSlide reads it, rounded */
			int64_t lw = s.width[0], lh = s.height[0], k = 5;
			uint32_t *argb = malloc((size_t)(lw * lh) * 4);
			openslide_read_region(s.osr, argb, 0, 0, 0, lw, lh);
			int64_t ww = (lw + k - 1) / k, wh = (lh + k - 1) / k;
			uint8_t *want = malloc((size_t)(ww * wh * 3));
			for (int64_t y = 0; y < wh; y++)
				for (int64_t x = 0; x < ww; x++)
					for (int c = 0; c < 3; c++) {
						uint32_t sum = 0, n = 0;
						for (int64_t yy = y * k; yy < (y + 1) * k && yy < lh; yy++)
							for (int64_t xx = x * k; xx < (x + 1) * k && xx < lw;
							     xx++, n++) {
								uint32_t p = argb[yy * lw + xx];
								/* opaque inside the slide: no
								 * compositing to do */
								sum += (p >> (16 - 8 * c)) & 255;
							}
						want[(y * ww + x) * 3 + c] = (uint8_t)((sum + n / 2) / n);
					}
			free(argb);
			for (int copy = 0; copy < 2; copy++)
				for (int threads = 1; threads <= 3; threads += 2) {
					if (copy)
						slide_cache_level0(&s, (size_t)1 << 30, threads);
					thumb = NULL;
					int r = slide_thumbnail(&s, 5.5, threads, &thumb, &tw, &th,
					                        &dsx, &dsy);
					ok(r == 0 && tw == ww && th == wh && dsx == 5 &&
					       !memcmp(thumb, want, (size_t)(ww * wh * 3)),
					   "thumbnail %s, %d threads: the box averages of what "
					   "OpenSlide reads",
					   copy ? "from the level-0 copy" : "read directly", threads);
					free(thumb);
				}
			free(want);
			slide_close(&s);
		} else
			ok(0, "open %s", path);
	}

	/* parallel_for: every item once, thread numbers in range */
	for (int threads = 1; threads <= 4; threads++) {
		struct count_ctx c = {.seen = calloc(1000, sizeof(int)), .threads = threads};
		pthread_mutex_init(&c.lock, NULL);
		int used = parallel_for(1000, threads, count_item, &c);
		int once = 1;
		for (int i = 0; i < 1000; i++)
			once &= c.seen[i] == 1;
		ok(once && !c.bad_thread && used >= 1 && used <= threads,
		   "parallel_for, %d threads: each of 1000 items once, on %d threads", threads,
		   used);
		parallel_for(0, threads, count_item, &c);
		ok(c.seen[0] == 1, "parallel_for of nothing runs nothing");
		pthread_mutex_destroy(&c.lock);
		free(c.seen);
	}
	return tap_done();
}
