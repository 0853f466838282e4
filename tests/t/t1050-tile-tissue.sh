#!/bin/sh
# eosin-tile: tissue detection against the fixture's known tissue
# (truth.png, drawn by make-slides.sh), and the preview.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/fixtures/tile-lib.sh"
test_have_prereq FIXTURES || test_skip_all "no fixtures (libvips-tools' vips missing?)"

test_expect_success 'a full 10x grid with tissue fractions' '
	eosin-tile --mags 10 --px 64 --min-tissue 0 --preview prev.png "$FIX/aperio.svs" >g.mpk &&
	eosin-cat g.mpk | jq -r "select(.k == \"tile\") | \"\(.x) \(.y) \(.extent) \(.tissue)\"" \
	    >fractions && test $(wc -l <fractions) = 96
'

test_expect_success PIL 'tissue fractions agree with the truth' '
	# The detector closes glass narrower than about 32 um between
	# tissue (a 16 um square close, eosin-tile(1)): the truth is the
	# drawn discs closed the same way (at 0.25 um/px, 64 px).
	"$PY" - "$FIX/truth.png" fractions <<-\EOF
	import sys
	import numpy as np
	from PIL import Image
	drawn = np.asarray(Image.open(sys.argv[1]).convert("L")) >= 128
	def square(a, r, op):
	    for axis in (0, 1):
	        pad = np.pad(a, [(r, r) if k == axis else (0, 0) for k in (0, 1)],
	                     constant_values=(op is np.logical_and))
	        out = a.copy()
	        n = a.shape[axis]
	        for d in range(2 * r + 1):
	            out = op(out, pad.take(range(d, d + n), axis=axis))
	        a = out
	    return a
	closed = square(square(drawn, 64, np.logical_or), 64, np.logical_and)
	worst = total = 0.0
	n = 0
	for line in open(sys.argv[2]):
	    x, y, e, got = line.split()
	    x, y, e, got = int(x), int(y), int(e), float(got)
	    want = closed[y:y + e, x:x + e].mean()
	    d = abs(got - want)
	    worst, total, n = max(worst, d), total + d, n + 1
	    if (want == 0 and got > 0.02) or (want == 1 and got < 0.98):
	        sys.exit(f"box {x},{y}: tissue {got}, truth {want}")
	print(f"# mean |error| {total / n:.4f}, worst {worst:.4f}")
	assert total / n < 0.03 and worst < 0.2, (total / n, worst)
	EOF
'

test_expect_success 'the dust speck (grey, 10 px) is not tissue' '
	# the speck is at (2900, 150): its 10x tile is (2816, 0)
	grep "^2816 0 256 " fractions >speck && test "$(cut -d" " -f4 speck)" = 0
'

test_expect_success 'a white slide has no tissue, whatever Otsu says' '
	vips black b.v 1024 1024 --bands 3 && vips linear b.v w.v "1 1 1" "240 240 243" --uchar &&
	vips gaussnoise n.v 1024 1024 --sigma 2 --mean 0 --seed 1 &&
	vips bandjoin "n.v n.v n.v" n3.v && vips add w.v n3.v wn.v && vips cast wn.v wc.v uchar &&
	vips tiffsave wc.v white.tif --tile --pyramid --compression jpeg &&
	eosin-tile --mpp 0.5 --mags 10 --px 64 --min-tissue 0 white.tif >w.mpk &&
	eosin-cat w.mpk | jq -r "select(.k == \"tile\") | .tissue" | sort -u >got &&
	echo 0 >expect && test_cmp expect got
'

test_expect_success 'a slide without tissue: reported, counted, exit 0' '
	eosin-tile --mpp 0.5 --mags 10 --px 64 white.tif >w2.mpk 2>err &&
	grep "white.tif.: no tiles: no grid tile with tissue" err &&
	grep "1 slide: 0 tiled, 1 without tissue, 0 failed" err &&
	eosin-tile --mpp 0.5 --mags 10 --px 64 white.tif "$FIX/aperio.svs" >w3.mpk 2>err &&
	grep "2 slides: 1 tiled, 1 without tissue, 0 failed" err &&
	test $(eosin-cat w3.mpk | jq -r "select(.k == \"tile\") | .slide" | sort -u) = aperio
'

test_expect_success PIL 'preview: thumbnail size, tissue tinted, parents outlined' '
	vipsheader prev.png >hdr && grep "768x512" hdr &&
	"$PY" - prev.png <<-\EOF
	import sys
	from PIL import Image
	im = Image.open(sys.argv[1]).convert("RGB")
	px = im.load()
	w, h = im.size
	blue = sum(1 for y in range(h) for x in range(w) if px[x, y] == (0, 0, 255))
	green = sum(1 for y in range(0, h, 4) for x in range(0, w, 4)
	            if px[x, y][1] > px[x, y][0] + 20 and px[x, y][1] > px[x, y][2] + 20)
	print(f"# blue {blue}, green {green}")
	assert blue > 500 and green > 500
	EOF
'

test_done
