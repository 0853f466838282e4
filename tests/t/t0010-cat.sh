#!/bin/sh
# eosin-cat: stream <-> JSON lines, schema checks, errors that say where.
. "$(dirname "$0")/../lib.sh"

cat >tile.json <<'JSON'
{"k":"hdr","v":1,"prog":"test","version":"0","args":["a","b"],"time":"2026-01-01T00:00:00Z"}
{"k":"tile","v":1,"id":"s/20x/0_512","slide":"s","path":"s.svs","mag":20,"mpp":0.5,"x":0,"y":512,"extent":512,"px":512,"level":0,"ds":1,"base_mpp":0.5,"mpp_source":"openslide","tissue":0.75,"depth":0,"root":"s/20x/0_512","quality":90,"jpeg":{"$base64":"/9j/AAEC"}}
{"k":"future","v":3,"id":"f","anything":[1,2,{"x":null}]}
JSON

test_expect_success 'JSON lines to a stream and back are the same JSON' '
	eosin-cat -r tile.json >s.mpk &&
	eosin-cat --base64 s.mpk >back.json &&
	jq -cS . tile.json >a && jq -cS . back.json >b && test_cmp a b
'

test_expect_success 'stream to JSON to stream is byte for byte' '
	eosin-cat --base64 s.mpk | eosin-cat -r >s2.mpk && cmp s.mpk s2.mpk
'

test_expect_success 'concatenated streams are a stream' '
	cat s.mpk s.mpk | eosin-cat | wc -l >n && echo 6 >want && test_cmp want n
'

test_expect_success 'binary fields are summarised by default and jq reads the output' '
	eosin-cat s.mpk | jq -r "select(.k==\"tile\") | .jpeg[\"\$bin\"]" >got &&
	echo 6 >want && test_cmp want got
'

test_expect_success '--kind selects records' '
	eosin-cat --kind tile s.mpk | jq -r .id >got && echo s/20x/0_512 >want && test_cmp want got
'

test_expect_success '--check accepts valid records and ignores unknown kinds' '
	eosin-cat --check s.mpk 2>err && grep "3 records checked, 0 invalid" err
'

test_expect_success '--check --strict refuses an unknown kind' '
	test_exit_code 1 eosin-cat --check --strict s.mpk 2>err &&
	grep "record 3: unknown kind .future." err
'

test_expect_success '--check names record, id and field of a missing field' '
	jq -c "select(.k==\"tile\") | del(.mpp)" tile.json | eosin-cat -r >bad.mpk &&
	test_exit_code 1 eosin-cat --check bad.mpk 2>err &&
	grep "eosin-cat: bad.mpk: record 1 (id .s/20x/0_512.): kind .tile. requires field .mpp." err
'

test_expect_success '--check names a field of the wrong type' '
	jq -c "select(.k==\"tile\") | .x = \"left\"" tile.json | eosin-cat -r >bad.mpk &&
	test_exit_code 1 eosin-cat --check bad.mpk 2>err &&
	grep "field .x. is not of type int" err
'

test_expect_success '--check checks enum values' '
	jq -c "select(.k==\"tile\") | .mpp_source = \"guess\"" tile.json | eosin-cat -r >bad.mpk &&
	test_exit_code 1 eosin-cat --check bad.mpk 2>err &&
	grep "field .mpp_source. is not of type enum:openslide|tiff|objective|override" err
'

test_expect_success '--check checks embeddings' '
	jq -c "select(.k==\"tile\") | .img_emb = {dtype:\"f32\",dim:4,data:{\"\$base64\":\"AAAAAA==\"}}" tile.json |
		eosin-cat -r >bad.mpk &&
	test_exit_code 1 eosin-cat --check bad.mpk 2>err &&
	grep "field .img_emb. is not a valid embedding: .data. has 4 bytes, n\*dim\*size is 16" err
'

test_expect_success '--vectors shows embedding values' '
	jq -c "select(.k==\"tile\") | .img_emb = {dtype:\"f32\",dim:2,data:{\"\$base64\":\"AACAPwAAAMA=\"}}" tile.json |
		eosin-cat -r | eosin-cat --vectors | jq -c .img_emb.values >got &&
	echo "[1,-2]" >want && test_cmp want got
'

test_expect_success 'a truncated stream: good records out, then the offset, exit 1' '
	size=$(wc -c <s.mpk) && head -c $((size - 3)) s.mpk >trunc.mpk &&
	test_exit_code 1 eosin-cat trunc.mpk >out 2>err &&
	test $(wc -l <out) = 2 &&
	grep "eosin-cat: trunc.mpk: truncated record at byte offset [0-9]* (.* after record 2)" err
'

test_expect_success 'garbage input names the byte offset' '
	{ cat s.mpk; printf "\301garbage"; } >garbage.mpk &&
	test_exit_code 1 eosin-cat garbage.mpk >out 2>err &&
	grep "malformed msgpack at byte offset $(wc -c <s.mpk) (after record 3)" err
'

test_expect_success 'a map without k is refused' '
	echo "{\"v\":1}" | test_exit_code 1 eosin-cat -r 2>err &&
	grep "<stdin>:1: field .k. missing" err
'

test_expect_success 'invalid JSON names the line' '
	printf "%s\n" "{\"k\":\"x\",\"v\":1}" "{nope" | test_exit_code 1 eosin-cat -r >/dev/null 2>err &&
	grep "<stdin>:2: invalid JSON" err
'

test_expect_success 'summarised binary cannot go back silently' '
	eosin-cat s.mpk | test_exit_code 1 eosin-cat -r >/dev/null 2>err &&
	grep "summarised" err
'

test_expect_success 'a write error is an error (/dev/full)' '
	test_exit_code 1 eosin-cat s.mpk >/dev/full 2>err && grep "No space left" err &&
	test_exit_code 1 eosin-cat -r tile.json >/dev/full 2>err && grep "No space left" err
'

test_expect_success 'a missing file is reported, others still read' '
	test_exit_code 1 eosin-cat nope.mpk s.mpk >out 2>err &&
	grep "cannot open .nope.mpk." err && test $(wc -l <out) = 3
'

test_expect_success 'usage error exits 2' '
	test_exit_code 2 eosin-cat --bogus 2>err && grep "^usage: eosin-cat" err
'

test_expect_success 'front end runs eosin-cat' '
	eosin cat s.mpk >a && eosin-cat s.mpk >b && test_cmp a b &&
	test_exit_code 2 eosin nosuch 2>err && grep "nosuch. is not an eosin command" err &&
	test_exit_code 2 eosin 2>err && grep "^usage: eosin COMMAND" err
'

test_done
