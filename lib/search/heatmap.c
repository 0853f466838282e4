/*
 * heatmap.c: per-tile scores painted over a slide thumbnail. See heatmap.h.
 */
#include "search/heatmap.h"

#include "core/error.h"

#include <math.h>
#include <openslide.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

/* A viridis-like ramp: nine anchors, linear in between (sRGB, 8 bit). */
static const unsigned char ramp[9][3] = {
    {68, 1, 84},    {71, 44, 122},  {59, 81, 139},  {44, 113, 142}, {33, 144, 141},
    {39, 173, 129}, {92, 200, 99},  {170, 220, 50}, {253, 231, 37},
};

void heatmap_colour(double t, unsigned char rgb[3])
{
	if (!(t > 0))
		t = 0;
	if (t > 1)
		t = 1;
	double f = t * 8;
	int i = (int)f;
	if (i > 7)
		i = 7;
	double w = f - i;
	for (int c = 0; c < 3; c++)
		rgb[c] = (unsigned char)lround((1 - w) * ramp[i][c] + w * ramp[i + 1][c]);
}

static int vips_fail(const char *what, const char *path)
{
	eosin_error("%s '%s': %s", what, path, vips_error_buffer());
	vips_error_clear();
	/* vips messages end in a newline; messages here do not */
	return -1;
}

/* Level-0 width and height of the slide, through OpenSlide when it is one. */
static int slide_size(const char *path, double *w, double *h)
{
	const char *vendor = openslide_detect_vendor(path);
	if (vendor) {
		openslide_t *os = openslide_open(path);
		if (!os)
			return eosin_error("cannot open slide '%s'", path);
		const char *e = openslide_get_error(os);
		if (e) {
			eosin_error("cannot open slide '%s': %s", path, e);
			openslide_close(os);
			return -1;
		}
		int64_t ww, hh;
		openslide_get_level0_dimensions(os, &ww, &hh);
		openslide_close(os);
		*w = (double)ww;
		*h = (double)hh;
		return 0;
	}
	VipsImage *im = vips_image_new_from_file(path, NULL);
	if (!im)
		return vips_fail("cannot read", path);
	*w = im->Xsize;
	*h = im->Ysize;
	g_object_unref(im);
	return 0;
}

/* The thumbnail as packed 8-bit RGB. */
static unsigned char *thumbnail_rgb(const char *path, int max_side, int *tw, int *th)
{
	VipsImage *t = NULL, *u = NULL;
	if (vips_thumbnail(path, &t, max_side, "height", max_side, NULL)) {
		vips_fail("cannot make a thumbnail of", path);
		return NULL;
	}
	if (t->Bands == 4 || t->Bands == 2) {
		VipsArrayDouble *bg = vips_array_double_newv(1, 255.0);
		int rc = vips_flatten(t, &u, "background", bg, NULL);
		vips_area_unref(VIPS_AREA(bg));
		g_object_unref(t);
		if (rc) {
			vips_fail("cannot flatten the thumbnail of", path);
			return NULL;
		}
		t = u;
	}
	if (vips_colourspace(t, &u, VIPS_INTERPRETATION_sRGB, NULL)) {
		g_object_unref(t);
		vips_fail("cannot convert to sRGB", path);
		return NULL;
	}
	g_object_unref(t);
	if (vips_cast_uchar(u, &t, NULL)) {
		g_object_unref(u);
		vips_fail("cannot convert", path);
		return NULL;
	}
	g_object_unref(u);
	size_t size;
	void *px = vips_image_write_to_memory(t, &size);
	*tw = t->Xsize;
	*th = t->Ysize;
	int bands = t->Bands;
	g_object_unref(t);
	if (!px || bands != 3) {
		g_free(px);
		eosin_error("thumbnail of '%s' has %d bands, want 3", path, bands);
		return NULL;
	}
	unsigned char *rgb = malloc(size);
	if (rgb)
		memcpy(rgb, px, size);
	g_free(px);
	return rgb;
}

/* Draw a text label (dark on the canvas) at (x, y) if libvips can render
 * text here; silently nothing otherwise. wrap > 0 breaks lines at words to
 * fit that many pixels. */
static void draw_label(unsigned char *canvas, int cw, int ch, int x, int y, const char *text,
                       int wrap)
{
	VipsImage *t = NULL;
	int r = wrap > 0 ? vips_text(&t, text, "dpi", 72, "font", "sans 11", "width", wrap, NULL)
	                 : vips_text(&t, text, "dpi", 72, "font", "sans 11", NULL);
	if (r) {
		vips_error_clear();
		return;
	}
	VipsImage *u = NULL;
	if (vips_cast_uchar(t, &u, NULL)) {
		g_object_unref(t);
		vips_error_clear();
		return;
	}
	g_object_unref(t);
	size_t size;
	unsigned char *m = vips_image_write_to_memory(u, &size);
	int w = u->Xsize, h = u->Ysize;
	g_object_unref(u);
	if (!m)
		return;
	for (int j = 0; j < h && y + j < ch; j++)
		for (int i = 0; i < w && x + i < cw; i++) {
			if (x + i < 0 || y + j < 0)
				continue;
			unsigned char a = m[(size_t)j * w + i];
			unsigned char *p = canvas + 3 * ((size_t)(y + j) * cw + x + i);
			for (int c = 0; c < 3; c++)
				p[c] = (unsigned char)((p[c] * (255 - a) + 20 * a) / 255);
		}
	g_free(m);
}

/* Per thumbnail pixel (tw x th, sx and sy thumbnail pixels per level-0
 * pixel): the highest score of the tiles over it, NaN where none is. */
static float *heat_grid(const struct heat_tile *tiles, size_t n, int tw, int th, double sx,
                        double sy)
{
	float *heat = malloc((size_t)tw * th * sizeof(float));
	if (!heat)
		return NULL;
	for (size_t i = 0; i < (size_t)tw * th; i++)
		heat[i] = NAN;
	for (size_t i = 0; i < n; i++) {
		int x0 = (int)floor(tiles[i].x * sx), y0 = (int)floor(tiles[i].y * sy);
		int x1 = (int)ceil((tiles[i].x + tiles[i].extent) * sx);
		int y1 = (int)ceil((tiles[i].y + tiles[i].extent) * sy);
		for (int y = y0 < 0 ? 0 : y0; y < y1 && y < th; y++)
			for (int x = x0 < 0 ? 0 : x0; x < x1 && x < tw; x++) {
				float *h = &heat[(size_t)y * tw + x];
				if (isnan(*h) || *h < tiles[i].score)
					*h = (float)tiles[i].score;
			}
	}
	return heat;
}

/* The thumbnail into the canvas (cw wide), blended with the colour of its
 * heat (lo..hi) where there is one. */
static void paint_heat(unsigned char *canvas, int cw, const unsigned char *rgb, const float *heat,
                       int tw, int th, double lo, double hi, double alpha)
{
	double span = hi > lo ? hi - lo : 1;
	for (int y = 0; y < th; y++)
		for (int x = 0; x < tw; x++) {
			const unsigned char *s = rgb + 3 * ((size_t)y * tw + x);
			unsigned char *d = canvas + 3 * ((size_t)y * cw + x);
			float h = heat[(size_t)y * tw + x];
			if (isnan(h)) {
				memcpy(d, s, 3);
				continue;
			}
			unsigned char c[3];
			heatmap_colour(hi > lo ? (h - lo) / span : 0.5, c);
			for (int k = 0; k < 3; k++)
				d[k] = (unsigned char)lround((1 - alpha) * s[k] + alpha * c[k]);
		}
}

/* The colour bar at x0 (bar wide) with hi and lo beside it, and the
 * query's text above it, wrapped to the bar and label width. */
static void paint_legend(unsigned char *canvas, int cw, int ch, int x0, int bar, int label,
                         double lo, double hi, const char *title)
{
	int margin = ch / 10;
	for (int y = margin; y < ch - margin; y++) {
		unsigned char c[3];
		heatmap_colour(1.0 - (double)(y - margin) / (ch - 2 * margin - 1), c);
		for (int x = x0; x < x0 + bar; x++)
			memcpy(canvas + 3 * ((size_t)y * cw + x), c, 3);
	}
	char buf[64];
	snprintf(buf, sizeof(buf), "%.3f", hi);
	draw_label(canvas, cw, ch, x0 + bar + 4, margin, buf, 0);
	snprintf(buf, sizeof(buf), "%.3f", lo);
	draw_label(canvas, cw, ch, x0 + bar + 4, ch - margin - 14, buf, 0);
	if (title)
		draw_label(canvas, cw, ch, x0, 4, title, bar + label - 4);
}

static int save_png(unsigned char *canvas, int cw, int ch, const char *out_png)
{
	VipsImage *im = vips_image_new_from_memory(canvas, (size_t)cw * ch * 3, cw, ch, 3,
	                                           VIPS_FORMAT_UCHAR);
	int rc = 0;
	if (!im)
		rc = vips_fail("cannot wrap the heatmap for", out_png);
	else if (vips_pngsave(im, out_png, NULL))
		rc = vips_fail("cannot write", out_png);
	if (im)
		g_object_unref(im);
	return rc;
}

int heatmap_render(const char *slide, const struct heat_tile *tiles, size_t n,
                   const struct heatmap_opts *opts, const char *out_png)
{
	if (n == 0)
		return eosin_error("no tiles to paint on '%s'", slide);
	if (vips_init("eosin"))
		return vips_fail("cannot start libvips for", slide);
	double w0 = 0, h0 = 0;
	if (slide_size(slide, &w0, &h0) < 0)
		return -1;
	int tw, th;
	unsigned char *rgb = thumbnail_rgb(slide, opts->max_side, &tw, &th);
	if (!rgb)
		return -1;
	double lo = INFINITY, hi = -INFINITY;
	for (size_t i = 0; i < n; i++) {
		if (tiles[i].score < lo)
			lo = tiles[i].score;
		if (tiles[i].score > hi)
			hi = tiles[i].score;
	}
	float *heat = heat_grid(tiles, n, tw, th, tw / w0, th / h0);
	if (!heat) {
		free(rgb);
		return eosin_error("out of memory");
	}
	/* The canvas: thumbnail, a gap, the colour bar and room for labels. */
	int bar = tw / 24 < 16 ? 16 : tw / 24, gap = 12, label = 80;
	int cw = tw + gap + bar + label, ch = th;
	unsigned char *canvas = malloc((size_t)cw * ch * 3);
	if (!canvas) {
		free(rgb), free(heat);
		return eosin_error("out of memory");
	}
	memset(canvas, 255, (size_t)cw * ch * 3);
	paint_heat(canvas, cw, rgb, heat, tw, th, lo, hi, opts->alpha);
	paint_legend(canvas, cw, ch, tw + gap, bar, label, lo, hi, opts->title);
	free(rgb);
	free(heat);
	int rc = save_png(canvas, cw, ch, out_png);
	free(canvas);
	return rc;
}
