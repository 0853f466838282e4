#!/bin/sh
# eosin-make-model: seeded models in eosin-encode's format, conversion of
# given weights, and where eosin-encode finds the architecture
# (__metadata__, config.json beside the file, tensor names and shapes).
. "$(dirname "$0")/../lib.sh"

command -v python3 >/dev/null && test_set_prereq PYTHON

# strip IN OUT: the same tensors without __metadata__ (plain python3)
strip() {
	python3 - "$1" "$2" <<-\EOP
	import json, struct, sys
	raw = open(sys.argv[1], "rb").read()
	n = struct.unpack("<Q", raw[:8])[0]
	h = json.loads(raw[8:8 + n]); h.pop("__metadata__", None)
	s = json.dumps(h).encode(); s += b" " * (-len(s) % 8)
	open(sys.argv[2], "wb").write(struct.pack("<Q", len(s)) + s + raw[8 + n:])
	EOP
}

test_expect_success 'setup: an input stream of 3 tiles' '
	for i in 1 2 3; do
		printf "P6\n32 32\n255\n" >p$i.ppm &&
		head -c 3072 /dev/urandom >>p$i.ppm &&
		vips copy p$i.ppm p$i.jpg 2>/dev/null || return 1
	done &&
	for i in 1 2 3; do
		jq -nc --arg b "$(base64 -w0 p$i.jpg)" --arg id "p$i" "{k:\"tile\",v:1,id:\$id,jpeg:{\"\$base64\":\$b}}" || return 1
	done | eosin-cat -r >in.mpk
'

test_expect_success 'same seed, same file; another seed, another file' '
	eosin-make-model --arch vit --dim 64 --depth 2 --heads 1 --patch 16 --img 32 --out a.safetensors &&
	eosin-make-model --arch vit --dim 64 --depth 2 --heads 1 --patch 16 --img 32 --out b.safetensors &&
	eosin-make-model --arch vit --dim 64 --depth 2 --heads 1 --patch 16 --img 32 --seed 7 --out c.safetensors &&
	cmp a.safetensors b.safetensors && ! cmp -s a.safetensors c.safetensors
'

test_expect_success 'vit, clip and clip-text models load in eosin-encode' '
	eosin-encode --model a.safetensors <in.mpk >a.mpk 2>err &&
	test $(eosin-cat a.mpk | jq -r "select(.k==\"tile\") | .img_emb.dim" | sort -u) = 64 &&
	eosin-make-model --arch clip --dim 64 --depth 1 --patch 16 --img 32 --width 32 --layers 1 \
		--text-heads 2 --embed 16 --vocab-size 49408 --out clip.safetensors &&
	eosin-encode --model clip.safetensors <in.mpk >c.mpk 2>err &&
	test $(eosin-cat c.mpk | jq -r "select(.k==\"tile\") | .img_emb.dim" | sort -u) = 16 &&
	grep -q "__metadata__ clip_config" err
'

test_expect_success '--from keeps the weights: same embeddings, new metadata' '
	eosin-make-model --arch vit --dim 64 --depth 2 --heads 1 --patch 16 --img 32 --name conv \
		--from a.safetensors --out conv.safetensors &&
	eosin-encode --model conv.safetensors --dtype f32 <in.mpk 2>/dev/null | eosin-cat --vectors |
		jq -c "select(.k==\"tile\") | .img_emb.values" >x1 &&
	eosin-encode --model a.safetensors --dtype f32 <in.mpk 2>/dev/null | eosin-cat --vectors |
		jq -c "select(.k==\"tile\") | .img_emb.values" >x2 &&
	test_cmp x1 x2 &&
	eosin-encode --model conv.safetensors <in.mpk 2>/dev/null | eosin-cat | grep -q "\"model\":\"conv\""
'

test_expect_success '--from with --dtype bf16 halves the file' '
	eosin-make-model --arch vit --dim 64 --depth 2 --heads 1 --patch 16 --img 32 --dtype bf16 \
		--from a.safetensors --out half.safetensors &&
	a=$(stat -c %s a.safetensors) && h=$(stat -c %s half.safetensors) &&
	test $h -lt $((a * 6 / 10)) && eosin-encode --model half.safetensors <in.mpk >/dev/null 2>&1
'

test_expect_success PYTHON 'no metadata: architecture inferred from tensor names, and said so' '
	strip a.safetensors bare.safetensors &&
	eosin-encode --model bare.safetensors --dtype f32 <in.mpk 2>err | eosin-cat --vectors |
		jq -c "select(.k==\"tile\") | .img_emb.values" >x3 &&
	grep -q "architecture inferred from tensor names and shapes of .bare.safetensors.*heads = width/64 = 1" err &&
	test_cmp x2 x3
'

test_expect_success PYTHON 'config.json beside the file is read' '
	mkdir -p withcfg && strip a.safetensors withcfg/model.safetensors &&
	echo "{\"architecture\": \"vit_custom\", \"model_args\": {\"num_heads\": 1, \"img_size\": 32}}" >withcfg/config.json &&
	eosin-encode --model withcfg/model.safetensors <in.mpk >/dev/null 2>err &&
	grep -q "architecture from .withcfg/config.json." err
'

test_expect_success PYTHON 'a config that disagrees with the tensors is refused' '
	echo "{\"model_args\": {\"embed_dim\": 128, \"num_heads\": 2}}" >withcfg/config.json &&
	test_exit_code 1 eosin-encode --model withcfg/model.safetensors <in.mpk >/dev/null 2>err &&
	grep -q "config says width 128.*tensors say 64" err
'

test_expect_success PYTHON 'ambiguous heads without a config are refused' '
	eosin-make-model --arch vit --dim 96 --depth 1 --heads 2 --patch 16 --img 32 --out w96.safetensors &&
	strip w96.safetensors bare96.safetensors &&
	test_exit_code 1 eosin-encode --model bare96.safetensors <in.mpk >/dev/null 2>err &&
	grep -q "cannot tell the number of heads" err
'

test_expect_success 'usage errors exit 2' '
	test_exit_code 2 eosin-make-model --out x.safetensors 2>/dev/null &&
	test_exit_code 2 eosin-make-model --arch resnet --out x.safetensors 2>/dev/null &&
	test_exit_code 2 eosin-make-model --arch vit --img 30 --patch 16 --out x.safetensors 2>/dev/null &&
	test ! -e x.safetensors
'

test_done
