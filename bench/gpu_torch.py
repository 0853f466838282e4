#!/usr/bin/env python3
"""PyTorch baseline for bench/gpu.sh: timm's VisionTransformer on the GPU,
bf16 autocast, SDPA attention (timm's fused_attn), torch.inference_mode.

Usage: gpu_torch.py forward DIM DEPTH HEADS BATCH N
       gpu_torch.py e2e DIM DEPTH HEADS BATCH JPEG_LIST_FILE N
forward: N images of random pixels already on the GPU, in batches.
e2e: JPEG files decoded and preprocessed with Pillow and torchvision
(Resize 248 bicubic, CenterCrop 224, Normalize) in a DataLoader with
worker processes, pinned, copied, then the model.
Prints one line: images_per_s X.
"""
import sys
import time

import torch
import timm  # noqa: F401
from timm.models.vision_transformer import VisionTransformer


def model(dim, depth, heads):
    m = VisionTransformer(img_size=224, patch_size=16, embed_dim=dim, depth=depth,
                          num_heads=heads, num_classes=0, global_pool="token")
    return m.cuda().eval()


def timed(fn, n_batches):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(n_batches):
        fn(i)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    mode = sys.argv[1]
    dim, depth, heads, batch = (int(a) for a in sys.argv[2:6])
    m = model(dim, depth, heads)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        if mode == "forward":
            n = int(sys.argv[6])
            x = torch.randn(batch, 3, 224, 224, device="cuda")
            for _ in range(3):
                m(x)
            nb = max(1, n // batch)
            dt = timed(lambda i: m(x), nb)
            print("images_per_s %.1f" % (nb * batch / dt))
            return
        from PIL import Image
        import torchvision.transforms as T
        paths = open(sys.argv[6]).read().split()
        n = int(sys.argv[7])
        tf = T.Compose([T.Resize(248, interpolation=T.InterpolationMode.BICUBIC),
                        T.CenterCrop(224), T.ToTensor(),
                        T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

        class DS(torch.utils.data.Dataset):
            def __len__(self):
                return n

            def __getitem__(self, i):
                return tf(Image.open(paths[i % len(paths)]).convert("RGB"))

        dl = torch.utils.data.DataLoader(DS(), batch_size=batch, num_workers=12,
                                         pin_memory=True)
        m(torch.randn(batch, 3, 224, 224, device="cuda"))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for x in dl:
            m(x.cuda(non_blocking=True))
        torch.cuda.synchronize()
        print("images_per_s %.1f" % (n / (time.perf_counter() - t0)))


if __name__ == "__main__":
    main()
