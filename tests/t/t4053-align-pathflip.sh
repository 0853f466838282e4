#!/bin/sh
# eosin-align, PathFLIP with Q-Formers: a Region Q-Former over each region's
# patches gives the region features that the region-level loss contrasts
# with the sub-captions, a Slide Q-Former over those gives the slide feature
# for ITC. Synthetic region bags (tests/parity/align_gen.py --method region
# --pos: every region r has its own latent z_r = z_b + 0.7 u_r, its patches
# A z_r + noise, its sentence T z_r + noise; the caption T z_b + noise).
. "$(dirname "$0")/../lib.sh"

GEN="$ROOT/tests/parity/align_gen.py"
command -v python3 >/dev/null || test_skip_all 'python3 missing'
command -v jq >/dev/null || test_skip_all 'jq missing'

metric() { jq -r "select(.step == $2 and .$1 != null) | .$1" "$3"; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
QF="--dim 32 --hidden 32 --queries 2 --qdim 16 --heads 2 --qformer-layers 1 --ffn 32 --threads 1"

test_expect_success 'region bags with positions' '
	python3 "$GEN" --method region --pos --bags 100 --n 9 --val-every 5 --seed 6 >rg.jsonl &&
	eosin-cat -r rg.jsonl >rg.mpk &&
	eosin-cat --check --strict rg.mpk
'

test_expect_success 'Region + Slide Q-Formers: region loss falls, held-out R@1 rises from chance (1/20)' '
	eosin-align --train --out rq.st $QF --loss itc=1,region=0.5 --epochs 20 --batch 16 \
		--lr 3e-3 --eval-every 1000 --metrics rq.jsonl rg.mpk 2>/dev/null &&
	g1=$(metric region 1 rq.jsonl) && gN=$(metric region 100 rq.jsonl) &&
	r0=$(metric i2t_r1 0 rq.jsonl) && r1=$(metric i2t_r1 100 rq.jsonl) &&
	echo "# region loss $g1 -> $gN, held-out R@1 $r0 -> $r1" &&
	ge "$g1" "$(echo "$gN" | awk "{ print \$1 + 0.5 }")" && ge 0.2 "$r0" && ge "$r1" 0.35
'

test_expect_success 'the checkpoint holds both Q-Formers' '
	head -c 100000 rq.st | tr -c "[:print:]" "\n" | grep -o "\"slide_qformer.0.cross.kv.weight\"" >names &&
	head -c 100000 rq.st | tr -c "[:print:]" "\n" | grep -o "\"qformer.0.cross.kv.weight\"" >>names &&
	test $(wc -l <names) = 2
'

test_expect_success '--apply: one unit joint_emb per region bag, regions used' '
	eosin-align --apply rq.st rg.mpk | eosin-cat --vectors |
		jq -e "select(.k == \"bag\") | .joint_emb | .n == 1 and ((.values | map(. * .) | add) - 1 | fabs) < 1e-4" >ok &&
	test $(grep -c true ok) = 100 &&
	head -1 rg.jsonl | jq -c "del(.region, .nregions)" >one.jsonl &&
	head -1 rg.jsonl >both.jsonl && cat one.jsonl >>both.jsonl &&
	eosin-cat -r both.jsonl | eosin-align --apply rq.st | eosin-cat --vectors |
		jq -c "select(.k == \"bag\") | .joint_emb.values" >two &&
	test $(sort -u two | wc -l) = 2
'

test_expect_success 'a region without patches: exit 1 naming record, id and field' '
	head -3 rg.jsonl | jq -c "if .id == \"bag0002\" then .nregions = 4 else . end" | eosin-cat -r >bad.mpk &&
	test_exit_code 1 eosin-align --train --out bad.st $QF --loss itc=1,region=1 bad.mpk 2>err &&
	grep "bad.mpk: record 3 (id .bag0002.): field .region. leaves region 3 of 4 empty" err &&
	test_exit_code 1 eosin-align --apply rq.st bad.mpk >/dev/null 2>err &&
	grep "record 3 (id .bag0002.): field .region. leaves region 3 of 4 empty" err
'

test_expect_success 'doc records may carry sent_pos (eosin-doc(5))' '
	echo "{\"k\":\"doc\",\"v\":1,\"id\":\"s/report\",\"slide\":\"s\",\"sentences\":[\"a.\",\"b.\"],\"sent_pos\":[[10,20],null]}" |
		eosin-cat -r | eosin-cat --check --strict &&
	echo "{\"k\":\"doc\",\"v\":1,\"id\":\"s/report\",\"slide\":\"s\",\"sent_pos\":3}" |
		eosin-cat -r >badpos.mpk && test_must_fail eosin-cat --check --strict badpos.mpk 2>err &&
	grep "sent_pos" err
'

test_done
