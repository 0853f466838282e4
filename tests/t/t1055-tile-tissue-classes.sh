#!/bin/sh
# eosin-tile: no tissue class is lost. Made-up slides painted from the
# real CRC-VAL-HE-7K patches (tests/fixtures/make-mosaic.py: every class at
# several positions, in a mosaic and alone, on glass, with white margins,
# green, blue and black pen and dust), truth known by construction: the
# tissue recall of every class, fat (ADI) and mucin (MUC) included, is at
# least 0.95, and at most 1% of the glass is called tissue; pen is ink,
# not tissue. Two glasses: a clean one (as the real slides' glass) and a
# greyer, noisier one (as a frozen section's). Lossless tiles: JPEG's
# ringing at the patches' razor-cut edges is the construction's, not a
# slide's.
. "$(dirname "$0")/../lib.sh"

PATCHES=$SHARED/patches/crc-val-he-7k
test -r "$PATCHES/labels.tsv" || test_skip_all "no $PATCHES (../shared/data)"
command -v vips >/dev/null || test_skip_all "no vips (libvips-tools)"
PY=
for p in python3 /usr/bin/python3; do
	if command -v "$p" >/dev/null && "$p" -c "import numpy, PIL" 2>/dev/null; then
		PY=$p
		break
	fi
done
test -n "$PY" || test_skip_all "no python3 with numpy and PIL (python3-numpy, python3-pil)"

for glass in clean:248,247,246,1.5 frozen:240,236,240,2.5; do
	name=${glass%%:*}
	test_expect_success "$name glass: the made-up slide" '
		"$PY" "$ROOT/tests/fixtures/make-mosaic.py" "$PATCHES" $name.png $name.tsv 1 \
		    ${glass#*:} &&
		vips tiffsave $name.png $name.tif --tile --pyramid --compression deflate \
		    --tile-width 256 --tile-height 256 --xres 2000 --yres 2000
	'
	test_expect_success "$name glass: every class found, the glass and pen left" '
		eosin-tile --mags 10 --px 512 --grid --min-tissue 0 --mask $name-mask.png \
		    --preview $name-prev.png $name.tif >$name.mpk &&
		"$PY" "$ROOT/tests/fixtures/tissue-score.py" $name-mask.png $name.tsv 3136 2016 \
		    >$name.score &&
		sed "s/^/# /" $name.score &&
		test $(grep -c "^recall" $name.score) = 8 &&
		# ink: the fraction of its box that a stroke fills, by
		# construction (a 60 px line in a 508 x 620 box, ...)
		awk -F"\t" -v fills="black=0.785 blue=0.237 green=0.137" "
		    BEGIN { n = split(fills, f, \" \"); for (i = 1; i <= n; i++) {
		        split(f[i], kv, \"=\"); fill[kv[1]] = kv[2] } }
		    \$1 == \"recall\" && \$3 < 0.95 { bad = 1 }
		    \$1 == \"glass\" && \$2 > 0.01 { bad = 1 }
		    \$1 == \"pen\" && (\$3 > 0.01 || \$4 < 0.9 * fill[\$2]) { bad = 1 }
		    END { exit bad }" $name.score
	'
done

test_expect_success 'parents are kept by their true tissue at the default --min-tissue' '
	# 10x parents (512 level-0 px) of a 10x/20x tree: every one whose box
	# is at least 60% tissue by construction is kept, every one under 40%
	# is not
	eosin-tile --mags 10,20 --px 256 clean.tif >q.mpk &&
	eosin-cat q.mpk | jq -r "select(.k == \"tile\" and .parent == null) | \"\(.x) \(.y)\"" \
	    >kept &&
	"$PY" - clean.tsv kept <<-\EOF
	import sys
	import numpy as np
	truth = np.zeros((2016, 3136), bool)
	for line in open(sys.argv[1]):
	    kind, cls, x, y, w, h = line.split("\t")
	    if kind == "tissue":
	        x, y, w, h = int(x), int(y), int(w), int(h)
	        truth[y:y + h, x:x + w] = True
	kept = {tuple(map(int, l.split())) for l in open(sys.argv[2])}
	bad = checked = 0
	for y in range(0, 2016 - 511, 512):
	    for x in range(0, 3136 - 511, 512):
	        f = truth[y:y + 512, x:x + 512].mean()
	        if f >= 0.6 or f < 0.4:
	            checked += 1
	            if (f >= 0.6) != ((x, y) in kept):
	                bad += 1
	                print(f"# parent {x},{y}: tissue {f:.2f}, kept {(x, y) in kept}")
	print(f"# {checked} parents checked, {bad} wrong")
	sys.exit(bad != 0 or checked < 10)
	EOF
'

test_done
