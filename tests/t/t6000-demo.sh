#!/bin/sh
# make demo's script, pipelines/demo: the whole pipeline on the real slide
# and patches (or the synthetic slide alone when ../shared/data is absent),
# and what it leaves behind.
. "$(dirname "$0")/../lib.sh"

for t in vips jq base64; do
	command -v $t >/dev/null || test_skip_all "$t missing"
done
export SOURCE_DATE_EPOCH=1700000000

test_expect_success SHARED 'the demo runs on the real slide and patches' '
	EOSIN_DEMO_DIR=$TRASH/d EOSIN_DEMO_STEPS=200 "$ROOT/pipelines/demo" 2>log &&
	cat log &&
	grep "real: cmu-1-small-region.svs" log &&
	grep "SYNTHETIC: synthetic-he.svs" log &&
	grep "the encoders are random" log &&
	grep "everything is in $TRASH/d" log
'

test_expect_success SHARED 'every stream it wrote is valid against the schemas' '
	for f in d/work/*.mpk d/hits.mpk d/zero-shot.mpk d/mrplip-bags.mpk; do
		eosin-cat --check "$f" || { echo "invalid: $f"; exit 1; }
	done
'

test_expect_success SHARED 'text search: 3 hits for each of the 3 queries, from the index' '
	eosin-cat --kind hit d/hits.mpk >hits.json &&
	test $(wc -l <hits.json) = 9 &&
	test $(jq -r .query hits.json | sort -u | wc -l) = 3 &&
	jq -r ".record.slide" hits.json | sort -u >slides &&
	grep -x -e cmu-1-small-region -e synthetic-he -e synthetic-dense slides &&
	jq -e "select(.rank > 1) | .score" hits.json >/dev/null
'

test_expect_success SHARED 'zero-shot on 16 held-out patches, metrics written' '
	jq -e ".n == 16 or .records.n == 16" d/zero-shot.json >/dev/null &&
	test $(eosin-cat d/zero-shot.mpk | jq -r "select(.zs_label != null) | .id" | wc -l) = 16
'

test_expect_success SHARED 'pictures: previews, heatmap and loss curve' '
	vipsheader d/cmu-1-small-region.preview.png d/synthetic-he.preview.png \
		d/cmu-1-small-region.heatmap.png &&
	head -c 4 d/train-loss.svg | grep -q "<svg" &&
	test $(jq -r "select(.loss != null) | .step" d/train-metrics.jsonl | wc -l) = 200
'

test_expect_success SHARED 'MR-PLIP quadtree bags: all complete, 85 patches, 4 magnifications' '
	eosin-cat --kind bag d/mrplip-bags.mpk >mr.json &&
	test -s mr.json &&
	test "$(jq -c "[.n, .complete, (.tile_mag | unique)]" mr.json | sort -u)" = "[85,true,[5,10,20,40]]"
'

test_expect_success SHARED 'run again: the same bytes (SOURCE_DATE_EPOCH set)' '
	(cd d/work && md5sum *.mpk) >first &&
	EOSIN_DEMO_DIR=$TRASH/d EOSIN_DEMO_STEPS=200 "$ROOT/pipelines/demo" 2>log2 &&
	(cd d/work && md5sum *.mpk) >second &&
	test_cmp first second
'

test_expect_success 'without ../shared/data: the synthetic slide alone, said so' '
	EOSIN_SHARED=$TRASH/none EOSIN_DEMO_DIR=$TRASH/s EOSIN_DEMO_STEPS=50 \
		"$ROOT/pipelines/demo" 2>log3 &&
	grep "is absent: no real slide or patches, the synthetic slides only" log3 &&
	grep "SYNTHETIC: synthetic-he.svs" log3 &&
	test -s s/tiles.faiss && test -s s/hits.mpk && test -s s/head.safetensors &&
	vipsheader s/synthetic-dense.heatmap.png &&
	! test -e s/zero-shot.json
'

test_done
