/*
 * tiffjpeg.c: JPEG tiles of tiled TIFF slides and Aperio's JPEG 2000
 * tiles, decoded directly. See tiffjpeg.h.
 */
#include "slide/tiffjpeg.h"

#include "core/error.h"
#include "slide/tiffj2k.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

/* Decoded tiles shared by the threads (see tiffjpeg.h): direct-mapped,
 * each slot one tile of tile_bytes, key level << 40 | tile index. */
struct tiffjpeg_cache {
	pthread_mutex_t lock;
	uint8_t *mem;
	int64_t *key; /* (slots); -1: empty */
	size_t slots, tile_bytes;
};

static size_t cache_slot(const struct tiffjpeg_cache *c, int level, int64_t i)
{
	/* levels spread over the slots differently */
	return (size_t)(((uint64_t)i + (uint64_t)level * 2654435761u) % c->slots);
}

static void cache_free(struct tiffjpeg_cache *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c->mem);
	free(c->key);
	free(c);
}

/* A cache of tiles of tile_bytes, or NULL (no cache: tiles are decoded
 * each time they are needed). */
static struct tiffjpeg_cache *cache_new(size_t tile_bytes)
{
	size_t slots = TIFFJPEG_CACHE_BYTES / tile_bytes;
	if (slots < 4)
		return NULL;
	struct tiffjpeg_cache *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->mem = malloc(slots * tile_bytes); /* pages touched as slots fill */
	c->key = malloc(slots * sizeof *c->key);
	if (!c->mem || !c->key) {
		free(c->mem);
		free(c->key);
		free(c);
		return NULL;
	}
	for (size_t k = 0; k < slots; k++)
		c->key[k] = -1;
	c->slots = slots;
	c->tile_bytes = tile_bytes;
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

static void level_release(struct tiffjpeg_level *l)
{
	free(l->size);
	memset(l, 0, sizeof *l);
}

void tiffjpeg_close(struct tiffjpeg *t)
{
	for (int i = 0; i < t->nlevels; i++)
		level_release(&t->levels[i]);
	free(t->levels);
	free(t->path);
	cache_free(t->cache);
	memset(t, 0, sizeof *t);
}

/* Whether the current (tiled) directory has a tile with no bytes. */
static int has_missing(TIFF *tif)
{
	uint64_t *size = NULL;
	if (!TIFFGetField(tif, TIFFTAG_TILEBYTECOUNTS, &size) || !size)
		return 1; /* cannot tell: as if it had */
	for (uint32_t i = 0, n = TIFFNumberOfTiles(tif); i < n; i++)
		if (size[i] == 0)
			return 1;
	return 0;
}

/* The current directory as level l, when it is a JPEG tile pyramid level
 * of the right size (or, aperio, a JPEG 2000 one). 1 taken, 0 not, -1
 * out of memory. */
static int take_directory(TIFF *tif, struct tiffjpeg_level *l, int64_t w, int64_t h, int aperio)
{
	uint32_t iw = 0, ih = 0, tw = 0, th = 0;
	uint16_t compression = 0, bits = 0, spp = 0, planar = 0, photometric = 0;
	if (!TIFFIsTiled(tif) || !TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &iw) ||
	    !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &ih) || iw != w || ih != h ||
	    !TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw) ||
	    !TIFFGetField(tif, TIFFTAG_TILELENGTH, &th) || tw == 0 || th == 0 || tw > 16384 ||
	    th > 16384 || !TIFFGetField(tif, TIFFTAG_COMPRESSION, &compression) ||
	    !TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bits) || bits != 8 ||
	    !TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp) || spp != 3 ||
	    !TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar) ||
	    planar != PLANARCONFIG_CONTIG)
		return 0;
	int j2k =
	    aperio && (compression == TIFFJ2K_APERIO_YCBCR || compression == TIFFJ2K_APERIO_RGB);
	/* JPEG 2000: the codestream says what it holds, the photometric tag
	 * is not read (nor by OpenSlide) */
	if (!j2k && (compression != COMPRESSION_JPEG ||
	             !TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric) ||
	             (photometric != PHOTOMETRIC_YCBCR && photometric != PHOTOMETRIC_RGB)))
		return 0;
	int64_t across = ((int64_t)iw + tw - 1) / tw, down = ((int64_t)ih + th - 1) / th;
	if ((int64_t)TIFFNumberOfTiles(tif) != across * down)
		return 0;
	uint64_t *size = NULL;
	if (!TIFFGetField(tif, TIFFTAG_TILEBYTECOUNTS, &size) || !size)
		return 0;
	size_t n = (size_t)(across * down);
	l->size = malloc(n * sizeof *l->size);
	if (!l->size)
		return -1;
	memcpy(l->size, size, n * sizeof *l->size);
	l->w = w;
	l->h = h;
	l->tw = (int)tw;
	l->th = (int)th;
	l->across = across;
	l->down = down;
	l->j2k = j2k;
	l->ycbcr = j2k ? compression == TIFFJ2K_APERIO_YCBCR : photometric == PHOTOMETRIC_YCBCR;
	l->dir = TIFFCurrentDirectory(tif);
	l->direct = 1;
	return 1;
}

static void quiet_handler(const char *module, const char *fmt, va_list ap)
{
	(void)module;
	(void)fmt;
	(void)ap;
}

void tiffjpeg_decoder_release(struct tiffjpeg_decoder *d)
{
	if (d->tif)
		TIFFClose(d->tif);
	free(d->tile);
	free(d->raw);
	memset(d, 0, sizeof *d);
}

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	uint8_t *p = realloc(*buf, need);
	if (!p)
		return eosin_error("out of memory");
	*buf = p;
	*cap = need;
	return 0;
}

/* Decode tile i to tw x th RGB at dst (rows pitch bytes apart), through
 * the thread's own TIFF handle. */
static int decode_tile(const struct tiffjpeg *t, struct tiffjpeg_decoder *d, int level, int64_t i,
                       uint8_t *dst, size_t pitch)
{
	const struct tiffjpeg_level *l = &t->levels[level];
	size_t row = (size_t)l->tw * 3, bytes = row * (size_t)l->th;
	if (l->size[i] == 0) { /* no data: transparent in OpenSlide, white here */
		for (int y = 0; y < l->th; y++)
			memset(dst + (size_t)y * pitch, 255, row);
		return 0;
	}
	if (!d->tif) {
		if (!(d->tif = TIFFOpen(t->path, "r")))
			return eosin_error("cannot reopen the TIFF file");
		d->dir = -1;
	}
	if (d->dir != l->dir) {
		d->dir = -1;
		if (!TIFFSetDirectory(d->tif, (tdir_t)l->dir))
			return eosin_error("cannot read TIFF directory %d", l->dir);
		/* what TIFFRGBAImage asks for: YCbCr converted by libjpeg */
		if (!l->j2k && l->ycbcr &&
		    !TIFFSetField(d->tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB))
			return eosin_error("cannot set the JPEG colour mode");
		d->dir = l->dir;
	}
	if (l->j2k) {
		/* the raw codestream, as OpenSlide reads it, decoded in place */
		uint64_t n = l->size[i];
		if (n > ((uint64_t)1 << 30))
			return eosin_error("tile %lld of level %d: %llu bytes of JPEG 2000",
			                   (long long)i, level, (unsigned long long)n);
		if (reserve(&d->raw, &d->raw_cap, (size_t)n) < 0)
			return -1;
		if (TIFFReadRawTile(d->tif, (uint32_t)i, d->raw, (tmsize_t)n) != (tmsize_t)n)
			return eosin_error("tile %lld of level %d: cannot read its %llu bytes",
			                   (long long)i, level, (unsigned long long)n);
		if (tiffj2k_decode(d->raw, (size_t)n, l->tw, l->th, l->ycbcr, dst, pitch) < 0)
			return eosin_error_prefix("tile %lld of level %d", (long long)i, level);
		return 0;
	}
	uint8_t *out = dst;
	if (pitch != row) {
		if (reserve(&d->tile, &d->tile_cap, bytes) < 0)
			return -1;
		out = d->tile;
	}
	if (TIFFReadEncodedTile(d->tif, (uint32_t)i, out, (tmsize_t)bytes) != (tmsize_t)bytes)
		return eosin_error("tile %lld of level %d: corrupt or truncated JPEG", (long long)i,
		                   level);
	if (out != dst)
		for (int y = 0; y < l->th; y++)
			memcpy(dst + (size_t)y * pitch, out + (size_t)y * row, row);
	return 0;
}

int tiffjpeg_open(struct tiffjpeg *t, const char *path, int nlevels, const int64_t *w,
                  const int64_t *h, int aperio)
{
	memset(t, 0, sizeof *t);
	/* lib/ does not print: libtiff's messages are dropped (for good, as
	 * decoders on other threads use libtiff later); failures are reported
	 * through return values */
	TIFFSetErrorHandler(quiet_handler);
	TIFFSetWarningHandler(quiet_handler);
	TIFF *tif = TIFFOpen(path, "r");
	int direct = 0, ret = 0;
	if (!tif)
		goto done;
	t->levels = calloc((size_t)nlevels, sizeof *t->levels);
	t->path = strdup(path);
	if (!t->levels || !t->path) {
		ret = -1;
		goto done;
	}
	t->nlevels = nlevels;
	/* Aperio's levels are its tiled directories in order: whether this
	 * one or one before it has a tile with no bytes */
	int missing = 0, tiled = 0;
	do {
		if (!TIFFIsTiled(tif))
			continue;
		missing = missing || has_missing(tif);
		if (aperio && tiled++ > 0 && missing)
			continue; /* OpenSlide paints its missing tiles: not direct */
		for (int l = 0; l < nlevels; l++) {
			if (t->levels[l].direct)
				continue;
			int r = take_directory(tif, &t->levels[l], w[l], h[l], aperio);
			if (r < 0) {
				ret = -1;
				goto done;
			}
			if (r > 0) {
				direct++;
				break;
			}
		}
	} while (TIFFReadDirectory(tif));
	/* decode one tile of each level now: a level whose streams are not
	 * what the TIFF says (colour space, size) goes back to OpenSlide */
	struct tiffjpeg_decoder d = {0};
	for (int l = 0; l < nlevels && direct > 0; l++) {
		struct tiffjpeg_level *lv = &t->levels[l];
		if (!lv->direct)
			continue;
		uint8_t *probe = malloc((size_t)lv->tw * lv->th * 3);
		int64_t i = 0;
		while (i < lv->across * lv->down - 1 && lv->size[i] == 0)
			i++;
		if (!probe || decode_tile(t, &d, l, i, probe, (size_t)lv->tw * 3) < 0) {
			level_release(lv);
			direct--;
		}
		free(probe);
	}
	tiffjpeg_decoder_release(&d);
	for (int l = 0; l < nlevels && direct > 0 && !t->cache; l++)
		if (t->levels[l].direct)
			t->cache = cache_new((size_t)t->levels[l].tw * t->levels[l].th * 3);
done:
	if (tif)
		TIFFClose(tif);
	if (ret < 0 || direct == 0) {
		tiffjpeg_close(t);
		return ret < 0 ? eosin_error("out of memory") : 0;
	}
	return direct;
}

/* rows of n bytes from src (pitch sp) to dst (pitch dp) */
static void copy_rows(uint8_t *dst, size_t dp, const uint8_t *src, size_t sp, int64_t rows,
                      size_t n)
{
	for (int64_t y = 0; y < rows; y++)
		memcpy(dst + (size_t)y * dp, src + (size_t)y * sp, n);
}

int tiffjpeg_read_region(const struct tiffjpeg *t, struct tiffjpeg_decoder *d, int level, int64_t x,
                         int64_t y, int64_t w, int64_t h, uint8_t *rgb)
{
	const struct tiffjpeg_level *l = &t->levels[level];
	if (!l->direct || w <= 0 || h <= 0)
		return eosin_error("level %d is not read directly", level);
	size_t pitch = (size_t)w * 3;
	int64_t x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
	int64_t x1 = x + w > l->w ? l->w : x + w, y1 = y + h > l->h ? l->h : y + h;
	if (x < 0 || y < 0 || x + w > l->w || y + h > l->h)
		memset(rgb, 255, pitch * (size_t)h);
	if (x1 <= x0 || y1 <= y0)
		return 0;
	for (int64_t row = y0 / l->th; row * l->th < y1; row++)
		for (int64_t col = x0 / l->tw; col * l->tw < x1; col++) {
			int64_t tx = col * l->tw, ty = row * l->th, i = row * l->across + col;
			/* the part of this tile inside both the region and the level */
			int64_t ax = tx > x0 ? tx : x0, ay = ty > y0 ? ty : y0;
			int64_t bx = tx + l->tw < x1 ? tx + l->tw : x1,
			        by = ty + l->th < y1 ? ty + l->th : y1;
			uint8_t *dst = rgb + (size_t)(ay - y) * pitch + (size_t)(ax - x) * 3;
			size_t tpitch = (size_t)l->tw * 3, part = (size_t)(bx - ax) * 3;
			struct tiffjpeg_cache *c = t->cache;
			int cached = c && !d->uncached && c->tile_bytes == tpitch * (size_t)l->th;
			int64_t key = (int64_t)level << 40 | i;
			size_t k = cached ? cache_slot(c, level, i) : 0;
			if (cached) {
				pthread_mutex_lock(&c->lock);
				int hit = c->key[k] == key;
				if (hit)
					copy_rows(dst, pitch,
					          c->mem + k * c->tile_bytes + (size_t)(ay - ty) * tpitch +
					              (size_t)(ax - tx) * 3,
					          tpitch, by - ay, part);
				pthread_mutex_unlock(&c->lock);
				if (hit)
					continue;
			}
			/* decode: a whole tile in place, a part through d->tile
			 * (where pitch == tpitch decode_tile writes in place) */
			const uint8_t *tile;
			size_t from;
			if (ax == tx && ay == ty && bx == tx + l->tw && by == ty + l->th) {
				if (decode_tile(t, d, level, i, dst, pitch) < 0)
					return -1;
				tile = dst;
				from = pitch;
			} else {
				if (reserve(&d->tile, &d->tile_cap, tpitch * (size_t)l->th) < 0 ||
				    decode_tile(t, d, level, i, d->tile, tpitch) < 0)
					return -1;
				tile = d->tile;
				from = tpitch;
				copy_rows(dst, pitch,
				          d->tile + (size_t)(ay - ty) * tpitch + (size_t)(ax - tx) * 3,
				          tpitch, by - ay, part);
			}
			if (cached) {
				pthread_mutex_lock(&c->lock);
				copy_rows(c->mem + k * c->tile_bytes, tpitch, tile, from, l->th, tpitch);
				c->key[k] = key;
				pthread_mutex_unlock(&c->lock);
			}
		}
	return 0;
}
