/*
 * eosin-align: train the alignment between slides and text (--train), or
 * project records into the joint space with a trained head (--apply).
 * See eosin-align(1). The model, losses and checkpoints are in lib/align*.c,
 * the optimizer in lib/train/optim.c; this file reads bags, runs the training loop
 * (batches, schedule, evaluation, checkpoints, metrics, plot) and --apply.
 */
#include "bag/bag.h"
#include "train/align.h"
#include "train/align_io.h"
#include "model/tokenizer.h"
#include "train/optim.h"
#include "prog.h"
#include "schema_fields.h"
#include "core/vec.h"
#include "core/rand.h"

#include <cblas.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <omp.h>

void openblas_set_num_threads(int);

static void usage(void)
{
	fprintf(stderr,
	        "usage: eosin-align --train --out FILE [--resume FILE] [--dim D] [--hidden H] "
	        "[--queries Q] [--qdim W] [--heads H] [--qformer-layers L] [--ffn F] "
	        "[--loss itc=W,cvta=W,mrtva=W,region=W,itm=W,itg=W,mlm=W,plm=W] [--vocab FILE] "
	        "[--text-vocab N] [--ctx N] [--plm-prefix F] [--topk K] [--temp T] [--batch B] [--epochs E | --steps N] "
	        "[--lr LR] [--min-lr LR] [--warmup N] [--wd WD] [--clip C] [--seed S] "
	        "[--save-every N] [--stop-after N] [--val-frac F] [--eval-every N] "
	        "[--metrics FILE] [--plot FILE.svg] [--threads N] [file ...]\n"
	        "       eosin-align --apply FILE [--dtype f32|f16] [--threads N] [file ...]\n");
	exit(EXIT_USAGE);
}

/* ---- options ---- */

static struct {
	const char *out, *resume, *apply, *metrics, *plot, *dump_grads, *vocab;
	struct align_config cfg;
	int batch, epochs, warmup_set, threads;
	long steps, warmup, save_every, stop_after, eval_every;
	float lr, min_lr, wd, clip, val_frac;
	uint64_t seed;
	enum vec_dtype dtype;
} opt = {
    .cfg = {.dim = 256, .qdim = 256, .heads = 8, .layers = 2, .topk = 3, .w_itc = 1.0f,
            .temp_init = 0.07f, .ctx = 77, .plm_prefix = 0.5f},
    .batch = 32, .epochs = 10, .threads = 2, .lr = 1e-3f, .min_lr = 0.0f, .wd = 0.05f,
    .clip = 1.0f, .seed = 1, .dtype = VEC_F32, .eval_every = 0,
};

static int generative(void)
{
	return opt.cfg.w_itg > 0 || opt.cfg.w_mlm > 0 || opt.cfg.w_plm > 0;
}

static void parse_losses(const char *s)
{
	opt.cfg.w_itc = opt.cfg.w_cvta = 0.0f;
	char *dup = strdup(s), *save = NULL;
	for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(t, '=');
		float w = 1.0f;
		if (eq) {
			*eq = 0;
			w = (float)prog_double("--loss", eq + 1, 0, 1e6);
		}
		if (!strcmp(t, "itc"))
			opt.cfg.w_itc = w;
		else if (!strcmp(t, "cvta"))
			opt.cfg.w_cvta = w;
		else if (!strcmp(t, "mrtva"))
			opt.cfg.w_mrtva = w;
		else if (!strcmp(t, "region"))
			opt.cfg.w_region = w;
		else if (!strcmp(t, "itm"))
			opt.cfg.w_itm = w;
		else if (!strcmp(t, "itg"))
			opt.cfg.w_itg = w;
		else if (!strcmp(t, "mlm"))
			opt.cfg.w_mlm = w;
		else if (!strcmp(t, "plm"))
			opt.cfg.w_plm = w;
		else
			errx(EXIT_USAGE,
			     "--loss: unknown objective '%s' (have itc, cvta, mrtva, region, itm, itg, "
			     "mlm, plm)", t);
	}
	free(dup);
	if (opt.cfg.w_itc <= 0 && opt.cfg.w_cvta <= 0 && opt.cfg.w_mrtva <= 0 &&
	    opt.cfg.w_region <= 0 && opt.cfg.w_itm <= 0 && !generative())
		errx(EXIT_USAGE, "--loss: no objective with a positive weight");
}

/* ---- bags in memory ---- */

struct bagdata {
	char *id;
	int n, ntxt, nkw;
	float *img, *pos, *txt, *kw; /* (n,img_dim) (n,2) (ntxt,txt_dim) (nkw,txt_dim) */
	int *parent;                 /* (n) parent_index, or NULL */
	int nregions, nsent;
	int *region;                 /* (n) region of each patch, or NULL */
	float *sent;                 /* (nsent, txt_dim) sub-caption embeddings, or NULL */
	int ntok;                    /* caption tokens for the text decoder */
	int32_t *tok;
	float extent;
	int val;
};

static struct bagdata *bags;
static int nbags, img_dim, txt_dim;
static struct clip_tokenizer *tokenizer; /* --vocab */
static int max_token = -1;               /* the largest token of any bag */

/* a vec field as malloc'd f32 (rows, dim); 1 absent, -1 bad */
static int get_f32(const struct record *rec, const char *key, float **out, int *rows, int *dim)
{
	struct vec_view v;
	int r = record_get_vec(rec, key, &v);
	if (r)
		return r;
	*out = malloc(sizeof(float) * v.n * v.dim);
	if (vec_to_f32(&v, *out) < 0) {
		free(*out);
		return -1;
	}
	*rows = (int)v.n;
	*dim = (int)v.dim;
	return 0;
}

/* get_f32, and the width must be *width (an earlier bag's, or txt_emb's:
 * `what`), which a first bag sets. 1 absent, -1 bad vector, -2 wrong width
 * (error set, naming the field) */
static int get_f32_width(const struct record *rec, const char *key, float **out, int *rows,
                         int *width, const char *what)
{
	int dim, r = get_f32(rec, key, out, rows, &dim);
	if (r)
		return r;
	if (*width && dim != *width) {
		free(*out);
		*out = NULL;
		eosin_error("field '%s' has dim %d, %s %d", key, dim, what, *width);
		return -2;
	}
	*width = dim;
	return 0;
}


/* The bag's caption tokens for the text decoder: field 'tokens', else its
 * caption through --vocab's tokenizer ([SOT] ... [EOT], cut to --ctx); a
 * bag with neither has none. -1 bad (error set, naming the field). */
static int get_tokens(const struct record *rec, struct bagdata *b)
{
	const msgpack_object *o = record_get(rec, F_BAG_TOKENS);
	if (o) {
		if (o->type != MSGPACK_OBJECT_ARRAY)
			return eosin_error("field 'tokens' is not an array");
		int n = (int)o->via.array.size;
		if (n < 2 || n > opt.cfg.ctx)
			return eosin_error("field 'tokens' has %d entries, want 2 to --ctx %d", n,
			                   opt.cfg.ctx);
		b->tok = malloc(sizeof(int32_t) * n);
		for (int i = 0; i < n; i++) {
			const msgpack_object *e = &o->via.array.ptr[i];
			if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER || e->via.u64 > INT32_MAX / 2)
				return eosin_error("field 'tokens' entry %d is not a token id", i);
			b->tok[i] = (int32_t)e->via.u64;
			max_token = b->tok[i] > max_token ? b->tok[i] : max_token;
		}
		b->ntok = n;
		return 0;
	}
	const char *cap;
	size_t len;
	if (!record_get(rec, F_COMMON_CAPTION))
		return 0;
	if (record_get_str(rec, F_COMMON_CAPTION, &cap, &len) < 0)
		return -1;
	if (!tokenizer)
		return eosin_error("field 'caption' needs --vocab FILE to be tokenized (or give "
		                   "the bag 'tokens')");
	b->tok = malloc(sizeof(int32_t) * opt.cfg.ctx);
	int n = clip_tokenize_context(tokenizer, cap, len, b->tok, opt.cfg.ctx, NULL);
	if (n < 0)
		return eosin_error_prefix("field 'caption'");
	b->ntok = n;
	for (int i = 0; i < n; i++)
		max_token = b->tok[i] > max_token ? b->tok[i] : max_token;
	return 0;
}

/* Load one bag for training; -1 (error set) when it cannot be used. */
static int load_bag(const struct record *rec, const char *inname, struct bagdata *b)
{
	char idbuf[128];
	const char *id = record_id(rec, idbuf, sizeof idbuf);
	memset(b, 0, sizeof *b);
	b->id = strdup(id);
	int rows, dim;
	/* WHERE() says where, the error being set; FAIL() sets it first */
#define WHERE() eosin_error_prefix("%s: record %" PRIu64 " (id '%s')", inname, rec->number, id)
#define FAIL(...)                                                                            \
	do {                                                                                 \
		eosin_error(__VA_ARGS__);                                                    \
		return WHERE();                                                              \
	} while (0)
	int r = get_f32_width(rec, F_BAG_IMG_EMB, &b->img, &b->n, &img_dim, "earlier bags");
	if (r < 0)
		return r == -1 ? eosin_error_prefix("%s", inname) : WHERE();
	if (r > 0)
		FAIL("no field 'img_emb'");
	r = get_f32_width(rec, F_COMMON_TXT_EMB, &b->txt, &b->ntxt, &txt_dim, "earlier bags");
	if (r < 0)
		return r == -1 ? eosin_error_prefix("%s", inname) : WHERE();
	if (r > 0)
		FAIL("no field 'txt_emb' (a bag needs its caption to train)");
	if (b->ntxt != 1 && b->ntxt != b->n)
		FAIL("field 'txt_emb' has %d rows, want 1 or n = %d", b->ntxt, b->n);
	r = get_f32_width(rec, F_COMMON_KW_EMB, &b->kw, &b->nkw, &txt_dim, "txt_emb");
	if (r < 0)
		return r == -1 ? eosin_error_prefix("%s", inname) : WHERE();
	r = get_f32(rec, F_BAG_POS, &b->pos, &rows, &dim);
	if (r < 0)
		return eosin_error_prefix("%s", inname);
	if (r == 0 && (rows != b->n || dim != 2))
		FAIL("field 'pos' is (%d, %d), want (n = %d, 2)", rows, dim, b->n);
	if (bag_get_index_array(rec, F_BAG_PARENT_INDEX, b->n, -1, b->n - 1, &b->parent) < 0)
		return WHERE();
	r = bag_get_regions(rec, b->n, &b->nregions, &b->region);
	if (r < 0)
		return WHERE();
	if (r == 0) {
		r = get_f32_width(rec, F_COMMON_SENT_EMB, &b->sent, &b->nsent, &txt_dim, "txt_emb");
		if (r < 0)
			return r == -1 ? eosin_error_prefix("%s", inname) : WHERE();
	}
	if (generative() && get_tokens(rec, b) < 0)
		return WHERE();
	double ext = 0;
	if (record_get_num(rec, F_BAG_EXTENT, &ext) < 0)
		return eosin_error_prefix("%s", inname);
	b->extent = ext > 0 ? (float)ext : 224.0f;
	char split[16] = "";
	if (record_get(rec, F_COMMON_SPLIT))
		record_get_strcpy(rec, F_COMMON_SPLIT, split, sizeof split);
	if (!strcmp(split, "val"))
		b->val = 1;
	else if (!strcmp(split, "test"))
		b->val = 2; /* neither trained on nor used for model selection */
	else if (opt.val_frac > 0)
		b->val = (fnv1a64(b->id, strlen(b->id), FNV1A64_INIT ^ opt.seed) % 100000) <
		         (uint64_t)(opt.val_frac * 100000);
#undef FAIL
#undef WHERE
	return 0;
}

static void read_bags(int argc, char **argv)
{
	int cap = 0;
	for (int i = 0; i < argc; i++) {
		struct stream_reader r;
		struct record rec;
		int ret;
		if (stream_reader_open(&r, argv[i]) < 0)
			die_lib();
		while ((ret = stream_read(&r, &rec)) == 1) {
			if (!record_is(&rec, BAG_KIND))
				continue;
			if (nbags == cap) {
				cap = cap ? 2 * cap : 64;
				bags = realloc(bags, sizeof *bags * cap);
			}
			if (load_bag(&rec, r.name, &bags[nbags]) < 0)
				die_lib();
			nbags++;
		}
		if (ret < 0)
			die_lib();
		stream_reader_release(&r);
	}
}

static void free_bags(void)
{
	for (int i = 0; i < nbags; i++) {
		free(bags[i].id), free(bags[i].img), free(bags[i].pos), free(bags[i].txt);
		free(bags[i].kw), free(bags[i].parent), free(bags[i].region), free(bags[i].sent);
		free(bags[i].tok);
	}
	free(bags);
}

static struct align_bag as_align_bag(const struct bagdata *b)
{
	return (struct align_bag){.n = b->n, .img = b->img, .pos = b->pos, .extent = b->extent,
	                          .ntxt = b->ntxt, .txt = b->txt, .nkw = b->nkw, .kw = b->kw,
	                          .parent = b->parent, .nregions = b->nregions,
	                          .region = b->region, .nsent = b->nsent, .sent = b->sent,
	                          .ntok = b->ntok, .tok = b->tok};
}

/* ---- evaluation: retrieval among held-out items ---- */

struct retrieval {
	int items;
	float i2t[3], t2i[3]; /* R@1, R@5, R@10 */
};

static int *val_idx, nval;
static float *val_zi, *val_zt, *val_sim;

static void evaluate(struct align_model *m, struct retrieval *out)
{
	int D = m->cfg.dim, R = 0;
	for (int v = 0; v < nval; v++) {
		const struct bagdata *b = &bags[val_idx[v]];
		struct align_bag ab = as_align_bag(b);
		int items = align_bag_items(m, &ab);
		if (align_embed_bag(m, &ab, val_zi + (size_t)R * D) < 0)
			die_lib();
		align_embed_text(m, b->txt, items, val_zt + (size_t)R * D);
		R += items;
	}
	/* sim (R,R): image i against text j */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, R, D, 1.0f, val_zi, D, val_zt, D,
	            0.0f, val_sim, R);
	static const int ks[3] = {1, 5, 10};
	int hit_i2t[3] = {0}, hit_t2i[3] = {0};
	for (int i = 0; i < R; i++) {
		int rank_i2t = 0, rank_t2i = 0; /* how many beat the true pair */
		float si = val_sim[(size_t)i * R + i];
		for (int j = 0; j < R; j++) {
			if (j == i)
				continue;
			rank_i2t += val_sim[(size_t)i * R + j] > si;
			rank_t2i += val_sim[(size_t)j * R + i] > si;
		}
		for (int k = 0; k < 3; k++) {
			hit_i2t[k] += rank_i2t < ks[k];
			hit_t2i[k] += rank_t2i < ks[k];
		}
	}
	out->items = R;
	for (int k = 0; k < 3; k++) {
		out->i2t[k] = (float)hit_i2t[k] / R;
		out->t2i[k] = (float)hit_t2i[k] / R;
	}
}

/* ---- plot: train loss and val R@1 against step, an SVG line chart ---- */

static float *plot_loss, *plot_r1;
static long *plot_r1_step;
static long plot_n, plot_nr1;

static void write_plot(const char *path, long step0)
{
	FILE *f = fopen(path, "w");
	if (!f)
		err(1, "cannot create '%s'", path);
	const int W = 720, H = 400, L = 60, Rm = 60, T = 30, B = 50;
	float maxloss = 0;
	for (long i = 0; i < plot_n; i++)
		maxloss = plot_loss[i] > maxloss ? plot_loss[i] : maxloss;
	if (maxloss <= 0)
		maxloss = 1;
	long last = step0 + plot_n > 1 ? step0 + plot_n : 1;
	double xs = (double)(W - L - Rm) / (double)last;
#define X(s) (L + (s) * xs)
#define YL(v) (T + (H - T - B) * (1.0 - (v) / maxloss))
#define YR(v) (T + (H - T - B) * (1.0 - (v)))
	fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
	           "font-family='sans-serif' font-size='12'>\n<rect width='100%%' height='100%%' "
	           "fill='white'/>\n", W, H);
	fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n", L, H - B, W - Rm,
	        H - B);
	fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n", L, T, L, H - B);
	fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n", W - Rm, T, W - Rm,
	        H - B);
	for (int t = 0; t <= 4; t++) {
		double fr = t / 4.0;
		fprintf(f, "<text x='%d' y='%.1f' text-anchor='end' fill='steelblue'>%.3g</text>\n",
		        L - 4, YL(fr * maxloss) + 4, fr * maxloss);
		fprintf(f, "<text x='%d' y='%.1f' fill='darkorange'>%.2f</text>\n", W - Rm + 4,
		        YR(fr) + 4, fr);
		long s = (long)(last * fr);
		fprintf(f, "<text x='%.1f' y='%d' text-anchor='middle'>%ld</text>\n", X(s), H - B + 16,
		        s);
	}
	fprintf(f, "<text x='%d' y='%d' text-anchor='middle'>step</text>\n", (L + W - Rm) / 2,
	        H - 12);
	fprintf(f, "<text x='%d' y='18' fill='steelblue'>train loss</text>\n", L);
	fprintf(f, "<text x='%d' y='18' text-anchor='end' fill='darkorange'>val R@1 "
	           "(image to text)</text>\n", W - Rm);
	fprintf(f, "<polyline fill='none' stroke='steelblue' stroke-width='1.5' points='");
	for (long i = 0; i < plot_n; i++)
		fprintf(f, "%.1f,%.1f ", X(step0 + i + 1), YL(plot_loss[i]));
	fprintf(f, "'/>\n<polyline fill='none' stroke='darkorange' stroke-width='2' points='");
	for (long i = 0; i < plot_nr1; i++)
		fprintf(f, "%.1f,%.1f ", X(plot_r1_step[i]), YR(plot_r1[i]));
	fprintf(f, "'/>\n");
	for (long i = 0; i < plot_nr1; i++)
		fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='darkorange'/>\n", X(plot_r1_step[i]),
		        YR(plot_r1[i]));
	fprintf(f, "</svg>\n");
#undef X
#undef YL
#undef YR
	if (fclose(f) != 0)
		err(1, "write error on '%s'", path);
}

/* ---- training ---- */


/* The epoch's order of training bags: a Fisher-Yates shuffle from a state
 * that depends only on (seed, epoch), so a resumed run sees the same
 * batches. Returns that state (saved in checkpoints as "rng"). */
static uint64_t epoch_order(int *order, const int *train, int ntrain, long epoch)
{
	uint64_t s0 = opt.seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch, s = s0;
	memcpy(order, train, sizeof(int) * ntrain);
	for (int i = ntrain - 1; i > 0; i--) {
		int j = (int)(splitmix64(&s) % (uint64_t)(i + 1));
		int t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	return s0;
}

static void save_checkpoint(const char *path, const struct align_model *m, long step,
                            uint64_t rng)
{
	struct align_meta meta = {0};
	char b[64];
	snprintf(b, sizeof b, "%ld", step);
	align_meta_set(&meta, "step", b);
	snprintf(b, sizeof b, "%" PRIu64, rng);
	align_meta_set(&meta, "rng", b);
	snprintf(b, sizeof b, "%" PRIu64, opt.seed);
	align_meta_set(&meta, "seed", b);
	snprintf(b, sizeof b, "%d", opt.batch);
	align_meta_set(&meta, "batch", b);
	if (opt.vocab && strlen(opt.vocab) < sizeof meta.val[0]) /* for eosin-generate */
		align_meta_set(&meta, "vocab_file", opt.vocab);
	if (align_save(path, m, 1, &meta) < 0)
		die_lib();
}

static void dump_grads(const char *path, struct align_model *m, const struct align_losses *L)
{
	/* parameters and gradients as two checkpoints' worth of tensors: the
	 * gradients stand in the moment slots (adam.m.*); adam.v.* are zero */
	float *keep_m = m->m, *keep_v = m->v;
	float *zero = calloc(m->nfloats, sizeof(float));
	m->m = m->grads;
	m->v = zero;
	struct align_meta meta = {0};
	char b[64];
	snprintf(b, sizeof b, "%.9g", (double)L->total);
	align_meta_set(&meta, "loss", b);
	if (align_save(path, m, 1, &meta) < 0)
		die_lib();
	m->m = keep_m;
	m->v = keep_v;
	free(zero);
}

/* A training run: its bags, schedule, optimiser and what it writes, beside
 * the model. */
struct run {
	int *train_idx, ntrain, B;
	long step0, per_epoch, total, warmup, stop;
	float *decay; /* per-element weight-decay mask */
	struct adamw adam;
	int *order;
	struct align_bag *batch;
	FILE *mf;
	struct progress pr;
	long epoch_loaded;
	uint64_t rng;
	struct retrieval ret;
};

/* Held-out bags (split val) to val_idx, training bags to r->train_idx. */
static void split_bags(struct run *r)
{
	r->train_idx = malloc(sizeof(int) * (nbags + 1));
	val_idx = malloc(sizeof(int) * (nbags + 1));
	r->ntrain = 0;
	for (int i = 0; i < nbags; i++) {
		if (bags[i].val == 1)
			val_idx[nval++] = i;
		else if (bags[i].val == 0)
			r->train_idx[r->ntrain++] = i;
	}
	if (r->ntrain < 2)
		errx(1, "need at least 2 training bags, have %d (of %d bag records)", r->ntrain,
		     nbags);
}

/* The model: --resume's, with the step it reached, or new and random. */
static void model_start(struct align_model *m, long *step0)
{
	struct align_meta meta = {0};
	*step0 = 0;
	if (opt.resume) {
		if (align_load(opt.resume, m, 1, &meta) < 0)
			die_lib();
		const char *s = align_meta_get(&meta, "step");
		*step0 = s ? atol(s) : 0;
		if (m->cfg.img_dim != img_dim || m->cfg.txt_dim != txt_dim)
			errx(1, "'%s': made for img_emb dim %d and txt_emb dim %d, bags have %d and %d",
			     opt.resume, m->cfg.img_dim, m->cfg.txt_dim, img_dim, txt_dim);
	} else {
		opt.cfg.img_dim = img_dim;
		opt.cfg.txt_dim = txt_dim;
		if (generative() && opt.cfg.vocab == 0) /* the tokens and [MASK] */
			opt.cfg.vocab = tokenizer ? clip_tokenizer_vocab_size(tokenizer) + 1
			                          : max_token + 2;
		if (!generative())
			opt.cfg.vocab = 0;
		if (opt.cfg.queries > 0 && opt.cfg.ffn == 0)
			opt.cfg.ffn = 4 * opt.cfg.qdim;
		if (align_model_init(m, &opt.cfg) < 0)
			die_lib();
		align_model_randomize(m, opt.seed);
	}
	if (generative() && !align_has_decoder(m))
		errx(1, "'%s' has no text decoder: --loss itg, mlm and plm need one", opt.resume);
	if (generative() && max_token >= m->cfg.vocab - 1)
		errx(1, "a caption has token %d, the decoder takes 0 to %d (--text-vocab)", max_token,
		     m->cfg.vocab - 2);
	int with_tokens = 0;
	for (int i = 0; i < nbags; i++)
		with_tokens += bags[i].ntok >= 2;
	if (generative())
		fprintf(stderr, "eosin-align: text decoder of %d tokens, %d positions; %d of %d bags "
		                "have a caption to predict\n", m->cfg.vocab, m->cfg.ctx, with_tokens,
		        nbags);
}

/* Activations for the largest bag and the largest batch of items and
 * keywords, and the held-out set's rows; returns the batch size. */
static int size_model(struct align_model *m, int ntrain)
{
	int max_n = 1, max_bag_items = 1, max_bag_kw = 0, max_val_items = 0, max_reg = 0,
	    max_sent = 0;
	for (int i = 0; i < nbags; i++) {
		struct align_bag ab = as_align_bag(&bags[i]);
		max_n = bags[i].n > max_n ? bags[i].n : max_n;
		int it = align_bag_items(m, &ab);
		max_bag_items = it > max_bag_items ? it : max_bag_items;
		max_bag_kw = bags[i].nkw > max_bag_kw ? bags[i].nkw : max_bag_kw;
		int nr = align_bag_regions(m, &ab);
		max_reg = nr > max_reg ? nr : max_reg;
		max_sent = bags[i].nsent > max_sent ? bags[i].nsent : max_sent;
		if (bags[i].val == 1)
			max_val_items += it;
	}
	int B = opt.batch < ntrain ? opt.batch : ntrain;
	int max_items = B * max_bag_items, max_kw = B * max_bag_kw;
	if (max_items < max_bag_items)
		max_items = max_bag_items;
	m->max_regions = B * max_reg;
	m->max_sents = B * max_sent;
	if (align_model_alloc(m, max_n, max_items, max_kw) < 0)
		die_lib();
	if (nval > 0) {
		val_zi = malloc(sizeof(float) * (size_t)max_val_items * m->cfg.dim);
		val_zt = malloc(sizeof(float) * (size_t)max_val_items * m->cfg.dim);
		val_sim = malloc(sizeof(float) * (size_t)max_val_items * max_val_items);
	}
	return B;
}

/* Schedule, optimiser, metrics file, plot buffers and progress. */
static void run_start(struct run *r, const struct align_model *m)
{
	r->per_epoch = (r->ntrain + r->B - 1) / r->B;
	r->total = opt.steps > 0 ? opt.steps : r->per_epoch * opt.epochs;
	r->warmup = opt.warmup_set ? opt.warmup : r->total / 20;
	r->stop = opt.stop_after > 0 && opt.stop_after < r->total ? opt.stop_after : r->total;
	r->decay = malloc(sizeof(float) * m->nfloats);
	for (int i = 0; i < m->nparam; i++)
		for (size_t e = 0; e < m->param[i].count; e++)
			r->decay[m->param[i].offset + e] = m->param[i].decay;
	r->adam = (struct adamw){.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
	                         .weight_decay = opt.wd};
	r->order = malloc(sizeof(int) * r->ntrain);
	r->batch = malloc(sizeof *r->batch * r->B);
	r->mf = NULL;
	if (opt.metrics && !(r->mf = fopen(opt.metrics, opt.resume ? "a" : "w")))
		err(1, "cannot open '%s'", opt.metrics);
	plot_loss = malloc(sizeof(float) * (r->total + 1));
	plot_r1 = malloc(sizeof(float) * (r->total + 2));
	plot_r1_step = malloc(sizeof(long) * (r->total + 2));
	progress_init(&r->pr, "steps", r->total - r->step0);
	r->epoch_loaded = -1;
	r->rng = 0;
	r->ret = (struct retrieval){0};
	fprintf(stderr,
	        "eosin-align: %d training bags, %d held out, %zu parameters, %ld steps of %d bags\n",
	        r->ntrain, nval, m->nfloats, r->total, r->B);
}

/* Held-out generative losses: per objective the mean cross-entropy over
 * the held-out bags' predicted tokens; and two unigram baselines for ITG's
 * tokens: the training captions' token counts (add-one over the decoder's
 * tokens), and the held-out tokens' own frequencies (an oracle no unigram
 * model beats). */
struct gen_eval {
	double ce[3];
	int tokens[3];
	double unigram, oracle; /* cross-entropies (nats per token) */
};

static void gen_evaluate(struct align_model *m, const struct run *r, struct gen_eval *ge)
{
	*ge = (struct gen_eval){0};
	int V = m->cfg.vocab - 1; /* tokens a caption can hold ([MASK] cannot) */
	double *train_count = calloc((size_t)V, sizeof(double));
	double *val_count = calloc((size_t)V, sizeof(double));
	double ntrain = 0, nv = 0;
	for (int i = 0; i < r->ntrain; i++) {
		const struct bagdata *b = &bags[r->train_idx[i]];
		for (int t = 1; t < b->ntok; t++, ntrain++)
			train_count[b->tok[t]]++;
	}
	m->gen_seed = opt.seed ^ 0x5eedull; /* the same MLM choices at every evaluation */
	for (int k = 0; k < nval; k++) {
		const struct bagdata *b = &bags[val_idx[k]];
		struct align_bag ab = as_align_bag(b);
		double sum[3];
		int cnt[3];
		if (align_bag_gen_loss(m, &ab, sum, cnt) < 0)
			die_lib();
		for (int j = 0; j < 3; j++) {
			ge->ce[j] += sum[j];
			ge->tokens[j] += cnt[j];
		}
		for (int t = 1; t < b->ntok; t++, nv++) {
			val_count[b->tok[t]]++;
			ge->unigram -= log((train_count[b->tok[t]] + 1) / (ntrain + V));
		}
	}
	for (int j = 0; j < 3; j++)
		ge->ce[j] = ge->tokens[j] > 0 ? ge->ce[j] / ge->tokens[j] : 0.0;
	for (int v = 0; v < V && nv > 0; v++)
		if (val_count[v] > 0)
			ge->oracle -= val_count[v] / nv * log(val_count[v] / nv);
	ge->unigram = nv > 0 ? ge->unigram / nv : 0.0;
	free(train_count), free(val_count);
}

/* gen_evaluate's figures into the metrics file, and on standard error at
 * the end */
static void gen_report(struct align_model *m, struct run *r, long step, int last)
{
	struct gen_eval ge;
	gen_evaluate(m, r, &ge);
	if (r->mf)
		fprintf(r->mf,
		        "{\"step\":%ld,\"val_itg\":%.6f,\"val_itg_ppl\":%.4f,\"val_itg_tokens\":%d,"
		        "\"val_mlm\":%.6f,\"val_mlm_ppl\":%.4f,\"val_plm\":%.6f,\"val_plm_ppl\":%.4f,"
		        "\"unigram_ppl\":%.4f,\"unigram_oracle_ppl\":%.4f}\n",
		        step, ge.ce[0], exp(ge.ce[0]), ge.tokens[0], ge.ce[1], exp(ge.ce[1]), ge.ce[2],
		        exp(ge.ce[2]), exp(ge.unigram), exp(ge.oracle));
	if (!last)
		return;
	const char *name[3] = {"ITG", "MLM", "PLM"};
	for (int j = 0; j < 3; j++)
		if (ge.tokens[j] > 0)
			fprintf(stderr, "eosin-align: held-out %s perplexity %.2f over %d tokens\n",
			        name[j], exp(ge.ce[j]), ge.tokens[j]);
	fprintf(stderr, "eosin-align: held-out unigram perplexity %.2f (training counts), %.2f "
	                "(oracle: the held-out tokens' own frequencies)\n",
	        exp(ge.unigram), exp(ge.oracle));
}

/* Held-out retrieval after `step` steps, into the plot and the metrics file
 * (where training starts from: R@1 only). */
static void evaluate_at(struct align_model *m, struct run *r, long step)
{
	struct retrieval *ret = &r->ret;
	evaluate(m, ret);
	plot_r1_step[plot_nr1] = step;
	plot_r1[plot_nr1++] = ret->i2t[0];
	if (!r->mf)
		return;
	if (step == 0)
		fprintf(r->mf, "{\"step\":0,\"val_items\":%d,\"i2t_r1\":%.6f,\"t2i_r1\":%.6f}\n",
		        ret->items, ret->i2t[0], ret->t2i[0]);
	else
		fprintf(r->mf,
		        "{\"step\":%ld,\"val_items\":%d,\"i2t_r1\":%.6f,\"i2t_r5\":%.6f,"
		        "\"i2t_r10\":%.6f,\"t2i_r1\":%.6f,\"t2i_r5\":%.6f,\"t2i_r10\":%.6f}\n",
		        step, ret->items, ret->i2t[0], ret->i2t[1], ret->i2t[2], ret->t2i[0],
		        ret->t2i[1], ret->t2i[2]);
}

/* The generative losses of L as metrics fields (empty without them) */
static const char *gen_fields(const struct align_losses *L)
{
	static char b[256];
	b[0] = 0;
	if (generative())
		snprintf(b, sizeof b, ",\"itg\":%.9g,\"mlm\":%.9g,\"plm\":%.9g", L->itg, L->mlm,
		         L->plm);
	return b;
}

/* Step `step`: its batch of the epoch's order, gradients, clipping and the
 * AdamW update, logged; returns the loss. */
static float train_step(struct align_model *m, struct run *r, long step)
{
	long epoch = step / r->per_epoch, pos = step % r->per_epoch;
	if (epoch != r->epoch_loaded) {
		r->rng = epoch_order(r->order, r->train_idx, r->ntrain, epoch);
		r->epoch_loaded = epoch;
	}
	int nb = 0;
	for (long i = pos * r->B; i < r->ntrain && nb < r->B; i++)
		r->batch[nb++] = as_align_bag(&bags[r->order[i]]);
	if (nb < 2) /* a last batch of one bag: borrow the first of the epoch */
		r->batch[nb++] = as_align_bag(&bags[r->order[0]]);
	struct align_losses L;
	uint64_t gs = opt.seed ^ ((uint64_t)step * 0x9E3779B97F4A7C15ull);
	m->gen_seed = splitmix64(&gs); /* MLM's choices: new every step */
	if (align_step_grads(m, r->batch, nb, 1, &L) < 0)
		die_lib();
	if (opt.dump_grads && step == r->step0)
		dump_grads(opt.dump_grads, m, &L);
	float gnorm = clip_grad_norm(m->grads, m->nfloats, opt.clip);
	float lr = lr_schedule(opt.lr, opt.min_lr, r->warmup, r->total, step);
	adamw_update(&r->adam, m->params, m->grads, m->m, m->v, r->decay, m->nfloats, step + 1,
	             lr);
	plot_loss[plot_n++] = L.total;
	if (r->mf)
		fprintf(r->mf,
		        "{\"step\":%ld,\"loss\":%.9g,\"itc\":%.9g,\"cvta\":%.9g,\"mrtva\":%.9g,"
		        "\"region\":%.9g,\"itm\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,"
		        "\"items\":%d%s}\n",
		        step + 1, L.total, L.itc, L.cvta, L.mrtva, L.region, L.itm, lr, gnorm,
		        L.items, gen_fields(&L));
	return L.total;
}

/* The last checkpoint, the summary line (steps/s over the steady steps),
 * the metrics file closed and the plot. */
static void run_finish(struct align_model *m, struct run *r, double steady_s)
{
	progress_done(&r->pr);
	save_checkpoint(opt.out, m, r->stop, r->rng);
	if (plot_n > 0)
		fprintf(stderr, "eosin-align: step %ld, last loss %.4f", r->stop,
		        plot_loss[plot_n - 1]);
	if (nval > 0)
		fprintf(stderr, ", held-out R@1 %.3f (image to text), %.3f (text to image) of %d items "
		                "(chance %.3f)", r->ret.i2t[0], r->ret.t2i[0], r->ret.items,
		        1.0 / r->ret.items);
	if (r->stop - r->step0 > 1)
		fprintf(stderr, ", %.3f steps/s", (double)(r->stop - r->step0 - 1) / steady_s);
	fprintf(stderr, "\n");
	if (r->mf && fclose(r->mf) != 0)
		err(1, "write error on '%s'", opt.metrics);
	if (opt.plot)
		write_plot(opt.plot, r->step0);
}

static int train(int argc, char **argv)
{
	struct run r = {0};
	struct align_model m;
	read_bags(argc, argv);
	split_bags(&r);
	model_start(&m, &r.step0);
	r.B = size_model(&m, r.ntrain);
	run_start(&r, &m);
	if (nval > 0 && opt.eval_every > 0 && r.step0 == 0) {
		evaluate_at(&m, &r, 0);
		if (generative())
			gen_report(&m, &r, 0, 0);
	}
	double t_first = 0;
	for (long step = r.step0; step < r.stop; step++) {
		if (step == r.step0 + 1)
			t_first = prog_now(); /* time the steady state, after the first step */
		float loss = train_step(&m, &r, step);
		int last = step + 1 == r.stop;
		if (nval > 0 && ((opt.eval_every > 0 && (step + 1) % opt.eval_every == 0) || last)) {
			evaluate_at(&m, &r, step + 1);
			if (generative())
				gen_report(&m, &r, step + 1, last);
		}
		if (opt.save_every > 0 && (step + 1) % opt.save_every == 0 && !last)
			save_checkpoint(opt.out, &m, step + 1, r.rng);
		progress_add(&r.pr, 1);
		if (r.pr.tty && !last)
			fprintf(stderr, " loss %.4f", loss);
	}
	run_finish(&m, &r, prog_now() - t_first);
	free(plot_loss), free(plot_r1), free(plot_r1_step), free(r.decay), free(r.order);
	free(r.batch), free(r.train_idx), free(val_idx), free(val_zi), free(val_zt), free(val_sim);
	align_model_free(&m);
	free_bags();
	return 0;
}

/* ---- apply ---- */

/* A joint-space embedding (rows, dim) as an embedding map (eosin-common(5))
 * under `key`, always with its n, so that a one-row bag still says so. */
static void pack_joint_emb(struct recb *b, const char *key, const float *z, int rows, int dim,
                           const char *model, const char *hash)
{
	recb_key(b, key);
	msgpack_packer *pk = &b->pk;
	msgpack_pack_map(pk, 6);
	const char *dn = vec_dtype_name(opt.dtype);
	msgpack_pack_str_with_body(pk, "dtype", 5);
	msgpack_pack_str_with_body(pk, dn, strlen(dn));
	msgpack_pack_str_with_body(pk, "dim", 3);
	msgpack_pack_uint32(pk, (uint32_t)dim);
	msgpack_pack_str_with_body(pk, "n", 1);
	msgpack_pack_uint32(pk, (uint32_t)rows);
	msgpack_pack_str_with_body(pk, "model", 5);
	msgpack_pack_str_with_body(pk, model, strlen(model));
	msgpack_pack_str_with_body(pk, "hash", 4);
	msgpack_pack_str_with_body(pk, hash, strlen(hash));
	msgpack_pack_str_with_body(pk, "data", 4);
	size_t total = (size_t)rows * dim;
	msgpack_pack_bin(pk, total * vec_dtype_size(opt.dtype));
	if (opt.dtype == VEC_F32) {
		msgpack_pack_bin_body(pk, z, total * sizeof(float)); /* little-endian host */
		return;
	}
	for (size_t i = 0; i < total; i++) {
		uint16_t h = f32_to_f16(z[i]);
		unsigned char two[2] = {(unsigned char)h, (unsigned char)(h >> 8)};
		msgpack_pack_bin_body(pk, two, 2);
	}
}

/* Grow the model's activations and --apply's row buffers (img, txt: input
 * embeddings; z, zt: joint rows; pos: x,y per patch) to hold `rows` rows.
 * They only grow, so a stream of like records allocates once. */
static void reserve_rows(struct align_model *m, int *cap, int rows, float **img, float **txt,
                         float **z, float **zt, float **pos)
{
	if (rows <= *cap && *img)
		return;
	if (rows > *cap) {
		*cap = m->max_regions = rows;
		if (align_model_alloc(m, rows, rows, 0) < 0)
			die_lib();
	}
	const struct align_config *c = &m->cfg;
	size_t n = (size_t)*cap;
	*img = realloc(*img, sizeof(float) * n * c->img_dim);
	*txt = realloc(*txt, sizeof(float) * n * c->txt_dim);
	*z = realloc(*z, sizeof(float) * n * c->dim);
	*zt = realloc(*zt, sizeof(float) * n * c->dim);
	*pos = realloc(*pos, sizeof(float) * n * 2);
	if (!*img || !*txt || !*z || !*zt || !*pos)
		errx(1, "out of memory for %d rows", rows);
}

/* The whole command line, for the hdr record that --apply writes. */
static int full_argc;
static char **full_argv;

/* --apply's state: the head, its name and hash in the records it writes,
 * and the row buffers, which only grow. */
struct applier {
	struct align_model m;
	int cap_n;
	char hash[17], model[256];
	float *img, *txt, *z, *zt, *pos;
	int *region;
	struct stream_writer w;
	struct recb b;
	int wrote_hdr;
};

static void applier_open(struct applier *a)
{
	struct align_meta meta;
	if (align_load(opt.apply, &a->m, 0, &meta) < 0)
		die_lib();
	a->cap_n = a->m.cfg.queries > 0 ? 1024 : 256;
	a->m.qf_sets_limit = 1; /* one bag at a time */
	a->m.max_regions = a->cap_n;
	if (align_model_alloc(&a->m, a->cap_n, a->cap_n, 0) < 0)
		die_lib();
	align_hash(&a->m, a->hash);
	const char *slash = strrchr(opt.apply, '/');
	snprintf(a->model, sizeof a->model, "eosin-align:%s", slash ? slash + 1 : opt.apply);
	if (stream_writer_init(&a->w, 1, "<stdout>") < 0)
		die_lib();
	recb_init(&a->b);
}

static void applier_close(struct applier *a)
{
	recb_release(&a->b);
	free(a->img), free(a->txt), free(a->z), free(a->zt), free(a->pos), free(a->region);
	align_model_free(&a->m);
	prog_close_output(&a->w);
}

/* The image side of a bag or tile (its n rows already in a->img) to joint
 * rows in a->z; per_patch_txt: an MR-PLIP bag with a caption per patch,
 * which embeds each patch. Returns the rows, -1 after saying why. */
static int embed_image_side(struct applier *a, const char *name, struct record *rec, int n,
                            int is_bag, int per_patch_txt)
{
	struct align_bag ab = {.n = n, .img = a->img, .extent = 224.0f, .ntxt = 0};
	struct vec_view pv;
	double ext;
	if (is_bag && record_get_vec(rec, F_BAG_POS, &pv) == 0 && (int)pv.n == n && pv.dim == 2) {
		if (vec_to_f32(&pv, a->pos) == 0)
			ab.pos = a->pos;
		if (record_get_num(rec, F_BAG_EXTENT, &ext) == 0 && ext > 0)
			ab.extent = (float)ext;
	}
	/* a PathFLIP bag's regions feed the Region Q-Former */
	free(a->region);
	a->region = NULL;
	if (is_bag && bag_get_regions(rec, n, &ab.nregions, &a->region) < 0) {
		char idbuf[128];
		warnx("%s: record %" PRIu64 " (id '%s'): %s", name, rec->number,
		      record_id(rec, idbuf, sizeof idbuf), eosin_errmsg());
		return -1;
	}
	ab.region = a->region;
	if (per_patch_txt)
		ab.ntxt = n;
	int rows = align_bag_items(&a->m, &ab);
	if (align_embed_bag(&a->m, &ab, a->z) < 0)
		die_lib();
	return rows;
}

/* The record again with its joint_emb (rows of a->z) and, with both, its
 * joint_txt_emb (trows of a->zt) in place of any it had. */
static void write_joint(struct applier *a, struct record *rec, int rows, int both, int trows)
{
	static const char *const skip[] = {F_COMMON_JOINT_EMB, F_COMMON_JOINT_TXT_EMB, NULL};
	int dim = a->m.cfg.dim;
	char kind[64];
	snprintf(kind, sizeof kind, "%.*s", (int)rec->kind_len, rec->kind);
	recb_begin(&a->b, kind, (int)rec->version);
	recb_copy_fields(&a->b, rec, skip);
	pack_joint_emb(&a->b, F_COMMON_JOINT_EMB, a->z, rows, dim, a->model, a->hash);
	if (both)
		pack_joint_emb(&a->b, F_COMMON_JOINT_TXT_EMB, a->zt, trows, dim, a->model, a->hash);
	if (recb_write(&a->b, &a->w) < 0)
		die_lib();
}

/* One record of the input: hdr records pass, and the first other one is
 * preceded by --apply's own hdr; a record with an embedding is written with
 * its joint rows, one without passes unchanged. -1 after saying why. */
static int apply_record(struct applier *a, const char *name, struct record *rec)
{
	const struct align_config *c = &a->m.cfg;
	if (record_is(rec, "hdr")) {
		if (stream_write_record(&a->w, rec) < 0)
			die_lib();
		return 0;
	}
	if (!a->wrote_hdr) {
		recb_hdr(&a->b, "eosin-align", full_argc, full_argv);
		recb_str(&a->b, "model", a->model);
		recb_str(&a->b, "hash", a->hash);
		if (recb_write(&a->b, &a->w) < 0)
			die_lib();
		a->wrote_hdr = 1;
	}
	int is_bag = record_is(rec, BAG_KIND), is_text = record_is(rec, "text");
	struct vec_view vi, vt;
	int hi = record_get_vec(rec, F_COMMON_IMG_EMB, &vi);
	int ht = record_get_vec(rec, F_COMMON_TXT_EMB, &vt);
	if (hi < 0 || ht < 0) {
		warnx("%s: %s", name, eosin_errmsg());
		return -1;
	}
	int use_text = ht == 0 && (is_text || (!is_bag && hi != 0));
	int use_img = !use_text && hi == 0;
	if (!use_text && !use_img) {
		if (stream_write_record(&a->w, rec) < 0)
			die_lib();
		return 0;
	}
	char idbuf[128];
	const struct vec_view *v = use_text ? &vt : &vi;
	const char *field = use_text ? "txt_emb" : "img_emb";
	int want = use_text ? c->txt_dim : c->img_dim;
	if ((int)v->dim != want) {
		warnx("%s: record %" PRIu64 " (id '%s'): field '%s' has dim %u, the head "
		      "'%s' wants %d", name, rec->number, record_id(rec, idbuf, sizeof idbuf), field,
		      v->dim, opt.apply, want);
		return -1;
	}
	int n = (int)v->n, rows = n;
	reserve_rows(&a->m, &a->cap_n, n, &a->img, &a->txt, &a->z, &a->zt, &a->pos);
	if (vec_to_f32(v, use_text ? a->txt : a->img) < 0) {
		warnx("%s: record %" PRIu64 " (id '%s'): field '%s': %s", name, rec->number,
		      record_id(rec, idbuf, sizeof idbuf), field, eosin_errmsg());
		return -1;
	}
	if (use_text)
		align_embed_text(&a->m, a->txt, n, a->z);
	else if ((rows = embed_image_side(a, name, rec, n, is_bag,
	                                  is_bag && ht == 0 && (int)vt.n == n)) < 0)
		return -1;
	/* A record with an image side and a caption (a captioned bag, a tile
	 * with its caption) gets both projections, so that eosin-query
	 * --eval-retrieval can pair them. */
	int both = use_img && ht == 0 && (int)vt.dim == c->txt_dim;
	int trows = both ? (int)vt.n : 0;
	if (both) {
		reserve_rows(&a->m, &a->cap_n, trows, &a->img, &a->txt, &a->z, &a->zt, &a->pos);
		if (vec_to_f32(&vt, a->txt) < 0) {
			warnx("%s: record %" PRIu64 " (id '%s'): field 'txt_emb': %s", name,
			      rec->number, record_id(rec, idbuf, sizeof idbuf), eosin_errmsg());
			return -1;
		}
		align_embed_text(&a->m, a->txt, trows, a->zt);
	}
	write_joint(a, rec, rows, both, trows);
	return 0;
}

static int apply(int argc, char **argv)
{
	struct applier a = {.wrote_hdr = 0};
	applier_open(&a);
	int failed = 0;
	static char *stdin_only[] = {"-", NULL};
	if (argc == 0)
		argc = 1, argv = stdin_only;
	for (int i = 0; i < argc && !failed; i++) {
		struct stream_reader r;
		struct record rec;
		int ret;
		if (stream_reader_open(&r, argv[i]) < 0)
			die_lib();
		while ((ret = stream_read(&r, &rec)) == 1)
			if (apply_record(&a, r.name, &rec) < 0) {
				failed = 1;
				break;
			}
		if (ret < 0) {
			warn_lib();
			failed = 1;
		}
		stream_reader_release(&r);
	}
	applier_close(&a);
	return failed;
}

static const struct option long_opts[] = {
    {"train", no_argument, 0, 'T'},         {"apply", required_argument, 0, 'A'},
    {"out", required_argument, 0, 'o'},     {"resume", required_argument, 0, 'R'},
    {"dim", required_argument, 0, 'd'},     {"hidden", required_argument, 0, 'H'},
    {"queries", required_argument, 0, 'q'}, {"qdim", required_argument, 0, 'W'},
    {"heads", required_argument, 0, 'h'},   {"qformer-layers", required_argument, 0, 'L'},
    {"ffn", required_argument, 0, 'F'},     {"loss", required_argument, 0, 'l'},
    {"topk", required_argument, 0, 'k'},    {"temp", required_argument, 0, 't'},
    {"batch", required_argument, 0, 'b'},   {"epochs", required_argument, 0, 'e'},
    {"steps", required_argument, 0, 's'},   {"lr", required_argument, 0, 'r'},
    {"min-lr", required_argument, 0, 'm'},  {"warmup", required_argument, 0, 'u'},
    {"wd", required_argument, 0, 'w'},      {"clip", required_argument, 0, 'c'},
    {"seed", required_argument, 0, 'S'},    {"save-every", required_argument, 0, 'v'},
    {"stop-after", required_argument, 0, 'X'}, {"val-frac", required_argument, 0, 'f'},
    {"eval-every", required_argument, 0, 'E'}, {"metrics", required_argument, 0, 'M'},
    {"plot", required_argument, 0, 'P'},    {"threads", required_argument, 0, 'j'},
    {"dtype", required_argument, 0, 'D'},   {"dump-grads", required_argument, 0, 'G'},
    {"vocab", required_argument, 0, 'V'},   {"text-vocab", required_argument, 0, 'N'},
    {"ctx", required_argument, 0, 'C'},     {"plm-prefix", required_argument, 0, 'p'},
    {0, 0, 0, 0},
};

/* The options into opt; *train for --train. Returns how many of argv's
 * words they took. */
static int parse_options(int argc, char **argv, int *train)
{
	int c;
	*train = 0;
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case 'T': *train = 1; break;
		case 'A': opt.apply = optarg; break;
		case 'o': opt.out = optarg; break;
		case 'R': opt.resume = optarg; break;
		case 'd': opt.cfg.dim = (int)prog_long("--dim", optarg, 1, 65536); break;
		case 'H': opt.cfg.hidden = (int)prog_long("--hidden", optarg, 0, 65536); break;
		case 'q': opt.cfg.queries = (int)prog_long("--queries", optarg, 0, 4096); break;
		case 'W': opt.cfg.qdim = (int)prog_long("--qdim", optarg, 4, 65536); break;
		case 'h': opt.cfg.heads = (int)prog_long("--heads", optarg, 1, 256); break;
		case 'L':
			opt.cfg.layers = (int)prog_long("--qformer-layers", optarg, 1, ALIGN_MAX_LAYERS);
			break;
		case 'F': opt.cfg.ffn = (int)prog_long("--ffn", optarg, 1, 1 << 20); break;
		case 'l': parse_losses(optarg); break;
		case 'k': opt.cfg.topk = (int)prog_long("--topk", optarg, 1, 1 << 20); break;
		case 't': opt.cfg.temp_init = (float)prog_double("--temp", optarg, 1e-3, 10); break;
		case 'b': opt.batch = (int)prog_long("--batch", optarg, 2, 1 << 20); break;
		case 'e': opt.epochs = (int)prog_long("--epochs", optarg, 1, 1 << 30); break;
		case 's': opt.steps = prog_long("--steps", optarg, 1, 1L << 40); break;
		case 'r': opt.lr = (float)prog_double("--lr", optarg, 0, 10); break;
		case 'm': opt.min_lr = (float)prog_double("--min-lr", optarg, 0, 10); break;
		case 'u':
			opt.warmup = prog_long("--warmup", optarg, 0, 1L << 40);
			opt.warmup_set = 1;
			break;
		case 'w': opt.wd = (float)prog_double("--wd", optarg, 0, 10); break;
		case 'c': opt.clip = (float)prog_double("--clip", optarg, 0, 1e9); break;
		case 'S': opt.seed = (uint64_t)prog_long("--seed", optarg, 0, LONG_MAX); break;
		case 'v': opt.save_every = prog_long("--save-every", optarg, 1, 1L << 40); break;
		case 'X': opt.stop_after = prog_long("--stop-after", optarg, 1, 1L << 40); break;
		case 'f': opt.val_frac = (float)prog_double("--val-frac", optarg, 0, 0.9); break;
		case 'E': opt.eval_every = prog_long("--eval-every", optarg, 1, 1L << 40); break;
		case 'M': opt.metrics = optarg; break;
		case 'P': opt.plot = optarg; break;
		case 'j': opt.threads = (int)prog_long("--threads", optarg, 1, 1024); break;
		case 'D':
			if (vec_dtype_parse(optarg, &opt.dtype) < 0 || opt.dtype == VEC_BF16)
				errx(EXIT_USAGE, "--dtype: want f32 or f16, not '%s'", optarg);
			break;
		case 'G': opt.dump_grads = optarg; break;
		case 'V': opt.vocab = optarg; break;
		case 'N': opt.cfg.vocab = (int)prog_long("--text-vocab", optarg, 2, 1 << 22); break;
		case 'C': opt.cfg.ctx = (int)prog_long("--ctx", optarg, 2, 4096); break;
		case 'p':
			opt.cfg.plm_prefix = (float)prog_double("--plm-prefix", optarg, 0, 1);
			break;
		default: usage();
		}
	}
	return optind;
}

int main(int argc, char **argv)
{
	/* Idle OpenMP threads sleep rather than spin after each parallel
	 * region, leaving the cores to the threads with work and to other
	 * programs. libgomp reads the policy when it loads, so set it and start
	 * again; if that fails, carry on as we are. */
	if (!getenv("OMP_WAIT_POLICY")) {
		setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
		execv("/proc/self/exe", argv);
	}
	int mode_train, used = parse_options(argc, argv, &mode_train);
	full_argc = argc, full_argv = argv;
	argc -= used;
	argv += used;
	if (mode_train == !!opt.apply)
		usage();
	if (mode_train && !opt.out)
		usage();
	if (mode_train && generative() && opt.cfg.queries <= 0)
		errx(EXIT_USAGE, "--loss itg, mlm and plm need a Q-Former (--queries Q)");
	if (opt.vocab && !(tokenizer = clip_tokenizer_load(opt.vocab)))
		die_lib();
	if (opt.cfg.queries > 0 && (opt.cfg.qdim % 4 || opt.cfg.qdim % opt.cfg.heads))
		errx(EXIT_USAGE, "--qdim %d must be a multiple of 4 and of --heads %d", opt.cfg.qdim,
		     opt.cfg.heads);
	/* one pool of threads: the model parallelises over bags and splits
	 * large products itself with OpenMP, each BLAS call on one thread */
	omp_set_num_threads(opt.threads);
	openblas_set_num_threads(1);
	if (opt.apply)
		return apply(argc, argv);
	static char *stdin_only[] = {"-", NULL};
	if (argc == 0)
		argc = 1, argv = stdin_only;
	return train(argc, argv);
}
