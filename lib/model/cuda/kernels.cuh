// cuda/kernels.cuh: the element-wise and row kernels of the transformer
// on the GPU, the device side of what lib/model/ops.c does on the CPU.
//
// A is the activation type of matrix-product inputs and outputs
// (__nv_bfloat16, or float in fp32 mode). The residual stream x and
// every norm's statistics stay float32. Shapes as in ops.h: N rows
// (batch x tokens), C channels, T tokens, NH heads.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>

namespace eosin_cuda {

__device__ __forceinline__ float ld(const float *p) { return *p; }
__device__ __forceinline__ float ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st(float *p, float v) { *p = v; }
__device__ __forceinline__ void st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16(v); }

__device__ __forceinline__ float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ __forceinline__ float warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

// The rest of one warp's LayerNorm of row x (C), given this lane's part s
// of the row's sum: o = (x - mean) * rstd * w + b, the variance from a
// second pass over the centred row, as the CPU's.
template <typename O>
__device__ __forceinline__ void ln_row(const float *x, float s, O *o, const float *w,
                                       const float *b, int C, float eps, int lane)
{
	float mean = warp_sum(s) / C;
	float v = 0;
	for (int c = lane; c < C; c += 32) {
		float d = x[c] - mean;
		v += d * d;
	}
	float rstd = rsqrtf(warp_sum(v) / C + eps);
	for (int c = lane; c < C; c += 32)
		st(o + c, (x[c] - mean) * rstd * w[c] + b[c]);
}

// One warp per row: out (N,C) = LayerNorm(inp (N,C)) * w + b. Two passes
// over the row (mean, then centred variance), as the CPU's.
template <typename O>
__global__ void layernorm_kernel(O *out, const float *inp, const float *w, const float *b, int N,
                                 int C, float eps)
{
	int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (row >= N)
		return;
	const float *x = inp + (size_t)row * C;
	float s = 0;
	for (int c = lane; c < C; c += 32)
		s += x[c];
	ln_row(x, s, out + (size_t)row * C, w, b, C, eps, lane);
}

// One warp per row: x += gamma * (y + bias) (gamma, bias NULL: 1, 0); then,
// when ln_out is set, ln_out = LayerNorm(x) (the next norm fused in).
template <typename O>
__global__ void residual_ln_kernel(float *x, const float *y, const float *bias, const float *gamma,
                                   O *ln_out, const float *lw, const float *lb, int N, int C,
                                   float eps)
{
	int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (row >= N)
		return;
	float *xr = x + (size_t)row * C;
	const float *yr = y + (size_t)row * C;
	float s = 0;
	for (int c = lane; c < C; c += 32) {
		float v = yr[c] + (bias ? bias[c] : 0.f);
		v = xr[c] + (gamma ? gamma[c] * v : v);
		xr[c] = v;
		s += v;
	}
	if (!ln_out)
		return;
	__syncwarp();
	ln_row(xr, s, ln_out + (size_t)row * C, lw, lb, C, eps, lane);
}

// h (n) = act(h), the bias already added by the matrix product.
template <typename A>
__global__ void gelu_kernel(A *h, size_t n, int quick)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float v = ld(h + i);
		v = quick ? v / (1.f + expf(-1.702f * v)) : 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
		st(h + i, v);
	}
}

// One warp per score row: p = softmax(s) over keys [0, T) (causal: keys
// after the query are 0). s (rows, T) float32, rows = B*NH*T, row r is
// query r % T. The scale is already in s (the product's alpha).
template <typename A>
__global__ void softmax_kernel(A *p, const float *s, int rows, int T, int causal)
{
	int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (row >= rows)
		return;
	int q = row % T, nk = causal ? q + 1 : T;
	const float *sr = s + (size_t)row * T;
	A *pr = p + (size_t)row * T;
	float m = -INFINITY;
	for (int j = lane; j < nk; j += 32)
		m = fmaxf(m, sr[j]);
	m = warp_max(m);
	float sum = 0;
	for (int j = lane; j < nk; j += 32)
		sum += expf(sr[j] - m);
	float inv = 1.f / warp_sum(sum);
	for (int j = lane; j < T; j += 32)
		st(pr + j, j < nk ? expf(sr[j] - m) * inv : 0.f);
}

// pixels (B,3,H,W) -> patches (B*np, 3*p*p) in (c, ky, kx) order.
template <typename A>
__global__ void patchify_kernel(A *patches, const float *pix, int B, int H, int W, int p)
{
	int gw = W / p, np = (H / p) * gw, K = 3 * p * p;
	size_t total = (size_t)B * np * K;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
	     i += (size_t)gridDim.x * blockDim.x) {
		int k = (int)(i % K);
		size_t bt = i / K;
		int t = (int)(bt % np), b = (int)(bt / np);
		int ch = k / (p * p), ky = (k / p) % p, kx = k % p;
		int y = (t / gw) * p + ky, xx = (t % gw) * p + kx;
		st(patches + i, pix[(((size_t)b * 3 + ch) * H + y) * W + xx]);
	}
}

// x (B,T,D): [cls, reg..., patches] plus positions. emb (B*np, D) has the
// patch bias in already. pos_prefix (prefix, D) or NULL; pos (np, D).
__global__ void embed_kernel(float *x, const float *emb, const float *cls, const float *reg,
                             const float *pos_prefix, const float *pos, int B, int T, int np,
                             int D, int ncls, int nreg)
{
	int prefix = ncls + nreg;
	size_t total = (size_t)B * T * D;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
	     i += (size_t)gridDim.x * blockDim.x) {
		int d = (int)(i % D);
		int t = (int)((i / D) % T);
		size_t b = i / ((size_t)T * D);
		float v;
		if (t < prefix) {
			v = t < ncls ? cls[d] : reg[(size_t)(t - ncls) * D + d];
			if (pos_prefix)
				v += pos_prefix[(size_t)t * D + d];
		} else {
			v = emb[(b * np + (t - prefix)) * D + d] + pos[(size_t)(t - prefix) * D + d];
		}
		x[i] = v;
	}
}

// pooled (B,D) = token 0, or the mean of tokens [from, T).
__global__ void pool_kernel(float *pooled, const float *x, int B, int T, int D, int avg, int from)
{
	size_t total = (size_t)B * D;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
	     i += (size_t)gridDim.x * blockDim.x) {
		int d = (int)(i % D);
		size_t b = i / D;
		const float *xb = x + b * T * D;
		if (!avg) {
			pooled[i] = xb[d];
			continue;
		}
		float s = 0;
		for (int t = from; t < T; t++)
			s += xb[(size_t)t * D + d];
		pooled[i] = s / (T - from);
	}
}

// x (B,T,C) = tok_emb[ids] + pos.
__global__ void text_embed_kernel(float *x, const int *ids, const float *tok, const float *pos,
                                  int B, int T, int C)
{
	size_t total = (size_t)B * T * C;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
	     i += (size_t)gridDim.x * blockDim.x) {
		int c = (int)(i % C);
		size_t bt = i / C;
		int t = (int)(bt % T);
		x[i] = tok[(size_t)ids[bt] * C + c] + pos[(size_t)t * C + c];
	}
}

// rows (B,C) = x[b, eot[b]].
__global__ void gather_rows_kernel(float *rows, const float *x, const int *eot, int B, int T, int C)
{
	size_t total = (size_t)B * C;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
	     i += (size_t)gridDim.x * blockDim.x) {
		size_t b = i / C;
		int c = (int)(i % C);
		rows[i] = x[(b * T + eot[b]) * C + c];
	}
}

// out (n) = in (n), to the activation type.
template <typename A>
__global__ void convert_kernel(A *out, const float *in, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		st(out + i, in[i]);
}

} // namespace eosin_cuda
