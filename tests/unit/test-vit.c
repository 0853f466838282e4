/*
 * test-vit: the ViT forward pass against the timm references in
 * ../shared/data/reference (token, avg, dynamic-size and no-embed-class
 * variants; see its README), within the README's tolerances: 5e-5 on
 * token features, 2e-5 on pooled vectors. Prints every max abs error.
 */
#include "core/error.h"
#include "model/safetensors.h"
#include "tap.h"
#include "model/vit.h"
#include "ref.h"

#include <omp.h>

#define FEAT_TOL 5e-5
#define POOL_TOL 2e-5

static void check(const char *what, const float *got, const char *ref, size_t n, double tol)
{
	float *want = ref_read(ref, n, sizeof(float));
	if (!want) {
		ok(0, "%s: read reference %s", what, ref);
		return;
	}
	double e = max_abs_diff(got, want, n);
	ok(e <= tol, "%s vs %s: max abs error %.3g (tol %.0e)", what, ref, e, tol);
	free(want);
}

int main(void)
{
	if (!ref_find())
		skip_all("../shared/data/reference not found (SHARED)");
	struct safetensors st;
	if (!ok(safetensors_open(&st, ref_path("vit_weights.safetensors")) == 0, "open vit weights"))
		return tap_done();
	float *x224 = ref_read("vit_input_224.f32", (size_t)4 * 3 * 224 * 224, 4);
	float *x256 = ref_read("vit_input_256.f32", (size_t)3 * 256 * 256, 4);
	ok(x224 && x256, "read inputs");
	const int T = 201, D = 192;
	float *feat = malloc(sizeof(float) * 4 * 261 * D), *pooled = malloc(sizeof(float) * 4 * D);
	float *embed = malloc(sizeof(float) * 4 * T * D);

	struct vit m;
	struct vit_overrides ov = VIT_OVERRIDES_NONE;
	ok(vit_load(&m, &st, "vit_weights.safetensors", &ov) == 0, "load token model");
	ok(strstr(m.config_source, "timm_config") != NULL, "config from metadata: %s",
	   m.config_source);
	ok(m.cfg.dim == 192 && m.cfg.depth == 4 && m.cfg.heads == 3 && m.cfg.reg_tokens == 4 &&
	       m.cfg.eps == 1e-6f,
	   "config dim 192 depth 4 heads 3 reg 4 eps 1e-6");
	ok(vit_forward(&m, x224, 4, 224, 224, pooled, feat, embed) == 0, "token forward");
	check("token features", feat, "vit_token_features.f32", (size_t)4 * T * D, FEAT_TOL);
	check("token pooled", pooled, "vit_token_pooled.f32", (size_t)4 * D, POOL_TOL);
	check("embed img0", embed, "vit_embed_img0.f32", (size_t)T * D, FEAT_TOL);
	/* Two threads: the batch goes through the blocks as per-thread image
	 * groups (vit.c), whatever OMP_NUM_THREADS the suite runs with. */
	int threads = omp_get_max_threads();
	omp_set_num_threads(2);
	ok(vit_forward(&m, x224, 4, 224, 224, pooled, feat, NULL) == 0, "token forward, 2 threads");
	check("token features, 2 threads", feat, "vit_token_features.f32", (size_t)4 * T * D,
	      FEAT_TOL);
	check("token pooled, 2 threads", pooled, "vit_token_pooled.f32", (size_t)4 * D, POOL_TOL);
	omp_set_num_threads(threads);
	/* batch of one gives the same as the batch of four */
	float one[192];
	ok(vit_forward(&m, x224 + (size_t)3 * 3 * 224 * 224, 1, 224, 224, one, NULL, NULL) == 0 &&
	       max_abs_diff(one, pooled + 3 * D, D) < 1e-5,
	   "batch 1 equals row 3 of batch 4");
	ok(vit_forward(&m, x256, 1, 256, 256, pooled, NULL, NULL) < 0 &&
	       strstr(eosin_errmsg(), "dynamic size is off"),
	   "256 input refused without dynamic size: %s", eosin_errmsg());
	vit_free(&m);

	ov.pool = POOL_AVG;
	ok(vit_load(&m, &st, "vit_weights.safetensors", &ov) == 0, "load avg model");
	ok(m.cfg.fc_norm == 1 && m.cfg.final_norm == 0, "avg pooling switches fc_norm on");
	ok(vit_forward(&m, x224, 4, 224, 224, pooled, feat, NULL) == 0, "avg forward");
	check("avg features img0", feat, "vit_avg_features_img0.f32", (size_t)T * D, FEAT_TOL);
	check("avg pooled", pooled, "vit_avg_pooled.f32", (size_t)4 * D, POOL_TOL);
	vit_free(&m);

	ov = (struct vit_overrides)VIT_OVERRIDES_NONE;
	ov.dynamic_img_size = 1;
	ok(vit_load(&m, &st, "vit_weights.safetensors", &ov) == 0, "load dynamic model");
	ok(vit_forward(&m, x256, 1, 256, 256, pooled, feat, NULL) == 0, "dynamic forward 256");
	check("dyn256 features", feat, "vit_dyn256_features.f32", (size_t)261 * D, FEAT_TOL);
	check("dyn256 pooled", pooled, "vit_dyn256_pooled.f32", (size_t)D, POOL_TOL);
	ok(vit_forward(&m, x224, 4, 224, 224, pooled, NULL, NULL) == 0, "dynamic forward 224");
	check("dyn at 224 = token pooled", pooled, "vit_token_pooled.f32", (size_t)4 * D, POOL_TOL);
	vit_free(&m);

	ov = (struct vit_overrides)VIT_OVERRIDES_NONE;
	ov.no_embed_class = 1;
	ok(vit_load(&m, &st, "vit_weights.safetensors", &ov) == 0, "load no-embed-class model");
	ok(vit_forward(&m, x224, 4, 224, 224, pooled, NULL, NULL) == 0, "nec forward");
	check("nec pooled", pooled, "vit_nec_pooled.f32", (size_t)4 * D, POOL_TOL);
	vit_free(&m);

	free(feat);
	free(pooled);
	free(embed);
	free(x224);
	free(x256);
	safetensors_close(&st);
	return tap_done();
}
