/*
 * index.c: an eosin archive, a FAISS index plus its metadata sidecar. See
 * index.h for the files and their invariants.
 */
#include "search/index.h"

#include "core/error.h"
#include "core/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIDECAR_SUFFIX ".meta"
#define NEXT_SUFFIX ".next" /* a sidecar whose index is being renamed in */

static char *xstrdup_or_empty(const char *s)
{
	char *p = strdup(s ? s : "");
	if (!p)
		eosin_error("out of memory");
	return p;
}

static const char *faiss_msg(void)
{
	const char *m = faiss_get_last_error();
	return m && *m ? m : "unknown error";
}

void vec_normalize_rows(float *x, int64_t n, int dim)
{
	for (int64_t i = 0; i < n; i++) {
		float *r = x + i * dim;
		double ss = 0;
		for (int j = 0; j < dim; j++)
			ss += (double)r[j] * r[j];
		if (ss <= 0)
			continue;
		float inv = (float)(1.0 / sqrt(ss));
		for (int j = 0; j < dim; j++)
			r[j] *= inv;
	}
}

/* A normalised copy of x when the archive normalises, else x itself. */
static const float *prepare(const struct archive *a, int64_t n, const float *x, float **copy)
{
	*copy = NULL;
	if (!a->normalize)
		return x;
	size_t bytes = (size_t)n * (size_t)a->dim * sizeof(float);
	*copy = malloc(bytes ? bytes : 1);
	if (!*copy) {
		eosin_error("out of memory (%zu bytes of vectors)", bytes);
		return NULL;
	}
	memcpy(*copy, x, bytes);
	vec_normalize_rows(*copy, n, a->dim);
	return *copy;
}

/* 64-bit checksum of a byte range (not cryptographic: it catches truncated,
 * swapped and damaged files). Word-wise multiply-rotate, then the tail. */
static uint64_t checksum_update(uint64_t h, const unsigned char *p, size_t n)
{
	const uint64_t m = 0x9e3779b97f4a7c15ull;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h ^= w * m;
		h = (h << 27 | h >> 37) * 0xff51afd7ed558ccdull;
	}
	for (; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Size and checksum of the open file fd (named path in messages), read
 * from its start. */
static int checksum_fd(int fd, const char *path, uint64_t *sum, uint64_t *size)
{
	if (lseek(fd, 0, SEEK_SET) < 0)
		return eosin_error("cannot seek in '%s': %s", path, strerror(errno));
	unsigned char *buf = malloc(1 << 20);
	if (!buf)
		return eosin_error("out of memory");
	uint64_t h = 0x84222325cbf29ce4ull, total = 0;
	ssize_t r;
	/* Blocks are 1 MiB multiples of 8 so the word boundaries do not depend
	 * on read sizes except at the very end. */
	size_t fill = 0;
	while ((r = read(fd, buf + fill, (1 << 20) - fill)) > 0) {
		fill += (size_t)r;
		total += (uint64_t)r;
		if (fill == (1 << 20)) {
			h = checksum_update(h, buf, fill);
			fill = 0;
		}
	}
	int saved = errno;
	if (r == 0)
		h = checksum_update(h, buf, fill);
	free(buf);
	if (r < 0)
		return eosin_error("cannot read '%s': %s", path, strerror(saved));
	*sum = h;
	*size = total;
	return 0;
}

static int checksum_file(const char *path, uint64_t *sum, uint64_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return eosin_error("cannot open '%s': %s", path, strerror(errno));
	int rc = checksum_fd(fd, path, sum, size);
	close(fd);
	return rc;
}

/* Checksum of the index as FAISS serialises it, through a memory stream. */
static int index_token(const FaissIndex *idx, char out[17])
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return eosin_error("out of memory");
	int rc = faiss_write_index(idx, f);
	fclose(f);
	if (rc) {
		free(buf);
		return eosin_error("cannot serialise the index: %s", faiss_msg());
	}
	snprintf(out, 17, "%016" PRIx64, checksum_update(0x84222325cbf29ce4ull,
	                                                 (const unsigned char *)buf, len));
	free(buf);
	return 0;
}

int archive_create(struct archive *a, const char *factory, int dim, enum archive_metric metric,
                   int normalize, const char *field, const char *model, const char *hash)
{
	memset(a, 0, sizeof(*a));
	if (dim <= 0)
		return eosin_error("dimension %d is not positive", dim);
	if (faiss_index_factory(&a->faiss, dim, factory,
	                        metric == ARCHIVE_IP ? METRIC_INNER_PRODUCT : METRIC_L2)) {
		a->faiss = NULL;
		return eosin_error("cannot make index '%s' of dimension %d: %s", factory, dim,
		                   faiss_msg());
	}
	a->dim = dim;
	a->metric = metric;
	a->normalize = normalize;
	a->factory = xstrdup_or_empty(factory);
	a->field = xstrdup_or_empty(field);
	a->model = xstrdup_or_empty(model);
	a->hash = xstrdup_or_empty(hash);
	a->train_token = xstrdup_or_empty("");
	a->off = calloc(1, sizeof(size_t));
	a->off_cap = 1;
	if (!a->factory || !a->field || !a->model || !a->hash || !a->train_token || !a->off) {
		archive_release(a);
		return eosin_error("out of memory");
	}
	if (!archive_needs_training(a)) {
		char tok[17];
		if (index_token(a->faiss, tok) < 0) {
			archive_release(a);
			return -1;
		}
		free(a->train_token);
		a->train_token = xstrdup_or_empty(tok);
	}
	return 0;
}

int archive_needs_training(const struct archive *a)
{
	return !faiss_Index_is_trained(a->faiss);
}

/* The number in `s` after `prefix` followed by a digit, or -1. */
static long factory_number(const char *s, const char *prefix)
{
	size_t pl = strlen(prefix);
	for (const char *p = s; (p = strstr(p, prefix)) != NULL; p += pl) {
		if (p > s && p[-1] != ',' && p[-1] != '_')
			continue;
		if (p[pl] >= '0' && p[pl] <= '9')
			return strtol(p + pl, NULL, 10);
	}
	return -1;
}

int64_t archive_min_training(const struct archive *a)
{
	if (!archive_needs_training(a))
		return 0;
	int64_t need = 1;
	long nlist = factory_number(a->factory, "IVF");
	if (nlist > need)
		need = nlist;
	/* PQ and OPQ learn 2^nbits centroids per sub-quantizer (nbits 8
	 * unless written PQMxB). */
	const char *pq = strstr(a->factory, "PQ");
	if (pq) {
		const char *x = pq + 2;
		while (*x >= '0' && *x <= '9')
			x++;
		long nbits = *x == 'x' ? strtol(x + 1, NULL, 10) : 8;
		if (nbits > 0 && nbits < 24 && (1L << nbits) > need)
			need = 1L << nbits;
	}
	return need;
}

int archive_train(struct archive *a, int64_t n, const float *x)
{
	int64_t need = archive_min_training(a);
	if (n < need)
		return eosin_error("index '%s' needs at least %" PRId64
		                   " training vectors, got %" PRId64,
		                   a->factory, need, n);
	float *copy;
	const float *xx = prepare(a, n, x, &copy);
	if (!xx)
		return -1;
	int rc = faiss_Index_train(a->faiss, n, xx);
	free(copy);
	if (rc)
		return eosin_error("cannot train index '%s' on %" PRId64 " vectors: %s", a->factory,
		                   n, faiss_msg());
	char tok[17];
	if (index_token(a->faiss, tok) < 0)
		return -1;
	free(a->train_token);
	a->train_token = xstrdup_or_empty(tok);
	return a->train_token ? 0 : -1;
}

static int meta_append(struct archive *a, const char *p, size_t n)
{
	if (a->meta_len + n > a->meta_cap) {
		size_t cap = a->meta_cap ? a->meta_cap : 4096;
		while (cap < a->meta_len + n)
			cap *= 2;
		char *m = realloc(a->meta, cap);
		if (!m)
			return eosin_error("out of memory (stored records)");
		a->meta = m;
		a->meta_cap = cap;
	}
	if ((size_t)a->count + 2 > a->off_cap) {
		size_t cap = a->off_cap * 2 + 16;
		size_t *o = realloc(a->off, cap * sizeof(size_t));
		if (!o)
			return eosin_error("out of memory (stored records)");
		a->off = o;
		a->off_cap = cap;
	}
	memcpy(a->meta + a->meta_len, p, n);
	a->meta_len += n;
	a->count++;
	a->off[a->count] = a->meta_len;
	return 0;
}

int archive_add(struct archive *a, int64_t n, const float *x, char *const *recs,
                const size_t *lens)
{
	if (archive_needs_training(a))
		return eosin_error("index '%s' is not trained", a->factory);
	float *copy;
	const float *xx = prepare(a, n, x, &copy);
	if (!xx)
		return -1;
	int rc = faiss_Index_add(a->faiss, n, xx);
	free(copy);
	if (rc)
		return eosin_error("cannot add %" PRId64 " vectors: %s", n, faiss_msg());
	for (int64_t i = 0; i < n; i++)
		if (meta_append(a, recs[i], lens[i]) < 0)
			return -1;
	if (faiss_Index_ntotal(a->faiss) != a->count)
		return eosin_error("index holds %" PRId64 " vectors but %" PRId64
		                   " records are stored",
		                   (int64_t)faiss_Index_ntotal(a->faiss), a->count);
	return 0;
}

int archive_merge(struct archive *a, struct archive *src, const char *src_name)
{
	const char *what = NULL;
	if (a->dim != src->dim)
		what = "dimension";
	else if (a->metric != src->metric)
		what = "metric";
	else if (a->normalize != src->normalize)
		what = "normalisation";
	else if (strcmp(a->field, src->field))
		what = "field";
	else if (strcmp(a->hash, src->hash) || strcmp(a->model, src->model))
		what = "embedding model";
	else if (strcmp(a->factory, src->factory))
		what = "factory";
	else if (eosin_faiss_is_ivf(a->faiss) && strcmp(a->train_token, src->train_token))
		what = "trained state (train the shards once, then build each with --trained)";
	if (what)
		return eosin_error("'%s': %s differs from the first shard's", src_name, what);
	int64_t n = src->count;
	if (eosin_faiss_merge_into(a->faiss, src->faiss) < 0)
		return eosin_error_prefix("'%s'", src_name);
	for (int64_t i = 0; i < n; i++)
		if (meta_append(a, src->meta + src->off[i], src->off[i + 1] - src->off[i]) < 0)
			return -1;
	if (faiss_Index_ntotal(a->faiss) != a->count)
		return eosin_error("merged index holds %" PRId64 " vectors, %" PRId64 " records",
		                   (int64_t)faiss_Index_ntotal(a->faiss), a->count);
	return 0;
}

static int is_vec_map(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_MAP && mpo_get(o, "dtype") && mpo_get(o, "data");
}

int archive_strip_record(const struct record *rec, char **out, size_t *len)
{
	struct recb b;
	recb_init(&b);
	char kind[64];
	if (rec->kind_len >= sizeof(kind)) {
		recb_release(&b);
		return eosin_error("record %" PRIu64 ": kind too long", rec->number);
	}
	memcpy(kind, rec->kind, rec->kind_len);
	kind[rec->kind_len] = 0;
	recb_begin(&b, kind, (int)rec->version);
	const msgpack_object *m = &rec->root;
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;
		const msgpack_object *v = &m->via.map.ptr[i].val;
		if (mpo_str_eq(k, "k") || mpo_str_eq(k, "v"))
			continue;
		if (v->type == MSGPACK_OBJECT_BIN || is_vec_map(v))
			continue;
		msgpack_pack_object(&b.pk, *k);
		msgpack_pack_object(&b.pk, *v);
		b.npairs++;
	}
	int rc = recb_finish(&b, out, len);
	recb_release(&b);
	return rc;
}

static char *sidecar_path(const char *path)
{
	char *p;
	if (asprintf(&p, "%s%s", path, SIDECAR_SUFFIX) < 0) {
		eosin_error("out of memory");
		return NULL;
	}
	return p;
}

static int write_sidecar(const struct archive *a, const char *path, uint64_t sum,
                         uint64_t size)
{
	struct stream_writer w;
	if (stream_writer_open(&w, path) < 0)
		return -1;
	struct recb b;
	recb_init(&b);
	char sumhex[17];
	snprintf(sumhex, sizeof(sumhex), "%016" PRIx64, sum);
	recb_begin(&b, "index", 1);
	recb_int(&b, "dim", a->dim);
	recb_int(&b, "count", a->count);
	recb_str(&b, "metric", a->metric == ARCHIVE_IP ? "ip" : "l2");
	recb_bool(&b, "normalize", a->normalize);
	recb_str(&b, "factory", a->factory);
	recb_str(&b, "field", a->field);
	if (*a->model)
		recb_str(&b, "model", a->model);
	if (*a->hash)
		recb_str(&b, "hash", a->hash);
	recb_str(&b, "train_token", a->train_token);
	if (a->first_id)
		recb_int(&b, "first_id", a->first_id);
	recb_int(&b, "index_bytes", (int64_t)size);
	recb_str(&b, "index_sum", sumhex);
	int rc = recb_write(&b, &w);
	recb_release(&b);
	if (rc == 0 && a->meta_len)
		rc = stream_write_raw(&w, a->meta, a->meta_len);
	if (stream_writer_close(&w) < 0)
		rc = -1;
	return rc;
}

/* Data of PATH (a file, or a folder with dir = 1) on stable storage. */
static int sync_path(const char *path, int dir)
{
	int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
	if (fd < 0)
		return eosin_error("cannot open '%s': %s", path, strerror(errno));
	int rc = fsync(fd);
	int saved = errno;
	close(fd);
	/* Some file systems cannot sync a folder; the renames still happened. */
	if (rc < 0 && !(dir && (saved == EINVAL || saved == EROFS)))
		return eosin_error("cannot sync '%s': %s", path, strerror(saved));
	return 0;
}

/* The tests stop a write dead after step N (EOSIN_INDEX_CRASH_AFTER=N), as
 * a kill -9 or a power cut there would: see tests/t/t5050-index-crash.sh. */
static void crash_point(int step)
{
	const char *s = getenv("EOSIN_INDEX_CRASH_AFTER");
	if (s && atoi(s) == step)
		raise(SIGKILL);
}

static int rename_or_fail(const char *from, const char *to)
{
	if (rename(from, to) == 0)
		return 0;
	return eosin_error("cannot rename '%s' to '%s': %s", from, to, strerror(errno));
}

/*
 * The pair is replaced with one commit point. 1: the new index and sidecar
 * are written to temporary names and synced. 2: the sidecar becomes
 * ARCHIVE.meta.next. 3: the index is renamed over ARCHIVE. 4: the sidecar
 * is renamed over ARCHIVE.meta. Stopped before 3, the old pair is intact
 * (a stale .next is ignored: it does not match the old index); stopped
 * after 3, the new index matches .next and readers take that sidecar
 * (archive_read). Step 3 is the commit.
 */
int archive_write(struct archive *a, const char *path)
{
	char *meta = sidecar_path(path), *next = NULL, *tmp_index = NULL, *tmp_meta = NULL,
	     *dir = NULL;
	int rc = -1;
	if (!meta)
		return -1;
	if (a->first_id < 0 || a->first_id > ARCHIVE_MAX_ID - a->count) {
		eosin_error("ids %" PRId64 "..%" PRId64 " pass the largest, %" PRId64, a->first_id,
		            a->first_id + a->count - 1, ARCHIVE_MAX_ID);
		goto out;
	}
	if (asprintf(&tmp_index, "%s.tmp.%ld", path, (long)getpid()) < 0 ||
	    asprintf(&tmp_meta, "%s.tmp.%ld", meta, (long)getpid()) < 0 ||
	    asprintf(&next, "%s%s", meta, NEXT_SUFFIX) < 0 || !(dir = strdup(path))) {
		eosin_error("out of memory");
		goto out;
	}
	char *slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0'; /* the root */
	else
		*slash = '\0';
	if (faiss_write_index_fname(a->faiss, tmp_index)) {
		eosin_error("cannot write '%s': %s", path, faiss_msg());
		goto fail;
	}
	uint64_t sum, size;
	if (checksum_file(tmp_index, &sum, &size) < 0 || write_sidecar(a, tmp_meta, sum, size) < 0 ||
	    sync_path(tmp_index, 0) < 0 || sync_path(tmp_meta, 0) < 0)
		goto fail;
	crash_point(1);
	if (rename_or_fail(tmp_meta, next) < 0)
		goto fail;
	crash_point(2);
	if (rename_or_fail(tmp_index, path) < 0) {
		unlink(next);
		goto fail;
	}
	crash_point(3);
	if (rename_or_fail(next, meta) < 0 || sync_path(dir, 1) < 0)
		goto out; /* committed: readers use .next until it is renamed */
	rc = 0;
	goto out;
fail:
	unlink(tmp_index);
	unlink(tmp_meta);
out:
	free(meta);
	free(next);
	free(dir);
	free(tmp_index);
	free(tmp_meta);
	return rc;
}

static char *field_strdup(const struct record *rec, const char *key, int required)
{
	const char *s;
	size_t n;
	int rc = record_get_str(rec, key, &s, &n);
	if (rc == 1 && !required)
		return xstrdup_or_empty("");
	if (rc != 0) {
		if (rc == 1)
			eosin_error("field '%s' missing", key);
		return NULL;
	}
	char *p = strndup(s, n);
	if (!p)
		eosin_error("out of memory");
	return p;
}

static int read_head(struct archive *a, const struct record *rec, uint64_t *sum,
                     int64_t *bytes, int64_t *count)
{
	int64_t dim;
	const char *metric;
	size_t mlen;
	if (!record_is(rec, "index"))
		return eosin_error("first record is not an index record");
	if (record_get_int(rec, "dim", &dim) || record_get_int(rec, "count", count) ||
	    record_get_int(rec, "index_bytes", bytes) ||
	    record_get_str(rec, "metric", &metric, &mlen) ||
	    record_get_bool(rec, "normalize", &a->normalize))
		return eosin_error("index record lacks dim, count, index_bytes, metric or normalize");
	if (dim <= 0 || dim > 1 << 20 || *count < 0)
		return eosin_error("index record has dim %" PRId64 ", count %" PRId64, dim, *count);
	int rc = record_get_int(rec, "first_id", &a->first_id);
	if (rc == 1)
		a->first_id = 0;
	else if (rc < 0 || a->first_id < 0 || a->first_id > ARCHIVE_MAX_ID - *count)
		return eosin_error("index record's first_id is not an integer in 0..%" PRId64,
		                   ARCHIVE_MAX_ID - *count);
	a->dim = (int)dim;
	a->metric = mlen == 2 && !memcmp(metric, "l2", 2) ? ARCHIVE_L2 : ARCHIVE_IP;
	if (!(a->factory = field_strdup(rec, "factory", 1)) ||
	    !(a->field = field_strdup(rec, "field", 1)) ||
	    !(a->model = field_strdup(rec, "model", 0)) ||
	    !(a->hash = field_strdup(rec, "hash", 0)) ||
	    !(a->train_token = field_strdup(rec, "train_token", 1)))
		return -1;
	char *s = field_strdup(rec, "index_sum", 1);
	if (!s)
		return -1;
	*sum = strtoull(s, NULL, 16);
	free(s);
	return 0;
}

/* Read the sidecar META into a and check it describes an index file of
 * this size and checksum. 0: it does; 1: it does not, or (missing_ok)
 * META does not exist; -1: an error. a holds the sidecar only on 0. */
static int read_sidecar(struct archive *a, const char *meta, const char *path, uint64_t sum,
                        uint64_t size, int missing_ok)
{
	memset(a, 0, sizeof(*a));
	if (missing_ok && access(meta, F_OK) < 0 && errno == ENOENT)
		return 1;
	struct stream_reader r;
	struct record rec;
	int rc;
	uint64_t want_sum = 0;
	int64_t want_bytes = 0, want_count = 0;
	if (stream_reader_open(&r, meta) < 0)
		return -1;
	a->off = calloc(1, sizeof(size_t));
	a->off_cap = 1;
	if (!a->off) {
		rc = eosin_error("out of memory");
		goto done;
	}
	rc = stream_read(&r, &rec);
	if (rc == 0)
		rc = eosin_error("'%s' is empty", meta);
	if (rc < 0)
		goto done;
	if (read_head(a, &rec, &want_sum, &want_bytes, &want_count) < 0) {
		rc = eosin_error_prefix("'%s'", meta);
		goto done;
	}
	if (size != (uint64_t)want_bytes || sum != want_sum) {
		eosin_error("'%s' does not match its sidecar '%s' (%" PRIu64 " bytes, sidecar says %" PRId64
		            "%s): truncated, damaged or from another build",
		            path, meta, size, want_bytes,
		            size == (uint64_t)want_bytes ? ", checksums differ" : "");
		rc = 1;
		goto done;
	}
	while ((rc = stream_read(&r, &rec)) == 1)
		if ((rc = meta_append(a, rec.raw, rec.len)) < 0)
			goto done;
	if (rc < 0)
		goto done;
	if (a->count != want_count)
		rc = eosin_error("'%s' holds %" PRId64 " records, its header says %" PRId64, meta,
		                 a->count, want_count);
done:
	stream_reader_release(&r);
	if (rc != 0)
		archive_release(a);
	return rc;
}

/*
 * The index file is opened once: its checksum and FAISS's parse see the
 * same file even while a writer renames a new one in. The sidecar that
 * matches it is ARCHIVE.meta, or ARCHIVE.meta.next when a write stopped (or
 * is) between its commit and its last rename (see archive_write); should a
 * writer finish between our two looks, a second round finds the pair.
 */
int archive_read(struct archive *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	char *meta = sidecar_path(path), *next = NULL;
	int fd = -1, rc = -1;
	FILE *f = NULL;
	if (!meta)
		return -1;
	if (asprintf(&next, "%s%s", meta, NEXT_SUFFIX) < 0) {
		next = NULL;
		eosin_error("out of memory");
		goto done;
	}
	for (int round = 0; round < 2; round++) {
		if (fd >= 0)
			close(fd);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
			eosin_error("cannot open '%s': %s", path, strerror(errno));
			goto done;
		}
		uint64_t sum, size;
		if (checksum_fd(fd, path, &sum, &size) < 0)
			goto done;
		rc = read_sidecar(a, meta, path, sum, size, 0);
		if (rc != 1)
			break;
		char *why = strdup(eosin_errmsg());
		if (read_sidecar(a, next, path, sum, size, 1) == 0)
			rc = 0;
		else
			eosin_error("%s", why ? why : "out of memory");
		free(why);
		if (rc == 0)
			break;
	}
	if (rc != 0) {
		rc = -1;
		goto done;
	}
	rc = -1;
	if (lseek(fd, 0, SEEK_SET) < 0 || !(f = fdopen(fd, "rb"))) {
		eosin_error("cannot read '%s': %s", path, strerror(errno));
		goto done;
	}
	fd = -1; /* f owns it */
	if (faiss_read_index(f, 0, &a->faiss)) {
		a->faiss = NULL;
		eosin_error("cannot read index '%s': %s", path, faiss_msg());
		goto done;
	}
	if (faiss_Index_d(a->faiss) != a->dim || faiss_Index_ntotal(a->faiss) != a->count) {
		eosin_error("'%s' has dimension %d and %" PRId64 " vectors, its sidecar %d and %" PRId64,
		            path, faiss_Index_d(a->faiss), (int64_t)faiss_Index_ntotal(a->faiss),
		            a->dim, a->count);
		goto done;
	}
	rc = 0;
done:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	free(meta);
	free(next);
	if (rc < 0)
		archive_release(a);
	return rc < 0 ? -1 : 0;
}

void archive_release(struct archive *a)
{
	if (a->faiss)
		faiss_Index_free(a->faiss);
	free(a->factory);
	free(a->field);
	free(a->model);
	free(a->hash);
	free(a->train_token);
	free(a->meta);
	free(a->off);
	memset(a, 0, sizeof(*a));
}

int archive_search(struct archive *a, int64_t nq, const float *x, int k, float *scores,
                   int64_t *ids)
{
	float *copy;
	const float *xx = prepare(a, nq, x, &copy);
	if (!xx)
		return -1;
	int rc = faiss_Index_search(a->faiss, nq, xx, k, scores, ids);
	free(copy);
	if (rc)
		return eosin_error("search failed: %s", faiss_msg());
	if (a->first_id)
		for (int64_t i = 0; i < nq * k; i++)
			if (ids[i] >= 0)
				ids[i] += a->first_id;
	return 0;
}

int archive_set_param(struct archive *a, const char *name, double value)
{
	FaissParameterSpace *ps;
	if (faiss_ParameterSpace_new(&ps))
		return eosin_error("out of memory");
	int rc = faiss_ParameterSpace_set_index_parameter(ps, a->faiss, name, value);
	faiss_ParameterSpace_free(ps);
	if (rc)
		return eosin_error("cannot set '%s' on index '%s': %s", name, a->factory, faiss_msg());
	return 0;
}

int archive_record(const struct archive *a, int64_t id, const char **p, size_t *n)
{
	int64_t pos = id - a->first_id;
	if (id < a->first_id || pos >= a->count)
		return eosin_error("id %" PRId64 " is not in the index (%" PRId64 "..%" PRId64 ")", id,
		                   a->first_id, a->first_id + a->count - 1);
	*p = a->meta + a->off[pos];
	*n = a->off[pos + 1] - a->off[pos];
	return 0;
}
