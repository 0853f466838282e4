#!/usr/bin/env python3
# t50-grid.py: tile records on a grid over a slide, with embeddings made so
# that tiles near a chosen point resemble a query, for eosin-query --heatmap.
#   t50-grid.py SLIDE-PATH WIDTH HEIGHT EXTENT CX CY >tiles.json  (query.json beside)
import base64, json, math, random, struct, sys

path, w, h, ext, cx, cy = sys.argv[1], *map(int, sys.argv[2:7])
dim = 32
rng = random.Random(5)


def enc(v):
    return {"dtype": "f32", "dim": len(v),
            "data": {"$base64": base64.b64encode(struct.pack("<%df" % len(v), *v)).decode()}}


q = [rng.gauss(0, 1) for _ in range(dim)]
with open("query.json", "w") as f:
    f.write(json.dumps({"k": "text", "v": 1, "id": "1", "caption": "tumour nest",
                        "joint_emb": enc(q)}) + "\n")
for y in range(0, h - ext + 1, ext):
    for x in range(0, w - ext + 1, ext):
        d = math.hypot(x + ext / 2 - cx, y + ext / 2 - cy)
        weight = 3 * math.exp(-(d / 500) ** 2)
        v = [weight * a + rng.gauss(0, 1) for a in q]
        print(json.dumps({"k": "tile", "v": 1, "id": "CMU/20x/%d_%d" % (x, y), "slide": "CMU",
                          "path": path, "x": x, "y": y, "extent": ext, "joint_emb": enc(v)}))
