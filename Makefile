# pthcv -- build in place: `make` leaves build/libpthcv.so, which lua/pthcv finds
# from the checkout, so `./bin/pthcv` and `require "pthcv"` work without installing.
#
#   make            build the C core
#   make test       install missing Debian packages, build, run the specs
#   make test-large the zoo's models over 100M parameters, then the specs with
#                   the slow models (Mask R-CNN at full size)
#   make demo       the main job on a bundled example
#   make bench      reader timings against torch.load and plain reads; models against
#                   PyTorch, OpenCV DNN and ncnn (tools/bench_models.py); detectors
#                   end to end (tools/bench_detection.py); int8 against float32 and
#                   ncnn's int8 (tools/bench_int8.py)
#   make sanitize   the specs under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz       libFuzzer on the reader and the TorchScript parser (FUZZ_SECONDS=60 each)
#   make valgrind   memcheck over every fixture through the reader, and the kernels' tests
#   make fixtures   rewrite the committed fixtures (needs python3-torch)

SHELL   := /bin/bash
CC      ?= cc
CFLAGS  ?= -O2 -g
# -ffp-contract=off: no multiply-add fused unless the code writes it (gcc's
# ISO mode does this by itself, clang's does not), so a function built with
# FMA in reach (an AVX-512 kernel's file) gives the bits its plain build gives.
WARN    := -std=c11 -ffp-contract=off -Wall -Wextra -Wno-unused-parameter
PKGS    := libzip
DEPCFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
DEPLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lzip) -lpthread
# Only what pthcv.h marks PTHCV_API leaves libpthcv.so (spec/exports_spec.lua).
VISIBILITY := -fvisibility=hidden
ALL_CFLAGS = $(WARN) -D_GNU_SOURCE -fPIC $(VISIBILITY) -Icsrc $(DEPCFLAGS) $(CFLAGS)

# The OpenCV bridge (csrc/opencv/*.cpp, the C++ part) links the modules
# it uses, found through pkg-config: bridge.cpp and draw.cpp core and
# imgproc, in the library; imgcodecs.cpp (image files) imgcodecs too, in a
# library of its own that pthcv.image loads on first use (imgcodecs drags in
# ~120 shared libraries, too slow to load at every start: docs/performance.md);
# videoio.cpp likewise with videoio (FFmpeg, GStreamer), loaded by pthcv.video.
CXX     ?= c++
CXXFLAGS ?= -O2 -g
OPENCV_CFLAGS := $(shell pkg-config --cflags opencv4 2>/dev/null)
opencv_libs    = $(filter -L% $(1:%=-lopencv_%),$(shell pkg-config --libs opencv4 2>/dev/null))
OPENCV_LIBS   := $(call opencv_libs,core imgproc)
CODECS_LIBS   := $(call opencv_libs,core imgcodecs)
VIDEOIO_LIBS  := $(call opencv_libs,core videoio)
ALL_CXXFLAGS = -std=c++17 -Wall -Wextra -Wno-unused-parameter -fPIC $(VISIBILITY) -fvisibility-inlines-hidden \
               -Icsrc -Iinclude $(OPENCV_CFLAGS) $(CXXFLAGS)

BUILD   := build
# Kernel files named *_avx2.c, *_avx512.c, *_neon.c hold one instruction set's
# code and get its flags (below); the other architecture's files are left out.
ARCH    := $(shell $(CC) -dumpmachine)
ISA_SKIP := $(if $(filter x86_64%,$(ARCH)),%_neon.c,$(if $(filter aarch64%,$(ARCH)),%_avx2.c %_avx512.c %_vnni.c,%_avx2.c %_avx512.c %_vnni.c %_neon.c))
KERNEL_SRCS := $(filter-out $(ISA_SKIP),$(wildcard csrc/kernels/*.c))
SRCS    := $(wildcard csrc/*.c csrc/reader/*.c csrc/tensor/*.c csrc/export/*.c csrc/jit/*.c) $(KERNEL_SRCS)
CXX_SRCS := csrc/opencv/bridge.cpp csrc/opencv/filestorage_read.cpp csrc/opencv/draw.cpp
OBJS    := $(SRCS:%.c=$(BUILD)/%.o) $(CXX_SRCS:%.cpp=$(BUILD)/%.o)
LIB     := $(BUILD)/libpthcv.so
CODECS_LIB := $(BUILD)/libpthcv_imgcodecs.so
VIDEOIO_LIB := $(BUILD)/libpthcv_videoio.so
PYTHON  := /usr/bin/python3
BUSTED  ?= busted

.PHONY: all deps test test-large demo bench sanitize sanitize-build fixtures clean ctest ctest-neon fuzz fuzz-jit valgrind

all: $(LIB) $(CODECS_LIB) $(VIDEOIO_LIB)

# -z nodelete: the kernels' worker threads wait inside the library, so it must
# never be unmapped while the process lives (LuaJIT unloads ffi.load'ed
# libraries when its state closes, and glibc aborts on the orphaned futex).
$(LIB): $(OBJS) $(BUILD)/exports.map
	$(CXX) -shared -Wl,-z,nodelete -Wl,-soname,libpthcv.so -Wl,--version-script=$(BUILD)/exports.map -o $@ $(OBJS) \
	  $(OPENCV_LIBS) $(DEPLIBS) -lz -lm $(LDFLAGS)

# The symbols the libraries export: every function marked PTHCV_API (pthcv.h,
# and the two error functions internal.h lends libpthcv_imgcodecs.so), by
# name, and nothing else. -fvisibility=hidden keeps most internals in
# already; the list also keeps in what the flag cannot: the C++ standard
# library's templates the OpenCV bridge instantiates (libstdc++ declares them
# visible) and the dispatchers gcc makes for target_clones (PTHCV_SIMD), which
# it exports regardless. spec/exports_spec.lua checks the result with nm -D.
$(BUILD)/exports.map: csrc/pthcv.h csrc/internal.h
	@mkdir -p $(BUILD)
	{ echo '{ global:'; sed -nE 's/^PTHCV_API [^(]*[^A-Za-z0-9_](pthcv_[A-Za-z0-9_]+)\(.*/  \1;/p' $^; \
	  echo '  local: *; };'; } >$@

# found next to libpthcv.so (rpath $ORIGIN), in a checkout and in a rock
$(CODECS_LIB): $(BUILD)/csrc/opencv/imgcodecs.o $(LIB)
	$(CXX) -shared -Wl,--version-script=$(BUILD)/exports.map -o $@ $(BUILD)/csrc/opencv/imgcodecs.o -L$(BUILD) -lpthcv \
	  '-Wl,-rpath,$$ORIGIN' $(CODECS_LIBS) $(LDFLAGS)

# video files and cameras (csrc/opencv/videoio.cpp), loaded only when used
$(VIDEOIO_LIB): $(BUILD)/csrc/opencv/videoio.o $(LIB)
	$(CXX) -shared -Wl,--version-script=$(BUILD)/exports.map -o $@ $(BUILD)/csrc/opencv/videoio.o -L$(BUILD) -lpthcv '-Wl,-rpath,$$ORIGIN' $(VIDEOIO_LIBS) $(LDFLAGS)

%_avx2.o: ISA_FLAGS := -mavx2 -mfma -mf16c
%_avx512.o: ISA_FLAGS := -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma
%_vnni.o: ISA_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512vnni
# Each object depends on the headers it includes, as the compiler lists them
# (-MMD, in $(BUILD)/X.d next to X.o; -MP adds empty rules so a deleted header
# is not an error). An object whose .d is missing (a build from before this
# rule) is rebuilt once, through the empty rule for the .d files. clang
# writes the .d after the object, so the object is touched last: else it
# would be older than its .d and rebuilt at every make.
DEP_FLAGS = -MMD -MP -MF $(@:.o=.d)
$(BUILD)/%.o: %.c $(BUILD)/%.d
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ISA_FLAGS) $(DEP_FLAGS) -c $< -o $@
	@touch $@

$(BUILD)/%.o: %.cpp $(BUILD)/%.d
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) $(DEP_FLAGS) -c $< -o $@
	@touch $@

DEPFILES := $(patsubst %,$(BUILD)/%.d,$(basename $(wildcard csrc/*.c csrc/*/*.c csrc/*/*.cpp spec/c/*.c)))
$(DEPFILES):
-include $(wildcard $(DEPFILES))

deps:
	@tools/install-deps

# Specs run against the committed fixtures and, when torch is installed, against
# fixtures that torch writes afresh (spec/fixtures/make_fixtures.py).
test: deps
	@$(MAKE) --no-print-directory all
	@tools/run-specs

# The zoo's models over 100M parameters against torchvision (spec/zoo_spec.lua
# with PTHCV_ZOO_LARGE): wide_resnet101_2, regnet_x_32gf, regnet_y_32gf,
# regnet_y_128gf, efficientnet_v2_l, convnext_large, vit_l_16, vit_l_32,
# vit_h_14. Their fixtures (~5 GB) are written to build/zoo-large once and
# kept while spec/fixtures/make_zoo_fixtures.py is unchanged.
ZOO_LARGE := $(BUILD)/zoo-large
test-large: deps
	@$(MAKE) --no-print-directory all
	@h=$$(sha256sum spec/fixtures/make_zoo_fixtures.py | cut -c1-64); \
	if [ "$$(cat $(ZOO_LARGE)/.hash 2>/dev/null)" != "$$h" ]; then \
	  rm -rf $(ZOO_LARGE); echo "# writing the large models' fixtures into $(ZOO_LARGE) (once)"; \
	  $(PYTHON) spec/fixtures/make_zoo_fixtures.py --large $(ZOO_LARGE) >$(BUILD)/zoo-large.log 2>&1 \
	    || { tail -n 20 $(BUILD)/zoo-large.log; exit 1; }; \
	  echo "$$h" >$(ZOO_LARGE)/.hash; fi
	@LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;" PTHCV_ROOT=$(CURDIR) \
	  PTHCV_ZOO_LARGE=$(CURDIR)/$(ZOO_LARGE) luajit $$(command -v $(BUSTED) || echo /usr/bin/busted) -o TAP \
	  --filter="large models" spec/zoo_spec.lua
	@PTHCV_LARGE=1 tools/run-specs

fixtures:
	$(PYTHON) spec/fixtures/make_fixtures.py spec/fixtures
	rm -rf spec/fixtures/ops_misc && $(PYTHON) spec/fixtures/make_op_fixtures_ops.py spec/fixtures/ops_misc
	rm -rf spec/fixtures/evil && $(PYTHON) spec/fixtures/make_evil.py spec/fixtures/evil
	rm -rf spec/fixtures/pickles && $(PYTHON) spec/fixtures/make_pickles.py spec/fixtures/pickles
	rm -rf spec/fixtures/formats && $(PYTHON) spec/fixtures/make_format_fixtures.py spec/fixtures/formats
	rm -rf spec/fixtures/detection_ops && $(PYTHON) spec/fixtures/make_detection_ops.py spec/fixtures/detection_ops

demo:
	@PTHCV_ONNXRUNTIME=0 tools/install-deps
	@$(MAKE) --no-print-directory all
	@tools/demo

bench:
	@PTHCV_ONNXRUNTIME=0 tools/install-deps
	@$(MAKE) --no-print-directory all
	@$(PYTHON) tools/bench_reader.py
	@$(PYTHON) tools/bench_models.py
	@$(PYTHON) tools/bench_detection.py
	@$(PYTHON) tools/bench_int8.py

# A separate build folder, so the normal build stays as it is.
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# Under ASan, the specs whose own work is Lua or another program, and whose
# C is what the other specs already run, are left to make test: the ONNX
# and Caffe exporters' (the graphs are written in Lua; pthcv's forward
# passes in them are the detection, transformer and zoo models'), the
# model pictures' (graph_spec: Lua, Graphviz and gnuplot), the model-zoo parity (71
# models through the kernels that ctest's odd sizes and the detection specs'
# resnet50 and mobilenet_v3 backbones cover), the doc tests (the docs' blocks,
# each a process of its own, over APIs the other specs test) and the C++
# FileStorage example (OpenCV's program; pthcv's part is `pthcv convert`,
# which filestorage_spec runs). SANITIZE_EXCLUDE= runs everything.
SANITIZE_EXCLUDE ?= ^onnx_ ^caffe_spec ^graph_spec ^zoo_spec ^doc_spec ^resnet_filestorage_spec
sanitize: sanitize-build
	@PTHCV_SANITIZE=1 PTHCV_LIB=$(CURDIR)/build/asan/libpthcv.so PTHCV_SPECS_EXCLUDE="$(SANITIZE_EXCLUDE)" tools/run-specs

# The library with ASan/UBSan (build/asan), alone: .ci/run builds it while
# the fixtures are still being written.
sanitize-build:
	@PTHCV_SANITIZE=1 tools/install-deps
	@$(MAKE) --no-print-directory all BUILD=build/asan CC=clang CXX=clang++ CFLAGS="$(SAN_FLAGS)" CXXFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined"

# The tensor core and writers on their own (no reader needed), then their
# files read back by NumPy (and torch, when installed); the reader's tables
# and message escaping (spec/c/reader_test.c).
CTEST_SRCS := csrc/error.c $(wildcard csrc/tensor/*.c csrc/export/*.c) spec/c/tensor_test.c
ctest:
	@mkdir -p $(BUILD)/ctest
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/tensor_test $(CTEST_SRCS) $(DEPLIBS) -lm $(LDFLAGS)
	$(BUILD)/tensor_test $(BUILD)/ctest
	$(PYTHON) spec/c/check_exports.py $(BUILD)/ctest
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/reader_test $(READER_SRCS) spec/c/reader_test.c $(DEPLIBS) -lm $(LDFLAGS)
	$(BUILD)/reader_test
	@$(MAKE) --no-print-directory $(BUILD)/kernels_test
	$(BUILD)/kernels_test spec/fixtures/ops $(PTHCV_FIXTURES_OPS)
	@$(MAKE) --no-print-directory $(BUILD)/gconv_test
	@echo "direct grouped convolution (spec/c/gconv_test.c):" && $(BUILD)/gconv_test
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/ops_test $(OTEST_SRCS) -lpthread -lm $(LDFLAGS)
	$(CC) $(ALL_CFLAGS) -DPTHCV_NO_CLONES -fno-tree-vectorize -o $(BUILD)/ops_test_scalar $(OTEST_SRCS) -lpthread -lm $(LDFLAGS)
	$(BUILD)/ops_test_scalar --dump $(BUILD)/ops_scalar.bin
	$(BUILD)/ops_test --compare $(BUILD)/ops_scalar.bin spec/fixtures/ops_misc $(PTHCV_FIXTURES_OPS_MISC)
	PTHCV_ISA=avx2 $(BUILD)/ops_test --compare $(BUILD)/ops_scalar.bin # ops_pool_simd.c's AVX2 path
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/transformer_test $(TTEST_SRCS) -lpthread -lm $(LDFLAGS)
	$(CC) $(ALL_CFLAGS) -DPTHCV_NO_CLONES -fno-tree-vectorize -o $(BUILD)/transformer_test_scalar $(TTEST_SRCS) -lpthread -lm $(LDFLAGS)
	$(BUILD)/transformer_test_scalar --dump $(BUILD)/transformer_scalar.bin
	$(BUILD)/transformer_test --compare $(BUILD)/transformer_scalar.bin
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/detection_test $(DTEST_SRCS) -lpthread -lm $(LDFLAGS)
	@echo "detection kernels (spec/c/detection_test.c):" && $(BUILD)/detection_test
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/quant_test $(QTEST_SRCS) -lpthread -lm $(LDFLAGS)
	@echo "int8 elementwise ops (spec/c/quant_test.c):" && $(BUILD)/quant_test
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/se_test $(SETEST_SRCS) -lpthread -lm $(LDFLAGS)
	$(CC) $(ALL_CFLAGS) -DPTHCV_NO_CLONES -fno-tree-vectorize -o $(BUILD)/se_test_scalar $(SETEST_SRCS) -lpthread -lm $(LDFLAGS)
	@echo "squeeze-excitation (spec/c/se_test.c), SIMD clones then scalar:" && $(BUILD)/se_test && $(BUILD)/se_test_scalar
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/act_test csrc/kernels/activation.c spec/c/act_test.c -lm $(LDFLAGS)
	@echo "SiLU rows against vm_silu (spec/c/act_test.c):" && $(BUILD)/act_test

# The other ops (ops_*.c, conv_transpose2d.c) against plain references and
# torch, built twice: with the SIMD clones, and scalar; their results must be
# the same bits (spec/c/ops_test.c).
OTEST_SRCS := csrc/error.c $(wildcard csrc/tensor/*.c) csrc/kernels/parallel.c csrc/kernels/activation.c \
              $(wildcard csrc/kernels/ops_*.c) csrc/kernels/conv_transpose2d.c csrc/kernels/profile.c csrc/kernels/quantize.c spec/c/ops_test.c \
              csrc/kernels/qpool.c csrc/kernels/quant_elementwise.c

# The transformer kernels (vmath.h, ops_attention.c, ops_layernorm.c) against double-precision
# references, built with the SIMD clones and scalar, compared bit for bit
# (spec/c/transformer_test.c).
TTEST_SRCS := csrc/error.c $(wildcard csrc/tensor/*.c) csrc/kernels/parallel.c csrc/kernels/activation.c \
              csrc/kernels/ops_common.c csrc/kernels/ops_elementwise.c csrc/kernels/ops_attention.c \
              csrc/kernels/ops_layernorm.c csrc/kernels/ops_norm.c csrc/kernels/profile.c csrc/kernels/quantize.c \
              spec/c/transformer_test.c

# The detection kernels (ops_detection.c, ops_roi.c, ops_masks.c, ops_order.c)
# against direct references and across thread counts; torchvision's answers
# are spec/ops_spec.lua's.
DTEST_SRCS := csrc/error.c $(wildcard csrc/tensor/*.c) csrc/kernels/parallel.c csrc/kernels/activation.c \
              $(wildcard csrc/kernels/ops_*.c) csrc/kernels/profile.c csrc/kernels/quantize.c \
              spec/c/detection_test.c csrc/kernels/qpool.c csrc/kernels/quant_elementwise.c

# The int8 elementwise ops (quant_elementwise.c) against references written
# from torch's formulas and across thread counts; torch's answers are
# spec/quant_spec.lua's.
QTEST_SRCS := csrc/error.c $(wildcard csrc/tensor/*.c) csrc/kernels/parallel.c csrc/kernels/ops_common.c \
              csrc/kernels/quantize.c csrc/kernels/profile.c csrc/kernels/quant_elementwise.c spec/c/quant_test.c \
              csrc/kernels/ops_pool.c csrc/kernels/ops_pool_simd.c csrc/kernels/qpool.c csrc/kernels/ops_elementwise.c \
              csrc/kernels/activation.c

# The squeeze-excitation kernel (se.c) against a reference of its summation
# order, built with the SIMD clones and scalar: both must give its bits
# (spec/c/se_test.c).
SETEST_SRCS := csrc/error.c $(wildcard csrc/tensor/*.c) csrc/kernels/parallel.c csrc/kernels/activation.c \
               csrc/kernels/ops_common.c csrc/kernels/profile.c csrc/kernels/quantize.c csrc/kernels/se.c \
               spec/c/se_test.c

# The kernels against their scalar references and torch's outputs.
KTEST_OBJS := $(patsubst %.c,$(BUILD)/%.o,csrc/error.c $(wildcard csrc/tensor/*.c) $(KERNEL_SRCS) spec/c/kernels_test.c)
$(BUILD)/kernels_test: $(KTEST_OBJS)
	$(CC) -o $@ $^ -lpthread -lm $(LDFLAGS)

# The direct grouped 3x3 kernels (gconv*.c) against a reference, the GEMM
# path's bits and across thread counts.
GTEST_OBJS := $(patsubst %.c,$(BUILD)/%.o,csrc/error.c $(wildcard csrc/tensor/*.c) $(KERNEL_SRCS) spec/c/gconv_test.c)
$(BUILD)/gconv_test: $(GTEST_OBJS)
	$(CC) -o $@ $^ -lpthread -lm $(LDFLAGS)

# The same test built for AArch64 (NEON kernels) and run under qemu-user;
# then SiLU's tests on an x86-64 CPU without FMA, also under qemu-user.
CROSS ?= aarch64-linux-gnu-
NEON_SRCS := csrc/error.c $(wildcard csrc/tensor/*.c) $(filter-out %_avx2.c %_avx512.c %_vnni.c,$(wildcard csrc/kernels/*.c)) spec/c/kernels_test.c
ctest-neon:
	@mkdir -p $(BUILD)/aarch64
	$(CROSS)gcc $(WARN) -D_GNU_SOURCE -Icsrc -O2 -static -o $(BUILD)/aarch64/kernels_test $(NEON_SRCS) -lpthread -lm
	qemu-aarch64 $(BUILD)/aarch64/kernels_test spec/fixtures/ops $(PTHCV_FIXTURES_OPS)
	$(CROSS)gcc $(WARN) -D_GNU_SOURCE -Icsrc -O2 -static -o $(BUILD)/aarch64/quant_test $(QTEST_SRCS) -lpthread -lm
	qemu-aarch64 $(BUILD)/aarch64/quant_test # qpool.c's NEON rows
	$(CROSS)gcc $(WARN) -D_GNU_SOURCE -Icsrc -O2 -static -o $(BUILD)/aarch64/gconv_test $(NEON_SRCS:spec/c/kernels_test.c=spec/c/gconv_test.c) -lpthread -lm
	qemu-aarch64 $(BUILD)/aarch64/gconv_test
	$(CROSS)gcc $(WARN) -D_GNU_SOURCE -Icsrc -O2 -static -o $(BUILD)/aarch64/se_test $(SETEST_SRCS) -lpthread -lm
	qemu-aarch64 $(BUILD)/aarch64/se_test
	$(CROSS)gcc $(WARN) -D_GNU_SOURCE -Icsrc -O2 -static -o $(BUILD)/aarch64/act_test csrc/kernels/activation.c spec/c/act_test.c -lm
	qemu-aarch64 $(BUILD)/aarch64/act_test
	@# an x86-64 CPU without FMA (qemu64): SiLU's unfused form on every path
	@mkdir -p $(BUILD)/nofma
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/nofma/act_test csrc/kernels/activation.c spec/c/act_test.c -lm $(LDFLAGS)
	qemu-x86_64 -cpu qemu64 $(BUILD)/nofma/act_test

# The reader under libFuzzer with ASan+UBSan, seeded from the spec fixtures
# (torch's formats, and the .npz/.safetensors/FileStorage ones) and the regression corpus; FUZZ_SECONDS bounds the run. FUZZ_RUNS=N instead runs
# N inputs from a fixed seed, the same inputs every time (CI does this, so a
# green run on the developer's machine is a green run in CI). A crash leaves
# its input in build/fuzz/ (crash-*, oom-*, timeout-*): fix it and keep the
# input in spec/fuzz/regressions/.
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=
FUZZ_BOUND = $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS) -seed=20261126,-max_total_time=$(FUZZ_SECONDS))
READER_SRCS := csrc/error.c $(wildcard csrc/reader/*.c csrc/tensor/*.c)
# The FileStorage reader (csrc/opencv/filestorage_read.cpp, OpenCV's parser
# underneath) is part of the target: it is built with clang++ and linked in,
# so .yml/.xml/.json/.gz inputs reach it as they do in libpthcv.so.
FUZZ_SAN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SAN_OBJ := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
fuzz:
	@PTHCV_FUZZ=1 tools/install-deps
	@mkdir -p $(BUILD)/fuzz/corpus
	clang++ -g -O1 -std=c++17 -D_GNU_SOURCE -Icsrc -Iinclude $(OPENCV_CFLAGS) $(FUZZ_SAN_OBJ) \
	  -c -o $(BUILD)/fuzz/filestorage_read.o csrc/opencv/filestorage_read.cpp
	clang++ -g -O1 -D_GNU_SOURCE -Icsrc $(FUZZ_SAN) -o $(BUILD)/fuzz/fuzz_reader \
	  -x c -std=c11 spec/fuzz/fuzz_reader.c $(READER_SRCS) -x none $(BUILD)/fuzz/filestorage_read.o \
	  $(call opencv_libs,core) $(DEPLIBS) -lz -lm
	rm -rf $(BUILD)/fuzz/corpus && mkdir -p $(BUILD)/fuzz/corpus
	cd $(BUILD)/fuzz && ./fuzz_reader $(FUZZ_BOUND) -timeout=10 -rss_limit_mb=2048 \
	  -max_len=262144 -print_final_stats=1 corpus $(CURDIR)/spec/fixtures $(CURDIR)/spec/fixtures/evil $(CURDIR)/spec/fixtures/pickles \
	  $(CURDIR)/spec/fixtures/formats $(CURDIR)/spec/fuzz/regressions \
	  2>&1 | tee fuzz.log | grep -E '^(#[0-9]+ +DONE|stat::|==[0-9]+==ERROR|SUMMARY|artifact)' ; \
	  test "$${PIPESTATUS[0]}" -eq 0
	@$(MAKE) --no-print-directory fuzz-jit

# The TorchScript source parser (csrc/jit/) the same way, seeded with the
# code files of the committed archives (spec/fixtures/jit/*.pt), the
# hand-written seeds and its regressions, with a dictionary of the words
# torch's printer writes.
JIT_SRCS := csrc/error.c $(wildcard csrc/jit/*.c)
fuzz-jit:
	@mkdir -p $(BUILD)/fuzz
	clang -g -O1 -std=c11 -D_GNU_SOURCE -Icsrc -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -o $(BUILD)/fuzz/fuzz_jit spec/fuzz/fuzz_jit.c $(JIT_SRCS) -lm
	rm -rf $(BUILD)/fuzz/jit_corpus $(BUILD)/fuzz/jit_seeds && mkdir -p $(BUILD)/fuzz/jit_corpus $(BUILD)/fuzz/jit_seeds
	for a in spec/fixtures/jit/*.pt; do unzip -qo -d $(BUILD)/fuzz/jit_seeds/$$(basename $$a .pt) $$a '*/code/*.py'; done
	cd $(BUILD)/fuzz && ./fuzz_jit $(FUZZ_BOUND) -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
	  -dict=$(CURDIR)/spec/fuzz/jit.dict -print_final_stats=1 jit_corpus jit_seeds \
	  $(CURDIR)/spec/fuzz/jit_seeds $(CURDIR)/spec/fuzz/jit_regressions \
	  2>&1 | tee fuzz-jit.log | grep -E '^(#[0-9]+ +DONE|stat::|==[0-9]+==ERROR|SUMMARY|artifact)' ; \
	  test "$${PIPESTATUS[0]}" -eq 0

# valgrind memcheck over every fixture and regression input, through the
# same walk the fuzzer does (LuaJIT itself is not valgrind-clean, so the C
# walker stands in for the Lua specs here), then over the kernels' C tests
# (every path, instruction set and thread count; outputs left unwritten
# would show as uninitialised reads). The pool's workers live until exit,
# so their thread stacks are "possibly lost" by design: not shown.
valgrind: all
	@PTHCV_VALGRIND=1 tools/install-deps
	$(CC) $(ALL_CFLAGS) -DWALK_MAIN -o $(BUILD)/walk_reader spec/fuzz/fuzz_reader.c -L$(BUILD) -lpthcv -Wl,-rpath,$(CURDIR)/$(BUILD)
	valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
	  $(BUILD)/walk_reader $(wildcard spec/fixtures/*.pth spec/fixtures/*.pt spec/fixtures/evil/*.p* spec/fixtures/pickles/*.pkl \
	    spec/fixtures/formats/* spec/fuzz/regressions/*) >$(BUILD)/valgrind.log
	@echo "valgrind: no errors over $$(wc -l < $(BUILD)/valgrind.log) files"
	@$(MAKE) --no-print-directory $(BUILD)/kernels_test
	valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-possibly-lost=no \
	  $(BUILD)/kernels_test spec/fixtures/ops >$(BUILD)/valgrind-kernels.log
	@echo "valgrind: the kernels' tests: $$(tail -n 1 $(BUILD)/valgrind-kernels.log)"
	@$(MAKE) --no-print-directory $(BUILD)/gconv_test
	valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-possibly-lost=no \
	  $(BUILD)/gconv_test >$(BUILD)/valgrind-gconv.log
	@echo "valgrind: the direct grouped kernels' tests: $$(tail -n 1 $(BUILD)/valgrind-gconv.log)"
	$(CC) $(ALL_CFLAGS) -DWALK_MAIN -o $(BUILD)/walk_jit spec/fuzz/fuzz_jit.c -L$(BUILD) -lpthcv -Wl,-rpath,$(CURDIR)/$(BUILD)
	rm -rf $(BUILD)/valgrind-jit && mkdir -p $(BUILD)/valgrind-jit
	for a in spec/fixtures/jit/*.pt; do unzip -qo -d $(BUILD)/valgrind-jit/$$(basename $$a .pt) $$a '*/code/*.py'; done
	valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
	  $(BUILD)/walk_jit $$(find $(BUILD)/valgrind-jit spec/fuzz/jit_seeds spec/fuzz/jit_regressions -type f -name '*.py') >$(BUILD)/valgrind-jit.log
	@echo "valgrind: the TorchScript parser: no errors over $$(wc -l < $(BUILD)/valgrind-jit.log) code files"

clean:
	rm -rf $(BUILD)

# ops_math.c: gcc vectorises sqrtf only without errno (torch is built so too);
# the results are the same bits either way (sqrt is exact)
$(BUILD)/csrc/kernels/ops_math.o: ISA_FLAGS := -fno-math-errno
