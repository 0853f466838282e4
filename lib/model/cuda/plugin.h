/*
 * cuda/plugin.h: the C interface between eosin's programs and the CUDA
 * plugin (build/lib/eosin-cuda.so), which model/gpu.c opens with dlopen so
 * that no program links libcudart.
 *
 * The plugin exports one symbol, eosin_cuda_plugin(), returning a table of
 * functions. The models are described to it by plain structs of host
 * float32 arrays, filled by gpu.c from a struct vit or struct clip_text
 * that the CPU loader has already read: the plugin copies (and converts)
 * them to the device in *_create and keeps no pointer into them.
 *
 * Shapes as in vit.h: D width, H MLP width, NH heads, T tokens, B images.
 * Block matrices are (in,out) as block_load() leaves them; patch_w is
 * (D, 3*p*p) as nn.Conv2d stores it. Every function that can fail returns
 * -1 (or NULL) and leaves a message for last_error(), per thread.
 *
 * Images go through two slots (0 and 1): vit_submit(slot) starts copying
 * the pixels from a pinned host buffer (host_alloc) and running the model
 * on them, and returns at once; vit_wait(slot) blocks until that slot's
 * embeddings are back. While one slot runs on the device the caller fills
 * the other: copies overlap compute, and the caller owns the order.
 */
#ifndef EOSIN_CUDA_PLUGIN_H
#define EOSIN_CUDA_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EOSIN_CUDA_ABI 2

struct gpu_block_desc {
	const float *ln1_w, *ln1_b;     /* (D) */
	const float *qkv_w, *qkv_b;     /* (D,3D), (3D) */
	const float *proj_w, *proj_b;   /* (D,D), (D) */
	const float *ls1, *ls2;         /* (D) LayerScale, or NULL */
	const float *ln2_w, *ln2_b;     /* (D) */
	const float *fc1_w, *fc1_b;     /* (D,H), (H) */
	const float *fc2_w, *fc2_b;     /* (H,D), (D) */
};

struct gpu_vit_desc {
	int dim, depth, heads, hidden, patch;
	int class_token, reg_tokens;
	int no_embed_class;             /* prefix tokens get no position */
	int ln_pre, final_norm, fc_norm;
	int pool_avg;                   /* mean of the patch tokens, else token 0 */
	int quick_gelu;
	int proj_dim;                   /* 0: no projection */
	int out_dim;
	float eps;
	const float *patch_w, *patch_b; /* (D, 3*p*p), (D) or NULL */
	const float *cls;               /* (D) or NULL */
	const float *reg;               /* (R,D) or NULL */
	const float *pos_prefix;        /* (class_token+R, D), NULL when no_embed_class */
	const float *ln_pre_w, *ln_pre_b;
	const float *norm_w, *norm_b;   /* final norm, fc_norm or ln_post */
	const float *proj;              /* (D, proj_dim) */
	const struct gpu_block_desc *blocks; /* depth of them */
};

struct gpu_text_desc {
	int width, layers, heads, hidden, context, vocab, embed;
	int quick_gelu;
	float eps;
	const float *tok_emb;           /* (vocab, width) */
	const float *pos;               /* (context, width) */
	const float *ln_final_w, *ln_final_b;
	const float *proj;              /* (width, embed) */
	const struct gpu_block_desc *blocks;
};

enum gpu_precision { GPU_BF16, GPU_FP32 };

struct eosin_cuda_plugin {
	int abi;                        /* EOSIN_CUDA_ABI */
	const char *(*last_error)(void);
	/* 0 and the first device's name, or -1 (no device, driver too old). */
	int (*probe)(char *name, size_t size);
	void *(*host_alloc)(size_t bytes);      /* pinned; NULL on failure */
	void (*host_free)(void *p);

	/* max_batch: the most images one vit_submit takes. */
	void *(*vit_create)(const struct gpu_vit_desc *d, enum gpu_precision prec, int max_batch);
	/* The patch tokens' position table for a gh x gw grid, (gh*gw, D). */
	int (*vit_set_pos)(void *m, const float *pos_patch, int gh, int gw);
	/* pixels (B,3,H,W) pinned, normalised; H/p x W/p must be the grid set. */
	int (*vit_submit)(void *m, int slot, const float *pixels, int B, int H, int W);
	/* pooled (B, out_dim) of what slot's last submit gave. */
	int (*vit_wait)(void *m, int slot, float *pooled);
	void (*vit_destroy)(void *m);

	void *(*text_create)(const struct gpu_text_desc *d, enum gpu_precision prec);
	/* ids (B, context), all inside the vocabulary; eot (B): the row pooled.
	 * out (B, embed). Synchronous. */
	int (*text_forward)(void *m, const int32_t *ids, const int32_t *eot, int B, float *out);
	void (*text_destroy)(void *m);
};

const struct eosin_cuda_plugin *eosin_cuda_plugin(void);

#ifdef __cplusplus
}
#endif

#endif
