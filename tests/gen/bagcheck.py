#!/usr/bin/env python3
"""Checks of eosin-bag output against its input, for the shell tests.

    bagcheck.py rows INPUT.jsonl BAGS.jsonl
        every bag's img_emb row i is, byte for byte, the img_emb of the input
        tile tile_ids[i]; pos and tile_mag match that tile; for mrplip bags
        txt_emb rows likewise, and kw_emb row j is the embedding the input
        gave keyword j
    bagcheck.py tree INPUT.jsonl BAGS.jsonl
        mrplip bags: parent_index[0] == -1, parent_index[i] < i, and the tile
        at parent_index[i] is the input parent of tile i; rows are in
        depth-first pre-order with siblings in raster (y, x) order
    bagcheck.py regions BAGS.jsonl
        region bags: one region per patch, every region in 0..nregions-1 has
        a patch, and every patch lies in its region's grid cell

Both files are `eosin-cat --base64` output. Prints what is wrong and exits 1.
Standard library only.
"""
import base64
import json
import math
import sys


def load(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def data(v):
    return base64.b64decode(v["data"]["$base64"])


def rows(v):
    b = data(v)
    n = v.get("n", 1)
    size = len(b) // n
    return [b[i * size:(i + 1) * size] for i in range(n)]


def fail(msg):
    print("bagcheck: " + msg, file=sys.stderr)
    sys.exit(1)


def tiles_by_id(inp):
    return {r["id"]: r for r in inp if r["k"] == "tile"}


def check_rows(inp, bags):
    tiles = tiles_by_id(inp)
    nbags = 0
    for b in bags:
        if b["k"] != "bag":
            continue
        nbags += 1
        ids = b["tile_ids"]
        if len(ids) != b["n"] or b["img_emb"].get("n", 1) != b["n"]:
            fail("%s: n=%d but %d ids" % (b["id"], b["n"], len(ids)))
        img = rows(b["img_emb"])
        pos = rows(b["pos"])
        import struct
        for i, tid in enumerate(ids):
            t = tiles[tid]
            if img[i] != data(t["img_emb"]):
                fail("%s: img_emb row %d is not tile %s's" % (b["id"], i, tid))
            if struct.unpack("<2f", pos[i]) != (t["x"], t["y"]):
                fail("%s: pos row %d is not tile %s's" % (b["id"], i, tid))
            if b["tile_mag"][i] != t["mag"]:
                fail("%s: tile_mag %d is not tile %s's" % (b["id"], i, tid))
            if t["slide"] != b["slide"]:
                fail("%s: tile %s is from slide %s" % (b["id"], tid, t["slide"]))
        if "txt_emb" in b and b["method"] == "mrplip":
            txt = rows(b["txt_emb"])
            for i, tid in enumerate(ids):
                if txt[i] != data(tiles[tid]["txt_emb"]):
                    fail("%s: txt_emb row %d is not tile %s's" % (b["id"], i, tid))
        if "kw_emb" in b:
            want = {}
            for tid in ids:
                t = tiles[tid]
                for k, r in zip(t["keywords"], rows(t["kw_emb"])):
                    want.setdefault(k, r)
            got = rows(b["kw_emb"])
            if len(got) != len(b["keywords"]):
                fail("%s: %d kw_emb rows for %d keywords" % (b["id"], len(got), len(b["keywords"])))
            if len(set(b["keywords"])) != len(b["keywords"]):
                fail("%s: keywords repeat" % b["id"])
            if set(b["keywords"]) != set(want):
                fail("%s: keywords are not the union of its tiles'" % b["id"])
            for k, r in zip(b["keywords"], got):
                if r != want[k]:
                    fail("%s: kw_emb row of '%s' is not its input row" % (b["id"], k))
    if nbags == 0:
        fail("no bags")


def check_tree(inp, bags):
    tiles = tiles_by_id(inp)
    for b in bags:
        if b["k"] != "bag":
            continue
        ids, pi = b["tile_ids"], b["parent_index"]
        if pi[0] != -1 or tiles[ids[0]]["depth"] != 0 or ids[0] != b["id"]:
            fail("%s: row 0 is not the root" % b["id"])
        for i in range(1, len(ids)):
            if not 0 <= pi[i] < i:
                fail("%s: parent_index[%d] = %d" % (b["id"], i, pi[i]))
            if tiles[ids[i]].get("parent") != ids[pi[i]]:
                fail("%s: row %d's parent is not row %d" % (b["id"], i, pi[i]))
        # pre-order: rebuild from parent_index and compare
        kids = {i: [] for i in range(len(ids))}
        for i in range(1, len(ids)):
            kids[pi[i]].append(i)
        order = []

        def visit(v):
            order.append(v)
            for c in sorted(kids[v], key=lambda c: (tiles[ids[c]]["y"], tiles[ids[c]]["x"])):
                visit(c)
        visit(0)
        if order != list(range(len(ids))):
            fail("%s: rows are not in depth-first raster order" % b["id"])


def check_regions(bags):
    n = 0
    for b in bags:
        if b["k"] != "bag":
            continue
        n += 1
        reg, nr = b["region"], b["nregions"]
        if len(reg) != b["n"]:
            fail("%s: %d regions for %d patches" % (b["id"], len(reg), b["n"]))
        if sorted(set(reg)) != list(range(nr)):
            fail("%s: regions used %s, nregions %d" % (b["id"], sorted(set(reg)), nr))
        if len(b.get("sent_region", [])) != len(b.get("sentences", [])):
            fail("%s: sent_region and sentences differ in length" % b["id"])
        for r in b.get("sent_region", []):
            if not -1 <= r < nr:
                fail("%s: sent_region %d" % (b["id"], r))
        # the patches of one region share one grid cell
        import struct
        pos = [struct.unpack("<2f", r) for r in rows(b["pos"])]
        ext = b["extent"]
        x0 = min(p[0] for p in pos)
        y0 = min(p[1] for p in pos)
        x1 = max(p[0] for p in pos) + ext
        y1 = max(p[1] for p in pos) + ext
        side = int(sys.argv[3]) if len(sys.argv) > 3 else None
        if side:
            cells = {}
            for (x, y), r in zip(pos, reg):
                cx = min(side - 1, int(math.floor((x + ext / 2 - x0) * side / (x1 - x0))))
                cy = min(side - 1, int(math.floor((y + ext / 2 - y0) * side / (y1 - y0))))
                cells.setdefault(r, set()).add((cx, cy))
            if any(len(c) != 1 for c in cells.values()):
                fail("%s: a region spans several grid cells" % b["id"])
            if len(set(min(c) for c in cells.values())) != len(cells):
                fail("%s: two regions share a cell" % b["id"])
    if n == 0:
        fail("no bags")


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "rows":
        check_rows(load(sys.argv[2]), load(sys.argv[3]))
    elif what == "tree":
        check_tree(load(sys.argv[2]), load(sys.argv[3]))
    elif what == "regions":
        check_regions(load(sys.argv[2]))
    else:
        fail("unknown check " + what)
