/*
 * optim.c: AdamW, learning-rate schedule and gradient clipping (optim.h).
 */
#include "train/optim.h"

#include <math.h>

/* Built with -fno-math-errno -fno-trapping-math (Makefile): sqrtf becomes
 * one vector instruction (its arguments are never negative) and the loop
 * vectorises; nothing here reads errno or the exception flags. */
void adamw_update(const struct adamw *o, float *param, const float *grad, float *m, float *v,
                  const float *decay, size_t n, long t, float lr)
{
	float bc1 = 1.0f - powf(o->beta1, (float)t);
	float bc2 = 1.0f - powf(o->beta2, (float)t);
	float step_size = lr / bc1;
	float bc2_sqrt = sqrtf(bc2);
	float b1 = o->beta1, b2 = o->beta2, eps = o->eps, lr_wd = lr * o->weight_decay;
	/* two copies of the loop, so that neither loads under a condition */
#define ADAMW_LOOP(DECAY)                                                                    \
	_Pragma("omp parallel for simd schedule(static) if (n >= 32768)")                        \
	for (size_t i = 0; i < n; i++) {                                                     \
		float g = grad[i];                                                           \
		float mi = b1 * m[i] + (1.0f - b1) * g;                                      \
		float vi = b2 * v[i] + (1.0f - b2) * g * g;                                  \
		float denom = sqrtf(vi) / bc2_sqrt + eps;                                    \
		m[i] = mi;                                                                   \
		v[i] = vi;                                                                   \
		param[i] = param[i] * (1.0f - lr_wd * (DECAY)) - step_size * mi / denom;     \
	}
	if (decay)
		ADAMW_LOOP(decay[i])
	else
		ADAMW_LOOP(1.0f)
#undef ADAMW_LOOP
}

float lr_schedule(float lr, float min_lr, long warmup, long total, long step)
{
	if (step < warmup)
		return lr * (float)(step + 1) / (float)warmup;
	if (total <= warmup)
		return lr;
	double p = (double)(step - warmup) / (double)(total - warmup);
	if (p > 1.0)
		p = 1.0;
	return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * p)));
}

/* the sum of squares in at most CLIP_BLOCKS blocks of at least CLIP_MIN
 * elements, the blocks' sums added in order: the same for any thread count */
#define CLIP_BLOCKS 256
#define CLIP_MIN 32768

float clip_grad_norm(float *grad, size_t n, float max_norm)
{
	double part[CLIP_BLOCKS];
	size_t block = (n + CLIP_BLOCKS - 1) / CLIP_BLOCKS;
	block = block < CLIP_MIN ? CLIP_MIN : block;
	int nblocks = (int)((n + block - 1) / block);
#pragma omp parallel for schedule(static) if (nblocks > 1)
	for (int k = 0; k < nblocks; k++) {
		size_t lo = (size_t)k * block, hi = lo + block < n ? lo + block : n;
		double s = 0.0;
#pragma omp simd reduction(+ : s)
		for (size_t i = lo; i < hi; i++)
			s += (double)grad[i] * grad[i];
		part[k] = s;
	}
	double s = 0.0;
	for (int k = 0; k < nblocks; k++)
		s += part[k];
	float norm = (float)sqrt(s);
	if (max_norm > 0.0f) {
		float coef = max_norm / (norm + 1e-6f);
		if (coef < 1.0f)
#pragma omp parallel for simd schedule(static) if (n >= CLIP_MIN)
			for (size_t i = 0; i < n; i++)
				grad[i] *= coef;
	}
	return norm;
}
