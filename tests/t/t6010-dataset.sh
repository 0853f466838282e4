#!/bin/sh
# pipelines/dataset.mk: a dataset build run twice does nothing the second
# time; killed mid-way and run again, it ends with the same bytes as an
# uninterrupted build; shards merge into the same index as one build.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/fixtures/dataset-lib.sh"

command -v vips >/dev/null || test_skip_all "vips (libvips-tools) missing"
command -v jq >/dev/null || test_skip_all "jq missing"
export SOURCE_DATE_EPOCH=1700000000
S="SLIDES=slides/a.svs slides/b.svs slides/c.tif"
dataset_vars "$TRASH/f"

test_expect_success 'fixtures: three slides, two tiny models, reports' '
	dataset_fixture "$TRASH/f" &&
	for w in one two; do
		mkdir $w && ln -s ../f/slides ../f/m $w/ || exit 1
	done
'

test_expect_success 'a whole build: tiles, text, embeddings, bags, head, index, evaluation' '
	dataset_make one "$S" -j 2 >log 2>&1 || { cat log; exit 1; }
	for s in a b c; do
		for st in tiles text emb bags; do
			test -s one/ds/$st/$s.mpk || { echo "missing one/ds/$st/$s.mpk"; exit 1; }
		done
	done &&
	test -s one/ds/head.safetensors && test -s one/ds/index.faiss &&
	jq -e ".n == 3 and .image_to_text[\"R@1\"] >= 0 and .text_to_image[\"R@10\"] == 1" one/ds/eval.json >/dev/null ||
	{ cat one/ds/eval.json; exit 1; }
'

test_expect_success 'every stream is valid; no temporary file is left' '
	for f in one/ds/*/*.mpk one/ds/joint.mpk; do eosin-cat --check "$f" || exit 1; done &&
	test -z "$(find one/ds -name "*.tmp")"
'

test_expect_success 'run again: nothing is redone' '
	(cd one && find ds -type f | sort | xargs ls -l --time-style=full-iso) >before &&
	dataset_make one "$S" -q &&
	dataset_make one "$S" >again 2>&1 &&
	! grep eosin- again &&
	(cd one && find ds -type f | sort | xargs ls -l --time-style=full-iso) >after &&
	test_cmp before after
'

test_expect_success 'a slide newer than its tiles is redone, and what depends on it' '
	touch one/slides/b.svs &&
	dataset_make one "$S" -n >plan 2>&1 &&
	grep "eosin-tile.*slides/b.svs" plan &&
	! grep "eosin-tile.*slides/a.svs" plan &&
	grep "eosin-align --train" plan &&
	dataset_make one "$S" >/dev/null 2>&1
'

test_expect_success 'killed mid-way, then run again: the same bytes as one build' '
	setsid sh -c ". \"\$ROOT/tests/fixtures/dataset-lib.sh\" && dataset_make two \"\$1\"" \
		sh "$S" >/dev/null 2>&1 &
	pid=$! &&
	i=0 && while ! test -e two/ds/emb/a.mpk && test $i -lt 600; do sleep 0.1; i=$((i + 1)); done &&
	test -e two/ds/emb/a.mpk &&
	kill -TERM -$pid && { wait $pid; true; } &&
	test ! -e two/ds/index.faiss &&
	for f in $(find two/ds -name "*.mpk"); do eosin-cat --check "$f" >/dev/null || exit 1; done &&
	dataset_make two "$S" >log 2>&1 &&
	! grep "eosin-tile.*slides/a.svs" log &&
	(cd one/ds && md5sum */*.mpk joint.mpk head.safetensors index.faiss index.faiss.meta eval.json) >h1 &&
	(cd two/ds && md5sum */*.mpk joint.mpk head.safetensors index.faiss index.faiss.meta eval.json) >h2 &&
	test_cmp h1 h2
'

test_expect_success 'tile shards merged with eosin-index --merge = one index of all tiles' '
	dataset_make one "$S" tiles >log 2>&1 && cat log &&
	test $(ls one/ds/shards/*.faiss | wc -l) = 3 &&
	merged_equals_one one/ds a b c
'

test_done
