# pthcv -- build in place: `make` leaves build/libpthcv.so, which lua/pthcv finds
# from the checkout, so `./bin/pthcv` and `require "pthcv"` work without installing.
#
#   make            build the C core
#   make test       install missing Debian packages, build, run the specs
#   make demo       the main job on a bundled example
#   make bench      reader timings against torch.load and plain reads
#   make sanitize   the specs under AddressSanitizer + UndefinedBehaviorSanitizer

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -Wall -Wextra -Wno-unused-parameter
PKGS    := libzip
DEPCFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
DEPLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lzip) -lpthread
ALL_CFLAGS = $(WARN) -D_GNU_SOURCE -fPIC -Icsrc $(DEPCFLAGS) $(CFLAGS)

BUILD   := build
SRCS    := $(wildcard csrc/*.c csrc/reader/*.c csrc/tensor/*.c csrc/export/*.c csrc/kernels/*.c)
OBJS    := $(SRCS:%.c=$(BUILD)/%.o)
LIB     := $(BUILD)/libpthcv.so
PYTHON  := /usr/bin/python3
BUSTED  ?= busted

.PHONY: all deps test demo bench sanitize fixtures clean ctest

all: $(LIB)

$(LIB): $(OBJS)
	$(CC) -shared -o $@ $(OBJS) $(DEPLIBS) -lm $(LDFLAGS)

$(BUILD)/%.o: %.c csrc/pthcv.h csrc/internal.h $(wildcard csrc/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

deps:
	@tools/install-deps

# Specs run against the committed fixtures and, when torch is installed, against
# fixtures that torch writes afresh (spec/fixtures/make_fixtures.py).
test: deps
	@$(MAKE) --no-print-directory all
	@tools/run-specs

fixtures:
	$(PYTHON) spec/fixtures/make_fixtures.py spec/fixtures

demo: deps
	@$(MAKE) --no-print-directory all
	@tools/demo

bench: deps
	@$(MAKE) --no-print-directory all
	@$(PYTHON) tools/bench_reader.py

# A separate build folder, so the normal build stays as it is.
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
sanitize:
	@PTHCV_SANITIZE=1 tools/install-deps
	@$(MAKE) --no-print-directory all BUILD=build/asan CC=clang CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined"
	@PTHCV_SANITIZE=1 PTHCV_LIB=$(CURDIR)/build/asan/libpthcv.so tools/run-specs

# The tensor core and writers on their own (no reader needed), then their
# files read back by NumPy (and torch, when installed).
CTEST_SRCS := csrc/error.c $(wildcard csrc/tensor/*.c csrc/export/*.c) spec/c/tensor_test.c
ctest:
	@mkdir -p $(BUILD)/ctest
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/tensor_test $(CTEST_SRCS) $(DEPLIBS) -lm $(LDFLAGS)
	$(BUILD)/tensor_test $(BUILD)/ctest
	$(PYTHON) spec/c/check_exports.py $(BUILD)/ctest

clean:
	rm -rf $(BUILD)
