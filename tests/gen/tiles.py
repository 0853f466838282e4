#!/usr/bin/env python3
"""Synthetic embedded tile streams for eosin-bag's tests, as JSON lines for
`eosin-cat -r`.

Each slide gets --trees MR-PLIP quadtrees (a 5x root, 4 at 10x, 16 at 20x,
64 at 40x; ids SLIDE/MAGx/X_Y, level-0 40x, 0.25 um/px), laid out in a row.
img_emb values are a function of the tile id only, so any reordering of the
stream carries the same vectors. Options drop tiles, add text, shuffle.
Standard library only.
"""
import argparse
import base64
import json
import random
import struct
import sys
import zlib


def vec(key, dim, n=1, model=None, dtype="f32"):
    rng = random.Random(zlib.crc32(key.encode()))
    vals = [rng.uniform(-2, 2) for _ in range(n * dim)]
    if dtype == "f32":
        data = struct.pack("<%df" % len(vals), *vals)
    else:
        data = struct.pack("<%de" % len(vals), *vals)
    v = {"dtype": dtype, "dim": dim, "data": {"$base64": base64.b64encode(data).decode()}}
    if n != 1:
        v["n"] = n
    if model:
        v["model"] = model
        v["hash"] = "%08x" % zlib.crc32(model.encode())
    return v


def tree(slide, rx, ry, depth_max):
    """Tiles of one quadtree, depth-first, children in raster order."""
    out = []

    def visit(x, y, depth, parent, root):
        mag = 5 * 2 ** depth
        extent = 512 * 40 // mag
        tid = "%s/%dx/%d_%d" % (slide, mag, x, y)
        root = root or tid
        out.append((tid, x, y, depth, mag, extent, parent, root))
        if depth < depth_max:
            half = extent // 2
            for dy in (0, half):
                for dx in (0, half):
                    visit(x + dx, y + dy, depth + 1, tid, root)

    visit(rx, ry, 0, None, None)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slides", type=int, default=1)
    ap.add_argument("--trees", type=int, default=1)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--dtype", default="f32")
    ap.add_argument("--model", default="toy-vit")
    ap.add_argument("--txt", action="store_true", help="txt_emb on every tile")
    ap.add_argument("--keywords", action="store_true", help="keywords and kw_emb")
    ap.add_argument("--docs", action="store_true", help="a doc record per slide")
    ap.add_argument("--sentences", type=int, default=0, help="sentences per doc")
    ap.add_argument("--drop", action="append", default=[], help="leave this tile id out")
    ap.add_argument("--level-order", action="store_true",
                    help="per slide, all 5x tiles, then 10x, ... (roots interleave)")
    ap.add_argument("--shuffle", type=int, default=None, help="shuffle all records with seed")
    ap.add_argument("--hdr", action="store_true", help="start with an hdr record")
    a = ap.parse_args()

    recs = []
    if a.hdr:
        recs.append({"k": "hdr", "v": 1, "prog": "gen", "version": "0", "args": [],
                     "time": "2026-01-01T00:00:00Z"})
    for s in range(a.slides):
        slide = "S%02d" % s
        tiles = []
        for t in range(a.trees):
            tiles += tree(slide, t * 4096, (t % 3) * 4096, a.depth)
        if a.level_order:
            tiles.sort(key=lambda r: r[3])
        for (tid, x, y, depth, mag, extent, parent, root) in tiles:
            if tid in a.drop:
                continue
            r = {"k": "tile", "v": 1, "id": tid, "slide": slide, "path": slide + ".svs",
                 "mag": mag, "mpp": 10.0 / mag, "x": x, "y": y, "extent": extent, "px": 512,
                 "level": 0, "ds": 1.0, "base_mpp": 0.25, "mpp_source": "openslide",
                 "tissue": 0.9, "depth": depth, "root": root, "quality": 90,
                 "img_emb": vec(tid, a.dim, model=a.model, dtype=a.dtype)}
            if parent:
                r["parent"] = parent
            if a.txt:
                r["caption"] = "caption of " + tid
                r["txt_emb"] = vec("txt:" + tid, a.dim, model="toy-text")
            if a.keywords:
                # shared words across the tree so that the union deduplicates
                kws = ["kw%d" % (depth), "kw%d" % ((x // 512) % 3), "tile " + tid]
                r["keywords"] = kws
                # a keyword's vector depends on its text only
                rows = b"".join(base64.b64decode(vec("kw:" + k, a.dim)["data"]["$base64"])
                                for k in kws)
                r["kw_emb"] = {"dtype": "f32", "dim": a.dim, "n": len(kws),
                               "data": {"$base64": base64.b64encode(rows).decode()}}
            recs.append(r)
        if a.docs:
            d = {"k": "doc", "v": 1, "id": slide + "/report", "slide": slide,
                 "caption": "report of " + slide,
                 "txt_emb": vec("doc:" + slide, a.dim, model="toy-text")}
            if a.sentences:
                d["sentences"] = ["sentence %d of %s" % (j, slide) for j in range(a.sentences)]
                d["sent_emb"] = vec("sent:" + slide, a.dim, n=a.sentences, model="toy-text")
            recs.append(d)
    if a.shuffle is not None:
        hdrs = [r for r in recs if r["k"] == "hdr"]
        rest = [r for r in recs if r["k"] != "hdr"]
        random.Random(a.shuffle).shuffle(rest)
        recs = hdrs + rest
    for r in recs:
        sys.stdout.write(json.dumps(r, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
