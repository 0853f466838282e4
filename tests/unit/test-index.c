/*
 * test-index.c: lib/search/faiss_shim.cpp and lib/search/index.c. Exact search against a
 * brute-force loop, the archive round trip, merging, training minimums, and
 * FAISS failures (bad factory strings, garbage and truncated files) turned
 * into errors instead of crashes.
 */
#include "core/error.h"
#include "search/index.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 500
#define D 32
#define Q 10
#define K 10

static float frand(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

/* Stored records: {k: tile, v: 1, id: "t<i>"} made by hand. */
static void make_records(char **recs, size_t *lens, int n, int base)
{
	for (int i = 0; i < n; i++) {
		msgpack_sbuffer sb;
		msgpack_packer pk;
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		char id[32];
		int len = snprintf(id, sizeof(id), "t%d", base + i);
		msgpack_pack_map(&pk, 3);
		msgpack_pack_str(&pk, 1), msgpack_pack_str_body(&pk, "k", 1);
		msgpack_pack_str(&pk, 4), msgpack_pack_str_body(&pk, "tile", 4);
		msgpack_pack_str(&pk, 1), msgpack_pack_str_body(&pk, "v", 1);
		msgpack_pack_int(&pk, 1);
		msgpack_pack_str(&pk, 2), msgpack_pack_str_body(&pk, "id", 2);
		msgpack_pack_str(&pk, (size_t)len), msgpack_pack_str_body(&pk, id, (size_t)len);
		recs[i] = sb.data;
		lens[i] = sb.size;
	}
}

/* Top K by inner product, ties to the lower id (FAISS's Flat order). */
static void brute(const float *xb, const float *q, float *sc, int64_t *id)
{
	for (int r = 0; r < K; r++) {
		sc[r] = -1e30f;
		id[r] = -1;
	}
	for (int i = 0; i < N; i++) {
		float s = 0;
		for (int j = 0; j < D; j++)
			s += xb[i * D + j] * q[j];
		if (s <= sc[K - 1])
			continue;
		int r = K - 1;
		while (r > 0 && sc[r - 1] < s) {
			sc[r] = sc[r - 1];
			id[r] = id[r - 1];
			r--;
		}
		sc[r] = s;
		id[r] = i;
	}
}

int main(void)
{
	static float xb[N * D], xq[Q * D];
	unsigned seed = 42;
	for (int i = 0; i < N * D; i++)
		xb[i] = frand(&seed);
	for (int i = 0; i < Q * D; i++)
		xq[i] = frand(&seed);
	char *recs[N];
	size_t lens[N];
	make_records(recs, lens, N, 0);

	/* FAISS errors come back as codes and messages. */
	FaissIndex *bad = NULL;
	int rc = faiss_index_factory(&bad, D, "NoSuchIndex", METRIC_L2);
	ok(rc != 0 && strlen(faiss_get_last_error()) > 0, "bad factory string is an error: %s",
	   faiss_get_last_error());
	char tmpl[] = "/tmp/test-index.XXXXXX";
	ok(mkdtemp(tmpl) != NULL, "scratch directory");
	char path[256], meta[256];
	snprintf(path, sizeof(path), "%s/garbage.faiss", tmpl);
	FILE *f = fopen(path, "w");
	fputs("this is not an index", f);
	fclose(f);
	FaissIndex *rd = NULL;
	rc = faiss_read_index_fname(path, 0, &rd);
	ok(rc != 0 && rd == NULL, "garbage file is an error: %s", faiss_get_last_error());

	/* Flat archive against brute force. */
	struct archive a;
	ok(archive_create(&a, "Flat", D, ARCHIVE_IP, 0, "joint_emb", "m", "h") == 0, "create Flat");
	ok(archive_min_training(&a) == 0, "Flat needs no training");
	ok(archive_add(&a, N, xb, recs, lens) == 0 && a.count == N, "add %d", N);
	float sc[Q * K], bsc[K];
	int64_t id[Q * K], bid[K];
	ok(archive_search(&a, Q, xq, K, sc, id) == 0, "search");
	int same_ids = 1;
	double worst = 0;
	for (int q = 0; q < Q; q++) {
		brute(xb, xq + q * D, bsc, bid);
		for (int r = 0; r < K; r++) {
			same_ids &= bid[r] == id[q * K + r];
			double e = fabs(bsc[r] - sc[q * K + r]);
			worst = e > worst ? e : worst;
		}
	}
	ok(same_ids, "Flat ids equal brute force");
	ok(worst <= 1e-5, "Flat scores within 1e-5 of brute force (worst %.2g)", worst);

	/* Round trip, and a truncated index file. */
	snprintf(path, sizeof(path), "%s/a.faiss", tmpl);
	snprintf(meta, sizeof(meta), "%s/a.faiss.meta", tmpl);
	ok(archive_write(&a, path) == 0, "write archive");
	struct archive b;
	ok(archive_read(&b, path) == 0 && b.count == N && b.dim == D && !strcmp(b.hash, "h"),
	   "read archive back");
	float sc2[Q * K];
	int64_t id2[Q * K];
	ok(archive_search(&b, Q, xq, K, sc2, id2) == 0 && !memcmp(id, id2, sizeof(id)) &&
	       !memcmp(sc, sc2, sizeof(sc)),
	   "read-back archive answers the same");
	const char *rp;
	size_t rn;
	ok(archive_record(&b, 7, &rp, &rn) == 0 && rn == lens[7] && !memcmp(rp, recs[7], rn),
	   "stored record 7 comes back");
	ok(archive_record(&b, N, &rp, &rn) < 0, "id past the end is an error");

	/* FAISS itself meets a truncated file: the shim catches its throw. */
	char cut[300];
	snprintf(cut, sizeof(cut), "%s/cut.faiss", tmpl);
	FILE *in = fopen(path, "rb"), *o = fopen(cut, "wb");
	char buf[1000];
	size_t got = fread(buf, 1, sizeof(buf), in);
	fwrite(buf, 1, got, o);
	fclose(in);
	fclose(o);
	rd = NULL;
	rc = faiss_read_index_fname(cut, 0, &rd);
	ok(rc != 0 && rd == NULL, "truncated index file is an error: %s", faiss_get_last_error());

	/* Merge: two halves equal the whole. */
	struct archive h1, h2;
	archive_create(&h1, "Flat", D, ARCHIVE_IP, 0, "joint_emb", "m", "h");
	archive_create(&h2, "Flat", D, ARCHIVE_IP, 0, "joint_emb", "m", "h");
	archive_add(&h1, N / 2, xb, recs, lens);
	archive_add(&h2, N / 2, xb + (N / 2) * D, recs + N / 2, lens + N / 2);
	ok(archive_merge(&h1, &h2, "h2") == 0 && h1.count == N, "merge halves");
	ok(archive_search(&h1, Q, xq, K, sc2, id2) == 0 && !memcmp(id, id2, sizeof(id)),
	   "merged halves answer like the whole");
	struct archive other;
	archive_create(&other, "Flat", D, ARCHIVE_IP, 0, "joint_emb", "m", "other");
	rc = archive_merge(&h1, &other, "o");
	ok(rc < 0 && strstr(eosin_errmsg(), "embedding model"), "merge refuses another model: %s",
	   eosin_errmsg());

	/* Training minimums by factory. */
	struct archive t;
	archive_create(&t, "IVF64,PQ8", D, ARCHIVE_L2, 0, "joint_emb", NULL, NULL);
	ok(archive_min_training(&t) == 256, "IVF64,PQ8 needs 256");
	rc = archive_train(&t, 100, xb);
	ok(rc < 0 && strstr(eosin_errmsg(), "at least 256"), "training on 100 refused: %s",
	   eosin_errmsg());
	archive_release(&t);
	archive_create(&t, "IVF300,Flat", D, ARCHIVE_L2, 0, "joint_emb", NULL, NULL);
	ok(archive_min_training(&t) == 300, "IVF300,Flat needs 300");
	archive_release(&t);
	archive_create(&t, "PQ8x4", D, ARCHIVE_L2, 0, "joint_emb", NULL, NULL);
	ok(archive_min_training(&t) == 16, "PQ8x4 needs 16");
	archive_release(&t);

	archive_release(&a);
	archive_release(&b);
	archive_release(&h1);
	archive_release(&h2);
	archive_release(&other);
	for (int i = 0; i < N; i++)
		free(recs[i]);
	unlink(path), unlink(meta), unlink(cut);
	snprintf(path, sizeof(path), "%s/garbage.faiss", tmpl);
	unlink(path);
	rmdir(tmpl);
	return tap_done();
}
