#!/bin/sh
# eosin-caption-fetch --vlm under every fault the test server can inject:
# no record lost or reordered, retries seen by the server, Retry-After
# honoured, failures marked and counted, limits respected.
. "$(dirname "$0")/../lib.sh"
test_have_prereq SHARED || test_skip_all 'needs ../shared/data (tiles)'
command -v python3 >/dev/null || test_skip_all 'needs python3'
. "$ROOT/tests/servers/caption-lib.sh"

N=8
test_expect_success 'setup' '
	start_vlm --retry-after 1 --slow 2 && echo "$VLM_PORT" >port &&
	make_tiles $N F1 >in.json && eosin-cat -r in.json >in.mpk
'
VLM_PORT=$(cat port 2>/dev/null)
base="http://127.0.0.1:$VLM_PORT"

# run_fault SPEC [options]: captions through /fault/SPEC; out.mpk, err
run_fault() {
	spec=$1; shift
	vlm_reset &&
	eosin-caption-fetch --vlm "$base/fault/$spec/v1/chat/completions" --model m \
		--backoff 0.01 "$@" <in.mpk >out.mpk 2>err
}

for f in 500 503 malformed ctype empty; do
	test_expect_success "fault $f once per request: all retried, none lost" '
		run_fault '$f' &&
		check_captions in.json out.mpk &&
		test "$(vlm_stat requests)" = $((2 * N)) &&
		test "$(vlm_stat faults)" = $N &&
		grep "failed 0, retried $N" err
	'
done

test_expect_success 'fault 500 twice per request: two retries each' '
	run_fault 500x2 &&
	check_captions in.json out.mpk &&
	test "$(vlm_stat requests)" = $((3 * N)) &&
	grep "failed 0, retried $((2 * N))" err
'

test_expect_success 'dropped connections: retried, none lost' '
	run_fault drop &&
	check_captions in.json out.mpk &&
	test "$(vlm_stat faults)" = $N &&
	test "$(vlm_stat answered)" = $N
'

test_expect_success 'slow answers past --timeout: retried, none lost' '
	run_fault slow --timeout 0.5 &&
	check_captions in.json out.mpk &&
	test "$(vlm_stat faults)" = $N &&
	grep "failed 0, retried $N" err
'

test_expect_success '429 with Retry-After: 1 is honoured (at least 1 s)' '
	t0=$(date +%s.%N) &&
	run_fault 429 &&
	t1=$(date +%s.%N) &&
	check_captions in.json out.mpk &&
	test "$(vlm_stat requests)" = $((2 * N)) &&
	echo "$t1 - $t0 >= 1.0" | bc | grep -qx 1
'

test_expect_success 'a fault on every attempt: marked, counted, exit 1, order kept' '
	test_exit_code 1 run_fault 500xalways --retries 2 &&
	test "$(vlm_stat requests)" = $((3 * N)) &&
	ids out.mpk >got && jq -r .id in.json >want && test_cmp want got &&
	test "$(eosin-cat out.mpk | jq -r "select(.k == \"tile\") | .caption_error" | sort -u)" = "http 500" &&
	grep "failed $N, retried $((2 * N))" err &&
	eosin-cat --check out.mpk 2>/dev/null
'

test_expect_success 'not retryable (400): asked once, marked' '
	test_exit_code 1 run_fault badreq &&
	test "$(vlm_stat requests)" = $N &&
	test "$(eosin-cat out.mpk | jq -r "select(.k == \"tile\") | .caption_error" | sort -u)" = "http 400"
'

test_expect_success '--rejects takes the failures, stdout keeps the rest, nothing lost' '
	{ head -n 3 in.json; echo "{\"k\":\"text\",\"v\":1,\"id\":\"t\",\"caption\":\"c\"}"; } |
		eosin-cat -r >good.mpk &&
	tail -n +4 in.json | jq -c "del(.jpeg)" | eosin-cat -r >bad.mpk &&
	cat good.mpk bad.mpk >mixed.mpk &&
	vlm_reset &&
	test_exit_code 1 eosin-caption-fetch --vlm "$base/v1/chat/completions" --model m \
		--rejects rej.mpk <mixed.mpk >kept.mpk 2>err &&
	ids kept.mpk >k && ids rej.mpk >r &&
	test "$(wc -l <k)" = 3 && test "$(wc -l <r)" = $((N - 3)) &&
	cat k r >got && jq -r .id in.json >want && test_cmp want got &&
	eosin-cat kept.mpk | jq -r .k | tr "\n" " " >kinds && test "$(cat kinds)" = "hdr tile tile tile text " &&
	eosin-cat rej.mpk | jq -e "select(.k == \"tile\") | .caption_error | test(\"no field\")" >/dev/null
'

test_expect_success '--deadline: the rest passed on marked, exit 1' '
	test_exit_code 1 run_fault slow --deadline 0.5 --timeout 30 &&
	ids out.mpk >got && jq -r .id in.json >want && test_cmp want got &&
	test "$(eosin-cat out.mpk | jq -r "select(.k == \"tile\") | .caption_error" | sort -u)" = deadline &&
	grep "deadline of 0.5 s passed" err
'

test_expect_success '--rate: 8 requests at 10/s take at least 0.7 s' '
	t0=$(date +%s.%N) &&
	run_fault delayx0 --rate 10 &&
	t1=$(date +%s.%N) &&
	check_captions in.json out.mpk &&
	echo "$t1 - $t0 >= 0.7" | bc | grep -qx 1
'

test_expect_success '--per-host bounds concurrency at the server' '
	run_fault delay --per-host 2 --inflight 8 &&
	check_captions in.json out.mpk &&
	test "$(vlm_stat max_active)" -le 2 &&
	run_fault delay --inflight 8 &&
	test "$(vlm_stat max_active)" -gt 2
'

test_expect_success 'a small --window keeps order with many in flight' '
	run_fault delay --inflight 8 --window 3 &&
	check_captions in.json out.mpk
'

test_expect_success 'server gone: connection errors retried, then marked' '
	test_exit_code 1 eosin-caption-fetch --vlm "http://127.0.0.1:$(free_port)/v1/chat/completions" \
		--model m --backoff 0.01 --retries 1 <in.mpk >out.mpk 2>err &&
	ids out.mpk >got && jq -r .id in.json >want && test_cmp want got &&
	grep "failed $N, retried $N" err
'

test_done
