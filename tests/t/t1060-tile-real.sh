#!/bin/sh
# eosin-tile on the real slides of ../shared/data/slides: a 20x Aperio crop
# with mpp 0.499 and one level, and a TCGA frozen section in JPEG 2000
# tiles with no resolution metadata at all.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/fixtures/tile-lib.sh"
test_have_prereq SLIDES || test_skip_all "no real slides in $SHARED/slides"

test_expect_success 'cmu-1-small-region: 40x of MR-PLIP is refused, clearly' '
	test_exit_code 1 eosin-tile "$CMU" >out 2>err &&
	grep "cmu-1-small-region.svs.: 40x (0.25 um/px) is beyond the scan (0.499 um/px from openslide" err &&
	grep -- "drop 40 from --mags, or give --allow-upsample" err
'

test_expect_success 'cmu-1-small-region: 5,10,20 quadtrees from its mpp' '
	eosin-tile --mags 5,10,20 --px 128 --min-tissue 0.5 --threads 2 "$CMU" >q.mpk &&
	eosin-cat --check q.mpk &&
	eosin-cat q.mpk | jq -r "select(.k == \"tile\") | \"\(.mpp_source) \(.base_mpp) \(.level) \(.upsampled)\"" |
	    sort -u >got && echo "openslide 0.499 0 false" >expect && test_cmp expect got
'

test_expect_success PIL 'cmu-1-small-region: quadtree invariants, 21 per tree, JPEGs decode' '
	check_tiles --px 128 --tree 21 --min-tissue 0.5 --width 2220 --height 2967 --decode <q.mpk
'

test_expect_success 'cmu-1-small-region: parent extent 512 = 4 * round(128 * 2 / 0.499 / 4)' '
	eosin-cat q.mpk | jq -r "select(.k == \"tile\" and .depth == 0) | .extent" | sort -u >got &&
	echo 512 >expect && test_cmp expect got
'

test_expect_success PIL 'cmu-1-small-region: --allow-upsample: honest 40x, 85 per tree' '
	eosin-tile --allow-upsample --px 64 --parents 2 --seed 1 "$CMU" >u.mpk &&
	check_tiles --px 64 --tree 85 --min-tissue 0.5 --decode <u.mpk &&
	eosin-cat u.mpk | jq -r "select(.k == \"tile\") | \"\(.mag) \(.upsampled)\"" | sort -u >got &&
	printf "10 false\n20 false\n40 true\n5 false\n" >expect && test_cmp expect got
'

test_expect_success 'cmu-1-small-region: 1 thread with the level-0 copy, 2 without: same' '
	eosin-tile --mags 10,20 --grid --px 256 --threads 1 "$CMU" >t1 &&
	eosin-tile --mags 10,20 --grid --px 256 --threads 2 --cache-mb 0 "$CMU" >t2 &&
	body t1 >t1.json && body t2 >t2.json && test_cmp t1.json t2.json && test -s t1.json
'

test_expect_success 'tcga (no mpp, no AppMag): refused without an override' '
	test_exit_code 1 eosin-tile --mags 10 "$TCGA" >out 2>err &&
	grep "tcga-cr-7395-01a-01-ts1.svs.*no resolution" err &&
	grep -- "--mpp UM or --base-mag M" err
'

test_expect_success PIL 'tcga: --base-mag 20 works, reading 5x from its second level' '
	eosin-tile --base-mag 20 --mags 5,10,20 --px 128 --parents 4 "$TCGA" >t.mpk &&
	eosin-cat --check t.mpk &&
	check_tiles --px 128 --tree 21 --min-tissue 0.5 --width 4443 --height 3567 --decode <t.mpk &&
	eosin-cat t.mpk | jq -r "select(.k == \"tile\") | \"\(.mag) \(.level) \(.mpp_source)\"" |
	    sort -u >got &&
	printf "10 1 override\n20 0 override\n5 1 override\n" >expect && test_cmp expect got
'

test_expect_success 'tcga: --mpp 0.5 is the same as --base-mag 20' '
	eosin-tile --base-mag 20 --mags 5,10,20 --px 128 --parents 4 "$TCGA" >t.mpk &&
	eosin-tile --mpp 0.5 --mags 5,10,20 --px 128 --parents 4 "$TCGA" >m.mpk &&
	body t.mpk >a.json && body m.mpk >b.json && test_cmp a.json b.json
'

test_expect_success PIL 'tcga: tissue is found where the slide has it' '
	eosin-tile --mpp 0.5 --mags 5 --px 128 --min-tissue 0 "$TCGA" >g.mpk &&
	eosin-cat g.mpk | jq -r "select(.k == \"tile\") | \"\(.tissue)\"" >fr &&
	# most of this section is tissue, with glass around it: both occur
	test $(wc -l <fr) = 48 &&
	awk "\$1 > 0.9 {a++} \$1 < 0.1 {b++} END {exit !(a >= 15 && b >= 4)}" fr
'

test_done
