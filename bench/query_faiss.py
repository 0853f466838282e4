#!/usr/bin/python3
# query_faiss.py: the raw-FAISS side of bench/query.sh (Debian python3-faiss),
# and the data it needs.
#
#   query_faiss.py synth N NQ DIM SEED DIR
#       clustered float32 vectors: DIR/base.mpk (eosin records, joint_emb),
#       DIR/base.f32, DIR/queries.mpk, DIR/queries.f32
#   query_faiss.py h5 DIR REPS FILE.h5 ...
#       the feature bags' rows as base (every row) and queries (every row,
#       REPS times: enough queries that a search takes about a second, so
#       that timer and scheduling noise stay well under the 5% compared)
#   query_faiss.py truth DIR K        exact top-K by inner product: DIR/truth.i64
#   query_faiss.py search INDEX QUERIES.f32 K NPROBE EF
#       load the index, search, print "load SECONDS search SECONDS"; writes the
#       ids to QUERIES.f32.ids
#   query_faiss.py recall HITS.tsv TRUTH.i64 NQ K   recall@K of eosin-query's hits
import struct, sys, time

import numpy as np


def write_mpk(path, x, prefix, kind):
    """Records {k, v, id, joint_emb: {dtype, dim, data}}, msgpack by hand."""
    n, d = x.shape
    def s(t):
        b = t.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    head = b"\x84" + s("k") + s(kind) + s("v") + b"\x01" + s("id")
    emb = s("joint_emb") + b"\x83" + s("dtype") + s("f32") + s("dim") + b"\xcd" + struct.pack(">H", d) + s("data") + b"\xc6" + struct.pack(">I", 4 * d)
    with open(path, "wb") as f:
        for i in range(n):
            f.write(head + s("%s%d" % (prefix, i)) + emb + x[i].astype("<f4").tobytes())


def synth(n, nq, dim, seed, d):
    n, nq, dim = int(n), int(nq), int(dim)
    rng = np.random.default_rng(int(seed))
    centres = rng.standard_normal((1000, dim)).astype("float32")
    def draw(m):
        out = np.empty((m, dim), dtype="float32")
        for i in range(0, m, 100000):
            j = min(m, i + 100000)
            c = rng.integers(0, len(centres), j - i)
            out[i:j] = centres[c] + 0.6 * rng.standard_normal((j - i, dim)).astype("float32")
        return out
    xb, xq = draw(n), draw(nq)
    xb.tofile(d + "/base.f32")
    xq.tofile(d + "/queries.f32")
    write_mpk(d + "/base.mpk", xb, "b", "patch")
    write_mpk(d + "/queries.mpk", xq, "q", "text")
    write_mpk(d + "/one.mpk", xq[:1], "q", "text")


def h5(d, reps, *files):
    import h5py
    rows = []
    for f in files:
        with h5py.File(f, "r") as h:
            key = "feats" if "feats" in h else "features"
            rows.append(np.asarray(h[key], dtype="float32"))
    xb = np.concatenate(rows)
    xq = np.tile(xb, (int(reps), 1))
    xb.tofile(d + "/base.f32")
    xq.tofile(d + "/queries.f32")
    write_mpk(d + "/base.mpk", xb, "b", "patch")
    write_mpk(d + "/queries.mpk", xq, "q", "text")
    write_mpk(d + "/one.mpk", xq[:1], "q", "text")
    print(xb.shape[0], xq.shape[0], xb.shape[1])


def truth(d, k):
    k = int(k)
    dim = int(open(d + "/dim").read())
    xb = np.fromfile(d + "/base.f32", dtype="float32").reshape(-1, dim)
    xq = np.fromfile(d + "/queries.f32", dtype="float32").reshape(-1, dim)
    out = np.empty((len(xq), k), dtype="int64")
    for i in range(0, len(xq), 256):
        s = xq[i:i + 256] @ xb.T
        top = np.argpartition(-s, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, 1), axis=1)
        out[i:i + 256] = np.take_along_axis(top, order, 1)
    out.tofile(d + "/truth.i64")


def search(index, queries, k, nprobe, ef):
    import faiss
    t0 = time.perf_counter()
    ix = faiss.read_index(index)
    xq = np.fromfile(queries, dtype="float32").reshape(-1, ix.d)
    ps = faiss.ParameterSpace()
    if faiss.try_extract_index_ivf(ix) is not None:
        ps.set_index_parameter(ix, "nprobe", int(nprobe))
    elif "HNSW" in type(ix).__name__:
        ps.set_index_parameter(ix, "efSearch", int(ef))
    t1 = time.perf_counter()
    D, I = ix.search(xq, int(k))
    t2 = time.perf_counter()
    I.astype("int64").tofile(queries + ".ids")
    print("load %.4f search %.4f" % (t1 - t0, t2 - t1))


def recall(hits, truth_path, nq, k):
    nq, k = int(nq), int(k)
    t = np.fromfile(truth_path, dtype="int64").reshape(nq, -1)[:, :k]
    got = {}
    for line in open(hits):
        q, idx = line.split()
        got.setdefault(int(q), set()).add(int(idx))
    found = sum(len(set(t[q]) & got.get(q, set())) for q in range(nq))
    print("%.4f" % (found / (nq * k)))


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    {"synth": synth, "h5": h5, "truth": truth, "search": search, "recall": recall}[cmd](*rest)
