/*
 * tiffjpeg.h: the JPEG tiles of a tiled TIFF slide (Aperio SVS, generic
 * tiled TIFF) and the JPEG 2000 tiles of an Aperio SVS, decoded straight
 * to RGB, without OpenSlide in between.
 *
 * OpenSlide 3.4.1 reads such a tile with libtiff's TIFFRGBAImage: libtiff's
 * JPEG codec on libjpeg-turbo with its defaults (accurate integer IDCT,
 * fancy upsampling), YCbCr converted to RGB by libjpeg when the TIFF says
 * YCbCr (JPEGCOLORMODE_RGB), the components taken as they are when it says
 * RGB (Aperio's usual case: RGB coded without a colour transform, which
 * the stream itself does not say, so a plain JPEG decoder would get it
 * wrong); then it packs the tile to premultiplied ARGB and composites it
 * with cairo, which for pixels inside the level is a copy. Reading the
 * same tile with TIFFReadEncodedTile, the same codec and colour mode,
 * gives the same RGB without the ARGB round trip, the compositing and the
 * per-region cache lookups. A level is taken here only when it is JPEG,
 * 8-bit, 3 samples, contiguous, photometric YCbCr or RGB, and a tile of
 * it decodes at open.
 *
 * Aperio's JPEG 2000 levels (TIFF compression 33003, Y'CbCr, and 33005,
 * RGB; 8-bit, 3 samples) are direct too: OpenSlide reads a tile's raw
 * bytes (TIFFReadRawTile) and decodes the codestream with OpenJPEG, and
 * so does lib/slide/tiffj2k.c, with the same Y'CbCr arithmetic (tiffj2k.h), so
 * the pixels are the same byte for byte. Anything else (other vendors,
 * other codecs) stays with OpenSlide.
 *
 * Tiles with no bytes: OpenSlide leaves them transparent (white here) on
 * a generic TIFF and on Aperio's first level; on Aperio's other levels
 * it paints them, and the tiles of the next levels that cover them, from
 * the level above, downsampled with cairo. So an Aperio level after the
 * first is direct only when neither it nor any level above it has such a
 * tile.
 *
 * A libtiff handle is not thread-safe: each thread decodes through its own
 * struct tiffjpeg_decoder (its own TIFF handle, opened on first use), and
 * the struct tiffjpeg itself is read-only after open but for its tile
 * cache, which has its own lock.
 */
#ifndef EOSIN_TIFFJPEG_H
#define EOSIN_TIFFJPEG_H

#include <stddef.h>
#include <stdint.h>

struct tiffjpeg_level {
	int direct;           /* 1: tiles are decoded here */
	int dir;              /* its TIFF directory */
	int j2k;              /* Aperio JPEG 2000 (else JPEG) */
	int ycbcr;            /* JPEG: photometric YCbCr; JPEG 2000: 33003 (else RGB) */
	int64_t w, h;         /* level size, px */
	int tw, th;           /* tile size, px */
	int64_t across, down; /* tiles */
	uint64_t *size;       /* (down, across) raw tile bytes; 0: no data */
};

/* Decoded tiles kept for the next reads, shared by all threads (behind a
 * lock): regions that cover tiles only in part (boxes on fractional
 * level pixels span 2x2 tiles, and the boxes next to them and below
 * share them) and the thumbnail's blocks, read before the tiles, would
 * otherwise decode the same tiles again, and a JPEG 2000 tile costs
 * several times a JPEG one. Direct-mapped by level and tile index, at
 * most TIFFJPEG_CACHE_BYTES a slide, for tiles of the first direct
 * level's size. */
#define TIFFJPEG_CACHE_BYTES ((size_t)16 << 20)
struct tiffjpeg_cache;

struct tiffjpeg {
	char *path;
	int nlevels;
	struct tiffjpeg_level *levels; /* (nlevels), indexed like OpenSlide's */
	struct tiffjpeg_cache *cache;  /* or NULL */
};

/* Open path's TIFF directories and match them to the nlevels levels of
 * sizes w[], h[] (OpenSlide's); aperio: OpenSlide reads it as an Aperio
 * slide (JPEG 2000 levels, missing tiles painted from the level above).
 * Returns how many levels are direct (0: none, t needs no
 * tiffjpeg_close()), or -1 out of memory. A file libtiff cannot read is
 * 0, not an error: OpenSlide reads it. */
int tiffjpeg_open(struct tiffjpeg *t, const char *path, int nlevels, const int64_t *w,
                  const int64_t *h, int aperio);
void tiffjpeg_close(struct tiffjpeg *t);

/* What one thread needs to decode: zero it to start. */
struct tiffjpeg_decoder {
	void *tif;     /* TIFF *, this thread's */
	int dir;       /* its current directory */
	uint8_t *tile; /* one decoded tile, for edges */
	size_t tile_cap;
	uint8_t *raw; /* one JPEG 2000 tile's bytes */
	size_t raw_cap;
	int uncached; /* 1: reads that will not come again, past the tile cache */
};
void tiffjpeg_decoder_release(struct tiffjpeg_decoder *d);

/* The level region [x, x+w) x [y, y+h), level px, as RGB rows of w * 3
 * bytes at rgb; white outside the level (OpenSlide's transparent there,
 * composited on white). Only for a direct level. A tile with no bytes
 * (seen in real slides) is white too, as OpenSlide leaves it transparent. */
int tiffjpeg_read_region(const struct tiffjpeg *t, struct tiffjpeg_decoder *d, int level,
                         int64_t x, int64_t y, int64_t w, int64_t h, uint8_t *rgb);

#endif
