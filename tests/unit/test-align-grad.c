/*
 * test-align-grad: finite-difference checks of every layer and loss of the
 * alignment model (lib/train/align.c, lib/train/align_layers.c).
 *
 * Method: central differences in float, (L(x+h) - L(x-h)) / 2h with
 * h = 1e-2, against the analytic gradient. With L of order 1 the rounding
 * error is about 1e-6/h = 1e-4 and the truncation error h^2 f'''/6 is of the
 * same order, so an element passes when |analytic - numeric| <= 2e-3 +
 * 2e-2 |numeric|. A layer is checked through L = sum(out * R) with a fixed
 * random R, so that every output element carries a different weight.
 * Every element of small tensors is checked; model-level checks visit a
 * seeded sample of elements of every parameter tensor.
 */
#include "train/align.h"
#include "tap.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FD_H 1e-2f
#define TOL_ABS 2e-3
#define TOL_REL 2e-2

static uint64_t rng = 12345;
static float frand(void) /* uniform in [-1, 1) */
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}
static float *randv(size_t n, float scale)
{
	float *x = malloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		x[i] = scale * frand();
	return x;
}
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

static double dot(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

/* compare analytic grad g of x (n) with central differences of loss() */
typedef double (*loss_fn)(void *ctx);
static int fd_check(const char *what, float *x, const float *g, size_t n, loss_fn f, void *ctx,
                    size_t max_checks)
{
	int bad = 0;
	double worst = 0;
	size_t stride = n > max_checks ? n / max_checks : 1;
	for (size_t i = 0; i < n; i += stride) {
		float keep = x[i];
		x[i] = keep + FD_H;
		double lp = f(ctx);
		x[i] = keep - FD_H;
		double lm = f(ctx);
		x[i] = keep;
		double num = (lp - lm) / (2.0 * FD_H);
		double err = fabs(num - g[i]);
		double lim = TOL_ABS + TOL_REL * fabs(num);
		if (err / lim > worst)
			worst = err / lim;
		if (err > lim) {
			if (bad < 3)
				printf("# %s[%zu]: analytic %.6g numeric %.6g\n", what, i, g[i], num);
			bad++;
		}
	}
	return ok(bad == 0, "%s: %zu elements within tolerance (worst %.2f of limit)", what,
	          (n + stride - 1) / stride, worst);
}

/* ---- layers ---- */

struct lin_ctx { float *out, *inp, *w, *b, *R; int N, C, OC; };
static double lin_loss(void *p)
{
	struct lin_ctx *c = p;
	linear_forward(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
	return dot(c->out, c->R, (size_t)c->N * c->OC);
}
static void check_linear(void)
{
	struct lin_ctx c = {.N = 5, .C = 7, .OC = 4};
	c.inp = randv(35, 1), c.w = randv(28, 0.5), c.b = randv(4, 0.5), c.R = randv(20, 1);
	c.out = zeros(20);
	float *di = zeros(35), *dw = zeros(28), *db = zeros(4);
	lin_loss(&c);
	linear_backward(di, dw, db, c.R, c.inp, c.w, c.N, c.C, c.OC);
	fd_check("linear dinp", c.inp, di, 35, lin_loss, &c, 1000);
	fd_check("linear dweight", c.w, dw, 28, lin_loss, &c, 1000);
	fd_check("linear dbias", c.b, db, 4, lin_loss, &c, 1000);
	free(c.inp), free(c.w), free(c.b), free(c.R), free(c.out), free(di), free(dw), free(db);
}

struct gelu_ctx { float *out, *inp, *R; size_t n; };
static double gelu_loss(void *p)
{
	struct gelu_ctx *c = p;
	align_gelu_forward(c->out, c->inp, c->n);
	return dot(c->out, c->R, c->n);
}
static void check_gelu(void)
{
	struct gelu_ctx c = {.n = 40};
	c.inp = randv(40, 3), c.R = randv(40, 1), c.out = zeros(40);
	float *d = zeros(40);
	align_gelu_backward(d, c.inp, c.R, c.n);
	fd_check("gelu dinp", c.inp, d, 40, gelu_loss, &c, 1000);
	free(c.inp), free(c.R), free(c.out), free(d);
}

struct ln_ctx { float *out, *mean, *rstd, *inp, *w, *b, *R; int N, C; };
static double ln_loss(void *p)
{
	struct ln_ctx *c = p;
	align_layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C);
	return dot(c->out, c->R, (size_t)c->N * c->C);
}
static void check_layernorm(void)
{
	struct ln_ctx c = {.N = 4, .C = 8};
	c.inp = randv(32, 2), c.w = randv(8, 1), c.b = randv(8, 1), c.R = randv(32, 1);
	c.out = zeros(32), c.mean = zeros(4), c.rstd = zeros(4);
	float *di = zeros(32), *dw = zeros(8), *db = zeros(8);
	ln_loss(&c);
	align_layernorm_backward(di, dw, db, c.R, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
	fd_check("layernorm dinp", c.inp, di, 32, ln_loss, &c, 1000);
	fd_check("layernorm dweight", c.w, dw, 8, ln_loss, &c, 1000);
	fd_check("layernorm dbias", c.b, db, 8, ln_loss, &c, 1000);
	free(c.inp), free(c.w), free(c.b), free(c.R), free(c.out), free(c.mean), free(c.rstd);
	free(di), free(dw), free(db);
}

struct l2_ctx { float *out, *norm, *inp, *R; int N, C; };
static double l2_loss(void *p)
{
	struct l2_ctx *c = p;
	l2norm_forward(c->out, c->norm, c->inp, c->N, c->C);
	return dot(c->out, c->R, (size_t)c->N * c->C);
}
static void check_l2norm(void)
{
	struct l2_ctx c = {.N = 3, .C = 6};
	c.inp = randv(18, 1), c.R = randv(18, 1), c.out = zeros(18), c.norm = zeros(3);
	float *d = zeros(18);
	l2_loss(&c);
	l2norm_backward(d, c.R, c.out, c.norm, c.N, c.C);
	fd_check("l2norm dinp", c.inp, d, 18, l2_loss, &c, 1000);
	free(c.inp), free(c.R), free(c.out), free(c.norm), free(d);
}

/* attention with q, k, v in one (T, 3C) buffer (self) or apart (cross) */
struct att_ctx { float *out, *att, *q, *k, *v, *R; int ldq, ldk, ldv, Tq, Tk, H, hd; };
static double att_loss(void *p)
{
	struct att_ctx *c = p;
	align_attention_forward(c->out, c->att, c->q, c->ldq, c->k, c->ldk, c->v, c->ldv, c->Tq, c->Tk,
	                  c->H, c->hd);
	return dot(c->out, c->R, (size_t)c->Tq * c->H * c->hd);
}
static void check_attention(void)
{
	/* cross: Tq 3 queries, Tk 5 keys, 2 heads of 4 */
	int Tq = 3, Tk = 5, H = 2, hd = 4, C = H * hd;
	struct att_ctx c = {.ldq = C, .ldk = C, .ldv = C, .Tq = Tq, .Tk = Tk, .H = H, .hd = hd};
	c.q = randv(Tq * C, 1), c.k = randv(Tk * C, 1), c.v = randv(Tk * C, 1);
	c.R = randv(Tq * C, 1), c.out = zeros(Tq * C), c.att = zeros(H * Tq * Tk);
	float *dq = zeros(Tq * C), *dk = zeros(Tk * C), *dv = zeros(Tk * C), *s = zeros(Tq * Tk);
	att_loss(&c);
	align_attention_backward(dq, dk, dv, s, c.R, c.att, c.q, C, c.k, C, c.v, C, Tq, Tk, H, hd);
	fd_check("cross-attention dq", c.q, dq, Tq * C, att_loss, &c, 1000);
	fd_check("cross-attention dk", c.k, dk, Tk * C, att_loss, &c, 1000);
	fd_check("cross-attention dv", c.v, dv, Tk * C, att_loss, &c, 1000);
	free(c.q), free(c.k), free(c.v), free(c.R), free(c.out), free(c.att);
	free(dq), free(dk), free(dv), free(s);

	/* self: T 4, one (T, 3C) qkv buffer, as the Q-Former uses it */
	int T = 4;
	float *qkv = randv(T * 3 * C, 1), *dqkv = zeros(T * 3 * C);
	struct att_ctx d = {.q = qkv, .k = qkv + C, .v = qkv + 2 * C, .ldq = 3 * C, .ldk = 3 * C,
	                    .ldv = 3 * C, .Tq = T, .Tk = T, .H = H, .hd = hd};
	d.R = randv(T * C, 1), d.out = zeros(T * C), d.att = zeros(H * T * T);
	s = zeros(T * T);
	att_loss(&d);
	align_attention_backward(dqkv, dqkv + C, dqkv + 2 * C, s, d.R, d.att, qkv, 3 * C, qkv + C, 3 * C,
	                   qkv + 2 * C, 3 * C, T, T, H, hd);
	fd_check("self-attention dqkv", qkv, dqkv, T * 3 * C, att_loss, &d, 1000);
	free(qkv), free(dqkv), free(d.R), free(d.out), free(d.att), free(s);
}

struct nce_ctx { float *zi, *zt, *logits, ls; int R, D; float *dzi, *dzt, dls; };
/* the loss sees raw rows through an L2 norm, as in the model */
static double nce_loss(void *p)
{
	struct nce_ctx *c = p;
	float *ni = zeros((size_t)c->R * c->D), *nt = zeros((size_t)c->R * c->D);
	float *nrm = zeros(c->R);
	l2norm_forward(ni, nrm, c->zi, c->R, c->D);
	l2norm_forward(nt, nrm, c->zt, c->R, c->D);
	float dls = 0;
	double l = infonce_forward_backward(NULL, NULL, &dls, c->logits, ni, nt, c->ls, 0, c->R,
	                                    c->D, 1.0f);
	free(ni), free(nt), free(nrm);
	return l;
}
static void check_infonce(void)
{
	int R = 5, D = 6;
	struct nce_ctx c = {.R = R, .D = D, .ls = 1.2f};
	c.zi = randv(R * D, 1), c.zt = randv(R * D, 1), c.logits = zeros((2 * R + 2) * R);
	float *ni = zeros(R * D), *nt = zeros(R * D), *normi = zeros(R), *normt = zeros(R);
	float *dni = zeros(R * D), *dnt = zeros(R * D), *dzi = zeros(R * D), *dzt = zeros(R * D);
	float dls = 0;
	l2norm_forward(ni, normi, c.zi, R, D);
	l2norm_forward(nt, normt, c.zt, R, D);
	infonce_forward_backward(dni, dnt, &dls, c.logits, ni, nt, c.ls, 0, R, D, 1.0f);
	l2norm_backward(dzi, dni, ni, normi, R, D);
	l2norm_backward(dzt, dnt, nt, normt, R, D);
	fd_check("infonce dimage", c.zi, dzi, R * D, nce_loss, &c, 1000);
	fd_check("infonce dtext", c.zt, dzt, R * D, nce_loss, &c, 1000);
	float keep = c.ls;
	c.ls = keep + FD_H;
	double lp = nce_loss(&c);
	c.ls = keep - FD_H;
	double lm = nce_loss(&c);
	c.ls = keep;
	ok_near(dls, (lp - lm) / (2 * FD_H), TOL_ABS + TOL_REL * fabs((lp - lm) / (2 * FD_H)),
	        "infonce dlogit_scale");
	free(c.zi), free(c.zt), free(c.logits), free(ni), free(nt), free(normi), free(normt);
	free(dni), free(dnt), free(dzi), free(dzt);
}

struct mp_ctx { float *z, *keys, *scratch, ls; int *order, M, D, k; };
static double mp_loss(void *p)
{
	struct mp_ctx *c = p;
	float dls = 0;
	return multipos_nce_forward_backward(NULL, NULL, &dls, c->scratch, c->order, c->z, c->keys,
	                                     c->ls, 0, c->M, c->D, c->k, 1.0f);
}
static void check_multipos(void)
{
	int M = 7, D = 5;
	struct mp_ctx c = {.M = M, .D = D, .k = 3, .ls = 1.5f};
	c.z = randv(D, 1), c.keys = randv(M * D, 1), c.scratch = zeros(2 * M);
	c.order = calloc(M, sizeof(int));
	float *dz = zeros(D), *dk = zeros(M * D), dls = 0;
	multipos_nce_forward_backward(dz, dk, &dls, c.scratch, c.order, c.z, c.keys, c.ls, 0, M, D,
	                              c.k, 1.0f);
	/* the top-k set is fixed for small steps unless two logits nearly tie */
	fd_check("cvta multi-positive nce danchor", c.z, dz, D, mp_loss, &c, 1000);
	fd_check("cvta multi-positive nce dkeywords", c.keys, dk, M * D, mp_loss, &c, 1000);
	float keep = c.ls;
	c.ls = keep + FD_H;
	double lp = mp_loss(&c);
	c.ls = keep - FD_H;
	double lm = mp_loss(&c);
	c.ls = keep;
	ok_near(dls, (lp - lm) / (2 * FD_H), TOL_ABS + TOL_REL * fabs((lp - lm) / (2 * FD_H)),
	        "cvta dlogit_scale");
	free(c.z), free(c.keys), free(c.scratch), free(c.order), free(dz), free(dk);
}

struct gn_ctx { float *a, *b, *scratch, ls; int *gid, *sid, G, S, D; };
static double gn_loss(void *p)
{
	struct gn_ctx *c = p;
	float dls = 0;
	return groupnce_forward_backward(NULL, NULL, &dls, c->scratch, c->a, c->b, c->gid, c->sid,
	                                 c->ls, 0, c->G, c->S, c->D, 1.0f);
}
static void check_groupnce(void)
{
	/* 5 regions of 3 slides against 4 sentences of slides 0, 0, 2, 3 */
	static int gid[5] = {0, 0, 1, 2, 2}, sid[4] = {0, 0, 2, 3};
	struct gn_ctx c = {.G = 5, .S = 4, .D = 6, .ls = 1.1f, .gid = gid, .sid = sid};
	c.a = randv(30, 1), c.b = randv(24, 1), c.scratch = zeros(40);
	float *da = zeros(30), *db = zeros(24), dls = 0;
	groupnce_forward_backward(da, db, &dls, c.scratch, c.a, c.b, gid, sid, c.ls, 0, 5, 4, 6,
	                          1.0f);
	fd_check("region nce dregions", c.a, da, 30, gn_loss, &c, 1000);
	fd_check("region nce dsentences", c.b, db, 24, gn_loss, &c, 1000);
	float keep = c.ls;
	c.ls = keep + FD_H;
	double lp = gn_loss(&c);
	c.ls = keep - FD_H;
	double lm = gn_loss(&c);
	c.ls = keep;
	ok_near(dls, (lp - lm) / (2 * FD_H), TOL_ABS + TOL_REL * fabs((lp - lm) / (2 * FD_H)),
	        "region nce dlogit_scale");
	free(c.a), free(c.b), free(c.scratch), free(da), free(db);
}

/* ---- the whole model: every parameter tensor ---- */

struct model_ctx { struct align_model *m; struct align_bag *bags; int nbags; };
static double model_loss(void *p)
{
	struct model_ctx *c = p;
	struct align_losses L;
	if (align_step_grads(c->m, c->bags, c->nbags, 0, &L) < 0)
		return NAN;
	return L.total;
}

/* With threads > 1, the bags' Q-Former runs go in parallel (each thread
 * its own gradient array): the gradients must repeat bit for bit at that
 * count and agree with one thread's to float rounding (the sums of the
 * bags' gradients run in another order). */
static void check_threads(const char *what, struct align_model *m, struct align_bag *bags,
                          int nbags, const float *g, int threads)
{
	float *g2 = malloc(m->nfloats * sizeof(float));
	align_step_grads(m, bags, nbags, 1, NULL);
	ok(!memcmp(g, m->grads, m->nfloats * sizeof(float)),
	   "%s: gradients repeat bit for bit with %d threads", what, threads);
	memcpy(g2, m->grads, m->nfloats * sizeof(float));
	omp_set_num_threads(1);
	align_step_grads(m, bags, nbags, 1, NULL);
	omp_set_num_threads(threads);
	double worst = 0.0, scale = 0.0;
	for (size_t e = 0; e < m->nfloats; e++) {
		double d = fabs((double)m->grads[e] - g2[e]);
		worst = d > worst ? d : worst;
		scale = fabs((double)m->grads[e]) > scale ? fabs((double)m->grads[e]) : scale;
	}
	ok(worst <= 1e-5 * scale, "%s: %d threads agree with one (worst %.2g of largest %.2g)",
	   what, threads, worst, scale);
	free(g2);
}

static void check_model_sets(const char *what, struct align_config cfg, int per_patch_bags,
                             int pos, int sets_limit, int threads)
{
	int threads_before = omp_get_max_threads();
	omp_set_num_threads(threads);
	struct align_model m;
	if (!ok(align_model_init(&m, &cfg) == 0, "%s: model init", what))
		return;
	m.qf_sets_limit = sets_limit;
	align_model_randomize(&m, 7);
	/* zero biases and 0.02-sized queries sit where the loss bends sharply
	 * (an L2 or layer norm of a near-zero vector); move every vector
	 * parameter to an ordinary O(1) point so that differences of 1e-2 see a
	 * smooth function */
	for (int i = 0; i < m.nparam; i++) {
		struct align_param *p = &m.param[i];
		if (i == m.p_scale)
			continue;
		if (p->cols == 0 || i == m.qfp[0].queries || i == m.qfp[1].queries)
			for (size_t e = 0; e < p->count; e++)
				m.params[p->offset + e] += 0.5f * frand();
	}
	int nbags = 4, n = 6, nkw = 5;
	struct align_bag bags[4];
	/* captions of 5, 6, 4 and 7 tokens (ids from their own stream) */
	static const int ntok[4] = {5, 6, 4, 7};
	int32_t toks[4][8];
	uint64_t keep_rng = rng;
	rng = 4242;
	for (int i = 0; i < nbags; i++)
		for (int t = 0; t < ntok[i]; t++)
			toks[i][t] = cfg.vocab > 1 ? (int32_t)((frand() + 1) * 0.5f * (cfg.vocab - 1))
			                           : 0;
	rng = keep_rng;
	for (int i = 0; i < nbags; i++)
		for (int t = 0; t < ntok[i]; t++)
			if (toks[i][t] > cfg.vocab - 2)
				toks[i][t] = cfg.vocab - 2;
	float *mem[4][5];
	for (int i = 0; i < nbags; i++) {
		mem[i][0] = randv((size_t)n * cfg.img_dim, 1);
		mem[i][1] = randv((size_t)n * cfg.txt_dim, 1);
		mem[i][2] = randv((size_t)nkw * cfg.txt_dim, 1);
		mem[i][3] = randv((size_t)n * 2, 1);
		/* sentences from their own stream, so the other data stay as they
		 * were checked to be free of near-ties in the top-k choice */
		uint64_t keep = rng;
		rng = 777 + i;
		mem[i][4] = randv((size_t)2 * cfg.txt_dim, 1);
		rng = keep;
		for (int e = 0; e < n * 2; e++)
			mem[i][3][e] = (mem[i][3][e] + 1) * 2000;
		static const int parent[6] = {-1, 0, 0, 1, 1, 2};
		static const int region[6] = {0, 0, 1, 1, 2, 2};
		bags[i] = (struct align_bag){.n = n, .img = mem[i][0], .pos = pos ? mem[i][3] : NULL,
		                             .extent = 224, .ntxt = per_patch_bags ? n : 1,
		                             .txt = mem[i][1], .nkw = nkw, .kw = mem[i][2],
		                             .parent = parent, .nregions = 3, .region = region,
		                             .nsent = 2, .sent = mem[i][4],
		                             .ntok = cfg.vocab > 0 ? ntok[i] : 0,
		                             .tok = cfg.vocab > 0 ? toks[i] : NULL};
	}
	m.max_regions = nbags * 3;
	m.max_sents = nbags * 2;
	align_model_alloc(&m, n, nbags * n, nbags * nkw);
	struct model_ctx c = {&m, bags, nbags};
	struct align_losses L;
	ok(align_step_grads(&m, bags, nbags, 1, &L) == 0, "%s: forward and backward", what);
	float *g = malloc(m.nfloats * sizeof(float));
	memcpy(g, m.grads, m.nfloats * sizeof(float));
	if (threads > 1)
		check_threads(what, &m, bags, nbags, g, threads);
	float *targets = NULL;
	m.itm_keep_negatives = 1; /* a fixed choice of hard negatives */
	if (cfg.w_mrtva > 0) { /* hold the stop-gradient targets still */
		size_t bytes = sizeof(float) * nbags * n * cfg.dim;
		targets = malloc(bytes);
		memcpy(targets, align_mrtva_targets(&m), bytes);
		m.mrtva_fixed_targets = targets;
		struct align_losses L2;
		align_step_grads(&m, bags, nbags, 0, &L2);
		ok(L2.total == L.total, "%s: fixed targets give the same loss", what);
	}
	for (int i = 0; i < m.nparam; i++) {
		char name[96];
		snprintf(name, sizeof name, "%s: %s", what, m.param[i].name);
		fd_check(name, m.params + m.param[i].offset, g + m.param[i].offset, m.param[i].count,
		         model_loss, &c, 12);
	}
	free(g);
	free(targets);
	for (int i = 0; i < nbags; i++)
		for (int j = 0; j < 5; j++)
			free(mem[i][j]);
	align_model_free(&m);
	omp_set_num_threads(threads_before);
}

static void check_model(const char *what, struct align_config cfg, int per_patch_bags, int pos)
{
	check_model_sets(what, cfg, per_patch_bags, pos, 0, 1);
}

int main(void)
{
	check_linear();
	check_gelu();
	check_layernorm();
	check_l2norm();
	check_attention();
	check_infonce();
	check_multipos();

	struct align_config base = {.img_dim = 6, .txt_dim = 5, .dim = 4, .hidden = 0,
	                            .w_itc = 1.0f, .temp_init = 0.3f, .topk = 2};
	check_model("linear heads, mean-pooled bags, itc", base, 0, 0);
	struct align_config mlp = base;
	mlp.hidden = 7;
	check_model("mlp heads, mean-pooled bags, itc", mlp, 0, 0);
	struct align_config qf = mlp;
	qf.queries = 3, qf.qdim = 8, qf.heads = 2, qf.layers = 2, qf.ffn = 12;
	check_model("q-former with 2-d positions, itc", qf, 0, 1);
	check_model("q-former without positions, itc", qf, 0, 0);
	/* one activation set for four bags: the backward pass recomputes */
	check_model_sets("q-former recomputing activations, itc", qf, 0, 1, 1, 1);
	/* bags in parallel, and in turn when the activations are recomputed */
	check_model_sets("q-former, 2 threads", qf, 0, 1, 0, 2);
	check_model_sets("q-former recomputing activations, 2 threads", qf, 0, 1, 1, 2);
	struct align_config cv = mlp;
	cv.w_cvta = 0.5f;
	check_model("per-patch items, itc + cvta", cv, 1, 0);
	/* The top-k choice of keywords is piecewise constant: where a step of
	 * 1e-2 in a head weight swaps the k-th and (k+1)-th keyword the
	 * difference quotient jumps. CVTA's own check above (top-2 of 5) has no
	 * such swap; the MR-PLIP checks take every keyword (topk = nkw = 5) so
	 * that the multimodal encoder and MRTVA are checked without one. */
	struct align_config mr = cv;
	mr.w_mrtva = 0.7f;
	mr.topk = 5;
	check_model("mr-plip: itc + cvta + multimodal encoder + mrtva", mr, 1, 0);
	mr.w_itc = 0, mr.w_cvta = 0;
	check_model("mr-plip: mrtva alone", mr, 1, 0);
	struct align_config rg = mlp;
	rg.w_region = 0.8f;
	check_model("pathflip: itc + region-level nce", rg, 0, 0);
	/* PathFLIP with a Q-Former: the Region Q-Former over each region's
	 * patches, the Slide Q-Former over the region features; the region
	 * loss on the former, ITC on the latter */
	struct align_config rq = qf;
	rq.w_region = 0.8f;
	check_model("pathflip: region and slide q-formers, itc + region-level nce", rq, 0, 1);
	check_model_sets("pathflip: region and slide q-formers recomputing activations", rq, 0, 1,
	                 2, 1);
	check_model_sets("pathflip: region and slide q-formers, 2 threads", rq, 0, 1, 0, 2);
	rq.w_itc = 0;
	check_model("pathflip: region q-former, region-level nce alone", rq, 0, 0);
	/* the hardest negative is an argmax: the checks keep the negatives
	 * mined by the analytic pass (itm_keep_negatives), as the gradient does */
	struct align_config itm = mlp;
	itm.w_itm = 0.6f;
	check_model("itc + image-text matching with hard negatives", itm, 0, 0);
	itm.w_itc = 0;
	check_model("image-text matching alone, per-patch items", itm, 1, 0);
	/* the text decoder over the Q-Former's queries (tied embeddings, the
	 * queries' self-attention shared): every tensor, the Q-Former's too */
	struct align_config gen = qf;
	gen.vocab = 11, gen.ctx = 8, gen.plm_prefix = 0.5f;
	gen.w_itg = 0.7f;
	check_model("q-former + itg", gen, 0, 1);
	gen.w_itg = 0, gen.w_itc = 0, gen.w_mlm = 0.6f;
	check_model("q-former, mlm alone", gen, 0, 1);
	gen.w_mlm = 0, gen.w_plm = 0.9f;
	check_model("q-former, plm alone", gen, 0, 1);
	gen.w_itc = 1, gen.w_itg = 0.7f, gen.w_mlm = 0.6f;
	check_model_sets("q-former + itg + mlm + plm recomputing activations", gen, 0, 1, 1, 1);
	check_model_sets("q-former + itg + mlm + plm, 2 threads", gen, 0, 1, 0, 2);
	struct align_config rgen = gen;
	rgen.w_region = 0.8f;
	check_model("region and slide q-formers + itg + mlm + plm", rgen, 0, 1);
	check_groupnce(); /* last: its random draws would shift the data above */
	return tap_done();
}
