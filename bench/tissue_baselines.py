#!/usr/bin/python3
"""The tissue masks pathology users make today, on eosin-tile's thumbnail.

tissue_baselines.py METHOD THUMB.png OUT.png DS

METHOD is
  otsu  plain Otsu: HSV saturation of the thumbnail, Otsu's threshold of
        its histogram, nothing else;
  clam  CLAM's segmentation defaults (create_patches_fp.py, segmentTissue):
        saturation median-blurred with a 7 px kernel (mthresh 7), a fixed
        threshold S > 8 (sthresh 8, no Otsu), a morphological close with a
        4 x 4 square (close 4), then contours: pieces smaller than a_t = 100
        reference patches of 512 x 512 level-0 px dropped, holes up to
        a_h = 16 such patches filled (larger ones stay holes), at most 8
        holes a piece kept (max_n_holes); areas scaled to the thumbnail.
        Note a_t: 100 x 512^2 level-0 px is 26 Mpx, a 5120 px square; a
        piece smaller (or a whole slide smaller) is dropped;
  clam-small  the same with a_t = 1 reference patch (what a user sets
        for small slides and biopsies).
DS is level-0 px per thumbnail px. Written from the description of the
method, in numpy, with its own connected components; OUT.png is 255 where
tissue, 0 elsewhere.
"""
import sys
from collections import deque

import numpy as np
from PIL import Image


def saturation(rgb):
    rgb = rgb.astype(np.int32)
    mx, mn = rgb.max(2), rgb.min(2)
    return np.where(mx > 0, (255 * (mx - mn) + mx // 2) // np.maximum(mx, 1), 0)


def otsu(values):
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total, levels = hist.sum(), np.arange(256)
    best, best_t = -1.0, 0
    for t in range(1, 256):
        w0, w1 = hist[:t].sum(), hist[t:].sum()
        if w0 == 0 or w1 == 0:
            continue
        mu0 = (hist[:t] * levels[:t]).sum() / w0
        mu1 = (hist[t:] * levels[t:]).sum() / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
        if between > best:
            best, best_t = between, t
    return best_t


def median(a, k):
    r = k // 2
    p = np.pad(a, r, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(p, (k, k))
    return np.median(win.reshape(a.shape[0], a.shape[1], k * k), axis=2)


def square(a, size, op):
    """Dilate (np.logical_or) or erode (np.logical_and) with a size x size
    square anchored as OpenCV anchors an even kernel."""
    lo = size // 2
    hi = size - 1 - lo
    for axis in (0, 1):
        pad = np.pad(a, [(lo, hi) if k == axis else (0, 0) for k in (0, 1)],
                     constant_values=(op is np.logical_and))
        out = pad.take(range(0, a.shape[axis]), axis=axis)
        for d in range(1, size):
            out = op(out, pad.take(range(d, d + a.shape[axis]), axis=axis))
        a = out
    return a


def components(mask, conn8):
    lab = np.zeros(mask.shape, np.int32)
    h, w = mask.shape
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if conn8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    n = 0
    for y, x in zip(*np.nonzero(mask)):
        if lab[y, x]:
            continue
        n += 1
        lab[y, x] = n
        q = deque([(y, x)])
        while q:
            cy, cx = q.popleft()
            for dy, dx in steps:
                ny, nx = cy + dy, cx + dx
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not lab[ny, nx]:
                    lab[ny, nx] = n
                    q.append((ny, nx))
    return lab, n


def clam(rgb, ds, a_t_patches):
    s = saturation(rgb).astype(np.uint8)
    m = median(s, 7) > 8
    m = square(square(m, 4, np.logical_or), 4, np.logical_and)
    ref = (512 / ds) ** 2  # a reference patch, thumbnail px^2
    a_t, a_h = a_t_patches * ref, 16 * ref
    fg, nfg = components(m, True)
    sizes = np.bincount(fg.ravel())
    bg, nbg = components(~m, False)
    h, w = m.shape
    border = set(np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]])))
    bsizes = np.bincount(bg.ravel())
    out = np.zeros_like(m)
    # each piece (outer contour) filled, minus its large holes
    for k in range(1, nfg + 1):
        if sizes[k] < a_t:
            continue
        out |= fg == k
    holes = [k for k in range(1, nbg + 1) if k not in border]
    # a hole belongs to the piece around it; holes small are filled, at
    # most 8 large ones kept (the largest)
    kept = sorted((k for k in holes if bsizes[k] > a_h), key=lambda k: -bsizes[k])[:8]
    for k in holes:
        if k in kept:
            continue
        ys, xs = np.nonzero(bg == k)
        # filled only if it lies inside a kept piece: some neighbour is out
        y, x = ys[0], xs[0]
        if y > 0 and out[y - 1, x]:
            out[bg == k] = True
    return out


def main():
    method, thumb, outp, ds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    rgb = np.asarray(Image.open(thumb).convert("RGB"))
    if method == "otsu":
        s = saturation(rgb)
        out = s >= otsu(s.astype(np.uint8))
    elif method == "clam":
        out = clam(rgb, ds, 100)
    elif method == "clam-small":
        out = clam(rgb, ds, 1)
    else:
        sys.exit(f"tissue_baselines.py: no method '{method}'")
    Image.fromarray((out * 255).astype(np.uint8)).save(outp)


main()
