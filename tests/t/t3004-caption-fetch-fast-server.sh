#!/bin/sh
# The benchmark's server, tests/servers/vlm-fast-server.c, speaks what
# eosin-caption-fetch sends and answers as tests/servers/vlm-server.py does
# (--check), keeps connections alive, holds each answer --delay seconds
# without holding up the others, and refuses what is not a valid request.
. "$(dirname "$0")/../lib.sh"
test_have_prereq SHARED || test_skip_all 'needs ../shared/data (tiles)'
command -v python3 >/dev/null || test_skip_all 'needs python3'
. "$ROOT/tests/servers/caption-lib.sh"

test_expect_success 'setup: the server checking requests, answers held 0.1 s' '
	start_fast_vlm --check --delay 0.1 && echo "$VLM_PORT" >port &&
	make_tiles 12 S1,S2 >in.json && eosin-cat -r in.json >in.mpk
'
VLM_PORT=$(cat port 2>/dev/null)
VLM="http://127.0.0.1:$VLM_PORT/v1/chat/completions"

test_expect_success 'captions for every tile, in order, as the Python server gives them' '
	eosin-caption-fetch --vlm "$VLM" --model test-vlm --inflight 8 <in.mpk >out.mpk 2>err &&
	curl -s "http://127.0.0.1:$VLM_PORT/stats" >stats.json &&
	check_captions in.json out.mpk &&
	jq -e ".requests == 24 and .answered == 24 and .bad == 0" stats.json &&
	grep "asked 24, cached 0, shared 0, failed 0, retried 0" err
'

# connections: the client's eight and the one asking for /stats
test_expect_success 'connections are kept alive; answers waited side by side' '
	jq -e ".connections <= 9 and .max_active > 1 and .max_active <= 8" stats.json
'

test_expect_success 'one request at a time takes the delay each' '
	vlm_reset &&
	head -n 4 in.json | eosin-cat -r >four.mpk &&
	t0=$(date +%s.%N) &&
	eosin-caption-fetch --vlm "$VLM" --model m --inflight 1 <four.mpk >/dev/null 2>/dev/null &&
	t1=$(date +%s.%N) &&
	echo "$t1 - $t0 >= 0.4" | bc | grep -qx 1 &&
	test "$(vlm_stat max_active)" = 1
'

test_expect_success 'invalid requests get 400 and are counted, not retried' '
	vlm_reset &&
	curl -s -o body -w "%{http_code}\n" -H "Content-Type: application/json" \
		--data "{\"model\": \"m\"" "$VLM" >code &&
	test "$(cat code)" = 400 &&
	jq -r .error body | grep -qx "bad request" &&
	jq -c "del(.jpeg) | .jpeg = {\"\$base64\": \"aGVsbG8=\"}" in.json | head -n 1 | eosin-cat -r >notjpeg.mpk &&
	test_exit_code 1 eosin-caption-fetch --vlm "$VLM" --model m <notjpeg.mpk >nj.out 2>/dev/null &&
	test "$(eosin-cat nj.out | jq -r "select(.k == \"tile\") | .caption_error")" = "http 400" &&
	test "$(vlm_stat bad)" = 2
'

test_expect_success 'other paths are 404, a chunked body is refused' '
	test "$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$VLM_PORT/nope")" = 404 &&
	test "$(curl -s -o /dev/null -w "%{http_code}" -H "Transfer-Encoding: chunked" \
		--data x "$VLM")" = 411 &&
	curl -s "http://127.0.0.1:$VLM_PORT/v1/models" | jq -e ".data[0].id == \"test-vlm\""
'

test_expect_success 'without --check every answer is the fixed one, at once' '
	start_fast_vlm &&
	eosin-caption-fetch --vlm "$VLM" --model m --inflight 4 <in.mpk >fast.mpk 2>/dev/null &&
	ids fast.mpk >got && jq -r .id in.json >want && test_cmp want got &&
	test "$(eosin-cat fast.mpk | jq -r "select(.k == \"tile\") | .caption" | sort -u)" = "Fast answer."
'

test_done
