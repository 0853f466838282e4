#!/bin/sh
# eosin-tile: MR-PLIP quadtrees on a synthetic 40x Aperio slide: 85 tiles a
# tree, children exactly tiling their parent, ids, parents and roots
# consistent, JPEGs of px x px, same bytes for any --threads.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/fixtures/tile-lib.sh"
test_have_prereq FIXTURES || test_skip_all "no fixtures (libvips-tools' vips missing?)"

test_expect_success 'quadtrees 5,10,20,40 at 64 px' '
	eosin-tile --px 64 --threads 2 "$FIX/aperio.svs" >tiles.mpk 2>err &&
	test_must_fail test -s err &&
	eosin-cat --check tiles.mpk
'

test_expect_success 'hdr first, naming the slide as input' '
	eosin-cat tiles.mpk | head -n 1 | jq -e ".k == \"hdr\" and .prog == \"eosin-tile\"" &&
	eosin-cat tiles.mpk | head -n 1 | jq -r ".input[0]" >input &&
	echo "$FIX/aperio.svs" >expect && test_cmp expect input
'

test_expect_success PIL 'invariants: 85 per tree, partition, ids, tissue, JPEG px x px' '
	check_tiles --px 64 --tree 85 --min-tissue 0.5 --width 3072 --height 2048 --decode \
	    <tiles.mpk
'

test_expect_success 'several trees, and counts per depth 1:4:16:64' '
	eosin-cat tiles.mpk | jq -r "select(.k == \"tile\") | .depth" | sort | uniq -c |
	    awk "{print \$2, \$1}" >depths &&
	n=$(awk "\$1 == 0 {print \$2}" depths) && test "$n" -ge 2 &&
	printf "0 %d\n1 %d\n2 %d\n3 %d\n" $n $((4 * n)) $((16 * n)) $((64 * n)) >expect &&
	test_cmp expect depths
'

test_expect_success 'a parent box: 512 level-0 px = 64 px * 2 um / 0.25, children halve it' '
	eosin-cat tiles.mpk | jq -r "select(.k == \"tile\") | \"\(.depth) \(.extent) \(.mag)\"" |
	    sort -u >extents &&
	printf "0 512 5\n1 256 10\n2 128 20\n3 64 40\n" >expect && test_cmp expect extents
'

test_expect_success '--parents N samples N trees, the same for the same seed' '
	eosin-tile --px 64 --parents 2 --seed 3 "$FIX/aperio.svs" >s1 &&
	eosin-tile --px 64 --parents 2 --seed 3 --threads 1 "$FIX/aperio.svs" >s2 &&
	body s1 >s1.json && body s2 >s2.json && test_cmp s1.json s2.json &&
	test "$(jq -r "select(.depth == 0) | .id" s1.json | wc -l)" = 2 &&
	jq -r "select(.depth == 0) | .id" s1.json >roots1 &&
	body tiles.mpk >all.json &&
	jq -r "select(.depth == 0) | .id" all.json >all-roots &&
	grep -F -x -f roots1 all-roots >common && test_cmp roots1 common
'

test_expect_success 'different seeds can draw different parents' '
	for s in 1 2 3 4 5; do
		eosin-tile --mags 5,10 --px 64 --parents 1 --seed $s "$FIX/aperio.svs" |
		    eosin-cat | jq -r "select(.depth == 0) | .id"
	done | sort -u >drawn &&
	test $(wc -l <drawn) -ge 2
'

test_expect_success '1 and 2 threads: the same records, byte for byte' '
	eosin-tile --px 64 --threads 1 "$FIX/aperio.svs" >t1 &&
	body t1 >t1.json && body tiles.mpk >t0.json && test_cmp t1.json t0.json
'

test_expect_success 'one-level slide: the level-0 copy (--cache-mb) changes no byte' '
	eosin-tile --px 64 --parents 3 "$FIX/flat.svs" >c &&
	eosin-tile --px 64 --parents 3 --cache-mb 0 "$FIX/flat.svs" >nc &&
	body c >c.json && body nc >nc.json && test_cmp c.json nc.json &&
	test $(wc -l <c.json) = 255
'

test_expect_success '--slide-id renames slide and ids' '
	eosin-tile --px 64 --parents 1 --slide-id CASE-7 "$FIX/aperio.svs" | eosin-cat |
	    jq -r "select(.k == \"tile\") | \"\(.slide) \(.id) \(.root)\"" >ids &&
	grep -v "^CASE-7 CASE-7/[0-9]*x/[0-9]*_[0-9]* CASE-7/5x/" ids >wrong;
	test_must_fail test -s wrong && test -s ids
'

test_expect_success '--quality changes the JPEGs and is recorded' '
	eosin-tile --px 64 --parents 1 --quality 50 "$FIX/aperio.svs" >q50 &&
	eosin-tile --px 64 --parents 1 "$FIX/aperio.svs" >q90 &&
	test "$(eosin-cat q50 | jq -r "select(.k == \"tile\") | .quality" | sort -u)" = 50 &&
	test $(wc -c <q50) -lt $(wc -c <q90)
'

test_expect_success 'a write error (/dev/full) fails with status 1' '
	test_exit_code 1 eosin-tile --px 64 --parents 1 "$FIX/aperio.svs" >/dev/full 2>err &&
	grep -i "write error" err
'

test_done
