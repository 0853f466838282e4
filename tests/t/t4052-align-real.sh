#!/bin/sh
# eosin-align learns from real data: the 32 real Kather CRC H&E patches
# (8 tissue classes x 4) through tile -> encode -> bag -> align. No
# pretrained weights exist here, so both encoders are RANDOM (eosin-make-model):
# a ViT for the patches, a CLIP text tower for the class prompts "an H&E
# image of <class>" (tests/parity/align_crc.py). Linear heads + ITC train on
# 24 patches; the 8 held out are one per class, so their image-to-text R@1 is
# the zero-shot accuracy over the 8 prompts, chance 1/8. Four folds hold out
# each patch once: 32 held-out predictions, pooled.
#
# Thresholds: bench/align-real.sh measured, over 4 ViT seeds x 3 training
# seeds, pooled accuracy 0.406 to 0.562 (mean 0.49) after training, 0.125 to
# 0.156 at step 0, and 0.000 to 0.219 when the training captions are shuffled
# among the training patches. The test asks >= 0.30 trained (10 of 32; by
# chance alone the probability is about 0.003), <= 0.25 untrained and < 0.30
# shuffled: a learned image-text link, not a leak through the split.
. "$(dirname "$0")/../lib.sh"

test_have_prereq SHARED || test_skip_all 'needs ../shared/data (CRC patches, CLIP vocabulary)'
command -v python3 >/dev/null || test_skip_all 'python3 missing'
command -v jq >/dev/null || test_skip_all 'jq missing'
command -v vips >/dev/null || test_skip_all 'vips (libvips-tools) missing'
CRC="$ROOT/tests/parity/align_crc.py"
PATCHES=$SHARED/patches/crc-val-he-7k
TRAIN="--dim 32 --epochs 100 --batch 24 --lr 3e-3 --seed 1 --threads 1"

# pooled R@1 (image to text) of the metrics files' evaluations that match SEL
pooled() {
	sel=$1
	shift
	cat "$@" | jq -s -r "map(select(.i2t_r1 != null and ($sel))) | map(.i2t_r1) | add / length"
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

test_expect_success 'real patches and class prompts through encode and bag' '
	for f in "$PATCHES"/*.png; do
		vips copy "$f" "$(basename "$f" .png).jpg[Q=95]" || return 1
	done &&
	python3 "$CRC" records "$PATCHES/labels.tsv" . | eosin-cat -r >recs.mpk &&
	eosin-make-model --arch vit --dim 96 --depth 2 --heads 2 --patch 16 --img 224 --reg 0 \
		--seed 1 --out vit.st 2>/dev/null &&
	eosin-make-model --arch clip-text --width 64 --layers 1 --heads 2 --embed 64 --seed 1 \
		--out txt.st 2>/dev/null &&
	eosin-encode --model vit.st --text-model txt.st --vocab "$SHARED/tokenizers/bpe_simple_vocab_16e6.txt.gz" \
		--dtype f32 <recs.mpk 2>/dev/null | eosin-bag --by slide --require-text 2>/dev/null |
		eosin-cat --base64 >bags.json &&
	test $(jq -r "select(.k == \"bag\") | .label" bags.json | sort | uniq -c | awk "\$1 == 4" | wc -l) = 8 &&
	for k in 0 1 2 3; do
		python3 "$CRC" fold $k <bags.json | eosin-cat -r >f$k.mpk &&
		python3 "$CRC" fold $k --shuffle 1 <bags.json | eosin-cat -r >s$k.mpk || return 1
	done &&
	eosin-cat --check --strict f0.mpk
'

test_expect_success 'held-out zero-shot accuracy rises from chance (1/8) to >= 0.30' '
	for k in 0 1 2 3; do
		eosin-align --train --out h$k.st $TRAIN --eval-every 100000 --metrics m$k.jsonl \
			f$k.mpk 2>/dev/null || return 1
	done &&
	test $(cat m?.jsonl | jq -s "map(select(.val_items != null and .step > 0)) | map(.val_items) | unique | .[0]") = 8 &&
	r0=$(pooled ".step == 0" m?.jsonl) && r1=$(pooled ".step > 0" m?.jsonl) &&
	echo "# pooled held-out accuracy: step 0 $r0, trained $r1 (chance 0.125)" &&
	ge 0.25 "$r0" && ge "$r1" 0.30
'

test_expect_success 'control: shuffled training captions stay below 0.30' '
	for k in 0 1 2 3; do
		eosin-align --train --out c$k.st $TRAIN --metrics c$k.jsonl s$k.mpk 2>/dev/null || return 1
	done &&
	rs=$(pooled ".step > 0" c?.jsonl) && echo "# shuffled captions: $rs" &&
	! ge "$rs" 0.30
'

# The text decoder on the same real patches: ITC + ITG (a Q-Former of 4
# queries, 2 blocks, over each patch's embedding; 49409 CLIP BPE decoder
# tokens), then eosin-generate writes each held-out patch's caption greedily.
# Measured (2026-12-07, this machine, 300 steps): 16 of the 32 held-out
# captions are their own class prompt exactly (3, 4, 4, 5 per fold; chance
# 4 of 32), and 1 of 16 on two folds of the shuffled control (1 of 32 on all
# four). The test asks >= 10 of 32, and <= 3 of 16 shuffled.
test -n "${SANITIZE:-}" || test_set_prereq UNSANITIZED
GEN="--queries 4 --qdim 32 --heads 2 --qformer-layers 2 --ffn 64 --dim 32 --loss itc=1,itg=1
	--vocab $SHARED/tokenizers/bpe_simple_vocab_16e6.txt.gz --steps 300 --batch 24 --lr 5e-3
	--seed 1 --threads 2"
# captioned SET K: how many of fold K's held-out patches eosin-generate
# captions with their own prompt, trained on SETK.mpk
captioned() {
	eosin-cat --base64 "$1$2.mpk" | jq -c "select(.split == \"val\")" | eosin-cat -r >"v$1$2.mpk" &&
	# shellcheck disable=SC2086
	eosin-align --train --out "d$1$2.st" $GEN "$1$2.mpk" 2>/dev/null &&
	eosin-generate --model "d$1$2.st" --only-text "v$1$2.mpk" 2>/dev/null | eosin-cat |
		jq -r "select(.k == \"text\") | .caption" >"g$1$2" &&
	eosin-cat "v$1$2.mpk" | jq -r .caption | tr "A-Z" "a-z" |
		sed -e "s/h&e/h \& e/" -e "s/-/ - /g" >"w$1$2" &&
	paste -d "|" "g$1$2" "w$1$2" | awk -F "|" "\$1 == \$2" | wc -l
}

test_expect_success UNSANITIZED 'ITG: generated captions name the held-out class (>= 10 of 32, chance 4)' '
	t=0 &&
	for k in 0 1 2 3; do
		n=$(captioned f $k) && t=$((t + n)) || return 1
	done &&
	echo "# held-out patches captioned with their own prompt: $t of 32" && test $t -ge 10
'

test_expect_success UNSANITIZED 'ITG control: shuffled training captions, <= 3 of 16' '
	t=0 &&
	for k in 0 1; do
		n=$(captioned s $k) && t=$((t + n)) || return 1
	done &&
	echo "# shuffled captions: $t of 16" && test $t -le 3
'

test_done
