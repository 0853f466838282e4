/*
 * eosin-export: embedded tiles to CLAM-compatible HDF5 feature files, one
 * per slide. See eosin-export(1).
 */
#include "prog.h"
#include "core/stream.h"
#include "core/vec.h"
#include "io/h5feat.h"
#include "schema_fields.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <sys/stat.h>

static void usage(void)
{
	fprintf(stderr, "usage: eosin-export --h5 DIR [--field NAME] [file ...]\n");
	exit(EXIT_USAGE);
}

/* One slide's file being written, and what every tile of it must share. */
struct slide_out {
	char *slide;
	struct h5feat_out out;
	struct h5feat_attrs a;
	double mag;
	int64_t extent, px, level, dim;
	struct slide_out *next;
};

static struct slide_out *slides;
static const char *dir, *field = "img_emb";
static float *row;
static size_t row_cap;

static void abort_all(void)
{
	for (struct slide_out *s = slides; s; s = s->next)
		h5feat_abort(&s->out);
}

/* Fail: warn, remove every temporary file, exit 1. */
static void fail(void)
{
	warn_lib();
	abort_all();
	exit(1);
}

static int valid_slide(const char *s)
{
	return *s && *s != '.' && !strchr(s, '/');
}

static struct slide_out *slide_for(const struct record *rec, const char *src, const char *slide,
                                   const struct vec_view *v)
{
	char idb[256];
	for (struct slide_out *s = slides; s; s = s->next)
		if (!strcmp(s->slide, slide))
			return s;
	if (!valid_slide(slide)) {
		eosin_error("%s: record %" PRIu64 " (id '%s'): slide '%s' cannot name a file", src,
		            rec->number, record_id(rec, idb, sizeof idb), slide);
		return NULL;
	}
	struct slide_out *s = calloc(1, sizeof *s);
	if (!s || !(s->slide = strdup(slide))) {
		eosin_error("out of memory");
		return NULL;
	}
	double mag, ds;
	if (record_get_num(rec, F_TILE_MAG, &mag) || record_get_int(rec, F_TILE_EXTENT, &s->extent) ||
	    record_get_int(rec, F_TILE_PX, &s->px) || record_get_int(rec, F_TILE_LEVEL, &s->level) ||
	    record_get_num(rec, F_TILE_DS, &ds) || !(mag > 0) || s->extent < 1 || s->px < 1 || !(ds > 0)) {
		free(s->slide);
		free(s);
		eosin_error("%s: record %" PRIu64 " (id '%s'): a tile needs mag, extent, px, level and ds",
		            src, rec->number, record_id(rec, idb, sizeof idb));
		return NULL;
	}
	s->mag = mag;
	s->dim = v->dim;
	struct h5feat_attrs *a = &s->a;
	a->has_patch_level = 1, a->patch_level = s->level;
	/* CLAM reads patch_size pixels at patch_level: level-0 extent over that level's downsample */
	a->has_patch_size = 1, a->patch_size = llround((double)s->extent / ds);
	a->has_downsample = 1, a->downsample = ds;
	a->has_patch_size_level0 = 1, a->patch_size_level0 = s->extent;
	a->has_target_mag = 1, a->target_mag = mag;
	a->has_level0_mag = 1, a->level0_mag = mag * (double)s->extent / (double)s->px;
	size_t n = strlen(dir) + strlen(slide) + 8;
	char *path = malloc(n);
	if (!path) {
		eosin_error("out of memory");
		return NULL;
	}
	snprintf(path, n, "%s/%s.h5", dir, slide);
	s->next = slides;
	slides = s;   /* listed before create, so that abort_all() cleans up after a failure */
	int r = h5feat_create(&s->out, path, s->dim);
	free(path);
	return r < 0 ? NULL : s;
}

static void export_tile(const struct record *rec, const char *src, long long *ntiles)
{
	char idb[256], slide[512];
	struct vec_view v;
	int r = record_get_vec(rec, field, &v);
	if (r == 1)
		eosin_error("%s: record %" PRIu64 " (id '%s'): tile has no field '%s'", src, rec->number,
		            record_id(rec, idb, sizeof idb), field);
	if (r)
		fail();
	if (v.n != 1) {
		eosin_error("%s: record %" PRIu64 " (id '%s'): field '%s' has %" PRIu32 " rows, want 1",
		            src, rec->number, record_id(rec, idb, sizeof idb), field, v.n);
		fail();
	}
	int64_t x, y;
	if (record_get_strcpy(rec, F_TILE_SLIDE, slide, sizeof slide) < 0 ||
	    record_get_int(rec, F_TILE_X, &x) || record_get_int(rec, F_TILE_Y, &y)) {
		eosin_error("%s: record %" PRIu64 " (id '%s'): a tile needs slide, x and y", src,
		            rec->number, record_id(rec, idb, sizeof idb));
		fail();
	}
	struct slide_out *s = slide_for(rec, src, slide, &v);
	if (!s)
		fail();
	double mag;
	int64_t extent;
	if ((int64_t)v.dim != s->dim || record_get_num(rec, F_TILE_MAG, &mag) || mag != s->mag ||
	    record_get_int(rec, F_TILE_EXTENT, &extent) || extent != s->extent) {
		eosin_error("%s: record %" PRIu64 " (id '%s'): slide '%s' mixes dimensions, "
		            "magnifications or extents (first tile: dim %" PRId64 ", %gx, extent %" PRId64
		            "); one file holds one kind of patch",
		            src, rec->number, record_id(rec, idb, sizeof idb), slide, s->dim, s->mag,
		            s->extent);
		fail();
	}
	if (row_cap < v.dim) {
		row_cap = v.dim;
		if (!(row = realloc(row, row_cap * sizeof *row))) {
			eosin_error("out of memory");
			fail();
		}
	}
	if (vec_to_f32(&v, row) < 0) {
		eosin_error_prefix("%s", src);
		fail();
	}
	if (h5feat_append(&s->out, row, x, y) < 0)
		fail();
	(*ntiles)++;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"h5", required_argument, 0, 'H'},
	    {"field", required_argument, 0, 'f'},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'H': dir = optarg; break;
		case 'f': field = optarg; break;
		default: usage();
		}
	}
	if (!dir)
		usage();
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		errx(EXIT_USAGE, "--h5: '%s' is not a directory", dir);
	static char *stdin_only[] = {"-", NULL};
	char **files = optind < argc ? argv + optind : stdin_only;
	int nfiles = optind < argc ? argc - optind : 1;
	long long ntiles = 0, nother = 0;
	double t0 = prog_now();
	for (int i = 0; i < nfiles; i++) {
		struct stream_reader r;
		struct record rec;
		if (stream_reader_open(&r, files[i]) < 0)
			fail();
		while ((c = stream_read(&r, &rec)) == 1) {
			if (record_is(&rec, "tile"))
				export_tile(&rec, r.name, &ntiles);
			else
				nother++;
		}
		if (c < 0)
			fail();
		stream_reader_release(&r);
	}
	int nslides = 0;
	for (struct slide_out *s = slides; s; s = s->next, nslides++)
		if (h5feat_commit(&s->out, &s->a, s->slide) < 0)
			fail();
	for (struct slide_out *s = slides; s;) {
		struct slide_out *next = s->next;
		h5feat_abort(&s->out);
		free(s->slide);
		free(s);
		s = next;
	}
	free(row);
	warnx("%lld tiles of %d slides written to %s in %.3f s (%lld other records skipped)", ntiles,
	      nslides, dir, prog_now() - t0, nother);
	return 0;
}
