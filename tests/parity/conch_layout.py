#!/usr/bin/env python3
"""Reference outputs of CONCH's own vision tower for the layout
eosin-make-model --layout conch converts: a timm ViT trunk under
visual.trunk., CoCa's attentional pooler with one query over all its
tokens (visual.attn_pool_contrast), ln_contrast and proj_contrast, as
CONCH's encode_image(proj_contrast=True, normalize=False).

For each case eosin-make-model writes a small random model in CONCH's
names (with a captioning pooler, which the image embedding does not use);
CONCH's VisualModel, built as its coca_model._build_vision_tower does
(timm VisionTransformer, num_classes=0, dynamic_img_size, forward =
forward_features), loads every visual.* tensor with strict=True; its
output on the shared JPEG tiles (preprocessed as tests/parity/vit_torch.py
does, with CLIP's mean and std as CONCH's transform) is written to
tests/fixtures/layouts/conch.json. t2057 converts and compares.

Neither CONCH nor timm is a Debian package: run with checkouts on
PYTHONPATH (timm; CONCH's open_clip_custom/{vision_tower,transformer,
utils}.py under an empty package; a torchvision stub) and Debian's torch:
  PYTHONPATH=TIMM:CONCH:STUBS /usr/bin/python3 tests/parity/conch_layout.py BIN SHARED OUT.json
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
    # name, what, eosin-make-model arguments (random, CONCH's names), trunk and pooler sizes
    ("conch-like", "CONCH-like: ViT trunk 48 wide, pooler 32 wide (kdim = vdim = 48), 4 heads",
     "--arch vit --layout conch --dim 48 --depth 2 --heads 3 --patch 16 --img 64 "
     "--no-layerscale --dynamic --embed 32 --pool-heads 4 --seed 31",
     dict(D=48, depth=2, heads=3, patch=16, img=64, E=32, pool_heads=4)),
    ("conch-e-eq-d", "pooler as wide as the trunk (one in_proj_weight), 8 heads",
     "--arch vit --layout conch --dim 48 --depth 2 --heads 3 --patch 16 --img 64 "
     "--no-layerscale --dynamic --embed 48 --pool-heads 8 --seed 32",
     dict(D=48, depth=2, heads=3, patch=16, img=64, E=48, pool_heads=8)),
]


def conch_visual(c):
    from timm.models.vision_transformer import VisionTransformer
    from conch.open_clip_custom.vision_tower import VisualModel
    trunk = VisionTransformer(embed_dim=c["D"], depth=c["depth"], num_heads=c["heads"],
                              mlp_ratio=4.0, img_size=c["img"], patch_size=c["patch"],
                              num_classes=0, dynamic_img_size=True)
    trunk.forward = trunk.forward_features
    return VisualModel(embed_dim_contrast=c["E"], embed_dim_caption=c["D"], trunk=trunk,
                       use_attentional_pool_contrast=True, use_attentional_pool_caption=True,
                       n_queries_contrast=1, n_queries_caption=4,
                       attn_pooler_heads=c["pool_heads"], output_tokens=False,
                       image_size=c["img"]).eval()


def main():
    import timm
    bindir, shared, out = sys.argv[1:4]
    tiles = sorted(os.path.join(shared, "tiles", f) for f in os.listdir(os.path.join(shared, "tiles"))
                   if f.endswith(".jpg"))
    torch.set_num_threads(1)
    doc = {"made_with": "CONCH mahmoodlab/CONCH 141cc09 (open_clip_custom/vision_tower.py, "
                        "transformer.py), timm " + timm.__version__ + ", torch " + torch.__version__,
           "script": "tests/parity/conch_layout.py",
           "images": [os.path.basename(t) for t in tiles], "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, what, args, c in CASES:
            path = os.path.join(tmp, name + ".safetensors")
            subprocess.run([os.path.join(bindir, "eosin-make-model"), *args.split(), "--out", path],
                           check=True)
            w, _ = vit_torch.load_safetensors(path)
            m = conch_visual(c)
            m.load_state_dict({k[7:]: v for k, v in w.items() if k.startswith("visual.")},
                              strict=True)

            class Pre:
                img, crop_pct, interp = c["img"], 1.0, "bicubic"
                mean, std = vit_torch.CLIP_MEAN, vit_torch.CLIP_STD
            x = torch.stack([vit_torch.preprocess(t, Pre) for t in tiles])
            with torch.inference_mode():
                y = m(x).double().numpy()
            assert np.isfinite(y).all() and y.std() > 1e-3
            doc["cases"].append({"name": name, "what": what, "make_model": args, "conch": c,
                                 "pooled": [[float("%.9g" % v) for v in r] for r in y]})
            print(name, y.shape, "std %.4f" % y.std())
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
