/*
 * eosin-make-model: write a model in the safetensors layout eosin-encode
 * reads, with its architecture in __metadata__, either with seeded random
 * weights (tests, demos, benchmarks) or with the weights of another
 * safetensors file (a converted UNI, CONCH, PLIP or QuiltNet checkpoint).
 * See eosin-make-model(1).
 */
#include "prog.h"
#include "model/safetensors.h"
#include "core/vec.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>

static void usage(void)
{
	fprintf(stderr,
	        "usage: eosin-make-model --arch vit|clip|clip-text --out FILE [--seed N]\n"
	        "       [--dtype f32|f16|bf16] [--name NAME] [--vocab FILE] [--from FILE]\n"
	        "       [--dim N] [--depth N] [--heads N] [--patch N] [--img N] [--reg N]\n"
	        "       [--mlp-ratio X] [--mlp gelu|swiglu] [--pool token|avg] [--no-embed-class] [--no-layerscale]\n"
	        "       [--dynamic] [--width N] [--layers N] [--text-heads N] [--embed N]\n"
	        "       [--context N] [--vocab-size N]\n");
	exit(EXIT_USAGE);
}

/* splitmix64, then Box-Muller: the same seed gives the same file. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
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

enum init { INIT_NORMAL, INIT_ONES_NOISE, INIT_UNIFORM_LS };

/* Add a float32 tensor filled by `init` with scale s. */
static void add(struct tensor_list *L, const char *name, int ndim, const int64_t *shape,
                enum init init, double s)
{
	if (L->n == L->cap) {
		L->cap = L->cap ? 2 * L->cap : 64;
		L->t = realloc(L->t, L->cap * sizeof *L->t);
		L->data = realloc(L->data, L->cap * sizeof *L->data);
	}
	size_t numel = 1;
	struct st_write_tensor *t = &L->t[L->n];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	t->dtype = ST_F32;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++) {
		t->shape[i] = shape[i];
		numel *= (size_t)shape[i];
	}
	float *d = malloc(numel * sizeof *d);
	for (size_t i = 0; i < numel; i++)
		d[i] = init == INIT_NORMAL       ? (float)(s * rng_normal())
		       : init == INIT_ONES_NOISE ? (float)(1.0 + s * rng_normal())
		                                 : (float)(0.05 + s * rng_uniform());
	L->data[L->n] = d;
	t->data = d;
	L->n++;
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
	int dim, depth, heads, patch, img, reg, no_embed_class, layerscale, dynamic, avg;
	double mlp_ratio;
	int width, layers, text_heads, embed, context, vocab_size;
	int heads_set, swiglu;
} A = {NULL, 192, 4, 3, 16, 224, 0, 0, 1, 0, 0, 4.0, 64, 2, 0, 64, 77, 49408, 0, 0};

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
		add_block(L, p, 1, W, 4 * W, 0, 0);
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
		add_block(L, p, 1, W, 4 * W, 0, 0);
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
		json_object_set_new(o, "global_pool", json_string(A.avg ? "avg" : "token"));
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
		json_object_set_new(o, "vision_heads", json_integer(A.dim / 64 ? A.dim / 64 : 1));
		json_object_set_new(o, "vision_patch_size", json_integer(A.patch));
		json_object_set_new(o, "image_resolution", json_integer(A.img));
	}
	if (vision || text)
		json_object_set_new(o, "embed_dim", json_integer(A.embed));
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
	long seed;
	enum vec_dtype dt;
	int dtype_set;
};

static const struct option long_opts[] = {
    {"arch", required_argument, 0, 'a'},       {"dim", required_argument, 0, 'd'},
    {"depth", required_argument, 0, 'D'},      {"heads", required_argument, 0, 'H'},
    {"patch", required_argument, 0, 'p'},      {"img", required_argument, 0, 'i'},
    {"reg", required_argument, 0, 'r'},        {"mlp-ratio", required_argument, 0, 'M'},
    {"pool", required_argument, 0, 'P'},       {"no-embed-class", no_argument, 0, 'N'},
    {"no-layerscale", no_argument, 0, 'L'},    {"dynamic", no_argument, 0, 'y'},
    {"width", required_argument, 0, 'w'},      {"layers", required_argument, 0, 'l'},
    {"text-heads", required_argument, 0, 'T'}, {"embed", required_argument, 0, 'e'},
    {"context", required_argument, 0, 'c'},    {"vocab-size", required_argument, 0, 'V'},
    {"seed", required_argument, 0, 's'},       {"dtype", required_argument, 0, 't'},
    {"name", required_argument, 0, 'n'},       {"vocab", required_argument, 0, 'v'},
    {"from", required_argument, 0, 'f'},       {"out", required_argument, 0, 'o'},
    {"mlp", required_argument, 0, 'G'},        {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

static void parse_options(int argc, char **argv, struct args *a)
{
	*a = (struct args){.dt = VEC_F32};
	int c;
	while ((c = getopt_long(argc, argv, "o:h", long_opts, NULL)) != -1) {
		switch (c) {
		case 'a': A.arch = optarg; break;
		case 'd': A.dim = (int)prog_long("--dim", optarg, 1, 16384); break;
		case 'D': A.depth = (int)prog_long("--depth", optarg, 1, 256); break;
		case 'H':
			A.heads = (int)prog_long("--heads", optarg, 1, 1024);
			A.heads_set = 1;
			break;
		case 'p': A.patch = (int)prog_long("--patch", optarg, 1, 1024); break;
		case 'i': A.img = (int)prog_long("--img", optarg, 1, 8192); break;
		case 'r': A.reg = (int)prog_long("--reg", optarg, 0, 64); break;
		case 'M': A.mlp_ratio = prog_double("--mlp-ratio", optarg, 0.1, 64); break;
		case 'P':
			if (strcmp(optarg, "token") && strcmp(optarg, "avg"))
				errx(EXIT_USAGE, "--pool: '%s' is not token or avg", optarg);
			A.avg = !strcmp(optarg, "avg");
			break;
		case 'N': A.no_embed_class = 1; break;
		case 'G':
			if (strcmp(optarg, "gelu") && strcmp(optarg, "swiglu"))
				errx(EXIT_USAGE, "--mlp: '%s' is not gelu or swiglu", optarg);
			A.swiglu = !strcmp(optarg, "swiglu");
			break;
		case 'L': A.layerscale = 0; break;
		case 'y': A.dynamic = 1; break;
		case 'w': A.width = (int)prog_long("--width", optarg, 1, 16384); break;
		case 'l': A.layers = (int)prog_long("--layers", optarg, 1, 256); break;
		case 'T': A.text_heads = (int)prog_long("--text-heads", optarg, 1, 1024); break;
		case 'e': A.embed = (int)prog_long("--embed", optarg, 1, 16384); break;
		case 'c': A.context = (int)prog_long("--context", optarg, 2, 4096); break;
		case 'V': A.vocab_size = (int)prog_long("--vocab-size", optarg, 2, 1 << 24); break;
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
}

/* Every tensor of src, as f32, keeping its dtype unless --dtype is given. */
static void copy_tensors(struct tensor_list *L, const struct safetensors *src, int dtype_set)
{
	for (size_t i = 0; i < src->ntensors; i++) {
		const struct st_tensor *t = &src->tensors[i];
		add(L, t->name, t->ndim, t->shape, INIT_NORMAL, 0.0);
		st_tensor_to_f32(t, L->data[L->n - 1]);
		if (!dtype_set)
			L->t[L->n - 1].dtype = t->dtype;
	}
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
		size_t numel = 1;
		for (int d = 0; d < t->ndim; d++)
			numel *= (size_t)t->shape[d];
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
	char *cfg = config_json(vit, clip, clip || text);
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

int main(int argc, char **argv)
{
	struct args a;
	int vit, clip, text;
	parse_options(argc, argv, &a);
	check_arch(&vit, &clip, &text);
	rng_state = (uint64_t)a.seed;
	struct tensor_list L = {0};
	struct safetensors src;
	int have_src = 0;
	if (a.from) {
		if (safetensors_open(&src, a.from) < 0)
			die_lib();
		have_src = 1;
		copy_tensors(&L, &src, a.dtype_set);
	} else if (vit) {
		make_vit(&L);
	} else {
		if (clip)
			make_clip_vision(&L);
		make_clip_text(&L);
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
