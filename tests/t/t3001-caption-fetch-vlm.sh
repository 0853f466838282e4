#!/bin/sh
# eosin-caption-fetch --vlm against the project's test VLM server: captions
# land on the right tiles in input order, other records pass unchanged, the
# API key stays out of everything we write, the cache makes a rerun silent.
. "$(dirname "$0")/../lib.sh"
test_have_prereq SHARED || test_skip_all 'needs ../shared/data (tiles)'
command -v python3 >/dev/null || test_skip_all 'needs python3'
. "$ROOT/tests/servers/caption-lib.sh"

KEY="sk-test-$$-k3y"
export KEY

test_expect_success 'setup: server and a tile stream with other records' '
	EOSIN_TEST_KEY=$KEY start_vlm --expect-key-env EOSIN_TEST_KEY &&
	echo "$VLM_PORT" >port &&
	make_tiles 12 S1,S2 >tiles.json &&
	{ echo "{\"k\":\"hdr\",\"v\":1,\"prog\":\"eosin-tile\",\"version\":\"0\",\"args\":[],\"time\":\"t\"}" &&
	  head -n 5 tiles.json &&
	  echo "{\"k\":\"text\",\"v\":1,\"id\":\"1\",\"caption\":\"left alone\"}" &&
	  echo "{\"k\":\"zzz\",\"v\":3,\"id\":\"x\",\"caption\":\"unknown kind\"}" &&
	  tail -n +6 tiles.json; } >in.json &&
	eosin-cat -r in.json >in.mpk
'
VLM_PORT=$(cat port 2>/dev/null)
VLM="http://127.0.0.1:$VLM_PORT/v1/chat/completions"

test_expect_success 'captions from the server, in input order, on their own tiles' '
	EOSIN_API_KEY=$KEY eosin-caption-fetch --vlm "$VLM" --model test-vlm --inflight 8 \
		<in.mpk >out.mpk 2>err &&
	check_captions in.json out.mpk &&
	test "$(vlm_stat requests)" = 24 &&
	test "$(vlm_stat auth_ok)" = 24 &&
	grep "asked 24, cached 0, shared 0, failed 0" err
'

test_expect_success 'hdr first, earlier hdr kept, other records byte for byte' '
	eosin-cat out.mpk | jq -r .k >kinds &&
	test "$(head -n 2 kinds | tr "\n" " ")" = "hdr hdr " &&
	eosin-cat out.mpk | sed -n 2p | jq -e ".prog == \"eosin-caption-fetch\" and .model == \"test-vlm\"" &&
	eosin-cat --base64 out.mpk | jq -c "select(.k == \"text\" or .k == \"zzz\")" >passed &&
	jq -c "select(.k == \"text\" or .k == \"zzz\")" in.json >expect &&
	test_cmp expect passed &&
	eosin-cat --check out.mpk 2>check.err || { cat check.err; false; }
'

test_expect_success 'the API key is sent but never written' '
	mkdir -p cache &&
	EOSIN_API_KEY=$KEY eosin-caption-fetch --vlm "$VLM" --model test-vlm --cache cache \
		<in.mpk >out2.mpk 2>err2 &&
	! grep -r -F "$KEY" out.mpk err out2.mpk err2 cache &&
	! grep -r -F "Bearer" out2.mpk err2 cache &&
	test "$(vlm_stat auth_ok)" = 48
'

test_expect_success 'a rerun with the cache asks nothing' '
	vlm_reset &&
	eosin-caption-fetch --vlm "$VLM" --model test-vlm --cache cache <in.mpk >out3.mpk 2>err3 &&
	test "$(vlm_stat requests)" = 0 &&
	grep "asked 0, cached 24" err3 &&
	check_captions in.json out3.mpk
'

test_expect_success 'the cache is fanned out and holds the captions only' '
	find cache -type f | sed "s|^cache/||" >files &&
	test "$(wc -l <files)" = 24 &&
	! grep -Ev "^[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}$" files &&
	for f in $(find cache -type f); do cat $f; echo; done | grep -c "^Image [0-9a-f]* asked" >n &&
	test "$(cat n)" = 24
'

test_expect_success 'after a kill -9 mid-run, a rerun asks exactly what is not cached' '
	rm -rf cache2 && vlm_reset &&
	make_tiles 40 S3 >big.json && eosin-cat -r big.json >big.mpk &&
	{ eosin-caption-fetch --vlm "$VLM" --model test-vlm --cache cache2 --rate 20 \
		<big.mpk >/dev/null 2>&1 & pid=$!; } &&
	i=0 && while [ -z "$(find cache2 -type f -name "[0-9a-f]*" 2>/dev/null)" ] && [ $i -lt 200 ]; do
		sleep 0.05; i=$((i + 1)); done &&
	kill -9 $pid; wait $pid;
	have=$(find cache2 -type f -name "[0-9a-f]*" | wc -l) &&
	test $have -gt 0 && test $have -lt 40 &&
	vlm_reset &&
	eosin-caption-fetch --vlm "$VLM" --model test-vlm --cache cache2 <big.mpk >big.out 2>/dev/null &&
	check_captions big.json big.out &&
	test "$(vlm_stat requests)" = $((40 - have))
'

test_expect_success 'identical tiles in flight are asked once' '
	vlm_reset &&
	head -n 1 tiles.json >one.json &&
	for i in 1 2 3 4 5 6; do cat one.json; done | eosin-cat -r >same.mpk &&
	eosin-caption-fetch --vlm "$VLM" --model test-vlm <same.mpk >same.out 2>err4 &&
	test "$(vlm_stat requests)" = 1 &&
	test "$(eosin-cat same.out | jq -r "select(.k == \"tile\") | .caption" | sort -u | wc -l)" = 1 &&
	grep "asked 1, cached 0, shared 5" err4
'

test_expect_success 'prompts by magnification from a file' '
	vlm_reset &&
	printf "# mag\tprompt\n0\tLow mag question\n10\tMiddle mag question\n30\tTop mag question\n" >prompts &&
	eosin-caption-fetch --vlm "$VLM" --model m --prompts prompts <in.mpk >p.out 2>/dev/null &&
	eosin-cat p.out | jq -r "select(.k == \"tile\") | \"\(.mag) \(.caption)\"" |
		sed "s/Image [0-9a-f]* asked //; s/\. Nuclei are round\.//" | sort -u >got &&
	printf "10 '"'"'Middle mag question'"'"'\n20 '"'"'Middle mag question'"'"'\n40 '"'"'Top mag question'"'"'\n5 '"'"'Low mag question'"'"'\n" >want &&
	test_cmp want got
'

test_expect_success 'a tile without pixels is passed on with caption_error, exit 1' '
	head -n 2 tiles.json | jq -c "del(.jpeg)" | eosin-cat -r >nopix.mpk &&
	test_exit_code 1 eosin-caption-fetch --vlm "$VLM" --model m <nopix.mpk >nopix.out 2>nopix.err &&
	test "$(eosin-cat nopix.out | jq -r "select(.k == \"tile\") | .caption_error" | sort -u)" = "tile '"'"'S1/5x/0_0'"'"' has no field '"'"'jpeg'"'"'" ||
	test "$(eosin-cat nopix.out | jq -r "select(.k == \"tile\") | .caption_error" | grep -c "has no field")" = 2
'

test_expect_success 'usage errors exit 2' '
	test_exit_code 2 eosin-caption-fetch </dev/null &&
	test_exit_code 2 eosin-caption-fetch --vlm "$VLM" </dev/null &&
	test_exit_code 2 eosin-caption-fetch --vlm "$VLM" --url x --model m </dev/null &&
	test_exit_code 2 eosin-caption-fetch --vlm "$VLM" --model m --doc </dev/null &&
	test_exit_code 2 eosin-caption-fetch --vlm "$VLM" --model m --inflight 0 </dev/null &&
	env -u NOPE_KEY_VAR sh -c "eosin-caption-fetch --vlm \"$VLM\" --model m --api-key-env NOPE_KEY_VAR </dev/null 2>e; test \$? = 2" &&
	eosin-caption-fetch --help 2>u; test $? = 2 && grep "^usage: eosin-caption-fetch (--vlm URL" u
'

test_expect_success 'output to /dev/full fails with a message' '
	test_must_fail eosin-caption-fetch --vlm "$VLM" --model m --cache cache <in.mpk >/dev/full 2>full.err &&
	grep "write error" full.err
'

test_done
