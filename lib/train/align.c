/*
 * align.c: the alignment model (heads, Q-Former) and its losses, forward and
 * backward. Layers are in align_layers.c, checkpoints in align_io.c, the
 * optimizer in optim.c. See align.h for the model and the buffer contract.
 *
 * Memory: align_model_alloc() makes one arena for the activations of the
 * largest batch (heads, losses) and of Q-Former runs: one set per run of a
 * batch when they fit in ALIGN_ACT_BUDGET, else fewer, and the backward
 * pass recomputes a run whose set another overwrote. After the first
 * training step (which makes the threads' gradient arrays) a step
 * allocates nothing.
 *
 * Threads: one pool, OpenMP's; BLAS is called one thread per call (the
 * program sets it). When every run has its own set, the bags of a batch go
 * through the Q-Formers in parallel, forward and backward, a thread summing
 * its bags' parameter gradients in its own array (bags dealt by cost, the
 * arrays added in thread order: the same sums for the same thread count).
 * Elsewhere the loops over rows and align_gemm() split the work.
 */
#include "train/align.h"
#include "train/align_text.h"
#include "core/rand.h"

#include "core/error.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parameters ---- */

static int add_param(struct align_model *m, const char *name, int rows, int cols, float decay)
{
	if (m->nparam >= ALIGN_MAX_PARAMS)
		return eosin_error("align: too many parameter tensors");
	struct align_param *p = &m->param[m->nparam];
	snprintf(p->name, sizeof p->name, "%s", name);
	p->rows = rows;
	p->cols = cols;
	p->count = (size_t)rows * (cols ? cols : 1);
	p->offset = m->nfloats;
	p->decay = decay;
	m->nfloats += p->count;
	return m->nparam++;
}

static void add_head(struct align_model *m, const char *side, int in, int *w1, int *b1, int *w2,
                     int *b2)
{
	const struct align_config *c = &m->cfg;
	char name[48];
	*w2 = *b2 = -1;
	if (c->hidden > 0) {
		snprintf(name, sizeof name, "%s.fc1.weight", side);
		*w1 = add_param(m, name, c->hidden, in, 1);
		snprintf(name, sizeof name, "%s.fc1.bias", side);
		*b1 = add_param(m, name, c->hidden, 0, 0);
		snprintf(name, sizeof name, "%s.fc2.weight", side);
		*w2 = add_param(m, name, c->dim, c->hidden, 1);
		snprintf(name, sizeof name, "%s.fc2.bias", side);
		*b2 = add_param(m, name, c->dim, 0, 0);
	} else {
		snprintf(name, sizeof name, "%s.fc1.weight", side);
		*w1 = add_param(m, name, c->dim, in, 1);
		snprintf(name, sizeof name, "%s.fc1.bias", side);
		*b1 = add_param(m, name, c->dim, 0, 0);
	}
}

/* Region and Slide Q-Formers (a Q-Former and the region loss) */
static int hierarchical(const struct align_model *m)
{
	return m->cfg.queries > 0 && m->cfg.w_region > 0;
}

/* One Q-Former's tensors under prefix, reading rows of width in */
static void add_qformer(struct align_model *m, const char *prefix, int in,
                        struct align_qformer_params *P)
{
	const struct align_config *c = &m->cfg;
	int W = c->qdim, F = c->ffn;
	char n[48];
#define P1(field, suffix, r, cc, d)                                                          \
	snprintf(n, sizeof n, "%s.%s", prefix, suffix);                                          \
	P->field = add_param(m, n, r, cc, d)
	P1(queries, "queries", c->queries, W, 0);
	P1(kvw, "kv_in.weight", W, in, 1);
	P1(kvb, "kv_in.bias", W, 0, 0);
#undef P1
	for (int l = 0; l < c->layers; l++) {
#define P2(field, suffix, r, cc, d)                                                          \
	snprintf(n, sizeof n, "%s.%d.%s", prefix, l, suffix);                                    \
	P->blk[l].field = add_param(m, n, r, cc, d)
		P2(ln1w, "ln1.weight", W, 0, 0);
		P2(ln1b, "ln1.bias", W, 0, 0);
		P2(qkvw, "self.qkv.weight", 3 * W, W, 1);
		P2(qkvb, "self.qkv.bias", 3 * W, 0, 0);
		P2(sow, "self.out.weight", W, W, 1);
		P2(sob, "self.out.bias", W, 0, 0);
		P2(ln2w, "ln2.weight", W, 0, 0);
		P2(ln2b, "ln2.bias", W, 0, 0);
		P2(cqw, "cross.q.weight", W, W, 1);
		P2(cqb, "cross.q.bias", W, 0, 0);
		P2(ckvw, "cross.kv.weight", 2 * W, W, 1);
		P2(ckvb, "cross.kv.bias", 2 * W, 0, 0);
		P2(cow, "cross.out.weight", W, W, 1);
		P2(cob, "cross.out.bias", W, 0, 0);
		P2(ln3w, "ln3.weight", W, 0, 0);
		P2(ln3b, "ln3.bias", W, 0, 0);
		P2(f1w, "ffn.fc1.weight", F, W, 1);
		P2(f1b, "ffn.fc1.bias", F, 0, 0);
		P2(f2w, "ffn.fc2.weight", W, F, 1);
		P2(f2b, "ffn.fc2.bias", W, 0, 0);
#undef P2
	}
	snprintf(n, sizeof n, "%s.ln_f.weight", prefix);
	P->lnfw = add_param(m, n, W, 0, 0);
	snprintf(n, sizeof n, "%s.ln_f.bias", prefix);
	P->lnfb = add_param(m, n, W, 0, 0);
}

/* The text decoder's own tensors (the self-attention is the Q-Former's) */
static void add_decoder(struct align_model *m)
{
	const struct align_config *c = &m->cfg;
	int W = c->qdim, F = c->ffn;
	char n[48];
	struct align_dec_params *D = &m->dec;
	D->tok = add_param(m, "dec.tok_emb", c->vocab, W, 1);
	D->pos = add_param(m, "dec.pos_emb", c->ctx, W, 1);
	for (int l = 0; l < c->layers; l++) {
#define P3(field, suffix, r, cc, d)                                                          \
	snprintf(n, sizeof n, "dec.%d.%s", l, suffix);                                           \
	D->blk[l].field = add_param(m, n, r, cc, d)
		P3(lnw, "ln.weight", W, 0, 0);
		P3(lnb, "ln.bias", W, 0, 0);
		P3(f1w, "ffn.fc1.weight", F, W, 1);
		P3(f1b, "ffn.fc1.bias", F, 0, 0);
		P3(f2w, "ffn.fc2.weight", W, F, 1);
		P3(f2b, "ffn.fc2.bias", W, 0, 0);
#undef P3
	}
	D->lnfw = add_param(m, "dec.ln_f.weight", W, 0, 0);
	D->lnfb = add_param(m, "dec.ln_f.bias", W, 0, 0);
	D->headb = add_param(m, "dec.head.bias", c->vocab, 0, 0);
}

int align_has_decoder(const struct align_model *m)
{
	return m->dec.tok >= 0;
}

int align_model_init(struct align_model *m, const struct align_config *cfg)
{
	memset(m, 0, sizeof *m);
	m->cfg = *cfg;
	const struct align_config *c = &m->cfg;
	if (c->img_dim <= 0 || c->txt_dim <= 0 || c->dim <= 0 || c->hidden < 0 || c->queries < 0)
		return eosin_error("align: bad model sizes");
	if (c->queries > 0) {
		if (c->qdim <= 0 || c->qdim % 4 || c->heads <= 0 || c->qdim % c->heads ||
		    c->layers < 1 || c->layers > ALIGN_MAX_LAYERS || c->ffn <= 0)
			return eosin_error("align: bad q-former sizes (qdim %d heads %d layers %d ffn %d)",
			                   c->qdim, c->heads, c->layers, c->ffn);
	}
	if (c->w_itg < 0 || c->w_mlm < 0 || c->w_plm < 0)
		return eosin_error("align: negative generative loss weight");
	if ((c->w_itg > 0 || c->w_mlm > 0 || c->w_plm > 0) && c->vocab <= 0)
		return eosin_error("align: ITG, MLM and PLM need a text decoder (vocab > 0)");
	if (c->vocab > 0) {
		if (c->queries <= 0)
			return eosin_error("align: the text decoder needs a Q-Former (queries > 0)");
		/* a block's query keys and values hold the image only after a
		 * cross-attention: the first block's are the learned queries alone */
		if (c->layers < 2)
			return eosin_error("align: the text decoder sees the image from the Q-Former's "
			                   "second block on: it needs 2 or more blocks, not %d",
			                   c->layers);
		if (c->vocab < 2 || c->ctx < 2 || !(c->plm_prefix >= 0 && c->plm_prefix <= 1))
			return eosin_error("align: bad text decoder (vocab %d ctx %d plm_prefix %g)",
			                   c->vocab, c->ctx, (double)c->plm_prefix);
	}
	m->p_scale = add_param(m, "logit_scale", 1, 0, 0);
	int vin = c->queries > 0 ? c->qdim : c->img_dim;
	add_head(m, "visual", vin, &m->p_vw1, &m->p_vb1, &m->p_vw2, &m->p_vb2);
	add_head(m, "text", c->txt_dim, &m->p_tw1, &m->p_tb1, &m->p_tw2, &m->p_tb2);
	memset(m->qfp, 0xff, sizeof m->qfp); /* every index -1 */
	if (c->queries > 0)
		add_qformer(m, "qformer", c->img_dim, &m->qfp[0]);
	if (c->queries > 0 && c->w_region > 0)
		add_qformer(m, "slide_qformer", c->qdim, &m->qfp[1]);
	memset(&m->dec, 0xff, sizeof m->dec);
	if (c->vocab > 0) /* right after the Q-Formers: their span (qformer_span) */
		add_decoder(m);
	m->p_iw1 = m->p_ib1 = m->p_iw2 = m->p_ib2 = -1;
	if (c->w_itm > 0) {
		int D = c->dim, Hi = c->hidden > 0 ? c->hidden : c->dim;
		m->p_iw1 = add_param(m, "itm.fc1.weight", Hi, 2 * D, 1);
		m->p_ib1 = add_param(m, "itm.fc1.bias", Hi, 0, 0);
		m->p_iw2 = add_param(m, "itm.fc2.weight", 1, Hi, 1);
		m->p_ib2 = add_param(m, "itm.fc2.bias", 1, 0, 0);
	}
	m->p_mqw = m->p_mqb = m->p_mkvw = m->p_mkvb = m->p_mow = m->p_mob = -1;
	m->p_pw1 = m->p_pb1 = m->p_pw2 = m->p_pb2 = -1;
	if (c->w_mrtva > 0) {
		int D = c->dim, Hp = c->hidden > 0 ? c->hidden : c->dim;
		m->p_mqw = add_param(m, "mm.q.weight", D, D, 1);
		m->p_mqb = add_param(m, "mm.q.bias", D, 0, 0);
		m->p_mkvw = add_param(m, "mm.kv.weight", 2 * D, D, 1);
		m->p_mkvb = add_param(m, "mm.kv.bias", 2 * D, 0, 0);
		m->p_mow = add_param(m, "mm.out.weight", D, D, 1);
		m->p_mob = add_param(m, "mm.out.bias", D, 0, 0);
		m->p_pw1 = add_param(m, "pred.fc1.weight", Hp, D, 1);
		m->p_pb1 = add_param(m, "pred.fc1.bias", Hp, 0, 0);
		m->p_pw2 = add_param(m, "pred.fc2.weight", D, Hp, 1);
		m->p_pb2 = add_param(m, "pred.fc2.bias", D, 0, 0);
	}
	for (int i = 0; i < m->nparam; i++)
		if (m->param[i].count == 0)
			return eosin_error("align: empty parameter '%s'", m->param[i].name);
	if (m->nparam >= ALIGN_MAX_PARAMS)
		return -1;
	m->params = calloc(m->nfloats, sizeof(float));
	m->grads = calloc(m->nfloats, sizeof(float));
	m->m = calloc(m->nfloats, sizeof(float));
	m->v = calloc(m->nfloats, sizeof(float));
	if (!m->params || !m->grads || !m->m || !m->v) {
		align_model_free(m);
		return eosin_error("align: out of memory for %zu parameters", m->nfloats);
	}
	return 0;
}

float *align_param_ptr(struct align_model *m, int idx)
{
	return idx < 0 ? NULL : m->params + m->param[idx].offset;
}

static float *gradp(struct align_model *m, int idx)
{
	return idx < 0 ? NULL : m->grads + m->param[idx].offset;
}

int align_param_find(const struct align_model *m, const char *name)
{
	for (int i = 0; i < m->nparam; i++)
		if (!strcmp(m->param[i].name, name))
			return i;
	return -1;
}


void align_model_randomize(struct align_model *m, uint64_t seed)
{
	uint64_t s = seed;
	for (int i = 0; i < m->nparam; i++) {
		struct align_param *p = &m->param[i];
		float *x = m->params + p->offset;
		const char *dot = strrchr(p->name, '.');
		int is_ln = strstr(p->name, ".ln") != NULL;
		if (i == m->p_scale) {
			x[0] = logf(1.0f / m->cfg.temp_init);
		} else if (i == m->qfp[0].queries || i == m->qfp[1].queries || i == m->dec.tok ||
		           i == m->dec.pos) {
			/* normal(0, 0.02) by Box-Muller */
			for (size_t e = 0; e < p->count; e++) {
				double u1 = splitmix64_uniform(&s), u2 = splitmix64_uniform(&s);
				x[e] = (float)(0.02 * sqrt(-2.0 * log(u1 + 1e-300)) * cos(2 * M_PI * u2));
			}
		} else if (is_ln && dot && !strcmp(dot, ".weight")) {
			for (size_t e = 0; e < p->count; e++)
				x[e] = 1.0f;
		} else if (p->cols == 0) {
			memset(x, 0, sizeof(float) * p->count); /* biases, LN shifts */
		} else {
			/* uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
			double a = 1.0 / sqrt((double)p->cols);
			for (size_t e = 0; e < p->count; e++)
				x[e] = (float)((2.0 * splitmix64_uniform(&s) - 1.0) * a);
		}
	}
}

/* ---- activations ---- */

static void gen_free(struct align_gen *G);

struct head_act {
	float *h1, *g, *y, *z, *norm; /* (N,Hd) (N,Hd) (N,D) (N,D) (N) */
	float *dh, *dg, *dy, *dz;     /* gradients of the same shapes */
};

/* What one Q-Former run reads: n rows of width dim and their positions */
struct qf_input {
	int n, dim;
	const float *x;               /* (n, dim) */
	const float *pos;             /* (n, 2) level-0 px, or NULL */
	float extent;
};

struct align_qf_act {
	float *xg, *pg;               /* (N,img_dim) (N,2): a region's rows, gathered */
	float *kv, *dkv;              /* (N,W) */
	struct {
		float *x_in, *ln1, *ln1m, *ln1r, *qkv, *satt, *sP, *x1;
		float *ln2, *ln2m, *ln2r, *cq, *ckv, *catt, *cP, *x2;
		float *ln3, *ln3m, *ln3r, *fh, *fg;
	} l[ALIGN_MAX_LAYERS];
	float *x_out, *lnf, *lnfm, *lnfr; /* (Q,W) (Q,W) (Q) (Q) */
	float *dx, *dln, *dqkv, *datt, *dcq, *dckv, *dfh, *dfg; /* grads */
	float *scratch;               /* (Q, max(N,Q)) */
	float *pooled;                /* (W) when recomputing */
	struct qf_input in;           /* what the run read */
	const struct align_bag *bag;  /* whose activations these are: the bag, */
	int part;                     /* and its region, or -1 for the whole bag */
};

/* MR-PLIP multimodal encoder and predictor, for R items, K keyword rows,
 * k = topk keywords per item, hidden Hp */
struct align_mm_act {
	float *mq, *dmq;          /* (R,D) queries Wq v */
	float *mkv, *dmkv;        /* (K,2D) keys and values of every keyword */
	float *g, *dg;            /* (R,k,2D) each item's top-k keys/values; (k,2D) */
	float *att, *ascratch;    /* (R,k) attention; (k) */
	float *mo, *dmo;          /* (R,D) attention output */
	float *f, *df;            /* (R,D) text-guided feature f = v + Wo mo */
	float *ph, *pg, *dph, *dpg; /* (R,Hp) predictor hidden, after GELU */
	float *py, *dpy;          /* (R,D) predictor output */
	float *nf, *nfn;          /* (R,D) f / |f|, (R) |f| */
	float *np, *npn, *dnp;    /* (R,D) py / |py|, (R) |py|, (R,D) grad */
	float *sims;              /* (K) */
	int *topidx;              /* (R,k) */
};

/* image-text matching over P = 3R pairs */
struct align_itm_act {
	float *u, *du;            /* (P, 2D) fused pair features */
	float *pre, *h, *dpre, *dh; /* (P, Hi) */
	float *logit, *dlogit;    /* (P) */
	int *pair;                /* (P, 2) image row, text row */
};

struct align_batch_act {
	float *vin, *dvin;            /* (max_items + max_regions, vin) */
	float *rpos;                  /* (max_regions, 2) regions' mean positions */
	float *tin;                   /* (max_items + max_kw, txt_dim) */
	struct head_act vis, txt;
	float *logits;                /* (2 max_items + 2, max_items) */
	float *nce;                   /* (2, max_kw) */
	float *gnce;                  /* (2, max_regions, max_sents) */
	int *rgid, *sgid;             /* (max_regions) (max_sents): bag of each row */
	int *order;                   /* (max_kw) */
	/* per bag of a batch (max_items): first item row, first Q-Former run,
	 * first region row, owning thread, cost, and the bags by cost */
	int *item0, *run0, *grow0, *owner, *bag_order;
	long *bag_cost;
};

/* Carve n floats from the arena (or count them when base is NULL). */
static float *carve(float *base, size_t *used, size_t n)
{
	float *p = base ? base + *used : NULL;
	*used += (n + 15) & ~(size_t)15; /* 64-byte aligned pieces */
	return p;
}

static void head_carve(struct head_act *h, float *base, size_t *used, int N, int Hd, int D)
{
	h->h1 = carve(base, used, (size_t)N * Hd);
	h->g = carve(base, used, (size_t)N * Hd);
	h->dh = carve(base, used, (size_t)N * Hd);
	h->dg = carve(base, used, (size_t)N * Hd);
	h->y = carve(base, used, (size_t)N * D);
	h->z = carve(base, used, (size_t)N * D);
	h->dy = carve(base, used, (size_t)N * D);
	h->dz = carve(base, used, (size_t)N * D);
	h->norm = carve(base, used, (size_t)N);
}

/* One bag's Q-Former activations and gradient scratch, for max_n patches */
static void qf_carve(struct align_model *m, struct align_qf_act *q, float *base, size_t *usedp)
{
	const struct align_config *c = &m->cfg;
	size_t used = *usedp;
		int N = m->max_n, Q = c->queries, W = c->qdim, H = c->heads, F = c->ffn;
	q->xg = carve(base, &used, (size_t)N * c->img_dim);
	q->pg = carve(base, &used, (size_t)N * 2);
	q->kv = carve(base, &used, (size_t)N * W);
	q->dkv = carve(base, &used, (size_t)N * W);
	for (int l = 0; l < c->layers; l++) {
		q->l[l].x_in = carve(base, &used, (size_t)Q * W);
		q->l[l].ln1 = carve(base, &used, (size_t)Q * W);
		q->l[l].ln1m = carve(base, &used, Q);
		q->l[l].ln1r = carve(base, &used, Q);
		q->l[l].qkv = carve(base, &used, (size_t)Q * 3 * W);
		q->l[l].satt = carve(base, &used, (size_t)Q * W);
		q->l[l].sP = carve(base, &used, (size_t)H * Q * Q);
		q->l[l].x1 = carve(base, &used, (size_t)Q * W);
		q->l[l].ln2 = carve(base, &used, (size_t)Q * W);
		q->l[l].ln2m = carve(base, &used, Q);
		q->l[l].ln2r = carve(base, &used, Q);
		q->l[l].cq = carve(base, &used, (size_t)Q * W);
		q->l[l].ckv = carve(base, &used, (size_t)N * 2 * W);
		q->l[l].catt = carve(base, &used, (size_t)Q * W);
		q->l[l].cP = carve(base, &used, (size_t)H * Q * N);
		q->l[l].x2 = carve(base, &used, (size_t)Q * W);
		q->l[l].ln3 = carve(base, &used, (size_t)Q * W);
		q->l[l].ln3m = carve(base, &used, Q);
		q->l[l].ln3r = carve(base, &used, Q);
		q->l[l].fh = carve(base, &used, (size_t)Q * F);
		q->l[l].fg = carve(base, &used, (size_t)Q * F);
	}
	q->x_out = carve(base, &used, (size_t)Q * W);
	q->lnf = carve(base, &used, (size_t)Q * W);
	q->lnfm = carve(base, &used, Q);
	q->lnfr = carve(base, &used, Q);
	q->dx = carve(base, &used, (size_t)Q * W);
	q->dln = carve(base, &used, (size_t)Q * W);
	q->dqkv = carve(base, &used, (size_t)Q * 3 * W);
	q->datt = carve(base, &used, (size_t)Q * W);
	q->dcq = carve(base, &used, (size_t)Q * W);
	q->dckv = carve(base, &used, (size_t)N * 2 * W);
	q->dfh = carve(base, &used, (size_t)Q * F);
	q->dfg = carve(base, &used, (size_t)Q * F);
	q->scratch = carve(base, &used, (size_t)Q * (N > Q ? N : Q));
	q->pooled = carve(base, &used, W);
	*usedp = used;
}

static size_t arena_layout(struct align_model *m, float *base)
{
	const struct align_config *c = &m->cfg;
	size_t used = 0;
	struct align_batch_act *b = m->ba;
	int R = m->max_items, K = m->max_kw;
	int vin = c->queries > 0 ? c->qdim : c->img_dim;
	int Hd = c->hidden > 0 ? c->hidden : 1;
	int G = m->max_regions, S = m->max_sents;
	b->vin = carve(base, &used, (size_t)(R + G) * vin);
	b->dvin = carve(base, &used, (size_t)(R + G) * vin);
	b->rpos = carve(base, &used, (size_t)G * 2);
	b->tin = carve(base, &used, (size_t)(R + K + S) * c->txt_dim);
	head_carve(&b->vis, base, &used, R + G, Hd, c->dim);
	head_carve(&b->txt, base, &used, R + K + S, Hd, c->dim);
	b->gnce = carve(base, &used, 2 * (size_t)G * S);
	b->logits = carve(base, &used, (2 * (size_t)R + 2) * R);
	b->nce = carve(base, &used, 2 * (size_t)(K > 0 ? K : 1));
	if (c->w_itm > 0) {
		struct align_itm_act *t = m->itm;
		int P = 3 * R, D = c->dim, Hi = c->hidden > 0 ? c->hidden : c->dim;
		t->u = carve(base, &used, (size_t)P * 2 * D);
		t->du = carve(base, &used, (size_t)P * 2 * D);
		t->pre = carve(base, &used, (size_t)P * Hi);
		t->h = carve(base, &used, (size_t)P * Hi);
		t->dpre = carve(base, &used, (size_t)P * Hi);
		t->dh = carve(base, &used, (size_t)P * Hi);
		t->logit = carve(base, &used, P);
		t->dlogit = carve(base, &used, P);
	}
	if (c->w_mrtva > 0) {
		struct align_mm_act *a = m->mm;
		int D = c->dim, k = c->topk, Hp = c->hidden > 0 ? c->hidden : c->dim, KK = K > 0 ? K : 1;
		a->mq = carve(base, &used, (size_t)R * D);
		a->dmq = carve(base, &used, (size_t)R * D);
		a->mkv = carve(base, &used, (size_t)KK * 2 * D);
		a->dmkv = carve(base, &used, (size_t)KK * 2 * D);
		a->g = carve(base, &used, (size_t)R * k * 2 * D);
		a->dg = carve(base, &used, (size_t)k * 2 * D);
		a->att = carve(base, &used, (size_t)R * k);
		a->ascratch = carve(base, &used, k);
		a->mo = carve(base, &used, (size_t)R * D);
		a->dmo = carve(base, &used, (size_t)R * D);
		a->f = carve(base, &used, (size_t)R * D);
		a->df = carve(base, &used, (size_t)R * D);
		a->ph = carve(base, &used, (size_t)R * Hp);
		a->pg = carve(base, &used, (size_t)R * Hp);
		a->dph = carve(base, &used, (size_t)R * Hp);
		a->dpg = carve(base, &used, (size_t)R * Hp);
		a->py = carve(base, &used, (size_t)R * D);
		a->dpy = carve(base, &used, (size_t)R * D);
		a->nf = carve(base, &used, (size_t)R * D);
		a->nfn = carve(base, &used, R);
		a->np = carve(base, &used, (size_t)R * D);
		a->npn = carve(base, &used, R);
		a->dnp = carve(base, &used, (size_t)R * D);
		a->sims = carve(base, &used, KK);
	}
	if (c->queries > 0)
		for (int set = 0; set < m->qf_sets; set++)
			qf_carve(m, &m->qf[set], base, &used);
	return used;
}

static void batch_act_free(struct align_batch_act *b)
{
	if (!b)
		return;
	free(b->order);
	free(b->rgid);
	free(b->sgid);
	free(b->item0);
	free(b->run0);
	free(b->grow0);
	free(b->owner);
	free(b->bag_order);
	free(b->bag_cost);
	free(b);
}

int align_model_alloc(struct align_model *m, int max_n, int max_items, int max_kw)
{
	if (max_n < 1 || max_items < 1 || max_kw < 0)
		return eosin_error("align: bad activation sizes");
	free(m->act);
	free(m->qf);
	batch_act_free(m->ba);
	m->max_n = max_n;
	m->max_items = max_items;
	m->max_kw = max_kw;
	/* Q-Former activations for every bag of a batch (one item per bag)
	 * when they fit in ALIGN_ACT_BUDGET, else for one bag and recompute */
	m->qf_sets = 1;
	if (m->cfg.queries > 0) {
		struct align_qf_act probe = {0};
		size_t one = 0;
		qf_carve(m, &probe, NULL, &one);
		size_t fit = ALIGN_ACT_BUDGET / (one * sizeof(float));
		int runs = max_items + (hierarchical(m) ? m->max_regions : 0);
		m->qf_sets = runs < (int)(fit > 0 ? fit : 1) ? runs : (int)(fit > 0 ? fit : 1);
		if (m->qf_sets_limit > 0 && m->qf_sets > m->qf_sets_limit)
			m->qf_sets = m->qf_sets_limit;
	}
	m->qf = calloc((size_t)m->qf_sets, sizeof *m->qf);
	m->ba = calloc(1, sizeof *m->ba);
	if (!m->ba)
		return eosin_error("align: out of memory");
	m->ba->order = calloc((size_t)(max_kw > 0 ? max_kw : 1), sizeof(int));
	m->ba->rgid = calloc((size_t)m->max_regions + 1, sizeof(int));
	m->ba->sgid = calloc((size_t)m->max_sents + 1, sizeof(int));
	size_t nb = (size_t)max_items + 1;
	m->ba->item0 = calloc(nb, sizeof(int));
	m->ba->run0 = calloc(nb, sizeof(int));
	m->ba->grow0 = calloc(nb, sizeof(int));
	m->ba->owner = calloc(nb, sizeof(int));
	m->ba->bag_order = calloc(nb, sizeof(int));
	m->ba->bag_cost = calloc(nb, sizeof(long));
	if (!m->ba->item0 || !m->ba->run0 || !m->ba->grow0 || !m->ba->owner || !m->ba->bag_order ||
	    !m->ba->bag_cost)
		return eosin_error("align: out of memory");
	if (m->mm)
		free(m->mm->topidx);
	free(m->mm);
	m->mm = calloc(1, sizeof *m->mm);
	if (m->itm)
		free(m->itm->pair);
	free(m->itm);
	m->itm = calloc(1, sizeof *m->itm);
	if (m->itm)
		m->itm->pair = calloc((size_t)6 * max_items, sizeof(int));
	if (!m->itm || !m->itm->pair)
		return eosin_error("align: out of memory");
	if (m->mm)
		m->mm->topidx = calloc((size_t)max_items * (m->cfg.topk > 0 ? m->cfg.topk : 1),
		                       sizeof(int));
	if (!m->qf || !m->ba || !m->ba->order || !m->mm || !m->mm->topidx)
		return eosin_error("align: out of memory");
	m->act_floats = arena_layout(m, NULL);
	m->act = aligned_alloc(64, m->act_floats * sizeof(float));
	if (!m->act)
		return eosin_error("align: out of memory for %zu activation floats", m->act_floats);
	memset(m->act, 0, m->act_floats * sizeof(float));
	arena_layout(m, m->act);
	return 0;
}

void align_model_free(struct align_model *m)
{
	free(m->params);
	free(m->grads);
	free(m->m);
	free(m->v);
	free(m->act);
	batch_act_free(m->ba);
	free(m->qf);
	free(m->thread_grads);
	m->thread_grads = NULL;
	gen_free(m->gen);
	m->gen = NULL;
	m->thread_grad_sets = 0;
	if (m->mm)
		free(m->mm->topidx);
	free(m->mm);
	m->mm = NULL;
	if (m->itm)
		free(m->itm->pair);
	free(m->itm);
	m->itm = NULL;
	m->params = m->grads = m->m = m->v = m->act = NULL;
	m->ba = NULL;
	m->qf = NULL;
}

/* ---- heads: Linear, or Linear-GELU-Linear, then L2 norm ---- */

static void head_forward(struct align_model *m, struct head_act *h, const float *x, int N, int C,
                         int w1, int b1, int w2, int b2)
{
	int D = m->cfg.dim, Hd = m->cfg.hidden;
	if (Hd > 0) {
		linear_forward(h->h1, x, align_param_ptr(m, w1), align_param_ptr(m, b1), N, C, Hd);
		align_gelu_forward(h->g, h->h1, (size_t)N * Hd);
		linear_forward(h->y, h->g, align_param_ptr(m, w2), align_param_ptr(m, b2), N, Hd, D);
	} else {
		linear_forward(h->y, x, align_param_ptr(m, w1), align_param_ptr(m, b1), N, C, D);
	}
	l2norm_forward(h->z, h->norm, h->y, N, D);
}

/* h->dz (N,D) holds dloss/dz; dx (N,C) accumulates, may be NULL */
static void head_backward(struct align_model *m, struct head_act *h, float *dx, const float *x,
                          int N, int C, int w1, int b1, int w2, int b2)
{
	int D = m->cfg.dim, Hd = m->cfg.hidden;
	memset(h->dy, 0, sizeof(float) * N * D);
	l2norm_backward(h->dy, h->dz, h->z, h->norm, N, D);
	if (Hd > 0) {
		memset(h->dg, 0, sizeof(float) * N * Hd);
		memset(h->dh, 0, sizeof(float) * N * Hd);
		linear_backward(h->dg, gradp(m, w2), gradp(m, b2), h->dy, h->g, align_param_ptr(m, w2),
		                N, Hd, D);
		align_gelu_backward(h->dh, h->h1, h->dg, (size_t)N * Hd);
		linear_backward(dx, gradp(m, w1), gradp(m, b1), h->dh, x, align_param_ptr(m, w1), N, C,
		                Hd);
	} else {
		linear_backward(dx, gradp(m, w1), gradp(m, b1), h->dy, x, align_param_ptr(m, w1), N, C,
		                D);
	}
}

/* ---- Q-Former (pre-LN blocks) over one set of rows ---- */

/* pooled (W) = mean over queries of LN_f(blocks(queries, kv(in))), with the
 * Q-Former P; the run's activations stay in a (a->in keeps the input) */
static void qformer_forward(struct align_model *m, const struct align_qformer_params *P,
                            struct align_qf_act *a, const struct qf_input *in, float *pooled)
{
	const struct align_config *c = &m->cfg;
	int N = in->n, Q = c->queries, W = c->qdim, H = c->heads, F = c->ffn, hd = W / H;
	a->in = *in;
	linear_forward(a->kv, in->x, align_param_ptr(m, P->kvw), align_param_ptr(m, P->kvb), N,
	               in->dim, W);
	if (in->pos)
		posenc2d_add(a->kv, in->pos, in->extent, N, W);
	memcpy(a->l[0].x_in, align_param_ptr(m, P->queries), sizeof(float) * Q * W);
	for (int l = 0; l < c->layers; l++) {
		__typeof__(a->l[0]) *L = &a->l[l];
		__typeof__(P->blk[0]) *B = &P->blk[l];
		float *x_out = l + 1 < c->layers ? a->l[l + 1].x_in : a->x_out;
		/* x1 = x + SelfAttn(LN1(x)) */
		align_layernorm_forward(L->ln1, L->ln1m, L->ln1r, L->x_in, align_param_ptr(m, B->ln1w),
		                        align_param_ptr(m, B->ln1b), Q, W);
		linear_forward(L->qkv, L->ln1, align_param_ptr(m, B->qkvw), align_param_ptr(m, B->qkvb),
		               Q, W, 3 * W);
		align_attention_forward(L->satt, L->sP, L->qkv, 3 * W, L->qkv + W, 3 * W,
		                        L->qkv + 2 * W, 3 * W, Q, Q, H, hd);
		linear_forward(L->x1, L->satt, align_param_ptr(m, B->sow), align_param_ptr(m, B->sob), Q,
		               W, W);
		for (int e = 0; e < Q * W; e++)
			L->x1[e] += L->x_in[e];
		/* x2 = x1 + CrossAttn(LN2(x1), kv) */
		align_layernorm_forward(L->ln2, L->ln2m, L->ln2r, L->x1, align_param_ptr(m, B->ln2w),
		                        align_param_ptr(m, B->ln2b), Q, W);
		linear_forward(L->cq, L->ln2, align_param_ptr(m, B->cqw), align_param_ptr(m, B->cqb), Q,
		               W, W);
		linear_forward(L->ckv, a->kv, align_param_ptr(m, B->ckvw), align_param_ptr(m, B->ckvb),
		               N, W, 2 * W);
		align_attention_forward(L->catt, L->cP, L->cq, W, L->ckv, 2 * W, L->ckv + W, 2 * W, Q, N,
		                        H, hd);
		linear_forward(L->x2, L->catt, align_param_ptr(m, B->cow), align_param_ptr(m, B->cob), Q,
		               W, W);
		for (int e = 0; e < Q * W; e++)
			L->x2[e] += L->x1[e];
		/* x_out = x2 + FFN(LN3(x2)) */
		align_layernorm_forward(L->ln3, L->ln3m, L->ln3r, L->x2, align_param_ptr(m, B->ln3w),
		                        align_param_ptr(m, B->ln3b), Q, W);
		linear_forward(L->fh, L->ln3, align_param_ptr(m, B->f1w), align_param_ptr(m, B->f1b), Q,
		               W, F);
		align_gelu_forward(L->fg, L->fh, (size_t)Q * F);
		linear_forward(x_out, L->fg, align_param_ptr(m, B->f2w), align_param_ptr(m, B->f2b), Q, F,
		               W);
		for (int e = 0; e < Q * W; e++)
			x_out[e] += L->x2[e];
	}
	align_layernorm_forward(a->lnf, a->lnfm, a->lnfr, a->x_out, align_param_ptr(m, P->lnfw),
	                        align_param_ptr(m, P->lnfb), Q, W);
	for (int w = 0; w < W; w++) {
		float s = 0.0f;
		for (int q = 0; q < Q; q++)
			s += a->lnf[q * W + w];
		pooled[w] = s / Q;
	}
}

/* parameter idx's gradient in the gradient array grads (nfloats) */
static float *grad_in(const struct align_model *m, float *grads, int idx)
{
	return grads + m->param[idx].offset;
}

/* dpooled (W): accumulate the run's parameter gradients into grads (an
 * array of nfloats laid out as m->grads), and d input into dx (n, dim)
 * unless it is NULL (patch embeddings are constants) */
static void qformer_backward(struct align_model *m, const struct align_qformer_params *P,
                             struct align_qf_act *a, const float *dpooled, float *dx, float *grads,
                             float *const *dkvq)
{
	const struct align_config *c = &m->cfg;
	int N = a->in.n, Q = c->queries, W = c->qdim, H = c->heads, F = c->ffn, hd = W / H;
	size_t QW = (size_t)Q * W;
	/* dlnf (Q,W): the mean spreads dpooled evenly; dx (Q,W) = d x_out */
	for (int q = 0; q < Q; q++)
		for (int w = 0; w < W; w++)
			a->dln[q * W + w] = dpooled[w] / Q;
	memset(a->dx, 0, sizeof(float) * QW);
	memset(a->dkv, 0, sizeof(float) * (size_t)N * W);
	align_layernorm_backward(a->dx, grad_in(m, grads, P->lnfw), grad_in(m, grads, P->lnfb),
	                         a->dln, a->x_out, align_param_ptr(m, P->lnfw), a->lnfm, a->lnfr, Q,
	                         W);
	for (int l = c->layers - 1; l >= 0; l--) {
		__typeof__(a->l[0]) *L = &a->l[l];
		__typeof__(P->blk[0]) *B = &P->blk[l];
		/* FFN: dx (d x_out) flows to x2 by the residual and through the FFN */
		memset(a->dfg, 0, sizeof(float) * Q * F);
		memset(a->dfh, 0, sizeof(float) * Q * F);
		memset(a->dln, 0, sizeof(float) * QW);
		linear_backward(a->dfg, grad_in(m, grads, B->f2w), grad_in(m, grads, B->f2b), a->dx,
		                L->fg, align_param_ptr(m, B->f2w), Q, F, W);
		align_gelu_backward(a->dfh, L->fh, a->dfg, (size_t)Q * F);
		linear_backward(a->dln, grad_in(m, grads, B->f1w), grad_in(m, grads, B->f1b),
		                a->dfh, L->ln3, align_param_ptr(m, B->f1w), Q, W, F);
		align_layernorm_backward(a->dx, grad_in(m, grads, B->ln3w),
		                         grad_in(m, grads, B->ln3b), a->dln, L->x2,
		                         align_param_ptr(m, B->ln3w), L->ln3m, L->ln3r, Q, W);
		/* cross-attention: dx is now d x2 */
		memset(a->datt, 0, sizeof(float) * QW);
		memset(a->dcq, 0, sizeof(float) * QW);
		memset(a->dckv, 0, sizeof(float) * (size_t)N * 2 * W);
		memset(a->dln, 0, sizeof(float) * QW);
		linear_backward(a->datt, grad_in(m, grads, B->cow), grad_in(m, grads, B->cob),
		                a->dx, L->catt, align_param_ptr(m, B->cow), Q, W, W);
		align_attention_backward(a->dcq, a->dckv, a->dckv + W, a->scratch, a->datt, L->cP, L->cq,
		                         W, L->ckv, 2 * W, L->ckv + W, 2 * W, Q, N, H, hd);
		linear_backward(a->dkv, grad_in(m, grads, B->ckvw), grad_in(m, grads, B->ckvb),
		                a->dckv, a->kv, align_param_ptr(m, B->ckvw), N, W, 2 * W);
		linear_backward(a->dln, grad_in(m, grads, B->cqw), grad_in(m, grads, B->cqb),
		                a->dcq, L->ln2, align_param_ptr(m, B->cqw), Q, W, W);
		align_layernorm_backward(a->dx, grad_in(m, grads, B->ln2w),
		                         grad_in(m, grads, B->ln2b), a->dln, L->x1,
		                         align_param_ptr(m, B->ln2w), L->ln2m, L->ln2r, Q, W);
		/* self-attention: dx is now d x1 */
		memset(a->datt, 0, sizeof(float) * QW);
		memset(a->dqkv, 0, sizeof(float) * QW * 3);
		if (dkvq) /* the text decoder's rows read these keys and values */
			for (int q = 0; q < Q; q++)
				for (int e = 0; e < 2 * W; e++)
					a->dqkv[(size_t)q * 3 * W + W + e] += dkvq[l][(size_t)q * 2 * W + e];
		memset(a->dln, 0, sizeof(float) * QW);
		linear_backward(a->datt, grad_in(m, grads, B->sow), grad_in(m, grads, B->sob),
		                a->dx, L->satt, align_param_ptr(m, B->sow), Q, W, W);
		align_attention_backward(a->dqkv, a->dqkv + W, a->dqkv + 2 * W, a->scratch, a->datt,
		                         L->sP, L->qkv, 3 * W, L->qkv + W, 3 * W, L->qkv + 2 * W, 3 * W,
		                         Q, Q, H, hd);
		linear_backward(a->dln, grad_in(m, grads, B->qkvw), grad_in(m, grads, B->qkvb),
		                a->dqkv, L->ln1, align_param_ptr(m, B->qkvw), Q, W, 3 * W);
		align_layernorm_backward(a->dx, grad_in(m, grads, B->ln1w),
		                         grad_in(m, grads, B->ln1b), a->dln, L->x_in,
		                         align_param_ptr(m, B->ln1w), L->ln1m, L->ln1r, Q, W);
	}
	float *dq = grad_in(m, grads, P->queries);
	for (size_t e = 0; e < QW; e++)
		dq[e] += a->dx[e];
	/* the positional encoding is a constant: dkv goes straight to kv_in */
	linear_backward(dx, grad_in(m, grads, P->kvw), grad_in(m, grads, P->kvb), a->dkv, a->in.x,
	                align_param_ptr(m, P->kvw), N, a->in.dim, W);
}

/* ---- the batch: items, heads, losses ---- */

/* Does the bag give one item per patch (an MR-PLIP bag with a caption per
 * patch, no Q-Former) or one for the whole bag? */
static int per_patch(const struct align_model *m, const struct align_bag *bag)
{
	return m->cfg.queries == 0 && bag->ntxt == bag->n && bag->n > 1;
}

int align_bag_items(const struct align_model *m, const struct align_bag *bag)
{
	return per_patch(m, bag) ? bag->n : 1;
}

/* PathFLIP region bags: region ids and sentences, no Q-Former */
static int region_bag(const struct align_model *m, const struct align_bag *bag)
{
	return m->cfg.queries == 0 && bag->region && bag->nregions > 0 && bag->sent &&
	       bag->nsent > 0;
}

int align_bag_regions(const struct align_model *m, const struct align_bag *bag)
{
	if (hierarchical(m))
		return bag->region && bag->nregions > 0 ? bag->nregions : 1;
	return m->cfg.w_region > 0 && region_bag(m, bag) ? bag->nregions : 0;
}

/* sub-captions the bag adds to a batch */
static int bag_sentences(const struct align_model *m, const struct align_bag *bag)
{
	return m->cfg.w_region > 0 && bag->sent && bag->nsent > 0 &&
	               (hierarchical(m) || region_bag(m, bag))
	           ? bag->nsent
	           : 0;
}

/* The Q-Former input of one run over bag: region `part` (its patches,
 * gathered into a's buffers), or the whole bag (part -1 without the Slide
 * Q-Former, or a bag without regions), or, for the Slide Q-Former (part
 * -1), the bag's region features (nr, qdim) at the regions' mean positions
 * rpos (nr, 2). */
static void qf_input_of(const struct align_model *m, struct align_qf_act *a,
                        const struct align_bag *bag, int part, const float *regions,
                        const float *rpos, struct qf_input *in)
{
	const struct align_config *c = &m->cfg;
	*in = (struct qf_input){.n = bag->n, .dim = c->img_dim, .x = bag->img, .pos = bag->pos,
	                        .extent = bag->extent};
	if (part >= 0 && bag->region) {
		int cnt = 0;
		for (int p = 0; p < bag->n; p++)
			if (bag->region[p] == part) {
				memcpy(a->xg + (size_t)cnt * c->img_dim, bag->img + (size_t)p * c->img_dim,
				       sizeof(float) * c->img_dim);
				if (bag->pos)
					memcpy(a->pg + 2 * cnt, bag->pos + 2 * p, sizeof(float) * 2);
				cnt++;
			}
		in->n = cnt;
		in->x = a->xg;
		in->pos = bag->pos ? a->pg : NULL;
	} else if (part < 0 && hierarchical(m)) {
		in->n = align_bag_regions(m, bag);
		in->dim = c->qdim;
		in->x = regions;
		in->pos = bag->pos ? rpos : NULL;
	}
}

/* out (C) = mean of the rows p of x (n, C) with region[p] == q (all rows
 * when region is NULL); 0 when there are none */
static void mean_rows(float *restrict out, const float *restrict x, const int *region, int q,
                      int n, int C)
{
	int cnt = 0;
	memset(out, 0, sizeof(float) * C);
	for (int p = 0; p < n; p++) /* row by row, along memory */
		if (!region || region[p] == q) {
			const float *xr = x + (size_t)p * C;
#pragma omp simd
			for (int d = 0; d < C; d++)
				out[d] += xr[d];
			cnt++;
		}
	float inv = cnt > 0 ? 1.0f / cnt : 0.0f;
	for (int d = 0; d < C; d++)
		out[d] *= inv;
}

/* The activation set of run t of a batch, and whether it still holds that
 * run (bag, part) */
static struct align_qf_act *qf_set(struct align_model *m, int t)
{
	return &m->qf[t % m->qf_sets];
}

static void qf_run(struct align_model *m, int t, const struct align_qformer_params *P,
                   const struct align_bag *bag, int part, const float *regions,
                   const float *rpos, float *pooled)
{
	struct align_qf_act *a = qf_set(m, t);
	struct qf_input in;
	qf_input_of(m, a, bag, part, regions, rpos, &in);
	qformer_forward(m, P, a, &in, pooled);
	a->bag = bag;
	a->part = part;
}

/* Q-Former runs of a bag: its regions' then its slide's, or one */
static int bag_runs(const struct align_model *m, const struct align_bag *bag)
{
	return hierarchical(m) ? align_bag_regions(m, bag) + 1 : 1;
}

/* Where each bag's Q-Former runs and region rows start: b->run0[i] (its
 * first run), b->grow0[i] (its first region row of vin, from R). Returns the
 * batch's runs. Bags with a Q-Former give one item each: item row i. */
static int plan_runs(struct align_model *m, const struct align_bag *bags, int nbags, int R)
{
	struct align_batch_act *b = m->ba;
	int t = 0, g = R;
	for (int i = 0; i < nbags; i++) {
		b->run0[i] = t;
		b->grow0[i] = g;
		t += bag_runs(m, &bags[i]);
		g += align_bag_regions(m, &bags[i]);
	}
	return t;
}

/* Can the bags' Q-Former runs go in parallel? Each needs its own
 * activation set, kept from forward to backward. */
static int runs_in_parallel(const struct align_model *m, int runs, int nbags)
{
	return runs <= m->qf_sets && nbags > 1 && omp_get_max_threads() > 1;
}

/* ---- text decoder: ITG, MLM, PLM ---- */

struct align_gen {
	struct align_text_dims d;
	int sets;                     /* activation sets (one per thread) */
	float *mem;                   /* sets x align_text_floats(d) */
	struct align_text_act *act;   /* (sets) */
	float *dkv;                   /* (sets, L, Q, 2W): d of the queries' keys, values */
	int32_t *tg;                  /* (sets, ctx) targets of a pass */
	int cap;                      /* bags the per-bag arrays hold */
	int32_t *mlm_in, *mlm_tgt;    /* (cap, ctx) */
	int *mlm_n;                   /* (cap) tokens MLM predicts */
	double *loss;                 /* (cap, 3): itg, mlm, plm sums */
	float scale[3];               /* w / predicted tokens of the batch */
	int ntok[3];
	const struct align_bag *dbag; /* decoding: the bag whose queries are up */
	int dset;                     /* and its Q-Former activation set */
	const struct align_qformer_params *dP;
};

static void gen_free(struct align_gen *G)
{
	if (!G)
		return;
	free(G->mem);
	free(G->act);
	free(G->dkv);
	free(G->tg);
	free(G->mlm_in);
	free(G->mlm_tgt);
	free(G->mlm_n);
	free(G->loss);
	free(G);
}

/* Activation sets for `sets` threads and per-bag arrays for nbags */
static int gen_reserve(struct align_model *m, int sets, int nbags)
{
	const struct align_config *c = &m->cfg;
	if (!m->gen) {
		m->gen = calloc(1, sizeof *m->gen);
		if (!m->gen)
			return eosin_error("align: out of memory");
		m->gen->d = (struct align_text_dims){.L = c->layers, .W = c->qdim, .H = c->heads,
		                                     .F = c->ffn, .Q = c->queries, .V = c->vocab,
		                                     .T = c->ctx};
	}
	struct align_gen *G = m->gen;
	if (sets > G->sets) {
		size_t one = align_text_floats(&G->d), kv = (size_t)c->layers * c->queries * 2 * c->qdim;
		free(G->mem), free(G->act), free(G->dkv), free(G->tg);
		G->sets = 0;
		G->mem = aligned_alloc(64, sizeof(float) * one * sets);
		G->act = calloc((size_t)sets, sizeof *G->act);
		G->dkv = calloc(kv * sets, sizeof(float));
		G->tg = calloc((size_t)sets * c->ctx, sizeof(int32_t));
		if (!G->mem || !G->act || !G->dkv || !G->tg)
			return eosin_error("align: out of memory for the text decoder");
		for (int t = 0; t < sets; t++)
			align_text_carve(&G->act[t], &G->d, G->mem + one * t);
		G->sets = sets;
	}
	if (nbags > G->cap) {
		free(G->mlm_in), free(G->mlm_tgt), free(G->mlm_n), free(G->loss);
		G->cap = 0;
		G->mlm_in = calloc((size_t)nbags * c->ctx, sizeof(int32_t));
		G->mlm_tgt = calloc((size_t)nbags * c->ctx, sizeof(int32_t));
		G->mlm_n = calloc((size_t)nbags, sizeof(int));
		G->loss = calloc((size_t)nbags * 3, sizeof(double));
		if (!G->mlm_in || !G->mlm_tgt || !G->mlm_n || !G->loss)
			return eosin_error("align: out of memory for the text decoder");
		G->cap = nbags;
	}
	return 0;
}

/* Does bag take part in the generative objectives? */
static int gen_bag_on(const struct align_model *m, const struct align_bag *bag)
{
	return align_has_decoder(m) && bag->tok && bag->ntok >= 2;
}

/* 64-bit FNV-1a over the tokens' little-endian bytes */
static uint64_t tokens_hash(const int32_t *tok, int n)
{
	uint64_t h = FNV1A64_INIT;
	for (int i = 0; i < n; i++) {
		uint32_t u = (uint32_t)tok[i];
		unsigned char le[4] = {u & 0xffu, (u >> 8) & 0xffu, (u >> 16) & 0xffu, u >> 24};
		h = fnv1a64(le, 4, h);
	}
	return h;
}

int align_mlm_mask(const struct align_model *m, uint64_t seed, const int32_t *tok, int n,
                   int32_t *in, int32_t *target)
{
	int V = m->cfg.vocab, chosen = 0;
	memcpy(in, tok, sizeof(int32_t) * n);
	for (int t = 0; t < n; t++)
		target[t] = -1;
	if (n < 3)
		return 0;
	uint64_t s = seed ^ tokens_hash(tok, n);
	for (int t = 1; t < n - 1; t++) /* never [SOT] or [EOT] */
		if (splitmix64_uniform(&s) < 0.15) {
			target[t] = tok[t];
			chosen++;
		}
	if (!chosen) {
		int t = 1 + (int)(splitmix64(&s) % (uint64_t)(n - 2));
		target[t] = tok[t];
		chosen = 1;
	}
	for (int t = 1; t < n - 1; t++) {
		if (target[t] < 0)
			continue;
		double u = splitmix64_uniform(&s);
		if (u < 0.8)
			in[t] = V - 1; /* [MASK] */
		else if (u < 0.9)
			in[t] = (int32_t)(splitmix64(&s) % (uint64_t)(V - 1));
	}
	return chosen;
}

/* PLM: rows [0, p) are the prefix; p - 1 predicts the first token after it */
static int plm_prefix_rows(const struct align_config *c, int ntok)
{
	int p = 1 + (int)floorf((float)(ntok - 2) * c->plm_prefix);
	return p < 1 ? 1 : (p > ntok - 1 ? ntok - 1 : p);
}

/* The batch's MLM choices and the tokens each objective predicts: the
 * gradient scales w / tokens */
static void gen_prepare(struct align_model *m, const struct align_bag *bags, int nbags)
{
	const struct align_config *c = &m->cfg;
	struct align_gen *G = m->gen;
	G->ntok[0] = G->ntok[1] = G->ntok[2] = 0;
	for (int i = 0; i < nbags; i++) {
		const struct align_bag *bag = &bags[i];
		G->mlm_n[i] = 0;
		if (!gen_bag_on(m, bag))
			continue;
		int T = bag->ntok;
		G->ntok[0] += T - 1;
		G->ntok[2] += T - plm_prefix_rows(c, T);
		if (c->w_mlm > 0)
			G->mlm_n[i] = align_mlm_mask(m, m->gen_seed, bag->tok, T,
			                             G->mlm_in + (size_t)i * c->ctx,
			                             G->mlm_tgt + (size_t)i * c->ctx);
		G->ntok[1] += G->mlm_n[i];
	}
	float w[3] = {c->w_itg, c->w_mlm, c->w_plm};
	for (int k = 0; k < 3; k++)
		G->scale[k] = G->ntok[k] > 0 ? w[k] / G->ntok[k] : 0.0f;
}

/* The pass tensors in base (m->params, or a gradient array laid out the
 * same): the decoder's, and the self-attention of the Q-Former P */
static void text_tensors(const struct align_model *m, float *base,
                         const struct align_qformer_params *P, struct align_text_w *w)
{
	const struct align_dec_params *D = &m->dec;
#define T_(i) (base + m->param[i].offset)
	w->tok = T_(D->tok), w->pos = T_(D->pos), w->lnfw = T_(D->lnfw), w->lnfb = T_(D->lnfb);
	w->headb = T_(D->headb);
	for (int l = 0; l < m->cfg.layers; l++) {
		w->blk[l].ln1w = T_(P->blk[l].ln1w), w->blk[l].ln1b = T_(P->blk[l].ln1b);
		w->blk[l].qkvw = T_(P->blk[l].qkvw), w->blk[l].qkvb = T_(P->blk[l].qkvb);
		w->blk[l].sow = T_(P->blk[l].sow), w->blk[l].sob = T_(P->blk[l].sob);
		w->blk[l].lnw = T_(D->blk[l].lnw), w->blk[l].lnb = T_(D->blk[l].lnb);
		w->blk[l].f1w = T_(D->blk[l].f1w), w->blk[l].f1b = T_(D->blk[l].f1b);
		w->blk[l].f2w = T_(D->blk[l].f2w), w->blk[l].f2b = T_(D->blk[l].f2b);
	}
#undef T_
}

/* The generative passes of bag i over the queries of its Q-Former run a
 * (parameters P) on activation set `set`: their summed cross-entropies into
 * gen->loss[3i..]; with grads, their gradients into grads and the
 * queries' keys/values' into the set's dkv (returned; NULL without) */
static float **gen_bag(struct align_model *m, const struct align_bag *bag, int i,
                       const struct align_qf_act *a, const struct align_qformer_params *P,
                       int set, float *grads, float **dkvq)
{
	const struct align_config *c = &m->cfg;
	struct align_gen *G = m->gen;
	double *out = G->loss + (size_t)3 * i;
	out[0] = out[1] = out[2] = 0.0;
	if (!gen_bag_on(m, bag))
		return NULL;
	int L = c->layers, Q = c->queries, W = c->qdim, T = bag->ntok, n;
	struct align_text_w w, g;
	const float *kvq[ALIGN_MAX_LAYERS];
	text_tensors(m, m->params, P, &w);
	if (grads)
		text_tensors(m, grads, P, &g);
	float *dkv = G->dkv + (size_t)set * L * Q * 2 * W;
	for (int l = 0; l < L; l++) {
		kvq[l] = a->l[l].qkv;
		dkvq[l] = dkv + (size_t)l * Q * 2 * W;
	}
	if (grads)
		memset(dkv, 0, sizeof(float) * L * Q * 2 * W);
	struct align_text_act *act = &G->act[set];
	int32_t *tg = G->tg + (size_t)set * c->ctx;
	const struct align_text_w *gp = grads ? &g : NULL;
	if (c->w_itg > 0) {
		for (int t = 0; t < T - 1; t++)
			tg[t] = bag->tok[t + 1];
		out[0] = align_text_pass(&G->d, &w, gp, act, kvq, dkvq, bag->tok, T - 1, 1, tg,
		                         G->scale[0], &n);
	}
	if (c->w_plm > 0) {
		int p = plm_prefix_rows(c, T);
		for (int t = 0; t < T - 1; t++)
			tg[t] = t >= p - 1 ? bag->tok[t + 1] : -1;
		out[2] = align_text_pass(&G->d, &w, gp, act, kvq, dkvq, bag->tok, T - 1, p, tg,
		                         G->scale[2], &n);
	}
	if (c->w_mlm > 0 && G->mlm_n[i] > 0)
		out[1] = align_text_pass(&G->d, &w, gp, act, kvq, dkvq,
		                         G->mlm_in + (size_t)i * c->ctx, T, T,
		                         G->mlm_tgt + (size_t)i * c->ctx, G->scale[1], &n);
	return grads ? dkvq : NULL;
}

/* Forward through the Q-Formers of bag i (first run t, first region row g)
 * into its item row of vin and, with the Slide Q-Former, its region rows */
static void bag_qformer_forward(struct align_model *m, const struct align_bag *bag, int i, int t,
                                int g, int R, float *vin)
{
	int W = m->cfg.qdim;
	float *row = vin + (size_t)i * W;
	if (!hierarchical(m)) {
		qf_run(m, t, &m->qfp[0], bag, -1, NULL, NULL, row);
		return;
	}
	int nr = align_bag_regions(m, bag);
	float *rp = m->ba->rpos + (size_t)(g - R) * 2;
	for (int q = 0; q < nr; q++) {
		qf_run(m, t + q, &m->qfp[0], bag, q, NULL, NULL, vin + (size_t)(g + q) * W);
		struct align_qf_act *a = qf_set(m, t + q);
		rp[2 * q] = rp[2 * q + 1] = 0.0f;
		for (int p = 0; p < a->in.n && a->in.pos; p++) {
			rp[2 * q] += a->in.pos[2 * p] / a->in.n;
			rp[2 * q + 1] += a->in.pos[2 * p + 1] / a->in.n;
		}
	}
	qf_run(m, t + nr, &m->qfp[1], bag, -1, vin + (size_t)g * W, rp, row);
}

/* Backward through the Q-Formers of bag i, its runs in reverse order: the
 * slide's before its regions' (it adds to their rows of dvin). A run whose
 * activation set another run overwrote is recomputed first. Parameter
 * gradients accumulate into grads (laid out as m->grads). */
/* The activation set of bag i's last Q-Former run (the one that gives its
 * item: the Slide Q-Former's with regions), recomputed when another run
 * overwrote it; *P its Q-Former */
static struct align_qf_act *item_run(struct align_model *m, const struct align_bag *bag, int t,
                                     int g, int R, const float *vin,
                                     const struct align_qformer_params **P)
{
	int W = m->cfg.qdim;
	struct align_qf_act *a;
	if (!hierarchical(m)) {
		*P = &m->qfp[0];
		a = qf_set(m, t);
		if (a->bag != bag || a->part != -1)
			qf_run(m, t, &m->qfp[0], bag, -1, NULL, NULL, a->pooled);
		return a;
	}
	int nr = align_bag_regions(m, bag);
	const float *rp = m->ba->rpos + (size_t)(g - R) * 2;
	*P = &m->qfp[1];
	a = qf_set(m, t + nr);
	if (a->bag != bag || a->part != -1)
		qf_run(m, t + nr, &m->qfp[1], bag, -1, vin + (size_t)g * W, rp, a->pooled);
	return a;
}

/* Backward through the text decoder's passes of bag i (on activation set
 * `set`), then its Q-Formers */
static void bag_qformer_backward(struct align_model *m, const struct align_bag *bag, int i, int t,
                                 int g, int R, const float *vin, float *dvin, float *grads,
                                 int set)
{
	int W = m->cfg.qdim;
	const struct align_qformer_params *P;
	float *dkvq[ALIGN_MAX_LAYERS];
	struct align_qf_act *a = item_run(m, bag, t, g, R, vin, &P);
	float **dk = align_has_decoder(m) ? gen_bag(m, bag, i, a, P, set, grads, dkvq) : NULL;
	if (!hierarchical(m)) {
		qformer_backward(m, P, a, dvin + (size_t)i * W, NULL, grads, dk);
		return;
	}
	int nr = align_bag_regions(m, bag);
	qformer_backward(m, P, a, dvin + (size_t)i * W, dvin + (size_t)g * W, grads, dk);
	for (int q = nr - 1; q >= 0; q--) {
		a = qf_set(m, t + q);
		if (a->bag != bag || a->part != q)
			qf_run(m, t + q, &m->qfp[0], bag, q, NULL, NULL, a->pooled);
		qformer_backward(m, &m->qfp[0], a, dvin + (size_t)(g + q) * W, NULL, grads, NULL);
	}
}

/* Image-side inputs of a batch: vin (R + G, vin_dim), the items' rows, then
 * the region rows of the bags that have them, in bag order. Q-Former runs
 * are numbered in this order (regions of a bag, then its slide); the bags'
 * runs go in parallel when each has its own activation set. */
static void visual_forward(struct align_model *m, const struct align_bag *bags, int nbags,
                           int R, float *vin)
{
	const struct align_config *c = &m->cfg;
	struct align_batch_act *b = m->ba;
	int vin_dim = c->queries > 0 ? c->qdim : c->img_dim, C = c->img_dim;
	if (c->queries > 0) {
		int par = runs_in_parallel(m, plan_runs(m, bags, nbags, R), nbags);
#pragma omp parallel for schedule(dynamic, 1) if (par)
		for (int i = 0; i < nbags; i++)
			bag_qformer_forward(m, &bags[i], i, b->run0[i], b->grow0[i], R, vin);
		return;
	}
	int r = 0, g = R;
	size_t patches = 0;
	for (int i = 0; i < nbags; i++) {
		b->item0[i] = r;
		b->grow0[i] = g;
		r += align_bag_items(m, &bags[i]);
		g += align_bag_regions(m, &bags[i]);
		patches += (size_t)bags[i].n;
	}
#pragma omp parallel for schedule(static) if (patches * C >= 1 << 20)
	for (int i = 0; i < nbags; i++) {
		const struct align_bag *bag = &bags[i];
		int nr = align_bag_regions(m, bag);
		float *row = vin + (size_t)b->item0[i] * vin_dim;
		if (per_patch(m, bag))
			memcpy(row, bag->img, sizeof(float) * bag->n * C);
		else
			mean_rows(row, bag->img, NULL, -1, bag->n, C);
		for (int q = 0; q < nr; q++) /* each region's mean patch */
			mean_rows(vin + (size_t)(b->grow0[i] + q) * vin_dim, bag->img, bag->region, q,
			          bag->n, C);
	}
}

/* Q-Former parameters: one span [*lo, *hi) of the flat arrays */
static void qformer_span(const struct align_model *m, size_t *lo, size_t *hi)
{
	int last = m->dec.headb >= 0   ? m->dec.headb
	           : m->qfp[1].lnfb >= 0 ? m->qfp[1].lnfb
	                                 : m->qfp[0].lnfb;
	*lo = m->param[m->qfp[0].queries].offset;
	*hi = m->param[last].offset + m->param[last].count;
}

/* Deal the bags to nt threads, the costliest first, each to the thread with
 * the least work so far (ties to the lowest): b->owner[i]. Depends only on
 * the batch and nt, so that each thread's sums run in a fixed order. */
static void deal_bags(struct align_model *m, const struct align_bag *bags, int nbags, int nt)
{
	struct align_batch_act *b = m->ba;
	long load[nt];
	int *order = b->bag_order;
	for (int t = 0; t < nt; t++)
		load[t] = 0;
	for (int i = 0; i < nbags; i++) { /* insertion sort by cost, then index */
		long cost = (long)bags[i].n + (long)m->cfg.queries * bag_runs(m, &bags[i]);
		b->bag_cost[i] = cost;
		int j = i;
		while (j > 0 && b->bag_cost[order[j - 1]] < cost) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (int k = 0; k < nbags; k++) {
		int best = 0;
		for (int t = 1; t < nt; t++)
			if (load[t] < load[best])
				best = t;
		b->owner[order[k]] = best;
		load[best] += b->bag_cost[order[k]];
	}
}

/* The Q-Formers' backward over a batch, bags in reverse order. In parallel,
 * thread 0 accumulates into m->grads and thread t > 0 into its own array
 * m->thread_grads[t - 1] (zero between steps), summed into m->grads after,
 * in thread order. */
static void visual_backward(struct align_model *m, const struct align_bag *bags, int nbags, int R,
                            const float *vin, float *dvin)
{
	const struct align_config *c = &m->cfg;
	struct align_batch_act *b = m->ba;
	if (c->queries == 0)
		return;
	int runs = plan_runs(m, bags, nbags, R);
	int nt = omp_get_max_threads();
	if (nt > m->thread_grad_sets + 1)
		nt = m->thread_grad_sets + 1;
	if (!runs_in_parallel(m, runs, nbags) || nt < 2) {
		for (int i = nbags - 1; i >= 0; i--)
			bag_qformer_backward(m, &bags[i], i, b->run0[i], b->grow0[i], R, vin, dvin,
			                     m->grads, 0);
		return;
	}
	int used = 1;
#pragma omp parallel num_threads(nt)
	{
		int tid = omp_get_thread_num();
#pragma omp single
		{
			used = omp_get_num_threads();
			deal_bags(m, bags, nbags, used);
		}
		float *grads =
		    tid == 0 ? m->grads : m->thread_grads + (size_t)(tid - 1) * m->nfloats;
		for (int i = nbags - 1; i >= 0; i--)
			if (b->owner[i] == tid)
				bag_qformer_backward(m, &bags[i], i, b->run0[i], b->grow0[i], R,
				                     vin, dvin, grads, tid);
	}
	size_t lo, hi, block = 4096;
	qformer_span(m, &lo, &hi);
#pragma omp parallel for schedule(static)
	for (size_t s = lo; s < hi; s += block) {
		size_t e_end = s + block < hi ? s + block : hi;
		for (int t = 1; t < used; t++) {
			float *tg = m->thread_grads + (size_t)(t - 1) * m->nfloats;
#pragma omp simd
			for (size_t e = s; e < e_end; e++) {
				m->grads[e] += tg[e];
				tg[e] = 0.0f;
			}
		}
	}
}

/* ---- MR-PLIP: multimodal encoder + MRTVA (SimSiam, parent vs child) ---- */

static int mrtva_bag(const struct align_model *m, const struct align_bag *bag)
{
	return bag->kw && bag->nkw > 0 && bag->parent && per_patch(m, bag);
}

/* Where the next bag's rows start: items r.., keyword rows kr.. */
static void mrtva_advance(const struct align_model *m, const struct align_bag *bag, int *r,
                          int *kr)
{
	const struct align_config *c = &m->cfg;
	*r += align_bag_items(m, bag);
	if (bag->kw && per_patch(m, bag) && (c->w_cvta > 0 || c->w_mrtva > 0))
		*kr += bag->nkw;
}

/* The first kk keyword rows of zk (M of them) by similarity to item v, into
 * top, ties by index; sims is scratch for M. */
static void mrtva_topk(float *sims, int *top, const float *v, const float *zk, int M, int D,
                       int kk)
{
	for (int j = 0; j < M; j++) {
		float d = 0.0f;
		for (int e = 0; e < D; e++)
			d += v[e] * zk[(size_t)j * D + e];
		sims[j] = d;
	}
	for (int t = 0; t < kk; t++) {
		int best = -1;
		for (int j = 0; j < M; j++) {
			int used = 0;
			for (int u = 0; u < t; u++)
				used |= top[u] == j;
			if (!used && (best < 0 || sims[j] > sims[best]))
				best = j;
		}
		top[t] = best;
	}
}

/* One bag's forward over its items r.. and keyword rows kr..: each item
 * attends to its top-k keywords, f = v + Wo mo, the predictor p(f), both
 * normalised. Returns the bag's (child, parent) pairs. */
static int mrtva_bag_forward(struct align_model *m, const struct align_bag *bag, int r, int kr,
                             int R)
{
	const struct align_config *c = &m->cfg;
	struct align_batch_act *b = m->ba;
	struct align_mm_act *a = m->mm;
	int D = c->dim, Hp = c->hidden > 0 ? c->hidden : c->dim, k = c->topk;
	int n = align_bag_items(m, bag), M = bag->nkw, kk = k < M ? k : M, npairs = 0;
	const float *v = b->vis.z + (size_t)r * D, *zk = b->txt.z + (size_t)kr * D;
	linear_forward(a->mq + (size_t)r * D, v, align_param_ptr(m, m->p_mqw),
	               align_param_ptr(m, m->p_mqb), n, D, D);
	linear_forward(a->mkv + (size_t)(kr - R) * 2 * D, zk, align_param_ptr(m, m->p_mkvw),
	               align_param_ptr(m, m->p_mkvb), M, D, 2 * D);
	for (int p = 0; p < n; p++) {
		int it = r + p, *top = a->topidx + (size_t)it * k;
		mrtva_topk(a->sims, top, v + (size_t)p * D, zk, M, D, kk);
		float *g = a->g + (size_t)it * k * 2 * D;
		for (int t = 0; t < kk; t++)
			memcpy(g + (size_t)t * 2 * D, a->mkv + (size_t)(kr - R + top[t]) * 2 * D,
			       sizeof(float) * 2 * D);
		align_attention_forward(a->mo + (size_t)it * D, a->att + (size_t)it * k,
		                        a->mq + (size_t)it * D, D, g, 2 * D, g + D, 2 * D, 1, kk, 1, D);
		if (bag->parent[p] >= 0 && bag->parent[p] < n && bag->parent[p] != p)
			npairs++;
	}
	linear_forward(a->f + (size_t)r * D, a->mo + (size_t)r * D, align_param_ptr(m, m->p_mow),
	               align_param_ptr(m, m->p_mob), n, D, D);
	for (size_t e = 0; e < (size_t)n * D; e++)
		a->f[(size_t)r * D + e] += v[e];
	linear_forward(a->ph + (size_t)r * Hp, a->f + (size_t)r * D, align_param_ptr(m, m->p_pw1),
	               align_param_ptr(m, m->p_pb1), n, D, Hp);
	align_gelu_forward(a->pg + (size_t)r * Hp, a->ph + (size_t)r * Hp, (size_t)n * Hp);
	linear_forward(a->py + (size_t)r * D, a->pg + (size_t)r * Hp, align_param_ptr(m, m->p_pw2),
	               align_param_ptr(m, m->p_pb2), n, Hp, D);
	l2norm_forward(a->nf + (size_t)r * D, a->nfn + r, a->f + (size_t)r * D, n, D);
	l2norm_forward(a->np + (size_t)r * D, a->npn + r, a->py + (size_t)r * D, n, D);
	return npairs;
}

/* The loss summed over all pairs, -1/2 [np_c . sg(nf_p) + np_p . sg(nf_c)]
 * each, and its gradient into a->dnp, scaled by w / npairs. */
static double mrtva_loss(struct align_model *m, const struct align_bag *bags, int nbags, int R,
                         int npairs, float w)
{
	struct align_mm_act *a = m->mm;
	int D = m->cfg.dim;
	double loss = 0.0;
	float scale = w / npairs;
	const float *nf = m->mrtva_fixed_targets ? m->mrtva_fixed_targets : a->nf;
	int r = 0;
	memset(a->dnp, 0, sizeof(float) * R * D);
	for (int i = 0; i < nbags; i++) {
		const struct align_bag *bag = &bags[i];
		int items = align_bag_items(m, bag);
		if (mrtva_bag(m, bag))
			for (int p = 0; p < items; p++) {
				int q = bag->parent[p];
				if (q < 0 || q >= items || q == p)
					continue;
				const float *npc = a->np + (size_t)(r + p) * D, *npp = a->np + (size_t)(r + q) * D;
				const float *nfc = nf + (size_t)(r + p) * D, *nfp = nf + (size_t)(r + q) * D;
				float s1 = 0.0f, s2 = 0.0f;
				for (int e = 0; e < D; e++) {
					s1 += npc[e] * nfp[e];
					s2 += npp[e] * nfc[e];
					a->dnp[(size_t)(r + p) * D + e] -= 0.5f * scale * nfp[e];
					a->dnp[(size_t)(r + q) * D + e] -= 0.5f * scale * nfc[e];
				}
				loss += -0.5 * (s1 + s2);
			}
		r += items;
	}
	return loss;
}

/* One bag's backward, from a->dnp to b->vis.dz, b->txt.dz (its keyword
 * rows) and the parameters. */
static void mrtva_bag_backward(struct align_model *m, const struct align_bag *bag, int r, int kr,
                               int R)
{
	const struct align_config *c = &m->cfg;
	struct align_batch_act *b = m->ba;
	struct align_mm_act *a = m->mm;
	int D = c->dim, Hp = c->hidden > 0 ? c->hidden : c->dim, k = c->topk;
	int n = align_bag_items(m, bag), M = bag->nkw, kk = k < M ? k : M;
	size_t rD = (size_t)r * D, rH = (size_t)r * Hp;
	memset(a->dpy + rD, 0, sizeof(float) * n * D);
	memset(a->dpg + rH, 0, sizeof(float) * n * Hp);
	memset(a->dph + rH, 0, sizeof(float) * n * Hp);
	memset(a->df + rD, 0, sizeof(float) * n * D);
	memset(a->dmo + rD, 0, sizeof(float) * n * D);
	memset(a->dmq + rD, 0, sizeof(float) * n * D);
	memset(a->dmkv + (size_t)(kr - R) * 2 * D, 0, sizeof(float) * M * 2 * D);
	l2norm_backward(a->dpy + rD, a->dnp + rD, a->np + rD, a->npn + r, n, D);
	linear_backward(a->dpg + rH, gradp(m, m->p_pw2), gradp(m, m->p_pb2), a->dpy + rD,
	                a->pg + rH, align_param_ptr(m, m->p_pw2), n, Hp, D);
	align_gelu_backward(a->dph + rH, a->ph + rH, a->dpg + rH, (size_t)n * Hp);
	linear_backward(a->df + rD, gradp(m, m->p_pw1), gradp(m, m->p_pb1), a->dph + rH, a->f + rD,
	                align_param_ptr(m, m->p_pw1), n, D, Hp);
	/* f = v + Wo mo */
	for (size_t e = 0; e < (size_t)n * D; e++)
		b->vis.dz[rD + e] += a->df[rD + e];
	linear_backward(a->dmo + rD, gradp(m, m->p_mow), gradp(m, m->p_mob), a->df + rD,
	                a->mo + rD, align_param_ptr(m, m->p_mow), n, D, D);
	for (int p = 0; p < n; p++) {
		int it = r + p, *top = a->topidx + (size_t)it * k;
		float *g = a->g + (size_t)it * k * 2 * D;
		memset(a->dg, 0, sizeof(float) * kk * 2 * D);
		align_attention_backward(a->dmq + (size_t)it * D, a->dg, a->dg + D, a->ascratch,
		                         a->dmo + (size_t)it * D, a->att + (size_t)it * k,
		                         a->mq + (size_t)it * D, D, g, 2 * D, g + D, 2 * D, 1, kk, 1, D);
		for (int t = 0; t < kk; t++) {
			float *dst = a->dmkv + (size_t)(kr - R + top[t]) * 2 * D;
			for (int e = 0; e < 2 * D; e++)
				dst[e] += a->dg[(size_t)t * 2 * D + e];
		}
	}
	linear_backward(b->vis.dz + rD, gradp(m, m->p_mqw), gradp(m, m->p_mqb), a->dmq + rD,
	                b->vis.z + rD, align_param_ptr(m, m->p_mqw), n, D, D);
	linear_backward(b->txt.dz + (size_t)kr * D, gradp(m, m->p_mkvw), gradp(m, m->p_mkvb),
	                a->dmkv + (size_t)(kr - R) * 2 * D, b->txt.z + (size_t)kr * D,
	                align_param_ptr(m, m->p_mkvw), M, D, 2 * D);
}

/* Over the items of bags with keywords and parents: forward, loss, and the
 * gradients into b->vis.dz, b->txt.dz (keyword rows) and the parameters,
 * all scaled by w. Returns the mean loss over (child, parent) pairs. */
static float mrtva_forward_backward(struct align_model *m, const struct align_bag *bags,
                                    int nbags, int R, float w)
{
	int r = 0, kr = R, npairs = 0;
	for (int i = 0; i < nbags; i++) {
		if (mrtva_bag(m, &bags[i]))
			npairs += mrtva_bag_forward(m, &bags[i], r, kr, R);
		mrtva_advance(m, &bags[i], &r, &kr);
	}
	if (npairs == 0)
		return 0.0f;
	double loss = mrtva_loss(m, bags, nbags, R, npairs, w);
	r = 0, kr = R;
	for (int i = 0; i < nbags; i++) {
		if (mrtva_bag(m, &bags[i]))
			mrtva_bag_backward(m, &bags[i], r, kr, R);
		mrtva_advance(m, &bags[i], &r, &kr);
	}
	return (float)(loss / npairs);
}

const float *align_mrtva_targets(const struct align_model *m)
{
	return m->mm ? m->mm->nf : NULL;
}

/* ---- image-text matching with hard negatives ---- */

/* zi, zt (R, D) unit rows; sims (R, R) scratch. Pairs: (i, i) true, (i, j*)
 * with j* the most similar other text of image i, (i*, j) likewise for text
 * j; the choice is a constant for the gradient. dzi, dzt accumulate. */
static float itm_forward_backward(struct align_model *m, float *dzi, float *dzt, float *sims,
                                  const float *zi, const float *zt, int R, float w)
{
	struct align_itm_act *t = m->itm;
	int D = m->cfg.dim, Hi = m->cfg.hidden > 0 ? m->cfg.hidden : m->cfg.dim, P = 3 * R;
	align_gemm(0, 1, R, R, D, 1.0f, zi, D, zt, D, 0.0f, sims, R);
	for (int i = 0; i < R && !m->itm_keep_negatives; i++) {
		int bt = -1, bi = -1; /* hardest text for image i, hardest image for text i */
		for (int j = 0; j < R; j++) {
			if (j == i)
				continue;
			if (bt < 0 || sims[(size_t)i * R + j] > sims[(size_t)i * R + bt])
				bt = j;
			if (bi < 0 || sims[(size_t)j * R + i] > sims[(size_t)bi * R + i])
				bi = j;
		}
		t->pair[2 * i] = i, t->pair[2 * i + 1] = i;
		t->pair[2 * (R + i)] = i, t->pair[2 * (R + i) + 1] = bt;
		t->pair[2 * (2 * R + i)] = bi, t->pair[2 * (2 * R + i) + 1] = i;
	}
	for (int p = 0; p < P; p++) {
		const float *a = zi + (size_t)t->pair[2 * p] * D, *b = zt + (size_t)t->pair[2 * p + 1] * D;
		float *u = t->u + (size_t)p * 2 * D;
		for (int e = 0; e < D; e++) {
			u[e] = a[e] * b[e];
			u[D + e] = a[e] - b[e];
		}
	}
	linear_forward(t->pre, t->u, align_param_ptr(m, m->p_iw1), align_param_ptr(m, m->p_ib1), P,
	               2 * D, Hi);
	align_gelu_forward(t->h, t->pre, (size_t)P * Hi);
	linear_forward(t->logit, t->h, align_param_ptr(m, m->p_iw2), align_param_ptr(m, m->p_ib2), P,
	               Hi, 1);
	double loss = 0.0;
	for (int p = 0; p < P; p++) {
		float x = t->logit[p], y = p < R ? 1.0f : 0.0f;
		/* softplus(x) - y x, stable */
		loss += (x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x))) - y * x;
		t->dlogit[p] = w * (1.0f / (1.0f + expf(-x)) - y) / P;
	}
	memset(t->dh, 0, sizeof(float) * P * Hi);
	memset(t->dpre, 0, sizeof(float) * P * Hi);
	memset(t->du, 0, sizeof(float) * P * 2 * D);
	linear_backward(t->dh, gradp(m, m->p_iw2), gradp(m, m->p_ib2), t->dlogit, t->h,
	                align_param_ptr(m, m->p_iw2), P, Hi, 1);
	align_gelu_backward(t->dpre, t->pre, t->dh, (size_t)P * Hi);
	linear_backward(t->du, gradp(m, m->p_iw1), gradp(m, m->p_ib1), t->dpre, t->u,
	                align_param_ptr(m, m->p_iw1), P, 2 * D, Hi);
	for (int p = 0; p < P; p++) {
		int ia = t->pair[2 * p], ib = t->pair[2 * p + 1];
		const float *a = zi + (size_t)ia * D, *b = zt + (size_t)ib * D;
		const float *du = t->du + (size_t)p * 2 * D;
		for (int e = 0; e < D; e++) {
			dzi[(size_t)ia * D + e] += du[e] * b[e] + du[D + e];
			dzt[(size_t)ib * D + e] += du[e] * a[e] - du[D + e];
		}
	}
	return (float)(loss / P);
}

/* Every region of a bag must hold a patch for a Q-Former to attend to */
static int check_regions(const struct align_bag *bag)
{
	if (!bag->region)
		return 0;
	for (int q = 0; q < bag->nregions; q++) {
		int p = 0;
		while (p < bag->n && bag->region[p] != q)
			p++;
		if (p == bag->n)
			return eosin_error("align: region %d of %d has no patch", q, bag->nregions);
	}
	return 0;
}

static float clamped_scale(const struct align_model *m, int *clamped)
{
	float s = m->params[m->param[m->p_scale].offset];
	*clamped = 0;
	if (s > ALIGN_SCALE_MAX) {
		*clamped = 1;
		s = ALIGN_SCALE_MAX;
	} else if (s < 0.0f) {
		*clamped = 1;
		s = 0.0f;
	}
	return s;
}

/* Gradient arrays for the OpenMP threads after the first, made at the
 * first training step (inference needs none) */
static int thread_grads_reserve(struct align_model *m)
{
	int sets = omp_get_max_threads() - 1;
	if (sets <= m->thread_grad_sets)
		return 0;
	free(m->thread_grads);
	m->thread_grad_sets = 0;
	m->thread_grads = calloc((size_t)sets * m->nfloats, sizeof(float));
	if (!m->thread_grads)
		return eosin_error("align: out of memory for %d threads' gradients", sets + 1);
	m->thread_grad_sets = sets;
	return 0;
}

/* A batch's rows: items R, keyword rows K, regions G, sentences S. */
struct batch_rows {
	int R, K, G, S;
};

/* The batch's rows, checked against what the activations were made for. */
static int batch_rows(const struct align_model *m, const struct align_bag *bags, int nbags,
                      struct batch_rows *n)
{
	const struct align_config *c = &m->cfg;
	*n = (struct batch_rows){0};
	for (int i = 0; i < nbags; i++) {
		if (bags[i].n > m->max_n)
			return eosin_error("align: bag of %d patches, activations made for %d", bags[i].n,
			                   m->max_n);
		n->R += align_bag_items(m, &bags[i]);
		if (gen_bag_on(m, &bags[i])) {
			if (bags[i].ntok > c->ctx)
				return eosin_error("align: caption of %d tokens, the decoder takes %d",
				                   bags[i].ntok, c->ctx);
			for (int t = 0; t < bags[i].ntok; t++)
				if (bags[i].tok[t] < 0 || bags[i].tok[t] >= c->vocab - 1)
					return eosin_error("align: token %d of a caption is %d, the decoder "
					                   "takes 0 to %d", t, bags[i].tok[t], c->vocab - 2);
		}
		if ((c->w_cvta > 0 || c->w_mrtva > 0) && bags[i].kw && per_patch(m, &bags[i]))
			n->K += bags[i].nkw;
	}
	for (int i = 0; i < nbags; i++) {
		n->G += align_bag_regions(m, &bags[i]);
		n->S += bag_sentences(m, &bags[i]);
		if (hierarchical(m) && check_regions(&bags[i]) < 0)
			return -1;
	}
	if (n->R > m->max_items || n->K > m->max_kw || n->G > m->max_regions ||
	    n->S > m->max_sents)
		return eosin_error("align: batch of %d items, %d keywords, %d regions, %d sentences, "
		                   "made for %d, %d, %d, %d", n->R, n->K, n->G, n->S, m->max_items,
		                   m->max_kw, m->max_regions, m->max_sents);
	if (n->R < 2)
		return eosin_error("align: a batch needs at least 2 items, got %d", n->R);
	return 0;
}

/* Text inputs: caption rows, keyword rows, sentence rows (R + K + S, txt);
 * the bag of each region row and each sentence row. */
static void text_inputs(struct align_model *m, const struct align_bag *bags, int nbags,
                        const struct batch_rows *n)
{
	const struct align_config *c = &m->cfg;
	struct align_batch_act *b = m->ba;
	int r = 0, k = n->R, g = 0, sr = n->R + n->K;
	for (int i = 0; i < nbags; i++) {
		const struct align_bag *bag = &bags[i];
		int items = align_bag_items(m, bag), nr = align_bag_regions(m, bag);
		int ns = bag_sentences(m, bag);
		memcpy(b->tin + (size_t)r * c->txt_dim, bag->txt,
		       sizeof(float) * items * c->txt_dim);
		r += items;
		if ((c->w_cvta > 0 || c->w_mrtva > 0) && bag->kw && per_patch(m, bag)) {
			memcpy(b->tin + (size_t)k * c->txt_dim, bag->kw,
			       sizeof(float) * bag->nkw * c->txt_dim);
			k += bag->nkw;
		}
		for (int q = 0; q < nr; q++) /* a region without sentences is only a negative */
			b->rgid[g++] = ns > 0 ? i : -1;
		if (ns > 0)
			memcpy(b->tin + (size_t)sr * c->txt_dim, bag->sent, sizeof(float) * ns * c->txt_dim);
		for (int j = 0; j < ns; j++)
			b->sgid[sr + j - n->R - n->K] = i;
		sr += ns;
	}
}

/* CVTA: every patch of a bag with keywords is an anchor against the bag's
 * keywords; the mean over anchors, its gradients scaled by w / anchors. */
static float cvta_forward_backward(struct align_model *m, const struct align_bag *bags,
                                   int nbags, int R, float ls, int clamped, float *dls)
{
	const struct align_config *c = &m->cfg;
	struct align_batch_act *b = m->ba;
	int D = c->dim, anchors = 0;
	for (int i = 0; i < nbags; i++)
		if (bags[i].kw && per_patch(m, &bags[i]))
			anchors += bags[i].n;
	float w = c->w_cvta / anchors;
	double sum = 0.0;
	int r = 0, k = R;
	for (int i = 0; i < nbags; i++) {
		const struct align_bag *bag = &bags[i];
		int items = align_bag_items(m, bag);
		if (bag->kw && per_patch(m, bag)) {
			for (int p = 0; p < items; p++)
				sum += multipos_nce_forward_backward(
				    b->vis.dz + (size_t)(r + p) * D, b->txt.dz + (size_t)k * D, dls, b->nce,
				    b->order, b->vis.z + (size_t)(r + p) * D, b->txt.z + (size_t)k * D, ls,
				    clamped, bag->nkw, D, c->topk, w);
			k += bag->nkw;
		}
		r += items;
	}
	return (float)(sum / anchors);
}

/* Every objective with a weight: its loss into L and its gradients into
 * b->vis.dz, b->txt.dz and the parameters. */
static void objectives(struct align_model *m, const struct align_bag *bags, int nbags,
                       const struct batch_rows *n, struct align_losses *L)
{
	const struct align_config *c = &m->cfg;
	struct align_batch_act *b = m->ba;
	int D = c->dim, R = n->R, K = n->K, G = n->G, S = n->S;
	int clamped;
	float ls = clamped_scale(m, &clamped);
	float *dls = gradp(m, m->p_scale);
	*L = (struct align_losses){0};
	L->items = R;
	if (c->w_itc > 0) {
		L->itc = infonce_forward_backward(b->vis.dz, b->txt.dz, dls, b->logits, b->vis.z,
		                                  b->txt.z, ls, clamped, R, D, c->w_itc);
		L->total += c->w_itc * L->itc;
	}
	if (c->w_cvta > 0 && K > 0) {
		L->cvta = cvta_forward_backward(m, bags, nbags, R, ls, clamped, dls);
		L->total += c->w_cvta * L->cvta;
	}
	if (c->w_mrtva > 0) {
		L->mrtva = mrtva_forward_backward(m, bags, nbags, R, c->w_mrtva);
		L->total += c->w_mrtva * L->mrtva;
	}
	if (c->w_itm > 0) {
		L->itm = itm_forward_backward(m, b->vis.dz, b->txt.dz, b->logits, b->vis.z, b->txt.z,
		                              R, c->w_itm);
		L->total += c->w_itm * L->itm;
	}
	if (c->w_region > 0 && G > 0 && S > 0) {
		L->region = groupnce_forward_backward(
		    b->vis.dz + (size_t)R * D, b->txt.dz + (size_t)(R + K) * D, dls, b->gnce,
		    b->vis.z + (size_t)R * D, b->txt.z + (size_t)(R + K) * D, b->rgid, b->sgid, ls,
		    clamped, G, S, D, c->w_region);
		L->total += c->w_region * L->region;
	}
}

/* The generative losses of a batch from the bags' sums, in bag order */
static void gen_losses(struct align_model *m, int nbags, struct align_losses *L)
{
	const struct align_config *c = &m->cfg;
	struct align_gen *G = m->gen;
	if (!align_has_decoder(m))
		return;
	double sum[3] = {0, 0, 0};
	for (int i = 0; i < nbags; i++)
		for (int k = 0; k < 3; k++)
			sum[k] += G->loss[3 * i + k];
	float *dst[3] = {&L->itg, &L->mlm, &L->plm};
	float w[3] = {c->w_itg, c->w_mlm, c->w_plm};
	for (int k = 0; k < 3; k++) {
		*dst[k] = w[k] > 0 && G->ntok[k] > 0 ? (float)(sum[k] / G->ntok[k]) : 0.0f;
		L->total += w[k] * *dst[k];
	}
	L->itg_tokens = c->w_itg > 0 ? G->ntok[0] : 0;
	L->mlm_tokens = c->w_mlm > 0 ? G->ntok[1] : 0;
	L->plm_tokens = c->w_plm > 0 ? G->ntok[2] : 0;
}

int align_step_grads(struct align_model *m, const struct align_bag *bags, int nbags,
                     int backward, struct align_losses *out)
{
	const struct align_config *c = &m->cfg;
	struct align_batch_act *b = m->ba;
	int vin_dim = c->queries > 0 ? c->qdim : c->img_dim, D = c->dim;
	struct batch_rows n;
	if (batch_rows(m, bags, nbags, &n) < 0)
		return -1;
	int R = n.R, K = n.K, G = n.G, S = n.S;
	if (backward && c->queries > 0 && thread_grads_reserve(m) < 0)
		return -1;
	if (align_has_decoder(m)) {
		if (gen_reserve(m, m->thread_grad_sets + 1, nbags) < 0)
			return -1;
		gen_prepare(m, bags, nbags);
	}
	memset(m->grads, 0, sizeof(float) * m->nfloats);
	/* image inputs: items then regions (R + G, vin) */
	visual_forward(m, bags, nbags, R, b->vin);
	text_inputs(m, bags, nbags, &n);
	head_forward(m, &b->vis, b->vin, R + G, vin_dim, m->p_vw1, m->p_vb1, m->p_vw2, m->p_vb2);
	head_forward(m, &b->txt, b->tin, R + K + S, c->txt_dim, m->p_tw1, m->p_tb1, m->p_tw2,
	             m->p_tb2);
	memset(b->vis.dz, 0, sizeof(float) * (R + G) * D);
	memset(b->txt.dz, 0, sizeof(float) * (R + K + S) * D);
	struct align_losses L;
	objectives(m, bags, nbags, &n, &L);
	if (!backward) {
		for (int i = 0; i < nbags && align_has_decoder(m); i++) {
			const struct align_qformer_params *P;
			struct align_qf_act *a =
			    item_run(m, &bags[i], b->run0[i], b->grow0[i], R, b->vin, &P);
			float *unused[ALIGN_MAX_LAYERS];
			gen_bag(m, &bags[i], i, a, P, 0, NULL, unused);
		}
		gen_losses(m, nbags, &L);
		if (out)
			*out = L;
		return 0;
	}
	/* d vin feeds only the Q-Formers: without them patch means are constants */
	float *dvin = c->queries > 0 ? b->dvin : NULL;
	if (dvin)
		memset(dvin, 0, sizeof(float) * (R + G) * vin_dim);
	head_backward(m, &b->vis, dvin, b->vin, R + G, vin_dim, m->p_vw1, m->p_vb1, m->p_vw2,
	              m->p_vb2);
	head_backward(m, &b->txt, NULL, b->tin, R + K + S, c->txt_dim, m->p_tw1, m->p_tb1,
	              m->p_tw2, m->p_tb2);
	visual_backward(m, bags, nbags, R, b->vin, b->dvin);
	gen_losses(m, nbags, &L);
	if (out)
		*out = L;
	return 0;
}

/* Does one bag, alone, fit the activations (and are its regions sound)? */
static int one_bag_fits(const struct align_model *m, const struct align_bag *bag)
{
	int items = align_bag_items(m, bag), nr = align_bag_regions(m, bag);
	if (bag->n > m->max_n || items > m->max_items || nr > m->max_regions)
		return eosin_error("align: bag of %d patches and %d regions, activations made for %d "
		                   "and %d", bag->n, nr, m->max_n, m->max_regions);
	if (hierarchical(m) && check_regions(bag) < 0)
		return -1;
	return 0;
}

int align_decode_begin(struct align_model *m, const struct align_bag *bag)
{
	struct align_batch_act *b = m->ba;
	if (!align_has_decoder(m))
		return eosin_error("align: the model has no text decoder");
	if (one_bag_fits(m, bag) < 0 || gen_reserve(m, 1, 1) < 0)
		return -1;
	visual_forward(m, bag, 1, 1, b->vin);
	struct align_gen *G = m->gen;
	G->dbag = bag;
	G->dset = (b->run0[0] + bag_runs(m, bag) - 1) % m->qf_sets;
	G->dP = hierarchical(m) ? &m->qfp[1] : &m->qfp[0];
	return 0;
}

int align_bag_gen_loss(struct align_model *m, const struct align_bag *bag, double sum[3],
                       int count[3])
{
	sum[0] = sum[1] = sum[2] = 0.0;
	count[0] = count[1] = count[2] = 0;
	if (!gen_bag_on(m, bag))
		return 0;
	if (bag->ntok > m->cfg.ctx)
		return eosin_error("align: caption of %d tokens, the decoder takes %d", bag->ntok,
		                   m->cfg.ctx);
	if (align_decode_begin(m, bag) < 0)
		return -1;
	struct align_gen *G = m->gen;
	gen_prepare(m, bag, 1);
	const struct align_qformer_params *P;
	struct align_qf_act *a = item_run(m, bag, m->ba->run0[0], m->ba->grow0[0], 1, m->ba->vin, &P);
	float *unused[ALIGN_MAX_LAYERS];
	gen_bag(m, bag, 0, a, P, 0, NULL, unused);
	float w[3] = {m->cfg.w_itg, m->cfg.w_mlm, m->cfg.w_plm};
	for (int k = 0; k < 3; k++)
		if (w[k] > 0) {
			sum[k] = G->loss[k];
			count[k] = G->ntok[k];
		}
	return 0;
}

int align_next_logits(struct align_model *m, const int32_t *seq, int n, float *logits)
{
	struct align_gen *G = m->gen;
	if (!G || !G->dbag)
		return eosin_error("align: no bag set up for decoding");
	if (n < 1 || n > m->cfg.ctx)
		return eosin_error("align: %d tokens, the decoder takes 1 to %d", n, m->cfg.ctx);
	const struct align_qf_act *a = &m->qf[G->dset];
	const float *kvq[ALIGN_MAX_LAYERS];
	for (int l = 0; l < m->cfg.layers; l++)
		kvq[l] = a->l[l].qkv;
	struct align_text_w w;
	text_tensors(m, m->params, G->dP, &w);
	align_text_next_logits(&G->d, &w, &G->act[0], kvq, seq, n, logits);
	return 0;
}

/* ---- inference ---- */

int align_embed_bag(struct align_model *m, const struct align_bag *bag, float *out)
{
	const struct align_config *c = &m->cfg;
	struct align_batch_act *b = m->ba;
	int vin_dim = c->queries > 0 ? c->qdim : c->img_dim;
	int items = align_bag_items(m, bag);
	if (one_bag_fits(m, bag) < 0)
		return -1;
	visual_forward(m, bag, 1, items, b->vin);
	head_forward(m, &b->vis, b->vin, items, vin_dim, m->p_vw1, m->p_vb1, m->p_vw2, m->p_vb2);
	memcpy(out, b->vis.z, sizeof(float) * items * c->dim);
	return 0;
}

int align_embed_text(struct align_model *m, const float *txt, int rows, float *out)
{
	const struct align_config *c = &m->cfg;
	struct align_batch_act *b = m->ba;
	int chunk = m->max_items + m->max_kw;
	for (int r = 0; r < rows; r += chunk) {
		int n = rows - r < chunk ? rows - r : chunk;
		head_forward(m, &b->txt, txt + (size_t)r * c->txt_dim, n, c->txt_dim, m->p_tw1,
		             m->p_tb1, m->p_tw2, m->p_tb2);
		memcpy(out + (size_t)r * c->dim, b->txt.z, sizeof(float) * n * c->dim);
	}
	return 0;
}
