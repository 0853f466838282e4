#!/bin/sh
# eosin-bag --by slide: PathAlign slide bags, seeded sampling, report text.
. "$(dirname "$0")/../lib.sh"
# Debian's interpreter directly: a version-manager shim costs a second a call.
PY=$(command -v /usr/bin/python3 || command -v python3) || test_skip_all 'python3 missing'
GEN="$PY $TEST_DIR/gen/tiles.py"
CHECK="$PY $TEST_DIR/gen/bagcheck.py"

test_expect_success 'small slides: every patch, rows in raster order, report text' '
	$GEN --slides 3 --trees 2 --docs | eosin-cat -r >in.mpk &&
	eosin-cat --base64 in.mpk >in.json &&
	eosin-bag --by slide <in.mpk >out.mpk 2>err &&
	eosin-cat --check --strict out.mpk &&
	eosin-cat --base64 out.mpk >out.json &&
	jq -r "select(.k==\"bag\") | [.id, .slide, .method, .n, has(\"sampled_from\"), .caption, .txt_emb.n // 1] | @tsv" out.json >actual &&
	printf "S0%d\tS0%d\tslide\t170\tfalse\treport of S0%d\t1\n" 0 0 0 1 1 1 2 2 2 >expect &&
	test_cmp expect actual &&
	$CHECK rows in.json out.json &&
	jq -e "select(.k==\"bag\") | [.tile_ids[] | split(\"/\")[2] | split(\"_\") | map(tonumber) | [.[1], .[0]]] as \$p | \$p == (\$p | sort)" out.json >/dev/null
'

test_expect_success 'txt_emb is the doc'"'"'s, bit for bit' '
	jq -r "select(.k==\"doc\") | .txt_emb.data[\"\$base64\"]" in.json >expect &&
	jq -r "select(.k==\"bag\") | .txt_emb.data[\"\$base64\"]" out.json >actual &&
	test_cmp expect actual
'

test_expect_success 'sampling takes exactly N distinct patches and records sampled_from' '
	eosin-bag --by slide --max-patches 37 --seed 3 <in.mpk 2>err | eosin-cat --base64 >s3.json &&
	jq -e "select(.k==\"bag\") | .n == 37 and (.tile_ids | unique | length) == 37 and .sampled_from == 170" s3.json >/dev/null &&
	test $(jq -c "select(.k==\"bag\")" s3.json | wc -l) = 3 &&
	$CHECK rows in.json s3.json &&
	grep "3 bags written (3 sampled, 0 without text)" err
'

test_expect_success 'the sample is fixed by the seed' '
	eosin-bag --by slide --max-patches 37 --seed 3 <in.mpk | eosin-cat --base64 >again.json &&
	grep "\"k\":\"bag\"" s3.json >expect && grep "\"k\":\"bag\"" again.json >actual &&
	test_cmp expect actual &&
	eosin-bag --by slide --max-patches 37 --seed 4 <in.mpk | eosin-cat --base64 >s4.json &&
	jq -c "select(.k==\"bag\") | .tile_ids" s3.json >ids3 &&
	jq -c "select(.k==\"bag\") | .tile_ids" s4.json >ids4 &&
	! cmp -s ids3 ids4
'

test_expect_success 'the sample does not depend on input order' '
	$GEN --slides 3 --trees 2 --docs --shuffle 11 | eosin-cat -r |
		eosin-bag --by slide --unsorted --max-patches 37 --seed 3 | eosin-cat --base64 |
		jq -c "select(.k==\"bag\")" | sort >shuf &&
	jq -c "select(.k==\"bag\")" s3.json | sort >sorted &&
	test_cmp sorted shuf
'

test_expect_success 'the sample is spread over the slide (not the first N read)' '
	# the first tree alone has 85 > 37 patches, at x < 4096
	jq -e "select(.k==\"bag\") | [.tile_ids[] | split(\"/\")[2] | split(\"_\")[0] | tonumber >= 4096] | any and (all | not)" s3.json >/dev/null
'

test_expect_success '--mag keeps one magnification; extent is then written' '
	eosin-bag --by slide --mag 20 <in.mpk 2>err | eosin-cat >m.json &&
	jq -r "select(.k==\"bag\") | [.n, .extent, (.tile_mag | unique | tostring)] | @tsv" m.json | sort -u >actual &&
	printf "32\t1024\t[20]\n" >expect &&
	test_cmp expect actual &&
	grep "414 patches of other magnifications skipped" err
'

test_expect_success 'slides without a doc are kept without text, or dropped with --require-text' '
	$GEN --slides 2 --depth 0 --trees 2 | eosin-cat -r >notext.mpk &&
	eosin-bag --by slide <notext.mpk 2>err | eosin-cat >nt.json &&
	jq -e "select(.k==\"bag\") | has(\"caption\") or has(\"txt_emb\") | not" nt.json >/dev/null &&
	test $(jq -c "select(.k==\"bag\")" nt.json | wc -l) = 2 &&
	grep "2 bags written (0 sampled, 2 without text), 0 dropped" err &&
	eosin-bag --by slide --require-text <notext.mpk 2>err | eosin-cat >nt.json &&
	test $(jq -c "select(.k==\"bag\")" nt.json | wc -l) = 0 &&
	grep "0 bags written (0 sampled, 2 without text), 2 dropped" err
'

test_expect_success 'a slide with a part label meets the doc of that part' '
	$GEN --depth 0 --trees 2 | jq -c ". + {part: \"B\"}" >p.json &&
	for part in A B; do
		echo "{\"k\":\"doc\",\"v\":1,\"id\":\"S00/$part\",\"slide\":\"S00\",\"part\":\"$part\",\"caption\":\"part $part text\"}"
	done >>p.json &&
	eosin-cat -r p.json | eosin-bag --by slide 2>err | eosin-cat >pb.json &&
	jq -r "select(.k==\"bag\") | [.caption, .part] | @tsv" pb.json >actual &&
	printf "part B text\tB\n" >expect &&
	test_cmp expect actual &&
	grep "1 docs unused" err
'

test_expect_success 'several parts and no part on the slide: no text, counted' '
	grep -v "\"k\":\"tile\"" p.json >q.json &&
	$GEN --depth 0 --trees 2 >>q.json &&
	eosin-cat -r q.json | eosin-bag --by slide 2>err | eosin-cat >qb.json &&
	jq -e "select(.k==\"bag\") | has(\"caption\") | not" qb.json &&
	grep "1 slides with several docs and no part" err
'

test_expect_success 'two docs for one part: the second is an error' '
	grep -v "S00/A" p.json >r.json &&
	echo "{\"k\":\"doc\",\"v\":1,\"id\":\"S00/B2\",\"slide\":\"S00\",\"part\":\"B\",\"caption\":\"again\"}" >>r.json &&
	eosin-cat -r r.json >r.mpk &&
	test_must_fail eosin-bag --by slide <r.mpk >/dev/null 2>err &&
	grep "record 4 (id .S00/B2.): field .part.: a second doc for part .B. of slide .S00." err
'

test_done
