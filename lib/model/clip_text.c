/*
 * clip_text.c: the CLIP text tower. See clip_text.h.
 */
#include "model/clip_text.h"

#include "core/error.h"
#include "model/ops.h"

#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void apply_config(struct clip_text *m, const char *json)
{
	json_t *root = json_loads(json, 0, NULL), *o = root;
	if (!json_is_object(o)) {
		json_decref(root);
		return;
	}
	json_t *v;
	if (json_is_object(v = json_object_get(o, "model_cfg"))) /* open_clip_config.json */
		o = v;
	if (json_is_boolean(v = json_object_get(o, "quick_gelu")))
		m->act = json_is_true(v) ? ACT_QUICKGELU : ACT_GELU;
	if (json_is_object(json_object_get(o, "text_cfg"))) { /* open_clip style */
		json_t *t = json_object_get(o, "text_cfg");
		if (json_is_integer(v = json_object_get(t, "heads")))
			m->heads = (int)json_integer_value(v);
	}
	if (json_is_integer(v = json_object_get(o, "transformer_heads")))
		m->heads = (int)json_integer_value(v);
	if (json_is_number(v = json_object_get(o, "layer_norm_eps")))
		m->eps = (float)json_number_value(v);
	json_decref(root);
}

int clip_text_load(struct clip_text *m, const struct safetensors *st, const char *path)
{
	memset(m, 0, sizeof *m);
	const struct st_tensor *te = safetensors_find(st, "token_embedding.weight");
	const struct st_tensor *pe = safetensors_find(st, "positional_embedding");
	const struct st_tensor *tp = safetensors_find(st, "text_projection");
	if (!te || !pe || !tp || te->ndim != 2 || pe->ndim != 2 || tp->ndim != 2)
		return eosin_error("'%s': no CLIP text tower (token_embedding.weight, "
		                   "positional_embedding, text_projection)", path);
	m->vocab = (int)te->shape[0];
	m->width = (int)te->shape[1];
	m->context = (int)pe->shape[0];
	m->embed = (int)tp->shape[1];
	m->eps = 1e-5f;
	m->act = ACT_QUICKGELU; /* OpenAI's; open_clip's files say quick_gelu */
	char name[128];
	for (;;) {
		snprintf(name, sizeof name, "transformer.resblocks.%d.ln_1.weight", m->layers);
		if (!safetensors_find(st, name))
			break;
		m->layers++;
	}
	const struct st_tensor *fc = safetensors_find(st, "transformer.resblocks.0.mlp.c_fc.weight");
	if (!m->layers || !fc || fc->ndim != 2)
		return eosin_error("'%s': no text transformer blocks", path);
	m->hidden = (int)fc->shape[0];
	const char *meta = safetensors_meta(st, "clip_config");
	if (meta) {
		apply_config(m, meta);
		snprintf(m->config_source, sizeof m->config_source,
		         "text architecture from '%s' __metadata__ clip_config", path);
	} else {
		char *dup = strdup(path), cfgpath[4096];
		snprintf(cfgpath, sizeof cfgpath, "%s/config.json", dirname(dup));
		free(dup);
		FILE *f = fopen(cfgpath, "r");
		if (f) {
			char *buf = calloc(1, 1 << 20);
			if (buf && fread(buf, 1, (1 << 20) - 1, f) > 0)
				apply_config(m, buf);
			free(buf);
			fclose(f);
			snprintf(m->config_source, sizeof m->config_source, "text architecture from '%s'",
			         cfgpath);
		}
	}
	if (!m->heads) {
		if (m->width % 64)
			return eosin_error("'%s': no transformer_heads in config and width %d is not a "
			                   "multiple of 64: cannot tell the number of heads", path, m->width);
		m->heads = m->width / 64;
		snprintf(m->config_source, sizeof m->config_source,
		         "text architecture inferred from tensor shapes of '%s': heads = width/64 = %d",
		         path, m->heads);
	}
	if (m->width % m->heads)
		return eosin_error("'%s': %d heads do not divide text width %d", path, m->heads, m->width);
	if (tp->shape[0] != m->width)
		return eosin_error("'%s': text_projection is [%lld,%lld], want [%d,*]", path,
		                   (long long)tp->shape[0], (long long)tp->shape[1], m->width);
	int64_t s2[2] = {m->vocab, m->width}, p2[2] = {m->context, m->width},
	        j2[2] = {m->width, m->embed}, s1[1] = {m->width};
	if (!(m->tok_emb = safetensors_load_f32(st, "token_embedding.weight", 2, s2)) ||
	    !(m->pos = safetensors_load_f32(st, "positional_embedding", 2, p2)) ||
	    !(m->proj = safetensors_load_f32(st, "text_projection", 2, j2)) ||
	    !(m->ln_final_w = safetensors_load_f32(st, "ln_final.weight", 1, s1)) ||
	    !(m->ln_final_b = safetensors_load_f32(st, "ln_final.bias", 1, s1)))
		goto fail;
	const struct st_tensor *ls = safetensors_find(st, "logit_scale");
	if (ls && ls->numel == 1)
		st_tensor_to_f32(ls, &m->logit_scale);
	m->blocks = calloc((size_t)m->layers, sizeof *m->blocks);
	for (int l = 0; l < m->layers; l++) {
		snprintf(name, sizeof name, "transformer.resblocks.%d.", l);
		if (block_load(&m->blocks[l], st, name, NAMING_CLIP, m->width, m->hidden) < 0)
			goto fail;
	}
	return 0;
fail:
	clip_text_free(m);
	return -1;
}

void clip_text_free(struct clip_text *m)
{
	if (m->blocks)
		for (int l = 0; l < m->layers; l++)
			block_free(&m->blocks[l]);
	free(m->blocks);
	free(m->tok_emb);
	free(m->pos);
	free(m->ln_final_w);
	free(m->ln_final_b);
	free(m->proj);
	free(m->x);
	block_acts_free(&m->acts);
	memset(m, 0, sizeof *m);
}

int clip_text_forward(struct clip_text *m, const int32_t *ids, int B, float *out)
{
	int T = m->context, C = m->width;
	size_t need = (size_t)B * T * C;
	if (need > m->x_cap) {
		free(m->x);
		m->x = malloc(need * sizeof(float));
		m->x_cap = m->x ? need : 0;
		if (!m->x)
			return eosin_error("out of memory");
	}
	if (block_acts_reserve(&m->acts, B, T, C, m->hidden) < 0)
		return -1;
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			int32_t id = ids[(size_t)b * T + t];
			if (id < 0 || id >= m->vocab)
				return eosin_error("token id %d outside the vocabulary (%d)", id, m->vocab);
			float *xr = m->x + ((size_t)b * T + t) * C;
			const float *e = m->tok_emb + (size_t)id * C, *p = m->pos + (size_t)t * C;
			for (int c = 0; c < C; c++)
				xr[c] = e[c] + p[c];
		}
	for (int l = 0; l < m->layers; l++)
		block_forward(m->x, &m->blocks[l], &m->acts, B, T, C, m->heads, m->hidden, m->eps,
		              m->act, 1);
	/* ln_final is per row, so only the pooled rows need it. */
	float *rows = m->acts.ln;
	for (int b = 0; b < B; b++) {
		const int32_t *ib = ids + (size_t)b * T;
		int eot = 0;
		for (int t = 1; t < T; t++)
			if (ib[t] > ib[eot])
				eot = t;
		memcpy(rows + (size_t)b * C, m->x + ((size_t)b * T + eot) * C, (size_t)C * sizeof(float));
	}
	layernorm_forward(rows, rows, m->ln_final_w, m->ln_final_b, B, C, m->eps);
	matmul_forward_in_out(out, rows, m->proj, B, C, m->embed);
	return 0;
}
