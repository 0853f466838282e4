#!/usr/bin/env python3
"""Pillow reference for eosin's image preprocessing (tests/unit/test-image.c).

Usage: preprocess_pil.py IMAGE OUT.jpg OUT.f32 RESIZE CROP FILTER MEANSTD

Saves IMAGE as a JPEG (quality 90, 4:2:0) to OUT.jpg, then decodes that JPEG
with Pillow and applies the evaluation transform timm and CLIP use on PIL
images: Resize(RESIZE) of the shorter side (torchvision's size rule),
CenterCrop(CROP) (torchvision's offsets), to float /255, normalise with
MEANSTD ("imagenet" or "clip"). Writes (3, CROP, CROP) float32 to OUT.f32.
Only Pillow and numpy are used (torchvision is not needed).
"""
import sys

import numpy as np
from PIL import Image

MEANSTD = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


def main():
    src, out_jpg, out_f32, resize, crop, filt, ms = sys.argv[1:8]
    resize, crop = int(resize), int(crop)
    Image.open(src).convert("RGB").save(out_jpg, quality=90)
    img = Image.open(out_jpg).convert("RGB")
    w, h = img.size
    short, long_ = (w, h) if w <= h else (h, w)
    new_long = int(resize * long_ / short)
    size = (resize, new_long) if w <= h else (new_long, resize)
    resample = Image.BICUBIC if filt == "bicubic" else Image.BILINEAR
    if size != (w, h):
        img = img.resize(size, resample)
    w, h = img.size
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    x = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    mean, std = MEANSTD[ms]
    x = (x - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    x.transpose(2, 0, 1).astype("<f4").tofile(out_f32)


if __name__ == "__main__":
    main()
