#!/usr/bin/env python3
"""caption_bags.py: bags whose caption their patches determine, for the
caption decoder's checks (python3 standard library only), as JSON lines for
`eosin-cat -r`.

Each of the 8 CRC tissue classes has a fixed random prototype and its own
caption ("adipose tissue with ..."); a bag of class c holds --n patches,
each c's prototype plus noise (--noise). A decoder that reads the queries can
write a held-out bag's caption exactly; one that ignores them can get at
most the most frequent caption right (1 in 8).
Every --val-every-th bag is held out (split "val").

usage: caption_bags.py [--bags N] [--n N] [--img-dim D] [--noise S]
                       [--val-every M] [--seed S]
"""
import argparse, json, random

from bagvec import vec

CAPTIONS = [
    "adipose tissue of large empty fat cells",
    "necrotic debris with scattered nuclear fragments",
    "dense sheets of small round lymphocytes",
    "pale extracellular mucus with few cells",
    "bundles of smooth muscle with elongated nuclei",
    "normal colon mucosa with regular crypts",
    "cancer-associated stroma with fibroblasts",
    "colorectal adenocarcinoma epithelium forming irregular glands",
]
ap = argparse.ArgumentParser()
ap.add_argument("--bags", type=int, default=96)
ap.add_argument("--n", type=int, default=4)
ap.add_argument("--img-dim", type=int, default=16)
ap.add_argument("--txt-dim", type=int, default=8)
ap.add_argument("--noise", type=float, default=0.3)
ap.add_argument("--val-every", type=int, default=4)
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()
rng = random.Random(a.seed)
proto = [[rng.gauss(0, 1) for _ in range(a.img_dim)] for _ in CAPTIONS]
temb = [[rng.gauss(0, 1) for _ in range(a.txt_dim)] for _ in CAPTIONS]



for b in range(a.bags):
    c = b % len(CAPTIONS)
    rec = {"k": "bag", "v": 1, "id": "bag%03d" % b, "slide": "slide%03d" % b,
           "method": "slide", "n": a.n, "caption": CAPTIONS[c], "label": str(c),
           "img_emb": vec([[p + a.noise * rng.gauss(0, 1) for p in proto[c]]
                           for _ in range(a.n)], a.img_dim),
           "txt_emb": vec([temb[c]], a.txt_dim)}
    if a.val_every and (b // len(CAPTIONS)) % a.val_every == a.val_every - 1:
        rec["split"] = "val"
    print(json.dumps(rec))
