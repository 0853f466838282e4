#!/bin/sh
# pipelines/fanout (GNU parallel) and pipelines/slurm-array.sh over a small
# archive with one bad slide: the others finish, the job log names the
# failure, --resume retries only it; the Slurm tasks make the same bytes;
# tile shards built by fan-out merge into one index.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/fixtures/dataset-lib.sh"

command -v vips >/dev/null || test_skip_all "vips (libvips-tools) missing"
command -v parallel >/dev/null || test_skip_all "GNU parallel missing"
export SOURCE_DATE_EPOCH=1700000000
dataset_vars "$TRASH/f"
Q="TILE_FLAGS=--grid --mags 10 --px 224 --threads 1"
E="ENC_FLAGS=--drop-pixels --threads 1"
B="BAG_FLAGS=--by slide --require-text"
A="ALIGN_FLAGS=--steps 10 --dim 16 --batch 4 --seed 1 --threads 1"
# the records of bag streams A and B are the same (their hdr records name
# their own OUT folder, so the files differ in that)
same_bags() {
	eosin-cat --base64 --kind bag "$1" >sb1 && eosin-cat --base64 --kind bag "$2" >sb2 &&
	test -s sb1 && cmp sb1 sb2
}
# fanout LIST OUT [options]: from folder w
fan() {
	(cd w && "$ROOT/pipelines/fanout" "$@")
}

test_expect_success 'fixtures: four slides, one of them truncated' '
	dataset_fixture "$TRASH/f" &&
	mkdir w && ln -s ../f/m w/m && mkdir w/slides &&
	cp f/slides/* w/slides/ && cp f/bad/truncated.svs w/slides/d.svs &&
	printf "slides/%s\n" a.svs b.svs c.tif d.svs >w/list &&
	cp f/reports/a.txt f/reports/d.txt
'

test_expect_success 'usage errors exit 2; the usage is the SYNOPSIS of eosin-pipelines(7)' '
	test_exit_code 2 "$ROOT/pipelines/fanout" 2>err && grep "^usage: fanout" err &&
	if command -v man >/dev/null; then
		MANWIDTH=250 man -l "$ROOT/man/man7/eosin-pipelines.7" 2>/dev/null >page &&
		grep -F "$(sed "s|^usage: fanout|pipelines/fanout|" err)" page
	fi &&
	test_exit_code 2 "$ROOT/pipelines/fanout" -t nonsense w/list ds &&
	test_exit_code 2 "$ROOT/pipelines/fanout" nolist ds
'

test_expect_success 'fan-out over 4 slides, 2 at a time: 3 built, the bad one fails, exit 1' '
	# shellcheck disable=SC2086
	test_exit_code 1 fan -j 2 list ds $DATASET_VARS FETCH_FLAGS=--doc "$Q" "$E" "$B" 2>err &&
	for s in a b c; do test -s w/ds/bags/$s.mpk || { echo "no bag for $s"; exit 1; }; done &&
	! test -e w/ds/bags/d.mpk && ! test -e w/ds/tiles/d.mpk &&
	test -z "$(find w/ds -name "*.tmp")"
'

test_expect_success 'the job log has every slide; only d.svs failed' '
	test $(tail -n +2 w/ds/fanout.joblog | wc -l) = 4 &&
	awk -F"\t" "NR > 1 && \$7 != 0 { print \$NF }" w/ds/fanout.joblog >failed &&
	test $(wc -l <failed) = 1 && grep "slides/d.svs" failed
'

test_expect_success '--resume after the slide is replaced: only it runs, now all built' '
	(cd w/ds && ls -l --time-style=full-iso bags) >before &&
	cp f/good/flat.svs w/slides/d.svs &&
	# shellcheck disable=SC2086
	fan -j 2 --resume list ds $DATASET_VARS FETCH_FLAGS=--doc "$Q" "$E" "$B" &&
	test -s w/ds/bags/d.mpk &&
	test $(tail -n +2 w/ds/fanout.joblog | wc -l) = 5 &&
	(cd w/ds && ls -l --time-style=full-iso bags) | grep -v " d.mpk" >after &&
	grep -v " d.mpk" before | grep -v "^total" >b2 && grep -v "^total" after >a2 &&
	test_cmp b2 a2
'

test_expect_success 'GNU parallel --sshloginfile plumbing (":" is this machine)' '
	echo : >w/hosts &&
	# shellcheck disable=SC2086
	fan -j 1 -S hosts -l ssh.joblog list ds2 $DATASET_VARS FETCH_FLAGS=--doc "$Q" "$E" "$B" &&
	test $(tail -n +2 w/ssh.joblog | wc -l) = 4 &&
	for s in a b c d; do same_bags w/ds/bags/$s.mpk w/ds2/bags/$s.mpk || exit 1; done
'

test_expect_success 'Slurm array tasks 1..4 make the same bytes as the fan-out' '
	(cd w && for i in 1 2 3 4; do
		# shellcheck disable=SC2086
		SLURM_ARRAY_TASK_ID=$i EOSIN_ROOT=$ROOT sh "$ROOT/pipelines/slurm-array.sh" list ds3 \
			$DATASET_VARS FETCH_FLAGS=--doc "$Q" "$E" "$B" >/dev/null 2>&1 || exit 1
	done) &&
	for s in a b c d; do same_bags w/ds/bags/$s.mpk w/ds3/bags/$s.mpk || exit 1; done &&
	(cd w && test_exit_code 2 sh "$ROOT/pipelines/slurm-array.sh" list ds3 2>err) &&
	grep "SLURM_ARRAY_TASK_ID" w/err
'

test_expect_success 'train once, tile shards by fan-out, merged: = one index of all tiles' '
	# shellcheck disable=SC2086
	test_exit_code 1 fan -t shards list ds $DATASET_VARS 2>err &&
	grep "needs the trained head" err &&
	(cd w && make -s --no-print-directory -f "$ROOT/pipelines/dataset.mk" OUT=ds \
		SLIDES="$(cat list)" $DATASET_VARS FETCH_FLAGS=--doc "$Q" "$E" "$B" "$A" train) 2>/dev/null &&
	# shellcheck disable=SC2086
	fan -j 2 -t shards list ds $DATASET_VARS "$A" &&
	test $(ls w/ds/shards/*.faiss | wc -l) = 4 &&
	(cd w && make -s --no-print-directory -f "$ROOT/pipelines/dataset.mk" OUT=ds \
		SLIDES="$(cat list)" $DATASET_VARS FETCH_FLAGS=--doc "$Q" "$E" "$B" "$A" tiles) 2>/dev/null &&
	merged_equals_one w/ds a b c d
'

test_done
