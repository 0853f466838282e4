#!/usr/bin/env python3
"""Reference outputs of the libraries that define the CLIP weight layouts
eosin-make-model --from converts: Hugging Face transformers' CLIPModel
(PLIP and any CLIPModel) and open_clip's CLIP (QuiltNet and the other
open_clip ViT towers), each with QuickGELU and with exact GELU.

For each case eosin-make-model writes a small random CLIP in the case's
own layout (--layout hf or open_clip); the library's model, built with the
case's configuration, loads it with load_state_dict(strict=True), so every
tensor name and shape is the library's own; its image features on the
shared JPEG tiles (preprocessed as tests/parity/vit_torch.py does, with
CLIP's mean and std) and its text features on the reference token rows
(../shared/data/reference/clip_text_tokens.i32, openai/CLIP's tokenizer)
are written to tests/fixtures/layouts/clip.json. t2056 converts the same
files with eosin-make-model --from and compares eosin-encode with them.

Neither library is a Debian package: run with checkouts on PYTHONPATH
(open_clip's src/, with an empty open_clip/__init__.py so that only its
model code loads, and a torchvision stub; transformers' CLIP classes with
stand-ins for its infrastructure), and Debian's torch:
  PYTHONPATH=OPEN_CLIP:HF:STUBS /usr/bin/python3 tests/parity/clip_layouts.py BIN SHARED OUT.json
The fixture records what it was made with.
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

SIZES = ("--arch clip --dim 48 --depth 2 --heads 3 --patch 16 --img 64 --width 32 --layers 2 "
         "--text-heads 2 --embed 24")
HF_CFG = dict(vision_config=dict(hidden_size=48, intermediate_size=192, num_hidden_layers=2,
                                 num_attention_heads=3, image_size=64, patch_size=16),
              text_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=2, vocab_size=49408,
                               max_position_embeddings=77, eos_token_id=2),
              projection_dim=24, logit_scale_init_value=2.6592)
OC_CFG = dict(embed_dim=24,
              vision_cfg=dict(image_size=64, layers=2, width=48, patch_size=16, head_width=16),
              text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2))

CASES = [
    # name, what, eosin-make-model (random, in the layout), how t2056 converts, config
    ("hf-quickgelu", "PLIP-like: transformers CLIPModel, hidden_act quick_gelu; heads and act "
     "from config.json beside the file", SIZES + " --layout hf --seed 21", "--layout hf",
     ("hf", "quick_gelu")),
    ("hf-gelu", "transformers CLIPModel, hidden_act gelu; heads and act from config.json",
     SIZES + " --layout hf --seed 22", "--layout hf", ("hf", "gelu")),
    ("open_clip-gelu", "QuiltNet-like: open_clip CLIP, GELU (quick_gelu false); heads and act "
     "from open_clip_config.json beside the file", SIZES + " --layout open_clip --seed 23",
     "--layout open_clip", ("open_clip", False)),
    ("open_clip-quickgelu", "open_clip CLIP with quick_gelu (OpenAI's towers); act and heads "
     "as flags", SIZES + " --layout open_clip --seed 24",
     "--layout open_clip --act quick-gelu --heads 3 --text-heads 2", ("open_clip", True)),
    ("open_clip-ls", "open_clip CLIP, GELU, LayerScale (ls_init_value) in both towers; act "
     "and heads as flags", SIZES + " --layout open_clip --layerscale --seed 25",
     "--layout open_clip --act gelu --heads 3 --text-heads 2", ("open_clip", "ls")),
]



def hf_config(act):
    from transformers.models.clip.configuration_clip import (CLIPConfig, CLIPTextConfig,
                                                             CLIPVisionConfig)
    v = CLIPVisionConfig(hidden_act=act, **HF_CFG["vision_config"])
    t = CLIPTextConfig(hidden_act=act, **HF_CFG["text_config"])
    return CLIPConfig(vision_config=v, text_config=t, projection_dim=HF_CFG["projection_dim"],
                      logit_scale_init_value=HF_CFG["logit_scale_init_value"])


def model_for(kind, opt):
    if kind == "hf":
        from transformers.models.clip.modeling_clip import CLIPModel
        m = CLIPModel(hf_config(opt)).eval()
        return m, m.get_image_features, m.get_text_features
    from open_clip.model import CLIP
    cfg = json.loads(json.dumps(OC_CFG))
    if opt == "ls":
        cfg["vision_cfg"]["ls_init_value"] = cfg["text_cfg"]["ls_init_value"] = 0.1
    m = CLIP(quick_gelu=opt is True, **cfg).eval()
    for mod in m.modules():  # torch 1.13 has no F.scaled_dot_product_attention:
        if hasattr(mod, "use_sdpa"):  # open_clip's own path without it
            mod.use_sdpa = False
    return m, m.encode_image, m.encode_text


def beside(kind, opt):
    """The config file t2056 writes beside the converted file, or None."""
    if kind == "hf":
        c = json.loads(json.dumps(HF_CFG))
        c["vision_config"]["hidden_act"] = c["text_config"]["hidden_act"] = opt
        return "config.json", c
    if opt is False:
        return "open_clip_config.json", {"model_cfg": dict(OC_CFG, quick_gelu=opt)}
    return None


def main():
    bindir, shared, out = sys.argv[1:4]
    tiles = sorted(os.path.join(shared, "tiles", f) for f in os.listdir(os.path.join(shared, "tiles"))
                   if f.endswith(".jpg"))
    tokens = np.fromfile(os.path.join(shared, "reference", "clip_text_tokens.i32"),
                         dtype="<i4").reshape(-1, 77)
    texts = json.load(open(os.path.join(shared, "reference", "clip_texts.json")))
    torch.set_num_threads(1)
    import open_clip.version
    doc = {"made_with": "transformers modeling_clip.py at 000f1ffdbf1ce6190cc8863af9a2fff817590937 "
                        "(its CLIP classes, with stand-ins for the library's infrastructure), "
                        "open_clip " + open_clip.version.__version__ + " (mlfoundations/open_clip 89fb801), torch " + torch.__version__,
           "script": "tests/parity/clip_layouts.py",
           "images": [os.path.basename(t) for t in tiles], "texts": texts, "cases": []}

    class Pre:
        img, crop_pct, interp = 64, 1.0, "bicubic"
        mean, std = vit_torch.CLIP_MEAN, vit_torch.CLIP_STD
    x = torch.stack([vit_torch.preprocess(t, Pre) for t in tiles])
    with tempfile.TemporaryDirectory() as tmp:
        for name, what, make, convert, (kind, opt) in CASES:
            path = os.path.join(tmp, name + ".safetensors")
            subprocess.run([os.path.join(bindir, "eosin-make-model"), *make.split(), "--out", path],
                           check=True)
            w, _ = vit_torch.load_safetensors(path)
            m, enc_img, enc_txt = model_for(kind, opt)
            m.load_state_dict(w, strict=True)
            with torch.inference_mode():
                img = enc_img(x).double().numpy()
                txt = enc_txt(torch.from_numpy(tokens.astype(np.int64))).double().numpy()
            assert np.isfinite(img).all() and img.std() > 1e-3 and txt.std() > 1e-3
            b = beside(kind, opt)
            doc["cases"].append({"name": name, "what": what, "make_model": make,
                                 "convert": convert, "beside": b[0] if b else None,
                                 "beside_json": b[1] if b else None,
                                 "image": [[float("%.9g" % v) for v in r] for r in img],
                                 "text": [[float("%.9g" % v) for v in r] for r in txt]})
            print(name, img.shape, txt.shape, "std %.4f %.4f" % (img.std(), txt.std()))
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
