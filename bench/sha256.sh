#!/bin/sh
# bench/sha256.sh: SHA-256 and base64 throughput, the two per-tile costs of
# eosin-caption-fetch besides the network (cache key of each JPEG, data
# URL of each request). Rows, in MB/s of input (1e6 bytes) by CPU time,
# medians of RUNS (default 5) runs of this one invocation, runs interleaved:
#   sha256, 16 KB buffers: `openssl speed -bytes 16384 sha256` (baseline,
#     if openssl is installed), lib/core/sha256.c portable, lib/core/sha256.c sha-ni
#     (where the CPU has the SHA extensions);
#   base64, 18 KB buffers: a one-look-up-per-character encoder (baseline)
#     and base64_encode in lib/core/json.c.
# The machine may be shared: the load average is printed with the table.
# Builds its own driver (bench/sha256.c) against $BUILD/libeosin.a.
# Usage: bench/sha256.sh [RUNS]
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${1:-${RUNS:-5}}
SECONDS_PER=${SECONDS_PER:-1}
[ -f "$BUILD/libeosin.a" ] || { echo "sha256: build first (make)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -std=c11 -D_GNU_SOURCE -Ilib $(pkg-config --cflags jansson msgpack 2>/dev/null) \
	-o "$tmp/sha256" bench/sha256.c "$BUILD/libeosin.a" \
	$(pkg-config --libs jansson) -lmsgpackc -lm -lpthread
HAVE_OPENSSL=
command -v openssl >/dev/null 2>&1 && HAVE_OPENSSL=1
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
i=0
while [ $i -lt "$RUNS" ]; do
	"$tmp/sha256" "$SECONDS_PER" >>"$tmp/rows"
	if [ -n "$HAVE_OPENSSL" ]; then
		# last line: "sha256  <bytes/s in thousands>k"; openssl counts user CPU time
		openssl speed -seconds "$SECONDS_PER" -bytes 16384 sha256 2>/dev/null |
			awk '$1 == "sha256" && $NF ~ /k$/ { sub(/k$/, "", $NF); printf "sha256-openssl %.1f\n", $NF / 1000 }' \
			>>"$tmp/rows"
	fi
	i=$((i + 1))
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
median() { grep "^$1 " "$tmp/rows" | cut -d' ' -f2 | sort -g | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]; else print "-"}'; }
ossl=$(median sha256-openssl)
port=$(median sha256-portable)
ni=$(median sha256-sha-ni)
simple=$(median base64-simple)
ours=$(median base64-ours)
ratio() { if [ "$1" = - ] || [ "$2" = - ]; then echo -; else echo "$1 $2" | awk '{printf "%.2f", $1 / $2}'; fi; }
us() { if [ "$1" = - ]; then echo -; else echo "$1" | awk -v b="$2" '{printf "%.1f", b / $1}'; fi; }
printf '%-34s %10s %10s %10s\n' "MB/s (CPU time), median of $RUNS" "MB/s" "us/18KB" "vs base"
printf '%-34s %10s %10s %10s\n' "sha256 openssl speed (baseline)" "$ossl" "$(us "$ossl" 18432)" "1.00"
printf '%-34s %10s %10s %10s\n' "sha256 lib/core/sha256.c portable" "$port" "$(us "$port" 18432)" "$(ratio "$port" "$ossl")"
printf '%-34s %10s %10s %10s\n' "sha256 lib/core/sha256.c sha-ni" "$ni" "$(us "$ni" 18432)" "$(ratio "$ni" "$ossl")"
printf '%-34s %10s %10s %10s\n' "base64 one look-up/char (baseline)" "$simple" "$(us "$simple" 18432)" "1.00"
printf '%-34s %10s %10s %10s\n' "base64 lib/core/json.c base64_encode" "$ours" "$(us "$ours" 18432)" "$(ratio "$ours" "$simple")"
echo "# load average before: $load_before; after: $load_after; $(nproc) cores"
