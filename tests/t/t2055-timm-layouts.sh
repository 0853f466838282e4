#!/bin/sh
# The timm ViT layouts of the published pathology encoders beyond the
# shared reference, against timm itself: packed SwiGLU MLPs with SiLU
# (Virchow 2, UNI 2), registers with LayerScale (H-optimus), with and
# without position rows for the prefix tokens, token and mean pooling.
# tests/fixtures/layouts/timm.json holds timm's pooled outputs for small
# seeded models that eosin-make-model writes in timm's names (timm loaded
# them with strict=True); tests/parity/timm_layouts.py made it and says how.
# Tolerance: 1e-4 max abs on every embedding element, float32.
. "$(dirname "$0")/../lib.sh"

test_have_prereq SHARED || test_skip_all 'needs ../shared/data (the JPEG tiles)'
check_numpy
test -n "$NUMPY_PY" || test_skip_all 'needs python3 with numpy'
PY=$NUMPY_PY
FIX=$ROOT/tests/fixtures/layouts/timm.json

test_expect_success 'setup: the fixture names tiles that are here' '
	layout_tiles "$FIX" in.mpk
'

for c in $(jq -r '.cases[].name' "$FIX"); do
	test_expect_success "$c: eosin-encode matches timm within 1e-4" "
		jq -r --arg c $c '.cases[] | select(.name==\$c) | .make_model' \"\$FIX\" >args &&
		eosin-make-model \$(cat args) --out $c.safetensors &&
		eosin-encode --model $c.safetensors --dtype f32 --device cpu --batch 4 <in.mpk >$c.mpk &&
		eosin-cat --vectors $c.mpk | jq -c 'select(.k==\"tile\") | .img_emb.values' >got &&
		jq -c --arg c $c '.cases[] | select(.name==\$c) | .pooled[]' \"\$FIX\" >want &&
		layout_maxabs got want >$c.err
	"
	echo "# $c: max abs error $(cat $c.err 2>/dev/null) (tol 1e-4)"
done

# Here (no GPU) the refusal is the missing device's; on a GPU it is the
# gated MLP's (lib/model/gpu.c), which only a GPU machine can show.
test_expect_success '--device cuda on a gated MLP: nothing on stdout and a reason' '
	test_must_fail eosin-encode --model swiglu-reg4.safetensors --device cuda <in.mpk >gpu.mpk 2>err &&
	test ! -s gpu.mpk && cat err && test -s err
'

test_expect_success 'a file whose blocks mix gated and plain MLPs is refused, naming the block' '
	eosin-make-model --arch vit --dim 48 --depth 2 --heads 3 --patch 14 --img 56 --mlp-ratio 5.3375 \
		--seed 11 --out plain.safetensors &&
	"$PY" - swiglu-reg4.safetensors plain.safetensors mixed.safetensors <<-\PYEOF &&
	import json, struct, sys
	def load(p):
	    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
	    return json.loads(b[8:8 + n]), b[8 + n:]
	(h, d), (ph, pd) = load(sys.argv[1]), load(sys.argv[2])
	meta = h.pop("__metadata__"); ph.pop("__metadata__", None)
	out, blobs, off = {}, [], 0
	for k, v in h.items():  # block 1 gets the fc2 of the plain model (48 x 256, not 48 x 128)
	    src, dat = (ph[k], pd) if k == "blocks.1.mlp.fc2.weight" else (v, d)
	    blob = dat[src["data_offsets"][0]:src["data_offsets"][1]]
	    out[k] = {"dtype": src["dtype"], "shape": src["shape"], "data_offsets": [off, off + len(blob)]}
	    blobs.append(blob); off += len(blob)
	out["__metadata__"] = meta
	s = json.dumps(out).encode()
	open(sys.argv[3], "wb").write(struct.pack("<Q", len(s)) + s + b"".join(blobs))
	PYEOF
	test_must_fail eosin-encode --model mixed.safetensors --device cpu <in.mpk >mixed.mpk 2>err &&
	test ! -s mixed.mpk && grep -q "block 1.s MLP is plain, block 0.s gated" err
'

test_expect_success 'eosin-make-model refuses an odd SwiGLU width and takes an even one' '
	eosin-make-model --arch vit --dim 48 --depth 2 --heads 3 --patch 16 --img 64 --mlp swiglu \
		--seed 1 --out ok.safetensors &&
	test_must_fail eosin-make-model --arch vit --mlp swiglu --dim 5 --mlp-ratio 1 --heads 1 \
		--out bad.safetensors 2>err && grep -q "must be even" err
'

test_done
