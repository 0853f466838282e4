/*
 * align_text.h: the text side of the Q-Former, the generative objectives'
 * decoder (BLIP-2 style), forward and backward of one caption.
 *
 * The caption's tokens run through the same blocks as the learned queries
 * and share their self-attention (its LayerNorm, qkv and output
 * projection); they have no cross-attention and a feed-forward of their
 * own. In block l a token row attends to every query row of that block
 * (the query rows' keys and values, computed by the Q-Former's own pass)
 * and to the token rows the mask allows; query rows never see tokens, so
 * the query path is the Q-Former's unchanged.
 *
 *   h0[t] = tok[in[t]] + pos[t]
 *   per block: h1 = h + Wo Attn(LN1(h) -> q,k,v ; [Kq ; K], [Vq ; V], mask)
 *              h  = h1 + FFN_text(LN_text(h1))       (GELU, tanh form)
 *   z = LN_f(h);  logits[t] = z[t] tok^T + head_bias   (tied embeddings)
 *   loss = sum over rows with a target of cross-entropy(logits, target)
 *
 * Mask: token row i sees token row j when j < prefix or j <= i. prefix 1
 * is causal (ITG), prefix p is the prefix LM's (PLM: the first p rows
 * attend to each other), prefix >= T is bidirectional (MLM).
 *
 * Buffers are plain floats; backward ACCUMULATES into the gradients (the
 * tied embedding gets both its uses). Nothing here allocates.
 */
#ifndef EOSIN_ALIGN_TEXT_H
#define EOSIN_ALIGN_TEXT_H

#include <stddef.h>
#include <stdint.h>

#define ALIGN_TEXT_MAX_LAYERS 8

struct align_text_dims {
	int L, W, H, F;   /* blocks, width, heads, feed-forward hidden */
	int Q;            /* query rows */
	int V;            /* token table rows */
	int T;            /* most token rows of a pass */
};

/* Tensors of one pass: parameters, or (same layout) their gradients */
struct align_text_w {
	float *tok, *pos, *lnfw, *lnfb, *headb;             /* (V,W) (T,W) (W) (W) (V) */
	struct {
		float *ln1w, *ln1b, *qkvw, *qkvb, *sow, *sob; /* shared with the queries */
		float *lnw, *lnb, *f1w, *f1b, *f2w, *f2b;     /* the text's own */
	} blk[ALIGN_TEXT_MAX_LAYERS];
};

struct align_text_act {
	struct {
		float *h, *ln1, *ln1m, *ln1r, *qkv, *P, *satt, *h1, *ln, *lnm, *lnr, *fh, *fg;
	} l[ALIGN_TEXT_MAX_LAYERS];
	float *hout, *z, *zm, *zr;    /* (T,W) (T,W) (T) (T) */
	float *zt, *logits;           /* (T,W) (T,V): the rows with a target */
	int *rows;                    /* (T) */
	float *dh, *dln, *dqkv, *datt, *dfh, *dfg, *dz, *dP; /* gradient scratch */
};

/* floats align_text_carve() takes for d */
size_t align_text_floats(const struct align_text_dims *d);
/* lay a's buffers out from base (align_text_floats(d) floats, 16-float
 * aligned pieces) */
void align_text_carve(struct align_text_act *a, const struct align_text_dims *d, float *base);

/* One pass over T token rows in[] (T <= d->T) with targets target[]
 * (-1: none). kvq[l]: block l's query rows, Q rows of stride 3W whose
 * columns [W, 2W) are keys and [2W, 3W) values (the Q-Former's qkv). When g
 * is not NULL, the gradient of scale * loss accumulates into g and into
 * dkvq[l] (Q, 2W: keys then values). Returns the summed cross-entropy (nats)
 * and the number of targets in *ntargets. */
double align_text_pass(const struct align_text_dims *d, const struct align_text_w *w,
                       const struct align_text_w *g, struct align_text_act *a,
                       const float *const *kvq, float *const *dkvq, const int32_t *in, int T,
                       int prefix, const int32_t *target, float scale, int *ntargets);

/* Forward only, logits of row T-1 (causal mask) into out (V): greedy,
 * beam and sampled decoding */
void align_text_next_logits(const struct align_text_dims *d, const struct align_text_w *w,
                            struct align_text_act *a, const float *const *kvq,
                            const int32_t *in, int T, float *out);

#endif
