/*
 * align_text.c: the Q-Former's text side (align_text.h), forward and
 * backward of one caption against the queries' keys and values.
 */
#include "train/align_text.h"

#include "train/align_layers.h"

#include <math.h>
#include <string.h>

/* n floats from base at *used (NULL when only counting) */
static float *take(float *base, size_t *used, size_t n)
{
	float *p = base ? base + *used : NULL;
	*used += (n + 15) & ~(size_t)15;
	return p;
}

static size_t lay(struct align_text_act *a, const struct align_text_dims *d, float *base)
{
	int T = d->T, W = d->W, F = d->F, K = d->Q + d->T;
	struct align_text_act tmp;
	if (!a)
		a = &tmp;
	size_t u = 0;
	for (int l = 0; l < d->L; l++) {
		a->l[l].h = take(base, &u, (size_t)T * W);
		a->l[l].ln1 = take(base, &u, (size_t)T * W);
		a->l[l].ln1m = take(base, &u, T);
		a->l[l].ln1r = take(base, &u, T);
		a->l[l].qkv = take(base, &u, (size_t)T * 3 * W);
		a->l[l].P = take(base, &u, (size_t)d->H * T * K);
		a->l[l].satt = take(base, &u, (size_t)T * W);
		a->l[l].h1 = take(base, &u, (size_t)T * W);
		a->l[l].ln = take(base, &u, (size_t)T * W);
		a->l[l].lnm = take(base, &u, T);
		a->l[l].lnr = take(base, &u, T);
		a->l[l].fh = take(base, &u, (size_t)T * F);
		a->l[l].fg = take(base, &u, (size_t)T * F);
	}
	a->hout = take(base, &u, (size_t)T * W);
	a->z = take(base, &u, (size_t)T * W);
	a->zm = take(base, &u, T);
	a->zr = take(base, &u, T);
	a->zt = take(base, &u, (size_t)T * W);
	a->logits = take(base, &u, (size_t)T * d->V);
	a->rows = (int *)take(base, &u, T); /* sizeof(int) == sizeof(float) */
	a->dh = take(base, &u, (size_t)T * W);
	a->dln = take(base, &u, (size_t)T * W);
	a->dqkv = take(base, &u, (size_t)T * 3 * W);
	a->datt = take(base, &u, (size_t)T * W);
	a->dfh = take(base, &u, (size_t)T * F);
	a->dfg = take(base, &u, (size_t)T * F);
	a->dz = take(base, &u, (size_t)T * W);
	a->dP = take(base, &u, K);
	return u;
}

size_t align_text_floats(const struct align_text_dims *d)
{
	_Static_assert(sizeof(int) == sizeof(float), "int rows share the float arena");
	return lay(NULL, d, NULL);
}

void align_text_carve(struct align_text_act *a, const struct align_text_dims *d, float *base)
{
	lay(a, d, base);
}

/* Attention of T token rows (queries q, stride 3W) over the Q query rows'
 * keys/values (kq, vq: stride 3W) then the token rows' own (kt, vt: stride
 * 3W), masked; out (T, W); P (H, T, Q+T) the probabilities (0 where
 * masked). */
static void masked_attention_forward(float *out, float *P, const float *qt, const float *kq,
                                     const float *vq, const float *kt, const float *vt, int T,
                                     int Q, int W, int H, int prefix)
{
	int hd = W / H, K = Q + T, ld = 3 * W;
	float sc = 1.0f / sqrtf((float)hd);
	for (int h = 0; h < H; h++)
		for (int i = 0; i < T; i++) {
			const float *qi = qt + (size_t)i * ld + h * hd;
			float *p = P + ((size_t)h * T + i) * K;
			int seen = i + 1 > prefix ? i + 1 : (prefix < T ? prefix : T);
			float mx = -INFINITY;
			for (int j = 0; j < K; j++) {
				if (j >= Q + seen) {
					p[j] = 0.0f;
					continue;
				}
				const float *kj = j < Q ? kq + (size_t)j * ld + h * hd
				                        : kt + (size_t)(j - Q) * ld + h * hd;
				float s = 0.0f;
				for (int e = 0; e < hd; e++)
					s += qi[e] * kj[e];
				p[j] = s * sc;
				mx = p[j] > mx ? p[j] : mx;
			}
			float sum = 0.0f;
			for (int j = 0; j < Q + seen; j++) {
				p[j] = expf(p[j] - mx);
				sum += p[j];
			}
			float inv = 1.0f / sum;
			float *o = out + (size_t)i * W + h * hd;
			memset(o, 0, sizeof(float) * hd);
			for (int j = 0; j < Q + seen; j++) {
				p[j] *= inv;
				const float *vj = j < Q ? vq + (size_t)j * ld + h * hd
				                        : vt + (size_t)(j - Q) * ld + h * hd;
				for (int e = 0; e < hd; e++)
					o[e] += p[j] * vj[e];
			}
		}
}

/* Gradients of the above: dqt, dkt, dvt (stride 3W) and dkq, dvq (stride
 * 2W) accumulate; dP (Q+T) scratch */
static void masked_attention_backward(float *dqt, float *dkq, float *dvq, float *dkt, float *dvt,
                                      float *dP, const float *dout, const float *P,
                                      const float *qt, const float *kq, const float *vq,
                                      const float *kt, const float *vt, int T, int Q, int W,
                                      int H, int prefix)
{
	int hd = W / H, K = Q + T, ld = 3 * W, ldq = 2 * W;
	float sc = 1.0f / sqrtf((float)hd);
	for (int h = 0; h < H; h++)
		for (int i = 0; i < T; i++) {
			const float *qi = qt + (size_t)i * ld + h * hd;
			const float *p = P + ((size_t)h * T + i) * K;
			const float *go = dout + (size_t)i * W + h * hd;
			int seen = i + 1 > prefix ? i + 1 : (prefix < T ? prefix : T);
			float dot = 0.0f;
			for (int j = 0; j < Q + seen; j++) {
				const float *vj = j < Q ? vq + (size_t)j * ld + h * hd
				                        : vt + (size_t)(j - Q) * ld + h * hd;
				float *dvj = j < Q ? dvq + (size_t)j * ldq + h * hd
				                   : dvt + (size_t)(j - Q) * ld + h * hd;
				float s = 0.0f;
				for (int e = 0; e < hd; e++) {
					s += go[e] * vj[e];
					dvj[e] += p[j] * go[e];
				}
				dP[j] = s;
				dot += p[j] * s;
			}
			float *dqi = dqt + (size_t)i * ld + h * hd;
			for (int j = 0; j < Q + seen; j++) {
				float ds = p[j] * (dP[j] - dot) * sc;
				const float *kj = j < Q ? kq + (size_t)j * ld + h * hd
				                        : kt + (size_t)(j - Q) * ld + h * hd;
				float *dkj = j < Q ? dkq + (size_t)j * ldq + h * hd
				                   : dkt + (size_t)(j - Q) * ld + h * hd;
				for (int e = 0; e < hd; e++) {
					dqi[e] += ds * kj[e];
					dkj[e] += ds * qi[e];
				}
			}
		}
}

/* the blocks and the final LayerNorm over rows in[0..T) */
static void text_forward(const struct align_text_dims *d, const struct align_text_w *w,
                         struct align_text_act *a, const float *const *kvq, const int32_t *in,
                         int T, int prefix)
{
	int W = d->W, F = d->F;
	for (int t = 0; t < T; t++) {
		const float *e = w->tok + (size_t)in[t] * W, *p = w->pos + (size_t)t * W;
		float *h = a->l[0].h + (size_t)t * W;
		for (int c = 0; c < W; c++)
			h[c] = e[c] + p[c];
	}
	for (int l = 0; l < d->L; l++) {
		__typeof__(a->l[0]) *A = &a->l[l];
		__typeof__(w->blk[0]) *B = &w->blk[l];
		float *hn = l + 1 < d->L ? a->l[l + 1].h : a->hout;
		align_layernorm_forward(A->ln1, A->ln1m, A->ln1r, A->h, B->ln1w, B->ln1b, T, W);
		linear_forward(A->qkv, A->ln1, B->qkvw, B->qkvb, T, W, 3 * W);
		masked_attention_forward(A->satt, A->P, A->qkv, kvq[l] + W, kvq[l] + 2 * W,
		                         A->qkv + W, A->qkv + 2 * W, T, d->Q, W, d->H, prefix);
		linear_forward(A->h1, A->satt, B->sow, B->sob, T, W, W);
		for (size_t e = 0; e < (size_t)T * W; e++)
			A->h1[e] += A->h[e];
		align_layernorm_forward(A->ln, A->lnm, A->lnr, A->h1, B->lnw, B->lnb, T, W);
		linear_forward(A->fh, A->ln, B->f1w, B->f1b, T, W, F);
		align_gelu_forward(A->fg, A->fh, (size_t)T * F);
		linear_forward(hn, A->fg, B->f2w, B->f2b, T, F, W);
		for (size_t e = 0; e < (size_t)T * W; e++)
			hn[e] += A->h1[e];
	}
	align_layernorm_forward(a->z, a->zm, a->zr, a->hout, w->lnfw, w->lnfb, T, W);
}

double align_text_pass(const struct align_text_dims *d, const struct align_text_w *w,
                       const struct align_text_w *g, struct align_text_act *a,
                       const float *const *kvq, float *const *dkvq, const int32_t *in, int T,
                       int prefix, const int32_t *target, float scale, int *ntargets)
{
	int W = d->W, F = d->F, V = d->V, Q = d->Q;
	text_forward(d, w, a, kvq, in, T, prefix);
	int nt = 0;
	for (int t = 0; t < T; t++)
		if (target[t] >= 0) {
			a->rows[nt] = t;
			memcpy(a->zt + (size_t)nt * W, a->z + (size_t)t * W, sizeof(float) * W);
			nt++;
		}
	*ntargets = nt;
	if (nt == 0)
		return 0.0;
	/* logits (nt, V) = zt tok^T + head_bias; cross-entropy, and its
	 * gradient scale (softmax - onehot) in place */
	align_gemm(0, 1, nt, V, W, 1.0f, a->zt, W, w->tok, W, 0.0f, a->logits, V);
	double loss = 0.0;
	for (int r = 0; r < nt; r++) {
		float *lg = a->logits + (size_t)r * V;
		int y = target[a->rows[r]];
		float mx = -INFINITY;
		for (int v = 0; v < V; v++) {
			lg[v] += w->headb[v];
			mx = lg[v] > mx ? lg[v] : mx;
		}
		double sum = 0.0;
		for (int v = 0; v < V; v++)
			sum += exp((double)(lg[v] - mx));
		loss += log(sum) + mx - lg[y];
		if (!g)
			continue;
		float inv = (float)(1.0 / sum);
		for (int v = 0; v < V; v++)
			lg[v] = scale * expf(lg[v] - mx) * inv;
		lg[y] -= scale;
	}
	if (!g)
		return loss;
	/* head: d tok += dlogits^T zt; d bias += column sums; dzt = dlogits tok */
	align_gemm(1, 0, V, W, nt, 1.0f, a->logits, V, a->zt, W, 1.0f, g->tok, W);
	for (int r = 0; r < nt; r++) {
		const float *lg = a->logits + (size_t)r * V;
		for (int v = 0; v < V; v++)
			g->headb[v] += lg[v];
	}
	memset(a->dz, 0, sizeof(float) * T * W);
	align_gemm(0, 0, nt, W, V, 1.0f, a->logits, V, w->tok, W, 0.0f, a->zt, W);
	for (int r = 0; r < nt; r++)
		memcpy(a->dz + (size_t)a->rows[r] * W, a->zt + (size_t)r * W, sizeof(float) * W);
	memset(a->dh, 0, sizeof(float) * T * W);
	align_layernorm_backward(a->dh, g->lnfw, g->lnfb, a->dz, a->hout, w->lnfw, a->zm, a->zr, T,
	                         W);
	for (int l = d->L - 1; l >= 0; l--) {
		__typeof__(a->l[0]) *A = &a->l[l];
		__typeof__(w->blk[0]) *B = &w->blk[l];
		__typeof__(g->blk[0]) *G = &g->blk[l];
		/* FFN: dh (d of the block's output) reaches h1 by the residual */
		memset(a->dfg, 0, sizeof(float) * T * F);
		memset(a->dfh, 0, sizeof(float) * T * F);
		memset(a->dln, 0, sizeof(float) * T * W);
		linear_backward(a->dfg, G->f2w, G->f2b, a->dh, A->fg, B->f2w, T, F, W);
		align_gelu_backward(a->dfh, A->fh, a->dfg, (size_t)T * F);
		linear_backward(a->dln, G->f1w, G->f1b, a->dfh, A->ln, B->f1w, T, W, F);
		align_layernorm_backward(a->dh, G->lnw, G->lnb, a->dln, A->h1, B->lnw, A->lnm, A->lnr, T,
		                         W);
		/* self-attention: dh is d h1 */
		memset(a->datt, 0, sizeof(float) * T * W);
		memset(a->dqkv, 0, sizeof(float) * T * 3 * W);
		memset(a->dln, 0, sizeof(float) * T * W);
		linear_backward(a->datt, G->sow, G->sob, a->dh, A->satt, B->sow, T, W, W);
		masked_attention_backward(a->dqkv, dkvq[l], dkvq[l] + W, a->dqkv + W, a->dqkv + 2 * W,
		                          a->dP, a->datt, A->P, A->qkv, kvq[l] + W, kvq[l] + 2 * W,
		                          A->qkv + W, A->qkv + 2 * W, T, Q, W, d->H, prefix);
		linear_backward(a->dln, G->qkvw, G->qkvb, a->dqkv, A->ln1, B->qkvw, T, W, 3 * W);
		align_layernorm_backward(a->dh, G->ln1w, G->ln1b, a->dln, A->h, B->ln1w, A->ln1m,
		                         A->ln1r, T, W);
	}
	for (int t = 0; t < T; t++) {
		float *et = g->tok + (size_t)in[t] * W, *pt = g->pos + (size_t)t * W;
		const float *dt = a->dh + (size_t)t * W;
		for (int c = 0; c < W; c++) {
			et[c] += dt[c];
			pt[c] += dt[c];
		}
	}
	return loss;
}

void align_text_next_logits(const struct align_text_dims *d, const struct align_text_w *w,
                            struct align_text_act *a, const float *const *kvq,
                            const int32_t *in, int T, float *out)
{
	int W = d->W, V = d->V;
	text_forward(d, w, a, kvq, in, T, 1);
	align_gemm(0, 1, 1, V, W, 1.0f, a->z + (size_t)(T - 1) * W, W, w->tok, W, 0.0f, out, V);
	for (int v = 0; v < V; v++)
		out[v] += w->headb[v];
}
