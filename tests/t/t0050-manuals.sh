#!/bin/sh
# Manuals, usage() and schemas say the same thing.
. "$(dirname "$0")/../lib.sh"

test_expect_success 'section-5 pages are generated from the current schemas' '
	for s in "$ROOT"/schemas/*.schema; do
		k=$(basename "$s" .schema) &&
		(cd "$ROOT" && awk -v mode=man -f tools/schemagen.awk "schemas/$k.schema") >want.5 &&
		test_cmp want.5 "$ROOT/man/man5/eosin-$k.5" || return 1
	done
'

test_expect_success 'every program has a section-1 page' '
	for f in "$ROOT"/filters/*.c; do
		p=$(basename "$f" .c) &&
		test -f "$ROOT/man/man1/$p.1" || { echo "no man/man1/$p.1" >&2; return 1; }
	done
'

# The SYNOPSIS as man renders it (unwrapped, formatting gone) against what
# usage() prints ("usage: LINE" and indented continuation lines), both with
# lines joined and spaces squeezed.
test_expect_success 'SYNOPSIS is what usage() prints' '
	for f in "$ROOT"/filters/*.c; do
		p=$(basename "$f" .c)
		LC_ALL=C.UTF-8 MANWIDTH=2000 man -l "$ROOT/man/man1/$p.1" 2>/dev/null |
			sed -n "/^SYNOPSIS/,/^[A-Z]/p" | sed -e "1d" -e "\$d" |
			tr -s " \n" "  " | sed -e "s/^ //" -e "s/ $//" >man.txt
		{ "$p" --help 2>&1 >/dev/null; true; } |
			sed -n -e "s/^usage: //p" -e "s/^  *//p" | grep -v "^commands:" |
			tr -s " \n" "  " | sed -e "s/^ //" -e "s/ $//" >usage.txt
		test_cmp man.txt usage.txt || { echo "in $p" >&2; return 1; }
	done
'

test_expect_success 'every section-1 page lists exit status 0, 1 and 2' '
	for m in "$ROOT"/man/man1/*.1; do
		sed -n "/^\.SH EXIT STATUS/,/^\.SH/p" "$m" >es &&
		grep -q "^0" es && grep -q "^1" es && grep -q "^2" es ||
		{ echo "$m: EXIT STATUS incomplete" >&2; return 1; }
	done
'

test_expect_success 'every page formats without warnings' '
	for m in "$ROOT"/man/man1/*.1 "$ROOT"/man/man5/*.5; do
		LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$m" 2>warn >/dev/null &&
		test ! -s warn || { echo "$m:"; cat warn; return 1; } >&2
	done
'

test_done
