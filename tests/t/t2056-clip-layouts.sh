#!/bin/sh
# CLIP weights in the layouts the field publishes, converted by
# eosin-make-model --from: Hugging Face transformers' CLIPModel (PLIP) and
# open_clip (QuiltNet and the other open_clip ViT towers), each with
# QuickGELU and with exact GELU. tests/fixtures/layouts/clip.json holds the
# image and text features those libraries computed for small seeded models
# that eosin-make-model writes in their own layouts (loaded there with
# strict=True); tests/parity/clip_layouts.py made it and says how. Here the
# same files are converted and run by eosin-encode. Tolerance: 1e-4 max abs
# on every embedding element, float32.
. "$(dirname "$0")/../lib.sh"

test_have_prereq SHARED || test_skip_all 'needs ../shared/data (the JPEG tiles, the vocabulary)'
check_numpy
test -n "$NUMPY_PY" || test_skip_all 'needs python3 with numpy'
PY=$NUMPY_PY
FIX=$ROOT/tests/fixtures/layouts/clip.json
VOCAB=$SHARED/tokenizers/bpe_simple_vocab_16e6.txt.gz

test_expect_success 'setup: the fixture names tiles that are here' '
	layout_tiles "$FIX" in.mpk &&
	jq -r ".texts[]" "$FIX" >texts && test $(wc -l <texts) = 8
'

for c in $(jq -r '.cases[].name' "$FIX"); do
	test_expect_success "$c: converted, images and texts match the library within 1e-4" "
		jq -r --arg c $c '.cases[] | select(.name==\$c)' \"\$FIX\" >case.json &&
		rm -rf $c && mkdir $c &&
		eosin-make-model \$(jq -r .make_model case.json) --out $c/weights.safetensors &&
		b=\$(jq -r '.beside // empty' case.json) &&
		if test -n \"\$b\"; then jq .beside_json case.json >$c/\$b; fi &&
		eosin-make-model --arch clip --from $c/weights.safetensors \$(jq -r .convert case.json) \
			--vocab \"\$VOCAB\" --out $c.safetensors 2>$c.log &&
		eosin-encode --model $c.safetensors --dtype f32 --device cpu --batch 4 <in.mpk >$c.img.mpk &&
		eosin-cat --vectors $c.img.mpk | jq -c 'select(.k==\"tile\") | .img_emb.values' >got &&
		jq -c '.image[]' case.json >want &&
		layout_maxabs got want >$c.img.err &&
		eosin-encode --lines --dtype f32 --text-model $c.safetensors --vocab \"\$VOCAB\" \
			<texts >$c.txt.mpk &&
		eosin-cat --vectors $c.txt.mpk | jq -c 'select(.k==\"text\") | .txt_emb.values' >got &&
		jq -c '.text[]' case.json >want &&
		layout_maxabs got want >$c.txt.err
	"
	echo "# $c: max abs error images $(cat $c.img.err 2>/dev/null), texts $(cat $c.txt.err 2>/dev/null) (tol 1e-4)"
done

cat >quick.py <<'PYEOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
print(json.loads(json.loads(b[8:8 + n])["__metadata__"]["clip_config"]).get("quick_gelu"))
PYEOF

test_expect_success 'the activation is written into clip_config as the library said' '
	test "$("$PY" quick.py hf-quickgelu.safetensors)" = True &&
	test "$("$PY" quick.py open_clip-quickgelu.safetensors)" = True &&
	test "$("$PY" quick.py hf-gelu.safetensors)" = False &&
	test "$("$PY" quick.py open_clip-gelu.safetensors)" = False
'

# The comparison can fail: the GELU model converted as QuickGELU is off.
test_expect_success 'control: hf-gelu converted with the wrong activation is off by > 1e-4' '
	jq -r ".cases[] | select(.name==\"hf-gelu\")" "$FIX" >case.json &&
	eosin-make-model --arch clip --from hf-gelu/weights.safetensors --layout hf \
		--act quick-gelu --out wrong.safetensors 2>/dev/null &&
	eosin-encode --model wrong.safetensors --dtype f32 --device cpu <in.mpk >wrong.mpk &&
	eosin-cat --vectors wrong.mpk | jq -c "select(.k==\"tile\") | .img_emb.values" >got &&
	jq -c ".image[]" case.json >want &&
	test_must_fail layout_maxabs got want >wrong.err && cat wrong.err
'
echo "# control, GELU run as QuickGELU: max abs error $(cat wrong.err 2>/dev/null)"

# CLIPVisionModelWithProjection: the vision tower alone; its weights are
# hf-quickgelu's, so its image features are that case's.
test_expect_success 'HF vision tower alone: converted without a text tower, the same images' '
	rm -rf vonly && mkdir vonly && cp hf-quickgelu/config.json vonly/ &&
	"$PY" - hf-quickgelu/weights.safetensors vonly/weights.safetensors <<-\PYEOF &&
	import json, struct, sys
	b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
	h = json.loads(b[8:8 + n]); data = b[8 + n:]
	keep = {k: v for k, v in h.items() if k.startswith("vision_model.") or k == "visual_projection.weight"}
	out, blobs, off = {}, [], 0
	for k, v in keep.items():
	    blob = data[v["data_offsets"][0]:v["data_offsets"][1]]
	    out[k] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [off, off + len(blob)]}
	    blobs.append(blob); off += len(blob)
	s = json.dumps(out).encode()
	open(sys.argv[2], "wb").write(struct.pack("<Q", len(s)) + s + b"".join(blobs))
	PYEOF
	eosin-make-model --arch clip --layout hf --from vonly/weights.safetensors --out vonly.safetensors &&
	test "$("$PY" quick.py vonly.safetensors)" = True &&
	eosin-encode --model vonly.safetensors --dtype f32 --device cpu <in.mpk >vonly.mpk &&
	eosin-cat --vectors vonly.mpk | jq -c "select(.k==\"tile\") | .img_emb.values" >got &&
	jq -c ".cases[] | select(.name==\"hf-quickgelu\") | .image[]" "$FIX" >want &&
	layout_maxabs got want >vonly.err
'
echo "# HF vision tower alone: max abs error $(cat vonly.err 2>/dev/null)"

test_expect_success 'HF without an activation stated anywhere: refused, nothing written' '
	eosin-make-model --arch clip --layout hf --dim 48 --depth 1 --heads 3 --patch 16 --img 64 \
		--width 32 --layers 1 --text-heads 2 --embed 24 --seed 3 --out bare.safetensors &&
	test_must_fail eosin-make-model --arch clip --from bare.safetensors --layout hf \
		--heads 3 --text-heads 2 --out no.safetensors 2>err &&
	test ! -e no.safetensors && grep -q "say --act" err
'

test_expect_success 'a size flag the tensors contradict: refused with both numbers' '
	test_must_fail eosin-make-model --arch clip --from bare.safetensors --layout hf --act gelu \
		--heads 3 --text-heads 2 --dim 64 --out no.safetensors 2>err &&
	test ! -e no.safetensors && grep -q "dim 64.*say 48" err
'

test_expect_success 'vision heads that do not divide the width: refused' '
	test_must_fail eosin-make-model --arch clip --from bare.safetensors --layout hf --act gelu \
		--text-heads 2 --out no.safetensors 2>err &&
	test ! -e no.safetensors && grep -q "heads" err
'

# A tensor the layout does not cover (an attentional pooler, as CoCa's and
# CONCH's) and an I64 position_ids buffer (persisted by older HF exports):
# the first is refused by name, the second left out and said.
test_expect_success 'an uncovered tensor refused by name; an I64 position_ids left out' '
	"$PY" - bare.safetensors <<-\PYEOF &&
	import json, struct, sys
	p = sys.argv[1]
	b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
	h = json.loads(b[8:8 + n]); data = b[8 + n:]
	def add(h, data, name, dtype, shape, raw):
	    h = dict(h); h[name] = {"dtype": dtype, "shape": shape,
	                            "data_offsets": [len(data), len(data) + len(raw)]}
	    return h, data + raw
	def write(path, h, data):
	    s = json.dumps(h).encode()
	    open(path, "wb").write(struct.pack("<Q", len(s)) + s + data)
	h1, d1 = add(h, data, "text_model.embeddings.position_ids", "I64", [1, 77],
	             b"".join(struct.pack("<q", i) for i in range(77)))
	write("posids.safetensors", h1, d1)
	h2, d2 = add(h, data, "visual.attn_pool.query", "F32", [1, 48], b"\0" * 192)
	write("pool.safetensors", h2, d2)
	PYEOF
	eosin-make-model --arch clip --from posids.safetensors --layout hf --act gelu --heads 3 \
		--text-heads 2 --out posids-eosin.safetensors 2>err &&
	grep -q "left out 1 integer position_ids" err &&
	eosin-make-model --arch clip --from bare.safetensors --layout hf --act gelu --heads 3 \
		--text-heads 2 --out bare-eosin.safetensors &&
	cmp posids-eosin.safetensors bare-eosin.safetensors &&
	test_must_fail eosin-make-model --arch clip --from pool.safetensors --layout hf --act gelu \
		--heads 3 --text-heads 2 --out no.safetensors 2>err &&
	test ! -e no.safetensors && grep -q "visual.attn_pool.query.*attentional pooler" err &&
	test_must_fail eosin-make-model --arch clip --from posids.safetensors --layout open_clip \
		--act gelu --heads 3 --text-heads 2 --out no.safetensors 2>err &&
	grep -q "I64" err
'

test_expect_success 'eosin -> hf -> eosin gives the same tensors' '
	eosin-make-model --arch clip --dim 48 --depth 2 --heads 3 --patch 16 --img 64 --width 32 \
		--layers 2 --text-heads 2 --embed 24 --seed 9 --act quick-gelu --out e.safetensors &&
	eosin-make-model --arch clip --dim 48 --depth 2 --heads 3 --patch 16 --img 64 --width 32 \
		--layers 2 --text-heads 2 --embed 24 --seed 9 --layout hf --out h.safetensors &&
	eosin-make-model --arch clip --from h.safetensors --layout hf --act quick-gelu --heads 3 \
		--text-heads 2 --out back.safetensors &&
	"$PY" -c "import json,struct,sys
def load(p):
    b=open(p,\"rb\").read(); n=struct.unpack(\"<Q\",b[:8])[0]; h=json.loads(b[8:8+n]); h.pop(\"__metadata__\")
    return {k:(v[\"shape\"] if k!=\"logit_scale\" else [], b[8+n+v[\"data_offsets\"][0]:8+n+v[\"data_offsets\"][1]]) for k,v in h.items()}
a=load(\"e.safetensors\"); b=load(\"back.safetensors\")
assert set(a)==set(b), set(a)^set(b)
bad=[k for k in a if a[k]!=b[k]]
assert not bad, bad[:5]
print(len(a), \"tensors the same\")"
'

test_expect_success '--layout and --act refused where they do not apply' '
	test_must_fail eosin-make-model --arch vit --layout hf --out no.safetensors 2>err &&
	grep -q "only for --arch clip" err &&
	test_must_fail eosin-make-model --arch vit --act gelu --out no.safetensors 2>err &&
	grep -q "only with --arch clip" err &&
	test_must_fail eosin-make-model --arch clip --layout timm --out no.safetensors 2>err &&
	grep -q "not eosin, hf, open_clip or conch" err
'

test_done
