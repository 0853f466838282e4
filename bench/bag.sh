#!/bin/sh
# bench/bag.sh: eosin-bag throughput on a synthetic embedded stream
# (--slides x --trees x 85 tiles, dim-384 f32 img_emb and txt_emb).
# Baseline: reading and writing the same bytes (eosin-bag with no tiles to
# group is not a fair floor, so `cat` is). Prints medians of 3 runs.
#   bench/bag.sh [SLIDES [TREES]]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
PATH="$BUILD/bin:$PATH"
PY=$(command -v /usr/bin/python3 || command -v python3)
slides=${1:-8}
trees=${2:-30}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/eosin-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$PY" "$ROOT/tests/gen/tiles.py" --slides "$slides" --trees "$trees" --dim 384 --txt |
	eosin-cat -r >"$tmp/sorted.mpk"
"$PY" "$ROOT/tests/gen/tiles.py" --slides "$slides" --trees "$trees" --dim 384 --txt --shuffle 1 |
	eosin-cat -r >"$tmp/shuf.mpk"
ntiles=$((slides * trees * 85))
mb=$(($(wc -c <"$tmp/sorted.mpk") / 1048576))

median3() { # command... -> median wall seconds of 3 runs
	for i in 1 2 3; do
		s=$(date +%s.%N)
		"$@" >/dev/null 2>&1
		e=$(date +%s.%N)
		echo "$e - $s" | bc -l
	done | sort -n | sed -n 2p
}

printf "%s tiles, %s MiB, %s\n" "$ntiles" "$mb" "$(uname -m), $(nproc) cores"
printf "%-34s %10s %10s %8s %10s\n" case "cat s" "bag s" ratio "tiles/s"
run() { # name input args...
	name=$1 in=$2; shift 2
	base=$(median3 sh -c "cat '$in' >/dev/null")
	ours=$(median3 sh -c "eosin-bag $* <'$in' >/dev/null")
	printf "%-34s %10.3f %10.3f %8.1f %10.0f\n" "$name" "$base" "$ours" \
		"$(echo "$ours / $base" | bc -l)" "$(echo "$ntiles / $ours" | bc -l)"
}
run "parent, sorted" "$tmp/sorted.mpk" --by parent
run "slide, sorted" "$tmp/sorted.mpk" --by slide
run "slide --max-patches 1000" "$tmp/sorted.mpk" --by slide --max-patches 1000
run "region --regions 16" "$tmp/sorted.mpk" --by region
run "parent --unsorted, shuffled" "$tmp/shuf.mpk" --by parent --unsorted
run "slide --unsorted --memory 0" "$tmp/shuf.mpk" --by slide --unsorted --memory 0 --tmpdir "$tmp"
