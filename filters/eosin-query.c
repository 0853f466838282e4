/*
 * eosin-query: answer queries against embedded records: nearest neighbours
 * in an eosin archive (hit records), zero-shot classification with class
 * prompts (and its metrics), image-text retrieval evaluation, and
 * text-to-tile heatmaps over a slide. See eosin-query(1).
 *
 * Queries are records that carry an embedding (by default joint_emb, made
 * from text by eosin-encode --lines and eosin-align --apply); this program
 * never encodes text itself.
 */
#include "search/heatmap.h"
#include "search/index.h"
#include "search/metrics.h"
#include "search/textmetrics.h"
#include "prog.h"
#include "core/stream.h"
#include "core/vec.h"

#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>

#define SYNOPSIS                                                                               \
	"usage: eosin-query --index ARCHIVE [-k K] [--nprobe N] [--ef N] [--field NAME] "       \
	"[--stats] [file ...]\n"                                                               \
	"       eosin-query --zero-shot PROMPTS [--logit-scale S] [--slide-pool topk:K] "      \
	"[--metrics FILE] [--field NAME] [file ...]\n"                                         \
	"       eosin-query --expand-classes CLASSES\n"                                        \
	"       eosin-query --eval-retrieval [--img-field NAME] [--txt-field NAME] "           \
	"[--metrics FILE] [file ...]\n"                                                        \
	"       eosin-query --heatmap OUT.png --query FILE [--slide SLIDE] [--size PX] "       \
	"[--alpha A] [--field NAME] [file ...]\n"                                         \
	"       eosin-query --text-metrics REFERENCES [--metrics FILE] [file ...]\n"

#define DEFAULT_NPROBE 16
#define DEFAULT_EF 64

static void usage(void)
{
	fputs(SYNOPSIS, stderr);
	exit(EXIT_USAGE);
}

/* Options and state shared by the modes. */
static const char *field = "joint_emb";
static int field_given;
static const char *img_field = "joint_emb", *txt_field = "joint_txt_emb";
static struct stream_writer out;
static int argc_all;
static char **argv_all;

/* ---- embeddings ---------------------------------------------------- */

/* Results held back (search batches) go out before an error exits. */
static void (*flush_pending)(void);

static void bad_record(const char *input)
{
	if (flush_pending)
		flush_pending();
	warnx("%s: %s", input, eosin_errmsg());
	prog_close_output(&out);
	exit(1);
}

static void pass(const struct record *rec)
{
	if (stream_write_record(&out, rec) < 0)
		die_lib();
}

/* Hand every record of `path` ("-": standard input) to take(); a stream
 * that cannot be read on is bad input, after every record before it. */
typedef void (*take_fn)(const char *input, const struct record *rec);

static void each_record(const char *path, take_fn take)
{
	struct stream_reader r;
	struct record rec;
	int rc;
	if (stream_reader_open(&r, path) < 0)
		die_lib();
	while ((rc = stream_read(&r, &rec)) == 1)
		take(r.name, &rec);
	if (rc < 0)
		bad_record(r.name);
	stream_reader_release(&r);
}

/* The record's vector as float32 (mean of its rows), into a malloc'd *x,
 * from field `field`; without --field, a record lacking it falls back to
 * the first of joint_emb, joint_txt_emb, txt_emb, img_emb that it has, with
 * a note the first time (a text query from eosin-align --apply has only
 * joint_emb, whichever joint field an archive holds). 1: no embedding.
 * *dim is the dimension wanted (`what` names whose), or 0 to take the
 * record's. A bad vector or another dimension is bad input: exit 1. */
static int take_vector(const char *input, const struct record *rec, int *dim, const char *what,
                       float **x, struct vec_view *view)
{
	static const char *const alt[] = {"joint_emb", "joint_txt_emb", "txt_emb", "img_emb"};
	static int noted;
	struct vec_view v;
	int rc = record_get_vec(rec, field, &v);
	const char *used = field;
	for (size_t i = 0; rc == 1 && !field_given && i < sizeof(alt) / sizeof(alt[0]); i++) {
		if (strcmp(alt[i], field)) {
			rc = record_get_vec(rec, alt[i], &v);
			used = alt[i];
		}
	}
	if (rc == 0 && used != field && !noted++)
		warnx("%s: record %" PRIu64 " has no '%s'; using '%s' (give --field to choose)", input,
		      rec->number, field, used);
	if (rc < 0)
		bad_record(input);
	if (rc == 1)
		return 1;
	char idbuf[256];
	if (*dim && (int)v.dim != *dim) {
		eosin_error("record %" PRIu64 " (id '%s'): field '%s' has dimension %u, %s %d",
		            rec->number, record_id(rec, idbuf, sizeof(idbuf)), used, v.dim, what, *dim);
		bad_record(input);
	}
	float *rows = malloc((size_t)v.n * v.dim * sizeof(float));
	if (!rows)
		errx(1, "out of memory");
	if (vec_to_f32(&v, rows) < 0) {
		eosin_error_prefix("record %" PRIu64 " (id '%s'): field '%s'", rec->number,
		                   record_id(rec, idbuf, sizeof(idbuf)), used);
		bad_record(input);
	}
	for (uint32_t r = 1; r < v.n; r++)
		for (uint32_t j = 0; j < v.dim; j++)
			rows[j] += rows[(size_t)r * v.dim + j];
	for (uint32_t j = 0; v.n > 1 && j < v.dim; j++)
		rows[j] /= (float)v.n;
	*x = rows;
	*dim = (int)v.dim;
	if (view)
		*view = v;
	return 0;
}

static void write_hdr(const char *model, const char *hash)
{
	struct recb b;
	recb_init(&b);
	recb_hdr(&b, "eosin-query", argc_all, argv_all);
	if (model && *model)
		recb_str(&b, "model", model);
	if (hash && *hash)
		recb_str(&b, "hash", hash);
	if (recb_write(&b, &out) < 0)
		die_lib();
	recb_release(&b);
}

static float dot(const float *a, const float *b, int n)
{
	float s = 0;
	for (int i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

/* ---- search ---------------------------------------------------------- */

struct query {
	char *id, *caption;
};

static struct archive arch;
static int topk = 10;
static float *batch_x;
static struct query *batch_q;
static int batch_n, batch_cap = 16384; /* queries per FAISS search call */
static double search_seconds;           /* --stats: time inside FAISS search */
static uint64_t nsearched;

/* The "id" of a stored record (the msgpack map p[0..n)), pointing into p. */
static int stored_id(const char *p, size_t n, const char **s, size_t *len)
{
	static msgpack_unpacked u;
	static int init;
	if (!init++)
		msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, p, n, NULL) != MSGPACK_UNPACK_SUCCESS)
		return -1;
	const msgpack_object *id = mpo_get(&u.data, "id");
	if (!id || id->type != MSGPACK_OBJECT_STR)
		return -1;
	*s = id->via.str.ptr;
	*len = id->via.str.size;
	return 0;
}

static void flush_queries(void)
{
	if (batch_n == 0)
		return;
	/* (batch_cap, k) each, kept from batch to batch */
	static float *scores;
	static int64_t *ids;
	if (!scores) {
		scores = malloc((size_t)batch_cap * topk * sizeof(float));
		ids = malloc((size_t)batch_cap * topk * sizeof(int64_t));
		if (!scores || !ids)
			errx(1, "out of memory");
	}
	double t0 = prog_now();
	if (archive_search(&arch, batch_n, batch_x, topk, scores, ids) < 0)
		die_lib();
	search_seconds += prog_now() - t0;
	nsearched += (uint64_t)batch_n;
	struct recb b;
	recb_init(&b);
	for (int q = 0; q < batch_n; q++) {
		int rank = 0;
		for (int r = 0; r < topk; r++) {
			int64_t id = ids[(size_t)q * topk + r];
			if (id < 0)
				continue;
			const char *p;
			size_t n;
			if (archive_record(&arch, id, &p, &n) < 0)
				die_lib();
			char hid[300];
			snprintf(hid, sizeof(hid), "%s#%d", batch_q[q].id, ++rank);
			recb_begin(&b, "hit", 1);
			recb_str(&b, "id", hid);
			recb_str(&b, "query", batch_q[q].id);
			if (batch_q[q].caption)
				recb_str(&b, "query_caption", batch_q[q].caption);
			recb_int(&b, "rank", rank);
			recb_f64(&b, "score", scores[(size_t)q * topk + r]);
			recb_int(&b, "index_id", id);
			const char *tid;
			size_t tn;
			if (stored_id(p, n, &tid, &tn) == 0)
				recb_strn(&b, "target", tid, tn);
			recb_key(&b, "record");
			msgpack_sbuffer_write(&b.body, p, n);
			if (recb_write(&b, &out) < 0)
				die_lib();
		}
		free(batch_q[q].id);
		free(batch_q[q].caption);
	}
	recb_release(&b);
	batch_n = 0;
}

/* A query record goes into the batch; any other record, after the batch. */
static void search_take(const char *input, const struct record *rec)
{
	float *x;
	int dim = arch.dim;
	struct vec_view v;
	if (record_is(rec, "hdr") || take_vector(input, rec, &dim, "the index", &x, &v)) {
		flush_queries();
		pass(rec);
		return;
	}
	char idbuf[256];
	if (v.hash_len && *arch.hash &&
	    (strlen(arch.hash) != v.hash_len || memcmp(arch.hash, v.hash, v.hash_len))) {
		eosin_error("record %" PRIu64 " (id '%s'): query embedding from model hash "
		            "'%.*s', the index from '%s'",
		            rec->number, record_id(rec, idbuf, sizeof(idbuf)), (int)v.hash_len, v.hash,
		            arch.hash);
		bad_record(input);
	}
	memcpy(batch_x + (size_t)batch_n * arch.dim, x, (size_t)arch.dim * sizeof(float));
	free(x);
	struct query *q = &batch_q[batch_n++];
	const char *s;
	size_t n;
	if (record_get_str(rec, "id", &s, &n) == 0)
		q->id = strndup(s, n);
	else if (asprintf(&q->id, "%" PRIu64, rec->number) < 0)
		q->id = NULL;
	q->caption = record_get_str(rec, "caption", &s, &n) == 0 ? strndup(s, n) : NULL;
	if (!q->id)
		errx(1, "out of memory");
	if (batch_n == batch_cap)
		flush_queries();
}

/* ---- zero-shot ---------------------------------------------------------- */

static char **class_label;      /* nclass labels, first-appearance order */
static float *class_emb;        /* (nclass, dim), unit rows */
static int nclass, zs_dim;
static double logit_scale = 100;
static int pool_k;              /* --slide-pool topk:K, 0 if none */

/* Evaluation: truth, prediction and probabilities of labelled records. */
struct evalset {
	int *y, *pred;
	double *prob;               /* (n, nclass) */
	size_t n, cap;
};
static struct evalset patch_eval, slide_eval;
static uint64_t n_unknown_label;

/* Slide pooling: each slide's patch similarities. */
struct slide_acc {
	char *slide;
	char *label;
	float *sim;                 /* (n, nclass) cosine similarities */
	size_t n, cap;
};
static struct slide_acc *slides;
static size_t nslides, slides_cap;

static int class_index(const char *s, size_t n)
{
	for (int c = 0; c < nclass; c++)
		if (strlen(class_label[c]) == n && !memcmp(class_label[c], s, n))
			return c;
	return -1;
}

static int *prompt_count; /* prompts per class */

static void prompt_take(const char *input, const struct record *rec)
{
	const char *lab;
	size_t ln;
	float *x;
	if (record_is(rec, "hdr") || record_get_str(rec, "label", &lab, &ln) != 0 ||
	    take_vector(input, rec, &zs_dim, "earlier prompts", &x, NULL))
		return;
	vec_normalize_rows(x, 1, zs_dim);
	int c = class_index(lab, ln);
	if (c < 0) {
		c = nclass++;
		class_label = realloc(class_label, (size_t)nclass * sizeof(char *));
		class_emb = realloc(class_emb, (size_t)nclass * zs_dim * sizeof(float));
		prompt_count = realloc(prompt_count, (size_t)nclass * sizeof(int));
		if (!class_label || !class_emb || !prompt_count)
			errx(1, "out of memory");
		class_label[c] = strndup(lab, ln);
		memset(class_emb + (size_t)c * zs_dim, 0, (size_t)zs_dim * sizeof(float));
		prompt_count[c] = 0;
	}
	for (int j = 0; j < zs_dim; j++)
		class_emb[(size_t)c * zs_dim + j] += x[j];
	prompt_count[c]++;
	free(x);
}

static void load_prompts(const char *path)
{
	each_record(path, prompt_take);
	if (nclass < 2)
		errx(1, "%s: %d class%s with a label and an embedding; zero-shot needs at least 2",
		     path, nclass, nclass == 1 ? "" : "es");
	/* Prompt ensembling: the mean of unit prompt vectors, renormalised. */
	vec_normalize_rows(class_emb, nclass, zs_dim);
	fprintf(stderr, "eosin-query: %d classes from %s:", nclass, path);
	for (int c = 0; c < nclass; c++)
		fprintf(stderr, " %s (%d prompt%s)", class_label[c], prompt_count[c],
		        prompt_count[c] > 1 ? "s" : "");
	fputc('\n', stderr);
	free(prompt_count);
}

/* Softmax over classes of logit_scale * sim. */
static void class_probs(const float *sim, double *prob)
{
	double mx = -INFINITY, sum = 0;
	for (int c = 0; c < nclass; c++)
		if (logit_scale * sim[c] > mx)
			mx = logit_scale * sim[c];
	for (int c = 0; c < nclass; c++)
		sum += prob[c] = exp(logit_scale * sim[c] - mx);
	for (int c = 0; c < nclass; c++)
		prob[c] /= sum;
}

static int argmax(const double *p, int n)
{
	int best = 0;
	for (int i = 1; i < n; i++)
		if (p[i] > p[best])
			best = i;
	return best;
}

static void eval_add(struct evalset *e, int y, const double *prob)
{
	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 256;
		e->y = realloc(e->y, e->cap * sizeof(int));
		e->pred = realloc(e->pred, e->cap * sizeof(int));
		e->prob = realloc(e->prob, e->cap * nclass * sizeof(double));
		if (!e->y || !e->pred || !e->prob)
			errx(1, "out of memory");
	}
	e->y[e->n] = y;
	e->pred[e->n] = argmax(prob, nclass);
	memcpy(e->prob + e->n * nclass, prob, (size_t)nclass * sizeof(double));
	e->n++;
}

static struct slide_acc *slide_for(const char *s, size_t n)
{
	for (size_t i = nslides; i-- > 0;)
		if (strlen(slides[i].slide) == n && !memcmp(slides[i].slide, s, n))
			return &slides[i];
	if (nslides == slides_cap) {
		slides_cap = slides_cap ? 2 * slides_cap : 16;
		slides = realloc(slides, slides_cap * sizeof(*slides));
		if (!slides)
			errx(1, "out of memory");
	}
	struct slide_acc *a = &slides[nslides++];
	memset(a, 0, sizeof(*a));
	a->slide = strndup(s, n);
	return a;
}

static void pack_scores(struct recb *b, const double *prob)
{
	recb_key(b, "zs_scores");
	msgpack_pack_map(&b->pk, (size_t)nclass);
	for (int c = 0; c < nclass; c++) {
		size_t n = strlen(class_label[c]);
		msgpack_pack_str(&b->pk, n);
		msgpack_pack_str_body(&b->pk, class_label[c], n);
		msgpack_pack_double(&b->pk, prob[c]);
	}
}

/* A record with an embedding gets zs_label and zs_scores and is counted
 * for the metrics and its slide; any other record passes. */
static void zero_shot_take(const char *input, const struct record *rec)
{
	static const char *const skip[] = {"zs_label", "zs_scores", NULL};
	static struct recb b;
	static float *sim;
	static double *prob;
	if (!sim) {
		recb_init(&b);
		sim = malloc((size_t)nclass * sizeof(float));
		prob = malloc((size_t)nclass * sizeof(double));
		if (!sim || !prob)
			errx(1, "out of memory");
	}
	float *x;
	int dim = zs_dim;
	if (record_is(rec, "hdr") || take_vector(input, rec, &dim, "the prompts", &x, NULL)) {
		pass(rec);
		return;
	}
	vec_normalize_rows(x, 1, zs_dim);
	for (int c = 0; c < nclass; c++)
		sim[c] = dot(x, class_emb + (size_t)c * zs_dim, zs_dim);
	free(x);
	class_probs(sim, prob);
	int pred = argmax(prob, nclass);
	char kind[64];
	snprintf(kind, sizeof(kind), "%.*s", (int)rec->kind_len, rec->kind);
	recb_begin(&b, kind, (int)rec->version);
	recb_copy_fields(&b, rec, skip);
	recb_str(&b, "zs_label", class_label[pred]);
	pack_scores(&b, prob);
	if (recb_write(&b, &out) < 0)
		die_lib();
	const char *lab = NULL, *sl;
	size_t ln = 0, sn;
	if (record_get_str(rec, "label", &lab, &ln) == 0) {
		int y = class_index(lab, ln);
		if (y < 0)
			n_unknown_label++;
		else
			eval_add(&patch_eval, y, prob);
	}
	if (pool_k > 0 && record_get_str(rec, "slide", &sl, &sn) == 0) {
		struct slide_acc *a = slide_for(sl, sn);
		if (lab && !a->label)
			a->label = strndup(lab, ln);
		if (a->n == a->cap) {
			a->cap = a->cap ? 2 * a->cap : 64;
			a->sim = realloc(a->sim, a->cap * nclass * sizeof(float));
			if (!a->sim)
				errx(1, "out of memory");
		}
		memcpy(a->sim + a->n * nclass, sim, (size_t)nclass * sizeof(float));
		a->n++;
	}
}

static int by_float_desc(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x < y) - (x > y);
}

/* Per slide: for each class the mean of the K highest patch similarities,
 * then softmax; one zeroshot record each. */
static void pool_slides(void)
{
	struct recb b;
	recb_init(&b);
	float *col = NULL, *pooled = malloc((size_t)nclass * sizeof(float));
	double *prob = malloc((size_t)nclass * sizeof(double));
	char pool[32];
	snprintf(pool, sizeof(pool), "topk:%d", pool_k);
	for (size_t s = 0; s < nslides; s++) {
		struct slide_acc *a = &slides[s];
		col = realloc(col, a->n * sizeof(float));
		if (!col || !pooled || !prob)
			errx(1, "out of memory");
		size_t k = a->n < (size_t)pool_k ? a->n : (size_t)pool_k;
		for (int c = 0; c < nclass; c++) {
			for (size_t i = 0; i < a->n; i++)
				col[i] = a->sim[i * nclass + c];
			qsort(col, a->n, sizeof(float), by_float_desc);
			double sum = 0;
			for (size_t i = 0; i < k; i++)
				sum += col[i];
			pooled[c] = (float)(sum / (double)k);
		}
		class_probs(pooled, prob);
		int pred = argmax(prob, nclass);
		recb_begin(&b, "zeroshot", 1);
		recb_str(&b, "id", a->slide);
		recb_str(&b, "slide", a->slide);
		recb_int(&b, "n", (int64_t)a->n);
		recb_str(&b, "pool", pool);
		recb_str(&b, "zs_label", class_label[pred]);
		pack_scores(&b, prob);
		if (a->label)
			recb_str(&b, "label", a->label);
		if (recb_write(&b, &out) < 0)
			die_lib();
		if (a->label) {
			int y = class_index(a->label, strlen(a->label));
			if (y >= 0)
				eval_add(&slide_eval, y, prob);
		}
	}
	recb_release(&b);
	free(col);
	free(pooled);
	free(prob);
}

static json_t *jnum(double v)
{
	return isnan(v) ? json_null() : json_real(v);
}

static json_t *eval_json(const struct evalset *e, const char *level)
{
	double *auc = malloc((size_t)nclass * sizeof(double));
	if (!auc)
		errx(1, "out of memory");
	double acc = metric_accuracy(e->y, e->pred, e->n);
	double bacc = metric_balanced_accuracy(e->y, e->pred, e->n, nclass);
	double wf1 = metric_weighted_f1(e->y, e->pred, e->n, nclass);
	double mauc = metric_ovr_auc(e->prob, e->y, e->n, nclass, auc);
	json_t *j = json_object(), *ja = json_object();
	json_object_set_new(j, "n", json_integer((json_int_t)e->n));
	json_object_set_new(j, "accuracy", jnum(acc));
	json_object_set_new(j, "balanced_accuracy", jnum(bacc));
	json_object_set_new(j, "weighted_f1", jnum(wf1));
	json_object_set_new(j, "auc_macro", jnum(mauc));
	for (int c = 0; c < nclass; c++)
		json_object_set_new(ja, class_label[c], jnum(auc[c]));
	json_object_set_new(j, "auc", ja);
	fprintf(stderr,
	        "eosin-query: %s: n %zu  accuracy %.4f  balanced accuracy %.4f  weighted F1 %.4f"
	        "  AUC (macro, one-vs-rest) %.4f\n",
	        level, e->n, acc, bacc, wf1, mauc);
	free(auc);
	return j;
}

static void write_metrics(json_t *j, const char *path)
{
	if (path && json_dump_file(j, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(6)))
		errx(1, "cannot write metrics to '%s'", path);
	json_decref(j);
}

/* ---- class prompts ------------------------------------------------------ */

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

/* Print "LABEL<TAB>PROMPT" for every class, name and template. */
static int expand_classes(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		err(1, "cannot open '%s'", path);
	char *line = NULL;
	size_t cap = 0;
	char **tmpl = NULL, **cls = NULL;
	size_t ntmpl = 0, ncls = 0;
	long lineno = 0;
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		char *s = trim(line);
		if (!*s || *s == '#')
			continue;
		char *colon = strchr(s, ':');
		if (!colon)
			errx(1, "%s:%ld: want 'label: name; name ...' or 'template: text {}'", path,
			     lineno);
		*colon = 0;
		char *key = trim(s), *val = trim(colon + 1);
		if (!*key)
			errx(1, "%s:%ld: empty label", path, lineno);
		if (strchr(key, '\t'))
			errx(1, "%s:%ld: label '%s' has a tab", path, lineno, key);
		if (!strcmp(key, "template")) {
			if (!strstr(val, "{}"))
				errx(1, "%s:%ld: template '%s' has no {}", path, lineno, val);
			tmpl = realloc(tmpl, (ntmpl + 1) * sizeof(char *));
			tmpl[ntmpl++] = strdup(val);
		} else {
			/* "label: names" kept as "label\0names" */
			size_t kl = strlen(key), vl = strlen(val);
			cls = realloc(cls, (ncls + 1) * sizeof(char *));
			char *p = malloc(kl + vl + 2);
			if (!p || !cls)
				errx(1, "out of memory");
			memcpy(p, key, kl + 1);
			memcpy(p + kl + 1, val, vl + 1);
			cls[ncls++] = p;
		}
	}
	free(line);
	fclose(f);
	if (ncls == 0)
		errx(1, "%s: no classes", path);
	static char plain[] = "{}";
	static char *plain_list[] = {plain};
	if (ntmpl == 0) {
		tmpl = plain_list;
		ntmpl = 1;
	}
	for (size_t c = 0; c < ncls; c++) {
		char *label = cls[c], *names = cls[c] + strlen(cls[c]) + 1;
		if (!*names)
			names = label;
		char *copy = strdup(names), *save = NULL;
		for (char *tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
			char *name = trim(tok);
			if (!*name)
				continue;
			for (size_t t = 0; t < ntmpl; t++) {
				char *at = strstr(tmpl[t], "{}");
				printf("%s\t%.*s%s%s\n", label, (int)(at - tmpl[t]), tmpl[t], name, at + 2);
			}
		}
		free(copy);
		free(cls[c]);
	}
	free(cls);
	if (tmpl != plain_list) {
		for (size_t t = 0; t < ntmpl; t++)
			free(tmpl[t]);
		free(tmpl);
	}
	if (fflush(stdout) == EOF || ferror(stdout) || fclose(stdout) == EOF)
		err(1, "write error on <stdout>");
	return 0;
}

/* ---- retrieval evaluation ---------------------------------------------- */

struct pairs {
	float *img;      /* (nimg_rows_total, dim): unit rows */
	size_t *img_off; /* rows of pair i: img_off[i] .. img_off[i+1] */
	float *txt;      /* (n, dim): unit rows */
	size_t n, cap, rows, rows_cap;
	int dim;
};

static void pairs_add(struct pairs *p, const char *input, const struct record *rec)
{
	struct vec_view vi, vt;
	int ri = record_get_vec(rec, img_field, &vi), rt = record_get_vec(rec, txt_field, &vt);
	if (ri < 0 || rt < 0)
		bad_record(input);
	if (ri || rt)
		return;
	char idbuf[256];
	if (p->dim == 0)
		p->dim = (int)vi.dim;
	if ((int)vi.dim != p->dim || (int)vt.dim != p->dim) {
		eosin_error("record %" PRIu64 " (id '%s'): '%s' has dimension %u and '%s' %u, "
		            "want %d",
		            rec->number, record_id(rec, idbuf, sizeof(idbuf)), img_field, vi.dim,
		            txt_field, vt.dim, p->dim);
		bad_record(input);
	}
	if (p->n + 1 >= p->cap) {
		p->cap = p->cap ? 2 * p->cap : 256;
		p->txt = realloc(p->txt, p->cap * p->dim * sizeof(float));
		p->img_off = realloc(p->img_off, (p->cap + 1) * sizeof(size_t));
		if (!p->txt || !p->img_off)
			errx(1, "out of memory");
		p->img_off[0] = 0;
	}
	while (p->rows + vi.n > p->rows_cap) {
		p->rows_cap = p->rows_cap ? 2 * p->rows_cap : 256;
		p->img = realloc(p->img, p->rows_cap * p->dim * sizeof(float));
		if (!p->img)
			errx(1, "out of memory");
	}
	float *t = malloc((size_t)vt.n * vt.dim * sizeof(float));
	if (!t)
		errx(1, "out of memory");
	if (vec_to_f32(&vi, p->img + p->rows * p->dim) < 0 || vec_to_f32(&vt, t) < 0) {
		eosin_error_prefix("record %" PRIu64 " (id '%s')", rec->number,
		                   record_id(rec, idbuf, sizeof(idbuf)));
		bad_record(input);
	}
	vec_normalize_rows(p->img + p->rows * p->dim, vi.n, p->dim);
	/* a text side with several rows (a caption per patch) counts as their mean */
	for (uint32_t r = 1; r < vt.n; r++)
		for (int j = 0; j < p->dim; j++)
			t[j] += t[(size_t)r * p->dim + j];
	memcpy(p->txt + p->n * p->dim, t, (size_t)p->dim * sizeof(float));
	vec_normalize_rows(p->txt + p->n * p->dim, 1, p->dim);
	free(t);
	p->rows += vi.n;
	p->n++;
	p->img_off[p->n] = p->rows;
}

static void eval_retrieval(struct pairs *p, const char *metrics_path)
{
	size_t n = p->n;
	if (n < 2)
		errx(1, "%zu records carry both '%s' and '%s': retrieval needs at least 2", n,
		     img_field, txt_field);
	/* sim[i][j]: image i against text j, the best of image i's rows. */
	float *sim = malloc(n * n * sizeof(float)), *simt = malloc(n * n * sizeof(float));
	int *gt = malloc(n * sizeof(int));
	if (!sim || !simt || !gt)
		errx(1, "out of memory");
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			float best = -INFINITY;
			for (size_t r = p->img_off[i]; r < p->img_off[i + 1]; r++) {
				float s = dot(p->img + r * p->dim, p->txt + j * p->dim, p->dim);
				if (s > best)
					best = s;
			}
			sim[i * n + j] = best;
			simt[j * n + i] = best;
		}
	for (size_t i = 0; i < n; i++)
		gt[i] = (int)i;
	static const int ks[] = {1, 5, 10};
	json_t *j = json_object(), *i2t = json_object(), *t2i = json_object();
	fprintf(stderr, "eosin-query: retrieval over %zu pairs (%s vs %s):", n, img_field, txt_field);
	for (int q = 0; q < 3; q++) {
		char key[8];
		snprintf(key, sizeof(key), "R@%d", ks[q]);
		double a = metric_recall_at_k(sim, gt, n, n, ks[q]);
		double b = metric_recall_at_k(simt, gt, n, n, ks[q]);
		json_object_set_new(i2t, key, json_real(a));
		json_object_set_new(t2i, key, json_real(b));
		fprintf(stderr, " i2t %s %.4f, t2i %s %.4f;", key, a, key, b);
	}
	fputc('\n', stderr);
	json_object_set_new(j, "n", json_integer((json_int_t)n));
	json_object_set_new(j, "image_to_text", i2t);
	json_object_set_new(j, "text_to_image", t2i);
	write_metrics(j, metrics_path);
	free(sim);
	free(simt);
	free(gt);
}

/* ---- heatmap ------------------------------------------------------------- */

struct heat_state {
	float *query;
	int dim;
	struct heat_tile *tiles;
	size_t n, cap;
	char *slide_id, *slide_path;
	char *caption; /* the query's, for the colour bar */
	uint64_t other_slides, no_position;
};

static void heat_take(struct heat_state *h, const char *input, const struct record *rec)
{
	float *x;
	int dim = h->dim;
	if (take_vector(input, rec, &dim, "the query", &x, NULL))
		return;
	const char *s;
	size_t n;
	int64_t xx, yy;
	double extent;
	if (record_get_int(rec, "x", &xx) || record_get_int(rec, "y", &yy) ||
	    record_get_num(rec, "extent", &extent)) {
		h->no_position++;
		free(x);
		return;
	}
	if (record_get_str(rec, "slide", &s, &n) == 0) {
		if (!h->slide_id)
			h->slide_id = strndup(s, n);
		else if (strlen(h->slide_id) != n || memcmp(h->slide_id, s, n)) {
			h->other_slides++;
			free(x);
			return;
		}
	}
	if (!h->slide_path && record_get_str(rec, "path", &s, &n) == 0)
		h->slide_path = strndup(s, n);
	vec_normalize_rows(x, 1, h->dim);
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 256;
		h->tiles = realloc(h->tiles, h->cap * sizeof(*h->tiles));
		if (!h->tiles)
			errx(1, "out of memory");
	}
	h->tiles[h->n++] = (struct heat_tile){(double)xx, (double)yy, extent,
	                                      dot(x, h->query, h->dim)};
	free(x);
}

static struct pairs retrieval_pairs;
static struct heat_state heat;

static void retrieval_take(const char *input, const struct record *rec)
{
	if (!record_is(rec, "hdr"))
		pairs_add(&retrieval_pairs, input, rec);
	pass(rec);
}

static void heat_tile_take(const char *input, const struct record *rec)
{
	if (!record_is(rec, "hdr"))
		heat_take(&heat, input, rec);
	pass(rec);
}

/* The heatmap's query: the first record with an embedding. */
static void heat_query_take(const char *input, const struct record *rec)
{
	if (heat.query || record_is(rec, "hdr"))
		return;
	if (take_vector(input, rec, &heat.dim, NULL, &heat.query, NULL) == 0) {
		vec_normalize_rows(heat.query, 1, heat.dim);
		heat.caption = record_get_strdup(rec, "caption");
	}
}

/* ---- generated text against references ---------------------------------- */

/* The reference texts by id, sorted for bsearch. */
struct reference {
	char *id, *text;
	size_t len;
};
static struct reference *refs;
static size_t nrefs, refs_cap;
static struct text_corpus corpus;
static uint64_t n_unreferenced;

static int by_reference_id(const void *a, const void *b)
{
	return strcmp(((const struct reference *)a)->id, ((const struct reference *)b)->id);
}

static void reference_take(const char *input, const struct record *rec)
{
	if (!record_is(rec, "text"))
		return;
	const char *s;
	size_t n;
	char *id = record_get_strdup(rec, "id");
	if (!id || record_get_str(rec, "caption", &s, &n) != 0)
		errx(1, "%s: record %" PRIu64 ": a text record without 'id' or 'caption'", input,
		     rec->number);
	if (nrefs == refs_cap) {
		refs_cap = refs_cap ? 2 * refs_cap : 256;
		refs = realloc(refs, refs_cap * sizeof(*refs));
		if (!refs)
			errx(1, "out of memory");
	}
	char *text = strndup(s, n);
	if (!text)
		errx(1, "out of memory");
	refs[nrefs++] = (struct reference){id, text, n};
}

static void load_references(const char *path)
{
	each_record(path, reference_take);
	qsort(refs, nrefs, sizeof(*refs), by_reference_id);
	for (size_t i = 1; i < nrefs; i++)
		if (!strcmp(refs[i - 1].id, refs[i].id))
			errx(1, "%s: two references with id '%s'", path, refs[i].id);
	if (!nrefs)
		errx(1, "%s: no text records to use as references", path);
}

/* A text record gets bleu4, rouge_l and token_f1 against the reference of
 * its id; others pass as they are. */
static void text_metrics_take(const char *input, const struct record *rec)
{
	static const char *const skip[] = {"bleu4", "rouge_l", "token_f1", NULL};
	static struct recb b;
	static int ready;
	if (!ready++)
		recb_init(&b);
	const char *s;
	size_t n;
	char idbuf[256];
	if (!record_is(rec, "text")) {
		pass(rec);
		return;
	}
	if (record_get_str(rec, "caption", &s, &n) != 0)
		errx(1, "%s: record %" PRIu64 " (id '%s'): field 'caption' missing or not a string",
		     input, rec->number, record_id(rec, idbuf, sizeof(idbuf)));
	struct reference key = {.id = idbuf};
	if (record_get_strcpy(rec, "id", idbuf, sizeof(idbuf)) != 0)
		idbuf[0] = 0;
	const struct reference *r = bsearch(&key, refs, nrefs, sizeof(*refs), by_reference_id);
	if (!r) {
		n_unreferenced++;
		pass(rec);
		return;
	}
	struct text_pair_counts c;
	if (text_pair_count(s, n, r->text, r->len, &c) < 0)
		die_lib();
	text_corpus_add(&corpus, &c);
	char kind[64];
	snprintf(kind, sizeof(kind), "%.*s", (int)rec->kind_len, rec->kind);
	recb_begin(&b, kind, (int)rec->version);
	recb_copy_fields(&b, rec, skip);
	recb_f64(&b, "bleu4", text_sentence_bleu(&c));
	recb_f64(&b, "rouge_l", text_rouge_l(&c));
	recb_f64(&b, "token_f1", text_token_f1(&c));
	if (recb_write(&b, &out) < 0)
		die_lib();
}

static void finish_text_metrics(const char *metrics_path)
{
	if (n_unreferenced)
		warnx("%" PRIu64 " text records have no reference of their id; not scored",
		      n_unreferenced);
	double k = corpus.npairs ? 1.0 / (double)corpus.npairs : NAN;
	json_t *j = json_object();
	json_object_set_new(j, "pairs", json_integer((json_int_t)corpus.npairs));
	json_object_set_new(j, "bleu4", json_real(text_corpus_bleu(&corpus)));
	json_object_set_new(j, "brevity_penalty", json_real(text_corpus_brevity_penalty(&corpus)));
	json_object_set_new(j, "sentence_bleu4_mean", json_real(corpus.sentence_bleu_sum * k));
	json_object_set_new(j, "rouge_l", json_real(corpus.rouge_l_sum * k));
	json_object_set_new(j, "token_f1", json_real(corpus.token_f1_sum * k));
	fprintf(stderr,
	        "eosin-query: %zu pairs: BLEU-4 %.4f (brevity penalty %.4f), ROUGE-L %.4f, "
	        "token F1 %.4f\n",
	        corpus.npairs, text_corpus_bleu(&corpus), text_corpus_brevity_penalty(&corpus),
	        corpus.rouge_l_sum * k, corpus.token_f1_sum * k);
	/* Full precision: these are compared with reference implementations. */
	if (metrics_path &&
	    json_dump_file(j, metrics_path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)))
		errx(1, "cannot write metrics to '%s'", metrics_path);
	json_decref(j);
	for (size_t i = 0; i < nrefs; i++)
		free(refs[i].id), free(refs[i].text);
	free(refs);
}

/* ---- main ---------------------------------------------------------------- */

struct query_options {
	const char *index_path, *prompts, *classes, *metrics_path;
	const char *heat_out, *heat_query, *slide, *references;
	long nprobe, ef, size;
	double alpha;
	int retrieval, stats;
};

/* Options into o and the globals they set; returns optind. */
static int parse_options(struct query_options *o, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"index", required_argument, 0, 'i'},  {"nprobe", required_argument, 0, 'p'},
	    {"ef", required_argument, 0, 'e'},     {"field", required_argument, 0, 'F'},
	    {"zero-shot", required_argument, 0, 'z'}, {"logit-scale", required_argument, 0, 'L'},
	    {"slide-pool", required_argument, 0, 'P'}, {"metrics", required_argument, 0, 'm'},
	    {"expand-classes", required_argument, 0, 'x'},
	    {"eval-retrieval", no_argument, 0, 'R'}, {"img-field", required_argument, 0, 'I'},
	    {"txt-field", required_argument, 0, 'T'}, {"heatmap", required_argument, 0, 'H'},
	    {"query", required_argument, 0, 'q'},  {"slide", required_argument, 0, 's'},
	    {"size", required_argument, 0, 'S'},   {"alpha", required_argument, 0, 'a'},
	    {"stats", no_argument, 0, 'X'},        {"help", no_argument, 0, 'h'},
	    {"text-metrics", required_argument, 0, 'W'},
	    {0, 0, 0, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "k:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'i': o->index_path = optarg; break;
		case 'k': topk = (int)prog_long("-k", optarg, 1, 100000); break;
		case 'p': o->nprobe = prog_long("--nprobe", optarg, 1, 1 << 24); break;
		case 'e': o->ef = prog_long("--ef", optarg, 1, 1 << 24); break;
		case 'F': field = optarg; field_given = 1; break;
		case 'z': o->prompts = optarg; break;
		case 'L': logit_scale = prog_double("--logit-scale", optarg, 1e-3, 1e4); break;
		case 'P':
			if (strncmp(optarg, "topk:", 5))
				errx(EXIT_USAGE, "--slide-pool: '%s' is not topk:K", optarg);
			pool_k = (int)prog_long("--slide-pool", optarg + 5, 1, 1 << 30);
			break;
		case 'm': o->metrics_path = optarg; break;
		case 'x': o->classes = optarg; break;
		case 'R': o->retrieval = 1; break;
		case 'I': img_field = optarg; break;
		case 'T': txt_field = optarg; break;
		case 'H': o->heat_out = optarg; break;
		case 'q': o->heat_query = optarg; break;
		case 's': o->slide = optarg; break;
		case 'S': o->size = prog_long("--size", optarg, 16, 16384); break;
		case 'a': o->alpha = prog_double("--alpha", optarg, 0, 1); break;
		case 'X': o->stats = 1; break;
		case 'W': o->references = optarg; break;
		default: usage();
		}
	}
	argc_all = argc;
	argv_all = argv;
	int modes = !!o->index_path + !!o->prompts + !!o->classes + o->retrieval + !!o->heat_out +
	            !!o->references;
	if (modes != 1 || (o->heat_out && !o->heat_query) || (pool_k && !o->prompts))
		usage();
	return optind;
}

/* The archive read, its search parameters set and the query batch made. */
static void open_index(const struct query_options *o)
{
	long nprobe = o->nprobe;
	if (archive_read(&arch, o->index_path) < 0)
		die_lib();
	/* FAISS's own defaults (nprobe 1, efSearch 16) trade too much
	 * recall away; ours are stated in eosin-query(1). */
	if (!nprobe && eosin_faiss_is_ivf(arch.faiss))
		nprobe = DEFAULT_NPROBE;
	if (nprobe && archive_set_param(&arch, "nprobe", (double)nprobe) < 0)
		die_lib();
	if (o->ef && archive_set_param(&arch, "efSearch", (double)o->ef) < 0)
		die_lib();
	if (!o->ef && strstr(arch.factory, "HNSW") && !eosin_faiss_is_ivf(arch.faiss) &&
	    archive_set_param(&arch, "efSearch", topk > DEFAULT_EF ? topk : DEFAULT_EF) < 0)
		die_lib();
	if (!field_given && strcmp(arch.field, field))
		field = arch.field;
	batch_x = malloc((size_t)batch_cap * arch.dim * sizeof(float));
	batch_q = calloc((size_t)batch_cap, sizeof(*batch_q));
	if (!batch_x || !batch_q)
		errx(1, "out of memory");
}

/* What each input record goes to, after what the mode reads first. */
static take_fn start_mode(const struct query_options *o)
{
	if (o->index_path) {
		open_index(o);
		flush_pending = flush_queries;
		return search_take;
	}
	if (o->prompts) {
		load_prompts(o->prompts);
		return zero_shot_take;
	}
	if (o->retrieval)
		return retrieval_take;
	if (o->references) {
		load_references(o->references);
		return text_metrics_take;
	}
	each_record(o->heat_query, heat_query_take);
	if (!heat.query)
		errx(1, "%s: no record with an embedding to use as the query", o->heat_query);
	return heat_tile_take;
}

/* Zero-shot: slide pooling, then the metrics of what had labels. */
static void finish_zero_shot(const char *metrics_path)
{
	if (pool_k)
		pool_slides();
	if (n_unknown_label)
		warnx("%" PRIu64 " labelled records have a label that no prompt has; "
		      "not counted in the metrics",
		      n_unknown_label);
	json_t *j = json_object(), *cl = json_array();
	for (int c = 0; c < nclass; c++)
		json_array_append_new(cl, json_string(class_label[c]));
	json_object_set_new(j, "classes", cl);
	if (patch_eval.n)
		json_object_set_new(j, "records", eval_json(&patch_eval, "records"));
	if (slide_eval.n)
		json_object_set_new(j, "slides", eval_json(&slide_eval, "slides"));
	if (patch_eval.n || slide_eval.n || metrics_path)
		write_metrics(j, metrics_path);
	else
		json_decref(j);
}

static void finish_heatmap(const struct query_options *o)
{
	const char *path = o->slide ? o->slide : heat.slide_path;
	if (!path)
		errx(1, "no --slide and no tile with a 'path' field: which slide?");
	if (heat.other_slides)
		warnx("%" PRIu64 " tiles of other slides than '%s' left out", heat.other_slides,
		      heat.slide_id);
	if (heat.no_position)
		warnx("%" PRIu64 " records without x, y and extent left out", heat.no_position);
	struct heatmap_opts ho = {(int)o->size, o->alpha, heat.caption};
	if (heatmap_render(path, heat.tiles, heat.n, &ho, o->heat_out) < 0)
		die_lib();
	double lo = INFINITY, hi = -INFINITY;
	for (size_t i = 0; i < heat.n; i++) {
		lo = fmin(lo, heat.tiles[i].score);
		hi = fmax(hi, heat.tiles[i].score);
	}
	fprintf(stderr, "eosin-query: %s: %zu tiles of '%s', similarity %.4f .. %.4f\n",
	        o->heat_out, heat.n, path, lo, hi);
}

int main(int argc, char **argv)
{
	struct query_options o = {.size = 1024, .alpha = 0.5};
	int first = parse_options(&o, argc, argv);
	argc -= first;
	argv += first;
	if (o.classes) {
		if (argc)
			usage();
		return expand_classes(o.classes);
	}
	static char *stdin_only[] = {"-", NULL};
	if (argc == 0) {
		argv = stdin_only;
		argc = 1;
	}
	for (int i = 0; o.heat_query && !strcmp(o.heat_query, "-") && i < argc; i++)
		if (!strcmp(argv[i], "-"))
			errx(EXIT_USAGE, "--query - and the tiles cannot both come from standard input");
	for (int i = 0; o.references && !strcmp(o.references, "-") && i < argc; i++)
		if (!strcmp(argv[i], "-"))
			errx(EXIT_USAGE,
			     "--text-metrics - and the hypotheses cannot both come from standard input");
	/* Before anything is read: an error in the prompts or the query
	 * closes it like any other bad input. */
	if (stream_writer_init(&out, 1, "<stdout>") < 0)
		die_lib();
	take_fn take = start_mode(&o);
	write_hdr(o.index_path ? arch.model : NULL, o.index_path ? arch.hash : NULL);
	for (int i = 0; i < argc; i++)
		each_record(argv[i], take);
	if (o.index_path)
		flush_queries();
	if (o.prompts)
		finish_zero_shot(o.metrics_path);
	if (o.retrieval)
		eval_retrieval(&retrieval_pairs, o.metrics_path);
	if (o.heat_out)
		finish_heatmap(&o);
	if (o.references)
		finish_text_metrics(o.metrics_path);
	prog_close_output(&out);
	if (o.index_path && o.stats)
		fprintf(stderr, "eosin-query: %" PRIu64 " queries searched in %.4f s (%.1f queries/s)\n",
		        nsearched, search_seconds,
		        search_seconds > 0 ? (double)nsearched / search_seconds : 0.0);
	if (o.index_path)
		archive_release(&arch);
	return 0;
}
