#!/bin/sh
# bench/tile.sh: eosin-tile against the usual Python way (openslide-python
# read_region + PIL Lanczos resize + PIL JPEG, bench/tile_baseline.py) on
# the same slide, the same patches (grids at 10x and 20x, 256 px, every
# box: --min-tissue 0), the same JPEG quality and chroma subsampling.
# Prints medians of RUNS runs (default 5): wall seconds, tiles/s by wall
# clock and by CPU time (user + sys, robust when other work shares the
# machine), eosin-tile with 1 and 2 threads. Runs interleave (baseline,
# 1 thread, 2 threads, repeat) so that load from other work falls on all
# three alike. Wall-clock scaling needs 2 idle cores; on a busy machine
# the CPU-time figures are the steadier ones.
#
#   bench/tile.sh [SLIDE]     (default ../shared/data/slides/cmu-1-small-region.svs)
#   RUNS=7 REPEAT=5 MAGS=10,20 PX=256 bench/tile.sh
#   MPP=0.5 bench/tile.sh SLIDE    (a slide that states no resolution)
# REPEAT lists the slide that many times in one call (both programs), so
# start-up costs weigh as little as they do on a real archive.
#
# What "linear" can mean on this machine is measured too: two eosin-tile
# --threads 1 processes side by side, each with half the slides (the way
# GNU parallel fans out over an archive), share nothing but the machine;
# their wall time is the 2-core ceiling that 2 threads are compared with.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SLIDE=${1:-../shared/data/slides/cmu-1-small-region.svs}
RUNS=${RUNS:-5} REPEAT=${REPEAT:-5} MAGS=${MAGS:-10,20} PX=${PX:-256} Q=${Q:-90}
MPP=${MPP:-}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
[ -f "$SLIDE" ] || { echo "bench/tile.sh: no slide '$SLIDE'" >&2; exit 1; }
"$PY" -c 'import openslide, PIL' 2>/dev/null ||
    { echo "bench/tile.sh: needs python3-openslide and python3-pil" >&2; exit 1; }
[ -x "$BUILD/bin/eosin-tile" ] || { echo "bench/tile.sh: build first (make)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
slides="" half1="" half2=""
i=0
while [ $i -lt "$REPEAT" ]; do
	slides="$slides $SLIDE"
	if [ $((2 * i)) -lt "$REPEAT" ]; then half1="$half1 $SLIDE"; else half2="$half2 $SLIDE"; fi
	i=$((i + 1))
done

# run NAME CMD...: one timed run, "wall cpu" appended to $tmp/NAME
run() {
	name=$1; shift
	/usr/bin/time -f "%e %U %S" -o "$tmp/t" "$@" >"$tmp/out" 2>"$tmp/err" ||
	    { cat "$tmp/err" >&2; exit 1; }
	awk '{print $1, $2 + $3}' "$tmp/t" >>"$tmp/$name"
}
# shellcheck disable=SC2086
for r in $(seq "$RUNS"); do
	run base "$PY" bench/tile_baseline.py --mags "$MAGS" --px "$PX" --quality "$Q" \
	    ${MPP:+--mpp "$MPP"} $slides
	nbase=$(sed -n 's/^\([0-9]*\) tiles.*/\1/p' "$tmp/err")
	run t1 "$BUILD/bin/eosin-tile" --grid --mags "$MAGS" --px "$PX" --quality "$Q" \
	    --min-tissue 0 --threads 1 ${MPP:+--mpp "$MPP"} $slides
	ntile=$("$BUILD/bin/eosin-cat" --kind tile "$tmp/out" | wc -l)
	run t2 "$BUILD/bin/eosin-tile" --grid --mags "$MAGS" --px "$PX" --quality "$Q" \
	    --min-tissue 0 --threads 2 ${MPP:+--mpp "$MPP"} $slides
	[ -n "$half2" ] && run p2 sh -c '
		b=$1 m=$2 p=$3 q=$4 h1=$5 h2=$6 mpp=$7
		# shellcheck disable=SC2086
		"$b" --grid --mags "$m" --px "$p" --quality "$q" --min-tissue 0 --threads 1 \
		    ${mpp:+--mpp "$mpp"} $h1 >/dev/null &
		# shellcheck disable=SC2086
		"$b" --grid --mags "$m" --px "$p" --quality "$q" --min-tissue 0 --threads 1 \
		    ${mpp:+--mpp "$mpp"} $h2 >/dev/null
		s=$?; wait $! && exit $s' sh "$BUILD/bin/eosin-tile" "$MAGS" "$PX" "$Q" "$half1" "$half2" "$MPP"
done
[ "$nbase" = "$ntile" ] || { echo "bench/tile.sh: baseline made $nbase tiles, eosin-tile $ntile" >&2; exit 1; }

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
names="base t1 t2"
[ -n "$half2" ] && names="$names p2"
for name in $names; do
	w=$(cut -d' ' -f1 "$tmp/$name" | median)
	c=$(cut -d' ' -f2 "$tmp/$name" | median)
	echo "$name $w $c"
done >"$tmp/med"
echo "eosin-tile vs Python baseline: $(basename "$SLIDE") x$REPEAT, grid ${MAGS}x, ${PX} px, quality $Q, $ntile tiles a run, median of $RUNS runs, $(nproc) cores"
awk -v n="$ntile" '
{ wall[$1] = $2; cpu[$1] = $3 }
END {
	printf "%-32s %9s %9s %12s %12s\n", "program", "wall s", "cpu s", "tiles/s wall", "tiles/s cpu"
	split("base t1 t2", k, " ")
	label["base"] = "python openslide+PIL (1 thread)"
	label["t1"] = "eosin-tile --threads 1"
	label["t2"] = "eosin-tile --threads 2"
	for (i = 1; i <= 3; i++)
		printf "%-32s %9.2f %9.2f %12.1f %12.1f\n", label[k[i]], wall[k[i]], cpu[k[i]],
		    n / wall[k[i]], n / cpu[k[i]]
	printf "speed-up vs baseline, 1 thread:  %.2fx wall, %.2fx cpu\n",
	    wall["base"] / wall["t1"], cpu["base"] / cpu["t1"]
	printf "speed-up vs baseline, 2 threads: %.2fx wall, %.2fx cpu\n",
	    wall["base"] / wall["t2"], cpu["base"] / cpu["t2"]
	printf "scaling 2 threads / 1 thread: %.2fx wall (cpu time %.2fx of 1 thread)\n",
	    wall["t1"] / wall["t2"], cpu["t2"] / cpu["t1"]
	if ("p2" in wall) {
		printf "2 processes x 1 thread, half the slides each: %.2f s wall, %.2fx of 1 thread\n",
		    wall["p2"], wall["t1"] / wall["p2"]
		printf "2 threads against that 2-core ceiling: %.0f%%\n", 100 * wall["p2"] / wall["t2"]
	}
}' "$tmp/med"
