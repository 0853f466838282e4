/*
 * png.h: an 8-bit RGB image written as a PNG file with zlib, which is all
 * eosin-tile's preview needs (so the program does not load libvips, whose
 * start-up costs more than tiling a small slide).
 *
 * The caller owns rgb (h rows of w * 3 bytes). Scanlines use PNG's Up
 * filter (the row above subtracted), which makes thumbnails of slides
 * compress well; deflate level 6.
 */
#ifndef EOSIN_PNG_H
#define EOSIN_PNG_H

#include <stdint.h>

/* 0, or -1 with a message naming path. */
int png_write_rgb(const char *path, const uint8_t *rgb, int w, int h);

#endif
