#!/bin/sh
# eosin-tile: plain grids, one per magnification: stride, overlap, bounds,
# tissue filter.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/fixtures/tile-lib.sh"
test_have_prereq FIXTURES || test_skip_all "no fixtures (libvips-tools' vips missing?)"

xy() { eosin-cat "$1" | jq -r "select(.k == \"tile\") | \"\(.x) \(.y)\""; }

test_expect_success 'one magnification is a grid: every box with --min-tissue 0' '
	eosin-tile --mags 10 --px 64 --min-tissue 0 "$FIX/aperio.svs" >g.mpk &&
	eosin-cat --check g.mpk &&
	xy g.mpk >got &&
	# 10x on 0.25 um/px: extent 256; 3072/256 = 12 columns, 2048/256 = 8 rows
	for y in 0 256 512 768 1024 1280 1536 1792; do
		for x in 0 256 512 768 1024 1280 1536 1792 2048 2304 2560 2816; do
			echo "$x $y"
		done
	done >expect && test_cmp expect got
'

test_expect_success PIL 'grid tiles: depth 0, own root, JPEG px x px' '
	check_tiles --px 64 --width 3072 --height 2048 --decode <g.mpk &&
	test "$(eosin-cat g.mpk | jq -r "select(.k == \"tile\") | \"\(.depth) \(.parent)\"" |
	    sort -u)" = "0 null"
'

test_expect_success 'the tissue filter keeps a subset, all above it' '
	eosin-tile --mags 10 --px 64 "$FIX/aperio.svs" >t.mpk &&
	xy t.mpk >kept && n=$(wc -l <kept) && test "$n" -gt 10 && test "$n" -lt 96 &&
	test "$(eosin-cat t.mpk | jq "select(.k == \"tile\" and .tissue < 0.5)" | wc -l)" = 0
'

test_expect_success '--overlap: stride = extent - overlap in level-0 px' '
	eosin-tile --mags 20 --px 64 --overlap 16 --min-tissue 0 "$FIX/generic-cm.tif" >o.mpk &&
	# 20x on 0.5 um/px: extent 64, overlap 16 -> stride 48
	xy o.mpk | awk "\$2 == 0 {print \$1}" | head -n 4 >got &&
	printf "0\n48\n96\n144\n" >expect && test_cmp expect got &&
	# last column: the largest 48k with 48k + 64 <= 3072, k = 62
	xy o.mpk | awk "\$2 == 0 {x = \$1} END {print x}" >last && echo 2976 >expect &&
	test_cmp expect last
'

test_expect_success '--grid with several magnifications: a grid each, lowest first' '
	eosin-tile --grid --mags 20,10 --px 64 --parents 3 "$FIX/aperio.svs" >m.mpk &&
	eosin-cat m.mpk | jq -r "select(.k == \"tile\") | .mag" | uniq -c |
	    awk "{print \$1, \$2}" >got &&
	printf "3 10\n3 20\n" >expect && test_cmp expect got
'

test_expect_success 'mags that do not double need --grid' '
	test_exit_code 2 eosin-tile --mags 10,15 "$FIX/aperio.svs" 2>err &&
	grep -- "--grid" err &&
	eosin-tile --grid --mags 10,15 --px 64 --parents 1 "$FIX/aperio.svs" | eosin-cat --check
'

test_done
