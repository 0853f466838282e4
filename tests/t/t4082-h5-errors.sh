#!/bin/sh
# eosin-import on bad HDF5 input: each refused with program, file, dataset
# and row named, exit 1, and no tile written.
. "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
[ -x $PY ] || PY=python3
$PY -c 'import h5py, numpy' 2>/dev/null ||
	test_skip_all 'python3 with h5py and numpy is missing (Debian: python3-h5py python3-numpy)'

# bad.py CASE OUT
cat >bad.py <<'PY'
import sys, h5py, numpy as np
case, out = sys.argv[1], sys.argv[2]
n = 20
feats = np.arange(n * 8, dtype=np.float32).reshape(n, 8)
coords = np.arange(n * 2, dtype=np.int64).reshape(n, 2) * 256
if case == "rank":
    feats = feats.reshape(n, 2, 4)
if case == "nan":
    feats[7, 3] = np.nan
if case == "inf":
    feats[11, 0] = -np.inf
if case == "int32":
    coords[3, 1] = 1 << 40
if case == "mismatch":
    coords = coords[:19]
if case == "coordrank":
    coords = coords.reshape(-1)
with h5py.File(out, "w") as f:
    f["features"] = feats
    f["coords"] = coords
    if coords.ndim == 2:
        f["coords"].attrs["patch_level"] = 0
        f["coords"].attrs["patch_size"] = 256
PY

# refused CASE PATTERN: import fails with status 1, the message matches,
# no tile reaches stdout and -o leaves no file
refused() {
	$PY bad.py "$1" "$1.h5" &&
	test_exit_code 1 eosin-import --mag 20 "$1.h5" >"$1.mpk" 2>err &&
	cat err && grep "^eosin-import: $1.h5: $2" err &&
	! eosin-cat "$1.mpk" | grep -q "\"k\":\"tile\"" &&
	test_exit_code 1 eosin-import --mag 20 -o "$1.out" "$1.h5" 2>/dev/null &&
	test ! -e "$1.out" && ! ls "$1".out.tmp.* 2>/dev/null
}

test_expect_success 'a good file goes in (the cases below differ from it in one thing)' '
	$PY bad.py good good.h5 && eosin-import --mag 20 good.h5 | eosin-cat --kind tile | wc -l | grep -x 20
'

test_expect_success 'NaN feature: refused, naming dataset, row and column' '
	refused nan "dataset .features., row 7, column 3: NaN feature"
'

test_expect_success 'infinite feature: refused, naming the row' '
	refused inf "dataset .features., row 11, column 0: infinite feature"
'

test_expect_success 'features of rank 3: refused' '
	refused rank "dataset .features. has rank 3, want 2"
'

test_expect_success 'coords of rank 1: refused' '
	refused coordrank "dataset .coords. has the wrong rank, want N x 2"
'

test_expect_success 'coordinate outside int32: refused, naming the row' '
	refused int32 "dataset .coords., row 3: y = 1099511627776 is outside int32 range"
'

test_expect_success 'features and coords of different N: refused' '
	refused mismatch "dataset .features. has 20 rows but .coords. has 19"
'

test_expect_success 'truncated file: refused, naming the file' '
	$PY bad.py good big.h5 && n=$(wc -c <big.h5) && head -c $((n / 2)) big.h5 >trunc.h5 &&
	test_exit_code 1 eosin-import --mag 20 -o trunc.out trunc.h5 2>err &&
	cat err && grep "^eosin-import: trunc.h5: .*truncated" err && test ! -e trunc.out &&
	head -c 100 big.h5 >short.h5 &&
	test_exit_code 1 eosin-import --mag 20 short.h5 >/dev/null 2>err &&
	grep "^eosin-import: short.h5: .*truncated" err
'

test_expect_success 'not an HDF5 file, and a missing file' '
	echo hello >text.h5 &&
	test_exit_code 1 eosin-import --mag 20 text.h5 >/dev/null 2>err &&
	grep "^eosin-import: text.h5: not an HDF5 file" err &&
	test_exit_code 1 eosin-import --mag 20 missing.h5 >/dev/null 2>err &&
	grep "^eosin-import: missing.h5: No such file" err
'

test_expect_success 'a bad file after a good one: the good one stays, status 1' '
	test_exit_code 1 eosin-import --mag 20 good.h5 nan.h5 >two.mpk 2>err &&
	grep "nan.h5: dataset .features., row 7" err &&
	eosin-cat --kind tile two.mpk | jq -r .slide | uniq -c | grep -x " *20 good"
'

test_expect_success 'usage errors exit 2' '
	test_exit_code 2 eosin-import 2>/dev/null &&
	test_exit_code 2 eosin-import --mag x good.h5 2>/dev/null &&
	test_exit_code 2 eosin-import --dtype f64 good.h5 2>/dev/null
'

test_done
