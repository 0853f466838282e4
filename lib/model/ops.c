/*
 * ops.c: CPU implementations of the kernels in ops.h: OpenBLAS sgemm for
 * every matrix product, OpenMP loops for the rest.
 *
 * The element-wise loops are built for AVX-512, AVX2+FMA and baseline
 * x86-64 (target_clones, picked at load time by the CPU), since the
 * project compiles for baseline x86-64. exp and erf are written as
 * polynomials so that these loops vectorise; their error (< 2e-7 relative
 * for exp, < 1.5e-7 absolute for erf) is far below the fp32 parity
 * tolerance (tests/unit/test-vit.c).
 */
#include "model/ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

/* All parallelism is OpenMP's: OpenBLAS runs single-threaded inside each
 * OpenMP thread. Two thread pools (OpenMP's and OpenBLAS's own) on the same
 * cores spin against each other between calls; measured here, one pool
 * halves the forward time of a ViT-S on 2 cores. */
static void blas_single_threaded(void)
{
	static int done;
	if (!done && openblas_get_num_threads() != 1)
		openblas_set_num_threads(1);
	done = 1;
}

/* Rows [r0, r1) of out (N,OC) for the row block of thread t of nt. */
static void row_block(int N, int t, int nt, int *r0, int *r1)
{
	int per = (N + nt - 1) / nt;
	per = (per + 7) / 8 * 8;
	*r0 = t * per < N ? t * per : N;
	*r1 = *r0 + per < N ? *r0 + per : N;
}

/* out (N,OC) = inp (N,C) @ W + bias, W either (OC,C) (trans) or (C,OC):
 * rows split across the OpenMP threads, one single-threaded sgemm each.
 * A bias is copied into the rows first and the product added (beta 1). */
static void matmul_rows(float *out, const float *inp, const float *weight, const float *bias,
                        int N, int C, int OC, int trans)
{
	blas_single_threaded();
#pragma omp parallel
	{
		int r0, r1;
		row_block(N, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
		if (r1 > r0) {
			float beta = 0.0f;
			if (bias) {
				for (int i = r0; i < r1; i++)
					memcpy(out + (size_t)i * OC, bias, (size_t)OC * sizeof *out);
				beta = 1.0f;
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, trans ? CblasTrans : CblasNoTrans,
			            r1 - r0, OC, C, 1.0f, inp + (size_t)r0 * C, C, weight,
			            trans ? C : OC, beta, out + (size_t)r0 * OC, OC);
		}
	}
}

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                    int C, int OC)
{
	matmul_rows(out, inp, weight, bias, N, C, OC, 1);
}

void matmul_forward_in_out(float *out, const float *inp, const float *weight, int N, int C,
                           int OC)
{
	matmul_rows(out, inp, weight, NULL, N, C, OC, 0);
}

void matmul_forward_in_out_bias(float *out, const float *inp, const float *weight,
                                const float *bias, int N, int C, int OC)
{
	matmul_rows(out, inp, weight, bias, N, C, OC, 0);
}

/* The element-wise math is written on 8-float vectors (GCC vector
 * extensions) so that it vectorises whatever the optimisation flags. */
/* The helpers below are always inlined, so the 32-byte vector ABI
 * warning (about calls between differently built objects) cannot apply. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));

#define splat(f) ((vf8){(f), (f), (f), (f), (f), (f), (f), (f)})

#define select8(mask, a, b) ((vf8)(((vi8)(a) & (mask)) | ((vi8)(b) & ~(mask))))

/* exp by 2^n * p(r): x = n ln2 + r, |r| <= ln2/2, Taylor to degree 7;
 * n rounded with the 1.5 * 2^23 trick. */
static inline __attribute__((always_inline)) void exp8(vf8 *xp)
{
	vf8 x = *xp;
	x = select8(x < splat(-87.0f), splat(-87.0f), x);
	x = select8(x > splat(88.0f), splat(88.0f), x);
	vf8 magic = splat(12582912.0f);
	vf8 n = (x * splat(1.44269504f) + magic) - magic;
	vf8 r = x - n * splat(0.693145752f) - n * splat(1.42860677e-6f);
	vf8 p = splat(1.0f / 5040);
	p = p * r + splat(1.0f / 720);
	p = p * r + splat(1.0f / 120);
	p = p * r + splat(1.0f / 24);
	p = p * r + splat(1.0f / 6);
	p = p * r + splat(0.5f);
	p = p * r + splat(1.0f);
	p = p * r + splat(1.0f);
	vi8 e = (__builtin_convertvector(n, vi8) + 127) << 23;
	*xp = p * (vf8)e;
}

/* erf, Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7). */
static inline __attribute__((always_inline)) void erf8(vf8 *xp)
{
	vf8 x = *xp;
	vi8 sign = (vi8)x & (vi8){INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN,
	                          INT32_MIN, INT32_MIN, INT32_MIN};
	vf8 a = (vf8)((vi8)x ^ sign);
	vf8 t = splat(1.0f) / (splat(1.0f) + splat(0.3275911f) * a);
	vf8 y = splat(1.061405429f);
	y = y * t - splat(1.453152027f);
	y = y * t + splat(1.421413741f);
	y = y * t - splat(0.284496736f);
	y = y * t + splat(0.254829592f);
	vf8 e = -a * a;
	exp8(&e);
	y = splat(1.0f) - y * t * e;
	*xp = (vf8)((vi8)y | sign);
}

enum unary { UNARY_EXP, UNARY_GELU, UNARY_QUICKGELU, UNARY_SILU };

static inline __attribute__((always_inline)) void unary8(vf8 *p, enum unary op)
{
	vf8 v = *p;
	switch (op) {
	case UNARY_EXP: exp8(p); break;
	case UNARY_GELU: {
		vf8 u = v * splat(0.70710678118654752f);
		erf8(&u);
		*p = splat(0.5f) * v * (splat(1.0f) + u);
		break;
	}
	case UNARY_SILU: {
		vf8 u = -v;
		exp8(&u);
		*p = v / (splat(1.0f) + u);
		break;
	}
	default: {
		vf8 u = splat(-1.702f) * v;
		exp8(&u);
		*p = v / (splat(1.0f) + u);
		break;
	}
	}
}

/* x[i] = op(x[i]) over n elements, 8 at a time, the tail padded. */
VECTOR_CLONES
static void unary_span(float *x, size_t n, enum unary op)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		vf8 v;
		memcpy(&v, x + i, sizeof v);
		unary8(&v, op);
		memcpy(x + i, &v, sizeof v);
	}
	if (i < n) {
		vf8 v = splat(0.0f);
		memcpy(&v, x + i, (n - i) * sizeof(float));
		unary8(&v, op);
		memcpy(x + i, &v, (n - i) * sizeof(float));
	}
}

void ops_exp(float *x, size_t n)
{
	unary_span(x, n, UNARY_EXP);
}

typedef double vd8 __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) double hsum_d8(vd8 v)
{
	return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* One row: o (C) = LayerNorm(x (C)) * w + b. Sums in double, 8 lanes. */
static inline __attribute__((always_inline)) void layernorm_row(float *o, const float *x,
                                                                const float *w, const float *b,
                                                                int C, float eps)
{
	vd8 s8 = {0};
	int c = 0;
	for (; c + 8 <= C; c += 8) {
		vf8 v;
		memcpy(&v, x + c, sizeof v);
		s8 += __builtin_convertvector(v, vd8);
	}
	double sum = hsum_d8(s8);
	for (int t = c; t < C; t++)
		sum += x[t];
	double mean = sum / C;
	vd8 q8 = {0};
	for (c = 0; c + 8 <= C; c += 8) {
		vf8 v;
		memcpy(&v, x + c, sizeof v);
		vd8 d = __builtin_convertvector(v, vd8) - mean;
		q8 += d * d;
	}
	double sq = hsum_d8(q8);
	for (int t = c; t < C; t++) {
		double d = x[t] - mean;
		sq += d * d;
	}
	float rstd = (float)(1.0 / sqrt(sq / C + (double)eps));
	float m = (float)mean;
	for (c = 0; c + 8 <= C; c += 8) {
		vf8 v, vw, vb;
		memcpy(&v, x + c, sizeof v);
		memcpy(&vw, w + c, sizeof vw);
		memcpy(&vb, b + c, sizeof vb);
		v = (v - m) * rstd * vw + vb;
		memcpy(o + c, &v, sizeof v);
	}
	for (; c < C; c++)
		o[c] = (x[c] - m) * rstd * w[c] + b[c];
}

VECTOR_CLONES
static void layernorm_rows(float *out, const float *inp, const float *weight, const float *bias,
                           int r0, int r1, int C, float eps)
{
	for (int i = r0; i < r1; i++)
		layernorm_row(out + (size_t)i * C, inp + (size_t)i * C, weight, bias, C, eps);
}

void layernorm_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int N, int C, float eps)
{
	int nchunk = (N + 15) / 16;
#pragma omp parallel for schedule(static) if (N > 16)
	for (int k = 0; k < nchunk; k++) {
		int r1 = (k + 1) * 16 < N ? (k + 1) * 16 : N;
		layernorm_rows(out, inp, weight, bias, k * 16, r1, C, eps);
	}
}

/* Rows [r0, r1): x += gamma * (y + bias), then ln_out = LayerNorm(x) when
 * ln_out is not NULL, while the row is in cache. */
VECTOR_CLONES
static void residual_ln_rows(float *x, const float *y, const float *bias, const float *gamma,
                             float *ln_out, const float *ln_w, const float *ln_b, int r0, int r1,
                             int C, float eps)
{
	for (int i = r0; i < r1; i++) {
		float *xr = x + (size_t)i * C;
		const float *yr = y + (size_t)i * C;
		int c = 0;
		for (; c + 8 <= C; c += 8) {
			vf8 vx, vy, vb = splat(0.0f), vg = splat(1.0f);
			memcpy(&vx, xr + c, sizeof vx);
			memcpy(&vy, yr + c, sizeof vy);
			if (bias)
				memcpy(&vb, bias + c, sizeof vb);
			if (gamma)
				memcpy(&vg, gamma + c, sizeof vg);
			vx += vg * (vy + vb);
			memcpy(xr + c, &vx, sizeof vx);
		}
		for (; c < C; c++)
			xr[c] += (gamma ? gamma[c] : 1.0f) * (yr[c] + (bias ? bias[c] : 0.0f));
		if (ln_out)
			layernorm_row(ln_out + (size_t)i * C, xr, ln_w, ln_b, C, eps);
	}
}

void residual_layernorm_forward(float *x, const float *y, const float *bias, const float *gamma,
                                float *ln_out, const float *ln_w, const float *ln_b, int N, int C,
                                float eps)
{
	int nchunk = (N + 15) / 16;
#pragma omp parallel for schedule(static) if (N > 64)
	for (int k = 0; k < nchunk; k++) {
		int r1 = (k + 1) * 16 < N ? (k + 1) * 16 : N;
		residual_ln_rows(x, y, bias, gamma, ln_out, ln_w, ln_b, k * 16, r1, C, eps);
	}
}

/* Rows [r0, r1) of x (N,H): x = op(x + bias). */
VECTOR_CLONES
static void bias_act_rows(float *x, const float *bias, int r0, int r1, int H, enum unary op)
{
	for (int i = r0; i < r1; i++) {
		float *xr = x + (size_t)i * H;
		int c = 0;
		for (; c + 8 <= H; c += 8) {
			vf8 v, vb;
			memcpy(&v, xr + c, sizeof v);
			memcpy(&vb, bias + c, sizeof vb);
			v += vb;
			unary8(&v, op);
			memcpy(xr + c, &v, sizeof v);
		}
		if (c < H) {
			vf8 v = splat(0.0f);
			for (int t = c; t < H; t++)
				v[t - c] = xr[t] + bias[t];
			unary8(&v, op);
			for (int t = c; t < H; t++)
				xr[t] = v[t - c];
		}
	}
}

void bias_glu_forward(float *x, const float *bias, int N, int H, int act)
{
	int H2 = H / 2;
	enum unary op = act == 2 ? UNARY_SILU : act == 1 ? UNARY_QUICKGELU : UNARY_GELU;
	/* Each row on its own: act(a + b_a) into the first half, times the gate. */
#pragma omp parallel for schedule(static) if (N > 32)
	for (int r = 0; r < N; r++) {
		float *row = x + (size_t)r * H;
		bias_act_rows(row, bias, 0, 1, H2, op);
		for (int j = 0; j < H2; j++)
			row[j] *= row[H2 + j] + bias[H2 + j];
	}
	/* Then packed to (N, H/2): row r moves down to r * H/2, below every
	 * row not yet moved, so in order and with memmove. */
	for (int r = 1; r < N; r++)
		memmove(x + (size_t)r * H2, x + (size_t)r * H, (size_t)H2 * sizeof(float));
}

void bias_gelu_forward(float *x, const float *bias, int N, int H, int quick)
{
	int nchunk = (N + 7) / 8;
	enum unary op = quick ? UNARY_QUICKGELU : UNARY_GELU;
#pragma omp parallel for schedule(static) if (N > 32)
	for (int k = 0; k < nchunk; k++) {
		int r1 = (k + 1) * 8 < N ? (k + 1) * 8 : N;
		bias_act_rows(x, bias, k * 8, r1, H, op);
	}
}

static void gelu_span(float *x, size_t n)
{
	unary_span(x, n, UNARY_GELU);
}

static void quickgelu_span(float *x, size_t n)
{
	unary_span(x, n, UNARY_QUICKGELU);
}

#define SPAN 4096

void gelu_forward(float *x, size_t n)
{
	long nspan = (long)((n + SPAN - 1) / SPAN);
#pragma omp parallel for schedule(static) if (nspan > 4)
	for (long s = 0; s < nspan; s++) {
		size_t b = (size_t)s * SPAN, e = b + SPAN < n ? b + SPAN : n;
		gelu_span(x + b, e - b);
	}
}

void quickgelu_forward(float *x, size_t n)
{
	long nspan = (long)((n + SPAN - 1) / SPAN);
#pragma omp parallel for schedule(static) if (nspan > 4)
	for (long s = 0; s < nspan; s++) {
		size_t b = (size_t)s * SPAN, e = b + SPAN < n ? b + SPAN : n;
		quickgelu_span(x + b, e - b);
	}
}

void residual_forward(float *x, const float *y, const float *gamma, int N, int C)
{
#pragma omp parallel for schedule(static) if (N > 64)
	for (int i = 0; i < N; i++) {
		float *xr = x + (size_t)i * C;
		const float *yr = y + (size_t)i * C;
		if (gamma)
			for (int c = 0; c < C; c++)
				xr[c] += gamma[c] * yr[c];
		else
			for (int c = 0; c < C; c++)
				xr[c] += yr[c];
	}
}

size_t attention_scratch_floats(int T)
{
	return (size_t)omp_get_max_threads() * (size_t)T * (size_t)T;
}

/* Softmax of each row of s (T,T) in place; causal rows stop at the diagonal
 * and the masked part is set to 0. exp and the row sum in one pass. */
VECTOR_CLONES
static void softmax_rows(float *s, int T, int causal)
{
	for (int i = 0; i < T; i++) {
		float *row = s + (size_t)i * T;
		int n = causal ? i + 1 : T, j = 0;
		float mx = row[0];
		vf8 m8 = splat(row[0]);
		for (; j + 8 <= n; j += 8) {
			vf8 v;
			memcpy(&v, row + j, sizeof v);
			m8 = select8(v > m8, v, m8);
		}
		for (int t = 0; t < 8; t++)
			mx = m8[t] > mx ? m8[t] : mx;
		for (; j < n; j++)
			mx = row[j] > mx ? row[j] : mx;
		vf8 s8 = splat(0.0f);
		for (j = 0; j + 8 <= n; j += 8) {
			vf8 v;
			memcpy(&v, row + j, sizeof v);
			v -= mx;
			exp8(&v);
			s8 += v;
			memcpy(row + j, &v, sizeof v);
		}
		float sum = ((s8[0] + s8[4]) + (s8[1] + s8[5])) + ((s8[2] + s8[6]) + (s8[3] + s8[7]));
		if (j < n) {
			vf8 v = splat(0.0f);
			for (int t = j; t < n; t++)
				v[t - j] = row[t] - mx;
			exp8(&v);
			for (int t = j; t < n; t++) {
				row[t] = v[t - j];
				sum += v[t - j];
			}
		}
		float inv = 1.0f / sum;
		for (j = 0; j + 8 <= n; j += 8) {
			vf8 v;
			memcpy(&v, row + j, sizeof v);
			v *= inv;
			memcpy(row + j, &v, sizeof v);
		}
		for (; j < n; j++)
			row[j] *= inv;
		for (j = n; j < T; j++)
			row[j] = 0.0f;
	}
}

void attention_forward(float *out, float *scratch, const float *qkv, int B, int T, int C, int NH,
                       int causal)
{
	int hs = C / NH;
	float scale = 1.0f / sqrtf((float)hs);
	int C3 = 3 * C;
	blas_single_threaded();
#pragma omp parallel for schedule(dynamic, 1)
	for (int bh = 0; bh < B * NH; bh++) {
		int b = bh / NH, h = bh % NH;
		float *s = scratch + (size_t)omp_get_thread_num() * T * T;
		const float *q = qkv + (size_t)b * T * C3 + h * hs;
		const float *k = q + C;
		const float *v = q + 2 * C;
		/* s (T,T) = scale * q @ k^T */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3,
		            0.0f, s, T);
		softmax_rows(s, T, causal);
		/* out (T,hs) = s @ v */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, s, T, v, C3,
		            0.0f, out + (size_t)b * T * C + h * hs, C);
	}
}

void mean_rows(float *out, const float *x, int from, int to, int cols)
{
	for (int c = 0; c < cols; c++) {
		double s = 0;
		for (int r = from; r < to; r++)
			s += x[(size_t)r * cols + c];
		out[c] = (float)(s / (to - from));
	}
}

enum blas_state ops_blas_check(const char **corename)
{
	const char *name = openblas_get_corename();
	*corename = name ? name : "?";
#if defined(__x86_64__)
	__builtin_cpu_init();
	int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
	static const char *const narrow[] = {"haswell", "zen", "sandybridge", "nehalem", "core2",
	                                     "penryn", "dunnington", "atom", "prescott", NULL};
	int is_narrow = 0;
	for (int i = 0; name && narrow[i]; i++)
		is_narrow |= !strcasecmp(name, narrow[i]);
	if (!avx512 || !is_narrow)
		return BLAS_OK;
	return getenv("OPENBLAS_CORETYPE") ? BLAS_NARROW_FORCED : BLAS_NARROW_DETECTED;
#else
	return BLAS_OK;
#endif
}
