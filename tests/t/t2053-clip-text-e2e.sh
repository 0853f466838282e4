#!/bin/sh
# The text path end to end: eosin-encode --lines with the reference CLIP
# weights and CLIP's vocabulary (tokenizer + text tower) against
# openai/CLIP's encode_text on the same captions (clip_text_features.f32),
# within the reference tolerance 2e-5.
. "$(dirname "$0")/../lib.sh"

test_have_prereq SHARED || test_skip_all 'needs ../shared/data (reference, tokenizers)'
REF=$SHARED/reference

test_expect_success 'eosin-encode --lines reproduces clip_text_features' '
	jq -r ".[]" "$REF/clip_texts.json" >texts &&
	test $(wc -l <texts) = 8 &&
	eosin-encode --lines --dtype f32 --text-model "$REF/clip_weights.safetensors" \
		--vocab "$SHARED/tokenizers/bpe_simple_vocab_16e6.txt.gz" <texts >t.mpk 2>err &&
	eosin-cat --vectors t.mpk | jq -r "select(.k==\"text\") | .txt_emb.values[]" >got &&
	test $(wc -l <got) = 512 &&
	od -An -v -f -w4 "$REF/clip_text_features.f32" >want &&
	paste got want | awk "{d=\$1-\$2; if (d<0) d=-d; if (d>m) m=d} END {print m > \"err.txt\"; exit !(m <= 2e-5)}"
'
echo "# clip_text_features via tokenizer + text tower: max abs error $(cat err.txt 2>/dev/null) (tol 2e-5)"

test_done
