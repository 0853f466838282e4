# eosin: build, test, demo.
#
#   make             install missing Debian packages, build every program
#   make check       build and run the whole test suite (TAP, via prove)
#   make demo        run the whole pipeline on a built-in input
#   make SANITIZE=address,undefined check   the suite under ASan/UBSan
#   make bench       the benchmarks under bench/
#   make fuzz        libFuzzer targets (clang) from tests/fuzz/ into build-fuzz/bin
#   make CUDA=0      leave out the CUDA plugin (built by default when nvcc is found)
#
# Programs land in $(BUILD)/bin. A sanitized build lives in its own tree so
# that it never mixes objects with the normal one.

SANITIZE ?=
BUILD    ?= build$(if $(SANITIZE),-san)
CC       ?= cc
CXX      ?= c++
PKGS     := openslide vips msgpack jansson libcurl libturbojpeg libtiff-4 libopenjp2
# libhdf5-dev (lib/io/h5feat.c): Debian names it hdf5-serial, with hdf5 as an alternative
PKGS     += $(if $(shell pkg-config --exists hdf5-serial 2>/dev/null && echo y),hdf5-serial,hdf5)
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fopenmp -MMD -MP \
            -Ilib -I$(BUILD)/gen
CXXFLAGS ?= $(OPT) -g
CXXFLAGS += -std=c++17 -Wall -Wextra -Werror -MMD -MP -Ilib
LDLIBS   += -lfaiss -lopenblas -lz -lstdc++ -lm -lpthread -ldl
# The CUDA plugin $(BUILD)/lib/eosin-cuda.so (lib/model/cuda/), opened at
# run time by lib/model/gpu.c: no program links CUDA. Built when nvcc is
# on PATH or in /usr/local/cuda, unless CUDA=0; for Hopper (sm_90) unless
# CUDA_ARCH says otherwise.
CUDA     ?= auto
ifeq ($(CUDA),0)
NVCC     :=
else
NVCC     ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard /usr/local/cuda/bin/nvcc))
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode=arch=compute_90,code=sm_90
NVCCFLAGS ?= -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -fPIC,-Wall,-Wextra
PLUGIN   := $(if $(NVCC),$(BUILD)/lib/eosin-cuda.so)
# FAISS's C API: the system's libfaiss_c where there is one (Debian's
# libfaiss-dev has the headers only), else lib/search/faiss_shim.cpp's C-linkage part.
FAISS_C  ?= $(firstword $(wildcard /usr/lib/libfaiss_c.* /usr/lib/*-linux-gnu/libfaiss_c.* \
            /usr/local/lib/libfaiss_c.*))
ifneq ($(FAISS_C),)
CXXFLAGS += -DEOSIN_HAVE_FAISS_C
LDLIBS   := -lfaiss_c $(LDLIBS)
endif
LDFLAGS  += -fopenmp
ifneq ($(SANITIZE),)
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CFLAGS   += $(SANFLAGS)
CXXFLAGS += $(SANFLAGS)
LDFLAGS  += $(SANFLAGS)
endif

LIB_C    := $(sort $(wildcard lib/*/*.c))
LIB_CXX  := $(sort $(wildcard lib/*/*.cpp))
SCHEMAS  := $(sort $(wildcard schemas/*.schema))
FILTERS  := $(sort $(wildcard filters/*.c))
UNIT     := $(sort $(wildcard tests/unit/test-*.c))
FUZZ     := $(sort $(wildcard tests/fuzz/fuzz-*.c))
PROGRAMS := $(patsubst filters/%.c,$(BUILD)/bin/%,$(FILTERS))
SERVERS  := $(patsubst tests/servers/%.c,$(BUILD)/servers/%,$(sort $(wildcard tests/servers/*.c)))
UNITBINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT)) \
            $(patsubst tests/fuzz/fuzz-%.c,$(BUILD)/tests/test-fuzz-%,$(FUZZ))
LIB_OBJ  := $(patsubst lib/%.c,$(BUILD)/lib/%.o,$(LIB_C)) \
            $(patsubst lib/%.cpp,$(BUILD)/lib/%.o,$(LIB_CXX)) \
            $(BUILD)/gen/schema_table.o
LIBEOSIN := $(BUILD)/libeosin.a
MAN5     := $(patsubst schemas/%.schema,man/man5/eosin-%.5,$(SCHEMAS))

.PHONY: all deps programs check test-only demo bench man clean fuzz
.DEFAULT_GOAL := all

all: deps
	@$(MAKE) --no-print-directory programs

deps:
	@tools/install-deps

programs: $(PROGRAMS) $(UNITBINS) $(SERVERS) $(MAN5) $(PLUGIN)

# Flags from pkg-config, computed once per make run (after deps ran).
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# the trainer's elementwise loops vectorise only without errno and FP traps
$(BUILD)/lib/train/optim.o $(BUILD)/lib/train/align_layers.o $(BUILD)/lib/train/align_text.o: CFLAGS += -fno-math-errno -fno-trapping-math
$(BUILD)/lib/%.o: lib/%.c $(BUILD)/gen/schema_fields.h
	@mkdir -p $(@D)
	@echo '  CC    $<'; $(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/lib/%.o: lib/%.cpp
	@mkdir -p $(@D)
	@echo '  CXX   $<'; $(CXX) $(CXXFLAGS) -c -o $@ $<

$(BUILD)/gen/schema_table.c $(BUILD)/gen/schema_fields.h: $(SCHEMAS) tools/schemagen.awk
	@mkdir -p $(@D)
	@awk -v mode=c -v out=$(BUILD)/gen -f tools/schemagen.awk $(SCHEMAS)

$(BUILD)/gen/schema_table.o: $(BUILD)/gen/schema_table.c
	@$(CC) $(CFLAGS) -c -o $@ $<

man/man5/eosin-%.5: schemas/%.schema tools/schemagen.awk
	@awk -v mode=man -f tools/schemagen.awk $< > $@.tmp && mv $@.tmp $@

man: $(MAN5)

$(BUILD)/lib/eosin-cuda.so: $(wildcard lib/model/cuda/*)
	@mkdir -p $(@D)
	@echo '  NVCC  $@'; $(NVCC) $(NVCCFLAGS) -Ilib -shared -o $@ lib/model/cuda/plugin.cu \
		-lcublasLt -lcublas -Xlinker -rpath=$(CUDA_HOME)/lib64

$(LIBEOSIN): $(LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/bin/%: filters/%.c $(LIBEOSIN)
	@mkdir -p $(@D) $(BUILD)/deps
	@echo '  LINK  $@'; $(CC) $(CFLAGS) $(PKG_CFLAGS) -MF $(BUILD)/deps/$(@F).d -o $@ $< $(LIBEOSIN) $(LDFLAGS) $(PKG_LIBS) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/tap.h $(LIBEOSIN)
	@mkdir -p $(@D) $(BUILD)/deps
	@echo '  LINK  $@'; $(CC) $(CFLAGS) $(PKG_CFLAGS) -Itests/unit -MF $(BUILD)/deps/$(@F).d -o $@ $< $(LIBEOSIN) $(LDFLAGS) $(PKG_LIBS) $(LDLIBS)

# Test servers (tests/servers/NAME.c), started by tests and benchmarks.
$(BUILD)/servers/%: tests/servers/%.c $(LIBEOSIN)
	@mkdir -p $(@D) $(BUILD)/deps
	@echo '  LINK  $@'; $(CC) $(CFLAGS) $(PKG_CFLAGS) -MF $(BUILD)/deps/$(@F).d -o $@ $< $(LIBEOSIN) $(LDFLAGS) $(PKG_LIBS) $(LDLIBS)

# Fuzz targets (tests/fuzz/fuzz-NAME.c define LLVMFuzzerTestOneInput). The
# suite runs each through tests/fuzz/driver.c over seeds and random
# mutations for a bounded time; `make fuzz` builds real libFuzzer binaries
# with clang in build-fuzz/ (run e.g. build-fuzz/fuzz-stream -max_total_time=300).
$(BUILD)/tests/test-fuzz-%: tests/fuzz/fuzz-%.c tests/fuzz/driver.c $(LIBEOSIN)
	@mkdir -p $(@D) $(BUILD)/deps
	@echo '  LINK  $@'; $(CC) $(CFLAGS) $(PKG_CFLAGS) -Itests/unit -MF $(BUILD)/deps/$(@F).d -o $@ $< tests/fuzz/driver.c $(LIBEOSIN) $(LDFLAGS) $(PKG_LIBS) $(LDLIBS)

check: all
	@tools/install-deps test
	@$(MAKE) --no-print-directory test-only

# Run the suite against what is built; tests/run sets up the environment.
test-only:
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) tests/run

demo: all
	@BUILD=$(BUILD) pipelines/demo

bench: all
	@tools/install-deps test
	@BUILD=$(BUILD) bench/run

# libFuzzer: the library built by clang with fuzzer-no-link and the
# sanitizers in build-fuzz/, each tests/fuzz/fuzz-NAME.c linked against it.
FUZZ_SAN := fuzzer-no-link,address,undefined
fuzz: deps
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang CXX=clang++ OPT=-O1 \
		SANITIZE=$(FUZZ_SAN) build-fuzz/libeosin.a
	@mkdir -p build-fuzz/bin
	@for f in tests/fuzz/fuzz-*.c; do \
		echo "  FUZZ  build-fuzz/bin/$$(basename $$f .c)"; \
		clang -g -O1 -std=c11 -D_GNU_SOURCE -Ilib -Ibuild-fuzz/gen -Itests/unit $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined \
			-o build-fuzz/bin/$$(basename $$f .c) $$f build-fuzz/libeosin.a \
			-fopenmp $(PKG_LIBS) $(LDLIBS) || exit 1; \
	done

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
