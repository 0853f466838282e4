#!/bin/sh
# eosin-bag: bad input is named (input, record, id, field); --rejects; write errors; usage.
. "$(dirname "$0")/../lib.sh"
# Debian's interpreter directly: a version-manager shim costs a second a call.
PY=$(command -v /usr/bin/python3 || command -v python3) || test_skip_all 'python3 missing'
GEN="$PY $TEST_DIR/gen/tiles.py"

# mutate ID JQ: apply JQ to the tile ID of a 2-slide stream (one tree each)
mutate() { $GEN --slides 2 --depth 1 | jq -c "if .id == \"$1\" then $2 else . end" | eosin-cat -r; }

test_expect_success 'a tile without img_emb: error names it, bags before it are written' '
	mutate S01/10x/2048_0 "del(.img_emb)" >bad.mpk &&
	test_exit_code 1 eosin-bag --by slide <bad.mpk >out.mpk 2>err &&
	grep "^eosin-bag: <stdin>: record 8 (id .S01/10x/2048_0.): field .img_emb. is missing$" err &&
	eosin-cat out.mpk | jq -r "select(.k==\"bag\") | .id" >actual &&
	echo S00 >expect && test_cmp expect actual
'

test_expect_success 'the input file is named' '
	test_must_fail eosin-bag --by slide bad.mpk >/dev/null 2>err &&
	grep "^eosin-bag: bad.mpk: record 8 (id .S01/10x/2048_0.): field .img_emb. is missing$" err
'

test_expect_success 'a field of the wrong type' '
	mutate S00/10x/0_0 ".x = \"left\"" >bad.mpk &&
	test_must_fail eosin-bag <bad.mpk >/dev/null 2>err &&
	grep "<stdin>: record 2 (id .S00/10x/0_0.): field .x. is not an integer" err
'

test_expect_success 'a NaN in an embedding' '
	nan=$($PY -c "import base64,struct; print(base64.b64encode(struct.pack(\"<8f\", *[float(\"nan\")] * 8)).decode())") &&
	mutate S00/10x/2048_2048 ".img_emb.data[\"\$base64\"] = \"$nan\"" >bad.mpk &&
	test_must_fail eosin-bag <bad.mpk >/dev/null 2>err &&
	grep "record 5 (id .S00/10x/2048_2048.): field .img_emb.: row 0 element 0 is NaN" err
'

test_expect_success 'embedding dims that differ within a bag' '
	$GEN --slides 2 --depth 1 --dim 4 | jq -c "select(.id == \"S00/10x/0_2048\") | .img_emb" >dim4 &&
	mutate S00/10x/0_2048 ".img_emb = $(cat dim4)" >bad.mpk &&
	test_must_fail eosin-bag --by slide <bad.mpk >/dev/null 2>err &&
	grep "record 4 (id .S00/10x/0_2048.): field .img_emb.: dim 4 differs from 8 in the rest of bag .S00." err
'

test_expect_success 'different models in one bag' '
	mutate S00/10x/2048_0 ".img_emb.hash = \"deadbeef\"" >bad.mpk &&
	test_must_fail eosin-bag <bad.mpk >/dev/null 2>err &&
	grep "record 3 (id .S00/10x/2048_0.): field .img_emb.: hash .deadbeef. differs from .695812bd. in the rest of bag .S00/5x/0_0." err
'

test_expect_success 'a quadtree tile without root' '
	mutate S00/10x/2048_0 "del(.root)" >bad.mpk &&
	test_must_fail eosin-bag <bad.mpk >/dev/null 2>err &&
	grep "record 3 (id .S00/10x/2048_0.): field .root. is missing" err
'

test_expect_success 'a duplicate tile' '
	$GEN --depth 1 >dup.json && grep "S00/10x/0_0\"" dup.json >one.json && cat one.json >>dup.json &&
	eosin-cat -r dup.json | test_must_fail eosin-bag >/dev/null 2>err &&
	grep "record 6 (id .S00/10x/0_0.): field .id.: duplicate in bag .S00/5x/0_0." err
'

test_expect_success '--rejects: bad records go there, the rest carry on' '
	$GEN --slides 2 --depth 1 | jq -c "if .id == \"S00/10x/0_0\" then del(.img_emb) elif .id == \"S01/10x/0_2048\" then .img_emb.model = \"other\" else . end" |
		eosin-cat -r >bad.mpk &&
	eosin-bag --rejects rej.mpk <bad.mpk >out.mpk 2>err &&
	eosin-cat rej.mpk | jq -r .id >actual &&
	printf "S00/10x/0_0\nS01/10x/0_2048\n" >expect &&
	test_cmp expect actual &&
	eosin-cat out.mpk | jq -r "select(.k==\"bag\") | [.id, .n] | @tsv" >actual &&
	printf "S00/5x/0_0\t4\nS01/5x/0_0\t4\n" >expect &&
	test_cmp expect actual &&
	grep "record 2 (id .S00/10x/0_0.): field .img_emb. is missing" err &&
	grep "2 rejected" err
'

test_expect_success '--rejects takes the descendants of a missing parent' '
	$GEN --drop S00/10x/0_0 >o.json &&
	eosin-cat -r o.json | eosin-bag --rejects rej.mpk >out.mpk 2>err &&
	eosin-cat rej.mpk | jq -r .id | sort >actual &&
	jq -r "select(.parent == \"S00/10x/0_0\" or (.parent // \"\" | startswith(\"S00/20x/0_\") or startswith(\"S00/20x/1024_\")) and (.x < 2048 and .y < 2048)) | .id" o.json | sort >expect &&
	test $(wc -l <expect) = 20 &&
	test_cmp expect actual &&
	eosin-cat out.mpk | jq -r "select(.k==\"bag\") | [.n, .complete] | @tsv" >actual &&
	printf "64\tfalse\n" >expect && test_cmp expect actual
'

test_expect_success 'truncated input is an error' '
	$GEN --depth 1 | eosin-cat -r >t.mpk &&
	head -c 300 t.mpk | test_exit_code 1 eosin-bag >/dev/null 2>err &&
	grep "truncated record" err
'

test_expect_success 'a write error (/dev/full) fails' '
	$GEN --depth 1 | eosin-cat -r >ok.mpk &&
	test_exit_code 1 eosin-bag <ok.mpk >/dev/full 2>err &&
	grep "write error" err
'

test_expect_success 'usage errors exit 2 with the synopsis' '
	test_exit_code 2 eosin-bag --by tree </dev/null 2>err &&
	grep "^usage: eosin-bag " err &&
	test_exit_code 2 eosin-bag --bogus </dev/null 2>err &&
	test_exit_code 2 eosin-bag --max-patches 0 </dev/null 2>err &&
	test_exit_code 2 eosin-bag --by slide --complete-only </dev/null 2>err
'

test_expect_success 'usage() and the manual'"'"'s SYNOPSIS agree' '
	test_exit_code 2 eosin-bag --help 2>actual;
	sed -n "/^\.SH SYNOPSIS/{n;p;}" "$ROOT/man/man1/eosin-bag.1" | sed -e "s/\\\\-/-/g" -e "s/^/usage: /" >expect &&
	test_cmp expect actual
'

test_expect_success 'every field of a tile is checked, and the message names it' '
	while IFS="|" read -r by m says; do
		mutate S00/10x/2048_0 "$m" >bad.mpk &&
		test_must_fail eosin-bag --by $by <bad.mpk >/dev/null 2>err &&
		grep "<stdin>: record 3 (id .*): $says" err >/dev/null ||
		{ echo "--by $by, $m: want \"$says\", got:"; cat err; return 1; }
	done <<-\EOT
	slide|del(.id)|field .id. is missing$
	slide|del(.slide)|field .slide. is missing$
	parent|del(.root)|field .root. is missing$
	slide|del(.mag)|field .mag. is missing$
	slide|.mag = "x"|field .mag. is not a number$
	slide|del(.x)|field .x. is missing$
	slide|.y = 1.5|field .y. is not an integer$
	slide|.extent = 0|field .extent. is 0, not positive$
	parent|del(.depth)|field .depth. is missing$
	parent|.depth = 9|field .depth. is 9, not 0..3$
	parent|.root = .id|field .root. is the tile.s own id at depth 1$
	parent|del(.parent)|field .parent. is missing$
	slide|del(.img_emb)|field .img_emb. is missing$
	parent|.keywords = 3|field .keywords. is not an array of strings$
	parent|.kw_emb = .img_emb|field .kw_emb. has 1 rows for 0 keywords$
	EOT
'

test_done
