#!/bin/sh
# eosin-generate writes captions from bags with an eosin-align text decoder.
# Truth by construction (tests/parity/caption_bags.py): 8 classes, each a
# fixed random patch prototype and its own caption; a held-out bag (24 of 96)
# has one right caption, which a decoder that ignored the image would get
# for 1 class in 8 at best. PathAlign's query counts, 1 (retrieval) and 32
# (generation), are both trained (ITC + ITG, 2 Q-Former blocks, the real CLIP
# BPE, 49409 decoder tokens) and must write every held-out caption exactly
# (CLIP's decoding spaces '-': "cancer - associated"), greedy and by beam.
. "$(dirname "$0")/../lib.sh"

test_have_prereq SHARED || test_skip_all 'needs ../shared/data (CLIP vocabulary)'
command -v python3 >/dev/null || test_skip_all 'python3 missing'
command -v jq >/dev/null || test_skip_all 'jq missing'
VOCAB=$SHARED/tokenizers/bpe_simple_vocab_16e6.txt.gz
STEPS=300
# the sanitizer build runs the same code on shorter training; it checks the
# records, not what was learned
test -n "${SANITIZE:-}" && STEPS=20
test -n "${SANITIZE:-}" || test_set_prereq UNSANITIZED
QF="--qdim 32 --heads 2 --qformer-layers 2 --ffn 64 --dim 16"

# right FILE: how many held-out bags' captions in FILE are their bag's
right() {
	eosin-cat "$1" | jq -r "select(.k == \"text\") | \"\(.describes)\t\(.caption)\"" |
		sed "s/ - /-/g" | sort >got &&
	jq -r "select(.split == \"val\") | \"\(.id)/caption\t\(.caption)\"" cb.jsonl |
		sed "s|/caption||" | sort >want &&
	join -t "	" want got | awk -F "	" "\$2 == \$3" | wc -l
}

test_expect_success 'bags whose captions their patches determine' '
	python3 "$ROOT/tests/parity/caption_bags.py" >cb.jsonl &&
	eosin-cat -r cb.jsonl >cb.mpk &&
	jq -c "select(.split == \"val\")" cb.jsonl | eosin-cat -r >val.mpk &&
	test "$(eosin-cat val.mpk | jq -s length)" = 24
'

test_expect_success 'a one-block Q-Former is refused for the generative objectives' '
	test_must_fail eosin-align --train --out x.st --queries 4 --qdim 32 --heads 2 \
		--qformer-layers 1 --loss itg=1 --vocab "$VOCAB" --steps 1 cb.mpk 2>err &&
	grep -q "second block on" err
'

# records Q: greedy captions of the held-out bags with model qQ.st: one text
# record after each bag, schema-valid, the hdr naming the model and its hash
records() {
	eosin-generate --model "q$1.st" val.mpk >"g$1.mpk" 2>err &&
	eosin-cat --check "g$1.mpk" &&
	eosin-cat "g$1.mpk" | jq -r .k | uniq -c | awk "{print \$2 \$1}" | tr "\n" " " >kinds &&
	echo "kinds: $(cat kinds)" &&
	test "$(head -c 16 kinds)" = "hdr1 bag1 text1 " &&
	test "$(tr " " "\n" <kinds | grep -c .)" = 49 &&
	eosin-cat "g$1.mpk" | jq -s -e "map(select(.k == \"hdr\")) | length == 1 and
		(.[0] | .prog == \"eosin-generate\" and (.hash | length) == 16 and
		(.model | test(\"q$1.st\")))" &&
	eosin-cat "g$1.mpk" | jq -s -e "map(select(.k == \"text\")) | length == 24 and
		all(.decoding == \"greedy\" and .ntokens >= 0 and .ntokens <= 76 and .logprob <= 0 and
		(.slide | startswith(\"slide\")))" &&
	grep -q "24 captions (greedy)" err
}

for Q in 1 32; do
	test_expect_success "train with $Q queries (ITC + ITG)" "
		eosin-align --train --out q$Q.st --queries $Q $QF --loss itc=1,itg=1 \
			--vocab \"\$VOCAB\" --steps $STEPS --batch 16 --lr 1e-2 --seed 1 cb.mpk 2>err$Q
	"
	test_expect_success "greedy, $Q queries: the records, the hdr, the provenance" "
		records $Q
	"
	test_expect_success UNSANITIZED "greedy, $Q queries: every held-out caption exactly" "
		n=\$(right g$Q.mpk) && echo \"\$n of 24\" && test \"\$n\" = 24
	"
	test_expect_success UNSANITIZED "beam 4, $Q queries: every held-out caption exactly" "
		eosin-generate --model q$Q.st --method beam --beam 4 --only-text val.mpk >b$Q.mpk &&
		n=\$(right b$Q.mpk) && echo \"\$n of 24\" && test \"\$n\" = 24
	"
done

test_expect_success 'top-p sampling: the same seed gives the same captions, in any order' '
	eosin-generate --model q32.st --method sample --seed 7 --only-text \
		val.mpk >s1.mpk &&
	eosin-cat --base64 val.mpk | tac >rev.jsonl && eosin-cat -r rev.jsonl >rev.mpk &&
	eosin-generate --model q32.st --method sample --seed 7 --only-text \
		rev.mpk >s2.mpk &&
	eosin-cat s1.mpk | jq -c "select(.k == \"text\") | [.id, .caption]" | sort >a &&
	eosin-cat s2.mpk | jq -c "select(.k == \"text\") | [.id, .caption]" | sort >b &&
	test_cmp a b &&
	eosin-cat s1.mpk | jq -s -e "map(select(.k == \"text\")) | length == 24 and
		all(.decoding == \"top-p 0.9, temperature 1, seed 7\")"
'

test_expect_success 'hot sampling over the whole vocabulary still writes valid UTF-8' '
	eosin-generate --model q32.st --method sample --top-p 1 --temperature 5 --only-text \
		val.mpk >hot.mpk &&
	eosin-cat --check hot.mpk && eosin-cat hot.mpk | jq -r .caption >/dev/null
'

test_expect_success 'top-p so small its nucleus is one token: the greedy captions' '
	eosin-generate --model q32.st --method sample --top-p 1e-6 --only-text val.mpk >s0.mpk &&
	eosin-cat s0.mpk | jq -c "select(.k == \"text\") | [.id, .caption, .logprob]" >a &&
	eosin-cat g32.mpk | jq -c "select(.k == \"text\") | [.id, .caption, .logprob]" >b &&
	test_cmp a b
'

test_expect_success '--max-tokens cuts the captions' '
	eosin-generate --model q32.st --max-tokens 2 --only-text val.mpk >m.mpk &&
	eosin-cat m.mpk | jq -s -e "map(select(.k == \"text\")) | length == 24 and
		all(.ntokens <= 2)" &&
	test_exit_code 2 eosin-generate --model q32.st --max-tokens 77 val.mpk 2>err </dev/null &&
	grep -q "holds 77 positions" err
'

test_expect_success 'an embedded tile is captioned as a bag of one patch' '
	eosin-cat --base64 val.mpk | head -n 1 | python3 -c "
import base64, json, sys
b = json.load(sys.stdin)
e = b[\"img_emb\"]
row = base64.b64decode(e[\"data\"][\"\$base64\"])[:4 * e[\"dim\"]]
e.update(n=1, data={\"\$base64\": base64.b64encode(row).decode()})
print(json.dumps({\"k\": \"tile\", \"v\": 1, \"id\": \"t1\", \"slide\": \"s1\", \"img_emb\": e}))
" | eosin-cat -r >tile.mpk &&
	eosin-generate --model q32.st --only-text tile.mpk >tg.mpk &&
	eosin-cat tg.mpk | jq -s -e "map(select(.k == \"text\")) | length == 1 and
		.[0].describes == \"t1\" and .[0].slide == \"s1\" and .[0].ntokens >= 0"
'

test_expect_success 'a model without a decoder is refused' '
	eosin-align --train --out plain.st --queries 2 $QF --steps 2 cb.mpk 2>/dev/null &&
	test_must_fail eosin-generate --model plain.st val.mpk 2>err &&
	grep -q "has no text decoder" err
'

test_expect_success 'a bag without img_emb: named, the others captioned, exit 1' '
	eosin-cat --base64 val.mpk |
		jq -c "if .id == \"bag027\" then del(.img_emb) else . end" >bad.jsonl &&
	eosin-cat -r bad.jsonl >bad.mpk &&
	test_must_fail eosin-generate --model q32.st --only-text bad.mpk >out.mpk 2>err &&
	grep -q "eosin-generate: bad.mpk: record 4 (id .bag027.): no field .img_emb." err &&
	test "$(eosin-cat out.mpk | jq -c "select(.k == \"text\")" | wc -l)" = 23
'
test_done
