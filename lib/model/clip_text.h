/*
 * clip_text.h: the CLIP text transformer (openai/CLIP names: PLIP,
 * QuiltNet, CONCH-style towers converted to those names), CPU, float32.
 *
 * token_embedding[ids] + positional_embedding, pre-LN blocks with QuickGELU
 * (or exact GELU where clip_config says "quick_gelu": false, as open_clip's
 * towers other than OpenAI's; LayerScale where ls_1/ls_2 are stored) and a
 * causal mask, ln_final, the row at the end-of-text token (the first
 * position of the largest id, as CLIP's argmax), then @ text_projection
 * stored (width, embed). Architecture from __metadata__ clip_config, else
 * config.json beside the file, else tensor shapes (heads = width/64).
 *
 * A struct clip_text owns its float32 weights and activation buffers
 * (grown only when a larger batch is asked for).
 */
#ifndef EOSIN_CLIP_TEXT_H
#define EOSIN_CLIP_TEXT_H

#include "model/safetensors.h"
#include "model/vit.h"

#include <stdint.h>

struct clip_text {
	int width, layers, heads, hidden, context, vocab, embed;
	float eps;
	enum act_kind act;          /* QuickGELU (OpenAI) or GELU (open_clip's default) */
	float logit_scale;          /* as stored (log of the scale); 0 if absent */
	char config_source[4608];
	float *tok_emb;             /* (vocab, width) */
	float *pos;                 /* (context, width) */
	float *ln_final_w, *ln_final_b;
	float *proj;                /* (width, embed) */
	struct block_weights *blocks;
	struct block_acts acts;
	float *x;                   /* (B, context, width) */
	size_t x_cap;
};

int clip_text_load(struct clip_text *m, const struct safetensors *st, const char *path);
void clip_text_free(struct clip_text *m);
/* ids (B, context) -> out (B, embed), not normalised. Ids outside the
 * vocabulary are an error. */
int clip_text_forward(struct clip_text *m, const int32_t *ids, int B, float *out);

#endif
