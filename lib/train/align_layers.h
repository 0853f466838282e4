/*
 * align_layers.h: the layers and losses the alignment model (align.h) is
 * built from, forward and backward side by side, exposed for the gradient
 * checks. Plain float buffers, row-major; a backward ACCUMULATES into its
 * gradient buffers; nothing here allocates. These know nothing of the
 * model: align.c composes them, and this file includes nothing of it.
 */
#ifndef EOSIN_ALIGN_LAYERS_H
#define EOSIN_ALIGN_LAYERS_H

#include <stddef.h>

/* C (M,N) = alpha op(A) op(B) + beta C, row-major, op = transpose when
 * trans_*: cblas_sgemm, split across the OpenMP threads by blocks of rows
 * (or columns) of C when called outside a parallel region and large
 * enough. The split depends only on the sizes and the thread count, and
 * never splits K, so a product repeats bit for bit at the same count. */
void align_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc);
/* out (N,OC) = inp (N,C) W^T (W is (OC,C)) + b (OC, may be NULL) */
void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int C,
                    int OC);
/* dinp (N,C) += dout W; dw (OC,C) += dout^T inp; db (OC) += sum dout.
 * dinp may be NULL. */
void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, int N, int C, int OC);
/* tanh-approximated GELU, elementwise over n */
void align_gelu_forward(float *out, const float *inp, size_t n);
void align_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
/* LayerNorm over the last dim C of (N,C); mean, rstd (N) saved; eps 1e-5 */
void align_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int N, int C);
void align_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int N, int C);
/* out (N,C) = inp / max(|inp|, 1e-12) row-wise; norm (N) saved */
void l2norm_forward(float *out, float *norm, const float *inp, int N, int C);
void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm, int N,
                     int C);
/* Multi-head scaled dot-product attention core, H heads of width hd.
 * q (Tq, ldq), k (Tk, ldk), v (Tk, ldv): head h uses columns [h*hd, (h+1)*hd).
 * out (Tq, H*hd); att (H, Tq, Tk) softmax probabilities saved. */
void align_attention_forward(float *out, float *att, const float *q, int ldq, const float *k, int ldk,
                       const float *v, int ldv, int Tq, int Tk, int H, int hd);
/* dq, dk, dv accumulate (same strides as q, k, v); scratch (Tq, Tk). */
void align_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                        const float *att, const float *q, int ldq, const float *k, int ldk,
                        const float *v, int ldv, int Tq, int Tk, int H, int hd);
/* 2-D sinusoidal encoding added to x (N, C), C % 4 == 0: first C/2 columns
 * encode pos x / extent, the rest pos y / extent, sin and cos interleaved,
 * frequencies 1/10000^(2i/(C/2)). */
void posenc2d_add(float *x, const float *pos, float extent, int N, int C);
/* Symmetric InfoNCE. zi, zt (R, D) unit rows; scale = exp(logit_scale).
 * logits ((2R + 2), R) scratch. Returns the loss; dzi, dzt (R,D) accumulate
 * w * dloss; *dlogit_scale += w * dloss/dlogit_scale (when not clamped). */
float infonce_forward_backward(float *dzi, float *dzt, float *dlogit_scale, float *logits,
                               const float *zi, const float *zt, float logit_scale, int clamped,
                               int R, int D, float w);
/* Multi-positive InfoNCE of one anchor z (D) against keys (M, D): positives
 * are the topk most similar keys. dz, dkeys accumulate w * grad. */
float multipos_nce_forward_backward(float *dz, float *dkeys, float *dlogit_scale, float *scratch,
                                    int *order, const float *z, const float *keys,
                                    float logit_scale, int clamped, int M, int D, int topk,
                                    float w);

/* Multi-positive InfoNCE over a (G, S) similarity matrix in both directions:
 * row g and column s are positives when gid[g] == sid[s]. a (G,D), b (S,D)
 * unit rows; scratch (2, G, S). Rows or columns without a positive are left
 * out. Returns 1/2 (mean over rows + mean over columns); da, db accumulate. */
float groupnce_forward_backward(float *da, float *db, float *dlogit_scale, float *scratch,
                                const float *a, const float *b, const int *gid, const int *sid,
                                float logit_scale, int clamped, int G, int S, int D, float w);

/* logit_scale clamp, as CLIP: [0, log 100] */
#define ALIGN_SCALE_MAX 4.605170186f

#endif
