#!/bin/sh
# The whole chain on real patches: eosin-make-model -> eosin-encode ->
# eosin-bag -> eosin-align --train/--apply -> eosin-index -> eosin-query,
# with each answer recomputed by brute force in numpy (t50-pipeline.py):
# retrieval R@K, zero-shot labels, text queries typed as lines, and the
# heatmap of a text query over a real slide's tiles.
. "$(dirname "$0")/../lib.sh"

test_have_prereq SHARED || test_skip_all 'needs ../shared/data (patches, slide, CLIP vocabulary)'
# Debian's interpreter: numpy and PIL (a version manager's python3 has neither).
PY=/usr/bin/python3
$PY -c 'import numpy, PIL' 2>/dev/null || test_skip_all 'needs /usr/bin/python3 with numpy and PIL'
command -v vips >/dev/null || test_skip_all 'vips (libvips-tools) missing'
command -v jq >/dev/null || test_skip_all 'jq missing'
P="$PY $ROOT/tests/t/t50-pipeline.py"
VOCAB=$SHARED/tokenizers/bpe_simple_vocab_16e6.txt.gz
SLIDE=$SHARED/slides/cmu-1-small-region.svs
export EOSIN_BLAS_QUIET=1

# text line ...: the composition a user types, from lines to joint_emb
text() { eosin-encode --lines --text-model text.st --vocab "$VOCAB" 2>/dev/null | eosin-align --apply head.st; }

test_expect_success 'models, 32 real patches with captions from their labels, encoded' '
	eosin-make-model --arch vit --dim 64 --depth 2 --heads 2 --patch 16 --img 224 --out vit.st &&
	eosin-make-model --arch clip-text --width 32 --layers 1 --heads 2 --embed 24 --out text.st &&
	$P records "$SHARED/patches/crc-val-he-7k" >in.json &&
	test $(grep -c "\"k\": \"tile\"" in.json) = 32 &&
	eosin-cat -r in.json >in.mpk &&
	eosin-encode --model vit.st --text-model text.st --vocab "$VOCAB" --drop-pixels in.mpk >enc.mpk 2>err &&
	grep "64 records, 32 images, 32 texts" err
'

test_expect_success 'slide bags, a trained head, joint_emb and joint_txt_emb' '
	eosin-bag --by slide enc.mpk >bags.mpk 2>err &&
	grep "32 bags written (0 sampled, 0 without text)" err &&
	eosin-align --train --out head.st --dim 16 --epochs 30 --batch 8 --lr 3e-3 --threads 1 bags.mpk 2>/dev/null &&
	eosin-align --apply head.st bags.mpk >joint.mpk &&
	eosin-cat --check --strict joint.mpk &&
	eosin-cat --vectors joint.mpk >joint.json &&
	test $(jq -c "select(.k == \"bag\") | [.joint_emb.dim, .joint_txt_emb.dim]" joint.json | sort -u) = "[16,16]"
'

test_expect_success '--eval-retrieval R@1/5/10 equal a brute-force recomputation' '
	eosin-query --eval-retrieval --metrics r.json joint.mpk >passed.mpk 2>err &&
	grep "retrieval over 32 pairs (joint_emb vs joint_txt_emb)" err &&
	$P retrieval joint.json r.json &&
	cmp joint.mpk passed.mpk 2>/dev/null || { eosin-cat joint.mpk >a && eosin-cat passed.mpk | grep -v "\"prog\":\"eosin-query\"" >b && test_cmp a b; }
'

test_expect_success 'a Q-Former head: R@K equal brute force too' '
	eosin-align --train --out qf.st --dim 16 --queries 2 --qdim 16 --heads 2 --ffn 32 \
		--epochs 10 --batch 8 --threads 1 bags.mpk 2>/dev/null &&
	eosin-align --apply qf.st bags.mpk >qf.mpk &&
	eosin-cat --vectors qf.mpk >qf.json &&
	eosin-query --eval-retrieval --metrics qr.json qf.mpk >/dev/null 2>&1 &&
	$P retrieval qf.json qr.json
'

test_expect_success 'zero-shot: class prompts through the same chain; labels as brute force; output valid' '
	$P classes >classes.txt &&
	eosin-query --expand-classes classes.txt | text >prompts.mpk &&
	eosin-cat --kind tile --base64 enc.mpk | eosin-cat -r | eosin-align --apply head.st >tiles.joint.mpk &&
	eosin-query --zero-shot prompts.mpk --slide-pool topk:1 --metrics zm.json tiles.joint.mpk >zs.mpk 2>err &&
	grep "8 classes from prompts.mpk: ADI (2 prompts)" err &&
	grep "records: n 32 " err &&
	eosin-cat --check zs.mpk &&
	eosin-cat --check --strict zs.mpk &&
	test $(eosin-cat --kind zeroshot zs.mpk | wc -l) = 32 &&
	eosin-cat --vectors prompts.mpk >prompts.json &&
	eosin-cat --vectors tiles.joint.mpk >tiles.joint.json &&
	eosin-cat zs.mpk >zs.json &&
	$P zeroshot prompts.json tiles.joint.json zs.json &&
	jq -e ".records.n == 32 and (.classes | length) == 8" zm.json
'

test_expect_success 'text typed as lines finds the indexed patches a brute-force ranking finds' '
	eosin-index --out patches.faiss tiles.joint.mpk 2>err &&
	grep "32 vectors of dimension 16 (Flat, ip)" err &&
	printf "tumour epithelium\nadipose tissue\nsmooth muscle\n" | text |
		eosin-query --index patches.faiss -k 5 >hits.mpk &&
	eosin-cat --check --strict hits.mpk &&
	printf "tumour epithelium\nadipose tissue\nsmooth muscle\n" | text >q.mpk &&
	eosin-cat --vectors q.mpk >q.json &&
	eosin-cat hits.mpk >hits.json &&
	test $(jq -c "select(.k == \"hit\")" hits.json | wc -l) = 15 &&
	$P hits tiles.joint.json joint_emb q.json hits.json 5
'

test_expect_success 'a hit names the slide, tile and patch file it points to' '
	jq -r "select(.k == \"hit\" and .rank == 1) | [.query_caption, .target, .record.slide, .record.x, .record.y, .record.mag, .record.path] | @tsv" hits.json >named &&
	cat named &&
	test $(wc -l <named) = 3 &&
	while IFS="	" read -r cap target slide x y mag path; do
		test "$target" = "$slide/20x/0_0" && test "$x $y $mag" = "0 0 20" && test -f "$path" || return 1
	done <named
'

test_expect_success 'text against an archive of captions (joint_txt_emb): the query falls back to joint_emb' '
	eosin-index --out captions.faiss --field joint_txt_emb joint.mpk 2>/dev/null &&
	printf "tumour epithelium\nadipose tissue\nsmooth muscle\n" | text |
		eosin-query --index captions.faiss -k 4 2>err | eosin-cat >chits.json &&
	grep "has no .joint_txt_emb.; using .joint_emb." err &&
	$P hits joint.json joint_txt_emb q.json chits.json 4 &&
	jq -r "select(.k == \"hit\") | .record.caption" chits.json | grep -q "H&E"
'

test_expect_success 'image to text: a patch bag queries the caption archive with --field joint_emb' '
	eosin-query --index captions.faiss --field joint_emb -k 32 joint.mpk | eosin-cat >i2t.json &&
	test $(jq -c "select(.k == \"hit\")" i2t.json | wc -l) = $((32 * 32)) &&
	jq -r "select(.k == \"hit\" and .query == .record.id) | .rank" i2t.json >ranks &&
	test $(wc -l <ranks) = 32 &&
	r1=$(awk "\$1 == 1" ranks | wc -l) && r10=$(awk "\$1 <= 10" ranks | wc -l) &&
	echo "from the archive: i2t R@1 $r1/32, R@10 $r10/32" &&
	jq -e "(.image_to_text[\"R@1\"] * 32 | round) == $r1 and (.image_to_text[\"R@10\"] * 32 | round) == $r10" r.json
'

test_expect_success 'heatmap of a typed text query over a real slide from the same composition' '
	eosin-tile --grid --px 224 --mags 20 --min-tissue 0.05 "$SLIDE" 2>/dev/null |
		eosin-encode --model vit.st --drop-pixels 2>/dev/null |
		eosin-align --apply head.st >slide.joint.mpk &&
	printf "tumour epithelium\n" | text >tq.mpk &&
	printf "tumour epithelium\n" | text |
		eosin-query --heatmap heat.png --alpha 1 --query - slide.joint.mpk >/dev/null 2>err &&
	cat err &&
	grep "74 tiles of .*cmu-1-small-region.svs" err &&
	vipsheader heat.png | grep "x1024 uchar, 3 bands" &&
	eosin-cat --vectors slide.joint.mpk >slide.json && eosin-cat --vectors tq.mpk >tq.json &&
	$P heat slide.json tq.json err $(vipsheader -f height "$SLIDE") >where &&
	set -- $(cat where) &&
	hot=$(vips getpoint heat.png $1 $2) && cold=$(vips getpoint heat.png $3 $4) &&
	echo "best tile $hot, worst tile $cold" &&
	set -- $hot $cold &&
	test $(($1 + $2)) -gt 400 && test $3 -lt 100 &&
	test $(($4 + $5)) -lt 150 && test $6 -gt 60
'

# The EXAMPLES of eosin-query(1), as written there, in a folder where
# ../shared/data is the shared data and the files they name exist.
test_expect_success 'the EXAMPLES of eosin-query(1) run' '
	mkdir -p ex/shared ex/w && ln -s "$SHARED" ex/shared/data &&
	cp text.st ex/w/text.safetensors && cp vit.st ex/w/vit.safetensors &&
	cp head.st ex/w/head.safetensors && ln -s "$SLIDE" ex/w/slide.svs &&
	cp classes.txt ex/w/ && cp joint.mpk ex/w/bags.joint.mpk &&
	cp tiles.joint.mpk ex/w/patches.joint.mpk &&
	sed -n "/^\.SH EXAMPLES/,/^\.SH SEE ALSO/p" "$ROOT/man/man1/eosin-query.1" |
		sed -n "/^\.nf/,/^\.fi/p" | grep -v "^\.[nf][fi]" | sed "s/\\\\e/\\\\/g" >ex/w/examples.sh &&
	test $(grep -c "^eosin-query\|eosin-query --" ex/w/examples.sh) -ge 7 &&
	(cd ex/w && EOSIN_BLAS_QUIET=1 sh -e examples.sh >out 2>err) &&
	awk -F "\t" "NF == 4" ex/w/out | cut -f1 >ranks && printf "1\n2\n3\n4\n5\n" >want &&
	test_cmp want ranks &&
	awk -F "\t" "NF == 4 { print \$3 }" ex/w/out | grep -q "^slide/20x/" &&
	test $(grep -c "\"k\":\"hit\"" ex/w/out) = $((3 + 32 * 3)) &&
	test -s ex/w/tumour.png && test -s ex/w/m.json && test -s ex/w/r.json &&
	eosin-cat --check --strict ex/w/labelled.mpk
'

test_expect_success '--query - with the tiles on standard input too is a usage error' '
	test_exit_code 2 eosin-query --heatmap h.png --query - <tq.mpk 2>err &&
	grep "cannot both come from standard input" err
'

test_done
