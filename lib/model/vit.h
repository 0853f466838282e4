/*
 * vit.h: vision transformers for patch encoding, CPU, float32.
 *
 * Two families from one code path:
 *  - timm VisionTransformer (UNI, Phikon, Virchow, GigaPath tile encoder):
 *    conv patch embed with bias, cls token, register tokens, learned
 *    pos_embed (optionally on patches only: no_embed_class), pre-LN
 *    blocks with LayerScale, exact GELU or a packed SwiGLU MLP (Virchow 2,
 *    UNI 2: timm's SwiGLUPacked with SiLU), final norm or fc_norm, token
 *    or mean pooling.
 *  - CLIP vision tower (openai/CLIP names under "visual."): conv without
 *    bias, class_embedding, ln_pre, QuickGELU, ln_post on token 0, proj
 *    stored (in,out).
 *
 * The architecture comes from the file's __metadata__ (timm_config or
 * clip_config, JSON strings), else from config.json beside it, else it is
 * inferred from tensor names and shapes; vit_load() says which in
 * m->config_source. Numerics follow ../shared/data/reference/README.md.
 *
 * A struct vit owns its float32 weights (converted from F32/F16/BF16) and
 * its activation buffers, which grow only when a larger batch or token
 * count is asked for, never inside a forward pass.
 */
#ifndef EOSIN_VIT_H
#define EOSIN_VIT_H

#include "model/safetensors.h"

#include <stddef.h>
#include <stdint.h>

enum act_kind { ACT_GELU, ACT_QUICKGELU, ACT_SILU };
/* POOL_TOKEN_AVG: token 0 and the mean of the patch tokens, concatenated
 * (Virchow's published embedding, 2D wide). POOL_ATTN: an attentional
 * pooler over all tokens (CONCH's contrastive head; struct attn_pool). */
enum pool_kind { POOL_TOKEN, POOL_AVG, POOL_TOKEN_AVG, POOL_ATTN };

/* CoCa's AttentionalPooler with one query, then LayerNorm and a
 * projection, as CONCH's image embedding: K = V = ln_k(tokens), the query
 * ln_q(query), nn.MultiheadAttention with kdim = vdim = the trunk's width.
 * Matrices (in,out). */
struct attn_pool {
	int E, heads, proj_dim; /* pooler width, heads, output width */
	float eps;
	float *query;         /* (1,E), one query */
	float *lnq_w, *lnq_b; /* (E) */
	float *lnk_w, *lnk_b; /* (D) */
	float *wq, *wk, *wv;  /* (E,E), (D,E), (D,E) */
	float *bq, *bk, *bv;  /* (E) */
	float *wo, *bo;       /* (E,E), (E) */
	float *ln_w, *ln_b;   /* (E) */
	float *proj;          /* (E, proj_dim) */
	float *buf;           /* per image: ln_k(x), K, V, scores */
	size_t buf_cap;
};

/* One pre-LN transformer block's weights. C channels, H hidden. The
 * matrices are held (in,out), transposed from nn.Linear's (out,in) as
 * block_load() reads them, for the faster sgemm (ops.h). */
struct block_weights {
	float *ln1_w, *ln1_b;       /* (C) */
	float *qkv_w, *qkv_b;       /* (C,3C), (3C); columns q, k, v */
	float *proj_w, *proj_b;     /* (C,C), (C) */
	float *ls1, *ls2;           /* (C) LayerScale, or NULL */
	float *ln2_w, *ln2_b;       /* (C) */
	float *fc1_w, *fc1_b;       /* (C,H), (H) */
	float *fc2_w, *fc2_b;       /* (H,C), (C); (H/2,C) when glu */
	int glu;                    /* gated MLP (timm GluMlp, gate_last=False, as
	                             * SwiGLUPacked): fc1 gives H columns, act(first
	                             * half) * second half goes into fc2 */
};

/* Activations for up to N = B*T rows. */
struct block_acts {
	size_t rows;                /* capacity in rows */
	int C, H;
	float *ln;                  /* (N,C) */
	float *qkv;                 /* (N,3C) */
	float *att;                 /* (N,C) */
	float *tmp;                 /* (N,C) */
	float *hidden;              /* (N,H) */
	float *scores;              /* attention_scratch_floats(T) */
	size_t scores_len;
};

/* Naming of block tensors in a file. */
enum block_naming { NAMING_TIMM, NAMING_CLIP };

int block_load(struct block_weights *bw, const struct safetensors *st, const char *prefix,
               enum block_naming naming, int C, int H);
void block_free(struct block_weights *bw);
int block_acts_reserve(struct block_acts *a, int B, int T, int C, int H);
void block_acts_free(struct block_acts *a);
/* x (B,T,C) through one block, in place. */
void block_forward(float *x, const struct block_weights *bw, struct block_acts *a, int B, int T,
                   int C, int NH, int H, float eps, enum act_kind act, int causal);

struct vit_config {
	char family[16];            /* "timm" or "clip" */
	int img_size;               /* training input side, px */
	int patch;                  /* patch side, px */
	int in_chans;
	int dim, depth, heads, hidden;
	int class_token, reg_tokens;
	int no_embed_class;         /* pos_embed on patch tokens only */
	int dynamic_img_size;       /* other input sizes: resample pos_embed */
	int patch_bias;
	int ln_pre;                 /* CLIP: LayerNorm before the blocks */
	int final_norm;             /* norm on every token after the blocks */
	int fc_norm;                /* norm on the pooled vector instead */
	enum pool_kind pool;
	int attn_pool_heads; /* POOL_ATTN: the pooler's heads (8, CONCH's) */
	enum act_kind act;
	int proj_dim;               /* CLIP: output projection width, 0 none */
	float eps;
	/* Preprocessing the model was trained with. */
	float mean[3], std[3];
	char interpolation[16];     /* "bicubic" or "bilinear" */
	float crop_pct;             /* resize side = img_size / crop_pct, then centre crop */
};

/* Options that override what the file says (tests, --pool, --dynamic);
 * -1 keeps the file's value. */
struct vit_overrides {
	int pool;                   /* POOL_TOKEN / POOL_AVG */
	int dynamic_img_size;
	int no_embed_class;
};
#define VIT_OVERRIDES_NONE {-1, -1, -1}

struct vit {
	struct vit_config cfg;
	char config_source[4608];    /* how the architecture was found, for a message */
	int out_dim;                /* pooled output width */
	int pos_rows;               /* rows of pos_embed as stored */
	int pos_grid;               /* its patch grid side */
	float *patch_w, *patch_b;   /* (D, 3*p*p) in (c,ky,kx) order, (D) */
	float *cls;                 /* (D) */
	float *reg;                 /* (R,D) */
	float *pos;                 /* (pos_rows, D) */
	float *ln_pre_w, *ln_pre_b; /* (D) */
	float *norm_w, *norm_b;     /* (D) final norm or fc_norm / ln_post */
	float *proj;                /* (D, proj_dim) */
	struct attn_pool ap;        /* POOL_ATTN only */
	struct block_weights *blocks;
	/* Runtime state, grown on demand. */
	struct block_acts acts;     /* the whole batch, kernels split across threads */
	struct block_acts *thread_acts; /* one per thread for image groups */
	int n_thread_acts;
	float *x;                   /* (B,T,D) residual stream */
	float *patches;             /* (B*np, 3*p*p) */
	float *pos_cur;             /* pos_embed resampled for the grid below */
	int pos_cur_grid;           /* its rows * 65536 + columns, 0 none */
	size_t x_cap, patches_cap;
};

int vit_load(struct vit *m, const struct safetensors *st, const char *path,
             const struct vit_overrides *ov);
void vit_free(struct vit *m);

/* Tokens for an H x W input (H, W multiples of patch). */
int vit_tokens(const struct vit *m, int H, int W);
/* Check the input size is acceptable (fixed unless dynamic_img_size). */
int vit_check_size(const struct vit *m, int H, int W);

/* pixels (B,3,H,W) normalised float32 -> pooled (B,out_dim).
 * features: NULL or (B,T,D), the token stream after the final norm (timm's
 * forward_features). embed: NULL or (B,T,D), tokens entering block 0.
 * 0 ok, -1 bad size or out of memory. */
int vit_forward(struct vit *m, const float *pixels, int B, int H, int W, float *pooled,
                float *features, float *embed);

/* pos (gs*gs, D) -> out (gn*gn, D): separable bicubic with antialias as
 * torch F.interpolate(mode='bicubic', antialias=True, align_corners=False). */
void pos_embed_resample(float *out, const float *pos, int gs, int gn, int D);

/* The patch tokens' position table for a gh x gw grid, (gh*gw, D): the
 * stored one, or the one vit_forward resamples for that grid (kept in m
 * until another grid is asked for). NULL when out of memory. For the GPU
 * path, which must add the same positions. */
const float *vit_patch_pos(struct vit *m, int gh, int gw);

/* Parse a config JSON (timm_config, clip_config, config.json) into cfg
 * fields it names; exposed for tests. */
int vit_config_from_json(struct vit_config *cfg, const char *json, const char *what);

#endif
