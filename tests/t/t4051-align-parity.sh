#!/bin/sh
# eosin-align against its PyTorch autograd reference (tests/parity/align_ref.py,
# float64): the same initial weights (read from the C run's --dump-grads
# checkpoint) and the same batch (all training bags: --batch above their
# count). Step 0: loss and every parameter's gradient within 1e-4 relative
# (max |dC - dTorch| / max |dTorch| per tensor). Then 20 AdamW steps
# (warmup + cosine, clipping, weight decay): every step's loss within 1e-3.
. "$(dirname "$0")/../lib.sh"

PY=
for p in python3 /usr/bin/python3; do
	if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || test_skip_all 'python3-torch missing'
GEN="$ROOT/tests/parity/align_gen.py"
REF="$ROOT/tests/parity/align_ref.py"
TRAIN="--batch 64 --steps 20 --warmup 3 --lr 1e-2 --wd 0.05 --clip 1.0 --threads 1"
SAME="--steps 20 --warmup 3 --lr 1e-2 --wd 0.05 --clip 1.0"

# parity NAME BAGS MODEL-FLAGS...
parity() {
	name=$1 bags=$2
	shift 2
	# shellcheck disable=SC2086
	eosin-align --train --out "$name.st" "$@" $TRAIN --dump-grads "$name.grads.st" \
		--metrics "$name.jsonl" "$bags.mpk" 2>/dev/null &&
	# shellcheck disable=SC2086
	"$PY" "$REF" check "$name.grads.st" "$bags.jsonl" "$name.jsonl" $SAME >"$name.out"
	st=$?
	grep -E "^(loss|gradients|losses)" "$name.out"
	return $st
}

test_expect_success 'bags for the parity runs' '
	python3 "$GEN" --bags 12 --val-every 4 --seed 5 >slide.jsonl &&
	eosin-cat -r slide.jsonl >slide.mpk &&
	python3 "$GEN" --method mrplip --bags 10 --n 5 --val-every 5 --seed 5 >mr.jsonl &&
	eosin-cat -r mr.jsonl >mr.mpk &&
	python3 "$GEN" --method region --bags 12 --n 9 --val-every 4 --seed 5 >region.jsonl &&
	eosin-cat -r region.jsonl >region.mpk &&
	python3 "$GEN" --method region --pos --bags 8 --n 9 --val-every 4 --seed 5 >rpos.jsonl &&
	eosin-cat -r rpos.jsonl >rpos.mpk
'

test_expect_success 'linear heads + ITC match PyTorch' '
	parity lin slide --dim 16
'

test_expect_success 'MLP heads + ITC match PyTorch' '
	parity mlp slide --dim 16 --hidden 24
'

test_expect_success 'Q-Former (2 layers, 2 heads, 2-D positions) + ITC matches PyTorch' '
	parity qf slide --dim 16 --hidden 24 --queries 3 --qdim 16 --heads 2 --qformer-layers 2 --ffn 32 &&
	grep -q "ok   qformer.1.cross.kv.weight" qf.out
'

test_expect_success 'per-patch items + ITC + CVTA match PyTorch' '
	parity cvta mr --dim 16 --hidden 12 --loss itc=1,cvta=0.5 --topk 2
'

test_expect_success 'ITC + CVTA + multimodal encoder + MRTVA (MR-PLIP) match PyTorch' '
	parity mrplip mr --dim 16 --hidden 12 --loss itc=1,cvta=0.5,mrtva=0.7 --topk 2
'

test_expect_success 'ITC + region-level NCE (PathFLIP) match PyTorch' '
	parity pathflip region --dim 16 --hidden 12 --loss itc=1,region=0.8
'

test_expect_success 'Region and Slide Q-Formers + ITC + region-level NCE (PathFLIP) match PyTorch' '
	parity rqf rpos --dim 16 --hidden 12 --queries 2 --qdim 16 --heads 2 --qformer-layers 1 \
		--ffn 24 --loss itc=1,region=0.8 &&
	grep -q "ok   slide_qformer.0.cross.kv.weight" rqf.out &&
	grep -q "ok   qformer.kv_in.weight" rqf.out
'

test_expect_success 'ITC + image-text matching with hard negatives match PyTorch' '
	parity itm mr --dim 16 --hidden 12 --loss itc=1,itm=0.5
'

test_expect_success 'bags with decoder tokens for the generative objectives' '
	python3 "$GEN" --bags 12 --val-every 4 --seed 5 --tokens 13 >tslide.jsonl &&
	eosin-cat -r tslide.jsonl >tslide.mpk &&
	python3 "$GEN" --method region --pos --bags 8 --n 9 --val-every 4 --seed 5 --tokens 13 \
		>trpos.jsonl &&
	eosin-cat -r trpos.jsonl >trpos.mpk
'

QF="--dim 16 --hidden 24 --queries 3 --qdim 16 --heads 2 --qformer-layers 2 --ffn 32"
test_expect_success 'ITC + ITG (causal text decoder over the queries) match PyTorch' '
	parity itg tslide $QF --loss itc=1,itg=0.7 &&
	grep -q "ok   dec.tok_emb" itg.out && grep -q "ok   qformer.1.self.qkv.weight" itg.out
'

test_expect_success 'ITC + MLM (seeded 80/10/10 masking) match PyTorch' '
	parity mlm tslide $QF --loss itc=1,mlm=0.6 && grep -q "ok   dec.0.ffn.fc1.weight" mlm.out
'

test_expect_success 'ITC + PLM (bidirectional prefix, the rest predicted) match PyTorch' '
	parity plm tslide $QF --loss itc=1,plm=0.9 --plm-prefix 0.4 && grep -q "ok   dec.pos_emb" plm.out
'

test_expect_success 'ITG + MLM + PLM alone (no contrastive loss) match PyTorch' '
	parity gen3 tslide $QF --loss itg=0.7,mlm=0.6,plm=0.9 && grep -q "ok   qformer.queries" gen3.out
'

test_expect_success 'Region and Slide Q-Formers + region NCE + ITG + MLM + PLM match PyTorch' '
	parity rgen trpos --dim 16 --hidden 12 --queries 2 --qdim 16 --heads 2 --qformer-layers 2 \
		--ffn 24 --loss itc=1,region=0.8,itg=0.7,mlm=0.6,plm=0.9 &&
	grep -q "ok   slide_qformer.0.self.qkv.weight" rgen.out &&
	grep -q "ok   qformer.0.cross.kv.weight" rgen.out
'

test_expect_success 'the reference fails when the gradients differ (a check that can fail)' '
	test_must_fail "$PY" "$REF" check lin.grads.st slide.jsonl mlp.jsonl $SAME >wrong.out &&
	grep -q "^losses.*worst relative difference [1-9]" wrong.out
'

test_done
