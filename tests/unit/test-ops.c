/*
 * test-ops: the encoder's fused and vectorised kernels (lib/model/ops.h) against
 * plain double-precision loops written from their definitions, on widths
 * that are not multiples of the 8-float vectors (so the tails run) and on
 * both the row-split and the single-thread paths. Prints every max error.
 */
#include "model/ops.h"
#include "tap.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static float *randv(size_t n, float scale, unsigned *seed)
{
	float *v = malloc(n * sizeof *v);
	for (size_t i = 0; i < n; i++) {
		*seed = *seed * 1103515245u + 12345u;
		v[i] = scale * ((float)((*seed >> 8) & 0xffff) / 32768.0f - 1.0f);
	}
	return v;
}

static double max_err(const float *a, const double *b, size_t n)
{
	double e = 0;
	for (size_t i = 0; i < n; i++)
		e = fmax(e, fabs(a[i] - b[i]));
	return e;
}

static void ln_ref(double *o, const double *x, const float *w, const float *b, int C, double eps)
{
	double m = 0, v = 0;
	for (int c = 0; c < C; c++)
		m += x[c];
	m /= C;
	for (int c = 0; c < C; c++)
		v += (x[c] - m) * (x[c] - m);
	double r = 1.0 / sqrt(v / C + eps);
	for (int c = 0; c < C; c++)
		o[c] = (x[c] - m) * r * w[c] + b[c];
}

static void check_widths(int N, int C)
{
	unsigned seed = 7u + (unsigned)C;
	size_t n = (size_t)N * C;
	float *x = randv(n, 3.0f, &seed), *y = randv(n, 1.0f, &seed);
	float *w = randv((size_t)C, 1.0f, &seed), *b = randv((size_t)C, 0.5f, &seed);
	float *g = randv((size_t)C, 0.2f, &seed), *ln = malloc(n * sizeof *ln);
	double *xr = malloc(n * sizeof *xr), *want = malloc(n * sizeof *want);

	/* layernorm_forward */
	for (size_t i = 0; i < n; i++)
		xr[i] = x[i];
	for (int i = 0; i < N; i++)
		ln_ref(want + (size_t)i * C, xr + (size_t)i * C, w, b, C, 1e-6);
	layernorm_forward(ln, x, w, b, N, C, 1e-6f);
	double e = max_err(ln, want, n);
	ok(e < 5e-6, "layernorm %dx%d: max abs error %.3g", N, C, e);

	/* residual_layernorm_forward: x += g * (y + b), ln = LN(x) */
	for (size_t i = 0; i < n; i++)
		xr[i] = (double)x[i] + (double)g[i % C] * ((double)y[i] + b[i % C]);
	for (int i = 0; i < N; i++)
		ln_ref(want + (size_t)i * C, xr + (size_t)i * C, w, b, C, 1e-6);
	residual_layernorm_forward(x, y, b, g, ln, w, b, N, C, 1e-6f);
	e = max_err(x, xr, n);
	ok(e < 1e-6, "residual with bias and LayerScale %dx%d: max abs error %.3g", N, C, e);
	e = max_err(ln, want, n);
	ok(e < 5e-6, "layernorm after the residual %dx%d: max abs error %.3g", N, C, e);
	/* no bias, no LayerScale, no LayerNorm */
	for (size_t i = 0; i < n; i++)
		xr[i] = (double)x[i] + y[i];
	residual_layernorm_forward(x, y, NULL, NULL, NULL, NULL, NULL, N, C, 1e-6f);
	e = max_err(x, xr, n);
	ok(e < 1e-6, "plain residual %dx%d: max abs error %.3g", N, C, e);

	/* bias_gelu_forward: exact GELU and QuickGELU of x + b */
	for (int quick = 0; quick <= 1; quick++) {
		float *h = malloc(n * sizeof *h);
		memcpy(h, y, n * sizeof *h);
		for (size_t i = 0; i < n; i++) {
			double v = 4.0 * ((double)h[i] + b[i % C]);
			h[i] *= 4.0f;
			want[i] = quick ? v / (1.0 + exp(-1.702 * v)) : 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
		}
		float *b4 = malloc((size_t)C * sizeof *b4);
		for (int c = 0; c < C; c++)
			b4[c] = 4.0f * b[c];
		bias_gelu_forward(h, b4, N, C, quick);
		e = max_err(h, want, n);
		ok(e < 2e-6, "%s with bias %dx%d: max abs error %.3g", quick ? "quickgelu" : "gelu", N,
		   C, e);
		free(h);
		free(b4);
	}
	free(x), free(y), free(w), free(b), free(g), free(ln), free(xr), free(want);
}

/* attention_forward against softmax(q k^T / sqrt(hs)) v in double. */
static void check_attention(int B, int T, int C, int NH, int causal)
{
	unsigned seed = 11u + (unsigned)T;
	int hs = C / NH;
	float *qkv = randv((size_t)B * T * 3 * C, 2.0f, &seed);
	float *out = malloc((size_t)B * T * C * sizeof *out);
	float *scratch = malloc(attention_scratch_floats(T) * sizeof *scratch);
	double *want = malloc((size_t)B * T * C * sizeof *want), *p = malloc((size_t)T * sizeof *p);
	for (int b = 0; b < B; b++)
		for (int h = 0; h < NH; h++)
			for (int i = 0; i < T; i++) {
				const float *q = qkv + ((size_t)b * T + i) * 3 * C + h * hs;
				int n = causal ? i + 1 : T;
				double mx = -INFINITY, sum = 0;
				for (int j = 0; j < n; j++) {
					const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + h * hs;
					double s = 0;
					for (int d = 0; d < hs; d++)
						s += (double)q[d] * k[d];
					p[j] = s / sqrt((double)hs);
					mx = fmax(mx, p[j]);
				}
				for (int j = 0; j < n; j++)
					sum += p[j] = exp(p[j] - mx);
				for (int d = 0; d < hs; d++) {
					double o = 0;
					for (int j = 0; j < n; j++)
						o += p[j] / sum * qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * hs + d];
					want[((size_t)b * T + i) * C + h * hs + d] = o;
				}
			}
	attention_forward(out, scratch, qkv, B, T, C, NH, causal);
	double e = max_err(out, want, (size_t)B * T * C);
	ok(e < 1e-5, "attention B%d T%d C%d heads %d%s: max abs error %.3g", B, T, C, NH,
	   causal ? " causal" : "", e);
	free(qkv), free(out), free(scratch), free(want), free(p);
}

/* matmul_forward (weights (OC,C)) and matmul_forward_in_out_bias ((C,OC)). */
static void check_matmul(int N, int C, int OC)
{
	unsigned seed = 5u;
	float *inp = randv((size_t)N * C, 1.0f, &seed), *w = randv((size_t)OC * C, 1.0f, &seed);
	float *wt = malloc((size_t)OC * C * sizeof *wt), *bias = randv((size_t)OC, 1.0f, &seed);
	float *out = malloc((size_t)N * OC * sizeof *out);
	double *want = malloc((size_t)N * OC * sizeof *want);
	for (int o = 0; o < OC; o++)
		for (int c = 0; c < C; c++)
			wt[(size_t)c * OC + o] = w[(size_t)o * C + c];
	for (int i = 0; i < N; i++)
		for (int o = 0; o < OC; o++) {
			double s = bias[o];
			for (int c = 0; c < C; c++)
				s += (double)inp[(size_t)i * C + c] * w[(size_t)o * C + c];
			want[(size_t)i * OC + o] = s;
		}
	matmul_forward(out, inp, w, bias, N, C, OC);
	double e = max_err(out, want, (size_t)N * OC);
	ok(e < 1e-4, "matmul (out,in) %dx%d -> %d: max abs error %.3g", N, C, OC, e);
	memset(out, 0, (size_t)N * OC * sizeof *out);
	matmul_forward_in_out_bias(out, inp, wt, bias, N, C, OC);
	e = max_err(out, want, (size_t)N * OC);
	ok(e < 1e-4, "matmul (in,out) with bias %dx%d -> %d: max abs error %.3g", N, C, OC, e);
	free(inp), free(w), free(wt), free(bias), free(out), free(want);
}

int main(void)
{
	/* Every kernel on the threads it is given, then alone (as inside the
	 * per-thread image groups of vit.c). */
	for (int pass = 0; pass < 2; pass++) {
		if (pass)
			omp_set_num_threads(1);
		check_widths(70, 37);
		check_widths(3, 64);
		check_attention(2, 13, 24, 3, 0);
		check_attention(2, 21, 16, 2, 1);
		check_matmul(37, 29, 19);
	}
	return tap_done();
}
