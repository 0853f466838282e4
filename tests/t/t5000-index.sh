#!/bin/sh
# eosin-index and eosin-query search: exact results against brute force,
# approximate recall floors, shards, --add, and bad input.
. "$(dirname "$0")/../lib.sh"

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
command -v $PY >/dev/null || test_skip_all "python3 missing"
V="$PY $ROOT/tests/t/t50-vectors.py"

test_expect_success 'fabricate records and queries' '
	$V records 2000 16 1 --clusters 40 >base.json &&
	eosin-cat -r base.json >base.mpk &&
	$V records 20 16 2 --clusters 40 --kind text | sed "s/\"S0\//\"q/" >q.json &&
	eosin-cat -r q.json >q.mpk &&
	head -n 1000 base.json | eosin-cat -r >half1.mpk &&
	tail -n 1000 base.json | eosin-cat -r >half2.mpk
'

test_expect_success 'Flat inner product equals brute force' '
	eosin-index --out flat.faiss base.mpk 2>err &&
	grep "2000 vectors of dimension 16 (Flat, ip)" err &&
	test -f flat.faiss.meta &&
	eosin-query --index flat.faiss -k 10 q.mpk | eosin-cat >hits.json &&
	$V brute base.json q.json 10 ip >brute.tsv &&
	test $(grep -c "\"k\":\"hit\"" hits.json) = 200 &&
	$V compare-hits hits.json brute.tsv 1e-5
'

test_expect_success 'hits are valid records, hdr first, stored record without vectors' '
	eosin-query --index flat.faiss -k 3 q.mpk >hits.mpk &&
	eosin-cat --check --strict hits.mpk &&
	eosin-cat hits.mpk | head -n 1 | jq -e ".k == \"hdr\" and .prog == \"eosin-query\"" &&
	eosin-cat hits.mpk | sed -n 2p | jq -e ".query == \"q0\" and .rank == 1 and .record.slide == \"S0\" and (.record.joint_emb == null)"
'

test_expect_success 'normalised (cosine) and L2 indices equal brute force' '
	eosin-index --out cos.faiss --normalize base.mpk 2>/dev/null &&
	eosin-query --index cos.faiss -k 10 q.mpk | eosin-cat >hits.json &&
	$V brute base.json q.json 10 cos >brute.tsv &&
	$V compare-hits hits.json brute.tsv 1e-5 &&
	eosin-index --out l2.faiss --metric l2 base.mpk 2>/dev/null &&
	eosin-query --index l2.faiss -k 10 q.mpk | eosin-cat >hits.json &&
	$V brute base.json q.json 10 l2 >brute.tsv &&
	$V compare-hits hits.json brute.tsv 1e-4
'

# Measured on these 2000 clustered vectors, 20 queries (FAISS 1.7.3):
# IVF32,Flat at the default nprobe 16: 0.985 (nprobe 1: 0.61); HNSW16 at the
# default efSearch 64: 0.96 (merged shards: 0.96); IVF16,PQ8x4: 0.455.
# Floors: 0.95 (IVF), 0.9 (HNSW), 0.3 (PQ): room for FAISS's k-means and graph
# to change between versions, none for a broken search.
test_expect_success 'IVF and HNSW recall@10 at default settings' '
	$V brute base.json q.json 10 ip >brute.tsv &&
	eosin-index --out ivf.faiss --factory IVF32,Flat --seed 3 base.mpk 2>/dev/null &&
	eosin-query --index ivf.faiss -k 10 q.mpk | eosin-cat >ivf.json &&
	r=$($V recall ivf.json brute.tsv) && echo "IVF recall@10 $r" &&
	awk -v r=$r "BEGIN { exit !(r >= 0.95) }" &&
	eosin-query --index ivf.faiss --nprobe 1 -k 10 q.mpk | eosin-cat >ivf1.json &&
	r1=$($V recall ivf1.json brute.tsv) && echo "IVF nprobe 1 recall@10 $r1" &&
	awk -v r=$r1 "BEGIN { exit !(r < 1) }" &&
	eosin-index --out hnsw.faiss --factory HNSW16 base.mpk 2>/dev/null &&
	eosin-query --index hnsw.faiss -k 10 q.mpk | eosin-cat >hnsw.json &&
	r=$($V recall hnsw.json brute.tsv) && echo "HNSW recall@10 $r" &&
	awk -v r=$r "BEGIN { exit !(r >= 0.9) }"
'

test_expect_success 'IVF-PQ builds, trains on a seeded sample, searches' '
	eosin-index --out pq.faiss --factory IVF16,PQ8x4 --train-sample 1500 --seed 7 base.mpk 2>/dev/null &&
	eosin-query --index pq.faiss -k 10 q.mpk | eosin-cat >pq.json &&
	r=$($V recall pq.json brute.tsv) && echo "IVF16,PQ8x4 recall@10 $r" &&
	awk -v r=$r "BEGIN { exit !(r >= 0.3) }" &&
	eosin-index --out pq2.faiss --factory IVF16,PQ8x4 --train-sample 1500 --seed 7 base.mpk 2>/dev/null &&
	cmp pq.faiss pq2.faiss
'

# Measured here: OPQ8,IVF16,Flat 1.0; HNSW16 at --ef 10 0.77, 64 0.97, 256 0.99.
test_expect_success 'OPQ in front of an IVF; --ef sets HNSW efSearch' '
	eosin-index --out opq.faiss --factory OPQ8,IVF16,Flat --seed 7 base.mpk 2>err &&
	grep "(OPQ8,IVF16,Flat, ip)" err &&
	eosin-query --index opq.faiss -k 10 q.mpk | eosin-cat >opq.json &&
	r=$($V recall opq.json brute.tsv) && echo "OPQ8,IVF16,Flat recall@10 $r" &&
	awk -v r=$r "BEGIN { exit !(r >= 0.95) }" &&
	eosin-query --index hnsw.faiss --ef 10 -k 10 q.mpk | eosin-cat >ef10.json &&
	eosin-query --index hnsw.faiss --ef 256 -k 10 q.mpk | eosin-cat >ef256.json &&
	r10=$($V recall ef10.json brute.tsv) && r256=$($V recall ef256.json brute.tsv) &&
	echo "HNSW16 recall@10: ef 10 $r10, ef 256 $r256" &&
	awk -v a=$r10 -v b=$r256 "BEGIN { exit !(b >= a && b >= 0.95) }"
'

test_expect_success 'too few vectors to train: says how many are needed' '
	head -n 100 base.json | eosin-cat -r >small.mpk &&
	test_must_fail eosin-index --out small.faiss --factory IVF256,Flat small.mpk 2>err &&
	grep "needs at least 256 training vectors, got 100" err &&
	test_must_fail eosin-index --out small.faiss --factory IVF8,PQ4 small.mpk 2>err &&
	grep "needs at least 256 training vectors, got 100" err &&
	! test -e small.faiss && ! test -e small.faiss.meta
'

test_expect_success 'merged Flat shards answer like one index' '
	eosin-index --out s1.faiss half1.mpk 2>/dev/null &&
	eosin-index --out s2.faiss half2.mpk 2>/dev/null &&
	eosin-index --merge --out merged.faiss s1.faiss s2.faiss 2>err &&
	grep "2000 vectors from 2 shards" err &&
	eosin-query --index merged.faiss -k 10 q.mpk | eosin-cat | grep -v "\"hdr\"" >m.json &&
	eosin-query --index flat.faiss -k 10 q.mpk | eosin-cat | grep -v "\"hdr\"" >f.json &&
	test_cmp f.json m.json
'

test_expect_success 'IVF shards from one trained index merge; separately trained ones do not' '
	eosin-index --out trained.faiss --factory IVF32,Flat --train-only --seed 3 base.mpk 2>/dev/null &&
	eosin-index --out i1.faiss --trained trained.faiss half1.mpk 2>/dev/null &&
	eosin-index --out i2.faiss --trained trained.faiss half2.mpk 2>/dev/null &&
	eosin-index --merge --out imerged.faiss i1.faiss i2.faiss 2>/dev/null &&
	eosin-query --index imerged.faiss -k 10 q.mpk | eosin-cat | grep -v "\"hdr\"" >m.json &&
	eosin-query --index ivf.faiss -k 10 q.mpk | eosin-cat | grep -v "\"hdr\"" >f.json &&
	test_cmp f.json m.json &&
	eosin-index --out j1.faiss --factory IVF32,Flat half1.mpk 2>/dev/null &&
	eosin-index --out j2.faiss --factory IVF32,Flat half2.mpk 2>/dev/null &&
	test_must_fail eosin-index --merge --out bad.faiss j1.faiss j2.faiss 2>err &&
	grep "j2.faiss.: trained state (train the shards once, then build each with --trained) differs" err &&
	! test -e bad.faiss
'

test_expect_success '--add extends an archive' '
	eosin-index --out grow.faiss half1.mpk 2>/dev/null &&
	eosin-index --out grow.faiss --add half2.mpk 2>err &&
	grep "2000 vectors" err &&
	eosin-query --index flat.faiss -k 10 q.mpk | eosin-cat | grep -v "\"hdr\"" >f.json &&
	eosin-query --index grow.faiss -k 10 q.mpk | eosin-cat | grep -v "\"hdr\"" >g.json &&
	test_cmp f.json g.json
'

test_expect_success 'HNSW shards merge by re-adding' '
	eosin-index --out h1.faiss --factory HNSW16 half1.mpk 2>/dev/null &&
	eosin-index --out h2.faiss --factory HNSW16 half2.mpk 2>/dev/null &&
	eosin-index --merge --out hm.faiss h1.faiss h2.faiss 2>/dev/null &&
	eosin-query --index hm.faiss -k 10 q.mpk | eosin-cat >hm.json &&
	r=$($V recall hm.json brute.tsv) && echo "merged HNSW recall@10 $r" &&
	awk -v r=$r "BEGIN { exit !(r >= 0.9) }"
'

test_expect_success 'dimension mismatch names input, record, id and field' '
	$V records 3 8 5 | sed "s/S0\//odd/" | eosin-cat -r >odd.mpk &&
	cat half1.mpk odd.mpk >mixed.mpk &&
	test_must_fail eosin-index --out mixed.faiss mixed.mpk 2>err &&
	grep "mixed.mpk: record 1001 (id .odd0.): field .joint_emb. has dimension 8, the index 16" err &&
	grep "no archive written" err &&
	! test -e mixed.faiss &&
	eosin-index --out mixed.faiss --rejects rej.mpk mixed.mpk 2>err &&
	grep "1000 vectors.*3 rejected" err &&
	test $(eosin-cat rej.mpk | wc -l) = 3
'

test_expect_success 'mixed models are refused' '
	$V records 3 16 5 --hash aaaa | eosin-cat -r >m1.mpk &&
	$V records 3 16 6 --hash bbbb | sed "s/S0\//other/" | eosin-cat -r >m2.mpk &&
	test_must_fail eosin-index --out mm.faiss m1.mpk m2.mpk 2>err &&
	grep "m2.mpk: record 1 (id .other0.): field .joint_emb. comes from model hash .bbbb., earlier vectors from .aaaa.: mixed models" err
'

test_expect_success 'NaN in an embedding is refused, naming record and field' '
	$V records 2 4 5 >nan.json &&
	nan=$($PY -c "import struct,base64;print(base64.b64encode(struct.pack(\"<4f\",1,float(\"nan\"),0,0)).decode())") &&
	sed -n 1p nan.json >n.json &&
	echo "{\"k\":\"tile\",\"v\":1,\"id\":\"bad/1\",\"joint_emb\":{\"dtype\":\"f32\",\"dim\":4,\"data\":{\"\$base64\":\"$nan\"}}}" >>n.json &&
	eosin-cat -r n.json >n.mpk &&
	test_must_fail eosin-index --out n.faiss n.mpk 2>err &&
	grep "record 2 (id .bad/1.): field .joint_emb." err &&
	grep -i "nan" err
'

test_expect_success 'truncated, garbage or mismatched index files are errors, not crashes' '
	cp flat.faiss.meta t.faiss.meta &&
	head -c 1000 flat.faiss >t.faiss &&
	test_exit_code 1 eosin-query --index t.faiss q.mpk >/dev/null 2>err &&
	grep "does not match its sidecar" err &&
	printf "IxFIgarbage" >t.faiss &&
	test_exit_code 1 eosin-query --index t.faiss q.mpk >/dev/null 2>err &&
	grep "does not match its sidecar" err &&
	cp ivf.faiss t.faiss &&
	test_exit_code 1 eosin-query --index t.faiss q.mpk >/dev/null 2>err &&
	grep "does not match its sidecar" err &&
	rm t.faiss.meta &&
	test_exit_code 1 eosin-query --index t.faiss q.mpk >/dev/null 2>err &&
	grep "t.faiss.meta" err
'

test_expect_success 'query dimension mismatch: hits before it are flushed, then exit 1' '
	cat q.mpk odd.mpk q.mpk >qbad.mpk &&
	test_exit_code 1 eosin-query --index flat.faiss -k 2 qbad.mpk >out.mpk 2>err &&
	grep "qbad.mpk: record 21 (id .odd0.): field .joint_emb. has dimension 8, the index 16" err &&
	test $(eosin-cat out.mpk | grep -c "\"hit\"") = 40
'

test_expect_success 'write errors and usage' '
	test_must_fail eosin-query --index flat.faiss q.mpk >/dev/full 2>err &&
	grep -i "no space" err &&
	test_exit_code 2 eosin-query q.mpk 2>err &&
	grep "^usage: eosin-query" err &&
	test_exit_code 2 eosin-index base.mpk 2>err &&
	grep "^usage: eosin-index" err &&
	test_exit_code 1 eosin-query --index hnsw.faiss --nprobe 4 q.mpk 2>err >/dev/null &&
	grep "cannot set .nprobe. on index .HNSW16." err
'

test_expect_success 'usage() and the manuals SYNOPSIS agree' '
	for p in eosin-index eosin-query; do
		test_exit_code 2 $p --help 2>u.txt &&
		sed -e "s/^usage: //" -e "s/^       //" u.txt >actual &&
		sed -n "/^\.SH SYNOPSIS/,/^\.SH/p" "$ROOT/man/man1/$p.1" | sed -n "/^\.nf/,/^\.fi/p" |
			sed -e "/^\.nf/d" -e "/^\.fi/d" >expect &&
		test_cmp expect actual || return 1
	done
'

test_done
