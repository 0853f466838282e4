/*
 * ops.h: the transformer kernels eosin-encode's models are made of.
 *
 * Every kernel works on plain float32 buffers the caller owns and sized
 * by the caller; none allocates. A model's forward pass is a sequence of
 * these calls (vit.c, clip_text.c), so a GPU backend can mirror the same
 * signatures. Shapes in comments: N rows (batch x tokens folded), C
 * channels, B batch, T tokens, NH heads, OC output channels.
 *
 * Matrix products go through cblas_sgemm (OpenBLAS); element-wise kernels
 * and attention run across OpenMP threads.
 */
#ifndef EOSIN_OPS_H
#define EOSIN_OPS_H

#include <stddef.h>

/* out (N,C) = LayerNorm(inp (N,C)) * weight (C) + bias (C). Mean and
 * variance (biased) in double. out may equal inp. */
void layernorm_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int N, int C, float eps);

/* out (N,OC) = inp (N,C) @ weight^T + bias, weight (OC,C) as nn.Linear
 * stores it; bias (OC) may be NULL. */
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                    int C, int OC);
/* out (N,OC) = inp (N,C) @ weight (+ bias (OC), NULL for none), weight
 * stored (C,OC) (CLIP's proj; the blocks' weights once vit.c has
 * transposed them: OpenBLAS's sgemm runs about 10% faster on this layout
 * than on (OC,C) when the weights come from memory rather than cache). */
void matmul_forward_in_out(float *out, const float *inp, const float *weight, int N, int C,
                           int OC);
void matmul_forward_in_out_bias(float *out, const float *inp, const float *weight,
                                const float *bias, int N, int C, int OC);

/* In place over n elements: exact (erf) GELU, QuickGELU x*sigmoid(1.702x). */
void gelu_forward(float *x, size_t n);
void quickgelu_forward(float *x, size_t n);

/* x (N,C) += gamma (C) * y (N,C); gamma NULL means 1 (no LayerScale). */
void residual_forward(float *x, const float *y, const float *gamma, int N, int C);

/* The fused forms the blocks use, one pass over each row while it is in
 * cache. x (N,C) += gamma (C) * (y (N,C) + bias (C)) (bias, gamma NULL: 0,
 * 1); then, when ln_out is not NULL, ln_out (N,C) = LayerNorm(x) with
 * ln_w, ln_b (C) as layernorm_forward computes it. */
void residual_layernorm_forward(float *x, const float *y, const float *bias, const float *gamma,
                                float *ln_out, const float *ln_w, const float *ln_b, int N, int C,
                                float eps);
/* x (N,H) = act(x + bias (H)): exact GELU, or QuickGELU when quick. */
void bias_gelu_forward(float *x, const float *bias, int N, int H, int quick);
/* A gated MLP's activation (timm GluMlp, gate_last=False): x (N,H) ->
 * (N,H/2) packed at the start of x, act(a + b_a) * (g + b_g) with a the
 * first half of a row and g the second; act 0 GELU, 1 QuickGELU, 2 SiLU
 * (enum act_kind's order). */
void bias_glu_forward(float *x, const float *bias, int N, int H, int act);

/* Multi-head self-attention core. qkv (B,T,3C): per token q, k, v, each
 * NH heads of C/NH contiguous channels. out (B,T,C): heads concatenated.
 * causal: key j > query i masked. scratch: attention_scratch_floats(T)
 * floats (per-thread score rows). q is scaled by 1/sqrt(head dim). */
void attention_forward(float *out, float *scratch, const float *qkv, int B, int T, int C, int NH,
                       int causal);
size_t attention_scratch_floats(int T);

/* Rows of x (rows, cols) to their mean over rows [from, to), into out (cols). */
void mean_rows(float *out, const float *x, int from, int to, int cols);

/* exp(x) for every element, float32, vectorisable; relative error < 2e-7
 * on the softmax range. Exposed for tests. */
void ops_exp(float *x, size_t n);

/* Is OpenBLAS running narrower kernels than the CPU can? On an AVX-512 CPU
 * (F, BW, DQ, VL) OpenBLAS's Haswell (AVX2) kernels run sgemm at about half
 * the speed of its SkylakeX/Cooperlake ones. Debian 12's OpenBLAS 0.3.21
 * picks Cooperlake on its own on the Zen 5 machines measured here; Haswell
 * comes from OPENBLAS_CORETYPE=Haswell in the environment, or from an
 * OpenBLAS too old to know the CPU.
 *   BLAS_OK                fine, or not an AVX-512 CPU
 *   BLAS_NARROW_DETECTED   OpenBLAS chose Haswell itself (no OPENBLAS_CORETYPE):
 *                          re-running with OPENBLAS_CORETYPE=SkylakeX fixes it
 *   BLAS_NARROW_FORCED     OPENBLAS_CORETYPE names Haswell (or older): the
 *                          user's setting, to be reported and respected
 * *corename gets OpenBLAS's core name. OpenBLAS reads OPENBLAS_CORETYPE
 * when it loads, so only a fresh exec can change the kernels. */
enum blas_state { BLAS_OK, BLAS_NARROW_DETECTED, BLAS_NARROW_FORCED };
enum blas_state ops_blas_check(const char **corename);

#endif
