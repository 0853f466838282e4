#!/usr/bin/env python3
"""Reference outputs of timm itself for the ViT layouts eosin reads beyond
the shared reference: packed SwiGLU MLPs (Virchow 2, UNI 2), registers with
LayerScale (H-optimus), with and without position rows for the prefix.

For each case: eosin-make-model writes a small random model in timm's own
names; timm's VisionTransformer, built with the case's keyword arguments,
loads it with load_state_dict(strict=True) (so every tensor name and shape
is timm's), and its pooled output (num_classes=0) on the shared JPEG tiles,
preprocessed as tests/parity/vit_torch.py does (checked against eosin-encode
there), is written to tests/fixtures/layouts/timm.json. t2055 compares
eosin-encode on the same models with those numbers.

timm is not a Debian package: run with a checkout of it on PYTHONPATH,
with a stub for torchvision (which timm's data code imports and its models
do not use), and Debian's torch:
  PYTHONPATH=TIMM:STUBS /usr/bin/python3 tests/parity/timm_layouts.py BIN SHARED OUT.json
The fixture records the timm version it was made with.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit_torch  # noqa: E402

CASES = [
    # name, eosin-make-model arguments, timm VisionTransformer arguments
    ("swiglu-reg4", "virchow2-like: SwiGLUPacked + SiLU, 4 registers, LayerScale, patch 14",
     "--arch vit --dim 48 --depth 2 --heads 3 --patch 14 --img 56 --reg 4 --mlp swiglu "
     "--mlp-ratio 5.3375 --seed 11",
     dict(img_size=56, patch_size=14, embed_dim=48, depth=2, num_heads=3, mlp_ratio=5.3375,
          mlp_layer="SwiGLUPacked", act_layer="SiLU", reg_tokens=4, init_values=1e-5)),
    ("swiglu-reg8-nec", "uni2-like: SwiGLUPacked + SiLU, 8 registers, no_embed_class, LayerScale",
     "--arch vit --dim 48 --depth 2 --heads 3 --patch 14 --img 56 --reg 8 --mlp swiglu "
     "--mlp-ratio 5.33334 --no-embed-class --seed 12",
     dict(img_size=56, patch_size=14, embed_dim=48, depth=2, num_heads=3, mlp_ratio=5.33334,
          mlp_layer="SwiGLUPacked", act_layer="SiLU", reg_tokens=8, no_embed_class=True,
          init_values=1e-5)),
    ("swiglu-avg", "SwiGLUPacked + SiLU, 4 registers, mean pooling over patch tokens",
     "--arch vit --dim 48 --depth 2 --heads 3 --patch 16 --img 64 --reg 4 --mlp swiglu "
     "--mlp-ratio 4 --pool avg --seed 13",
     dict(img_size=64, patch_size=16, embed_dim=48, depth=2, num_heads=3, mlp_ratio=4.0,
          mlp_layer="SwiGLUPacked", act_layer="SiLU", reg_tokens=4, init_values=1e-5,
          global_pool="avg")),
    ("virchow-token+avg", "virchow2-like, the published embedding: SwiGLUPacked + SiLU, "
     "4 registers, LayerScale; token 0 and the mean of the patch tokens concatenated",
     "--arch vit --dim 48 --depth 2 --heads 3 --patch 14 --img 56 --reg 4 --mlp swiglu "
     "--mlp-ratio 5.3375 --pool token+avg --seed 15",
     dict(img_size=56, patch_size=14, embed_dim=48, depth=2, num_heads=3, mlp_ratio=5.3375,
          mlp_layer="SwiGLUPacked", act_layer="SiLU", reg_tokens=4, init_values=1e-5,
          global_pool="")),
    ("gelu-reg4-ls", "h-optimus-like: GELU MLP, 4 registers, LayerScale, patch 14",
     "--arch vit --dim 48 --depth 2 --heads 3 --patch 14 --img 56 --reg 4 --seed 14",
     dict(img_size=56, patch_size=14, embed_dim=48, depth=2, num_heads=3, mlp_ratio=4.0,
          reg_tokens=4, init_values=1e-5)),
]


def timm_model(kw):
    import timm
    from timm.layers import SwiGLUPacked
    kw = dict(kw)
    if kw.get("mlp_layer") == "SwiGLUPacked":
        kw["mlp_layer"] = SwiGLUPacked
    if kw.get("act_layer") == "SiLU":
        kw["act_layer"] = torch.nn.SiLU
    return timm.models.vision_transformer.VisionTransformer(num_classes=0, **kw).eval()


def main():
    import timm
    bindir, shared, out = sys.argv[1:4]
    tiles = sorted(os.path.join(shared, "tiles", f) for f in os.listdir(os.path.join(shared, "tiles"))
                   if f.endswith(".jpg"))
    torch.set_num_threads(1)
    doc = {"made_with": "timm " + timm.__version__ + ", torch " + torch.__version__,
           "script": "tests/parity/timm_layouts.py",
           "images": [os.path.basename(t) for t in tiles], "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, what, args, kw in CASES:
            path = os.path.join(tmp, name + ".safetensors")
            subprocess.run([os.path.join(bindir, "eosin-make-model"), *args.split(), "--out", path],
                           check=True)
            w, _ = vit_torch.load_safetensors(path)
            m = timm_model(kw)
            if kw.get("global_pool") == "avg":
                # timm's avg pooling norms the pooled vector (fc_norm); eosin-make-model
                # stores that norm under norm.*, which eosin uses as fc_norm when it
                # pools the mean: the same numbers under timm's name
                w = {("fc_" + k if k.startswith("norm.") else k): v for k, v in w.items()}
            m.load_state_dict(w, strict=True)

            class Pre:  # what preprocess() reads of a model
                img, crop_pct, interp = kw["img_size"], 1.0, "bicubic"
            with torch.inference_mode():
                x = torch.stack([vit_torch.preprocess(t, Pre) for t in tiles])
                y = m(x)
                if kw.get("global_pool") == "":
                    # Virchow's model card: timm gives every token (global_pool ''),
                    # the embedding is [class token, mean of the patch tokens]
                    p = kw["reg_tokens"] + 1
                    y = torch.cat([y[:, 0], y[:, p:].mean(1)], dim=-1)
                y = y.double().numpy()
            assert np.isfinite(y).all() and y.std() > 1e-3
            doc["cases"].append({"name": name, "what": what, "make_model": args, "timm": kw,
                                 "pooled": [[float("%.9g" % v) for v in row] for row in y]})
            print(name, y.shape, "std %.4f" % y.std())
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
