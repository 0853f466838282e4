#!/bin/sh
# eosin-caption-fetch --answer: a report (or the answer to a question)
# about each slide from what the stream says of it: the reports of its
# nearest neighbours in an index (eosin-query's hits), its zero-shot
# classes, its generated captions, put in the prompt as numbered evidence;
# the answer is a text record naming its sources. Against the project's
# test server on 127.0.0.1, which answers deterministically, logs every
# request and injects faults. The archive is real gastric reports, embedded,
# indexed and searched by eosin's own programs.
. "$(dirname "$0")/../lib.sh"
test_have_prereq SHARED || test_skip_all 'needs ../shared/data (captions, vocabulary)'
command -v python3 >/dev/null || test_skip_all 'needs python3'
. "$ROOT/tests/servers/caption-lib.sh"

N=12
test_expect_success 'setup: real reports embedded, indexed, searched; zero-shot and captions' '
	start_vlm --log "$PWD/requests.log" && echo "$VLM_PORT" >port &&
	$PY - "$SHARED/text/gastric-adenocarcinoma-captions.csv" >docs.json <<-\PYEOF &&
	import csv, json, sys
	seen = []
	for r in csv.DictReader(open(sys.argv[1])):
	    if r["text"] not in [s["text"] for s in seen]:
	        seen.append(r)
	for i, r in enumerate(seen[:40]):
	    print(json.dumps({"k": "doc", "v": 1, "id": "S%02d" % i, "slide": "S%02d" % i,
	                      "caption": r["text"]}))
	PYEOF
	eosin-make-model --arch clip-text --width 64 --layers 1 --text-heads 1 --embed 32 --seed 3 \
		--vocab "$SHARED/tokenizers/bpe_simple_vocab_16e6.txt.gz" --out text.st &&
	eosin-cat -r docs.json | eosin-encode --text-model text.st >docs.mpk 2>/dev/null &&
	eosin-index --out arch.faiss --field txt_emb --kind doc docs.mpk 2>/dev/null &&
	eosin-cat --base64 docs.mpk | head -n $((N + 1)) | eosin-cat -r >queries.mpk &&
	eosin-query --index arch.faiss --field txt_emb -k 4 queries.mpk >hits.mpk 2>/dev/null &&
	eosin-cat hits.mpk | jq -c "select(.k == \"hit\" and .rank > 1)" >hits.json &&
	test $(wc -l <hits.json) = $((3 * N)) &&
	$PY - $N >extra.json <<-\PYEOF &&
	import json, sys
	for i in range(int(sys.argv[1])):
	    s = "S%02d" % i
	    print(json.dumps({"k": "zeroshot", "v": 1, "id": s, "slide": s, "n": 64, "pool": "topk:8",
	                      "zs_label": "tubular", "zs_scores": {"tubular": 0.61, "signet": 0.07,
	                      "papillary": 0.2, "poorly": 0.12}}))
	    print(json.dumps({"k": "text", "v": 1, "id": "gen-%d" % i, "slide": s,
	                      "caption": "Generated caption %d: glands." % i}))
	PYEOF
	{ cat hits.json; cat extra.json; } | eosin-cat -r >in.mpk &&
	eosin-cat --check in.mpk
'
VLM_PORT=$(cat port 2>/dev/null)
LLM="http://127.0.0.1:$VLM_PORT/v1/chat/completions"

test_expect_success 'one answer per slide, naming its sources in the order numbered' '
	eosin-caption-fetch --answer "$LLM" --model test-llm --question "What is the diagnosis?" \
		<in.mpk >out.mpk 2>err &&
	eosin-cat out.mpk | jq -c "select(.k == \"text\" and .question)" >answers &&
	test $(wc -l <answers) = $N &&
	$PY - hits.json extra.json answers <<-\PYEOF
	import json, sys
	hits = [json.loads(l) for l in open(sys.argv[1])]
	extra = [json.loads(l) for l in open(sys.argv[2])]
	got = {a["slide"]: a for a in map(json.loads, open(sys.argv[3]))}
	for q in sorted(got):
	    want = [h["target"] for h in hits if h["query"] == q]
	    want += ["zeroshot:" + q] + [t["id"] for t in extra if t["k"] == "text" and t["slide"] == q]
	    a = got[q]
	    assert a["id"] == q + "/answer" and a["sources"] == want, (a, want)
	    assert a["caption"] == "Answer to %s about slide %s from %d items of evidence; see [1]." % (
	        "\x27What is the\x27", q, len(want)), a["caption"]
	    assert a["answered_by"] == "test-llm" and a["question"] == "What is the diagnosis?"
	print(len(got), "answers")
	PYEOF
'

test_expect_success 'the prompt holds each neighbour report, the classes and the captions' '
	$PY - hits.json requests.log <<-\PYEOF
	import json, re, sys
	hits = [json.loads(l) for l in open(sys.argv[1])]
	users = {}
	for line in open(sys.argv[2]):
	    req = json.loads(line)
	    u = [m for m in req["messages"] if m["role"] == "user"][-1]["content"]
	    users[re.search(r"about slide (.*):$", u, re.M).group(1)] = u
	for h in hits:
	    u = users[h["query"]]
	    line = "Report of a similar slide (%s) (similarity %.3f): %s" % (
	        h["record"]["slide"], h["score"], h["record"]["caption"])
	    assert line in u, (line, u)
	for q, u in users.items():
	    assert "Zero-shot classification of the slide: tubular (p 0.61); papillary (p 0.20); poorly (p 0.12)" in u, u
	    assert re.search(r"^\[5\] Generated caption: Generated caption \d+: glands\.$", u, re.M), u
	    assert u.startswith("Question: What is the diagnosis?\n"), u
	print(len(users), "prompts")
	PYEOF
'

test_expect_success 'every input record passes unchanged; the output is schema-valid' '
	eosin-cat in.mpk | jq -c "select(.k != \"hdr\")" >a &&
	eosin-cat out.mpk | jq -c "select(.k != \"hdr\" and (.question | not))" >b &&
	test_cmp a b &&
	eosin-cat --check out.mpk
'

test_expect_success '--max-hits 1: one neighbour report each' '
	eosin-caption-fetch --answer "$LLM" --model test-llm --max-hits 1 <in.mpk >one.mpk 2>err &&
	eosin-cat one.mpk | jq -r "select(.question) | .sources | length" | sort -u >n &&
	test "$(cat n)" = 3
'

test_expect_success 'slides interleaved beyond --open-slides: late evidence counted and said' '
	eosin-caption-fetch --answer "$LLM" --model test-llm --open-slides 1 <in.mpk >late.mpk 2>err &&
	grep -q "records of evidence came after their slide was asked about" err &&
	test $(eosin-cat late.mpk | jq -c "select(.question)" | wc -l) = $N
'

test_expect_success 'with --cache a rerun asks nothing and writes the same answers' '
	eosin-caption-fetch --answer "$LLM" --model test-llm --cache cache <in.mpk >c1.mpk 2>err &&
	vlm_reset &&
	eosin-caption-fetch --answer "$LLM" --model test-llm --cache cache <in.mpk >c2.mpk 2>err &&
	test "$(vlm_stat requests)" = 0 && grep -q "asked 0, cached $N" err &&
	eosin-cat c1.mpk | jq -c "select(.question)" >a && eosin-cat c2.mpk | jq -c "select(.question)" >b &&
	test_cmp a b
'

test_expect_success 'a 503 once: retried, nothing lost' '
	eosin-caption-fetch --answer "http://127.0.0.1:$VLM_PORT/fault/503/v1/chat/completions" \
		--model test-llm --backoff 0 <in.mpk >f.mpk 2>err &&
	test $(eosin-cat f.mpk | jq -c "select(.question and .caption)" | wc -l) = $N &&
	grep -q "failed 0, retried $N" err
'

test_expect_success 'a blank answer every time: caption_error, to --rejects, exit 1' '
	test_exit_code 1 eosin-caption-fetch --answer \
		"http://127.0.0.1:$VLM_PORT/fault/blankxalways/v1/chat/completions" --model test-llm \
		--retries 1 --backoff 0 --rejects rej.mpk <in.mpk >bad.mpk 2>err &&
	test "$(eosin-cat rej.mpk | jq -r .caption_error | sort -u)" = "answer: the message content is blank" &&
	test $(eosin-cat rej.mpk | jq -c "select(.sources)" | wc -l) = $N &&
	test $(eosin-cat bad.mpk | jq -c "select(.question)" | wc -l) = 0 &&
	grep -q "the answer about slide '"'"'S[0-9]*'"'"' (id '"'"'S[0-9]*/answer'"'"'): answer: " err &&
	grep -q "failed $N" err
'

test_expect_success 'usage: --answer needs --model; a blank --question is refused' '
	test_exit_code 2 eosin-caption-fetch --answer "$LLM" <in.mpk 2>err && grep -q "needs --model" err &&
	test_exit_code 2 eosin-caption-fetch --answer "$LLM" --model m --question "  " <in.mpk 2>err &&
	grep -q "question" err
'

test_done
