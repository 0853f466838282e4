/*
 * gpu.h: eosin-encode's models on a CUDA GPU, through the plugin
 * build/lib/eosin-cuda.so (cuda/plugin.h), opened at run time so that
 * programs built here never link CUDA and run where there is none.
 *
 * A struct gpu is the opened plugin. A struct gpu_vit / gpu_text is a
 * model the CPU loader read (vit_load, clip_text_load) uploaded once; the
 * CPU structs stay the caller's and must outlive the GPU ones (the
 * position table of a new grid is resampled by vit.c on demand).
 *
 * gpu_vit_encode() runs n images through the model in chunks of at most
 * max_batch, two chunks in flight: while the device runs one, the
 * caller's fill() prepares the next into pinned memory on OpenMP threads.
 * Embeddings land in input order. Memory: two pinned chunks of pixels and
 * the device's activations for one chunk.
 *
 * Errors go through core/error.h; messages say which step failed and why
 * (no plugin, no CUDA runtime, no device).
 */
#ifndef EOSIN_GPU_H
#define EOSIN_GPU_H

#include "model/clip_text.h"
#include "model/cuda/plugin.h"
#include "model/vit.h"

#include <stddef.h>

struct gpu {
	void *dl;                       /* dlopen handle, NULL for a built-in table */
	const struct eosin_cuda_plugin *api;
	char device[256];               /* the device's name */
	char path[4096];                /* the plugin file */
};

/* Where the plugin is looked for: $EOSIN_CUDA_PLUGIN, else
 * ../lib/eosin-cuda.so beside the running program. */
void gpu_plugin_path(char *out, size_t size);
/* Is there an NVIDIA device node (a cheap test before loading CUDA)? */
int gpu_device_node_present(void);
/* Open the plugin and its first device. */
int gpu_open(struct gpu *g);
/* Use a table of functions already in the program (tests). */
int gpu_open_table(struct gpu *g, const struct eosin_cuda_plugin *api);
void gpu_close(struct gpu *g);

struct gpu_vit {
	struct gpu *g;
	struct vit *cpu;                /* the caller's */
	void *h;
	int max_batch;
	int grid;                       /* gh * 65536 + gw of the position table sent, 0 none */
	float *pinned[2];               /* max_batch images each, grown with the image size */
	size_t pinned_floats;
};

int gpu_vit_create(struct gpu_vit *gv, struct gpu *g, struct vit *m, enum gpu_precision prec,
                   int max_batch);
void gpu_vit_free(struct gpu_vit *gv);

/* fill(ctx, i, dst) writes image i, (3,H,W) normalised, into dst; it runs
 * on several threads at once and returns 0, or -1 (the image's slot is
 * then zeroed and its embedding is whatever the model makes of that; the
 * caller knows it failed). out (n, out_dim). */
typedef int (*gpu_fill_fn)(void *ctx, size_t i, float *dst);
int gpu_vit_encode(struct gpu_vit *gv, size_t n, int H, int W, gpu_fill_fn fill, void *ctx,
                   float *out);

struct gpu_text {
	struct gpu *g;
	struct clip_text *cpu;
	void *h;
};

int gpu_text_create(struct gpu_text *gt, struct gpu *g, struct clip_text *m,
                    enum gpu_precision prec);
void gpu_text_free(struct gpu_text *gt);
/* As clip_text_forward: ids (B, context) -> out (B, embed). */
int gpu_text_forward(struct gpu_text *gt, const int32_t *ids, int B, float *out);

/* The chunks gpu_vit_encode cuts n images into: chunk k holds images
 * [k*max_batch, min(n, (k+1)*max_batch)). Exposed for tests. */
size_t gpu_chunks(size_t n, int max_batch);

#endif
