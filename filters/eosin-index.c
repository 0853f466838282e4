/*
 * eosin-index: build, extend or merge a FAISS index of embedded records,
 * with a metadata sidecar so every hit comes back with its record. See
 * eosin-index(1); the archive format is in lib/search/index.h.
 */
#include "search/index.h"
#include "prog.h"
#include "core/stream.h"
#include "core/vec.h"

#include <getopt.h>
#include <inttypes.h>

#define SYNOPSIS                                                                               \
	"usage: eosin-index --out ARCHIVE [--factory STR] [--metric ip|l2] [--normalize] "     \
	"[--field NAME] [--kind KIND[,KIND...]] [--pool first|mean] [--train-sample N] "      \
	"[--seed S] [--first-id N] [--trained ARCHIVE | --add] [--train-only] "               \
	"[--rejects FILE] [file ...]\n"                                                        \
	"       eosin-index --merge --out ARCHIVE [--first-id N] shard ...\n"

static void usage(void)
{
	fputs(SYNOPSIS, stderr);
	exit(EXIT_USAGE);
}

/* What the records gave: vectors (n, dim) and stored records. */
struct collected {
	float *x;
	int64_t n, cap;
	int dim;
	char **recs;
	size_t *lens;
	char *model, *hash;   /* of the first vector; NULL until then */
};

static const char *field = "joint_emb";
static const char *kinds;  /* --kind: comma-separated kinds to index; NULL: all */
static int pool_mean;
static struct stream_writer rejects;
static int have_rejects;
static uint64_t nrejected, nwithout, nother;

/* Is the record's kind one of --kind's? */
static int wanted_kind(const struct record *rec)
{
	if (!kinds)
		return 1;
	const char *k;
	size_t n;
	if (record_get_str(rec, "k", &k, &n))
		return 0;
	for (const char *p = kinds; *p;) {
		size_t len = strcspn(p, ",");
		if (len == n && !memcmp(p, k, n))
			return 1;
		p += len + (p[len] == ',');
	}
	return 0;
}

static int grow(struct collected *c)
{
	if (c->n < c->cap)
		return 0;
	int64_t cap = c->cap ? c->cap * 2 : 1024;
	float *x = realloc(c->x, (size_t)cap * (size_t)c->dim * sizeof(float));
	char **r = x ? realloc(c->recs, (size_t)cap * sizeof(char *)) : NULL;
	if (r)
		c->recs = r;
	size_t *l = r ? realloc(c->lens, (size_t)cap * sizeof(size_t)) : NULL;
	if (x)
		c->x = x;
	if (!x || !r || !l)
		errx(1, "out of memory after %" PRId64 " vectors", c->n);
	c->lens = l;
	c->cap = cap;
	return 0;
}

static int same_str(const char *a, const char *b, size_t blen)
{
	return strlen(a) == blen && !memcmp(a, b, blen);
}

/* Reject (to --rejects) or fail: 0 when the record went to rejects. */
static int reject(const char *input, const struct record *rec)
{
	if (!have_rejects) {
		warnx("%s: %s", input, eosin_errmsg());
		return -1;
	}
	warnx("%s: %s (to rejects)", input, eosin_errmsg());
	nrejected++;
	if (stream_write_record(&rejects, rec) < 0)
		die_lib();
	return 0;
}

/* Take one record's vector into c. 0 taken or skipped, -1 bad record (and
 * no --rejects). */
static int take(struct collected *c, const char *input, const struct record *rec)
{
	struct vec_view v;
	char idbuf[256];
	int rc = record_get_vec(rec, field, &v);
	if (rc == 1) {
		nwithout++;
		return 0;
	}
	if (rc < 0)
		return reject(input, rec);
	const char *id = record_id(rec, idbuf, sizeof(idbuf));
	if (c->dim == 0)
		c->dim = (int)v.dim;
	if ((int)v.dim != c->dim) {
		eosin_error("record %" PRIu64 " (id '%s'): field '%s' has dimension %u, the index %d",
		            rec->number, id, field, v.dim, c->dim);
		return reject(input, rec);
	}
	if (!c->model) {
		c->model = strndup(v.model ? v.model : "", v.model_len);
		c->hash = strndup(v.hash ? v.hash : "", v.hash_len);
		if (!c->model || !c->hash)
			errx(1, "out of memory");
	} else if (!same_str(c->hash, v.hash ? v.hash : "", v.hash_len)) {
		eosin_error("record %" PRIu64 " (id '%s'): field '%s' comes from model hash '%.*s', "
		            "earlier vectors from '%s': mixed models",
		            rec->number, id, field, (int)v.hash_len, v.hash ? v.hash : "", c->hash);
		return reject(input, rec);
	}
	if (v.n > 1 && !pool_mean) {
		eosin_error("record %" PRIu64 " (id '%s'): field '%s' has %u rows; use --pool",
		            rec->number, id, field, v.n);
		return reject(input, rec);
	}
	float *rows = malloc((size_t)v.n * v.dim * sizeof(float));
	if (!rows)
		errx(1, "out of memory");
	if (vec_to_f32(&v, rows) < 0) {
		free(rows);
		eosin_error_prefix("record %" PRIu64 " (id '%s'): field '%s'", rec->number, id, field);
		return reject(input, rec);
	}
	grow(c);
	float *dst = c->x + c->n * c->dim;
	memcpy(dst, rows, (size_t)c->dim * sizeof(float));
	for (uint32_t r = 1; r < v.n; r++)
		for (int j = 0; j < c->dim; j++)
			dst[j] += rows[(size_t)r * c->dim + j];
	if (v.n > 1)
		for (int j = 0; j < c->dim; j++)
			dst[j] /= (float)v.n;
	free(rows);
	if (archive_strip_record(rec, &c->recs[c->n], &c->lens[c->n]) < 0)
		die_lib();
	c->n++;
	return 0;
}

static int collect(struct collected *c, const char *path)
{
	struct stream_reader r;
	struct record rec;
	int rc;
	if (stream_reader_open(&r, path) < 0) {
		warn_lib();
		return -1;
	}
	while ((rc = stream_read(&r, &rec)) == 1) {
		if (record_is(&rec, "hdr") || record_is(&rec, "index"))
			continue;
		if (!wanted_kind(&rec)) {
			nother++;
			continue;
		}
		if (take(c, r.name, &rec) < 0) {
			rc = -2; /* already reported */
			break;
		}
	}
	if (rc == -1)
		warn_lib();
	stream_reader_release(&r);
	return rc < 0 ? -1 : 0;
}

/* A seeded sample of m rows out of n (partial Fisher-Yates on indices),
 * copied into a new (m, dim) array. */
static float *sample_rows(const struct collected *c, int64_t m, uint64_t seed)
{
	int64_t *perm = malloc((size_t)c->n * sizeof(int64_t));
	float *x = malloc((size_t)m * c->dim * sizeof(float));
	if (!perm || !x)
		errx(1, "out of memory");
	for (int64_t i = 0; i < c->n; i++)
		perm[i] = i;
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
	for (int64_t i = 0; i < m; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		int64_t j = i + (int64_t)(s % (uint64_t)(c->n - i));
		int64_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
		memcpy(x + i * c->dim, c->x + perm[i] * c->dim, (size_t)c->dim * sizeof(float));
	}
	free(perm);
	return x;
}

static int merge_main(const char *out, int64_t first_id, int argc, char **argv)
{
	if (argc < 1)
		usage();
	struct archive all;
	if (archive_read(&all, argv[0]) < 0)
		die_lib();
	if (first_id >= 0)
		all.first_id = first_id;
	for (int i = 1; i < argc; i++) {
		struct archive shard;
		if (archive_read(&shard, argv[i]) < 0)
			die_lib();
		if (archive_merge(&all, &shard, argv[i]) < 0)
			die_lib();
		archive_release(&shard);
	}
	if (archive_write(&all, out) < 0)
		die_lib();
	fprintf(stderr, "eosin-index: %s: %" PRId64 " vectors from %d shards\n", out, all.count,
	        argc);
	archive_release(&all);
	return 0;
}

/* The command line's choices. */
struct index_options {
	const char *out, *factory, *trained, *rejects_path;
	int metric, normalize, merge, add, train_only;
	long train_sample;
	int64_t first_id; /* --first-id; -1: not given */
	uint64_t seed;
};

/* Read the options into o (and the globals field, pool_mean, kinds);
 * the index of the first input. Exits 2 on a usage error. */
static int parse_options(int argc, char **argv, struct index_options *o)
{
	static const struct option opts[] = {
	    {"out", required_argument, 0, 'o'},     {"factory", required_argument, 0, 'f'},
	    {"metric", required_argument, 0, 'm'},  {"normalize", no_argument, 0, 'n'},
	    {"field", required_argument, 0, 'F'},   {"pool", required_argument, 0, 'P'},
	    {"train-sample", required_argument, 0, 'T'}, {"seed", required_argument, 0, 'S'},
	    {"trained", required_argument, 0, 't'}, {"add", no_argument, 0, 'a'},
	    {"train-only", no_argument, 0, 'O'},    {"merge", no_argument, 0, 'M'},
	    {"rejects", required_argument, 0, 'r'}, {"help", no_argument, 0, 'h'},
	    {"kind", required_argument, 0, 'k'},    {"first-id", required_argument, 0, 'I'},
	    {0, 0, 0, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "o:f:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'o': o->out = optarg; break;
		case 'f': o->factory = optarg; break;
		case 'm':
			if (!strcmp(optarg, "ip"))
				o->metric = ARCHIVE_IP;
			else if (!strcmp(optarg, "l2"))
				o->metric = ARCHIVE_L2;
			else
				errx(EXIT_USAGE, "--metric: '%s' is not ip or l2", optarg);
			break;
		case 'n': o->normalize = 1; break;
		case 'F': field = optarg; break;
		case 'P':
			if (!strcmp(optarg, "mean"))
				pool_mean = 1;
			else if (strcmp(optarg, "first"))
				errx(EXIT_USAGE, "--pool: '%s' is not first or mean", optarg);
			break;
		case 'T': o->train_sample = prog_long("--train-sample", optarg, 1, 1L << 40); break;
		case 'S': o->seed = (uint64_t)prog_long("--seed", optarg, 0, 1L << 62); break;
		case 't': o->trained = optarg; break;
		case 'a': o->add = 1; break;
		case 'O': o->train_only = 1; break;
		case 'M': o->merge = 1; break;
		case 'r': o->rejects_path = optarg; break;
		case 'k':
			if (!*optarg || strspn(optarg, "abcdefghijklmnopqrstuvwxyz0123456789_,") !=
			                    strlen(optarg))
				errx(EXIT_USAGE, "--kind: '%s' is not a comma-separated list of kinds",
				     optarg);
			kinds = optarg;
			break;
		case 'I': o->first_id = prog_long("--first-id", optarg, 0, ARCHIVE_MAX_ID); break;
		default: usage();
		}
	}
	if (!o->out || (o->trained && o->add))
		usage();
	if (o->add && o->first_id >= 0)
		errx(EXIT_USAGE, "--first-id: an archive keeps its ids; it cannot be given with --add");
	return optind;
}

/* With --add or --trained, the archive to start from, read into a (1);
 * else 0. Its dimension and model are what the records must match. */
static int base_archive(const struct index_options *o, struct archive *a, struct collected *c)
{
	if (!o->add && !o->trained)
		return 0;
	const char *path = o->add ? o->out : o->trained;
	if (archive_read(a, path) < 0)
		die_lib();
	if (o->trained && a->count > 0)
		errx(1, "'%s' is not empty (%" PRId64 " vectors): --trained wants an archive "
		     "made with --train-only", o->trained, a->count);
	if (strcmp(a->field, field))
		errx(1, "'%s' indexes field '%s', not '%s'", path, a->field, field);
	c->dim = a->dim;
	c->model = strdup(a->model);
	c->hash = strdup(a->hash);
	return 1;
}

/* Train a on a sample of the collected vectors when its factory needs it. */
static void train_if_needed(const struct index_options *o, struct archive *a,
                            const struct collected *c)
{
	if (!archive_needs_training(a))
		return;
	int64_t m = c->n < o->train_sample ? c->n : o->train_sample;
	int64_t need = archive_min_training(a);
	if (m < need)
		errx(1, "index '%s' needs at least %" PRId64 " training vectors, got %" PRId64 "%s",
		     o->factory, need, m, m < c->n ? " (raise --train-sample)" : "");
	float *xs = sample_rows(c, m, o->seed);
	if (archive_train(a, m, xs) < 0)
		die_lib();
	free(xs);
}

/* The one line on standard error: what the archive holds, what was
 * skipped. */
static void report(const char *out, const struct archive *a)
{
	fprintf(stderr, "eosin-index: %s: %" PRId64 " vectors of dimension %d (%s, %s%s)",
	        out, a->count, a->dim, a->factory, a->metric == ARCHIVE_IP ? "ip" : "l2",
	        a->normalize ? ", normalised" : "");
	if (a->first_id)
		fprintf(stderr, "; ids from %" PRId64, a->first_id);
	if (nother)
		fprintf(stderr, "; %" PRIu64 " records of other kinds skipped", nother);
	if (nwithout)
		fprintf(stderr, "; %" PRIu64 " records without '%s' skipped", nwithout, field);
	if (nrejected)
		fprintf(stderr, "; %" PRIu64 " rejected", nrejected);
	fputc('\n', stderr);
}

static void collected_release(struct collected *c)
{
	for (int64_t i = 0; i < c->n; i++)
		free(c->recs[i]);
	free(c->recs);
	free(c->lens);
	free(c->x);
	free(c->model);
	free(c->hash);
}

int main(int argc, char **argv)
{
	struct index_options o = {.factory = "Flat", .metric = ARCHIVE_IP, .train_sample = 100000,
	                          .first_id = -1, .seed = 1};
	int first = parse_options(argc, argv, &o);
	argc -= first;
	argv += first;
	if (o.merge)
		return merge_main(o.out, o.first_id, argc, argv);

	if (o.rejects_path) {
		if (stream_writer_open(&rejects, o.rejects_path) < 0)
			die_lib();
		have_rejects = 1;
	}
	struct collected c = {0};
	struct archive a;
	int have_archive = base_archive(&o, &a, &c);
	static char *stdin_only[] = {"-", NULL};
	if (argc == 0) {
		argv = stdin_only;
		argc = 1;
	}
	int failed = 0;
	for (int i = 0; i < argc && !failed; i++)
		failed = collect(&c, argv[i]) < 0;
	if (have_rejects && stream_writer_close(&rejects) < 0)
		die_lib();
	if (failed)
		errx(1, "no archive written");
	if (!have_archive) {
		if (c.dim == 0)
			errx(1, "no record has field '%s': nothing to index", field);
		if (archive_create(&a, o.factory, c.dim, o.metric, o.normalize, field, c.model,
		                   c.hash) < 0)
			die_lib();
	}
	train_if_needed(&o, &a, &c);
	if (o.first_id >= 0)
		a.first_id = o.first_id;
	if (!o.train_only && c.n > 0 && archive_add(&a, c.n, c.x, c.recs, c.lens) < 0)
		die_lib();
	if (archive_write(&a, o.out) < 0)
		die_lib();
	report(o.out, &a);
	archive_release(&a);
	collected_release(&c);
	return 0;
}
