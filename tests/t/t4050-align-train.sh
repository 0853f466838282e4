#!/bin/sh
# eosin-align --train and --apply on synthetic bags with a known latent
# structure (tests/parity/align_gen.py: each bag has a latent z; patches are
# A z + noise, the caption T z + noise, A and T two different random linear
# maps). A model that learns retrieves held-out captions from patches.
. "$(dirname "$0")/../lib.sh"

GEN="$ROOT/tests/parity/align_gen.py"
command -v python3 >/dev/null || test_skip_all 'python3 missing'
command -v jq >/dev/null || test_skip_all 'jq missing'

# value of KEY in the metrics line of step STEP that has KEY
metric() { jq -r "select(.step == $2 and .$1 != null) | .$1" "$3"; }
# is A >= B (floats)?
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

test_expect_success 'make synthetic bags: 200 slides, every 5th held out' '
	python3 "$GEN" --bags 200 --val-every 5 --seed 3 >bags.jsonl &&
	eosin-cat -r bags.jsonl >bags.mpk &&
	eosin-cat --check --strict bags.mpk
'

test_expect_success 'usage errors exit 2' '
	test_exit_code 2 eosin-align 2>err &&
	grep "^usage: eosin-align --train" err &&
	test_exit_code 2 eosin-align --train bags.mpk &&
	test_exit_code 2 eosin-align --train --out x --loss bogus=1 bags.mpk &&
	test_exit_code 2 eosin-align --train --apply h --out x bags.mpk &&
	test_exit_code 2 eosin-align --train --out x --queries 2 --qdim 30 bags.mpk
'

test_expect_success 'usage() prints the SYNOPSIS of eosin-align(1)' '
	eosin-align 2>&1 | sed "s/^usage: //; s/^       //" >usage &&
	sed -n "/^\.SH SYNOPSIS/,/^\.fi/p" "$ROOT/man/man1/eosin-align.1" | grep "^eosin" >synopsis &&
	test_cmp synopsis usage
'

test_expect_success 'linear heads + ITC: held-out R@1 rises from chance (1/40) to near 1' '
	eosin-align --train --out lin.st --dim 32 --epochs 30 --batch 16 --lr 3e-3 \
		--eval-every 100 --metrics lin.jsonl --plot lin.svg --threads 1 bags.mpk 2>log &&
	r0=$(metric i2t_r1 0 lin.jsonl) && r1=$(metric i2t_r1 300 lin.jsonl) &&
	t1=$(metric t2i_r1 300 lin.jsonl) &&
	echo "R@1 at start $r0, at end $r1 (text to image $t1)" &&
	ge 0.15 "$r0" && ge "$r1" 0.9 && ge "$t1" 0.9 &&
	grep "held-out R@1" log
'

test_expect_success 'metrics are JSON lines with every step and the retrieval metrics' '
	test $(jq -r "select(.loss != null) | .step" lin.jsonl | wc -l) = 300 &&
	jq -e "select(.step == 300 and .i2t_r5 != null) | .i2t_r10 >= .i2t_r5 and .i2t_r5 >= .i2t_r1" lin.jsonl &&
	first=$(metric loss 1 lin.jsonl) && last=$(metric loss 300 lin.jsonl) &&
	ge "$first" "$last"
'

test_expect_success 'the plot is an SVG with a loss line and an R@1 line' '
	head -c 4 lin.svg | grep -q "<svg" &&
	test $(grep -c "<polyline" lin.svg) = 2 &&
	grep -q "val R@1" lin.svg
'

test_expect_success 'MLP heads + ITC learn too' '
	eosin-align --train --out mlp.st --dim 32 --hidden 64 --epochs 20 --batch 16 \
		--lr 2e-3 --metrics mlp.jsonl --threads 1 bags.mpk 2>/dev/null &&
	r1=$(metric i2t_r1 200 mlp.jsonl) && echo "R@1 $r1" && ge "$r1" 0.9
'

test_expect_success 'Q-Former (2-D positions, pre-LN) + ITC learns' '
	eosin-align --train --out qf.st --dim 32 --queries 4 --qdim 32 --heads 4 \
		--qformer-layers 1 --ffn 64 --epochs 15 --batch 16 --lr 2e-3 \
		--metrics qf.jsonl --threads 1 bags.mpk 2>/dev/null &&
	r1=$(metric i2t_r1 150 qf.jsonl) && echo "R@1 $r1" && ge "$r1" 0.8
'

test_expect_success 'same seed, same input: bit-identical checkpoints' '
	eosin-align --train --out a.st --dim 16 --steps 15 --batch 8 --seed 9 --threads 1 bags.mpk 2>/dev/null &&
	eosin-align --train --out b.st --dim 16 --steps 15 --batch 8 --seed 9 --threads 1 bags.mpk 2>/dev/null &&
	cmp a.st b.st &&
	eosin-align --train --out c.st --dim 16 --steps 15 --batch 8 --seed 10 --threads 1 bags.mpk 2>/dev/null &&
	! cmp -s a.st c.st
'

test_expect_success '20 steps straight == 10 steps, stop, resume 10 more (Q-Former)' '
	set -- --dim 16 --queries 2 --qdim 16 --heads 2 --ffn 32 --steps 20 --batch 8 --threads 1 &&
	eosin-align --train --out straight.st "$@" bags.mpk 2>/dev/null &&
	eosin-align --train --out half.st --stop-after 10 "$@" bags.mpk 2>/dev/null &&
	! cmp -s half.st straight.st &&
	eosin-align --train --out resumed.st --resume half.st "$@" bags.mpk 2>/dev/null &&
	cmp straight.st resumed.st
'

test_expect_success '--save-every writes a checkpoint that --resume continues' '
	eosin-align --train --out saved.st --dim 16 --steps 20 --batch 8 --threads 1 \
		--save-every 5 --stop-after 12 bags.mpk 2>/dev/null &&
	eosin-align --train --out full.st --dim 16 --steps 20 --batch 8 --threads 1 bags.mpk 2>/dev/null &&
	eosin-align --train --out cont.st --resume saved.st --dim 16 --steps 20 --batch 8 \
		--threads 1 bags.mpk 2>/dev/null &&
	cmp full.st cont.st
'

test_expect_success '--apply: bags get unit-norm joint_emb, hdr first, other records unchanged' '
	printf "%s\n" "{\"k\":\"text\",\"v\":1,\"id\":\"t1\",\"caption\":\"no embedding here\"}" >other.jsonl &&
	eosin-cat -r other.jsonl >other.mpk &&
	cat other.mpk bags.mpk | eosin-align --apply lin.st >out.mpk &&
	eosin-cat --check --strict out.mpk &&
	eosin-cat out.mpk | head -1 | jq -e ".k == \"hdr\" and .prog == \"eosin-align\" and (.hash | length) == 16" &&
	eosin-cat out.mpk | sed -n 2p >tile.json && eosin-cat other.mpk >tile.want && test_cmp tile.want tile.json &&
	eosin-cat --vectors out.mpk | jq -e "select(.k == \"bag\") | .joint_emb | .dim == 32 and .n == 1 and ((.values | map(. * .) | add) - 1 | fabs) < 1e-4" >norms &&
	test $(grep -c true norms) = 200 &&
	eosin-cat out.mpk | jq -r "select(.k == \"bag\") | .joint_emb.model" | sort -u >models &&
	echo eosin-align:lin.st >want && test_cmp want models
'

test_expect_success '--apply: a text record with a caption embedding meets its bag' '
	eosin-cat bags.mpk --base64 | head -1 |
		jq -c "{k: \"text\", v: 1, id: \"q\", caption: .caption, txt_emb: .txt_emb}" >q.jsonl &&
	eosin-cat -r q.jsonl | eosin-align --apply lin.st | eosin-cat --vectors |
		jq -c "select(.k == \"text\") | .joint_emb.values" >qz &&
	eosin-align --apply lin.st bags.mpk | eosin-cat --vectors |
		jq -c "select(.k == \"bag\") | .joint_emb.values" >bz &&
	jq -s ".[0] as \$q | [.[1:][] | [., \$q] | transpose | map(.[0] * .[1]) | add] |
		(.[0]) == max" qz bz | grep true
'

test_expect_success '--apply --dtype f16 writes f16' '
	eosin-align --apply lin.st --dtype f16 bags.mpk | eosin-cat |
		jq -r "select(.k == \"bag\") | .joint_emb.dtype" | sort -u >dt &&
	echo f16 >want && test_cmp want dt
'

test_expect_success 'MR-PLIP bags (a caption per patch) with ITC + CVTA train and apply per patch' '
	python3 "$GEN" --method mrplip --bags 60 --n 5 --val-every 5 --seed 4 | eosin-cat -r >mr.mpk &&
	eosin-align --train --out mr.st --dim 32 --hidden 32 --loss itc=1,cvta=0.5 --topk 2 \
		--epochs 20 --batch 8 --lr 2e-3 --metrics mr.jsonl --threads 1 mr.mpk 2>/dev/null &&
	c1=$(metric cvta 1 mr.jsonl) && cN=$(metric cvta 120 mr.jsonl) && echo "cvta $c1 -> $cN" &&
	ge "$c1" "$cN" && ge "$(metric i2t_r1 120 mr.jsonl)" 0.3 &&
	eosin-align --apply mr.st mr.mpk | eosin-cat | jq -e "select(.k == \"bag\") | .joint_emb.n == 5" >ns &&
	test $(grep -c true ns) = 60
'

test_expect_success 'MR-PLIP: ITC + CVTA + multimodal encoder + MRTVA train' '
	eosin-align --train --out mrt.st --dim 32 --hidden 32 --loss itc=1,cvta=0.5,mrtva=0.5 \
		--topk 2 --epochs 20 --batch 8 --lr 2e-3 --metrics mrt.jsonl --threads 1 mr.mpk 2>/dev/null &&
	m1=$(metric mrtva 1 mrt.jsonl) && mN=$(metric mrtva 120 mrt.jsonl) && echo "mrtva $m1 -> $mN" &&
	ge "$m1" "$mN" && ge -0.5 "$mN" && ge "$(metric i2t_r1 120 mrt.jsonl)" 0.3
'

test_expect_success 'PathFLIP: slide-level ITC + region-level NCE train' '
	python3 "$GEN" --method region --bags 100 --n 9 --val-every 5 --seed 6 | eosin-cat -r >rg.mpk &&
	eosin-align --train --out rg.st --dim 32 --hidden 32 --loss itc=1,region=0.5 \
		--epochs 20 --batch 16 --lr 2e-3 --metrics rg.jsonl --threads 1 rg.mpk 2>/dev/null &&
	g1=$(metric region 1 rg.jsonl) && gN=$(metric region 100 rg.jsonl) && echo "region $g1 -> $gN" &&
	ge "$g1" "$gN" && ge "$(metric i2t_r1 100 rg.jsonl)" 0.6
'

test_expect_success 'ITC + image-text matching with hard negatives train' '
	eosin-align --train --out itm.st --dim 32 --hidden 32 --loss itc=1,itm=0.5 --epochs 10 \
		--batch 16 --lr 3e-3 --metrics itm.jsonl --threads 1 bags.mpk 2>/dev/null &&
	i1=$(metric itm 1 itm.jsonl) && iN=$(metric itm 100 itm.jsonl) && echo "itm $i1 -> $iN" &&
	ge "$i1" "$iN" && ge "$(metric i2t_r1 100 itm.jsonl)" 0.8
'

test_expect_success 'a bag without txt_emb: exit 1 naming input, record, id and field' '
	jq -c "if .id == \"bag0003\" then del(.txt_emb) else . end" bags.jsonl | eosin-cat -r >bad.mpk &&
	test_exit_code 1 eosin-align --train --out bad.st bad.mpk 2>err &&
	grep "bad.mpk: record 4 (id .bag0003.): no field .txt_emb." err &&
	test ! -e bad.st
'

test_expect_success 'a wrong head for the input: exit 1 naming the field' '
	python3 "$GEN" --bags 3 --img-dim 8 | eosin-cat -r >small.mpk &&
	test_exit_code 1 eosin-align --apply lin.st small.mpk >/dev/null 2>err &&
	grep "field .img_emb. has dim 8" err
'

test_expect_success 'a write error is reported' '
	test_must_fail eosin-align --apply lin.st bags.mpk >/dev/full 2>err &&
	grep -i "write" err
'

test_expect_success 'a missing checkpoint is reported' '
	test_exit_code 1 eosin-align --apply nothere.st bags.mpk 2>err &&
	grep "nothere.st" err
'

test_done
