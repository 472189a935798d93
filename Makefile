# Thin front end to CMake.
#   make          build build/grok
#   make run      install what is missing (Debian/Ubuntu), build, chat with grok-nano
#   make test     unit + end-to-end tests (ctest)
#   make asan     the same tests built with AddressSanitizer + UBSan
#   make fuzz     build the libFuzzer targets and run each briefly
#   make aarch64  cross-build build-aarch64/grok for 64-bit ARM Linux
#   make check-aarch64  its kernel, unit and parity tests under qemu-user,
#                 on an emulated CPU with dotprod + i8mm and on one without
#   make cuda     build-cuda/: the CUDA backend required (nvcc from the PATH
#                 or /usr/local/cuda), plus tests/gpu's programs; see README "GPU"
#   make check    all of the above but cuda (what CI runs)
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || sysctl -n hw.ncpu)
FUZZ_SECONDS ?= 30

.PHONY: all run test asan fuzz aarch64 check-aarch64 check clean cuda
all:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The first command after cloning: the Debian/Ubuntu packages for building and
# for the tests (apt, only when one is missing, so that `make check` works
# next), the build, then `grok chat` with the bundled model. ARGS="..." passes
# options to grok chat; by default a low temperature, since the small bundled
# model answers much better near-greedy than at grok chat's default 0.8.
ARGS ?= --temp 0.2
run:
	@bash scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	./$(BUILD)/grok chat $(ARGS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan:
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DGROK_SANITIZE=ON -DGROK_CUDA=OFF >/dev/null
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

fuzz:
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DGROK_FUZZ=ON -DGROK_CUDA=OFF >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzzers
	bash scripts/fuzz-smoke.sh build-fuzz $(FUZZ_SECONDS)

# aarch64, cross-built with Debian's toolchain and the arm64 libraries from
# multiarch (scripts/install-deps.sh installs both, and qemu-user).
AARCH64_BUILD ?= build-aarch64
aarch64:
	@command -v aarch64-linux-gnu-gcc >/dev/null || { echo "aarch64-linux-gnu-gcc not found: run scripts/install-deps.sh" >&2; exit 1; }
	@cmake -S . -B $(AARCH64_BUILD) -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release \
	    -DGROK_CUDA=OFF >/dev/null
	@cmake --build $(AARCH64_BUILD) -j $(JOBS)

# Under qemu-user: -cpu max (NEON + dotprod + i8mm: the i8mm prompt kernels,
# the dotprod generation kernels) runs the unit tests (but the sampler's,
# which has no SIMD code and takes minutes emulated), the float64-reference
# parity, every quantized type against llama.cpp and grok run; -cpu
# cortex-a53 (NEON only) the kernel, forward-pass and parity tests. Each
# first checks that the emulated CPU gets the kernels it should.
check-aarch64: aarch64
	@command -v qemu-aarch64 >/dev/null || { echo "qemu-aarch64 not found: run scripts/install-deps.sh" >&2; exit 1; }
	QEMU_CPU=max $(AARCH64_BUILD)/emu/grok --version | grep -q '(i8mm kernels)'
	cd $(AARCH64_BUILD) && QEMU_CPU=max ctest --output-on-failure -j $(JOBS) -E 'unit_sampler'
	QEMU_CPU=cortex-a53 $(AARCH64_BUILD)/emu/grok --version | grep -q '(neon kernels)'
	cd $(AARCH64_BUILD) && QEMU_CPU=cortex-a53 ctest --output-on-failure -j $(JOBS) \
	    -R 'unit_quant|unit_forward|e2e_parity_ref|e2e_run|setup_'

# The emulated aarch64 pass belongs to x86-64 Linux hosts (CI); on an ARM
# machine `make test` already runs the same tests natively.
ifeq ($(shell uname -sm),Linux x86_64)
CHECK_CROSS := check-aarch64
endif
check: test asan fuzz $(CHECK_CROSS)

# The CUDA build (sm_80 + sm_90 + PTX) and the files tests/gpu/run.sh needs
# on a GPU machine: build-cuda/grok, build-cuda/test_backend_cuda and
# build-cuda/lib (the shared libraries a bare machine may lack).
NVCC ?= $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
cuda:
	@cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DGROK_CUDA=ON -DCMAKE_CUDA_COMPILER=$(NVCC) >/dev/null
	@cmake --build build-cuda -j $(JOBS) --target grok test_backend_cuda
	@bash tests/gpu/pack-libs.sh build-cuda

clean:
	rm -rf $(BUILD) build-asan build-fuzz $(AARCH64_BUILD) build-cuda
