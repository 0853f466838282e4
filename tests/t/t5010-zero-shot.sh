#!/bin/sh
# eosin-query --zero-shot, --expand-classes and --eval-retrieval: labels,
# scores and metrics against a reference computed from the definitions.
. "$(dirname "$0")/../lib.sh"

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
command -v $PY >/dev/null || test_skip_all "python3 missing"
Z="$PY $ROOT/tests/t/t50-zeroshot.py"

test_expect_success 'fabricate prompts, patches and pairs' '
	$Z make . &&
	eosin-cat -r prompts.json >prompts.mpk &&
	eosin-cat -r patches.json >patches.mpk &&
	eosin-cat -r pairs.json >pairs.mpk
'

test_expect_success 'zero-shot labels, scores, slide pooling and metrics match the reference' '
	eosin-query --zero-shot prompts.mpk --slide-pool topk:5 --metrics m.json patches.mpk >out.mpk 2>err &&
	cat err &&
	grep "3 classes from prompts.mpk: TUM (2 prompts) STR (2 prompts) LYM (2 prompts)" err &&
	grep "6 labelled records have a label that no prompt has" err &&
	grep "records: n 84  accuracy" err &&
	eosin-cat out.mpk >out.json &&
	test $(grep -c "\"k\":\"patch\"" out.json) = 91 &&
	test $(grep -c "\"k\":\"zeroshot\"" out.json) = 6 &&
	$Z check-zs . out.json m.json 5
'

test_expect_success 'zero-shot output is valid, passes other records on unchanged' '
	eosin-cat --check out.mpk &&
	eosin-cat --check --strict --kind zeroshot out.mpk &&
	grep "\"id\":\"noemb\"" out.json | jq -e ".zs_label == null"
'

test_expect_success 'zero-shot needs two classes' '
	head -n 2 prompts.json | eosin-cat -r >one.mpk &&
	test_exit_code 1 eosin-query --zero-shot one.mpk patches.mpk >/dev/null 2>err &&
	grep "1 class with a label and an embedding; zero-shot needs at least 2" err
'

test_expect_success '--expand-classes prints label, tab, prompt' '
	cat >classes.txt <<-\EOF &&
	# tissue classes
	template: an H&E image of {}.
	template: {}, H&E stain
	TUM: tumour; adenocarcinoma epithelium
	STR: stroma
	LYM:
	EOF
	printf "TUM\tan H&E image of tumour.\nTUM\ttumour, H&E stain\n" >expect &&
	printf "TUM\tan H&E image of adenocarcinoma epithelium.\nTUM\tadenocarcinoma epithelium, H&E stain\n" >>expect &&
	printf "STR\tan H&E image of stroma.\nSTR\tstroma, H&E stain\n" >>expect &&
	printf "LYM\tan H&E image of LYM.\nLYM\tLYM, H&E stain\n" >>expect &&
	eosin-query --expand-classes classes.txt >actual &&
	test_cmp expect actual &&
	echo "template: no placeholder" >bad.txt &&
	test_exit_code 1 eosin-query --expand-classes bad.txt 2>err &&
	grep "bad.txt:1: template .no placeholder. has no {}" err
'

test_expect_success 'retrieval R@1/5/10 both ways match the reference' '
	eosin-query --eval-retrieval --metrics r.json pairs.mpk >passed.mpk 2>err &&
	cat err &&
	grep "retrieval over 40 pairs (joint_emb vs joint_txt_emb)" err &&
	$Z check-retrieval . r.json &&
	test $(eosin-cat passed.mpk | grep -c "\"k\":\"bag\"") = 40
'

test_done
