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
#include <string.h>

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

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                    int C, int OC)
{
	float beta = 0.0f;
	if (bias) {
		for (int i = 0; i < N; i++)
			memcpy(out + (size_t)i * OC, bias, (size_t)OC * sizeof *out);
		beta = 1.0f;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C,
	            beta, out, OC);
}

void matmul_forward_in_out(float *out, const float *inp, const float *weight, int N, int C,
                           int OC)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, C, 1.0f, inp, C, weight, OC,
	            0.0f, out, OC);
}

/* exp by 2^n * p(r), x = n ln2 + r, |r| <= ln2/2, Taylor to degree 7. */
static inline float exp_poly(float x)
{
	x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
	float n = floorf(x * 1.44269504f + 0.5f);
	float r = x - n * 0.693145752f - n * 1.42860677e-6f;
	float p = 1.0f / 5040;
	p = p * r + 1.0f / 720;
	p = p * r + 1.0f / 120;
	p = p * r + 1.0f / 24;
	p = p * r + 1.0f / 6;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	union {
		uint32_t u;
		float f;
	} s = {.u = (uint32_t)((int32_t)n + 127) << 23};
	return p * s.f;
}

/* erf, Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7). */
static inline float erf_poly(float x)
{
	float a = fabsf(x);
	float t = 1.0f / (1.0f + 0.3275911f * a);
	float y = 1.061405429f;
	y = y * t - 1.453152027f;
	y = y * t + 1.421413741f;
	y = y * t - 0.284496736f;
	y = y * t + 0.254829592f;
	y = 1.0f - y * t * exp_poly(-a * a);
	return x < 0 ? -y : y;
}

VECTOR_CLONES
void ops_exp(float *x, size_t n)
{
#pragma omp simd
	for (size_t i = 0; i < n; i++)
		x[i] = exp_poly(x[i]);
}

VECTOR_CLONES
static void gelu_span(float *x, size_t n)
{
#pragma omp simd
	for (size_t i = 0; i < n; i++)
		x[i] = 0.5f * x[i] * (1.0f + erf_poly(x[i] * 0.70710678118654752f));
}

VECTOR_CLONES
static void quickgelu_span(float *x, size_t n)
{
#pragma omp simd
	for (size_t i = 0; i < n; i++)
		x[i] = x[i] / (1.0f + exp_poly(-1.702f * x[i]));
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
VECTOR_CLONES
static void softmax_rows(float *s, int T, int causal)
{
	for (int i = 0; i < T; i++) {
		float *row = s + (size_t)i * T;
		int n = causal ? i + 1 : T;
		float mx = row[0];
		for (int j = 1; j < n; j++)
			mx = row[j] > mx ? row[j] : mx;
		float sum = 0;
#pragma omp simd reduction(+ : sum)
		for (int j = 0; j < n; j++) {
			row[j] = exp_poly(row[j] - mx);
			sum += row[j];
		}
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
	/* Each (image, head) pair is one single-threaded job; OpenBLAS's own
	 * threads would fight OpenMP's here, so they are parked for the loop. */
	int blas_threads = openblas_get_num_threads();
	int nthreads = omp_get_max_threads();
	if (nthreads > 1)
		openblas_set_num_threads(1);
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
	if (nthreads > 1)
		openblas_set_num_threads(blas_threads);
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
