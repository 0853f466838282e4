/*
 * png.c: PNG writing with zlib. See png.h; the format is RFC 2083 (PNG
 * 1.2): signature, IHDR, one IDAT, IEND, each chunk with its CRC-32.
 */
#include "core/png.h"

#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* One chunk: length, type, data, CRC-32 of type and data. */
static int write_chunk(FILE *f, const char *type, const uint8_t *data, uint32_t len)
{
	uint8_t head[8], tail[4];
	put_be32(head, len);
	memcpy(head + 4, type, 4);
	uLong crc = crc32(0, head + 4, 4);
	if (len)
		crc = crc32(crc, data, len);
	put_be32(tail, (uint32_t)crc);
	return fwrite(head, 1, 8, f) == 8 && (len == 0 || fwrite(data, 1, len, f) == len) &&
	               fwrite(tail, 1, 4, f) == 4
	           ? 0
	           : -1;
}

int png_write_rgb(const char *path, const uint8_t *rgb, int w, int h)
{
	if (w <= 0 || h <= 0 || w > (1 << 24) / 3 || h > (1 << 24))
		return eosin_error("'%s': a %dx%d PNG is out of range", path, w, h);
	size_t row = (size_t)w * 3, raw_len = (row + 1) * (size_t)h;
	uLongf packed_len = compressBound((uLong)raw_len);
	uint8_t *raw = malloc(raw_len), *packed = malloc(packed_len);
	if (!raw || !packed) {
		free(raw);
		free(packed);
		return eosin_error("out of memory");
	}
	for (int y = 0; y < h; y++) { /* filter type 2, Up */
		uint8_t *o = raw + (size_t)y * (row + 1);
		const uint8_t *cur = rgb + (size_t)y * row, *up = y ? cur - row : NULL;
		o[0] = 2;
		for (size_t i = 0; i < row; i++)
			o[1 + i] = (uint8_t)(cur[i] - (up ? up[i] : 0));
	}
	int zr = compress2(packed, &packed_len, raw, (uLong)raw_len, 6);
	free(raw);
	if (zr != Z_OK) {
		free(packed);
		return eosin_error("'%s': deflate failed (zlib %d)", path, zr);
	}
	static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	uint8_t ihdr[13];
	put_be32(ihdr, (uint32_t)w);
	put_be32(ihdr + 4, (uint32_t)h);
	ihdr[8] = 8;  /* bit depth */
	ihdr[9] = 2;  /* colour type: RGB */
	ihdr[10] = 0; /* deflate */
	ihdr[11] = 0; /* adaptive filtering */
	ihdr[12] = 0; /* no interlace */
	FILE *f = fopen(path, "wb");
	if (!f) {
		free(packed);
		return eosin_error("'%s': %s", path, strerror(errno));
	}
	int bad = fwrite(signature, 1, 8, f) != 8 || write_chunk(f, "IHDR", ihdr, 13) < 0 ||
	          write_chunk(f, "IDAT", packed, (uint32_t)packed_len) < 0 ||
	          write_chunk(f, "IEND", NULL, 0) < 0;
	int saved = errno;
	free(packed);
	if (fclose(f) != 0 && !bad) {
		saved = errno;
		bad = 1;
	}
	if (bad)
		return eosin_error("'%s': %s", path, saved ? strerror(saved) : "write error");
	return 0;
}
