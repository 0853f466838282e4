/*
 * safetensors.c: the safetensors reader (mmap + validation) and the atomic
 * writer. See safetensors.h for the format and the checks.
 */
#include "model/safetensors.h"

#include "core/error.h"
#include "core/vec.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

size_t st_dtype_size(enum st_dtype t)
{
	return t == ST_F32 ? 4 : 2;
}

const char *st_dtype_name(enum st_dtype t)
{
	return t == ST_F32 ? "F32" : t == ST_F16 ? "F16" : "BF16";
}

static int parse_dtype(const char *s, enum st_dtype *t)
{
	static const char *const known_unsupported[] = {
	    "F64", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL",
	    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64", NULL};
	if (!strcmp(s, "F32"))
		*t = ST_F32;
	else if (!strcmp(s, "F16"))
		*t = ST_F16;
	else if (!strcmp(s, "BF16"))
		*t = ST_BF16;
	else {
		for (int i = 0; known_unsupported[i]; i++)
			if (!strcmp(s, known_unsupported[i]))
				return eosin_error("dtype '%s' is not supported (want F32, F16 or BF16)", s);
		return eosin_error("unknown dtype '%s'", s);
	}
	return 0;
}

static void release(struct safetensors *st)
{
	for (size_t i = 0; i < st->ntensors; i++)
		free(st->tensors[i].name);
	free(st->tensors);
	for (size_t i = 0; i < st->nmeta; i++) {
		free(st->meta[i].key);
		free(st->meta[i].value);
	}
	free(st->meta);
	st->tensors = NULL;
	st->meta = NULL;
	st->ntensors = st->nmeta = 0;
}

static int by_offset(const void *a, const void *b)
{
	const struct st_tensor *x = *(const struct st_tensor *const *)a;
	const struct st_tensor *y = *(const struct st_tensor *const *)b;
	const char *px = x->data, *py = y->data;
	return px < py ? -1 : px > py;
}

/* One tensor entry. base/size: the data section. */
static int parse_tensor(struct st_tensor *t, const char *name, json_t *v, const char *base,
                        size_t size)
{
	if (!json_is_object(v))
		return eosin_error("tensor '%s': entry is not an object", name);
	json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
	       *jo = json_object_get(v, "data_offsets");
	if (!json_is_string(jd))
		return eosin_error("tensor '%s': missing or non-string dtype", name);
	if (parse_dtype(json_string_value(jd), &t->dtype) < 0)
		return eosin_error_prefix("tensor '%s'", name);
	if (!json_is_array(js))
		return eosin_error("tensor '%s': missing or non-array shape", name);
	size_t nd = json_array_size(js);
	if (nd > ST_MAX_DIMS)
		return eosin_error("tensor '%s': %zu dims (at most %d)", name, nd, ST_MAX_DIMS);
	t->ndim = (int)nd;
	uint64_t numel = 1;
	for (size_t i = 0; i < nd; i++) {
		json_t *d = json_array_get(js, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return eosin_error("tensor '%s': shape[%zu] is not a non-negative integer", name, i);
		uint64_t di = (uint64_t)json_integer_value(d);
		t->shape[i] = (int64_t)di;
		if (di && numel > (UINT64_MAX / 4) / di)
			return eosin_error("tensor '%s': shape overflows", name);
		numel *= di;
	}
	t->numel = (int64_t)numel;
	if (!json_is_array(jo) || json_array_size(jo) != 2 ||
	    !json_is_integer(json_array_get(jo, 0)) || !json_is_integer(json_array_get(jo, 1)))
		return eosin_error("tensor '%s': data_offsets is not [begin, end]", name);
	json_int_t b = json_integer_value(json_array_get(jo, 0));
	json_int_t e = json_integer_value(json_array_get(jo, 1));
	if (b < 0 || e < b)
		return eosin_error("tensor '%s': data_offsets [%lld, %lld] out of order", name,
		                   (long long)b, (long long)e);
	if ((uint64_t)e > size)
		return eosin_error("tensor '%s': data_offsets end %lld beyond the data section (%zu bytes)",
		                   name, (long long)e, size);
	uint64_t want = numel * st_dtype_size(t->dtype);
	if ((uint64_t)(e - b) != want)
		return eosin_error("tensor '%s': %lld bytes for shape of %llu %s elements (want %llu)",
		                   name, (long long)(e - b), (unsigned long long)numel,
		                   st_dtype_name(t->dtype), (unsigned long long)want);
	t->data = base + b;
	t->nbytes = (size_t)(e - b);
	return 0;
}

/* __metadata__: an object of strings, copied into st->meta. */
static int parse_metadata(struct safetensors *st, json_t *v, const char *name)
{
	if (!json_is_object(v))
		return eosin_error("'%s': __metadata__ is not an object", name);
	size_t nm = json_object_size(v);
	st->meta = calloc(nm ? nm : 1, sizeof *st->meta);
	if (!st->meta)
		return eosin_error("'%s': out of memory", name);
	const char *mk;
	json_t *mv;
	json_object_foreach(v, mk, mv) {
		if (!json_is_string(mv))
			return eosin_error("'%s': __metadata__ value '%s' is not a string", name, mk);
		st->meta[st->nmeta].key = strdup(mk);
		st->meta[st->nmeta].value = strdup(json_string_value(mv));
		st->nmeta++;
	}
	return 0;
}

/* No two tensors may share bytes. */
static int check_overlaps(const struct safetensors *st, const char *name)
{
	struct st_tensor **order = malloc((st->ntensors ? st->ntensors : 1) * sizeof *order);
	if (!order)
		return eosin_error("'%s': out of memory", name);
	for (size_t i = 0; i < st->ntensors; i++)
		order[i] = &st->tensors[i];
	qsort(order, st->ntensors, sizeof *order, by_offset);
	int ret = 0;
	for (size_t i = 1; i < st->ntensors && ret == 0; i++) {
		const char *prev_end = (const char *)order[i - 1]->data + order[i - 1]->nbytes;
		if ((const char *)order[i]->data < prev_end && order[i]->nbytes)
			ret = eosin_error("'%s': tensor '%s' overlaps tensor '%s'", name, order[i]->name,
			                  order[i - 1]->name);
	}
	free(order);
	return ret;
}

/* A tensor of a dtype eosin does not read, named by one of skip's
 * suffixes: left out. */
static int skipped(const char *key, json_t *v, const char *const *skip)
{
	const char *dt = json_string_value(json_object_get(v, "dtype"));
	if (!skip || !dt || !strcmp(dt, "F32") || !strcmp(dt, "F16") || !strcmp(dt, "BF16"))
		return 0;
	size_t kl = strlen(key);
	for (int i = 0; skip[i]; i++) {
		size_t sl = strlen(skip[i]);
		if (kl >= sl && !strcmp(key + kl - sl, skip[i]))
			return 1;
	}
	return 0;
}

static int parse_skipping(struct safetensors *st, const void *buf, size_t size, const char *name,
                          const char *const *skip, size_t *nskipped)
{
	const unsigned char *p = buf;
	if (size < 8)
		return eosin_error("'%s': %zu bytes, too short for a safetensors file", name, size);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | p[i];
	if (n < 2 || n > ST_MAX_HEADER || n > size - 8)
		return eosin_error("'%s': header length %llu is not inside the file (%zu bytes)", name,
		                   (unsigned long long)n, size);
	json_error_t jerr;
	json_t *root = json_loadb((const char *)p + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return eosin_error("'%s': header is not valid JSON: %s (at byte %d)", name, jerr.text,
		                   jerr.position);
	const char *base = (const char *)p + 8 + n;
	size_t dsize = size - 8 - (size_t)n;
	int ret = -1;
	if (!json_is_object(root)) {
		eosin_error("'%s': header is not a JSON object", name);
		goto out;
	}
	size_t cap = json_object_size(root);
	st->tensors = calloc(cap ? cap : 1, sizeof *st->tensors);
	if (!st->tensors) {
		eosin_error("'%s': out of memory", name);
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		if (!strcmp(key, "__metadata__")) {
			if (parse_metadata(st, v, name) < 0)
				goto out;
			continue;
		}
		if (skipped(key, v, skip)) {
			if (nskipped)
				++*nskipped;
			continue;
		}
		struct st_tensor *t = &st->tensors[st->ntensors];
		if (parse_tensor(t, key, v, base, dsize) < 0) {
			eosin_error_prefix("'%s'", name);
			goto out;
		}
		t->name = strdup(key);
		st->ntensors++;
	}
	ret = check_overlaps(st, name);
out:
	json_decref(root);
	if (ret < 0)
		release(st);
	return ret;
}

int safetensors_parse(struct safetensors *st, const void *buf, size_t size, const char *name)
{
	return parse_skipping(st, buf, size, name, NULL, NULL);
}

int safetensors_open(struct safetensors *st, const char *path)
{
	return safetensors_open_skipping(st, path, NULL, NULL);
}

int safetensors_open_skipping(struct safetensors *st, const char *path,
                              const char *const *skip_suffixes, size_t *nskipped)
{
	memset(st, 0, sizeof *st);
	if (nskipped)
		*nskipped = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return eosin_error("cannot open '%s': %s", path, strerror(errno));
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return eosin_error("'%s' is not a regular file", path);
	}
	size_t size = (size_t)sb.st_size;
	void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	close(fd);
	if (size && map == MAP_FAILED)
		return eosin_error("cannot map '%s': %s", path, strerror(errno));
	if (parse_skipping(st, map, size, path, skip_suffixes, nskipped) < 0) {
		if (map)
			munmap(map, size);
		return -1;
	}
	st->map = map;
	st->map_size = size;
	st->path = strdup(path);
	return 0;
}

void safetensors_close(struct safetensors *st)
{
	release(st);
	if (st->map)
		munmap(st->map, st->map_size);
	free(st->path);
	memset(st, 0, sizeof *st);
}

const struct st_tensor *safetensors_find(const struct safetensors *st, const char *name)
{
	for (size_t i = 0; i < st->ntensors; i++)
		if (!strcmp(st->tensors[i].name, name))
			return &st->tensors[i];
	return NULL;
}

const char *safetensors_meta(const struct safetensors *st, const char *key)
{
	for (size_t i = 0; i < st->nmeta; i++)
		if (!strcmp(st->meta[i].key, key))
			return st->meta[i].value;
	return NULL;
}

void st_tensor_to_f32(const struct st_tensor *t, float *out)
{
	const unsigned char *p = t->data;
	for (int64_t i = 0; i < t->numel; i++) {
		if (t->dtype == ST_F32) {
			memcpy(&out[i], p + 4 * i, 4);
		} else {
			uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
			out[i] = t->dtype == ST_F16 ? f16_to_f32(h) : bf16_to_f32(h);
		}
	}
}

float *safetensors_load_f32(const struct safetensors *st, const char *name, int ndim,
                            const int64_t *shape)
{
	const char *path = st->path ? st->path : "<memory>";
	const struct st_tensor *t = safetensors_find(st, name);
	if (!t) {
		eosin_error("'%s': no tensor '%s'", path, name);
		return NULL;
	}
	int same = t->ndim == ndim;
	for (int i = 0; same && i < ndim; i++)
		same = shape[i] < 0 || shape[i] == t->shape[i];
	if (!same) {
		char want[128] = "", got[128] = "";
		size_t wl = 0, gl = 0;
		for (int i = 0; i < ndim && wl < sizeof want; i++)
			wl += (size_t)snprintf(want + wl, sizeof want - wl, "%s%lld", i ? "," : "",
			                       (long long)shape[i]);
		for (int i = 0; i < t->ndim && gl < sizeof got; i++)
			gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%lld", i ? "," : "",
			                       (long long)t->shape[i]);
		eosin_error("'%s': tensor '%s' has shape [%s], want [%s]", path, name, got, want);
		return NULL;
	}
	float *out = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *out);
	if (!out) {
		eosin_error("'%s': tensor '%s': out of memory", path, name);
		return NULL;
	}
	st_tensor_to_f32(t, out);
	return out;
}

/* ---- writer ---- */

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int safetensors_write(const char *path, const struct st_write_tensor *tensors, size_t n,
                      const char *const *metadata)
{
	json_t *root = json_object();
	size_t offset = 0;
	if (metadata && metadata[0]) {
		json_t *m = json_object();
		for (size_t i = 0; metadata[i] && metadata[i + 1]; i += 2)
			json_object_set_new(m, metadata[i], json_string(metadata[i + 1]));
		json_object_set_new(root, "__metadata__", m);
	}
	for (size_t i = 0; i < n; i++) {
		const struct st_write_tensor *t = &tensors[i];
		if (t->ndim < 0 || t->ndim > ST_MAX_DIMS || json_object_get(root, t->name)) {
			json_decref(root);
			return eosin_error("'%s': tensor '%s': bad dims or duplicate name", path, t->name);
		}
		json_t *shape = json_array();
		size_t numel = 1;
		for (int d = 0; d < t->ndim; d++) {
			json_array_append_new(shape, json_integer(t->shape[d]));
			numel *= (size_t)t->shape[d];
		}
		size_t nb = numel * st_dtype_size(t->dtype);
		json_t *e = json_object();
		json_object_set_new(e, "dtype", json_string(st_dtype_name(t->dtype)));
		json_object_set_new(e, "shape", shape);
		json_object_set_new(e, "data_offsets",
		                    json_pack("[II]", (json_int_t)offset, (json_int_t)(offset + nb)));
		json_object_set_new(root, t->name, e);
		offset += nb;
	}
	char *hdr = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(root);
	if (!hdr)
		return eosin_error("'%s': cannot encode header", path);
	size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		free(hdr);
		return eosin_error("cannot create '%s': %s", tmp, strerror(errno));
	}
	unsigned char len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
	int bad = write_all(fd, len8, 8) < 0 || write_all(fd, hdr, hl) < 0 ||
	          write_all(fd, "        ", padded - hl) < 0;
	free(hdr);
	for (size_t i = 0; !bad && i < n; i++) {
		size_t numel = 1;
		for (int d = 0; d < tensors[i].ndim; d++)
			numel *= (size_t)tensors[i].shape[d];
		bad = write_all(fd, tensors[i].data, numel * st_dtype_size(tensors[i].dtype)) < 0;
	}
	if (!bad)
		bad = fsync(fd) < 0;
	int saved = errno;
	if (close(fd) < 0 && !bad) {
		bad = 1;
		saved = errno;
	}
	if (bad || rename(tmp, path) < 0) {
		if (!bad)
			saved = errno;
		unlink(tmp);
		return eosin_error("cannot write '%s': %s", path, strerror(saved));
	}
	return 0;
}
