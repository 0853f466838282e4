/*
 * eosin-make-model: write a model in the safetensors layout eosin-encode
 * reads, with its architecture in __metadata__, either with seeded random
 * weights (tests, demos, benchmarks) or with the weights of another
 * safetensors file (a converted UNI, CONCH, PLIP or QuiltNet checkpoint).
 * See eosin-make-model(1).
 */
#include "core/rand.h"
#include "prog.h"
#include "model/safetensors.h"
#include "core/vec.h"

#include <ctype.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdint.h>

static void usage(void)
{
	fprintf(stderr,
	        "usage: eosin-make-model --arch vit|clip|clip-text --out FILE [--seed N]\n"
	        "       [--dtype f32|f16|bf16] [--name NAME] [--vocab FILE] [--from FILE]\n"
	        "       [--dim N] [--depth N] [--heads N] [--patch N] [--img N] [--reg N]\n"
	        "       [--mlp-ratio X] [--mlp gelu|swiglu] [--pool token|avg|token+avg|attn] "
	        "[--no-embed-class] [--no-layerscale]\n"
	        "       [--dynamic] [--width N] [--layers N] [--text-heads N] [--embed N]\n"
	        "       [--context N] [--vocab-size N] [--layout eosin|hf|open_clip|conch]\n"
	        "       [--act gelu|quick-gelu] [--layerscale] [--pool-heads N]\n");
	exit(EXIT_USAGE);
}

/* splitmix64, then Box-Muller: the same seed gives the same file. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
	return splitmix64(&rng_state);
}

static double rng_uniform(void)
{
	return ((rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(void)
{
	double u = rng_uniform(), v = rng_uniform();
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

struct tensor_list {
	struct st_write_tensor *t;
	float **data;
	size_t n, cap;
};

enum layout { LAYOUT_EOSIN, LAYOUT_HF, LAYOUT_OPEN_CLIP, LAYOUT_CONCH };
enum pool { POOL_TOKEN_, POOL_AVG_, POOL_TOKEN_AVG_, POOL_ATTN_ };
static const char *const POOL_NAMES[] = {"token", "avg", "token+avg", "attn"};

enum init { INIT_NORMAL, INIT_ONES_NOISE, INIT_UNIFORM_LS };

/* A tensor taking over data (owned by the list from now on). */
static void add_owned(struct tensor_list *L, const char *name, int ndim, const int64_t *shape,
                      float *data, enum st_dtype dt)
{
	if (L->n == L->cap) {
		L->cap = L->cap ? 2 * L->cap : 64;
		L->t = realloc(L->t, L->cap * sizeof *L->t);
		L->data = realloc(L->data, L->cap * sizeof *L->data);
	}
	struct st_write_tensor *t = &L->t[L->n];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	t->dtype = dt;
	t->ndim = ndim;
	memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
	t->data = data;
	L->data[L->n++] = data;
}

/* Add a float32 tensor filled by `init` with scale s. */
static void add(struct tensor_list *L, const char *name, int ndim, const int64_t *shape,
                enum init init, double s)
{
	size_t numel = 1;
	for (int i = 0; i < ndim; i++)
		numel *= (size_t)shape[i];
	float *d = malloc(numel * sizeof *d);
	for (size_t i = 0; i < numel; i++)
		d[i] = init == INIT_NORMAL       ? (float)(s * rng_normal())
		       : init == INIT_ONES_NOISE ? (float)(1.0 + s * rng_normal())
		                                 : (float)(0.05 + s * rng_uniform());
	add_owned(L, name, ndim, shape, d, ST_F32);
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define ADD(L, name, init, s, ...) add(L, name, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), init, s)

/* A pre-LN block: timm or CLIP names under prefix. */
static void add_block(struct tensor_list *L, const char *prefix, int clip, int C, int H,
                      int layerscale, int glu)
{
	char n[256];
	double sc = 1.0 / sqrt(C), sh = 1.0 / sqrt(H);
#define NAME(s) (snprintf(n, sizeof n, "%s%s", prefix, s), n)
	if (clip) {
		ADD(L, NAME("attn.in_proj_weight"), INIT_NORMAL, sc, 3 * C, C);
		ADD(L, NAME("attn.in_proj_bias"), INIT_NORMAL, 0.02, 3 * C);
		ADD(L, NAME("attn.out_proj.weight"), INIT_NORMAL, sc, C, C);
		ADD(L, NAME("attn.out_proj.bias"), INIT_NORMAL, 0.02, C);
		ADD(L, NAME("ln_1.weight"), INIT_ONES_NOISE, 0.1, C);
		ADD(L, NAME("ln_1.bias"), INIT_NORMAL, 0.05, C);
		ADD(L, NAME("mlp.c_fc.weight"), INIT_NORMAL, sc, H, C);
		ADD(L, NAME("mlp.c_fc.bias"), INIT_NORMAL, 0.02, H);
		ADD(L, NAME("mlp.c_proj.weight"), INIT_NORMAL, sh, C, H);
		ADD(L, NAME("mlp.c_proj.bias"), INIT_NORMAL, 0.02, C);
		ADD(L, NAME("ln_2.weight"), INIT_ONES_NOISE, 0.1, C);
		ADD(L, NAME("ln_2.bias"), INIT_NORMAL, 0.05, C);
		if (layerscale) { /* open_clip's ls_init_value */
			ADD(L, NAME("ls_1.gamma"), INIT_UNIFORM_LS, 0.5, C);
			ADD(L, NAME("ls_2.gamma"), INIT_UNIFORM_LS, 0.5, C);
		}
	} else {
		ADD(L, NAME("norm1.weight"), INIT_ONES_NOISE, 0.1, C);
		ADD(L, NAME("norm1.bias"), INIT_NORMAL, 0.05, C);
		ADD(L, NAME("attn.qkv.weight"), INIT_NORMAL, sc, 3 * C, C);
		ADD(L, NAME("attn.qkv.bias"), INIT_NORMAL, 0.02, 3 * C);
		ADD(L, NAME("attn.proj.weight"), INIT_NORMAL, sc, C, C);
		ADD(L, NAME("attn.proj.bias"), INIT_NORMAL, 0.02, C);
		if (layerscale)
			ADD(L, NAME("ls1.gamma"), INIT_UNIFORM_LS, 0.1, C);
		ADD(L, NAME("norm2.weight"), INIT_ONES_NOISE, 0.1, C);
		ADD(L, NAME("norm2.bias"), INIT_NORMAL, 0.05, C);
		/* timm's GluMlp: fc1 gives H, fc2 takes H/2 */
		ADD(L, NAME("mlp.fc1.weight"), INIT_NORMAL, sc, H, C);
		ADD(L, NAME("mlp.fc1.bias"), INIT_NORMAL, 0.02, H);
		ADD(L, NAME("mlp.fc2.weight"), INIT_NORMAL, glu ? sqrt(2.0 / H) : sh, C, glu ? H / 2 : H);
		ADD(L, NAME("mlp.fc2.bias"), INIT_NORMAL, 0.02, C);
		if (layerscale)
			ADD(L, NAME("ls2.gamma"), INIT_UNIFORM_LS, 0.1, C);
	}
#undef NAME
}

static struct {
	const char *arch;
	int dim, depth, heads, patch, img, reg, no_embed_class, layerscale, dynamic, pool;
	double mlp_ratio;
	int width, layers, text_heads, embed, context, vocab_size;
	int heads_set, swiglu;
	unsigned set; /* SET_* of the sizes given as flags */
	int clip_ls;  /* CLIP: LayerScale (open_clip's ls_1/ls_2) */
	int pool_heads; /* the attentional pooler's heads */
	int act;      /* CLIP: 1 QuickGELU, 0 GELU, -1 not stated */
} A = {NULL, 192, 4, 3, 16, 224, 0, 0, 1, 0, 0, 4.0, 64, 2, 0, 64, 77, 49408, 0, 0, 0, 0, 8, -1};

enum {
	SET_DIM = 1 << 0, SET_DEPTH = 1 << 1, SET_HEADS = 1 << 2, SET_PATCH = 1 << 3,
	SET_IMG = 1 << 4, SET_WIDTH = 1 << 5, SET_LAYERS = 1 << 6, SET_TEXT_HEADS = 1 << 7,
	SET_EMBED = 1 << 8, SET_CONTEXT = 1 << 9, SET_VOCAB = 1 << 10, SET_EMBED_V = 1 << 11,
};

/* The source file of --from, for messages. */
static const char *src_path = "";
/* --from held a CLIP vision tower and no text tower */
static int vision_only;

/* CoCa's AttentionalPooler (nn.MultiheadAttention with kdim = vdim = D,
 * which stores one in_proj_weight when D = E) with Q queries of width E;
 * with_head: eosin's ln and proj after it (CONCH's ln_contrast and
 * proj_contrast). */
static void add_attn_pool(struct tensor_list *L, const char *prefix, int D, int E, int Q)
{
	char n[256];
#define PNAME(s) (snprintf(n, sizeof n, "%s%s", prefix, s), n)
	ADD(L, PNAME("query"), INIT_NORMAL, 1.0, Q, E);
	ADD(L, PNAME("ln_q.weight"), INIT_ONES_NOISE, 0.1, E);
	ADD(L, PNAME("ln_q.bias"), INIT_NORMAL, 0.05, E);
	ADD(L, PNAME("ln_k.weight"), INIT_ONES_NOISE, 0.1, D);
	ADD(L, PNAME("ln_k.bias"), INIT_NORMAL, 0.05, D);
	if (D == E) {
		ADD(L, PNAME("attn.in_proj_weight"), INIT_NORMAL, 1.0 / sqrt(D), 3 * E, D);
	} else {
		ADD(L, PNAME("attn.q_proj_weight"), INIT_NORMAL, 1.0 / sqrt(E), E, E);
		ADD(L, PNAME("attn.k_proj_weight"), INIT_NORMAL, 1.0 / sqrt(D), E, D);
		ADD(L, PNAME("attn.v_proj_weight"), INIT_NORMAL, 1.0 / sqrt(D), E, D);
	}
	ADD(L, PNAME("attn.in_proj_bias"), INIT_NORMAL, 0.02, 3 * E);
	ADD(L, PNAME("attn.out_proj.weight"), INIT_NORMAL, 1.0 / sqrt(E), E, E);
	ADD(L, PNAME("attn.out_proj.bias"), INIT_NORMAL, 0.02, E);
	if (Q == 1) {
		ADD(L, PNAME("ln.weight"), INIT_ONES_NOISE, 0.1, E);
		ADD(L, PNAME("ln.bias"), INIT_NORMAL, 0.05, E);
		ADD(L, PNAME("proj"), INIT_NORMAL, 1.0 / sqrt(E), E, E);
	}
#undef PNAME
}

static void make_vit(struct tensor_list *L)
{
	int D = A.dim, H = (int)(A.dim * A.mlp_ratio), g = A.img / A.patch;
	int prefix = 1 + A.reg, rows = g * g + (A.no_embed_class ? 0 : prefix);
	ADD(L, "cls_token", INIT_NORMAL, 0.2, 1, 1, D);
	if (A.reg)
		ADD(L, "reg_token", INIT_NORMAL, 0.2, 1, A.reg, D);
	ADD(L, "pos_embed", INIT_NORMAL, 0.1, 1, rows, D);
	ADD(L, "patch_embed.proj.weight", INIT_NORMAL, 1.0 / sqrt(3.0 * A.patch * A.patch), D, 3,
	    A.patch, A.patch);
	ADD(L, "patch_embed.proj.bias", INIT_NORMAL, 0.02, D);
	for (int l = 0; l < A.depth; l++) {
		char prefix_name[64];
		snprintf(prefix_name, sizeof prefix_name, "blocks.%d.", l);
		add_block(L, prefix_name, 0, D, H, A.layerscale, A.swiglu);
	}
	ADD(L, "norm.weight", INIT_ONES_NOISE, 0.1, D);
	ADD(L, "norm.bias", INIT_NORMAL, 0.05, D);
	if (A.pool == POOL_ATTN_)
		add_attn_pool(L, "attn_pool.", D, A.embed, 1);
}

static void make_clip_vision(struct tensor_list *L)
{
	int W = A.dim, g = A.img / A.patch;
	ADD(L, "visual.class_embedding", INIT_NORMAL, 0.2, W);
	ADD(L, "visual.positional_embedding", INIT_NORMAL, 0.1, g * g + 1, W);
	ADD(L, "visual.proj", INIT_NORMAL, 1.0 / sqrt(W), W, A.embed);
	ADD(L, "visual.conv1.weight", INIT_NORMAL, 1.0 / sqrt(3.0 * A.patch * A.patch), W, 3, A.patch,
	    A.patch);
	ADD(L, "visual.ln_pre.weight", INIT_ONES_NOISE, 0.1, W);
	ADD(L, "visual.ln_pre.bias", INIT_NORMAL, 0.05, W);
	for (int l = 0; l < A.depth; l++) {
		char p[96];
		snprintf(p, sizeof p, "visual.transformer.resblocks.%d.", l);
		add_block(L, p, 1, W, 4 * W, A.clip_ls, 0);
	}
	ADD(L, "visual.ln_post.weight", INIT_ONES_NOISE, 0.1, W);
	ADD(L, "visual.ln_post.bias", INIT_NORMAL, 0.05, W);
}

static void make_clip_text(struct tensor_list *L)
{
	int W = A.width;
	ADD(L, "positional_embedding", INIT_NORMAL, 0.1, A.context, W);
	ADD(L, "text_projection", INIT_NORMAL, 1.0 / sqrt(W), W, A.embed);
	ADD(L, "logit_scale", INIT_NORMAL, 0.0, 1);
	L->data[L->n - 1][0] = (float)log(1 / 0.07);
	for (int l = 0; l < A.layers; l++) {
		char p[96];
		snprintf(p, sizeof p, "transformer.resblocks.%d.", l);
		add_block(L, p, 1, W, 4 * W, A.clip_ls, 0);
	}
	ADD(L, "token_embedding.weight", INIT_NORMAL, 0.5, A.vocab_size, W);
	ADD(L, "ln_final.weight", INIT_ONES_NOISE, 0.1, W);
	ADD(L, "ln_final.bias", INIT_NORMAL, 0.05, W);
}

static char *config_json(int vit, int vision, int text)
{
	json_t *o = json_object();
	if (vit) {
		json_object_set_new(o, "embed_dim", json_integer(A.dim));
		json_object_set_new(o, "depth", json_integer(A.depth));
		json_object_set_new(o, "num_heads", json_integer(A.heads));
		json_object_set_new(o, "patch_size", json_integer(A.patch));
		json_object_set_new(o, "img_size", json_integer(A.img));
		json_object_set_new(o, "reg_tokens", json_integer(A.reg));
		json_object_set_new(o, "class_token", json_true());
		json_object_set_new(o, "no_embed_class", json_boolean(A.no_embed_class));
		json_object_set_new(o, "dynamic_img_size", json_boolean(A.dynamic));
		json_object_set_new(o, "global_pool", json_string(POOL_NAMES[A.pool]));
		if (A.pool == POOL_ATTN_)
			json_object_set_new(o, "attn_pool_heads", json_integer(A.pool_heads));
		if (A.pool == POOL_ATTN_) { /* CONCH's preprocessing: OpenAI CLIP's mean and std */
			const double m[3] = {0.48145466, 0.4578275, 0.40821073},
			             sd[3] = {0.26862954, 0.26130258, 0.27577711};
			json_t *jm = json_array(), *js = json_array();
			for (int k = 0; k < 3; k++) {
				json_array_append_new(jm, json_real(m[k]));
				json_array_append_new(js, json_real(sd[k]));
			}
			json_object_set_new(o, "mean", jm);
			json_object_set_new(o, "std", js);
		}
		json_object_set_new(o, "fc_norm", json_null());
		json_object_set_new(o, "final_norm", json_true());
		json_object_set_new(o, "mlp_ratio", json_real(A.mlp_ratio));
		json_object_set_new(o, "init_values", A.layerscale ? json_real(1e-5) : json_null());
		json_object_set_new(o, "norm_layer", json_string("LayerNorm(eps=1e-6)"));
		json_object_set_new(o, "act_layer",
		                    json_string(A.swiglu ? "SiLU" : "GELU (exact erf)"));
		if (A.swiglu)
			json_object_set_new(o, "mlp_layer", json_string("SwiGLUPacked"));
		json_object_set_new(o, "interpolation", json_string("bicubic"));
		json_object_set_new(o, "crop_pct", json_real(1.0));
	}
	if (vision) {
		json_object_set_new(o, "vision_width", json_integer(A.dim));
		json_object_set_new(o, "vision_layers", json_integer(A.depth));
		json_object_set_new(o, "vision_heads", json_integer((A.set & SET_HEADS) ? A.heads
		                                                    : A.dim / 64 ? A.dim / 64 : 1));
		json_object_set_new(o, "vision_patch_size", json_integer(A.patch));
		json_object_set_new(o, "image_resolution", json_integer(A.img));
	}
	if (vision || text)
		json_object_set_new(o, "embed_dim", json_integer(A.embed));
	if ((vision || text) && A.act >= 0)
		json_object_set_new(o, "quick_gelu", json_boolean(A.act));
	if (text) {
		json_object_set_new(o, "transformer_width", json_integer(A.width));
		json_object_set_new(o, "transformer_layers", json_integer(A.layers));
		json_object_set_new(o, "transformer_heads", json_integer(A.text_heads));
		json_object_set_new(o, "context_length", json_integer(A.context));
		json_object_set_new(o, "vocab_size", json_integer(A.vocab_size));
	}
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return s;
}

/* What the command line asks for beyond the architecture in A. */
struct args {
	const char *out, *name, *from, *vocab;
	enum layout layout;
	long seed;
	enum vec_dtype dt;
	int dtype_set;
};

static const struct option long_opts[] = {
    {"arch", required_argument, 0, 'a'},
    {"dim", required_argument, 0, 'd'},
    {"depth", required_argument, 0, 'D'},
    {"heads", required_argument, 0, 'H'},
    {"patch", required_argument, 0, 'p'},
    {"img", required_argument, 0, 'i'},
    {"reg", required_argument, 0, 'r'},
    {"mlp-ratio", required_argument, 0, 'M'},
    {"pool", required_argument, 0, 'P'},
    {"no-embed-class", no_argument, 0, 'N'},
    {"no-layerscale", no_argument, 0, 'L'},
    {"dynamic", no_argument, 0, 'y'},
    {"width", required_argument, 0, 'w'},
    {"layers", required_argument, 0, 'l'},
    {"text-heads", required_argument, 0, 'T'},
    {"embed", required_argument, 0, 'e'},
    {"context", required_argument, 0, 'c'},
    {"vocab-size", required_argument, 0, 'V'},
    {"seed", required_argument, 0, 's'},
    {"dtype", required_argument, 0, 't'},
    {"name", required_argument, 0, 'n'},
    {"vocab", required_argument, 0, 'v'},
    {"from", required_argument, 0, 'f'},
    {"out", required_argument, 0, 'o'},
    {"mlp", required_argument, 0, 'G'},
    {"help", no_argument, 0, 'h'},
    {"layout", required_argument, 0, 'Y'},
    {"act", required_argument, 0, 'A'},
    {"layerscale", no_argument, 0, 'S'},
    {"pool-heads", required_argument, 0, 'Q'},
    {0, 0, 0, 0},
};

static void parse_options(int argc, char **argv, struct args *a)
{
	*a = (struct args){.dt = VEC_F32};
	int c;
	while ((c = getopt_long(argc, argv, "o:h", long_opts, NULL)) != -1) {
		switch (c) {
		case 'a': A.arch = optarg; break;
		case 'd':
			A.dim = (int)prog_long("--dim", optarg, 1, 16384);
			A.set |= SET_DIM;
			break;
		case 'D':
			A.depth = (int)prog_long("--depth", optarg, 1, 256);
			A.set |= SET_DEPTH;
			break;
		case 'H':
			A.heads = (int)prog_long("--heads", optarg, 1, 1024);
			A.heads_set = 1;
			A.set |= SET_HEADS;
			break;
		case 'p':
			A.patch = (int)prog_long("--patch", optarg, 1, 1024);
			A.set |= SET_PATCH;
			break;
		case 'i':
			A.img = (int)prog_long("--img", optarg, 1, 8192);
			A.set |= SET_IMG;
			break;
		case 'r': A.reg = (int)prog_long("--reg", optarg, 0, 64); break;
		case 'M': A.mlp_ratio = prog_double("--mlp-ratio", optarg, 0.1, 64); break;
		case 'P':
			for (A.pool = 0; A.pool < 4 && strcmp(optarg, POOL_NAMES[A.pool]); A.pool++)
				;
			if (A.pool == 4)
				errx(EXIT_USAGE,
				     "--pool: '%s' is not token, avg, token+avg or attn", optarg);
			break;
		case 'N': A.no_embed_class = 1; break;
		case 'G':
			if (strcmp(optarg, "gelu") && strcmp(optarg, "swiglu"))
				errx(EXIT_USAGE, "--mlp: '%s' is not gelu or swiglu", optarg);
			A.swiglu = !strcmp(optarg, "swiglu");
			break;
		case 'L': A.layerscale = 0; break;
		case 'S': A.clip_ls = 1; break;
		case 'Q': A.pool_heads = (int)prog_long("--pool-heads", optarg, 1, 1024); break;
		case 'y': A.dynamic = 1; break;
		case 'w':
			A.width = (int)prog_long("--width", optarg, 1, 16384);
			A.set |= SET_WIDTH;
			break;
		case 'l':
			A.layers = (int)prog_long("--layers", optarg, 1, 256);
			A.set |= SET_LAYERS;
			break;
		case 'T':
			A.text_heads = (int)prog_long("--text-heads", optarg, 1, 1024);
			A.set |= SET_TEXT_HEADS;
			break;
		case 'e':
			A.embed = (int)prog_long("--embed", optarg, 1, 16384);
			A.set |= SET_EMBED;
			break;
		case 'c':
			A.context = (int)prog_long("--context", optarg, 2, 4096);
			A.set |= SET_CONTEXT;
			break;
		case 'V':
			A.vocab_size = (int)prog_long("--vocab-size", optarg, 2, 1 << 24);
			A.set |= SET_VOCAB;
			break;
		case 'Y':
			if (!strcmp(optarg, "eosin") || !strcmp(optarg, "openai"))
				a->layout = LAYOUT_EOSIN;
			else if (!strcmp(optarg, "hf"))
				a->layout = LAYOUT_HF;
			else if (!strcmp(optarg, "open_clip"))
				a->layout = LAYOUT_OPEN_CLIP;
			else if (!strcmp(optarg, "conch"))
				a->layout = LAYOUT_CONCH;
			else
				errx(EXIT_USAGE,
				     "--layout: '%s' is not eosin, hf, open_clip or conch", optarg);
			break;
		case 'A':
			if (strcmp(optarg, "gelu") && strcmp(optarg, "quick-gelu") &&
			    strcmp(optarg, "quick_gelu"))
				errx(EXIT_USAGE, "--act: '%s' is not gelu or quick-gelu", optarg);
			A.act = strcmp(optarg, "gelu") != 0;
			break;
		case 's': a->seed = prog_long("--seed", optarg, 0, 1L << 62); break;
		case 't':
			if (vec_dtype_parse(optarg, &a->dt) < 0)
				errx(EXIT_USAGE, "--dtype: %s", eosin_errmsg());
			a->dtype_set = 1;
			break;
		case 'n': a->name = optarg; break;
		case 'v': a->vocab = optarg; break;
		case 'f': a->from = optarg; break;
		case 'o': a->out = optarg; break;
		default: usage();
		}
	}
	if (optind != argc || !a->out || !A.arch)
		usage();
}

/* --arch and the sizes it needs checked; the heads of a clip-text model
 * default to the old --heads. */
static void check_arch(int *vit, int *clip, int *text)
{
	*vit = !strcmp(A.arch, "vit"), *clip = !strcmp(A.arch, "clip");
	*text = !strcmp(A.arch, "clip-text");
	if (!*vit && !*clip && !*text)
		errx(EXIT_USAGE, "--arch: '%s' is not vit, clip or clip-text", A.arch);
	if (!A.text_heads)
		A.text_heads = *text && A.heads_set ? A.heads : A.width % 64 ? 1 : A.width / 64;
	if (*vit && (A.img % A.patch || A.dim % A.heads))
		errx(EXIT_USAGE, "--img must be a multiple of --patch and --dim of --heads");
	if (A.swiglu && (!*vit || (int)(A.dim * A.mlp_ratio) % 2))
		errx(EXIT_USAGE, "--mlp swiglu: only with --arch vit, and --dim x --mlp-ratio "
		                 "(fc1's width, %d) must be even", (int)(A.dim * A.mlp_ratio));
	if ((*clip || *text) && A.width % A.text_heads)
		errx(EXIT_USAGE, "--width must be a multiple of --text-heads");
	if (*vit && A.clip_ls)
		errx(EXIT_USAGE, "--layerscale: only with --arch clip or clip-text (a ViT has it "
		                 "unless --no-layerscale)");
	if (*vit && A.act >= 0)
		errx(EXIT_USAGE, "--act: only with --arch clip or clip-text (a ViT's is --mlp's)");
}

/* Every tensor of src, as f32, keeping its dtype unless --dtype is given. */
static void copy_tensors(struct tensor_list *L, const struct safetensors *src, int dtype_set)
{
	for (size_t i = 0; i < src->ntensors; i++) {
		const struct st_tensor *t = &src->tensors[i];
		float *d = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *d);
		if (!d)
			errx(1, "out of memory for tensor '%s'", t->name);
		st_tensor_to_f32(t, d);
		add_owned(L, t->name, t->ndim, t->shape, d, dtype_set ? ST_F32 : t->dtype);
	}
}

/* Weight layouts other than eosin's own (timm's names for ViTs, OpenAI's
 * for CLIP). open_clip's ViT towers use OpenAI's names (plus ls_1/ls_2 for
 * LayerScale), so only what it leaves unsaid differs: GELU unless
 * quick_gelu. Hugging Face transformers' CLIPModel renames everything,
 * splits attention's in_proj into q_proj, k_proj and v_proj, and stores
 * the projections as nn.Linear (out,in). */
static const struct {
	const char *hf, *eosin;
	int transpose;
} HF_NAMES[] = {
    {"vision_model.embeddings.class_embedding", "visual.class_embedding", 0},
    {"vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight", 0},
    {"vision_model.embeddings.position_embedding.weight", "visual.positional_embedding", 0},
    {"vision_model.pre_layrnorm.weight", "visual.ln_pre.weight", 0},
    {"vision_model.pre_layrnorm.bias", "visual.ln_pre.bias", 0},
    {"vision_model.post_layernorm.weight", "visual.ln_post.weight", 0},
    {"vision_model.post_layernorm.bias", "visual.ln_post.bias", 0},
    {"visual_projection.weight", "visual.proj", 1},
    {"text_model.embeddings.token_embedding.weight", "token_embedding.weight", 0},
    {"text_model.embeddings.position_embedding.weight", "positional_embedding", 0},
    {"text_model.final_layer_norm.weight", "ln_final.weight", 0},
    {"text_model.final_layer_norm.bias", "ln_final.bias", 0},
    {"text_projection.weight", "text_projection", 1},
    {"logit_scale", "logit_scale", 0},
};
static const struct {
	const char *hf, *eosin;
} HF_TOWERS[] = {
    {"vision_model.encoder.layers.", "visual.transformer.resblocks."},
    {"text_model.encoder.layers.", "transformer.resblocks."},
};
static const struct {
	const char *hf, *eosin;
} HF_BLOCK[] = {
    {"layer_norm1.weight", "ln_1.weight"},
    {"layer_norm1.bias", "ln_1.bias"},
    {"layer_norm2.weight", "ln_2.weight"},
    {"layer_norm2.bias", "ln_2.bias"},
    {"mlp.fc1.weight", "mlp.c_fc.weight"},
    {"mlp.fc1.bias", "mlp.c_fc.bias"},
    {"mlp.fc2.weight", "mlp.c_proj.weight"},
    {"mlp.fc2.bias", "mlp.c_proj.bias"},
    {"self_attn.out_proj.weight", "attn.out_proj.weight"},
    {"self_attn.out_proj.bias", "attn.out_proj.bias"},
};

static size_t numel_of(const struct st_write_tensor *t)
{
	size_t n = 1;
	for (int d = 0; d < t->ndim; d++)
		n *= (size_t)t->shape[d];
	return n;
}

static float *transposed(const float *w, int64_t rows, int64_t cols)
{
	float *t = malloc((size_t)(rows * cols) * sizeof *t);
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++)
			t[c * rows + r] = w[r * cols + c];
	return t;
}

static void list_free(struct tensor_list *L)
{
	for (size_t i = 0; i < L->n; i++) {
		free((char *)L->t[i].name);
		free(L->data[i]);
	}
	free(L->t);
	free(L->data);
	memset(L, 0, sizeof *L);
}

static long find_name(const struct tensor_list *L, const char *name)
{
	for (size_t i = 0; i < L->n; i++)
		if (L->data[i] && !strcmp(L->t[i].name, name))
			return (long)i;
	return -1;
}

/* Move tensor i of S into D under name, transposed (2-D) if asked. */
static void move_tensor(struct tensor_list *D, struct tensor_list *S, size_t i, const char *name,
                        int transpose)
{
	struct st_write_tensor *t = &S->t[i];
	float *data = S->data[i];
	int64_t shape[ST_MAX_DIMS];
	memcpy(shape, t->shape, sizeof shape);
	if (transpose) {
		if (t->ndim != 2)
			errx(1, "%s: '%s' has %d dimensions, want 2", src_path, t->name, t->ndim);
		float *tr = transposed(data, shape[0], shape[1]);
		free(data);
		data = tr;
		int64_t r = shape[0];
		shape[0] = shape[1];
		shape[1] = r;
	}
	add_owned(D, name, t->ndim, shape, data, t->dtype);
	S->data[i] = NULL;
}

/* HF's q_proj, k_proj and v_proj of one block into OpenAI's in_proj
 * (rows q, then k, then v), or back (split). */
static void qkv_join(struct tensor_list *D, struct tensor_list *S, const char *hf_prefix,
                     const char *eo_prefix, int bias)
{
	const char *part[3] = {"q_proj", "k_proj", "v_proj"};
	long idx[3];
	char n[512];
	for (int p = 0; p < 3; p++) {
		snprintf(n, sizeof n, "%sself_attn.%s.%s", hf_prefix, part[p],
		         bias ? "bias" : "weight");
		if ((idx[p] = find_name(S, n)) < 0)
			errx(1,
			     "%s: '%s' is missing (HF layout: q_proj, k_proj and v_proj of each "
			     "block)",
			     src_path, n);
	}
	const struct st_write_tensor *q = &S->t[idx[0]];
	size_t each = numel_of(q);
	for (int p = 1; p < 3; p++)
		if (numel_of(&S->t[idx[p]]) != each || S->t[idx[p]].ndim != q->ndim)
			errx(1, "%s: %s%s: q, k and v differ in shape", src_path, hf_prefix,
			     part[p]);
	float *cat = malloc(3 * each * sizeof *cat);
	for (int p = 0; p < 3; p++) {
		memcpy(cat + p * each, S->data[idx[p]], each * sizeof *cat);
		free(S->data[idx[p]]);
		S->data[idx[p]] = NULL;
	}
	int64_t shape[2] = {3 * q->shape[0], q->ndim == 2 ? q->shape[1] : 0};
	snprintf(n, sizeof n, "%sattn.in_proj_%s", eo_prefix, bias ? "bias" : "weight");
	add_owned(D, n, q->ndim, shape, cat, q->dtype);
}

static void qkv_split(struct tensor_list *D, struct tensor_list *S, size_t i, const char *hf_prefix,
                      int bias)
{
	const struct st_write_tensor *t = &S->t[i];
	size_t each = numel_of(t) / 3;
	int64_t shape[2] = {t->shape[0] / 3, t->ndim == 2 ? t->shape[1] : 0};
	const char *part[3] = {"q_proj", "k_proj", "v_proj"};
	for (int p = 0; p < 3; p++) {
		float *d = malloc(each * sizeof *d);
		memcpy(d, S->data[i] + p * each, each * sizeof *d);
		char n[512];
		snprintf(n, sizeof n, "%sself_attn.%s.%s", hf_prefix, part[p],
		         bias ? "bias" : "weight");
		add_owned(D, n, t->ndim, shape, d, t->dtype);
	}
	free(S->data[i]);
	S->data[i] = NULL;
}

/* One tensor's name between HF and eosin: to_eosin picks the direction.
 * 1 mapped (*out, *transpose set), 2 a q/k/v part (handled per block), 0
 * not a CLIP tensor this layout covers. */
static int hf_map(const char *name, int to_eosin, char *out, size_t outsz, int *transpose,
                  char *prefix_from, char *prefix_to)
{
	for (size_t k = 0; k < sizeof HF_NAMES / sizeof HF_NAMES[0]; k++)
		if (!strcmp(name, to_eosin ? HF_NAMES[k].hf : HF_NAMES[k].eosin)) {
			snprintf(out, outsz, "%s", to_eosin ? HF_NAMES[k].eosin : HF_NAMES[k].hf);
			*transpose = HF_NAMES[k].transpose;
			return 1;
		}
	for (size_t k = 0; k < sizeof HF_TOWERS / sizeof HF_TOWERS[0]; k++) {
		const char *from = to_eosin ? HF_TOWERS[k].hf : HF_TOWERS[k].eosin;
		const char *to = to_eosin ? HF_TOWERS[k].eosin : HF_TOWERS[k].hf;
		size_t fl = strlen(from);
		char *end;
		if (strncmp(name, from, fl) || !isdigit((unsigned char)name[fl]))
			continue;
		long l = strtol(name + fl, &end, 10);
		if (*end != '.')
			return 0;
		const char *rest = end + 1;
		snprintf(prefix_from, 256, "%s%ld.", from, l);
		snprintf(prefix_to, 256, "%s%ld.", to, l);
		*transpose = 0;
		for (size_t b = 0; b < sizeof HF_BLOCK / sizeof HF_BLOCK[0]; b++)
			if (!strcmp(rest, to_eosin ? HF_BLOCK[b].hf : HF_BLOCK[b].eosin)) {
				snprintf(out, outsz, "%s%s", prefix_to,
				         to_eosin ? HF_BLOCK[b].eosin : HF_BLOCK[b].hf);
				return 1;
			}
		if (to_eosin && !strncmp(rest, "self_attn.", 10) &&
		    (strstr(rest, "_proj.weight") || strstr(rest, "_proj.bias")) &&
		    strchr("qkv", rest[10]) && !strncmp(rest + 11, "_proj.", 6))
			return 2;
		if (!to_eosin &&
		    (!strcmp(rest, "attn.in_proj_weight") || !strcmp(rest, "attn.in_proj_bias")))
			return 2;
		return 0;
	}
	return 0;
}

/* Tensors open_clip or a CLIPModel may hold that no eosin tower reads:
 * refused by name rather than dropped (a file that needs them would give
 * other embeddings than its own library does). */
static const char *uncovered(const char *name)
{
	static const struct {
		const char *part, *what;
	} U[] = {
	    {"attn_pool", "an attentional pooler (CoCa, CONCH)"},
	    {"visual.trunk.", "a timm trunk inside open_clip (convert the trunk as a timm ViT)"},
	    {"visual.head.", "a timm trunk's head inside open_clip"},
	    {"text.transformer.", "a Hugging Face text tower inside open_clip"},
	    {"text_decoder.", "a captioning decoder (CoCa)"},
	    {"visual.attnpool.", "a ModifiedResNet tower"},
	    {".ln_1_kv.", "cross-attention blocks"},
	};
	for (size_t i = 0; i < sizeof U / sizeof U[0]; i++)
		if (strstr(name, U[i].part))
			return U[i].what;
	return NULL;
}

/* S in the HF layout into D in eosin's (to_eosin), or eosin's into HF's. */
static void hf_convert(struct tensor_list *D, struct tensor_list *S, int to_eosin)
{
	for (size_t i = 0; i < S->n; i++) {
		if (!S->data[i])
			continue;
		const char *name = S->t[i].name;
		char out[512], pf[256], pt[256];
		int tr = 0;
		int r = hf_map(name, to_eosin, out, sizeof out, &tr, pf, pt);
		if (r == 1)
			move_tensor(D, S, i, out, tr);
		else if (r == 2 && to_eosin)
			qkv_join(D, S, pf, pt, !!strstr(name, ".bias"));
		else if (r == 2)
			qkv_split(D, S, i, pt, !!strstr(name, "_bias"));
		else
			errx(1, "%s: tensor '%s' is not in the %s CLIP layout eosin converts%s%s",
			     src_path, name, to_eosin ? "Hugging Face" : "eosin",
			     uncovered(name) ? ": " : "", uncovered(name) ? uncovered(name) : "");
	}
}

/* The source's tensors in eosin's names, checked. */
/* CONCH's names (its open_clip CoCa: a timm trunk under visual.trunk.,
 * the contrastive attentional pooler, ln_contrast and proj_contrast) and
 * eosin's. What CONCH's image embedding does not use (the captioning
 * pooler, the text tower and decoder) is dropped on import, and said. */
static const struct {
	const char *conch, *eosin;
} CONCH_NAMES[] = {
    {"visual.ln_contrast.", "attn_pool.ln."},
    {"visual.proj_contrast", "attn_pool.proj"},
    {"visual.attn_pool_contrast.", "attn_pool."},
    {"visual.trunk.", ""},
};
static const char *const CONCH_UNUSED[] = {"visual.attn_pool_caption.",
                                           "visual.ln_caption.",
                                           "text.",
                                           "text_decoder.",
                                           "logit_scale",
                                           NULL};

static void conch_convert(struct tensor_list *D, struct tensor_list *S, int to_eosin)
{
	size_t dropped = 0;
	for (size_t i = 0; i < S->n; i++) {
		const char *name = S->t[i].name;
		char out[512];
		int hit = 0;
		for (size_t k = 0; k < sizeof CONCH_NAMES / sizeof CONCH_NAMES[0] && !hit; k++) {
			const char *from = to_eosin ? CONCH_NAMES[k].conch : CONCH_NAMES[k].eosin;
			const char *to = to_eosin ? CONCH_NAMES[k].eosin : CONCH_NAMES[k].conch;
			if (!strncmp(name, from, strlen(from)) &&
			    (*from || strncmp(name, "attn_pool.", 10))) {
				snprintf(out, sizeof out, "%s%s", to, name + strlen(from));
				hit = 1;
			}
		}
		for (int k = 0; to_eosin && !hit && CONCH_UNUSED[k]; k++)
			if (!strncmp(name, CONCH_UNUSED[k], strlen(CONCH_UNUSED[k])))
				hit = 2;
		if (!hit)
			errx(
			    1,
			    "%s: tensor '%s' is not in CONCH's layout (visual.trunk., "
			    "visual.attn_pool_contrast., visual.ln_contrast, visual.proj_contrast)",
			    src_path, name);
		if (hit == 1)
			move_tensor(D, S, i, out, 0);
		else
			dropped++;
	}
	if (dropped)
		fprintf(stderr,
		        "eosin-make-model: %s: left out %zu tensors the image embedding does "
		        "not use (the captioning pooler, the text tower and decoder)\n",
		        src_path, dropped);
	if (to_eosin && find_name(D, "attn_pool.query") < 0)
		errx(1, "%s: no visual.attn_pool_contrast.query: not CONCH's vision tower",
		     src_path);
}

static void import_layout(struct tensor_list *L, enum layout lay, int vit)
{
	if (lay == LAYOUT_CONCH) {
		struct tensor_list D = {0};
		conch_convert(&D, L, 1);
		list_free(L);
		*L = D;
		A.pool = POOL_ATTN_;
		return;
	}
	if (lay == LAYOUT_HF) {
		struct tensor_list D = {0};
		hf_convert(&D, L, 1);
		list_free(L);
		*L = D;
		return;
	}
	for (size_t i = 0; i < L->n && !vit; i++) {
		const char *why = uncovered(L->t[i].name);
		if (why)
			errx(1, "%s: tensor '%s' is %s, which eosin does not run", src_path,
			     L->t[i].name, why);
	}
}

/* Random eosin-layout tensors written in another layout (tests). */
static void export_layout(struct tensor_list *L, enum layout lay)
{
	long ls = find_name(L, "logit_scale");
	if (lay != LAYOUT_EOSIN && ls >= 0)
		L->t[ls].ndim = 0; /* a 0-d parameter in both libraries */
	if (lay != LAYOUT_HF && lay != LAYOUT_CONCH)
		return;
	struct tensor_list D = {0};
	if (lay == LAYOUT_CONCH) {
		conch_convert(&D, L, 0);
		/* what CONCH holds besides: its captioning pooler (4 queries here) */
		add_attn_pool(&D, "visual.attn_pool_caption.", A.dim, A.dim, 4);
		ADD(&D, "visual.ln_caption.weight", INIT_ONES_NOISE, 0.1, A.dim);
		ADD(&D, "visual.ln_caption.bias", INIT_NORMAL, 0.05, A.dim);
	} else {
		hf_convert(&D, L, 0);
	}
	list_free(L);
	*L = D;
}

static const struct st_write_tensor *list_get(const struct tensor_list *L, const char *name)
{
	long i = find_name(L, name);
	return i < 0 ? NULL : &L->t[i];
}

static int count_blocks(const struct tensor_list *L, const char *fmt)
{
	char n[256];
	int k = 0;
	for (;; k++) {
		snprintf(n, sizeof n, fmt, k);
		if (find_name(L, n) < 0)
			return k;
	}
}

/* A size the tensors say, against the flag when one was given. */
static void agree(int *v, int from_tensors, const char *flag, int given)
{
	if (given && *v != from_tensors)
		errx(EXIT_USAGE, "%s %d: %s's tensors say %d", flag, *v, src_path, from_tensors);
	*v = from_tensors;
}

/* A converted CLIP's sizes from its tensors, so that only what tensors
 * cannot say (heads, activation) is stated. */
static void clip_sizes_from_tensors(const struct tensor_list *L, int vision, int text)
{
	const struct st_write_tensor *t;
	if (vision) {
		const struct st_write_tensor *pos = list_get(L, "visual.positional_embedding");
		if (!(t = list_get(L, "visual.conv1.weight")) || t->ndim != 4 || !pos ||
		    pos->ndim != 2)
			errx(1,
			     "%s: no CLIP vision tower (visual.conv1.weight, "
			     "visual.positional_embedding) after conversion",
			     src_path);
		agree(&A.dim, (int)t->shape[0], "--dim", A.set & SET_DIM);
		agree(&A.patch, (int)t->shape[2], "--patch", A.set & SET_PATCH);
		int g = 0;
		while ((int64_t)(g + 1) * (g + 1) + 1 <= pos->shape[0])
			g++;
		if ((int64_t)g * g + 1 != pos->shape[0])
			errx(1, "%s: %lld position rows are not a square grid and a class token",
			     src_path, (long long)pos->shape[0]);
		agree(&A.img, g * A.patch, "--img", A.set & SET_IMG);
		agree(&A.depth, count_blocks(L, "visual.transformer.resblocks.%d.ln_1.weight"),
		      "--depth", A.set & SET_DEPTH);
		if ((t = list_get(L, "visual.proj")) && t->ndim == 2)
			agree(&A.embed, (int)t->shape[1], "--embed", A.set & SET_EMBED);
	}
	if (text) {
		if (!(t = list_get(L, "token_embedding.weight")) || t->ndim != 2)
			errx(1, "%s: no CLIP text tower (token_embedding.weight) after conversion",
			     src_path);
		agree(&A.width, (int)t->shape[1], "--width", A.set & SET_WIDTH);
		agree(&A.vocab_size, (int)t->shape[0], "--vocab-size", A.set & SET_VOCAB);
		if ((t = list_get(L, "positional_embedding")) && t->ndim == 2)
			agree(&A.context, (int)t->shape[0], "--context", A.set & SET_CONTEXT);
		agree(&A.layers, count_blocks(L, "transformer.resblocks.%d.ln_1.weight"),
		      "--layers", A.set & SET_LAYERS);
		if ((t = list_get(L, "text_projection")) && t->ndim == 2)
			agree(&A.embed, (int)t->shape[1], "--embed",
			      A.set & (SET_EMBED | SET_EMBED_V));
	}
}

/* What a Hugging Face config.json or an open_clip_config.json beside the
 * source says of heads and activation; flags win. */
static void clip_config_beside(enum layout lay, int vision, int text)
{
	char *dup = strdup(src_path), path[4096];
	snprintf(path, sizeof path, "%s/%s", dirname(dup),
	         lay == LAYOUT_HF ? "config.json" : "open_clip_config.json");
	free(dup);
	json_t *o = json_load_file(path, 0, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return;
	}
	json_t *v, *sub;
	int quick = -1;
	if (lay == LAYOUT_HF) {
		const char *tower[2] = {"vision_config", "text_config"};
		for (int k = 0; k < 2; k++) {
			if (!json_is_object(sub = json_object_get(o, tower[k])) ||
			    !(k ? text : vision))
				continue;
			const char *act = json_string_value(json_object_get(sub, "hidden_act"));
			if (act) {
				int q = !strcmp(act, "quick_gelu");
				if (!q && strcmp(act, "gelu"))
					errx(1, "%s: hidden_act '%s' is not gelu or quick_gelu",
					     path, act);
				if (quick >= 0 && q != quick)
					errx(1,
					     "%s: the towers' hidden_act differ, which eosin does "
					     "not run",
					     path);
				quick = q;
			}
			if (json_is_integer(v = json_object_get(sub, "num_attention_heads"))) {
				int *h = k ? &A.text_heads : &A.heads;
				if (!(A.set & (k ? SET_TEXT_HEADS : SET_HEADS)))
					*h = (int)json_integer_value(v);
				A.set |= k ? SET_TEXT_HEADS : SET_HEADS;
			}
		}
	} else {
		if (json_is_object(sub = json_object_get(o, "model_cfg")))
			o = (json_incref(sub), json_decref(o), sub);
		quick = json_is_true(json_object_get(o, "quick_gelu"));
		json_t *vc = json_object_get(o, "vision_cfg"), *tc = json_object_get(o, "text_cfg");
		if (vision && json_is_object(vc) && !(A.set & SET_HEADS)) {
			json_t *hw = json_object_get(vc, "head_width");
			A.heads = A.dim / (json_is_integer(hw) ? (int)json_integer_value(hw) : 64);
			A.set |= SET_HEADS;
		}
		if (text && json_is_object(tc) && !(A.set & SET_TEXT_HEADS)) {
			json_t *h = json_object_get(tc, "heads");
			A.text_heads = json_is_integer(h) ? (int)json_integer_value(h) : 8;
			A.set |= SET_TEXT_HEADS;
		}
	}
	if (quick >= 0 && A.act < 0)
		A.act = quick;
	fprintf(stderr, "eosin-make-model: read %s\n", path);
	json_decref(o);
}

/* Each tensor stored in the asked dtype (or the source's): the f16 and
 * bf16 copies, one per tensor (NULL where f32 stays). */
static void **pack_tensors(struct tensor_list *L, const struct args *a)
{
	void **packed = calloc(L->n, sizeof *packed);
	for (size_t i = 0; i < L->n; i++) {
		struct st_write_tensor *t = &L->t[i];
		if (a->dtype_set)
			t->dtype = a->dt == VEC_F32 ? ST_F32 : a->dt == VEC_F16 ? ST_F16 : ST_BF16;
		if (t->dtype == ST_F32)
			continue;
		size_t numel = numel_of(t);
		uint16_t *h = malloc(numel * 2 + 2);
		for (size_t k = 0; k < numel; k++)
			h[k] = t->dtype == ST_F16 ? f32_to_f16(L->data[i][k]) : f32_to_bf16(L->data[i][k]);
		packed[i] = h;
		t->data = h;
	}
	return packed;
}

/* The file, with the architecture, the name and the vocabulary's absolute
 * path in its __metadata__ (so that eosin-encode finds it from any folder
 * and, if it moved with the model, by its name beside it). */
static void write_model(const struct tensor_list *L, const struct args *a, int vit, int clip,
                        int text)
{
	char *cfg = config_json(vit, clip, (clip && !vision_only) || text);
	char def_name[64];
	snprintf(def_name, sizeof def_name, "eosin-%s-%s", A.arch, a->from ? "converted" : "random");
	const char *meta[16];
	int nm = 0;
	meta[nm++] = "format";
	meta[nm++] = "pt";
	meta[nm++] = "name";
	meta[nm++] = a->name ? a->name : def_name;
	meta[nm++] = vit ? "timm_config" : "clip_config";
	meta[nm++] = cfg;
	char *vocab_abs = NULL;
	if (a->vocab) {
		if (!(vocab_abs = realpath(a->vocab, NULL)))
			err(1, "%s", a->vocab);
		meta[nm++] = "vocab";
		meta[nm++] = vocab_abs;
	}
	meta[nm] = NULL;
	if (safetensors_write(a->out, L->t, L->n, meta) < 0)
		die_lib();
	free(cfg);
	free(vocab_abs);
}

/* --from: the source's tensors in eosin's names, and for CLIP the sizes
 * they say, with what they cannot say (heads, activation) from the flags
 * or the config beside the source; refused when still unstated. */
static void convert_source(struct tensor_list *L, const struct args *a, int vit, int clip, int text)
{
	src_path = a->from;
	import_layout(L, a->layout, vit);
	if (vit)
		return;
	/* a vision tower alone (HF's CLIPVisionModelWithProjection) */
	vision_only = clip && find_name(L, "token_embedding.weight") < 0;
	int has_text = text || (clip && !vision_only);
	clip_sizes_from_tensors(L, clip, has_text);
	if (a->layout != LAYOUT_EOSIN)
		clip_config_beside(a->layout, clip, has_text);
	if (a->layout != LAYOUT_EOSIN && A.act < 0)
		errx(EXIT_USAGE,
		     "%s: say --act gelu or --act quick-gelu: a %s CLIP's activation is "
		     "not in its tensors (and no %s beside it says)",
		     a->from, a->layout == LAYOUT_HF ? "Hugging Face" : "open_clip",
		     a->layout == LAYOUT_HF ? "config.json" : "open_clip_config.json");
	if (!(A.set & SET_TEXT_HEADS) && has_text) {
		if (A.width % 64)
			errx(EXIT_USAGE,
			     "%s: say --text-heads: text width %d is not a multiple of 64", a->from,
			     A.width);
		A.text_heads = A.width / 64;
	}
	if (clip && !(A.set & SET_HEADS) && A.dim % 64)
		errx(EXIT_USAGE, "%s: say --heads: vision width %d is not a multiple of 64",
		     a->from, A.dim);
	if ((has_text && A.width % A.text_heads) ||
	    (clip && A.dim % ((A.set & SET_HEADS) ? A.heads : 64)))
		errx(EXIT_USAGE, "%s: the heads do not divide the widths (%d / %d, %d / %d)",
		     a->from, A.dim, (A.set & SET_HEADS) ? A.heads : 64, A.width, A.text_heads);
}

int main(int argc, char **argv)
{
	struct args a;
	int vit, clip, text;
	parse_options(argc, argv, &a);
	check_arch(&vit, &clip, &text);
	if (vit && a.layout != LAYOUT_EOSIN && a.layout != LAYOUT_CONCH)
		errx(EXIT_USAGE,
		     "--layout %s: only for --arch clip or clip-text (a ViT's layout is "
		     "timm's, or CONCH's)",
		     a.layout == LAYOUT_HF ? "hf" : "open_clip");
	if (!vit && a.layout == LAYOUT_CONCH)
		errx(EXIT_USAGE, "--layout conch: only with --arch vit (CONCH's vision tower; its "
		                 "text tower is not CLIP's)");
	if (vit && a.layout == LAYOUT_CONCH)
		A.pool = POOL_ATTN_;
	rng_state = (uint64_t)a.seed;
	struct tensor_list L = {0};
	struct safetensors src;
	int have_src = 0;
	if (a.from) {
		/* HF exports before transformers 4.31 persist position_ids (I64) */
		static const char *const buffers[] = {".position_ids", NULL};
		size_t nskip = 0;
		if (safetensors_open_skipping(&src, a.from, a.layout == LAYOUT_HF ? buffers : NULL,
		                              &nskip) < 0)
			die_lib();
		if (nskip)
			fprintf(stderr,
			        "eosin-make-model: %s: left out %zu integer position_ids "
			        "buffer%s\n",
			        a.from, nskip, nskip == 1 ? "" : "s");
		have_src = 1;
		copy_tensors(&L, &src, a.dtype_set);
		convert_source(&L, &a, vit, clip, text);
	} else if (vit) {
		make_vit(&L);
		export_layout(&L, a.layout);
	} else {
		if (clip)
			make_clip_vision(&L);
		make_clip_text(&L);
		export_layout(&L, a.layout);
	}
	void **packed = pack_tensors(&L, &a);
	write_model(&L, &a, vit, clip, text);
	for (size_t i = 0; i < L.n; i++) {
		free((char *)L.t[i].name);
		free(L.data[i]);
		free(packed[i]);
	}
	free(packed);
	free(L.t);
	free(L.data);
	if (have_src)
		safetensors_close(&src);
	return 0;
}
