/*
 * test-image: JPEG decoding and preprocessing against Pillow. A real PNG
 * patch is saved as JPEG by tests/parity/preprocess_pil.py, which also
 * decodes it with Pillow and applies Resize + CenterCrop + Normalize; we
 * decode the same JPEG with libturbojpeg and preprocess it in C.
 * Tolerance: the two should agree exactly (same libjpeg-turbo, Pillow's
 * resampling reimplemented bit for bit); the test allows one 8-bit level
 * on at most 0.1% of the values, and prints what it measured.
 * Skips without ../shared/data or a python3 with Pillow and numpy.
 */
#include "core/error.h"
#include "model/image.h"
#include "tap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const float IMAGENET[2][3] = {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
static const float CLIPMS[2][3] = {{0.48145466f, 0.4578275f, 0.40821073f},
                                   {0.26862954f, 0.26130258f, 0.27577711f}};

static const char *python;

static int find_python(void)
{
	static const char *cands[] = {"/usr/bin/python3", "python3", NULL};
	for (int i = 0; cands[i]; i++) {
		char cmd[256];
		snprintf(cmd, sizeof cmd, "%s -c 'import PIL, numpy' >/dev/null 2>&1", cands[i]);
		if (system(cmd) == 0) {
			python = cands[i];
			return 1;
		}
	}
	return 0;
}

static void *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	void *buf = malloc(len > 0 ? (size_t)len : 1);
	*n = fread(buf, 1, (size_t)len, f);
	fclose(f);
	return buf;
}

static void compare(const char *png, int resize, int crop, const char *filter, int clip,
                    const char *dir)
{
	char jpg[512], f32[512], cmd[2048];
	snprintf(jpg, sizeof jpg, "%s/x.jpg", dir);
	snprintf(f32, sizeof f32, "%s/x.f32", dir);
	snprintf(cmd, sizeof cmd, "%s tests/parity/preprocess_pil.py '%s' '%s' '%s' %d %d %s %s",
	         python, png, jpg, f32, resize, crop, filter, clip ? "clip" : "imagenet");
	if (!ok(system(cmd) == 0, "pillow reference for %s", png))
		return;
	size_t njpg, nref;
	uint8_t *jpeg = slurp(jpg, &njpg), *rgb = NULL;
	float *want = slurp(f32, &nref);
	int w, h;
	ok(image_decode_jpeg(jpeg, njpg, &rgb, &w, &h) == 0, "decode %s", jpg);
	struct preprocess pp = {.resize = resize, .crop = crop};
	resample_filter_parse(filter, &pp.filter);
	memcpy(pp.mean, clip ? CLIPMS[0] : IMAGENET[0], sizeof pp.mean);
	memcpy(pp.std, clip ? CLIPMS[1] : IMAGENET[1], sizeof pp.std);
	size_t n = (size_t)3 * crop * crop;
	float *got = malloc(n * sizeof *got);
	ok(nref == n * 4 && image_preprocess(rgb, w, h, &pp, got) == 0, "preprocess %dx%d", w, h);
	double maxerr = 0;
	size_t ndiff = 0;
	for (size_t i = 0; i < n && nref == n * 4; i++) {
		double d = fabs((double)got[i] - want[i]);
		if (d > 0)
			ndiff++;
		if (d > maxerr)
			maxerr = d;
	}
	double level = 1.0 / 255 / 0.224 + 1e-6;
	ok(maxerr <= level && ndiff * 1000 <= n,
	   "%s %dx%d -> resize %d %s, crop %d, %s: max abs error %.3g, %zu of %zu values differ",
	   png, w, h, resize, filter, crop, clip ? "clip" : "imagenet", maxerr, ndiff, n);
	free(jpeg);
	free(rgb);
	free(want);
	free(got);
}

int main(void)
{
	const char *shared = getenv("SHARED") ? getenv("SHARED") : "../shared/data";
	char tile[1024], patch[1024];
	snprintf(tile, sizeof tile, "%s/tiles/gigapath-lung_x01581_y25327.png", shared);
	snprintf(patch, sizeof patch, "%s/patches/crc-val-he-7k/TUM-TCGA-DRHQMTQA.png", shared);
	if (access(tile, R_OK) || access(patch, R_OK))
		skip_all("../shared/data patches not found (SHARED)");
	if (!find_python())
		skip_all("no python3 with Pillow and numpy");
	char dir[] = "/tmp/eosin-test-image.XXXXXX";
	if (!mkdtemp(dir))
		skip_all("cannot make a temporary folder");
	compare(tile, 224, 224, "bicubic", 0, dir);  /* 256 -> 224: antialiased downscale */
	compare(patch, 224, 224, "bicubic", 1, dir); /* no resize, CLIP normalisation */
	compare(patch, 256, 224, "bicubic", 0, dir); /* upscale and crop */
	compare(tile, 240, 224, "bilinear", 0, dir); /* bilinear, odd crop offset */
	compare(tile, 100, 97, "bicubic", 1, dir);   /* strong downscale */

	/* Corrupt and truncated JPEGs are errors, not crashes. */
	char jpg[600];
	snprintf(jpg, sizeof jpg, "%s/x.jpg", dir);
	size_t n;
	uint8_t *bytes = slurp(jpg, &n), *rgb = NULL;
	int w, h;
	ok(image_decode_jpeg(bytes, n / 2, &rgb, &w, &h) < 0 && !rgb, "truncated JPEG refused: %s",
	   eosin_errmsg());
	memset(bytes, 'x', 16);
	ok(image_decode_jpeg(bytes, n, &rgb, &w, &h) < 0 && !rgb, "garbage refused: %s",
	   eosin_errmsg());
	free(bytes);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	return tap_done();
}
