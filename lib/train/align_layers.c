/*
 * align_layers.c: the layers of the alignment model, forward and backward
 * side by side over plain float buffers (see align.h for the shapes). Each
 * function is one loop nest or one GEMM so that a CUDA kernel can replace it
 * one for one. Backward functions accumulate (+=) into their gradients.
 */
/* Built with -fno-math-errno -fno-trapping-math (Makefile): nothing here
 * reads errno or the exception flags, and without them GCC will not turn
 * the clamps of exp_vec() into selects, so the loops over it stay scalar
 * (PyTorch builds with the same flags). */
#include "train/align_layers.h"
#include "train/clones.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

/* below this many elements a parallel region costs more than it saves */
#define PAR_MIN 32768
/* below this many multiply-adds a product is not split across threads */
#define GEMM_PAR_MIN (1 << 22)

void align_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc)
{
	enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
	enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
	int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
	if (nt < 2 || (double)M * N * K < GEMM_PAR_MIN || (M < 32 && N < 32)) {
		cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
		return;
	}
	/* split the longer side of C into one block per thread, 16-aligned
	 * (the kernels' unroll); K is never split, so each element of C is one
	 * call's dot product over all of it */
	int by_rows = M >= N, len = by_rows ? M : N;
	int chunk = ((len + nt - 1) / nt + 15) & ~15;
	int parts = (len + chunk - 1) / chunk;
#pragma omp parallel for num_threads(parts) schedule(static, 1)
	for (int p = 0; p < parts; p++) {
		int s = p * chunk, e = s + chunk < len ? s + chunk : len;
		if (by_rows) /* rows s..e of op(A) and C */
			cblas_sgemm(CblasRowMajor, ta, tb, e - s, N, K, alpha,
			            trans_a ? A + s : A + (size_t)s * lda, lda, B, ldb, beta,
			            C + (size_t)s * ldc, ldc);
		else /* columns s..e of op(B) and C */
			cblas_sgemm(CblasRowMajor, ta, tb, M, e - s, K, alpha, A, lda,
			            trans_b ? B + (size_t)s * ldb : B + s, ldb, beta, C + s, ldc);
	}
}

void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int C,
                    int OC)
{
	/* out (N,OC) = b + inp (N,C) @ w^T (C,OC): the bias in place of the
	 * zeros BLAS would write before accumulating */
	if (b)
		for (int i = 0; i < N; i++)
			memcpy(out + (size_t)i * OC, b, sizeof(float) * OC);
	align_gemm(0, 1, N, OC, C, 1.0f, inp, C, w, C, b ? 1.0f : 0.0f, out, OC);
}

void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, int N, int C, int OC)
{
	if (dinp) /* dinp (N,C) += dout (N,OC) @ w (OC,C) */
		align_gemm(0, 0, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
	/* dw (OC,C) += dout^T (OC,N) @ inp (N,C) */
	align_gemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
	if (db) /* row by row, so the inner loop runs along memory */
		for (int i = 0; i < N; i++) {
			const float *d = dout + (size_t)i * OC;
			for (int o = 0; o < OC; o++)
				db[o] += d[o];
		}
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

/* exp(x) in float without a libm call, so that loops over it vectorise:
 * x = n ln2 + r with |r| <= ln2/2 (n rounded by the 1.5 * 2^23 trick),
 * exp(r) by its Taylor polynomial to degree 6 (relative error about 1e-7,
 * a float ulp), 2^n put in the exponent bits. x is clamped to [-87, 88]:
 * exp(-87) ~ 1.6e-38 stands for 0, exp(88) ~ 1.7e38 for overflow. */
static inline float exp_vec(float x)
{
	x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
	float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
	float r = x - n * 0.693145751953125f - n * 1.42860682030941723e-06f;
	float p = 1.0f / 720;
	p = p * r + 1.0f / 120;
	p = p * r + 1.0f / 24;
	p = p * r + 1.0f / 6;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	int32_t bits = ((int32_t)n + 127) << 23;
	float two_n;
	memcpy(&two_n, &bits, sizeof two_n);
	return p * two_n;
}

/* tanh(u) = 1 - 2 / (exp(2u) + 1), saturating cleanly at +-1 */
static inline float tanh_fast(float u)
{
	return 1.0f - 2.0f / (exp_vec(2.0f * u) + 1.0f);
}

/* elements [lo, hi) of GELU forward and backward */
CLONES static void gelu_forward_span(float *restrict out, const float *restrict inp,
                                         size_t lo, size_t hi)
{
#pragma omp simd
	for (size_t i = lo; i < hi; i++) {
		float x = inp[i];
		out[i] = 0.5f * x * (1.0f + tanh_fast(GELU_K * (x + GELU_C * x * x * x)));
	}
}

CLONES static void gelu_backward_span(float *restrict dinp, const float *restrict inp,
                                          const float *restrict dout, size_t lo, size_t hi)
{
#pragma omp simd
	for (size_t i = lo; i < hi; i++) {
		float x = inp[i];
		float t = tanh_fast(GELU_K * (x + GELU_C * x * x * x));
		float dt = (1.0f - t * t) * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
		dinp[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * dt);
	}
}

#define SPAN 4096 /* elements a call of a span kernel takes */

void align_gelu_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
	for (size_t s = 0; s < n; s += SPAN)
		gelu_forward_span(out, inp, s, s + SPAN < n ? s + SPAN : n);
}

void align_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
	for (size_t s = 0; s < n; s += SPAN)
		gelu_backward_span(dinp, inp, dout, s, s + SPAN < n ? s + SPAN : n);
}

void align_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
	for (int i = 0; i < N; i++) {
		const float *x = inp + (size_t)i * C;
		float *y = out + (size_t)i * C;
		float m = 0.0f, v = 0.0f;
		for (int c = 0; c < C; c++)
			m += x[c];
		m /= C;
		for (int c = 0; c < C; c++)
			v += (x[c] - m) * (x[c] - m);
		v /= C;
		float s = 1.0f / sqrtf(v + 1e-5f);
		for (int c = 0; c < C; c++)
			y[c] = (x[c] - m) * s * w[c] + b[c];
		mean[i] = m;
		rstd[i] = s;
	}
}

void align_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int N, int C)
{
	/* dw, db: sums over rows, done column-parallel so threads never share */
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
	for (int c = 0; c < C; c++) {
		float sw = 0.0f, sb = 0.0f;
		for (int i = 0; i < N; i++) {
			float xh = (inp[(size_t)i * C + c] - mean[i]) * rstd[i];
			sw += dout[(size_t)i * C + c] * xh;
			sb += dout[(size_t)i * C + c];
		}
		dw[c] += sw;
		db[c] += sb;
	}
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
	for (int i = 0; i < N; i++) {
		const float *x = inp + (size_t)i * C, *dy = dout + (size_t)i * C;
		float *dx = dinp + (size_t)i * C;
		float dnorm_mean = 0.0f, dnorm_xh = 0.0f;
		for (int c = 0; c < C; c++) {
			float xh = (x[c] - mean[i]) * rstd[i];
			float dn = dy[c] * w[c];
			dnorm_mean += dn;
			dnorm_xh += dn * xh;
		}
		dnorm_mean /= C;
		dnorm_xh /= C;
		for (int c = 0; c < C; c++) {
			float xh = (x[c] - mean[i]) * rstd[i];
			float dn = dy[c] * w[c];
			dx[c] += (dn - dnorm_mean - xh * dnorm_xh) * rstd[i];
		}
	}
}

void l2norm_forward(float *out, float *norm, const float *inp, int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
	for (int i = 0; i < N; i++) {
		const float *x = inp + (size_t)i * C;
		float s = 0.0f;
		for (int c = 0; c < C; c++)
			s += x[c] * x[c];
		float nr = sqrtf(s);
		if (nr < 1e-12f)
			nr = 1e-12f;
		norm[i] = nr;
		for (int c = 0; c < C; c++)
			out[(size_t)i * C + c] = x[c] / nr;
	}
}

void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm, int N,
                     int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
	for (int i = 0; i < N; i++) {
		const float *y = out + (size_t)i * C, *dy = dout + (size_t)i * C;
		float d = 0.0f;
		for (int c = 0; c < C; c++)
			d += y[c] * dy[c];
		for (int c = 0; c < C; c++)
			dinp[(size_t)i * C + c] += (dy[c] - y[c] * d) / norm[i];
	}
}

/* one row of cols: exp(x - max) / sum */
CLONES static void softmax_row(float *r, int cols)
{
	float mx = r[0];
#pragma omp simd reduction(max : mx)
	for (int j = 1; j < cols; j++)
		mx = r[j] > mx ? r[j] : mx;
	float s = 0.0f;
#pragma omp simd reduction(+ : s)
	for (int j = 0; j < cols; j++) {
		r[j] = exp_vec(r[j] - mx);
		s += r[j];
	}
	float inv = 1.0f / s; /* as PyTorch: one division a row */
#pragma omp simd
	for (int j = 0; j < cols; j++)
		r[j] *= inv;
}

static void softmax_rows(float *a, int rows, int cols)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * cols >= PAR_MIN)
	for (int i = 0; i < rows; i++)
		softmax_row(a + (size_t)i * cols, cols);
}

void align_attention_forward(float *out, float *att, const float *q, int ldq, const float *k, int ldk,
                       const float *v, int ldv, int Tq, int Tk, int H, int hd)
{
	float scale = 1.0f / sqrtf((float)hd);
	/* heads write disjoint columns of out and planes of att */
#pragma omp parallel for schedule(static) if ((double)H * Tq * Tk * hd >= GEMM_PAR_MIN)
	for (int h = 0; h < H; h++) {
		float *a = att + (size_t)h * Tq * Tk; /* (Tq, Tk) */
		align_gemm(0, 1, Tq, Tk, hd, scale, q + h * hd, ldq, k + h * hd, ldk, 0.0f, a, Tk);
		softmax_rows(a, Tq, Tk);
		align_gemm(0, 0, Tq, hd, Tk, 1.0f, a, Tk, v + h * hd, ldv, 0.0f, out + h * hd,
		           H * hd);
	}
}

void align_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                        const float *att, const float *q, int ldq, const float *k, int ldk,
                        const float *v, int ldv, int Tq, int Tk, int H, int hd)
{
	float scale = 1.0f / sqrtf((float)hd);
	for (int h = 0; h < H; h++) {
		const float *a = att + (size_t)h * Tq * Tk;
		const float *dy = dout + h * hd; /* (Tq, hd), ld H*hd */
		/* dP (Tq,Tk) = dy @ v_h^T */
		align_gemm(0, 1, Tq, Tk, hd, 1.0f, dy, H * hd, v + h * hd, ldv, 0.0f, scratch, Tk);
		/* dv_h (Tk,hd) += P^T @ dy */
		align_gemm(1, 0, Tk, hd, Tq, 1.0f, a, Tk, dy, H * hd, 1.0f, dv + h * hd, ldv);
		/* dS = P * (dP - rowsum(P * dP)) */
#pragma omp parallel for schedule(static) if ((size_t)Tq * Tk >= PAR_MIN)
		for (int i = 0; i < Tq; i++) {
			const float *p = a + (size_t)i * Tk;
			float *d = scratch + (size_t)i * Tk;
			float s = 0.0f;
			for (int j = 0; j < Tk; j++)
				s += p[j] * d[j];
			for (int j = 0; j < Tk; j++)
				d[j] = p[j] * (d[j] - s);
		}
		/* dq_h += scale dS @ k_h ; dk_h += scale dS^T @ q_h */
		align_gemm(0, 0, Tq, hd, Tk, scale, scratch, Tk, k + h * hd, ldk, 1.0f, dq + h * hd,
		           ldq);
		align_gemm(1, 0, Tk, hd, Tq, scale, scratch, Tk, q + h * hd, ldq, 1.0f, dk + h * hd,
		           ldk);
	}
}

void posenc2d_add(float *x, const float *pos, float extent, int N, int C)
{
	int half = C / 2, nf = half / 2;
	float freq[nf > 0 ? nf : 1]; /* 1/10000^(2i/half) */
	for (int i = 0; i < nf; i++)
		freq[i] = (float)pow(10000.0, -(double)(2 * i) / half);
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
	for (int n = 0; n < N; n++) {
		for (int a = 0; a < 2; a++) {
			float p = pos[(size_t)n * 2 + a] / extent;
			float *row = x + (size_t)n * C + a * half;
			for (int i = 0; i < nf; i++) {
				float sn, cs;
				sincosf(p * freq[i], &sn, &cs);
				row[2 * i] += sn;
				row[2 * i + 1] += cs;
			}
		}
	}
}

/* Backward through logits l (G,S) = sc a b^T (a (G,D), b (S,D)) given dl =
 * dloss/dl: da += w sc dl b, db += w sc dl^T a (each may be NULL), and,
 * unless the scale is clamped, dlogit_scale += w sum(dl * l) (d sc/d log sc
 * = sc, and l already carries sc). */
static void similarity_backward(float *da, float *db, float *dlogit_scale, const float *dl,
                                const float *l, const float *a, const float *b, float sc,
                                int clamped, int G, int S, int D, float w)
{
	if (!clamped) {
		float ds = 0.0f;
		for (size_t e = 0; e < (size_t)G * S; e++)
			ds += dl[e] * l[e];
		*dlogit_scale += w * ds;
	}
	if (da)
		align_gemm(0, 0, G, D, S, w * sc, dl, S, b, D, 1.0f, da, D);
	if (db)
		align_gemm(1, 0, S, D, G, w * sc, dl, S, a, D, 1.0f, db, D);
}

float infonce_forward_backward(float *dzi, float *dzt, float *dlogit_scale, float *logits,
                               const float *zi, const float *zt, float logit_scale, int clamped,
                               int R, int D, float w)
{
	float s = expf(logit_scale);
	float *dl = logits + (size_t)R * R; /* (R,R) dloss/dlogits */
	/* logits (R,R) = s zi zt^T */
	align_gemm(0, 1, R, R, D, s, zi, D, zt, D, 0.0f, logits, R);
	/* log-sum-exp of every row (image -> text) and every column (text ->
	 * image), each column's taken row by row so that the loops run along
	 * memory; then dl = (softmax_row + softmax_col - 2 I) / 2R in one pass */
	float *lse_r = dl + (size_t)R * R, *lse_c = lse_r + R; /* (R) each */
	double loss = 0.0;
	for (int j = 0; j < R; j++)
		lse_c[j] = -INFINITY;
	for (int i = 0; i < R; i++) {
		const float *r = logits + (size_t)i * R;
		float mx = r[0];
		for (int j = 0; j < R; j++) {
			mx = r[j] > mx ? r[j] : mx;
			lse_c[j] = r[j] > lse_c[j] ? r[j] : lse_c[j]; /* column max, for now */
		}
		float se = 0.0f;
#pragma omp simd reduction(+ : se)
		for (int j = 0; j < R; j++)
			se += exp_vec(r[j] - mx);
		lse_r[i] = mx + logf(se);
		loss += lse_r[i] - r[i];
	}
	float *se_c = dl; /* (R) column sums, in dl's first row until it is written */
	for (int j = 0; j < R; j++)
		se_c[j] = 0.0f;
	for (int i = 0; i < R; i++) {
		const float *r = logits + (size_t)i * R;
#pragma omp simd
		for (int j = 0; j < R; j++)
			se_c[j] += exp_vec(r[j] - lse_c[j]);
	}
	for (int j = 0; j < R; j++) {
		lse_c[j] += logf(se_c[j]);
		loss += lse_c[j] - logits[(size_t)j * R + j];
	}
	float inv = 1.0f / (2.0f * R);
	for (int i = 0; i < R; i++) {
		const float *r = logits + (size_t)i * R;
		float *d = dl + (size_t)i * R, lr = lse_r[i];
#pragma omp simd
		for (int j = 0; j < R; j++)
			d[j] = (exp_vec(r[j] - lr) + exp_vec(r[j] - lse_c[j])) * inv;
		d[i] -= 2.0f * inv;
	}
	loss /= 2.0 * R;
	similarity_backward(dzi, dzt, dlogit_scale, dl, logits, zi, zt, s, clamped, R, R, D, w);
	return (float)loss;
}

float multipos_nce_forward_backward(float *dz, float *dkeys, float *dlogit_scale, float *scratch,
                                    int *order, const float *z, const float *keys,
                                    float logit_scale, int clamped, int M, int D, int topk,
                                    float w)
{
	float s = expf(logit_scale);
	float *l = scratch, *dl = scratch + M; /* (M) each */
	for (int j = 0; j < M; j++) {
		float d = 0.0f;
		for (int c = 0; c < D; c++)
			d += z[c] * keys[(size_t)j * D + c];
		l[j] = s * d;
		order[j] = j;
	}
	if (topk > M)
		topk = M;
	/* partial selection sort: the topk largest first, ties by index */
	for (int a = 0; a < topk; a++) {
		int best = a;
		for (int b = a + 1; b < M; b++)
			if (l[order[b]] > l[order[best]] ||
			    (l[order[b]] == l[order[best]] && order[b] < order[best]))
				best = b;
		int t = order[a];
		order[a] = order[best];
		order[best] = t;
	}
	float mx = l[0];
	for (int j = 1; j < M; j++)
		mx = l[j] > mx ? l[j] : mx;
	float sall = 0.0f, spos = 0.0f;
	for (int j = 0; j < M; j++)
		sall += expf(l[j] - mx);
	for (int a = 0; a < topk; a++)
		spos += expf(l[order[a]] - mx);
	float loss = logf(sall) - logf(spos);
	for (int j = 0; j < M; j++)
		dl[j] = expf(l[j] - mx) / sall;
	for (int a = 0; a < topk; a++)
		dl[order[a]] -= expf(l[order[a]] - mx) / spos;
	if (!clamped) {
		float ds = 0.0f;
		for (int j = 0; j < M; j++)
			ds += dl[j] * l[j];
		*dlogit_scale += w * ds;
	}
	for (int j = 0; j < M; j++)
		for (int c = 0; c < D; c++) {
			if (dz)
				dz[c] += w * s * dl[j] * keys[(size_t)j * D + c];
			if (dkeys)
				dkeys[(size_t)j * D + c] += w * s * dl[j] * z[c];
		}
	return loss;
}

float groupnce_forward_backward(float *da, float *db, float *dlogit_scale, float *scratch,
                                const float *a, const float *b, const int *gid, const int *sid,
                                float logit_scale, int clamped, int G, int S, int D, float w)
{
	float sc = expf(logit_scale);
	float *l = scratch, *dl = scratch + (size_t)G * S; /* (G,S) each */
	align_gemm(0, 1, G, S, D, sc, a, D, b, D, 0.0f, l, S);
	memset(dl, 0, sizeof(float) * G * S);
	int nrows = 0, ncols = 0;
	for (int g = 0; g < G; g++)
		for (int j = 0; j < S; j++)
			if (gid[g] == sid[j]) {
				nrows++;
				break;
			}
	for (int j = 0; j < S; j++)
		for (int g = 0; g < G; g++)
			if (gid[g] == sid[j]) {
				ncols++;
				break;
			}
	double lr = 0.0, lc = 0.0;
	/* rows: a region against all sentences */
	for (int g = 0; g < G && nrows; g++) {
		const float *r = l + (size_t)g * S;
		float mx = r[0], mp = -INFINITY;
		for (int j = 0; j < S; j++) {
			mx = r[j] > mx ? r[j] : mx;
			if (gid[g] == sid[j] && r[j] > mp)
				mp = r[j];
		}
		if (mp == -INFINITY)
			continue;
		float sa = 0.0f, sp = 0.0f;
		for (int j = 0; j < S; j++) {
			sa += expf(r[j] - mx);
			if (gid[g] == sid[j])
				sp += expf(r[j] - mp);
		}
		lr += (mx + logf(sa)) - (mp + logf(sp));
		for (int j = 0; j < S; j++) {
			float d = expf(r[j] - mx) / sa;
			if (gid[g] == sid[j])
				d -= expf(r[j] - mp) / sp;
			dl[(size_t)g * S + j] += d / (2.0f * nrows);
		}
	}
	/* columns: a sentence against all regions */
	for (int j = 0; j < S && ncols; j++) {
		float mx = -INFINITY, mp = -INFINITY;
		for (int g = 0; g < G; g++) {
			float v = l[(size_t)g * S + j];
			mx = v > mx ? v : mx;
			if (gid[g] == sid[j] && v > mp)
				mp = v;
		}
		if (mp == -INFINITY)
			continue;
		float sa = 0.0f, sp = 0.0f;
		for (int g = 0; g < G; g++) {
			float v = l[(size_t)g * S + j];
			sa += expf(v - mx);
			if (gid[g] == sid[j])
				sp += expf(v - mp);
		}
		lc += (mx + logf(sa)) - (mp + logf(sp));
		for (int g = 0; g < G; g++) {
			float v = l[(size_t)g * S + j];
			float d = expf(v - mx) / sa;
			if (gid[g] == sid[j])
				d -= expf(v - mp) / sp;
			dl[(size_t)g * S + j] += d / (2.0f * ncols);
		}
	}
	similarity_backward(da, db, dlogit_scale, dl, l, a, b, sc, clamped, G, S, D, w);
	return (float)(0.5 * ((nrows ? lr / nrows : 0.0) + (ncols ? lc / ncols : 0.0)));
}
