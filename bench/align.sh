#!/bin/sh
# bench/align.sh: training steps per second of eosin-align against its PyTorch
# reference (tests/parity/align_ref.py bench, float32, autograd + AdamW), the
# same model, the same batch, the same threads. Each side runs RUNS times
# (default 3) and reports the median of its steady-state steps/s (the first
# step of each run is not timed). Needs python3-torch.
#   bench/align.sh                 both configurations
#   THREADS=2 STEPS=10 RUNS=3 bench/align.sh
#   CONFIGS=heads bench/align.sh   some of them (heads, qformer, itg)
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
THREADS=${THREADS:-2}
STEPS=${STEPS:-10}
RUNS=${RUNS:-3}
CONFIGS=${CONFIGS:-heads qformer itg}
PY=
for p in python3 /usr/bin/python3; do
	if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "bench/align.sh: python3-torch missing" >&2; exit 1; }
ALIGN="$BUILD/bin/eosin-align"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/align-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
# both sides: OpenMP threads sleep instead of spinning when idle (see eosin-align(1))
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS OMP_WAIT_POLICY=PASSIVE

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# run NAME GENFLAGS BATCH "C-FLAGS" 'CONFIG-JSON'
run() {
	name=$1 gen=$2 batch=$3 cflags=$4 cfg=$5
	# shellcheck disable=SC2086
	python3 tests/parity/align_gen.py $gen --seed 7 >"$TMP/$name.jsonl"
	"$BUILD/bin/eosin-cat" -r "$TMP/$name.jsonl" >"$TMP/$name.mpk"
	: >"$TMP/c" && : >"$TMP/t"
	i=0
	while [ $i -lt "$RUNS" ]; do
		# shellcheck disable=SC2086
		"$ALIGN" --train --out "$TMP/h.st" $cflags --batch "$batch" --steps "$STEPS" \
			--threads "$THREADS" "$TMP/$name.mpk" 2>&1 |
			sed -n 's/.*, \([0-9.]*\) steps\/s$/\1/p' >>"$TMP/c"
		"$PY" tests/parity/align_ref.py bench "$TMP/$name.jsonl" --dtype float32 \
			--threads "$THREADS" --steps "$STEPS" --batch "$batch" --config "$cfg" |
			sed -n 's/.*"steps_per_s": \([0-9.e+-]*\)}.*/\1/p' >>"$TMP/t"
		i=$((i + 1))
	done
	c=$(median <"$TMP/c") t=$(median <"$TMP/t")
	printf '%-44s %12.3f %12.3f %7.2fx\n' "$name" "$t" "$c" "$(echo "$c $t" | awk '{ print $1 / $2 }')"
}

printf 'eosin-align training steps/s, %s threads, median of %s runs of %s steps\n' "$THREADS" "$RUNS" "$STEPS"
printf '%-44s %12s %12s %8s\n' configuration "pytorch" "eosin-align" ratio
case " $CONFIGS " in *" heads "*)
run "mlp heads+itc, 256 bags x 16 patches" \
	"--bags 256 --n 16 --img-dim 768 --txt-dim 512" 256 \
	"--dim 256 --hidden 512" \
	'{"img_dim":768,"txt_dim":512,"dim":256,"hidden":512,"queries":0,"qdim":0,"heads":1,"layers":0,"ffn":0,"topk":3,"w_itc":1,"w_cvta":0,"temp_init":0.07}'
;; esac
case " $CONFIGS " in *" qformer "*)
run "q-former 2x(256,8 heads,32 q)+itc, 8 x 1024" \
	"--bags 8 --n 1024 --img-dim 384 --txt-dim 256" 8 \
	"--dim 256 --hidden 512 --queries 32 --qdim 256 --heads 8 --qformer-layers 2 --ffn 1024" \
	'{"img_dim":384,"txt_dim":256,"dim":256,"hidden":512,"queries":32,"qdim":256,"heads":8,"layers":2,"ffn":1024,"topk":3,"w_itc":1,"w_cvta":0,"temp_init":0.07}'
;; esac
case " $CONFIGS " in *" itg "*)
# the same Q-Former with its text decoder: ITC + ITG, captions of 32 tokens
# over CLIP's 49408 (+ [MASK]) tokens
run "q-former above + itg, 32-token captions" \
	"--bags 8 --n 1024 --img-dim 384 --txt-dim 256 --tokens 49409 --caption-len 32" 8 \
	"--dim 256 --hidden 512 --queries 32 --qdim 256 --heads 8 --qformer-layers 2 --ffn 1024 --loss itc=1,itg=1" \
	'{"img_dim":384,"txt_dim":256,"dim":256,"hidden":512,"queries":32,"qdim":256,"heads":8,"layers":2,"ffn":1024,"topk":3,"w_itc":1,"w_cvta":0,"temp_init":0.07,"vocab":49409,"ctx":77,"w_itg":1,"w_mlm":0,"w_plm":0,"plm_prefix":0.5}'
;; esac
