/*
 * align.h: the slide-text alignment model trained by eosin-align.
 *
 * Layout follows llm.c: layers (forward and backward side by side, plain
 * float buffers, row-major, backward ACCUMULATES into its gradient buffers),
 * then the model, then the losses. Nothing here allocates per step: the
 * caller sizes activations once with align_model_alloc() for the largest
 * bag and batch it will feed.
 *
 * Model (all optional parts chosen by struct align_config):
 *   image side  bag patches (n, img_dim)
 *               -> Q-Former (queries > 0): kv = patches Wkv^T + PE2D(pos/extent)
 *                  (n, qdim); Q learned queries (Q, qdim) through L pre-LN
 *                  blocks [self-attn, cross-attn to kv, GELU FFN], final LN,
 *                  mean over queries -> (qdim)
 *               -> or mean of patches -> (img_dim)   (queries == 0)
 *               -> or every patch its own item (mrplip bags with n captions)
 *               -> with a Q-Former AND the region loss (PathFLIP), two of them:
 *                  the Region Q-Former (qformer.*) above over each region's
 *                  patches alone -> region features (G_b, qdim); the Slide
 *                  Q-Former (slide_qformer.*, same sizes, kv_in (qdim, qdim))
 *                  over those, positions the regions' mean patch positions
 *                  -> the slide feature (qdim). A bag without regions is one.
 *               -> visual head (linear or Linear-GELU-Linear) -> dim, L2-normalised
 *   text side   txt_emb rows (txt_dim) -> text head -> dim, L2-normalised
 *   losses      ITC: symmetric InfoNCE, temperature exp(-logit_scale),
 *               logit_scale = log(1/0.07) at start, clamped to [0, log 100]
 *               CVTA: each patch's top-k keywords of its bag are positives
 *               (multi-positive InfoNCE over the bag's keywords)
 *               MRTVA (MR-PLIP): the multimodal encoder fuses each patch's
 *               joint feature v with its top-k keywords' joint features K:
 *               f = v + Wo Attn(Wq v, Wk K, Wv K) (one head, width dim);
 *               a predictor MLP h (Linear-GELU-Linear) and SimSiam between
 *               parent and child: -1/2 [cos(h(f_c), sg f_p) + cos(h(f_p), sg f_c)]
 *               region (PathFLIP): each region's feature (its mean patch, or
 *               its Region Q-Former output) through the visual head against
 *               every sub-caption (sent_emb) of the batch through the text
 *               head; sentences of the same slide are positives
 *               (multi-positive InfoNCE, both directions)
 *               ITM: a binary head Linear-GELU-Linear on the fused pair
 *               feature [zi * zt, zi - zt] (2 dim), binary cross-entropy over
 *               the true pairs and, per image and per text, the hardest
 *               negative of the batch by contrastive similarity
 *               generative (BLIP-2 / MR-PLIP, with a Q-Former): the caption's
 *               tokens run through the Q-Former's blocks beside the queries
 *               (align_text.h: shared self-attention, their own FFN, tied
 *               token embeddings, vocab rows of which the last is [MASK]):
 *               ITG, causal, every next token; PLM, the first part of the
 *               caption (plm_prefix of its tokens) a bidirectional prefix,
 *               the rest predicted; MLM, bidirectional, 15% of the tokens
 *               chosen (80% [MASK], 10% a random token, 10% kept) and
 *               predicted. Each the mean cross-entropy over the batch's
 *               predicted tokens, conditioned on the bag's last Q-Former
 *               (the Slide Q-Former's queries with the region loss)
 *
 * Parameters, gradients and AdamW moments are each one flat float array;
 * struct align_param names each tensor's slice (name, shape, offset).
 *
 * Threads: the model does its parallel work with OpenMP (omp_get_max_threads()
 * threads) and expects a single-threaded BLAS (openblas_set_num_threads(1)):
 * a threaded one works, but its threads and OpenMP's fight over the cores.
 * Results repeat bit for bit for the same thread count.
 */
#ifndef EOSIN_ALIGN_H
#define EOSIN_ALIGN_H

#include <stddef.h>
#include <stdint.h>

#include "train/align_layers.h"

#define ALIGN_MAX_PARAMS 512
#define ALIGN_MAX_LAYERS 8
/* Q-Former activations are kept for a whole batch when they fit in this
 * many bytes; otherwise one bag's are kept and the others recomputed */
#define ALIGN_ACT_BUDGET ((size_t)3 << 30)

struct align_config {
	int img_dim;      /* patch embedding width (input) */
	int txt_dim;      /* caption / keyword embedding width (input) */
	int dim;          /* joint space width */
	int hidden;       /* head MLP hidden width; 0: linear heads */
	int queries;      /* Q-Former learned queries; 0: no Q-Former */
	int qdim;         /* Q-Former width */
	int heads;        /* attention heads (qdim % heads == 0) */
	int layers;       /* Q-Former blocks */
	int ffn;          /* Q-Former feed-forward hidden width */
	int topk;         /* CVTA: positives per patch (k_o) */
	float w_itc, w_cvta, w_mrtva, w_region, w_itm;  /* loss weights */
	float temp_init;  /* initial temperature (0.07) */
	/* text decoder (generative objectives; needs a Q-Former): token table
	 * rows (the last is [MASK]) and most tokens of a caption; 0: none */
	int vocab, ctx;
	float w_itg, w_mlm, w_plm;
	float plm_prefix; /* PLM: share of a caption's tokens in its prefix */
};

struct align_param {
	char name[48];
	int rows, cols;   /* shape (rows, cols); cols == 0 for a vector (rows) */
	size_t offset;    /* into params/grads/m/v, in floats */
	size_t count;
	float decay;      /* 1: AdamW weight decay applies (matrices), 0: not */
};

/* One bag as the model sees it. Pointers are borrowed. */
struct align_bag {
	int n;                /* patches */
	const float *img;     /* (n, img_dim) */
	const float *pos;     /* (n, 2) level-0 px, or NULL */
	float extent;         /* level-0 px of a patch side (> 0) */
	int ntxt;             /* rows of txt: 1 (one caption) or n (one per patch) */
	const float *txt;     /* (ntxt, txt_dim) */
	int nkw;              /* keywords */
	const float *kw;      /* (nkw, txt_dim) or NULL */
	const int *parent;    /* (n) row of each patch's parent, -1 for none; or NULL */
	int nregions;         /* PathFLIP: regions, and each patch's region (n) */
	const int *region;
	int nsent;            /* sub-captions (sentences) and their embeddings */
	const float *sent;    /* (nsent, txt_dim) or NULL */
	int ntok;             /* caption tokens, [SOT] ... [EOT] (0: none) */
	const int32_t *tok;   /* (ntok), each < vocab - 1 */
};

/* indices into align_model.param[] of the text decoder's own tensors */
struct align_dec_params {
	int tok, pos, lnfw, lnfb, headb;
	struct {
		int lnw, lnb, f1w, f1b, f2w, f2b;
	} blk[ALIGN_MAX_LAYERS];
};

/* indices into align_model.param[] of one Q-Former's tensors */
struct align_qformer_params {
	int queries, kvw, kvb;                   /* (Q,W) (W,in) (W) */
	struct {
		int ln1w, ln1b, qkvw, qkvb, sow, sob;
		int ln2w, ln2b, cqw, cqb, ckvw, ckvb, cow, cob;
		int ln3w, ln3b, f1w, f1b, f2w, f2b;
	} blk[ALIGN_MAX_LAYERS];
	int lnfw, lnfb;
};

struct align_model {
	struct align_config cfg;
	struct align_param param[ALIGN_MAX_PARAMS];
	int nparam;
	size_t nfloats;
	float *params, *grads, *m, *v;   /* (nfloats) each */
	/* indices into param[] */
	int p_scale;                             /* logit_scale (1) */
	int p_vw1, p_vb1, p_vw2, p_vb2;          /* visual head */
	int p_tw1, p_tb1, p_tw2, p_tb2;          /* text head */
	/* Q-Formers: [0] over patches ("qformer.*": the bag's, or with the
	 * region loss each region's), [1] over the regions' features
	 * ("slide_qformer.*", only with the region loss) */
	struct align_qformer_params qfp[2];
	struct align_dec_params dec;             /* text decoder (dec.tok < 0: none) */
	/* MLM masking: drawn from this seed and each caption's tokens (the
	 * trainer sets it each step) */
	uint64_t gen_seed;
	struct align_gen *gen;                   /* text decoder activations */
	/* MR-PLIP multimodal encoder (cross-attention from a patch to its
	 * top-k keywords, in the joint space) and the MRTVA predictor */
	int p_mqw, p_mqb, p_mkvw, p_mkvb, p_mow, p_mob;
	int p_pw1, p_pb1, p_pw2, p_pb2;
	struct align_mm_act *mm;
	int p_iw1, p_ib1, p_iw2, p_ib2;  /* image-text matching head */
	struct align_itm_act *itm;
	/* test hook: when set, (items, dim) unit rows used in place of the
	 * stop-gradient targets sg(f / |f|) of MRTVA, so that finite differences
	 * see the function whose gradient the backward pass computes */
	const float *mrtva_fixed_targets;
	/* test hook: when set, ITM keeps the hard negatives it mined last */
	int itm_keep_negatives;
	/* sizes the activations were made for */
	int max_n, max_items, max_kw;
	int max_regions, max_sents; /* per batch; set before align_model_alloc() */
	float *act;           /* one arena for every activation and scratch */
	size_t act_floats;
	struct align_qf_act *qf;  /* Q-Former activations, qf_sets bags' worth */
	int qf_sets;
	int qf_sets_limit;        /* at most this many sets (0: as many as fit) */
	struct align_batch_act *ba;
	/* training with more than one OpenMP thread: the Q-Former gradients of
	 * thread t > 0, thread_grad_sets arrays of nfloats (zero between steps) */
	float *thread_grads;
	int thread_grad_sets;
};

/* Fill the parameter table for cfg; 0 or -1 (bad config). */
int align_model_init(struct align_model *m, const struct align_config *cfg);
/* Random initial weights from seed (bit-reproducible). */
void align_model_randomize(struct align_model *m, uint64_t seed);
/* Size activations: bags up to max_n patches, up to max_items image/text
 * pairs per batch, up to max_kw keywords per bag. */
int align_model_alloc(struct align_model *m, int max_n, int max_items, int max_kw);
void align_model_free(struct align_model *m);
float *align_param_ptr(struct align_model *m, int idx);
int align_param_find(const struct align_model *m, const char *name);

/* Losses of one batch (each weighted part and the total). */
struct align_losses {
	float total, itc, cvta, mrtva, region, itm;
	float itg, mlm, plm;  /* mean cross-entropy per predicted token (nats) */
	int items;            /* image/text pairs in the batch */
	int itg_tokens, mlm_tokens, plm_tokens; /* tokens predicted */
};

/* Does the model have a text decoder? */
int align_has_decoder(const struct align_model *m);
/* The MLM input and targets of one caption (tok, n) under seed: in (n) the
 * tokens with the chosen ones replaced, target (n) the original token where
 * chosen, else -1. Returns the number chosen (0 when n < 3). */
int align_mlm_mask(const struct align_model *m, uint64_t seed, const int32_t *tok, int n,
                   int32_t *in, int32_t *target);
/* Caption generation, the search itself the caller's: align_decode_begin
 * runs one bag's Q-Former(s) and keeps its queries; align_next_logits then
 * gives the logits (vocab) of the token after seq (n tokens, the first
 * [SOT], n <= ctx), causal, conditioned on that bag. 0 or -1. */
int align_decode_begin(struct align_model *m, const struct align_bag *bag);
/* One bag's generative cross-entropy sums (nats) and predicted tokens:
 * [0] ITG, [1] MLM (masked under m->gen_seed), [2] PLM; zero for an
 * objective without weight. 0 or -1. */
int align_bag_gen_loss(struct align_model *m, const struct align_bag *bag, double sum[3],
                       int count[3]);
int align_next_logits(struct align_model *m, const int32_t *seq, int n, float *logits);

/* Forward and, when backward is set, backward of one batch of bags: zeroes
 * grads first, then accumulates. 0 or -1. */
int align_step_grads(struct align_model *m, const struct align_bag *bags, int nbags,
                     int backward, struct align_losses *out);

/* Joint-space embeddings for inference. Image side of one bag: writes
 * align_bag_items() rows of dim to out. Text side: rows of txt_dim -> dim. */
int align_bag_items(const struct align_model *m, const struct align_bag *bag);
/* Region feature rows the bag adds to a batch (0 when none). */
int align_bag_regions(const struct align_model *m, const struct align_bag *bag);
int align_embed_bag(struct align_model *m, const struct align_bag *bag, float *out);
int align_embed_text(struct align_model *m, const float *txt, int rows, float *out);

/* The MRTVA targets f / |f| (items, dim) of the last batch. */
const float *align_mrtva_targets(const struct align_model *m);

#endif
