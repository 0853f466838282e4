#!/bin/sh
# bench/encode.sh: eosin-encode against PyTorch (bench/encode_torch.py: the
# same ViT in plain torch, the same safetensors weights, torch.inference_mode,
# the same thread count) on ViT-S/16 and ViT-B/16 shapes at 224 px.
#   forward: the model alone (eosin: the "vision" time eosin-encode reports;
#            torch: forward on ready tensors)
#   e2e:     from JPEG tiles to embeddings (eosin: a stream of tile records
#            through the whole filter; torch: JPEG files via Pillow)
# Prints images/s, medians of RUNS runs (each run: eosin then torch, so both
# see the same machine), and the ratio eosin/torch.
# Environment: THREADS (thread counts to run, "1 2"), MODELS ("vits vitb";
# also vits-swiglu, ViT-S/16 with a packed SwiGLU MLP and 4 registers),
# BATCH (32), RUNS (5),
# NS (images for ViT-S, 64), NB (images for ViT-B, 32). OpenBLAS core:
# whatever the environment says (OPENBLAS_CORETYPE); both programs use the
# same libopenblas, each with THREADS threads in all (torch's OpenBLAS
# threads pinned with OPENBLAS_NUM_THREADS: unpinned, a "1-thread" torch run
# multiplies matrices on every core). The load average at the end says how busy the machine
# was: wall times on a shared machine are only as good as that.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/bin
THREADS=${THREADS:-1 2} MODELS=${MODELS:-vits vitb} BATCH=${BATCH:-32} RUNS=${RUNS:-5} NS=${NS:-64} NB=${NB:-32}
SHARED=${EOSIN_SHARED:-$PWD/../shared/data}
PY=
for p in python3 /usr/bin/python3; do
	"$p" -c 'import torch, PIL, numpy' 2>/dev/null && { PY=$p; break; }
done
[ -n "$PY" ] || { echo "encode.sh: needs python3 with torch, Pillow and numpy" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/eosin-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT

# 224 px JPEG tiles from the shared PNG patches, as a stream and as files.
n=0
for f in "$SHARED"/patches/*/*.png; do
	n=$((n + 1))
	vips copy "$f" "$W/p$n.jpg[Q=90]"
done
mk_stream() { # N: a stream of N tiles, cycling over the JPEGs
	i=0
	while [ $i -lt "$1" ]; do
		j=$((i % n + 1))
		jq -nc --arg b "$(base64 -w0 "$W/p$j.jpg")" --arg id "b$i" \
			'{k:"tile",v:1,id:$id,jpeg:{"$base64":$b}}'
		echo "$W/p$j.jpg" >>"$W/files$1"
		i=$((i + 1))
	done | "$BIN/eosin-cat" -r >"$W/s$1.mpk"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

"$BIN/eosin-make-model" --arch vit --dim 384 --depth 12 --heads 6 --patch 16 --img 224 \
	--out "$W/vits.safetensors"
"$BIN/eosin-make-model" --arch vit --dim 768 --depth 12 --heads 12 --patch 16 --img 224 \
	--out "$W/vitb.safetensors"
# ViT-S/16 with Virchow 2's MLP: timm's packed SwiGLU (fc1 2048 wide, SiLU of
# one half times the other into fc2) and 4 registers
"$BIN/eosin-make-model" --arch vit --dim 384 --depth 12 --heads 6 --patch 16 --img 224 \
	--mlp swiglu --mlp-ratio 5.33334 --reg 4 --out "$W/vits-swiglu.safetensors"

printf '%-8s %-8s %7s %12s %12s %8s\n' model what threads torch eosin ratio
for th in $THREADS; do
for m in $MODELS; do
	N=$NS; [ $m = vitb ] && N=$NB
	[ -f "$W/s$N.mpk" ] || mk_stream "$N"
	: >"$W/ef" ; : >"$W/ee"; : >"$W/tf"; : >"$W/te"
	r=0
	while [ $r -lt "$RUNS" ]; do
		"$BIN/eosin-encode" --model "$W/$m.safetensors" --threads "$th" --batch "$BATCH" \
			<"$W/s$N.mpk" 2>"$W/err" >/dev/null
		# summary: "...; T s (decode D, vision V, text X)"
		sed -n 's/.*; \([0-9.]*\) s (decode \([0-9.]*\), vision \([0-9.]*\),.*/\1 \3/p' "$W/err" |
			awk -v n="$N" '{print n/$2 >>"'"$W/ef"'"; print n/$1 >>"'"$W/ee"'"}'
		# torch's matrix products run in OpenBLAS, whose own threads
		# torch.set_num_threads does not bound: pinned to the same count
		OPENBLAS_NUM_THREADS=$th OMP_NUM_THREADS=$th \
			"$PY" bench/encode_torch.py "$W/$m.safetensors" "$th" "$BATCH" forward "$N" >>"$W/tf"
		# shellcheck disable=SC2046
		OPENBLAS_NUM_THREADS=$th OMP_NUM_THREADS=$th \
			"$PY" bench/encode_torch.py "$W/$m.safetensors" "$th" "$BATCH" e2e $(cat "$W/files$N") >>"$W/te"
		r=$((r + 1))
	done
	for what in forward e2e; do
		if [ $what = forward ]; then t=$(median <"$W/tf"); e=$(median <"$W/ef");
		else t=$(median <"$W/te"); e=$(median <"$W/ee"); fi
		printf '%-8s %-8s %7s %12.2f %12.2f %8.2f\n' $m $what "$th" "$t" "$e" \
			"$(echo "$e $t" | awk '{print $1/$2}')"
	done
done
done
echo "images/s, medians of $RUNS runs; batch $BATCH, ViT-S $NS images, ViT-B $NB images;" \
	"OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
