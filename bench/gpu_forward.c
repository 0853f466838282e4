/*
 * bench/gpu_forward.c: the vision model alone on the GPU, for bench/gpu.sh.
 *
 *   gpu_forward MODEL N BATCH bf16|fp32 [SIDE]
 *
 * Loads MODEL with the CPU loader, uploads it, and times gpu_vit_encode
 * over N images of fixed random normalised pixels (8 distinct images,
 * copied into the pinned chunks by the fill step, as eosin-encode's
 * preprocessing would write them) after one warm-up chunk. Prints one
 * line: "images_per_s X device NAME".
 */
#include "core/error.h"
#include "model/gpu.h"
#include "model/vit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct pool {
	float *x;
	size_t plane;
};

static int fill(void *ctx, size_t i, float *dst)
{
	const struct pool *p = ctx;
	memcpy(dst, p->x + (i % 8) * p->plane, p->plane * sizeof(float));
	return 0;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: gpu_forward MODEL N BATCH bf16|fp32 [SIDE]\n");
		return 2;
	}
	size_t n = strtoul(argv[2], NULL, 10);
	int batch = atoi(argv[3]), side = argc > 5 ? atoi(argv[5]) : 224;
	enum gpu_precision prec = !strcmp(argv[4], "fp32") ? GPU_FP32 : GPU_BF16;
	struct safetensors st;
	struct vit m;
	struct gpu g;
	struct gpu_vit gv;
	if (safetensors_open(&st, argv[1]) < 0 || vit_load(&m, &st, argv[1], NULL) < 0 ||
	    gpu_open(&g) < 0 || gpu_vit_create(&gv, &g, &m, prec, batch) < 0) {
		fprintf(stderr, "gpu_forward: %s\n", eosin_errmsg());
		return 1;
	}
	struct pool p = {malloc(8 * (size_t)3 * side * side * sizeof(float)), (size_t)3 * side * side};
	srand(1);
	for (size_t i = 0; i < 8 * p.plane; i++)
		p.x[i] = (float)rand() / RAND_MAX * 4.f - 2.f;
	float *out = malloc(n * (size_t)m.out_dim * sizeof(float));
	if (gpu_vit_encode(&gv, (size_t)batch, side, side, fill, &p, out) < 0) {
		fprintf(stderr, "gpu_forward: %s\n", eosin_errmsg());
		return 1;
	}
	double t0 = now();
	if (gpu_vit_encode(&gv, n, side, side, fill, &p, out) < 0) {
		fprintf(stderr, "gpu_forward: %s\n", eosin_errmsg());
		return 1;
	}
	double dt = now() - t0;
	printf("images_per_s %.1f device %s\n", n / dt, g.device);
	free(out);
	free(p.x);
	gpu_vit_free(&gv);
	gpu_close(&g);
	vit_free(&m);
	safetensors_close(&st);
	return 0;
}
