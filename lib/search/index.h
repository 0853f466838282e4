/*
 * index.h: an eosin archive: a FAISS index plus its metadata sidecar.
 *
 * ARCHIVE.faiss is the FAISS index (written by FAISS). ARCHIVE.faiss.meta is
 * a record stream (see eosin-index(5)): one `index` record (dim, metric,
 * factory, count, the embedding's model/hash, a token of the trained state
 * and the size and checksum of the .faiss file), then the stored records,
 * one per FAISS id, in id order: the input records with every embedding
 * and binary field (pixels) removed. FAISS position i is stored record i;
 * positions are assigned in the order vectors are added (0, 1, 2, ...), so
 * no IDMap is needed and merged shards simply continue the numbering. The
 * ids an archive answers with are first_id + position (first_id 0 unless
 * the builder chose another, e.g. one range per shard of a fan-out that is
 * searched shard by shard): 64-bit throughout, up to ARCHIVE_MAX_ID.
 *
 * Writing is atomic and durable: both files go to temporary names and are
 * synced; the sidecar is renamed to ARCHIVE.faiss.meta.next, the index over
 * ARCHIVE.faiss (the commit), then the sidecar over ARCHIVE.faiss.meta. A
 * reader checks the .faiss file's size and checksum against the sidecar
 * before FAISS parses it, and takes .meta.next when that is the one that
 * matches: a write killed at any point leaves the old pair or the new one,
 * and a truncated or foreign file, or a mismatched pair, is an error, not a
 * crash or a wrong answer.
 *
 * struct archive owns its FAISS index and a copy of every stored record.
 */
#ifndef EOSIN_INDEX_H
#define EOSIN_INDEX_H

#include "search/faiss_shim.h"
#include "core/stream.h"
#include "core/vec.h"

#include <stddef.h>
#include <stdint.h>

enum archive_metric { ARCHIVE_IP = 0, ARCHIVE_L2 = 1 };

#define ARCHIVE_MAX_ID ((int64_t)1 << 62) /* first_id + count never passes it */

struct archive {
	FaissIndex *faiss;
	int dim;
	enum archive_metric metric;
	int normalize;        /* vectors (and queries) are L2-normalised */
	char *factory;        /* FAISS index_factory string */
	char *field;          /* embedding field the vectors came from */
	char *model, *hash;   /* the embedding's model and weights hash ("" if none) */
	char *train_token;    /* checksum of the trained, empty index (hex) */
	int64_t count;        /* stored records == FAISS ntotal */
	int64_t first_id;     /* ids are first_id + FAISS's position: first_id .. first_id+count-1 */
	/* Stored records, back to back: record i is meta[off[i] .. off[i+1]). */
	char *meta;
	size_t meta_len, meta_cap;
	size_t *off;          /* count + 1 entries */
	size_t off_cap;
};

/* A new, empty archive. metric: ARCHIVE_IP or ARCHIVE_L2. model/hash may be
 * NULL. The FAISS index is made from `factory` but not trained. */
int archive_create(struct archive *a, const char *factory, int dim, enum archive_metric metric,
                   int normalize, const char *field, const char *model, const char *hash);
/* Does the index need training before vectors can be added? */
int archive_needs_training(const struct archive *a);
/* Train on x (n, dim) float32 (normalised here when a->normalize). FAISS's
 * own minimum is checked first: the error says how many vectors are needed. */
int archive_train(struct archive *a, int64_t n, const float *x);
/* The fewest training vectors this factory accepts (0: no training). */
int64_t archive_min_training(const struct archive *a);
/* Add n vectors x (n, dim) (normalised here when a->normalize; x is not
 * modified) and their stored records (recs[i], lens[i]: msgpack maps, as
 * made by archive_strip_record). Ids count on from a->count. */
int archive_add(struct archive *a, int64_t n, const float *x, char *const *recs,
                const size_t *lens);
/* Move every entry of src into a (ids of src shifted by a->count). The two
 * must agree on dim, metric, normalisation, field, model hash and, for
 * indices with inverted lists, the trained state (same train_token). */
int archive_merge(struct archive *a, struct archive *src, const char *src_name);

int archive_write(struct archive *a, const char *path);
int archive_read(struct archive *a, const char *path);
void archive_release(struct archive *a);

/* Search nq queries x (nq, dim) (normalised here when a->normalize):
 * scores (nq, k) and ids (nq, k), first_id-based; id -1 where fewer than k
 * were found.
 * Scores are inner products (ip) or squared L2 distances (l2). */
int archive_search(struct archive *a, int64_t nq, const float *x, int k, float *scores,
                   int64_t *ids);
/* Set a search parameter by FAISS's name (nprobe, efSearch, ...). */
int archive_set_param(struct archive *a, const char *name, double value);
/* Stored record `id` (first_id-based) as bytes (a msgpack map), or -1. */
int archive_record(const struct archive *a, int64_t id, const char **p, size_t *n);

/* The record without its embeddings and binary fields, into a malloc'd
 * buffer. */
int archive_strip_record(const struct record *rec, char **out, size_t *len);

/* L2-normalise the rows of x (n, dim) in place; a zero row stays zero. */
void vec_normalize_rows(float *x, int64_t n, int dim);

#endif
