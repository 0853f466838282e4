#!/bin/sh
# eosin-import: CLAM and TRIDENT HDF5 feature files to tile records, every
# vector and coordinate checked against h5py.
. "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
[ -x $PY ] || PY=python3
$PY -c 'import h5py, numpy' 2>/dev/null ||
	test_skip_all 'python3 with h5py and numpy is missing (Debian: python3-h5py python3-numpy)'

# mk.py KIND OUT: a small feature file of one layout
cat >mk.py <<'PY'
import sys, h5py, numpy as np
kind, out = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(7)
n, d = 50, 16
feats = rng.standard_normal((n, d)).astype(np.float32)
coords = (rng.integers(0, 200, (n, 2)) * 256).astype(np.int64)
with h5py.File(out, "w") as f:
    name = "feats" if kind == "trident-feats" else "features"
    f.create_dataset(name, data=feats)
    c = f.create_dataset("coords", data=coords)
    if kind == "clam":
        c.attrs["patch_level"] = 0
        c.attrs["patch_size"] = 256
    elif kind == "clam-level1":
        c.attrs["patch_level"] = 1
        c.attrs["patch_size"] = 256
        c.attrs["downsample"] = np.array([4.0, 4.0])
    elif kind.startswith("trident"):
        c.attrs["patch_size"] = 256
        c.attrs["patch_size_level0"] = 512
        c.attrs["target_magnification"] = 20
        c.attrs["level0_magnification"] = 40
        c.attrs["name"] = "x"
PY

# same.py H5 JSONL: every tile's img_emb and x, y equal the file's rows, in order
cat >same.py <<'PY'
import sys, json, base64, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
feats = f["features"][:] if "features" in f else f["feats"][:]
coords = f["coords"][:]
tiles = [json.loads(l) for l in open(sys.argv[2]) if json.loads(l)["k"] == "tile"]
assert len(tiles) == len(feats) == len(coords), (len(tiles), len(feats))
for i, t in enumerate(tiles):
    e = t["img_emb"]
    assert e["dtype"] == "f32" and e["dim"] == feats.shape[1], e
    v = np.frombuffer(base64.b64decode(e["data"]["$base64"]), dtype="<f4")
    assert np.array_equal(v, feats[i]), ("row", i)
    assert (t["x"], t["y"]) == (int(coords[i, 0]), int(coords[i, 1])), ("coords row", i)
print(len(tiles), "rows equal")
PY

test_expect_success 'CLAM file with --mag: every vector and coordinate as h5py reads them' '
	$PY mk.py clam s1.h5 &&
	eosin-import --mag 20 s1.h5 >s1.mpk 2>err &&
	grep "eosin-import: 50 tiles from 1 file in" err &&
	eosin-cat --base64 s1.mpk >s1.json &&
	$PY same.py s1.h5 s1.json
'

test_expect_success 'tiles pass the strict schema check, after an hdr naming the input' '
	eosin-cat --check --strict s1.mpk 2>err && grep "51 records checked, 0 invalid" err &&
	head -n 1 s1.json | jq -e ".k == \"hdr\" and .prog == \"eosin-import\" and .input == [\"s1.h5\"]"
'

test_expect_success 'CLAM attributes give extent and px; slide id is the basename' '
	sed -n 2p s1.json | jq -c "[.slide, .mag, .mpp, .extent, .px, .level, .ds, .base_mpp, .depth, .id == .root]" >got &&
	echo "[\"s1\",20,0.5,256,256,0,1,0.5,0,true]" >want && test_cmp want got &&
	sed -n 2p s1.json | jq -r .id | grep "^s1/20x/[0-9]*_[0-9]*$"
'

test_expect_success 'CLAM at patch_level 1 with downsample: extent is patch_size x downsample' '
	$PY mk.py clam-level1 l1.h5 &&
	eosin-import --mag 5 l1.h5 | eosin-cat | sed -n 2p |
		jq -c "[.mag, .extent, .px, .level, .ds, .base_mpp]" >got &&
	echo "[5,1024,256,1,4,0.5]" >want && test_cmp want got
'

test_expect_success 'CLAM without --mag is refused, naming the missing attribute and the flag' '
	test_exit_code 1 eosin-import s1.h5 >out.mpk 2>err &&
	grep "eosin-import: s1.h5: the file does not say its magnification.*target_magnification.*give --mag" err &&
	! eosin-cat out.mpk | grep -q "\"k\":\"tile\""
'

test_expect_success 'no attributes and no --extent is refused' '
	$PY -c "import h5py,numpy as np; f=h5py.File(\"bare.h5\",\"w\"); f[\"features\"]=np.zeros((3,4),np.float32); f[\"coords\"]=np.zeros((3,2),np.int64)" &&
	test_exit_code 1 eosin-import --mag 20 bare.h5 >/dev/null 2>err &&
	grep "eosin-import: bare.h5: the file does not say the level-0 patch size.*give --extent" err &&
	eosin-import --mag 20 --extent 224 bare.h5 | eosin-cat | sed -n 2p | jq -e ".extent == 224 and .px == 224"
'

test_expect_success 'TRIDENT attributes need no flags: mag, extent, px from the file' '
	$PY mk.py trident t1.h5 &&
	eosin-import --slide-id T1 t1.h5 >t1.mpk &&
	eosin-cat --base64 t1.mpk >t1.json && $PY same.py t1.h5 t1.json &&
	sed -n 2p t1.json | jq -c "[.slide, .mag, .extent, .px, .base_mpp]" >got &&
	echo "[\"T1\",20,512,256,0.25]" >want && test_cmp want got
'

test_expect_success 'TRIDENT feats layout' '
	$PY mk.py trident-feats t2.h5 &&
	eosin-import t2.h5 | eosin-cat --base64 >t2.json && $PY same.py t2.h5 t2.json
'

test_expect_success 'a flag that contradicts the file is refused' '
	test_exit_code 1 eosin-import --mag 10 t1.h5 >/dev/null 2>err &&
	grep "target_magnification of .coords. is 20 but --mag is 10" err &&
	test_exit_code 1 eosin-import --extent 256 t1.h5 >/dev/null 2>err &&
	grep "level-0 extent of 512 (patch_size_level0) but --extent is 256" err
'

test_expect_success 'several files in one stream; --slide-id wants one' '
	eosin-import --mag 20 s1.h5 t1.h5 | eosin-cat --kind tile | jq -r .slide | uniq -c >got &&
	printf "     50 s1\n     50 t1\n" >want && test_cmp want got &&
	test_exit_code 2 eosin-import --slide-id X s1.h5 t1.h5 2>err && grep "one file" err
'

test_expect_success '--dtype f16 stores half floats' '
	eosin-import --mag 20 --dtype f16 --model uni s1.h5 | eosin-cat --kind tile | sed -n 1p |
		jq -e ".img_emb.dtype == \"f16\" and .img_emb.model == \"uni\" and .img_emb.data[\"\$bin\"] == 32"
'

test_expect_success '-o writes the stream under a temporary name, and nothing on failure' '
	eosin-import --mag 20 -o s1o.mpk s1.h5 && ! ls s1o.mpk.tmp.* 2>/dev/null &&
	eosin-cat --kind tile s1o.mpk | wc -l | grep -x 50 &&
	test_exit_code 1 eosin-import -o fail.mpk s1.h5 2>/dev/null &&
	test ! -e fail.mpk && ! ls fail.mpk.tmp.* 2>/dev/null
'

test_expect_success SHARED 'real TRIDENT file (feats, no attributes): 777 rows equal to h5py' '
	f="$SHARED/features/TCGA-AD-6964-01Z-00-DX1.features.h5" &&
	test -f "$f" &&
	eosin-import --slide-id TCGA-AD-6964 --mag 20 --extent 512 "$f" >real.mpk 2>err &&
	cat err && grep "777 tiles" err &&
	eosin-cat --check --strict real.mpk &&
	eosin-cat --base64 real.mpk >real.json && $PY same.py "$f" real.json
'

test_expect_success SHARED 'real file without coords is refused, naming the datasets it holds' '
	f="$SHARED/features/TCGA-3X-AAVA-01Z-00-DX1.features.h5" &&
	test -f "$f" &&
	test_exit_code 1 eosin-import --mag 20 --extent 512 "$f" >out.mpk 2>err &&
	grep "eosin-import: .*TCGA-3X-AAVA-01Z-00-DX1.features.h5: neither CLAM .*nor TRIDENT .*the file holds .features., .metadata." err
'

test_done
