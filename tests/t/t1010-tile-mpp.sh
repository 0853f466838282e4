#!/bin/sh
# eosin-tile: the base resolution comes from vendor mpp, TIFF resolution
# tags, objective power or the user, in that order (the user first), and a
# slide with none is refused, naming the slide and the flags that fix it.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/fixtures/tile-lib.sh"
test_have_prereq FIXTURES || test_skip_all "no fixtures (libvips-tools' vips missing?)"

# first tile's FIELD
first() { eosin-cat "$1" | jq -r "select(.k == \"tile\") | .$2" | head -n 1; }
run() { eosin-tile --mags 10 --px 64 --min-tissue 0.9 "$@"; }

test_expect_success PYTHON 'OpenSlide reads the Aperio fixture as Aperio with its MPP' '
	"$PY" -c "import openslide" 2>/dev/null || { echo "# no openslide-python, checked by mpp_source only"; exit 0; }
	"$PY" -c "
import openslide, sys
s = openslide.OpenSlide(sys.argv[1])
p = s.properties
assert p[\"openslide.vendor\"] == \"aperio\", p[\"openslide.vendor\"]
assert float(p[\"openslide.mpp-x\"]) == 0.25
assert p[\"openslide.objective-power\"] == \"40\"
assert s.level_count >= 4
" "$FIX/aperio.svs"
'

test_expect_success 'Aperio MPP: mpp_source openslide, base_mpp 0.25' '
	run "$FIX/aperio.svs" >out &&
	test "$(first out mpp_source)" = openslide &&
	test "$(first out base_mpp)" = 0.25 &&
	test "$(first out mpp)" = 1
'

test_expect_success 'objective power only (AppMag 20): source objective, 0.5 um/px' '
	run "$FIX/objective.svs" >out &&
	test "$(first out mpp_source)" = objective &&
	test "$(first out base_mpp)" = 0.5
'

test_expect_success 'TIFF resolution in centimeters and inches: source tiff, 0.5 um/px' '
	run "$FIX/generic-cm.tif" >cm && run "$FIX/generic-in.tif" >in &&
	test "$(first cm mpp_source)" = tiff && test "$(first cm base_mpp)" = 0.5 &&
	test "$(first in mpp_source)" = tiff && test "$(first in base_mpp)" = 0.5
'

test_expect_success 'no usable resolution: refused, naming the slide and the fix' '
	test_exit_code 1 run "$FIX/nores.tif" >out 2>err &&
	grep "nores.tif.*no resolution" err && grep -- "--mpp UM or --base-mag M" err &&
	test "$(eosin-cat out | jq -r .k | sort -u)" = hdr
'

test_expect_success 'no resolution: --mpp or --base-mag make it work (source override)' '
	run --mpp 0.5 "$FIX/nores.tif" >a && run --base-mag 20 "$FIX/nores.tif" >b &&
	test "$(first a mpp_source)" = override && test "$(first a base_mpp)" = 0.5 &&
	test "$(first b mpp_source)" = override && test "$(first b base_mpp)" = 0.5 &&
	body a >a.json && body b >b.json && test_cmp a.json b.json &&
	eosin-cat --check a
'

test_expect_success 'the override wins over the slide metadata' '
	run --mpp 0.5 "$FIX/aperio.svs" >out &&
	test "$(first out mpp_source)" = override && test "$(first out base_mpp)" = 0.5 &&
	test "$(first out extent)" = 128
'

test_expect_success 'level: the coarsest one fine enough (levels 1, 2, 4, 8, 16 at 0.25)' '
	eosin-tile --mags 2.5,5,10,20,40 --px 64 --parents 1 --min-tissue 0.3 "$FIX/aperio.svs" |
	    eosin-cat | jq -r "select(.k == \"tile\") | \"\(.mag) \(.level) \(.ds)\"" |
	    sort -u >levels &&
	cat >expect <<-\EOF &&
	10 2 4
	2.5 4 16
	20 1 2
	40 0 1
	5 3 8
	EOF
	test_cmp expect levels
'

test_done
