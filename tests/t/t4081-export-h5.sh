#!/bin/sh
# eosin-export --h5: CLAM-compatible files read back as CLAM's loader does;
# import -> export -> import gives the same tiles.
. "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
[ -x $PY ] || PY=python3
$PY -c 'import h5py, numpy' 2>/dev/null ||
	test_skip_all 'python3 with h5py and numpy is missing (Debian: python3-h5py python3-numpy)'

cat >mk.py <<'PY'
import sys, h5py, numpy as np
out, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(seed)
with h5py.File(out, "w") as f:
    f["features"] = rng.standard_normal((n, 24)).astype(np.float32)
    f["coords"] = (rng.integers(0, 1000, (n, 2)) * 256).astype(np.int64)
    f["coords"].attrs["patch_level"] = 0
    f["coords"].attrs["patch_size"] = 256
PY

# clam.py ORIG EXPORTED: read EXPORTED the way CLAM does and compare with ORIG
cat >clam.py <<'PY'
import sys, h5py, numpy as np
a = h5py.File(sys.argv[1], "r")
with h5py.File(sys.argv[2], "r") as f:
    features = f["features"][:]
    coords = f["coords"][:]
    patch_level = f["coords"].attrs["patch_level"]
    patch_size = f["coords"].attrs["patch_size"]
    assert features.dtype == np.float32 and coords.dtype == np.int64
    assert f["features"].maxshape == (None, features.shape[1]) and f["features"].chunks
    assert np.array_equal(features, a["features"][:])
    assert np.array_equal(coords, a["coords"][:])
    print(features.shape, patch_level, patch_size, dict(f["coords"].attrs))
PY

test_expect_success 'exported file reads back as CLAM reads it, equal to the original' '
	$PY mk.py A.h5 300 1 &&
	eosin-import --mag 20 A.h5 >A.mpk &&
	mkdir out && eosin-export --h5 out A.mpk 2>err &&
	grep "eosin-export: 300 tiles of 1 slides written to out" err &&
	ls out >got && echo A.h5 >want && test_cmp want got &&
	$PY clam.py A.h5 out/A.h5 >attrs &&
	grep "(300, 24) 0 256" attrs &&
	grep "'"'"'target_magnification'"'"': 20.0" attrs && grep "'"'"'patch_size_level0'"'"': 256" attrs
'

test_expect_success 'import -> export -> import: the same tiles (path aside)' '
	eosin-import out/A.h5 >B.mpk &&
	eosin-cat --base64 A.mpk | jq -c "select(.k != \"hdr\") | del(.path)" >a.json &&
	eosin-cat --base64 B.mpk | jq -c "select(.k != \"hdr\") | del(.path)" >b.json &&
	test_cmp a.json b.json
'

test_expect_success 'several thousand rows cross chunk boundaries intact' '
	$PY mk.py Big.h5 5000 2 &&
	mkdir big && eosin-import --mag 10 Big.h5 | eosin-export --h5 big &&
	$PY clam.py Big.h5 big/Big.h5 | grep "(5000, 24)"
'

test_expect_success 'interleaved slides: one file each, rows in stream order' '
	$PY mk.py C.h5 40 3 &&
	eosin-import --mag 20 C.h5 >C.mpk &&
	eosin-cat --base64 A.mpk >a.all && eosin-cat --base64 C.mpk >c.all &&
	paste -d "\n" a.all c.all | grep . | eosin-cat -r >mixed.mpk &&
	mkdir two && eosin-export --h5 two mixed.mpk &&
	ls two >got && printf "A.h5\nC.h5\n" >want && test_cmp want got &&
	$PY clam.py A.h5 two/A.h5 && $PY clam.py C.h5 two/C.h5
'

test_expect_success 'f16 embeddings are widened to float32' '
	mkdir out16 && eosin-import --mag 20 --dtype f16 A.h5 | eosin-export --h5 out16 &&
	$PY -c "
import h5py, numpy as np
a = h5py.File(\"A.h5\")[\"features\"][:]; b = h5py.File(\"out16/A.h5\")[\"features\"][:]
assert b.dtype == np.float32 and np.allclose(a, b, rtol=1e-3, atol=1e-3)"
'

test_expect_success 'a tile without img_emb fails, naming the record, and leaves no file' '
	eosin-cat --base64 A.mpk | sed -n "1,5p" >part.json &&
	eosin-cat --base64 A.mpk | sed -n 6p | jq -c "del(.img_emb)" >>part.json &&
	eosin-cat -r part.json >part.mpk && mkdir none &&
	test_exit_code 1 eosin-export --h5 none part.mpk 2>err &&
	grep "eosin-export: part.mpk: record 6 (id .A/20x/[0-9_]*.): tile has no field .img_emb." err &&
	test -z "$(ls -A none)"
'

test_expect_success 'a NaN embedding fails, naming the record, and leaves no file' '
	eosin-cat --base64 A.mpk | sed -n "1,3p" >nan.json &&
	eosin-cat --base64 A.mpk | sed -n 4p |
		jq -c ".img_emb.data[\"\$base64\"] = \"AADAfw==\" | .img_emb.dim = 1" >>nan.json &&
	eosin-cat -r nan.json >nan.mpk && mkdir nan &&
	test_exit_code 1 eosin-export --h5 nan nan.mpk 2>err &&
	grep "eosin-export: nan.mpk" err && grep -i "nan" err &&
	test -z "$(ls -A nan)"
'

test_expect_success 'a truncated stream fails and leaves no file' '
	mkdir cut && head -c 5000 A.mpk >cut.mpk &&
	test_exit_code 1 eosin-export --h5 cut cut.mpk 2>err &&
	grep "eosin-export: cut.mpk: truncated record" err && test -z "$(ls -A cut)"
'

test_expect_success 'the slide id is the name attribute, a string as h5py writes one' '
	$PY -c "import h5py; n = h5py.File(\"out/A.h5\")[\"coords\"].attrs[\"name\"]; assert n == \"A\", n"
'

test_expect_success 'a directory that is not there is a usage error' '
	test_exit_code 2 eosin-export --h5 nowhere A.mpk 2>err && grep "not a directory" err
'

test_expect_success SHARED 'real file: import -> export -> import the same, CLAM reads the export' '
	f="$SHARED/features/TCGA-AD-6964-01Z-00-DX1.features.h5" && test -f "$f" &&
	eosin-import --slide-id TCGA-AD-6964 --mag 20 --extent 512 "$f" >r1.mpk &&
	mkdir real && eosin-export --h5 real r1.mpk &&
	$PY -c "
import h5py, numpy as np
a = h5py.File(\"$f\"); b = h5py.File(\"real/TCGA-AD-6964.h5\")
assert np.array_equal(a[\"feats\"][:], b[\"features\"][:]) and np.array_equal(a[\"coords\"][:], b[\"coords\"][:])
assert b[\"coords\"].attrs[\"patch_level\"] == 0 and b[\"coords\"].attrs[\"patch_size\"] == 512" &&
	eosin-import real/TCGA-AD-6964.h5 >r2.mpk &&
	eosin-cat --base64 r1.mpk | jq -c "select(.k != \"hdr\") | del(.path)" >r1.json &&
	eosin-cat --base64 r2.mpk | jq -c "select(.k != \"hdr\") | del(.path)" >r2.json &&
	test_cmp r1.json r2.json
'

test_done
