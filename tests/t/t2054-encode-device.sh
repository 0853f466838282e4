#!/bin/sh
# eosin-encode --device: cpu is the default's output byte for byte; auto
# falls back to the CPU with a message and the same output where there is
# no GPU; cuda fails before writing anything, naming why; bad values are
# usage errors.
. "$(dirname "$0")/../lib.sh"

test_have_prereq SHARED || test_skip_all 'needs ../shared/data (tiles, reference models)'
REF=$SHARED/reference
VOCAB=$SHARED/tokenizers/bpe_simple_vocab_16e6.txt.gz
# A GPU here changes what auto does: those tests then only run on machines without one.
if [ -e /dev/nvidiactl ] || [ -e /dev/nvidia0 ]; then :; else test_set_prereq NOGPU; fi

test_expect_success 'setup: tiles with captions' '
	n=0 && for f in "$SHARED"/tiles/*.jpg; do
		n=$((n + 1)) &&
		jq -nc --arg id "t$n" --arg b "$(base64 -w0 "$f")" --arg c "tumour cells $n" \
			"{k:\"tile\",v:1,id:\$id,jpeg:{\"\$base64\":\$b},caption:\$c}" || return 1
	done >in.json && eosin-cat -r <in.json >in.mpk &&
	test $n -ge 6
'

# tiles FILE: the tile records of a stream (the hdr names the arguments)
tiles() { eosin-cat --kind tile --base64 "$1"; }

for m in vit clip; do
	if [ $m = vit ]; then
		args="--model $REF/vit_weights.safetensors"
	else
		args="--model $REF/clip_weights.safetensors --text-model $REF/clip_weights.safetensors --vocab $VOCAB"
	fi
	test_expect_success "$m: --device cpu gives the default's bytes" "
		eosin-encode $args --dtype f32 <in.mpk >default.mpk 2>default.err &&
		eosin-encode $args --dtype f32 --device cpu <in.mpk >cpu.mpk 2>cpu.err &&
		tiles default.mpk >want && tiles cpu.mpk >got && test_cmp want got &&
		test \$(jq -c 'has(\"img_emb\")' got | sort -u) = true &&
		! grep -q device cpu.err
	"
	test_expect_success NOGPU "$m: --device auto falls back to the CPU, says so, same bytes" "
		eosin-encode $args --dtype f32 --device auto <in.mpk >auto.mpk 2>auto.err &&
		tiles auto.mpk >got && test_cmp want got &&
		grep -q '^eosin-encode: --device auto: .*using the CPU' auto.err
	"
done

test_expect_success NOGPU 'no --device and no GPU: the CPU, and nothing said about it' '
	eosin-encode --model "$REF/vit_weights.safetensors" <in.mpk >/dev/null 2>err &&
	! grep -q "GPU\|--device\|CUDA" err
'

test_expect_success NOGPU '--device cuda fails before writing anything, naming why' '
	test_exit_code 1 eosin-encode --model "$REF/vit_weights.safetensors" --device cuda \
		<in.mpk >out.mpk 2>err &&
	test ! -s out.mpk &&
	grep -q "^eosin-encode: --device cuda: \(no CUDA plugin\|no CUDA runtime\|no usable CUDA device\|cannot load\)" err &&
	test $(wc -l <err) = 1
'

test_expect_success '--device cuda without the plugin says where it looked' '
	EOSIN_CUDA_PLUGIN=$PWD/none.so test_exit_code 1 eosin-encode \
		--model "$REF/vit_weights.safetensors" --device cuda <in.mpk >out.mpk 2>err &&
	test ! -s out.mpk &&
	echo "eosin-encode: --device cuda: no CUDA plugin: '\''$PWD/none.so'\'' does not exist (built with make CUDA=0, or where nvcc was not found)" >expect &&
	test_cmp expect err
'

test_expect_success '--device cuda with a file that is not the plugin' '
	echo "not a library" >bad.so &&
	EOSIN_CUDA_PLUGIN=$PWD/bad.so test_exit_code 1 eosin-encode \
		--model "$REF/vit_weights.safetensors" --device cuda <in.mpk >out.mpk 2>err &&
	test ! -s out.mpk && grep -q "cannot load the CUDA plugin .*bad.so" err
'

test_expect_success '--device auto with an unloadable plugin still encodes on the CPU' '
	EOSIN_CUDA_PLUGIN=$PWD/bad.so eosin-encode --model "$REF/vit_weights.safetensors" \
		--dtype f32 --device auto <in.mpk >auto.mpk 2>err &&
	eosin-encode --model "$REF/vit_weights.safetensors" --dtype f32 <in.mpk >default.mpk 2>/dev/null &&
	tiles default.mpk >want && tiles auto.mpk >got && test_cmp want got &&
	grep -q "using the CPU" err
'

test_expect_success 'bad --device, --gpu-precision and --gpu-batch values are usage errors' '
	test_exit_code 2 eosin-encode --model "$REF/vit_weights.safetensors" --device gpu </dev/null 2>err &&
	grep -q "^eosin-encode: --device: .gpu. is not auto, cpu or cuda$" err &&
	test_exit_code 2 eosin-encode --model "$REF/vit_weights.safetensors" --gpu-precision fp16 </dev/null 2>err &&
	grep -q "^eosin-encode: --gpu-precision: .fp16. is not bf16 or fp32$" err &&
	test_exit_code 2 eosin-encode --model "$REF/vit_weights.safetensors" --gpu-batch 0 </dev/null 2>err &&
	grep -q "^eosin-encode: --gpu-batch: .0. is not an integer" err
'

test_expect_success '--gpu-precision and --gpu-batch leave the CPU path alone' '
	eosin-encode --model "$REF/vit_weights.safetensors" --dtype f32 --device cpu \
		--gpu-precision fp32 --gpu-batch 3 <in.mpk >p.mpk 2>/dev/null &&
	tiles p.mpk >got && test_cmp want got
'

test_done
