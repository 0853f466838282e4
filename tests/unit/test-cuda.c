/*
 * test-cuda.c: the GPU path of eosin-encode (model/gpu.c and the CUDA
 * plugin).
 *
 * Everywhere: how the plugin is found and why opening it fails, and the
 * two-slot loop of gpu_vit_encode driven by a fake plugin table that
 * reads each slot's pixels only when the slot is waited for (as a device
 * copy would), so that refilling a slot in flight, losing a chunk or
 * reordering shows in the embeddings.
 *
 * With a GPU (the plugin built and a device found; otherwise those tests
 * are skipped, saying what is missing): the reference timm ViT (token,
 * avg, dynamic 256 px, no_embed_class) and the CLIP vision and text
 * towers on the GPU against the CPU path and the stored PyTorch outputs:
 * cosine > 0.999 per embedding in bf16; max abs error 1e-3 in fp32; odd
 * batches (1, 3, 257) and one of 600 images over three chunks of 256
 * (both slots used twice).
 */
#include "core/error.h"
#include "model/clip_text.h"
#include "model/gpu.h"
#include "model/vit.h"
#include "ref.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void skip(const char *fmt, const char *why)
{
	printf("ok %d # skip ", ++tap_n);
	printf(fmt, why);
	printf("\n");
}

/* ---- the fake plugin ---- */

struct fake {
	int busy[2];
	const float *pix[2];
	int B[2], H, W;
	int submits, max_inflight, misuse, fail_at;
};
static struct fake F;
static char fake_err[128];

static const char *fake_last_error(void) { return fake_err; }
static int fake_probe(char *name, size_t n)
{
	snprintf(name, n, "fake device");
	return 0;
}
static void *fake_host_alloc(size_t bytes) { return malloc(bytes); }
static void fake_host_free(void *p) { free(p); }
static void *fake_vit_create(const struct gpu_vit_desc *d, enum gpu_precision p, int mb)
{
	(void)d, (void)p, (void)mb;
	memset(&F, 0, sizeof F);
	F.fail_at = -1;
	return &F;
}
static int fake_set_pos(void *m, const float *pos, int gh, int gw)
{
	(void)m, (void)pos, (void)gh, (void)gw;
	return 0;
}
static int fake_submit(void *m, int slot, const float *pixels, int B, int H, int W)
{
	(void)m;
	if (F.busy[slot])
		F.misuse++;
	if (F.submits++ == F.fail_at) {
		snprintf(fake_err, sizeof fake_err, "planted failure");
		return -1;
	}
	F.busy[slot] = 1;
	F.pix[slot] = pixels;
	F.B[slot] = B;
	F.H = H;
	F.W = W;
	int n = F.busy[0] + F.busy[1];
	if (n > F.max_inflight)
		F.max_inflight = n;
	return 0;
}
/* pooled (B, 2): the image's first pixel (its index, as filled) and the
 * mean of its plane (the same unless the plane was overwritten). */
static int fake_wait(void *m, int slot, float *pooled)
{
	(void)m;
	if (!F.busy[slot])
		F.misuse++;
	size_t plane = (size_t)3 * F.H * F.W;
	for (int b = 0; b < F.B[slot]; b++) {
		const float *p = F.pix[slot] + b * plane;
		double s = 0;
		for (size_t i = 0; i < plane; i++)
			s += p[i];
		pooled[2 * b] = p[0];
		pooled[2 * b + 1] = (float)(s / plane);
	}
	F.busy[slot] = 0;
	return 0;
}
static void fake_vit_destroy(void *m) { (void)m; }

static const struct eosin_cuda_plugin FAKE = {
    EOSIN_CUDA_ABI, fake_last_error, fake_probe,     fake_host_alloc, fake_host_free,
    fake_vit_create, fake_set_pos,   fake_submit,    fake_wait,       fake_vit_destroy,
    NULL,            NULL,           NULL,
};

/* image i: every pixel i; image i with i % 7 == 3 fails. */
static int fill_index(void *ctx, size_t i, float *dst)
{
	(void)ctx;
	if (i % 7 == 3)
		return -1;
	for (size_t k = 0; k < (size_t)3 * 16 * 16; k++)
		dst[k] = (float)i;
	return 0;
}

static void test_loop(void)
{
	ok(gpu_chunks(1, 256) == 1 && gpu_chunks(256, 256) == 1 && gpu_chunks(257, 256) == 2 &&
	       gpu_chunks(600, 256) == 3 && gpu_chunks(0, 256) == 0,
	   "chunks: 1, 256, 257, 600, 0 images in 256s");
	struct gpu g = {0};
	snprintf(g.path, sizeof g.path, "fake");
	ok(gpu_open_table(&g, &FAKE) == 0 && !strcmp(g.device, "fake device"), "fake table opens");
	struct eosin_cuda_plugin old = FAKE;
	old.abi = EOSIN_CUDA_ABI + 1;
	struct gpu g2 = {0};
	ok(gpu_open_table(&g2, &old) < 0 && strstr(eosin_errmsg(), "interface"),
	   "another interface version refused: %s", eosin_errmsg());

	/* A 16x16 model of one patch: one prefix token, a 1x1 grid. */
	float pos[2 * 2] = {0}, patch_w[2 * 768] = {0};
	struct vit m;
	memset(&m, 0, sizeof m);
	m.cfg.patch = 16, m.cfg.img_size = 16, m.cfg.in_chans = 3, m.cfg.dim = 2;
	m.cfg.class_token = 1, m.cfg.heads = 1, m.cfg.hidden = 2;
	m.out_dim = 2, m.pos_rows = 2, m.pos_grid = 1, m.pos = pos, m.patch_w = patch_w;
	struct gpu_vit gv;
	const size_t sizes[] = {1, 3, 255, 256, 257, 512, 600};
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		size_t n = sizes[s];
		ok(gpu_vit_create(&gv, &g, &m, GPU_BF16, 256) == 0, "create, max batch 256");
		float *out = malloc(n * 2 * sizeof *out);
		int r = gpu_vit_encode(&gv, n, 16, 16, fill_index, NULL, out);
		int good = r == 0;
		for (size_t i = 0; i < n && good; i++) {
			float want = i % 7 == 3 ? 0.f : (float)i;
			good = out[2 * i] == want && out[2 * i + 1] == want;
			if (!good)
				printf("# image %zu: got %g %g, want %g\n", i, out[2 * i], out[2 * i + 1],
				       want);
		}
		ok(good && !F.misuse && F.submits == (int)gpu_chunks(n, 256) &&
		       F.max_inflight == (n > 256 ? 2 : 1),
		   "%zu images: in order, failed fills zeroed, %d submits, %d in flight at most", n,
		   F.submits, F.max_inflight);
		free(out);
		gpu_vit_free(&gv);
	}
	ok(gpu_vit_create(&gv, &g, &m, GPU_BF16, 256) == 0, "create again");
	F.fail_at = 1;
	float *out = malloc(600 * 2 * sizeof *out);
	ok(gpu_vit_encode(&gv, 600, 16, 16, fill_index, NULL, out) < 0 &&
	       strstr(eosin_errmsg(), "planted failure") && !F.busy[0] && !F.busy[1],
	   "a failed submit is reported and the slot in flight is waited for: %s", eosin_errmsg());
	ok(gpu_vit_encode(&gv, 3, 32, 32, fill_index, NULL, out) < 0 &&
	       strstr(eosin_errmsg(), "dynamic size is off"),
	   "a size the model does not take is refused: %s", eosin_errmsg());
	free(out);
	gpu_vit_free(&gv);
}

static void test_open_errors(void)
{
	struct gpu g;
	setenv("EOSIN_CUDA_PLUGIN", "/nonexistent/eosin-cuda.so", 1);
	ok(gpu_open(&g) < 0 && strstr(eosin_errmsg(), "no CUDA plugin") &&
	       strstr(eosin_errmsg(), "/nonexistent/eosin-cuda.so"),
	   "missing plugin: %s", eosin_errmsg());
	char junk[] = "/tmp/eosin-test-cuda-XXXXXX";
	int fd = mkstemp(junk);
	if (fd >= 0) {
		if (write(fd, "not a library\n", 14) != 14)
			perror("write");
		close(fd);
	}
	setenv("EOSIN_CUDA_PLUGIN", junk, 1);
	ok(gpu_open(&g) < 0 && strstr(eosin_errmsg(), "cannot load the CUDA plugin"),
	   "a file that is not a library: %s", eosin_errmsg());
	unlink(junk);
	unsetenv("EOSIN_CUDA_PLUGIN");
	char path[4096];
	gpu_plugin_path(path, sizeof path);
	ok(strstr(path, "/../lib/eosin-cuda.so") != NULL, "default plugin path beside the program: %s",
	   path);
}

/* ---- the real GPU ---- */

struct images {
	const float *x;
	int nsrc;
	size_t plane;
};

static int fill_cycle(void *ctx, size_t i, float *dst)
{
	const struct images *im = ctx;
	memcpy(dst, im->x + (i % im->nsrc) * im->plane, im->plane * sizeof(float));
	return 0;
}

static double cosine(const float *a, const float *b, int n)
{
	double ab = 0, aa = 0, bb = 0;
	for (int i = 0; i < n; i++) {
		ab += (double)a[i] * b[i];
		aa += (double)a[i] * a[i];
		bb += (double)b[i] * b[i];
	}
	return ab / (sqrt(aa * bb) + 1e-30);
}

/* got (n, D) against want (i % nsrc, D): worst cosine and max abs error. */
static void compare(const float *got, const float *want, size_t n, int nsrc, int D, double *cmin,
                    double *emax)
{
	*cmin = 1, *emax = 0;
	for (size_t i = 0; i < n; i++) {
		const float *w = want + (i % nsrc) * D;
		double c = cosine(got + i * D, w, D);
		if (c < *cmin)
			*cmin = c;
		double e = max_abs_diff(got + i * D, w, D);
		if (e > *emax)
			*emax = e;
	}
}

static int tolerable(enum gpu_precision p, double cmin, double emax)
{
	return p == GPU_FP32 ? emax <= 1e-3 : cmin > 0.999;
}

static const char *PREC[2] = {"bf16", "fp32"};

static void vit_case(struct gpu *g, const char *what, const struct vit_overrides *ov,
                     const float *x, int nsrc, int side, const char *ref)
{
	struct safetensors st;
	struct vit m;
	if (safetensors_open(&st, ref_path("vit_weights.safetensors")) < 0 ||
	    vit_load(&m, &st, "vit_weights.safetensors", ov) < 0) {
		ok(0, "%s: load: %s", what, eosin_errmsg());
		return;
	}
	int D = m.out_dim;
	float *cpu = malloc((size_t)nsrc * D * sizeof *cpu);
	ok(vit_forward(&m, x, nsrc, side, side, cpu, NULL, NULL) == 0, "%s: CPU forward", what);
	float *want = ref ? ref_read(ref, (size_t)nsrc * D, 4) : NULL;
	struct images im = {x, nsrc, (size_t)3 * side * side};
	for (int p = 0; p < 2; p++) {
		struct gpu_vit gv;
		if (!ok(gpu_vit_create(&gv, g, &m, (enum gpu_precision)p, 256) == 0, "%s %s: upload: %s",
		        what, PREC[p], eosin_errmsg()))
			continue;
		const size_t sizes[] = {(size_t)nsrc, 1, 3, 257, 600};
		for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
			size_t n = sizes[s];
			float *out = malloc(n * D * sizeof *out);
			double cmin, emax;
			int r = gpu_vit_encode(&gv, n, side, side, fill_cycle, &im, out);
			compare(out, cpu, n, nsrc, D, &cmin, &emax);
			ok(r == 0 && tolerable(p, cmin, emax),
			   "%s %s, %zu images: GPU vs CPU cosine >= %.6f, max abs error %.2g", what, PREC[p],
			   n, cmin, emax);
			if (want && n == (size_t)nsrc) {
				compare(out, want, n, nsrc, D, &cmin, &emax);
				ok(tolerable(p, cmin, emax), "%s %s: GPU vs %s cosine >= %.6f, max abs error %.2g",
				   what, PREC[p], ref, cmin, emax);
			}
			free(out);
		}
		gpu_vit_free(&gv);
	}
	free(want);
	free(cpu);
	vit_free(&m);
	safetensors_close(&st);
}

static void clip_case(struct gpu *g, const float *x224)
{
	struct safetensors st;
	if (safetensors_open(&st, ref_path("clip_weights.safetensors")) < 0) {
		ok(0, "clip: open: %s", eosin_errmsg());
		return;
	}
	struct vit_overrides ov = VIT_OVERRIDES_NONE;
	vit_case(g, "clip vision", &ov, x224, 4, 224, NULL);
	struct vit m;
	float *want = ref_read("clip_image_features.f32", 4 * 64, 4);
	if (vit_load(&m, &st, "clip_weights.safetensors", &ov) == 0 && want) {
		struct images im = {x224, 4, (size_t)3 * 224 * 224};
		for (int p = 0; p < 2; p++) {
			struct gpu_vit gv;
			float out[4 * 64];
			double cmin = 0, emax = 1;
			if (gpu_vit_create(&gv, g, &m, (enum gpu_precision)p, 256) == 0 &&
			    gpu_vit_encode(&gv, 4, 224, 224, fill_cycle, &im, out) == 0)
				compare(out, want, 4, 4, 64, &cmin, &emax);
			ok(tolerable(p, cmin, emax),
			   "clip vision %s vs clip_image_features.f32: cosine >= %.6f, max abs %.2g", PREC[p],
			   cmin, emax);
			gpu_vit_free(&gv);
		}
		vit_free(&m);
	}
	free(want);
	struct clip_text t;
	int32_t *ids = ref_read("clip_text_tokens.i32", 8 * 77, 4);
	float *twant = ref_read("clip_text_features.f32", 8 * 64, 4);
	if (ok(clip_text_load(&t, &st, "clip_weights.safetensors") == 0 && ids && twant,
	       "clip text: load")) {
		float cpu[8 * 64];
		ok(clip_text_forward(&t, ids, 8, cpu) == 0, "clip text: CPU forward");
		for (int p = 0; p < 2; p++) {
			struct gpu_text gt;
			float out[8 * 64];
			double c1 = 0, e1 = 1, c2 = 0, e2 = 1;
			if (gpu_text_create(&gt, g, &t, (enum gpu_precision)p) == 0 &&
			    gpu_text_forward(&gt, ids, 8, out) == 0) {
				compare(out, cpu, 8, 8, 64, &c1, &e1);
				compare(out, twant, 8, 8, 64, &c2, &e2);
			}
			ok(tolerable(p, c1, e1) && tolerable(p, c2, e2),
			   "clip text %s: GPU vs CPU cosine >= %.6f (max abs %.2g), vs "
			   "clip_text_features.f32 >= %.6f (%.2g)",
			   PREC[p], c1, e1, c2, e2);
			gpu_text_free(&gt);
		}
		clip_text_free(&t);
	}
	free(ids);
	free(twant);
	safetensors_close(&st);
}

static void test_gpu(void)
{
	struct gpu g;
	if (gpu_open(&g) < 0) {
		skip("GPU parity: %s", eosin_errmsg());
		return;
	}
	printf("# device: %s\n", g.device);
	if (!ref_find()) {
		skip("GPU parity: %s", "../shared/data/reference not found (SHARED)");
		gpu_close(&g);
		return;
	}
	float *x224 = ref_read("vit_input_224.f32", (size_t)4 * 3 * 224 * 224, 4);
	float *x256 = ref_read("vit_input_256.f32", (size_t)3 * 256 * 256, 4);
	if (!ok(x224 && x256, "read reference inputs"))
		return;
	struct vit_overrides ov = VIT_OVERRIDES_NONE;
	vit_case(&g, "vit token", &ov, x224, 4, 224, "vit_token_pooled.f32");
	ov.pool = POOL_AVG;
	vit_case(&g, "vit avg", &ov, x224, 4, 224, "vit_avg_pooled.f32");
	ov = (struct vit_overrides)VIT_OVERRIDES_NONE;
	ov.dynamic_img_size = 1;
	vit_case(&g, "vit dynamic 256", &ov, x256, 1, 256, "vit_dyn256_pooled.f32");
	ov = (struct vit_overrides)VIT_OVERRIDES_NONE;
	ov.no_embed_class = 1;
	vit_case(&g, "vit no_embed_class", &ov, x224, 4, 224, "vit_nec_pooled.f32");
	clip_case(&g, x224);
	free(x224);
	free(x256);
	gpu_close(&g);
}

int main(void)
{
	test_loop();
	test_open_errors();
	test_gpu();
	return tap_done();
}
