#!/bin/sh
# eosin-align --threads N: the bags' Q-Former runs go in parallel, each
# thread summing its bags' gradients, the threads' sums added in a fixed
# order. What eosin-align(1) promises: the same seed, input and thread count
# give a bit-identical checkpoint, --resume included; another thread count
# gives the same training up to float rounding.
. "$(dirname "$0")/../lib.sh"

GEN="$ROOT/tests/parity/align_gen.py"
command -v python3 >/dev/null || test_skip_all 'python3 missing'
command -v jq >/dev/null || test_skip_all 'jq missing'

# loss of step STEP in a metrics file
loss() { jq -r "select(.step == $1 and .loss != null) | .loss" "$2"; }
# |A - B| <= TOL (1 + |B|)?
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= t * (1 + m)) }'; }
# losses of steps 1, 6 and 12 in ONE.jsonl (1 thread) and TWO.jsonl (2
# threads) present and within 1e-4
same_losses() {
	for s in 1 6 12; do
		l1=$(loss $s "$1") && l2=$(loss $s "$2") && test -n "$l1" && test -n "$l2" &&
		echo "# step $s: loss $l1 (1 thread) $l2 (2 threads)" &&
		close "$l2" "$l1" 1e-4 || return 1
	done
}

QF="--dim 16 --queries 2 --qdim 16 --heads 2 --ffn 32 --steps 12 --batch 8 --seed 4"
PF="--dim 16 --hidden 16 --queries 2 --qdim 16 --heads 2 --qformer-layers 1 --ffn 32"
PF="$PF --loss itc=1,region=0.5 --steps 12 --batch 8 --seed 4"

test_expect_success 'synthetic bags, and region bags with positions' '
	python3 "$GEN" --bags 40 --n 12 --seed 8 >bags.jsonl &&
	eosin-cat -r bags.jsonl >bags.mpk &&
	python3 "$GEN" --method region --pos --bags 40 --n 9 --seed 9 >rg.jsonl &&
	eosin-cat -r rg.jsonl >rg.mpk
'

test_expect_success 'Q-Former, 2 threads: the same seed gives the same checkpoint' '
	eosin-align --train --out a.st $QF --threads 2 --metrics a.jsonl bags.mpk 2>/dev/null &&
	eosin-align --train --out b.st $QF --threads 2 bags.mpk 2>/dev/null &&
	cmp a.st b.st
'

test_expect_success 'Q-Former, 2 threads: stop and --resume == straight through' '
	eosin-align --train --out half.st $QF --threads 2 --stop-after 5 bags.mpk 2>/dev/null &&
	eosin-align --train --out resumed.st --resume half.st $QF --threads 2 bags.mpk 2>/dev/null &&
	cmp a.st resumed.st
'

test_expect_success 'Q-Former: 1 and 2 threads train alike (losses within 1e-4)' '
	eosin-align --train --out one.st $QF --threads 1 --metrics one.jsonl bags.mpk 2>/dev/null &&
	same_losses one.jsonl a.jsonl
'

test_expect_success 'Region + Slide Q-Formers, 2 threads: same seed, same checkpoint; resume' '
	eosin-align --train --out p.st $PF --threads 2 --metrics p.jsonl rg.mpk 2>/dev/null &&
	eosin-align --train --out q.st $PF --threads 2 rg.mpk 2>/dev/null &&
	cmp p.st q.st &&
	eosin-align --train --out phalf.st $PF --threads 2 --stop-after 7 rg.mpk 2>/dev/null &&
	eosin-align --train --out pres.st --resume phalf.st $PF --threads 2 rg.mpk 2>/dev/null &&
	cmp p.st pres.st
'

test_expect_success 'Region + Slide Q-Formers: 1 and 2 threads train alike' '
	eosin-align --train --out p1.st $PF --threads 1 --metrics p1.jsonl rg.mpk 2>/dev/null &&
	same_losses p1.jsonl p.jsonl
'

test_expect_success 'heads only, 2 threads: the same seed gives the same checkpoint' '
	eosin-align --train --out h1.st --dim 16 --hidden 32 --steps 12 --batch 16 --threads 2 \
		bags.mpk 2>/dev/null &&
	eosin-align --train --out h2.st --dim 16 --hidden 32 --steps 12 --batch 16 --threads 2 \
		bags.mpk 2>/dev/null &&
	cmp h1.st h2.st
'

test_done
