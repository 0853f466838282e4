/*
 * eosin-tile: whole slide images to `tile` records, JPEG patches at
 * physical magnifications, as MR-PLIP quadtrees or plain grids.
 * See eosin-tile(1) and eosin-tile(5).
 *
 * Per slide: open and resolve the base mpp (lib/slide), find the tissue on
 * a thumbnail (lib/tissue), plan the tiles (lib/quadtree: which boxes, in
 * output order), then a pool of worker threads reads, resamples and
 * encodes them; whichever finishes the record due next writes it, and any
 * finished after it, strictly in plan order. A worker may run at most
 * WINDOW_PER_THREAD * threads tiles ahead of the writing, so memory
 * follows the window, never the slide, and the bytes out are the same for
 * any --threads. While the next slide is prepared ahead, one worker sits
 * out (see `ahead`).
 */
#include "core/png.h"
#include "core/rand.h"
#include "prog.h"
#include "slide/quadtree.h"
#include "schema_fields.h"
#include "slide/slide.h"
#include "core/stream.h"
#include "slide/tissue.h"

#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <turbojpeg.h>

#define SYNOPSIS                                                                                   \
	"usage: eosin-tile [--mags LIST] [--px N] [--grid] [--overlap N] [--parents N] "           \
	"[--seed N] [--min-tissue F] [--quality Q] [--mpp UM | --base-mag M] "                     \
	"[--allow-upsample] [--tolerance F] [--threads N] [--cache-mb N] [--openslide-only] "     \
	"[--slide-id ID] [--preview FILE] [--mask FILE] slide ...\n"

#define WINDOW_PER_THREAD 4
#define MAX_MAGS (QUADTREE_MAX_DEPTH + 1)
/* Thumbnail for tissue detection and the preview: about 4 um per pixel,
 * but at least THUMB_MIN_SIDE (small slides: a finer mask) and at most
 * THUMB_MAX_SIDE pixels (huge slides: bounded memory) on the long side. */
#define THUMB_MPP 4.0
#define THUMB_MIN_SIDE 768
#define THUMB_MAX_SIDE 4096
/* Components smaller than this are dust, not tissue (um^2). */
#define MIN_TISSUE_AREA_UM2 5000.0

static void usage(void)
{
	fputs(SYNOPSIS, stderr);
	exit(EXIT_USAGE);
}

struct options {
	double mags[MAX_MAGS];
	int nmags;
	int px;
	int grid;
	int overlap;     /* output px shared by neighbouring grid tiles */
	int64_t parents; /* depth-0 tiles kept per slide (0: all) */
	uint64_t seed;
	double min_tissue;
	int quality;
	double override_mpp; /* > 0: --mpp or --base-mag */
	int allow_upsample;
	double tolerance;
	int threads;
	long cache_mb; /* level-0 copies up to this size, MiB (0: none) */
	int openslide_only; /* no direct JPEG tile decoding */
	const char *slide_id;
	const char *preview;
	const char *mask; /* --mask: the mask as a PNG */
};

/* One tile to make; the plan of a slide is an array of these in output
 * order. */
struct plan_tile {
	int64_t x, y, extent; /* level-0 box */
	int64_t parent, root; /* plan indices; parent -1 at depth 0 */
	double tissue;
	int mag_index, depth, level;
};

struct plan {
	struct plan_tile *tiles;
	int64_t n, cap;
};

static int plan_add(struct plan *p, const struct plan_tile *t)
{
	if (p->n == p->cap) {
		int64_t ncap = p->cap ? 2 * p->cap : 256;
		struct plan_tile *nt = realloc(p->tiles, (size_t)ncap * sizeof *nt);
		if (!nt)
			return eosin_error("out of memory");
		p->tiles = nt;
		p->cap = ncap;
	}
	p->tiles[p->n++] = *t;
	return 0;
}


static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Keep k of the n candidate boxes, chosen by the seed, in raster order. */
static void sample_boxes(struct tile_box *boxes, int64_t *n, int64_t k, uint64_t seed)
{
	if (k <= 0 || k >= *n)
		return;
	int64_t *idx = malloc((size_t)*n * sizeof *idx);
	if (!idx)
		return;
	for (int64_t i = 0; i < *n; i++)
		idx[i] = i;
	uint64_t state = seed;
	for (int64_t i = 0; i < k; i++) { /* partial Fisher-Yates */
		int64_t j = i + (int64_t)(splitmix64(&state) % (uint64_t)(*n - i));
		int64_t t = idx[i];
		idx[i] = idx[j];
		idx[j] = t;
	}
	qsort(idx, (size_t)k, sizeof *idx, cmp_i64);
	for (int64_t i = 0; i < k; i++)
		boxes[i] = boxes[idx[i]];
	*n = k;
	free(idx);
}

/* Depth-0 boxes on a grid of `stride` over the slide, each wholly inside
 * level 0 and with enough tissue. */
static int grid_boxes(const struct slide *s, const struct tissue_mask *m, int64_t extent,
                      int64_t stride, double min_tissue, struct tile_box **out, int64_t *n)
{
	*out = NULL;
	*n = 0;
	if (extent > s->width[0] || extent > s->height[0])
		return 0;
	int64_t nx = (s->width[0] - extent) / stride + 1, ny = (s->height[0] - extent) / stride + 1;
	struct tile_box *b = malloc((size_t)(nx * ny) * sizeof *b);
	if (!b)
		return eosin_error("out of memory");
	for (int64_t j = 0; j < ny; j++)
		for (int64_t i = 0; i < nx; i++) {
			struct tile_box t = {i * stride, j * stride, extent};
			if (tissue_fraction(m, t.x, t.y, t.extent) >= min_tissue)
				b[(*n)++] = t;
		}
	*out = b;
	return 0;
}

static int plan_tile_for(const struct options *o, const struct slide *s,
                         const struct tissue_mask *m, const struct tile_box *b, int mag_index,
                         int depth, int64_t parent, int64_t root, struct plan *p)
{
	struct plan_tile t = {b->x, b->y, b->extent, parent, root, 0, mag_index, depth, 0};
	t.tissue = tissue_fraction(m, b->x, b->y, b->extent);
	double actual_mpp = (double)b->extent * s->base_mpp / o->px;
	t.level = slide_level_for(s, actual_mpp, o->tolerance);
	if (t.root < 0)
		t.root = p->n;
	return plan_add(p, &t);
}

/* Quadtree: parents at the lowest magnification, then each tree breadth
 * first (depth 1 raster order, depth 2, ...), trees in raster order. */
static int plan_slide(const struct options *o, const struct slide *s, const struct tissue_mask *m,
                      struct plan *p)
{
	if (o->grid) {
		for (int k = 0; k < o->nmags; k++) {
			double mpp = mag_to_mpp(o->mags[k]);
			int64_t extent = tile_extent(o->px, mpp, s->base_mpp, 1);
			if (extent < 0)
				return -1;
			int64_t overlap = (int64_t)llround((double)o->overlap * mpp / s->base_mpp);
			int64_t stride = extent - overlap < 1 ? 1 : extent - overlap;
			struct tile_box *boxes;
			int64_t n;
			if (grid_boxes(s, m, extent, stride, o->min_tissue, &boxes, &n) < 0)
				return -1;
			sample_boxes(boxes, &n, o->parents, o->seed + (uint64_t)k);
			for (int64_t i = 0; i < n; i++)
				if (plan_tile_for(o, s, m, &boxes[i], k, 0, -1, -1, p) < 0) {
					free(boxes);
					return -1;
				}
			free(boxes);
		}
		return 0;
	}
	int depth_max = o->nmags - 1;
	int64_t extent =
	    tile_extent(o->px, mag_to_mpp(o->mags[0]), s->base_mpp, (int64_t)1 << depth_max);
	if (extent < 0)
		return -1;
	struct tile_box *boxes;
	int64_t n;
	if (grid_boxes(s, m, extent, extent, o->min_tissue, &boxes, &n) < 0)
		return -1;
	sample_boxes(boxes, &n, o->parents, o->seed);
	for (int64_t i = 0; i < n; i++) {
		int64_t root = p->n;
		for (int d = 0; d <= depth_max; d++) {
			int side = 1 << d;
			for (int jj = 0; jj < side; jj++)
				for (int ii = 0; ii < side; ii++) {
					struct tile_box c;
					if (quadtree_descendant(&boxes[i], d, ii, jj, &c) < 0) {
						free(boxes);
						return -1;
					}
					/* the parent is (ii/2, jj/2) at depth d-1, whose
					 * tiles start quadtree_size(d-2) after the root */
					int64_t parent = -1;
					if (d > 0) {
						int64_t first = quadtree_size(d - 2);
						parent =
						    root + first + (jj / 2) * (side / 2) + ii / 2;
					}
					if (plan_tile_for(o, s, m, &c, d, d, parent, root, p) < 0) {
						free(boxes);
						return -1;
					}
				}
		}
	}
	free(boxes);
	return 0;
}

/* ---- the worker pool ---- */

/* While the next slide is prepared ahead (prepare_thread), one tile
 * worker of the current slide sits out, so that the threads at work are
 * as many as --threads: the preparation then gets a core of its own and
 * is done by the time the tiles are, and the tiles are not left waiting
 * for its last, one-thread steps (tissue, plan) with a core idle. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t done;
	int running; /* preparations ahead running */
} ahead = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void ahead_wait(void)
{
	pthread_mutex_lock(&ahead.lock);
	while (ahead.running > 0)
		pthread_cond_wait(&ahead.done, &ahead.lock);
	pthread_mutex_unlock(&ahead.lock);
}

enum { SLOT_EMPTY, SLOT_BUSY, SLOT_DONE };

struct slot {
	int state;
	char *rec; /* the finished record, or NULL on failure */
	size_t len;
	char err[512];
};

struct job {
	const struct options *o;
	const struct slide *s;
	const struct plan *plan;
	const char *slide_id;
	const char *path;
	struct stream_writer *w;
	pthread_mutex_t lock;
	pthread_cond_t space, finished;
	int64_t next_claim, next_write, window;
	int stop;              /* no more tiles to be claimed */
	int writing;           /* a worker is writing records out */
	int result;            /* 0; -1 a tile failed; -2 a write error */
	char err[1024];        /* why */
	int nthreads, workers; /* workers to start, started so far */
	struct progress prog;  /* advanced by the worker writing */
	struct slot *slots;    /* (window) ring, index % window */
};

static void tile_id(char *buf, size_t size, const char *slide_id, double mag, int64_t x, int64_t y)
{
	snprintf(buf, size, "%s/%gx/%lld_%lld", slide_id, mag, (long long)x, (long long)y);
}

/* What one worker reuses from tile to tile. The JPEG buffer is
 * tjBufSize() bytes, the most any tile can take, so the encoder never
 * allocates (a fresh buffer of a few hundred KiB per tile is a fresh
 * mmap, and page faults, each time). */
struct worker_state {
	tjhandle tj;
	uint8_t *rgb; /* (px, px, 3) */
	unsigned char *jpeg;
	unsigned long jpeg_cap;
	struct slide_scratch sc;
	struct recb b;
};

/* Read, resample, encode and pack tile i; the record into *rec. */
static int make_tile(struct job *j, int64_t i, struct worker_state *ws, char **rec, size_t *len)
{
	tjhandle tj = ws->tj;
	uint8_t *rgb = ws->rgb;
	struct slide_scratch *sc = &ws->sc;
	struct recb *b = &ws->b;
	const struct options *o = j->o;
	const struct slide *s = j->s;
	const struct plan_tile *t = &j->plan->tiles[i];
	const struct plan_tile *root = &j->plan->tiles[t->root];
	double mag = o->mags[t->mag_index];
	if (slide_read_box(s, t->level, t->x, t->y, t->extent, o->px, rgb, sc) < 0)
		return -1;
	unsigned char *jpeg = ws->jpeg;
	unsigned long jpeg_len = ws->jpeg_cap;
	int subsamp = o->quality >= 90 ? TJSAMP_444 : TJSAMP_420;
	/* the accurate integer DCT, as libjpeg's own default (turbojpeg's
	 * compressor defaults to the fast one) */
	if (tjCompress2(tj, rgb, o->px, 0, o->px, TJPF_RGB, &jpeg, &jpeg_len, subsamp, o->quality,
	                TJFLAG_ACCURATEDCT | TJFLAG_NOREALLOC) != 0)
		return eosin_error("jpeg encoding: %s", tjGetErrorStr2(tj));
	char id[1024];
	tile_id(id, sizeof id, j->slide_id, mag, t->x, t->y);
	double level_px = (double)t->extent / s->ds[t->level];
	recb_begin(b, "tile", 1);
	recb_str(b, F_TILE_ID, id);
	recb_str(b, F_TILE_SLIDE, j->slide_id);
	recb_str(b, F_TILE_PATH, j->path);
	recb_f64(b, F_TILE_MAG, mag);
	recb_f64(b, F_TILE_MPP, (double)t->extent * s->base_mpp / o->px);
	recb_int(b, F_TILE_X, t->x);
	recb_int(b, F_TILE_Y, t->y);
	recb_int(b, F_TILE_EXTENT, t->extent);
	recb_int(b, F_TILE_PX, o->px);
	recb_int(b, F_TILE_LEVEL, t->level);
	recb_f64(b, F_TILE_DS, s->ds[t->level]);
	recb_f64(b, F_TILE_BASE_MPP, s->base_mpp);
	recb_str(b, F_TILE_MPP_SOURCE, mpp_source_name(s->mpp_source));
	recb_f64(b, F_TILE_TISSUE, round(t->tissue * 1e4) / 1e4);
	recb_int(b, F_TILE_DEPTH, t->depth);
	if (t->parent >= 0) {
		const struct plan_tile *pt = &j->plan->tiles[t->parent];
		tile_id(id, sizeof id, j->slide_id, o->mags[pt->mag_index], pt->x, pt->y);
		recb_str(b, F_TILE_PARENT, id);
	}
	tile_id(id, sizeof id, j->slide_id, o->mags[root->mag_index], root->x, root->y);
	recb_str(b, F_TILE_ROOT, id);
	recb_bool(b, F_TILE_UPSAMPLED, level_px < o->px * (1 - o->tolerance));
	recb_int(b, F_TILE_QUALITY, o->quality);
	recb_bin(b, F_TILE_JPEG, jpeg, jpeg_len);
	return recb_finish(b, rec, len);
}

/* Write out the finished records from j->next_write on, in plan order,
 * as long as they are there. Called with j->lock held by a worker that
 * just finished a tile, when no other is writing; the lock is let go
 * while a record is written. A failed tile stops the job there: nothing
 * after it is written. */
static void write_ready(struct job *j)
{
	j->writing = 1;
	while (j->result == 0 && j->next_write < j->plan->n) {
		struct slot *sl = &j->slots[j->next_write % j->window];
		if (sl->state != SLOT_DONE)
			break;
		if (!sl->rec) {
			j->result = -1;
			j->stop = 1;
			snprintf(j->err, sizeof j->err, "%s", sl->err);
			break;
		}
		char *rec = sl->rec;
		size_t len = sl->len;
		sl->rec = NULL;
		sl->state = SLOT_EMPTY;
		j->next_write++;
		pthread_cond_broadcast(&j->space);
		pthread_mutex_unlock(&j->lock);
		int wr = stream_write_raw(j->w, rec, len);
		free(rec);
		if (wr == 0)
			progress_add(&j->prog, 1);
		pthread_mutex_lock(&j->lock);
		if (wr < 0) {
			j->result = -2;
			j->stop = 1;
			snprintf(j->err, sizeof j->err, "%s", eosin_errmsg());
		}
	}
	j->writing = 0;
	if (j->stop)
		pthread_cond_broadcast(&j->space);
	if (j->result != 0 || j->next_write == j->plan->n)
		pthread_cond_broadcast(&j->finished);
}

static void *worker(void *arg)
{
	struct job *j = arg;
	int px = j->o->px;
	struct worker_state ws = {0};
	pthread_setname_np(pthread_self(), "tile-worker"); /* for top -H, perf */
	ws.tj = tjInitCompress();
	ws.rgb = malloc((size_t)px * px * 3);
	ws.jpeg_cap = tjBufSize(px, px, TJSAMP_444); /* the largest of all samplings */
	ws.jpeg = tjAlloc((int)ws.jpeg_cap);
	recb_init(&ws.b);
	pthread_mutex_lock(&j->lock);
	int index = j->workers++;
	pthread_mutex_unlock(&j->lock);
	int sits_out = index > 0 && index == j->nthreads - 1;
	for (;;) {
		if (sits_out)
			ahead_wait();
		pthread_mutex_lock(&j->lock);
		while (!j->stop && j->next_claim < j->plan->n &&
		       j->next_claim >= j->next_write + j->window)
			pthread_cond_wait(&j->space, &j->lock);
		if (j->stop || j->next_claim >= j->plan->n) {
			pthread_mutex_unlock(&j->lock);
			break;
		}
		int64_t i = j->next_claim++;
		struct slot *sl = &j->slots[i % j->window];
		sl->state = SLOT_BUSY;
		pthread_mutex_unlock(&j->lock);

		char *rec = NULL;
		size_t len = 0;
		int ret;
		if (!ws.tj || !ws.rgb || !ws.jpeg)
			ret = eosin_error("out of memory");
		else
			ret = make_tile(j, i, &ws, &rec, &len);

		pthread_mutex_lock(&j->lock);
		sl->rec = ret < 0 ? NULL : rec;
		sl->len = len;
		if (ret < 0)
			snprintf(sl->err, sizeof sl->err, "%s", eosin_errmsg());
		sl->state = SLOT_DONE;
		if (!j->writing)
			write_ready(j);
		pthread_mutex_unlock(&j->lock);
	}
	recb_release(&ws.b);
	slide_scratch_release(&ws.sc);
	free(ws.rgb);
	tjFree(ws.jpeg);
	if (ws.tj)
		tjDestroy(ws.tj);
	return NULL;
}

/* Run the plan through the pool; the workers write the records in plan
 * order themselves (whoever finishes the next one to go out writes it and
 * any finished after it), so no thread wakes per tile just to write. 0
 * ok; -1 a tile failed (message set, nothing after it written); -2 a
 * write error. */
static int run_plan(const struct options *o, const struct slide *s, const struct plan *plan,
                    const char *slide_id, const char *path, struct stream_writer *w)
{
	struct job j = {.o = o, .s = s, .plan = plan, .slide_id = slide_id, .path = path, .w = w};
	int nthreads = o->threads;
	if (nthreads > plan->n)
		nthreads = plan->n > 0 ? (int)plan->n : 1;
	j.nthreads = nthreads;
	j.window = (int64_t)WINDOW_PER_THREAD * nthreads;
	j.slots = calloc((size_t)j.window, sizeof *j.slots);
	pthread_t *tids = calloc((size_t)nthreads, sizeof *tids);
	if (!j.slots || !tids) {
		free(j.slots);
		free(tids);
		return eosin_error("out of memory");
	}
	pthread_mutex_init(&j.lock, NULL);
	pthread_cond_init(&j.space, NULL);
	pthread_cond_init(&j.finished, NULL);
	progress_init(&j.prog, "tiles", plan->n);
	int started = 0;
	for (; started < nthreads; started++)
		if (pthread_create(&tids[started], NULL, worker, &j) != 0)
			break;
	pthread_mutex_lock(&j.lock);
	if (started == 0) {
		j.result = -1;
		snprintf(j.err, sizeof j.err, "cannot start a thread");
	}
	while (j.result == 0 && j.next_write < plan->n)
		pthread_cond_wait(&j.finished, &j.lock);
	j.stop = 1;
	pthread_cond_broadcast(&j.space);
	pthread_mutex_unlock(&j.lock);
	for (int t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	progress_done(&j.prog);
	for (int64_t k = 0; k < j.window; k++)
		free(j.slots[k].rec);
	pthread_cond_destroy(&j.space);
	pthread_cond_destroy(&j.finished);
	pthread_mutex_destroy(&j.lock);
	free(j.slots);
	free(tids);
	if (j.result < 0)
		eosin_error("%s", j.err);
	return j.result;
}

/* ---- preview ---- */

/* Replace "{slide}" in pattern with the slide id. */
static char *preview_name(const char *pattern, const char *slide_id)
{
	const char *at = strstr(pattern, "{slide}");
	char *out = NULL;
	if (!at)
		return strdup(pattern);
	if (asprintf(&out, "%.*s%s%s", (int)(at - pattern), pattern, slide_id, at + 7) < 0)
		return NULL;
	return out;
}

/* The outline of the w x h rectangle at (left, top), one pixel wide,
 * clipped to the image. */
static void outline(uint8_t *rgb, int iw, int ih, int left, int top, int w, int h,
                    const uint8_t colour[3])
{
	for (int y = top; y < top + h; y++) {
		if (y < 0 || y >= ih)
			continue;
		int edge = y == top || y == top + h - 1;
		for (int x = left; x < left + w; x++)
			if (x >= 0 && x < iw && (edge || x == left || x == left + w - 1))
				memcpy(rgb + ((size_t)y * iw + x) * 3, colour, 3);
	}
}

/* A 3x5 font for the preview's label: digits, a few capitals, and signs;
 * each glyph is 5 rows of 3 bits, high bit left. */
static const struct glyph {
	char c;
	uint8_t rows[5];
} glyphs[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}},
    {'3', {7, 1, 7, 1, 7}}, {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}},
    {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}}, {'8', {7, 5, 7, 5, 7}},
    {'9', {7, 5, 7, 1, 7}}, {'S', {7, 4, 7, 1, 7}}, {'V', {5, 5, 5, 5, 2}},
    {'G', {7, 4, 5, 5, 7}}, {'>', {4, 2, 1, 2, 4}}, {'<', {1, 2, 4, 2, 1}},
    {'=', {0, 7, 0, 7, 0}}, {' ', {0, 0, 0, 0, 0}},
};

/* Write text at (x0, y0) in glyphs of `scale` px per dot, black on a
 * white box. */
static void label(uint8_t *rgb, int iw, int ih, int x0, int y0, int scale, const char *text)
{
	int n = (int)strlen(text), bw = (n * 4 + 1) * scale, bh = 7 * scale;
	for (int y = y0; y < y0 + bh && y < ih; y++)
		for (int x = x0; x < x0 + bw && x < iw; x++)
			memset(rgb + ((size_t)y * iw + x) * 3, 255, 3);
	for (int k = 0; k < n; k++) {
		const struct glyph *g = NULL;
		for (size_t j = 0; j < sizeof glyphs / sizeof *glyphs; j++)
			if (glyphs[j].c == text[k])
				g = &glyphs[j];
		if (!g)
			continue;
		for (int r = 0; r < 5; r++)
			for (int b = 0; b < 3; b++) {
				if (!(g->rows[r] >> (2 - b) & 1))
					continue;
				for (int dy = 0; dy < scale; dy++)
					for (int dx = 0; dx < scale; dx++) {
						int x = x0 + ((k * 4 + 1 + b) * scale) + dx,
						    y = y0 + (1 + r) * scale + dy;
						if (x < iw && y < ih)
							memset(rgb + ((size_t)y * iw + x) * 3, 0, 3);
					}
			}
	}
}

/* The thumbnail with tissue tinted green, rejected pen ink tinted
 * magenta, every depth-0 tile outlined in blue (2 px), and the thresholds
 * used in the top left corner ("S>=12 V<=228 G=247": saturation,
 * brightness, glass brightness), as PNG. */
static int write_preview(const char *file, const uint8_t *thumb, const struct tissue_mask *m,
                         const struct plan *plan)
{
	size_t n = (size_t)m->w * m->h;
	uint8_t *rgb = malloc(n * 3);
	if (!rgb)
		return eosin_error("out of memory");
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = thumb + 3 * i;
		uint8_t *q = rgb + 3 * i;
		if (m->mask[i]) { /* 60% image, 40% green */
			q[0] = (uint8_t)(p[0] * 6 / 10);
			q[1] = (uint8_t)(p[1] * 6 / 10 + 200 * 4 / 10);
			q[2] = (uint8_t)(p[2] * 6 / 10);
		} else if (m->ink[i]) { /* 40% image, 60% magenta */
			q[0] = (uint8_t)(p[0] * 4 / 10 + 255 * 6 / 10);
			q[1] = (uint8_t)(p[1] * 4 / 10);
			q[2] = (uint8_t)(p[2] * 4 / 10 + 255 * 6 / 10);
		} else
			memcpy(q, p, 3);
	}
	static const uint8_t blue[3] = {0, 0, 255};
	for (int64_t i = 0; i < plan->n; i++) {
		const struct plan_tile *t = &plan->tiles[i];
		if (t->depth != 0)
			continue;
		int left = (int)floor(t->x / m->dsx), top = (int)floor(t->y / m->dsy);
		int w = (int)ceil(t->extent / m->dsx), h = (int)ceil(t->extent / m->dsy);
		for (int k = 0; k < 2 && w - 2 * k > 0 && h - 2 * k > 0; k++)
			outline(rgb, m->w, m->h, left + k, top + k, w - 2 * k, h - 2 * k, blue);
	}
	char text[64];
	snprintf(text, sizeof text, "S>=%d V<=%d G=%d", m->threshold, m->v_threshold, m->glass_v);
	label(rgb, m->w, m->h, 0, 0, m->w >= 600 ? 3 : 2, text);
	int ret = png_write_rgb(file, rgb, m->w, m->h);
	free(rgb);
	return ret < 0 ? eosin_error_prefix("preview") : 0;
}

/* The mask as a PNG: tissue white, ink grey (128), the rest black. */
static int write_mask(const char *file, const struct tissue_mask *m)
{
	size_t n = (size_t)m->w * m->h;
	uint8_t *rgb = malloc(n * 3);
	if (!rgb)
		return eosin_error("out of memory");
	for (size_t i = 0; i < n; i++)
		memset(rgb + 3 * i, m->mask[i] ? 255 : m->ink[i] ? 128 : 0, 3);
	int ret = png_write_rgb(file, rgb, m->w, m->h);
	free(rgb);
	return ret < 0 ? eosin_error_prefix("mask") : 0;
}

/* ---- one slide ---- */

/* "dir/A.b.svs" -> "A.b" */
static char *slide_id_of(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	const char *dot = strrchr(base, '.');
	size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
	return strndup(base, n);
}

/* A slide made ready to tile: opened, its tissue found and its tiles
 * planned. With more than one thread the next slide is prepared on a
 * thread of its own while the current one is tiled, so that the parts
 * of preparing that run on one thread (opening, tissue detection)
 * overlap other work; a failure is kept as its message and reported
 * when that slide's turn comes, so diagnostics keep the order of the
 * slides. */
struct prepared {
	const struct options *o;
	const char *path;
	struct slide s;
	int opened;
	char *slide_id;
	uint8_t *thumb;
	struct tissue_mask mask;
	struct plan plan;
	int failed;
	char msg[1536]; /* why it failed */
};

static void prepared_release(struct prepared *p)
{
	free(p->plan.tiles);
	tissue_mask_release(&p->mask);
	free(p->thumb);
	free(p->slide_id);
	if (p->opened)
		slide_close(&p->s);
	p->opened = 0;
	p->plan.tiles = NULL;
	p->thumb = NULL;
	p->slide_id = NULL;
}

/* Fill p for o and path; on failure p->failed and p->msg. */
static void prepare_slide(struct prepared *p)
{
	const struct options *o = p->o;
	const char *path = p->path;
	struct slide *s = &p->s;
	if (slide_open(s, path, o->override_mpp) < 0)
		goto failed;
	p->opened = 1;
	if (!o->openslide_only && slide_use_direct(s) < 0)
		goto failed;
	p->slide_id = o->slide_id ? strdup(o->slide_id) : slide_id_of(path);
	if (!p->slide_id) {
		eosin_error("out of memory");
		goto failed;
	}
	for (int k = 0; k < o->nmags; k++) {
		double mpp = mag_to_mpp(o->mags[k]);
		if (mpp < s->base_mpp * (1 - o->tolerance) && !o->allow_upsample) {
			eosin_error("'%s': %gx (%g um/px) is beyond the scan (%g um/px from %s, "
			            "about %.3gx); nothing real to read there: drop %g from --mags, "
			            "or give --allow-upsample to make upsampled tiles (marked "
			            "upsampled=true)",
			            path, o->mags[k], mpp, s->base_mpp,
			            mpp_source_name(s->mpp_source), 10.0 / s->base_mpp, o->mags[k]);
			goto failed;
		}
	}
	double thumb_ds = THUMB_MPP / s->base_mpp;
	int64_t side = s->width[0] > s->height[0] ? s->width[0] : s->height[0];
	if (side / thumb_ds > THUMB_MAX_SIDE)
		thumb_ds = (double)side / THUMB_MAX_SIDE;
	if (side / thumb_ds < THUMB_MIN_SIDE)
		thumb_ds = (double)side / THUMB_MIN_SIDE;
	/* When the thumbnail itself must be made from level 0 (single-level
	 * or small slides) and level 0 also gives the finest tiles, keep the
	 * level-0 pixels (if they fit): OpenSlide then decodes and composites
	 * them once, not once for the thumbnail and again per tile. */
	if (o->cache_mb > 0 && slide_thumbnail_level(s, thumb_ds) == 0 &&
	    slide_level_for(s, mag_to_mpp(o->mags[o->nmags - 1]), o->tolerance) == 0 &&
	    slide_cache_level0(s, (size_t)o->cache_mb << 20, o->threads) < 0)
		goto failed;
	int tw, th;
	double dsx, dsy;
	if (slide_thumbnail(s, thumb_ds, o->threads, &p->thumb, &tw, &th, &dsx, &dsy) < 0 ||
	    tissue_detect(&p->mask, p->thumb, tw, th, dsx, dsy, s->base_mpp,
	                  MIN_TISSUE_AREA_UM2, o->threads) < 0 ||
	    plan_slide(o, s, &p->mask, &p->plan) < 0)
		goto failed;
	return;
failed:
	p->failed = 1;
	snprintf(p->msg, sizeof p->msg, "%s", eosin_errmsg());
}

static void *prepare_thread(void *arg)
{
	pthread_setname_np(pthread_self(), "tile-prepare");
	pthread_mutex_lock(&ahead.lock);
	ahead.running++;
	pthread_mutex_unlock(&ahead.lock);
	prepare_slide(arg);
	pthread_mutex_lock(&ahead.lock);
	ahead.running--;
	pthread_cond_broadcast(&ahead.done);
	pthread_mutex_unlock(&ahead.lock);
	return NULL;
}

/* Tile a prepared slide. 0 done; 2 done, but no box had tissue enough
 * for a tile (reported); 1 the slide failed (reported); -1 a write error
 * (fatal). */
static int tile_prepared(struct prepared *p, struct stream_writer *w)
{
	const struct options *o = p->o;
	if (p->failed) {
		warnx("%s", p->msg);
		return 1;
	}
	for (int k = 0; k < 2; k++) {
		const char *pattern = k ? o->mask : o->preview;
		if (!pattern)
			continue;
		char *file = preview_name(pattern, p->slide_id);
		if (!file || (k ? write_mask(file, &p->mask)
		                : write_preview(file, p->thumb, &p->mask, &p->plan)) < 0) {
			if (file)
				warn_lib();
			else
				warnx("out of memory");
			free(file);
			return 1;
		}
		free(file);
	}
	int r = run_plan(o, &p->s, &p->plan, p->slide_id, p->path, w);
	if (r == -2)
		return -1;
	if (r < 0) {
		warn_lib();
		return 1;
	}
	if (p->plan.n == 0) {
		warnx("'%s': no tiles: no %s with tissue >= %g (tissue covers %.1f%% of the "
		      "slide)",
		      p->path, o->grid ? "grid tile" : "parent", o->min_tissue,
		      100 * p->mask.fraction);
		return 2;
	}
	return 0;
}

/* Tile the n slides at paths in order. 0 all done; 1 some failed
 * (reported); -1 a write error (fatal, reported by the caller). */
static int tile_slides(const struct options *o, char **paths, int n, struct stream_writer *w)
{
	struct prepared *cur = calloc(1, sizeof *cur), *next = calloc(1, sizeof *next);
	if (!cur || !next) {
		free(cur);
		free(next);
		eosin_error("out of memory");
		return -1;
	}
	/* next is being prepared on thread tid while ahead; the second slide
	 * already while the first is prepared, so that their one-thread
	 * parts (opening, tissue) overlap too */
	pthread_t tid;
	int ahead = 0;
	cur->o = o;
	cur->path = paths[0];
	if (n > 1 && o->threads > 1) {
		next->o = o;
		next->path = paths[1];
		ahead = pthread_create(&tid, NULL, prepare_thread, next) == 0;
	}
	prepare_slide(cur);
	int failed = 0, ret = 0, nfailed = 0, empty = 0, done = 0;
	for (int i = 0; i < n; i++) {
		if (!ahead && i + 1 < n && o->threads > 1) {
			memset(next, 0, sizeof *next);
			next->o = o;
			next->path = paths[i + 1];
			ahead = pthread_create(&tid, NULL, prepare_thread, next) == 0;
		}
		int r = tile_prepared(cur, w);
		prepared_release(cur);
		if (ahead)
			pthread_join(tid, NULL);
		if (r < 0) {
			if (i + 1 < n)
				prepared_release(next);
			ret = -1;
			break;
		}
		failed |= r == 1;
		nfailed += r == 1;
		empty += r == 2;
		done += r != 1;
		if (i + 1 < n) {
			if (!ahead) {
				memset(next, 0, sizeof *next);
				next->o = o;
				next->path = paths[i + 1];
				prepare_slide(next);
			}
			struct prepared *t = cur;
			cur = next;
			next = t;
		}
		ahead = 0;
	}
	free(cur);
	free(next);
	/* the summary: a slide without tissue is no failure (blank glass, a
	 * control, a wrong file), but it must not pass unseen in a batch */
	if (ret == 0 && (n > 1 || empty || nfailed))
		warnx("%d slide%s: %d tiled, %d without tissue, %d failed", n, n == 1 ? "" : "s",
		      done - empty, empty, nfailed);
	return ret < 0 ? -1 : failed;
}

/* What the options give before they are checked. */
struct raw_args {
	const char *mags;
	double mpp, base_mag;
};

/* Read the options into o and a; the index of the first slide. */
static int parse_options(int argc, char **argv, struct options *o, struct raw_args *a)
{
	enum {
		O_MAGS = 256,
		O_PX,
		O_GRID,
		O_OVERLAP,
		O_PARENTS,
		O_SEED,
		O_MIN_TISSUE,
		O_QUALITY,
		O_MPP,
		O_BASE_MAG,
		O_UPSAMPLE,
		O_TOLERANCE,
		O_THREADS,
		O_CACHE_MB,
		O_OPENSLIDE_ONLY,
		O_SLIDE_ID,
		O_PREVIEW,
		O_MASK
	};
	static const struct option opts[] = {
	    {"mags", required_argument, 0, O_MAGS},
	    {"px", required_argument, 0, O_PX},
	    {"grid", no_argument, 0, O_GRID},
	    {"overlap", required_argument, 0, O_OVERLAP},
	    {"parents", required_argument, 0, O_PARENTS},
	    {"seed", required_argument, 0, O_SEED},
	    {"min-tissue", required_argument, 0, O_MIN_TISSUE},
	    {"quality", required_argument, 0, O_QUALITY},
	    {"mpp", required_argument, 0, O_MPP},
	    {"base-mag", required_argument, 0, O_BASE_MAG},
	    {"allow-upsample", no_argument, 0, O_UPSAMPLE},
	    {"tolerance", required_argument, 0, O_TOLERANCE},
	    {"threads", required_argument, 0, O_THREADS},
	    {"cache-mb", required_argument, 0, O_CACHE_MB},
	    {"openslide-only", no_argument, 0, O_OPENSLIDE_ONLY},
	    {"slide-id", required_argument, 0, O_SLIDE_ID},
	    {"preview", required_argument, 0, O_PREVIEW},
	    {"mask", required_argument, 0, O_MASK},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_MAGS: a->mags = optarg; break;
		case O_PX: o->px = (int)prog_long("--px", optarg, 16, 8192); break;
		case O_GRID: o->grid = 1; break;
		case O_OVERLAP: o->overlap = (int)prog_long("--overlap", optarg, 0, 8191); break;
		case O_PARENTS: o->parents = prog_long("--parents", optarg, 1, 1L << 40); break;
		case O_SEED: o->seed = (uint64_t)prog_long("--seed", optarg, 0, 1L << 62); break;
		case O_MIN_TISSUE: o->min_tissue = prog_double("--min-tissue", optarg, 0, 1); break;
		case O_QUALITY: o->quality = (int)prog_long("--quality", optarg, 1, 100); break;
		case O_MPP: a->mpp = prog_double("--mpp", optarg, 0.01, 100); break;
		case O_BASE_MAG: a->base_mag = prog_double("--base-mag", optarg, 0.1, 1000); break;
		case O_UPSAMPLE: o->allow_upsample = 1; break;
		case O_TOLERANCE: o->tolerance = prog_double("--tolerance", optarg, 0, 0.5); break;
		case O_THREADS: o->threads = (int)prog_long("--threads", optarg, 1, 1024); break;
		case O_CACHE_MB: o->cache_mb = prog_long("--cache-mb", optarg, 0, 1L << 20); break;
		case O_OPENSLIDE_ONLY: o->openslide_only = 1; break;
		case O_SLIDE_ID: o->slide_id = optarg; break;
		case O_PREVIEW: o->preview = optarg; break;
		case O_MASK: o->mask = optarg; break;
		default: usage();
		}
	}
	return optind;
}

/* Check the options against each other and the nslides slides; fill in
 * what follows from them. Exits 2 on a usage error. */
static void check_options(struct options *o, const struct raw_args *a, int nslides)
{
	if (nslides == 0)
		usage();
	if (a->mpp > 0 && a->base_mag > 0)
		errx(EXIT_USAGE, "--mpp and --base-mag both give the base resolution: choose one");
	o->override_mpp = a->mpp > 0 ? a->mpp : a->base_mag > 0 ? 10.0 / a->base_mag : 0;
	if ((o->nmags = parse_mags(a->mags, o->mags, MAX_MAGS)) < 0)
		errx(EXIT_USAGE, "--mags: %s", eosin_errmsg());
	if (o->nmags == 1)
		o->grid = 1;
	if (!o->grid && quadtree_check_mags(o->mags, o->nmags) < 0)
		errx(EXIT_USAGE, "--mags: %s (or give --grid for independent grids)",
		     eosin_errmsg());
	if (o->overlap >= o->px)
		errx(EXIT_USAGE, "--overlap %d: must be smaller than --px %d", o->overlap, o->px);
	if (o->slide_id && nslides > 1)
		errx(EXIT_USAGE, "--slide-id names one slide, but %d are given", nslides);
	if (o->preview && nslides > 1 && !strstr(o->preview, "{slide}"))
		errx(EXIT_USAGE, "--preview: with several slides the name needs {slide}");
	if (o->mask && nslides > 1 && !strstr(o->mask, "{slide}"))
		errx(EXIT_USAGE, "--mask: with several slides the name needs {slide}");
	if (o->threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		o->threads = n > 0 ? (int)n : 1;
	}
}

static void set_memory_policy(void)
{
	/* Memory must follow the slides in hand, not the number of slides.
	 * Blocks of a megabyte and more (thumbnail, tissue mask and its
	 * summed-area table) are mapped for themselves and unmapped when
	 * freed: kept in the heap, as they were, the heap grew
	 * with the number of slides at --threads 2 (71 MB for 4 slides, 97 MB
	 * for 120 on a busy machine), two slides' blocks of different
	 * lifetimes interleaving there; mapped, 69 MB for both. Refaulting
	 * them costs a few ms a slide, within the noise of the tile
	 * benchmark. (The level-0 copy has mappings of its own, reused:
	 * lib/slide/slide.c.) Smaller blocks stay in one arena for all threads, and
	 * the heap's freed memory is kept for the next slide. */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	mallopt(M_ARENA_MAX, 1);
}

/* The hdr record: the command line, and the slides (argv[first..]) as
 * its input. */
static void write_hdr(int argc, char **argv, int first, struct stream_writer *w)
{
	struct recb b;
	recb_init(&b);
	recb_hdr(&b, "eosin-tile", argc, argv);
	recb_key(&b, F_HDR_INPUT);
	msgpack_pack_array(&b.pk, (size_t)(argc - first));
	for (int i = first; i < argc; i++) {
		size_t n = strlen(argv[i]);
		msgpack_pack_str(&b.pk, n);
		msgpack_pack_str_body(&b.pk, argv[i], n);
	}
	if (recb_write(&b, w) < 0)
		die_lib();
	recb_release(&b);
}

int main(int argc, char **argv)
{
	struct options o = {
	    .px = 512, .min_tissue = 0.5, .quality = 90, .tolerance = 0.01, .cache_mb = 256};
	struct raw_args a = {.mags = "5,10,20,40"};
	int first = parse_options(argc, argv, &o, &a);
	check_options(&o, &a, argc - first);
	set_memory_policy();
	struct stream_writer w;
	if (stream_writer_init(&w, 1, "<stdout>") < 0)
		die_lib();
	write_hdr(argc, argv, first, &w);
	int failed = tile_slides(&o, argv + first, argc - first, &w);
	if (failed < 0) {
		warn_lib();
		stream_writer_close(&w);
		return 1;
	}
	prog_close_output(&w);
	return failed ? 1 : 0;
}
