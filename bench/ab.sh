#!/bin/sh
# bench/ab.sh: two builds of eosin side by side, the same work, interleaved
# runs (A then B, RUNS times) so that both see the same machine; prints the
# median wall time of each and the ratio A/B (above 1: B is faster). For a
# change that must not cost speed (a refactor, a new code path beside the old
# one), with the build before it as A and the build after it as B:
#
#   A=/tmp/build-old/bin B=build/bin bench/ab.sh            tile encode align
#   RUNS=9 A=... B=... bench/ab.sh tile
#
# Work (all single-threaded unless THREADS says otherwise, default 1):
#   tile    eosin-tile --grid --mags 10,20 --px 256 over COPIES (10) copies of
#           the real cmu-1-small-region.svs
#   encode  eosin-encode, a ViT-S/16 (random weights, 224 px) over 64 JPEG tiles
#           made from the real CRC patches
#   align   eosin-align --train, 30 steps: MLP heads + ITC on 256 bags x 16,
#           and a 2-layer Q-Former + ITC on 8 bags x 1024 (tests/parity/align_gen.py)
# Outputs of A and B are compared too (cmp): a "differ" column says when they
# are not byte-identical (hdr records carry no time under SOURCE_DATE_EPOCH,
# which this script sets). Needs python3 for the align inputs and vips for
# the encode inputs.
set -eu
cd "$(dirname "$0")/.."
: "${A:?set A to the bin folder of the first build}" "${B:?set B to the bin folder of the second build}"
RUNS=${RUNS:-5} THREADS=${THREADS:-1} COPIES=${COPIES:-10}
SHARED=${EOSIN_SHARED:-$PWD/../shared/data}
export SOURCE_DATE_EPOCH=1700000000 OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
case "$A" in /*) ;; *) A=$PWD/$A ;; esac
case "$B" in /*) ;; *) B=$PWD/$B ;; esac
W=$(mktemp -d "${TMPDIR:-/tmp}/eosin-ab.XXXXXX")
trap 'rm -rf "$W"' EXIT
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# time_one SIDE OUT CMD...: wall seconds of CMD (stdout to OUT) appended to $W/t.SIDE
time_one() {
	side=$1 out=$2; shift 2
	s=$(date +%s.%N)
	"$@" >"$out" 2>>"$W/err.$side" || { echo "bench/ab.sh: $side failed: $*" >&2; tail -3 "$W/err.$side" >&2; exit 1; }
	e=$(date +%s.%N)
	echo "$s $e" | awk '{ print $2 - $1 }' >>"$W/t.$side"
}

# ab NAME CMD-WITH-@BIN@ : run it RUNS times for each side, interleaved
ab() {
	name=$1 cmd=$2
	: >"$W/t.A"; : >"$W/t.B"
	r=0
	while [ $r -lt "$RUNS" ]; do
		# shellcheck disable=SC2086
		time_one A "$W/out.A" sh -c "$(echo "$cmd" | sed "s#@BIN@#$A#g")"
		# shellcheck disable=SC2086
		time_one B "$W/out.B" sh -c "$(echo "$cmd" | sed "s#@BIN@#$B#g")"
		r=$((r + 1))
	done
	same=same; cmp -s "$W/out.A" "$W/out.B" || same=differ
	ta=$(median <"$W/t.A") tb=$(median <"$W/t.B")
	printf '%-40s %9.3f %9.3f %7.3f  %s\n' "$name" "$ta" "$tb" "$(echo "$ta $tb" | awk '{ print $1 / $2 }')" "$same"
}

printf 'bench/ab.sh: A=%s\n             B=%s\n' "$A" "$B"
printf '%s runs each, interleaved, %s thread(s); medians of wall seconds\n' "$RUNS" "$THREADS"
printf '%-40s %9s %9s %7s  %s\n' work A B A/B outputs
for what in ${*:-tile encode align}; do
	case $what in
	tile)
		slide=$SHARED/slides/cmu-1-small-region.svs
		[ -f "$slide" ] || { echo "bench/ab.sh: tile: $slide missing" >&2; continue; }
		i=0 list=
		while [ $i -lt "$COPIES" ]; do ln -sf "$slide" "$W/s$i.svs"; list="$list $W/s$i.svs"; i=$((i + 1)); done
		ab "tile: grid 10x+20x 256 px, $COPIES slides" \
			"@BIN@/eosin-tile --grid --mags 10,20 --px 256 --threads $THREADS$list"
		;;
	encode)
		ls "$SHARED"/patches/*/*.png >/dev/null 2>&1 || { echo "bench/ab.sh: encode: no patches in $SHARED/patches" >&2; continue; }
		n=0
		for f in "$SHARED"/patches/*/*.png; do
			n=$((n + 1)); vips copy "$f" "$W/p$n.jpg[Q=90]"
		done
		i=0
		while [ $i -lt 64 ]; do
			jq -nc --arg b "$(base64 -w0 "$W/p$((i % n + 1)).jpg")" --arg id "b$i" \
				'{k:"tile",v:1,id:$id,jpeg:{"$base64":$b}}'
			i=$((i + 1))
		done | "$B/eosin-cat" -r >"$W/tiles.mpk"
		"$B/eosin-make-model" --arch vit --dim 384 --depth 12 --heads 6 --patch 16 --img 224 \
			--out "$W/vits.st" 2>/dev/null
		ab "encode: ViT-S/16, 64 JPEG tiles" \
			"@BIN@/eosin-encode --model $W/vits.st --threads $THREADS < $W/tiles.mpk"
		;;
	align)
		python3 tests/parity/align_gen.py --bags 256 --n 16 --img-dim 768 --txt-dim 512 --seed 7 >"$W/h.jsonl"
		"$B/eosin-cat" -r "$W/h.jsonl" >"$W/h.mpk"
		python3 tests/parity/align_gen.py --bags 8 --n 1024 --img-dim 384 --txt-dim 256 --seed 7 >"$W/q.jsonl"
		"$B/eosin-cat" -r "$W/q.jsonl" >"$W/q.mpk"
		ab "align: heads+itc 256x16, 30 steps" \
			"@BIN@/eosin-align --train --out $W/ck.st --dim 256 --hidden 512 --batch 256 --steps 30 --threads $THREADS $W/h.mpk && cat $W/ck.st"
		ab "align: q-former+itc 8x1024, 10 steps" \
			"@BIN@/eosin-align --train --out $W/ck.st --dim 256 --hidden 512 --queries 32 --qdim 256 --heads 8 --qformer-layers 2 --ffn 1024 --batch 8 --steps 10 --threads $THREADS $W/q.mpk && cat $W/ck.st"
		;;
	*) echo "bench/ab.sh: no work '$what' (tile, encode, align)" >&2; exit 2 ;;
	esac
done
echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg)"
