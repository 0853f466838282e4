#!/bin/sh
# eosin-bag with unsorted input: spill to partitions, same bags as sorted.
. "$(dirname "$0")/../lib.sh"
# Debian's interpreter directly: a version-manager shim costs a second a call.
PY=$(command -v /usr/bin/python3 || command -v python3) || test_skip_all 'python3 missing'
GEN="$PY $TEST_DIR/gen/tiles.py"

bags() { eosin-cat --base64 "$1" | jq -c 'select(.k=="bag")' | sort; }

test_expect_success 'sorted runs, for reference' '
	$GEN --slides 4 --trees 3 --txt --keywords --docs --sentences 2 | eosin-cat -r >sorted.mpk &&
	$GEN --slides 4 --trees 3 --txt --keywords --docs --sentences 2 --shuffle 1 | eosin-cat -r >shuf.mpk &&
	for m in parent slide region; do
		eosin-bag --by $m --max-patches 100 <sorted.mpk >ref-$m.mpk 2>err &&
		grep " 0 records spilled" err || return 1
	done &&
	test $(eosin-cat ref-parent.mpk | grep -c "\"k\":\"bag\"") = 12
'

test_expect_success 'grouped mode refuses a slide that comes back, naming the record' '
	test_must_fail eosin-bag --by slide <shuf.mpk >/dev/null 2>err &&
	grep "eosin-bag: <stdin>: record [0-9]* (id .S0[0-3]/.*): field .slide.: slide .S0[0-3]. comes back after its bags were written (input not grouped by slide; use --unsorted)" err
'

for m in parent slide region; do
	test_expect_success "--unsorted: shuffled input, same $m bags" "
		eosin-bag --by $m --unsorted --max-patches 100 <shuf.mpk >u-$m.mpk &&
		bags ref-$m.mpk >expect && bags u-$m.mpk >actual &&
		test_cmp expect actual
	"
	test_expect_success "--unsorted --memory 0: every group spilled, same $m bags" "
		eosin-bag --by $m --unsorted --memory 0 --tmpdir . --max-patches 100 <shuf.mpk >s-$m.mpk 2>err &&
		grep -v ' 0 records spilled' err &&
		bags ref-$m.mpk >expect && bags s-$m.mpk >actual &&
		test_cmp expect actual &&
		test -z \"\$(ls | grep eosin-bag)\"
	"
done

test_expect_success '--max-open 1 with interleaved trees spills, same bags' '
	$GEN --slides 2 --trees 3 --txt --keywords --level-order | eosin-cat -r >lvl.mpk &&
	eosin-bag --max-open 1 <lvl.mpk >lvl-bags.mpk 2>err &&
	grep -v " 0 records spilled" err &&
	$GEN --slides 2 --trees 3 --txt --keywords | eosin-cat -r | eosin-bag >dfs-bags.mpk &&
	bags dfs-bags.mpk >expect && bags lvl-bags.mpk >actual &&
	test_cmp expect actual
'

test_expect_success 'unsorted output order: groups held in memory first, by first appearance' '
	eosin-bag --by slide --unsorted <shuf.mpk | eosin-cat | jq -r "select(.k==\"bag\") | .id" >actual &&
	eosin-cat shuf.mpk | jq -r "select(.k==\"tile\") | .slide" | awk "!seen[\$0]++" >expect &&
	test_cmp expect actual
'

test_expect_success 'a spill directory that cannot be written is an error' '
	test_must_fail eosin-bag --unsorted --memory 0 --tmpdir ./nonexistent <shuf.mpk >/dev/null 2>err &&
	grep "cannot create a spill file in .\./nonexistent." err
'

test_done
