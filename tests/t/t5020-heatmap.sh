#!/bin/sh
# eosin-query --heatmap on a real slide: tiles near one point are made to
# resemble the query; the PNG must be hot there and untouched where no tile
# lies.
. "$(dirname "$0")/../lib.sh"

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
command -v $PY >/dev/null || test_skip_all "python3 missing"
command -v vips >/dev/null || test_skip_all "vips (libvips-tools) missing"
SLIDE=$SHARED/slides/cmu-1-small-region.svs

test_expect_success SHARED 'heatmap over cmu-1-small-region' '
	$PY "$ROOT/tests/t/t50-grid.py" "$SLIDE" 2220 2967 240 1500 1000 >tiles.json &&
	eosin-cat -r tiles.json >tiles.mpk &&
	eosin-cat -r query.json >q.mpk &&
	eosin-query --heatmap h.png --query q.mpk tiles.mpk >passed.mpk 2>err &&
	grep "108 tiles of" err &&
	test $(eosin-cat passed.mpk | grep -c "\"tile\"") = 108 &&
	vipsheader h.png >hdr && grep "889x1024 uchar, 3 bands" hdr
'

# The thumbnail is 766x1024 (scale 0.345): level-0 (1500, 1000), the most
# similar tiles, is near (518, 345); level-0 y > 2880 has no tile.
test_expect_success SHARED 'hot where the query matches, plain slide where no tile is' '
	set -- $(vips getpoint h.png 518 345) &&
	test $2 -gt $(($3 + 40)) &&
	vips thumbnail "$SLIDE" t.png 1024 --height 1024 &&
	test "$(vips getpoint t.png 400 1010 | cut -d" " -f1-3)" = "$(vips getpoint h.png 400 1010 | cut -d" " -f1-3)"
'

test_expect_success SHARED 'slide from --slide; unreadable slide is an error' '
	eosin-query --heatmap h2.png --slide "$SLIDE" --query q.mpk tiles.mpk >/dev/null 2>&1 &&
	cmp h.png h2.png &&
	echo junk >junk.svs &&
	test_exit_code 1 eosin-query --heatmap h3.png --slide junk.svs --query q.mpk tiles.mpk >/dev/null 2>err &&
	grep "junk.svs" err && ! test -e h3.png
'

test_done
