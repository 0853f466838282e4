#!/bin/bash
# bench/gpu.sh: eosin-encode's CUDA path on a GPU machine, in one run of
# under 6 minutes, ending in one table. Run bench/gpu-prepare.sh on a
# Debian machine first (it makes .gpu-payload/, which must travel with
# the tree, and prints the device command). The GPU machine needs CUDA
# (nvcc, cuBLAS), gcc, python3 with torch, timm and msgpack; nothing else.
#
# Steps (each one's failure is reported in the table; the rest still run):
#   build   lib/core and lib/model, eosin-encode, eosin-cat,
#           eosin-make-model, test-cuda, the plugin and bench/gpu_forward
#           against the payload's headers and libraries
#   parity  test-cuda (every reference model in bf16 and fp32 against the
#           CPU path and the stored timm/CLIP outputs; batches of 1, 3,
#           257 and 600); eosin-encode --device cuda against --device cpu
#           on 257 JPEG tiles (a batch of 256 and one more, so both slots
#           are used) through bench/gpu_compare.py
#   speed   ViT-L/16 and ViT-B/16 (random weights, 224 px, batch 256):
#           eosin (bench/gpu_forward) against timm's VisionTransformer with
#           bf16 autocast and SDPA (bench/gpu_torch.py), the same shape in
#           the same run; then images/s from JPEG bytes in the stream
#           (eosin-encode --device cuda) against timm with a DataLoader
# Peak used for the fraction: 989 TFLOP/s dense bf16 (H100 SXM; the H200
# is the same chip). ViT-L/16 at 224 px is 123.1 GFLOP an image, ViT-B/16
# 35.2 (2 x multiply-adds of the patch embedding, QKV, attention, output
# projection and MLP over 197 tokens).
set -u
cd "$(dirname "$0")/.."
P=${GPU_PAYLOAD_DIR:-/tmp/eosin-gpu}
B=$P/build
N_SPEED=${N_SPEED:-2048}
ROWS=()
row() { ROWS+=("$(printf '%-44s %s' "$1" "$2")"); echo "gpu.sh: $1: $2" >&2; }
secs() { date +%s.%N; }

# --- build --------------------------------------------------------------
rm -rf "$P" && mkdir -p "$P" &&
	xz -dc .gpu-payload/payload.tar.xz | tar -x -C "$P" || { echo "gpu.sh: no payload: run bench/gpu-prepare.sh where the Debian libraries are" >&2; exit 1; }
export LD_LIBRARY_PATH=$P/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} LIBRARY_PATH=$P/lib
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
MK=(make --no-print-directory -j"$(nproc)" BUILD="$B" NVCC="$NVCC"
	LIB_C="$(ls lib/core/*.c lib/model/*.c | tr '\n' ' ')" LIB_CXX= PKG_LIBS="-L$P/lib"
	PKG_CFLAGS="-I$P/include"
	CFLAGS="-O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -fopenmp -MMD -MP -Ilib -I$B/gen -I$P/include"
	LDLIBS="-L$P/lib -lmsgpackc -ljansson -lturbojpeg -lopenblas -lz -lm -lpthread -ldl")
t0=$(secs)
if "${MK[@]}" "$B/bin/eosin-encode" "$B/bin/eosin-cat" "$B/bin/eosin-make-model" \
	"$B/tests/test-cuda" "$B/lib/eosin-cuda.so" >"$P/build.log" 2>&1 &&
	cc -O2 -std=c11 -D_GNU_SOURCE -fopenmp -Ilib -I"$B/gen" -I"$P/include" -o "$B/gpu_forward" \
		bench/gpu_forward.c "$B/libeosin.a" -L"$P/lib" -lmsgpackc -ljansson -lturbojpeg \
		-lopenblas -lz -lm -lpthread -ldl >>"$P/build.log" 2>&1; then
	row build "ok ($(awk -v a="$t0" -v b="$(secs)" 'BEGIN { printf "%.0f s", b - a }'))"
else
	tail -30 "$P/build.log" >&2
	row build "FAILED (see above)"
	printf '%s\n' "${ROWS[@]}"
	exit 1
fi
export EOSIN_CUDA_PLUGIN=$B/lib/eosin-cuda.so PATH=$B/bin:$PATH
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true

# --- parity -------------------------------------------------------------
if SHARED=$P/data timeout 120 "$B/tests/test-cuda" >"$P/test-cuda.log" 2>&1; then
	row "parity: test-cuda" "ok, $(grep -c '^ok' "$P/test-cuda.log") passed, $(grep -c '# skip' "$P/test-cuda.log") skipped"
else
	grep -E '^not ok|^#' "$P/test-cuda.log" | head -20 >&2
	row "parity: test-cuda" "FAILED: $(grep -c '^not ok' "$P/test-cuda.log") failed (log above)"
fi
grep -E '^ok .*(cosine|GPU)' "$P/test-cuda.log" | sed 's/^/  /' >&2

REF=$P/data/reference VOCAB=$P/data/tokenizers/bpe_simple_vocab_16e6.txt.gz
python3 - "$P/data/tiles" 257 >"$P/tiles.json" <<'EOF'
import base64, json, pathlib, sys
files = sorted(pathlib.Path(sys.argv[1]).glob("*.jpg"))
for i in range(int(sys.argv[2])):
    b = base64.b64encode(files[i % len(files)].read_bytes()).decode()
    print(json.dumps({"k": "tile", "v": 1, "id": "t%d" % i, "jpeg": {"$base64": b},
                      "caption": "tumour cells %d" % i}))
EOF
eosin-cat -r <"$P/tiles.json" >"$P/tiles.mpk"
for m in vit clip; do
	if [ $m = vit ]; then args=(--model "$REF/vit_weights.safetensors") fields=(img_emb)
	else args=(--model "$REF/clip_weights.safetensors" --text-model "$REF/clip_weights.safetensors" --vocab "$VOCAB") fields=(img_emb txt_emb)
	fi
	for prec in bf16 fp32; do
		if eosin-encode "${args[@]}" --device cpu <"$P/tiles.mpk" >"$P/cpu.mpk" 2>"$P/enc.log" &&
			eosin-encode "${args[@]}" --device cuda --gpu-precision $prec <"$P/tiles.mpk" >"$P/gpu.mpk" 2>>"$P/enc.log"; then
			row "parity: encode $m $prec, 257 tiles" "$(python3 bench/gpu_compare.py "$P/gpu.mpk" "$P/cpu.mpk" "${fields[@]}" 2>&1)"
		else
			tail -3 "$P/enc.log" >&2
			row "parity: encode $m $prec, 257 tiles" "FAILED (log above)"
		fi
	done
done

# --- speed --------------------------------------------------------------
for cfg in "L 1024 24 16 123.1" "B 768 12 12 35.2"; do
	set -- $cfg
	name=ViT-$1/16 mdl=$P/vit-$1.safetensors
	eosin-make-model --arch vit --dim "$2" --depth "$3" --heads "$4" --patch 16 --img 224 \
		--dtype bf16 --seed 1 --out "$mdl" 2>>"$P/enc.log" || { row "speed: $name" "FAILED: eosin-make-model"; continue; }
	e=$(timeout 120 "$B/gpu_forward" "$mdl" "$N_SPEED" 256 bf16 2>&1 | awk '/images_per_s/ { print $2 }')
	t=$(timeout 120 python3 bench/gpu_torch.py forward "$2" "$3" "$4" 256 "$N_SPEED" 2>&1 | awk '/images_per_s/ { print $2 }')
	if [ -n "$e" ] && [ -n "$t" ]; then
		row "speed: $name, 224 px, batch 256, bf16" "$(awk -v e="$e" -v t="$t" -v g="$5" 'BEGIN {
			printf "eosin %.0f img/s, timm %.0f img/s, ratio %.2fx, eosin %.1f%% of 989 TFLOP/s", e, t, e / t, 100 * e * g / 989e3 }')"
	else
		row "speed: $name" "FAILED (eosin '${e:-}', timm '${t:-}')"
	fi
	# from JPEG bytes in the stream: 2048 tiles (the 11 real tiles repeated)
	python3 - "$P/data/tiles" 2048 <<'EOF' >"$P/e2e.json"
import base64, json, pathlib, sys
files = sorted(pathlib.Path(sys.argv[1]).glob("*.jpg"))
for i in range(int(sys.argv[2])):
    b = base64.b64encode(files[i % len(files)].read_bytes()).decode()
    print(json.dumps({"k": "tile", "v": 1, "id": "e%d" % i, "jpeg": {"$base64": b}}))
EOF
	eosin-cat -r <"$P/e2e.json" >"$P/e2e.mpk"
	ls "$P"/data/tiles/*.jpg >"$P/jpegs.txt"
	s=$(secs)
	if timeout 150 eosin-encode --model "$mdl" --device cuda <"$P/e2e.mpk" >/dev/null 2>>"$P/enc.log"; then
		e=$(awk -v a="$s" -v b="$(secs)" 'BEGIN { printf "%.0f", 2048 / (b - a) }')
	else e=""; fi
	t=$(timeout 150 python3 bench/gpu_torch.py e2e "$2" "$3" "$4" 256 "$P/jpegs.txt" 2048 2>&1 | awk '/images_per_s/ { print $2 }')
	row "e2e: $name from JPEG, 2048 tiles" "eosin-encode ${e:-FAILED} img/s (incl. model load), timm+DataLoader ${t:-FAILED} img/s"
done

echo
printf '%s\n' "== bench/gpu.sh on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" "${ROWS[@]}"
