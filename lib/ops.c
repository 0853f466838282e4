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
#include "ops.h"

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

void layernorm_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int N, int C, float eps)
{
#pragma omp parallel for schedule(static) if (N > 16)
	for (int i = 0; i < N; i++) {
		const float *x = inp + (size_t)i * C;
		float *o = out + (size_t)i * C;
		double sum = 0, sq = 0;
		for (int c = 0; c < C; c++)
			sum += x[c];
		double mean = sum / C;
		for (int c = 0; c < C; c++) {
			double d = x[c] - mean;
			sq += d * d;
		}
		float rstd = (float)(1.0 / sqrt(sq / C + (double)eps));
		float m = (float)mean;
		for (int c = 0; c < C; c++)
			o[c] = (x[c] - m) * rstd * weight[c] + bias[c];
	}
}

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

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                    int C, int OC)
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
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, OC, C, 1.0f,
			            inp + (size_t)r0 * C, C, weight, C, beta, out + (size_t)r0 * OC, OC);
		}
	}
}

void matmul_forward_in_out(float *out, const float *inp, const float *weight, int N, int C,
                           int OC)
{
	blas_single_threaded();
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, C, 1.0f, inp, C, weight, OC,
	            0.0f, out, OC);
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

enum unary { UNARY_EXP, UNARY_GELU, UNARY_QUICKGELU };

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
 * and the masked part is set to 0. */
static void softmax_rows(float *s, int T, int causal)
{
	for (int i = 0; i < T; i++) {
		float *row = s + (size_t)i * T;
		int n = causal ? i + 1 : T;
		float mx = row[0];
		for (int j = 1; j < n; j++)
			mx = row[j] > mx ? row[j] : mx;
		for (int j = 0; j < n; j++)
			row[j] -= mx;
		unary_span(row, (size_t)n, UNARY_EXP);
		float sum = 0;
		for (int j = 0; j < n; j++)
			sum += row[j];
		float inv = 1.0f / sum;
		for (int j = 0; j < n; j++)
			row[j] *= inv;
		for (int j = n; j < T; j++)
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
