/*
 * gpu.c: the CUDA plugin opened with dlopen, the models described to it,
 * and the two-slot loop that keeps the device busy. See gpu.h.
 */
#include "model/gpu.h"

#include "core/error.h"

#include <dlfcn.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void gpu_plugin_path(char *out, size_t size)
{
	const char *env = getenv("EOSIN_CUDA_PLUGIN");
	if (env && *env) {
		snprintf(out, size, "%s", env);
		return;
	}
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0) {
		snprintf(out, size, "eosin-cuda.so");
		return;
	}
	exe[n] = 0;
	snprintf(out, size, "%s/../lib/eosin-cuda.so", dirname(exe));
}

int gpu_device_node_present(void)
{
	struct stat sb;
	return stat("/dev/nvidiactl", &sb) == 0 || stat("/dev/nvidia0", &sb) == 0;
}

int gpu_open_table(struct gpu *g, const struct eosin_cuda_plugin *api)
{
	if (!api || api->abi != EOSIN_CUDA_ABI)
		return eosin_error("CUDA plugin '%s' speaks interface %d, this program %d (rebuild both)",
		                   g->path, api ? api->abi : -1, EOSIN_CUDA_ABI);
	g->api = api;
	if (api->probe(g->device, sizeof g->device) < 0)
		return eosin_error("no usable CUDA device: %s", api->last_error());
	return 0;
}

int gpu_open(struct gpu *g)
{
	memset(g, 0, sizeof *g);
	gpu_plugin_path(g->path, sizeof g->path);
	if (access(g->path, R_OK) != 0)
		return eosin_error("no CUDA plugin: '%s' does not exist (built with make CUDA=0, or "
		                   "where nvcc was not found)", g->path);
	/* RTLD_NODELETE: the plugin (and the CUDA and C++ runtimes it brings)
	 * stays mapped after gpu_close, so their load-time allocations stay
	 * reachable: unloading them buys nothing, and a reopen finds them
	 * initialised */
	g->dl = dlopen(g->path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (!g->dl) {
		const char *why = dlerror();
		if (why && strstr(why, "libcu"))
			return eosin_error("no CUDA runtime: cannot load '%s': %s", g->path, why);
		return eosin_error("cannot load the CUDA plugin '%s': %s", g->path,
		                   why ? why : "unknown error");
	}
	const struct eosin_cuda_plugin *(*entry)(void);
	*(void **)&entry = dlsym(g->dl, "eosin_cuda_plugin");
	if (!entry) {
		eosin_error("'%s' is not eosin's CUDA plugin (no eosin_cuda_plugin symbol)", g->path);
		gpu_close(g);
		return -1;
	}
	if (gpu_open_table(g, entry()) < 0) {
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", eosin_errmsg());
		gpu_close(g);
		return eosin_error("%s", msg);
	}
	return 0;
}

void gpu_close(struct gpu *g)
{
	if (g->dl)
		dlclose(g->dl);
	g->dl = NULL;
	g->api = NULL;
}

static void block_desc(struct gpu_block_desc *d, const struct block_weights *b)
{
	*d = (struct gpu_block_desc){b->ln1_w,  b->ln1_b,  b->qkv_w, b->qkv_b, b->proj_w,
	                             b->proj_b, b->ls1,    b->ls2,   b->ln2_w, b->ln2_b,
	                             b->fc1_w,  b->fc1_b,  b->fc2_w, b->fc2_b};
}

int gpu_vit_create(struct gpu_vit *gv, struct gpu *g, struct vit *m, enum gpu_precision prec,
                   int max_batch)
{
	memset(gv, 0, sizeof *gv);
	const struct vit_config *c = &m->cfg;
	if (c->act == ACT_SILU || (c->depth && m->blocks[0].glu))
		return eosin_error("the GPU path does not cover gated (SwiGLU) MLPs; "
		                   "use --device cpu for this model");
	if (c->pool == POOL_TOKEN_AVG || c->pool == POOL_ATTN)
		return eosin_error("the GPU path does not cover %s pooling; use --device cpu for "
		                   "this model",
		                   c->pool == POOL_ATTN ? "attentional" : "token+avg");
	struct gpu_block_desc *blocks = calloc((size_t)c->depth + 1, sizeof *blocks);
	if (!blocks)
		return eosin_error("out of memory");
	for (int l = 0; l < c->depth; l++)
		block_desc(&blocks[l], &m->blocks[l]);
	struct gpu_vit_desc d = {
	    .dim = c->dim, .depth = c->depth, .heads = c->heads, .hidden = c->hidden,
	    .patch = c->patch, .class_token = c->class_token, .reg_tokens = c->reg_tokens,
	    .no_embed_class = c->no_embed_class, .ln_pre = c->ln_pre, .final_norm = c->final_norm,
	    .fc_norm = c->fc_norm, .pool_avg = c->pool == POOL_AVG,
	    .quick_gelu = c->act == ACT_QUICKGELU, .proj_dim = c->proj_dim, .out_dim = m->out_dim,
	    .eps = c->eps, .patch_w = m->patch_w, .patch_b = m->patch_b, .cls = m->cls,
	    .reg = m->reg, .pos_prefix = c->no_embed_class ? NULL : m->pos,
	    .ln_pre_w = m->ln_pre_w, .ln_pre_b = m->ln_pre_b, .norm_w = m->norm_w,
	    .norm_b = m->norm_b, .proj = m->proj, .blocks = blocks};
	gv->h = g->api->vit_create(&d, prec, max_batch);
	free(blocks);
	if (!gv->h)
		return eosin_error("cannot put the vision model on '%s': %s", g->device,
		                   g->api->last_error());
	gv->g = g;
	gv->cpu = m;
	gv->max_batch = max_batch;
	return 0;
}

void gpu_vit_free(struct gpu_vit *gv)
{
	if (!gv->g)
		return;
	for (int s = 0; s < 2; s++)
		if (gv->pinned[s])
			gv->g->api->host_free(gv->pinned[s]);
	gv->g->api->vit_destroy(gv->h);
	memset(gv, 0, sizeof *gv);
}

size_t gpu_chunks(size_t n, int max_batch)
{
	return (n + (size_t)max_batch - 1) / (size_t)max_batch;
}

static int grow_pinned(struct gpu_vit *gv, size_t floats)
{
	if (floats <= gv->pinned_floats)
		return 0;
	for (int s = 0; s < 2; s++) {
		if (gv->pinned[s])
			gv->g->api->host_free(gv->pinned[s]);
		gv->pinned[s] = gv->g->api->host_alloc(floats * sizeof(float));
		if (!gv->pinned[s]) {
			gv->pinned_floats = 0;
			return eosin_error("cannot pin %zu MB of host memory: %s",
			                   floats * sizeof(float) >> 20, gv->g->api->last_error());
		}
	}
	gv->pinned_floats = floats;
	return 0;
}

/* The grid's position table on the device, when it changes. */
static int send_pos(struct gpu_vit *gv, int gh, int gw)
{
	if (gv->grid == gh * 65536 + gw)
		return 0;
	const float *pos = vit_patch_pos(gv->cpu, gh, gw);
	if (!pos)
		return -1;
	if (gv->g->api->vit_set_pos(gv->h, pos, gh, gw) < 0)
		return eosin_error("position table: %s", gv->g->api->last_error());
	gv->grid = gh * 65536 + gw;
	return 0;
}

/* Chunk k's images into slot s's pinned buffer, across threads. */
static void fill_chunk(struct gpu_vit *gv, int s, size_t first, int nb, size_t plane,
                       gpu_fill_fn fill, void *ctx)
{
	float *dst = gv->pinned[s];
#pragma omp parallel for schedule(dynamic, 1)
	for (int i = 0; i < nb; i++)
		if (fill(ctx, first + (size_t)i, dst + (size_t)i * plane) < 0)
			memset(dst + (size_t)i * plane, 0, plane * sizeof(float));
}

int gpu_vit_encode(struct gpu_vit *gv, size_t n, int H, int W, gpu_fill_fn fill, void *ctx,
                   float *out)
{
	if (!n)
		return 0;
	if (vit_check_size(gv->cpu, H, W) < 0)
		return -1;
	const struct eosin_cuda_plugin *api = gv->g->api;
	int p = gv->cpu->cfg.patch, D = gv->cpu->out_dim, mb = gv->max_batch;
	size_t plane = (size_t)3 * H * W;
	if (grow_pinned(gv, plane * (size_t)mb) < 0 || send_pos(gv, H / p, W / p) < 0)
		return -1;
	/* Chunk k uses slot k % 2. Before chunk k is filled, chunk k-2 (the
	 * slot's last user) is waited for and its embeddings taken; chunk k-1
	 * runs on the device meanwhile. */
	size_t nchunks = gpu_chunks(n, mb);
	int inflight[2] = {-1, -1};
	int rc = 0;
	for (size_t k = 0; k < nchunks + 2 && !rc; k++) {
		int s = (int)(k % 2);
		if (inflight[s] >= 0) {
			size_t first = (size_t)inflight[s] * mb;
			if (api->vit_wait(gv->h, s, out + first * D) < 0)
				rc = eosin_error("vision model on '%s': %s", gv->g->device, api->last_error());
			inflight[s] = -1;
		}
		if (k >= nchunks || rc)
			continue;
		size_t first = k * (size_t)mb;
		int nb = (int)(n - first < (size_t)mb ? n - first : (size_t)mb);
		fill_chunk(gv, s, first, nb, plane, fill, ctx);
		if (api->vit_submit(gv->h, s, gv->pinned[s], nb, H, W) < 0)
			rc = eosin_error("vision model on '%s': %s", gv->g->device, api->last_error());
		else
			inflight[s] = (int)k;
	}
	/* After a failure, the other slot may still be in flight. */
	for (int s = 0; s < 2; s++)
		if (inflight[s] >= 0)
			api->vit_wait(gv->h, s, out + (size_t)inflight[s] * mb * D);
	return rc;
}

int gpu_text_create(struct gpu_text *gt, struct gpu *g, struct clip_text *m,
                    enum gpu_precision prec)
{
	memset(gt, 0, sizeof *gt);
	struct gpu_block_desc *blocks = calloc((size_t)m->layers + 1, sizeof *blocks);
	if (!blocks)
		return eosin_error("out of memory");
	for (int l = 0; l < m->layers; l++)
		block_desc(&blocks[l], &m->blocks[l]);
	struct gpu_text_desc d = {.width = m->width, .layers = m->layers, .heads = m->heads,
	                          .hidden = m->hidden, .context = m->context, .vocab = m->vocab,
	                          .embed = m->embed, .quick_gelu = m->act == ACT_QUICKGELU,
	                          .eps = m->eps, .tok_emb = m->tok_emb,
	                          .pos = m->pos, .ln_final_w = m->ln_final_w,
	                          .ln_final_b = m->ln_final_b, .proj = m->proj, .blocks = blocks};
	gt->h = g->api->text_create(&d, prec);
	free(blocks);
	if (!gt->h)
		return eosin_error("cannot put the text model on '%s': %s", g->device,
		                   g->api->last_error());
	gt->g = g;
	gt->cpu = m;
	return 0;
}

void gpu_text_free(struct gpu_text *gt)
{
	if (gt->g)
		gt->g->api->text_destroy(gt->h);
	memset(gt, 0, sizeof *gt);
}

int gpu_text_forward(struct gpu_text *gt, const int32_t *ids, int B, float *out)
{
	int T = gt->cpu->context;
	int32_t *eot = malloc((size_t)(B ? B : 1) * sizeof *eot);
	if (!eot)
		return eosin_error("out of memory");
	/* The same checks and the same pooled row as clip_text_forward. */
	for (int b = 0; b < B; b++) {
		const int32_t *ib = ids + (size_t)b * T;
		int e = 0;
		for (int t = 0; t < T; t++) {
			if (ib[t] < 0 || ib[t] >= gt->cpu->vocab) {
				free(eot);
				return eosin_error("token id %d outside the vocabulary (%d)", ib[t],
				                   gt->cpu->vocab);
			}
			if (ib[t] > ib[e])
				e = t;
		}
		eot[b] = e;
	}
	int r = gt->g->api->text_forward(gt->h, ids, eot, B, out);
	free(eot);
	if (r < 0)
		return eosin_error("text model on '%s': %s", gt->g->device, gt->g->api->last_error());
	return 0;
}
