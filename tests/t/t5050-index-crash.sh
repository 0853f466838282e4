#!/bin/sh
# eosin-index killed while it replaces an archive: at each step of the write
# (EOSIN_INDEX_CRASH_AFTER=N stops it dead there, as kill -9 would), and by
# real SIGKILLs at increasing delays. Afterwards the archive must answer
# exactly as the old one or exactly as the new one: never an error, never a
# mixed pair. A torn pair that no writer can have made is still refused.
. "$(dirname "$0")/../lib.sh"

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
command -v $PY >/dev/null || test_skip_all "python3 missing"
V="$PY $ROOT/tests/t/t50-vectors.py"

# answers ARCHIVE: the ids of the top 5 hits of every query, one line each
answers() {
	eosin-query --index "$1" -k 5 q.mpk | eosin-cat --kind hit | jq -r .target
}

test_expect_success 'an old archive and the records of a new one' '
	$V records 3000 32 1 --clusters 30 | eosin-cat -r >old.mpk &&
	$V records 3000 32 2 --clusters 30 | eosin-cat -r >new.mpk &&
	$V records 10 32 3 --clusters 30 --kind text | eosin-cat -r >q.mpk &&
	eosin-index --out a.faiss old.mpk 2>/dev/null && answers a.faiss >old.ans &&
	eosin-index --out b.faiss new.mpk 2>/dev/null && answers b.faiss >new.ans &&
	! test_cmp old.ans new.ans >/dev/null
'

for step in 1 2 3; do
	test_expect_success "killed after step $step of the write: old or new, never broken" '
		rm -f a.faiss a.faiss.meta* a.faiss*.tmp.* &&
		eosin-index --out a.faiss old.mpk 2>/dev/null &&
		test_exit_code 137 env EOSIN_INDEX_CRASH_AFTER='$step' \
			eosin-index --out a.faiss new.mpk 2>/dev/null &&
		answers a.faiss >got.ans &&
		case '$step' in
		1|2) test_cmp old.ans got.ans ;;
		3) test_cmp new.ans got.ans && test -f a.faiss.meta.next ;;
		esac
	'
done

test_expect_success 'the next write after a crash completes the archive' '
	eosin-index --out a.faiss old.mpk 2>/dev/null &&
	! test -f a.faiss.meta.next &&
	answers a.faiss >got.ans && test_cmp old.ans got.ans &&
	eosin-index --out a.faiss --add new.mpk 2>/dev/null &&
	test $(eosin-cat a.faiss.meta | jq -s ".[0].count") = 6000
'

# Real kills at 0, 8, 16, ... ms into a replacement by 20000 vectors (about
# 0.15 s, the write itself a few ms): whatever the moment, the archive
# answers as the old or as the new one.
test_expect_success 'SIGKILL at any moment leaves the old or the new archive' '
	$V records 20000 32 4 --clusters 30 | eosin-cat -r >big.mpk &&
	eosin-index --out b.faiss big.mpk 2>/dev/null && answers b.faiss >new.ans &&
	! test_cmp old.ans new.ans >/dev/null &&
	rm -f a.faiss a.faiss.meta* &&
	eosin-index --out a.faiss old.mpk 2>/dev/null &&
	for ms in $(seq 0 8 200); do
		eosin-index --out a.faiss big.mpk 2>/dev/null & pid=$! &&
		sleep $(echo "$ms" | awk "{ print \$1 / 1000 }") &&
		{ kill -9 $pid 2>/dev/null; wait $pid; :; } &&
		answers a.faiss >got.ans || return 1
		if test_cmp old.ans got.ans >/dev/null 2>&1; then echo "$ms ms: old"
		elif test_cmp new.ans got.ans >/dev/null 2>&1; then echo "$ms ms: new"
		else echo "after $ms ms: neither old nor new" && return 1
		fi
		eosin-index --out a.faiss old.mpk 2>/dev/null || return 1
	done
'

test_expect_success 'a torn pair (new index, old sidecar, no .next) is refused' '
	eosin-index --out a.faiss old.mpk 2>/dev/null &&
	cp b.faiss a.faiss &&
	test_must_fail eosin-query --index a.faiss -k 5 q.mpk 2>err &&
	grep "does not match its sidecar" err
'

test_expect_success 'a stale .next matching neither file changes nothing' '
	eosin-index --out a.faiss old.mpk 2>/dev/null &&
	cp b.faiss.meta a.faiss.meta.next &&
	answers a.faiss >got.ans && test_cmp old.ans got.ans
'

test_done
