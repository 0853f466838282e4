/*
 * test-tile-direct.c: lib/slide/tiffjpeg.c decodes the JPEG tiles of a real
 * Aperio slide to exactly the pixels OpenSlide's read_region gives
 * (composited on white), pixel by pixel, over the whole of level 0 and
 * over regions that cross the slide's edges. Skips without
 * ../shared/data/slides (SHARED names another data directory).
 */
#include "core/error.h"
#include "openslide_ref.h"
#include "slide/slide.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Compare the level-0 region both ways; the number of differing bytes. */
static int64_t compare(struct slide *s, struct tiffjpeg_decoder *d, int64_t x, int64_t y,
                       int64_t w, int64_t h)
{
	uint8_t *a = malloc((size_t)(w * h * 3)), *b = malloc((size_t)(w * h * 3));
	int64_t diff = -1;
	if (tiffjpeg_read_region(&s->direct, d, 0, x, y, w, h, a) == 0) {
		openslide_rgb(s->osr, 0, x, y, w, h, b);
		diff = 0;
		for (int64_t i = 0; i < w * h * 3; i++)
			diff += a[i] != b[i];
	}
	free(a);
	free(b);
	return diff;
}

/* All of level 0 in 1000 px blocks, both ways: how many blocks differ. */
static int64_t compare_level0(struct slide *s, struct tiffjpeg_decoder *d, int64_t *blocks)
{
	int64_t w = s->width[0], h = s->height[0], bad = 0;
	*blocks = 0;
	for (int64_t y = 0; y < h; y += 1000)
		for (int64_t x = 0; x < w; x += 1000) {
			int64_t bw = w - x < 1000 ? w - x : 1000, bh = h - y < 1000 ? h - y : 1000;
			int64_t n = compare(s, d, x, y, bw, bh);
			bad += n != 0;
			(*blocks)++;
			if (n)
				printf("# block (%lld, %lld): %lld bytes differ\n", (long long)x,
				       (long long)y, (long long)n);
		}
	return bad;
}

/* A whole level (read from its corner, where level and level-0
 * coordinates meet exactly) both ways: the number of differing bytes. */
static int64_t compare_level(struct slide *s, struct tiffjpeg_decoder *d, int level)
{
	int64_t w = s->width[level], h = s->height[level];
	uint8_t *a = malloc((size_t)(w * h * 3)), *b = malloc((size_t)(w * h * 3));
	int64_t diff = -1;
	if (tiffjpeg_read_region(&s->direct, d, level, 0, 0, w, h, a) == 0) {
		openslide_rgb(s->osr, level, 0, 0, w, h, b);
		diff = 0;
		for (int64_t i = 0; i < w * h * 3; i++)
			diff += a[i] != b[i];
	} else {
		printf("# level %d: %s\n", level, eosin_errmsg());
	}
	free(a);
	free(b);
	return diff;
}

int main(void)
{
	const char *shared = getenv("SHARED") ? getenv("SHARED") : "../shared/data";
	char path[1024];
	snprintf(path, sizeof path, "%s/slides/cmu-1-small-region.svs", shared);
	FILE *f = fopen(path, "rb");
	if (!f)
		skip_all("../shared/data/slides/cmu-1-small-region.svs not found (SHARED)");
	fclose(f);

	struct slide s;
	if (slide_open(&s, path, 0) < 0) {
		ok(0, "open: %s", eosin_errmsg());
		return tap_done();
	}
	ok(slide_use_direct(&s) == 1, "its one level is decoded directly");
	ok(s.direct.levels[0].direct && !s.direct.levels[0].ycbcr,
	   "Aperio JPEG tiles, photometric RGB (RGB coded, no colour transform)");
	struct tiffjpeg_decoder d = {0};
	int64_t w = s.width[0], h = s.height[0], blocks = 0;
	int64_t bad = compare_level0(&s, &d, &blocks);
	ok(bad == 0, "all of level 0 (%lldx%lld, %lld blocks): the same RGB as OpenSlide",
	   (long long)w, (long long)h, (long long)blocks);
	ok(compare(&s, &d, w - 300, h - 200, 500, 400) == 0,
	   "a region over the bottom-right corner: same, white outside");
	ok(compare(&s, &d, -50, -70, 300, 300) == 0, "a region over the top-left corner");
	ok(compare(&s, &d, 239, 479, 3, 3) == 0, "3x3 across tile corners");
	ok(compare(&s, &d, w + 10, 0, 20, 20) == 0, "wholly outside: white, like OpenSlide");
	tiffjpeg_decoder_release(&d);
	slide_close(&s);

	/* Aperio JPEG 2000 (compression 33005, RGB; Y'CbCr 33003 is tested on
	 * made-up slides in test-tile-j2k) */
	snprintf(path, sizeof path, "%s/slides/tcga-cr-7395-01a-01-ts1.svs", shared);
	if (slide_open(&s, path, 0.5) < 0) {
		ok(0, "open: %s", eosin_errmsg());
		return tap_done();
	}
	ok(slide_use_direct(&s) == s.nlevels && s.nlevels == 2,
	   "JPEG 2000 SVS: both levels decoded directly");
	ok(s.direct.levels[0].j2k && !s.direct.levels[0].ycbcr && s.direct.levels[1].j2k,
	   "its tiles: JPEG 2000, RGB (33005)");
	w = s.width[0];
	h = s.height[0];
	bad = compare_level0(&s, &d, &blocks);
	ok(bad == 0, "JPEG 2000 level 0 (%lldx%lld, %lld blocks): the same RGB as OpenSlide",
	   (long long)w, (long long)h, (long long)blocks);
	int64_t n1 = compare_level(&s, &d, 1);
	ok(n1 == 0, "JPEG 2000 level 1 (%lldx%lld), whole: the same RGB as OpenSlide (%lld differ)",
	   (long long)s.width[1], (long long)s.height[1], (long long)n1);
	ok(compare(&s, &d, w - 300, h - 200, 500, 400) == 0,
	   "JPEG 2000: a region over the bottom-right corner: same, white outside");
	ok(compare(&s, &d, 255, 511, 3, 3) == 0, "JPEG 2000: 3x3 across tile corners");
	tiffjpeg_decoder_release(&d);
	slide_close(&s);
	return tap_done();
}
