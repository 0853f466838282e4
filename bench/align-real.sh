#!/bin/sh
# bench/align-real.sh: what eosin-align learns from real data, with every
# figure measured here (no pretrained weights exist on this machine).
#
# Data: the 32 real Kather CRC H&E patches (../shared/data/patches/
# crc-val-he-7k, 8 tissue classes x 4). Image side: each patch through a
# RANDOM ViT made by eosin-make-model (CLS pooling, 2 blocks, width 96; one
# encoder per ViT seed) via eosin-encode, one patch per bag (eosin-bag --by
# slide). Text side: the class prompt "an H&E image of <class>" through a
# RANDOM CLIP text tower. eosin-align trains linear heads + ITC on 24 patches
# and is scored on the 8 held out (one per class): image-to-text R@1 among
# those 8 is the zero-shot accuracy over the 8 class prompts, chance 1/8.
# Four folds hold out each patch of every class once: 32 held-out
# predictions per (ViT seed, training seed). "shuffled" is the same training
# with the training bags' captions permuted among them (no image-text link
# left): it must stay near chance. "step 0" is the untrained head.
#
# What the figures mean: the encoders are random, so nothing here measures
# a pathology model. They say that the trainer finds, in 24 real patches,
# a map from (random-feature) images to class prompts that carries over to
# patches it never saw; the signal is what a random ViT keeps of real tissue
# (colour, texture, density). Tiny data: 32 predictions per cell, a standard
# error of about 0.09.
#   bench/align-real.sh                 VIT_SEEDS="1 2 3" SEEDS="1 2 3"
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
VIT_SEEDS=${VIT_SEEDS:-1 2 3}
SEEDS=${SEEDS:-1 2 3}
DATA=${DATA:-../shared/data}
TRAIN=${TRAIN:---dim 32 --epochs 100 --batch 24 --lr 3e-3}
[ -d "$DATA/patches/crc-val-he-7k" ] || { echo "bench/align-real.sh: $DATA/patches missing" >&2; exit 1; }
DATA=$(cd "$DATA" && pwd)
PATH=$PWD/$BUILD/bin:$PATH
CRC=$PWD/tests/parity/align_crc.py
TMP=$(mktemp -d "${TMPDIR:-/tmp}/align-real.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
for f in "$DATA"/patches/crc-val-he-7k/*.png; do
	vips copy "$f" "$(basename "$f" .png).jpg[Q=95]"
done
LABELS=$DATA/patches/crc-val-he-7k/labels.tsv
VOCAB=$DATA/tokenizers/bpe_simple_vocab_16e6.txt.gz
python3 "$CRC" records "$LABELS" . | eosin-cat -r >recs.mpk
eosin-make-model --arch clip-text --width 64 --layers 1 --heads 2 --embed 64 --seed 1 \
	--out txt.st 2>/dev/null

# pooled R@1 (image to text, text to image) over the 4 folds' metrics files
pooled() { cat "$@" | jq -s -r "map(select(.$STEP_SEL)) |
	[(map(.i2t_r1) | add / length), (map(.t2i_r1) | add / length)] | @tsv"; }

printf 'eosin-align on real CRC patches (random ViT, random CLIP text tower): held-out\n'
printf 'zero-shot accuracy over 8 class prompts = image-to-text R@1, pooled over 4 folds\n'
printf '(32 held-out patches); chance 0.125. %s\n' "$TRAIN"
printf '%-9s %-9s %10s %12s %12s %12s\n' "vit seed" "seed" "step 0" "trained i2t" "trained t2i" "shuffled i2t"
all=$TMP/all
: >"$all"
for vs in $VIT_SEEDS; do
	eosin-make-model --arch vit --dim 96 --depth 2 --heads 2 --patch 16 --img 224 --reg 0 \
		--seed "$vs" --out vit.st 2>/dev/null
	eosin-encode --model vit.st --text-model txt.st --vocab "$VOCAB" --dtype f32 <recs.mpk 2>/dev/null |
		eosin-bag --by slide --require-text 2>/dev/null | eosin-cat --base64 >bags.json
	for k in 0 1 2 3; do
		python3 "$CRC" fold $k <bags.json | eosin-cat -r >f$k.mpk
	done
	for s in $SEEDS; do
		for k in 0 1 2 3; do
			# shellcheck disable=SC2086
			eosin-align --train --out h.st $TRAIN --seed "$s" --eval-every 100000 \
				--metrics m$k.jsonl --threads 1 f$k.mpk 2>/dev/null
			python3 "$CRC" fold $k --shuffle "$s" <bags.json | eosin-cat -r >g.mpk
			# shellcheck disable=SC2086
			eosin-align --train --out h.st $TRAIN --seed "$s" --metrics c$k.jsonl \
				--threads 1 g.mpk 2>/dev/null
		done
		STEP_SEL='step == 0 and .i2t_r1 != null'
		zero=$(pooled m?.jsonl | cut -f1)
		STEP_SEL='step > 0 and .i2t_r1 != null'
		tr=$(pooled m?.jsonl)
		sh=$(pooled c?.jsonl | cut -f1)
		printf '%-9s %-9s %10.3f %12.3f %12.3f %12.3f\n' "$vs" "$s" "$zero" \
			"$(echo "$tr" | cut -f1)" "$(echo "$tr" | cut -f2)" "$sh"
		echo "$zero $tr $sh" >>"$all"
	done
done
awk '{ z += $1; a += $2; b += $3; c += $4; if (NR == 1 || $2 < lo) lo = $2; if (NR == 1 || $4 > hi) hi = $4 }
	END { printf "%-19s %10.3f %12.3f %12.3f %12.3f\n", "mean", z / NR, a / NR, b / NR, c / NR;
	      printf "lowest trained i2t %.3f, highest shuffled i2t %.3f, over %d cells\n", lo, hi, NR }' "$all"
