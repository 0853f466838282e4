#!/bin/sh
# bench/caption.sh: eosin-caption-fetch throughput.
#
#  1. 64 requests in flight against the test VLM server answering every
#     request after 50 ms: the bound is 64 / 0.05 s = 1280 requests/s; we
#     report requests/s and the ratio to that bound.
#  2. The server alone: the same client with no server delay, to show how
#     many requests/s the Python server itself can answer here (if that is
#     not well above 1280, row 1 measures the server, not the client).
#  2b. The client's own CPU time in the 50 ms case: requests per CPU-second,
#     what one core of client could sustain whatever the server.
#  3. A warm cache: every answer on disk, no server; records/s through the
#     filter (per-record overhead: read, hash the JPEG, cache hit, sentences,
#     keywords, write), against eosin-cat -r | eosin-cat style pass-through
#     (`cat`), for scale.
# Medians of RUNS runs (default 3) of the same invocation; N tiles (default
# 5000), each its own real JPEG (18 KB TCGA tiles with distinct tails).
# Usage: bench/caption.sh [N] [RUNS] [WORKERS]   (WORKERS: server processes)
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
PATH="$ROOT/$BUILD/bin:$PATH"
SHARED=${EOSIN_SHARED:-$ROOT/../shared/data}
N=${1:-5000}
RUNS=${2:-3}
WORKERS=${3:-2}
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/eosin-bench.XXXXXX")
SRV=
cleanup() { [ -n "$SRV" ] && kill "$SRV" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT INT TERM

$PY - "$N" "$SHARED/tiles" <<'EOF' | eosin-cat -r >"$T/tiles.mpk"
import base64, glob, json, sys
n, d = int(sys.argv[1]), sys.argv[2]
jpgs = [open(p, "rb").read() for p in sorted(glob.glob(d + "/TCGA-3X-AAVA_*.jpg"))]
for i in range(n):
    jpeg = jpgs[i % len(jpgs)] + b"bench-%d" % i
    mag = [5, 10, 20, 40][i % 4]
    tid = "B/%gx/%d_0" % (mag, 512 * i)
    print(json.dumps({"k": "tile", "v": 1, "id": tid, "slide": "B", "path": "B.svs",
        "mag": mag, "mpp": 10.0 / mag, "x": 512 * i, "y": 0, "extent": 512, "px": 256,
        "level": 0, "ds": 1.0, "base_mpp": 0.25, "mpp_source": "override", "tissue": 0.9,
        "depth": 0, "root": tid, "quality": 90,
        "jpeg": {"$base64": base64.b64encode(jpeg).decode()}}))
EOF

start_server() {
	[ -n "$SRV" ] && kill "$SRV" 2>/dev/null && sleep 0.3
	rm -f "$T/port"
	$PY tests/servers/vlm-server.py --fast --workers "$WORKERS" --port-file "$T/port" "$@" \
		>"$T/server.log" 2>&1 &
	SRV=$!
	i=0
	while [ ! -s "$T/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	URL="http://127.0.0.1:$(cat "$T/port")/v1/chat/completions"
}

# median of the numbers on stdin
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# timed CMD...: wall seconds
timed() {
	t0=$(date +%s.%N)
	"$@"
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

fetch() { eosin-caption-fetch --vlm "$URL" --model bench --inflight 64 "$@" <"$T/tiles.mpk" >/dev/null 2>"$T/err"; }
# client CPU seconds (user + system) of one run, via /usr/bin/time
cpu() {
	/usr/bin/time -f "%U %S" -o "$T/cpu" eosin-caption-fetch --vlm "$URL" --model bench \
		--inflight 64 "$@" <"$T/tiles.mpk" >/dev/null 2>"$T/err"
	awk '{print $1 + $2}' "$T/cpu"
}

start_server --delay 0.05
for r in $(seq "$RUNS"); do timed fetch; done >"$T/delay.s"
tail -n 1 "$T/err" >&2
for r in $(seq "$RUNS"); do cpu; done >"$T/cpu.s"

start_server
for r in $(seq "$RUNS"); do timed fetch; done >"$T/nodelay.s"

fetch --cache "$T/cache"
kill "$SRV"; SRV=
for r in $(seq "$RUNS"); do timed fetch --cache "$T/cache"; done >"$T/warm.s"
grep -q "asked 0, cached $N" "$T/err" || { echo "warm run asked the server" >&2; exit 1; }
for r in $(seq "$RUNS"); do timed sh -c "cat '$T/tiles.mpk' >/dev/null"; done >"$T/cat.s"

u=$(median <"$T/cpu.s"); d=$(median <"$T/delay.s"); nd=$(median <"$T/nodelay.s"); w=$(median <"$T/warm.s"); c=$(median <"$T/cat.s")
echo "eosin-caption-fetch, $N tiles of ~18 KB JPEG, --inflight 64, $WORKERS server processes, median of $RUNS"
printf '%-44s %12s %12s %8s\n' case baseline ours ratio
printf '%-44s %10.0f/s %10.0f/s %8.3f\n' "server answers in 50 ms (bound 64/0.05 s)" 1280 \
	"$(echo "$N / $d" | bc -l)" "$(echo "$N / $d / 1280" | bc -l)"
printf '%-44s %12s %10.0f/s %8s\n' "server answers at once (what bounds it)" - \
	"$(echo "$N / $nd" | bc -l)" -
printf '%-44s %12s %10.0f/s %8s\n' "client CPU: requests per CPU-second" - \
	"$(echo "$N / $u" | bc -l)" -
printf '%-44s %10.0f/s %10.0f/s %8.3f\n' "warm cache, records/s (baseline: cat)" \
	"$(echo "$N / $c" | bc -l)" "$(echo "$N / $w" | bc -l)" "$(echo "$c / $w" | bc -l)"
