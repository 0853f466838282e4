#!/bin/sh
# eosin-caption-fetch --url: reports built from real captions, served by
# nginx (http://) and read from disk (file://), once per slide as doc records
# (--doc) or on every tile, split into the part the slide id names.
. "$(dirname "$0")/../lib.sh"
test_have_prereq SHARED || test_skip_all 'needs ../shared/data (tiles, captions)'
command -v python3 >/dev/null || test_skip_all 'needs python3'
command -v nginx >/dev/null || test_skip_all 'needs nginx (nginx-light)'
. "$ROOT/tests/servers/caption-lib.sh"

# Reports: G1 has parts A. and B), G3 has Part 1:/Part 2: (slides name
# letters: A = 1), G2 and "G5 b&c" have none, G4 is missing (404). The
# expected text of each slide is written down here as the report is built.
test_expect_success 'setup: reports from real captions, nginx, tiles' '
	mkdir -p www/reports &&
	$PY - "$SHARED/text/gastric-adenocarcinoma-captions.csv" <<-\EOF >expect.json &&
	import csv, json, sys
	caps = [r["text"] for r in csv.DictReader(open(sys.argv[1]))]
	caps = list(dict.fromkeys(" ".join(c.split()) for c in caps))[:8]
	def put(name, text):
	    open("www/reports/%s.txt" % name, "w").write(text)
	put("G1", "FINAL DIAGNOSIS:\nA. Stomach, biopsy: %s\nB) Stomach, antrum: %s\n" % (caps[0], caps[1]))
	put("G2", "%s\n%s\n" % (caps[2], caps[3]))
	put("G3", "Part 1: %s\n\nPart 2: Lymph node. %s\n" % (caps[4], caps[5]))
	put("G5 b&c", caps[6])
	want = {
	    "G1-A": ("A", "Stomach, biopsy: " + caps[0]),
	    "G1-B": ("B", "Stomach, antrum: " + caps[1]),
	    "G2": (None, caps[2] + " " + caps[3]),
	    "G3-B": ("B", "Lymph node. " + caps[5]),
	    "G4-A": ("A", None),
	    "G5 b&c": (None, caps[6]),
	}
	print(json.dumps(want))
	EOF
	start_nginx "$TRASH/www" && echo "$NGINX_PORT" >port &&
	make_tiles 2 "G1-A,G1-B,G2,G3-B,G4-A,G5 b&c" >in.json && eosin-cat -r in.json >in.mpk
'
NGINX_PORT=$(cat port 2>/dev/null)
LOG="$TRASH/nginx/access.log"

# check_docs OUT.mpk: one doc per slide before its first tile, tiles
# unchanged, each doc holding the expected text (or an error for G4-A),
# sentences covering the caption, keywords drawn from it.
check_docs() {
	eosin-cat --base64 "$1" >docs.json &&
	$PY - in.json docs.json expect.json <<-\EOF
	import json, sys
	ins = [json.loads(l) for l in open(sys.argv[1])]
	outs = [json.loads(l) for l in open(sys.argv[2])]
	want = json.load(open(sys.argv[3]))
	assert outs[0]["k"] == "hdr"
	body = outs[1:]
	tiles = [r for r in body if r["k"] == "tile"]
	assert tiles == ins, "tiles changed or reordered"
	seen = set()
	for i, r in enumerate(body):
	    if r["k"] == "doc":
	        s = r["slide"]
	        assert s not in seen and body[i + 1]["slide"] == s, "doc not before first tile"
	        seen.add(s)
	        part, text = want[s]
	        if text is None:
	            assert "caption" not in r and r["caption_error"], r
	            continue
	        assert r["caption"] == text, (r["caption"], text)
	        assert r.get("part") == part, r
	        assert r["id"] == s + "/report" + ("/" + part if part else ""), r["id"]
	        assert " ".join(r["sentences"]) == text, r["sentences"]
	        low = text.lower()
	        assert r["keywords"] and all(w in low for k in r["keywords"] for w in k.split()), r["keywords"]
	    else:
	        assert r["slide"] in seen, "tile before its doc"
	assert seen == set(want), seen
	EOF
}

test_expect_success 'http:// --doc: one doc per slide, the slide'"'"'s part, a 404 marked' '
	test_exit_code 1 eosin-caption-fetch --url "http://127.0.0.1:$NGINX_PORT/reports/{case}.txt" --doc \
		<in.mpk >out.mpk 2>err &&
	check_docs out.mpk &&
	eosin-cat out.mpk | jq -r "select(.k == \"doc\" and .slide == \"G4-A\") | .caption_error" >e &&
	test "$(cat e)" = "http 404" &&
	grep "6 docs; asked 5, cached 0, shared 1, failed 1" err &&
	eosin-cat --check out.mpk 2>/dev/null
'

test_expect_success 'http://: each report asked once (G1 shared by two slides), 404 not retried' '
	test "$(grep -c "GET /reports/" "$LOG")" = 5 &&
	test "$(grep -c "GET /reports/G1.txt" "$LOG")" = 1 &&
	grep -q "GET /reports/G5%20b%26c.txt" "$LOG"
'

test_expect_success 'doc source is the URL asked, template values escaped' '
	eosin-cat out.mpk | jq -r "select(.k == \"doc\") | .source" >src &&
	grep -Fx "http://127.0.0.1:$NGINX_PORT/reports/G5%20b%26c.txt" src &&
	grep -Fx "http://127.0.0.1:$NGINX_PORT/reports/G1.txt" src
'

test_expect_success 'file:// --doc gives the same docs' '
	test_exit_code 1 eosin-caption-fetch --url "file://$TRASH/www/reports/{case}.txt" --doc \
		<in.mpk >fout.mpk 2>ferr &&
	check_docs fout.mpk &&
	eosin-cat fout.mpk | jq -r "select(.k == \"doc\" and .slide == \"G4-A\") | .caption_error" | grep .
'

test_expect_success 'a cached rerun asks nginx nothing' '
	eosin-caption-fetch --url "http://127.0.0.1:$NGINX_PORT/reports/{case}.txt" --doc --cache c \
		<in.mpk >/dev/null 2>/dev/null;
	before=$(grep -c "GET /reports/" "$LOG") &&
	eosin-caption-fetch --url "http://127.0.0.1:$NGINX_PORT/reports/{case}.txt" --doc --cache c \
		<in.mpk >cout.mpk 2>cerr;
	test "$(grep -c "GET /reports/" "$LOG")" = $((before + 1)) &&
	tail -n 1 "$LOG" | grep -q "GET /reports/G4.txt" &&
	check_docs cout.mpk
'

test_expect_success 'without --doc the text goes on every tile' '
	test_exit_code 1 eosin-caption-fetch --url "http://127.0.0.1:$NGINX_PORT/reports/{case}.txt" \
		<in.mpk >tout.mpk 2>/dev/null &&
	eosin-cat tout.mpk | jq -r "select(.k == \"tile\") | [.slide, .part // \"-\", .caption // .caption_error] | @tsv" >got &&
	jq -r "to_entries[] | [.key, (if .value[1] then .value[0] // \"-\" else \"-\" end), .value[1] // \"http 404\"] | @tsv" expect.json >one &&
	cat one one | sort >want && sort got >got.sorted &&
	test_cmp want got.sorted &&
	test "$(eosin-cat tout.mpk | jq -r .k | sort | uniq -c | tr -s " " | tr "\n" ";")" = " 1 hdr; 12 tile;"
'

test_expect_success '--part-from: the part from a user expression, {case} without it' '
	make_tiles 1 "G1-partB" | eosin-cat -r >p.mpk &&
	eosin-caption-fetch --url "file://$TRASH/www/reports/{case}.txt" --doc \
		--part-from "-part([A-Z])\$" <p.mpk >pout.mpk 2>/dev/null &&
	eosin-cat pout.mpk | jq -r "select(.k == \"doc\") | .part" >part &&
	test "$(cat part)" = B
'

test_expect_success 'a slide part missing from a report with parts is an error' '
	make_tiles 1 "G1-C" | eosin-cat -r >m.mpk &&
	test_exit_code 1 eosin-caption-fetch --url "file://$TRASH/www/reports/{case}.txt" --doc <m.mpk >mout.mpk 2>/dev/null &&
	test "$(eosin-cat mout.mpk | jq -r "select(.k == \"doc\") | .caption_error")" = "no part '"'"'C'"'"' in the report"
'

test_expect_success 'a template field a record lacks is named' '
	make_tiles 1 G2 | eosin-cat -r >f.mpk &&
	test_exit_code 1 eosin-caption-fetch --url "file:///x/{nope}/{x}/{label}.txt" <f.mpk >/dev/null 2>ferr2;
	test_exit_code 1 eosin-caption-fetch --url "file:///x/{label}.txt" <f.mpk >fo.mpk 2>/dev/null &&
	eosin-cat fo.mpk | jq -r "select(.k == \"tile\") | .caption_error" | grep -q "."
'

test_done
