#!/bin/sh
# eosin-index ids beyond 2^32 (--first-id) through search, the sidecar,
# merging, --add and the typed stream; --kind keeps other kinds out.
. "$(dirname "$0")/../lib.sh"

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
command -v $PY >/dev/null || test_skip_all "python3 missing"
V="$PY $ROOT/tests/t/t50-vectors.py"
BIG=6000000000          # > 2^32
TOP=4611686018427387904 # 2^62, the largest id an archive may reach

test_expect_success 'fabricate records and queries' '
	$V records 600 16 1 --clusters 12 >base.json &&
	eosin-cat -r base.json >base.mpk &&
	head -n 300 base.json | eosin-cat -r >h1.mpk &&
	tail -n 300 base.json | eosin-cat -r >h2.mpk &&
	$V records 8 16 2 --clusters 12 --kind text | sed "s/\"S0\//\"q/" | eosin-cat -r >q.mpk &&
	eosin-index --out plain.faiss base.mpk 2>/dev/null &&
	eosin-query --index plain.faiss -k 10 q.mpk | eosin-cat --kind hit >plain.json
'

# The same hits, ids shifted by exactly --first-id (compared as text: jq's
# numbers are doubles, exact only to 2^53).
test_expect_success '--first-id: the same hits, ids from 6e9, in the sidecar too' '
	eosin-index --out big.faiss --first-id $BIG base.mpk 2>err &&
	grep "ids from $BIG" err &&
	eosin-cat big.faiss.meta | head -n 1 >head.json &&
	eosin-cat -r head.json | eosin-cat --check --strict &&
	grep "\"first_id\":$BIG[,}]" head.json &&
	eosin-query --index big.faiss -k 10 q.mpk >big.mpk &&
	eosin-cat --check --strict big.mpk &&
	eosin-cat --kind hit big.mpk >big.json &&
	jq -c "del(.index_id)" plain.json >a && jq -c "del(.index_id)" big.json >b && test_cmp a b &&
	sed "s/.*\"index_id\":\([0-9]*\).*/\1/" plain.json >pi &&
	sed "s/.*\"index_id\":\([0-9]*\).*/\1/" big.json >bi &&
	test $(wc -l <bi) = 80 &&
	$PY -c "import sys
p = [int(l) for l in open(\"pi\")]; b = [int(l) for l in open(\"bi\")]
assert all(y == x + $BIG and y > 2**32 for x, y in zip(p, b)), (p[:3], b[:3])"
'

test_expect_success 'merged shards and --add keep 64-bit ids in order' '
	eosin-index --out s1.faiss --first-id 9 h1.mpk 2>/dev/null &&
	eosin-index --out s2.faiss h2.mpk 2>/dev/null &&
	eosin-index --merge --first-id $BIG --out m.faiss s1.faiss s2.faiss 2>/dev/null &&
	eosin-query --index m.faiss -k 10 q.mpk | eosin-cat --kind hit >m.json &&
	test_cmp big.json m.json &&
	eosin-index --out g.faiss --first-id $BIG h1.mpk 2>/dev/null &&
	eosin-index --out g.faiss --add h2.mpk 2>/dev/null &&
	eosin-query --index g.faiss -k 10 q.mpk | eosin-cat --kind hit >g.json &&
	test_cmp big.json g.json &&
	eosin-index --merge --out m0.faiss s1.faiss s2.faiss 2>/dev/null &&
	eosin-cat m0.faiss.meta | head -n 1 | grep "\"first_id\":9[,}]"
'

test_expect_success 'ids past 2^62 are refused; --first-id with --add is a usage error' '
	test_exit_code 1 eosin-index --out top.faiss --first-id $((TOP - 10)) base.mpk 2>err &&
	grep "pass the largest" err && ! test -e top.faiss &&
	eosin-index --out top.faiss --first-id $((TOP - 600)) base.mpk 2>/dev/null &&
	eosin-query --index top.faiss -k 600 q.mpk | eosin-cat --kind hit |
		sed "s/.*\"index_id\":\([0-9]*\).*/\1/" | sort -n | tail -n 1 >last &&
	echo $((TOP - 1)) >want && test_cmp want last &&
	test_exit_code 2 eosin-index --out g.faiss --add --first-id 5 h2.mpk 2>err &&
	grep "first-id" err &&
	test_exit_code 2 eosin-index --out x.faiss --first-id -1 h2.mpk 2>/dev/null
'

test_expect_success '--kind indexes only the kinds named, and counts the others' '
	$V records 50 16 3 --kind doc | sed "s/\"S0\//\"d/" | eosin-cat -r >docs.mpk &&
	cat base.mpk docs.mpk >mixed.mpk &&
	eosin-index --out all.faiss mixed.mpk 2>err && grep "650 vectors" err &&
	eosin-index --out tiles.faiss --kind tile mixed.mpk 2>err &&
	grep "600 vectors.*50 records of other kinds skipped" err &&
	eosin-query --index tiles.faiss -k 10 q.mpk | eosin-cat --kind hit >t.json &&
	test_cmp plain.json t.json &&
	eosin-index --out both.faiss --kind doc,tile mixed.mpk 2>err && grep "650 vectors" err &&
	test_exit_code 2 eosin-index --out x.faiss --kind "tile;rm" mixed.mpk 2>/dev/null
'

test_done
