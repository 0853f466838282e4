#!/usr/bin/env python3
"""align_crc.py: the real-data check of eosin-align on the Kather CRC patches
(../shared/data/patches/crc-val-he-7k: 32 real H&E patches, 8 tissue classes
x 4), python3 standard library only.

  records LABELS.tsv JPEGDIR     one tile record (JPEG pixels from JPEGDIR/NAME.jpg)
                                 and one doc record per patch, as JSON lines for
                                 `eosin-cat -r`: each patch is its own "slide",
                                 its doc's caption is the prompt of its class
                                 ("an H&E image of adipose tissue", ...) and its
                                 label the class
  fold K [--shuffle SEED]        bag JSON lines (eosin-cat --base64) in, the same
                                 out with split: the K-th patch (0..3) of every
                                 class is "val", the rest "train"; so the
                                 held-out set has one patch per class and its
                                 image-to-text R@1 is the zero-shot accuracy
                                 over the 8 class prompts (chance 1/8).
                                 --shuffle: the training bags' captions and
                                 caption embeddings are permuted among them
                                 (seeded), which breaks the image-text link:
                                 a control that must stay near chance.
"""
import base64, json, random, sys

PROMPTS = {
    "ADI": "adipose tissue", "DEB": "debris", "LYM": "lymphocytes", "MUC": "mucus",
    "MUS": "smooth muscle", "NORM": "normal colon mucosa", "STR": "cancer-associated stroma",
    "TUM": "colorectal adenocarcinoma epithelium",
}


def records(labels, jpegdir):
    with open(labels) as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    for name, label in rows:
        slide = name.rsplit(".", 1)[0]
        with open("%s/%s.jpg" % (jpegdir, slide), "rb") as j:
            jpeg = base64.b64encode(j.read()).decode()
        tid = slide + "/20x/0_0"
        print(json.dumps({"k": "tile", "v": 1, "id": tid, "slide": slide, "path": name,
                          "mag": 20, "mpp": 0.5, "x": 0, "y": 0, "extent": 224, "px": 224,
                          "level": 0, "ds": 1, "base_mpp": 0.5, "mpp_source": "override",
                          "tissue": 1, "depth": 0, "root": tid, "quality": 95,
                          "jpeg": {"$base64": jpeg}}))
        print(json.dumps({"k": "doc", "v": 1, "id": slide + "/report", "slide": slide,
                          "caption": "an H&E image of " + PROMPTS[label], "label": label}))


def fold(k, shuffle):
    recs = [json.loads(line) for line in sys.stdin]
    seen = {}
    for r in recs:
        if r.get("k") == "bag":
            i = seen.setdefault(r["label"], 0)
            seen[r["label"]] = i + 1
            r["split"] = "val" if i == k else "train"
    if shuffle is not None:
        train = [r for r in recs if r.get("k") == "bag" and r["split"] == "train"]
        texts = [(r["caption"], r["txt_emb"]) for r in train]
        random.Random(shuffle).shuffle(texts)
        for r, (c, t) in zip(train, texts):
            r["caption"], r["txt_emb"] = c, t
    for r in recs:
        print(json.dumps(r))


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "records":
        records(a[1], a[2])
    elif len(a) in (2, 4) and a[0] == "fold" and (len(a) == 2 or a[2] == "--shuffle"):
        fold(int(a[1]), int(a[3]) if len(a) == 4 else None)
    else:
        sys.exit(__doc__)
