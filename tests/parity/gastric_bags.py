#!/usr/bin/env python3
"""gastric_bags.py: bag records for the text decoder's real-data check, from
the 991 real gastric adenocarcinoma captions (id, subtype, text), as JSON
lines for `eosin-cat -r` (python3 standard library only).

The captions are real; the image side is a stand-in: each of the 10
subtypes has a fixed random prototype, and a caption's bag holds --n
patches, each its subtype's prototype plus noise. What a decoder learns here
in a short run is mostly the reports' language: in 120 steps the --blind
control (below) reached as low a held-out perplexity (12.8 against 14.3), so
this data does not show the image's part in a caption (tests/t/t4055 does,
by construction). txt_emb (needed by every bag) is a fixed random vector per
distinct text.

Held out (split "val"): every caption whose text falls in the held-out part
by a hash of the text (--val-pct percent of the 239 distinct texts), so no
held-out text was trained on.

--blind gives every bag the same prototype (noise only): the control whose
images say nothing of the caption.

usage: gastric_bags.py CAPTIONS.csv [--n N] [--img-dim D] [--txt-dim D]
                       [--val-pct P] [--blind] [--seed S]
"""
import argparse, csv, hashlib, json, random

from bagvec import vec

ap = argparse.ArgumentParser()
ap.add_argument("csv")
ap.add_argument("--n", type=int, default=4)
ap.add_argument("--img-dim", type=int, default=32)
ap.add_argument("--txt-dim", type=int, default=8)
ap.add_argument("--val-pct", type=int, default=20)
ap.add_argument("--noise", type=float, default=0.5)
ap.add_argument("--blind", action="store_true", help="one prototype for all subtypes")
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()
rng = random.Random(a.seed)



with open(a.csv, newline="") as f:
    rows = list(csv.DictReader(f))
proto, temb = {}, {}
for i, r in enumerate(rows):
    sub, text = r["subtype"], r["text"]
    if sub not in proto:
        proto[sub] = [rng.gauss(0, 1) for _ in range(a.img_dim)]
        if a.blind:
            proto[sub] = proto[next(iter(proto))]
    if text not in temb:
        temb[text] = [rng.gauss(0, 1) for _ in range(a.txt_dim)]
    h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100
    rec = {"k": "bag", "v": 1, "id": r["id"], "slide": r["id"], "method": "slide",
           "n": a.n, "caption": text, "label": sub,
           "img_emb": vec([[p + a.noise * rng.gauss(0, 1) for p in proto[sub]]
                           for _ in range(a.n)], a.img_dim),
           "txt_emb": vec([temb[text]], a.txt_dim)}
    if h < a.val_pct:
        rec["split"] = "val"
    print(json.dumps(rec))
