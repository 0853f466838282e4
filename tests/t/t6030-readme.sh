#!/bin/sh
# README.md's tour runs as written: its code blocks, in order, on the real
# slide, each command succeeding.
. "$(dirname "$0")/../lib.sh"

command -v jq >/dev/null || test_skip_all "jq missing"

test_expect_success SHARED 'the tour runs' '
	awk "/^## A tour/ { on = 1; next } /^## / { on = 0 } on && /^    / { print substr(\$0, 5) }" \
		"$ROOT/README.md" | sed "s|^S=../shared/data$|S=$SHARED|" >tour.sh &&
	test $(wc -l <tour.sh) -ge 15 &&
	sh -ex tour.sh >out 2>err || { tail -n 20 err; exit 1; }
'

test_expect_success SHARED 'and makes what it says' '
	test -s tiles.mpk && test -s text.mpk && test -s emb.mpk && test -s bags.mpk &&
	test -s head.st && test -s joint.mpk && test -s tiles.faiss && test -s lymph.png &&
	eosin-cat --check tiles.mpk text.mpk emb.mpk bags.mpk joint.mpk &&
	test $(grep -c "cmu-1-small-region/" out) -ge 5
'

test_done
