# tests/lib.sh: shell test library in the style of git's t/test-lib.sh.
# A test file sources this, then calls
#   test_expect_success 'title' 'commands'
#   test_expect_failure ...   (a known breakage: reported, not counted as a pass)
#   test_skip_all 'why'       (before any test)
#   test_done
# Commands run in a fresh scratch directory ($TRASH) shared by the file's
# tests, with the programs on PATH. Output is TAP, for prove.
set -u
TEST_DIR=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(cd "$TEST_DIR/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
PATH="$BUILD/bin:$PATH"
SHARED=${EOSIN_SHARED:-$ROOT/../shared/data}
export PATH BUILD ROOT SHARED
TRASH=$(mktemp -d "${TMPDIR:-/tmp}/eosin-test.XXXXXX")
trap 'rm -rf "$TRASH"' EXIT
cd "$TRASH" || exit 1
test_count=0
test_failures=0
test_prereqs=" "

test_set_prereq() { test_prereqs="$test_prereqs$1 "; }
test_have_prereq() {
	[ "$1" = TORCH ] && [ -z "$torch_checked" ] && check_torch
	case "$test_prereqs" in *" $1 "*) return 0 ;; esac
	return 1
}

test_skip_all() {
	echo "1..0 # SKIP $1"
	exit 0
}

# test_expect_success [PREREQ] 'title' 'commands'
test_expect_success() {
	local prereq=
	if [ $# = 3 ]; then prereq=$1; shift; fi
	test_count=$((test_count + 1))
	if [ -n "$prereq" ] && ! test_have_prereq "$prereq"; then
		echo "ok $test_count # skip $1 (missing $prereq)"
		return
	fi
	local out
	if out=$( (eval "$2") 2>&1 </dev/null); then
		echo "ok $test_count - $1"
	else
		test_failures=$((test_failures + 1))
		echo "not ok $test_count - $1"
		printf '%s\n' "$2" | sed 's/^/#	/'
		printf '%s\n' "$out" | tail -n 30 | sed 's/^/#   > /'
	fi
}

test_expect_failure() {
	test_count=$((test_count + 1))
	if ( eval "$2" ) >/dev/null 2>&1 </dev/null; then
		echo "ok $test_count - $1 # TODO known breakage vanished"
	else
		echo "not ok $test_count - $1 # TODO known breakage"
	fi
}

test_done() {
	echo "1..$test_count"
	[ "$test_failures" = 0 ]
	exit $?
}

# test_cmp EXPECTED ACTUAL: diff, shown on failure
test_cmp() { diff -u "$1" "$2"; }

# test_must_fail CMD...: CMD exits non-zero but not by a signal (crash)
test_must_fail() {
	"$@"
	local st=$?
	if [ $st = 0 ]; then echo "test_must_fail: '$*' succeeded" >&2; return 1; fi
	if [ $st -gt 128 ]; then echo "test_must_fail: '$*' died by signal $((st - 128))" >&2; return 1; fi
	return 0
}

# test_exit_code N CMD...: CMD exits with status N
test_exit_code() {
	local want=$1; shift
	"$@"
	local st=$?
	[ $st = "$want" ] || { echo "test_exit_code: '$*' exited $st, want $want" >&2; return 1; }
}

# json VALUE: a field of one JSON line, via jq
jqf() { jq -r "$1"; }

[ -d "$SHARED" ] && test_set_prereq SHARED
# TORCH is checked when a test first asks for it (importing torch takes
# seconds). Debian's python3-torch lives in /usr/bin/python3; a python3
# earlier on PATH (pyenv, a venv) may lack it. TORCH_PY is the one that has it.
TORCH_PY=
torch_checked=
check_torch() {
	torch_checked=1
	for TORCH_PY in /usr/bin/python3 python3; do
		command -v $TORCH_PY >/dev/null && $TORCH_PY -c 'import torch' 2>/dev/null &&
			{ test_set_prereq TORCH; export TORCH_PY; return; }
	done
	TORCH_PY=
}

# The layout tests (t2055-t2057): check_numpy sets NUMPY_PY, a python3 with
# numpy, or empty; layout_tiles FIXTURE OUT: the shared JPEG tiles the
# fixture names, as tile records; layout_maxabs GOT WANT: the max abs
# difference of two files of JSON rows, printed, and success when it is
# within 1e-4.
NUMPY_PY=
check_numpy() {
	for NUMPY_PY in python3 /usr/bin/python3; do
		"$NUMPY_PY" -c 'import numpy' 2>/dev/null && return
	done
	NUMPY_PY=
}
layout_tiles() {
	jq -r ".images[]" "$1" >layout-names &&
	test $(wc -l <layout-names) -ge 4 &&
	while read -r f; do
		test -f "$SHARED/tiles/$f" || return 1
		jq -nc --arg b "$(base64 -w0 "$SHARED/tiles/$f")" --arg id "$f" \
			"{k:\"tile\",v:1,id:\$id,jpeg:{\"\$base64\":\$b}}" || return 1
	done <layout-names | eosin-cat -r >"$2"
}
layout_maxabs() { "$NUMPY_PY" "$ROOT/tests/parity/maxabs.py" "$1" "$2"; }
