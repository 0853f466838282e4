/*
 * optim.h: AdamW with decoupled weight decay, a linear-warmup + cosine
 * learning-rate schedule and global-norm gradient clipping, over flat float
 * arrays (parameters, gradients and both moments of the same length).
 * The arithmetic follows torch.optim.AdamW (PyTorch 1.13, non-foreach) so
 * that a reference run matches step for step.
 */
#ifndef EOSIN_OPTIM_H
#define EOSIN_OPTIM_H

#include <stddef.h>

struct adamw {
	float lr, beta1, beta2, eps, weight_decay;
};

/* One AdamW update at 1-based step t with learning rate lr. decay (n) is a
 * per-element weight-decay mask (1 or 0), or NULL for all 1. */
void adamw_update(const struct adamw *o, float *param, const float *grad, float *m, float *v,
                  const float *decay, size_t n, long t, float lr);

/* Learning rate at 0-based step: linear warmup from lr/warmup to lr over
 * warmup steps, then cosine decay to min_lr at total steps. */
float lr_schedule(float lr, float min_lr, long warmup, long total, long step);

/* Scale grad (n) so that its L2 norm is at most max_norm (<= 0: no clip).
 * Returns the norm before clipping. */
float clip_grad_norm(float *grad, size_t n, float max_norm);

#endif
