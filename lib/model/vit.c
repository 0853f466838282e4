/*
 * vit.c: timm ViT and CLIP vision tower, loading and forward pass, and the
 * pre-LN transformer block both (and the CLIP text tower) are made of.
 * See vit.h; conventions from ../shared/data/reference/README.md.
 */
#include "model/vit.h"

#include "core/error.h"
#include "model/ops.h"

#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- transformer block ---- */

static float *load_vec(const struct safetensors *st, const char *prefix, const char *name,
                       int64_t n, int optional, int *absent)
{
	char full[512];
	snprintf(full, sizeof full, "%s%s", prefix, name);
	if (optional && !safetensors_find(st, full)) {
		if (absent)
			*absent = 1;
		return NULL;
	}
	int64_t shape[1] = {n};
	return safetensors_load_f32(st, full, 1, shape);
}

static float *load_mat(const struct safetensors *st, const char *prefix, const char *name,
                       int64_t r, int64_t c)
{
	char full[512];
	snprintf(full, sizeof full, "%s%s", prefix, name);
	int64_t shape[2] = {r, c};
	return safetensors_load_f32(st, full, 2, shape);
}

/* *w (rows, cols) -> (cols, rows), into a new buffer. */
static int transpose_weights(float **w, int rows, int cols)
{
	float *t = malloc((size_t)rows * cols * sizeof(float));
	if (!t)
		return eosin_error("out of memory (%d x %d weights)", rows, cols);
	enum { TILE = 32 };
	for (int r0 = 0; r0 < rows; r0 += TILE)
		for (int c0 = 0; c0 < cols; c0 += TILE)
			for (int r = r0; r < r0 + TILE && r < rows; r++)
				for (int c = c0; c < c0 + TILE && c < cols; c++)
					t[(size_t)c * rows + r] = (*w)[(size_t)r * cols + c];
	free(*w);
	*w = t;
	return 0;
}

int block_load(struct block_weights *bw, const struct safetensors *st, const char *prefix,
               enum block_naming naming, int C, int H)
{
	memset(bw, 0, sizeof *bw);
	int absent = 0;
	if (naming == NAMING_TIMM) {
		bw->ln1_w = load_vec(st, prefix, "norm1.weight", C, 0, NULL);
		bw->ln1_b = load_vec(st, prefix, "norm1.bias", C, 0, NULL);
		bw->qkv_w = load_mat(st, prefix, "attn.qkv.weight", 3 * C, C);
		bw->qkv_b = load_vec(st, prefix, "attn.qkv.bias", 3 * C, 1, &absent);
		bw->proj_w = load_mat(st, prefix, "attn.proj.weight", C, C);
		bw->proj_b = load_vec(st, prefix, "attn.proj.bias", C, 0, NULL);
		bw->ls1 = load_vec(st, prefix, "ls1.gamma", C, 1, NULL);
		bw->ln2_w = load_vec(st, prefix, "norm2.weight", C, 0, NULL);
		bw->ln2_b = load_vec(st, prefix, "norm2.bias", C, 0, NULL);
		bw->fc1_w = load_mat(st, prefix, "mlp.fc1.weight", H, C);
		bw->fc1_b = load_vec(st, prefix, "mlp.fc1.bias", H, 0, NULL);
		/* A packed gated MLP is told by fc2's input: half fc1's output. */
		char fc2[512];
		snprintf(fc2, sizeof fc2, "%smlp.fc2.weight", prefix);
		const struct st_tensor *t2 = safetensors_find(st, fc2);
		bw->glu = t2 && t2->ndim == 2 && H % 2 == 0 && t2->shape[1] * 2 == H;
		bw->fc2_w = load_mat(st, prefix, "mlp.fc2.weight", C, bw->glu ? H / 2 : H);
		bw->fc2_b = load_vec(st, prefix, "mlp.fc2.bias", C, 0, NULL);
		bw->ls2 = load_vec(st, prefix, "ls2.gamma", C, 1, NULL);
		if (absent) /* qkv_bias=False: a zero bias */
			bw->qkv_b = calloc((size_t)3 * C, sizeof(float));
	} else {
		bw->ln1_w = load_vec(st, prefix, "ln_1.weight", C, 0, NULL);
		bw->ln1_b = load_vec(st, prefix, "ln_1.bias", C, 0, NULL);
		bw->qkv_w = load_mat(st, prefix, "attn.in_proj_weight", 3 * C, C);
		bw->qkv_b = load_vec(st, prefix, "attn.in_proj_bias", 3 * C, 0, NULL);
		bw->proj_w = load_mat(st, prefix, "attn.out_proj.weight", C, C);
		bw->proj_b = load_vec(st, prefix, "attn.out_proj.bias", C, 0, NULL);
		bw->ls1 = load_vec(st, prefix, "ls_1.gamma", C, 1, NULL); /* open_clip */
		bw->ln2_w = load_vec(st, prefix, "ln_2.weight", C, 0, NULL);
		bw->ln2_b = load_vec(st, prefix, "ln_2.bias", C, 0, NULL);
		bw->fc1_w = load_mat(st, prefix, "mlp.c_fc.weight", H, C);
		bw->fc1_b = load_vec(st, prefix, "mlp.c_fc.bias", H, 0, NULL);
		bw->fc2_w = load_mat(st, prefix, "mlp.c_proj.weight", C, H);
		bw->fc2_b = load_vec(st, prefix, "mlp.c_proj.bias", C, 0, NULL);
		bw->ls2 = load_vec(st, prefix, "ls_2.gamma", C, 1, NULL);
	}
	if (!bw->ln1_w || !bw->ln1_b || !bw->qkv_w || !bw->qkv_b || !bw->proj_w || !bw->proj_b ||
	    !bw->ln2_w || !bw->ln2_b || !bw->fc1_w || !bw->fc1_b || !bw->fc2_w || !bw->fc2_b ||
	    transpose_weights(&bw->qkv_w, 3 * C, C) < 0 || transpose_weights(&bw->proj_w, C, C) < 0 ||
	    transpose_weights(&bw->fc1_w, H, C) < 0 ||
	    transpose_weights(&bw->fc2_w, C, bw->glu ? H / 2 : H) < 0) {
		block_free(bw);
		return -1;
	}
	return 0;
}

void block_free(struct block_weights *bw)
{
	float **p[] = {&bw->ln1_w, &bw->ln1_b, &bw->qkv_w, &bw->qkv_b, &bw->proj_w,
	               &bw->proj_b, &bw->ls1,  &bw->ls2,   &bw->ln2_w, &bw->ln2_b,
	               &bw->fc1_w, &bw->fc1_b, &bw->fc2_w, &bw->fc2_b};
	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
		free(*p[i]);
		*p[i] = NULL;
	}
}

int block_acts_reserve(struct block_acts *a, int B, int T, int C, int H)
{
	size_t rows = (size_t)B * T, slen = attention_scratch_floats(T);
	if (rows <= a->rows && C == a->C && H == a->H && slen <= a->scores_len)
		return 0;
	block_acts_free(a);
	a->ln = malloc(rows * C * sizeof(float));
	a->qkv = malloc(rows * 3 * C * sizeof(float));
	a->att = malloc(rows * C * sizeof(float));
	a->tmp = malloc(rows * C * sizeof(float));
	a->hidden = malloc(rows * H * sizeof(float));
	a->scores = malloc(slen * sizeof(float));
	if (!a->ln || !a->qkv || !a->att || !a->tmp || !a->hidden || !a->scores) {
		block_acts_free(a);
		return eosin_error("out of memory for activations of %zu tokens", rows);
	}
	a->rows = rows;
	a->C = C;
	a->H = H;
	a->scores_len = slen;
	return 0;
}

void block_acts_free(struct block_acts *a)
{
	free(a->ln);
	free(a->qkv);
	free(a->att);
	free(a->tmp);
	free(a->hidden);
	free(a->scores);
	memset(a, 0, sizeof *a);
}

void block_forward(float *x, const struct block_weights *bw, struct block_acts *a, int B, int T,
                   int C, int NH, int H, float eps, enum act_kind act, int causal)
{
	int N = B * T;
	layernorm_forward(a->ln, x, bw->ln1_w, bw->ln1_b, N, C, eps);
	matmul_forward_in_out_bias(a->qkv, a->ln, bw->qkv_w, bw->qkv_b, N, C, 3 * C);
	attention_forward(a->att, a->scores, a->qkv, B, T, C, NH, causal);
	/* Output biases go in with the residual add (one pass, not a bias
	 * copy before the product), and LayerNorm 2 follows in the same pass. */
	matmul_forward_in_out(a->tmp, a->att, bw->proj_w, N, C, C);
	residual_layernorm_forward(x, a->tmp, bw->proj_b, bw->ls1, a->ln, bw->ln2_w, bw->ln2_b, N, C,
	                           eps);
	matmul_forward_in_out(a->hidden, a->ln, bw->fc1_w, N, C, H);
	if (bw->glu) {
		bias_glu_forward(a->hidden, bw->fc1_b, N, H, (int)act);
		H /= 2;
	} else {
		bias_gelu_forward(a->hidden, bw->fc1_b, N, H, act == ACT_QUICKGELU);
	}
	matmul_forward_in_out(a->tmp, a->hidden, bw->fc2_w, N, H, C);
	residual_layernorm_forward(x, a->tmp, bw->fc2_b, bw->ls2, NULL, NULL, NULL, N, C, eps);
}

/* ---- configuration ---- */

static const float IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f};
static const float IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};
static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

/* timm architecture names: width, depth, heads. */
static const struct {
	const char *prefix;
	int dim, depth, heads;
} timm_archs[] = {
    {"vit_tiny_", 192, 12, 3},       {"vit_small_", 384, 12, 6},
    {"vit_base_", 768, 12, 12},      {"vit_large_", 1024, 24, 16},
    {"vit_huge_", 1280, 32, 16},     {"vit_giant_", 1408, 40, 16},
    {"vit_gigantic_", 1664, 48, 16},
};

static int json_int(json_t *o, const char *k, int *out)
{
	json_t *v = json_object_get(o, k);
	if (json_is_integer(v)) {
		*out = (int)json_integer_value(v);
		return 1;
	}
	if (json_is_array(v) && json_is_integer(json_array_get(v, 0))) {
		*out = (int)json_integer_value(json_array_get(v, json_array_size(v) - 1));
		return 1;
	}
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return 1;
	}
	return 0;
}

static void json_float3(json_t *o, const char *k, float *out)
{
	json_t *v = json_object_get(o, k);
	if (json_is_array(v) && json_array_size(v) == 3)
		for (int i = 0; i < 3; i++)
			if (json_is_number(json_array_get(v, i)))
				out[i] = (float)json_number_value(json_array_get(v, i));
}

static void config_apply(struct vit_config *c, json_t *o)
{
	int clip = !strcmp(c->family, "clip");
	const char *s;
	json_t *v;
	if (clip) {
		json_int(o, "vision_width", &c->dim);
		json_int(o, "vision_layers", &c->depth);
		json_int(o, "vision_heads", &c->heads);
		json_int(o, "vision_patch_size", &c->patch);
		json_int(o, "image_resolution", &c->img_size);
		json_int(o, "embed_dim", &c->proj_dim);
		/* open_clip's key: GELU unless quick_gelu (OpenAI's towers) */
		if (json_is_boolean(v = json_object_get(o, "quick_gelu")))
			c->act = json_is_true(v) ? ACT_QUICKGELU : ACT_GELU;
	} else {
		if ((s = json_string_value(json_object_get(o, "architecture"))))
			for (size_t i = 0; i < sizeof timm_archs / sizeof timm_archs[0]; i++)
				if (!strncmp(s, timm_archs[i].prefix, strlen(timm_archs[i].prefix))) {
					c->dim = timm_archs[i].dim;
					c->depth = timm_archs[i].depth;
					c->heads = timm_archs[i].heads;
				}
		json_int(o, "embed_dim", &c->dim);
		json_int(o, "depth", &c->depth);
		json_int(o, "num_heads", &c->heads);
		json_int(o, "patch_size", &c->patch);
		json_int(o, "img_size", &c->img_size);
		json_int(o, "reg_tokens", &c->reg_tokens);
		json_int(o, "class_token", &c->class_token);
		json_int(o, "no_embed_class", &c->no_embed_class);
		json_int(o, "dynamic_img_size", &c->dynamic_img_size);
		json_int(o, "final_norm", &c->final_norm);
		v = json_object_get(o, "fc_norm");
		if (json_is_boolean(v))
			c->fc_norm = json_is_true(v);
		else if (json_is_null(v))
			c->fc_norm = -1;
		if ((s = json_string_value(json_object_get(o, "global_pool"))))
			c->pool = !strcmp(s, "avg")         ? POOL_AVG
			          : !strcmp(s, "token+avg") ? POOL_TOKEN_AVG
			          : !strcmp(s, "attn")      ? POOL_ATTN
			                                    : POOL_TOKEN;
		json_int(o, "attn_pool_heads", &c->attn_pool_heads);
		if ((s = json_string_value(json_object_get(o, "act_layer"))))
			c->act = strstr(s, "quick") || strstr(s, "Quick")  ? ACT_QUICKGELU
			         : strcasestr(s, "silu") || strcasestr(s, "swi") ? ACT_SILU
			                                                          : ACT_GELU;
		if ((s = json_string_value(json_object_get(o, "norm_layer"))) && strstr(s, "eps="))
			c->eps = strtof(strstr(s, "eps=") + 4, NULL);
	}
	v = json_object_get(o, "layer_norm_eps");
	if (!v)
		v = json_object_get(o, "eps");
	if (json_is_number(v))
		c->eps = (float)json_number_value(v);
	json_float3(o, "mean", c->mean);
	json_float3(o, "std", c->std);
	if ((s = json_string_value(json_object_get(o, "interpolation"))))
		snprintf(c->interpolation, sizeof c->interpolation, "%s", s);
	if (json_is_number(v = json_object_get(o, "crop_pct")))
		c->crop_pct = (float)json_number_value(v);
	json_t *sub;
	if (clip && json_is_object(sub = json_object_get(o, "model_cfg")))
		config_apply(c, sub); /* open_clip_config.json */
	if (json_is_object(sub = json_object_get(o, "model_args")))
		config_apply(c, sub);
	if (json_is_object(sub = json_object_get(o, "pretrained_cfg")))
		config_apply(c, sub);
	if (json_is_object(sub = json_object_get(o, "input_size")))
		config_apply(c, sub);
}

int vit_config_from_json(struct vit_config *cfg, const char *json, const char *what)
{
	json_error_t jerr;
	json_t *o = json_loads(json, 0, &jerr);
	if (!json_is_object(o)) {
		json_decref(o);
		return eosin_error("%s is not a JSON object%s%s", what, o ? "" : ": ",
		                   o ? "" : jerr.text);
	}
	config_apply(cfg, o);
	json_decref(o);
	return 0;
}

static char *read_small_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = malloc(1 << 20);
	size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
	fclose(f);
	if (buf)
		buf[n] = 0;
	return buf;
}

/* ---- pos_embed resampling (torch bicubic, antialias=True) ---- */

static double cubic_a05(double x)
{
	const double a = -0.5;
	x = fabs(x);
	if (x < 1.0)
		return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
	if (x < 2.0)
		return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
	return 0.0;
}

/* Weights for resizing `in` samples to `out`: for each output, first
 * source index and count, weights in w (out * maxw). Returns maxw. */
static int aa_weights(int in, int out, int *first, int *count, double **wout)
{
	double scale = (double)in / out;
	double support = scale >= 1.0 ? 2.0 * scale : 2.0;
	double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
	int maxw = (int)ceil(support) * 2 + 1;
	double *w = calloc((size_t)out * maxw, sizeof *w);
	for (int i = 0; i < out; i++) {
		double center = scale * (i + 0.5);
		int xmin = (int)(center - support + 0.5);
		if (xmin < 0)
			xmin = 0;
		int xmax = (int)(center + support + 0.5);
		if (xmax > in)
			xmax = in;
		int n = xmax - xmin;
		if (n > maxw)
			n = maxw;
		double total = 0;
		for (int j = 0; j < n; j++) {
			w[i * maxw + j] = cubic_a05((j + xmin - center + 0.5) * invscale);
			total += w[i * maxw + j];
		}
		for (int j = 0; j < n && total != 0; j++)
			w[i * maxw + j] /= total;
		first[i] = xmin;
		count[i] = n;
	}
	*wout = w;
	return maxw;
}

static void resample_grid(float *out, const float *pos, int gs_h, int gs_w, int gh, int gw, int D)
{
	int *fy = malloc(sizeof(int) * gh), *cy = malloc(sizeof(int) * gh);
	int *fx = malloc(sizeof(int) * gw), *cx = malloc(sizeof(int) * gw);
	double *wy, *wx;
	int my = aa_weights(gs_h, gh, fy, cy, &wy);
	int mx = aa_weights(gs_w, gw, fx, cx, &wx);
	/* Horizontal pass: (gs_h, gs_w, D) -> (gs_h, gw, D); then vertical. */
	float *tmp = calloc((size_t)gs_h * gw * D, sizeof *tmp);
	for (int y = 0; y < gs_h; y++)
		for (int x = 0; x < gw; x++)
			for (int d = 0; d < D; d++) {
				float acc = 0;
				for (int j = 0; j < cx[x]; j++)
					acc += (float)wx[x * mx + j] * pos[((size_t)y * gs_w + fx[x] + j) * D + d];
				tmp[((size_t)y * gw + x) * D + d] = acc;
			}
	for (int y = 0; y < gh; y++)
		for (int x = 0; x < gw; x++)
			for (int d = 0; d < D; d++) {
				float acc = 0;
				for (int j = 0; j < cy[y]; j++)
					acc += (float)wy[y * my + j] * tmp[((size_t)(fy[y] + j) * gw + x) * D + d];
				out[((size_t)y * gw + x) * D + d] = acc;
			}
	free(tmp);
	free(wy);
	free(wx);
	free(fy);
	free(cy);
	free(fx);
	free(cx);
}

void pos_embed_resample(float *out, const float *pos, int gs, int gn, int D)
{
	resample_grid(out, pos, gs, gs, gn, gn, D);
}

/* ---- loading ---- */

static int count_blocks(const struct safetensors *st, const char *fmt)
{
	char name[256];
	int n = 0;
	for (;;) {
		snprintf(name, sizeof name, fmt, n);
		if (!safetensors_find(st, name))
			return n;
		n++;
	}
}

static int isqrt_exact(int n)
{
	int r = (int)lround(sqrt((double)n));
	return r * r == n ? r : -1;
}

/* The tensor names of one weight layout, the only place that knows them. */
struct vit_naming {
	const char *family;      /* "clip" or "timm", cfg.family */
	const char *patch_w;     /* (D,C,p,p) */
	const char *block_probe; /* printf format over the block index */
	const char *fc1_0;       /* block 0's first MLP weight, (hidden, D) */
	const char *pos;         /* (1,rows,D) or (rows,D) */
	const char *block;       /* printf format: a block's name prefix */
	const char *config_key;  /* the __metadata__ key before "config" */
	enum block_naming blocks;
};

static const struct vit_naming VIT_NAMING_CLIP = {
    "clip", "visual.conv1.weight", "visual.transformer.resblocks.%d.ln_1.weight",
    "visual.transformer.resblocks.0.mlp.c_fc.weight", "visual.positional_embedding",
    "visual.transformer.resblocks.%d.", "clip_config", NAMING_CLIP};
static const struct vit_naming VIT_NAMING_TIMM = {
    "timm", "patch_embed.proj.weight", "blocks.%d.norm1.weight", "blocks.0.mlp.fc1.weight",
    "pos_embed", "blocks.%d.", "timm_config", NAMING_TIMM};

/* What vit_load learns in one step and a later one needs. */
struct vit_load_state {
	const struct safetensors *st;
	const char *path;
	const struct vit_overrides *ov;
	const struct vit_naming *names;
	int clip;
	const struct st_tensor *pw, *pos;
	int fact_dim, fact_depth, fact_patch, fact_reg; /* as the tensors say */
	int prefix, pos_patch_rows;
};

/* Which layout the file uses, by its patch embedding. */
static int vit_resolve_naming(struct vit_load_state *s)
{
	if ((s->pw = safetensors_find(s->st, VIT_NAMING_CLIP.patch_w)))
		s->clip = 1;
	else if ((s->pw = safetensors_find(s->st, VIT_NAMING_TIMM.patch_w)))
		s->clip = 0;
	else
		return eosin_error("'%s': no vision tower (neither patch_embed.proj.weight nor "
		                   "visual.conv1.weight)", s->path);
	s->names = s->clip ? &VIT_NAMING_CLIP : &VIT_NAMING_TIMM;
	return 0;
}

/* Width, depth, patch and the rest from the tensors' names and shapes,
 * then the family's defaults for what the tensors cannot say. */
static int vit_read_tensor_facts(struct vit *m, struct vit_load_state *s)
{
	struct vit_config *c = &m->cfg;
	const struct st_tensor *pw = s->pw;
	const struct safetensors *st = s->st;
	if (pw->ndim != 4 || pw->shape[2] != pw->shape[3])
		return eosin_error("'%s': tensor '%s' is not (D,C,p,p)", s->path, pw->name);
	snprintf(c->family, sizeof c->family, "%s", s->names->family);
	c->dim = (int)pw->shape[0];
	c->in_chans = (int)pw->shape[1];
	c->patch = (int)pw->shape[2];
	c->depth = count_blocks(st, s->names->block_probe);
	const struct st_tensor *fc1 = safetensors_find(st, s->names->fc1_0);
	if (!c->depth || !fc1 || fc1->ndim != 2)
		return eosin_error("'%s': no transformer blocks", s->path);
	c->hidden = (int)fc1->shape[0];
	s->pos = safetensors_find(st, s->names->pos);
	if (!s->pos)
		return eosin_error("'%s': no position embedding", s->path);
	m->pos_rows = (int)(s->pos->ndim == 3 ? s->pos->shape[1] : s->pos->shape[0]);
	c->heads = 0;
	c->fc_norm = -1;
	c->final_norm = 1;
	c->pool = POOL_TOKEN;
	c->crop_pct = 1.0f;
	snprintf(c->interpolation, sizeof c->interpolation, "bicubic");
	if (s->clip) {
		const struct st_tensor *proj = safetensors_find(st, "visual.proj");
		c->class_token = 1;
		c->reg_tokens = 0;
		c->patch_bias = 0;
		c->ln_pre = 1;
		c->final_norm = 0;
		c->fc_norm = 1;
		c->act = ACT_QUICKGELU;
		c->eps = 1e-5f;
		c->proj_dim = proj && proj->ndim == 2 ? (int)proj->shape[1] : 0;
		c->heads = c->dim / 64;
		memcpy(c->mean, CLIP_MEAN, sizeof c->mean);
		memcpy(c->std, CLIP_STD, sizeof c->std);
	} else {
		const struct st_tensor *reg = safetensors_find(st, "reg_token");
		c->class_token = safetensors_find(st, "cls_token") != NULL;
		c->reg_tokens = reg && reg->ndim == 3 ? (int)reg->shape[1] : 0;
		c->patch_bias = safetensors_find(st, "patch_embed.proj.bias") != NULL;
		/* A packed gated MLP (fc2 takes half of fc1's output) is timm's
		 * SwiGLUPacked, SiLU, unless the config says another act. */
		const struct st_tensor *fc2 = safetensors_find(st, "blocks.0.mlp.fc2.weight");
		c->act = fc2 && fc2->ndim == 2 && fc2->shape[1] * 2 == fc1->shape[0] ? ACT_SILU
		                                                                      : ACT_GELU;
		c->eps = 1e-6f;
		if (safetensors_find(st, "attn_pool.query")) { /* CONCH's contrastive head */
			c->pool = POOL_ATTN;
			c->attn_pool_heads = 8;
		}
		memcpy(c->mean, IMAGENET_MEAN, sizeof c->mean);
		memcpy(c->std, IMAGENET_STD, sizeof c->std);
		int prefix = c->class_token + c->reg_tokens;
		/* pos_embed with or without the prefix rows? */
		if (isqrt_exact(m->pos_rows - prefix) > 0)
			c->no_embed_class = 0;
		else if (isqrt_exact(m->pos_rows) > 0)
			c->no_embed_class = 1;
	}
	s->fact_dim = c->dim;
	s->fact_depth = c->depth;
	s->fact_patch = c->patch;
	s->fact_reg = c->reg_tokens;
	return 0;
}

/* The rest of the architecture: from __metadata__, else config.json beside
 * the file, else inferred (heads = width/64); config_source says which. */
static int vit_read_config(struct vit *m, const struct vit_load_state *s)
{
	struct vit_config *c = &m->cfg;
	const char *path = s->path;
	const char *meta = safetensors_meta(s->st, s->names->config_key);
	if (!meta)
		meta = safetensors_meta(s->st, "config");
	if (meta) {
		if (vit_config_from_json(c, meta, "__metadata__ config") < 0)
			return eosin_error_prefix("'%s'", path);
		snprintf(m->config_source, sizeof m->config_source, "architecture from '%s' __metadata__ %s",
		         path, safetensors_meta(s->st, s->names->config_key) ? s->names->config_key
		                                                               : "config");
		return 0;
	}
	char *dup = strdup(path), cfgpath[4096], *cj;
	snprintf(cfgpath, sizeof cfgpath, "%s/config.json", dirname(dup));
	free(dup);
	if ((cj = read_small_file(cfgpath))) {
		int r = vit_config_from_json(c, cj, cfgpath);
		free(cj);
		if (r < 0)
			return -1;
		snprintf(m->config_source, sizeof m->config_source, "architecture from '%s'", cfgpath);
		return 0;
	}
	if (!c->heads) {
		if (c->dim % 64)
			return eosin_error("'%s': no config in __metadata__ or config.json and width "
			                   "%d is not a multiple of 64: cannot tell the number of "
			                   "heads", path, c->dim);
		c->heads = c->dim / 64;
	}
	snprintf(m->config_source, sizeof m->config_source,
	         "architecture inferred from tensor names and shapes of '%s' (no "
	         "__metadata__ config, no config.json): heads = width/64 = %d, eps %g",
	         path, c->heads, (double)c->eps);
	return 0;
}

/* The caller's overrides, then what follows from the pooling. */
static void vit_apply_overrides(struct vit_config *c, const struct vit_load_state *s)
{
	const struct vit_overrides *ov = s->ov;
	if (ov) {
		if (ov->pool >= 0)
			c->pool = ov->pool;
		if (ov->dynamic_img_size >= 0)
			c->dynamic_img_size = ov->dynamic_img_size;
		if (ov->no_embed_class >= 0)
			c->no_embed_class = ov->no_embed_class;
	}
	if (c->fc_norm < 0)
		c->fc_norm = c->pool == POOL_AVG;
	if (c->fc_norm && !s->clip)
		c->final_norm = 0;
}

/* The config must agree with the tensors; the position grid follows. */
static int vit_check_config(struct vit *m, struct vit_load_state *s)
{
	struct vit_config *c = &m->cfg;
	const char *path = s->path;
	if (c->dim != s->fact_dim || c->depth != s->fact_depth || c->patch != s->fact_patch ||
	    c->reg_tokens != s->fact_reg)
		return eosin_error("'%s': config says width %d, depth %d, patch %d, %d registers; tensors "
		                   "say %d, %d, %d, %d", path, c->dim, c->depth, c->patch,
		                   c->reg_tokens, s->fact_dim, s->fact_depth, s->fact_patch, s->fact_reg);
	if (c->heads <= 0 || c->dim % c->heads)
		return eosin_error("'%s': %d heads do not divide width %d", path, c->heads, c->dim);
	if (c->in_chans != 3)
		return eosin_error("'%s': %d input channels (want 3)", path, c->in_chans);
	int prefix = c->class_token + c->reg_tokens;
	int pos_patch_rows = m->pos_rows - (c->no_embed_class ? 0 : prefix);
	if (s->ov && s->ov->no_embed_class == 1 && m->pos_rows - prefix > 0 &&
	    isqrt_exact(m->pos_rows - prefix) > 0 && isqrt_exact(m->pos_rows) < 0)
		pos_patch_rows = m->pos_rows - prefix; /* use the patch rows of a full table */
	m->pos_grid = isqrt_exact(pos_patch_rows);
	if (m->pos_grid <= 0)
		return eosin_error("'%s': %d pos_embed rows do not make a square grid", path,
		                   m->pos_rows);
	if (!c->img_size)
		c->img_size = m->pos_grid * c->patch;
	m->out_dim = c->proj_dim ? c->proj_dim : c->dim;
	if (c->pool == POOL_TOKEN_AVG) {
		if (c->proj_dim || !c->class_token)
			return eosin_error("'%s': token+avg pooling needs a class token and no "
			                   "projection",
			                   path);
		m->out_dim = 2 * c->dim;
	}
	if (c->pool == POOL_ATTN && (s->clip || !safetensors_find(s->st, "attn_pool.query")))
		return eosin_error("'%s': attn pooling but no attentional pooler (attn_pool.*)",
		                   path);
	s->prefix = prefix;
	s->pos_patch_rows = pos_patch_rows;
	return 0;
}

/* pos_embed (pos_rows, D) as float32, less the prefix rows where the
 * model adds none to them. */
static int vit_bind_pos_embed(struct vit *m, const struct vit_load_state *s)
{
	const struct vit_config *c = &m->cfg;
	int D = c->dim;
	int64_t n = (int64_t)m->pos_rows * D;
	if (s->pos->numel != n)
		return -1;
	float *full = malloc((size_t)n * sizeof *full);
	st_tensor_to_f32(s->pos, full);
	if (!c->no_embed_class || s->pos_patch_rows == m->pos_rows) {
		m->pos = full;
	} else { /* drop the prefix rows */
		m->pos = malloc((size_t)s->pos_patch_rows * D * sizeof(float));
		memcpy(m->pos, full + (size_t)s->prefix * D,
		       (size_t)s->pos_patch_rows * D * sizeof(float));
		free(full);
		m->pos_rows = s->pos_patch_rows;
	}
	return 0;
}

/* CONCH's attentional pooler under attn_pool.: nn.MultiheadAttention with
 * kdim = vdim = D (q_proj_weight, k_proj_weight, v_proj_weight, or one
 * in_proj_weight when E = D), one query, then ln and proj. */
static int vit_bind_attn_pool(struct vit *m, const struct vit_load_state *s)
{
	const struct safetensors *st = s->st;
	struct attn_pool *a = &m->ap;
	int D = m->cfg.dim;
	const struct st_tensor *q = safetensors_find(st, "attn_pool.query");
	const struct st_tensor *pr = safetensors_find(st, "attn_pool.proj");
	if (!q || q->ndim != 2 || q->shape[0] != 1)
		return eosin_error("'%s': attn_pool.query must be [1, E] (one query)", s->path);
	if (!pr || pr->ndim != 2 || pr->shape[0] != q->shape[1])
		return eosin_error("'%s': attn_pool.proj must be [E, *] with E = %lld", s->path,
		                   (long long)q->shape[1]);
	int E = a->E = (int)q->shape[1];
	a->proj_dim = (int)pr->shape[1];
	a->heads = m->cfg.attn_pool_heads > 0 ? m->cfg.attn_pool_heads : 8;
	a->eps = 1e-5f;
	if (E % a->heads)
		return eosin_error("'%s': %d pooler heads do not divide its width %d", s->path,
		                   a->heads, E);
	const char *P = "attn_pool.";
	if (!(a->query = load_mat(st, P, "query", 1, E)) ||
	    !(a->lnq_w = load_vec(st, P, "ln_q.weight", E, 0, NULL)) ||
	    !(a->lnq_b = load_vec(st, P, "ln_q.bias", E, 0, NULL)) ||
	    !(a->lnk_w = load_vec(st, P, "ln_k.weight", D, 0, NULL)) ||
	    !(a->lnk_b = load_vec(st, P, "ln_k.bias", D, 0, NULL)) ||
	    !(a->bq = load_vec(st, P, "attn.in_proj_bias", 3 * E, 0, NULL)) ||
	    !(a->wo = load_mat(st, P, "attn.out_proj.weight", E, E)) ||
	    !(a->bo = load_vec(st, P, "attn.out_proj.bias", E, 0, NULL)) ||
	    !(a->ln_w = load_vec(st, P, "ln.weight", E, 0, NULL)) ||
	    !(a->ln_b = load_vec(st, P, "ln.bias", E, 0, NULL)) ||
	    !(a->proj = load_mat(st, P, "proj", E, a->proj_dim)))
		return -1;
	a->bk = a->bq + E;
	a->bv = a->bq + 2 * E;
	if (safetensors_find(st, "attn_pool.attn.in_proj_weight") && D == E) {
		float *w = load_mat(st, P, "attn.in_proj_weight", 3 * E, E);
		if (!w)
			return -1;
		a->wq = malloc((size_t)E * E * sizeof(float));
		a->wk = malloc((size_t)E * E * sizeof(float));
		a->wv = malloc((size_t)E * E * sizeof(float));
		if (!a->wq || !a->wk || !a->wv) {
			free(w);
			return eosin_error("out of memory");
		}
		memcpy(a->wq, w, (size_t)E * E * sizeof(float));
		memcpy(a->wk, w + (size_t)E * E, (size_t)E * E * sizeof(float));
		memcpy(a->wv, w + (size_t)2 * E * E, (size_t)E * E * sizeof(float));
		free(w);
	} else if (!(a->wq = load_mat(st, P, "attn.q_proj_weight", E, E)) ||
	           !(a->wk = load_mat(st, P, "attn.k_proj_weight", E, D)) ||
	           !(a->wv = load_mat(st, P, "attn.v_proj_weight", E, D))) {
		return -1;
	}
	if (transpose_weights(&a->wq, E, E) < 0 || transpose_weights(&a->wk, E, D) < 0 ||
	    transpose_weights(&a->wv, E, D) < 0 || transpose_weights(&a->wo, E, E) < 0)
		return -1;
	m->out_dim = a->proj_dim;
	return 0;
}

static void attn_pool_free(struct attn_pool *a)
{
	float *p[] = {a->query, a->lnq_w, a->lnq_b, a->lnk_w, a->lnk_b, a->wq,   a->wk, a->wv,
	              a->bq,    a->wo,    a->bo,    a->ln_w,  a->ln_b,  a->proj, a->buf};
	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
		free(p[i]);
	memset(a, 0, sizeof *a);
}

/* The tensors outside the blocks: patch embedding, position table,
 * prefix tokens, norms and projection. */
static int vit_bind_stem_and_head(struct vit *m, const struct vit_load_state *s)
{
	const struct vit_config *c = &m->cfg;
	const struct safetensors *st = s->st;
	int D = c->dim;
	int64_t pshape[4] = {D, 3, c->patch, c->patch};
	m->patch_w = safetensors_load_f32(st, s->pw->name, 4, pshape);
	if (!m->patch_w)
		return -1;
	if (c->patch_bias && !(m->patch_b = load_vec(st, "", "patch_embed.proj.bias", D, 0, NULL)))
		return -1;
	if (vit_bind_pos_embed(m, s) < 0)
		return -1;
	if (s->clip) {
		if (!(m->cls = load_vec(st, "", "visual.class_embedding", D, 0, NULL)) ||
		    !(m->ln_pre_w = load_vec(st, "", "visual.ln_pre.weight", D, 0, NULL)) ||
		    !(m->ln_pre_b = load_vec(st, "", "visual.ln_pre.bias", D, 0, NULL)) ||
		    !(m->norm_w = load_vec(st, "", "visual.ln_post.weight", D, 0, NULL)) ||
		    !(m->norm_b = load_vec(st, "", "visual.ln_post.bias", D, 0, NULL)))
			return -1;
		if (c->proj_dim && !(m->proj = load_mat(st, "", "visual.proj", D, c->proj_dim)))
			return -1;
		return 0;
	}
	int64_t s3[3] = {1, 1, D}, r3[3] = {1, c->reg_tokens, D};
	if (c->class_token && !(m->cls = safetensors_load_f32(st, "cls_token", 3, s3)))
		return -1;
	if (c->reg_tokens && !(m->reg = safetensors_load_f32(st, "reg_token", 3, r3)))
		return -1;
	if (c->final_norm || c->fc_norm) {
		const char *w = "norm.weight", *b = "norm.bias";
		if (c->fc_norm && safetensors_find(st, "fc_norm.weight")) {
			w = "fc_norm.weight";
			b = "fc_norm.bias";
		}
		if (!(m->norm_w = load_vec(st, "", w, D, 0, NULL)) ||
		    !(m->norm_b = load_vec(st, "", b, D, 0, NULL)))
			return -1;
	}
	return c->pool == POOL_ATTN ? vit_bind_attn_pool(m, s) : 0;
}

/* The transformer blocks, each under its layout's name prefix. */
static int vit_bind_blocks(struct vit *m, const struct vit_load_state *s)
{
	const struct vit_config *c = &m->cfg;
	m->blocks = calloc((size_t)c->depth, sizeof *m->blocks);
	for (int l = 0; l < c->depth; l++) {
		char prefix_name[128];
		snprintf(prefix_name, sizeof prefix_name, s->names->block, l);
		if (block_load(&m->blocks[l], s->st, prefix_name, s->names->blocks, c->dim,
		               c->hidden) < 0)
			return -1;
		if (m->blocks[l].glu != m->blocks[0].glu)
			return eosin_error("'%s': block %d's MLP is %s, block 0's %s", s->path, l,
			                   m->blocks[l].glu ? "gated" : "plain",
			                   m->blocks[0].glu ? "gated" : "plain");
	}
	if (c->act == ACT_SILU && c->depth && !m->blocks[0].glu)
		return eosin_error("'%s': a SiLU MLP without gating is not covered (only timm's "
		                   "SwiGLUPacked, fc2 taking half of fc1's width)", s->path);
	return 0;
}

int vit_load(struct vit *m, const struct safetensors *st, const char *path,
             const struct vit_overrides *ov)
{
	memset(m, 0, sizeof *m);
	struct vit_load_state s = {.st = st, .path = path, .ov = ov};
	if (vit_resolve_naming(&s) < 0 || vit_read_tensor_facts(m, &s) < 0 ||
	    vit_read_config(m, &s) < 0)
		return -1;
	vit_apply_overrides(&m->cfg, &s);
	if (vit_check_config(m, &s) < 0)
		return -1;
	if (vit_bind_stem_and_head(m, &s) < 0 || vit_bind_blocks(m, &s) < 0) {
		if (!*eosin_errmsg())
			eosin_error("'%s': cannot load the vision tower", path);
		vit_free(m);
		return -1;
	}
	return 0;
}

void vit_free(struct vit *m)
{
	if (m->blocks)
		for (int l = 0; l < m->cfg.depth; l++)
			block_free(&m->blocks[l]);
	free(m->blocks);
	free(m->patch_w);
	free(m->patch_b);
	free(m->cls);
	free(m->reg);
	free(m->pos);
	free(m->ln_pre_w);
	free(m->ln_pre_b);
	free(m->norm_w);
	free(m->norm_b);
	free(m->proj);
	attn_pool_free(&m->ap);
	free(m->x);
	free(m->patches);
	free(m->pos_cur);
	block_acts_free(&m->acts);
	for (int t = 0; t < m->n_thread_acts; t++)
		block_acts_free(&m->thread_acts[t]);
	free(m->thread_acts);
	memset(m, 0, sizeof *m);
}

int vit_tokens(const struct vit *m, int H, int W)
{
	return m->cfg.class_token + m->cfg.reg_tokens + (H / m->cfg.patch) * (W / m->cfg.patch);
}

int vit_check_size(const struct vit *m, int H, int W)
{
	const struct vit_config *c = &m->cfg;
	if (H <= 0 || W <= 0 || H % c->patch || W % c->patch)
		return eosin_error("input %dx%d is not a multiple of the patch size %d", W, H, c->patch);
	if (!c->dynamic_img_size && (H != c->img_size || W != c->img_size))
		return eosin_error("input %dx%d but the model takes %dx%d (dynamic size is off)", W, H,
		                   c->img_size, c->img_size);
	return 0;
}

static int grow(float **p, size_t *cap, size_t n)
{
	if (n <= *cap)
		return 0;
	free(*p);
	*p = malloc(n * sizeof(float));
	*cap = *p ? n : 0;
	return *p ? 0 : eosin_error("out of memory (%zu floats)", n);
}

/* The blocks over x (B,T,D). With several threads and enough images, each
 * thread takes groups of whole images through all the blocks on its own
 * activations (the kernels inside run on that one thread): no barrier
 * between kernels, and a group's activations stay near the core. With
 * fewer images than that, every kernel is split across the threads. */
static int blocks_forward(struct vit *m, int B, int T)
{
	const struct vit_config *c = &m->cfg;
	int D = c->dim, nt = omp_get_max_threads();
	int by_image = nt > 1 && !omp_in_parallel() && (B >= 2 * nt || (B >= nt && B % nt == 0));
	if (!by_image) {
		for (int l = 0; l < c->depth; l++)
			block_forward(m->x, &m->blocks[l], &m->acts, B, T, D, c->heads, c->hidden, c->eps,
			              c->act, 0);
		return 0;
	}
	/* Groups of up to IMAGES_PER_GROUP images (1576 rows at 224 px, 16 px
	 * patches; each group streams every block's weights from memory once,
	 * so groups much smaller than this slow sgemm down), at least two
	 * groups per thread so that the dynamic schedule evens out a slow core. */
	enum { IMAGES_PER_GROUP = 8 };
	int per = B / (2 * nt);
	per = per < 1 ? 1 : per > IMAGES_PER_GROUP ? IMAGES_PER_GROUP : per;
	int groups = (B + per - 1) / per;
	if (m->n_thread_acts < nt) {
		struct block_acts *ta = realloc(m->thread_acts, (size_t)nt * sizeof *ta);
		if (!ta)
			return eosin_error("out of memory");
		memset(ta + m->n_thread_acts, 0, (size_t)(nt - m->n_thread_acts) * sizeof *ta);
		m->thread_acts = ta;
		m->n_thread_acts = nt;
	}
	for (int t = 0; t < nt; t++)
		if (block_acts_reserve(&m->thread_acts[t], per, T, D, c->hidden) < 0)
			return -1;
#pragma omp parallel num_threads(nt)
	{
		struct block_acts *a = &m->thread_acts[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 1)
		for (int g = 0; g < groups; g++) {
			int b0 = g * per, nb = B - b0 < per ? B - b0 : per;
			float *xg = m->x + (size_t)b0 * T * D;
			for (int l = 0; l < c->depth; l++)
				block_forward(xg, &m->blocks[l], a, nb, T, D, c->heads, c->hidden, c->eps,
				              c->act, 0);
		}
	}
	return 0;
}

/* The activation buffers for a B x T forward pass. */
static int vit_reserve(struct vit *m, int B, int T, int np, int K)
{
	int D = m->cfg.dim;
	size_t patches_n = (size_t)B * np * K;
	if (grow(&m->x, &m->x_cap, (size_t)B * T * D) < 0 ||
	    grow(&m->patches, &m->patches_cap, patches_n > (size_t)B * np * D ? patches_n
	                                                                       : (size_t)B * np * D) < 0 ||
	    block_acts_reserve(&m->acts, B, T, D, m->cfg.hidden) < 0)
		return -1;
	if (m->cfg.hidden < D)
		return eosin_error("mlp width %d below model width %d", m->cfg.hidden, D);
	return 0;
}

/* The patch tokens' position table for a gh x gw grid: pos_embed as
 * stored, or resampled once for a grid it was not trained on. */
static const float *pos_for_grid(struct vit *m, int gh, int gw)
{
	const struct vit_config *c = &m->cfg;
	int prefix = c->class_token + c->reg_tokens, D = c->dim;
	const float *pos_patch = m->pos + (size_t)(c->no_embed_class ? 0 : prefix) * D;
	if (gh == m->pos_grid && gw == m->pos_grid)
		return pos_patch;
	if (m->pos_cur_grid != gh * 65536 + gw) {
		free(m->pos_cur);
		m->pos_cur = malloc((size_t)gh * gw * D * sizeof(float));
		if (!m->pos_cur) {
			eosin_error("out of memory");
			return NULL;
		}
		resample_grid(m->pos_cur, pos_patch, m->pos_grid, m->pos_grid, gh, gw, D);
		m->pos_cur_grid = gh * 65536 + gw;
	}
	return m->pos_cur;
}

/* pixels (B,3,H,W) into m->patches (B*np, 3*p*p) in (c, ky, kx) order,
 * patches row-major. */
static void patchify(struct vit *m, const float *pixels, int B, int H, int W)
{
	int p = m->cfg.patch, gw = W / p, np = (H / p) * gw, K = 3 * p * p;
#pragma omp parallel for collapse(2) schedule(static)
	for (int b = 0; b < B; b++)
		for (int t = 0; t < np; t++) {
			int py = t / gw, px = t % gw;
			float *dst = m->patches + ((size_t)b * np + t) * K;
			for (int ch = 0; ch < 3; ch++)
				for (int ky = 0; ky < p; ky++)
					memcpy(dst + (ch * p + ky) * p,
					       pixels + (((size_t)b * 3 + ch) * H + py * p + ky) * W + px * p,
					       (size_t)p * sizeof(float));
		}
}

/* The token stream x (B,T,D): cls and register tokens, then the embedded
 * patches (computed into acts.hidden, which holds B*np x D since H >= D),
 * plus positions. */
static void embed_tokens(struct vit *m, const float *pos_patch, int B, int np)
{
	const struct vit_config *c = &m->cfg;
	int D = c->dim, prefix = c->class_token + c->reg_tokens, T = prefix + np;
	float *emb = m->acts.hidden;
	matmul_forward(emb, m->patches, m->patch_w, m->patch_b, B * np, 3 * c->patch * c->patch, D);
	for (int b = 0; b < B; b++) {
		float *xb = m->x + (size_t)b * T * D;
		if (c->class_token)
			memcpy(xb, m->cls, (size_t)D * sizeof(float));
		if (c->reg_tokens)
			memcpy(xb + (size_t)c->class_token * D, m->reg,
			       (size_t)c->reg_tokens * D * sizeof(float));
		memcpy(xb + (size_t)prefix * D, emb + (size_t)b * np * D, (size_t)np * D * sizeof(float));
		if (!c->no_embed_class)
			for (int i = 0; i < prefix * D; i++)
				xb[i] += m->pos[i];
		float *xp = xb + (size_t)prefix * D;
		for (size_t i = 0; i < (size_t)np * D; i++)
			xp[i] += pos_patch[i];
	}
}

/* x (B,T,D) after the blocks and final norm -> pooled (B, out_dim):
 * token 0 or the mean of the patch tokens into acts.ln, then fc_norm,
 * then proj. */
/* CONCH's head, image by image: the pooler's one query attends over
 * ln_k(tokens), then out_proj, ln and proj. */
static int pool_attn(struct vit *m, float *pooled, int B, int T)
{
	struct attn_pool *a = &m->ap;
	int D = m->cfg.dim, E = a->E, NH = a->heads, hd = E / NH;
	size_t need = (size_t)T * D + 2 * (size_t)T * E + (size_t)T + 4 * (size_t)E;
	if (grow(&a->buf, &a->buf_cap, need) < 0)
		return -1;
	float *kx = a->buf, *K = kx + (size_t)T * D, *V = K + (size_t)T * E,
	      *sc = V + (size_t)T * E;
	float *q = sc + T, *qp = q + E, *o = qp + E, *o2 = o + E;
	layernorm_forward(q, a->query, a->lnq_w, a->lnq_b, 1, E, a->eps);
	matmul_forward_in_out_bias(qp, q, a->wq, a->bq, 1, E, E);
	float scale = 1.0f / sqrtf((float)hd);
	for (int b = 0; b < B; b++) {
		layernorm_forward(kx, m->x + (size_t)b * T * D, a->lnk_w, a->lnk_b, T, D, a->eps);
		matmul_forward_in_out_bias(K, kx, a->wk, a->bk, T, D, E);
		matmul_forward_in_out_bias(V, kx, a->wv, a->bv, T, D, E);
		for (int h = 0; h < NH; h++) {
			const float *qh = qp + h * hd;
			float mx = -INFINITY;
			for (int t = 0; t < T; t++) {
				const float *kt = K + (size_t)t * E + h * hd;
				float d = 0;
				for (int j = 0; j < hd; j++)
					d += qh[j] * kt[j];
				sc[t] = d * scale;
				mx = sc[t] > mx ? sc[t] : mx;
			}
			double sum = 0;
			for (int t = 0; t < T; t++)
				sum += (sc[t] = expf(sc[t] - mx));
			float *oh = o + h * hd;
			memset(oh, 0, (size_t)hd * sizeof *oh);
			for (int t = 0; t < T; t++) {
				const float *vt = V + (size_t)t * E + h * hd;
				float p = (float)(sc[t] / sum);
				for (int j = 0; j < hd; j++)
					oh[j] += p * vt[j];
			}
		}
		matmul_forward_in_out_bias(o2, o, a->wo, a->bo, 1, E, E);
		layernorm_forward(o2, o2, a->ln_w, a->ln_b, 1, E, a->eps);
		matmul_forward_in_out(pooled + (size_t)b * a->proj_dim, o2, a->proj, 1, E,
		                      a->proj_dim);
	}
	return 0;
}

static int pool_out(struct vit *m, float *pooled, int B, int T)
{
	const struct vit_config *c = &m->cfg;
	int D = c->dim, prefix = c->class_token + c->reg_tokens;
	if (c->pool == POOL_ATTN)
		return pool_attn(m, pooled, B, T);
	if (c->pool == POOL_TOKEN_AVG) { /* Virchow: [token 0, mean of the patch tokens] */
		for (int b = 0; b < B; b++) {
			const float *xb = m->x + (size_t)b * T * D;
			memcpy(pooled + (size_t)b * 2 * D, xb, (size_t)D * sizeof(float));
			mean_rows(pooled + (size_t)b * 2 * D + D, xb, prefix, T, D);
		}
		return 0;
	}
	float *pool = m->acts.ln;
	for (int b = 0; b < B; b++) {
		const float *xb = m->x + (size_t)b * T * D;
		if (c->pool == POOL_AVG)
			mean_rows(pool + (size_t)b * D, xb, prefix, T, D);
		else
			memcpy(pool + (size_t)b * D, xb, (size_t)D * sizeof(float));
	}
	if (c->fc_norm)
		layernorm_forward(pool, pool, m->norm_w, m->norm_b, B, D, c->eps);
	if (c->proj_dim)
		matmul_forward_in_out(pooled, pool, m->proj, B, D, c->proj_dim);
	else
		memcpy(pooled, pool, (size_t)B * D * sizeof(float));
	return 0;
}

int vit_forward(struct vit *m, const float *pixels, int B, int H, int W, float *pooled,
                float *features, float *embed)
{
	const struct vit_config *c = &m->cfg;
	if (vit_check_size(m, H, W) < 0)
		return -1;
	int p = c->patch, gh = H / p, gw = W / p, np = gh * gw, D = c->dim;
	int T = c->class_token + c->reg_tokens + np;
	if (vit_reserve(m, B, T, np, 3 * p * p) < 0)
		return -1;
	const float *pos_patch = pos_for_grid(m, gh, gw);
	if (!pos_patch)
		return -1;
	patchify(m, pixels, B, H, W);
	embed_tokens(m, pos_patch, B, np);
	if (c->ln_pre)
		layernorm_forward(m->x, m->x, m->ln_pre_w, m->ln_pre_b, B * T, D, c->eps);
	if (embed)
		memcpy(embed, m->x, (size_t)B * T * D * sizeof(float));
	if (blocks_forward(m, B, T) < 0)
		return -1;
	if (c->final_norm)
		layernorm_forward(m->x, m->x, m->norm_w, m->norm_b, B * T, D, c->eps);
	if (features)
		memcpy(features, m->x, (size_t)B * T * D * sizeof(float));
	return pool_out(m, pooled, B, T);
}

const float *vit_patch_pos(struct vit *m, int gh, int gw)
{
	return pos_for_grid(m, gh, gw);
}
