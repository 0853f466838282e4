#!/usr/bin/env python3
# t50-zeroshot.py: fabricated prompts, patches and pairs for the eosin-query
# zero-shot and retrieval tests, and their metrics computed here from the
# definitions (pure Python, independent of lib/search/metrics.c).
#
#   t50-zeroshot.py make DIR        prompts.json, patches.json, pairs.json
#   t50-zeroshot.py check-zs DIR OUT.json METRICS.json K
#       exit 1 unless eosin-query's labels, scores, slide pooling and
#       metrics agree with the reference
#   t50-zeroshot.py check-retrieval DIR METRICS.json
import importlib.util, json, math, os, random, struct, sys

# enc() and dec() of embeddings, shared with t50-vectors.py
_spec = importlib.util.spec_from_file_location(
    "t50_vectors", os.path.join(os.path.dirname(os.path.abspath(__file__)), "t50-vectors.py"))
_vectors = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_vectors)
enc, dec = _vectors.enc, _vectors.dec

DIM = 24
CLASSES = ["TUM", "STR", "LYM"]


def f32(v):
    return list(struct.unpack("<%df" % len(v), struct.pack("<%df" % len(v), *v)))


def unit(v):
    s = math.sqrt(sum(x * x for x in v))
    return [x / s for x in v]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def make(d):
    rng = random.Random(11)
    centre = {c: [rng.gauss(0, 1) for _ in range(DIM)] for c in CLASSES}
    with open(d + "/prompts.json", "w") as f:
        for c in CLASSES:
            for p in range(2):
                v = [x + 0.5 * rng.gauss(0, 1) for x in centre[c]]
                f.write(json.dumps({"k": "text", "v": 1, "id": "%s%d" % (c, p), "label": c,
                                    "caption": "an image of %s (%d)" % (c, p),
                                    "joint_emb": enc(v)}) + "\n")
    with open(d + "/patches.json", "w") as f:
        for i in range(90):
            c = CLASSES[i % 3] if i < 84 else "ADI"  # ADI: no prompt
            slide = "slide%d" % (i % 6)  # one class per slide (ADI aside)
            base = centre[c] if c in centre else [rng.gauss(0, 1) for _ in range(DIM)]
            v = [x + 2.2 * rng.gauss(0, 1) for x in base]
            rec = {"k": "patch", "v": 1, "id": "%s/p%d" % (slide, i), "slide": slide,
                   "label": c, "joint_emb": enc(v)}
            f.write(json.dumps(rec) + "\n")
        f.write(json.dumps({"k": "patch", "v": 1, "id": "noemb", "slide": "slide0"}) + "\n")
    with open(d + "/pairs.json", "w") as f:
        for i in range(40):
            img = [rng.gauss(0, 1) for _ in range(DIM)]
            txt = [x + 1.3 * rng.gauss(0, 1) for x in img]
            f.write(json.dumps({"k": "bag", "v": 1, "id": "b%d" % i, "joint_emb": enc(img),
                                "joint_txt_emb": enc(txt)}) + "\n")


def load(path):
    return [json.loads(l) for l in open(path)]


def auc(scores, pos):
    p = [s for s, q in zip(scores, pos) if q]
    n = [s for s, q in zip(scores, pos) if not q]
    if not p or not n:
        return None
    w = sum(1 if a > b else 0.5 if a == b else 0 for a in p for b in n)
    return w / (len(p) * len(n))


def metrics(y, pred, prob):
    n = len(y)
    out = {"n": n, "accuracy": sum(a == b for a, b in zip(y, pred)) / n}
    rec, f1w = [], 0
    for c in range(len(CLASSES)):
        sup = sum(1 for a in y if a == c)
        if not sup:
            continue
        tp = sum(1 for a, b in zip(y, pred) if a == b == c)
        npred = sum(1 for b in pred if b == c)
        prec = tp / npred if npred else 0
        r = tp / sup
        rec.append(r)
        f1 = 2 * prec * r / (prec + r) if prec + r else 0
        f1w += f1 * sup / n
    out["balanced_accuracy"] = sum(rec) / len(rec)
    out["weighted_f1"] = f1w
    aucs = {CLASSES[c]: auc([p[c] for p in prob], [a == c for a in y]) for c in range(len(CLASSES))}
    out["auc"] = aucs
    defined = [v for v in aucs.values() if v is not None]
    out["auc_macro"] = sum(defined) / len(defined) if defined else None
    return out


def softmax(s, scale=100.0):
    m = max(scale * x for x in s)
    e = [math.exp(scale * x - m) for x in s]
    t = sum(e)
    return [x / t for x in e]


def close(a, b, tol, what):
    if a is None or b is None:
        ok = a is None and b is None
    else:
        ok = abs(a - b) <= tol
    if not ok:
        print("%s: %r, want %r" % (what, a, b))
    return ok


def check_zs(d, out, metrics_path, k):
    k = int(k)
    prompts = load(d + "/prompts.json")
    cls = []
    for c in CLASSES:
        vs = [unit(f32(dec(p["joint_emb"]))) for p in prompts if p["label"] == c]
        cls.append(unit([sum(col) / len(vs) for col in zip(*vs)]))
    good = True
    recs = {r["id"]: r for r in load(out) if r.get("k") == "patch"}
    ys, preds, probs = [], [], []
    per_slide = {}
    for p in load(d + "/patches.json"):
        r = recs[p["id"]]
        if "joint_emb" not in p:
            good &= "zs_label" not in r
            continue
        x = unit(f32(dec(p["joint_emb"])))
        sims = [dot(x, c) for c in cls]
        prob = softmax(sims)
        pred = max(range(len(CLASSES)), key=lambda c: prob[c])
        good &= r["zs_label"] == CLASSES[pred]
        for c in range(len(CLASSES)):
            good &= close(r["zs_scores"][CLASSES[c]], prob[c], 1e-5, p["id"] + " score")
        if p["label"] in CLASSES:
            ys.append(CLASSES.index(p["label"]))
            preds.append(pred)
            probs.append(prob)
        s = per_slide.setdefault(p["slide"], {"sims": [], "label": p["label"]})
        s["sims"].append(sims)
    want = metrics(ys, preds, probs)
    got = json.load(open(metrics_path))
    for key in ("n", "accuracy", "balanced_accuracy", "weighted_f1", "auc_macro"):
        good &= close(got["records"][key], want[key], 1e-6, "records " + key)
    for c in CLASSES:
        good &= close(got["records"]["auc"][c], want["auc"][c], 1e-6, "AUC " + c)
    # slides: mean of the k best similarities per class
    zs = {r["slide"]: r for r in load(out) if r.get("k") == "zeroshot"}
    sy, sp, spr = [], [], []
    for s, acc in per_slide.items():
        pooled = []
        for c in range(len(CLASSES)):
            col = sorted((v[c] for v in acc["sims"]), reverse=True)[:k]
            pooled.append(sum(col) / len(col))
        prob = softmax(pooled)
        pred = max(range(len(CLASSES)), key=lambda c: prob[c])
        good &= zs[s]["zs_label"] == CLASSES[pred] and zs[s]["n"] == len(acc["sims"])
        if acc["label"] in CLASSES:
            sy.append(CLASSES.index(acc["label"]))
            sp.append(pred)
            spr.append(prob)
    want = metrics(sy, sp, spr)
    for key in ("n", "accuracy", "balanced_accuracy", "weighted_f1"):
        good &= close(got["slides"][key], want[key], 1e-6, "slides " + key)
    print("reference: records accuracy %.4f, slides accuracy %.4f" %
          (got["records"]["accuracy"], got["slides"]["accuracy"]))
    return 0 if good else 1


def check_retrieval(d, metrics_path):
    pairs = load(d + "/pairs.json")
    img = [unit(f32(dec(p["joint_emb"]))) for p in pairs]
    txt = [unit(f32(dec(p["joint_txt_emb"]))) for p in pairs]
    n = len(pairs)
    sim = [[f32([dot(i, t)])[0] for t in txt] for i in img]

    def rak(rows, k):
        hits = 0
        for q, row in enumerate(rows):
            rank = sum(1 for j, s in enumerate(row) if s > row[q] or (s == row[q] and j < q))
            hits += rank < k
        return hits / n

    simt = [[sim[i][j] for i in range(n)] for j in range(n)]
    got = json.load(open(metrics_path))
    good = got["n"] == n
    for k in (1, 5, 10):
        good &= close(got["image_to_text"]["R@%d" % k], rak(sim, k), 1e-9, "i2t R@%d" % k)
        good &= close(got["text_to_image"]["R@%d" % k], rak(simt, k), 1e-9, "t2i R@%d" % k)
    return 0 if good else 1


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    sys.exit({"make": make, "check-zs": check_zs,
              "check-retrieval": check_retrieval}[cmd](*rest) or 0)
