#!/bin/sh
# eosin-caption-fetch over https: a server whose certificate comes from a
# private CA (made here with openssl) is refused by default, at once and
# per record, and trusted with --cacert; a certificate for another name is
# refused even with the right CA.
. "$(dirname "$0")/../lib.sh"
test_have_prereq SHARED || test_skip_all 'needs ../shared/data (tiles)'
command -v python3 >/dev/null || test_skip_all 'needs python3'
command -v openssl >/dev/null || test_skip_all 'needs openssl (the openssl package)'
. "$ROOT/tests/servers/caption-lib.sh"

# cert NAME SAN: a key and a certificate for SAN signed by the test CA
cert() {
	openssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -subj "/CN=$1" \
		-out "$1.csr" 2>/dev/null &&
	printf "subjectAltName=%s\n" "$2" >"$1.ext" &&
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
		-extfile "$1.ext" -out "$1.pem" 2>/dev/null
}

test_expect_success 'setup: a private CA, a server certificate for 127.0.0.1, tiles' '
	openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
		-subj "/CN=eosin test CA" 2>/dev/null &&
	cert server IP:127.0.0.1 &&
	cert elsewhere DNS:vlm.example.org &&
	make_tiles 4 S1 >tiles.json && eosin-cat -r tiles.json >tiles.mpk
'

test_expect_success 'without --cacert the certificate is refused, each tile says why, exit 1' '
	start_vlm --tls server.pem server.key &&
	echo $VLM_PORT >port &&
	url="https://127.0.0.1:$VLM_PORT/v1/chat/completions" &&
	test_exit_code 1 eosin-caption-fetch --vlm "$url" --model m --retries 3 \
		<tiles.mpk >out.mpk 2>err &&
	grep "<stdin>: record 1 (id .S1/5x/0_0.): SSL certificate problem" err &&
	test $(eosin-cat --kind tile out.mpk | jq -r .caption_error | grep -ci "certificate") = 4 &&
	test "$(curl -s --cacert ca.pem https://127.0.0.1:$VLM_PORT/stats | jq .requests)" = 0
'

test_expect_success 'with --cacert the captions arrive over https' '
	url="https://127.0.0.1:$(cat port)/v1/chat/completions" &&
	eosin-caption-fetch --vlm "$url" --model m --cacert ca.pem <tiles.mpk >out.mpk 2>err &&
	check_captions tiles.json out.mpk &&
	test "$(curl -s --cacert ca.pem https://127.0.0.1:$(cat port)/stats | jq .requests)" = 4
'

test_expect_success 'the right CA but a certificate for another name: refused' '
	start_vlm --tls elsewhere.pem elsewhere.key &&
	url="https://127.0.0.1:$VLM_PORT/v1/chat/completions" &&
	test_exit_code 1 eosin-caption-fetch --vlm "$url" --model m --cacert ca.pem \
		<tiles.mpk >out.mpk 2>err &&
	test $(eosin-cat --kind tile out.mpk | jq -r .caption_error | grep -c "127.0.0.1") = 4
'

test_expect_success 'an unreadable --cacert is a usage error naming it' '
	test_exit_code 2 eosin-caption-fetch --vlm https://127.0.0.1:1/ --model m \
		--cacert no-such.pem </dev/null 2>err &&
	grep "cacert: .no-such.pem." err
'

test_done
