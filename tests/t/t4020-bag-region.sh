#!/bin/sh
# eosin-bag --by region: PathFLIP slides cut into a grid of regions.
. "$(dirname "$0")/../lib.sh"
# Debian's interpreter directly: a version-manager shim costs a second a call.
PY=$(command -v /usr/bin/python3 || command -v python3) || test_skip_all 'python3 missing'
GEN="$PY $TEST_DIR/gen/tiles.py"
CHECK="$PY $TEST_DIR/gen/bagcheck.py"

test_expect_success 'every patch has a region; regions are the non-empty grid cells' '
	$GEN --slides 2 --trees 6 --docs --sentences 4 | eosin-cat -r >in.mpk &&
	eosin-cat --base64 in.mpk >in.json &&
	eosin-bag --by region --regions 9 --mag 40 <in.mpk >out.mpk &&
	eosin-cat --check --strict out.mpk &&
	eosin-cat --base64 out.mpk >out.json &&
	$CHECK regions out.json 3 &&
	$CHECK rows in.json out.json &&
	jq -r "select(.k==\"bag\") | [.id, .method, .n, .nregions, .extent] | @tsv" out.json >actual &&
	# 6 trees of 4096 px at x = 4096 t, y = 4096 (t mod 3): box 24576 x 12288,
	# cells 8192 x 4096; the trees fall in 6 distinct cells of the 3 x 3 grid
	printf "S00\tregion\t384\t6\t512\nS01\tregion\t384\t6\t512\n" >expect &&
	test_cmp expect actual
'

test_expect_success 'a grid cell holds the patches of whole trees here (no region split)' '
	# trees are 4096 px squares on a 4096 px lattice; the box is 24576 x 12288,
	# so a 3 x 3 cell is 8192 x 4096 and every tree lies within one cell
	jq -e "select(.k==\"bag\") | [.region | group_by(.)[] | length] | all(. % 64 == 0)" out.json >/dev/null
'

test_expect_success 'sentences without a place: sent_region all -1; caption and sentences kept' '
	jq -c "select(.k==\"bag\") | [.sent_region, (.sentences | length), .sent_emb.n, .caption]" out.json >actual &&
	for s in S00 S01; do echo "[[-1,-1,-1,-1],4,4,\"report of $s\"]"; done >expect &&
	test_cmp expect actual
'

test_expect_success 'sent_emb rows are the doc'"'"'s, bit for bit' '
	jq -r "select(.k==\"doc\") | .sent_emb.data[\"\$base64\"]" in.json >expect &&
	jq -r "select(.k==\"bag\") | .sent_emb.data[\"\$base64\"]" out.json >actual &&
	test_cmp expect actual
'

test_expect_success 'sentences with a place (sent_pos) get the region of that place' '
	$GEN --trees 6 --docs --sentences 3 | jq -c "if .k == \"doc\" then . + {sent_pos: [[100, 100], null, [24000, 9000]]} else . end" |
		eosin-cat -r | eosin-bag --by region --regions 9 --mag 40 | eosin-cat >pos.json &&
	jq -c "select(.k==\"bag\") | [.sent_region[0] == .region[0], .sent_region[1], .sent_region[2] == .region[-1]]" pos.json >actual &&
	echo "[true,-1,true]" >expect &&
	test_cmp expect actual
'

test_expect_success 'one region asked: one region' '
	eosin-bag --by region --regions 1 <in.mpk | eosin-cat >one.json &&
	jq -e "select(.k==\"bag\") | .nregions == 1 and (.region | unique) == [0]" one.json >/dev/null
'

test_expect_success 'more regions than patches: only non-empty cells count' '
	$GEN --trees 2 --depth 0 | eosin-cat -r | eosin-bag --by region --regions 100 | eosin-cat >many.json &&
	jq -e "select(.k==\"bag\") | .n == 2 and .nregions == 2 and .region == [0, 1]" many.json >/dev/null
'

test_expect_success 'regions are computed after sampling, over the kept patches' '
	eosin-bag --by region --regions 4 --mag 40 --max-patches 50 --seed 9 <in.mpk | eosin-cat --base64 >s.json &&
	jq -e "select(.k==\"bag\") | .n == 50 and .sampled_from == 384 and (.region | length) == 50" s.json >/dev/null &&
	$CHECK regions s.json 2
'

test_done
