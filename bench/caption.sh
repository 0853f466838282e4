#!/bin/sh
# bench/caption.sh: eosin-caption-fetch throughput against a server that
# is not the bottleneck: tests/servers/vlm-fast-server.c (one thread, epoll,
# keep-alive, answers held on a timer, a few µs of CPU per request), so the
# numbers measure the client.
#
#  1. 64 requests in flight (--inflight 64) against the server answering
#     every request 50 ms after it arrived: the bound is 64 / 0.05 s = 1280
#     requests/s; we report requests/s by wall clock and the fraction of the
#     bound. From the same runs: the client's CPU (user + sys) per request,
#     the server's CPU per request, and what the server saw (most requests
#     waiting at once, connections opened).
#  2. The same server answering at once: the most requests/s the client
#     reaches here (its ceiling on this machine, not a bound).
#  3. A warm cache: every answer on disk, no server; records/s through the
#     filter (read, hash the JPEG, cache hit, sentences, keywords, write),
#     against `cat` of the same stream for scale; and µs per record.
# Every row is the median of RUNS runs (default 5) of this one invocation;
# N tiles (default 5000), each its own real JPEG (18 KB TCGA tiles with
# distinct tails). The machine is shared: the load average before and
# after is printed with the table.
# Usage: bench/caption.sh [N] [RUNS]
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
PATH="$ROOT/$BUILD/bin:$PATH"
SERVER="$ROOT/$BUILD/servers/vlm-fast-server"
SHARED=${EOSIN_SHARED:-$ROOT/../shared/data}
N=${1:-5000}
RUNS=${2:-5}
INFLIGHT=64
DELAY=0.05
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
[ -x "$SERVER" ] && [ -x "$ROOT/$BUILD/bin/eosin-caption-fetch" ] ||
	{ echo "bench/caption.sh: build first (make)" >&2; exit 1; }
[ -d "$SHARED/tiles" ] || { echo "bench/caption.sh: no $SHARED/tiles" >&2; exit 1; }
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
	[ -n "$SRV" ] && kill "$SRV" 2>/dev/null
	rm -f "$T/port"
	"$SERVER" --port-file "$T/port" "$@" >"$T/server.log" 2>&1 &
	SRV=$!
	i=0
	while [ ! -s "$T/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	PORT=$(cat "$T/port")
	URL="http://127.0.0.1:$PORT/v1/chat/completions"
}
stat_of() { curl -s "http://127.0.0.1:$PORT/stats" | jq -r ".$1"; }
reset() { curl -s -X POST "http://127.0.0.1:$PORT/reset" >/dev/null; }
# CPU seconds (user + sys) the server has used so far
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$SRV/stat"; }

# median of the numbers on stdin
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
calc() { echo "$1" | bc -l; }

# run NAME [options]: one run of the client; appends "wall cpu wait"
# (seconds) to $T/NAME, wait being the time the client was ready to run but
# waited for a CPU (the kernel's schedstat, read every 20 ms while it runs:
# what other work on a shared machine costs it). Fails unless every tile
# got its text.
run() {
	name=$1; shift
	rm -f "$T/pid"
	t0=$(date +%s.%N)
	/usr/bin/time -f "%U %S" -o "$T/cpu" sh -c 'echo $$ >"$0"; exec "$@"' "$T/pid" \
		eosin-caption-fetch --vlm "$URL" --model bench --inflight $INFLIGHT "$@" \
		<"$T/tiles.mpk" >/dev/null 2>"$T/err" &
	timer=$!
	while [ ! -s "$T/pid" ]; do sleep 0.01; done
	read -r pid <"$T/pid"
	wait_ns=0
	while read -r _ ns _ 2>/dev/null <"/proc/$pid/schedstat"; do wait_ns=$ns; sleep 0.02; done
	wait $timer || { cat "$T/err" >&2; exit 1; }
	t1=$(date +%s.%N)
	grep -q "failed 0," "$T/err" || { cat "$T/err" >&2; exit 1; }
	echo "$(calc "$t1 - $t0") $(awk '{print $1 + $2}' "$T/cpu") $(calc "$wait_ns / 1000000000")" \
		>>"$T/$name"
}

load0=$(cut -d " " -f 1-3 /proc/loadavg)

# 1. the 50 ms server
start_server --delay $DELAY
run warmup
s0=$(server_cpu)
for r in $(seq "$RUNS"); do
	reset
	run delay
	curl -s "http://127.0.0.1:$PORT/stats" >"$T/stats"
	for k in max_active late_ms turnaround_ms; do
		jq -r ".$k" "$T/stats" >>"$T/$k"
	done
	jq -r ".connections - 1" "$T/stats" >>"$T/connections"  # less the one asking
done
s1=$(server_cpu)

# 2. the server answering at once
start_server
run warmup
for r in $(seq "$RUNS"); do run nodelay; done

# 3. a warm cache, no server
run fill --cache "$T/cache"
kill "$SRV"; SRV=
for r in $(seq "$RUNS"); do
	run warm --cache "$T/cache"
	grep -q "asked 0, cached $N," "$T/err" || { echo "bench/caption.sh: the warm run asked" >&2; exit 1; }
done
for r in $(seq "$RUNS"); do
	t0=$(date +%s.%N); cat "$T/tiles.mpk" >/dev/null; t1=$(date +%s.%N)
	calc "$t1 - $t0" >>"$T/cat"
done

bound=$(calc "$INFLIGHT / $DELAY")
d=$(cut -d " " -f 1 "$T/delay" | median)
dcpu=$(cut -d " " -f 2 "$T/delay" | median)
dwait=$(cut -d " " -f 3 "$T/delay" | median)
late=$(median <"$T/late_ms")
turn=$(median <"$T/turnaround_ms")
nd=$(cut -d " " -f 1 "$T/nodelay" | median)
ndcpu=$(cut -d " " -f 2 "$T/nodelay" | median)
w=$(cut -d " " -f 1 "$T/warm" | median)
wcpu=$(cut -d " " -f 2 "$T/warm" | median)
c=$(median <"$T/cat")
rate=$(calc "$N / $d")

echo "eosin-caption-fetch: $N tiles of ~18 KB JPEG, --inflight $INFLIGHT, vlm-fast-server; median of $RUNS runs"
echo "load average before: $load0; after: $(cut -d " " -f 1-3 /proc/loadavg); $(nproc) cores"
printf '%-46s %12s %12s %8s\n' case baseline ours ratio
printf '%-46s %10.0f/s %10.0f/s %8.3f\n' "server answers in 50 ms: requests/s (bound)" \
	"$bound" "$rate" "$(calc "$rate / $bound")"
printf '%-46s %12s %9.0f µs %8s\n' "  client CPU per request (user + sys)" - \
	"$(calc "$dcpu / $N * 1000000")" -
printf '%-46s %12s %9.1f µs %8s\n' "  server CPU per request" - \
	"$(calc "($s1 - $s0) / ($RUNS * $N) * 1000000")" -
printf '%-46s %12s %12s %8s\n' "  most requests waiting at the server" $INFLIGHT \
	"$(median <"$T/max_active")" -
printf '%-46s %12s %12s %8s\n' "  connections opened per run" $INFLIGHT \
	"$(median <"$T/connections")" -
printf '%-46s %9.1f ms %9.1f ms %8s\n' "  round trip: delay + server slack + client" \
	"$(calc "$DELAY * 1000")" "$(calc "$DELAY * 1000 + $late + $turn")" -
printf '%-46s %12s %9.1f ms %8s\n' "    server slack (answer after its due time)" - "$late" -
printf '%-46s %12s %9.1f ms %8s\n' "    client (answer in to next request in)" - "$turn" -
printf '%-46s %12s %10.2f s %8s\n' "  client wall time per run" - "$d" -
printf '%-46s %12s %10.2f s %8s\n' "  of which waiting for a CPU (run queue)" - "$dwait" -
printf '%-46s %12s %10.0f/s %8s\n' "server answers at once: requests/s (ceiling)" - \
	"$(calc "$N / $nd")" -
printf '%-46s %12s %9.0f µs %8s\n' "  client CPU per request (user + sys)" - \
	"$(calc "$ndcpu / $N * 1000000")" -
printf '%-46s %10.0f/s %10.0f/s %8.3f\n' "warm cache: records/s (baseline: cat)" \
	"$(calc "$N / $c")" "$(calc "$N / $w")" "$(calc "$c / $w")"
printf '%-46s %12s %9.0f µs %8s\n' "  wall time per record" - "$(calc "$w / $N * 1000000")" -
printf '%-46s %12s %9.0f µs %8s\n' "  client CPU per record (user + sys)" - \
	"$(calc "$wcpu / $N * 1000000")" -
