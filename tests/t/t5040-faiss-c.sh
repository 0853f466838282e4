#!/bin/sh
# FAISS's C API comes from the system's libfaiss_c where there is one, else
# from lib/search/faiss_shim.cpp: the Makefile chooses, the shim defines the C
# functions only when it must, and eosin's own additions always.
. "$(dirname "$0")/../lib.sh"

command -v nm >/dev/null || test_skip_all 'nm (binutils) missing'
OBJ=$BUILD/lib/search/faiss_shim.o
test -f "$OBJ" || test_skip_all "no $OBJ (build first)"

# make's view of a variable: make -p prints "NAME := value" or "NAME = value"
makevar() { make -C "$ROOT" --no-print-directory -p -n -q FAISS_C="$1" "$ROOT/lib/search/index.h" 2>/dev/null |
	sed -n "s/^$2 :*= //p" | tail -1; }

test_expect_success 'a system libfaiss_c: the define, and -lfaiss_c linked first' '
	makevar /usr/lib/x86_64-linux-gnu/libfaiss_c.so CXXFLAGS | grep -e "-DEOSIN_HAVE_FAISS_C" &&
	makevar /usr/lib/x86_64-linux-gnu/libfaiss_c.so LDLIBS | grep "^-lfaiss_c -lfaiss "
'

test_expect_success 'none: no define, no -lfaiss_c' '
	! makevar "" CXXFLAGS | grep -e "-DEOSIN_HAVE_FAISS_C" &&
	! makevar "" LDLIBS | grep -e "-lfaiss_c"
'

test_expect_success 'this build: the shim defines the C API exactly when the system lacks it' '
	nm "$OBJ" | sed -n "s/^[0-9a-f]* T //p" | sort >defined &&
	grep -x eosin_faiss_merge_into defined && grep -x eosin_faiss_is_ivf defined &&
	if ls /usr/lib/libfaiss_c.* /usr/lib/*-linux-gnu/libfaiss_c.* /usr/local/lib/libfaiss_c.* >/dev/null 2>&1; then
		! grep -x faiss_index_factory defined
	else
		for f in faiss_get_last_error faiss_index_factory faiss_Index_search faiss_read_index_fname \
			faiss_write_index_fname faiss_ParameterSpace_set_index_parameter; do
			grep -x $f defined || return 1
		done
	fi
'

test_done
