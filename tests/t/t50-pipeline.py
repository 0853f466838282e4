#!/usr/bin/python3
"""Helpers for t5030-pipeline.sh: real patches in, brute-force answers out.

  t50-pipeline.py records PATCHDIR            tile and doc JSON lines (stdout)
  t50-pipeline.py classes                     a classes file for the labels
  t50-pipeline.py retrieval JOINED.json METRICS.json
      R@1/5/10 both ways recomputed from the joint_emb / joint_txt_emb of the
      records in JOINED.json, compared with eosin-query's METRICS.json
  t50-pipeline.py hits INDEXED.json FIELD QUERIES.json HITS.json K
      each query's K best stored records by cosine similarity (numpy, float64)
      over the vectors that were indexed (FIELD of INDEXED.json), against the
      queries' joint_emb, compared with eosin-query's hits
  t50-pipeline.py heat TILES.json QUERY.json ERR LONG_SIDE
      the lowest and highest cosine similarity of the query to the tiles,
      compared with the range eosin-query --heatmap printed; prints the
      thumbnail pixel (x y) at the centre of the best and the worst tile
      (LONG_SIDE: the slide's longer side, drawn in 1024 px)
  t50-pipeline.py zeroshot PROMPTS.json RECORDS.json OUT.json
      zs_label of every record recomputed from the prompts (mean of unit
      prompt vectors per label, renormalised; argmax cosine)

Every .json is eosin-cat --vectors output (one record a line).
"""
import base64
import io
import json
import os
import sys

import numpy as np

# Captions made from the CRC-VAL-HE-7K labels: each class has four patches;
# patch j of a class takes template j, so that no two captions are the same.
NAMES = {
    "ADI": "adipose tissue",
    "DEB": "necrotic debris",
    "LYM": "lymphocytes",
    "MUC": "extracellular mucus",
    "MUS": "smooth muscle",
    "NORM": "normal colon mucosa",
    "STR": "cancer-associated stroma",
    "TUM": "colorectal adenocarcinoma epithelium",
}
TEMPLATES = [
    "an H&E image of {}.",
    "{}, H&E stain.",
    "a histology patch showing {}.",
    "a photomicrograph of {} at 20x.",
]


def records(patchdir):
    from PIL import Image
    seen = {}
    with open(os.path.join(patchdir, "labels.tsv")) as f:
        rows = [l.rstrip("\n").split("\t") for l in f][1:]
    for name, label in rows:
        j = seen.get(label, 0)
        seen[label] = j + 1
        slide = name.rsplit(".", 1)[0]
        buf = io.BytesIO()
        Image.open(os.path.join(patchdir, name)).convert("RGB").save(buf, "JPEG", quality=90)
        caption = TEMPLATES[j % len(TEMPLATES)].format(NAMES[label])
        tid = slide + "/20x/0_0"
        print(json.dumps({"k": "doc", "v": 1, "id": slide + "/report", "slide": slide,
                          "caption": caption, "label": label}))
        print(json.dumps({"k": "tile", "v": 1, "id": tid, "slide": slide,
                          "path": os.path.join(patchdir, name), "mag": 20, "mpp": 0.5,
                          "x": 0, "y": 0, "extent": 224, "px": 224, "level": 0, "ds": 1,
                          "base_mpp": 0.5, "mpp_source": "override", "tissue": 1.0,
                          "depth": 0, "root": tid, "quality": 90, "label": label,
                          "jpeg": {"$base64": base64.b64encode(buf.getvalue()).decode()}}))


def classes():
    print("template: an H&E image of {}.")
    print("template: {}, H&E stain.")
    for label, name in NAMES.items():
        print(f"{label}: {name}")


def load(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def mat(v):
    """An eosin-cat --vectors embedding as an (n, dim) float64 array."""
    a = np.array(v["values"], dtype=np.float64)
    return a.reshape(v.get("n", 1), v["dim"])


def unit(a):
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.where(n > 0, n, 1)


def recall(sim, k):
    """sim[i][j]: query i against candidate j; the truth of i is i. Ties
    rank in input order: j beats the truth when it scores higher, or the
    same and comes first."""
    n = sim.shape[0]
    hits = 0
    for i in range(n):
        s = sim[i]
        rank = np.sum(s > s[i]) + np.sum(s[:i] == s[i])
        hits += rank < k
    return hits / n


def near_ties(sim, tol):
    """Is any candidate within tol of the truth (float32 vs float64 order
    could then differ)?"""
    n = sim.shape[0]
    d = np.abs(sim - np.diag(sim)[:, None])
    np.fill_diagonal(d, np.inf)
    return bool((d < tol).any())


def retrieval(joined, metrics):
    recs = [r for r in load(joined) if "joint_emb" in r and "joint_txt_emb" in r]
    m = json.load(open(metrics))
    n = len(recs)
    assert m["n"] == n, f"eosin-query counted {m['n']} pairs, here {n}"
    img = [unit(mat(r["joint_emb"])) for r in recs]
    txt = np.stack([unit(mat(r["joint_txt_emb"]).mean(axis=0)) for r in recs])
    # an image with several rows scores its best row
    sim = np.stack([(im @ txt.T).max(axis=0) for im in img])
    assert not near_ties(sim, 1e-6) and not near_ties(sim.T, 1e-6), "near ties: inconclusive"
    for k in (1, 5, 10):
        want = (recall(sim, k), recall(sim.T, k))
        got = (m["image_to_text"][f"R@{k}"], m["text_to_image"][f"R@{k}"])
        print(f"R@{k}: i2t {got[0]:.4f} (brute force {want[0]:.4f}), "
              f"t2i {got[1]:.4f} (brute force {want[1]:.4f})")
        assert abs(got[0] - want[0]) < 1e-6 and abs(got[1] - want[1]) < 1e-6, "R@K differ"


def hits(indexed, field, queries, hitsfile, k):
    k = int(k)
    base = [r for r in load(indexed) if field in r]
    ids = [r["id"] for r in base]
    x = unit(np.stack([mat(r[field]).mean(axis=0) for r in base]))
    qs = [r for r in load(queries) if "joint_emb" in r]
    got = {}
    for h in load(hitsfile):
        if h.get("k") == "hit":
            got.setdefault(h["query"], []).append(h)
    assert len(got) == len(qs), f"{len(got)} queries answered, {len(qs)} asked"
    for q in qs:
        v = unit(mat(q["joint_emb"]).mean(axis=0))
        s = x @ v
        order = sorted(range(len(ids)), key=lambda i: (-s[i], i))[:k]
        h = got[q["id"]]
        assert [x["rank"] for x in h] == list(range(1, k + 1)), f"{q['id']}: ranks"
        for r, (i, hit) in enumerate(zip(order, h)):
            assert abs(hit["score"] - s[i]) < 1e-5, f"{q['id']} rank {r + 1}: score {hit['score']} vs {s[i]}"
            if hit["record"]["id"] != ids[i]:
                # only a near tie may swap two neighbours
                j = ids.index(hit["record"]["id"])
                assert abs(s[j] - s[i]) < 1e-5, f"{q['id']} rank {r + 1}: {hit['record']['id']} vs {ids[i]}"
            assert hit.get("target") == hit["record"]["id"], "target names the stored record"
            assert hit["record"].get("slide") and hit["query_caption"] == q["caption"]
        print(f"{q['id']} {q['caption']!r}: " + ", ".join(ids[i].split("/")[0] for i in order[:3]))


def heat(tiles, query, err, long_side):
    q = unit(mat([r for r in load(query) if "joint_emb" in r][0]["joint_emb"]).mean(axis=0))
    ts = [r for r in load(tiles) if r.get("k") == "tile"]
    s = [float(unit(mat(t["joint_emb"]).mean(axis=0)) @ q) for t in ts]
    line = [l for l in open(err) if "similarity" in l][-1]
    lo, hi = (float(v) for v in line.split("similarity ")[1].split(" .. "))
    assert abs(lo - min(s)) < 1e-4 and abs(hi - max(s)) < 1e-4, f"{line!r} vs {min(s)} .. {max(s)}"
    assert len(ts) > 1 and max(s) - min(s) > 0.05, "too flat to tell"
    scale = 1024 / float(long_side)
    for t in (ts[int(np.argmax(s))], ts[int(np.argmin(s))]):
        c = lambda v: int((v + t["extent"] / 2) * scale)
        print(c(t["x"]), c(t["y"]))


def zeroshot(prompts, records_, out):
    ps = [p for p in load(prompts) if "joint_emb" in p and "label" in p]
    labels = []
    acc = {}
    for p in ps:
        if p["label"] not in acc:
            labels.append(p["label"])
            acc[p["label"]] = 0
        acc[p["label"]] = acc[p["label"]] + unit(mat(p["joint_emb"])[0])
    cls = unit(np.stack([acc[l] for l in labels]))
    want = {}
    for r in load(records_):
        if "joint_emb" in r and r.get("k") == "tile":
            s = cls @ unit(mat(r["joint_emb"]).mean(axis=0))
            want[r["id"]] = labels[int(np.argmax(s))]
    n = 0
    for r in load(out):
        if r.get("k") == "tile" and r["id"] in want:
            assert r["zs_label"] == want[r["id"]], f"{r['id']}: {r['zs_label']} vs {want[r['id']]}"
            assert abs(sum(r["zs_scores"].values()) - 1) < 1e-6
            n += 1
    assert n == len(want) and n > 0, f"{n} of {len(want)} records checked"
    print(f"{n} zero-shot labels agree")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"records": records, "classes": classes, "retrieval": retrieval, "hits": hits,
     "heat": heat, "zeroshot": zeroshot}[cmd](*args)
