#!/bin/sh
# bench/gpu-prepare.sh: run HERE (a Debian machine with eosin's build
# dependencies), before bench/gpu.sh runs on a GPU machine that has CUDA,
# gcc, PyTorch and timm but none of Debian's libraries and no network.
#
# Gathers into .gpu-payload/payload.tar.xz (ignored by git, carried with
# the tree):
#   include/  the headers of the -dev packages that eosin-encode's part of
#             lib/ (core/ and model/) compiles against (dpkg -L of each)
#   lib/      the shared libraries its programs load, with the link names
#             (libX.so) as symbolic links inside the archive
#   data/     ../shared/data/{reference,tiles,tokenizers} (../shared does
#             not travel with the tree)
# checks that the payload is under the 64 MiB the tree may carry, and
# prints the device command to run bench/gpu.sh with it.
set -eu
cd "$(dirname "$0")/.."
SHARED=${EOSIN_SHARED:-$PWD/../shared/data}
OUTDIR=.gpu-payload
LIMIT=$((64 * 1024 * 1024))
DEV_PKGS="libmsgpack-dev libjansson-dev libturbojpeg0-dev zlib1g-dev libopenblas-pthread-dev"

W=$(mktemp -d "${TMPDIR:-/tmp}/eosin-gpu-payload.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/include" "$W/lib" "$W/data"

# Headers: every file each -dev package puts under /usr/include, at its
# path below that; OpenBLAS's (in a per-variant folder) at the top.
for p in $DEV_PKGS; do
	dpkg -L "$p" >/dev/null 2>&1 || { echo "gpu-prepare.sh: package $p is not installed" >&2; exit 1; }
	dpkg -L "$p" | while read -r f; do
		case "$f" in /usr/include/*) ;; *) continue ;; esac
		[ -f "$f" ] || continue
		rel=${f#/usr/include/}
		case "$rel" in x86_64-linux-gnu/openblas-pthread/*) rel=${rel#x86_64-linux-gnu/openblas-pthread/} ;; esac
		mkdir -p "$W/include/$(dirname "$rel")"
		cp -L "$f" "$W/include/$rel"
	done
done

# Libraries: what a minimal eosin-encode loads, less the C library and
# gcc's own (the GPU machine's compiler brings those).
B=$W/build
make --no-print-directory BUILD="$B" CUDA=0 LIB_C="$(ls lib/core/*.c lib/model/*.c | tr '\n' ' ')" \
	LIB_CXX= PKG_CFLAGS= PKG_LIBS= LDLIBS="-lmsgpackc -ljansson -lturbojpeg -lopenblas -lz -lm -lpthread -ldl" \
	"$B/bin/eosin-encode" >"$W/build.log" 2>&1 || { cat "$W/build.log" >&2; exit 1; }
ldd "$B/bin/eosin-encode" | awk '$3 ~ /^\// {print $1, $3}' | while read -r soname path; do
	case "$soname" in libc.so*|libm.so*|libgomp.so*|libgcc_s.so*|libpthread.so*|libdl.so*) continue ;; esac
	cp -L "$path" "$W/lib/$soname"
	ln -sf "$soname" "$W/lib/${soname%%.so*}.so"
done

for d in reference tiles tokenizers; do
	[ -d "$SHARED/$d" ] || { echo "gpu-prepare.sh: $SHARED/$d is missing" >&2; exit 1; }
	cp -rL "$SHARED/$d" "$W/data/$d"
done
chmod -R u+w "$W/data"

rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"
tar -C "$W" -cf - include lib data | xz -6 -T2 >"$OUTDIR/payload.tar.xz"
(cd "$W" && find include lib data -type f | sort) >"$OUTDIR/MANIFEST"

payload=$(du -sb "$OUTDIR" | cut -f1)
tree=$(git ls-files -co --exclude-standard | xargs -d '\n' du -cb 2>/dev/null | tail -1 | cut -f1)
total=$((payload + tree))
echo "payload: $OUTDIR $(du -sh "$OUTDIR" | cut -f1) ($payload bytes; $(wc -l <"$OUTDIR/MANIFEST") files, $(du -sh "$W/include" | cut -f1) headers, $(du -sh "$W/lib" | cut -f1) libraries, $(du -sh "$W/data" | cut -f1) data unpacked)"
echo "tree that travels with it: $tree bytes; together $total of $LIMIT"
[ "$total" -lt "$LIMIT" ] || { echo "gpu-prepare.sh: over the 64 MiB a run may carry" >&2; exit 1; }

cat <<'EOF'
device command (the run tool; carry [".gpu-payload"], timeout_s 540):
set -o pipefail; PYTHONUNBUFFERED=1 bench/gpu.sh 2>&1 | tee $OUT/gpu.log
EOF
