#!/bin/sh
# eosin-tile: usage errors exit 2 before any slide is touched; the usage
# line is the manual's SYNOPSIS.
. "$(dirname "$0")/../lib.sh"

test_expect_success 'no slide is a usage error' '
	test_exit_code 2 eosin-tile 2>err &&
	grep "^usage: eosin-tile " err
'

test_expect_success 'usage line is the SYNOPSIS of eosin-tile(1)' '
	eosin-tile 2>err; sed -n "s/^usage: //p" err >usage &&
	sed -n "/^\.SH SYNOPSIS/,/^\.SH/p" "$ROOT/man/man1/eosin-tile.1" |
	    grep -v "^\.SH" | sed -e "s/^\.[A-Z]* //" -e "s/\\\\-/-/g" -e "s/\\\\fB//g" \
	    -e "s/\\\\fI//g" -e "s/\\\\fR//g" | tr "\n" " " | sed "s/  */ /g; s/ $//" >synopsis &&
	echo >>synopsis && test_cmp usage synopsis
'

test_expect_success 'bad flags exit 2 and name the flag' '
	test_exit_code 2 eosin-tile --px 0 x.svs 2>err && grep -- "--px" err &&
	test_exit_code 2 eosin-tile --quality 101 x.svs 2>err && grep -- "--quality" err &&
	test_exit_code 2 eosin-tile --min-tissue 1.5 x.svs 2>err && grep -- "--min-tissue" err &&
	test_exit_code 2 eosin-tile --threads 0 x.svs 2>err && grep -- "--threads" err &&
	test_exit_code 2 eosin-tile --nosuch x.svs 2>err
'

test_expect_success 'magnification lists: doubling needed for a quadtree' '
	test_exit_code 2 eosin-tile --mags 5,10,30 x.svs 2>err &&
	grep "30 is not twice 10" err &&
	test_exit_code 2 eosin-tile --mags 5,x x.svs 2>err && grep "magnification" err &&
	test_exit_code 2 eosin-tile --mags 5,5 x.svs 2>err && grep "5 twice" err &&
	test_exit_code 2 eosin-tile --mags 0 x.svs 2>err
'

test_expect_success '--mpp and --base-mag together are refused' '
	test_exit_code 2 eosin-tile --mpp 0.5 --base-mag 20 x.svs 2>err &&
	grep "choose one" err
'

test_expect_success '--slide-id with two slides, --preview without {slide}' '
	test_exit_code 2 eosin-tile --slide-id A a.svs b.svs 2>err && grep "one slide" err &&
	test_exit_code 2 eosin-tile --preview p.png a.svs b.svs 2>err && grep "{slide}" err
'

test_expect_success '--overlap must be smaller than --px' '
	test_exit_code 2 eosin-tile --mags 20 --px 64 --overlap 64 x.svs 2>err &&
	grep -- "--overlap" err
'

test_done
