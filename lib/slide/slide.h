/*
 * slide.h: whole slide images through OpenSlide: physical resolution,
 * pyramid level choice, reading a level-0 box resampled to px x px RGB.
 *
 * A struct slide owns its OpenSlide handle and level tables; slide_open()
 * fills it, slide_close() frees it. Everything but slide_close() may be
 * called from several threads at once: openslide_read_region() is
 * thread-safe (openslide.h: "All functions except openslide_close() are
 * thread-safe") and OpenSlide's tile cache is shared by all threads.
 *
 * Base resolution (micrometres per level-0 pixel), first that applies:
 *   override   --mpp / --base-mag given by the user (always wins)
 *   openslide  openslide.mpp-x (vendor metadata, e.g. Aperio MPP)
 *   tiff       tiff.XResolution with tiff.ResolutionUnit inch or centimeter,
 *              when it gives a plausible mpp (0.05 .. 50); TIFF writers put
 *              72 dpi or 1 px/mm there by default, which is no scan
 *   objective  openslide.objective-power P: 10 / P
 * otherwise the slide is refused.
 */
#ifndef EOSIN_SLIDE_H
#define EOSIN_SLIDE_H

#include "slide/resample.h"
#include "slide/tiffjpeg.h"

#include <openslide.h>
#include <stddef.h>
#include <stdint.h>

enum mpp_source { MPP_NONE = 0, MPP_OPENSLIDE, MPP_TIFF, MPP_OBJECTIVE, MPP_OVERRIDE };

/* "openslide", "tiff", "objective", "override" (the tile schema's names). */
const char *mpp_source_name(enum mpp_source src);

/* Plausible scan resolutions, um/px; TIFF tags outside are ignored. */
#define SLIDE_MPP_MIN 0.05
#define SLIDE_MPP_MAX 50.0

/* Resolve the base mpp from property values (NULL when absent) and an
 * override (> 0 when given). 0 and *mpp, *src set; -1 when nothing gives
 * one (the message says what was missing). Pure: no slide needed. */
int slide_resolve_mpp(const char *mpp_x, const char *tiff_xres, const char *tiff_unit,
                      const char *objective_power, double override_mpp, double *mpp,
                      enum mpp_source *src);

struct slide {
	openslide_t *osr;
	char *path;
	int nlevels;
	int64_t *width, *height; /* (nlevels) level sizes, level px */
	double *ds;              /* (nlevels) level downsample vs level 0 */
	double base_mpp;         /* um per level-0 px */
	enum mpp_source mpp_source;
	uint8_t *level0; /* (height[0], width[0], 3) RGB on white, or NULL */
	size_t level0_cap; /* bytes mapped for it */
	struct tiffjpeg direct; /* levels whose tiles are decoded here */
	int ndirect;            /* how many; 0: everything through OpenSlide */
};

/* Open path and resolve its resolution (override_mpp > 0 wins). On -1
 * the message names the path; *s needs no slide_close(). */
int slide_open(struct slide *s, const char *path, double override_mpp);
void slide_close(struct slide *s);

/* Decode the JPEG tiles of Aperio and generic tiled TIFF levels, and the
 * JPEG 2000 tiles of Aperio levels, directly (lib/slide/tiffjpeg.h) instead of
 * through OpenSlide: the same pixels with a
 * fraction of the work. Returns how many levels are read so (0: none, the
 * slide is read through OpenSlide as before), -1 out of memory. Call
 * after slide_open(), before sharing the slide between threads. */
int slide_use_direct(struct slide *s);

/* Read all of level 0 into memory (slide.level0) when its RGB takes at
 * most budget bytes, with up to `threads` threads. Small and single-level
 * slides are then decoded and composited by OpenSlide once, instead of
 * once per tile and magnification; slide_read_box() and slide_thumbnail()
 * cut from the copy, with the same pixels as reading through OpenSlide.
 * Returns 1 cached, 0 too large (nothing done), -1 on a read error. Call
 * before sharing the slide between threads. slide_close() keeps the
 * copy's memory for the next slide's copy (one such spare per process). */
int slide_cache_level0(struct slide *s, size_t budget, int threads);

/* The coarsest level whose mpp (base_mpp * ds) is at most
 * target_mpp * (1 + tolerance); level 0 when none is. */
int slide_level_for(const struct slide *s, double target_mpp, double tolerance);

/* Buffers one reader thread reuses from tile to tile (a region is often
 * megabytes: allocating it afresh each time costs page faults). Zero it to
 * start; slide_scratch_release() frees it. Never shared between threads. */
struct slide_scratch {
	uint32_t *argb;
	uint8_t *rgb;
	size_t cap; /* pixels both hold */
	struct resampler resampler;
	struct tiffjpeg_decoder decoder;
};
void slide_scratch_release(struct slide_scratch *sc);

/* Read the level-0 box [x, x+extent)^2 from `level` and resample it
 * (lib/slide/resample.h: Lanczos-3) to exactly px x px, composited on white
 * where the slide is transparent (outside its scanned area). rgb is
 * px*px*3 bytes, row-major RGB. A direct level is read from the whole
 * level pixel at or before x / ds, and the resampler is told the
 * fractional rest, so the box keeps its exact level-0 place. Memory: one
 * level region, (extent/ds + 1)^2 * 7 bytes, kept in sc for the next
 * call (none for a box inside the level-0 copy: it is resampled where it
 * lies). */
int slide_read_box(const struct slide *s, int level, int64_t x, int64_t y, int64_t extent, int px,
                   uint8_t *rgb, struct slide_scratch *sc);

/* The level slide_thumbnail() reads for ds_target: the coarsest whose
 * downsample is at most ds_target. */
int slide_thumbnail_level(const struct slide *s, double ds_target);

/* A low-resolution RGB image of the whole slide, about ds_target level-0
 * pixels per pixel (never finer than level 0): the coarsest level at or
 * below ds_target, box-averaged over k x k level pixels (k an integer),
 * read in blocks so memory stays bounded by the thumbnail. *rgb is
 * malloc'd (w*h*3, composited on white); *dsx, *dsy are the level-0 px
 * per thumbnail px (the last row and column may cover less). Reads with
 * up to `threads` threads (OpenMP). */
int slide_thumbnail(const struct slide *s, double ds_target, int threads, uint8_t **rgb, int *w,
                    int *h, double *dsx, double *dsy);

#endif
