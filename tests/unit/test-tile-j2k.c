/*
 * test-tile-j2k.c: Aperio JPEG 2000 tiles decoded by lib/slide/tiffj2k.c give
 * exactly the pixels OpenSlide's read_region gives (composited on white),
 * on made-up two-level Aperio slides written here (libtiff, tiles coded
 * with OpenJPEG): 33003 Y'CbCr with chroma 2:1 across (Aperio's usual),
 * none, and 2:1 both ways; 33005 RGB; random samples, so that every
 * chroma value and the clamping are met. Also: a tile with no bytes
 * (white on level 0, the next level left to OpenSlide), a corrupt tile
 * (an error naming it), 12-bit samples (left to OpenSlide). No data
 * files needed.
 */
#include "core/error.h"
#include "openslide_ref.h"
#include "slide/slide.h"
#include "tap.h"
#include "slide/tiffj2k.h"

#include <openjpeg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <unistd.h>

enum { TILE = 256 };

/* a growing buffer that an OpenJPEG output stream writes into */
struct sink {
	uint8_t *data;
	size_t len, cap, at;
};

static int sink_fit(struct sink *s, size_t end)
{
	if (end > s->cap) {
		size_t cap = s->cap ? s->cap : 65536;
		while (cap < end)
			cap *= 2;
		uint8_t *p = realloc(s->data, cap);
		if (!p)
			return -1;
		memset(p + s->cap, 0, cap - s->cap);
		s->data = p;
		s->cap = cap;
	}
	if (end > s->len)
		s->len = end;
	return 0;
}

static OPJ_SIZE_T sink_write(void *buf, OPJ_SIZE_T n, void *user)
{
	struct sink *s = user;
	if (sink_fit(s, s->at + n) < 0)
		return (OPJ_SIZE_T)-1;
	memcpy(s->data + s->at, buf, n);
	s->at += n;
	return n;
}

static OPJ_OFF_T sink_skip(OPJ_OFF_T n, void *user)
{
	struct sink *s = user;
	if ((OPJ_OFF_T)s->at + n < 0 || sink_fit(s, (size_t)((OPJ_OFF_T)s->at + n)) < 0)
		return -1;
	s->at = (size_t)((OPJ_OFF_T)s->at + n);
	return n;
}

static OPJ_BOOL sink_seek(OPJ_OFF_T to, void *user)
{
	struct sink *s = user;
	if (to < 0 || sink_fit(s, (size_t)to) < 0)
		return OPJ_FALSE;
	s->at = (size_t)to;
	return OPJ_TRUE;
}

static uint32_t rng = 12345;
static int precision = 8; /* of the samples encode_tile() writes */
static uint8_t next_byte(void)
{
	rng = rng * 1103515245u + 12345u;
	return (uint8_t)(rng >> 16);
}

/* One TILE x TILE tile as a J2K codestream: 3 components of random
 * samples, components 1 and 2 subsampled dx x dy; mct: the encoder's
 * colour transform (RGB). */
static int encode_tile(int dx, int dy, int mct, struct sink *out)
{
	opj_image_cmptparm_t cp[3];
	memset(cp, 0, sizeof cp);
	for (int k = 0; k < 3; k++) {
		cp[k].dx = k ? (OPJ_UINT32)dx : 1;
		cp[k].dy = k ? (OPJ_UINT32)dy : 1;
		cp[k].w = (TILE + cp[k].dx - 1) / cp[k].dx;
		cp[k].h = (TILE + cp[k].dy - 1) / cp[k].dy;
		cp[k].prec = (OPJ_UINT32)precision;
	}
	opj_image_t *im = opj_image_create(3, cp, mct ? OPJ_CLRSPC_SRGB : OPJ_CLRSPC_SYCC);
	if (!im)
		return -1;
	im->x1 = TILE;
	im->y1 = TILE;
	for (int k = 0; k < 3; k++)
		for (OPJ_UINT32 i = 0; i < im->comps[k].w * im->comps[k].h; i++) {
			/* smooth gradients with noise: codes to something that
			 * still covers 0..255 */
			OPJ_UINT32 x = i % im->comps[k].w, y = i / im->comps[k].w;
			int v = (int)((x * (3 + k) + y * (5 - k)) & 255) + (next_byte() & 63) - 32;
			v = v < 0 ? 0 : v > 255 ? 255 : v;
			im->comps[k].data[i] = v << (precision - 8);
		}
	opj_cparameters_t p;
	opj_set_default_encoder_parameters(&p);
	p.tcp_numlayers = 1;
	p.tcp_rates[0] = 8;
	p.cp_disto_alloc = 1;
	p.irreversible = 1;
	p.tcp_mct = mct ? 1 : 0;
	opj_codec_t *c = opj_create_compress(OPJ_CODEC_J2K);
	opj_stream_t *st = opj_stream_create(65536, OPJ_FALSE);
	memset(out, 0, sizeof *out);
	opj_stream_set_user_data(st, out, NULL);
	opj_stream_set_write_function(st, sink_write);
	opj_stream_set_skip_function(st, sink_skip);
	opj_stream_set_seek_function(st, sink_seek);
	int okay = opj_setup_encoder(c, &p, im) && opj_start_compress(c, im, st) &&
	           opj_encode(c, st) && opj_end_compress(c, st);
	opj_stream_destroy(st);
	opj_destroy_codec(c);
	opj_image_destroy(im);
	return okay ? 0 : -1;
}

/* A two-level Aperio slide (700x600, then 350x300) of JPEG 2000 tiles
 * in TIFF compression `compression`. Tile `missing` of level 0 is left
 * without bytes, tile `corrupt` of level 0 is junk (-1: none). */
static int write_slide(const char *path, int compression, int dx, int dy, int missing, int corrupt)
{
	TIFF *tif = TIFFOpen(path, "w");
	if (!tif)
		return -1;
	int ret = 0;
	for (int level = 0; level < 2 && ret == 0; level++) {
		uint32_t w = 700 >> level, h = 600 >> level;
		TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, w);
		TIFFSetField(tif, TIFFTAG_IMAGELENGTH, h);
		TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 8);
		TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 3);
		TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
		TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
		TIFFSetField(tif, TIFFTAG_TILEWIDTH, TILE);
		TIFFSetField(tif, TIFFTAG_TILELENGTH, TILE);
		TIFFSetField(tif, TIFFTAG_COMPRESSION, compression);
		if (level == 0)
			TIFFSetField(tif, TIFFTAG_IMAGEDESCRIPTION,
			             "Aperio Image Library vTEST\r\n700x600 (256x256) J2K|AppMag = "
			             "20|MPP = 0.5");
		int mct = compression == TIFFJ2K_APERIO_RGB;
		for (uint32_t t = 0; t < TIFFNumberOfTiles(tif) && ret == 0; t++) {
			if (level == 0 && (int)t == missing)
				continue; /* never written: 0 bytes */
			struct sink s;
			if (level == 0 && (int)t == corrupt) {
				uint8_t junk[300];
				for (size_t i = 0; i < sizeof junk; i++)
					junk[i] = next_byte();
				if (TIFFWriteRawTile(tif, t, junk, sizeof junk) < 0)
					ret = -1;
				continue;
			}
			if (encode_tile(dx, dy, mct, &s) < 0 ||
			    TIFFWriteRawTile(tif, t, s.data, (tmsize_t)s.len) < 0)
				ret = -1;
			free(s.data);
		}
		if (!TIFFWriteDirectory(tif))
			ret = -1;
	}
	TIFFClose(tif);
	return ret;
}

/* A level region both ways (x, y level px; levels here halve exactly):
 * the number of differing bytes, -1 if a side fails. */
static int64_t compare(struct slide *s, int level, int64_t x, int64_t y, int64_t w, int64_t h)
{
	uint8_t *a = malloc((size_t)(w * h * 3)), *b = malloc((size_t)(w * h * 3));
	struct tiffjpeg_decoder d = {0};
	int64_t diff = -1;
	if (tiffjpeg_read_region(&s->direct, &d, level, x, y, w, h, a) == 0 &&
	    openslide_rgb(s->osr, level, x << level, y << level, w, h, b) == 0) {
		diff = 0;
		for (int64_t i = 0; i < w * h * 3; i++)
			diff += a[i] != b[i];
	} else {
		printf("# %s\n", eosin_errmsg());
	}
	tiffjpeg_decoder_release(&d);
	free(a);
	free(b);
	return diff;
}

/* Many small regions of both levels, in turn, through one decoder (its
 * tile cache hit and refilled, levels mixed): how many differ from
 * OpenSlide's. */
static int sweep(struct slide *s)
{
	struct tiffjpeg_decoder d = {0};
	uint8_t a[100 * 100 * 3], b[100 * 100 * 3];
	int bad = 0;
	for (int64_t y = 0; y < 600; y += 70)
		for (int64_t x = 0; x < 700; x += 90)
			for (int level = 0; level < 2; level++) {
				int64_t lx = x >> level, ly = y >> level;
				if (tiffjpeg_read_region(&s->direct, &d, level, lx, ly, 100, 100,
				                         a) < 0 ||
				    openslide_rgb(s->osr, level, lx << level, ly << level, 100, 100,
				                  b) < 0 ||
				    memcmp(a, b, sizeof a))
					bad++;
			}
	tiffjpeg_decoder_release(&d);
	return bad;
}

/* Write a slide, open it, check its levels are direct and the same as
 * OpenSlide's: whole levels and a region over the far corner. */
static void same_as_openslide(const char *path, int compression, int dx, int dy, const char *what)
{
	struct slide s;
	if (write_slide(path, compression, dx, dy, -1, -1) < 0 || slide_open(&s, path, 0) < 0) {
		ok(0, "%s: written and opened (%s)", what, eosin_errmsg());
		return;
	}
	ok(slide_use_direct(&s) == 2 && s.direct.levels[0].j2k && s.direct.levels[1].j2k &&
	       s.direct.levels[0].ycbcr == (compression == TIFFJ2K_APERIO_YCBCR),
	   "%s: both levels direct, JPEG 2000", what);
	if (s.ndirect == 2) {
		ok(compare(&s, 0, 0, 0, 700, 600) == 0, "%s: level 0 the same as OpenSlide", what);
		ok(compare(&s, 1, 0, 0, 350, 300) == 0, "%s: level 1 the same as OpenSlide", what);
		ok(compare(&s, 0, 600, 500, 200, 150) == 0,
		   "%s: over the corner, white outside, like OpenSlide", what);
		ok(sweep(&s) == 0, "%s: 100 px regions of both levels in turn, one decoder: same",
		   what);
	}
	slide_close(&s);
}

int main(void)
{
	char path[] = "/tmp/eosin-test-j2k-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		skip_all("cannot make a temporary file");
	close(fd);
	TIFFSetErrorHandler(NULL);
	TIFFSetWarningHandler(NULL);

	same_as_openslide(path, TIFFJ2K_APERIO_YCBCR, 2, 1, "33003, chroma 2:1 across");
	same_as_openslide(path, TIFFJ2K_APERIO_YCBCR, 1, 1, "33003, no subsampling");
	same_as_openslide(path, TIFFJ2K_APERIO_YCBCR, 2, 2, "33003, chroma 2:1 both ways");
	same_as_openslide(path, TIFFJ2K_APERIO_RGB, 1, 1, "33005 RGB");

	/* a tile without bytes: transparent in OpenSlide on level 0; level 1
	 * is painted from level 0 there, so it stays with OpenSlide */
	struct slide s;
	if (write_slide(path, TIFFJ2K_APERIO_YCBCR, 2, 1, 4, -1) == 0 &&
	    slide_open(&s, path, 0) == 0) {
		ok(slide_use_direct(&s) == 1 && s.direct.levels[0].direct &&
		       !s.direct.levels[1].direct,
		   "missing tile: level 0 direct, level 1 left to OpenSlide");
		ok(compare(&s, 0, 0, 0, 700, 600) == 0,
		   "missing tile: level 0 the same as OpenSlide (white there)");
		uint8_t px[3];
		struct tiffjpeg_decoder d = {0};
		ok(tiffjpeg_read_region(&s.direct, &d, 0, 300, 300, 1, 1, px) == 0 &&
		       px[0] == 255 && px[1] == 255 && px[2] == 255,
		   "missing tile: white");
		tiffjpeg_decoder_release(&d);
		slide_close(&s);
	} else {
		ok(0, "missing tile: written and opened (%s)", eosin_errmsg());
	}

	/* a corrupt tile: a clear error, naming it */
	if (write_slide(path, TIFFJ2K_APERIO_YCBCR, 2, 1, -1, 4) == 0 &&
	    slide_open(&s, path, 0) == 0) {
		ok(slide_use_direct(&s) == 2,
		   "corrupt tile 4: levels still direct (tile 0 decodes)");
		uint8_t *rgb = malloc(700 * 600 * 3);
		struct tiffjpeg_decoder d = {0};
		int r = tiffjpeg_read_region(&s.direct, &d, 0, 0, 0, 700, 600, rgb);
		ok(r < 0 && strstr(eosin_errmsg(), "tile 4 of level 0") &&
		       strstr(eosin_errmsg(), "JPEG 2000"),
		   "corrupt tile: an error naming it (%s)", eosin_errmsg());
		ok(tiffjpeg_read_region(&s.direct, &d, 0, 0, 0, 256, 256, rgb) == 0,
		   "corrupt tile: the decoder still reads other tiles");
		uint8_t box[64 * 64 * 3];
		struct slide_scratch sc = {0};
		r = slide_read_box(&s, 0, 300, 300, 64, 64, box, &sc);
		ok(r < 0 && strstr(eosin_errmsg(), path) && strstr(eosin_errmsg(), "tile 4"),
		   "corrupt tile, through slide_read_box: names the slide and the tile (%s)",
		   eosin_errmsg());
		slide_scratch_release(&sc);
		tiffjpeg_decoder_release(&d);
		free(rgb);
		slide_close(&s);
	} else {
		ok(0, "corrupt tile: written and opened (%s)", eosin_errmsg());
	}
	/* 12-bit samples (OpenSlide takes the low byte): not what the
	 * direct path expects, so the slide stays with OpenSlide */
	precision = 12;
	if (write_slide(path, TIFFJ2K_APERIO_YCBCR, 2, 1, -1, -1) == 0 &&
	    slide_open(&s, path, 0) == 0) {
		ok(slide_use_direct(&s) == 0, "12-bit JPEG 2000: left to OpenSlide");
		uint8_t box[64 * 64 * 3];
		struct slide_scratch sc = {0};
		ok(slide_read_box(&s, 0, 300, 300, 64, 64, box, &sc) == 0,
		   "12-bit JPEG 2000: read through OpenSlide");
		slide_scratch_release(&sc);
		slide_close(&s);
	} else {
		ok(0, "12-bit: written and opened (%s)", eosin_errmsg());
	}
	precision = 8;
	unlink(path);
	return tap_done();
}
