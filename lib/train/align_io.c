/*
 * align_io.c: eosin-align checkpoints as safetensors (align_io.h). A minimal
 * F32 reader and writer of its own, with static names.
 */
#include "train/align_io.h"

#include "core/error.h"

#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int align_meta_set(struct align_meta *meta, const char *key, const char *val)
{
	int i;
	for (i = 0; i < meta->n; i++)
		if (!strcmp(meta->key[i], key))
			break;
	if (i == meta->n) {
		if (meta->n == 32)
			return eosin_error("align: too many metadata entries");
		meta->n++;
	}
	snprintf(meta->key[i], sizeof meta->key[i], "%s", key);
	snprintf(meta->val[i], sizeof meta->val[i], "%s", val);
	return 0;
}

const char *align_meta_get(const struct align_meta *meta, const char *key)
{
	for (int i = 0; i < meta->n; i++)
		if (!strcmp(meta->key[i], key))
			return meta->val[i];
	return NULL;
}

static void config_to_meta(const struct align_config *c, struct align_meta *meta)
{
	char b[64];
#define I(f) snprintf(b, sizeof b, "%d", c->f), align_meta_set(meta, #f, b)
#define F(f) snprintf(b, sizeof b, "%.9g", (double)c->f), align_meta_set(meta, #f, b)
	I(img_dim), I(txt_dim), I(dim), I(hidden), I(queries), I(qdim), I(heads), I(layers), I(ffn);
	I(topk), F(w_itc), F(w_cvta), F(w_mrtva), F(w_region), F(w_itm), F(temp_init);
	if (c->vocab > 0) {
		I(vocab), I(ctx), F(w_itg), F(w_mlm), F(w_plm), F(plm_prefix);
	}
#undef I
#undef F
	align_meta_set(meta, "format", "eosin-align 1");
}

static int config_from_meta(struct align_config *c, const struct align_meta *meta)
{
	memset(c, 0, sizeof *c);
	const char *s;
#define I(f) (s = align_meta_get(meta, #f)) ? (c->f = atoi(s), 0) : -1
#define F(f) (s = align_meta_get(meta, #f)) ? (c->f = strtof(s, NULL), 0) : -1
	if ((I(img_dim)) || (I(txt_dim)) || (I(dim)) || (I(hidden)) || (I(queries)) || (I(qdim)) ||
	    (I(heads)) || (I(layers)) || (I(ffn)) || (I(topk)) || (F(w_itc)) || (F(w_cvta)) || (F(w_mrtva)) || (F(w_region)) || (F(w_itm)) ||
	    (F(temp_init)))
		return eosin_error("missing model config in metadata");
	if ((s = align_meta_get(meta, "vocab")) && ((c->vocab = atoi(s)) <= 0 || (I(ctx)) ||
	                                            (F(w_itg)) || (F(w_mlm)) || (F(w_plm)) ||
	                                            (F(plm_prefix))))
		return eosin_error("incomplete text decoder config in metadata");
#undef I
#undef F
	return 0;
}

static void add_tensor(json_t *hdr, const char *name, const struct align_param *p, size_t *off)
{
	json_t *shape = p->cols ? json_pack("[ii]", p->rows, p->cols) : json_pack("[i]", p->rows);
	size_t bytes = p->count * sizeof(float);
	json_object_set_new(hdr, name,
	                    json_pack("{s:s, s:o, s:[I,I]}", "dtype", "F32", "shape", shape,
	                              "data_offsets", (json_int_t)*off, (json_int_t)(*off + bytes)));
	*off += bytes;
}

int align_save(const char *path, const struct align_model *m, int with_moments,
               const struct align_meta *meta_in)
{
	struct align_meta meta = meta_in ? *meta_in : (struct align_meta){0};
	config_to_meta(&m->cfg, &meta);
	json_t *hdr = json_object(), *md = json_object();
	for (int i = 0; i < meta.n; i++)
		json_object_set_new(md, meta.key[i], json_string(meta.val[i]));
	json_object_set_new(hdr, "__metadata__", md);
	size_t off = 0;
	char name[64];
	for (int pass = 0; pass < (with_moments ? 3 : 1); pass++)
		for (int i = 0; i < m->nparam; i++) {
			snprintf(name, sizeof name, "%s%s", pass == 0 ? "" : pass == 1 ? "adam.m." : "adam.v.",
			         m->param[i].name);
			add_tensor(hdr, name, &m->param[i], &off);
		}
	char *js = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(hdr);
	if (!js)
		return eosin_error("'%s': cannot format the header", path);
	size_t jlen = strlen(js), padded = (jlen + 7) & ~(size_t)7;
	char *tmp = malloc(strlen(path) + 16);
	sprintf(tmp, "%s.tmpXXXXXX", path);
	int fd = mkstemp(tmp);
	if (fd < 0) {
		eosin_error("'%s': cannot create a temporary file: %s", path, strerror(errno));
		free(js), free(tmp);
		return -1;
	}
	FILE *f = fdopen(fd, "wb");
	uint64_t n = padded;
	unsigned char len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)(n >> (8 * i));
	fwrite(len8, 1, 8, f);
	fwrite(js, 1, jlen, f);
	for (size_t i = jlen; i < padded; i++)
		fputc(' ', f);
	for (int pass = 0; pass < (with_moments ? 3 : 1); pass++) {
		const float *base = pass == 0 ? m->params : pass == 1 ? m->m : m->v;
		for (int i = 0; i < m->nparam; i++)
			fwrite(base + m->param[i].offset, sizeof(float), m->param[i].count, f);
	}
	free(js);
	int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
	bad |= fclose(f) != 0;
	if (bad || rename(tmp, path) != 0) {
		eosin_error("'%s': cannot write: %s", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

static int read_tensor(json_t *hdr, const char *name, const struct align_param *p,
                       const char *data, size_t datalen, float *dst, const char *path)
{
	json_t *t = json_object_get(hdr, name);
	if (!t)
		return eosin_error("'%s': no tensor '%s'", path, name);
	const char *dtype = json_string_value(json_object_get(t, "dtype"));
	json_t *shape = json_object_get(t, "shape"), *offs = json_object_get(t, "data_offsets");
	if (!dtype || strcmp(dtype, "F32"))
		return eosin_error("'%s': tensor '%s' is not F32", path, name);
	size_t want_rank = p->cols ? 2 : 1;
	if (!json_is_array(shape) || json_array_size(shape) != want_rank ||
	    json_integer_value(json_array_get(shape, 0)) != p->rows ||
	    (p->cols && json_integer_value(json_array_get(shape, 1)) != p->cols))
		return eosin_error("'%s': tensor '%s' has the wrong shape", path, name);
	json_int_t b = json_integer_value(json_array_get(offs, 0));
	json_int_t e = json_integer_value(json_array_get(offs, 1));
	if (b < 0 || e < b || (size_t)e > datalen || (size_t)(e - b) != p->count * sizeof(float))
		return eosin_error("'%s': tensor '%s' has bad data offsets", path, name);
	memcpy(dst, data + b, (size_t)(e - b));
	return 0;
}

int align_load(const char *path, struct align_model *m, int with_moments,
               struct align_meta *meta)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return eosin_error("'%s': %s", path, strerror(errno));
	char *buf = NULL;
	json_t *hdr = NULL;
	int ret = -1;
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char len8[8];
	if (size < 8 || fread(len8, 1, 8, f) != 8) {
		eosin_error("'%s': not a safetensors file", path);
		goto out;
	}
	uint64_t hlen = 0;
	for (int i = 0; i < 8; i++)
		hlen |= (uint64_t)len8[i] << (8 * i);
	if (hlen > (uint64_t)size - 8 || hlen > 100u << 20) {
		eosin_error("'%s': bad header length", path);
		goto out;
	}
	buf = malloc((size_t)size - 8 + 1);
	if (!buf || fread(buf, 1, (size_t)size - 8, f) != (size_t)size - 8) {
		eosin_error("'%s': cannot read", path);
		goto out;
	}
	json_error_t jerr;
	hdr = json_loadb(buf, hlen, 0, &jerr);
	if (!hdr || !json_is_object(hdr)) {
		eosin_error("'%s': bad header: %s", path, hdr ? "not an object" : jerr.text);
		goto out;
	}
	memset(meta, 0, sizeof *meta);
	json_t *md = json_object_get(hdr, "__metadata__");
	const char *k;
	json_t *v;
	json_object_foreach(md, k, v)
	{
		if (json_is_string(v) && align_meta_set(meta, k, json_string_value(v)) < 0)
			goto out;
	}
	struct align_config cfg;
	if (config_from_meta(&cfg, meta) < 0) {
		eosin_error_prefix("'%s'", path);
		goto out;
	}
	if (align_model_init(m, &cfg) < 0)
		goto out;
	const char *data = buf + hlen;
	size_t datalen = (size_t)size - 8 - hlen;
	char name[64];
	for (int pass = 0; pass < (with_moments ? 3 : 1); pass++)
		for (int i = 0; i < m->nparam; i++) {
			float *base = pass == 0 ? m->params : pass == 1 ? m->m : m->v;
			snprintf(name, sizeof name, "%s%s", pass == 0 ? "" : pass == 1 ? "adam.m." : "adam.v.",
			         m->param[i].name);
			if (read_tensor(hdr, name, &m->param[i], data, datalen, base + m->param[i].offset,
			                path) < 0) {
				align_model_free(m);
				goto out;
			}
		}
	ret = 0;
out:
	json_decref(hdr);
	free(buf);
	fclose(f);
	return ret;
}

void align_hash(const struct align_model *m, char *buf)
{
	uint64_t h = 0xcbf29ce484222325ull;
	const unsigned char *p = (const unsigned char *)m->params;
	for (size_t i = 0; i < m->nfloats * sizeof(float); i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	snprintf(buf, 17, "%016llx", (unsigned long long)h);
}
