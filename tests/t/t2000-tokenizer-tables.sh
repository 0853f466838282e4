#!/bin/sh
# t2000: lib/model/utf8-tables.c is what tools/gen-unicode-tables.py makes from the
# Python, unicodedata and regex module that CLIP's reference ids came from.
. "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
if "$PY" -c 'import regex, unicodedata, sys
sys.exit(not (regex.__version__ == "2.5.123" and unicodedata.unidata_version == "14.0.0"))' 2>/dev/null
then
	test_set_prereq REGEX2022
fi

test_expect_success REGEX2022 'generated tables are up to date' '
	"$PY" "$ROOT/tools/gen-unicode-tables.py" >tables.c &&
	test_cmp "$ROOT/lib/model/utf8-tables.c" tables.c
'

test_expect_success 'tables name the versions they were made with' '
	grep -q "unicodedata 14.0.0, regex 2.5.123" "$ROOT/lib/model/utf8-tables.c"
'

test_done
