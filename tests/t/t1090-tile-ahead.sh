#!/bin/sh
# eosin-tile with several slides and threads prepares the next slide
# (open, level-0 copy, thumbnail, tissue, plan) while the current one is
# tiled. None of that may show: the records are the same bytes for any
# --threads, slide after slide in argument order; a slide that fails
# while prepared (no file, no resolution, beyond the scan, damaged level
# 0) is reported in its turn, after the tiles of the slides before it,
# with the same messages in the same order whatever the thread count.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/fixtures/tile-lib.sh"
test_have_prereq FIXTURES || test_skip_all "no fixtures (libvips-tools' vips missing?)"

# tiles STREAM: the tile records as JSON, JPEGs in base64
tiles() { eosin-cat --base64 --kind tile "$1"; }

test_expect_success 'good and bad slides mixed: same records and messages for 1, 2, 3 threads' '
	for t in 1 2 3; do
		test_exit_code 1 eosin-tile --mags 10,20 --px 64 --min-tissue 0.2 --threads $t \
		    "$FIX/aperio.svs" missing.svs "$FIX/flat.svs" "$FIX/corrupt-flat.svs" \
		    "$FIX/nores.tif" "$FIX/generic-cm.tif" "$FIX/aperio.svs" >out$t 2>err$t &&
		tiles out$t >t$t.json || return 1
	done &&
	test -s t1.json && test_cmp t1.json t2.json && test_cmp t1.json t3.json &&
	test_cmp err1 err2 && test_cmp err1 err3 &&
	test $(wc -l <err1) = 4 &&
	sed -n 1p err1 | grep missing.svs && sed -n 2p err1 | grep corrupt-flat.svs &&
	sed -n 3p err1 | grep nores.tif &&
	sed -n 4p err1 | grep "7 slides: 4 tiled, 0 without tissue, 3 failed"
'

test_expect_success 'slides come out whole and in argument order' '
	jq -r .slide t2.json | uniq >got &&
	printf "aperio\nflat\ngeneric-cm\naperio\n" >expect && test_cmp expect got
'

test_expect_success 'each slide as when tiled alone' '
	: >alone.json &&
	for s in aperio.svs flat.svs generic-cm.tif aperio.svs; do
		eosin-tile --mags 10,20 --px 64 --min-tissue 0.2 --threads 1 "$FIX/$s" >one &&
		tiles one >>alone.json || return 1
	done &&
	test_cmp alone.json t2.json
'

test_expect_success 'a write error while the next slide is prepared: exit 1, said once' '
	test_exit_code 1 eosin-tile --mags 10,20 --px 64 --min-tissue 0 --threads 2 \
	    "$FIX/aperio.svs" "$FIX/flat.svs" "$FIX/aperio.svs" >/dev/full 2>err &&
	test $(wc -l <err) = 1
'

test_expect_success SLIDES 'the real slide three times: 1 and 2 threads, same bytes' '
	eosin-tile --grid --mags 10,20 --px 256 --min-tissue 0 --threads 1 \
	    "$CMU" "$CMU" "$CMU" >r1 &&
	eosin-tile --grid --mags 10,20 --px 256 --min-tissue 0 --threads 2 \
	    "$CMU" "$CMU" "$CMU" >r2 &&
	tiles r1 >r1.json && tiles r2 >r2.json &&
	test $(wc -l <r1.json) = 324 && test_cmp r1.json r2.json
'

# peak RSS of a command, KiB (python: no /usr/bin/time needed)
maxrss() {
	python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
}

# a sanitizer's allocator holds freed memory back (ASan's quarantine):
# peak RSS then says nothing about the program's own memory
[ -z "${SANITIZE:-}" ] && test_have_prereq SLIDES && test_set_prereq RSS_OF_PLAIN_BUILD
test_expect_success RSS_OF_PLAIN_BUILD 'memory does not grow with the number of slides (2 threads)' '
	set -- &&
	for i in 1 2 3 4; do set -- "$@" "$CMU"; done &&
	few=$(maxrss eosin-tile --grid --mags 10,20 --px 256 --min-tissue 0 --threads 2 "$@") &&
	for i in $(seq 36); do set -- "$@" "$CMU"; done &&
	many=$(maxrss eosin-tile --grid --mags 10,20 --px 256 --min-tissue 0 --threads 2 "$@") &&
	echo "# peak RSS: 4 slides $few KiB, 40 slides $many KiB" &&
	test "$many" -le $((few + 4096))
'

test_done
