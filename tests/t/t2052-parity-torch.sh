#!/bin/sh
# eosin-encode against PyTorch from JPEG bytes to embedding, on variants
# the shared reference lacks: patch 14 with mean pooling (fc_norm), no
# LayerScale, registers without position embeddings (no_embed_class), at
# 224 and 256 px with the timm resize + centre crop from 512 px tiles.
# The reference is tests/parity/vit_torch.py (plain torch + Pillow), first
# checked to reproduce the shared timm reference outputs exactly.
# Tolerance: 1e-4 max abs on every embedding element (float32 output).
. "$(dirname "$0")/../lib.sh"

test_have_prereq SHARED || test_skip_all 'needs ../shared/data'
# Debian's python3-torch lives in /usr/bin/python3, which may not be first on PATH.
PY=
for p in python3 /usr/bin/python3; do
	"$p" -c 'import torch, numpy, PIL' 2>/dev/null && { PY=$p; break; }
done
test -n "$PY" || test_skip_all 'needs python3 with torch, numpy and Pillow (python3-torch)'
REF=$SHARED/reference

# maxerr OUT.mpk REF.f32 DIM: max abs difference of img_emb rows vs a raw f32 file
maxerr() {
	eosin-cat --vectors "$1" | jq -c 'select(.k=="tile") | .img_emb.values' |
		"$PY" -c '
import json, sys
import numpy as np
got = np.array([json.loads(l) for l in sys.stdin], dtype=np.float64)
want = np.fromfile(sys.argv[1], dtype="<f4").astype(np.float64).reshape(got.shape)
print("%.3g" % np.abs(got - want).max())' "$2"
}

test_expect_success 'the torch reference reproduces the shared timm outputs' '
	"$PY" - "$REF" "$ROOT/tests/parity" <<-\EOP
	import sys, numpy as np, torch
	sys.path.insert(0, sys.argv[2]); import vit_torch
	ref = sys.argv[1]
	x = torch.from_numpy(np.fromfile(ref + "/vit_input_224.f32", dtype="<f4").reshape(4, 3, 224, 224))
	for pool, name in (("token", "vit_token_pooled"), ("avg", "vit_avg_pooled")):
	    m = vit_torch.ViT(ref + "/vit_weights.safetensors", pool=pool)
	    with torch.inference_mode():
	        y = m.forward(x).numpy()
	    e = np.abs(y - np.fromfile(ref + "/" + name + ".f32", dtype="<f4").reshape(4, 192)).max()
	    print(name, e)
	    assert e < 2e-5
	EOP
'

test_expect_success 'setup: JPEG tiles of several sizes' '
	i=0 && for f in "$SHARED"/tiles/*.jpg; do
		i=$((i + 1)) &&
		jq -nc --arg b "$(base64 -w0 "$f")" --arg id "j$i" "{k:\"tile\",v:1,id:\$id,jpeg:{\"\$base64\":\$b}}" &&
		echo "$f" >>files || return 1
	done | eosin-cat -r >in.mpk &&
	test $(wc -l <files) -ge 4
'

test_expect_success 'patch 14, mean pooling, no LayerScale, 4 registers' '
	eosin-make-model --arch vit --dim 96 --depth 3 --heads 3 --patch 14 --img 224 --reg 4 \
		--pool avg --no-layerscale --seed 3 --out p14.safetensors &&
	eosin-encode --model p14.safetensors --dtype f32 --batch 3 <in.mpk >p14.mpk 2>/dev/null &&
	"$PY" "$ROOT/tests/parity/vit_torch.py" p14.safetensors p14.f32 $(cat files) &&
	e=$(maxerr p14.mpk p14.f32) && echo "$e" >p14.err &&
	awk -v e="$e" "BEGIN { exit !(e <= 1e-4) }"
'
echo "# patch 14 avg: max abs error $(cat p14.err 2>/dev/null) (tol 1e-4)"

test_expect_success 'no_embed_class with registers, token pooling, patch 16 at 256 px' '
	eosin-make-model --arch vit --dim 64 --depth 2 --heads 2 --patch 16 --img 256 --reg 2 \
		--no-embed-class --seed 4 --out nec.safetensors &&
	eosin-encode --model nec.safetensors --dtype f32 <in.mpk >nec.mpk 2>/dev/null &&
	"$PY" "$ROOT/tests/parity/vit_torch.py" nec.safetensors nec.f32 $(cat files) &&
	e=$(maxerr nec.mpk nec.f32) && echo "$e" >nec.err &&
	awk -v e="$e" "BEGIN { exit !(e <= 1e-4) }"
'
echo "# no_embed_class 256: max abs error $(cat nec.err 2>/dev/null) (tol 1e-4)"

test_done
