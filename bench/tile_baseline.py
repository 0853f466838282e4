#!/usr/bin/env python3
"""tile_baseline.py: the way common Python WSI tools cut a slide into
patches, as the baseline of bench/tile.sh: openslide-python read_region at
level 0, PIL resize (Lanczos) to px x px, PIL JPEG to memory.

usage: tile_baseline.py --mags 10,20 --px 256 --quality 90 SLIDE [SLIDE ...]

Same boxes as eosin-tile's grid with --min-tissue 0: for each magnification
M, extent = round(px * (10 / M) / mpp) level-0 pixels, stride = extent,
boxes wholly inside level 0. Same JPEG settings: quality Q, 4:4:4 chroma at
Q >= 90 (PIL subsampling=0), 4:2:0 below. Prints the tile count and the
JPEG bytes on stderr.
"""
import argparse
import io
import math
import sys

import openslide
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mags", default="10,20")
    ap.add_argument("--px", type=int, default=256)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--mpp", type=float, default=0,
                    help="um per level-0 pixel, for slides that do not say")
    ap.add_argument("slides", nargs="+")
    a = ap.parse_args()
    mags = sorted(float(m) for m in a.mags.split(","))
    n = nbytes = 0
    for path in a.slides:
        slide = openslide.OpenSlide(path)
        mpp = a.mpp or float(slide.properties[openslide.PROPERTY_NAME_MPP_X])
        w, h = slide.dimensions
        for mag in mags:
            extent = max(1, math.floor(a.px * (10 / mag) / mpp + 0.5))
            for y in range(0, h - extent + 1, extent):
                for x in range(0, w - extent + 1, extent):
                    region = slide.read_region((x, y), 0, (extent, extent)).convert("RGB")
                    tile = region.resize((a.px, a.px), Image.LANCZOS)
                    buf = io.BytesIO()
                    tile.save(buf, "JPEG", quality=a.quality,
                              subsampling=0 if a.quality >= 90 else 2)
                    n += 1
                    nbytes += buf.tell()
        slide.close()
    print(f"{n} tiles, {nbytes} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
