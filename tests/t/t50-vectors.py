#!/usr/bin/env python3
# t50-vectors.py: fabricated embeddings and brute-force references for the
# eosin-index and eosin-query tests (tests/t/t50*.sh). Pure Python, no numpy,
# so that it runs wherever python3 does.
#
#   t50-vectors.py records N DIM SEED [--kind K] [--field F] [--clusters C]
#                                      [--labels L1,L2,..] [--slides S]
#       JSON lines (for eosin-cat -r): records with a float32 embedding
#   t50-vectors.py brute INDEX.jsonl QUERIES.jsonl K ip|l2|cos [FIELD]
#       the exact top-K as "query<TAB>rank<TAB>target id<TAB>score" lines
#   t50-vectors.py compare-hits HITS.jsonl BRUTE.tsv TOL
#       exit 1 unless hits and brute force agree: same ids, scores within TOL
#       (ids may differ only where scores tie within TOL)
#   t50-vectors.py recall HITS.jsonl BRUTE.tsv
#       print recall@K of the hits against the exact answer
import base64, json, math, random, struct, sys


def enc(v):
    return {"dtype": "f32", "dim": len(v),
            "data": {"$base64": base64.b64encode(struct.pack("<%df" % len(v), *v)).decode()}}


def dec(e):
    raw = base64.b64decode(e["data"]["$base64"])
    return list(struct.unpack("<%df" % (len(raw) // 4), raw))


def records(argv):
    n, dim, seed = int(argv[0]), int(argv[1]), int(argv[2])
    opts = dict(kind="tile", field="joint_emb", clusters="0", labels="", slides="1",
                model="", hash="")
    i = 3
    while i < len(argv):
        opts[argv[i][2:]] = argv[i + 1]
        i += 2
    rng = random.Random(seed)
    nc = int(opts["clusters"])
    centres = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(nc)]
    labels = opts["labels"].split(",") if opts["labels"] else []
    nslides = int(opts["slides"])
    for r in range(n):
        if nc:
            c = rng.randrange(nc)
            v = [x + 0.35 * rng.gauss(0, 1) for x in centres[c]]
        else:
            v = [rng.gauss(0, 1) for _ in range(dim)]
        emb = enc(v)
        if opts["model"]:
            emb["model"] = opts["model"]
        if opts["hash"]:
            emb["hash"] = opts["hash"]
        s = "S%d" % (r % nslides)
        rec = {"k": opts["kind"], "v": 1, "id": "%s/%d" % (s, r), "slide": s, "x": r, "y": 0,
               opts["field"]: emb}
        if labels:
            rec["label"] = labels[r % len(labels)]
        print(json.dumps(rec))


def load(path, field):
    out = []
    for line in open(path):
        j = json.loads(line)
        if j.get("k") == "hdr" or field not in j:
            continue
        out.append((j.get("id"), dec(j[field])))
    return out


def unit(v):
    s = math.sqrt(sum(x * x for x in v))
    return [x / s for x in v] if s > 0 else v


def brute(argv):
    base, queries, k, metric = argv[0], argv[1], int(argv[2]), argv[3]
    field = argv[4] if len(argv) > 4 else "joint_emb"
    xb, xq = load(base, field), load(queries, field)
    for qid, q in xq:
        if metric == "cos":
            q = unit(q)
        scored = []
        for tid, x in xb:
            if metric == "cos":
                x = unit(x)
            if metric == "l2":
                s = sum((a - b) ** 2 for a, b in zip(q, x))
            else:
                s = sum(a * b for a, b in zip(q, x))
            scored.append((s, tid))
        scored.sort(key=lambda t: t[0], reverse=(metric != "l2"))
        for rank, (s, tid) in enumerate(scored[:k], 1):
            print("%s\t%d\t%s\t%.7g" % (qid, rank, tid, s))


def read_hits(path):
    hits = {}
    for line in open(path):
        j = json.loads(line)
        if j.get("k") != "hit":
            continue
        hits.setdefault(j["query"], []).append((j["rank"], j["record"]["id"], j["score"]))
    return hits


def read_brute(path):
    ref = {}
    for line in open(path):
        q, rank, tid, s = line.rstrip("\n").split("\t")
        ref.setdefault(q, []).append((int(rank), tid, float(s)))
    return ref


def compare(argv):
    hits, ref, tol = read_hits(argv[0]), read_brute(argv[1]), float(argv[2])
    bad = 0
    if sorted(hits) != sorted(ref):
        print("queries differ: %s vs %s" % (sorted(hits), sorted(ref)))
        return 1
    for q in ref:
        h, r = hits[q], ref[q]
        if len(h) != len(r):
            print("%s: %d hits, want %d" % (q, len(h), len(r)))
            bad += 1
            continue
        for (hr, hid, hs), (rr, rid, rs) in zip(h, r):
            if hr != rr or abs(hs - rs) > tol * max(1.0, abs(rs)):
                print("%s rank %d: score %.7g, want %.7g" % (q, rr, hs, rs))
                bad += 1
            elif hid != rid and not any(abs(s - rs) <= tol and t == hid for _, t, s in r):
                print("%s rank %d: id %s, want %s" % (q, rr, hid, rid))
                bad += 1
    return 1 if bad else 0


def recall(argv):
    hits, ref = read_hits(argv[0]), read_brute(argv[1])
    found = total = 0
    for q, r in ref.items():
        want = {t for _, t, _ in r}
        got = {t for _, t, _ in hits.get(q, [])}
        found += len(want & got)
        total += len(want)
    print("%.4f" % (found / total))
    return 0


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    sys.exit({"records": records, "brute": brute, "compare-hits": compare,
              "recall": recall}[cmd](rest) or 0)
