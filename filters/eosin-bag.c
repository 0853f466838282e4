/*
 * eosin-bag: group embedded tiles into bag records for MR-PLIP (quadtrees),
 * PathAlign (slides) and PathFLIP (slides cut into regions). See
 * eosin-bag(1); the grouping, sampling and spilling live in lib/bag/bag.c.
 */
#include "bag/bag.h"
#include "prog.h"
#include "schema_fields.h"
#include "core/stream.h"

#include <getopt.h>
#include <inttypes.h>

#define SYNOPSIS                                                                                   \
	"usage: eosin-bag [--by parent|slide|region] [--max-patches N] [--seed S] "                \
	"[--regions N] [--mag M] [--complete-only] [--require-text] [--unsorted] "                 \
	"[--memory MIB] [--max-open N] [--tmpdir DIR] [--rejects FILE] [file ...]\n"

static void usage(void)
{
	fputs(SYNOPSIS, stderr);
	exit(EXIT_USAGE);
}

struct out {
	struct stream_writer w;
	struct stream_writer rejects;
	int have_rejects;
	int hdr_done;
	struct recb hdr;
};

static int ensure_hdr(struct out *o)
{
	if (o->hdr_done)
		return 0;
	o->hdr_done = 1;
	return recb_write(&o->hdr, &o->w);
}

static int emit_bag(void *ctx, struct recb *bag)
{
	struct out *o = ctx;
	if (ensure_hdr(o) < 0)
		return -1;
	return recb_write(bag, &o->w);
}

static int reject_record(void *ctx, const char *raw, size_t len, uint64_t number, const char *msg)
{
	struct out *o = ctx;
	(void)number;
	if (!o->have_rejects)
		return -1; /* the caller prints msg and stops */
	warnx("%s", msg);
	return stream_write_raw(&o->rejects, raw, len);
}

static void summary(const struct bag_stats *s, enum bag_method m)
{
	fprintf(stderr, "eosin-bag: %" PRIu64 " bags written", s->bags);
	if (m == BAG_PARENT)
		fprintf(stderr, " (%" PRIu64 " complete, %" PRIu64 " incomplete)", s->complete,
		        s->incomplete);
	else
		fprintf(stderr, " (%" PRIu64 " sampled, %" PRIu64 " without text)", s->sampled,
		        s->no_text + s->ambiguous_text);
	fprintf(stderr, ", %" PRIu64 " dropped, %" PRIu64 " rejected, %" PRIu64 " records spilled",
	        s->dropped, s->rejected, s->spilled_records);
	if (s->no_txt_emb)
		fprintf(stderr, ", %" PRIu64 " without txt_emb (some patches lack one)",
		        s->no_txt_emb);
	if (s->no_kw_emb)
		fprintf(stderr, ", %" PRIu64 " without kw_emb (some keywords lack one)",
		        s->no_kw_emb);
	if (s->ambiguous_text)
		fprintf(stderr, ", %" PRIu64 " slides with several docs and no part",
		        s->ambiguous_text);
	if (s->other_mag)
		fprintf(stderr, ", %" PRIu64 " patches of other magnifications skipped",
		        s->other_mag);
	if (s->unused_docs)
		fprintf(stderr, ", %" PRIu64 " docs unused", s->unused_docs);
	fputc('\n', stderr);
}

static const struct option long_opts[] = {
    {"by", required_argument, 0, 'b'},     {"max-patches", required_argument, 0, 'n'},
    {"seed", required_argument, 0, 's'},   {"regions", required_argument, 0, 'R'},
    {"mag", required_argument, 0, 'm'},    {"complete-only", no_argument, 0, 'c'},
    {"require-text", no_argument, 0, 't'}, {"unsorted", no_argument, 0, 'u'},
    {"memory", required_argument, 0, 'M'}, {"max-open", required_argument, 0, 'o'},
    {"tmpdir", required_argument, 0, 'T'}, {"rejects", required_argument, 0, 'r'},
    {"help", no_argument, 0, 'h'},         {0, 0, 0, 0},
};

/* --by, found first so that the other defaults follow the method. */
static enum bag_method parse_method(int argc, char **argv)
{
	enum bag_method method = BAG_PARENT;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1)
		if (c == 'b') {
			if (!strcmp(optarg, "parent"))
				method = BAG_PARENT;
			else if (!strcmp(optarg, "slide"))
				method = BAG_SLIDE;
			else if (!strcmp(optarg, "region"))
				method = BAG_REGION;
			else
				usage();
		}
	optind = 0;
	opterr = 1;
	return method;
}

/* The options into bo (the method's defaults first), checked; returns how
 * many of argv's words they took. */
static int parse_options(int argc, char **argv, enum bag_method method, struct bag_options *bo,
                         const char **rejects)
{
	bag_options_default(bo, method);
	bo->grouped = 1;
	*rejects = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		switch (c) {
		case 'b': break;
		case 'n':
			bo->max_patches = (uint32_t)prog_long("--max-patches", optarg, 1, 1 << 24);
			break;
		case 's': bo->seed = (uint64_t)prog_long("--seed", optarg, 0, LONG_MAX); break;
		case 'R': bo->nregions = (uint32_t)prog_long("--regions", optarg, 1, 65536); break;
		case 'm': bo->mag = prog_double("--mag", optarg, 1e-3, 1e3); break;
		case 'c': bo->complete_only = 1; break;
		case 't': bo->require_text = 1; break;
		case 'u': bo->grouped = 0; break;
		case 'M':
			bo->memory_limit = (size_t)prog_long("--memory", optarg, 0, 1L << 30) << 20;
			break;
		case 'o':
			bo->max_open = (size_t)prog_long("--max-open", optarg, 1, 1L << 30);
			break;
		case 'T': bo->tmpdir = optarg; break;
		case 'r': *rejects = optarg; break;
		default: usage();
		}
	}
	if ((bo->complete_only && method != BAG_PARENT) ||
	    (method == BAG_PARENT && (bo->require_text || bo->mag > 0)))
		usage();
	return optind;
}

/* One input: tiles (and docs, for slide and region bags) to the bagger,
 * everything else straight through, after the hdr. -1 after saying why. */
static int read_input(struct bagger *g, struct out *o, struct progress *pr, const char *path,
                      enum bag_method method)
{
	struct stream_reader r;
	struct record rec;
	int ret, failed = 0;
	if (stream_reader_open(&r, path) < 0) {
		warn_lib();
		return -1;
	}
	while ((ret = stream_read(&r, &rec)) == 1) {
		int mine =
		    record_is(&rec, TILE_KIND) || (method != BAG_PARENT && record_is(&rec, "doc"));
		if (mine) {
			progress_add(pr, 1);
			if (bagger_add_from(g, &rec, r.name) < 0) {
				warn_lib();
				failed = 1;
				break;
			}
			continue;
		}
		if (!record_is(&rec, "hdr") && ensure_hdr(o) < 0)
			die_lib();
		if (stream_write_record(&o->w, &rec) < 0)
			die_lib();
	}
	if (ret < 0) {
		warn_lib();
		failed = 1;
	}
	stream_reader_release(&r);
	return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct out o;
	memset(&o, 0, sizeof o);
	recb_init(&o.hdr);
	recb_hdr(&o.hdr, "eosin-bag", argc, argv); /* before getopt permutes argv */
	struct bag_options bo;
	const char *rejects;
	enum bag_method method = parse_method(argc, argv);
	int used = parse_options(argc, argv, method, &bo, &rejects);
	argc -= used;
	argv += used;
	if (stream_writer_init(&o.w, 1, "<stdout>") < 0)
		die_lib();
	if (rejects) {
		if (stream_writer_open(&o.rejects, rejects) < 0)
			die_lib();
		o.have_rejects = 1;
	}
	struct bag_sink sink = {&o, emit_bag, reject_record};
	struct bagger *g = bagger_new(&bo, &sink);
	if (!g)
		die_lib();
	static char *stdin_only[] = {"-", NULL};
	if (argc == 0) {
		argv = stdin_only;
		argc = 1;
	}
	struct progress pr;
	progress_init(&pr, "tiles", 0);
	int failed = 0;
	for (int i = 0; i < argc && !failed; i++)
		failed = read_input(g, &o, &pr, argv[i], method) < 0;
	progress_done(&pr);
	if (!failed && bagger_finish(g) < 0) {
		warn_lib();
		failed = 1;
	}
	summary(bagger_stats(g), method);
	bagger_free(g);
	if (ensure_hdr(&o) < 0)
		die_lib();
	recb_release(&o.hdr);
	if (o.have_rejects && stream_writer_close(&o.rejects) < 0) {
		warn_lib();
		failed = 1;
	}
	prog_close_output(&o.w);
	return failed;
}
