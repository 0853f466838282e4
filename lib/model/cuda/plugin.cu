// cuda/plugin.cu: eosin-encode's vision and text transformers on a CUDA
// GPU, the plugin build/lib/eosin-cuda.so behind cuda/plugin.h.
//
// The forward pass is vit.c's, step for step: patch embedding, prefix
// tokens and positions, ln_pre, pre-LN blocks, final norm, pooling,
// fc_norm, projection. Matrix products are cuBLASLt (bf16 in, fp32
// accumulate; or fp32 throughout), with the bias in the product's epilogue
// where the output is an activation. Attention is two batched products
// over (image, head) pairs addressed in place inside the qkv buffer (no
// per-head copies) around a softmax kernel; the output product writes each
// head straight into its columns of the concatenated result.
//
// Device memory per model: the weights, plus activations for max_batch
// images of the largest grid seen, plus two input slots.
#include "model/cuda/kernels.cuh"
#include "model/cuda/plugin.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

using namespace eosin_cuda;
typedef __nv_bfloat16 bf16;

static thread_local char g_err[1024];

static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_err, sizeof g_err, fmt, ap);
	va_end(ap);
	return -1;
}

#define CU(call)                                                                                 \
	do {                                                                                     \
		cudaError_t e_ = (call);                                                         \
		if (e_ != cudaSuccess)                                                           \
			return fail("%s: %s", #call, cudaGetErrorString(e_));                    \
	} while (0)
#define LT(call)                                                                                 \
	do {                                                                                     \
		cublasStatus_t s_ = (call);                                                      \
		if (s_ != CUBLAS_STATUS_SUCCESS)                                                 \
			return fail("%s: cuBLAS status %d", #call, (int)s_);                     \
	} while (0)

static int grid_for(size_t n, int threads = 256)
{
	size_t g = (n + threads - 1) / threads;
	return (int)(g > 65535 * 8 ? 65535 * 8 : g ? g : 1);
}

// ---- device memory ----

template <typename T> static int dalloc(T **p, size_t n)
{
	*p = NULL;
	if (!n)
		return 0;
	CU(cudaMalloc((void **)p, n * sizeof(T)));
	return 0;
}

static int upload_f32(float **d, const float *h, size_t n)
{
	*d = NULL;
	if (!h)
		return 0;
	if (dalloc(d, n) < 0)
		return -1;
	CU(cudaMemcpy(*d, h, n * sizeof(float), cudaMemcpyHostToDevice));
	return 0;
}

// A host float32 array to the activation type on the device.
template <typename A> static int upload_act(A **d, const float *h, size_t n)
{
	*d = NULL;
	if (!h)
		return 0;
	float *tmp;
	if (upload_f32(&tmp, h, n) < 0 || dalloc(d, n) < 0)
		return -1;
	convert_kernel<A><<<grid_for(n), 256>>>(*d, tmp, n);
	CU(cudaGetLastError());
	CU(cudaDeviceSynchronize());
	cudaFree(tmp);
	return 0;
}

// ---- matrix products ----

template <typename T> static cudaDataType_t dtype_of();
template <> cudaDataType_t dtype_of<float>() { return CUDA_R_32F; }
template <> cudaDataType_t dtype_of<bf16>() { return CUDA_R_16BF; }

// One product shape's descriptors and algorithm, found once.
struct lt_plan {
	int M, N, K, atype, dtype, bias;
	cublasLtMatmulDesc_t op;
	cublasLtMatrixLayout_t a, b, d;
	cublasLtMatmulAlgo_t algo;
};

struct blas {
	cublasLtHandle_t lt;
	cublasHandle_t cb;
	void *workspace;
	size_t workspace_size;
	std::vector<lt_plan> plans;
};

static int blas_init(blas *bl, cudaStream_t s)
{
	LT(cublasLtCreate(&bl->lt));
	LT(cublasCreate(&bl->cb));
	LT(cublasSetStream(bl->cb, s));
	bl->workspace_size = 64u << 20;
	CU(cudaMalloc(&bl->workspace, bl->workspace_size));
	LT(cublasSetWorkspace(bl->cb, bl->workspace, bl->workspace_size));
	return 0;
}

static void blas_free(blas *bl)
{
	for (auto &p : bl->plans) {
		cublasLtMatmulDescDestroy(p.op);
		cublasLtMatrixLayoutDestroy(p.a);
		cublasLtMatrixLayoutDestroy(p.b);
		cublasLtMatrixLayoutDestroy(p.d);
	}
	bl->plans.clear();
	if (bl->cb)
		cublasDestroy(bl->cb);
	if (bl->lt)
		cublasLtDestroy(bl->lt);
	cudaFree(bl->workspace);
}

// out (N,M) = in (N,K) @ w (K,M) [+ bias (M), of out's type], row-major.
// In cuBLAS's column-major terms: out^T (M,N) = w^T (M,K) in^T (K,N), and
// the row-major arrays are those transposes as they lie.
template <typename A, typename O>
static int matmul(blas *bl, cudaStream_t s, O *out, const A *in, const A *w, const O *bias, int N,
                  int K, int M)
{
	int at = (int)dtype_of<A>(), dt = (int)dtype_of<O>(), hb = bias != NULL;
	lt_plan *p = NULL;
	for (auto &q : bl->plans)
		if (q.M == M && q.N == N && q.K == K && q.atype == at && q.dtype == dt && q.bias == hb)
			p = &q;
	if (!p) {
		lt_plan q = {};
		q.M = M, q.N = N, q.K = K, q.atype = at, q.dtype = dt, q.bias = hb;
		LT(cublasLtMatmulDescCreate(&q.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
		cublasLtEpilogue_t epi = hb ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
		LT(cublasLtMatmulDescSetAttribute(q.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
		LT(cublasLtMatrixLayoutCreate(&q.a, (cudaDataType_t)at, M, K, M));
		LT(cublasLtMatrixLayoutCreate(&q.b, (cudaDataType_t)at, K, N, K));
		LT(cublasLtMatrixLayoutCreate(&q.d, (cudaDataType_t)dt, M, N, M));
		cublasLtMatmulPreference_t pref;
		LT(cublasLtMatmulPreferenceCreate(&pref));
		LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
		                                        &bl->workspace_size, sizeof bl->workspace_size));
		cublasLtMatmulHeuristicResult_t res;
		int found = 0;
		cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(bl->lt, q.op, q.a, q.b, q.d, q.d,
		                                                   pref, 1, &res, &found);
		cublasLtMatmulPreferenceDestroy(pref);
		if (st != CUBLAS_STATUS_SUCCESS || !found)
			return fail("no cuBLASLt algorithm for a %dx%dx%d product (status %d)", N, K, M,
			            (int)st);
		q.algo = res.algo;
		bl->plans.push_back(q);
		p = &bl->plans.back();
	}
	if (hb)
		LT(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
		                                  sizeof bias));
	const float one = 1.f, zero = 0.f;
	LT(cublasLtMatmul(bl->lt, p->op, &one, w, p->a, in, p->b, &zero, out, p->d, out, p->d,
	                  &p->algo, bl->workspace, bl->workspace_size, s));
	return 0;
}

// ---- the transformer block ----

template <typename A> struct block_dev {
	float *ln1_w, *ln1_b, *ln2_w, *ln2_b, *ls1, *ls2, *proj_b, *fc2_b;
	A *qkv_w, *proj_w, *fc1_w, *fc2_w;
	A *qkv_b, *fc1_b; // the epilogue's bias has the output's type
};

template <typename A> static int block_upload(block_dev<A> *d, const gpu_block_desc *h, int C, int H)
{
	memset(d, 0, sizeof *d);
	if (upload_f32(&d->ln1_w, h->ln1_w, C) < 0 || upload_f32(&d->ln1_b, h->ln1_b, C) < 0 ||
	    upload_f32(&d->ln2_w, h->ln2_w, C) < 0 || upload_f32(&d->ln2_b, h->ln2_b, C) < 0 ||
	    upload_f32(&d->ls1, h->ls1, C) < 0 || upload_f32(&d->ls2, h->ls2, C) < 0 ||
	    upload_f32(&d->proj_b, h->proj_b, C) < 0 || upload_f32(&d->fc2_b, h->fc2_b, C) < 0 ||
	    upload_act(&d->qkv_w, h->qkv_w, (size_t)C * 3 * C) < 0 ||
	    upload_act(&d->proj_w, h->proj_w, (size_t)C * C) < 0 ||
	    upload_act(&d->fc1_w, h->fc1_w, (size_t)C * H) < 0 ||
	    upload_act(&d->fc2_w, h->fc2_w, (size_t)H * C) < 0 ||
	    upload_act(&d->qkv_b, h->qkv_b, (size_t)3 * C) < 0 ||
	    upload_act(&d->fc1_b, h->fc1_b, (size_t)H) < 0)
		return -1;
	return 0;
}

template <typename A> static void block_release(block_dev<A> *d)
{
	void *p[] = {d->ln1_w, d->ln1_b, d->ln2_w, d->ln2_b, d->ls1,  d->ls2,   d->proj_b,
	             d->fc2_b, d->qkv_w, d->proj_w, d->fc1_w, d->fc2_w, d->qkv_b, d->fc1_b};
	for (void *q : p)
		cudaFree(q);
}

// Activations for up to B sequences of T tokens.
template <typename A> struct acts {
	int B, T, C, H, NH;
	float *x;      // (B,T,C) residual stream
	float *tmp;    // (B,T,C) products before the residual add
	A *ln;         // (B,T,C)
	A *qkv;        // (B,T,3C)
	A *att;        // (B,T,C)
	A *hidden;     // (B,T,H)
	float *scores; // (B,NH,T,T)
	A *probs;      // (B,NH,T,T)
	// per (image, head) pointers into qkv, scores, probs, att
	const void **q, **k, **v, **sp, **pp;
	void **sout, **pout, **o;
	void *ptrs; // the device block holding those pointer arrays
	int ptr_b, ptr_t; // the B and T they were built for
};

template <typename A> static void acts_release(acts<A> *a)
{
	cudaFree(a->x);
	cudaFree(a->tmp);
	cudaFree(a->ln);
	cudaFree(a->qkv);
	cudaFree(a->att);
	cudaFree(a->hidden);
	cudaFree(a->scores);
	cudaFree(a->probs);
	cudaFree(a->ptrs);
	memset(a, 0, sizeof *a);
}

// Grown (after the stream is idle) when B or T exceed what is there; the
// attention pointer arrays are rebuilt for the B and T of each call.
template <typename A>
static int acts_reserve(acts<A> *a, cudaStream_t s, int B, int T, int C, int H, int NH)
{
	if (a->x && B <= a->B && T <= a->T && C == a->C && H == a->H && NH == a->NH)
		return 0;
	CU(cudaStreamSynchronize(s));
	acts_release(a);
	size_t N = (size_t)B * T, S = (size_t)B * NH * T * T;
	if (dalloc(&a->x, N * C) < 0 || dalloc(&a->tmp, N * C) < 0 || dalloc(&a->ln, N * C) < 0 ||
	    dalloc(&a->qkv, N * 3 * C) < 0 || dalloc(&a->att, N * C) < 0 ||
	    dalloc(&a->hidden, N * H) < 0 || dalloc(&a->scores, S) < 0 || dalloc(&a->probs, S) < 0) {
		acts_release(a);
		return -1;
	}
	size_t np = (size_t)B * NH;
	if (dalloc((char **)&a->ptrs, 8 * np * sizeof(void *)) < 0) {
		acts_release(a);
		return -1;
	}
	void **base = (void **)a->ptrs;
	a->q = (const void **)base;
	a->k = (const void **)(base + np);
	a->v = (const void **)(base + 2 * np);
	a->sp = (const void **)(base + 3 * np);
	a->pp = (const void **)(base + 4 * np);
	a->sout = base + 5 * np;
	a->pout = base + 6 * np;
	a->o = base + 7 * np;
	a->B = B, a->T = T, a->C = C, a->H = H, a->NH = NH;
	return 0;
}

// The pointer arrays for B x NH (image, head) pairs of T tokens, rebuilt
// only when B or T change. The copy is ordered on s after the products
// that read the old arrays; a pageable copy has left host by its return.
template <typename A>
static int attention_pointers(acts<A> *a, std::vector<void *> &host, cudaStream_t s, int B, int T)
{
	if (B == a->ptr_b && T == a->ptr_t)
		return 0;
	int C = a->C, NH = a->NH, hd = C / NH;
	size_t np = (size_t)a->B * NH; // the arrays' stride, as reserved
	host.assign(8 * np, NULL);
	for (int b = 0; b < B; b++)
		for (int h = 0; h < NH; h++) {
			size_t i = (size_t)b * NH + h;
			A *qkv = a->qkv + (size_t)b * T * 3 * C + (size_t)h * hd;
			host[i] = qkv;
			host[np + i] = qkv + C;
			host[2 * np + i] = qkv + 2 * C;
			host[3 * np + i] = a->scores + i * T * T;
			host[4 * np + i] = a->probs + i * T * T;
			host[5 * np + i] = a->scores + i * T * T;
			host[6 * np + i] = a->probs + i * T * T;
			host[7 * np + i] = a->att + (size_t)b * T * C + (size_t)h * hd;
		}
	CU(cudaMemcpyAsync(a->ptrs, host.data(), host.size() * sizeof(void *), cudaMemcpyHostToDevice,
	                   s));
	a->ptr_b = B, a->ptr_t = T;
	return 0;
}

// att (B,T,C) = softmax(q k^T / sqrt(hd)) v per (image, head), q, k, v read
// in place from qkv (B,T,3C). Scores are row-major (T_q, T_k): in cuBLAS's
// column-major view that is (k q^T) with k^T and q^T as they lie.
template <typename A>
static int attention(blas *bl, cudaStream_t s, acts<A> *a, int B, int T, int causal)
{
	int C = a->C, NH = a->NH, hd = C / NH, count = B * NH;
	const float scale = 1.f / sqrtf((float)hd), one = 1.f, zero = 0.f;
	cudaDataType_t at = dtype_of<A>();
	LT(cublasGemmBatchedEx(bl->cb, CUBLAS_OP_T, CUBLAS_OP_N, T, T, hd, &scale, a->k, at, 3 * C,
	                       a->q, at, 3 * C, &zero, a->sout, CUDA_R_32F, T, count,
	                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	int rows = count * T;
	softmax_kernel<A><<<(rows + 7) / 8, 256, 0, s>>>(a->probs, a->scores, rows, T, causal);
	CU(cudaGetLastError());
	// out^T (hd, T) = v^T (hd, T_k) p^T (T_k, T_q)
	LT(cublasGemmBatchedEx(bl->cb, CUBLAS_OP_N, CUBLAS_OP_N, hd, T, T, &one, a->v, at, 3 * C,
	                       a->pp, at, T, &zero, a->o, at, C, count, CUBLAS_COMPUTE_32F,
	                       CUBLAS_GEMM_DEFAULT));
	return 0;
}

// x (B,T,C) through one block in place. a->ln holds LayerNorm 1 of x on
// entry (the previous step fused it); on return it holds next_ln(x) when
// next_w is given.
template <typename A>
static int block_forward(blas *bl, cudaStream_t s, acts<A> *a, const block_dev<A> *w, int B, int T,
                         float eps, int quick, int causal, const float *next_w,
                         const float *next_b)
{
	int C = a->C, H = a->H, N = B * T, rb = (N + 7) / 8;
	if (matmul<A, A>(bl, s, a->qkv, a->ln, w->qkv_w, w->qkv_b, N, C, 3 * C) < 0 ||
	    attention(bl, s, a, B, T, causal) < 0 ||
	    matmul<A, float>(bl, s, a->tmp, a->att, w->proj_w, NULL, N, C, C) < 0)
		return -1;
	residual_ln_kernel<A><<<rb, 256, 0, s>>>(a->x, a->tmp, w->proj_b, w->ls1, a->ln, w->ln2_w,
	                                         w->ln2_b, N, C, eps);
	CU(cudaGetLastError());
	if (matmul<A, A>(bl, s, a->hidden, a->ln, w->fc1_w, w->fc1_b, N, C, H) < 0)
		return -1;
	gelu_kernel<A><<<grid_for((size_t)N * H), 256, 0, s>>>(a->hidden, (size_t)N * H, quick);
	CU(cudaGetLastError());
	if (matmul<A, float>(bl, s, a->tmp, a->hidden, w->fc2_w, NULL, N, H, C) < 0)
		return -1;
	residual_ln_kernel<A><<<rb, 256, 0, s>>>(a->x, a->tmp, w->fc2_b, w->ls2,
	                                         next_w ? a->ln : (A *)NULL, next_w, next_b, N, C,
	                                         eps);
	CU(cudaGetLastError());
	return 0;
}

// All blocks over a->x, LayerNorm 1 of the first taken here, each later
// one fused into the block before.
template <typename A>
static int blocks_forward(blas *bl, cudaStream_t s, acts<A> *a, block_dev<A> *blocks, int depth,
                          int B, int T, float eps, int quick, int causal)
{
	int N = B * T;
	layernorm_kernel<A><<<(N + 7) / 8, 256, 0, s>>>(a->ln, a->x, blocks[0].ln1_w, blocks[0].ln1_b,
	                                                 N, a->C, eps);
	CU(cudaGetLastError());
	for (int l = 0; l < depth; l++) {
		const float *nw = l + 1 < depth ? blocks[l + 1].ln1_w : NULL;
		const float *nb = l + 1 < depth ? blocks[l + 1].ln1_b : NULL;
		if (block_forward(bl, s, a, &blocks[l], B, T, eps, quick, causal, nw, nb) < 0)
			return -1;
	}
	return 0;
}

// ---- the vision model ----

struct vit_base {
	enum gpu_precision prec;
};

template <typename A> struct vit_dev : vit_base {
	gpu_vit_desc d;
	int max_batch;
	cudaStream_t compute, copy;
	cudaEvent_t copied[2], in_free[2], done[2];
	blas bl;
	A *patch_w_t; // (K, D): patch_w transposed for the row-major product
	float *patch_b, *cls, *reg, *pos_prefix, *ln_pre_w, *ln_pre_b, *norm_w, *norm_b;
	A *proj;
	std::vector<block_dev<A>> blocks;
	float *pos;   // (gh*gw, D)
	int gh, gw;
	float *in[2]; // (max_batch, 3, H, W) each
	size_t in_cap;
	A *patches;   // (B*np, K)
	float *emb;   // (B*np, D)
	size_t patches_cap;
	acts<A> a;
	std::vector<void *> host_ptrs;
	float *pooled;    // (B, D)
	A *pooled_a;      // (B, D) for the projection
	float *out;       // (B, out_dim)
	float *host_out[2]; // pinned (max_batch, out_dim)
	int last_b[2];
	int pool_cap;
};

template <typename A> static void vit_release(vit_dev<A> *m)
{
	cudaDeviceSynchronize();
	for (auto &b : m->blocks)
		block_release(&b);
	void *p[] = {m->patch_w_t, m->patch_b, m->cls, m->reg, m->pos_prefix, m->ln_pre_w,
	             m->ln_pre_b,  m->norm_w,  m->norm_b, m->proj, m->pos,     m->in[0],
	             m->in[1],     m->patches, m->emb,    m->pooled, m->pooled_a, m->out};
	for (void *q : p)
		cudaFree(q);
	for (int s = 0; s < 2; s++) {
		cudaFreeHost(m->host_out[s]);
		if (m->copied[s])
			cudaEventDestroy(m->copied[s]);
		if (m->in_free[s])
			cudaEventDestroy(m->in_free[s]);
		if (m->done[s])
			cudaEventDestroy(m->done[s]);
	}
	acts_release(&m->a);
	blas_free(&m->bl);
	if (m->compute)
		cudaStreamDestroy(m->compute);
	if (m->copy)
		cudaStreamDestroy(m->copy);
	delete m;
}

template <typename A> static int vit_upload(vit_dev<A> *m, const gpu_vit_desc *d, int max_batch)
{
	int D = d->dim, p = d->patch, K = 3 * p * p, R = d->reg_tokens;
	int prefix = d->class_token + R;
	m->d = *d;
	m->d.blocks = NULL;
	m->max_batch = max_batch;
	CU(cudaStreamCreateWithFlags(&m->compute, cudaStreamNonBlocking));
	CU(cudaStreamCreateWithFlags(&m->copy, cudaStreamNonBlocking));
	for (int s = 0; s < 2; s++) {
		CU(cudaEventCreateWithFlags(&m->copied[s], cudaEventDisableTiming));
		CU(cudaEventCreateWithFlags(&m->in_free[s], cudaEventDisableTiming));
		CU(cudaEventCreateWithFlags(&m->done[s], cudaEventDisableTiming));
		CU(cudaMallocHost((void **)&m->host_out[s], (size_t)max_batch * d->out_dim * sizeof(float)));
	}
	if (blas_init(&m->bl, m->compute) < 0)
		return -1;
	std::vector<float> wt((size_t)K * D);
	for (int o = 0; o < D; o++)
		for (int k = 0; k < K; k++)
			wt[(size_t)k * D + o] = d->patch_w[(size_t)o * K + k];
	if (upload_act(&m->patch_w_t, wt.data(), wt.size()) < 0 ||
	    upload_f32(&m->patch_b, d->patch_b, D) < 0 || upload_f32(&m->cls, d->cls, D) < 0 ||
	    upload_f32(&m->reg, d->reg, (size_t)R * D) < 0 ||
	    upload_f32(&m->pos_prefix, d->pos_prefix, (size_t)prefix * D) < 0 ||
	    upload_f32(&m->ln_pre_w, d->ln_pre ? d->ln_pre_w : NULL, D) < 0 ||
	    upload_f32(&m->ln_pre_b, d->ln_pre ? d->ln_pre_b : NULL, D) < 0 ||
	    upload_f32(&m->norm_w, d->norm_w, D) < 0 || upload_f32(&m->norm_b, d->norm_b, D) < 0 ||
	    upload_act(&m->proj, d->proj_dim ? d->proj : NULL, (size_t)D * d->proj_dim) < 0)
		return -1;
	m->blocks.resize(d->depth);
	for (int l = 0; l < d->depth; l++)
		if (block_upload(&m->blocks[l], &d->blocks[l], D, d->hidden) < 0)
			return -1;
	if (dalloc(&m->pooled, (size_t)max_batch * D) < 0 ||
	    dalloc(&m->pooled_a, (size_t)max_batch * D) < 0 ||
	    dalloc(&m->out, (size_t)max_batch * d->out_dim) < 0)
		return -1;
	return 0;
}

template <typename A> static int vit_set_pos_t(vit_dev<A> *m, const float *pos, int gh, int gw)
{
	CU(cudaDeviceSynchronize());
	cudaFree(m->pos);
	m->pos = NULL;
	if (upload_f32(&m->pos, pos, (size_t)gh * gw * m->d.dim) < 0)
		return -1;
	m->gh = gh, m->gw = gw;
	return 0;
}

template <typename A>
static int vit_submit_t(vit_dev<A> *m, int slot, const float *pixels, int B, int H, int W)
{
	const gpu_vit_desc *d = &m->d;
	int D = d->dim, p = d->patch, K = 3 * p * p, gh = H / p, gw = W / p, np = gh * gw;
	int prefix = d->class_token + d->reg_tokens, T = prefix + np;
	if (B < 1 || B > m->max_batch)
		return fail("batch of %d images (1 to %d)", B, m->max_batch);
	if (gh != m->gh || gw != m->gw || !m->pos)
		return fail("no position table for a %dx%d grid", gw, gh);
	size_t plane = (size_t)3 * H * W;
	// Buffers sized for max_batch at this grid; growing waits for all work.
	if (plane * m->max_batch > m->in_cap || (size_t)m->max_batch * np * K > m->patches_cap) {
		CU(cudaDeviceSynchronize());
		for (int s = 0; s < 2; s++) {
			cudaFree(m->in[s]);
			if (dalloc(&m->in[s], plane * m->max_batch) < 0)
				return -1;
		}
		m->in_cap = plane * m->max_batch;
		cudaFree(m->patches);
		cudaFree(m->emb);
		if (dalloc(&m->patches, (size_t)m->max_batch * np * K) < 0 ||
		    dalloc(&m->emb, (size_t)m->max_batch * np * D) < 0)
			return -1;
		m->patches_cap = (size_t)m->max_batch * np * K;
	}
	if (acts_reserve(&m->a, m->compute, m->max_batch, T, D, d->hidden, d->heads) < 0 ||
	    attention_pointers(&m->a, m->host_ptrs, m->compute, B, T) < 0)
		return -1;
	// copy stream: wait until compute has read this slot's last input
	CU(cudaStreamWaitEvent(m->copy, m->in_free[slot], 0));
	CU(cudaMemcpyAsync(m->in[slot], pixels, plane * B * sizeof(float), cudaMemcpyHostToDevice,
	                   m->copy));
	CU(cudaEventRecord(m->copied[slot], m->copy));
	cudaStream_t s = m->compute;
	CU(cudaStreamWaitEvent(s, m->copied[slot], 0));
	size_t npk = (size_t)B * np * K;
	patchify_kernel<A><<<grid_for(npk), 256, 0, s>>>(m->patches, m->in[slot], B, H, W, p);
	CU(cudaGetLastError());
	CU(cudaEventRecord(m->in_free[slot], s));
	if (matmul<A, float>(&m->bl, s, m->emb, m->patches, m->patch_w_t, m->patch_b, B * np, K, D) < 0)
		return -1;
	size_t ntd = (size_t)B * T * D;
	embed_kernel<<<grid_for(ntd), 256, 0, s>>>(m->a.x, m->emb, m->cls, m->reg, m->pos_prefix,
	                                           m->pos, B, T, np, D, d->class_token,
	                                           d->reg_tokens);
	CU(cudaGetLastError());
	int N = B * T, rb = (N + 7) / 8;
	if (d->ln_pre) {
		layernorm_kernel<float><<<rb, 256, 0, s>>>(m->a.x, m->a.x, m->ln_pre_w, m->ln_pre_b, N, D,
		                                           d->eps);
		CU(cudaGetLastError());
	}
	if (blocks_forward(&m->bl, s, &m->a, m->blocks.data(), d->depth, B, T, d->eps, d->quick_gelu,
	                   0) < 0)
		return -1;
	if (d->final_norm) {
		layernorm_kernel<float><<<rb, 256, 0, s>>>(m->a.x, m->a.x, m->norm_w, m->norm_b, N, D,
		                                           d->eps);
		CU(cudaGetLastError());
	}
	pool_kernel<<<grid_for((size_t)B * D), 256, 0, s>>>(m->pooled, m->a.x, B, T, D, d->pool_avg,
	                                                     prefix);
	CU(cudaGetLastError());
	if (d->fc_norm) {
		layernorm_kernel<float><<<(B + 7) / 8, 256, 0, s>>>(m->pooled, m->pooled, m->norm_w,
		                                                    m->norm_b, B, D, d->eps);
		CU(cudaGetLastError());
	}
	const float *result = m->pooled;
	if (d->proj_dim) {
		convert_kernel<A><<<grid_for((size_t)B * D), 256, 0, s>>>(m->pooled_a, m->pooled,
		                                                         (size_t)B * D);
		CU(cudaGetLastError());
		if (matmul<A, float>(&m->bl, s, m->out, m->pooled_a, m->proj, NULL, B, D, d->proj_dim) < 0)
			return -1;
		result = m->out;
	}
	CU(cudaMemcpyAsync(m->host_out[slot], result, (size_t)B * d->out_dim * sizeof(float),
	                   cudaMemcpyDeviceToHost, s));
	CU(cudaEventRecord(m->done[slot], s));
	m->last_b[slot] = B;
	return 0;
}

template <typename A> static int vit_wait_t(vit_dev<A> *m, int slot, float *pooled)
{
	CU(cudaEventSynchronize(m->done[slot]));
	CU(cudaGetLastError());
	memcpy(pooled, m->host_out[slot], (size_t)m->last_b[slot] * m->d.out_dim * sizeof(float));
	return 0;
}

// ---- the text model ----

template <typename A> struct text_dev : vit_base {
	gpu_text_desc d;
	cudaStream_t s;
	blas bl;
	float *tok, *pos, *lnf_w, *lnf_b;
	A *proj;
	std::vector<block_dev<A>> blocks;
	acts<A> a;
	std::vector<void *> host_ptrs;
	int *ids, *eot;
	float *rows, *out;
	A *rows_a;
	int cap;
};

template <typename A> static void text_release(text_dev<A> *m)
{
	cudaDeviceSynchronize();
	for (auto &b : m->blocks)
		block_release(&b);
	void *p[] = {m->tok, m->pos, m->lnf_w, m->lnf_b, m->proj, m->ids, m->eot,
	             m->rows, m->out, m->rows_a};
	for (void *q : p)
		cudaFree(q);
	acts_release(&m->a);
	blas_free(&m->bl);
	if (m->s)
		cudaStreamDestroy(m->s);
	delete m;
}

template <typename A> static int text_upload(text_dev<A> *m, const gpu_text_desc *d)
{
	int C = d->width;
	m->d = *d;
	m->d.blocks = NULL;
	CU(cudaStreamCreateWithFlags(&m->s, cudaStreamNonBlocking));
	if (blas_init(&m->bl, m->s) < 0 || upload_f32(&m->tok, d->tok_emb, (size_t)d->vocab * C) < 0 ||
	    upload_f32(&m->pos, d->pos, (size_t)d->context * C) < 0 ||
	    upload_f32(&m->lnf_w, d->ln_final_w, C) < 0 || upload_f32(&m->lnf_b, d->ln_final_b, C) < 0 ||
	    upload_act(&m->proj, d->proj, (size_t)C * d->embed) < 0)
		return -1;
	m->blocks.resize(d->layers);
	for (int l = 0; l < d->layers; l++)
		if (block_upload(&m->blocks[l], &d->blocks[l], C, d->hidden) < 0)
			return -1;
	return 0;
}

template <typename A>
static int text_forward_t(text_dev<A> *m, const int32_t *ids, const int32_t *eot, int B, float *out)
{
	const gpu_text_desc *d = &m->d;
	int T = d->context, C = d->width;
	if (B <= 0)
		return 0;
	cudaStream_t s = m->s;
	if (B > m->cap) {
		CU(cudaStreamSynchronize(s));
		void *p[] = {m->ids, m->eot, m->rows, m->out, m->rows_a};
		for (void *q : p)
			cudaFree(q);
		if (dalloc(&m->ids, (size_t)B * T) < 0 || dalloc(&m->eot, (size_t)B) < 0 ||
		    dalloc(&m->rows, (size_t)B * C) < 0 || dalloc(&m->out, (size_t)B * d->embed) < 0 ||
		    dalloc(&m->rows_a, (size_t)B * C) < 0)
			return -1;
		m->cap = B;
	}
	if (acts_reserve(&m->a, s, m->cap, T, C, d->hidden, d->heads) < 0 ||
	    attention_pointers(&m->a, m->host_ptrs, s, B, T) < 0)
		return -1;
	CU(cudaMemcpyAsync(m->ids, ids, (size_t)B * T * sizeof(int), cudaMemcpyHostToDevice, s));
	CU(cudaMemcpyAsync(m->eot, eot, (size_t)B * sizeof(int), cudaMemcpyHostToDevice, s));
	size_t n = (size_t)B * T * C;
	text_embed_kernel<<<grid_for(n), 256, 0, s>>>(m->a.x, m->ids, m->tok, m->pos, B, T, C);
	CU(cudaGetLastError());
	if (blocks_forward(&m->bl, s, &m->a, m->blocks.data(), d->layers, B, T, d->eps, d->quick_gelu,
	                   1) < 0)
		return -1;
	gather_rows_kernel<<<grid_for((size_t)B * C), 256, 0, s>>>(m->rows, m->a.x, m->eot, B, T, C);
	layernorm_kernel<A><<<(B + 7) / 8, 256, 0, s>>>(m->rows_a, m->rows, m->lnf_w, m->lnf_b, B, C,
	                                                d->eps);
	CU(cudaGetLastError());
	if (matmul<A, float>(&m->bl, s, m->out, m->rows_a, m->proj, NULL, B, C, d->embed) < 0)
		return -1;
	CU(cudaMemcpyAsync(out, m->out, (size_t)B * d->embed * sizeof(float), cudaMemcpyDeviceToHost,
	                   s));
	CU(cudaStreamSynchronize(s));
	return 0;
}

// ---- the C interface ----

static const char *api_last_error(void) { return g_err; }

static int api_probe(char *name, size_t size)
{
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e == cudaErrorInsufficientDriver)
		return fail("no NVIDIA driver, or one too old for CUDA %d.%d (%s)", CUDART_VERSION / 1000,
		            CUDART_VERSION % 1000 / 10, cudaGetErrorString(e));
	if (e == cudaErrorNoDevice)
		return fail("no CUDA device (%s)", cudaGetErrorString(e));
	if (e != cudaSuccess)
		return fail("%s", cudaGetErrorString(e));
	if (n == 0)
		return fail("no CUDA device");
	cudaDeviceProp prop;
	CU(cudaGetDeviceProperties(&prop, 0));
	snprintf(name, size, "%s (compute capability %d.%d, %zu MiB)", prop.name, prop.major,
	         prop.minor, prop.totalGlobalMem >> 20);
	return 0;
}

static void *api_host_alloc(size_t bytes)
{
	void *p = NULL;
	cudaError_t e = cudaMallocHost(&p, bytes);
	if (e != cudaSuccess) {
		fail("cudaMallocHost: %s", cudaGetErrorString(e));
		return NULL;
	}
	return p;
}

static void api_host_free(void *p) { cudaFreeHost(p); }

static void *api_vit_create(const gpu_vit_desc *d, enum gpu_precision prec, int max_batch)
{
	if (prec == GPU_FP32) {
		auto *m = new vit_dev<float>();
		m->prec = prec;
		if (vit_upload(m, d, max_batch) < 0) {
			vit_release(m);
			return NULL;
		}
		return m;
	}
	auto *m = new vit_dev<bf16>();
	m->prec = prec;
	if (vit_upload(m, d, max_batch) < 0) {
		vit_release(m);
		return NULL;
	}
	return m;
}

static int api_vit_set_pos(void *h, const float *pos, int gh, int gw)
{
	if (((vit_base *)h)->prec == GPU_FP32)
		return vit_set_pos_t((vit_dev<float> *)h, pos, gh, gw);
	return vit_set_pos_t((vit_dev<bf16> *)h, pos, gh, gw);
}

static int api_vit_submit(void *h, int slot, const float *pixels, int B, int H, int W)
{
	if (slot < 0 || slot > 1)
		return fail("slot %d (0 or 1)", slot);
	if (((vit_base *)h)->prec == GPU_FP32)
		return vit_submit_t((vit_dev<float> *)h, slot, pixels, B, H, W);
	return vit_submit_t((vit_dev<bf16> *)h, slot, pixels, B, H, W);
}

static int api_vit_wait(void *h, int slot, float *pooled)
{
	if (slot < 0 || slot > 1)
		return fail("slot %d (0 or 1)", slot);
	if (((vit_base *)h)->prec == GPU_FP32)
		return vit_wait_t((vit_dev<float> *)h, slot, pooled);
	return vit_wait_t((vit_dev<bf16> *)h, slot, pooled);
}

static void api_vit_destroy(void *h)
{
	if (!h)
		return;
	if (((vit_base *)h)->prec == GPU_FP32)
		vit_release((vit_dev<float> *)h);
	else
		vit_release((vit_dev<bf16> *)h);
}

static void *api_text_create(const gpu_text_desc *d, enum gpu_precision prec)
{
	if (prec == GPU_FP32) {
		auto *m = new text_dev<float>();
		m->prec = prec;
		if (text_upload(m, d) < 0) {
			text_release(m);
			return NULL;
		}
		return m;
	}
	auto *m = new text_dev<bf16>();
	m->prec = prec;
	if (text_upload(m, d) < 0) {
		text_release(m);
		return NULL;
	}
	return m;
}

static int api_text_forward(void *h, const int32_t *ids, const int32_t *eot, int B, float *out)
{
	if (((vit_base *)h)->prec == GPU_FP32)
		return text_forward_t((text_dev<float> *)h, ids, eot, B, out);
	return text_forward_t((text_dev<bf16> *)h, ids, eot, B, out);
}

static void api_text_destroy(void *h)
{
	if (!h)
		return;
	if (((vit_base *)h)->prec == GPU_FP32)
		text_release((text_dev<float> *)h);
	else
		text_release((text_dev<bf16> *)h);
}

static const struct eosin_cuda_plugin PLUGIN = {
    EOSIN_CUDA_ABI,   api_last_error,  api_probe,       api_host_alloc, api_host_free,
    api_vit_create,   api_vit_set_pos, api_vit_submit,  api_vit_wait,   api_vit_destroy,
    api_text_create,  api_text_forward, api_text_destroy,
};

extern "C" __attribute__((visibility("default"))) const struct eosin_cuda_plugin *
eosin_cuda_plugin(void)
{
	return &PLUGIN;
}
