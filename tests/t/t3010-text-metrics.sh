#!/bin/sh
# eosin-query --text-metrics: BLEU-4, ROUGE-L and token F1 of generated
# text against references, on pairs of the 991 real gastric captions
# (hypothesis row i, reference row i+1 or i+7) plus edge cases, checked
# within 1e-6 against NLTK's corpus_bleu and sentence_bleu (method 1) and,
# as Debian packages no ROUGE, against an independent LCS and a SQuAD-formula
# token F1 written in tests/parity/text_metrics.py.
. "$(dirname "$0")/../lib.sh"

CAPTIONS=$SHARED/text/gastric-adenocarcinoma-captions.csv
test -f "$CAPTIONS" || test_skip_all 'needs ../shared/data/text (real captions)'
command -v jq >/dev/null || test_skip_all 'jq missing'
PY=
for p in /usr/bin/python3 python3; do
	command -v $p >/dev/null && $p -c 'import nltk' 2>/dev/null && { PY=$p; break; }
done
test -n "$PY" || test_skip_all 'python3-nltk missing (the BLEU reference)'
REF="$ROOT/tests/parity/text_metrics.py"

test_expect_success 'pairs of real captions as text records' '
	$PY "$REF" "$CAPTIONS" hyp.jsonl ref.jsonl &&
	eosin-cat -r hyp.jsonl >hyp.eo && eosin-cat -r ref.jsonl >ref.eo
'

test_expect_success 'every pair scored, records valid, summary on stderr' '
	eosin-query --text-metrics ref.eo --metrics m.json hyp.eo >scored.eo 2>err &&
	eosin-cat --check scored.eo &&
	eosin-cat scored.eo >scored.jsonl &&
	test "$(jq -r "select(.k==\"text\") | .bleu4" scored.jsonl | wc -l)" = 1987 &&
	grep "^eosin-query: 1987 pairs: BLEU-4 " err &&
	test "$(jq .pairs m.json)" = 1987
'

test_expect_success 'scores agree with NLTK BLEU and the reference ROUGE-L, F1 within 1e-6' '
	$PY "$REF" --check scored.jsonl m.json "$CAPTIONS" 1e-6 >agree &&
	cat agree >&2
'

test_expect_success 'identical texts score 1, disjoint texts 0' '
	jq -r "select(.id==\"e4\") | [.bleu4, .rouge_l, .token_f1] | @tsv" scored.jsonl >got &&
	printf "1\t1\t1\n" >want && test_cmp want got &&
	jq -r "select(.id==\"e0\") | [.bleu4, .rouge_l, .token_f1] | @tsv" scored.jsonl >got &&
	printf "0\t0\t0\n" >want && test_cmp want got
'

test_expect_success 'a hypothesis without a reference passes unscored, with a note' '
	echo "{\"k\":\"text\",\"v\":1,\"id\":\"nobody\",\"caption\":\"x\"}" | eosin-cat -r >lone.eo &&
	eosin-query --text-metrics ref.eo lone.eo >out.eo 2>err &&
	grep "1 text records have no reference of their id" err &&
	eosin-cat out.eo | jq -e "select(.k==\"text\") | has(\"bleu4\") | not"
'

test_expect_success 'duplicate reference ids are an error' '
	cat ref.eo ref.eo >dup.eo &&
	test_exit_code 1 eosin-query --text-metrics dup.eo hyp.eo >/dev/null 2>err &&
	grep "two references with id" err
'

test_expect_success 'references and hypotheses cannot both be standard input' '
	test_exit_code 2 eosin-query --text-metrics - <hyp.eo >/dev/null 2>err &&
	grep "cannot both come from standard input" err
'

test_expect_success 'a write error on standard output fails' '
	test_exit_code 1 eosin-query --text-metrics ref.eo hyp.eo >/dev/full 2>/dev/null
'

test_done
