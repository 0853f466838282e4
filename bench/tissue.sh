#!/bin/sh
# bench/tissue.sh: eosin-tile's tissue detector beside what pathology users
# run today, plain Otsu on saturation and CLAM's segmentation defaults
# (bench/tissue_baselines.py; CLAM also with its piece-area filter set for
# small slides), on the same thumbnail of the same slides:
#   made-up slides painted from the real CRC-VAL-HE-7K patches, truth known
#   by construction (tests/fixtures/make-mosaic.py): clean glass, a
#   frozen section's greyer glass, dirty glass (noise 3.5), and the clean
#   one stored as JPEG (quality 85) instead of lossless;
#   the two real slides of ../shared/data/slides (no truth: fractions).
# Prints per slide and method: the tissue fraction of the thumbnail, the
# recall of every class, the fraction of glass called tissue, and of the
# pen boxes called tissue.
#
#   bench/tissue.sh            (BUILD=build)
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
DATA=../shared/data
[ -r $DATA/patches/crc-val-he-7k/labels.tsv ] || { echo "bench/tissue.sh: no $DATA" >&2; exit 1; }
[ -x "$BUILD/bin/eosin-tile" ] || { echo "bench/tissue.sh: build first (make)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
here=$(pwd)

made() { # NAME SEED GLASS COMPRESSION
	"$PY" tests/fixtures/make-mosaic.py $DATA/patches/crc-val-he-7k "$tmp/$1.png" \
	    "$tmp/$1.tsv" "$2" "$3"
	vips tiffsave "$tmp/$1.png" "$tmp/$1.tif" --tile --pyramid --compression "$4" \
	    --tile-width 256 --tile-height 256 --xres 2000 --yres 2000
	rm "$tmp/$1.png"
}
made clean 1 248,247,246,1.5 deflate
made frozen 2 240,236,240,2.5 deflate
made dirty 3 236,232,238,3.5 deflate
made jpeg 4 252,251,252,0.8 jpeg

printf "%-10s %-10s %8s" slide method tissue
for c in ADI DEB LYM MUC MUS NORM STR TUM; do printf " %5s" $c; done
printf " %7s %6s\n" glassFP penFP
for s in clean frozen dirty jpeg cmu-1-small-region tcga-cr-7395-01a-01-ts1; do
	case $s in
	clean | frozen | dirty | jpeg) slide=$tmp/$s.tif W=3136 H=2016 mpp_arg= ;;
	*) slide=$DATA/slides/$s.svs W= H= mpp_arg="--mpp 0.5" ;;
	esac
	# shellcheck disable=SC2086
	"$BUILD/bin/eosin-tile" $mpp_arg --mags 10 --px 512 --grid --min-tissue 0 \
	    --mask "$tmp/eosin.png" "$slide" >/dev/null 2>&1
	size=$(vipsheader -f width "$tmp/eosin.png")x$(vipsheader -f height "$tmp/eosin.png")
	tw=${size%x*} th=${size#*x}
	vips thumbnail "$slide" "$tmp/thumb.png" "$tw" --height "$th" --size force
	if [ -z "$W" ]; then
		W=$(vipsheader -f width "$slide") H=$(vipsheader -f height "$slide")
	fi
	ds=$(echo "$W $tw" | awk '{ printf "%.4f", $1 / $2 }')
	for m in otsu clam clam-small; do
		"$PY" bench/tissue_baselines.py $m "$tmp/thumb.png" "$tmp/$m.png" "$ds"
	done
	for m in eosin otsu clam clam-small; do
		frac=$("$PY" -c 'import sys, numpy as np; from PIL import Image
print("%.4f" % (np.asarray(Image.open(sys.argv[1]).convert("L")) == 255).mean())' "$tmp/$m.png")
		printf "%-10.10s %-10s %8s" "$s" $m "$frac"
		if [ -f "$tmp/$s.tsv" ]; then
			"$PY" tests/fixtures/tissue-score.py "$tmp/$m.png" "$tmp/$s.tsv" $W $H |
			    awk -F'\t' '$1 == "recall" { printf " %5.3f", $3 }
			        $1 == "glass" { g = $2 } $1 == "pen" { p += $3 * $5; n += $5 }
			        END { printf " %7.4f %6.3f\n", g, p / n }'
		else
			printf "%s\n" "   (no truth: the real slide)"
		fi
	done
done
cd "$here"
