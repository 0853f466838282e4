/*
 * slide.c: OpenSlide reading, resolution and resampling. See slide.h.
 *
 * Where pixels come from, fastest first: the level-0 copy (small slides,
 * decoded once); the JPEG tiles of Aperio and generic TIFF levels and the
 * JPEG 2000 tiles of Aperio levels decoded directly (lib/slide/tiffjpeg.c: the
 * same pixels as OpenSlide, without its ARGB conversion and cairo
 * compositing); OpenSlide's read_region for everything else (other
 * vendors, other codecs), through one openslide_t shared by all threads.
 * The thumbnail is read block by block and box-averaged as it goes, so
 * memory follows the thumbnail. Resampling is
 * lib/slide/resample.c: libvips spends more building a pipeline per tile than
 * the arithmetic costs.
 */
#include "slide/slide.h"

#include "core/error.h"
#include "core/parallel.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

const char *mpp_source_name(enum mpp_source src)
{
	switch (src) {
	case MPP_OPENSLIDE: return "openslide";
	case MPP_TIFF: return "tiff";
	case MPP_OBJECTIVE: return "objective";
	case MPP_OVERRIDE: return "override";
	default: return "none";
	}
}

/* A whole string as a positive finite number, else 0. */
static double parse_positive(const char *s)
{
	if (!s || !*s)
		return 0;
	char *end;
	double v = strtod(s, &end);
	while (*end == ' ')
		end++;
	if (*end || !isfinite(v) || v <= 0)
		return 0;
	return v;
}

int slide_resolve_mpp(const char *mpp_x, const char *tiff_xres, const char *tiff_unit,
                      const char *objective_power, double override_mpp, double *mpp,
                      enum mpp_source *src)
{
	double v;
	if (override_mpp > 0) {
		*mpp = override_mpp;
		*src = MPP_OVERRIDE;
		return 0;
	}
	if ((v = parse_positive(mpp_x)) > 0) {
		*mpp = v;
		*src = MPP_OPENSLIDE;
		return 0;
	}
	if ((v = parse_positive(tiff_xres)) > 0 && tiff_unit) {
		double um_per_unit = 0;
		if (!strcmp(tiff_unit, "centimeter"))
			um_per_unit = 1e4;
		else if (!strcmp(tiff_unit, "inch"))
			um_per_unit = 25400;
		double m = um_per_unit / v;
		if (um_per_unit > 0 && m >= SLIDE_MPP_MIN && m <= SLIDE_MPP_MAX) {
			*mpp = m;
			*src = MPP_TIFF;
			return 0;
		}
	}
	if ((v = parse_positive(objective_power)) > 0) {
		*mpp = 10.0 / v;
		*src = MPP_OBJECTIVE;
		return 0;
	}
	*src = MPP_NONE;
	return eosin_error("no resolution: no openslide.mpp-x, no usable tiff.XResolution "
	                   "(inch or centimeter, %g..%g um/px) and no openslide.objective-power; "
	                   "give --mpp UM or --base-mag M",
	                   SLIDE_MPP_MIN, SLIDE_MPP_MAX);
}

/* Level-0 copies: tens of MiB each, one per slide in hand. Each is its
 * own mapping, advised for transparent huge pages, so that neither the
 * advice nor the trimming of a malloc arena spreads to other memory; and
 * the last one released is kept as the spare for the next slide, which
 * then neither faults nor clears its pages again: on a virtual machine
 * clearing fresh pages cost more than a third of a slide's decode when
 * two slides were in hand. */
static struct {
	pthread_mutex_t lock;
	void *mem;
	size_t cap;
} level0_spare = {.lock = PTHREAD_MUTEX_INITIALIZER};

#define HUGE_PAGE ((size_t)2 << 20)

/* Take the spare out (NULL if none), its size in *cap. */
static void *spare_take(size_t *cap)
{
	pthread_mutex_lock(&level0_spare.lock);
	void *mem = level0_spare.mem;
	*cap = level0_spare.cap;
	level0_spare.mem = NULL;
	pthread_mutex_unlock(&level0_spare.lock);
	return mem;
}

/* A mapping of at least bytes (capacity in *cap), 2 MiB aligned, or NULL. */
static uint8_t *level0_get(size_t bytes, size_t *cap)
{
	size_t want = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
	void *mem = spare_take(cap);
	if (mem && *cap >= want)
		return mem;
	/* too small: it goes before a new one comes, so that no more copies
	 * are mapped than slides are in hand */
	if (mem)
		munmap(mem, *cap);
	/* over-map by a huge page and cut the ends, for the alignment */
	uint8_t *raw = mmap(NULL, want + HUGE_PAGE, PROT_READ | PROT_WRITE,
	                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	uintptr_t a = ((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
	uint8_t *al = (uint8_t *)a;
	if (al > raw)
		munmap(raw, (size_t)(al - raw));
	munmap(al + want, (size_t)(raw + want + HUGE_PAGE - (al + want)));
	madvise(al, want, MADV_HUGEPAGE);
	*cap = want;
	return al;
}

/* Give a copy back: the larger of it and the spare is kept, the other
 * unmapped. */
static void level0_put(uint8_t *mem, size_t cap)
{
	if (!mem)
		return;
	pthread_mutex_lock(&level0_spare.lock);
	if (!level0_spare.mem || level0_spare.cap < cap) {
		void *old = level0_spare.mem;
		size_t oldcap = level0_spare.cap;
		level0_spare.mem = mem;
		level0_spare.cap = cap;
		mem = old;
		cap = oldcap;
	}
	pthread_mutex_unlock(&level0_spare.lock);
	if (mem)
		munmap(mem, cap);
}

void slide_close(struct slide *s)
{
	if (s->osr)
		openslide_close(s->osr);
	free(s->path);
	free(s->width);
	free(s->height);
	free(s->ds);
	level0_put(s->level0, s->level0_cap);
	if (s->ndirect > 0)
		tiffjpeg_close(&s->direct);
	memset(s, 0, sizeof *s);
}

int slide_open(struct slide *s, const char *path, double override_mpp)
{
	memset(s, 0, sizeof *s);
	const char *vendor = openslide_detect_vendor(path);
	s->osr = openslide_open(path);
	if (!s->osr) {
		if (!vendor)
			return eosin_error(
			    "'%s': not a slide OpenSlide can read (unknown format or "
			    "unreadable file)",
			    path);
		return eosin_error("'%s': cannot open %s slide", path, vendor);
	}
	const char *oerr = openslide_get_error(s->osr);
	if (oerr) {
		eosin_error("'%s': %s", path, oerr);
		slide_close(s);
		return -1;
	}
	s->path = strdup(path);
	s->nlevels = openslide_get_level_count(s->osr);
	if (s->nlevels < 1) {
		slide_close(s);
		return eosin_error("'%s': no pyramid levels", path);
	}
	s->width = calloc((size_t)s->nlevels, sizeof *s->width);
	s->height = calloc((size_t)s->nlevels, sizeof *s->height);
	s->ds = calloc((size_t)s->nlevels, sizeof *s->ds);
	if (!s->path || !s->width || !s->height || !s->ds) {
		slide_close(s);
		return eosin_error("out of memory");
	}
	for (int l = 0; l < s->nlevels; l++) {
		openslide_get_level_dimensions(s->osr, l, &s->width[l], &s->height[l]);
		s->ds[l] = openslide_get_level_downsample(s->osr, l);
		if (s->width[l] <= 0 || s->height[l] <= 0 || !(s->ds[l] >= 1)) {
			oerr = openslide_get_error(s->osr);
			eosin_error("'%s': level %d: %s", path, l, oerr ? oerr : "bad dimensions");
			slide_close(s);
			return -1;
		}
	}
	if (slide_resolve_mpp(
	        openslide_get_property_value(s->osr, OPENSLIDE_PROPERTY_NAME_MPP_X),
	        openslide_get_property_value(s->osr, "tiff.XResolution"),
	        openslide_get_property_value(s->osr, "tiff.ResolutionUnit"),
	        openslide_get_property_value(s->osr, OPENSLIDE_PROPERTY_NAME_OBJECTIVE_POWER),
	        override_mpp, &s->base_mpp, &s->mpp_source) < 0) {
		eosin_error_prefix("'%s'", path);
		slide_close(s);
		return -1;
	}
	return 0;
}

int slide_use_direct(struct slide *s)
{
	const char *vendor = openslide_get_property_value(s->osr, OPENSLIDE_PROPERTY_NAME_VENDOR);
	if (s->ndirect > 0)
		return s->ndirect;
	/* formats whose levels OpenSlide 3.4.1 reads tile by tile through
	 * libtiff, with no overlaps or offsets of their own */
	if (!vendor || (strcmp(vendor, "aperio") && strcmp(vendor, "generic-tiff")))
		return 0;
	int n = tiffjpeg_open(&s->direct, s->path, s->nlevels, s->width, s->height,
	                      !strcmp(vendor, "aperio"));
	if (n < 0)
		return -1;
	s->ndirect = n;
	return n;
}

static int is_direct(const struct slide *s, int level)
{
	return s->ndirect > 0 && s->direct.levels[level].direct;
}

int slide_level_for(const struct slide *s, double target_mpp, double tolerance)
{
	int best = 0;
	for (int l = 0; l < s->nlevels; l++)
		if (s->base_mpp * s->ds[l] <= target_mpp * (1 + tolerance) &&
		    s->ds[l] >= s->ds[best])
			best = l;
	return best;
}

/* Premultiplied ARGB (OpenSlide) to RGB composited on white: a pixel of
 * colour c and alpha a is stored as c*a/255, so on white it is
 * c*a/255 + 255 - a. Transparent (outside the scan) becomes white. */
static void argb_to_rgb_on_white(const uint32_t *argb, size_t n, uint8_t *rgb)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t p = argb[i];
		unsigned a = p >> 24, white = 255 - a;
		unsigned r = ((p >> 16) & 255) + white, g = ((p >> 8) & 255) + white,
		         b = (p & 255) + white;
		rgb[3 * i] = (uint8_t)(r > 255 ? 255 : r);
		rgb[3 * i + 1] = (uint8_t)(g > 255 ? 255 : g);
		rgb[3 * i + 2] = (uint8_t)(b > 255 ? 255 : b);
	}
}

void slide_scratch_release(struct slide_scratch *sc)
{
	free(sc->argb);
	free(sc->rgb);
	resampler_release(&sc->resampler);
	tiffjpeg_decoder_release(&sc->decoder);
	memset(sc, 0, sizeof *sc);
}

static int scratch_reserve(struct slide_scratch *sc, size_t pixels)
{
	if (pixels <= sc->cap)
		return 0;
	free(sc->argb);
	free(sc->rgb);
	sc->argb = malloc(pixels * 4);
	sc->rgb = malloc(pixels * 3);
	if (!sc->argb || !sc->rgb) {
		free(sc->argb);
		free(sc->rgb);
		sc->argb = NULL;
		sc->rgb = NULL;
		sc->cap = 0;
		return eosin_error("out of memory");
	}
	sc->cap = pixels;
	return 0;
}

/* An n x n RGB box of the level-0 copy at (x, y), white outside the
 * slide, as OpenSlide's transparent outside composited on white is. */
static void crop_level0(const struct slide *s, int64_t x, int64_t y, int64_t n, uint8_t *out)
{
	int64_t w = s->width[0], h = s->height[0];
	for (int64_t row = 0; row < n; row++) {
		uint8_t *o = out + (size_t)(row * n * 3);
		int64_t sy = y + row;
		if (sy < 0 || sy >= h) {
			memset(o, 255, (size_t)(n * 3));
			continue;
		}
		int64_t x0 = x < 0 ? 0 : x, x1 = x + n > w ? w : x + n;
		if (x1 <= x0) {
			memset(o, 255, (size_t)(n * 3));
			continue;
		}
		memset(o, 255, (size_t)((x0 - x) * 3));
		memcpy(o + (x0 - x) * 3, s->level0 + (size_t)((sy * w + x0) * 3),
		       (size_t)((x1 - x0) * 3));
		memset(o + (x1 - x) * 3, 255, (size_t)((x + n - x1) * 3));
	}
}

/* What the parallel loops of this file share: the slide, the image
 * being filled, and the first failure. */
struct fill {
	const struct slide *s;
	uint8_t *img;               /* level-0 copy, or the thumbnail */
	struct tiffjpeg_decoder *d; /* (threads) */
	int level;
	int64_t k, tw;             /* thumbnail: level px per thumbnail px, its width */
	int64_t bl, nbx;           /* blocks: side (level px) and how many across */
	pthread_mutex_t lock;
	int failed;
	int64_t failed_at; /* the first failing item's index */
	char err[512];     /* its message: the same for any thread count */
};

static void fill_failed(struct fill *f, int64_t item, const char *msg)
{
	pthread_mutex_lock(&f->lock);
	if (!f->failed || item < f->failed_at) {
		snprintf(f->err, sizeof f->err, "%s", msg);
		f->failed_at = item;
	}
	f->failed = 1;
	pthread_mutex_unlock(&f->lock);
}

/* Band b of direct level 0's tiles into the copy: whole tiles decode in
 * place. */
static void fill_band(void *ctx, int64_t b, int thread)
{
	struct fill *f = ctx;
	const struct slide *s = f->s;
	int64_t w = s->width[0], h = s->height[0], th = s->direct.levels[0].th;
	int64_t y0 = b * th, rh = h - y0 < th ? h - y0 : th;
	if (tiffjpeg_read_region(&s->direct, &f->d[thread], 0, 0, y0, w, rh,
	                         f->img + (size_t)(y0 * w * 3)) < 0)
		fill_failed(f, b, eosin_errmsg());
}

/* Block b (f->bl level px square) of level 0 through OpenSlide into the
 * copy. */
static void fill_block(void *ctx, int64_t b, int thread)
{
	struct fill *f = ctx;
	const struct slide *s = f->s;
	(void)thread;
	int64_t w = s->width[0], h = s->height[0], bl = f->bl;
	int64_t bx = (b % f->nbx) * bl, by = (b / f->nbx) * bl;
	int64_t rw = w - bx < bl ? w - bx : bl, rh = h - by < bl ? h - by : bl;
	uint32_t *argb = malloc((size_t)(rw * rh * 4));
	const char *oerr = NULL;
	if (argb) {
		openslide_read_region(s->osr, argb, bx, by, 0, rw, rh);
		oerr = openslide_get_error(s->osr);
	}
	if (!argb || oerr) {
		fill_failed(f, b, oerr ? oerr : "out of memory");
		free(argb);
		return;
	}
	for (int64_t y = 0; y < rh; y++)
		argb_to_rgb_on_white(argb + y * rw, (size_t)rw,
		                     f->img + (size_t)(((by + y) * w + bx) * 3));
	free(argb);
}

int slide_cache_level0(struct slide *s, size_t budget, int threads)
{
	int64_t w = s->width[0], h = s->height[0];
	if (s->level0)
		return 1;
	if ((double)w * (double)h * 3 > (double)budget)
		return 0;
	/* in 2 MiB pages where the kernel allows it (transparent huge pages
	 * on madvise): tens of MiB filled once, and faulting them in 4 KiB at
	 * a time costs about as much as decoding them */
	size_t cap;
	uint8_t *mem = level0_get((size_t)(w * h * 3), &cap);
	if (!mem)
		return 0; /* not an error: tiles are read through OpenSlide */
	threads = threads > 0 ? threads : 1;
	struct fill f = {.s = s, .img = mem};
	f.d = calloc((size_t)threads, sizeof *f.d);
	if (!f.d) {
		level0_put(mem, cap);
		return 0;
	}
	pthread_mutex_init(&f.lock, NULL);
	if (is_direct(s, 0)) {
		/* one band of tiles per step; the copy is all that is read of
		 * level 0 from now on, so its tiles are not kept */
		for (int t = 0; t < threads; t++)
			f.d[t].uncached = 1;
		parallel_for(s->direct.levels[0].down, threads, fill_band, &f);
	} else {
		f.bl = 1024;
		f.nbx = (w + f.bl - 1) / f.bl;
		parallel_for(f.nbx * ((h + f.bl - 1) / f.bl), threads, fill_block, &f);
	}
	for (int t = 0; t < threads; t++)
		tiffjpeg_decoder_release(&f.d[t]);
	free(f.d);
	pthread_mutex_destroy(&f.lock);
	if (f.failed) {
		level0_put(mem, cap);
		return eosin_error("'%s': reading level 0: %s", s->path, f.err);
	}
	s->level0 = mem;
	s->level0_cap = cap;
	return 1;
}

int slide_read_box(const struct slide *s, int level, int64_t x, int64_t y, int64_t extent, int px,
                   uint8_t *rgb, struct slide_scratch *sc)
{
	if (level < 0 || level >= s->nlevels || extent <= 0 || px <= 0)
		return eosin_error("'%s': bad read (level %d, extent %lld)", s->path, level,
		                   (long long)extent);
	double side = (double)extent / s->ds[level]; /* level px, maybe fractional */
	/* direct levels: read from the whole level pixel lx, ly at or before
	 * the box's corner, and tell the resampler the rest (ox, oy) */
	double ox = 0, oy = 0;
	int64_t lx = 0, ly = 0;
	int direct = !(level == 0 && s->level0) && is_direct(s, level);
	if (direct) {
		double fx = (double)x / s->ds[level], fy = (double)y / s->ds[level];
		lx = (int64_t)floor(fx);
		ly = (int64_t)floor(fy);
		ox = fx - (double)lx;
		oy = fy - (double)ly;
	}
	int64_t nx = (int64_t)ceil(ox + side - 1e-6), ny = (int64_t)ceil(oy + side - 1e-6);
	nx = nx < 1 ? 1 : nx;
	ny = ny < 1 ? 1 : ny;
	if (nx > 32768 || ny > 32768)
		return eosin_error("'%s': a %lld px square region at level %d is too large to read",
		                   s->path, (long long)nx, level);
	/* side is at most 1e-6 over what is read: clip it to the region */
	double sx = ox + side > (double)nx ? (double)nx - ox : side;
	double sy = oy + side > (double)ny ? (double)ny - oy : side;
	if (level == 0 && s->level0 && x >= 0 && y >= 0 && x + nx <= s->width[0] &&
	    y + ny <= s->height[0]) {
		/* inside the level-0 copy: resample straight from it */
		const uint8_t *at = s->level0 + ((size_t)y * (size_t)s->width[0] + (size_t)x) * 3;
		if (resample_rgb(&sc->resampler, at, (int)nx, (int)ny, (size_t)s->width[0] * 3, 0,
		                 0, sx, sy, rgb, px, px) < 0)
			return eosin_error_prefix("'%s'", s->path);
		return 0;
	}
	if (scratch_reserve(sc, (size_t)(nx * ny)) < 0)
		return -1;
	if (level == 0 && s->level0) {
		crop_level0(s, x, y, nx, sc->rgb);
	} else if (direct) {
		if (tiffjpeg_read_region(&s->direct, &sc->decoder, level, lx, ly, nx, ny, sc->rgb) <
		    0)
			return eosin_error_prefix("'%s': reading level %d at (%lld, %lld)", s->path,
			                          level, (long long)x, (long long)y);
	} else {
		openslide_read_region(s->osr, sc->argb, x, y, level, nx, ny);
		const char *oerr = openslide_get_error(s->osr);
		if (oerr)
			return eosin_error("'%s': reading level %d at (%lld, %lld): %s", s->path,
			                   level, (long long)x, (long long)y, oerr);
		argb_to_rgb_on_white(sc->argb, (size_t)(nx * ny), sc->rgb);
	}
	if (resample_rgb(&sc->resampler, sc->rgb, (int)nx, (int)ny, (size_t)nx * 3, ox, oy, sx, sy,
	                 rgb, px, px) < 0)
		return eosin_error_prefix("'%s'", s->path);
	return 0;
}

int slide_thumbnail_level(const struct slide *s, double ds_target)
{
	int level = 0;
	for (int l = 0; l < s->nlevels; l++)
		if (s->ds[l] <= ds_target && s->ds[l] >= s->ds[level])
			level = l;
	return level;
}

/* acc[i] += row[i] for n bytes, into 16-bit sums. */
static void add_row_u16(uint16_t *acc, const uint8_t *row, size_t n)
{
	size_t i = 0;
#ifdef __SSE2__
	const __m128i zero = _mm_setzero_si128();
	for (; i + 16 <= n; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(row + i));
		__m128i lo = _mm_loadu_si128((const __m128i *)(acc + i)),
		        hi = _mm_loadu_si128((const __m128i *)(acc + i + 8));
		lo = _mm_add_epi16(lo, _mm_unpacklo_epi8(v, zero));
		hi = _mm_add_epi16(hi, _mm_unpackhi_epi8(v, zero));
		_mm_storeu_si128((__m128i *)(acc + i), lo);
		_mm_storeu_si128((__m128i *)(acc + i + 8), hi);
	}
#endif
	for (; i < n; i++)
		acc[i] = (uint16_t)(acc[i] + row[i]);
}

/* o = the rounded means of sums of n pixels; inverse (when not 0) the
 * exact reciprocal of whole (see thumbnail_block). */
static inline void box_mean(uint8_t *o, uint32_t r, uint32_t g, uint32_t b, uint32_t n,
                            uint64_t whole, uint64_t inverse)
{
	if (n == whole && inverse) {
		o[0] = (uint8_t)(((r + n / 2) * inverse) >> 40);
		o[1] = (uint8_t)(((g + n / 2) * inverse) >> 40);
		o[2] = (uint8_t)(((b + n / 2) * inverse) >> 40);
	} else {
		o[0] = (uint8_t)((r + n / 2) / n);
		o[1] = (uint8_t)((g + n / 2) / n);
		o[2] = (uint8_t)((b + n / 2) / n);
	}
}

/* The rw x rh pixels at (bx, by) of level `level` as RGB rows, *stride
 * bytes apart: in the level-0 copy, or read into *block (the caller
 * frees it). 0, or -1 with *err (NULL: out of memory). */
static int block_pixels(const struct slide *s, int level, int64_t bx, int64_t by, int64_t rw,
                        int64_t rh, const uint8_t **src, size_t *stride, uint8_t **block,
                        const char **err)
{
	int64_t lw = s->width[level];
	*block = NULL;
	*err = NULL;
	if (level == 0 && s->level0) {
		*src = s->level0 + (size_t)((by * lw + bx) * 3);
		*stride = (size_t)lw * 3;
		return 0;
	}
	int ok = 0;
	uint32_t *argb = NULL;
	uint8_t *px = malloc((size_t)(rw * rh * 3));
	if (px && is_direct(s, level)) {
		struct tiffjpeg_decoder d = {0};
		ok = tiffjpeg_read_region(&s->direct, &d, level, bx, by, rw, rh, px) == 0;
		if (!ok)
			*err = eosin_errmsg();
		tiffjpeg_decoder_release(&d);
	} else if (px && (argb = malloc((size_t)(rw * rh * 4)))) {
		/* read_region takes level-0 coordinates */
		openslide_read_region(s->osr, argb, (int64_t)(bx * s->ds[level]),
		                      (int64_t)(by * s->ds[level]), level, rw, rh);
		*err = openslide_get_error(s->osr);
		ok = !*err;
		argb_to_rgb_on_white(argb, (size_t)(rw * rh), px);
	}
	free(argb);
	*src = px;
	*stride = (size_t)rw * 3;
	*block = px;
	return ok ? 0 : -1;
}

/* Box average of each k x k (clipped) cell of the rw x rh pixels at src
 * (rows stride bytes apart), rounded: (sum + n/2) / n, into the rows of
 * out, tw pixels apart, from out's first pixel. The k rows of a thumbnail
 * row are first summed column by column (16-bit: k <= 257 rows of bytes
 * fit), then k columns at a time. For whole cells (n = k^2 < 2^16,
 * sum + n/2 < 256 n) the quotient is (x * (floor(2^40 / n) + 1)) >> 40
 * exactly, without a division. */
static void box_average(const uint8_t *src, size_t stride, int64_t rw, int64_t rh, int64_t k,
                        uint8_t *out, int64_t tw)
{
	uint64_t whole = (uint64_t)(k * k), inverse = k < 256 ? ((uint64_t)1 << 40) / whole + 1 : 0;
	uint16_t *columns = k <= 257 ? malloc((size_t)rw * 3 * sizeof *columns) : NULL;
	for (int64_t y0 = 0; y0 < rh; y0 += k) {
		int64_t y1 = y0 + k < rh ? y0 + k : rh;
		uint8_t *o = out + 3 * (y0 / k * tw);
		if (columns) {
			size_t n3 = (size_t)rw * 3;
			memset(columns, 0, n3 * sizeof *columns);
			for (int64_t y = y0; y < y1; y++)
				add_row_u16(columns, src + (size_t)y * stride, n3);
			for (int64_t x0 = 0; x0 < rw; x0 += k, o += 3) {
				int64_t x1 = x0 + k < rw ? x0 + k : rw;
				uint32_t r = 0, g = 0, b3 = 0, n = (uint32_t)((y1 - y0) * (x1 - x0));
				for (const uint16_t *c = columns + x0 * 3, *e = columns + x1 * 3; c < e;
				     c += 3) {
					r += c[0];
					g += c[1];
					b3 += c[2];
				}
				box_mean(o, r, g, b3, n, whole, inverse);
			}
			continue;
		}
		for (int64_t x0 = 0; x0 < rw; x0 += k, o += 3) {
			int64_t x1 = x0 + k < rw ? x0 + k : rw;
			uint32_t r = 0, g = 0, b3 = 0, n = (uint32_t)((y1 - y0) * (x1 - x0));
			for (int64_t y = y0; y < y1; y++) {
				const uint8_t *p = src + (size_t)y * stride + (size_t)x0 * 3;
				for (int64_t x = x0; x < x1; x++, p += 3) {
					r += p[0];
					g += p[1];
					b3 += p[2];
				}
			}
			box_mean(o, r, g, b3, n, whole, inverse);
		}
	}
	free(columns);
}

/* Block b of the thumbnail's level, box-averaged into the thumbnail. */
static void thumbnail_block(void *ctx, int64_t b, int thread)
{
	struct fill *f = ctx;
	const struct slide *s = f->s;
	int64_t k = f->k, bl = f->bl;
	int64_t lw = s->width[f->level], lh = s->height[f->level];
	(void)thread;
	int64_t bx = (b % f->nbx) * bl, by = (b / f->nbx) * bl;
	int64_t rw = lw - bx < bl ? lw - bx : bl, rh = lh - by < bl ? lh - by : bl;
	const uint8_t *src;
	size_t stride;
	uint8_t *block;
	const char *err;
	if (block_pixels(s, f->level, bx, by, rw, rh, &src, &stride, &block, &err) < 0) {
		fill_failed(f, b, err ? err : "out of memory");
		free(block);
		return;
	}
	box_average(src, stride, rw, rh, k, &f->img[3 * (by / k * f->tw + bx / k)], f->tw);
	free(block);
}

int slide_thumbnail(const struct slide *s, double ds_target, int threads, uint8_t **rgb, int *w,
                    int *h, double *dsx, double *dsy)
{
	if (ds_target < 1)
		ds_target = 1;
	int level = slide_thumbnail_level(s, ds_target);
	/* k x k level pixels per thumbnail pixel, k an integer (rounded down:
	 * never coarser than asked), so that blocks
	 * of the level map onto whole thumbnail pixels */
	int64_t k = (int64_t)floor(ds_target / s->ds[level] + 1e-9);
	if (k < 1)
		k = 1;
	int64_t lw = s->width[level], lh = s->height[level];
	int64_t tw = (lw + k - 1) / k, th = (lh + k - 1) / k;
	if (tw > 65536 || th > 65536 || tw * th > ((int64_t)1 << 28))
		return eosin_error("'%s': a %lldx%lld thumbnail is too large", s->path,
		                   (long long)tw, (long long)th);
	/* blocks of about 1024 level pixels square: one read_region each, up
	 * to `threads` at once (blocks are independent; the handle is
	 * thread-safe); from the level-0 copy, where a block costs no read,
	 * smaller ones, to share the work out evenly */
	int64_t target = level == 0 && s->level0 ? 256 : 1024;
	int64_t bt = target / k < 1 ? 1 : target / k; /* block side, thumbnail px */
	int64_t bl = bt * k;                      /* block side, level px */
	int64_t nbx = (lw + bl - 1) / bl, nby = (lh + bl - 1) / bl;
	uint8_t *out = malloc((size_t)(tw * th * 3));
	if (!out)
		return eosin_error("out of memory");
	struct fill f = {.s = s, .img = out, .level = level, .k = k, .tw = tw, .bl = bl, .nbx = nbx};
	pthread_mutex_init(&f.lock, NULL);
	parallel_for(nbx * nby, threads > 0 ? threads : 1, thumbnail_block, &f);
	pthread_mutex_destroy(&f.lock);
	if (f.failed) {
		free(out);
		return eosin_error("'%s': reading level %d for the thumbnail: %s", s->path, level,
		                   f.err);
	}
	*rgb = out;
	*w = (int)tw;
	*h = (int)th;
	*dsx = *dsy = s->ds[level] * (double)k;
	return 0;
}
