#!/bin/sh
# eosin-caption-fetch --decompose: a slide report's region-level
# sub-captions (PathFLIP) from an OpenAI-compatible LLM endpoint, through
# the same fetch engine, cache, retries and key handling as --vlm, against
# the project's test server on 127.0.0.1 (tests/servers/vlm-server.py),
# which answers deterministically and injects faults. The reports are the
# real gastric captions of ../shared/data.
. "$(dirname "$0")/../lib.sh"
test_have_prereq SHARED || test_skip_all 'needs ../shared/data (captions)'
command -v python3 >/dev/null || test_skip_all 'needs python3'
. "$ROOT/tests/servers/caption-lib.sh"

KEY="sk-test-$$-d3c"
export KEY
N=24

test_expect_success 'setup: server; doc records of real reports with other records between' '
	EOSIN_TEST_KEY=$KEY start_vlm --expect-key-env EOSIN_TEST_KEY &&
	echo "$VLM_PORT" >port &&
	$PY - "$SHARED/text/gastric-adenocarcinoma-captions.csv" $N >in.json <<-\PYEOF &&
	import csv, json, sys
	rows = list(csv.DictReader(open(sys.argv[1])))
	seen, docs = set(), []
	for r in rows:  # distinct reports, of one to four sentences
	    if r["text"] not in seen:
	        seen.add(r["text"]); docs.append(r)
	print(json.dumps({"k": "hdr", "v": 1, "prog": "eosin-caption-fetch", "version": "0",
	                  "args": [], "time": "t"}))
	for i, r in enumerate(docs[:int(sys.argv[2])]):
	    print(json.dumps({"k": "doc", "v": 1, "id": "S%02d/report" % i, "slide": "S%02d" % i,
	                      "caption": r["text"], "sentences": ["regex sentence"],
	                      "sent_pos": [None], "label": r["subtype"]}))
	    if i % 5 == 0:
	        print(json.dumps({"k": "text", "v": 1, "id": str(i), "caption": "left alone"}))
	print(json.dumps({"k": "doc", "v": 1, "id": "S99/report", "slide": "S99",
	                  "caption_error": "http 404"}))
	PYEOF
	eosin-cat -r in.json >in.mpk
'
VLM_PORT=$(cat port 2>/dev/null)
LLM="http://127.0.0.1:$VLM_PORT/v1/chat/completions"

# What the server answers: "Region k: " and the k-th sentence of the report.
cat >want.py <<'PYEOF'
import json, re, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["k"] == "doc" and "caption" in r:
        parts = [p for p in re.split(r"(?<=[.!?])\s+", r["caption"].strip()) if p]
        print(json.dumps([r["id"], ["Region %d: %s" % (i + 1, p) for i, p in enumerate(parts)]],
                         separators=(",", ":"), ensure_ascii=False))
PYEOF

test_expect_success 'each report split into the sub-captions the LLM gave, in input order' '
	EOSIN_API_KEY=$KEY eosin-caption-fetch --decompose "$LLM" --model test-llm \
		<in.mpk >out.mpk 2>err &&
	$PY want.py in.json >want &&
	test $(wc -l <want) = $N &&
	eosin-cat out.mpk | jq -c "select(.k == \"doc\" and .decomposed_by) | [.id, .sentences]" >got &&
	test_cmp want got &&
	grep "asked $N, cached 0, shared 0, failed 0" err &&
	test "$(vlm_stat auth_ok)" = $N
'

test_expect_success 'the rest of each doc kept, the regex sentence fields dropped, schema valid' '
	eosin-cat out.mpk | jq -c "select(.k == \"doc\" and .decomposed_by) |
		[.decomposed_by, (.sent_pos == null), (.label != null), (.caption | length > 0)]" |
		sort -u >flags &&
	test "$(cat flags)" = "[\"test-llm\",true,true,true]" &&
	eosin-cat out.mpk | jq -c "select(.k != \"doc\" or .caption_error)" >others &&
	jq -c "select(.k != \"doc\" or .caption_error)" in.json >others.want &&
	test "$(wc -l <others)" = "$(($(wc -l <others.want) + 1))" &&
	eosin-cat out.mpk | sed -n 2p | jq -e ".prog == \"eosin-caption-fetch\" and .model == \"test-llm\"" &&
	eosin-cat --check out.mpk
'

test_expect_success 'the API key is in no output, no message' '
	! grep -a -q "$KEY" out.mpk err
'

test_expect_success 'regions as objects with a text field are taken too' '
	start_vlm --regions-objects && echo "$VLM_PORT" >port2 &&
	eosin-caption-fetch --decompose "http://127.0.0.1:$(cat port2)/v1/chat/completions" \
		--model test-llm <in.mpk >obj.mpk 2>err &&
	eosin-cat obj.mpk | jq -c "select(.k == \"doc\" and .decomposed_by) | [.id, .sentences]" >got &&
	test_cmp want got
'

test_expect_success 'with --cache a rerun asks nothing and writes the same' '
	eosin-caption-fetch --decompose "$LLM" --model test-llm --cache cache <in.mpk >c1.mpk 2>err &&
	vlm_reset &&
	eosin-caption-fetch --decompose "$LLM" --model test-llm --cache cache <in.mpk >c2.mpk 2>err &&
	grep "asked 0, cached $N" err && test "$(vlm_stat requests)" = 0 &&
	eosin-cat c1.mpk | jq -c "select(.k == \"doc\")" >a &&
	eosin-cat c2.mpk | jq -c "select(.k == \"doc\")" >b && test_cmp a b
'

test_expect_success '500 and a dropped connection once each: retried, nothing lost' '
	vlm_reset &&
	eosin-caption-fetch --decompose "http://127.0.0.1:$VLM_PORT/fault/500/v1/chat/completions" \
		--model test-llm --backoff 0 <in.mpk >f1.mpk 2>err &&
	eosin-cat f1.mpk | jq -c "select(.k == \"doc\" and .decomposed_by) | [.id, .sentences]" >got &&
	test_cmp want got && grep "failed 0, retried $N" err &&
	eosin-caption-fetch --decompose "http://127.0.0.1:$VLM_PORT/fault/drop/v1/chat/completions" \
		--model test-llm --backoff 0 <in.mpk >f2.mpk 2>err &&
	eosin-cat f2.mpk | jq -c "select(.k == \"doc\" and .decomposed_by) | [.id, .sentences]" >got &&
	test_cmp want got
'

for f in "notjson:not a JSON object" "noregions:no non-empty 'regions' array" "blank:region K of N is blank"; do
	kind=${f%%:*} msg=${f#*:}
	test_expect_success "content fault $kind once: retried and then taken" "
		eosin-caption-fetch --decompose \"http://127.0.0.1:\$VLM_PORT/fault/$kind/v1/chat/completions\" \
			--model test-llm --backoff 0 <in.mpk >ok.mpk 2>err &&
		eosin-cat ok.mpk | jq -c 'select(.k == \"doc\" and .decomposed_by) | [.id, .sentences]' >got &&
		test_cmp want got
	"
	test_expect_success "content fault $kind always: caption_error, rejects, exit 1, nothing lost" "
		test_exit_code 1 eosin-caption-fetch --decompose \
			\"http://127.0.0.1:\$VLM_PORT/fault/${kind}xalways/v1/chat/completions\" \
			--model test-llm --retries 1 --backoff 0 --rejects rej.mpk <in.mpk >bad.mpk 2>err &&
		test \"\$(eosin-cat rej.mpk | jq -r .caption_error | sort -u)\" != '' &&
		eosin-cat rej.mpk | jq -r .caption_error | sed 's/region [0-9]* of [0-9]*/region K of N/' |
			sort -u >why &&
		test \$(wc -l <why) = 1 && grep -q \"^decompose: .*$msg\" why &&
		test \$(eosin-cat rej.mpk | jq -c 'select(.k == \"doc\")' | wc -l) = $N &&
		eosin-cat rej.mpk | jq -c 'select(.k == \"doc\") | .sentences' | sort -u >s &&
		test \"\$(cat s)\" = '[\"regex sentence\"]' &&
		test \$(eosin-cat bad.mpk | jq -c 'select(.k == \"doc\")' | wc -l) = 1 &&
		grep -q \"record [0-9]* (id 'S[0-9]*/report'): decompose: \" err &&
		grep -q 'failed $N' err
	"
done

test_expect_success 'too many regions for --max-regions: refused with the count' '
	test_exit_code 1 eosin-caption-fetch --decompose "$LLM" --model test-llm --max-regions 1 \
		--retries 0 <in.mpk >mr.mpk 2>err &&
	grep -q "decompose: [0-9]* regions, more than --max-regions 1" err
'

test_expect_success 'usage: --decompose needs --model, and is one mode of three' '
	test_exit_code 2 eosin-caption-fetch --decompose "$LLM" <in.mpk 2>err &&
	grep -q "needs --model" err &&
	test_exit_code 2 eosin-caption-fetch --decompose "$LLM" --vlm "$LLM" --model m <in.mpk
'

test_done
