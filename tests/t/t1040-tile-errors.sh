#!/bin/sh
# eosin-tile: a bad slide is reported and skipped, the others are tiled,
# and the exit status is 1; magnifications beyond the scan are refused
# unless --allow-upsample, and then marked.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/fixtures/tile-lib.sh"
test_have_prereq FIXTURES || test_skip_all "no fixtures (libvips-tools' vips missing?)"

slides() { eosin-cat "$1" | jq -r "select(.k == \"tile\") | .slide" | uniq; }

test_expect_success 'a truncated slide: reported, skipped, the others tiled, exit 1' '
	test_exit_code 1 eosin-tile --mags 10 --px 64 "$FIX/generic-cm.tif" \
	    "$FIX/truncated.svs" "$FIX/aperio.svs" >out 2>err &&
	grep "truncated.svs" err && test $(wc -l <err) = 2 &&
	grep "3 slides: 2 tiled, 0 without tissue, 1 failed" err &&
	printf "generic-cm\naperio\n" >expect && slides out >got && test_cmp expect got &&
	eosin-cat --check out
'

test_expect_success 'the hdr lists every slide given, the failed one too' '
	eosin-cat out | head -n 1 | jq -r ".input[]" | sed "s#.*/##" >got &&
	printf "generic-cm.tif\ntruncated.svs\naperio.svs\n" >expect && test_cmp expect got
'

test_expect_success 'missing file and a file that is no slide' '
	echo "not a slide" >notes.svs &&
	test_exit_code 1 eosin-tile --mags 10 --px 64 missing.svs notes.svs \
	    "$FIX/aperio.svs" >out 2>err &&
	grep "missing.svs" err && grep "notes.svs" err && slides out >got &&
	echo aperio >expect && test_cmp expect got
'

test_expect_success 'a slide that fails while read: tiles before it kept, exit 1' '
	test_exit_code 1 eosin-tile --mags 40 --px 64 --min-tissue 0 --threads 2 \
	    "$FIX/corrupt-aperio.svs" "$FIX/aperio.svs" >out 2>err &&
	grep "corrupt-aperio.svs.*reading level 0 at" err &&
	slides out >got && printf "corrupt-aperio\naperio\n" >expect && test_cmp expect got &&
	eosin-cat --check out &&
	# the good tiles of corrupt-aperio.svs are the leading tiles of aperio.svs
	eosin-tile --mags 40 --px 64 --min-tissue 0 "$FIX/aperio.svs" >good &&
	body out | jq -c "select(.slide == \"corrupt-aperio\") | del(.slide, .path, .id, .root)" >c &&
	n=$(wc -l <c) && test "$n" -gt 0 &&
	body good | head -n "$n" | jq -c "del(.slide, .path, .id, .root)" >g && test_cmp g c
'

test_expect_success 'one-level slide: the damage shows before any tile, skipped' '
	test_exit_code 1 eosin-tile --mags 40 --px 64 --min-tissue 0 \
	    "$FIX/corrupt-flat.svs" "$FIX/aperio.svs" >out 2>err &&
	grep "corrupt-flat.svs.: reading level 0" err &&
	slides out >got && echo aperio >expect && test_cmp expect got
'

test_expect_success '40x on a 20x scan is refused by default, saying why and how' '
	test_exit_code 1 eosin-tile --px 64 "$FIX/objective.svs" >out 2>err &&
	grep "40x (0.25 um/px) is beyond the scan (0.5 um/px" err &&
	grep -- "--allow-upsample" err &&
	test "$(eosin-cat out | jq -r .k | sort -u)" = hdr
'

test_expect_success '--allow-upsample: made, and only 40x tiles say upsampled' '
	eosin-tile --px 64 --allow-upsample --parents 2 "$FIX/objective.svs" >out &&
	eosin-cat --check out &&
	eosin-cat out | jq -r "select(.k == \"tile\") | \"\(.mag) \(.upsampled) \(.level)\"" |
	    sort -u >got &&
	printf "10 false 1\n20 false 0\n40 true 0\n5 false 2\n" >expect && test_cmp expect got
'

test_expect_success 'no tissue enough: a note, no tiles, still status 0' '
	eosin-tile --px 256 --mags 1.25 --min-tissue 1 "$FIX/aperio.svs" >out 2>err &&
	grep "no tiles" err && test "$(eosin-cat out | jq -r .k | sort -u)" = hdr
'

test_expect_success '--preview with several slides: one PNG each' '
	eosin-tile --px 64 --mags 10 --parents 1 --preview "p-{slide}.png" \
	    "$FIX/aperio.svs" "$FIX/generic-cm.tif" >/dev/null &&
	vipsheader p-aperio.png && vipsheader p-generic-cm.png
'

test_done
