#!/bin/sh
# eosin-caption-fetch options the other t30NN tests leave out: what a --vlm
# request holds (--system, --max-tokens, --low-prompt, --high-prompt,
# --high-mag), a key from --api-key-env, every --url template field
# ({slide}, {id}, {mag}, {x}, {y}) over file:// and http://, a rerun after
# a Ctrl-C, and the manual's example against the project's test server.
. "$(dirname "$0")/../lib.sh"
test_have_prereq SHARED || test_skip_all 'needs ../shared/data (tiles, captions)'
command -v python3 >/dev/null || test_skip_all 'needs python3'
command -v nginx >/dev/null || test_skip_all 'needs nginx (nginx-light)'
. "$ROOT/tests/servers/caption-lib.sh"

test_expect_success 'setup: tiles, the checking C server' '
	make_tiles 4 T1,T2 >in.json && eosin-cat -r in.json >in.mpk &&
	start_fast_vlm --check && echo "$VLM_PORT" >port
'
VLM_PORT=$(cat port 2>/dev/null)
VLM="http://127.0.0.1:$VLM_PORT/v1/chat/completions"

test_expect_success 'the request: model, max_tokens, system message, prompt, image' '
	head -n 1 in.json | eosin-cat -r >one.mpk &&
	eosin-caption-fetch --vlm "$VLM" --model vlm-7b --max-tokens 77 \
		--system "You are a pathologist." <one.mpk >/dev/null 2>/dev/null &&
	curl -s "http://127.0.0.1:$VLM_PORT/last" >req.json &&
	jq -e ".model == \"vlm-7b\" and .max_tokens == 77 and .temperature == 0" req.json &&
	jq -e ".messages | length == 2" req.json &&
	jq -e ".messages[0] == {\"role\": \"system\", \"content\": \"You are a pathologist.\"}" req.json &&
	jq -e ".messages[1].role == \"user\" and (.messages[1].content[0].text | startswith(\"Describe the tissue\"))" req.json &&
	jq -r ".messages[1].content[1].image_url.url" req.json >url &&
	jq -r ".jpeg[\"\$base64\"]" in.json | head -n 1 | sed "s|^|data:image/jpeg;base64,|" >want &&
	test_cmp want url
'

test_expect_success '--low-prompt, --high-prompt, --high-mag choose by magnification' '
	eosin-caption-fetch --vlm "$VLM" --model m --low-prompt "Low one here please" \
		--high-prompt "High one here please" --high-mag 10 <in.mpk >p.mpk 2>/dev/null &&
	eosin-cat p.mpk | jq -r "select(.k == \"tile\") | \"\(.mag) \(.caption)\"" |
		sed "s/Image [0-9a-f]* asked //; s/\. Nuclei are round\.//" | sort -u >got &&
	printf "%s\n" "10 '"'"'High one here'"'"'" "20 '"'"'High one here'"'"'" \
		"40 '"'"'High one here'"'"'" "5 '"'"'Low one here'"'"'" >want &&
	test_cmp want got
'

test_expect_success '--api-key-env: the key from that variable is sent, never written' '
	KEY=sk-other-$$-key &&
	MY_KEY=$KEY start_vlm --expect-key-env MY_KEY &&
	MY_KEY=$KEY EOSIN_API_KEY=wrong eosin-caption-fetch --api-key-env MY_KEY \
		--vlm "http://127.0.0.1:$VLM_PORT/v1/chat/completions" --model m --cache kc \
		<in.mpk >k.mpk 2>k.err &&
	test "$(vlm_stat auth_ok)" = 8 && test "$(vlm_stat requests)" = 8 &&
	! grep -r -F "$KEY" k.mpk k.err kc
'

# Text per tile under www/t/SLIDE/MAG/X_Y.txt, each naming its own tile.
test_expect_success 'setup: a text file per tile, nginx' '
	jq -r "[.slide, .mag, .x, .y, .id] | @tsv" in.json |
	while IFS="	" read -r s m x y id; do
		mkdir -p "www/t/$s/$m" "www/id/$(dirname "$id")" &&
		echo "Tile $id at ${m}x. Glands are crowded." >"www/t/$s/$m/${x}_$y.txt" &&
		cp "www/t/$s/$m/${x}_$y.txt" "www/id/$id.txt" || return 1
	done &&
	start_nginx "$TRASH/www" && echo "$NGINX_PORT" >nport
'
NGINX_PORT=$(cat nport 2>/dev/null)

# check_tiles OUT.mpk: every tile holds the text written for it
check_tiles() {
	eosin-cat "$1" | jq -r "select(.k == \"tile\") | \"\(.id)|\(.caption)\"" >got &&
	jq -r "\"\(.id)|Tile \(.id) at \(.mag)x. Glands are crowded.\"" in.json >want &&
	test_cmp want got
}

test_expect_success '--url file:// with {slide}, {mag}, {x}, {y}' '
	eosin-caption-fetch --url "file://$TRASH/www/t/{slide}/{mag}/{x}_{y}.txt" <in.mpk >f.mpk 2>/dev/null &&
	check_tiles f.mpk
'

test_expect_success '--url http:// with {slide}, {mag}, {x}, {y}' '
	eosin-caption-fetch --url "http://127.0.0.1:$NGINX_PORT/t/{slide}/{mag}/{x}_{y}.txt" \
		<in.mpk >h.mpk 2>/dev/null &&
	check_tiles h.mpk
'

# {id} holds slashes: kept in a file:// path, escaped in a URL (nginx
# decodes %2F and finds the same file)
test_expect_success '--url with {id}, file:// and http://' '
	eosin-caption-fetch --url "file://$TRASH/www/id/{id}.txt" <in.mpk >i.mpk 2>/dev/null &&
	check_tiles i.mpk &&
	eosin-caption-fetch --url "http://127.0.0.1:$NGINX_PORT/id/{id}.txt" <in.mpk >j.mpk 2>/dev/null &&
	check_tiles j.mpk &&
	grep -q "GET /id/T1%2F5x%2F0_0.txt" "$TRASH/nginx/access.log"
'

# A shell starts background jobs with SIGINT ignored; env gives it back.
test_expect_success 'after a Ctrl-C (SIGINT) mid-run, a rerun asks only what is not cached' '
	start_fast_vlm --check --delay 0.05 &&
	make_tiles 40 S9 >big.json && eosin-cat -r big.json >big.mpk &&
	{ env --default-signal=INT eosin-caption-fetch --vlm "$VLM" --model m --cache ci \
		--inflight 1 <big.mpk >/dev/null 2>/dev/null & pid=$!; } &&
	i=0 && while [ -z "$(find ci -type f -name "[0-9a-f]*" 2>/dev/null)" ] && [ $i -lt 200 ]; do
		sleep 0.05; i=$((i + 1)); done &&
	kill -INT $pid; wait $pid; status=$? &&
	test $status = 130 &&
	have=$(find ci -type f -name "[0-9a-f]*" | wc -l) &&
	test $have -gt 0 && test $have -lt 40 &&
	vlm_reset &&
	eosin-caption-fetch --vlm "$VLM" --model m --cache ci <big.mpk >big.out 2>big.err &&
	check_captions big.json big.out &&
	test "$(vlm_stat requests)" = $((40 - have)) &&
	grep "asked $((40 - have)), cached $have," big.err
'

test_expect_success 'the manual'"'"'s example with the test server runs' '
	sed -n "/^python3 tests\/servers\/vlm-server.py/,/^\.EE/p" "$ROOT/man/man1/eosin-caption-fetch.1" |
		sed -e "/^\.EE/d" -e "s/\\\\-/-/g" -e "s/\\\\e\$/\\\\/" >example &&
	test "$(wc -l <example)" = 3 &&
	start_vlm && vlm_reset &&
	sed -e "1d" -e "s/127.0.0.1:8000/127.0.0.1:$VLM_PORT/" example >run.sh &&
	(cd "$TRASH" && cp in.mpk tiles.mpk && sh ./run.sh >captions) &&
	test "$(wc -l <captions)" = 8 && ! grep -v "^Image [0-9a-f]* asked" captions &&
	test "$(vlm_stat faults)" = 8
'

test_done
