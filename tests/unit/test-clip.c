/*
 * test-clip: the CLIP towers against the openai/CLIP references in
 * ../shared/data/reference: image features, text features from the
 * stored token ids, and logits_per_image, all within 2e-5 (README).
 */
#include "model/clip_text.h"
#include "core/error.h"
#include "model/safetensors.h"
#include "tap.h"
#include "model/vit.h"
#include "ref.h"

#include <stdint.h>

#define TOL 2e-5

int main(void)
{
	if (!ref_find())
		skip_all("../shared/data/reference not found (SHARED)");
	struct safetensors st;
	if (!ok(safetensors_open(&st, ref_path("clip_weights.safetensors")) == 0, "open clip weights"))
		return tap_done();
	float *x224 = ref_read("vit_input_224.f32", (size_t)4 * 3 * 224 * 224, 4);
	int32_t *ids = ref_read("clip_text_tokens.i32", (size_t)8 * 77, 4);
	float *want_img = ref_read("clip_image_features.f32", 4 * 64, 4);
	float *want_txt = ref_read("clip_text_features.f32", 8 * 64, 4);
	float *want_logits = ref_read("clip_logits_per_image.f32", 4 * 8, 4);
	if (!ok(x224 && ids && want_img && want_txt && want_logits, "read references"))
		return tap_done();

	struct vit v;
	ok(vit_load(&v, &st, "clip_weights.safetensors", NULL) == 0, "load vision tower");
	ok(v.cfg.dim == 128 && v.cfg.depth == 2 && v.cfg.heads == 2 && v.cfg.patch == 32 &&
	       v.out_dim == 64 && v.cfg.act == ACT_QUICKGELU && v.cfg.eps == 1e-5f,
	   "vision config: width 128, 2 layers, 2 heads, patch 32, proj 64, QuickGELU, eps 1e-5");
	float img[4 * 64];
	ok(vit_forward(&v, x224, 4, 224, 224, img, NULL, NULL) == 0, "vision forward");
	double e = max_abs_diff(img, want_img, 4 * 64);
	ok(e <= TOL, "clip_image_features: max abs error %.3g (tol %.0e)", e, TOL);

	struct clip_text t;
	ok(clip_text_load(&t, &st, "clip_weights.safetensors") == 0, "load text tower: %s",
	   eosin_errmsg());
	ok(t.width == 16 && t.heads == 2 && t.layers == 2 && t.context == 77 && t.embed == 64,
	   "text config: width 16, 2 heads, 2 layers, context 77, embed 64");
	float txt[8 * 64];
	ok(clip_text_forward(&t, ids, 8, txt) == 0, "text forward");
	e = max_abs_diff(txt, want_txt, 8 * 64);
	ok(e <= TOL, "clip_text_features: max abs error %.3g (tol %.0e)", e, TOL);

	/* logits_per_image = exp(logit_scale) * normalise(img) @ normalise(txt)^T */
	float logits[4 * 8];
	double scale = exp((double)t.logit_scale);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 8; j++) {
			double dot = 0, ni = 0, nt = 0;
			for (int k = 0; k < 64; k++) {
				dot += (double)img[i * 64 + k] * txt[j * 64 + k];
				ni += (double)img[i * 64 + k] * img[i * 64 + k];
				nt += (double)txt[j * 64 + k] * txt[j * 64 + k];
			}
			logits[i * 8 + j] = (float)(scale * dot / sqrt(ni * nt));
		}
	e = max_abs_diff(logits, want_logits, 4 * 8);
	ok(e <= TOL, "clip_logits_per_image: max abs error %.3g (tol %.0e)", e, TOL);

	int32_t bad[77] = {49406, 60000, 49407};
	ok(clip_text_forward(&t, bad, 1, txt) < 0 && strstr(eosin_errmsg(), "outside the vocabulary"),
	   "token id beyond the vocabulary refused: %s", eosin_errmsg());
	clip_text_free(&t);
	vit_free(&v);
	safetensors_close(&st);
	free(x224);
	free(ids);
	free(want_img);
	free(want_txt);
	free(want_logits);
	return tap_done();
}
