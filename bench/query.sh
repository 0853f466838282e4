#!/bin/sh
# bench/query.sh: eosin-query against raw FAISS (Debian python3-faiss) on the
# same index file and the same queries: queries per second and recall@10.
#
#   bench/query.sh [N]    N synthetic 512-d vectors (default 1000000)
#
# Data: N clustered synthetic float32 vectors, 512-d (1000 Gaussian clusters),
# 1000 queries from the same distribution, indexed IVF1024,Flat (inner
# product); and the real 512-d feature bags in ../shared/data/features (957
# rows, indexed; the queries are those rows QREPS times, default 100, so a
# search takes about a second), indexed Flat and HNSW32. Each index is
# built once by eosin-index; both sides search that file with the defaults of
# eosin-query (nprobe 16, efSearch 64), k = 10.
#
# Timings are medians of RUNS (default 5) runs of the same invocation, the
# two sides interleaved so that other load falls on both alike:
#   faiss_qps      python: queries / time inside index.search() (one call)
#   eosin_qps      eosin-query --stats: queries / time inside FAISS search
#                  (calls of up to 16384 queries)
#   faiss_tot      python: process start, read_index, search (s)
#   eosin_tot      eosin-query --index ... -k 10 queries.mpk >/dev/null: start,
#                  sidecar and index load with checksum, search, hit records (s)
# Recall@10 is against exact inner products (numpy).
# Set BENCH_TMP=DIR to keep (and reuse) the data and indices.
set -eu
cd "$(dirname "$0")/.."
N=${1:-1000000}
BUILD=${BUILD:-build}
PATH="$PWD/$BUILD/bin:$PATH"
PY=/usr/bin/python3
[ -x $PY ] || PY=python3
$PY -c 'import faiss, numpy' || { echo "query.sh: needs python3-faiss and python3-numpy" >&2; exit 1; }
W=${BENCH_TMP:-$(mktemp -d "${TMPDIR:-/tmp}/eosin-bench-query.XXXXXX")}
F="$PY bench/query_faiss.py"
K=10
RUNS=${RUNS:-5}
QREPS=${QREPS:-100}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }

# run_case NAME DIR FACTORY NQ
run_case() {
	name=$1 d=$2 factory=$3 nq=$4
	if ! [ -f "$d/$factory.faiss" ] || ! [ -f "$d/$factory.build" ]; then
		t0=$(now)
		eosin-index --out "$d/$factory.faiss" --factory "$factory" --seed 1 "$d/base.mpk" 2>"$d/build.log"
		echo "$(now) - $t0" | bc >"$d/$factory.build"
	fi
	build=$(cat "$d/$factory.build")
	: >"$d/fs" ; : >"$d/ft"; : >"$d/et"; : >"$d/es"
	for i in $(seq "$RUNS"); do
		t0=$(now)
		$F search "$d/$factory.faiss" "$d/queries.f32" $K 16 64 >"$d/out"
		echo "$(now) - $t0" | bc >>"$d/ft"
		awk '{ print $4 }' "$d/out" >>"$d/fs"
		t0=$(now)
		eosin-query --index "$d/$factory.faiss" -k $K --stats "$d/queries.mpk" >"$d/hits.mpk" 2>"$d/stats"
		echo "$(now) - $t0" | bc >>"$d/et"
		awk '/searched in/ { print $6 }' "$d/stats" >>"$d/es"
	done
	fs=$(median <"$d/fs"); ft=$(median <"$d/ft"); et=$(median <"$d/et"); es=$(median <"$d/es")
	eosin-cat "$d/hits.mpk" | jq -r 'select(.k == "hit") | "\(.query | ltrimstr("q")) \(.index_id)"' >"$d/hits.tsv"
	$PY - "$d/queries.f32.ids" "$d/faiss.tsv" $K <<-'PYEOF'
	import sys, numpy as np
	ids = np.fromfile(sys.argv[1], dtype="int64").reshape(-1, int(sys.argv[3]))
	with open(sys.argv[2], "w") as f:
	    for q, row in enumerate(ids):
	        for i in row:
	            if i >= 0: f.write("%d %d\n" % (q, i))
	PYEOF
	re=$($F recall "$d/hits.tsv" "$d/truth.i64" $nq $K)
	rf=$($F recall "$d/faiss.tsv" "$d/truth.i64" $nq $K)
	printf '%-22s %-13s %7.1f | %9.0f %9.0f %6.3f | %8.2f %8.2f | %6.4f %6.4f\n' \
	    "$name" "$factory" "$build" \
	    "$(echo "$nq / $fs" | bc -l)" "$(echo "$nq / $es" | bc -l)" "$(echo "$fs / $es" | bc -l)" \
	    "$ft" "$et" "$rf" "$re"
}

echo "# bench/query.sh N=$N RUNS=$RUNS QREPS=$QREPS on $(nproc) cores, $(uname -m); FAISS $($PY -c 'import faiss; print(faiss.__version__)'); work dir $W"
printf '%-22s %-13s %7s | %9s %9s %6s | %8s %8s | %6s %6s\n' data index build_s \
    faiss_qps eosin_qps ratio faiss_tot eosin_tot R@10_fs R@10_eo

# Real feature bags first (small, fast).
FEAT=${EOSIN_SHARED:-../shared/data}/features
if [ -d "$FEAT" ] && $PY -c 'import h5py' 2>/dev/null; then
	mkdir -p "$W/feat"
	set -- $($F h5 "$W/feat" "$QREPS" "$FEAT"/*.h5)
	rm -f "$W/feat/"*.build
	nq=$2
	echo "$3" >"$W/feat/dim"
	$F truth "$W/feat" $K
	run_case "features ($1x$3)" "$W/feat" Flat "$nq"
	run_case "features ($1x$3)" "$W/feat" HNSW32 "$nq"
else
	echo "# skipped the feature bags: $FEAT or python3-h5py missing"
fi

[ "$N" -gt 0 ] || exit 0
mkdir -p "$W/syn"
if ! [ -f "$W/syn/truth.i64" ] || [ "$(cat "$W/syn/n" 2>/dev/null)" != "$N" ]; then
	rm -f "$W/syn/"*.faiss "$W/syn/"*.build
	t0=$(now)
	$F synth "$N" 1000 512 1 "$W/syn"
	echo 512 >"$W/syn/dim"
	$F truth "$W/syn" $K
	echo "$N" >"$W/syn/n"
	echo "# synthetic data and exact answers: $(echo "$(now) - $t0" | bc) s"
fi
run_case "synthetic ${N}x512" "$W/syn" IVF1024,Flat 1000
[ -n "${BENCH_TMP:-}" ] || rm -rf "$W"
