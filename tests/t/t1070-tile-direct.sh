#!/bin/sh
# eosin-tile decodes the JPEG tiles of Aperio and generic TIFF levels
# itself (lib/slide/tiffjpeg.c); --openslide-only reads through OpenSlide. Where
# every read starts on a whole level pixel the two must give the same
# tiles byte for byte (same pixels in, same resampler, same encoder):
# the real Aperio slide (photometric RGB tiles), the libvips-made Aperio
# pyramid (YCbCr tiles, levels 0, 1, 2 read) and the generic tiled TIFF.
# The real Aperio JPEG 2000 slide (33005) is decoded directly too; its
# level 1 is 2.0005 times smaller than level 0, so 10x boxes fall on
# fractional level-1 pixels, where the two paths place the box differently
# by design (eosin-tile(1)); the whole of level 1 is compared pixel by
# pixel in test-tile-direct instead. Its thumbnail (level 1, read in
# blocks whose corners OpenSlide also puts at fractional pixels) differs
# as slightly, and so does a tissue fraction here and there: the tiles
# at 20x (level 0) are compared without it.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/fixtures/tile-lib.sh"

# tiles() STREAM: the tile records as JSON with their JPEGs in base64
tiles() { eosin-cat --base64 --kind tile "$1"; }

test_expect_success SLIDES 'cmu-1-small-region: direct and OpenSlide give the same tiles' '
	eosin-tile --grid --mags 10,20 --px 256 --min-tissue 0 --cache-mb 0 --threads 2 \
	    "$CMU" >d.mpk &&
	eosin-tile --grid --mags 10,20 --px 256 --min-tissue 0 --cache-mb 0 --threads 2 \
	    --openslide-only "$CMU" >o.mpk &&
	tiles d.mpk >d.json && tiles o.mpk >o.json &&
	test $(wc -l <d.json) = 108 && test_cmp o.json d.json
'

test_expect_success SLIDES 'cmu-1-small-region: the level-0 copy made directly: same again' '
	eosin-tile --grid --mags 10,20 --px 256 --min-tissue 0 --threads 1 "$CMU" >c.mpk &&
	tiles c.mpk >c.json && test_cmp o.json c.json
'

test_expect_success FIXTURES 'Aperio pyramid (YCbCr JPEG, 3 levels read): same tiles' '
	eosin-tile --grid --mags 10,20,40 --px 128 --min-tissue 0.2 --cache-mb 0 \
	    "$FIX/aperio.svs" >d.mpk &&
	eosin-tile --grid --mags 10,20,40 --px 128 --min-tissue 0.2 --cache-mb 0 \
	    --openslide-only "$FIX/aperio.svs" >o.mpk &&
	eosin-cat d.mpk | jq -r "select(.k == \"tile\") | .level" | sort -u >levels &&
	printf "0\n1\n2\n" >expect && test_cmp expect levels &&
	tiles d.mpk >d.json && tiles o.mpk >o.json && test_cmp o.json d.json
'

test_expect_success FIXTURES 'Aperio pyramid, direct: 1 and 3 threads give the same bytes' '
	eosin-tile --grid --mags 10,20,40 --px 128 --min-tissue 0.2 --cache-mb 0 --threads 1 \
	    "$FIX/aperio.svs" >t1.mpk &&
	eosin-tile --grid --mags 10,20,40 --px 128 --min-tissue 0.2 --cache-mb 0 --threads 3 \
	    "$FIX/aperio.svs" >t3.mpk &&
	tiles t1.mpk >t1.json && tiles t3.mpk >t3.json && test_cmp t1.json t3.json
'

test_expect_success FIXTURES 'generic tiled TIFF: same tiles' '
	eosin-tile --grid --mags 10,20 --px 128 --min-tissue 0.2 "$FIX/generic-cm.tif" >d.mpk &&
	eosin-tile --grid --mags 10,20 --px 128 --min-tissue 0.2 --openslide-only \
	    "$FIX/generic-cm.tif" >o.mpk &&
	tiles d.mpk >d.json && tiles o.mpk >o.json && test -s d.json && test_cmp o.json d.json
'

test_expect_success FIXTURES 'a corrupt level-0 tile is reported by the direct path too' '
	test_exit_code 1 eosin-tile --grid --mags 40 --px 128 --min-tissue 0 --cache-mb 0 \
	    "$FIX/corrupt-aperio.svs" >out 2>err &&
	grep "corrupt-aperio.svs" err
'

# jpegs() STREAM: the tiles' JPEGs, base64, one a line, in order
jpegs() { tiles "$1" | jq -r ".jpeg[\"\$base64\"]"; }

test_expect_success SLIDES 'JPEG 2000 slide, level 0 read directly: the same JPEGs' '
	eosin-tile --grid --mags 20 --px 256 --min-tissue 0 --cache-mb 0 --threads 2 \
	    --mpp 0.5 "$TCGA" >jd.mpk &&
	eosin-tile --grid --mags 20 --px 256 --min-tissue 0 --cache-mb 0 --threads 2 \
	    --mpp 0.5 --openslide-only "$TCGA" >jo.mpk &&
	jpegs jd.mpk >jd.b64 && jpegs jo.mpk >jo.b64 &&
	test $(wc -l <jd.b64) = 221 && test_cmp jo.b64 jd.b64
'

test_expect_success SLIDES 'JPEG 2000 slide, level-0 copy made directly: the same JPEGs' '
	eosin-tile --grid --mags 20 --px 256 --min-tissue 0 --threads 1 --mpp 0.5 \
	    "$TCGA" >jc.mpk &&
	jpegs jc.mpk >jc.b64 && test_cmp jo.b64 jc.b64
'

test_expect_success SLIDES 'JPEG 2000 slide at 10x (level 1, direct): well-formed tiles' '
	eosin-tile --grid --mags 10 --px 128 --mpp 0.25 --parents 3 "$TCGA" >j.mpk &&
	eosin-cat --check j.mpk &&
	test $(eosin-cat --kind tile j.mpk | wc -l) = 3
'

test_done
