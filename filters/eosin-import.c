/*
 * eosin-import: CLAM and TRIDENT HDF5 feature files to tile records with
 * img_emb. See eosin-import(1).
 */
#include "prog.h"
#include "core/stream.h"
#include "core/vec.h"
#include "io/h5feat.h"
#include "schema_fields.h"

#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>

#define BLOCK 4096   /* rows read at a time */

static void usage(void)
{
	fprintf(stderr, "usage: eosin-import [--slide-id ID] [--mag M] [--extent PX] [--model NAME] "
	                "[--dtype f32|f16|bf16] [-o FILE] file.h5 ...\n");
	exit(EXIT_USAGE);
}

static struct {
	const char *slide_id, *model, *out_path;
	double mag;          /* 0: not given */
	long extent;         /* 0: not given */
	enum vec_dtype dtype;
} O = {.dtype = VEC_F32};

/* What each tile of one file says, resolved from its attributes and flags. */
struct geometry {
	double mag, mpp, ds, base_mpp;
	int64_t extent, px, level;
};

static int resolve(const struct h5feat_in *in, struct geometry *g)
{
	const struct h5feat_attrs *a = &in->a;
	const char *p = in->path;
	if (a->has_target_mag) {
		if (O.mag && fabs(O.mag - a->target_mag) > 1e-9)
			return eosin_error("%s: attribute target_magnification of 'coords' is %g but --mag is %g",
			                   p, a->target_mag, O.mag);
		g->mag = a->target_mag;
	} else if (O.mag) {
		g->mag = O.mag;
	} else {
		return eosin_error("%s: the file does not say its magnification (no attribute "
		                   "target_magnification on 'coords'): give --mag",
		                   p);
	}
	int64_t ext = 0;
	const char *from = NULL;
	if (a->has_patch_size_level0)
		ext = a->patch_size_level0, from = "patch_size_level0";
	else if (a->has_patch_size && a->has_downsample)
		ext = llround((double)a->patch_size * a->downsample), from = "patch_size x downsample";
	else if (a->has_patch_size && a->has_patch_level && a->patch_level == 0)
		ext = a->patch_size, from = "patch_size at patch_level 0";
	if (ext && O.extent && ext != O.extent)
		return eosin_error("%s: the attributes of 'coords' give a level-0 extent of %" PRId64
		                   " (%s) but --extent is %ld",
		                   p, ext, from, O.extent);
	if (!ext)
		ext = O.extent;
	if (!ext)
		return eosin_error("%s: the file does not say the level-0 patch size (no attribute "
		                   "patch_size_level0, nor patch_size with downsample or patch_level 0, "
		                   "on 'coords'): give --extent",
		                   p);
	if (ext < 1 || ext > (1 << 20))
		return eosin_error("%s: level-0 patch size %" PRId64 " is out of range", p, ext);
	g->extent = ext;
	if (a->has_level0_mag)
		g->px = llround((double)ext * g->mag / a->level0_mag);
	else if (a->has_patch_size)
		g->px = a->patch_size;
	else
		g->px = ext;
	if (g->px < 1)
		return eosin_error("%s: patch size in pixels %" PRId64 " is out of range", p, g->px);
	g->level = a->has_patch_level ? a->patch_level : 0;
	g->mpp = 10.0 / g->mag;
	g->ds = a->has_downsample ? a->downsample : (double)ext / (double)g->px;
	g->base_mpp = g->mpp * (double)g->px / (double)ext;
	return 0;
}

static char *slide_of(const char *path)
{
	if (O.slide_id)
		return strdup(O.slide_id);
	char *copy = strdup(path);
	if (!copy)
		return NULL;
	char *s = strdup(basename(copy));
	free(copy);
	char *dot = s ? strrchr(s, '.') : NULL;
	if (dot && dot != s)
		*dot = 0;
	return s;
}

static void tile_record(struct recb *b, const char *slide, const char *path,
                        const struct geometry *g, int64_t x, int64_t y, const float *f, int64_t dim)
{
	char id[1024];
	snprintf(id, sizeof id, "%s/%gx/%" PRId64 "_%" PRId64, slide, g->mag, x, y);
	recb_begin(b, "tile", TILE_VERSION);
	recb_str(b, F_TILE_ID, id);
	recb_str(b, F_TILE_SLIDE, slide);
	recb_str(b, F_TILE_PATH, path);
	recb_f64(b, F_TILE_MAG, g->mag);
	recb_f64(b, F_TILE_MPP, g->mpp);
	recb_int(b, F_TILE_X, x);
	recb_int(b, F_TILE_Y, y);
	recb_int(b, F_TILE_EXTENT, g->extent);
	recb_int(b, F_TILE_PX, g->px);
	recb_int(b, F_TILE_LEVEL, g->level);
	recb_f64(b, F_TILE_DS, g->ds);
	recb_f64(b, F_TILE_BASE_MPP, g->base_mpp);
	recb_str(b, F_TILE_MPP_SOURCE, "override");
	recb_f64(b, F_TILE_TISSUE, 1.0);
	recb_int(b, F_TILE_DEPTH, 0);
	recb_str(b, F_TILE_ROOT, id);
	recb_int(b, F_TILE_QUALITY, 0);
	recb_vec(b, F_COMMON_IMG_EMB, f, 1, (uint32_t)dim, O.dtype, O.model, NULL);
}

/* One file: every row checked first, then written, so that a bad file adds
 * no record. Returns the tiles written, or -1. */
static long long import_file(const char *path, struct stream_writer *w, struct recb *b,
                             struct progress *pr)
{
	struct h5feat_in in;
	struct geometry g = {0};
	float *feat = NULL;
	int64_t *xy = NULL;
	char *slide = NULL;
	long long n = -1;
	if (h5feat_open(&in, path) < 0 || resolve(&in, &g) < 0)
		goto out;
	if (!(slide = slide_of(path)) || !*slide) {
		eosin_error("%s: empty slide id", path);
		goto out;
	}
	int64_t block = in.n < BLOCK ? (in.n ? in.n : 1) : BLOCK;
	feat = malloc((size_t)block * (size_t)in.dim * sizeof(float));
	xy = malloc((size_t)block * 2 * sizeof(int64_t));
	if (!feat || !xy) {
		eosin_error("out of memory");
		goto out;
	}
	for (int64_t r = 0; r < in.n; r += block)
		if (h5feat_read(&in, r, in.n - r < block ? in.n - r : block, feat, xy) < 0)
			goto out;
	for (int64_t r = 0; r < in.n; r += block) {
		int64_t c = in.n - r < block ? in.n - r : block;
		if (h5feat_read(&in, r, c, feat, xy) < 0)
			goto out;
		for (int64_t i = 0; i < c; i++) {
			tile_record(b, slide, path, &g, xy[2 * i], xy[2 * i + 1], feat + i * in.dim, in.dim);
			if (recb_write(b, w) < 0)
				goto out;
		}
		progress_add(pr, c);
	}
	n = in.n;
out:
	h5feat_close(&in);
	free(feat);
	free(xy);
	free(slide);
	return n;
}

static const struct option long_opts[] = {
    {"slide-id", required_argument, 0, 's'}, {"mag", required_argument, 0, 'm'},
    {"extent", required_argument, 0, 'e'},   {"model", required_argument, 0, 'M'},
    {"dtype", required_argument, 0, 'd'},    {"output", required_argument, 0, 'o'},
    {"help", no_argument, 0, 'h'},           {0, 0, 0, 0},
};

/* The options into O, checked; returns the index of the first file. */
static int parse_options(int argc, char **argv)
{
	int c;
	while ((c = getopt_long(argc, argv, "o:h", long_opts, NULL)) != -1) {
		switch (c) {
		case 's': O.slide_id = optarg; break;
		case 'm': O.mag = prog_double("--mag", optarg, 1e-3, 1e3); break;
		case 'e': O.extent = prog_long("--extent", optarg, 1, 1 << 20); break;
		case 'M': O.model = optarg; break;
		case 'd':
			if (vec_dtype_parse(optarg, &O.dtype) < 0)
				errx(EXIT_USAGE, "--dtype: '%s' is not f32, f16 or bf16", optarg);
			break;
		case 'o': O.out_path = optarg; break;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();
	if (O.slide_id && argc - optind > 1)
		errx(EXIT_USAGE, "--slide-id names one slide: give one file");
	if (O.slide_id && (!*O.slide_id || strchr(O.slide_id, '/')))
		errx(EXIT_USAGE, "--slide-id: '%s' is empty or has a '/'", O.slide_id);
	return optind;
}

/* Standard output, or with -o a temporary sibling (returned) renamed into
 * place only when every file went in. */
static char *open_output(struct stream_writer *w)
{
	if (!O.out_path) {
		if (stream_writer_init(w, 1, "<stdout>") < 0)
			die_lib();
		return NULL;
	}
	size_t n = strlen(O.out_path) + 32;
	char *tmp = malloc(n);
	if (!tmp)
		errx(1, "out of memory");
	snprintf(tmp, n, "%s.tmp.%ld", O.out_path, (long)getpid());
	if (stream_writer_open(w, tmp) < 0)
		die_lib();
	return tmp;
}

/* The hdr record, with the files read as its input. */
static void write_hdr(struct recb *b, struct stream_writer *w, int argc, char **argv, int first)
{
	recb_hdr(b, "eosin-import", argc, argv);
	recb_key(b, F_HDR_INPUT);
	msgpack_pack_array(&b->pk, (size_t)(argc - first));
	for (int i = first; i < argc; i++) {
		size_t n = strlen(argv[i]);
		msgpack_pack_str(&b->pk, n);
		msgpack_pack_str_body(&b->pk, argv[i], n);
	}
	if (recb_write(b, w) < 0)
		die_lib();
}

int main(int argc, char **argv)
{
	int first = parse_options(argc, argv);
	struct stream_writer w;
	char *tmp = open_output(&w);
	struct recb b;
	recb_init(&b);
	write_hdr(&b, &w, argc, argv, first);
	struct progress pr;
	progress_init(&pr, "tiles", 0);
	double t0 = prog_now();
	long long total = 0;
	int failed = 0;
	for (int i = first; i < argc && !failed; i++) {
		long long n = import_file(argv[i], &w, &b, &pr);
		if (n < 0) {
			warn_lib();
			failed = 1;
		} else {
			total += n;
		}
	}
	progress_done(&pr);
	recb_release(&b);
	if (stream_writer_close(&w) < 0) {
		warn_lib();
		failed = 1;
	}
	if (tmp) {
		if (failed)
			unlink(tmp);
		else if (rename(tmp, O.out_path) < 0)
			err(1, "cannot rename %s to %s", tmp, O.out_path);
		free(tmp);
	}
	if (failed)
		return 1;
	double dt = prog_now() - t0;
	warnx("%lld tiles from %d file%s in %.3f s", total, argc - first, argc - first > 1 ? "s" : "",
	      dt);
	return 0;
}
