#!/bin/sh
# eosin-encode: embeddings added to records, pass-through, hdr, dtypes,
# batching, text fields, --lines, truncation, bad input and rejects.
. "$(dirname "$0")/../lib.sh"

test_have_prereq SHARED || test_skip_all 'needs ../shared/data (tiles, CLIP vocabulary)'
VOCAB=$SHARED/tokenizers/bpe_simple_vocab_16e6.txt.gz

# tile RECORD_ID JPEG_FILE [extra jq object]: one tile-like JSON line
tile() {
	jq -nc --arg id "$1" --arg b "$(base64 -w0 "$2")" --argjson x "${3:-{\}}" \
		'{k:"tile",v:1,id:$id,jpeg:{"$base64":$b}} + $x'
}
# vals FILE ID FIELD: the embedding's values, one per line
vals() { eosin-cat --vectors "$1" | jq -r --arg id "$2" "select(.id==\$id) | .$3.values[]"; }

test_expect_success 'setup: tiny models and a stream' '
	eosin-make-model --arch vit --dim 64 --depth 2 --heads 2 --patch 16 --img 224 --reg 2 \
		--out vit.safetensors &&
	eosin-make-model --arch clip-text --width 32 --layers 1 --heads 2 --embed 24 \
		--out text.safetensors &&
	n=0 && for f in "$SHARED"/tiles/*.jpg; do
		n=$((n + 1)) && tile "t$n" "$f" "{\"caption\":\"tumour cells $n\",\"keywords\":[\"gland\",\"mitosis\"],\"sentences\":[\"one.\",\"two.\",\"three.\"]}" || return 1
	done >tiles.json &&
	{ echo "{\"k\":\"hdr\",\"v\":1,\"prog\":\"earlier\",\"version\":\"0\",\"args\":[],\"time\":\"t\"}" &&
	  head -3 tiles.json && echo "{\"k\":\"note\",\"v\":1,\"id\":\"n1\",\"x\":[1,2.5]}" &&
	  tail -n +4 tiles.json; } | eosin-cat -r >in.mpk &&
	test $(wc -l <tiles.json) -ge 6
'

test_expect_success 'images and texts get embeddings; other records pass through' '
	eosin-encode --model vit.safetensors --text-model text.safetensors --vocab "$VOCAB" \
		<in.mpk >out.mpk 2>err &&
	eosin-cat out.mpk >out.json &&
	jq -r .k out.json | head -3 >kinds && printf "hdr\nhdr\ntile\n" >expect && test_cmp expect kinds &&
	jq -r "select(.k==\"hdr\") | .prog" out.json >progs && printf "earlier\neosin-encode\n" >expect &&
	test_cmp expect progs &&
	test $(jq -c "select(.k==\"tile\") | [.img_emb.dim, .img_emb.dtype, .txt_emb.dim, .kw_emb.n, .sent_emb.n]" out.json | sort -u) = "[64,\"f16\",24,2,3]" &&
	grep -q "architecture from .vit.safetensors. __metadata__ timm_config" err &&
	grep -q "records truncated" err
'

test_expect_success 'the non-tile record is unchanged byte for byte' '
	eosin-cat --kind note --base64 in.mpk >want && eosin-cat --kind note --base64 out.mpk >got &&
	test_cmp want got
'

test_expect_success 'hdr and embeddings name the model and the sha256 of its weights' '
	h=$(sha256sum vit.safetensors | cut -c1-16) &&
	test "$(jq -r "select(.prog==\"eosin-encode\") | .hash" out.json)" = "$h" &&
	test "$(jq -r "select(.k==\"tile\") | .img_emb.hash" out.json | sort -u)" = "$h" &&
	test "$(jq -r "select(.k==\"tile\") | .img_emb.model" out.json | sort -u)" = eosin-vit-random
'

test_expect_success 'batch size does not change the embeddings; --dtype f32' '
	eosin-encode --model vit.safetensors --dtype f32 --batch 1 <in.mpk >b1.mpk 2>/dev/null &&
	eosin-encode --model vit.safetensors --dtype f32 --batch 5 <in.mpk >b5.mpk 2>/dev/null &&
	vals b1.mpk t2 img_emb >v1 && vals b5.mpk t2 img_emb >v5 && test $(wc -l <v1) = 64 &&
	paste v1 v5 | awk "{d=\$1-\$2; if (d<0) d=-d; if (d>m) m=d} END {print m; exit !(m < 1e-5)}" &&
	test "$(eosin-cat b1.mpk | jq -r "select(.k==\"tile\") | .img_emb.dtype" | sort -u)" = f32
'

test_expect_success 'f16 output is the f32 output rounded' '
	eosin-encode --model vit.safetensors <in.mpk >h.mpk 2>/dev/null &&
	vals h.mpk t2 img_emb >vh && paste v1 vh |
	awk "{d=\$1-\$2; if (d<0) d=-d; r=d/(\$1<0?-\$1:\$1); if (r>m) m=r} END {print m; exit !(m < 1e-3)}"
'

test_expect_success '--drop-pixels drops jpeg from encoded records only' '
	eosin-encode --model vit.safetensors --drop-pixels <in.mpk 2>/dev/null | eosin-cat >d.json &&
	test $(jq -c "select(.k==\"tile\") | has(\"jpeg\")" d.json | sort -u) = false &&
	test $(jq -c "select(.k==\"tile\") | has(\"img_emb\")" d.json | sort -u) = true
'

test_expect_success 'overlong text is truncated with one warning per record' '
	long=$(for i in $(seq 100); do printf "word%d " $i; done) &&
	jq -nc --arg c "$long" --arg k "$long" "{k:\"doc\",v:1,id:\"long1\",caption:\$c,keywords:[\$k,\$k]}" |
		eosin-cat -r | eosin-encode --text-model text.safetensors --vocab "$VOCAB" >l.mpk 2>err &&
	test $(grep -c "long1.*truncated" err) = 1 && grep -q "(1 records truncated)" err &&
	test $(eosin-cat l.mpk | jq -r "select(.k==\"doc\") | .txt_emb.dim") = 24
'

test_expect_success '--lines makes text records with labels and line-number ids' '
	printf "tumour\tpoorly differentiated adenocarcinoma\nnormal gastric mucosa\n" |
		eosin-encode --lines --text-model text.safetensors --vocab "$VOCAB" >lines.mpk 2>/dev/null &&
	eosin-cat --check --strict lines.mpk &&
	eosin-cat lines.mpk | jq -c "select(.k==\"text\") | [.id, .label, .caption, .txt_emb.dim]" >got &&
	cat >expect <<-\EOT &&
	["1","tumour","poorly differentiated adenocarcinoma",24]
	["2",null,"normal gastric mucosa",24]
	EOT
	test_cmp expect got
'

test_expect_success 'a corrupt JPEG: error names record, id and field; good records kept; exit 1' '
	printf "not a jpeg" >bad.jpg &&
	{ head -2 tiles.json && tile badone bad.jpg && tail -n +3 tiles.json; } | eosin-cat -r >bad.mpk &&
	test_exit_code 1 eosin-encode --model vit.safetensors <bad.mpk >partial.mpk 2>err &&
	grep -q "record 3 (id .badone.): field .jpeg.: corrupt JPEG" err &&
	test "$(eosin-cat partial.mpk | jq -r "select(.k==\"tile\") | .id" | tr "\n" " ")" = "t1 t2 "
'

test_expect_success '--rejects takes the bad record and the rest goes on' '
	eosin-encode --model vit.safetensors --rejects rej.mpk <bad.mpk >rest.mpk 2>err &&
	test "$(eosin-cat rej.mpk | jq -r .id)" = badone &&
	test $(eosin-cat rest.mpk | jq -r "select(.k==\"tile\") | .id" | wc -l) = $(wc -l <tiles.json) &&
	grep -q "1 rejected" err
'

test_expect_success 'empty text is an error naming the field' '
	echo "{\"k\":\"doc\",\"v\":1,\"id\":\"e1\",\"caption\":\"  \"}" | eosin-cat -r >e.mpk &&
	test_exit_code 1 eosin-encode --text-model text.safetensors --vocab "$VOCAB" <e.mpk >/dev/null 2>err &&
	grep -q "record 1 (id .e1.): field .caption.: empty text" err
'

test_expect_success 'JPEG size that disagrees with px is refused' '
	f=$(ls "$SHARED"/tiles/*.jpg | head -1) &&
	tile px1 "$f" "{\"px\":300}" | eosin-cat -r >px.mpk &&
	test_exit_code 1 eosin-encode --model vit.safetensors <px.mpk >/dev/null 2>err &&
	grep -q "field .jpeg.: JPEG is .* but px is 300" err
'

test_expect_success 'fixed-size model: other sizes refused with --no-resize, taken with --dynamic' '
	test_exit_code 1 eosin-encode --model vit.safetensors --no-resize <in.mpk >/dev/null 2>err &&
	grep -q "field .jpeg.: input .* but the model takes 224x224 (dynamic size is off)" err &&
	eosin-encode --model vit.safetensors --no-resize --dynamic <in.mpk >dyn.mpk 2>/dev/null &&
	test $(eosin-cat dyn.mpk | jq -r "select(.k==\"tile\") | .img_emb.dim" | sort -u) = 64
'

test_expect_success 'missing or malformed model file: clear error, exit 1' '
	test_exit_code 1 eosin-encode --model nope.safetensors </dev/null 2>err &&
	grep -q "nope.safetensors" err &&
	printf "\377\377\377\377\377\377\377\377{}" >junk.safetensors &&
	test_exit_code 1 eosin-encode --model junk.safetensors </dev/null 2>err &&
	grep -q "junk.safetensors.*header length" err
'

test_expect_success 'usage errors exit 2' '
	test_exit_code 2 eosin-encode </dev/null 2>/dev/null &&
	test_exit_code 2 eosin-encode --model vit.safetensors --batch 0 </dev/null 2>/dev/null &&
	test_exit_code 2 eosin-encode --text-model text.safetensors </dev/null 2>err &&
	grep -q "needs --vocab" err &&
	test_exit_code 2 eosin-encode --model vit.safetensors --dtype f64 </dev/null 2>/dev/null
'

test_expect_success 'a write error is reported' '
	test_must_fail eosin-encode --model vit.safetensors <in.mpk >/dev/full 2>err &&
	grep -qi "no space\|write" err
'

test_done
