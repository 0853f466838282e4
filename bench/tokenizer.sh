#!/bin/sh
# bench/tokenizer.sh: CLIP tokenizer throughput (lib/model/tokenizer.c) on the
# 991 gastric adenocarcinoma captions: captions/s, ids/s and time per
# caption, median of ROUNDS (default 5) passes over all captions, one thread.
# There is no baseline: OpenAI's Python tokenizer is not installed here.
# Builds its own small driver (bench/tokenizer.c) against $BUILD/libeosin.a.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SHARED=${EOSIN_SHARED:-../shared/data}
ROUNDS=${ROUNDS:-5}
MERGES=$SHARED/tokenizers/bpe_simple_vocab_16e6.txt.gz
CSV=$SHARED/text/gastric-adenocarcinoma-captions.csv
[ -r "$MERGES" ] && [ -r "$CSV" ] || { echo "tokenizer: skipped, no $SHARED" >&2; exit 0; }
[ -f "$BUILD/libeosin.a" ] || { echo "tokenizer: build first (make)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -std=c11 -D_GNU_SOURCE -Ilib -o "$tmp/tokenizer" bench/tokenizer.c "$BUILD/libeosin.a" \
	$(pkg-config --libs jansson) -lz
python3 -c '
import csv, sys
out = open(sys.argv[2], "wb")
for row in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")):
    out.write(row["text"].encode() + b"\0")
' "$CSV" "$tmp/texts"
"$tmp/tokenizer" "$MERGES" "$tmp/texts" "$ROUNDS" > "$tmp/out"
awk '
/^load/ { load = $2; next }
{ t[++n] = $1; caps = $2; ids = $3 }
END {
	# median of n round times (insertion sort)
	for (i = 2; i <= n; i++) { v = t[i]; for (j = i - 1; j >= 1 && t[j] > v; j--) t[j + 1] = t[j]; t[j + 1] = v }
	m = (n % 2) ? t[(n + 1) / 2] : (t[n / 2] + t[n / 2 + 1]) / 2
	printf "%-28s %12s\n", "tokenizer (1 thread)", "ours"
	printf "%-28s %12d\n", "captions", caps
	printf "%-28s %12d\n", "ids", ids
	printf "%-28s %12.4f\n", "median pass (s), " n " runs", m
	printf "%-28s %12.0f\n", "captions/s", caps / m
	printf "%-28s %12.0f\n", "ids/s", ids / m
	printf "%-28s %12.2f\n", "us/caption", m / caps * 1e6
	printf "%-28s %12.3f\n", "load merges (s)", load
}' "$tmp/out"
