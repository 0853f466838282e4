#!/usr/bin/env python3
"""A plain-PyTorch timm-style ViT / CLIP vision tower, the reference for
eosin-encode on variants the shared reference files lack (patch 14, mean
pooling, no LayerScale, dynamic size) and the baseline of bench/encode.sh.

Written from the conventions in ../shared/data/reference/README.md with
torch.nn.functional only (timm is not installed): patch embed as a strided
conv, [cls, registers, patches], learned pos_embed (all rows, or patches
only with no_embed_class; resampled with F.interpolate(bicubic,
antialias=True) for another grid), pre-LN blocks with LayerScale, exact
GELU, final norm or fc_norm, token or mean pooling.

Usage as a script:
  vit_torch.py MODEL.safetensors OUT.f32 [--pool token|avg] [--dynamic] IMAGE.jpg...
decodes each JPEG with Pillow, applies Resize(img/crop_pct)+CenterCrop(img)
(the model's bicubic/bilinear), normalises, runs the model in float32 and
writes the pooled vectors (N, dim) as little-endian float32.
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "F16": np.float16}


def load_safetensors(path):
    """Tensors (float32 torch) and __metadata__ of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        buf = raw[base + b:base + e]
        if t["dtype"] == "BF16":
            a = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            a = a.view(np.float32)
        else:
            a = np.frombuffer(buf, dtype=DTYPES[t["dtype"]]).astype(np.float32)
        out[name] = torch.from_numpy(a.copy()).reshape(t["shape"])
    return out, meta


class ViT:
    def __init__(self, path, pool=None, dynamic=None):
        self.w, meta = load_safetensors(path)
        cfg = json.loads(meta.get("timm_config", "{}"))
        w = self.w
        self.dim = w["patch_embed.proj.weight"].shape[0]
        self.patch = w["patch_embed.proj.weight"].shape[2]
        self.depth = sum(1 for k in w if k.endswith(".norm1.weight"))
        self.heads = cfg.get("num_heads", self.dim // 64)
        self.reg = w["reg_token"].shape[1] if "reg_token" in w else 0
        self.prefix = 1 + self.reg
        self.no_embed_class = bool(cfg.get("no_embed_class", False))
        self.pool = pool or cfg.get("global_pool", "token")
        self.dynamic = cfg.get("dynamic_img_size", False) if dynamic is None else dynamic
        fc = cfg.get("fc_norm", None)
        self.use_fc_norm = (self.pool == "avg") if fc is None else bool(fc)
        self.eps = 1e-6
        nl = cfg.get("norm_layer", "")
        if "eps=" in nl:
            self.eps = float(nl.split("eps=")[1].rstrip(")"))
        self.img = cfg.get("img_size", 224)
        self.crop_pct = cfg.get("crop_pct", 1.0)
        self.interp = cfg.get("interpolation", "bicubic")

    def pos_for(self, gh, gw):
        pos = self.w["pos_embed"][0]
        pre = pos[: self.prefix] if not self.no_embed_class else None
        grid = pos[self.prefix:] if not self.no_embed_class else pos
        gs = int(math.isqrt(grid.shape[0]))
        if (gh, gw) != (gs, gs):
            g = grid.reshape(1, gs, gs, -1).permute(0, 3, 1, 2)
            g = F.interpolate(g, size=(gh, gw), mode="bicubic", antialias=True, align_corners=False)
            grid = g.permute(0, 2, 3, 1).reshape(gh * gw, -1)
        return pre, grid

    def block(self, x, i):
        w = self.w
        p = f"blocks.{i}."
        B, T, C = x.shape
        h = F.layer_norm(x, (C,), w[p + "norm1.weight"], w[p + "norm1.bias"], self.eps)
        qkv = F.linear(h, w[p + "attn.qkv.weight"], w.get(p + "attn.qkv.bias"))
        qkv = qkv.reshape(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * (C // self.heads) ** -0.5
        a = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        o = (a @ v).transpose(1, 2).reshape(B, T, C)
        o = F.linear(o, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])
        x = x + (w[p + "ls1.gamma"] * o if p + "ls1.gamma" in w else o)
        h = F.layer_norm(x, (C,), w[p + "norm2.weight"], w[p + "norm2.bias"], self.eps)
        h = F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])
        if w[p + "mlp.fc2.weight"].shape[1] * 2 == h.shape[-1]:  # packed SwiGLU (timm's)
            a, b = h.chunk(2, dim=-1)
            h = F.silu(a) * b
        else:
            h = F.gelu(h)
        h = F.linear(h, w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
        return x + (w[p + "ls2.gamma"] * h if p + "ls2.gamma" in w else h)

    def forward(self, x):
        w = self.w
        B, _, H, W = x.shape
        x = F.conv2d(x, w["patch_embed.proj.weight"], w.get("patch_embed.proj.bias"), stride=self.patch)
        gh, gw = x.shape[2], x.shape[3]
        x = x.flatten(2).transpose(1, 2)
        pre, grid = self.pos_for(gh, gw)
        prefix = [w["cls_token"].expand(B, -1, -1)]
        if self.reg:
            prefix.append(w["reg_token"].expand(B, -1, -1))
        if self.no_embed_class:
            x = torch.cat(prefix + [x + grid], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + torch.cat([pre, grid], dim=0)
        for i in range(self.depth):
            x = self.block(x, i)
        C = self.dim
        if not self.use_fc_norm:
            x = F.layer_norm(x, (C,), w["norm.weight"], w["norm.bias"], self.eps)
        pooled = x[:, self.prefix:].mean(dim=1) if self.pool == "avg" else x[:, 0]
        if self.use_fc_norm:
            nw = w.get("fc_norm.weight", w["norm.weight"])
            nb = w.get("fc_norm.bias", w["norm.bias"])
            pooled = F.layer_norm(pooled, (C,), nw, nb, self.eps)
        return pooled


def preprocess(path, model):
    """Pillow decode + Resize(shorter side) + CenterCrop, as timm's eval transform;
    ImageNet's mean and std unless the model object names its own."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    size = int(math.floor(model.img / model.crop_pct))
    w, h = img.size
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    if new != (w, h):
        img = img.resize(new, Image.BICUBIC if model.interp == "bicubic" else Image.BILINEAR)
    w, h = img.size
    c = model.img
    top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
    img = img.crop((left, top, left + c, top + c))
    x = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    mean = np.array(getattr(model, "mean", (0.485, 0.456, 0.406)), dtype=np.float32)
    std = np.array(getattr(model, "std", (0.229, 0.224, 0.225)), dtype=np.float32)
    return torch.from_numpy(((x - mean) / std).transpose(2, 0, 1).copy())


def main():
    args = sys.argv[1:]
    pool, dynamic = None, None
    if "--pool" in args:
        i = args.index("--pool")
        pool = args[i + 1]
        del args[i:i + 2]
    if "--dynamic" in args:
        args.remove("--dynamic")
        dynamic = True
    model_path, out, images = args[0], args[1], args[2:]
    torch.set_num_threads(1)
    m = ViT(model_path, pool=pool, dynamic=dynamic)
    with torch.inference_mode():
        x = torch.stack([preprocess(p, m) for p in images])
        y = m.forward(x)
    y.numpy().astype("<f4").tofile(out)


if __name__ == "__main__":
    main()


# OpenAI CLIP's normalisation (CLIP, open_clip, CONCH's preprocessing)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
