#!/usr/bin/env python3
"""PyTorch baseline for bench/encode.sh: the same ViT (tests/parity/vit_torch.py,
plain torch; timm is not installed), the same weights read from the same
safetensors file, torch.inference_mode, float32, a fixed thread count.

Usage: encode_torch.py MODEL THREADS BATCH forward N
       encode_torch.py MODEL THREADS BATCH e2e JPEG...
forward: N images of random normalised pixels through the model in batches.
e2e: each JPEG read from disk, decoded and preprocessed with Pillow
(Resize + CenterCrop + Normalize), then the model, in batches.
Prints one line: images per second (wall clock, after one warm-up batch).
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "parity"))
import vit_torch  # noqa: E402


def main():
    model_path, threads, batch, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(threads)
    m = vit_torch.ViT(model_path)
    with torch.inference_mode():
        warm = torch.randn(batch, 3, m.img, m.img)
        m.forward(warm)
        if mode == "forward":
            n = int(sys.argv[5])
            x = torch.randn(batch, 3, m.img, m.img)
            t0 = time.perf_counter()
            done = 0
            while done < n:
                b = min(batch, n - done)
                m.forward(x[:b])
                done += b
        else:
            files = sys.argv[5:]
            n = len(files)
            t0 = time.perf_counter()
            for i in range(0, n, batch):
                x = torch.stack([vit_torch.preprocess(f, m) for f in files[i:i + batch]])
                m.forward(x)
        dt = time.perf_counter() - t0
    print("%.3f" % (n / dt))


if __name__ == "__main__":
    main()
