#!/bin/sh
# eosin-bag --by parent: MR-PLIP quadtree bags from synthetic embedded tiles.
. "$(dirname "$0")/../lib.sh"
# Debian's interpreter directly: a version-manager shim costs a second a call.
PY=$(command -v /usr/bin/python3 || command -v python3) || test_skip_all 'python3 missing'
GEN="$PY $TEST_DIR/gen/tiles.py"
CHECK="$PY $TEST_DIR/gen/bagcheck.py"

test_expect_success 'full trees: one bag of 85 per root, schema-valid' '
	$GEN --hdr --slides 2 --trees 3 --txt --keywords | eosin-cat -r >in.mpk &&
	eosin-cat --base64 in.mpk >in.json &&
	eosin-bag --by parent <in.mpk >out.mpk 2>err &&
	eosin-cat --check --strict out.mpk &&
	eosin-cat --base64 out.mpk >out.json &&
	jq -r "select(.k==\"bag\") | [.id, .n, .complete, .method] | @tsv" out.json >actual &&
	jq -r "select(.k==\"tile\" and .depth==0) | [.id, 85, true, \"mrplip\"] | @tsv" in.json >expect &&
	test_cmp expect actual &&
	grep "6 bags written (6 complete, 0 incomplete), 0 dropped, 0 rejected, 0 records spilled" err
'

test_expect_success 'hdr records first: input hdr, then ours' '
	jq -r "select(.k==\"hdr\") | .prog" out.json >actual &&
	printf "gen\neosin-bag\n" >expect &&
	test_cmp expect actual &&
	jq -r .k out.json | head -2 | sort -u >actual &&
	echo hdr >expect && test_cmp expect actual
'

test_expect_success 'img_emb, txt_emb, kw_emb rows are the inputs, bit for bit' '
	$CHECK rows in.json out.json
'

test_expect_success 'parent_index points at each tile'"'"'s parent, rows depth-first' '
	$CHECK tree in.json out.json
'

test_expect_success 'every input tile is in exactly one bag' '
	jq -r "select(.k==\"bag\") | .tile_ids[]" out.json | sort >actual &&
	jq -r "select(.k==\"tile\") | .id" in.json | sort >expect &&
	test_cmp expect actual
'

test_expect_success 'keywords are deduplicated by text' '
	jq -e "select(.k==\"bag\") | (.keywords | length) == (.keywords | unique | length)" out.json >/dev/null &&
	jq -e "select(.k==\"bag\") | .kw_emb.n == (.keywords | length)" out.json >/dev/null
'

test_expect_success 'incomplete trees are kept with complete=false' '
	$GEN --trees 2 --drop S00/40x/0_0 --drop S00/20x/4608_4608 | eosin-cat -r >inc.mpk &&
	eosin-bag <inc.mpk 2>err | eosin-cat >inc.json &&
	jq -r "select(.k==\"bag\") | [.id, .n, .complete] | @tsv" inc.json >actual &&
	printf "S00/5x/4096_4096\t85\ttrue\nS00/5x/0_0\t84\tfalse\n" >expect &&
	test_cmp expect actual &&
	grep "2 bags written (1 complete, 1 incomplete), 0 dropped" err
'

test_expect_success '--complete-only drops them, and says so' '
	eosin-bag --complete-only <inc.mpk 2>err | eosin-cat >inc.json &&
	jq -r "select(.k==\"bag\") | .id" inc.json >actual &&
	echo S00/5x/4096_4096 >expect &&
	test_cmp expect actual &&
	grep "1 bags written (1 complete, 0 incomplete), 1 dropped" err
'

test_expect_success 'a missing subtree (20x parent absent) is an error naming its children' '
	$GEN --drop S00/20x/0_0 | eosin-cat -r >orph.mpk &&
	test_must_fail eosin-bag <orph.mpk >/dev/null 2>err &&
	grep "record [0-9]* (id .S00/40x/0_0.): field .parent.: tile .S00/20x/0_0. never appears in tree .S00/5x/0_0." err
'

test_expect_success 'txt_emb is left out when a patch lacks one, and counted' '
	$GEN --txt | jq -c "if .id == \"S00/40x/512_512\" then del(.txt_emb) else . end" |
		eosin-cat -r | eosin-bag 2>err | eosin-cat >a.json &&
	jq -e "select(.k==\"bag\") | has(\"txt_emb\") | not" a.json &&
	grep "1 without txt_emb (some patches lack one)" err
'

test_expect_success 'roots interleaved within a slide (level order) give the same bags' '
	$GEN --slides 2 --trees 3 --txt --level-order | eosin-cat -r | eosin-bag | eosin-cat --base64 |
		jq -c "select(.k==\"bag\")" | sort >lvl &&
	$GEN --slides 2 --trees 3 --txt | eosin-cat -r | eosin-bag | eosin-cat --base64 |
		jq -c "select(.k==\"bag\")" | sort >dfs &&
	test_cmp dfs lvl
'

test_expect_success 'doc and other records pass through in parent mode' '
	$GEN --docs | eosin-cat -r >d.mpk &&
	printf "{\"k\":\"note\",\"v\":1,\"text\":\"x\"}\n" | eosin-cat -r >>d.mpk &&
	eosin-bag <d.mpk | eosin-cat | jq -r .k >actual &&
	printf "hdr\nbag\ndoc\nnote\n" >expect &&
	test_cmp expect actual
'

test_expect_success 'f16 embeddings stay f16, bit for bit' '
	$GEN --dtype f16 --trees 2 | eosin-cat -r >h.mpk &&
	eosin-cat --base64 h.mpk >h.json &&
	eosin-bag <h.mpk | eosin-cat --base64 >hb.json &&
	jq -e "select(.k==\"bag\") | .img_emb.dtype == \"f16\"" hb.json &&
	$CHECK rows h.json hb.json
'

test_done
