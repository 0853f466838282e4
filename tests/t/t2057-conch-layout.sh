#!/bin/sh
# CONCH's vision tower, converted by eosin-make-model --layout conch: a timm
# ViT trunk under visual.trunk., CoCa's attentional pooler with one query
# over all the trunk's tokens, ln_contrast and proj_contrast (CONCH's
# encode_image). tests/fixtures/layouts/conch.json holds the outputs of
# CONCH's own VisualModel for small seeded models that eosin-make-model
# writes in CONCH's names (loaded there with strict=True);
# tests/parity/conch_layout.py made it and says how. Tolerance: 1e-4 max
# abs on every embedding element, float32.
. "$(dirname "$0")/../lib.sh"

test_have_prereq SHARED || test_skip_all 'needs ../shared/data (the JPEG tiles)'
check_numpy
test -n "$NUMPY_PY" || test_skip_all 'needs python3 with numpy'
PY=$NUMPY_PY
FIX=$ROOT/tests/fixtures/layouts/conch.json

test_expect_success 'setup: the fixture names tiles that are here' '
	layout_tiles "$FIX" in.mpk
'

# The conversion states the trunk once (the flags a timm ViT takes); the
# pooler's width comes from its tensors, its heads from --pool-heads.
for c in $(jq -r '.cases[].name' "$FIX"); do
	test_expect_success "$c: converted, eosin-encode matches CONCH within 1e-4" "
		args=\$(jq -r --arg c $c '.cases[] | select(.name==\$c) | .make_model' \"\$FIX\") &&
		eosin-make-model \$args --out $c.conch.safetensors &&
		conv=\$(echo \$args | sed 's/--layout conch//; s/--seed [0-9]*//; s/--embed [0-9]*//') &&
		eosin-make-model \$conv --layout conch --from $c.conch.safetensors \
			--out $c.safetensors 2>$c.log &&
		grep -q 'left out 11 tensors the image embedding does not use' $c.log &&
		eosin-encode --model $c.safetensors --dtype f32 --device cpu --batch 4 <in.mpk >$c.mpk &&
		eosin-cat --vectors $c.mpk | jq -c 'select(.k==\"tile\") | .img_emb.values' >got &&
		jq -c --arg c $c '.cases[] | select(.name==\$c) | .pooled[]' \"\$FIX\" >want &&
		layout_maxabs got want >$c.err
	"
	echo "# $c: max abs error $(cat $c.err 2>/dev/null) (tol 1e-4)"
done

# The comparison can fail: the pooler with the wrong number of heads.
test_expect_success 'control: conch-like with 8 pooler heads instead of 4 is off by > 1e-4' '
	args=$(jq -r ".cases[] | select(.name==\"conch-like\") | .make_model" "$FIX") &&
	conv=$(echo $args | sed "s/--layout conch//; s/--seed [0-9]*//; s/--embed [0-9]*//; s/--pool-heads 4/--pool-heads 8/") &&
	eosin-make-model $conv --layout conch --from conch-like.conch.safetensors \
		--out wrong.safetensors 2>/dev/null &&
	eosin-encode --model wrong.safetensors --dtype f32 --device cpu <in.mpk >wrong.mpk &&
	eosin-cat --vectors wrong.mpk | jq -c "select(.k==\"tile\") | .img_emb.values" >got &&
	jq -c ".cases[] | select(.name==\"conch-like\") | .pooled[]" "$FIX" >want &&
	test_must_fail layout_maxabs got want >wrong.err && cat wrong.err
'
echo "# control, 8 heads for 4: max abs error $(cat wrong.err 2>/dev/null)"

test_expect_success 'the converted file records attn pooling, its heads and CLIP mean/std' '
	"$PY" -c "import json,struct,sys
b=open(sys.argv[1],\"rb\").read(); n=struct.unpack(\"<Q\",b[:8])[0]
c=json.loads(json.loads(b[8:8+n])[\"__metadata__\"][\"timm_config\"])
assert c[\"global_pool\"]==\"attn\" and c[\"attn_pool_heads\"]==4, c
assert abs(c[\"mean\"][0]-0.48145466)<1e-7 and abs(c[\"std\"][2]-0.27577711)<1e-7, c" conch-like.safetensors
'

test_expect_success '--device cuda on an attentional pooler: nothing on stdout and a reason' '
	test_must_fail eosin-encode --model conch-like.safetensors --device cuda <in.mpk >gpu.mpk 2>err &&
	test ! -s gpu.mpk && test -s err
'

test_expect_success 'a tensor outside CONCH'"'"'s layout refused by name, nothing written' '
	"$PY" - conch-like.conch.safetensors <<-\PYEOF &&
	import json, struct, sys
	b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
	h = json.loads(b[8:8 + n]); data = b[8 + n:]
	h["visual.head.proj.weight"] = {"dtype": "F32", "shape": [1],
	                                "data_offsets": [len(data), len(data) + 4]}
	s = json.dumps(h).encode()
	open("extra.safetensors", "wb").write(struct.pack("<Q", len(s)) + s + data + b"\0" * 4)
	PYEOF
	test_must_fail eosin-make-model --arch vit --layout conch --dim 48 --depth 2 --heads 3 \
		--patch 16 --img 64 --no-layerscale --from extra.safetensors --out no.safetensors 2>err &&
	test ! -e no.safetensors && grep -q "visual.head.proj.weight.*not in CONCH" err
'

test_expect_success 'a timm ViT is not a CONCH tower; --layout conch wants --arch vit' '
	eosin-make-model --arch vit --dim 48 --depth 1 --heads 3 --patch 16 --img 64 \
		--out plain.safetensors &&
	test_must_fail eosin-make-model --arch vit --layout conch --dim 48 --depth 1 --heads 3 \
		--patch 16 --img 64 --from plain.safetensors --out no.safetensors 2>err &&
	test ! -e no.safetensors && cat err && test -s err &&
	test_must_fail eosin-make-model --arch clip --layout conch --out no.safetensors 2>err &&
	grep -q "only with --arch vit" err
'

test_done
