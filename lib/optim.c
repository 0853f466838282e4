/*
 * optim.c: AdamW, learning-rate schedule and gradient clipping (optim.h).
 */
#include "optim.h"

#include <math.h>

/* no-math-errno lets sqrtf become one vector instruction; the arguments are
 * never negative */
__attribute__((optimize("no-math-errno"))) void
adamw_update(const struct adamw *o, float *param, const float *grad, float *m, float *v,
             const float *decay, size_t n, long t, float lr)
{
	float bc1 = 1.0f - powf(o->beta1, (float)t);
	float bc2 = 1.0f - powf(o->beta2, (float)t);
	float step_size = lr / bc1;
	float bc2_sqrt = sqrtf(bc2);
#pragma omp parallel for simd schedule(static) if (n >= 32768)
	for (size_t i = 0; i < n; i++) {
		float g = grad[i];
		param[i] *= 1.0f - lr * o->weight_decay * (decay ? decay[i] : 1.0f);
		m[i] = o->beta1 * m[i] + (1.0f - o->beta1) * g;
		v[i] = o->beta2 * v[i] + (1.0f - o->beta2) * g * g;
		float denom = sqrtf(v[i]) / bc2_sqrt + o->eps;
		param[i] -= step_size * m[i] / denom;
	}
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

float clip_grad_norm(float *grad, size_t n, float max_norm)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += (double)grad[i] * grad[i];
	float norm = (float)sqrt(s);
	if (max_norm > 0.0f) {
		float coef = max_norm / (norm + 1e-6f);
		if (coef < 1.0f)
			for (size_t i = 0; i < n; i++)
				grad[i] *= coef;
	}
	return norm;
}
